/**
 * A cluster whose every disk is full still takes the deletes that free space (docs/PROTOCOL.md §6,
 * "A full disk"), and the idle nudge, which runs on a full disk too, makes retention let go of what
 * they freed: the space comes back and puts are accepted again. Before, a full replica refused
 * every write: a cluster that filled its disks with objects could never delete one.
 *
 * Real replicas and FileStorage on simulated disks with a capacity (sim/test_cluster.ts). The
 * proportions are a real disk's: values of a quarter segment (4 MiB blocks in 64 MiB segments are
 * a sixteenth), so the disk fills when a new segment cannot be made, while the small prepares of
 * deletes and no-ops still fit in the active segment's tail; the space probe asks for more than is
 * left, so only freed segments let the replicas out of no_space.
 */
import { expect, test } from "bun:test";
import { TestCluster, TestClient } from "../sim/test_cluster.ts";
import { Operation, Result, encodeKeyRequest } from "../lib/store/operations.ts";
import { keyToBytes } from "../lib/store/keys.ts";

const segment_bytes = 256 * 1024;

test("with every disk full, deletes are taken, the nudge frees their segments, and puts are accepted again", () => {
  const cluster = new TestCluster(3, (config) => {
    config.segment_size_bytes = segment_bytes;
    config.batch_size_max = segment_bytes; // the probe's size: more than a full disk has left
    config.reclaim_nudge_bytes_min = 1;
  });
  cluster.startAll();
  const client = new TestClient(cluster, 7n);
  client.register();
  const value = "v".repeat(60_000);
  for (const disk of cluster.disks) disk.capacity_bytes = disk.usedBytes() + 700_000;
  const keys: string[] = [];
  for (let i = 0; i < 100; i++) {
    const reply = client.put(`k${i}`, value);
    if (reply.header.result === Result.no_space) break;
    expect(Result[reply.header.result]).toBe("ok");
    keys.push(`k${i}`);
  }
  expect(keys.length).toBeGreaterThan(5);
  expect(cluster.replicas.every((r) => r!.no_space)).toBe(true);
  const full = Math.min(...cluster.disks.map((d) => d.usedBytes()));
  // Every object the cluster took can be deleted while its disks are full.
  for (const key of keys) {
    const reply = client.call(Operation.delete, encodeKeyRequest(keyToBytes(key), new Uint8Array(0)));
    expect(Result[reply.header.result]).toBe("ok");
  }
  expect(client.put("still-full", value).header.result).toBe(Result.no_space);
  // Nobody writes: the nudge moves the checkpoints on, retention frees the segments, the probes
  // find room, and a put is accepted again.
  cluster.until(
    () => cluster.disks.every((d) => d.usedBytes() < full - 2 * segment_bytes) && cluster.replicas.every((r) => !r!.no_space),
    20_000,
    "every replica to free its deleted segments and have room again",
  );
  expect(Result[client.put("after", value).header.result]).toBe("ok");
});
