/**
 * Exponential backoff with jitter for reconnecting to a peer. Doubling keeps a dead peer from
 * costing more than a few attempts per second; the cap keeps a restarted peer from waiting long
 * (docs/DESIGN.md §9 wants failover within 1.5 s); jitter keeps the replicas of a cluster that lost the
 * same peer from reconnecting in lockstep.
 */
import { assert } from "../util/assert.ts";

/** First retry delay after a failed connect (before jitter). */
export const reconnect_backoff_min_ms = 50;
/** Retry delays stop doubling here. */
export const reconnect_backoff_max_ms = 1000;

export class Backoff {
  private delay_ms: number;

  /** random: a uniform draw in [0, 1); injected so tests can pin it. */
  constructor(
    readonly min_ms: number = reconnect_backoff_min_ms,
    readonly max_ms: number = reconnect_backoff_max_ms,
    private readonly random: () => number = Math.random,
  ) {
    assert(min_ms > 0 && min_ms <= max_ms, `backoff bounds must satisfy 0 < min <= max, got ${min_ms}..${max_ms}`);
    this.delay_ms = min_ms;
  }

  /** The delay before the next attempt: the current step, jittered into [step/2, step], then the
   * step doubles (up to max_ms). */
  next(): number {
    const step = this.delay_ms;
    this.delay_ms = Math.min(this.max_ms, step * 2);
    const r = this.random();
    assert(r >= 0 && r < 1, `backoff random draw out of [0, 1): ${r}`);
    return Math.round(step / 2 + (r * step) / 2);
  }

  /** A connection proved healthy: the next failure retries quickly again. */
  reset(): void {
    this.delay_ms = this.min_ms;
  }
}
