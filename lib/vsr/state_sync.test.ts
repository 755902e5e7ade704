import { describe, expect, test } from "bun:test";
import { Header } from "../net/codec.ts";
import { ObjectStore } from "../store/object_store.ts";
import { ClientTable } from "./client_table.ts";
import { stateDigest } from "./root.ts";
import {
  SyncFailures,
  SyncTargets,
  SyncTransfer,
  sync_backoff_ticks,
  sync_failure_log_every,
  sync_retry_ticks_max,
  sync_retry_ticks_min,
  syncNeeded,
  type CheckpointNaming,
} from "./state_sync.ts";
import type { CheckpointId, CheckpointMeta } from "./storage.ts";

const interval = 8;
const config = { replica_count: 3, checkpoint_interval_ops: interval };

/** A namespace with one object and one session: its digest is not the empty state's. */
function state(version = 1): { store: ObjectStore; clients: ClientTable } {
  const store = new ObjectStore();
  store.set("k", { version, timestamp: 5, size: 3, checksum: 77n, segment: 1, offset: 0 });
  store.revision = version;
  const clients = new ClientTable(4);
  clients.register(9n, 3, 1, { op: 3, timestamp: 30, operation: 1, result: 0, body: new Uint8Array(0) });
  return { store, clients };
}

function anchor(op: number, checksum: bigint): Header {
  const h = new Header();
  h.op = op;
  h.checksum = checksum;
  return h;
}

/** The checkpoint at op 16 as storage assembles it, and the id a committed prepare names for it. */
function received(): { store: ObjectStore; clients: ClientTable; checkpoint: CheckpointMeta; target: CheckpointId } {
  const { store, clients } = state();
  const target: CheckpointId = { op: 16, digest: stateDigest(store, clients), checksum: 0xabcn };
  const previous: CheckpointId = { op: 8, digest: 1n, checksum: 2n };
  return { store, clients, checkpoint: { id: target, anchor: anchor(16, 0xabcn), previous }, target };
}

const target: CheckpointId = { op: 16, digest: 0x1234n, checksum: 0xabcn };

describe("syncNeeded", () => {
  test("behind once the checkpoint the head names, or the one before the primary's, is above what it executed", () => {
    // A head at op 25 names the checkpoint at 16 (checkpointFor lags by K+1..2K).
    expect(syncNeeded(25, 0, 15, interval)).toBe(true);
    expect(syncNeeded(25, 0, 16, interval)).toBe(false);
    // A short log, but the primary's durable checkpoint at 32 is two intervals ahead of 16.
    expect(syncNeeded(16, 32, 16, interval)).toBe(true);
    expect(syncNeeded(16, 32, 24, interval)).toBe(false);
    expect(syncNeeded(0, 0, 0, interval)).toBe(false);
  });
});

describe("SyncTargets", () => {
  const naming = (op: number, checkpoint_op: number): CheckpointNaming => ({
    op,
    checkpoint_op,
    checkpoint_digest: 0x1234n,
    context: 0xabcn,
  });

  test("a committed header names the checkpoint to fetch; its context is the anchor checksum", () => {
    const targets = new SyncTargets();
    expect(targets.fromCommitted(naming(25, 16), 30, 0, interval)).toEqual({ op: 16, digest: 0x1234n, checksum: 0xabcn });
  });

  test("an uncommitted header, a checkpoint already executed, or a checkpoint the op cannot name is no target", () => {
    const targets = new SyncTargets();
    expect(targets.fromCommitted(naming(25, 16), 24, 0, interval)).toBeNull(); // not committed
    expect(targets.fromCommitted(naming(25, 16), 30, 16, interval)).toBeNull(); // executed
    expect(targets.fromCommitted(naming(25, 8), 30, 0, interval)).toBeNull(); // op 25 names 16, not 8
    expect(targets.fromCommitted(naming(25, 0), 30, 0, interval)).toBeNull();
  });

  test("a stalled target with no usable announcement backs off: not asked for again until the backoff ends", () => {
    const targets = new SyncTargets();
    expect(targets.allows(target, 100)).toBe(true);
    expect(targets.afterStall(target, 1, 0, 40, 100)).toBeNull();
    expect(targets.allows(target, 100)).toBe(false);
    expect(targets.allows({ ...target, op: 8 }, 100 + sync_backoff_ticks - 1)).toBe(false); // older: same reason
    expect(targets.allows({ ...target, op: 24 }, 101)).toBe(true); // a newer one was named meanwhile
    expect(targets.allows(target, 100 + sync_backoff_ticks)).toBe(true);
  });

  test("after a stall, the primary's announced checkpoint of this view is the target when newer and committed", () => {
    const targets = new SyncTargets();
    const announced: CheckpointId = { op: 24, digest: 5n, checksum: 6n };
    targets.primaryAnnounced(1, announced);
    expect(targets.afterStall(target, 1, 0, 40, 100)).toEqual(announced);
    // No backoff taken: the stalled target may be asked for again at once.
    expect(targets.allows(target, 100)).toBe(true);
  });

  test("an announcement of another view, not newer than the stalled target, executed or not committed is not used", () => {
    for (const [view, op, commit_min, commit_known] of [
      [2, 24, 0, 40],
      [1, 16, 0, 40],
      [1, 8, 0, 40],
      [1, 24, 24, 40],
      [1, 24, 0, 23],
    ] as const) {
      const targets = new SyncTargets();
      targets.primaryAnnounced(1, { op, digest: 5n, checksum: 6n });
      expect(targets.afterStall(target, view, commit_min, commit_known, 100)).toBeNull();
      expect(targets.allows(target, 100)).toBe(false);
    }
  });

  test("the latest announcement replaces the one before, even a higher one (a forged one is forgotten)", () => {
    const targets = new SyncTargets();
    targets.primaryAnnounced(1, { op: 1_000_000, digest: 5n, checksum: 6n });
    targets.primaryAnnounced(1, { op: 24, digest: 7n, checksum: 8n });
    expect(targets.afterStall(target, 1, 0, 40, 100)).toEqual({ op: 24, digest: 7n, checksum: 8n });
  });
});

