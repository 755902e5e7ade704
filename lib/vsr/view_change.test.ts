import { describe, expect, test } from "bun:test";
import type { Header } from "../net/codec.ts";
import { prepareChain } from "./test_support.ts";
import { chooseLog, decideSuffix, presence_absent, presence_faulty, presence_present, type DoViewChange } from "./view_change.ts";

/** A new primary of a 3-replica cluster (quorum 2) that has executed nothing yet: the new head,
 * or "wait". */
function decide(best: DoViewChange, dvcs: DoViewChange[], commit: number): number | "wait" {
  const decision = decideSuffix(best, dvcs, commit, 2, 0);
  return decision === "wait" ? decision : decision.head;
}

/** A chain of prepare headers for ops 1..n (view 1). */
const chain = (n: number, seed = 0): Header[] => prepareChain(n, { salt: seed });

function dvc(log: Header[], from: number, to: number, presence: number[], faulty_ops: number[] = [], log_view = 1): DoViewChange {
  const headers = log.filter((h) => h.op >= from && h.op <= to);
  return { log_view, op: to, commit: from - 1, headers, presence: Uint8Array.from(presence), faulty_ops };
}

describe("a new view keeps an uncommitted op only if some do_view_change holds it intact (item 6)", () => {
  const log = chain(6);
  const P = presence_present;
  const A = presence_absent;
  const F = presence_faulty;

  test("held intact by one sender: kept", () => {
    const a = dvc(log, 4, 6, [P, P, P]);
    const b = dvc(log, 4, 5, [P, P]);
    expect(decide(a, [a, b], 3)).toBe(6);
  });

  test("never held by a quorum: cut there", () => {
    const a = dvc(log, 4, 6, [P, P, A]);
    const b = dvc(log, 4, 5, [P, P]);
    expect(decide(a, [a, b], 3)).toBe(5);
  });

  test("held by nobody intact, and not nacked by a quorum (a faulty copy): wait for more senders", () => {
    const a = dvc(log, 4, 6, [P, P, F]);
    const b = dvc(log, 4, 5, [P, P]);
    expect(decide(a, [a, b], 3)).toBe("wait");
    // The third sender settles it either way.
    expect(decide(a, [a, b, dvc(log, 4, 5, [P, P])], 3)).toBe(5);
    expect(decide(a, [a, b, dvc(log, 4, 6, [P, P, P])], 3)).toBe(6);
  });

  test("the head of the chosen log present only as a header nobody holds: wait, never install it", () => {
    const a = dvc(log, 4, 6, [P, A, A]);
    const b = dvc(log, 4, 6, [P, F, F]);
    expect(decide(a, [a, b], 3)).toBe("wait");
  });
});

