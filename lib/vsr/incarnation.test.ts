/**
 * The cluster incarnation (docs/PROTOCOL.md §4.1, RULE incarnation): chosen when the cluster
 * forms, persisted, carried in every replica message. A data directory of an earlier cluster on
 * the same addresses (same cluster id) must never join, or its history outvotes acknowledged
 * writes.
 */
import { expect, test } from "bun:test";
import { Operation, Result, encodeKeyRequest, encodeListRequest, decodeListReply } from "../store/operations.ts";
import { SimFs } from "../../sim/sim_fs.ts";
import { TestClient, TestCluster } from "../../sim/test_cluster.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function formed(seed: number): { cluster: TestCluster; client: TestClient } {
  const cluster = new TestCluster(3, () => {}, undefined, undefined, seed);
  cluster.startAll();
  cluster.until(
    () => cluster.primary() !== null && cluster.replicas.every((r) => r!.describe().status === "normal"),
    5000,
    "a formed cluster",
  );
  const client = new TestClient(cluster, BigInt(seed) * 1000n + 1n);
  client.register();
  return { cluster, client };
}

function keys(client: TestClient): string[] {
  const reply = client.call(Operation.list, encodeListRequest(new Uint8Array(0), new Uint8Array(0), 1000));
  expect(reply.header.result).toBe(Result.ok);
  return decodeListReply(reply.body)!.entries.map((e) => decoder.decode(e.key));
}

test("replicas formatting together agree on one nonzero incarnation, and keep it across restarts", () => {
  const { cluster } = formed(1);
  const incarnations = cluster.replicas.map((r) => r!.incarnation);
  expect(new Set(incarnations).size).toBe(1);
  expect(incarnations[0]).not.toBe(0);
  cluster.tick(10);
  cluster.crash(1);
  cluster.start(1);
  expect(cluster.replica(1).incarnation).toBe(incarnations[0]!);
});

test("two clusters on the same addresses get different incarnations", () => {
  const a = formed(1).cluster;
  const b = formed(2).cluster;
  expect(a.config.cluster).toBe(b.config.cluster);
  expect(a.replica(0).incarnation).not.toBe(b.replica(0).incarnation);
});

test("a data directory of an earlier cluster on the same addresses is refused, and no acknowledged write is lost", () => {
  const a = formed(1);
  for (let i = 0; i < 20; i++) expect(a.client.put(`a${i}`, "old").header.result).toBe(Result.ok);
  a.cluster.tick(20);
  const b = formed(2);
  for (let i = 0; i < 3; i++) expect(b.client.put(`b${i}`, "new").header.result).toBe(Result.ok);
  // B's third replica gets A's third replica's directory (A is stopped).
  const stale = b.cluster.replicas.findIndex((r) => !r!.describe().primary);
  a.cluster.crash(stale);
  b.cluster.crash(stale);
  b.cluster.disks[stale] = a.cluster.disks[stale]!;
  b.cluster.start(stale);
  expect(b.cluster.replica(stale).incarnation).not.toBe(b.cluster.replica((stale + 1) % 3).incarnation);
  expect(b.client.put("b3", "acknowledged").header.result).toBe(Result.ok);
  // B's primary dies: B's remaining replica and the stale one must not make a view together.
  const primary = b.cluster.primary()!.replica;
  b.cluster.crash(primary);
  b.cluster.tick(2000);
  expect(b.cluster.primary()).toBeNull();
  // It comes back: B serves again, with every write it acknowledged and none of A's.
  b.cluster.start(primary);
  b.cluster.until(() => b.cluster.primary() !== null, 20_000, "B's primary back");
  expect(keys(b.client).sort()).toEqual(["b0", "b1", "b2", "b3"]);
  const value = b.client.call(Operation.get, encodeKeyRequest(encoder.encode("b3"), null));
  expect(value.header.result).toBe(Result.ok);
  expect(b.cluster.replica(stale).describe().op).toBeGreaterThan(20);
});

test("a replica that lost its disk recovers into the cluster's incarnation", () => {
  const { cluster, client } = formed(3);
  for (let i = 0; i < 5; i++) expect(client.put(`k${i}`, "v").header.result).toBe(Result.ok);
  const backup = cluster.replicas.findIndex((r) => !r!.describe().primary);
  const incarnation = cluster.replica(0).incarnation;
  cluster.crash(backup);
  cluster.disks[backup] = new SimFs(cluster.prng.fork());
  cluster.start(backup);
  cluster.until(() => cluster.replica(backup).describe().status === "normal", 20_000, "recovered");
  expect(cluster.replica(backup).incarnation).toBe(incarnation);
});

test("a replica restarted before anything was prepared learns from a formed peer's pong that the cluster formed", () => {
  // Formed, idle: nothing on disk says it formed. The primary dies and a backup restarts: the two
  // left must still elect a primary (the restarted one needs its election timer, so it must form).
  const cluster = new TestCluster(3, () => {}, undefined, undefined, 5);
  cluster.startAll();
  cluster.until(
    () => cluster.primary() !== null && cluster.replicas.every((r) => r!.describe().status === "normal"),
    5000,
    "a formed cluster",
  );
  cluster.tick(20);
  const p = cluster.primary()!.replica;
  const c = (p + 1) % 3;
  cluster.crash(p);
  cluster.crash(c);
  cluster.start(c);
  cluster.until(() => cluster.primary() !== null, 20_000, "a primary among the two left");
});
