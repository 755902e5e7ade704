/**
 * Puts of any size (LARGE_OBJECTS.md §11.1). A body that fits in one block goes as one put (or
 * put_object, with metadata); a larger one becomes an upload: create_upload, then the body cut into
 * blocks of the cluster's block_size_max sent by lanes (extra client ids, at most one block each in
 * flight, retried independently), then complete_upload with the part list, the condition and the
 * MD5 of the content. Memory: one block being read plus one per lane (the write_block bodies),
 * never the whole object. On any failure after create_upload the upload is aborted (best effort)
 * and the error carries its id.
 */
import { randomBytes } from "node:crypto";
import { part_blocks_max, upload_parts_max } from "../constants.ts";
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import { Condition, Operation, decodeU64, encodeKeyRequest } from "../store/operations.ts";
import {
  contentTypeProblem,
  decodeCompleteUploadReply,
  decodeCreateUploadReply,
  encodeAbortUpload,
  encodeCompleteUpload,
  encodeCreateUpload,
  encodePutObject,
  encodeUserMeta,
  encodeWriteBlock,
  userMetaProblem,
  type MetaEntry,
  type ObjectMetadata,
  type UploadPart,
} from "../store/large_bodies.ts";
import type { Caller } from "./channel.ts";
import { ChecksumList } from "./checksum_list.ts";
import { ClientError } from "./errors.ts";
import { bodySource, type BlockSource, type Body } from "./body_source.ts";

export interface Conditions {
  if_version?: number;
  if_absent?: boolean;
}

export interface ObjectOptions {
  content_type?: string;
  /** User metadata: names of a-z, 0-9 and -; values as text (UTF-8) or bytes. */
  meta?: Record<string, string | Uint8Array>;
}

export interface LargePutOptions extends Conditions, ObjectOptions {
  /** The body's size when the body cannot say (a stream); checked against the bytes read. */
  size?: number;
  /** Compute the content's MD5 and store it with the object (default true; a plain put without
   * metadata has nowhere to store it). */
  md5?: boolean;
  /** Bytes the cluster has acknowledged so far. */
  onProgress?: (bytes: number) => void;
  /** Aborting it stops the put and aborts its upload. */
  signal?: AbortSignal;
  /** Names the body in errors ("big.iso"). */
  source_name?: string;
}

export interface PutResult {
  version: number;
  size: number;
  /** xxh64 of the bytes (inline) or the manifest checksum (chunked), as stat shows it. */
  checksum: bigint;
  /** The MD5 stored with the object, if any. */
  md5: Uint8Array | null;
}

/** What a put is carried out with: the client's own channel (create, complete, abort, put) and
 * its lanes (write_block). */
export interface PutCalls {
  main: Caller;
  lanes: readonly Caller[];
  /** The largest body sent inline: the cluster's block_size_max once known, else the ceiling. */
  inline_max: number;
  /** Called with block_size_max from create_upload's reply, so later puts cut there. */
  learned?(block_size_max: number): void;
}

export function conditionOf(o: Conditions): { condition: Condition; if_version: number } {
  // One condition per write: silently dropping either would write what the caller ruled out.
  if (o.if_absent === true && o.if_version !== undefined)
    throw new ClientError("bad_request", "put: if_absent and if_version cannot be combined (a put has one condition)");
  const condition = o.if_absent === true ? Condition.if_absent : o.if_version !== undefined ? Condition.if_version : Condition.none;
  return { condition, if_version: o.if_version ?? 0 };
}

/** The metadata of the options, or null if none was given; bad input is a bad_request naming the rule. */
export function metadataOf(o: ObjectOptions): ObjectMetadata | null {
  if (o.content_type === undefined && o.meta === undefined) return null;
  const content_type = o.content_type ?? "";
  const ct_problem = contentTypeProblem(content_type);
  if (ct_problem !== null) throw new ClientError("bad_request", `content type ${JSON.stringify(content_type)}: ${ct_problem}`);
  const encoder = new TextEncoder();
  const entries: MetaEntry[] = Object.entries(o.meta ?? {}).map(([name, value]) => ({
    name,
    value: typeof value === "string" ? encoder.encode(value) : value,
  }));
  const problem = userMetaProblem(entries);
  if (problem !== null) throw new ClientError("bad_request", problem);
  return { content_type, user_meta: encodeUserMeta(entries) };
}

/** Only the conditions of o (not its other options). */
function conditions(o: Conditions): Conditions {
  return {
    ...(o.if_version === undefined ? {} : { if_version: o.if_version }),
    ...(o.if_absent === undefined ? {} : { if_absent: o.if_absent }),
  };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new ClientError("aborted", "the put was cancelled");
}

