import { describe, expect, test } from "bun:test";
import { describeOps, windowOp } from "./window.ts";

describe("windowOp", () => {
  test("each slot names the one op of the window (C, C + N] that maps to it", () => {
    for (const [checkpoint, slots] of [
      [0, 8],
      [16, 8],
      [21, 8],
      [1000, 64],
    ] as const) {
      const seen = new Set<number>();
      for (let slot = 0; slot < slots; slot++) {
        const op = windowOp(checkpoint, slot, slots);
        expect(op % slots).toBe(slot);
        expect(op).toBeGreaterThan(checkpoint);
        expect(op).toBeLessThanOrEqual(checkpoint + slots);
        seen.add(op);
      }
      expect(seen.size).toBe(slots);
    }
  });

  test("a slot out of range is a bug, not a guess", () => {
    expect(() => windowOp(0, 8, 8)).toThrow("out of range");
  });
});

describe("describeOps", () => {
  test("runs are folded, long lists cut", () => {
    expect(describeOps([5, 7, 8, 9])).toBe("5, 7..9");
    expect(describeOps([])).toBe("");
    expect(describeOps([1, 3, 5, 7, 9, 11, 13, 15, 17, 19])).toBe("1, 3, 5, 7, 9, 11, 13, 15, and 2 more");
  });
});
