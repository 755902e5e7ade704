/**
 * Issue 12 item 1, with real processes: a data directory left by an earlier cluster on the same
 * addresses is given to one replica of a new cluster. The others refuse it (one clear log line),
 * it cannot outvote them when their primary dies, and no write the new cluster acknowledged is
 * lost. On c3a42d7 the stale replica joined, and after the primary's kill -9 `ls` showed only the
 * old cluster's keys.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Client } from "../lib/client/client.ts";
import { waitFor } from "./support/cluster.ts";
import { withCluster } from "./support/harness.ts";

const decoder = new TextDecoder();

async function keys(client: Client): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of client.listAll()) out.push(decoder.decode(entry.key));
  return out.sort();
}

test("a replica given an earlier cluster's directory is refused and loses nothing acknowledged", async () => {
  await withCluster({}, async (cluster) => {
    // Cluster A: 30 writes, then every replica stops; keep a copy of one directory.
    const a = new Client({ addresses: cluster.addresses, operation_timeout_ms: 20_000 });
    for (let i = 0; i < 30; i++) await a.put(`a/${i}`, new TextEncoder().encode("old"));
    await a.close();
    for (const r of cluster.replicas) await cluster.stop(r);
    const staleCopy = (index: number): string => path.join(cluster.dir, `stale-${index}`);
    for (const r of cluster.replicas) fs.cpSync(r.data_dir, staleCopy(r.index), { recursive: true });

    // Cluster B on the same addresses, fresh directories: 10 writes.
    for (const r of cluster.replicas) fs.rmSync(r.data_dir, { recursive: true, force: true });
    for (const r of cluster.replicas) cluster.spawn(r);
    await cluster.waitHealthy();
    const b = new Client({ addresses: cluster.addresses, operation_timeout_ms: 20_000 });
    const written: string[] = [];
    for (let i = 0; i < 10; i++) {
      await b.put(`b/${i}`, new TextEncoder().encode("new"));
      written.push(`b/${i}`);
    }

    // One backup of B gets A's directory.
    const primary = await cluster.primary();
    const victim = cluster.replicas.find((r) => r !== primary)!;
    await cluster.stop(victim);
    fs.rmSync(victim.data_dir, { recursive: true, force: true });
    fs.cpSync(staleCopy(victim.index), victim.data_dir, { recursive: true });
    cluster.spawn(victim);
    await waitFor(
      "the others to refuse it",
      () =>
        cluster.replicas.some(
          (r) =>
            r !== victim && cluster.logs(r).includes(`refusing replica ${victim.index}: its data directory belongs to cluster incarnation`),
        ),
      20_000,
    );
    await b.put("b/after", new TextEncoder().encode("acknowledged"));
    written.push("b/after");
    // Said once (per peer per minute), not in a loop.
    const refusals = cluster.replicas
      .filter((r) => r !== victim)
      .map(
        (r) =>
          cluster
            .logs(r)
            .split("\n")
            .filter((l) => l.includes(`refusing replica ${victim.index}`)).length,
      );
    for (const n of refusals) expect(n).toBeLessThanOrEqual(1);

    // B's primary dies: its remaining backup and the stale replica must not form a view.
    await cluster.crash(primary);
    const probe = new Client({ addresses: cluster.addresses, operation_timeout_ms: 3_000 });
    await expect(probe.put("b/lost?", new TextEncoder().encode("x"))).rejects.toThrow();
    await probe.close();

    // It comes back: every acknowledged write of B is there, and none of A's.
    cluster.spawn(primary);
    const after = await waitFor(
      "B to serve again",
      async () => {
        try {
          return await keys(b);
        } catch {
          return null;
        }
      },
      30_000,
    );
    expect(after).toEqual(written.sort());
    expect(decoder.decode((await b.get("b/after")).value)).toBe("acknowledged");
    await b.close();
  });
}, 120_000);
