/**
 * The replicated object namespace: key -> object entry, in memory; the values themselves stay on
 * disk where their prepare was journaled (docs/DESIGN.md §5), and an entry says where.
 *
 * The digest is a multiset hash (sum mod 2^64 of a hash per entry) over the logical state only
 * (key, version, size, time, value checksum), updated in O(1) per write, so replicas that lay their
 * files out differently still agree on it.
 */
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import { SortedKeys } from "./sorted_keys.ts";
import { key_size_max } from "../constants.ts";
import { LargeState, type Block, type Upload } from "./uploads.ts";

/** Where a value's bytes live: a journal (or compaction) segment and the byte offset in it. */
export interface ValueLocation {
  segment: number;
  offset: number;
}

export interface ObjectEntry extends ValueLocation {
  version: number;
  timestamp: number;
  size: number;
  /** Inline: xxh64 of the value. Chunked: the manifest checksum (LARGE_OBJECTS.md §5.1). */
  checksum: bigint;
  /** Present only for a chunked object (complete_upload); then segment and offset are 0. */
  chunks?: Chunks;
  /** Present only when the object carries metadata or an md5 (put_object, complete_upload). */
  meta?: EntryMeta;
}

/** A manifest: block ids in object order and the cumulative end offset of each (for ranged reads). */
export interface Chunks {
  blocks: readonly number[];
  ends: Float64Array;
}

export interface EntryMeta {
  content_type: string;
  user_meta: Uint8Array;
  md5: Uint8Array | null;
}

/** What a delta checkpoint writes: each changed entry, block and upload, or null when it is gone. */
export interface StoreChanges {
  objects: Map<string, ObjectEntry | null>;
  blocks: Map<number, Block | null>;
  uploads: Map<number, Upload | null>;
}

const u64_mask = (1n << 64n) - 1n;

export class ObjectStore {
  private readonly entries = new Map<string, ObjectEntry>();
  private readonly sorted = new SortedKeys();
  /** Version of the last write; versions are a revision counter over the whole namespace. */
  revision = 0;
  private digest_sum = 0n;
  /** Bytes of live values. */
  bytes = 0;
  /** Per segment, the keys whose values live in it and their bytes: which segments a checkpoint
   * needs, and how much compaction would move out of one. */
  private readonly segment_keys = new Map<number, Set<string>>();
  private readonly segment_bytes = new Map<number, number>();
  /** Entries set, moved or removed (null) since takeChanges: what a delta checkpoint writes. */
  private changes = new Map<string, ObjectEntry | null>();
  /** Blocks, uploads and their counters (LARGE_OBJECTS.md §4). */
  readonly large = new LargeState();

  get count(): number {
    return this.entries.size;
  }

  get(key: string): ObjectEntry | undefined {
    return this.entries.get(key);
  }

  /** A chunked entry's blocks must already be owned by key (LargeState.adopt); the blocks of the
   * version it replaces die. */
  set(key: string, entry: ObjectEntry): void {
    assert(entry.version > 0, "object version must be positive");
    assert(entry.chunks === undefined || (entry.segment === 0 && entry.offset === 0), "a chunked entry has no location");
    const old = this.entries.get(key);
    if (old !== undefined) this.unaccount(key, old);
    else this.sorted.insert(key);
    this.entries.set(key, entry);
    this.account(key, entry);
    this.digest_sum = (this.digest_sum + entryHash(key, entry)) & u64_mask;
    this.bytes += entry.size;
    if (entry.version > this.revision) this.revision = entry.version;
    this.changes.set(key, entry);
  }

  /** Points an entry at a new copy of the same bytes (compaction, repair); logical state
   * unchanged. The entry is replaced, never changed in place (a checkpoint being served may hold
   * the old one). */
  relocate(key: string, location: ValueLocation): void {
    const old = this.entries.get(key);
    assert(old !== undefined && old.chunks === undefined, "relocate of a missing key or of a chunked object (relocateBlock)");
    this.unlocate(key, old);
    const entry: ObjectEntry = { ...old, segment: location.segment, offset: location.offset };
    this.entries.set(key, entry);
    this.account(key, entry);
    this.changes.set(key, entry);
  }

  remove(key: string): ObjectEntry | undefined {
    const old = this.entries.get(key);
    if (old === undefined) return undefined;
    this.unaccount(key, old);
    this.entries.delete(key);
    this.sorted.remove(key);
    this.changes.set(key, null);
    return old;
  }

