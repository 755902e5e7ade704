/**
 * /livez and /readyz of real replicas (lib/node/readiness.ts) behind a ProxyNetwork: a backup cut
 * off from the others stops being ready and is ready again once healed; when the primary is killed
 * the survivors are not ready until a new view is in place. /livez answers 200 all the while.
 */
import { describe, expect, test } from "bun:test";
import { freePorts, waitFor, type ReplicaProcess, type TestCluster } from "./support/cluster.ts";
import { withCluster } from "./support/harness.ts";

interface Answer {
  code: number;
  body: string;
}

/** Polls /livez of the given replicas until stop(), keeping every answer that is not 200 "ok". */
class LivezWatch {
  readonly failures: string[] = [];
  polls = 0;
  private running = true;
  private readonly done: Promise<void>;

  constructor(
    private readonly get: (r: ReplicaProcess, path: string) => Promise<Answer>,
    private replicas: ReplicaProcess[],
  ) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      for (const r of this.replicas) {
        const a = await this.get(r, "/livez").catch((error: Error) => ({ code: 0, body: error.message }));
        this.polls += 1;
        if (a.code !== 200 || a.body !== "ok\n") this.failures.push(`replica ${r.index}: ${a.code} ${a.body.trim()}`);
      }
      await Bun.sleep(50);
    }
  }

  /** Stops watching `r` (about to be killed on purpose). */
  forget(r: ReplicaProcess): void {
    this.replicas = this.replicas.filter((x) => x !== r);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

describe("/livez and /readyz on a real 3-replica cluster", () => {
  test("a partitioned backup is 503 with a reason and 200 after healing; after a primary's death the survivors are 503 until the new view", async () => {
    const metrics_ports = await freePorts(3);
    const wrap = (r: ReplicaProcess, command: string[]) => [...command, "--metrics", `127.0.0.1:${metrics_ports[r.index]}`];
    await withCluster({ proxy: true, wrap }, async (cluster: TestCluster) => {
      const network = cluster.network!;
      const get = async (r: ReplicaProcess, path: string): Promise<Answer> => {
        const response = await fetch(`http://127.0.0.1:${metrics_ports[r.index]}${path}`, { signal: AbortSignal.timeout(2000) });
        return { code: response.status, body: await response.text() };
      };
      const readyz = (r: ReplicaProcess) => get(r, "/readyz?verbose").catch((error: Error) => ({ code: 0, body: error.message }));
      const allReady = (replicas: ReplicaProcess[]) => async () => (await Promise.all(replicas.map(readyz))).every((a) => a.code === 200);

      await waitFor("/readyz 200 on all three replicas", allReady(cluster.replicas), 20_000);
      const livez = new LivezWatch(get, [...cluster.replicas]);

      // Cut one backup off from both other replicas; clients (and this test) still reach it.
      const primary = await cluster.primary();
      const backup = cluster.replicas.find((r) => r !== primary)!;
      network.isolate(backup.index);
      const cut_at = performance.now();
      const cut = await waitFor(`/readyz 503 on the isolated replica ${backup.index}`, async () => {
        const a = await readyz(backup);
        return a.code === 503 ? a : null;
      });
      const cut_ms = Math.round(performance.now() - cut_at);
      const reason = cut.body.split("\n")[0]!;
      console.log(`replica ${backup.index} cut off: /readyz 503 after ${cut_ms} ms: ${reason}`);
      expect(reason).toMatch(/^not ready: (no word from primary \d for \d+\.\d+ s|view change in progress \(view \d+\))$/);
      expect(cut_ms).toBeLessThan(5000);
      // The other two still form a quorum and stay ready.
      await waitFor("/readyz 200 on the two connected replicas", allReady(cluster.replicas.filter((r) => r !== backup)), 10_000);
      // Its election timer fires next: it stays 503, now changing views it cannot complete.
      const electing = await waitFor(`replica ${backup.index} changing views`, async () => {
        const a = await readyz(backup);
        return a.code === 503 && a.body.startsWith("not ready: view change in progress") ? a.body.split("\n")[0]! : null;
      });
      console.log(`replica ${backup.index} still cut off: ${electing}`);

      network.heal();
      const healed_at = performance.now();
      await waitFor("/readyz 200 on all three after healing", allReady(cluster.replicas), 20_000);
      console.log(`healed: all three /readyz 200 after ${Math.round(performance.now() - healed_at)} ms`);

      // Cut the primary off: it keeps its status, but hears no backup, so it is not ready; the
      // other two elect a new primary and are ready in its view.
      const cut_primary = await cluster.primary();
      network.isolate(cut_primary.index);
      const lonely = await waitFor(`/readyz 503 on the isolated primary ${cut_primary.index}`, async () => {
        const a = await readyz(cut_primary);
        return a.code === 503 ? a.body.split("\n")[0]! : null;
      });
      console.log(`primary ${cut_primary.index} cut off: ${lonely}`);
      expect(lonely).toMatch(/^not ready: primary, heard from 0 of 2 backups within \d+\.\d+ s \(a quorum needs 1\)$/);
      await waitFor("/readyz 200 on the other two", allReady(cluster.replicas.filter((r) => r !== cut_primary)), 20_000);
      network.heal();
      await waitFor("/readyz 200 on all three after healing", allReady(cluster.replicas), 20_000);

      // Kill the primary: the survivors are not ready during the view change, ready after it.
      const old = await cluster.primary();
      const old_view = (await cluster.status())[old.index]!.view;
      const survivors = cluster.replicas.filter((r) => r !== old);
      livez.forget(old);
      await cluster.crash(old);
      const killed_at = performance.now();
      const seen_503 = new Map<number, string>();
      await waitFor(
        "both survivors answering 503 after the primary's death",
        async () => {
          for (const r of survivors) {
            const a = await readyz(r);
            if (a.code === 503 && !seen_503.has(r.index)) seen_503.set(r.index, a.body.split("\n")[0]!);
          }
          return seen_503.size === survivors.length;
        },
        10_000,
        5,
      );
      for (const [replica, line] of seen_503) {
        console.log(`replica ${replica} after the primary's death: ${line}`);
        expect(line).toMatch(/^not ready: (no word from primary \d for \d+\.\d+ s|view change in progress \(view \d+\))$/);
      }
      await waitFor("/readyz 200 on both survivors in a new view", allReady(survivors), 20_000);
      const statuses = await cluster.status();
      const new_primary = statuses.find((s) => s !== null && s.primary);
      expect(new_primary?.view).toBeGreaterThan(old_view);
      console.log(
        `primary ${old.index} (view ${old_view}) killed: survivors ready again after ${Math.round(performance.now() - killed_at)} ms, primary ${new_primary?.replica} of view ${new_primary?.view}`,
      );

      await livez.stop();
      console.log(`/livez polled ${livez.polls} times: ${livez.failures.length} failures`);
      expect(livez.failures).toEqual([]);
      expect(livez.polls).toBeGreaterThan(10);
    });
  }, 120_000);
});
