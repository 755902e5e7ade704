/**
 * One large put of the simulated workload (docs/LARGE_OBJECTS.md §12.1): the object's bytes,
 * derived from its tag so that any range read back names the put it came from; its parts, each
 * cut into blocks of its own size; and which blocks the cluster has acknowledged. The client
 * (sim/client.ts) sends what this plans, through its lanes, in a shuffled order with duplicates.
 */
import type { Prng } from "../lib/util/prng.ts";
import { checksum } from "../lib/util/checksum.ts";
import { assert } from "../lib/util/assert.ts";
import { Condition } from "../lib/store/operations.ts";
import { encodeCompleteUpload, encodeCreateUpload, encodeWriteBlock, partChecksum, type UploadPart } from "../lib/store/large_bodies.ts";
import { objectBytes } from "./object_bytes.ts";

export interface PlannedBlock {
  part: number;
  index: number;
  attempt: bigint;
  /** Offset of its first byte in the object. */
  start: number;
  size: number;
  checksum: bigint;
  acked: boolean;
}

/** Blocks a simulated large object has at most (its size stays a few KiB). */
export const planned_blocks_max = 24;

const no_meta = { content_type: "", user_meta: new Uint8Array(0) };

export class UploadPlan {
  readonly data: Uint8Array;
  readonly blocks: PlannedBlock[] = [];
  upload_id = 0;
  /** Blocks waiting to be sent (indexes into blocks); a block may appear twice (a duplicate). */
  private readonly todo: number[] = [];

  constructor(
    private readonly prng: Prng,
    readonly key: Uint8Array,
    readonly tag: string,
    readonly condition: Condition,
    readonly if_version: number,
  ) {
    const head = tag.length + 1;
    this.data = objectBytes(tag, head + prng.int(64 * planned_blocks_max));
  }

  createBody(): Uint8Array {
    return encodeCreateUpload({
      key: this.key,
      condition: this.condition,
      if_version: this.if_version,
      declared_size: this.prng.chance(0.3) ? this.data.length : null,
      metadata: no_meta,
    });
  }

  /** Cuts the object into 1-3 parts, each into blocks of one size up to the cluster's limit (and
   * few enough), and queues them in a shuffled order with a few duplicates. */
  cut(upload_id: number, block_size_max: number): void {
    assert(this.blocks.length === 0 && upload_id > 0, "an upload is cut once");
    this.upload_id = upload_id;
    const size = this.data.length;
    const parts = Math.min(size, 1 + this.prng.int(3));
    const bounds = [0];
    for (let p = 1; p < parts; p++) bounds.push(Math.max(bounds[p - 1]! + 1, Math.min(size - (parts - p), this.prng.int(size))));
    bounds.push(size);
    for (let p = 0; p < parts; p++) {
      const [from, to] = [bounds[p]!, bounds[p + 1]!];
      const floor = Math.ceil((to - from) / planned_blocks_max) * parts;
      const block = Math.min(block_size_max, Math.max(floor, 1 + this.prng.int(block_size_max)));
      const attempt = this.prng.u64() | 1n;
      for (let start = from, index = 0; start < to; start += block, index++) {
        const bytes = this.data.subarray(start, Math.min(start + block, to));
        this.blocks.push({ part: p + 1, index, attempt, start, size: bytes.length, checksum: checksum(bytes), acked: false });
      }
    }
    this.todo.push(...this.prng.shuffle(this.blocks.map((_, i) => i)));
    for (let i = 0; i < this.blocks.length; i++) if (this.prng.chance(0.1)) this.todo.splice(this.prng.int(this.todo.length + 1), 0, i);
  }

  /** The next block to send, or null when none waits (some may still be in flight). */
  next(): PlannedBlock | null {
    while (this.todo.length > 0) {
      const b = this.blocks[this.todo.shift()!]!;
      if (!b.acked || this.prng.chance(0.3)) return b;
    }
    return null;
  }

  /** A block to send again (the complete said it is missing). */
  again(b: PlannedBlock): void {
    this.todo.push(this.blocks.indexOf(b));
  }

  get waiting(): number {
    return this.todo.length;
  }

  get allAcked(): boolean {
    return this.blocks.every((b) => b.acked);
  }

  blockBody(b: PlannedBlock): Uint8Array {
    const data = this.data.subarray(b.start, b.start + b.size);
    return encodeWriteBlock({
      upload_id: this.upload_id,
      part_number: b.part,
      block_index: b.index,
      attempt: b.attempt,
      checksum: b.checksum,
      data,
    });
  }

  parts(): UploadPart[] {
    const parts: UploadPart[] = [];
    for (const b of this.blocks) {
      let part = parts[b.part - 1];
      if (part === undefined)
        parts.push((part = { part_number: b.part, block_count: 0, attempt: b.attempt, part_size: 0, part_checksum: 0n }));
      part.block_count += 1;
      part.part_size += b.size;
    }
    for (const part of parts)
      part.part_checksum = partChecksum(this.blocks.filter((b) => b.part === part.part_number).map((b) => b.checksum));
    return parts;
  }

  completeBody(): Uint8Array {
    return encodeCompleteUpload({
      upload_id: this.upload_id,
      condition: this.condition,
      if_version: this.if_version,
      declared_size: this.prng.chance(0.3) ? this.data.length : null,
      md5: null,
      parts: this.parts(),
    });
  }

  /** The blocks a complete names, for the checker: "upload:part:attempt:index" and checksum. */
  slots(): [string, bigint][] {
    return this.blocks.map((b) => [slotName(this.upload_id, b.part, b.attempt, b.index), b.checksum]);
  }
}

/** How the checker names a block slot. */
export function slotName(upload_id: number, part: number, attempt: bigint, index: number): string {
  return `${upload_id}:${part}:${attempt}:${index}`;
}
