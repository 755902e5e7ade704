/**
 * The replicated state of large objects (docs/LARGE_OBJECTS.md §4): the block table, open upload
 * sessions with their pending slots, and the two counters. A block is owned by exactly one pending
 * slot of one upload or by one object version (its key); an owner's end kills its blocks (§8).
 *
 * Logical state (ids, sizes, checksums, owners, uploads, counters) is hashed into uploads_sum
 * (§9.1); a block's location (segment, offset) is local to the replica and is not. Blocks owned by
 * objects are covered by the manifest checksum in their entry's hash, so only pending blocks are
 * hashed here. Segment accounting covers every block, so checkpoints and compaction find them.
 *
 * Deterministic: no clock, no randomness; time is always a prepare's timestamp given by the caller.
 */
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import {
  block_size_max_ceiling_bytes,
  key_size_max,
  object_size_max_bytes,
  part_blocks_max,
  upload_parts_max,
  uploads_open_max_ceiling,
} from "../constants.ts";
import type { ObjectMetadata } from "./large_bodies.ts";

/** Where bytes live: a journal (or compaction) segment and the byte offset in it. */
export interface BlockLocation {
  segment: number;
  offset: number;
}

/** A pending slot of an upload: (part, attempt, index). */
export interface Slot {
  upload_id: number;
  part: number;
  attempt: bigint;
  index: number;
}

export interface Block extends BlockLocation {
  id: number;
  size: number;
  checksum: bigint;
  /** The pending slot that owns it; null when an object version owns it. */
  slot: Slot | null;
  /** The key of the object version that owns it; null while a slot owns it. */
  key: string | null;
}

export interface Upload {
  id: number;
  key: string;
  /** Timestamps of prepares (log time), never a clock. */
  created: number;
  touched: number;
  declared_size: number | null;
  metadata: ObjectMetadata;
  /** slotKey(part, attempt, index) -> block id. */
  slots: Map<string, number>;
  /** Bytes of every block its slots hold (all attempts): bounded by 2 × object_size_max. */
  stored_bytes: number;
}

export function slotKey(part: number, attempt: bigint, index: number): string {
  assert(part >= 1 && part <= upload_parts_max && index >= 0 && index < part_blocks_max, "slot in range");
  return `${part}:${attempt}:${index}`;
}

const u64_mask = (1n << 64n) - 1n;
/** The digest's stand-in for "no declared size" (§9.1). */
const no_declared_size = 2 ** 53 - 1;

export class LargeState {
  /** Last ids handed out; never reused (u64 < 2^53). */
  upload_counter = 0;
  block_counter = 0;
  private readonly blocks = new Map<number, Block>();
  private readonly uploads = new Map<number, Upload>();
  /** Sum mod 2^64 of the hashes of the uploads and of the pending blocks (§9.1). */
  private uploads_sum = 0n;
  /** Per segment, the blocks whose bytes live in it and their bytes. */
  private readonly segment_blocks = new Map<number, Set<number>>();
  private readonly segment_bytes = new Map<number, number>();
  /** Bytes of every live block (pending or owned by an object). */
  block_bytes = 0;
  /** Blocks set, replaced or moved (the new record) or killed (null), and uploads opened, touched
   * or closed (null), since takeChanges: what a delta checkpoint writes. Bounded by what changed. */
  private block_changes = new Map<number, Block | null>();
  private upload_changes = new Map<number, Upload | null>();

  get upload_count(): number {
    return this.uploads.size;
  }

  get block_count(): number {
    return this.blocks.size;
  }

  upload(id: number): Upload | undefined {
    return this.uploads.get(id);
  }

  block(id: number): Block | undefined {
    return this.blocks.get(id);
  }

  /** Open uploads in id order (checkpoints, state sync, tests). */
  allUploads(): Upload[] {
    return [...this.uploads.values()].sort((a, b) => a.id - b.id);
  }

  /** Every live block, pending or owned by an object (a base checkpoint writes them all). */
  allBlocks(): IterableIterator<Block> {
    return this.blocks.values();
  }

  /** The ids of an upload's pending blocks, ascending (the order the sync stream sends them in). */
  pendingBlocks(upload: Upload): number[] {
    assert(this.uploads.get(upload.id) === upload, "pending blocks of an upload that is not open");
    return [...upload.slots.values()].sort((a, b) => a - b);
  }

