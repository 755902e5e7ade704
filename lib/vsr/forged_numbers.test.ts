/**
 * Numbers from the network are believed only as far as the replica's own log confirms them
 * (docs/PROTOCOL.md §4.2, commit numbers): well-formed frames with valid checksums, the right
 * cluster and the current view, but forged numbers, must neither wedge the cluster nor commit what
 * no quorum holds, and never trip an assertion.
 */
import { expect, test } from "bun:test";
import { Command, Header, encode, finalize } from "../net/codec.ts";
import { Operation, Result, encodeKeyRequest } from "../store/operations.ts";
import { TestClient, TestCluster } from "../../sim/test_cluster.ts";

function forged(cluster: TestCluster, command: Command, from: number, fill: (h: Header) => void, body = new Uint8Array(0)): Uint8Array {
  const h = new Header();
  h.command = command;
  h.cluster = cluster.config.cluster;
  h.replica = from;
  h.replica_count = cluster.replica_count;
  fill(h);
  return encode(finalize(h, body));
}

function inject(cluster: TestCluster, from: number, to: number, bytes: Uint8Array): void {
  cluster.queue.push({ from, to, bytes });
  cluster.deliver();
}

/** Three replicas with a few committed puts; returns the cluster and its client. */
function busyCluster(): { cluster: TestCluster; client: TestClient } {
  const cluster = new TestCluster(3);
  cluster.startAll();
  cluster.until(() => cluster.primary() !== null, 5000, "a primary");
  const client = new TestClient(cluster, 0xc1n);
  client.register();
  for (let i = 0; i < 5; i++) expect(client.put(`k${i}`, `v${i}`).header.result).toBe(Result.ok);
  cluster.tick(20);
  return { cluster, client };
}

test("a forged commit number is not taken, persisted or carried into a view change", () => {
  const { cluster, client } = busyCluster();
  const primary = cluster.primary()!;
  const p = primary.replica;
  const { view, op } = primary.describe();
  for (const b of [0, 1, 2].filter((i) => i !== p)) {
    inject(cluster, p, b, forged(cluster, Command.commit, p, (h) => {
      h.view = view;
      h.commit = 1_000_000;
      h.op = 1_000_000;
      h.context = 0x1234n;
    }));
    const backup = cluster.replica(b).describe();
    expect(backup.commit_max).toBeLessThanOrEqual(op);
    expect(backup.commit_max).toBeLessThanOrEqual(backup.op);
  }
  // The primary dies: the other two must still elect a new one and serve.
  cluster.crash(p);
  cluster.until(() => cluster.primary() !== null && cluster.primary()!.describe().status === "normal", 20_000, "a new primary");
  expect(client.put("after", "crash").header.result).toBe(Result.ok);
  for (const r of cluster.replicas) if (r !== null) expect(r.stats.protocol_violations).toBe(0);
});

test("a forged commit_ok does not commit an op that no backup acknowledged", () => {
  const { cluster, client } = busyCluster();
  const primary = cluster.primary()!;
  const p = primary.replica;
  const backups = [0, 1, 2].filter((i) => i !== p);
  // The backups never see the next prepare, so nobody but the primary holds it.
  cluster.filter = (from, _to, message) => !(from === p && message.header.command === Command.prepare);
  client.request += 1;
  cluster.request(p, client.id, client.session, client.request, Operation.put, encodeKeyRequest(new TextEncoder().encode("k"), new TextEncoder().encode("v")));
  cluster.deliver();
  const { op, commit_max, view } = primary.describe();
  expect(op).toBe(commit_max + 1);
  for (const b of backups) {
    inject(cluster, b, p, forged(cluster, Command.commit_ok, b, (h) => {
      h.view = view;
      h.commit = op;
      h.session = 0;
    }));
    inject(cluster, b, p, forged(cluster, Command.prepare_ok, b, (h) => {
      h.view = view;
      h.op = op - 1;
      h.commit = op;
      h.context = 0x55n;
    }));
  }
  expect(primary.describe().commit_max).toBe(commit_max);
  expect(cluster.lastReply(client.id)?.header.request).not.toBe(client.request);
});

test("a forged prepare with a malformed batch, or a second prepare for an op of this view, is dropped", () => {
  const { cluster } = busyCluster();
  const primary = cluster.primary()!;
  const p = primary.replica;
  const b = [0, 1, 2].find((i) => i !== p)!;
  const backup = cluster.replica(b);
  const { view, op } = backup.describe();
  const before = backup.stats.messages_dropped;
  inject(cluster, p, b, forged(cluster, Command.prepare, p, (h) => {
    h.view = view;
    h.op = op + 1;
    h.commit = op;
    h.parent = 0x77n;
  }, new Uint8Array([1, 2, 3])));
  expect(backup.describe().op).toBe(op);
  expect(backup.stats.messages_dropped).toBe(before + 1);
});

test("a forged commit_ok cannot confirm a heartbeat round, so it cannot release a read", () => {
  const { cluster, client } = busyCluster();
  const primary = cluster.primary()!;
  const p = primary.replica;
  const { view } = primary.describe();
  // The backups' real commit_oks are lost: no round is confirmed, and a read must wait.
  cluster.filter = (_from, _to, message) => message.header.command !== Command.commit_ok;
  client.request += 1;
  cluster.request(p, client.id, client.session, client.request, Operation.get, encodeKeyRequest(new TextEncoder().encode("k1"), null));
  cluster.tick(5);
  expect(cluster.lastReply(client.id)?.header.request).not.toBe(client.request);
  for (const b of [0, 1, 2].filter((i) => i !== p)) {
    for (let round = 1; round <= 100; round++) {
      inject(cluster, b, p, forged(cluster, Command.commit_ok, b, (h) => {
        h.view = view;
        h.session = round;
        h.client = BigInt(round) * 0x9e3779b97f4a7c15n & 0xffff_ffff_ffff_ffffn;
      }));
    }
  }
  expect(cluster.lastReply(client.id)?.header.request).not.toBe(client.request);
  // The real answers confirm it.
  cluster.filter = () => true;
  cluster.tick(30);
  expect(cluster.lastReply(client.id)?.header.request).toBe(client.request);
});
