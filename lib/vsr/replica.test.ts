/**
 * The replica's rules that the safety issue fixed, each pinned in a scripted scenario (the
 * simulator finds them too: tests/broken_variants.test.ts). Scenarios run on sim/test_cluster.ts:
 * real replicas, real storage on simulated disks, messages delivered when the test says.
 */
import { describe, expect, test } from "bun:test";
import { Command, type Message } from "../net/codec.ts";
import { Operation, encodeKeyRequest } from "../store/operations.ts";
import { keyToBytes } from "../store/keys.ts";
import { FsError } from "../storage/fs.ts";
import type { CheckpointMeta, Storage } from "./storage.ts";
import type { ObjectStore } from "../store/object_store.ts";
import type { ClientTable } from "./client_table.ts";
import { TestClient, TestCluster } from "../../sim/test_cluster.ts";

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
    for (
      let t = 0;
      t < 600 && !cluster.replicas.every((r) => r!.describe().status === "normal" && (r as unknown as { formed: boolean }).formed);
      t++
    ) {
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
    const cluster = new TestCluster(
      3,
      () => {},
      undefined,
      (storage, index) => (index === 1 ? checkpointsFail(storage, full) : storage),
    );
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

describe("a flush in flight (docs/STORAGE.md §10.9)", () => {
  test("a backup that installs a start_view while a flush is in flight acknowledges the view's ops once the view is durable", () => {
    const cluster = new TestCluster(3);
    cluster.startAll();
    cluster.until(() => cluster.primary() !== null, 2000, "a primary");
    const client = new TestClient(cluster, 0xc2n);
    client.register();
    client.put("a", "1");
    // The last op is prepared on every replica; the commit that would tell the backups is lost.
    const old = cluster.replicas.indexOf(cluster.primary()!);
    cluster.filter = (from, _to, message) => !(from === old && message.header.command === Command.commit);
    client.request = client.request + 1;
    cluster.request(old, client.id, client.session, client.request, Operation.put, encodeKeyRequest(keyToBytes("b"), new Uint8Array([2])));
    const op = cluster.replica(old).op;
    cluster.crash(old);
    // Hold the new primary's start_view on its way to the other backup.
    const held: Message[] = [];
    cluster.filter = (_from, _to, message) => {
      if (message.header.command !== Command.start_view) return true;
      held.push(message);
      return false;
    };
    cluster.until(() => held.length > 0, 3000, "a start_view");
    const sv = held[0]!;
    expect(sv.header.op).toBe(op);
    expect(sv.header.commit).toBeLessThan(op);
    const primary = sv.header.replica;
    const backup = [0, 1, 2].find((i) => i !== old && i !== primary)!;
    cluster.filter = () => true;
    // A flush of the backup's is in flight when the start_view arrives: its completion does not
    // make the new view durable (that is the next flush's), so it must not use up the
    // acknowledgements the view owes.
    const replica = cluster.replica(backup);
    const sent_before = cluster.sent.length;
    replica.flushes.begin();
    replica.onMessage(sv);
    expect(replica.flushes.inFlight()).toBe(true);
    replica.flushes.now(); // the group in flight completes, then the one with the new view
    expect(replica.view_durable).toBe(sv.header.view);
    const acked = cluster.sent
      .slice(sent_before)
      .filter((s) => s.from === backup && s.to === primary && s.message.header.command === Command.prepare_ok)
      .map((s) => s.message.header.op);
    expect(acked).toContain(op);
  });
});
