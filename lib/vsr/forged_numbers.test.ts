/**
 * Numbers from the network are believed only as far as the replica's own log confirms them
 * (docs/PROTOCOL.md §4.2, commit numbers): well-formed frames with valid checksums, the right
 * cluster and the current view, but forged numbers, must neither wedge the cluster nor commit what
 * no quorum holds, and never trip an assertion.
 */
import { expect, test } from "bun:test";
import { Command, Header, encode, finalize } from "../net/codec.ts";
import { encodeDoViewChangeBody, encodeHeaders } from "./messages.ts";
import { Operation, Result, encodeKeyRequest } from "../store/operations.ts";
import { TestClient, TestCluster } from "../../sim/test_cluster.ts";

function forged(cluster: TestCluster, command: Command, from: number, fill: (h: Header) => void, body = new Uint8Array(0)): Uint8Array {
  const h = new Header();
  h.command = command;
  h.cluster = cluster.config.cluster;
  h.replica = from;
  h.replica_count = cluster.replica_count;
  // The cluster's own incarnation: a forger on the network learns it from any frame.
  h.incarnation = cluster.replicas.find((r) => r !== null)!.incarnation;
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
    inject(
      cluster,
      p,
      b,
      forged(cluster, Command.commit, p, (h) => {
        h.view = view;
        h.commit = 1_000_000;
        h.op = 1_000_000;
        h.context = 0x1234n;
      }),
    );
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
  cluster.request(
    p,
    client.id,
    client.session,
    client.request,
    Operation.put,
    encodeKeyRequest(new TextEncoder().encode("k"), new TextEncoder().encode("v")),
  );
  cluster.deliver();
  const { op, commit_max, view } = primary.describe();
  expect(op).toBe(commit_max + 1);
  for (const b of backups) {
    inject(
      cluster,
      b,
      p,
      forged(cluster, Command.commit_ok, b, (h) => {
        h.view = view;
        h.commit = op;
        h.session = 0;
      }),
    );
    inject(
      cluster,
      b,
      p,
      forged(cluster, Command.prepare_ok, b, (h) => {
        h.view = view;
        h.op = op - 1;
        h.commit = op;
        h.context = 0x55n;
      }),
    );
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
  inject(
    cluster,
    p,
    b,
    forged(
      cluster,
      Command.prepare,
      p,
      (h) => {
        h.view = view;
        h.op = op + 1;
        h.commit = op;
        h.parent = 0x77n;
      },
      new Uint8Array([1, 2, 3]),
    ),
  );
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
      inject(
        cluster,
        b,
        p,
        forged(cluster, Command.commit_ok, b, (h) => {
          h.view = view;
          h.session = round;
          h.client = (BigInt(round) * 0x9e3779b97f4a7c15n) & 0xffff_ffff_ffff_ffffn;
        }),
      );
    }
  }
  expect(cluster.lastReply(client.id)?.header.request).not.toBe(client.request);
  // The real answers confirm it.
  cluster.filter = () => true;
  cluster.tick(30);
  expect(cluster.lastReply(client.id)?.header.request).toBe(client.request);
});

test("a forged do_view_change whose log is below this replica's commit is dropped, not asserted on", () => {
  const { cluster } = busyCluster();
  const p = cluster.primary()!.replica;
  // The replica that leads view + 4 (as view + 1) gets a vote for it: a short log of one real
  // header, with a log_view above its own, so that log would be chosen.
  const next = (p + 1) % 3;
  const target = cluster.replica(next);
  const { view, commit_max } = target.describe();
  expect(commit_max).toBeGreaterThan(1);
  const liar = [0, 1, 2].find((i) => i !== next)!;
  const body = encodeDoViewChangeBody({ headers: [target.journal.header(1)!], presence: new Uint8Array([1]), faulty_ops: [] });
  inject(
    cluster,
    liar,
    next,
    forged(
      cluster,
      Command.do_view_change,
      liar,
      (h) => {
        h.view = view + 4;
        h.log_view = view + 1;
        h.op = 1;
        h.commit = 1;
        h.request = 1;
      },
      new Uint8Array(body),
    ),
  );
  cluster.tick(100);
  expect(target.stats.protocol_violations).toBeGreaterThanOrEqual(1);
  expect(target.describe().commit_max).toBeGreaterThanOrEqual(commit_max);
});

test("a forged start_view naming another prepare at an executed op is dropped, not asserted on", () => {
  const { cluster } = busyCluster();
  const p = cluster.primary()!.replica;
  const b = [0, 1, 2].find((i) => i !== p)!;
  const backup = cluster.replica(b);
  const { view, commit_min } = backup.describe();
  // Another prepare at the op it executed (a valid header, another checksum), from the primary of
  // the next view that is not this backup.
  const other = new Header();
  Object.assign(other, backup.journal.header(commit_min)!);
  other.timestamp += 1;
  const v = (view + 1) % 3 !== b ? view + 1 : view + 2;
  inject(
    cluster,
    v % 3,
    b,
    forged(
      cluster,
      Command.start_view,
      v % 3,
      (h) => {
        h.view = v;
        h.op = commit_min;
        h.commit = commit_min;
      },
      new Uint8Array(encodeHeaders([finalize(other).header])),
    ),
  );
  expect(backup.stats.protocol_violations).toBe(1);
  expect(backup.describe().view).toBe(view);
});

test("a view number near 2^32 is dropped: the next view would wrap to 0 on the wire", () => {
  const { cluster } = busyCluster();
  const p = cluster.primary()!.replica;
  const b = [0, 1, 2].find((i) => i !== p)!;
  inject(
    cluster,
    p,
    b,
    forged(cluster, Command.do_view_change, p, (h) => {
      h.view = 0xffff_ffff;
      h.op = 1;
    }),
  );
  expect(cluster.replica(b).stats.protocol_violations).toBe(1);
  expect(cluster.replica(b).describe().view).toBeLessThan(1000);
});
