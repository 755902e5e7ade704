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

/** Where a value's bytes live: a journal (or compaction) segment and the byte offset in it. */
export interface ValueLocation {
  segment: number;
  offset: number;
}

export interface ObjectEntry extends ValueLocation {
  version: number;
  timestamp: number;
  size: number;
  checksum: bigint;
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

  get count(): number {
    return this.entries.size;
  }

  get(key: string): ObjectEntry | undefined {
    return this.entries.get(key);
  }

  set(key: string, entry: ObjectEntry): void {
    assert(entry.version > 0, "object version must be positive");
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
    assert(old !== undefined, "relocate of a missing key");
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
    this.unlocate(key, entry);
  }

  private account(key: string, entry: ObjectEntry): void {
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

  /** Segments holding at least one live value. */
  segments(): Set<number> {
    return new Set(this.segment_keys.keys());
  }

  /** Keys whose values live in a segment (compaction moves them out). */
  keysIn(segment: number): string[] {
    return [...(this.segment_keys.get(segment) ?? [])];
  }

  liveBytesIn(segment: number): number {
    return this.segment_bytes.get(segment) ?? 0;
  }

  /** The entries changed since the last call (null: removed), and forgets them. */
  takeChanges(): Map<string, ObjectEntry | null> {
    const changes = this.changes;
    this.changes = new Map();
    return changes;
  }

  list(prefix: string, after: string, limit: number): { keys: string[]; truncated: boolean } {
    return this.sorted.range(prefix, after, limit);
  }

  /** Every entry in key order (checkpoints, state sync). */
  *all(): IterableIterator<[string, ObjectEntry]> {
    for (const key of this.sorted.all()) yield [key, this.entries.get(key)!];
  }

  /** Multiset hash of the entries; the checkpoint digest mixes in the revision and sessions. */
  digest(): bigint {
    return this.digest_sum;
  }
}

/** A scratch buffer per hashed length (32 bytes of fields plus the key), made once each. */
const entry_scratch = new Uint8Array(32 + key_size_max);
const entry_view = new DataView(entry_scratch.buffer);
const entry_lengths: Uint8Array[] = [];

function entryHash(key: string, entry: ObjectEntry): bigint {
  entry_view.setFloat64(0, entry.version, true);
  entry_view.setFloat64(8, entry.size, true);
  entry_view.setBigUint64(16, entry.checksum, true);
  entry_view.setFloat64(24, entry.timestamp, true);
  for (let i = 0; i < key.length; i++) entry_scratch[32 + i] = key.charCodeAt(i);
  const n = 32 + key.length;
  const bytes = (entry_lengths[n] ??= entry_scratch.subarray(0, n));
  return checksum(bytes);
}