  /** The blocks and uploads changed since the last call (null: gone), and forgets them. An upload
   * in the map is the live object (it is changed in place by touch and its slots), so it is read
   * before the next execution; a block never changes in place. */
  takeChanges(): { blocks: Map<number, Block | null>; uploads: Map<number, Upload | null> } {
    const changes = { blocks: this.block_changes, uploads: this.upload_changes };
    this.block_changes = new Map();
    this.upload_changes = new Map();
    return changes;
  }

  digest(): bigint {
    return this.uploads_sum;
  }

  /** Opens an upload with the next id; the caller checked uploads_open_max. */
  createUpload(key: string, timestamp: number, declared_size: number | null, metadata: ObjectMetadata, open_max: number): Upload {
    assert(open_max >= 1 && open_max <= uploads_open_max_ceiling && this.uploads.size < open_max, "uploads within their limit");
    assert(declared_size === null || (Number.isSafeInteger(declared_size) && declared_size <= object_size_max_bytes), "declared size");
    assert(key.length >= 1 && key.length <= key_size_max, "key size");
    const upload: Upload = {
      id: ++this.upload_counter,
      key,
      created: timestamp,
      touched: timestamp,
      declared_size,
      metadata,
      slots: new Map(),
      stored_bytes: 0,
    };
    this.uploads.set(upload.id, upload);
    this.uploads_sum = (this.uploads_sum + uploadHash(upload)) & u64_mask;
    this.upload_changes.set(upload.id, upload);
    return upload;
  }

  /** Marks an upload as used at this log time (expiry counts from here). */
  touch(upload: Upload, timestamp: number): void {
    assert(this.uploads.get(upload.id) === upload, "touch of an upload that is not open");
    this.uploads_sum = (this.uploads_sum - uploadHash(upload)) & u64_mask;
    upload.touched = timestamp;
    this.uploads_sum = (this.uploads_sum + uploadHash(upload)) & u64_mask;
    this.upload_changes.set(upload.id, upload);
  }

  /**
   * Puts a block in a slot: a new block id, whatever the slot held before dies. If the slot already
   * holds a block with this checksum, nothing changes (the duplicate's bytes are dead at once) and
   * the id held is returned with written = false.
   */
  writeBlock(slot: Slot, size: number, block_checksum: bigint, location: BlockLocation): { id: number; written: boolean } {
    const upload = this.uploads.get(slot.upload_id);
    assert(upload !== undefined, "write_block to an upload that is not open");
    assert(Number.isSafeInteger(size) && size >= 1, () => `block of ${size} bytes`);
    const key = slotKey(slot.part, slot.attempt, slot.index);
    const held = upload.slots.get(key);
    if (held !== undefined) {
      const old = this.blocks.get(held)!;
      if (old.checksum === block_checksum && old.size === size) return { id: held, written: false };
      this.kill(old);
    }
    const block: Block = {
      id: ++this.block_counter,
      size,
      checksum: block_checksum,
      segment: location.segment,
      offset: location.offset,
      slot,
      key: null,
    };
    this.blocks.set(block.id, block);
    upload.slots.set(key, block.id);
    upload.stored_bytes += size;
    this.uploads_sum = (this.uploads_sum + pendingBlockHash(block)) & u64_mask;
    this.locate(block);
    this.block_changes.set(block.id, block);
    return { id: block.id, written: true };
  }

  /** Moves pending blocks of one upload to the object version of key (complete_upload). */
  adopt(upload: Upload, ids: readonly number[], key: string): void {
    assert(this.uploads.get(upload.id) === upload && upload.key === key, "adopt into the upload's own key");
    for (const id of ids) {
      const old = this.blocks.get(id);
      assert(
        old !== undefined && old.slot !== null && old.slot.upload_id === upload.id,
        () => `block ${id} is not pending in ${upload.id}`,
      );
      this.uploads_sum = (this.uploads_sum - pendingBlockHash(old)) & u64_mask;
      upload.slots.delete(slotKey(old.slot.part, old.slot.attempt, old.slot.index));
      upload.stored_bytes -= old.size;
      // Replaced, not changed in place: a checkpoint being written may hold the old record.
      const adopted: Block = { ...old, slot: null, key };
      this.blocks.set(id, adopted);
      this.block_changes.set(id, adopted);
    }
  }

