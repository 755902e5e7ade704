import { describe, expect, test } from "bun:test";
import {
  classifySlot,
  copy_states,
  legalInputs,
  matchingCases,
  newerCopy,
  slot_cases,
  type CopyState,
  type Newer,
  type WriteBack,
} from "./ring_slot.ts";

const newers: Newer[] = ["a", "b", "-"];

function* legal(): Generator<[CopyState, CopyState, Newer]> {
  for (const a of copy_states) for (const b of copy_states) for (const n of newers) if (legalInputs(a, b, n)) yield [a, b, n];
}

/**
 * The per-slot loop recovery ran before the table (kept here as the reference the table must
 * agree with): count damaged copies, trust the valid copy with the higher sequence, then write back
 * per copy.
 */
function reference(a: CopyState, b: CopyState, newer: Newer): { trust: "a" | "b" | null; damaged: boolean; write: WriteBack[] } {
  const copies = [a, b];
  let damaged_copies = 0;
  let trust: "a" | "b" | null = null;
  for (const [i, s] of copies.entries()) {
    if (s === "unreadable" || s === "torn") damaged_copies += 1;
    if (s === "valid" && (trust === null || (newer === "b" && i === 1))) trust = i === 0 ? "a" : "b";
  }
  const write = copies.map((s): WriteBack => {
    let w: WriteBack = "blank";
    const unreadable = s === "unreadable" || s === "forgotten";
    if (trust !== null && (s === "valid" || damaged_copies === 0)) w = "trusted";
    else if (trust !== null || damaged_copies > 0) w = !unreadable && s === "torn" ? "own" : "damaged_record";
    return s === "forgotten" ? "blank" : w;
  });
  return { trust, damaged: damaged_copies > 0, write };
}

describe("ring slot decision table", () => {
  test("is exhaustive and unambiguous: every legal combination of inputs matches exactly one row", () => {
    let combinations = 0;
    for (const [a, b, n] of legal()) {
      combinations += 1;
      const labels = matchingCases(a, b, n).map((c) => c.label);
      expect({ a, b, n, labels: labels.length }).toEqual({ a, b, n, labels: 1 });
    }
    // 5 × 5 copy states, less the two that mix a persisting and a forgetting ring, with two rows
    // for two valid copies (which is newer).
    expect(combinations).toBe(5 * 5 - 2 + 1);
  });

  test("every row matches some legal input, and labels are unique", () => {
    const used = new Set<string>();
    for (const [a, b, n] of legal()) used.add(classifySlot(a, b, n).label);
    expect([...used].sort()).toEqual(slot_cases.map((c) => c.label).sort());
    expect(new Set(slot_cases.map((c) => c.label)).size).toBe(slot_cases.length);
  });

  test("agrees with the per-slot loop it replaced", () => {
    for (const [a, b, n] of legal()) {
      const row = classifySlot(a, b, n);
      expect({ a, b, n, trust: row.trust, damaged: row.damaged, write: [row.write_a, row.write_b] }).toEqual({
        a,
        b,
        n,
        ...reference(a, b, n),
      });
    }
  });

  test("a trusted copy is always valid; damage is never written over with a record", () => {
    for (const [a, b, n] of legal()) {
      const row = classifySlot(a, b, n);
      if (row.trust !== null) expect(row.trust === "a" ? a : b).toBe("valid");
      if (a === "torn" || a === "unreadable") expect(row.write_a).not.toBe("trusted");
      if (b === "torn" || b === "unreadable") expect(row.write_b).not.toBe("trusted");
      expect(row.damaged).toBe([a, b].some((s) => s === "torn" || s === "unreadable"));
    }
  });

  test("illegal inputs are refused", () => {
    expect(() => matchingCases("valid", "valid", "-")).toThrow();
    expect(() => matchingCases("valid", "blank", "a")).toThrow();
    expect(() => matchingCases("unreadable", "forgotten", "-")).toThrow();
  });

  test("newerCopy: the higher sequence, copy A on a tie, none unless both are valid", () => {
    expect(newerCopy("valid", "valid", 3, 4)).toBe("b");
    expect(newerCopy("valid", "valid", 4, 3)).toBe("a");
    expect(newerCopy("valid", "valid", 4, 4)).toBe("a");
    expect(newerCopy("valid", "torn", 4, 0)).toBe("-");
  });
});
