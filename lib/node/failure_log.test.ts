import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { AssertionError } from "../util/assert.ts";
import { FailureLog, failure_record_name } from "./failure_log.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-failures-"));
  dirs.push(dir);
  return dir;
}

/** One process's worth: a fresh FailureLog over the same directory reports one failure. */
function restart(dir: string, error: Error, now_ms: number, interval_ms?: number): string[] {
  const lines: string[] = [];
  new FailureLog(dir, (level, text) => lines.push(`${level} ${text}`), interval_ms).fatal(error, now_ms);
  return lines;
}

test("a failure that repeats at every restart logs its trace once, then one line with a count", () => {
  const dir = tempDir();
  const error = new AssertionError("replica 1: the chosen log (op 5) is shorter than what is committed (1000000)");
  const t0 = Date.UTC(2026, 0, 1);
  const first = restart(dir, error, t0);
  expect(first.length).toBe(1);
  expect(first[0]).toStartWith("error stopping on an unexpected failure, a bug: please report it with this trace");
  expect(first[0]).toContain(error.stack!);
  let bytes = 0;
  for (let i = 2; i <= 100; i++) {
    const lines = restart(dir, error, t0 + i * 1000);
    expect(lines).toEqual([
      `error stopping on the same failure again (${i} times since 2026-01-01T00:00:00.000Z; its full trace was logged at 2026-01-01T00:00:00.000Z, and is logged again at most every 10 minutes): AssertionError: ${error.message}`,
    ]);
    bytes += lines[0]!.length;
  }
  expect(bytes / 99).toBeLessThan(300); // per restart, where a trace was several KB
  // After the interval, the trace again (with the count so far), then one-liners again.
  const later = restart(dir, error, t0 + 11 * 60_000);
  expect(later[0]).toStartWith("error stopping on an unexpected failure (101 times since 2026-01-01T00:00:00.000Z), a bug");
  expect(later[0]).toContain(error.stack!);
  expect(restart(dir, error, t0 + 11 * 60_000 + 1)[0]).toContain(
    "(102 times since 2026-01-01T00:00:00.000Z; its full trace was logged at 2026-01-01T00:11:00.000Z",
  );
});

test("another failure logs its own trace; a damaged record costs one trace, nothing else", () => {
  const dir = tempDir();
  restart(dir, new AssertionError("one"), 1000);
  const other = restart(dir, new AssertionError("two"), 2000);
  expect(other[0]).toStartWith("error stopping on an unexpected failure, a bug");
  expect(other[0]).toContain("AssertionError: two");
  fs.writeFileSync(path.join(dir, failure_record_name), "{not json");
  expect(restart(dir, new AssertionError("two"), 3000)[0]).toStartWith("error stopping on an unexpected failure, a bug");
  expect(restart(dir, new AssertionError("two"), 4000)[0]).toStartWith("error stopping on the same failure again (2 times");
});

test("without a directory, repeats in one process are still counted", () => {
  const lines: string[] = [];
  const log = new FailureLog(null, (_level, text) => lines.push(text));
  log.fatal(new Error("x"), 0);
  log.fatal(new Error("x"), 1);
  expect(lines[1]).toStartWith("stopping on the same failure again (2 times");
});