/** Puts body under key: inline when it fits in one block, else as an upload. */
export function putBody(calls: PutCalls, key: Uint8Array, body: Body, o: LargePutOptions = {}): Promise<PutResult> {
  return putSource(calls, key, bodySource(body, o.size ?? null, o.source_name), o);
}

/** putBody for a source already opened (a file: body_source.ts FileSource). */
export async function putSource(calls: PutCalls, key: Uint8Array, source: BlockSource, o: LargePutOptions = {}): Promise<PutResult> {
  const { condition, if_version } = conditionOf(o);
  const metadata = metadataOf(o);
  throwIfAborted(o.signal);
  // Known to fit, or a stream that ends within one block: one request.
  if (source.size !== null && source.size <= calls.inline_max) {
    const value = await source.next(source.size);
    if (!(await source.atEnd())) throw new ClientError("source_changed", `${o.source_name ?? "the body"} grew while it was read`);
    return putInline(calls.main, key, value, condition, if_version, metadata, o.md5 !== false);
  }
  let first: Uint8Array | null = null;
  if (source.size === null) {
    first = (await source.next(calls.inline_max)).slice();
    if (await source.atEnd()) return putInline(calls.main, key, first, condition, if_version, metadata, o.md5 !== false);
  }
  const upload = await Upload.create(calls, key, { condition, if_version, declared_size: source.size, metadata });
  try {
    const md5 = o.md5 === false ? null : new Bun.CryptoHasher("md5");
    const parts: PartInfo[] = [];
    let sent = 0;
    const progress = (n: number): void => o.onProgress?.(sent + n);
    const blocks = first === null ? source : prefixed(first, source);
    while (!(await blocks.atEnd())) {
      if (parts.length === upload_parts_max)
        throw new ClientError("value_too_large", `the body needs more than ${upload_parts_max} parts of ${part_blocks_max} blocks`);
      const part = await upload.sendPart(parts.length + 1, blocks, { md5, signal: o.signal, onProgress: progress });
      parts.push(part);
      sent += part.part_size;
    }
    const digest = md5 === null ? null : new Uint8Array(md5.digest() as Uint8Array);
    return await upload.complete(parts, { ...conditions(o), size: source.size, md5: digest });
  } catch (error) {
    throw await upload.abortAfter(error);
  }
}

async function putInline(
  main: Caller,
  key: Uint8Array,
  value: Uint8Array,
  condition: Condition,
  if_version: number,
  metadata: ObjectMetadata | null,
  with_md5: boolean,
): Promise<PutResult> {
  const sum = checksum(value);
  if (metadata === null) {
    const version = u64(await main.call(Operation.put, encodeKeyRequest(key, value, condition, if_version)));
    return { version, size: value.length, checksum: sum, md5: null };
  }
  const md5 = with_md5 ? new Uint8Array(Bun.CryptoHasher.hash("md5", value) as Uint8Array) : null;
  const version = u64(await main.call(Operation.put_object, encodePutObject({ key, condition, if_version, md5, metadata, value })));
  return { version, size: value.length, checksum: sum, md5 };
}

function u64(body: Uint8Array): number {
  const n = decodeU64(body);
  if (n === null) throw new ClientError("protocol", "malformed reply");
  return n;
}

/** The bytes already read from a stream (to see whether it fits inline), then the rest of it. */
function prefixed(first: Uint8Array, rest: BlockSource): BlockSource {
  let offset = 0;
  return {
    size: null,
    async next(max: number): Promise<Uint8Array> {
      if (offset === first.length) return rest.next(max);
      const view = first.subarray(offset, Math.min(first.length, offset + max));
      offset += view.length;
      return view;
    },
    atEnd: () => (offset < first.length ? Promise.resolve(false) : rest.atEnd()),
  };
}

/** A part as sent, for complete: UploadPart plus its MD5-free bookkeeping. */
export interface PartInfo extends UploadPart {
  /** The part's block checksums, in order, for the manifest checksum. */
  block_checksums: bigint[];
}

/** The condition binds at complete (the one given to create is an early check only, §5.4). */
export interface CompleteOptions extends Conditions {
  /** The object's size if known: complete fails with size_mismatch if the parts differ. */
  size?: number | null;
  /** The MD5 of the whole content, stored with the object. */
  md5?: Uint8Array | null;
  /** User metadata (encodeUserMeta) that replaces what the upload was created with. */
  user_meta?: Uint8Array | null;
}

