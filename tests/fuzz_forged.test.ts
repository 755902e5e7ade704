/**
 * Forged but well-formed replica messages (issue 12 item 2): valid checksums, the right cluster id
 * and incarnation, sender indexes in range, views near the current one, random commands, ops,
 * commit numbers, checkpoints and bodies, sent to every replica while clients work; meanwhile the
 * primary is killed (kill -9) and restarted twice. The cluster must keep serving, the clients'
 * history must be linearizable, and nothing acknowledged may be lost. On c3a42d7 two forged
 * commit frames were enough to wedge every later view change.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { superblock_path } from "../lib/storage/superblock.ts";
import { describeStatuses, waitFor, type TestCluster } from "./support/cluster.ts";
import { seededPrng, withCluster } from "./support/harness.ts";
import { HistoryLoad, Ledger, WriteLoad } from "./support/workload.ts";
import { forgedPeerMessage, type ForgeTarget } from "./support/fuzz.ts";
import type { Prng } from "../lib/util/prng.ts";
import { Client } from "../lib/client/client.ts";

/** Forged frames per replica per round (a round every few milliseconds while the test runs). */
const frames_per_round = 20;

/** The incarnation a replica's superblock holds (offset 36 of its first copy). */
function incarnationOf(data_dir: string): number {
  const bytes = fs.readFileSync(path.join(data_dir, superblock_path));
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getUint32(36, true);
}

/** Sends forged frames to every running replica until stopped; counts what was sent. */
class Forger {
  sent = 0;
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly cluster: TestCluster,
    private readonly prng: Prng,
    private readonly target: ForgeTarget,
  ) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const statuses = await this.cluster.status(300);
      const live = statuses.filter((s) => s !== null);
      if (live.length > 0) {
        this.target.view = Math.max(...live.map((s) => s!.view));
        this.target.op = Math.max(...live.map((s) => s!.commit_max));
      }
      await Promise.all(this.cluster.replicas.filter((r) => this.cluster.running(r)).map((r) => this.burst(r.port, r.index)));
    }
  }

  /** One connection, a burst of forged frames, then close. */
  private burst(port: number, index: number): Promise<void> {
    const frames = Array.from({ length: frames_per_round }, () => forgedPeerMessage(this.prng, this.target, index, Date.now()));
    return new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        for (const f of frames) socket.write(f);
        this.sent += frames.length;
        socket.end();
      });
      socket.on("error", () => resolve());
      socket.on("close", () => resolve());
      socket.setTimeout(2000, () => socket.destroy());
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

test("forged well-formed replica messages, and two primary kills: the cluster serves, stays linearizable, loses nothing", async () => {
  const prng = seededPrng("fuzz_forged");
  await withCluster({}, async (cluster) => {
    const incarnations = cluster.replicas.map((r) => incarnationOf(r.data_dir));
    expect(new Set(incarnations).size).toBe(1);
    const probe = new Client({ addresses: cluster.addresses });
    const target: ForgeTarget = {
      cluster: probe.membership.cluster,
      replica_count: cluster.replicas.length,
      view: 0,
      incarnation: incarnations[0]!,
      op: 0,
    };
    await probe.close();

    const ledger = new Ledger();
    const writes = new WriteLoad(cluster.addresses, ledger, prng.fork(), { keys: 40, prefix: "forged" }).start(2);
    const history = new HistoryLoad(cluster.addresses, prng.fork(), { keys: 4, operation_timeout_ms: 10_000 }).start(3);
    const forger = new Forger(cluster, prng.fork(), target);

    for (let kill = 0; kill < 2; kill++) {
      const before = history.completed;
      await waitFor("100 operations under forged traffic", () => history.completed >= before + 100, 30_000);
      const primary = await cluster.primary();
      await cluster.crash(primary);
      const at_kill = history.completed;
      await waitFor("operations to complete again after the primary's kill -9", () => history.completed >= at_kill + 100, 40_000);
      cluster.spawn(primary);
    }
    const at_end = history.completed;
    await waitFor("100 more operations with every replica back", () => history.completed >= at_end + 100, 40_000);
    await forger.stop();
    await history.stop();
    await writes.stop();
    await history.finalReads();
    const statuses = await cluster.waitConverged(40_000);
    console.log(`${forger.sent} forged frames sent; ${writes.acks.length} puts acknowledged; history: ${history.summary()}`);
    console.log(describeStatuses(statuses));
    const violations = statuses.map((s) => s.counters.protocol_violations ?? 0);
    console.log(`protocol violations counted per replica: ${violations.join(", ")}`);

    expect(history.check()).toEqual([]);
    expect(writes.errors).toEqual([]);
    expect(await ledger.verify(cluster.addresses)).toEqual([]);
    for (const r of cluster.replicas) expect(cluster.running(r)).toBe(true);
    for (const r of cluster.replicas) expect(cluster.logs(r)).not.toContain("AssertionError");
  });
}, 180_000);
