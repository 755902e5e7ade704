/**
 * Values and blocks found damaged on disk, fetched again from peers (docs/PROTOCOL.md §4.4,
 * request_value and value, request_block and block). A read that finds a value damaged (a get on
 * the primary, the scrubber, compaction) queues the key here with the version and checksum of its
 * entry; a damaged block is queued by its id and checksum. This part decides which repairs are
 * outstanding, whom to ask, and whether what a peer sent is what was wanted. The replica sends the
 * requests and writes the repaired bytes back through its storage.
 */
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import type { Prng } from "../util/prng.ts";

/** Damaged values and blocks queued for repair at once (both count against it). */
export const value_repairs_max = 64;

/** The entry a repair is for: a peer's copy is taken only if it has this version and checksum. */
export interface WantedValue {
  readonly version: number;
  readonly checksum: bigint;
}

/** A request_value to send: `op` = version, `context` = checksum, body = the key. */
export interface ValueRequest extends WantedValue {
  readonly key: string;
}

/** What the replica's index holds for a key now (its ObjectStore). */
export interface ValueIndex {
  get(key: string): WantedValue | undefined;
}

/** A request_block to send: `op` = block id, `context` = its checksum, empty body. */
export interface BlockRequest {
  readonly id: number;
  readonly checksum: bigint;
}

/** What the replica's block table holds for an id now (ObjectStore.large). */
export interface BlockIndex {
  block(id: number): { readonly size: number; readonly checksum: bigint } | undefined;
}

/** Of a value a peer sent: the one wanted; not wanted (no repair of that key at that version, or
 * the key has moved on: a late or duplicate answer, ignored); or wanted but its bytes do not match
 * the checksum (dropped as a protocol violation). */
export type ValueVerdict = "accept" | "unwanted" | "mismatch";

/** A random replica other than this one: a repair asks a different peer on each retry, so one
 * peer that lost its copy too does not stall it. */
export function valueRepairPeer(replica: number, replica_count: number, random: Prng): number {
  assert(
    replica_count >= 2 && replica >= 0 && replica < replica_count,
    () => `value repair: no peer for replica ${replica} of ${replica_count}`,
  );
  let peer = random.int(replica_count - 1);
  if (peer >= replica) peer += 1;
  assert(peer !== replica && peer >= 0 && peer < replica_count, () => `value repair: replica ${replica} picked peer ${peer}`);
  return peer;
}

export class ValueRepairs {
  /** Keys whose value was found damaged, with the entry it had then. */
  private readonly wanted = new Map<string, WantedValue>();
  /** Blocks found damaged, by id, with their checksum. With `wanted`: at most `max` in all. */
  private readonly wanted_blocks = new Map<number, bigint>();

  constructor(private readonly max: number = value_repairs_max) {
    assert(max >= 1, () => `value repairs: max ${max} out of range`);
  }

  /** Repairs outstanding, of values and of blocks. */
  get size(): number {
    return this.wanted.size + this.wanted_blocks.size;
  }

  has(key: string): boolean {
    return this.wanted.has(key);
  }

  hasBlock(id: number): boolean {
    return this.wanted_blocks.has(id);
  }

  /**
   * A read found the value of key (at entry) damaged: the request to send, or null when the key is
   * queued already or the queue is full (then a later read or scrub pass finds it again).
   */
  damaged(key: string, entry: WantedValue): ValueRequest | null {
    if (this.wanted.has(key) || this.size >= this.max) return null;
    this.wanted.set(key, { version: entry.version, checksum: entry.checksum });
    assert(this.size <= this.max, () => `value repairs: ${this.size} queued, at most ${this.max}`);
    return { key, version: entry.version, checksum: entry.checksum };
  }

  /** A read found block id damaged: the request to send, or null when it is queued already or the
   * queue is full (a later read or scrub pass finds it again). */
  damagedBlock(id: number, block_checksum: bigint): BlockRequest | null {
    if (this.wanted_blocks.has(id) || this.size >= this.max) return null;
    this.wanted_blocks.set(id, block_checksum);
    assert(this.size <= this.max, () => `value repairs: ${this.size} queued, at most ${this.max}`);
    return { id, checksum: block_checksum };
  }