  /** Kills the blocks of an object version (overwrite, delete). */
  freeObjectBlocks(key: string, ids: readonly number[]): void {
    for (const id of ids) {
      const block = this.blocks.get(id);
      assert(block !== undefined && block.key === key, () => `block ${id} is not owned by its object`);
      this.kill(block);
    }
  }

  /** Closes an upload (complete, abort, expiry): every block its slots still hold dies. */
  removeUpload(upload: Upload): void {
    assert(this.uploads.get(upload.id) === upload, "remove of an upload that is not open");
    for (const id of [...upload.slots.values()]) this.kill(this.blocks.get(id)!);
    assert(upload.slots.size === 0 && upload.stored_bytes === 0, "an upload's blocks all died with it");
    this.uploads_sum = (this.uploads_sum - uploadHash(upload)) & u64_mask;
    this.uploads.delete(upload.id);
    this.upload_changes.set(upload.id, null);
  }

  /**
   * The uploads housekeeping expires at a prepare's timestamp: touched + age ≤ timestamp, oldest
   * touched first (ties by id), at most max. Found by a scan: uploads are bounded by
   * uploads_open_max, and prepare timestamps need not be monotonic, so no insertion order is trusted.
   */
  expired(timestamp: number, age_ms: number, max: number): Upload[] {
    assert(max >= 1 && age_ms >= 1, "expiry bounds");
    const due: Upload[] = [];
    for (const u of this.uploads.values()) if (u.touched + age_ms <= timestamp) due.push(u);
    due.sort((a, b) => a.touched - b.touched || a.id - b.id);
    return due.slice(0, max);
  }

  /** Points a block at a new copy of the same bytes (compaction, repair); logical state unchanged. */
  relocateBlock(id: number, location: BlockLocation): void {
    const old = this.blocks.get(id);
    assert(old !== undefined, () => `relocate of missing block ${id}`);
    this.unlocate(old);
    const block = { ...old, segment: location.segment, offset: location.offset };
    this.blocks.set(id, block);
    this.locate(block);
    this.block_changes.set(id, block);
  }

  // Loading (a checkpoint chain, a state sync): the state is rebuilt from records that came from a
  // disk or a peer, so bad records answer false (the caller treats the source as damaged) instead
  // of asserting. Order: restoreCounters, every upload, every block, then each object version
  // claims its blocks (ObjectStore.restoreEntry), then ObjectStore.restoreDone.

  /** Starts a load on an empty state: the counters as recorded. */
  restoreCounters(upload_counter: number, block_counter: number): boolean {
    assert(
      this.blocks.size === 0 && this.uploads.size === 0 && this.upload_counter === 0 && this.block_counter === 0,
      "restore into an empty state",
    );
    if (!Number.isSafeInteger(upload_counter) || !Number.isSafeInteger(block_counter) || upload_counter < 0 || block_counter < 0)
      return false;
    this.upload_counter = upload_counter;
    this.block_counter = block_counter;
    return true;
  }

  /** An open upload as recorded, without slots (its pending blocks fill them). */
  restoreUpload(record: Upload): boolean {
    const { id, key, created, touched, declared_size } = record;
    if (!Number.isSafeInteger(id) || id < 1 || id > this.upload_counter || this.uploads.has(id)) return false;
    if (this.uploads.size >= uploads_open_max_ceiling || key.length < 1 || key.length > key_size_max || !(created <= touched)) return false;
    if (declared_size !== null && !(Number.isSafeInteger(declared_size) && declared_size >= 0 && declared_size <= object_size_max_bytes))
      return false;
    const upload: Upload = { ...record, slots: new Map(), stored_bytes: 0 };
    this.uploads.set(id, upload);
    this.uploads_sum = (this.uploads_sum + uploadHash(upload)) & u64_mask;
    return true;
  }

