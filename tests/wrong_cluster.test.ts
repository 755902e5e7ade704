/**
 * Address lists that differ between a client or replica and the cluster (docs/PROTOCOL.md §3.7
 * wrong_cluster): the cluster id is a checksum of the sorted address list, so a client given
 * "localhost" for 127.0.0.1, or a subset, and a replica started with another --peer set, send frames
 * every replica rejects. They must be told why, at once, instead of "is a majority running?" after
 * the whole timeout, and a replica must not log ECONNRESET three times a second forever.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Client, ClientError, clusterStatus } from "../lib/client/client.ts";
import { formatAddress, indexOf, membership, parseAddress } from "../lib/net/address.ts";
import { withCluster } from "./support/harness.ts";
import { toastyfs } from "./support/cli.ts";
import { freePorts } from "./support/ports.ts";
import { toastyfsCommand, waitFor } from "./support/cluster.ts";

test("a client given a subset, or localhost for 127.0.0.1, is told its address list differs", async () => {
  await withCluster({}, async (cluster) => {
    const subset = cluster.addresses.slice(0, 2);
    const client = new Client({ addresses: subset, operation_timeout_ms: 5000 });
    const started = performance.now();
    const error = await client.put("k", new Uint8Array([1])).then(
      () => null,
      (e: unknown) => e,
    );
    const elapsed_ms = performance.now() - started;
    await client.close();
    expect(error).toBeInstanceOf(ClientError);
    expect((error as ClientError).code).toBe("wrong_cluster");
    expect((error as ClientError).message).toBe(
      `replicas ${subset.map(formatAddress).join(", ")} belong to another cluster (their address list differs from yours: pass the same --cluster addresses as the replicas, in any order)`,
    );
    expect(elapsed_ms).toBeLessThan(2000); // told at once, not after the timeout

    const localhost = cluster.replicas.map((r) => `localhost:${r.port}`).join(",");
    const result = await toastyfs(["put", "--cluster", localhost, "--timeout", "5", "k", "-"], { stdin: "v" });
    console.log(`toastyfs put --cluster ${localhost}: ${result.stderr.trim()}`);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^error: put k: replicas? localhost:\d+.* belongs? to another cluster \((its|their) address list differs from yours: pass the same --cluster addresses as the replicas, in any order\)\n$/,
    );
    // The cluster itself is fine.
    const right = new Client({ addresses: cluster.addresses });
    expect((await right.put("k", new Uint8Array([2]))).version).toBe(1);
    await right.close();
  });
}, 60_000);

test("a replica started with another --peer set is told why it is refused, once, and so is the log of the one it dials", async () => {
  await withCluster({}, async (cluster) => {
    const [rogue_port] = await freePorts(1);
    const rogue_address = `127.0.0.1:${rogue_port}`;
    const rogue_log_path = path.join(cluster.dir, "rogue.log");
    // Its list: itself and two of the cluster's three replicas.
    const dialed = [cluster.replicas[0]!, cluster.replicas[1]!];
    const log = fs.openSync(rogue_log_path, "a");
    const rogue = Bun.spawn(
      [
        ...toastyfsCommand(),
        "--addr",
        rogue_address,
        ...dialed.flatMap((r) => ["--peer", r.address]),
        "--data",
        path.join(cluster.dir, "rogue"),
      ],
      { stdout: log, stderr: log, stdin: "ignore" },
    );
    fs.closeSync(log);
    try {
      // It keeps dialing while it waits for its (other) cluster to form: let it try a few times.
      const rogue_cluster = membership([rogue_address, ...dialed.map((r) => r.address)].map(parseAddress));
      const rogue_index = indexOf(rogue_cluster, parseAddress(rogue_address));
      await waitFor(
        "the rogue replica to have dialed the others 8 times",
        async () => ((await clusterStatus(rogue_cluster.replicas, 300))[rogue_index]?.counters.connects ?? 0) >= 8,
        30_000,
        200,
      );
      const rogue_log = fs.readFileSync(rogue_log_path, "utf8");
      for (const r of dialed) {
        const refusals = rogue_log
          .split("\n")
          .filter((l) => l.includes(`at ${r.address} refused our connection: it belongs to cluster 0x`));
        expect(refusals.length, rogue_log).toBe(1);
        expect(refusals[0]).toContain("because its --addr/--peer list differs from ours");
        const their_log = cluster.logs(r);
        const seen = their_log
          .split("\n")
          .filter((l) =>
            /replica at 127\.0\.0\.1:\d+ \(replica \d+ of its cluster\) sent frames of cluster 0x[0-9a-f]{16}, ours is 0x[0-9a-f]{16}: its --addr\/--peer list differs from ours/.test(
              l,
            ),
          );
        expect(seen.length, their_log).toBe(1);
        if (r === dialed[0]) console.log(`the rogue's log:\n${refusals[0]}\nreplica ${r.index}'s log:\n${seen[0]}`);
      }
      expect(rogue_log).not.toContain("ECONNRESET");
    } finally {
      rogue.kill("SIGKILL");
      await rogue.exited;
    }
    await cluster.waitHealthy();
  });
}, 90_000);
