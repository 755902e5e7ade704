/**
 * Values and blocks at rest: the scrubber's reads, compaction, and the repair of values and blocks
 * found damaged on disk from peers (docs/PROTOCOL.md §4.4: request_value and value by key,
 * request_block and block by block id). It owns the scrubber's schedule
 * (scrubber.ts) and the repairs outstanding (value_repair.ts); the replica tells it when it may
 * scrub or compact (neither while the disk is full or a sync is in progress; scrubbing in normal
 * status only, compaction in normal or recovering), because those facts belong to other parts of
 * the replica.
 */
import { assert } from "../util/assert.ts";
import type { Message } from "../net/codec.ts";
import type { Config } from "../constants.ts";
import type { ObjectEntry, ObjectStore, ValueLocation } from "../store/object_store.ts";
import type { Block } from "../store/uploads.ts";
import { isNoSpace, type Storage } from "./storage.ts";
import { Scrubber, scrub_limits } from "./scrubber.ts";
import { ValueRepairs, valueRepairPeer, value_repairs_max, type BlockRequest, type ValueRequest } from "./value_repair.ts";
import {
  buildBlock,
  buildRequestBlock,
  buildRequestValue,
  buildValue,
  readBlock,
  readRequestBlock,
  readRequestValue,
  readValue,
  type Envelope,
} from "./messages.ts";
import type { Env, Status } from "./env.ts";

/** Compaction runs every this many ticks and moves about this many bytes each time (~10 MB/s),
 * so it never stalls requests. A round moves values and blocks while any of its budget is left, so
 * the one that crosses it moves whole: a round moves at most the budget plus one value or block,
 * and a 4 MiB block (or 16 MiB value) moves at all (docs/LARGE_OBJECTS.md §8). */
export const compaction_interval_ticks = 10;
export const compaction_bytes_per_round = 1024 * 1024;

/** What the value keeper reads of its replica, and the few effects it asks of it. */
export interface ValueKeeperHost {
  readonly replica: number;
  readonly config: Pick<Config, "replica_count" | "scrub_bytes_per_tick">;
  readonly env: Pick<Env, "sendToReplica" | "random" | "log">;
  readonly storage: Pick<Storage, "readValue" | "writeValue" | "compactionCandidate">;
  /** Read afresh on every call: a state sync replaces the whole index. */
  readonly store: ObjectStore;
  readonly status: Status;
  readonly view: number;
  /** values_scrubbed counts blocks too: each is one read and one checksum, as a value is. */
  readonly stats: { bytes_compacted: number; values_scrubbed: number; scrub_passes: number };
  envelope(view: number): Envelope;
  /** The disk is full: the replica refuses writes until a probe shows space again. */
  diskFull(error: Error): void;
  drop(message: Message, why: string): void;
}

export class ValueKeeper {
  /** Which values to verify next (cursor, byte budget, pass interval): scrubber.ts. */
  private readonly scrubber: Scrubber;
  /** Keys and blocks whose bytes this replica found damaged, with what it expects (value_repair.ts): bounded. */
  private readonly value_repairs = new ValueRepairs();
  /** Answers the scrubber's question "queued for repair already?" without a closure per tick. */
  private readonly repairing_now = {
    value: (key: string): boolean => this.value_repairs.has(key),
    block: (id: number): boolean => this.value_repairs.hasBlock(id),
  };

  constructor(private readonly host: ValueKeeperHost) {
    // Value repair asks a peer: a replica that is not one of its cluster's has none to ask.
    assert(host.replica >= 0 && host.replica < host.config.replica_count, () => `value keeper for replica ${host.replica}`);
    this.scrubber = new Scrubber({ ...scrub_limits, bytes_per_tick: host.config.scrub_bytes_per_tick });
  }

  /** Repairs outstanding, of values and blocks (only tests read it). */
  get repairing(): number {
    assert(this.value_repairs.size <= value_repairs_max, () => `replica ${this.host.replica}: ${this.value_repairs.size} value repairs`);
    return this.value_repairs.size;
  }

  /**
   * Reads the values and blocks the scrubber names (a few per tick) and verifies their checksums
   * (readValue, readBlock), so bytes damaged at rest are repaired from a peer while the other
   * copies are still good (scrubber.ts says why). Called every tick, `active` or not: the
   * scrubber's byte budget is paid off by time passing either way.
   */
  scrub(ticks: number, active: boolean): void {
    const host = this.host;
    const step = this.scrubber.tick(ticks, active, host.store, this.repairing_now);
    assert(
      active || step.keys.length + step.blocks.length === 0,
      () => `replica ${host.replica}: scrubbing ${step.keys.length} values and ${step.blocks.length} blocks while it may not`,
    );
    for (const key of step.keys) {
      this.readValue(key, host.store.get(key)!);
      host.stats.values_scrubbed += 1;
    }
    for (const id of step.blocks) {
      this.readBlock(host.store.large.block(id)!);
      host.stats.values_scrubbed += 1;
    }
    if (step.pass_completed) host.stats.scrub_passes += 1;
  }

