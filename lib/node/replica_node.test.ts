import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FsError } from "../storage/fs.ts";
import { Logger } from "./log.ts";
import { ReplicaNode } from "./replica_node.ts";
import { Client } from "../client/client.ts";
import { freeConsecutivePorts } from "../../tests/support/cli.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A started one-replica node on a fresh data directory. */
async function singleNode(): Promise<{ node: ReplicaNode; address: { host: string; port: number } }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-node-"));
  dirs.push(dir);
  const port = await freeConsecutivePorts(1);
  const address = { host: "127.0.0.1", port };
  const node = new ReplicaNode({ self: address, addresses: [address], data_dir: dir, logger: new Logger("error", "text", "", () => {}) });
  await node.start();
  return { node, address };
}

/** A one-replica node whose flush steps' fdatasyncs are held until the test returns them. */
async function heldNode(): Promise<{ node: ReplicaNode; held: ((error: FsError | null) => void)[]; first: Promise<void> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-node-"));
  dirs.push(dir);
  const port = await freeConsecutivePorts(1);
  const address = { host: "127.0.0.1", port };
  const held: ((error: FsError | null) => void)[] = [];
  let arrived = (): void => {};
  const first = new Promise<void>((resolve) => (arrived = resolve));
  const node = new ReplicaNode({
    self: address,
    addresses: [address],
    data_dir: dir,
    logger: new Logger("error", "text", "", () => {}),
    fdatasync: (_fds, done) => {
      held.push(done);
      arrived();
    },
  });
  await node.start();
  return { node, held, first };
}

describe("ReplicaNode stop() with a flush step on the thread pool (docs/STORAGE.md §10.9, §14.6)", () => {
  test("waits for the step and acts on its error, instead of syncing the same files again and completing the group", async () => {
    const { node, held, first } = await heldNode();
    await first; // a one-replica cluster formats itself: its first flush is on the "thread pool"
    expect(held.length).toBe(1);
    const stopped = node.stop();
    // The held fdatasync fails: nothing of the group may be acted on, and the error is handled as
    // while running (the replica is dropped), not ignored.
    held.shift()!(new FsError("EIO", "fdatasync failed: test"));
    await stopped;
    expect(node.counters.storage_errors).toBe(1);
    expect(node.counters.reopens).toBe(0);
  });
});

describe("ReplicaNode: where a flush's fdatasyncs run", () => {
  test("a lone client's puts are synced on the event loop; concurrent clients' groups go to the thread pool", async () => {
    const { node, address } = await singleNode();
    const clients = Array.from({ length: 16 }, () => new Client({ addresses: [address], operation_timeout_ms: 20_000 }));
    try {
      const value = new Uint8Array(1024).fill(7);
      await clients[0]!.put("warm", value);
      const pool_before = node.counters.flush_steps_pool;
      const inline_before = node.counters.flush_steps_inline;
      for (let i = 0; i < 10; i++) await clients[0]!.put(`lone/${i}`, value);
      // Each of those groups gathered one request: synced inline, two steps per flush.
      expect(node.counters.flush_steps_inline - inline_before).toBeGreaterThanOrEqual(20);
      expect(node.counters.flush_steps_pool).toBe(pool_before);
      await Promise.all(
        clients.map(async (c, k) => {
          for (let i = 0; i < 10; i++) await c.put(`busy/${k}/${i}`, value);
        }),
      );
      expect(node.counters.flush_steps_pool).toBeGreaterThan(pool_before);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await node.stop();
    }
  });
});

describe("ReplicaNode: the read cache in status and metrics", () => {
  test("repeated gets count as hits, the first as a miss, and the cache's bytes are a level", async () => {
    const { node, address } = await singleNode();
    const client = new Client({ addresses: [address], operation_timeout_ms: 20_000 });
    try {
      await client.put("hot", new Uint8Array(4096).fill(3));
      const before = node.status().counters;
      for (let i = 0; i < 5; i++) expect((await client.get("hot"))?.value.length).toBe(4096);
      const after = node.status().counters;
      expect(after.read_cache_misses! - before.read_cache_misses!).toBe(1);
      expect(after.read_cache_hits! - before.read_cache_hits!).toBe(4);
      expect(after.read_cache_bytes!).toBeGreaterThan(4096);
    } finally {
      await client.close();
      await node.stop();
    }
  });
});
