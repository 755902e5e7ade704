import { describe, expect, test } from "bun:test";
import { Backoff, reconnect_backoff_max_ms, reconnect_backoff_min_ms } from "./backoff.ts";

describe("Backoff", () => {
  test("doubles from min to max, jittered into [step/2, step], and resets", () => {
    const low = new Backoff(50, 1000, () => 0);
    expect([1, 2, 3, 4, 5, 6, 7].map(() => low.next())).toEqual([25, 50, 100, 200, 400, 500, 500]);
    const high = new Backoff(50, 1000, () => 0.999999);
    expect([1, 2, 3, 4, 5, 6, 7].map(() => high.next())).toEqual([50, 100, 200, 400, 800, 1000, 1000]);
    high.reset();
    expect(high.next()).toBe(50);
  });

  test("defaults", () => {
    const b = new Backoff();
    expect(b.min_ms).toBe(reconnect_backoff_min_ms);
    expect(b.max_ms).toBe(reconnect_backoff_max_ms);
    for (let i = 0; i < 100; i++) {
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(reconnect_backoff_min_ms / 2);
      expect(d).toBeLessThanOrEqual(reconnect_backoff_max_ms);
    }
  });
});