describe("SyncTransfer", () => {
  test("chunks are asked for in order from the first peer, each from the position the last one named", () => {
    const sync = new SyncTransfer(target, 0, 2, config);
    expect(sync.request()).toEqual({ peer: 0, position: 0 });
    expect(sync.accept(16, 0x1234n, 0)).toBe(true);
    expect(sync.applied(5)).toBe("request_next");
    expect(sync.request()).toEqual({ peer: 0, position: 5 });
    expect(sync.accept(16, 0x1234n, 5)).toBe(true);
    expect(sync.applied(11)).toBe("request_next");
    expect(sync.accept(16, 0x1234n, 11)).toBe(true);
    expect(sync.applied(null)).toBe("complete");
  });

  test("it never asks itself: a primary that fell behind starts with the next replica", () => {
    const sync = new SyncTransfer(target, 1, 1, config);
    expect(sync.request()).toEqual({ peer: 2, position: 0 });
    expect(sync.peer).toBe(2);
    const last = new SyncTransfer(target, 2, 2, config);
    expect(last.request().peer).toBe(0);
  });

  test("a chunk of another checkpoint, at another position, or a duplicate is not accepted and does not reset the stall count", () => {
    const sync = new SyncTransfer(target, 0, 2, config);
    expect(sync.accept(16, 0x1234n, 0)).toBe(true);
    expect(sync.applied(5)).toBe("request_next");
    expect(sync.repairTick(1)).toBe("wait");
    expect(sync.accept(16, 0x1234n, 0)).toBe(false); // the chunk already applied, again
    expect(sync.accept(16, 0x1234n, 9)).toBe(false); // ahead of the position
    expect(sync.accept(24, 0x1234n, 5)).toBe(false); // another checkpoint
    expect(sync.accept(16, 0x9999n, 5)).toBe(false); // same op, another digest
    expect(sync.repairTick(2)).toBe("ask_next_peer"); // still silent
    expect(sync.request()).toEqual({ peer: 1, position: 5 });
  });

  test("a failed attempt waits until its resume tick: no request, no chunk accepted, no stall counted; then it retries from 0", () => {
    const sync = new SyncTransfer(target, 0, 2, config);
    sync.accept(16, 0x1234n, 0);
    sync.applied(5);
    expect(sync.accept(16, 0x1234n, 5)).toBe(true);
    // The chunk at 5 did not parse.
    sync.retryElsewhere(100);
    expect(sync.waiting).toBe(true);
    expect(() => sync.request()).toThrow("while waiting until tick 100");
    // A late chunk of the failed stream, even at the position the next attempt starts from.
    expect(sync.accept(16, 0x1234n, 0)).toBe(false);
    // Longer than a stall gives up after (2n + 2 repair ticks), yet it does not give up.
    for (let tick = 5; tick < 100; tick += 5) expect(sync.repairTick(tick)).toBe("wait");
    expect(sync.repairTick(100)).toBe("retry");
    expect(sync.waiting).toBe(false);
    expect(sync.request()).toEqual({ peer: 1, position: 0 });
    expect(sync.accept(16, 0x1234n, 0)).toBe(true);
    // The stall count starts afresh after the wait.
    expect(sync.repairTick(101)).toBe("wait");
    expect(sync.repairTick(102)).toBe("ask_next_peer");
  });

  test("a stalled peer: wait one repair tick, then the next peer each tick, and give up after 2n + 2", () => {
    const sync = new SyncTransfer(target, 0, 2, config);
    sync.request();
    const decisions: string[] = [];
    const peers: number[] = [];
    for (let tick = 0; tick < 8; tick++) {
      decisions.push(sync.repairTick(tick));
      peers.push(sync.request().peer);
    }
    expect(decisions).toEqual([
      "wait",
      "ask_next_peer",
      "ask_next_peer",
      "ask_next_peer",
      "ask_next_peer",
      "ask_next_peer",
      "ask_next_peer",
      "give_up",
    ]);
    // Itself (2) is skipped: the others are asked in turn.
    expect(peers).toEqual([0, 1, 0, 1, 0, 1, 0, 0]);
  });

  test("an accepted chunk restarts the stall count, so a slow peer that answers is kept", () => {
    const sync = new SyncTransfer(target, 0, 2, config);
    let position = 0;
    for (let round = 0; round < 20; round++) {
      expect(sync.repairTick(round)).toBe("wait");
      expect(sync.accept(16, 0x1234n, position)).toBe(true);
      position += 3;
      sync.applied(position);
    }
    expect(sync.request()).toEqual({ peer: 0, position: 60 });
  });

  test("the finished checkpoint verifies only if digest, anchor op and checksum, and the previous op are the target's", () => {
    const good = received();
    const sync = new SyncTransfer(good.target, 0, 2, config);
    expect(sync.verifies(good)).toBe(true);
    const other = state(2);
    expect(sync.verifies({ ...good, ...other })).toBe(false); // the state differs from what was named
    expect(sync.verifies({ ...good, checkpoint: { ...good.checkpoint, anchor: anchor(17, 0xabcn) } })).toBe(false);
    expect(sync.verifies({ ...good, checkpoint: { ...good.checkpoint, anchor: anchor(16, 0xabdn) } })).toBe(false);
    expect(sync.verifies({ ...good, checkpoint: { ...good.checkpoint, previous: { op: 0, digest: 1n, checksum: 2n } } })).toBe(false);
  });

  test("a result that does not verify is fetched again from the start, from the next peer", () => {
    const sync = new SyncTransfer(target, 1, 0, config);
    sync.accept(16, 0x1234n, 0);
    sync.applied(7);
    sync.accept(16, 0x1234n, 7);
    expect(sync.applied(null)).toBe("complete");
    sync.retryElsewhere(10);
    expect(sync.peer).toBe(2);
    expect(sync.repairTick(10)).toBe("retry");
    expect(sync.request()).toEqual({ peer: 2, position: 0 });
    sync.retryElsewhere(20);
    expect(sync.peer).toBe(1); // wraps past itself (0): the peer named is the one asked
    expect(sync.repairTick(20)).toBe("retry");
    expect(sync.request()).toEqual({ peer: 1, position: 0 });
  });

  test("a transfer to the root checkpoint or from a peer out of range is a bug", () => {
    expect(() => new SyncTransfer({ ...target, op: 0 }, 0, 1, config)).toThrow("root checkpoint");
    expect(() => new SyncTransfer(target, 3, 1, config)).toThrow("out of range");
  });
});

