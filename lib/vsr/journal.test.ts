import { describe, expect, test } from "bun:test";
import { Header } from "../net/codec.ts";
import { Journal, SlotState } from "./journal.ts";
import { flushNow } from "./test_support.ts";

const slots = 8;

function header(op: number, checksum: bigint = BigInt(op) * 1000n + 1n): Header {
  const h = new Header();
  h.op = op;
  h.checksum = checksum;
  return h;
}

describe("slot states", () => {
  test("a header alone, then its prepare written, then flushed", () => {
    const journal = new Journal(slots);
    const h = header(3);
    expect(journal.state(3)).toBe(SlotState.empty);
    journal.setHeader(h);
    expect(journal.state(3)).toBe(SlotState.header);
    expect(journal.hasPrepare(3, h.checksum)).toBe(false);
    journal.wrote(h);
    expect(journal.state(3)).toBe(SlotState.dirty);
    expect(journal.hasPrepare(3, h.checksum)).toBe(true);
    expect(journal.hasDurable(3, h.checksum)).toBe(false);
    expect(flushNow(journal)).toEqual([3]);
    expect(journal.state(3)).toBe(SlotState.durable);
    expect(journal.hasDurable(3, h.checksum)).toBe(true);
    expect(flushNow(journal)).toEqual([]);
    journal.invariants();
  });

  test("the same header again changes nothing; another one forgets the prepare", () => {
    const journal = new Journal(slots);
    const h = header(3);
    journal.wrote(h);
    flushNow(journal);
    journal.setHeader(header(3));
    expect(journal.state(3)).toBe(SlotState.durable);
    journal.setHeader(header(3, 77n));
    expect(journal.state(3)).toBe(SlotState.header);
    expect(journal.hasPrepare(3, h.checksum)).toBe(false);
    journal.invariants();
  });

  test("a prepare read back damaged is faulty: it may have been acknowledged", () => {
    const journal = new Journal(slots);
    const h = header(2);
    journal.wrote(h);
    flushNow(journal);
    journal.damaged(h);
    expect(journal.state(2)).toBe(SlotState.faulty);
    expect(journal.isFaulty(2, h.checksum)).toBe(true);
    expect(journal.hasPrepare(2, h.checksum)).toBe(false);
    // Repair writes it again.
    journal.wrote(h);
    expect(journal.isFaulty(2, h.checksum)).toBe(false);
    journal.invariants();
  });

  test("only a written prepare can be read back damaged", () => {
    const journal = new Journal(slots);
    const h = header(2);
    journal.setHeader(h);
    expect(() => journal.damaged(h)).toThrow("its prepare was not written");
    journal.wrote(h);
    expect(() => journal.damaged(header(2, 5n))).toThrow("its prepare was not written");
  });

  test("a write overtaken before its flush is not reported durable", () => {
    const journal = new Journal(slots);
    journal.wrote(header(1));
    journal.wrote(header(2));
    journal.wrote(header(3));
    journal.remove(1);
    journal.setHeader(header(2, 9n));
    journal.damaged(header(3));
    expect(flushNow(journal)).toEqual([]);
    expect(journal.state(1)).toBe(SlotState.empty);
    expect(journal.state(2)).toBe(SlotState.header);
    expect(journal.state(3)).toBe(SlotState.faulty);
    journal.invariants();
  });

  test("an op a window later takes the slot", () => {
    const journal = new Journal(slots);
    journal.wrote(header(1));
    journal.wrote(header(1 + slots));
    expect(journal.state(1)).toBe(SlotState.empty);
    expect(journal.header(1)).toBeNull();
    expect(flushNow(journal)).toEqual([1 + slots]);
    journal.remove(1); // not the op it holds: nothing changes
    expect(journal.state(1 + slots)).toBe(SlotState.durable);
  });
});

