/**
 * Real replica processes under process and network faults (docs/DESIGN.md §4, §5): kill -9 and SIGSTOP of
 * the primary under load, a partition of the primary from both backups, and kill -9 of every
 * replica. In each: no acknowledged write is lost, and where several clients share keys, the
 * recorded history is linearizable (so a paused or partitioned old primary served no stale read).
 */
import { describe, expect, test } from "bun:test";
import { describeStatuses, waitFor, type ReplicaProcess, type TestCluster } from "./support/cluster.ts";
import { seededPrng, withCluster } from "./support/harness.ts";
import { HistoryLoad, Ledger, ReadProbe, WriteLoad } from "./support/workload.ts";
import { crashRound, describeRound } from "./support/crash.ts";
import type { Prng } from "../lib/util/prng.ts";

/** Keys the history clients share: few, so clients collide and stale reads would show. */
const history_keys = 4;

/** A primary other than `old`, in a view above old_view, as seen by the replicas that answer. */
async function waitNewPrimary(cluster: TestCluster, old: ReplicaProcess, old_view: number): Promise<{ replica: number; view: number }> {
  return waitFor(
    `a new primary (other than replica ${old.index}, view > ${old_view})`,
    async () => {
      const s = (await cluster.status(100)).find(
        (x) => x !== null && x.primary && x.replica !== old.index && x.view > old_view && x.status === "normal",
      );
      return s ? { replica: s.replica, view: s.view } : null;
    },
    20_000,
    20,
  );
}

/**
 * The shared shape of the pause and partition tests: history clients on a few keys; the primary
 * is cut off (`isolate`) while a probe keeps sending gets to it alone; the others must elect a new
 * primary and serve; after `rejoin` the old primary must catch up. Then: every acknowledged put is
 * in the final reads, and the whole history (probe answers included) is linearizable.
 */
async function isolatePrimaryUnderLoad(
  cluster: TestCluster,
  prng: Prng,
  what: string,
  isolate: (r: ReplicaProcess) => void,
  rejoin: (r: ReplicaProcess) => void,
): Promise<void> {
  const load = new HistoryLoad(cluster.addresses, prng, { keys: history_keys, operation_timeout_ms: 10_000 }).start(5);
  await waitFor("100 completed operations", () => load.completed >= 100);
  const old = await cluster.primary();
  const old_view = (await cluster.status())[old.index]!.view;
  const probe = new ReadProbe(cluster.addresses, old.index, load, 1_000_000);
  isolate(old);
  const isolated_at = performance.now();
  const at_isolation = load.completed;
  // Gets to the old primary all through its isolation: any answer it gives must be linearizable.
  let probing = true;
  const probing_done = (async () => {
    while (probing) {
      for (let k = 0; k < history_keys; k++) await probe.send(load.keyName(k));
      await Bun.sleep(25);
    }
  })();
  const elected = await waitNewPrimary(cluster, old, old_view);
  const elected_ms = Math.round(performance.now() - isolated_at);
  const at_election = load.completed;
  // Several seconds cut off, and the new primary serving meanwhile.
  await waitFor(
    "100 operations in the new view and 4 s of isolation",
    () => load.completed >= at_election + 100 && performance.now() - isolated_at >= 4000,
    30_000,
  );
  const during = load.completed - at_isolation;
  rejoin(old);
  const rejoined_at = performance.now();
  await waitFor(
    `replica ${old.index} back in normal status in a view >= ${elected.view}`,
    async () => {
      const s = (await cluster.status())[old.index];
      return s !== null && s !== undefined && s.status === "normal" && s.view >= elected.view && !s.primary;
    },
    30_000,
  );
  const rejoin_ms = Math.round(performance.now() - rejoined_at);
  const at_rejoin = load.completed;
  await waitFor("100 more operations after the rejoin", () => load.completed >= at_rejoin + 100, 30_000);
  probing = false;
  await probing_done;
  await load.stop();
  await probe.close();
  await load.finalReads();
  const converging_at = performance.now();
  const statuses = await cluster.waitConverged(40_000);
  const converge_ms = Math.round(performance.now() - converging_at);
  const problems = load.check();
  console.log(
    `${what}: replica ${old.index} (primary of view ${old_view}) cut off for ${Math.round(rejoined_at - isolated_at)} ms; replica ${elected.replica} primary of view ${elected.view} after ${elected_ms} ms; ${during} operations completed meanwhile; the old primary back in normal status ${rejoin_ms} ms after it rejoined, all replicas converged ${converge_ms} ms after the load stopped`,
  );
  console.log(`  history: ${load.summary()}; the probe of the old primary got ${JSON.stringify(Object.fromEntries(probe.answers))}`);
  console.log(describeStatuses(statuses));
  expect(problems).toEqual([]);
}

