/**
 * Helpers for the lib/vsr unit tests of values and blocks at rest (scrubber, value keeper): the
 * part of a fake value keeper host that records what the keeper sends and reports, and a store
 * with chunked objects and open uploads built the way replicas build it (executeLargeWrite), over a
 * fake disk of segment images whose reads verify checksums as the real storage does, and which can
 * damage bytes in place.
 */
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import { ObjectStore, type ValueLocation } from "../store/object_store.ts";
import { executeLargeWrite, executeWrite, type LargeLimits } from "../store/execute.ts";
import { Condition, Operation, Result, encodeKeyRequest } from "../store/operations.ts";
import {
  decodeCompleteUploadReply,
  decodeCreateUploadReply,
  encodeCompleteUpload,
  encodeCreateUpload,
  encodeWriteBlock,
  partChecksum,
} from "../store/large_bodies.ts";
import type { StoredBytes } from "./storage.ts";
import type { Envelope } from "./messages.ts";
import type { Env, Status } from "./env.ts";
import type { ValueKeeperHost } from "./value_keeper.ts";
import type { Message } from "../net/codec.ts";
import { defaultConfig } from "../constants.ts";
import { Prng } from "../util/prng.ts";

/** What a fake host of the value keeper records: messages sent, drops, logs, full-disk reports.
 * A replica of a cluster of 3 (cluster 1, incarnation 5) in view 1; subclasses give the storage and store. */
export abstract class RecordingHost implements Pick<
  ValueKeeperHost,
  "replica" | "config" | "env" | "status" | "view" | "stats" | "envelope" | "diskFull" | "drop"
> {
  readonly config = defaultConfig(3, 1n);
  readonly sent: { to: number; message: Message }[] = [];
  readonly logs: string[] = [];
  readonly dropped: string[] = [];
  readonly full_errors: Error[] = [];
  readonly env: Env;
  status: Status = "normal";
  view = 1;
  readonly stats = { bytes_compacted: 0, values_scrubbed: 0, scrub_passes: 0 };

  constructor(
    readonly replica: number,
    seed: number,
  ) {
    this.env = {
      sendToReplica: (to, message) => this.sent.push({ to, message }),
      sendToClient: () => {
        throw new Error("the value keeper never answers a client");
      },
      random: new Prng(seed),
      log: (_level, text) => this.logs.push(text),
    };
  }
  envelope(view: number): Envelope {
    return { cluster: 1n, replica: this.replica, replica_count: 3, view, incarnation: 5 };
  }
  diskFull(error: Error): void {
    this.full_errors.push(error);
  }
  drop(_message: Message, why: string): void {
    this.dropped.push(why);
  }
}

const limits: LargeLimits = { uploads_open_max: 16, block_size_max: 4 * 1024 * 1024 };

/** Segment images on a fake disk; each executed op's body is its own segment (from 1 up), and
 * bytes written back (compaction, repair) go to segment 1000 onwards, one per write. */
export class BlockDisk {
  readonly images = new Map<number, Uint8Array>();
  readonly store = new ObjectStore();
  private next_segment = 1;
  private next_written = 1000;
  private timestamp = 1000;
  /** writeValue throws the no-space signal while set. */
  full = false;
  candidate: number | null = null;

  /** Executes one committed op whose body was journaled as segment `segment` at offset 16. */
  exec(operation: Operation, body: Uint8Array, segment = this.next_segment++): { result: Result; body: Uint8Array } {
    const image = new Uint8Array(16 + body.length);
    image.set(body, 16);
    this.images.set(segment, image);
    const location = { segment, offset: 16 };
    this.timestamp += 1;
    const r =
      operation === Operation.put || operation === Operation.delete
        ? executeWrite(this.store, this.timestamp, operation, body, location)
        : executeLargeWrite(this.store, limits, this.timestamp, operation, body, location);
    assert(r.result === Result.ok, () => `fixture op ${Operation[operation]}: ${Result[r.result]}`);
    this.store.invariants();
    return r;
  }

