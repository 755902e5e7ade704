/**
 * The replica's rules that the safety issue fixed, each pinned in a scripted scenario (the
 * simulator finds them too: tests/broken_variants.test.ts). Scenarios run on sim/test_cluster.ts:
 * real replicas, real storage on simulated disks, messages delivered when the test says.
 */
import { describe, expect, test } from "bun:test";
import { Command, Header, finalize } from "../net/codec.ts";
import { FsError } from "../storage/fs.ts";
import { Prng } from "../util/prng.ts";
import { Replica, presence_absent, presence_faulty, presence_present, type DoViewChange, type Env } from "./replica.ts";
import type { CheckpointMeta, Storage } from "./storage.ts";
import type { ObjectStore } from "../store/object_store.ts";
import type { ClientTable } from "./client_table.ts";
import { TestClient, TestCluster } from "../../sim/test_cluster.ts";
import { defaultConfig } from "../constants.ts";

/** A replica whose decideSuffix a test can call directly. */
class Judge extends Replica {
  /** The new head, or "wait". */
  decide(best: DoViewChange, dvcs: DoViewChange[], commit: number): number | "wait" {
    const decision = this.decideSuffix(best, dvcs, commit);
    return decision === "wait" ? decision : decision.head;
  }
}

function judge(replica_count: number): Judge {
  const env: Env = { sendToReplica() {}, sendToClient() {}, random: new Prng(1), log() {} };
  return new Judge(defaultConfig(replica_count, 1n), 0, {} as Storage, env);
}

/** A chain of prepare headers for ops 1..n (view 1). */
function chain(n: number, seed = 0): Header[] {
  const headers: Header[] = [];
  let parent = 0n;
  for (let op = 1; op <= n; op++) {
    const h = new Header();
    h.command = Command.prepare;
    h.cluster = 1n;
    h.op = op;
    h.view = 1;
    h.parent = parent;
    h.timestamp = seed;
    const header = finalize(h).header;
    headers.push(header);
    parent = header.checksum;
  }
  return headers;
}

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
    expect(judge(3).decide(a, [a, b], 3)).toBe(6);
  });

  test("never held by a quorum: cut there", () => {
    const a = dvc(log, 4, 6, [P, P, A]);
    const b = dvc(log, 4, 5, [P, P]);
    expect(judge(3).decide(a, [a, b], 3)).toBe(5);
  });

  test("held by nobody intact, and not nacked by a quorum (a faulty copy): wait for more senders", () => {
    const a = dvc(log, 4, 6, [P, P, F]);
    const b = dvc(log, 4, 5, [P, P]);
    expect(judge(3).decide(a, [a, b], 3)).toBe("wait");
    // The third sender settles it either way.
    expect(judge(3).decide(a, [a, b, dvc(log, 4, 5, [P, P])], 3)).toBe(5);
    expect(judge(3).decide(a, [a, b, dvc(log, 4, 6, [P, P, P])], 3)).toBe(6);
  });

  test("the head of the chosen log present only as a header nobody holds: wait, never install it", () => {
    const a = dvc(log, 4, 6, [P, A, A]);
    const b = dvc(log, 4, 6, [P, F, F]);
    expect(judge(3).decide(a, [a, b], 3)).toBe("wait");
  });
});

describe("a gap in the chosen log", () => {
  test("is filled from a sender of the same log_view that holds the op intact, so a cut above it has a head to name", () => {
    const log = chain(9);
    const P = presence_present;
    // a (the chosen log, the longest): ops 4..6 and 9, a gap at 7 and 8; b: ops 4..7. Op 7 is
    // held intact by b and chains to a's op 6: it fills the gap and is kept. Op 8 is nacked by
    // both (nobody holds it): the log is cut there, and its new head is b's op 7.
    const a: DoViewChange = { log_view: 1, op: 9, commit: 3, headers: log.filter((h) => h.op >= 4 && h.op !== 7 && h.op !== 8), presence: Uint8Array.from([P, P, P, P]), faulty_ops: [] };
    const b = dvc(log, 4, 7, [P, P, P, P]);
    const j = judge(3);
    const decision = (j as unknown as { decideSuffix(best: DoViewChange, dvcs: DoViewChange[], commit: number): { head: number; headers: Header[] } | "wait" }).decideSuffix(a, [a, b], 3);
    expect(decision).not.toBe("wait");
    if (decision === "wait") return;
    expect(decision.head).toBe(7);
    expect(decision.headers.map((h) => h.op)).toEqual([4, 5, 6, 7]);
    expect(decision.headers[3]!.checksum).toBe(log[6]!.checksum);
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
    expect(judge(3).decide(a, [a, b, c], 3)).toBe(4);
    // Only a and b: op 5 is nacked by b alone, op 5 is held by a: kept; op 6 has a's absent nack
    // and b's damage: no quorum, no copy: wait.
    expect(judge(3).decide(a, [a, b], 3)).toBe("wait");
  });

  test("a damaged op just above the chosen log holds the view until a quorum says it never had it", () => {
    const a = { ...dvc(log, 4, 5, [P, P]), faulty_ops: [6] };
    const b = dvc(log, 4, 5, [P, P]);
    expect(judge(3).decide(a, [a, b], 3)).toBe("wait");
    expect(judge(3).decide(a, [a, b, dvc(log, 4, 5, [P, P])], 3)).toBe(5);
    // Senders of an older log_view never acknowledged it in a view where it could commit.
    expect(judge(3).decide(a, [a, b, dvc(log, 4, 5, [P, P], [], 0)], 3)).toBe(5);
  });
});

