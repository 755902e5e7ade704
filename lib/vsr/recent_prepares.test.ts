import { describe, expect, test } from "bun:test";
import { Command, Header, finalize, type Message } from "../net/codec.ts";
import { RecentPrepares } from "./recent_prepares.ts";

function prepare(op: number, salt = 0): Message {
  const h = new Header();
  h.command = Command.prepare;
  h.cluster = 1n;
  h.op = op;
  h.timestamp = salt;
  return finalize(h, new Uint8Array(100));
}

describe("RecentPrepares", () => {
  test("a remembered prepare is taken once, by op and checksum", () => {
    const recent = new RecentPrepares(8);
    const p = prepare(5);
    recent.remember(p, 4);
    expect(recent.take(5, p.header.checksum)).toBe(p);
    expect(recent.take(5, p.header.checksum)).toBeNull();
  });

  test("another prepare at the op is not returned (and the stale copy is dropped)", () => {
    const recent = new RecentPrepares(8);
    recent.remember(prepare(5, 1), 4);
    expect(recent.take(5, prepare(5, 2).header.checksum)).toBeNull();
    expect(recent.size).toBe(0);
  });

  test("executed ops are not kept, and are evicted first", () => {
    const recent = new RecentPrepares(2);
    recent.remember(prepare(3), 4); // already executed
    expect(recent.size).toBe(0);
    recent.remember(prepare(5), 4);
    recent.remember(prepare(6), 4);
    recent.remember(prepare(7), 5); // over the count bound: op 5 (executed now) goes
    expect(recent.take(5, prepare(5).header.checksum)).toBeNull();
    expect(recent.take(6, prepare(6).header.checksum)).not.toBeNull();
    expect(recent.take(7, prepare(7).header.checksum)).not.toBeNull();
  });

  test("bounded by count: the oldest goes", () => {
    const recent = new RecentPrepares(3);
    for (let op = 10; op < 20; op++) recent.remember(prepare(op), 0);
    expect(recent.size).toBe(3);
    expect(recent.take(16, prepare(16).header.checksum)).toBeNull();
    expect(recent.take(19, prepare(19).header.checksum)).not.toBeNull();
  });
});
