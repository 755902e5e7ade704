/**
 * Thousands of random, truncated, oversized and corrupted frames, as a peer (sender index in range,
 * valid cluster id) and as a client, over thousands of connections to every replica of a running
 * cluster (docs/DESIGN.md §7, docs/PROTOCOL.md §1.5): every replica stays up, the cluster keeps serving
 * while it happens (a write load runs throughout), nothing written before or during is lost, and
 * each replica's counters show exactly the frames it dropped. Well-formed requests with malformed
 * contents each get an error reply.
 */
import { expect, test } from "bun:test";
import { Client } from "../lib/client/client.ts";
import { Result } from "../lib/store/operations.ts";
import { describeStatuses } from "./support/cluster.ts";
import { seededPrng, withCluster } from "./support/harness.ts";
import { Ledger, WriteLoad, valueFor } from "./support/workload.ts";
import { fuzzConnections, malformedPeerMessages, malformedRequests, type FuzzTarget } from "./support/fuzz.ts";

/** Connections per replica; each carries one bad frame after 0-3 good ones. */
const connections_per_replica = 2000;
/** Valid frames with malformed contents, per replica, as a peer. */
const malformed_peer_messages = 1000;
const parallel = 48;

test("fuzzed frames: replicas stay up, keep serving, lose nothing, and count what they dropped", async () => {
  const prng = seededPrng("fuzz_frames");
  await withCluster({}, async (cluster) => {
    const ledger = new Ledger();
    const client = new Client({ addresses: cluster.addresses, operation_timeout_ms: 20_000 });
    for (let i = 0; i < 200; i++) {
      const value = valueFor(`before.${i}`, 10 + ((i * 131) % 5000));
      const { version } = await client.put(`before/${i}`, value);
      ledger.ack(`before/${i}`, version, value);
    }
    const before = await cluster.status();
    const view = before.find((s) => s?.primary)!.view;
    const target: FuzzTarget = { cluster: client.membership.cluster, replica_count: cluster.replicas.length, view };

    const load = new WriteLoad(cluster.addresses, ledger, prng.fork(), { keys: 30, prefix: "during" }).start(2);
    const started = performance.now();
    const expected = cluster.replicas.map(() => ({ invalid: 0, truncated: 0 }));
    const kinds = new Map<string, number>();
    let frames = 0;
    const total = connections_per_replica * cluster.replicas.length;
    const outcomes = await fuzzConnections(cluster.replicas, prng, target, total, parallel, (c, replica) => {
      kinds.set(`${c.role}/${c.kind}`, (kinds.get(`${c.role}/${c.kind}`) ?? 0) + 1);
      expected[replica]![c.expect] += 1;
      frames += c.frames;
    });
    const fuzz_ms = Math.round(performance.now() - started);
    const acks_during = load.acks.length;

    // Well-formed requests with malformed contents: every one answered with an error. Valid peer
    // frames with malformed bodies: dropped one by one, the connection stays open.
    const [answers, peers] = await Promise.all([
      Promise.all(cluster.replicas.map((r) => malformedRequests(r.port, prng.fork(), target, 200))),
      Promise.all(cluster.replicas.map((r) => malformedPeerMessages(r.port, prng.fork(), target, malformed_peer_messages, r.index))),
    ]);
    const acks_after_fuzz = load.acks.length;
    await load.stop();

    // Every replica is still up, and counted each bad frame once.
    for (const r of cluster.replicas) expect(cluster.running(r)).toBe(true);
    const after = await cluster.status();
    const counted = cluster.replicas.map((r) => {
      const b = before[r.index]!.counters;
      const a = after[r.index]!.counters;
      return { invalid: a.frames_dropped_invalid! - b.frames_dropped_invalid!, truncated: a.frames_truncated! - b.frames_truncated! };
    });
    const dropped_messages = cluster.replicas.map(
      (r) => after[r.index]!.counters.messages_dropped! - before[r.index]!.counters.messages_dropped!,
    );
    console.log(
      `fuzzed ${total} connections (${frames} frames, one bad frame each) in ${fuzz_ms} ms; ${acks_during} puts acknowledged meanwhile`,
    );
    console.log(`  cases: ${JSON.stringify(Object.fromEntries([...kinds].sort()))}`);
    console.log(`  connection outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    for (const r of cluster.replicas) {
      console.log(
        `  replica ${r.index}: expected ${JSON.stringify(expected[r.index])}, counted ${JSON.stringify(counted[r.index])}; malformed requests answered ${answers[r.index]!.results.size}/${answers[r.index]!.sent}: ${JSON.stringify(resultCounts(answers[r.index]!.results))}; ${malformed_peer_messages} malformed peer messages: ${dropped_messages[r.index]} dropped as messages, connection ${peers[r.index]!.closed_by_replica ? "CLOSED" : "kept open"}`,
      );
    }
    console.log(describeStatuses(after));
    expect(outcomes.get("timeout") ?? 0).toBe(0);
    expect(counted).toEqual(expected);
    for (const a of answers) expect(a.results.size).toBe(a.sent);
    for (const a of answers) for (const result of a.results.values()) expect(result).not.toBe(Result.ok);
    for (const p of peers) expect(p).toEqual({ closed_by_replica: false, answered: true });

    // Kept serving throughout, and nothing was lost.
    expect(acks_during).toBeGreaterThan(0);
    expect(acks_after_fuzz).toBeGreaterThan(acks_during);
    expect(load.errors).toEqual([]);
    const v = valueFor("after", 1000);
    await client.put("after/0", v);
    expect(Buffer.from((await client.get("after/0")).value).equals(Buffer.from(v))).toBe(true);
    expect(await ledger.verify(cluster.addresses)).toEqual([]);
    await client.close();
    await cluster.waitConverged();
  });
}, 60_000);

function resultCounts(results: Map<number, number>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of results.values()) counts[Result[r] ?? String(r)] = (counts[Result[r] ?? String(r)] ?? 0) + 1;
  return counts;
}
