/**
 * The replicated object namespace: key -> object entry, in memory; the values themselves stay on
 * disk where their prepare was journaled (DESIGN §5), and an entry says where.
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
    this.digest_sum = (this.digest_sum + entryHash(key, entry)) & u64_mask;
    this.bytes += entry.size;
    if (entry.version > this.revision) this.revision = entry.version;
  }

  /** Points an entry at a new copy of the same bytes (compaction, repair); logical state unchanged. */
  relocate(key: string, location: ValueLocation): void {
    const entry = this.entries.get(key);
    assert(entry !== undefined, "relocate of a missing key");
    entry.segment = location.segment;
    entry.offset = location.offset;
  }

  remove(key: string): ObjectEntry | undefined {
    const old = this.entries.get(key);
    if (old === undefined) return undefined;
    this.unaccount(key, old);
    this.entries.delete(key);
    this.sorted.remove(key);
    return old;
  }

  private unaccount(key: string, entry: ObjectEntry): void {
    this.digest_sum = (this.digest_sum - entryHash(key, entry)) & u64_mask;
    this.bytes -= entry.size;
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