  private unaccount(key: string, entry: ObjectEntry): void {
    this.digest_sum = (this.digest_sum - entryHash(key, entry)) & u64_mask;
    this.bytes -= entry.size;
    if (entry.chunks !== undefined) this.large.freeObjectBlocks(key, entry.chunks.blocks);
    else this.unlocate(key, entry);
  }

  private account(key: string, entry: ObjectEntry): void {
    if (entry.chunks !== undefined) return; // its blocks are accounted by id in LargeState
    let keys = this.segment_keys.get(entry.segment);
    if (keys === undefined) this.segment_keys.set(entry.segment, (keys = new Set()));
    keys.add(key);
    this.segment_bytes.set(entry.segment, (this.segment_bytes.get(entry.segment) ?? 0) + entry.size);
  }

  private unlocate(key: string, entry: ObjectEntry): void {
    const keys = this.segment_keys.get(entry.segment);
    keys?.delete(key);
    if (keys !== undefined && keys.size === 0) {
      this.segment_keys.delete(entry.segment);
      this.segment_bytes.delete(entry.segment);
    } else {
      this.segment_bytes.set(entry.segment, (this.segment_bytes.get(entry.segment) ?? 0) - entry.size);
    }
  }

  /** Segments holding at least one live value or block. */
  segments(): Set<number> {
    const all = new Set(this.segment_keys.keys());
    for (const segment of this.large.segments()) all.add(segment);
    return all;
  }

  /** Keys whose values live in a segment (compaction moves them out). */
  keysIn(segment: number): string[] {
    return [...(this.segment_keys.get(segment) ?? [])];
  }

  /** Blocks whose bytes live in a segment (compaction moves them with LargeState.relocateBlock). */
  blocksIn(segment: number): number[] {
    return this.large.blocksIn(segment);
  }

  liveBytesIn(segment: number): number {
    return (this.segment_bytes.get(segment) ?? 0) + this.large.liveBytesIn(segment);
  }

  /** What changed since the last call (null: removed): entries, blocks and uploads, which a delta
   * checkpoint writes; and forgets it. */
  takeChanges(): StoreChanges {
    const objects = this.changes;
    this.changes = new Map();
    return { objects, ...this.large.takeChanges() };
  }

  /**
   * Loading (a checkpoint chain, a state sync, after LargeState's restoreCounters, restoreUpload
   * and restoreBlock; then restoreDone): installs a version as recorded. A chunked entry claims its blocks, and its
   * ends are computed from their sizes. false if the record does not fit the state (a block
   * missing or owned twice, sizes that do not add up): the caller treats its source as damaged.
   */
  restoreEntry(key: string, recorded: ObjectEntry): boolean {
    assert(!this.entries.has(key), () => `restore of ${key} twice`);
    if (!Number.isSafeInteger(recorded.version) || recorded.version < 1) return false;
    let entry = recorded;
    if (recorded.chunks !== undefined) {
      const { blocks } = recorded.chunks;
      const ends = new Float64Array(blocks.length);
      let end = 0;
      for (let i = 0; i < blocks.length; i++) {
        const block = this.large.claimBlock(blocks[i]!, key);
        if (block === null) return false;
        ends[i] = end += block.size;
      }
      if (end !== recorded.size || recorded.segment !== 0 || recorded.offset !== 0) return false;
      entry = { ...recorded, chunks: { blocks, ends } };
    }
    this.set(key, entry);
    return true;
  }

  /** Ends a load: every block has an owner, and nothing restored counts as a change. */
  restoreDone(): boolean {
    this.changes = new Map();
    return this.large.restoreDone();
  }

  list(prefix: string, after: string, limit: number): { keys: string[]; truncated: boolean } {
    return this.sorted.range(prefix, after, limit);
  }