/**
 * An open upload (LARGE_OBJECTS.md §5.2-5.5): parts sent in any order, each retried on its own
 * (a part sent again takes a new attempt, so a late block of the old one cannot mix in), then
 * complete or abort.
 */
export class Upload {
  private readonly pool: LanePool;

  private constructor(
    private readonly calls: PutCalls,
    readonly id: number,
    readonly block_size_max: number,
  ) {
    this.pool = new LanePool(calls.lanes);
  }

  static async create(
    calls: PutCalls,
    key: Uint8Array,
    o: { condition: Condition; if_version: number; declared_size: number | null; metadata: ObjectMetadata | null },
  ): Promise<Upload> {
    const metadata = o.metadata ?? { content_type: "", user_meta: new Uint8Array(0) };
    const reply = decodeCreateUploadReply(await calls.main.call(Operation.create_upload, encodeCreateUpload({ key, ...o, metadata })));
    if (reply === null) throw new ClientError("protocol", "malformed create_upload reply");
    calls.learned?.(reply.block_size_max);
    if (o.declared_size !== null && o.declared_size > reply.object_size_max)
      throw new ClientError(
        "value_too_large",
        `${o.declared_size} bytes is over the cluster's object limit of ${reply.object_size_max} bytes`,
      );
    return new Upload(calls, reply.upload_id, reply.block_size_max);
  }

  /** An upload created earlier, perhaps by another process (an S3 gateway finishing an upload
   * another gateway started): its id and the block size its create_upload reply gave. */
  static open(calls: PutCalls, upload_id: number, block_size_max: number): Upload {
    assert(Number.isSafeInteger(upload_id) && upload_id >= 1, () => `upload id ${upload_id}`);
    assert(Number.isSafeInteger(block_size_max) && block_size_max >= 1, () => `block_size_max ${block_size_max}`);
    return new Upload(calls, upload_id, block_size_max);
  }

  /**
   * Sends part_number: up to part_blocks_max blocks read from source (the rest stays for the next
   * part). Blocks go out on the lanes, at most one per lane; a lane keeps its block until ok, so a
   * retry resends the same bytes. The first failure stops reading; blocks in flight are waited for.
   */
  async sendPart(
    part_number: number,
    source: BlockSource,
    o: { md5?: Bun.CryptoHasher | null; signal?: AbortSignal; onProgress?: (bytes: number) => void } = {},
  ): Promise<PartInfo> {
    assert(Number.isInteger(part_number) && part_number >= 1 && part_number <= upload_parts_max, "part number in range");
    const attempt = randomAttempt();
    const checksums = new ChecksumList();
    const block_checksums: bigint[] = [];
    const running = new Set<Promise<void>>();
    const state: { failed: boolean; failure: unknown } = { failed: false, failure: null };
    let part_size = 0;
    let acked = 0;
    try {
      while (!state.failed && checksums.count < part_blocks_max && !(await source.atEnd())) {
        throwIfAborted(o.signal);
        // A lane first, then the block: one block read ahead at most, (lanes + 1) in memory.
        const lane = await this.pool.acquire(o.signal);
        let body: Uint8Array;
        let size: number;
        try {
          const data = await source.next(this.block_size_max);
          o.md5?.update(data);
          const sum = checksum(data);
          body = encodeWriteBlock({ upload_id: this.id, part_number, block_index: checksums.count, attempt, checksum: sum, data });
          checksums.add(sum);
          block_checksums.push(sum);
          size = data.length;
          part_size += size;
        } catch (error) {
          this.pool.release(lane);
          throw error;
        }
        const run: Promise<void> = lane
          .call(Operation.write_block, body)
          .then(
            () => {
              acked += size;
              o.onProgress?.(acked);
            },
            (error: unknown) => {
              if (state.failed) return;
              state.failed = true;
              state.failure = error;
            },
          )
          .finally(() => {
            this.pool.release(lane);
            running.delete(run);
          });
        running.add(run);
      }
    } finally {
      // Blocks in flight finish (their calls never reject: failures are kept in state).
      while (running.size > 0) await Promise.all([...running]);
    }
    if (state.failed) throw state.failure;
    if (checksums.count === 0) throw new ClientError("bad_request", `part ${part_number} is empty: a part has at least one byte`);
    return {
      part_number,
      block_count: checksums.count,
      attempt,
      part_size,
      part_checksum: checksums.part(0, checksums.count),
      block_checksums,
    };
  }

