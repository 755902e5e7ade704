/**
 * Whether this replica's disk has room (docs/STORAGE.md §12). A write that fails for lack of space
 * puts the replica in no_space: it refuses new writes (reads go on), and every
 * space_probe_interval_ticks it asks storage whether a batch would fit again. Probing, not retrying
 * writes, because a retried write that fails again is a second failure to handle mid-operation.
 * What the replica does about it (a primary abdicates, at most once per
 * no_space_abdicate_interval_ticks; queued requests are prepared once space is back) stays in
 * replica.ts; a full primary still prepares space-freeing writes (primary.ts).
 */
import { assert } from "../util/assert.ts";
import type { Env } from "./env.ts";
import { isNoSpace, type Storage } from "./storage.ts";

/** Ticks between probes while the disk is full (1 s at the default 10 ms tick). */
export const space_probe_interval_ticks = 100;
/** A full primary abdicates at most once in this many ticks of being full (10 s): when every
 * replica's disk is full, views would otherwise pass from one to the next forever, and none would
 * lead long enough to take the deletes that free space. */
export const no_space_abdicate_interval_ticks = 1_000;

export class DiskSpace {
  /** The disk ran out of space: writes are refused and retried only after a probe shows space. */
  full = false;
  /** Ticks since the disk filled or was last probed. */
  private ticks_since_probe = 0;
  /** Ticks of being full since this replica last abdicated for it (capped at the interval). */
  private ticks_since_abdication = no_space_abdicate_interval_ticks;

  constructor(
    private readonly replica: number,
    private readonly env: Pick<Env, "log">,
    private readonly storage: Pick<Storage, "hasSpace">,
    /** How much room a probe asks for: one batch, the largest write a request makes. */
    private readonly probe_bytes: number,
  ) {
    assert(probe_bytes > 0, () => `replica ${replica}: a space probe of ${probe_bytes} bytes`);
  }

  /** A write failed with the no-space signal: said once per episode, not once per failed write. */
  filled(error: Error): void {
    assert(isNoSpace(error), () => `replica ${this.replica}: ${error.message} taken for a full disk`);
    if (!this.full)
      this.env.log(
        "error",
        `replica ${this.replica}: ${error.message}: the disk is full; refusing new writes (reads are still served) until space is freed`,
      );
    this.full = true;
    this.ticks_since_probe = 0;
  }

  /** Whether a full primary abdicates now, so that a replica with room leads: at most once per
   * no_space_abdicate_interval_ticks; in between it leads for the writes that free space. */
  abdicate(): boolean {
    assert(this.full, () => `replica ${this.replica}: abdicating for a full disk with room on disk`);
    if (this.ticks_since_abdication < no_space_abdicate_interval_ticks) return false;
    this.ticks_since_abdication = 0;
    return true;
  }

  /** Called once a tick while full; true when a probe found space again (the replica is then no
   * longer full). */
  tick(): boolean {
    assert(this.full, () => `replica ${this.replica}: probing for space with room on disk`);
    this.ticks_since_abdication = Math.min(this.ticks_since_abdication + 1, no_space_abdicate_interval_ticks);
    this.ticks_since_probe += 1;
    if (this.ticks_since_probe < space_probe_interval_ticks) return false;
    this.ticks_since_probe = 0;
    if (!this.storage.hasSpace(this.probe_bytes)) return false;
    this.full = false;
    this.env.log("info", `replica ${this.replica}: disk space is available again: accepting writes`);
    return true;
  }

  invariants(): void {
    assert(
      this.ticks_since_probe >= 0 && this.ticks_since_probe < space_probe_interval_ticks,
      () => `replica ${this.replica}: ${this.ticks_since_probe} ticks since the last space probe`,
    );
    assert(this.full || this.ticks_since_probe === 0, () => `replica ${this.replica}: counting probe ticks with room on disk`);
    assert(
      this.ticks_since_abdication >= 0 && this.ticks_since_abdication <= no_space_abdicate_interval_ticks,
      () => `replica ${this.replica}: ${this.ticks_since_abdication} ticks since it abdicated for a full disk`,
    );
  }
}
