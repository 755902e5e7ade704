/**
 * Streamed gets of any size (LARGE_OBJECTS.md §7, §11.1). The first read names version 0 (the
 * linearizable read path) and returns the object header and version V; every later read names V,
 * so the bytes are all V's or the get fails with object_changed, never a mix. Reads go out at fixed
 * strides of read_size_max, `lanes` of them in flight, and come out in order through a
 * ReadableStream that reads ahead only as the consumer pulls: memory is at most lanes reads plus
 * the block being verified. Each block whose bytes all pass through is checked against the
 * checksum in the block map, and a read of the whole object against the manifest checksum and MD5.
 */
import { read_size_max_bytes } from "../constants.ts";
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import { Operation } from "../store/operations.ts";
import {
  ObjectKind,
  decodeReadReply,
  encodeReadRequest,
  type BlockMapEntry,
  type ObjectHeader,
  type ReadReply,
} from "../store/large_bodies.ts";
import type { Caller } from "./channel.ts";
import { ChecksumList } from "./checksum_list.ts";
import { ClientError } from "./errors.ts";

/** Inclusive byte positions as in HTTP: start..end (end absent: to the end), or the last `suffix` bytes. */
export type ByteRange = { start: number; end?: number } | { suffix: number };

export interface GetOptions {
  range?: ByteRange;
  /** Read exactly this version (object_changed if it is no longer current); default: the current one. */
  version?: number;
  /** Bytes delivered so far. */
  onProgress?: (bytes: number) => void;
  /** Bytes per read, at most read_size_max (smaller in tests). */
  read_size?: number;
  /** Also check a whole object's bytes against its stored MD5 (default false). Every byte is
   * already checked by its block's xxh64 and the blocks by the manifest (or the value's)
   * checksum; the MD5 checks the MD5 itself (what an S3 ETag shows), at 40% of a get's CPU. */
  md5?: boolean;
}

export interface GetStream {
  header: ObjectHeader;
  /** The first byte's position in the object, and how many bytes the stream delivers. */
  start: number;
  length: number;
  body: ReadableStream<Uint8Array>;
}

export interface GetCalls {
  main: Caller;
  lanes: readonly Caller[];
}

/** "START-END", "START-" or "-SUFFIX" (HTTP's Range syntax without "bytes="), inclusive. */
export function parseRange(text: string): ByteRange | null {
  const m = /^(\d*)-(\d*)$/.exec(text);
  if (m === null || (m[1] === "" && m[2] === "")) return null;
  const number = (s: string): number | null => (Number.isSafeInteger(Number(s)) ? Number(s) : null);
  if (m[1] === "") {
    const suffix = number(m[2]!);
    return suffix === null ? null : { suffix };
  }
  const start = number(m[1]!);
  if (start === null) return null;
  if (m[2] === "") return { start };
  const end = number(m[2]!);
  return end === null || end < start ? null : { start, end };
}

function rangeProblem(range: ByteRange): string | null {
  const ok = (n: number | undefined): boolean => n === undefined || (Number.isSafeInteger(n) && n >= 0);
  if ("suffix" in range) return ok(range.suffix) ? null : "the suffix is a byte count";
  if (!ok(range.start) || !ok(range.end)) return "positions are byte offsets from 0";
  return range.end !== undefined && range.end < range.start ? "the end is before the start" : null;
}

export function formatRange(range: ByteRange): string {
  return "suffix" in range ? `-${range.suffix}` : `${range.start}-${range.end ?? ""}`;
}

/** Reads with the block map; the first read of a get also asks for the metadata. */
async function read(
  caller: Caller,
  key: Uint8Array,
  version: number,
  offset: number,
  length: number,
  metadata = false,
): Promise<ReadReply> {
  const body = encodeReadRequest({ key, version, offset, length, metadata, block_map: true });
  const reply = decodeReadReply(await caller.call(Operation.read, body));
  if (reply === null) throw new ClientError("protocol", "malformed read reply");
  return reply;
}

/** The object's header and metadata (a read of no bytes). */
export async function head(caller: Caller, key: Uint8Array, version = 0): Promise<ObjectHeader> {
  const body = encodeReadRequest({ key, version, offset: 0, length: 0, metadata: true, block_map: false });
  const reply = decodeReadReply(await caller.call(Operation.read, body));
  if (reply === null) throw new ClientError("protocol", "malformed read reply");
  return reply.header;
}

function outside(range: ByteRange, size: number): ClientError {
  return new ClientError("range_invalid", `range ${formatRange(range)} is outside the object (${size} bytes)`, size);
}

function changed(version: number, error: unknown): unknown {
  if (!(error instanceof ClientError) || error.code !== "object_changed") return error;
  const now = error.detail === 0 ? "deleted" : `replaced by version ${error.detail ?? "?"}`;
  return new ClientError("object_changed", `changed while it was read (version ${version} ${now})`, error.detail);
}

