/**
 * Values at rest: the scrubber's reads, compaction, and the repair of values found damaged on disk
 * from peers (docs/PROTOCOL.md §4.4, request_value and value). It owns the scrubber's schedule
 * (scrubber.ts) and the repairs outstanding (value_repair.ts); the replica tells it when it may
 * scrub or compact (neither while the disk is full or a sync is in progress; scrubbing in normal
 * status only, compaction in normal or recovering), because those facts belong to other parts of
 * the replica.
 */
import { assert } from "../util/assert.ts";
import type { Message } from "../net/codec.ts";
import type { Config } from "../constants.ts";
import type { ObjectEntry, ObjectStore } from "../store/object_store.ts";
import type { Block } from "../store/uploads.ts";
import { isNoSpace, type Storage } from "./storage.ts";
import { Scrubber } from "./scrubber.ts";
import { ValueRepairs, valueRepairPeer, value_repairs_max, type ValueRequest } from "./value_repair.ts";
import { buildRequestValue, buildValue, readRequestValue, readValue, type Envelope } from "./messages.ts";
import type { Env, Status } from "./env.ts";

/** Compaction runs every this many ticks and moves at most this many bytes each time (~10 MB/s),
 * so it never stalls requests. */
export const compaction_interval_ticks = 10;
export const compaction_bytes_per_round = 1024 * 1024;

/** What the value keeper reads of its replica, and the few effects it asks of it. */
export interface ValueKeeperHost {
  readonly replica: number;
  readonly config: Pick<Config, "replica_count">;
  readonly env: Pick<Env, "sendToReplica" | "random" | "log">;
  readonly storage: Pick<Storage, "readValue" | "writeValue" | "compactionCandidate">;
  /** Read afresh on every call: a state sync replaces the whole index. */
  readonly store: ObjectStore;
  readonly status: Status;
  readonly view: number;
  readonly stats: { bytes_compacted: number; values_scrubbed: number; scrub_passes: number };
  envelope(view: number): Envelope;
  /** The disk is full: the replica refuses writes until a probe shows space again. */
  diskFull(error: Error): void;
  drop(message: Message, why: string): void;
}

export class ValueKeeper {
  /** Which values to verify next (cursor, byte budget, pass interval): scrubber.ts. */
  private readonly scrubber = new Scrubber();
  /** Keys whose value this replica found damaged, with what it expects (value_repair.ts): bounded. */
  private readonly value_repairs = new ValueRepairs();

  constructor(private readonly host: ValueKeeperHost) {
    // Value repair asks a peer: a replica that is not one of its cluster's has none to ask.
    assert(host.replica >= 0 && host.replica < host.config.replica_count, () => `value keeper for replica ${host.replica}`);
  }

  /** Repairs outstanding (only tests read it). */
  get repairing(): number {
    assert(this.value_repairs.size <= value_repairs_max, () => `replica ${this.host.replica}: ${this.value_repairs.size} value repairs`);
    return this.value_repairs.size;
  }

  /**
   * Reads the values the scrubber names (a few in key order per tick) and verifies their checksums
   * (readValue), so a value damaged at rest is repaired from a peer while the other copies are
   * still good (scrubber.ts says why). Called every tick, `active` or not: the scrubber's byte
   * budget is paid off by time passing either way.
   */
  scrub(ticks: number, active: boolean): void {
    const host = this.host;
    const step = this.scrubber.tick(ticks, active, host.store, (key) => this.value_repairs.has(key));
    assert(active || step.keys.length === 0, () => `replica ${host.replica}: scrubbing ${step.keys.length} values while it may not`);
    for (const key of step.keys) {
      this.readValue(key, host.store.get(key)!);
      host.stats.values_scrubbed += 1;
    }
    if (step.pass_completed) host.stats.scrub_passes += 1;
  }

  /** A block's bytes, checksum-verified; null if unreadable or damaged. (Repair of damaged blocks:
   * issue 14 step 5.) */
  readBlock(block: Block): Uint8Array | null {
    const { size, checksum, segment, offset } = block;
    return this.host.storage.readValue({ version: 1, timestamp: 0, size, checksum, segment, offset });
  }

  /** Copies the live values of a mostly-dead segment forward, a bounded amount every
   * compaction_interval_ticks, so the segment can be deleted once no retained checkpoint refers to
   * it (docs/STORAGE.md §10.6). Physical only: the logical state and its digest do not change.
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
  }

  /** Writes a value (compacted or repaired) to the head segment and points the index at it.
   * False when the disk is full: the replica has then gone to no_space and the caller stops. */
  private relocateValue(key: string, value: Uint8Array): boolean {
    assert(
      this.host.store.get(key) !== undefined,
      () => `replica ${this.host.replica}: relocating ${JSON.stringify(key)}, not in the index`,
    );
    try {
      this.host.store.relocate(key, this.host.storage.writeValue(value));
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

  private requestValue(request: ValueRequest): void {
    const host = this.host;
    assert(this.value_repairs.has(request.key), () => `replica ${host.replica}: asking for ${JSON.stringify(request.key)}, not queued`);
    const message = buildRequestValue(host.envelope(host.view), { version: request.version, checksum: request.checksum, key: request.key });
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

  /** Retries value repairs whose answer was lost; forgets those whose key has moved on. */
  repairValues(): void {
    for (const request of this.value_repairs.outstanding(this.host.store)) this.requestValue(request);
    assert(this.value_repairs.size <= value_repairs_max, () => `replica ${this.host.replica}: ${this.value_repairs.size} value repairs`);
  }

  invariants(): void {
    assert(
      this.value_repairs.size <= value_repairs_max,
      () => `replica ${this.host.replica}: ${this.value_repairs.size} value repairs queued, at most ${value_repairs_max}`,
    );
  }
}
