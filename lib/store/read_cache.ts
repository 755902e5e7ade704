/**
 * The primary's cache of get replies (Config.read_cache_bytes_max). A get of a value read
 * recently is answered with the reply body built then (ObjectInfo and value, lib/store/operations.ts
 * encodeGetReply) instead of reading the disk again: no pread, no buffer, no copy, and no checksum
 * to compute, since the body's checksum was kept with it (lib/util/checksum.ts keepChecksum).
 *
 * What still checks what (docs/DESIGN.md §5, docs/STORAGE.md §6):
 * - Every body enters the cache from a disk read that verified the value against its checksum, and
 *   leaves it after read_cache_serves_max answers, so a hot value is read back from disk and
 *   verified at least once every that many gets. Damage at rest under a cached value is found then,
 *   or by the scrubber, which always reads the disk; either repairs it from a peer.
 * - A reply's body checksum is computed when the body enters the cache, right after the verified
 *   read; the client checks every reply against it, then checks the value against the checksum
 *   the reply names (the one it was written with). Bytes that changed in the cache's memory fail
 *   the first check, so they are never taken for the value; serving them stops at the next re-read.
 * - An entry is served only while the object's index entry has the version, timestamp, size and
 *   checksum it was read at: a newer write, a delete or an installed checkpoint makes it a miss.
 *
 * Bounded by bytes (bodies, keys and a per-entry overhead), least recently served evicted first.
 * No clock, no I/O: part of the deterministic core, and off in the simulator (0 bytes).
 */
import { assert } from "../util/assert.ts";
import { keepChecksum } from "../util/checksum.ts";
import type { ObjectEntry } from "./object_store.ts";

/** An entry is dropped, so its value is read back and verified, after answering this many gets. */
export const read_cache_serves_max = 64;

/** Bytes counted per entry beyond its body and key (the Map entry and the record). */
export const read_cache_entry_overhead_bytes = 128;

/** One body may take at most this share of the cache (1/4): one large value must not empty it. */
const body_share_max = 4;

interface Cached {
  version: number;
  timestamp: number;
  size: number;
  checksum: bigint;
  body: Uint8Array;
  serves: number;
  bytes: number;
}

export class ReadCache {
  /** Gets answered from the cache, and gets that read the disk (a miss) while it was on. */
  hits = 0;
  misses = 0;
  /** In order of last use: the first is evicted first. */
  private readonly entries = new Map<string, Cached>();
  private bytes_used = 0;

  constructor(readonly bytes_max: number) {
    assert(Number.isSafeInteger(bytes_max) && bytes_max > 0, () => `read cache of ${bytes_max} bytes`);
  }

  get bytes(): number {
    return this.bytes_used;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The get reply body for key at exactly this index entry, or null (read the disk, then put). */
  get(key: string, entry: ObjectEntry): Uint8Array | null {
    const cached = this.entries.get(key);
    if (cached === undefined) {
      this.misses += 1;
      return null;
    }
    if (
      cached.version !== entry.version ||
      cached.checksum !== entry.checksum ||
      cached.size !== entry.size ||
      cached.timestamp !== entry.timestamp ||
      cached.serves >= read_cache_serves_max
    ) {
      this.remove(key, cached);
      this.misses += 1;
      return null;
    }
    cached.serves += 1;
    this.hits += 1;
    // Most recently used goes last (Map keeps insertion order).
    this.entries.delete(key);
    this.entries.set(key, cached);
    return cached.body;
  }

  /** Keeps a get reply body just built from a verified read of `entry`; nobody writes it again. */
  put(key: string, entry: ObjectEntry, body: Uint8Array): void {
    const bytes = body.length + key.length + read_cache_entry_overhead_bytes;
    if (bytes * body_share_max > this.bytes_max) return;
    const previous = this.entries.get(key);
    if (previous !== undefined) this.remove(key, previous);
    keepChecksum(body);
    this.entries.set(key, {
      version: entry.version,
      timestamp: entry.timestamp,
      size: entry.size,
      checksum: entry.checksum,
      body,
      serves: 0,
      bytes,
    });
    this.bytes_used += bytes;
    for (const [oldest, cached] of this.entries) {
      if (this.bytes_used <= this.bytes_max) break;
      this.remove(oldest, cached);
    }
    assert(this.bytes_used <= this.bytes_max, () => `read cache holds ${this.bytes_used} bytes, limit ${this.bytes_max}`);
  }

  private remove(key: string, cached: Cached): void {
    this.entries.delete(key);
    this.bytes_used -= cached.bytes;
  }
}
