/**
 * Rate-limits repeated log lines per key (a remote address), so a peer that keeps sending garbage,
 * or keeps refusing connections, costs one line per interval rather than flooding the log. The
 * count of suppressed events is reported with the next line that is let through.
 */
import { assert } from "../util/assert.ts";

/** One line per key per this interval. */
export const log_interval_ms = 60_000;
/** Keys remembered at most; beyond this, expired keys are pruned, and if none expired the oldest
 * goes (so a flood of distinct addresses cannot grow memory without bound). */
export const log_limiter_keys_max = 1024;

interface Entry {
  logged_at_ms: number;
  suppressed: number;
}

export class LogLimiter {
  private readonly entries = new Map<string, Entry>();

  constructor(
    readonly interval_ms: number = log_interval_ms,
    readonly keys_max: number = log_limiter_keys_max,
  ) {
    assert(interval_ms >= 0 && keys_max > 0, "LogLimiter: bad bounds");
  }

  /** Null: suppress this event. Otherwise log it, mentioning the returned number of events that
   * were suppressed for this key since its last line. */
  admit(key: string, now_ms: number): number | null {
    const entry = this.entries.get(key);
    if (entry !== undefined && now_ms - entry.logged_at_ms < this.interval_ms) {
      entry.suppressed += 1;
      return null;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.entries.delete(key); // re-insert so the Map stays ordered by last log time
    if (this.entries.size >= this.keys_max) this.prune(now_ms);
    this.entries.set(key, { logged_at_ms: now_ms, suppressed: 0 });
    return suppressed;
  }

  get size(): number {
    return this.entries.size;
  }

  private prune(now_ms: number): void {
    // Entries are in last-logged order, so expired ones are at the front.
    for (const [key, entry] of this.entries) {
      if (now_ms - entry.logged_at_ms < this.interval_ms) break;
      this.entries.delete(key);
    }
    if (this.entries.size >= this.keys_max) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }
}
