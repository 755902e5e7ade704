/**
 * Random large-object states for the storage tests (checkpoint files, the sync stream): a store
 * driven through lib/store/execute.ts exactly as replicas execute, over an in-memory disk where
 * each op's body is its own "segment" (at offset 100), so values and blocks have real bytes to
 * read back. Also moves values and blocks (compaction, repair) and compares whole states.
 */
import { expect } from "bun:test";
import { executeLargeWrite, executeWrite, type LargeLimits } from "../../lib/store/execute.ts";
import { ObjectStore, type ObjectEntry } from "../../lib/store/object_store.ts";
import { Condition, Operation, Result, encodeKeyRequest } from "../../lib/store/operations.ts";
import {
  encodeAbortUpload,
  encodeCompleteUpload,
  encodeCreateUpload,
  encodeHousekeeping,
  encodePutObject,
  encodeUserMeta,
  encodeWriteBlock,
  partChecksum,
  type ObjectMetadata,
  type UploadPart,
} from "../../lib/store/large_bodies.ts";
import type { Block, Upload } from "../../lib/store/uploads.ts";
import { checksum } from "../../lib/util/checksum.ts";
import type { Prng } from "../../lib/util/prng.ts";

const te = new TextEncoder();
const limits: LargeLimits = { uploads_open_max: 6, block_size_max: 64 };
const keys = ["a", "b", "c", "d", "e\u00ff", "f"];

export class LargeDisk {
  readonly store = new ObjectStore();
  /** Segment id -> its bytes. */
  readonly segments = new Map<number, Uint8Array>();
  private next_segment = 1;
  timestamp = 1000;

  constructor(readonly prng: Prng) {}

  /** Executes one write as a committed prepare would, its body stored in a segment of its own. */
  exec(operation: Operation, body: Uint8Array): Result {
    const segment = this.next_segment++;
    const image = new Uint8Array(100 + body.length);
    image.set(body, 100);
    this.segments.set(segment, image);
    this.timestamp += this.prng.range(1, 50);
    const location = { segment, offset: 100 };
    const result =
      operation === Operation.put || operation === Operation.delete
        ? executeWrite(this.store, this.timestamp, operation, body, location)
        : executeLargeWrite(this.store, limits, this.timestamp, operation, body, location);
    return result.result;
  }

  private metadata(): ObjectMetadata {
    if (this.prng.chance(0.5)) return { content_type: "", user_meta: new Uint8Array(0) };
    const user_meta = this.prng.chance(0.5) ? encodeUserMeta([{ name: "color", value: te.encode("blue") }]) : new Uint8Array(0);
    return { content_type: this.prng.pick(["text/plain", "application/octet-stream", ""]), user_meta };
  }

