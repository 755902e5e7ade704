import { describe, expect, test } from "bun:test";
import { Header } from "../net/codec.ts";
import { Recovering, recovery_nonces_max, recoveryFacts, type RecoveryFacts, type RecoveryHost } from "./recovery.ts";

/** A recovering replica in view 3 that installed its start_view (log up to op 10), executed up to
 * op 4, holds every prepare, and has persisted everything: ready, unless a test changes a fact. */
function caughtUp(overrides: Partial<RecoveryFacts> = {}): RecoveryFacts {
  return {
    syncing: false,
    view: 3,
    commit_min: 4,
    checkpoint_interval_ops: 8,
    primary_checkpoint_op: 8,
    hasPrepare: () => true,
    checkpoint_op: 0,
    view_durable: 3,
    log_view_durable: 3,
    checkpointToPersist: () => false,
    ioPending: () => false,
    ...overrides,
  };
}

function installed(checkpoint_floor = 0): Recovering {
  const recovering = new Recovering(checkpoint_floor);
  recovering.installed(3, 10);
  return recovering;
}

describe("Recovering nonces", () => {
  test("only answers to its own requests are accepted, never nonce 0", () => {
    const recovering = new Recovering(0);
    expect(recovering.answers(0n)).toBe(false);
    expect(recovering.answers(7n)).toBe(false);
    recovering.asked(7n);
    expect(recovering.answers(7n)).toBe(true);
    expect(recovering.answers(9n)).toBe(false);
    expect(() => recovering.asked(0n)).toThrow();
  });

  test("the ring keeps the last recovery_nonces_max nonces and forgets older ones", () => {
    const recovering = new Recovering(0);
    const total = recovery_nonces_max + 3;
    for (let i = 1; i <= total; i++) recovering.asked(BigInt(2 * i + 1));
    for (let i = 1; i <= total; i++) expect(recovering.answers(BigInt(2 * i + 1))).toBe(i > total - recovery_nonces_max);
  });

  test("a smaller ring is bounded the same way", () => {
    const recovering = new Recovering(0, 2);
    recovering.asked(1n);
    recovering.asked(3n);
    recovering.asked(5n);
    expect([1n, 3n, 5n].map((n) => recovering.answers(n))).toEqual([false, true, true]);
  });
});

describe("Recovering.step", () => {
  test("a new recovering replica has no start_view yet", () => {
    const recovering = new Recovering(0);
    expect(recovering.view).toBe(-1);
    expect(recovering.step(caughtUp())).toBe("no_start_view");
  });

  test("ready once caught up and durable", () => {
    expect(installed().step(caughtUp())).toBe("ready");
  });

  test("a start_view of another view than the current one does not count", () => {
    expect(installed().step(caughtUp({ view: 4, view_durable: 4, log_view_durable: 4 }))).toBe("no_start_view");
  });

  test("waits while a checkpoint transfer is under way", () => {
    expect(installed().step(caughtUp({ syncing: true }))).toBe("syncing");
    expect(new Recovering(0).step(caughtUp({ syncing: true }))).toBe("syncing");
  });

  test("waits while the primary's checkpoint is more than an interval ahead", () => {
    expect(installed().step(caughtUp({ primary_checkpoint_op: 12 }))).toBe("ready");
    expect(installed().step(caughtUp({ primary_checkpoint_op: 13 }))).toBe("checkpoint_behind");
  });

  test("needs every prepare above commit_min up to the installed op, and asks no further", () => {
    const asked: number[] = [];
    const hasPrepare = (op: number): boolean => {
      asked.push(op);
      return op !== 7;
    };
    expect(installed().step(caughtUp({ hasPrepare }))).toBe("missing_prepares");
    expect(asked).toEqual([5, 6, 7]);
    asked.length = 0;
    expect(installed().step(caughtUp({ hasPrepare, commit_min: 7 }))).toBe("ready");
    expect(asked).toEqual([8, 9, 10]);
  });

  test("a replica whose checkpoint file was damaged waits for a checkpoint at least that new", () => {
    expect(installed(8).step(caughtUp({ checkpoint_op: 0 }))).toBe("below_checkpoint_floor");
    expect(installed(8).step(caughtUp({ checkpoint_op: 8 }))).toBe("ready");
  });

  test("persists view, log view and checkpoint before it rejoins", () => {
    expect(installed().step(caughtUp({ view_durable: 2 }))).toBe("not_durable");
    expect(installed().step(caughtUp({ log_view_durable: 0 }))).toBe("not_durable");
    expect(installed().step(caughtUp({ checkpointToPersist: () => true }))).toBe("not_durable");
  });

  test("waits for queued writes last, and asks for them only when all else is ready", () => {
    let asked = 0;
    const ioPending = (): boolean => {
      asked += 1;
      return true;
    };
    expect(installed().step(caughtUp({ ioPending, view_durable: 2 }))).toBe("not_durable");
    expect(asked).toBe(0);
    expect(installed().step(caughtUp({ ioPending }))).toBe("io_pending");
    expect(asked).toBe(1);
  });
});

describe("recoveryFacts", () => {
  test("a flush in flight counts as I/O pending: a prepare in its group is not durable yet", () => {
    const io = { pending: false, flushing: false };
    const host: RecoveryHost = {
      view: 3,
      commit_min: 4,
      config: { checkpoint_interval_ops: 8 },
      state_sync: { syncing: false, primary_checkpoint_op: 8 },
      journal: { header: () => new Header(), hasPrepare: () => true },
      durable: { pending: null },
      checkpoint: { op: 0, digest: 0n, checksum: 0n },
      view_durable: 3,
      log_view_durable: 3,
      recoveryPersists: () => true,
      storage: { pending: () => io.pending, flushing: () => io.flushing },
    };
    expect(installed().step(recoveryFacts(host))).toBe("ready");
    io.pending = true;
    expect(installed().step(recoveryFacts(host))).toBe("io_pending");
    // The flush began: nothing is queued, but its group (repaired prepares among them) is still on
    // its way to the disk.
    io.pending = false;
    io.flushing = true;
    expect(installed().step(recoveryFacts(host))).toBe("io_pending");
  });
});