describe("faults against a real 3-replica cluster", () => {
  test("kill -9 of the primary under concurrent writes: writes resume within 3 s, nothing acknowledged is lost", async () => {
    const prng = seededPrng("kill -9 of the primary");
    await withCluster({}, async (cluster) => {
      const ledger = new Ledger();
      const load = new WriteLoad(cluster.addresses, ledger, prng, { keys: 50 }).start(6);
      await waitFor("200 acknowledged puts", () => load.acks.length >= 200);
      const primary = await cluster.primary();
      const before = await cluster.status();
      const killed_at = performance.now();
      await cluster.crash(primary);
      const first = await waitFor("a put issued after the kill to be acknowledged", () => load.firstAckIssuedAfter(killed_at), 15_000, 5);
      const failover_ms = Math.round(first.acked_ms - killed_at);
      await waitFor("200 more acknowledged puts", () => load.acksAfter(first.acked_ms) >= 200);
      await load.stop();
      const after = await cluster.status();
      console.log(
        `failover: kill -9 of primary replica ${primary.index} (view ${before[primary.index]?.view}): first put issued after the kill was acknowledged ${failover_ms} ms later; new view ${after.find((s) => s?.primary)?.view}`,
      );
      console.log(`  ${ledger.acknowledged_puts} puts acknowledged, ${ledger.unknown_puts} with unknown outcome, ${ledger.size} keys`);
      expect(load.errors).toEqual([]);
      expect(await ledger.verify(cluster.addresses)).toEqual([]);
      cluster.restart(primary);
      const statuses = await cluster.waitConverged();
      console.log(describeStatuses(statuses));
      expect(await ledger.verify(cluster.addresses)).toEqual([]);
      expect(failover_ms).toBeLessThan(3000);
    });
  }, 60_000);

  test("SIGSTOP of the primary for several seconds under load, then SIGCONT: nothing lost, no stale read, history linearizable", async () => {
    const prng = seededPrng("SIGSTOP of the primary");
    await withCluster({}, (cluster) =>
      isolatePrimaryUnderLoad(
        cluster,
        prng,
        "SIGSTOP",
        (r) => cluster.pause(r),
        (r) => cluster.resume(r),
      ),
    );
  }, 60_000);

  // How the partition works (tests/support/proxy.ts, tests/support/cluster.ts): the addresses in
  // the membership (what replicas and clients dial) are proxy ports; each replica really listens
  // on another port, which its proxy forwards to. Every connection carries one sender only, so a
  // proxy knows from the first header's sender byte whether a connection is replica i -> j or a
  // client's; isolate() blackholes every i -> j connection between the old primary and the backups
  // (bytes discarded, new connections accepted and silenced, as in a real partition), while client
  // connections, the probe's to the old primary included, pass. Each replica binds its real port
  // with --listen while its --addr (the membership) is its proxy's.
  test("partition of the primary from both backups (clients still reach it): a new primary serves, nothing lost, history linearizable", async () => {
    const prng = seededPrng("partition of the primary");
    await withCluster({ proxy: true }, async (cluster) => {
      const network = cluster.network!;
      await isolatePrimaryUnderLoad(
        cluster,
        prng,
        "partition",
        (r) => network.isolate(r.index),
        () => network.heal(),
      );
      console.log(`  proxies: ${JSON.stringify(network.stats)}`);
      expect(network.stats.bytes_dropped).toBeGreaterThan(0);
    });
  }, 60_000);

  test("kill -9 of all three replicas under load, restart all three: every acknowledged put reads back exactly", async () => {
    const prng = seededPrng("kill -9 of every replica");
    await withCluster({}, async (cluster) => {
      const ledger = new Ledger();
      const result = await crashRound(cluster, ledger, prng, 1, { variant: "plain", load_ms_min: 500, load_ms_max: 1500 });
      console.log(describeRound(1, result));
      expect(result.acked).toBeGreaterThan(0);
      expect(result.problems).toEqual([]);
    });
  }, 60_000);
});
