/**
 * Reports the failure that stops a replica (an assertion, a bug): the full stack trace once, and
 * repeats of the same failure as one line with a count. A replica that trips the same assertion
 * every time it starts, under a supervisor that restarts it at once, printed two full traces per
 * restart, some 280 KB of log a minute that buried everything else.
 *
 * Repeats are counted across restarts: the record of the last failure (its message, when it was
 * first seen, how often, when its trace was last logged) is kept in a small file in the data
 * directory, `last_failure` (JSON, not part of the storage format, never fsynced: losing it only
 * means one more full trace).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { LogLevel } from "./log.ts";

/** A failure's full trace is logged at most once per this interval; repeats are one line each. */
export const failure_trace_interval_ms = 10 * 60_000;
export const failure_record_name = "last_failure";

interface FailureRecord {
  message: string;
  first_ms: number;
  count: number;
  trace_ms: number;
}

export class FailureLog {
  private record: FailureRecord | null;

  constructor(
    /** The data directory, or null to count in memory only. */
    private readonly dir: string | null,
    private readonly log: (level: LogLevel, text: string) => void,
    readonly interval_ms: number = failure_trace_interval_ms,
  ) {
    this.record = dir === null ? null : readRecord(path.join(dir, failure_record_name));
  }

  /** Logs a failure that stops the replica. */
  fatal(error: unknown, now_ms: number = Date.now()): void {
    const message = describe(error);
    const last = this.record;
    if (last !== null && last.message === message && now_ms - last.trace_ms < this.interval_ms) {
      last.count += 1;
      this.log(
        "error",
        `stopping on the same failure again (${last.count} times since ${iso(last.first_ms)}; its full trace was logged at ${iso(last.trace_ms)}, and is logged again at most every ${this.interval_ms / 60_000} minutes): ${message}`,
      );
    } else {
      const first_ms = last !== null && last.message === message ? last.first_ms : now_ms;
      const count = last !== null && last.message === message ? last.count + 1 : 1;
      this.record = { message, first_ms, count, trace_ms: now_ms };
      const stack = error instanceof Error && error.stack !== undefined ? error.stack : message;
      const seen = count > 1 ? ` (${count} times since ${iso(first_ms)})` : "";
      this.log(
        "error",
        `stopping on an unexpected failure${seen}, a bug: please report it with this trace and the log lines before it. Repeats of it are logged as one line each, with this trace at most every ${this.interval_ms / 60_000} minutes.\n${stack}`,
      );
    }
    this.save();
  }

  private save(): void {
    if (this.dir === null || this.record === null) return;
    try {
      fs.writeFileSync(path.join(this.dir, failure_record_name), `${JSON.stringify(this.record)}\n`);
    } catch {
      // Only the count is lost: the next failure logs its full trace.
    }
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function readRecord(file: string): FailureRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const r = value as Record<string, unknown>;
  if (
    typeof r.message !== "string" ||
    !isTime(r.first_ms) ||
    !isTime(r.trace_ms) ||
    typeof r.count !== "number" ||
    !Number.isSafeInteger(r.count) ||
    r.count < 1
  )
    return null;
  return { message: r.message, first_ms: r.first_ms, count: r.count, trace_ms: r.trace_ms };
}

function isTime(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}