  /** Copies the live values and blocks of a mostly-dead segment forward, a bounded amount every
   * compaction_interval_ticks, so the segment can be deleted once no retained checkpoint refers to
   * it (docs/STORAGE.md §10.6). Physical only: the logical state and its digest do not change.
   * Every copy is of bytes read back and verified against their checksum: a damaged value or block
   * is repaired from a peer (into another segment) instead, never copied forward.
   * `active`: the replica may write (not full, not syncing, normal or recovering). */
  compact(ticks: number, active: boolean): void {
    assert(ticks >= 0, () => `replica ${this.host.replica}: compaction at tick ${ticks}`);
    if (ticks % compaction_interval_ticks !== 0 || !active) return;
    const host = this.host;
    const segment = host.storage.compactionCandidate(host.store);
    if (segment === null) return;
    let budget = compaction_bytes_per_round;
    for (const key of host.store.keysIn(segment)) {
      if (budget <= 0) return;
      const entry = host.store.get(key)!;
      const value = this.readValue(key, entry);
      if (value === null) continue; // damaged: repaired from a peer into a new segment instead
      if (!this.relocateValue(key, value)) return;
      host.stats.bytes_compacted += entry.size;
      budget -= entry.size;
    }
    for (const id of host.store.blocksIn(segment)) {
      if (budget <= 0) return;
      const block = host.store.large.block(id)!;
      assert(
        block.segment === segment,
        () => `replica ${host.replica}: block ${id} listed in segment ${segment}, lives in ${block.segment}`,
      );
      const data = this.readBlock(block);
      if (data === null) continue; // damaged: repaired from a peer into a new segment instead
      if (!this.relocateBlock(id, data)) return;
      host.stats.bytes_compacted += block.size;
      budget -= block.size;
    }
  }

  /** Writes a value (compacted or repaired) to the head segment and points the index at it.
   * False when the disk is full: the replica has then gone to no_space and the caller stops. */
  private relocateValue(key: string, value: Uint8Array): boolean {
    assert(
      this.host.store.get(key) !== undefined,
      () => `replica ${this.host.replica}: relocating ${JSON.stringify(key)}, not in the index`,
    );
    return this.writeBack(value, (location) => this.host.store.relocate(key, location));
  }

  /** Writes a block's bytes (compacted or repaired) to the head segment and points the block
   * table at them. False when the disk is full, as relocateValue. */
  private relocateBlock(id: number, data: Uint8Array): boolean {
    const block = this.host.store.large.block(id);
    assert(
      block !== undefined && block.size === data.length,
      () => `replica ${this.host.replica}: relocating block ${id} (${data.length} bytes), not in the block table at that size`,
    );
    return this.writeBack(data, (location) => this.host.store.large.relocateBlock(id, location));
  }

  /** Writes bytes with storage.writeValue and hands their new location to `point`; false (and
   * the replica in no_space) when the disk is full. */
  private writeBack(bytes: Uint8Array, point: (location: ValueLocation) => void): boolean {
    try {
      point(this.host.storage.writeValue(bytes));
      return true;
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      this.host.diskFull(error);
      return false;
    }
  }

  /** Reads a value (verified against its checksum); a damaged one is queued for repair, and a
   * read of it is answered `unavailable` (the client retries). */
  readValue(key: string, entry: ObjectEntry): Uint8Array | null {
    const host = this.host;
    const value = host.storage.readValue(entry);
    if (value !== null) return value;
    const request = this.value_repairs.damaged(key, entry);
    if (request !== null) {
      host.env.log("warn", `replica ${host.replica}: value of version ${entry.version} is damaged on disk: repairing it from a peer`);
      this.requestValue(request);
    }
    assert(this.value_repairs.size <= value_repairs_max, () => `replica ${host.replica}: ${this.value_repairs.size} value repairs queued`);
    return null;
  }

  /** Reads a block whole (verified against its checksum); a damaged one is queued for repair by
   * its id, and a read of it is answered `unavailable` (the client retries). */
  readBlock(block: Block): Uint8Array | null {
    const host = this.host;
    const data = host.storage.readValue(block);
    assert(data === null || data.length === block.size, () => `replica ${host.replica}: block ${block.id} read back at another size`);
    if (data !== null) return data;
    const request = this.value_repairs.damagedBlock(block.id, block.checksum);
    if (request !== null) {
      host.env.log("warn", `replica ${host.replica}: block ${block.id} is damaged on disk: repairing it from a peer`);
      this.requestBlock(request);
    }
    assert(this.value_repairs.size <= value_repairs_max, () => `replica ${host.replica}: ${this.value_repairs.size} value repairs queued`);
    return null;
  }