  /** Every entry in key order (checkpoints, state sync). */
  all(): IterableIterator<[string, ObjectEntry]> {
    // An iterator object, not a generator: a checkpoint base walks every entry, and the generator
    // (over the sorted keys' own) cost about 75 ns per entry, most of the walk.
    const keys = this.sorted.all();
    const entries = this.entries;
    const iterator: IterableIterator<[string, ObjectEntry]> = {
      next(): IteratorResult<[string, ObjectEntry]> {
        const key = keys.next();
        return key.done === true ? { done: true, value: undefined } : { done: false, value: [key.value, entries.get(key.value)!] };
      },
      [Symbol.iterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  /** Multiset hash of the entries; the checkpoint digest mixes in the revision and sessions. */
  digest(): bigint {
    return this.digest_sum;
  }

  /**
   * Checks the whole state (tests; O(state)): every chunked entry's ends ascend and add up to its
   * size, its blocks' sizes match, every block has exactly one owner, the counters are above every
   * id, byte counts and digests match a recomputation.
   */
  invariants(): void {
    let sum = 0n;
    let bytes = 0;
    const object_blocks: [string, readonly number[]][] = [];
    // Runs at every checkpoint of every simulated replica: conditions first, and an assert with its
    // message only for an entry that fails.
    for (const [key, entry] of this.entries) {
      if (!(entry.version >= 1 && entry.version <= this.revision)) assert(false, `${key}: version ${entry.version} above the revision`);
      sum += entryHash(key, entry);
      bytes += entry.size;
      if (entry.chunks === undefined) {
        if (this.segment_keys.get(entry.segment)?.has(key) !== true) assert(false, `${key}: not accounted in segment ${entry.segment}`);
        continue;
      }
      const { blocks, ends } = entry.chunks;
      assert(blocks.length === ends.length, () => `${key}: ${blocks.length} blocks, ${ends.length} ends`);
      let end = 0;
      for (let i = 0; i < blocks.length; i++) {
        const id = blocks[i]!;
        const block = this.large.block(id);
        if (block === undefined) assert(false, `${key}: missing block ${id}`);
        if (ends[i] !== end + block.size) assert(false, `${key}: end ${i} is ${ends[i]}, blocks add up to ${end + block.size}`);
        end = ends[i]!;
      }
      assert(end === entry.size, () => `${key}: blocks add up to ${end}, size ${entry.size}`);
      object_blocks.push([key, blocks]);
    }
    assert((sum & u64_mask) === this.digest_sum, "store digest does not match its entries");
    assert(bytes === this.bytes && this.sorted.size === this.entries.size, "store bytes or sorted keys do not add up");
    this.large.invariants(object_blocks);
  }
}

/** A scratch buffer per hashed length (32 bytes of fields plus the key), made once each. */
const entry_scratch = new Uint8Array(32 + key_size_max);
const entry_view = new DataView(entry_scratch.buffer);
const entry_lengths: Uint8Array[] = [];

function entryHash(key: string, entry: ObjectEntry): bigint {
  if (entry.chunks !== undefined || entry.meta !== undefined) return largeEntryHash(key, entry);
  entry_view.setFloat64(0, entry.version, true);
  entry_view.setFloat64(8, entry.size, true);
  entry_view.setBigUint64(16, entry.checksum, true);
  entry_view.setFloat64(24, entry.timestamp, true);
  for (let i = 0; i < key.length; i++) entry_scratch[32 + i] = key.charCodeAt(i);
  const n = 32 + key.length;
  const bytes = (entry_lengths[n] ??= entry_scratch.subarray(0, n));
  return checksum(bytes);
}

const large_fixed = 56;
const large_scratch = new Uint8Array(large_fixed + key_size_max + 255 + 2048);
const large_view = new DataView(large_scratch.buffer);
const flag_md5 = 1;
const flag_metadata = 2;

/** A chunked or metadata-carrying entry (LARGE_OBJECTS.md §9.1): XXH64(f64 version | f64 size |
 * u64 checksum | f64 timestamp | u8 kind | u8 flags | u8 ct_size | u8 0 | u16 meta_size | u16 0 |
 * 16 B md5 | key | content type | user meta). Flags as in the object header: bit 0 md5, bit 1
 * metadata. Legacy entries (inline, neither) keep entryHash's formula. */
function largeEntryHash(key: string, entry: ObjectEntry): bigint {
  const meta = entry.meta;
  const ct = meta?.content_type ?? "";
  const user = meta?.user_meta ?? new Uint8Array(0);
  const has_metadata = ct.length > 0 || user.length > 0;
  large_view.setFloat64(0, entry.version, true);
  large_view.setFloat64(8, entry.size, true);
  large_view.setBigUint64(16, entry.checksum, true);
  large_view.setFloat64(24, entry.timestamp, true);
  large_scratch[32] = entry.chunks === undefined ? 0 : 1;
  large_scratch[33] = (meta?.md5 != null ? flag_md5 : 0) | (has_metadata ? flag_metadata : 0);
  large_scratch[34] = ct.length;
  large_scratch[35] = 0;
  large_view.setUint16(36, user.length, true);
  large_view.setUint16(38, 0, true);
  large_scratch.fill(0, 40, 56);
  if (meta?.md5 != null) large_scratch.set(meta.md5, 40);
  let o = large_fixed;
  for (let i = 0; i < key.length; i++) large_scratch[o++] = key.charCodeAt(i);
  for (let i = 0; i < ct.length; i++) large_scratch[o++] = ct.charCodeAt(i);
  large_scratch.set(user, o);
  return checksum(large_scratch.subarray(0, o + user.length));
}