describe("recovery", () => {
  test("fills empty slots and slots holding only a header, intact or not", () => {
    const journal = new Journal(slots);
    const anchor = header(4);
    journal.setHeader(anchor);
    journal.recovered(anchor, true);
    journal.recovered(header(5), false);
    expect(journal.state(4)).toBe(SlotState.durable);
    expect(journal.state(5)).toBe(SlotState.faulty);
    expect(journal.isFaulty(5, header(5).checksum)).toBe(true);
    journal.invariants();
  });

  test("never over a prepare written since", () => {
    const journal = new Journal(slots);
    journal.wrote(header(5));
    expect(() => journal.recovered(header(5), true)).toThrow("recovered over a dirty slot");
  });
});

describe("damaged slots", () => {
  test("are independent of the slot state, and cleared only by a write", () => {
    const journal = new Journal(slots);
    journal.markDamaged(6);
    expect(journal.isDamaged(6)).toBe(true);
    expect(journal.isFaulty(6, 123n)).toBe(true);
    journal.setHeader(header(6));
    journal.remove(6);
    expect(journal.damagedOps(0, slots)).toEqual([6]);
    journal.wrote(header(6));
    expect(journal.isDamaged(6)).toBe(false);
    expect(journal.damagedOps(0, slots)).toEqual([]);
    journal.invariants();
  });
});

describe("invariants", () => {
  test("reports the lowest op with a header in (above, up_to], or -1", () => {
    const journal = new Journal(slots);
    expect(journal.invariants()).toBe(-1);
    expect(journal.invariants(0, 100)).toBe(-1);
    for (const op of [9, 12, 14]) journal.setHeader(header(op));
    expect(journal.invariants()).toBe(-1); // no range: only the slot checks
    expect(journal.invariants(8, 16)).toBe(9);
    expect(journal.invariants(9, 16)).toBe(12);
    expect(journal.invariants(12, 13)).toBe(-1);
    expect(journal.invariants(12, 14)).toBe(14);
    expect(journal.invariants(14, 22)).toBe(-1);
  });
});

describe("a flush in flight (docs/STORAGE.md §10.9)", () => {
  test("completes only the group it began with: a prepare written meanwhile waits for the next flush", () => {
    const journal = new Journal(slots);
    journal.wrote(header(1));
    journal.flushBegin();
    journal.wrote(header(2));
    expect(journal.flushed()).toEqual([1]);
    expect(journal.state(2)).toBe(SlotState.dirty);
    expect(journal.hasDurable(2, header(2).checksum)).toBe(false);
    expect(flushNow(journal)).toEqual([2]);
    journal.invariants();
  });

  test("a slot rewritten by another prepare while its flush is in flight is not completed by it", () => {
    const journal = new Journal(slots);
    journal.wrote(header(3));
    journal.flushBegin();
    const other = header(3, 77n);
    journal.wrote(other);
    expect(journal.flushed()).toEqual([]);
    expect(journal.hasDurable(3, other.checksum)).toBe(false);
    expect(flushNow(journal)).toEqual([3]);
    expect(journal.hasDurable(3, other.checksum)).toBe(true);
  });

  test("a prepare found damaged while its flush is in flight and rewritten by repair is durable only with its new copy", () => {
    const journal = new Journal(slots);
    const h = header(4);
    journal.wrote(h);
    journal.flushBegin();
    // Read back damaged before its group completed: the copy in flight is known bad.
    journal.damaged(h);
    journal.wrote(h);
    expect(journal.flushed()).toEqual([]);
    expect(journal.hasDurable(4, h.checksum)).toBe(false);
    expect(journal.state(4)).toBe(SlotState.dirty);
    expect(flushNow(journal)).toEqual([4]);
    expect(journal.hasDurable(4, h.checksum)).toBe(true);
  });

  test("one flush in flight at a time", () => {
    const journal = new Journal(slots);
    journal.wrote(header(1));
    journal.flushBegin();
    journal.wrote(header(2));
    expect(() => journal.flushBegin()).toThrow("another is in flight");
  });
});
