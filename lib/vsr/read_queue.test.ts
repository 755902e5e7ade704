import { describe, expect, test } from "bun:test";
import { ReadQueue, heartbeat_nonce_rounds } from "./read_queue.ts";

// Replica 0 is the primary of a 5-replica cluster (f = 2): a round is confirmed by two backups.
function queue(queue_max = 8): ReadQueue<string> {
  return new ReadQueue<string>(5, 0, 2, queue_max);
}

describe("ReadQueue", () => {
  test("a read waits for both its op to execute and a round sent after it to be confirmed", () => {
    const q = queue();
    expect(q.enqueue("a", 10, q.round + 1)).toBe(true);
    expect(q.takeReady(10)).toEqual([]); // no round sent yet
    expect(q.roundDue()).toBe(true); // round 0 counts as confirmed: send round 1
    const round = q.startRound(111n);
    expect(round).toBe(1);
    expect(q.roundDue()).toBe(false); // round 1 is in flight
    expect(q.ack(1, 1)).toBe(true);
    expect(q.takeReady(10)).toEqual([]); // one backup of the two needed
    expect(q.ack(2, 1)).toBe(true);
    expect(q.takeReady(9)).toEqual([]); // confirmed, but op 10 not executed yet
    expect(q.takeReady(10).map((w) => w.message)).toEqual(["a"]);
    expect(q.length).toBe(0);
  });

  test("reads that arrive while a round is in flight wait for the next round", () => {
    const q = queue();
    q.startRound(1n);
    expect(q.enqueue("late", 3, q.round + 1)).toBe(true); // needs round 2
    q.ack(1, 1);
    q.ack(2, 1);
    expect(q.takeReady(100)).toEqual([]);
    expect(q.roundDue()).toBe(true);
    q.startRound(2n);
    q.ack(3, 2);
    q.ack(4, 2);
    expect(q.takeReady(100).map((w) => w.message)).toEqual(["late"]);
  });

  test("served in arrival order: a blocked read holds back the ones behind it", () => {
    const q = queue();
    q.startRound(1n);
    q.enqueue("first", 5, 2);
    q.enqueue("second", 5, 2);
    q.startRound(2n);
    q.ack(1, 2);
    q.ack(2, 2);
    expect(q.takeReady(4)).toEqual([]);
    expect(q.takeReady(5).map((w) => w.message)).toEqual(["first", "second"]);
  });

  test("only a recent round with its own nonce answers", () => {
    const q = queue();
    q.startRound(77n);
    expect(q.answers(1, 77n)).toBe(true);
    expect(q.answers(1, 78n)).toBe(false); // a forged commit_ok guessing the nonce
    expect(q.answers(2, 0n)).toBe(false); // a round never sent
    for (let i = 0; i < heartbeat_nonce_rounds; i++) q.startRound(BigInt(1000 + i));
    expect(q.answers(1, 77n)).toBe(false); // too old: its nonce slot was reused
    expect(q.answers(q.round, BigInt(1000 + heartbeat_nonce_rounds - 1))).toBe(true);
  });

  test("an older or repeated answer confirms nothing new", () => {
    const q = queue();
    q.startRound(1n);
    q.startRound(2n);
    expect(q.ack(1, 2)).toBe(true);
    expect(q.ack(1, 1)).toBe(false);
    expect(q.ack(1, 2)).toBe(false);
  });

  test("the queue is bounded and a new view starts rounds over", () => {
    const q = queue(2);
    expect(q.enqueue("a", 1, 1)).toBe(true);
    expect(q.enqueue("b", 1, 1)).toBe(true);
    expect(q.enqueue("c", 1, 1)).toBe(false);
    q.startRound(1n);
    q.ack(1, 1);
    q.ack(2, 1);
    q.resetRounds();
    expect(q.round).toBe(0);
    expect(q.confirmed(1)).toBe(false); // acks of the old view do not carry over
    q.dropWaiters();
    expect(q.length).toBe(0);
  });

  test("with one replica (f = 0) every round is confirmed at once", () => {
    const q = new ReadQueue<string>(1, 0, 0, 4);
    q.enqueue("solo", 0, 1);
    expect(q.takeReady(0).map((w) => w.message)).toEqual(["solo"]);
  });

  test("an answer to a round never sent is a bug, not a message to trust", () => {
    const q = queue();
    expect(() => q.ack(1, 1)).toThrow(/never sent/);
  });
});