  /** Installs the object made of parts (ascending part numbers) if the condition holds. */
  async complete(parts: readonly PartInfo[], o: CompleteOptions = {}): Promise<PutResult> {
    const sorted = [...parts].sort((a, b) => a.part_number - b.part_number);
    const md5 = o.md5 ?? null;
    const body = encodeCompleteUpload({
      upload_id: this.id,
      ...conditionOf(o),
      declared_size: o.size ?? null,
      md5,
      parts: sorted,
      user_meta: o.user_meta ?? null,
    });
    const reply = decodeCompleteUploadReply(await this.calls.main.call(Operation.complete_upload, body));
    if (reply === null) throw new ClientError("protocol", "malformed complete_upload reply");
    const all = new ChecksumList();
    for (const p of sorted) for (const c of p.block_checksums) all.add(c);
    const size = sorted.reduce((sum, p) => sum + p.part_size, 0);
    const expected = all.manifest(size);
    // End to end: the cluster's manifest must name exactly the blocks this client sent.
    if (reply.checksum !== expected)
      throw new ClientError(
        "protocol",
        `the cluster's manifest checksum ${hex(reply.checksum)} differs from ${hex(expected)}, computed from the blocks sent`,
      );
    return { version: reply.version, size, checksum: reply.checksum, md5 };
  }

  async abort(): Promise<void> {
    await this.calls.main.call(Operation.abort_upload, encodeAbortUpload(this.id));
  }

  /** The error to throw after a failed put: the upload aborted if the cluster lets us, and its id
   * in the error either way. */
  async abortAfter(error: unknown): Promise<unknown> {
    if (!(error instanceof ClientError)) {
      await this.abort().catch(() => undefined);
      return error;
    }
    error.upload_id = this.id;
    if (error.code !== "upload_not_found")
      error.upload_aborted = await this.abort().then(
        () => true,
        () => false,
      );
    return error;
  }
}

function hex(n: bigint): string {
  return n.toString(16).padStart(16, "0");
}

/** A random nonzero u64: a part sent again takes a new one (§5.3). */
function randomAttempt(): bigint {
  for (;;) {
    const a = randomBytes(8).readBigUInt64LE(0);
    if (a !== 0n) return a;
  }
}

/** The lanes of an upload, shared by its parts: a block waits for a free lane, so each lane has
 * at most one block in flight whatever the number of parts being sent. How many lanes may have a
 * block in flight is a window, as in TCP's congestion control: a block refused busy on its way (the
 * primary's queue was full, and the whole block was sent for nothing) halves it, once per round of
 * blocks; each block acknowledged without one grows it by a lane's share, up to every lane. With 8
 * clients of 4 lanes, 461 of 482 refusals were busy and the primary peaked near 1 GB
 * (bench/RESULTS.md). */
export class LanePool {
  private readonly free: Caller[];
  private waiters: (() => void)[] = [];
  private readonly lane_count: number;
  private window: number;
  private in_flight = 0;
  /** Halvings so far: a block refused busy halves the window only if none happened since it set
   * out (its busy is news), so a burst of refusals from one full queue halves it once. */
  private halvings = 0;
  private readonly started = new Map<Caller, { halvings: number; busy: number }>();

  constructor(lanes: readonly Caller[]) {
    assert(lanes.length >= 1, "at least one lane");
    this.free = [...lanes];
    this.lane_count = lanes.length;
    this.window = lanes.length;
  }

  /** Blocks allowed in flight now. */
  get allowed(): number {
    return Math.max(1, Math.floor(this.window));
  }

  async acquire(signal: AbortSignal | undefined): Promise<Caller> {
    while (this.free.length === 0 || this.in_flight >= this.allowed) {
      await new Promise<void>((resolve) => {
        const onAbort = (): void => resolve();
        this.waiters.push(() => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        });
        signal?.addEventListener("abort", onAbort, { once: true });
      });
      throwIfAborted(signal);
    }
    const lane = this.free.pop()!;
    this.in_flight += 1;
    this.started.set(lane, { halvings: this.halvings, busy: lane.busy_replies ?? 0 });
    return lane;
  }

  release(lane: Caller): void {
    const start = this.started.get(lane);
    assert(start !== undefined, "a lane released that was not acquired");
    this.started.delete(lane);
    this.in_flight -= 1;
    if ((lane.busy_replies ?? 0) > start.busy) {
      if (start.halvings === this.halvings) {
        this.window = Math.max(1, this.window / 2);
        this.halvings += 1;
      }
    } else {
      this.window = Math.min(this.lane_count, this.window + 1 / this.window);
    }
    this.free.push(lane);
    // Every waiter looks again (one woken by an abort may be gone; waking all loses no lane).
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
