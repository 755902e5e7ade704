/**
 * Issue 17: where the tail of 64-client 1 KiB puts comes from. bench/run.ts reports p99; this runs
 * the same workload on a 3-replica cluster of `./toastyfs` and looks at the slow puts: whether they
 * come alone or all 64 clients at once (a stall of the whole cluster), and how many were in flight
 * while a checkpoint became durable (the primary's status `checkpoint` changing, polled every few
 * ms). A checkpoint used to run five fdatasyncs on the event loop of every replica at the same op
 * (docs/STORAGE.md §10.3). It also reports what else holds puts up: each process's time on a CPU and
 * time waiting for one (Linux schedstat, every thread), and the stalls of this process's own event
 * loop (where the 64 clients run), which fall on every client at once.
 *
 *   ./node_modules/.bin/bun bench/run.ts --tail [--quick] [--json FILE]
 */
import * as fs from "node:fs";
import { ToastyCluster } from "./clusters.ts";
import { percentile } from "./measure.ts";
import { fmt, loadAverage, machine } from "./report.ts";

export interface TailFlags {
  quick: boolean;
  json: string | null;
}

const clients = 64;
const value_bytes = 1024;
/** Keys per client, as bench/run.ts's "1 KiB put x 64". */
const keys_per_client = 100;
/** How often the primary's durable checkpoint is read. */
const poll_interval_ms = 2;
/** Slow puts are grouped by the 100 ms in which they ended: a group of `clients` is a stall. */
const bin_ms = 100;
/** This process's event loop is sampled every ms; a gap longer than this is a stall. */
const stall_ms = 5;

/** CPU time and run-queue wait (ms) of every thread of a process, from /proc/PID/task/TID/schedstat;
 * zeros if it is gone. */
function schedstat(pid: number): { run_ms: number; wait_ms: number } {
  let run_ms = 0;
  let wait_ms = 0;
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const [run, wait] = fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ");
      run_ms += Number(run) / 1e6;
      wait_ms += Number(wait) / 1e6;
    }
  } catch {
    // The process (or a thread) exited while being read: what was read stands.
  }
  return { run_ms, wait_ms };
}

interface Put {
  start: number;
  end: number;
}

export interface TailResult {
  puts: number;
  seconds: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
  checkpoints: number;
  /** Puts at or above p99, and how many of them were in flight when a checkpoint became durable. */
  tail: number;
  tail_at_checkpoint: number;
  /** The same share over all puts: what chance alone would give. */
  all_at_checkpoint: number;
  /** 100 ms bins holding at least `clients` slow puts: every client stalled at once. */
  stalls: number;
  /** Over the window, per process (this one first, then the replicas by index): ms on a CPU and
   * ms runnable but waiting for one, all threads. */
  sched: { name: string; run_ms: number; wait_ms: number }[];
  /** Gaps of more than stall_ms in this process's event loop: how many, and their total ms. */
  client_stalls: number;
  client_stall_ms: number;
}