  /** A block as recorded: a pending one fills its upload's slot (restored before it); one an object
   * owns (slot null) waits for its object version to claim it. */
  restoreBlock(record: Block): boolean {
    const { id, size, slot } = record;
    if (!Number.isSafeInteger(id) || id < 1 || id > this.block_counter || this.blocks.has(id) || record.key !== null) return false;
    if (!Number.isSafeInteger(size) || size < 1 || size > block_size_max_ceiling_bytes) return false;
    const block: Block = { ...record };
    if (slot !== null) {
      const upload = this.uploads.get(slot.upload_id);
      if (upload === undefined || slot.part < 1 || slot.part > upload_parts_max || slot.index < 0 || slot.index >= part_blocks_max)
        return false;
      const key = slotKey(slot.part, slot.attempt, slot.index);
      if (upload.slots.has(key)) return false;
      upload.slots.set(key, id);
      upload.stored_bytes += size;
      this.uploads_sum = (this.uploads_sum + pendingBlockHash(block)) & u64_mask;
    }
    this.blocks.set(id, block);
    this.locate(block);
    return true;
  }

  /** Gives an object version its restored block: the block, or null if it is missing, pending or
   * already claimed. */
  claimBlock(id: number, key: string): Block | null {
    const old = this.blocks.get(id);
    if (old === undefined || old.slot !== null || old.key !== null) return null;
    const block: Block = { ...old, key };
    this.blocks.set(id, block);
    return block;
  }

  /** Ends a load: every block has an owner (an object version claimed each unowned one), and
   * nothing restored counts as a change. */
  restoreDone(): boolean {
    this.block_changes = new Map();
    this.upload_changes = new Map();
    for (const block of this.blocks.values()) if (block.slot === null && block.key === null) return false;
    return true;
  }

  segments(): IterableIterator<number> {
    return this.segment_blocks.keys();
  }

  blocksIn(segment: number): number[] {
    return [...(this.segment_blocks.get(segment) ?? [])];
  }

  liveBytesIn(segment: number): number {
    return this.segment_bytes.get(segment) ?? 0;
  }

  private kill(block: Block): void {
    assert(this.blocks.get(block.id) === block, () => `kill of block ${block.id}, not live`);
    if (block.slot !== null) {
      const upload = this.uploads.get(block.slot.upload_id)!;
      assert(upload.slots.get(slotKey(block.slot.part, block.slot.attempt, block.slot.index)) === block.id, "slot names its block");
      upload.slots.delete(slotKey(block.slot.part, block.slot.attempt, block.slot.index));
      upload.stored_bytes -= block.size;
      this.uploads_sum = (this.uploads_sum - pendingBlockHash(block)) & u64_mask;
    }
    this.blocks.delete(block.id);
    this.unlocate(block);
    this.block_changes.set(block.id, null);
  }

  private locate(block: Block): void {
    let ids = this.segment_blocks.get(block.segment);
    if (ids === undefined) this.segment_blocks.set(block.segment, (ids = new Set()));
    assert(!ids.has(block.id), "a block is located once");
    ids.add(block.id);
    this.segment_bytes.set(block.segment, (this.segment_bytes.get(block.segment) ?? 0) + block.size);
    this.block_bytes += block.size;
  }

  private unlocate(block: Block): void {
    const ids = this.segment_blocks.get(block.segment);
    assert(ids !== undefined && ids.delete(block.id), () => `block ${block.id} not in segment ${block.segment}`);
    if (ids.size === 0) {
      this.segment_blocks.delete(block.segment);
      this.segment_bytes.delete(block.segment);
    } else {
      this.segment_bytes.set(block.segment, this.segment_bytes.get(block.segment)! - block.size);
    }
    this.block_bytes -= block.size;
  }