  /**
   * The repairs still outstanding, to ask for again (an answer may have been lost), in the order
   * they were queued. Forgets those whose key was deleted or has another version since: the damaged
   * version is no longer part of the state, so no peer is asked for it.
   */
  outstanding(index: ValueIndex): ValueRequest[] {
    const requests: ValueRequest[] = [];
    for (const [key, want] of this.wanted) {
      const entry = index.get(key);
      if (entry === undefined || entry.version !== want.version) this.wanted.delete(key);
      else requests.push({ key, version: want.version, checksum: want.checksum });
    }
    // What is still wanted is exactly what is asked for again: a kept entry never asked for would never be repaired.
    assert(
      requests.length === this.wanted.size && requests.length <= this.max,
      () => `value repairs: ${requests.length} requests for ${this.wanted.size} wanted`,
    );
    return requests;
  }

  /**
   * Whether the value a peer sent for key (claiming version and checksum) is the one wanted: a
   * repair of that key at that version is outstanding, and the index entry `current` still has
   * that version and checksum, and the bytes match it.
   */
  verdict(key: string, version: number, claimed_checksum: bigint, value: Uint8Array, current: WantedValue | undefined): ValueVerdict {
    const want = this.wanted.get(key);
    if (
      want === undefined ||
      current === undefined ||
      want.version !== version ||
      current.version !== version ||
      current.checksum !== claimed_checksum
    )
      return "unwanted";
    // Checked only once wanted: hashing a value nobody asked for would be work for a forger.
    if (checksum(value) !== current.checksum) return "mismatch";
    // Both records are ours: a version names one value, so what we wanted is what the index now holds.
    assert(
      want.checksum === current.checksum,
      () => `value repair of ${JSON.stringify(key)} version ${version}: wanted and current checksums differ`,
    );
    return "accept";
  }

  /** The accepted value was written back: the repair is done. */
  repaired(key: string): void {
    const removed = this.wanted.delete(key);
    assert(removed, () => `value repairs: ${JSON.stringify(key)} repaired but not outstanding`);
  }

  /**
   * The block repairs still outstanding, to ask for again, in the order they were queued. Forgets
   * those whose block died since (its object was overwritten or deleted, its upload closed): block
   * ids are never reused, so a dead one is no longer part of the state and no peer is asked for it.
   */
  outstandingBlocks(index: BlockIndex): BlockRequest[] {
    const requests: BlockRequest[] = [];
    for (const [id, want] of this.wanted_blocks) {
      const block = index.block(id);
      if (block === undefined) this.wanted_blocks.delete(id);
      else requests.push({ id, checksum: want });
    }
    assert(
      requests.length === this.wanted_blocks.size && this.size <= this.max,
      () => `value repairs: ${requests.length} block requests for ${this.wanted_blocks.size} wanted`,
    );
    return requests;
  }

  /**
   * Whether the bytes a peer sent for block id (claiming a checksum) are the ones wanted: a repair
   * of that id is outstanding, the block is still live with that checksum, and the bytes match it
   * (size and checksum).
   */
  blockVerdict(id: number, claimed_checksum: bigint, data: Uint8Array, current: BlockIndex): ValueVerdict {
    const want = this.wanted_blocks.get(id);
    const block = current.block(id);
    if (want === undefined || block === undefined || block.checksum !== claimed_checksum) return "unwanted";
    // A block's checksum is fixed for its life (ids are never reused): what we queued is what it is.
    assert(want === block.checksum, () => `block repair of ${id}: wanted and current checksums differ`);
    // Checked only once wanted, as for values.
    if (data.length !== block.size || checksum(data) !== block.checksum) return "mismatch";
    return "accept";
  }

  /** The accepted block was written back: the repair is done. */
  repairedBlock(id: number): void {
    const removed = this.wanted_blocks.delete(id);
    assert(removed, () => `value repairs: block ${id} repaired but not outstanding`);
  }
}