export async function measureTail(warmup_ms: number, measure_ms: number): Promise<TailResult> {
  const cluster = await ToastyCluster.start(3);
  const stores = Array.from({ length: clients }, (_, i) => cluster.client(i + 1));
  try {
    const value = new Uint8Array(value_bytes).fill(7);
    const puts: Put[] = [];
    const checkpoint_times: number[] = [];
    let stopped = false;
    const t0 = performance.now();
    const gaps: number[] = [];
    let last_tick = t0;
    const sampler = setInterval(() => {
      const now = performance.now();
      if (now - last_tick > stall_ms && now - t0 >= warmup_ms && now - t0 <= warmup_ms + measure_ms) gaps.push(now - last_tick);
      last_tick = now;
    }, 1);
    const loops = stores.map(async (store, c) => {
      for (let i = 0; !stopped; i++) {
        const start = performance.now() - t0;
        await store.put(`tail/${c}/${i % keys_per_client}`, value);
        puts.push({ start, end: performance.now() - t0 });
      }
    });
    const poll = (async () => {
      let last = -1;
      while (!stopped) {
        const statuses = await cluster.status();
        const checkpoint = Math.max(...statuses.map((s) => (s?.primary ? s.checkpoint : 0)));
        if (last >= 0 && checkpoint !== last) checkpoint_times.push(performance.now() - t0);
        last = checkpoint;
        await Bun.sleep(poll_interval_ms);
      }
    })();
    const pids = [process.pid, ...cluster.pids()];
    await Bun.sleep(warmup_ms);
    const sched_before = pids.map((pid) => (pid === null ? null : schedstat(pid)));
    await Bun.sleep(measure_ms);
    const sched_after = pids.map((pid) => (pid === null ? null : schedstat(pid)));
    stopped = true;
    clearInterval(sampler);
    await Promise.all([...loops, poll]);
    const sched = pids.map((_, i) => ({
      name: i === 0 ? "bench (64 clients)" : `replica ${i - 1}`,
      run_ms: (sched_after[i]?.run_ms ?? 0) - (sched_before[i]?.run_ms ?? 0),
      wait_ms: (sched_after[i]?.wait_ms ?? 0) - (sched_before[i]?.wait_ms ?? 0),
    }));
    const window = puts.filter((p) => p.start >= warmup_ms && p.end <= warmup_ms + measure_ms);
    const latencies = window.map((p) => p.end - p.start).sort((a, b) => a - b);
    const p99 = percentile(latencies, 0.99);
    const checkpoints = checkpoint_times.filter((t) => t >= warmup_ms && t <= warmup_ms + measure_ms);
    // A put "was in flight" at a checkpoint if the checkpoint became durable (as polled, so up to
    // one poll late) between its start and its end.
    const atCheckpoint = (p: Put): boolean => checkpoints.some((t) => t >= p.start && t <= p.end + poll_interval_ms);
    const tail = window.filter((p) => p.end - p.start >= p99);
    const bins = new Map<number, number>();
    for (const p of tail) bins.set(Math.floor(p.end / bin_ms), (bins.get(Math.floor(p.end / bin_ms)) ?? 0) + 1);
    return {
      puts: window.length,
      seconds: measure_ms / 1000,
      p50_ms: percentile(latencies, 0.5),
      p90_ms: percentile(latencies, 0.9),
      p99_ms: p99,
      p999_ms: percentile(latencies, 0.999),
      max_ms: latencies[latencies.length - 1]!,
      checkpoints: checkpoints.length,
      tail: tail.length,
      tail_at_checkpoint: tail.filter(atCheckpoint).length,
      all_at_checkpoint: window.filter(atCheckpoint).length,
      stalls: [...bins.values()].filter((n) => n >= clients).length,
      sched,
      client_stalls: gaps.length,
      client_stall_ms: gaps.reduce((a, b) => a + b, 0),
    };
  } finally {
    await Promise.all(stores.map((s) => s.close()));
    await cluster.stop();
  }
}

export async function runTail(flags: TailFlags): Promise<void> {
  const [warmup_ms, measure_ms] = flags.quick ? [1000, 3000] : [2000, 10_000];
  console.log(`tail of 1 KiB puts, ${clients} clients, ${measure_ms / 1000} s after ${warmup_ms / 1000} s of warm-up`);
  const r = await measureTail(warmup_ms, measure_ms);
  const pct = (n: number, of: number) => `${fmt((100 * n) / Math.max(1, of), 1)}%`;
  console.log(
    `${fmt(r.puts)} puts (${fmt(r.puts / r.seconds)} ops/s): p50 ${fmt(r.p50_ms, 1)}, p90 ${fmt(r.p90_ms, 1)}, p99 ${fmt(r.p99_ms, 1)}, p99.9 ${fmt(r.p999_ms, 1)}, max ${fmt(r.max_ms, 1)} ms`,
  );
  console.log(`checkpoints made durable by the primary: ${r.checkpoints}`);
  console.log(
    `puts at or above p99 in flight at a checkpoint: ${r.tail_at_checkpoint} of ${r.tail} (${pct(r.tail_at_checkpoint, r.tail)}); all puts: ${pct(r.all_at_checkpoint, r.puts)}`,
  );
  console.log(`${bin_ms} ms windows in which all ${clients} clients had a put at or above p99 (whole-cluster stalls): ${r.stalls}`);
  console.log(
    `CPU over the window (ms on a CPU / ms waiting for one, all threads): ${r.sched.map((s) => `${s.name} ${fmt(s.run_ms)} / ${fmt(s.wait_ms)}`).join(", ")}`,
  );
  console.log(
    `this process's event loop stalled more than ${stall_ms} ms ${r.client_stalls} times, ${fmt(r.client_stall_ms)} ms in all (every client waits then)`,
  );
  console.log(`load average at the end ${loadAverage()}`);
  if (flags.json !== null) fs.writeFileSync(flags.json, JSON.stringify({ machine: machine(), result: r }, null, 2));
}