  put(key: string, value: Uint8Array): void {
    this.exec(Operation.put, encodeKeyRequest(new TextEncoder().encode(key), value, Condition.none, 0));
  }

  delete(key: string): void {
    this.exec(Operation.delete, encodeKeyRequest(new TextEncoder().encode(key), null));
  }

  /** Opens an upload of key and writes `blocks` into part 1 (one op each, or all into `segment`
   * when given, so several blocks share a segment); the upload id. */
  openUpload(key: string, blocks: readonly Uint8Array[], segment?: number): number {
    const created = this.exec(
      Operation.create_upload,
      encodeCreateUpload({
        key: new TextEncoder().encode(key),
        condition: Condition.none,
        if_version: 0,
        declared_size: null,
        metadata: { content_type: "", user_meta: new Uint8Array(0) },
      }),
    );
    const upload_id = decodeCreateUploadReply(created.body)!.upload_id;
    blocks.forEach((data, block_index) => {
      const body = encodeWriteBlock({ upload_id, part_number: 1, block_index, attempt: 1n, checksum: checksum(data), data });
      if (segment === undefined) this.exec(Operation.write_block, body);
      else this.appendOp(segment, Operation.write_block, body);
    });
    return upload_id;
  }

  /** Completes an upload opened by openUpload with all its blocks; the object's version. */
  complete(upload_id: number): number {
    const upload = this.store.large.upload(upload_id)!;
    const sums = [...upload.slots.entries()]
      .sort(([a], [b]) => Number(a.split(":")[2]) - Number(b.split(":")[2]))
      .map(([, id]) => this.store.large.block(id)!.checksum);
    const parts = [
      { part_number: 1, block_count: sums.length, attempt: 1n, part_size: upload.stored_bytes, part_checksum: partChecksum(sums) },
    ];
    const r = this.exec(
      Operation.complete_upload,
      encodeCompleteUpload({ upload_id, condition: Condition.none, if_version: 0, declared_size: null, md5: null, parts }),
    );
    return decodeCompleteUploadReply(r.body)!.version;
  }

  /** A chunked object of key made of `blocks`; its version. */
  upload(key: string, blocks: readonly Uint8Array[], segment?: number): number {
    return this.complete(this.openUpload(key, blocks, segment));
  }

  /** Executes an op whose body is appended to segment's image (several ops in one segment). */
  private appendOp(segment: number, operation: Operation, body: Uint8Array): void {
    const old = this.images.get(segment) ?? new Uint8Array(0);
    const image = new Uint8Array(old.length + body.length);
    image.set(old);
    image.set(body, old.length);
    this.images.set(segment, image);
    this.timestamp += 1;
    const r = executeLargeWrite(this.store, limits, this.timestamp, operation, body, { segment, offset: old.length });
    assert(r.result === Result.ok, () => `fixture op ${Operation[operation]}: ${Result[r.result]}`);
    this.store.invariants();
  }

  /** Flips a bit of the stored bytes in place: a latent sector error, found only by reading. */
  damage(stored: StoredBytes): void {
    const image = this.images.get(stored.segment)!;
    image[stored.offset] = image[stored.offset]! ^ 0x40;
  }

  readValue(stored: StoredBytes): Uint8Array | null {
    const image = this.images.get(stored.segment);
    if (image === undefined || stored.offset + stored.size > image.length) return null;
    const bytes = image.slice(stored.offset, stored.offset + stored.size);
    return checksum(bytes) === stored.checksum ? bytes : null;
  }

  writeValue(value: Uint8Array): ValueLocation {
    if (this.full) throw Object.assign(new Error("no space left on device (test)"), { code: "ENOSPC" as const });
    const segment = this.next_written++;
    this.images.set(segment, value.slice());
    return { segment, offset: 0 };
  }

  compactionCandidate(): number | null {
    return this.candidate;
  }
}

/** n bytes that differ with `seed`. */
export function blockBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 17 + (i >>> 8)) & 0xff;
  return out;
}
