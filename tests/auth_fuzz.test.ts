/**
 * The frame fuzzer of fuzz_frames.test.ts against a cluster with a secret (docs/PROTOCOL.md §6):
 * connections that skip the handshake, whatever they send (random, truncated, oversized and
 * corrupted frames, as a client or as a peer), never get a frame read: each is refused and closed,
 * counted as an authentication failure, and the replicas stay up and keep everything.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "../lib/client/client.ts";
import { newSecret, readSecretFile, writeSecretFile } from "../lib/net/auth/secret.ts";
import { seededPrng, withCluster } from "./support/harness.ts";
import { fuzzConnections, type FuzzTarget } from "./support/fuzz.ts";
import { membership } from "../lib/net/address.ts";

const connections_per_replica = 500;
const parallel = 32;
const auth_counters = ["auth_failures_plain_frame", "auth_failures_malformed", "auth_failures_version", "auth_failures_bad_sender"];

test("fuzzed frames without the handshake: every connection refused, nothing read, nothing lost", async () => {
  const prng = seededPrng("auth_fuzz");
  const secret_file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-auth-fuzz-")), "secret");
  writeSecretFile(secret_file, newSecret());
  const secret = readSecretFile(secret_file);
  await withCluster({ secret_file }, async (cluster) => {
    const client = new Client({ addresses: cluster.addresses, operation_timeout_ms: 20_000, secret });
    for (let i = 0; i < 50; i++) await client.put(`before/${i}`, new TextEncoder().encode(`value ${i}`));
    const before = await cluster.status();
    const target: FuzzTarget = { cluster: membership(cluster.addresses).cluster, replica_count: cluster.replicas.length, view: 0 };
    const total = connections_per_replica * cluster.replicas.length;
    const outcomes = await fuzzConnections(cluster.replicas, prng, target, total, parallel);
    console.log(`fuzzed ${total} unauthenticated connections: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    expect(outcomes.get("timeout") ?? 0).toBe(0);
    for (const r of cluster.replicas) expect(cluster.running(r)).toBe(true);
    const after = await cluster.status();
    let refused = 0;
    for (const r of cluster.replicas) {
      const b = before[r.index]!.counters;
      const a = after[r.index]!.counters;
      // Not one frame was parsed: no invalid or truncated frame, no message delivered from them.
      expect(a.frames_dropped_invalid! - b.frames_dropped_invalid!).toBe(0);
      expect(a.frames_truncated! - b.frames_truncated!).toBe(0);
      for (const name of auth_counters) refused += a[name]! - b[name]!;
    }
    console.log(`  refused with a reason (auth_failures_*): ${refused}`);
    // Every case of at least 92 bytes (a plain frame's magic) is refused with a reason; the rest
    // end before the replica could tell what they are.
    expect(refused).toBeGreaterThan(total / 2);
    expect(refused).toBeLessThanOrEqual(total);
    for (let i = 0; i < 50; i++) {
      expect(new TextDecoder().decode((await client.get(`before/${i}`)).value)).toBe(`value ${i}`);
    }
    await client.put("after", new TextEncoder().encode("still serving"));
    await client.close();
  });
}, 120_000);
