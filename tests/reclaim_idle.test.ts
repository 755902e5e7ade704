/**
 * Disk space comes back after a delete on an idle cluster (docs/LARGE_OBJECTS.md §8, the nudge).
 * Checkpoints advance only with ops, so without the nudge the segments of a deleted object stay
 * pinned by checkpoint retention and the journal horizon for as long as nobody writes: a user who
 * deletes a large object to free space would see none come back. Real processes, default block
 * and segment sizes (64 MiB segments, so the object fills several).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster, waitFor } from "./support/cluster.ts";
import { Client } from "../lib/client/client.ts";
import type { ReplicaStatus } from "../lib/net/status_codec.ts";

const mib = 1024 * 1024;
const object_bytes = 224 * mib;
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start(3);
  await cluster.waitHealthy();
}, 60_000);

afterAll(async () => {
  await cluster?.destroy();
});

/** Pseudo-random chunks, generated as the client pulls them (the object is never held whole). */
async function* chunks(total: number): AsyncIterable<Uint8Array> {
  let x = 12345;
  for (let sent = 0; sent < total; sent += mib) {
    const chunk = new Uint8Array(Math.min(mib, total - sent));
    const view = new DataView(chunk.buffer);
    for (let i = 0; i + 4 <= chunk.length; i += 4) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      view.setUint32(i, x, true);
    }
    yield chunk;
  }
}

async function statuses(): Promise<ReplicaStatus[]> {
  const all = await cluster.status(2_000);
  expect(all.every((s) => s !== null)).toBe(true);
  return all as ReplicaStatus[];
}

test("after a large object is deleted on an idle cluster, every replica's disk use returns to within 5% of what it was before the put", async () => {
  const client = new Client({ addresses: cluster.addresses });
  try {
    await client.put("small", new TextEncoder().encode("a small object that stays"));
    const before = (await statuses()).map((s) => s.disk_bytes);
    const put = await client.put("big", chunks(object_bytes));
    expect(put.size).toBe(object_bytes);
    const full = await waitFor("every replica to store the object", async () => {
      const s = await statuses();
      return s.every((r) => r.counters.block_bytes_live === object_bytes) && s;
    });
    for (const s of full) expect(s.disk_bytes).toBeGreaterThanOrEqual(object_bytes);
    await client.delete("big");
    // Nobody writes from here on: only the idle primary's no-ops move the checkpoints.
    const after = await waitFor(
      "every replica's disk use back to within 5% of its baseline",
      async () => {
        const s = await statuses();

        return s.every((r, i) => r.counters.block_bytes_live === 0 && r.disk_bytes <= before[i]! * 1.05) && s;
      },
      60_000,
      200,
    );
    for (const s of after) expect(s.counters.pinned_dead_bytes).toBeLessThan(64 * mib);
    // The cluster still serves: the object that stayed, and a new write.
    expect(new TextDecoder().decode((await client.get("small")).value)).toBe("a small object that stays");
    expect((await client.put("after", new TextEncoder().encode("x"))).version).toBeGreaterThan(0);
  } finally {
    await client.close();
  }
}, 120_000);