describe("formation (item 4)", () => {
  test("7 replicas form when every probe round hears only some peers: what was heard before still counts", () => {
    const cluster = new TestCluster(7);
    // Once formatted, each replica hears pongs from only about half its peers per probe round, a
    // different half each time: no single round hears all six.
    let round = 0;
    cluster.filter = (from, to, message) => {
      if (message.header.command !== Command.pong || cluster.replicas[to]?.describe().status !== "normal") return true;
      return (from + to + Math.floor(round / 10)) % 2 === 0;
    };
    cluster.startAll();
    for (let t = 0; t < 600 && !cluster.replicas.every((r) => r!.describe().status === "normal" && (r as unknown as { formed: boolean }).formed); t++) {
      round += 1;
      cluster.tick();
    }
    for (const r of cluster.replicas) expect((r as unknown as { formed: boolean }).formed).toBe(true);
  });
});

/** Storage whose checkpoint writes fail for lack of space while `full` is set. */
function checkpointsFail(storage: Storage, state: { full: boolean }): Storage {
  return new Proxy(storage, {
    get(target, key, receiver) {
      if (key === "writeCheckpoint") {
        return (checkpoint: CheckpointMeta, store: ObjectStore, clients: ClientTable) => {
          if (state.full) throw new FsError("ENOSPC", "writeCheckpoint: no space left on device (test)");
          return target.writeCheckpoint(checkpoint, store, clients);
        };
      }
      const value = Reflect.get(target, key, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

describe("a promise never outlives the memory behind it (items 1 and 3)", () => {
  test("a backup whose checkpoints cannot be written acknowledges only what a restart from its durable checkpoint reloads", () => {
    const full = { full: false };
    const cluster = new TestCluster(3, () => {}, undefined, (storage, index) => (index === 1 ? checkpointsFail(storage, full) : storage));
    cluster.startAll();
    cluster.until(() => cluster.primary() !== null, 2000, "a primary");
    const client = new TestClient(cluster, 0xc1n);
    client.register();
    full.full = true;
    const slots = cluster.config.journal_slot_count;
    // Far more ops than one journal window beyond backup 1's durable checkpoint.
    for (let i = 0; i < 3 * slots; i++) client.put(`k${i % 5}`, `v${i}`);
    const backup = cluster.replica(1);
    expect(backup.checkpoint.op + slots).toBeLessThan(cluster.primary()!.commit_max);
    const acked = cluster.sent.filter((s) => s.from === 1 && s.message.header.command === Command.prepare_ok).map((s) => s.message.header);
    expect(acked.length).toBeGreaterThan(0);
    for (const ok of acked) expect(ok.op).toBeLessThanOrEqual(backup.checkpoint.op + slots);
    // Power loss: everything it acknowledged is still there.
    const durable = backup.checkpoint.op;
    cluster.crash(1);
    const reopened = cluster.start(1);
    expect(reopened.checkpoint.op).toBe(durable);
    for (const ok of acked) {
      if (ok.op > durable) expect(reopened.journal.hasDurable(ok.op, ok.context)).toBe(true);
    }
    // Space again: the checkpoint is retried and the backup catches up.
    full.full = false;
    cluster.until(() => cluster.replica(1).commit_min === cluster.primary()!.commit_min, 5000, "backup 1 to catch up");
  });

  for (const loss of ["disk", "checkpoint file"] as const) {
    test(`a replica that lost its ${loss} persists the checkpoint it synced before it acknowledges anything`, () => {
      const cluster = new TestCluster(3);
      cluster.startAll();
      cluster.until(() => cluster.primary() !== null, 2000, "a primary");
      const client = new TestClient(cluster, 0xc2n);
      client.register();
      for (let i = 0; i < 3 * cluster.config.journal_slot_count; i++) client.put(`k${i % 7}`, `v${i}`);
      const lost = cluster.replicas.findIndex((r) => r !== null && !r.describe().primary);
      const checkpoint = cluster.replica(lost).checkpoint.op;
      cluster.crash(lost);
      if (loss === "disk") cluster.disks[lost]!.wipe();
      else cluster.disks[lost]!.setReadErrorSector(`checkpoint/${checkpoint.toString().padStart(16, "0")}.ckpt`, 0);
      const sent_before = cluster.sent.length;
      cluster.start(lost);
      expect(["blank", "recovering"]).toContain(cluster.replica(lost).describe().status);
      cluster.until(() => cluster.replica(lost).describe().status === "normal", 5000, "the replica to recover");
      // The moment it rejoins, a restart would reload its whole log: the checkpoint it synced (or
      // took while catching up) is durable.
      const rejoined = cluster.replica(lost);
      expect(rejoined.checkpoint.op).toBeGreaterThanOrEqual(checkpoint);
      expect(rejoined.checkpoint.op + cluster.config.journal_slot_count).toBeGreaterThanOrEqual(rejoined.op);
      for (let i = 0; i < 2 * cluster.config.journal_slot_count; i++) client.put(`after${i}`, "x");
      const acks = cluster.sent.slice(sent_before).filter((s) => s.from === lost && s.message.header.command === Command.prepare_ok);
      // It takes part again: it acknowledges the ops of the last window (not only those of the one
      // after the checkpoint it had, which a rejoin without a durable checkpoint would be held to).
      expect(acks.some((ok) => ok.message.header.op > checkpoint + cluster.config.journal_slot_count)).toBe(true);
      const replica = cluster.replica(lost);
      for (const ok of acks) expect(ok.message.header.op).toBeLessThanOrEqual(replica.checkpoint.op + cluster.config.journal_slot_count);
      cluster.crash(lost);
      const reopened = cluster.start(lost);
      expect(reopened.describe().status).not.toBe("recovering");
      for (const ok of acks) {
        const h = ok.message.header;
        if (h.op > reopened.checkpoint.op) expect(reopened.journal.hasDurable(h.op, h.context)).toBe(true);
      }
    });
  }
});