  private bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.prng.int(256);
    return out;
  }

  /** Writes one part of blocks (sizes 1..64) into an upload; the part to complete it with. */
  private part(upload: Upload, part_number: number, attempt: bigint): UploadPart {
    const count = this.prng.range(1, 3);
    const sums: bigint[] = [];
    let size = 0;
    for (let index = 0; index < count; index++) {
      const data = this.bytes(this.prng.range(1, 64));
      const body = encodeWriteBlock({ upload_id: upload.id, part_number, block_index: index, attempt, checksum: checksum(data), data });
      expect(this.exec(Operation.write_block, body)).toBe(Result.ok);
      sums.push(checksum(data));
      size += data.length;
    }
    return { part_number, block_count: count, attempt, part_size: size, part_checksum: partChecksum(sums) };
  }

  /** One random operation or move. */
  step(): void {
    const p = this.prng;
    const key = te.encode(p.pick(keys));
    const uploads = this.store.large.allUploads();
    const roll = p.int(10);
    if (roll === 0) {
      this.exec(Operation.put, encodeKeyRequest(key, this.bytes(p.int(80))));
    } else if (roll === 1) {
      const md5 = p.chance(0.3) ? this.bytes(16) : null;
      this.exec(
        Operation.put_object,
        encodePutObject({ key, condition: Condition.none, if_version: 0, md5, metadata: this.metadata(), value: this.bytes(p.int(80)) }),
      );
    } else if (roll === 2) {
      this.exec(Operation.delete, encodeKeyRequest(key, null));
    } else if (roll === 3 && uploads.length < limits.uploads_open_max) {
      const declared_size = null;
      this.exec(
        Operation.create_upload,
        encodeCreateUpload({ key, condition: Condition.none, if_version: 0, declared_size, metadata: this.metadata() }),
      );
    } else if (roll === 4 && uploads.length > 0) {
      this.part(p.pick(uploads), p.range(1, 3), BigInt(p.range(1, 2))); // pending blocks, some later replaced
    } else if (roll === 5 && uploads.length > 0) {
      const upload = p.pick(uploads);
      const parts = [this.part(upload, 1, 9n)];
      if (p.chance(0.5)) parts.push(this.part(upload, 2, 9n));
      const md5 = p.chance(0.3) ? this.bytes(16) : null;
      const body = encodeCompleteUpload({
        upload_id: upload.id,
        condition: Condition.none,
        if_version: 0,
        declared_size: null,
        md5,
        parts,
      });
      expect(this.exec(Operation.complete_upload, body)).toBe(Result.ok);
    } else if (roll === 6 && uploads.length > 0) {
      this.exec(Operation.abort_upload, encodeAbortUpload(p.pick(uploads).id));
    } else if (roll === 7) {
      this.exec(Operation.housekeeping, encodeHousekeeping({ abandon_age_ms: p.chance(0.5) ? null : 200 }));
    } else {
      this.move();
    }
  }

  /** Compaction or repair: copies a value or a block to a new segment and points the state at it. */
  private move(): void {
    const blocks = [...this.store.large.allBlocks()];
    const values = [...this.store.all()].filter(([, e]) => e.chunks === undefined);
    if (blocks.length > 0 && (values.length === 0 || this.prng.chance(0.6))) {
      const block = this.prng.pick(blocks);
      this.store.large.relocateBlock(block.id, this.copy(block));
    } else if (values.length > 0) {
      const [key, entry] = this.prng.pick(values);
      this.store.relocate(key, this.copy(entry));
    }
  }

  private copy(from: { segment: number; offset: number; size: number }): { segment: number; offset: number } {
    const segment = this.next_segment++;
    const image = new Uint8Array(8 + from.size);
    image.set(this.read(from), 8);
    this.segments.set(segment, image);
    return { segment, offset: 8 };
  }

  /** The bytes a value or block names (unverified). */
  read(at: { segment: number; offset: number; size: number }): Uint8Array {
    return this.segments.get(at.segment)!.slice(at.offset, at.offset + at.size);
  }

  /** A state with chunked objects, metadata, open uploads with pending blocks. */
  run(steps: number): void {
    for (let i = 0; i < steps; i++) this.step();
    this.store.invariants();
  }
}

/** The logical state and locations of a store, comparable with toEqual. */
export function stateOf(store: ObjectStore): unknown {
  const large = store.large;
  const entries = [...store.all()].map(([key, e]): [string, ObjectEntry] => [key, { ...e }]);
  const uploads = large.allUploads().map((u) => ({ ...u, slots: [...u.slots].sort() }));
  const blocks = [...large.allBlocks()].sort((a, b) => a.id - b.id).map((b): Block => ({ ...b }));
  const segments = [...store.segments()].sort((a, b) => a - b);
  return {
    entries,
    uploads,
    blocks,
    segments,
    revision: store.revision,
    counters: [large.upload_counter, large.block_counter],
    bytes: [store.bytes, large.block_bytes],
  };
}

/** The logical state only (no locations): what a synced replica must agree on. */
export function logicalStateOf(store: ObjectStore): unknown {
  const full = stateOf(store) as { entries: [string, ObjectEntry][]; blocks: Block[]; segments?: number[] };
  return {
    ...full,
    entries: full.entries.map(([key, e]) => [key, { ...e, segment: 0, offset: 0 }]),
    blocks: full.blocks.map((b) => ({ ...b, segment: 0, offset: 0 })),
    segments: undefined,
  };
}
