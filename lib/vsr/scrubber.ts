/**
 * The scrubber's schedule: which values a replica reads back and verifies next. A value damaged at
 * rest (a latent sector error, a bit flip) is found only by reading it, so the replica walks its
 * namespace in key order, a few values per tick, and repairs what fails its checksum from a peer
 * while the other copies are still good, not first when a client reads it, possibly after another
 * replica lost its copy too (docs/STORAGE.md §10.8). The journal needs no scrubbing: prepares
 * leave it at the next checkpoint, and damaged ones are found by recovery and repair.
 *
 * This part only decides; the replica reads each key it is handed through its storage and queues a
 * damaged one for repair (value_repair.ts). The cursor lives in memory only: a restart starts a
 * new pass.
 */
import { assert } from "../util/assert.ts";

/** The scrubber reads and verifies this many values, or this many bytes, per tick (whichever
 * comes first): about 6 MB/s or 1,600 values/s at the real node's 10 ms tick, so 1 GiB of values
 * is verified every 3 minutes and 100,000 small ones every minute, a small share of a disk (and
 * of the CPU: each value is a pread and a checksum). */
export const scrub_values_per_tick = 16;
export const scrub_bytes_per_tick = 64 * 1024;
/** A new pass starts at most this often (10 s): a small namespace is not re-read 100 times a
 * second, which would be all cost (a pread and a checksum each) and no benefit. */
export const scrub_pass_interval_ticks_min = 1000;

export interface ScrubLimits {
  values_per_tick: number;
  bytes_per_tick: number;
  pass_interval_ticks_min: number;
}

export const scrub_limits: ScrubLimits = {
  values_per_tick: scrub_values_per_tick,
  bytes_per_tick: scrub_bytes_per_tick,
  pass_interval_ticks_min: scrub_pass_interval_ticks_min,
};

/** What the scrubber needs of the object index (the replica's ObjectStore). */
export interface ScrubIndex {
  readonly count: number;
  /** Up to limit keys after `after` in key order, and whether more follow. */
  list(prefix: string, after: string, limit: number): { keys: string[]; truncated: boolean };
  get(key: string): { readonly size: number } | undefined;
}

export interface ScrubStep {
  /** The keys to read and verify now, in key order. */
  readonly keys: readonly string[];
  /** Whether this step reached the end of the namespace (the next step starts a new pass). */
  readonly pass_completed: boolean;
}

/** Most ticks hand out nothing (between passes, or paying off a large value): no allocation. */
const idle: ScrubStep = Object.freeze({ keys: Object.freeze([]), pass_completed: false });

export class Scrubber {
  /** The key the scrubber handed out or skipped last ("" before the first of a pass). */
  private cursor = "";
  /** Bytes handed out beyond the rate so far: a 16 MiB value is paid off over the ticks after it. */
  private debt_bytes = 0;
  /** The tick from which the next pass may start. */
  private pass_next_tick = 0;

  constructor(private readonly limits: ScrubLimits = scrub_limits) {
    assert(
      limits.values_per_tick >= 1 && limits.bytes_per_tick >= 1 && limits.pass_interval_ticks_min >= 0,
      () => `scrub limits out of range: ${JSON.stringify(limits)}`,
    );
  }

  /**
   * Called once per tick, also on ticks the replica may not scrub (no space, a sync in progress,
   * not in normal status: `active` false), because the debt is paid off by time passing either
   * way. `repairing` names keys already queued for repair: they are passed over without being
   * read again, and cost nothing.
   */
  tick(now: number, active: boolean, index: ScrubIndex, repairing: (key: string) => boolean): ScrubStep {
    this.debt_bytes = Math.max(0, this.debt_bytes - this.limits.bytes_per_tick);
    if (!active || index.count === 0) return idle;
    if (this.cursor === "") {
      if (now < this.pass_next_tick) return idle;
      this.pass_next_tick = now + this.limits.pass_interval_ticks_min;
    }
    const { keys, truncated } = index.list("", this.cursor, this.limits.values_per_tick);
    assert(
      keys.length <= this.limits.values_per_tick,
      () => `scrub: the index listed ${keys.length} keys, asked for ${this.limits.values_per_tick}`,
    );
    const verify: string[] = [];
    for (const key of keys) {
      // A key not after the cursor would make a pass that never ends.
      assert(
        key > this.cursor,
        () => `scrub: the index listed ${JSON.stringify(key)} at or before the cursor ${JSON.stringify(this.cursor)}`,
      );
      if (this.debt_bytes >= this.limits.bytes_per_tick) return { keys: verify, pass_completed: false };
      this.cursor = key;
      if (repairing(key)) continue;
      const entry = index.get(key);
      assert(entry !== undefined, () => `scrub: the index listed ${JSON.stringify(key)} but holds no entry for it`);
      verify.push(key);
      this.debt_bytes += entry.size;
    }
    if (truncated) return { keys: verify, pass_completed: false };
    this.cursor = "";
    return { keys: verify, pass_completed: true };
  }
}