  /**
   * Checks the state against itself: every block has exactly one owner, and that owner names it;
   * counters are above every id; stored and segment bytes add up; the digest sum matches a
   * recomputation. object_blocks: every object version's block ids, by key (from ObjectStore).
   */
  invariants(object_blocks: Iterable<[string, readonly number[]]>): void {
    assert(this.uploads.size <= uploads_open_max_ceiling, () => `${this.uploads.size} uploads open, above any limit`);
    const owned = new Set<number>();
    let sum = 0n;
    // Runs at every checkpoint of every simulated replica: conditions first, and an assert with its
    // message only for what fails.
    for (const [id, u] of this.uploads) {
      assert(u.id === id && id >= 1 && id <= this.upload_counter, () => `upload ${id} above the counter ${this.upload_counter}`);
      assert(u.created <= u.touched, () => `upload ${id} touched before it was created`);
      let bytes = 0;
      for (const [key, block_id] of u.slots) {
        const b = this.blocks.get(block_id);
        if (b === undefined) assert(false, `upload ${id} slot ${key} names missing block ${block_id}`);
        if (!(b.slot !== null && b.key === null && b.slot.upload_id === id))
          assert(false, `block ${block_id} is not owned by upload ${id}`);
        if (slotKey(b.slot.part, b.slot.attempt, b.slot.index) !== key) assert(false, `block ${block_id} names another slot`);
        if (owned.has(block_id)) assert(false, `block ${block_id} has two owners`);
        owned.add(block_id);
        bytes += b.size;
        sum += pendingBlockHash(b);
      }
      assert(bytes === u.stored_bytes, () => `upload ${id} stored_bytes ${u.stored_bytes}, blocks add up to ${bytes}`);
      sum += uploadHash(u);
    }
    for (const [key, ids] of object_blocks) {
      for (const block_id of ids) {
        const b = this.blocks.get(block_id);
        if (b === undefined) assert(false, `object ${key} names missing block ${block_id}`);
        if (!(b.slot === null && b.key === key)) assert(false, `block ${block_id} is not owned by object ${key}`);
        if (owned.has(block_id)) assert(false, `block ${block_id} has two owners`);
        owned.add(block_id);
      }
    }
    assert(owned.size === this.blocks.size, () => `${this.blocks.size - owned.size} blocks have no owner`);
    assert((sum & u64_mask) === this.uploads_sum, "uploads digest does not match the uploads");
    const by_segment = new Map<number, number>();
    let total = 0;
    for (const [id, b] of this.blocks) {
      if (!(b.id === id && id >= 1 && id <= this.block_counter)) assert(false, `block ${id} above the counter ${this.block_counter}`);
      if (this.segment_blocks.get(b.segment)?.has(id) !== true) assert(false, `block ${id} not accounted in segment ${b.segment}`);
      by_segment.set(b.segment, (by_segment.get(b.segment) ?? 0) + b.size);
      total += b.size;
    }
    assert(total === this.block_bytes, () => `block_bytes ${this.block_bytes}, blocks add up to ${total}`);
    for (const [segment, ids] of this.segment_blocks) {
      assert(ids.size > 0 && by_segment.get(segment) === this.segment_bytes.get(segment), () => `segment ${segment} bytes do not add up`);
    }
  }
}

const upload_fixed = 40;
const upload_scratch = new Uint8Array(upload_fixed + key_size_max + 255 + 2048);
const upload_view = new DataView(upload_scratch.buffer);

/** XXH64(u64 id | f64 created | f64 touched | f64 declared_size or 2^53−1 | u8 ct_size | u8 0 |
 * u16 meta_size | u32 0 | key | content type | user meta) (§9.1). */
function uploadHash(u: Upload): bigint {
  const ct = u.metadata.content_type;
  const meta = u.metadata.user_meta;
  upload_view.setBigUint64(0, BigInt(u.id), true);
  upload_view.setFloat64(8, u.created, true);
  upload_view.setFloat64(16, u.touched, true);
  upload_view.setFloat64(24, u.declared_size ?? no_declared_size, true);
  upload_view.setUint32(32, ct.length, true); // u8 ct_size, u8 0, then the u16 below
  upload_view.setUint16(34, meta.length, true);
  upload_view.setUint32(36, 0, true);
  let o = upload_fixed;
  for (let i = 0; i < u.key.length; i++) upload_scratch[o++] = u.key.charCodeAt(i);
  for (let i = 0; i < ct.length; i++) upload_scratch[o++] = ct.charCodeAt(i);
  upload_scratch.set(meta, o);
  o += meta.length;
  return checksum(upload_scratch.subarray(0, o));
}

const block_scratch = new Uint8Array(48);
const block_view = new DataView(block_scratch.buffer);

/** XXH64(u64 block id | u64 upload id | u32 part | u32 index | u64 attempt | u64 checksum | f64 size). */
function pendingBlockHash(b: Block): bigint {
  assert(b.slot !== null, "only pending blocks are hashed");
  block_view.setBigUint64(0, BigInt(b.id), true);
  block_view.setBigUint64(8, BigInt(b.slot.upload_id), true);
  block_view.setUint32(16, b.slot.part, true);
  block_view.setUint32(20, b.slot.index, true);
  block_view.setBigUint64(24, b.slot.attempt, true);
  block_view.setBigUint64(32, b.checksum, true);
  block_view.setFloat64(40, b.size, true);
  return checksum(block_scratch);
}