export async function getStream(calls: GetCalls, key: Uint8Array, o: GetOptions = {}): Promise<GetStream> {
  const stride = o.read_size ?? read_size_max_bytes;
  assert(Number.isInteger(stride) && stride >= 1 && stride <= read_size_max_bytes, () => `read size ${stride}`);
  assert(calls.lanes.length >= 1, "at least one lane");
  const range = o.range;
  const problem = range === undefined ? null : rangeProblem(range);
  if (problem !== null) throw new ClientError("bad_request", `range ${formatRange(range!)}: ${problem}`);
  let version = o.version ?? 0;
  let start = 0;
  let first: ReadReply;
  try {
    if (range !== undefined && "suffix" in range) {
      const h = await head(calls.main, key, version);
      version = h.version;
      start = Math.max(0, h.size - range.suffix);
    } else if (range !== undefined) {
      start = range.start;
    }
    const first_length = Math.min(
      stride,
      range !== undefined && "end" in range && range.end !== undefined ? range.end - start + 1 : stride,
    );
    first = await read(calls.main, key, version, start, first_length, true);
  } catch (error) {
    if (range !== undefined && error instanceof ClientError && error.code === "range_invalid") throw outside(range, error.detail ?? 0);
    throw version === 0 ? error : changed(version, error);
  }
  const header = first.header;
  const size = header.size;
  if (range !== undefined && start >= size && !(start === 0 && size === 0)) throw outside(range, size);
  const end = range !== undefined && "end" in range && range.end !== undefined ? Math.min(size, range.end + 1) : size;
  const length = Math.max(0, end - start);
  const verifier = new Verifier(header, start, end, o.md5 === true);
  const reads = Math.ceil(length / stride);
  // Read i covers [start + i·stride, ...): read 0 is done; the rest are pinned to its version.
  const pending = new Map<number, Promise<ReadReply>>([[0, Promise.resolve(first)]]);
  let issued = 1;
  let delivered = 0;
  let next = 0;
  const pinned = header.version;
  const issue = (): void => {
    while (issued < reads && issued < next + calls.lanes.length) {
      const offset = start + issued * stride;
      const lane = calls.lanes[issued % calls.lanes.length]!;
      const p = read(lane, key, pinned, offset, Math.min(stride, end - offset));
      p.catch(() => undefined); // observed in pull, or dropped by cancel
      pending.set(issued, p);
      issued += 1;
    }
  };
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (next >= reads) {
          verifier.finish();
          controller.close();
          return;
        }
        issue();
        const offset = start + next * stride;
        let reply: ReadReply;
        try {
          reply = await pending.get(next)!;
        } catch (error) {
          throw changed(pinned, error);
        }
        pending.delete(next);
        next += 1;
        const want = Math.min(stride, end - offset);
        if (reply.header.version !== pinned || reply.data.length !== want)
          throw new ClientError("protocol", `a read of ${want} bytes at ${offset} of version ${pinned} returned another version or size`);
        verifier.accept(offset, reply.data, reply.block_map ?? []);
        delivered += want;
        controller.enqueue(reply.data);
        o.onProgress?.(delivered);
        if (next >= reads) {
          verifier.finish();
          controller.close();
        }
      },
      cancel() {
        next = reads;
        pending.clear();
      },
    },
    { highWaterMark: 1 },
  );
  return { header, start, length, body };
}

/**
 * Checks each block whose bytes all pass through against its checksum in the block map (a block
 * cut by the range's ends cannot be), keeping at most the bytes of one block that spans two reads.
 * A read of the whole object also checks the manifest checksum, and the MD5 if asked.
 */
class Verifier {
  private readonly whole: boolean;
  private readonly checksums = new ChecksumList();
  private next_block_start = 0;
  private partial: { block: BlockMapEntry; bytes: Uint8Array; filled: number } | null = null;
  private readonly md5: Bun.CryptoHasher | null;

  constructor(
    private readonly header: ObjectHeader,
    private readonly start: number,
    private readonly end: number,
    check_md5: boolean,
  ) {
    this.whole = start === 0 && end === header.size;
    this.md5 = check_md5 && this.whole && header.md5 !== null ? new Bun.CryptoHasher("md5") : null;
  }

  accept(offset: number, data: Uint8Array, map: readonly BlockMapEntry[]): void {
    this.md5?.update(data);
    const data_end = offset + data.length;
    for (const block of map) {
      const block_end = block.start + block.size;
      if (block.start === this.next_block_start) {
        this.checksums.add(block.checksum);
        this.next_block_start = block_end;
      }
      if (block.start < this.start || block_end > this.end || block_end <= offset || block.start >= data_end) continue;
      if (block.start >= offset && block_end <= data_end) {
        this.check(block, data.subarray(block.start - offset, block_end - offset));
        continue;
      }
      if (this.partial === null || this.partial.block.start !== block.start)
        this.partial = { block, bytes: new Uint8Array(block.size), filled: 0 };
      const from = Math.max(block.start, offset);
      const to = Math.min(block_end, data_end);
      this.partial.bytes.set(data.subarray(from - offset, to - offset), from - block.start);
      this.partial.filled += to - from;
      if (this.partial.filled === block.size) {
        this.check(block, this.partial.bytes);
        this.partial = null;
      }
    }
  }

  finish(): void {
    if (!this.whole || this.header.size === 0) return;
    if (this.header.kind === ObjectKind.chunked) {
      const manifest = this.checksums.manifest(this.header.size);
      if (this.checksums.count !== this.header.block_count || manifest !== this.header.checksum)
        throw new ClientError("checksum_mismatch", "the blocks read do not make up the object's manifest checksum");
    }
    if (this.md5 !== null) {
      const md5 = new Uint8Array(this.md5.digest() as Uint8Array);
      if (!equal(md5, this.header.md5!)) throw new ClientError("checksum_mismatch", "the bytes read do not match the object's MD5");
    }
  }

  private check(block: BlockMapEntry, bytes: Uint8Array): void {
    const inline_mismatch = this.header.kind === ObjectKind.inline && block.checksum !== this.header.checksum;
    if (inline_mismatch || checksum(bytes) !== block.checksum)
      throw new ClientError(
        "checksum_mismatch",
        `the bytes read at ${block.start}..${block.start + block.size} do not match their checksum`,
      );
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