describe("SyncFailures", () => {
  test("each consecutive failure doubles the wait from the minimum up to the cap, however long it goes on", () => {
    const failures = new SyncFailures();
    expect(failures.resume).toBe(0);
    const waits: number[] = [];
    for (let tick = 1000; waits.length < 200; tick += 7) {
      waits.push(failures.failed(tick));
      expect(failures.resume).toBe(tick + waits.at(-1)!);
    }
    expect(waits.slice(0, 4)).toEqual([sync_retry_ticks_min, 2 * sync_retry_ticks_min, 4 * sync_retry_ticks_min, 8 * sync_retry_ticks_min]);
    for (let i = 1; i < waits.length; i++) expect(waits[i]).toBe(Math.min(2 * waits[i - 1]!, sync_retry_ticks_max));
    expect(waits.at(-1)).toBe(sync_retry_ticks_max);
    expect(failures.count).toBe(200);
  });

  test("the first failure and every Nth are loud; a success resets the count and the wait", () => {
    const failures = new SyncFailures();
    const loud: number[] = [];
    for (let n = 1; n <= 3 * sync_failure_log_every; n++) {
      failures.failed(n);
      if (failures.loud()) loud.push(n);
    }
    expect(loud).toEqual([1, sync_failure_log_every, 2 * sync_failure_log_every, 3 * sync_failure_log_every]);
    failures.succeeded();
    expect(failures.count).toBe(0);
    expect(failures.resume).toBe(0);
    expect(failures.failed(500)).toBe(sync_retry_ticks_min);
    expect(failures.loud()).toBe(true);
  });
});