describe("a gap in the chosen log", () => {
  test("is filled from a sender of the same log_view that holds the op intact, so a cut above it has a head to name", () => {
    const log = chain(9);
    const P = presence_present;
    // a (the chosen log, the longest): ops 4..6 and 9, a gap at 7 and 8; b: ops 4..7. Op 7 is
    // held intact by b and chains to a's op 6: it fills the gap and is kept. Op 8 is nacked by
    // both (nobody holds it): the log is cut there, and its new head is b's op 7.
    const a: DoViewChange = {
      log_view: 1,
      op: 9,
      commit: 3,
      headers: log.filter((h) => h.op >= 4 && h.op !== 7 && h.op !== 8),
      presence: Uint8Array.from([P, P, P, P]),
      faulty_ops: [],
    };
    const b = dvc(log, 4, 7, [P, P, P, P]);
    const decision = decideSuffix(a, [a, b], 3, 2, 0);
    expect(decision).not.toBe("wait");
    if (decision === "wait") return;
    expect(decision.head).toBe(7);
    expect(decision.headers.map((h) => h.op)).toEqual([4, 5, 6, 7]);
    expect(decision.headers[3]!.checksum).toBe(log[6]!.checksum);
  });

  test("that runs from below the commit to above it is filled from the lowest, so the ops above the commit chain to the log", () => {
    // Seed 556626282718: a replica restarted with ops up to 4, and only op 11 of the primary's
    // later prepares reached it before the primary lost power; its log (the longest, so chosen)
    // has a gap at 5..10. The others hold 5..9 intact and committed up to 7; op 10 is damaged on
    // one and was never held by the others. The gap at 5..7 (committed) must be filled too,
    // else op 8 has nothing to chain to, counts as held by nobody, and every view waits forever.
    const log = chain(11);
    const P = presence_present;
    const F = presence_faulty;
    const a: DoViewChange = {
      log_view: 1,
      op: 11,
      commit: 4,
      headers: log.filter((h) => h.op >= 2 && (h.op <= 4 || h.op === 11)),
      presence: Uint8Array.from([P, P, P, P]),
      faulty_ops: [],
    };
    const b = { ...dvc(log, 2, 9, [P, P, P, P, P, P, P, P]), commit: 7 };
    const c = { ...dvc(log, 2, 10, [P, P, P, P, P, P, P, P, F]), commit: 7, faulty_ops: [10] };
    const decision = decideSuffix(a, [a, b, c], 7, 2, 4);
    expect(decision).not.toBe("wait");
    if (decision === "wait") return;
    // Op 10 was held by none but the damaged copy (never by a quorum): cut there, keeping 8 and 9.
    expect(decision.head).toBe(9);
    expect(decision.headers.map((h) => h.op)).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    expect(decision.headers.map((h) => h.checksum)).toEqual(log.slice(1, 9).map((h) => h.checksum));
  });
});

describe("damage is tracked per op (item 5)", () => {
  const log = chain(6);
  const P = presence_present;

  test("a sender's damaged op is not a nack for that op, and is for the others", () => {
    // a holds 4 and 5; b's journal has a damaged slot for op 6 and holds only 4.
    const a = dvc(log, 4, 6, [P, P, presence_absent]);
    const b = { ...dvc(log, 4, 4, [P]), faulty_ops: [6] };
    const c = dvc(log, 4, 4, [P]);
    // Op 5: nacked by b and c (a quorum of 2 in 3): cut at 5, whatever b's damage at 6.
    expect(decide(a, [a, b, c], 3)).toBe(4);
    // Only a and b: op 5 is nacked by b alone, op 5 is held by a: kept; op 6 has a's absent nack
    // and b's damage: no quorum, no copy: wait.
    expect(decide(a, [a, b], 3)).toBe("wait");
  });

  test("a damaged op just above the chosen log holds the view until a quorum says it never had it", () => {
    const a = { ...dvc(log, 4, 5, [P, P]), faulty_ops: [6] };
    const b = dvc(log, 4, 5, [P, P]);
    expect(decide(a, [a, b], 3)).toBe("wait");
    expect(decide(a, [a, b, dvc(log, 4, 5, [P, P])], 3)).toBe(5);
    // Senders of an older log_view never acknowledged it in a view where it could commit.
    expect(decide(a, [a, b, dvc(log, 4, 5, [P, P], [], 0)], 3)).toBe(5);
  });
});

describe("the chosen log", () => {
  const log = chain(6);
  const P = presence_present;

  test("is the one with the highest log_view, then the highest op", () => {
    const older_longer = dvc(log, 4, 6, [P, P, P], [], 1);
    const newer_shorter = dvc(log, 4, 5, [P, P], [], 2);
    const newer_longest = dvc(log, 4, 6, [P, P, P], [], 2);
    expect(chooseLog([older_longer, newer_shorter])).toBe(newer_shorter);
    expect(chooseLog([older_longer, newer_shorter, newer_longest])).toBe(newer_longest);
  });

  test("a decision below a quorum of messages is a bug, not a decision", () => {
    const a = dvc(log, 4, 6, [P, P, P]);
    expect(() => decideSuffix(a, [a], 3, 2, 0)).toThrow(/below a quorum/);
  });
});
