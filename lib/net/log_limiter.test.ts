import { describe, expect, test } from "bun:test";
import { LogLimiter } from "./log_limiter.ts";

describe("LogLimiter", () => {
  test("one line per key per interval, reporting what was suppressed", () => {
    const l = new LogLimiter(60_000, 10);
    expect(l.admit("a", 0)).toBe(0);
    expect(l.admit("a", 1)).toBeNull();
    expect(l.admit("a", 59_999)).toBeNull();
    expect(l.admit("b", 2)).toBe(0); // keys are independent
    expect(l.admit("a", 60_000)).toBe(2);
    expect(l.admit("a", 60_001)).toBeNull();
  });

  test("remembers a bounded number of keys", () => {
    const l = new LogLimiter(60_000, 10);
    for (let i = 0; i < 1000; i++) expect(l.admit(`host${i}`, i)).toBe(0);
    expect(l.size).toBeLessThanOrEqual(10);
  });
});