  private requestBlock(request: BlockRequest): void {
    const host = this.host;
    assert(this.value_repairs.hasBlock(request.id), () => `replica ${host.replica}: asking for block ${request.id}, not queued`);
    this.askPeer(buildRequestBlock(host.envelope(host.view), request));
  }

  private requestValue(request: ValueRequest): void {
    const host = this.host;
    assert(this.value_repairs.has(request.key), () => `replica ${host.replica}: asking for ${JSON.stringify(request.key)}, not queued`);
    this.askPeer(buildRequestValue(host.envelope(host.view), { version: request.version, checksum: request.checksum, key: request.key }));
  }

  /** Sends a repair request to a random peer: each retry asks another (value_repair.ts). */
  private askPeer(message: Message): void {
    const host = this.host;
    host.env.sendToReplica(valueRepairPeer(host.replica, host.config.replica_count, host.env.random), message);
  }

  onRequestValue(message: Message): void {
    const host = this.host;
    const h = message.header;
    assert(h.replica !== host.replica, () => `replica ${host.replica}: a request_value from itself`);
    if (host.status === "blank") return;
    const request = readRequestValue(message);
    if (typeof request === "string") return; // silently, as always: a repair request is no claim
    const { key } = request;
    const entry = host.store.get(key);
    if (entry === undefined || entry.version !== request.version || entry.checksum !== request.checksum) return;
    // A chunked object's bytes are its blocks, repaired by id (request_block): it has no value to send.
    if (entry.chunks !== undefined) return;
    const value = host.storage.readValue(entry);
    if (value === null) return;
    host.env.sendToReplica(
      h.replica,
      buildValue(host.envelope(host.view), { version: entry.version, checksum: entry.checksum, key, value }),
    );
  }

  onValue(message: Message): void {
    const host = this.host;
    const h = message.header;
    assert(h.replica !== host.replica, () => `replica ${host.replica}: a value from itself`);
    const repaired = readValue(message);
    if (typeof repaired === "string") return host.drop(message, repaired);
    const { key, value } = repaired;
    const verdict = this.value_repairs.verdict(key, repaired.version, repaired.checksum, value, host.store.get(key));
    if (verdict === "unwanted") return;
    if (verdict === "mismatch") return host.drop(message, "repaired value does not match its checksum");
    if (!this.relocateValue(key, value)) return;
    // Relocation is physical: the index still names the version and checksum that were wanted.
    assert(
      host.store.get(key)?.checksum === repaired.checksum,
      () => `replica ${host.replica}: repaired ${JSON.stringify(key)} but the index names another value`,
    );
    this.value_repairs.repaired(key);
    host.env.log("info", `replica ${host.replica}: repaired a damaged value (version ${h.op}) from replica ${h.replica}`);
  }

  onRequestBlock(message: Message): void {
    const host = this.host;
    const h = message.header;
    assert(h.replica !== host.replica, () => `replica ${host.replica}: a request_block from itself`);
    if (host.status === "blank") return;
    const request = readRequestBlock(message);
    if (typeof request === "string") return; // silently, as a request_value
    const block = host.store.large.block(request.id);
    if (block === undefined || block.checksum !== request.checksum) return;
    const data = host.storage.readValue(block);
    if (data === null) return;
    host.env.sendToReplica(h.replica, buildBlock(host.envelope(host.view), { id: block.id, checksum: block.checksum, data }));
  }

  onBlock(message: Message): void {
    const host = this.host;
    const h = message.header;
    assert(h.replica !== host.replica, () => `replica ${host.replica}: a block from itself`);
    const repaired = readBlock(message);
    if (typeof repaired === "string") return host.drop(message, repaired);
    const verdict = this.value_repairs.blockVerdict(repaired.id, repaired.checksum, repaired.data, host.store.large);
    if (verdict === "unwanted") return;
    if (verdict === "mismatch") return host.drop(message, "repaired block does not match its checksum");
    if (!this.relocateBlock(repaired.id, repaired.data)) return;
    this.value_repairs.repairedBlock(repaired.id);
    host.env.log("info", `replica ${host.replica}: repaired a damaged block (${repaired.id}) from replica ${h.replica}`);
  }

  /** Retries value and block repairs whose answer was lost; forgets those whose key has moved on
   * or whose block has died. */
  repairValues(): void {
    for (const request of this.value_repairs.outstanding(this.host.store)) this.requestValue(request);
    for (const request of this.value_repairs.outstandingBlocks(this.host.store.large)) this.requestBlock(request);
    assert(this.value_repairs.size <= value_repairs_max, () => `replica ${this.host.replica}: ${this.value_repairs.size} value repairs`);
  }

  invariants(): void {
    assert(
      this.value_repairs.size <= value_repairs_max,
      () => `replica ${this.host.replica}: ${this.value_repairs.size} value repairs queued, at most ${value_repairs_max}`,
    );
  }
}
