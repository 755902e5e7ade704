/**
 * Idle connections to a real primary (docs/DESIGN.md §7): a program that opens thousands of TCP
 * connections and sends nothing must not lock out clients, nor a replica that reconnects, even
 * from the same address as both (loopback here). The primary closes what it must, says so in one
 * log line, and counts it.
 */
import { expect, test } from "bun:test";
import { Client } from "../lib/client/client.ts";
import { withCluster } from "./support/harness.ts";
import { openIdleConnections } from "./support/idle_flood.ts";
import { valueFor } from "./support/workload.ts";

/** The limit of accepted connections before the fix was 4,096 in all; this is enough to hit it. */
const flood_connections = 4200;

test("4,200 idle connections to the primary: clients and a restarted replica still get in", async () => {
  await withCluster({}, async (cluster) => {
    const writer = new Client({ addresses: cluster.addresses, operation_timeout_ms: 10_000 });
    await writer.put("before", valueFor("before", 100));
    await writer.close();
    const primary = await cluster.primary();
    const before = (await cluster.status())[primary.index]!.counters;

    const flood = await openIdleConnections(primary.port, flood_connections, { partial_header_every: 7 });
    try {
      console.log(
        `flood: ${flood.opened} connections opened, ${flood.failed} failed, ${flood.closed_by_peer} closed by the primary so far`,
      );

      // A new client (a new connection, from the flood's own address) is served.
      const client = new Client({ addresses: cluster.addresses, operation_timeout_ms: 10_000 });
      try {
        const { version } = await client.put("during", valueFor("during", 100));
        expect(version).toBeGreaterThan(0);
        expect(new TextDecoder().decode((await client.get("during")).value)).toBe(new TextDecoder().decode(valueFor("during", 100)));

        // A backup restarted during the flood dials the primary anew. With the other backup down
        // the primary needs its acknowledgements, so a put proves its connection was admitted.
        const [restarted, stopped] = cluster.replicas.filter((r) => r !== primary);
        await cluster.crash(stopped!);
        await cluster.crash(restarted!);
        cluster.spawn(restarted!);
        const { version: second } = await client.put("restarted", valueFor("restarted", 100));
        expect(second).toBeGreaterThan(0);
        cluster.spawn(stopped!);
      } finally {
        await client.close();
      }

      const after = (await cluster.status())[primary.index]!.counters;
      const closed = (after.connections_evicted_unidentified ?? 0) - (before.connections_evicted_unidentified ?? 0);
      console.log(`primary closed ${closed} idle connections to make room; the flood saw ${flood.closed_by_peer} closed`);
      expect(closed).toBeGreaterThan(flood_connections / 2);
      // One warning line for the whole flood (rate-limited), saying what to look for.
      const warnings = cluster
        .logs(primary)
        .split("\n")
        .filter((line) => line.includes("leaving them idle"));
      console.log(`primary log: ${warnings.join("\n")}`);
      expect(warnings.length).toBe(1);
      expect(warnings[0]).toMatch(/127\.0\.0\.1/);
    } finally {
      flood.close();
    }
    await cluster.waitHealthy();
  });
}, 120_000);
