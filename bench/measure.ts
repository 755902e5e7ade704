/**
 * Measurement tools: a closed-loop load driver (each client issues its next operation when the
 * last one returns), CPU time per process from /proc, fsync counting with `perf stat` on syscall
 * tracepoints (low overhead, unlike strace), and failover timing.
 */
import { spawn, spawnSync, type Subprocess } from "bun";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { BenchCluster, Store } from "./clusters.ts";
import { waitFor } from "./clusters.ts";

export interface LoadResult {
  ops: number;
  bytes: number;
  seconds: number;
  ops_per_s: number;
  mb_per_s: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  /** CPU ms spent per 1000 operations in the window: the server members (by index) and this process. */
  server_cpu_ms_per_kop: number[];
  client_cpu_ms_per_kop: number;
}

export interface LoadOptions {
  warmup_ms: number;
  measure_ms: number;
  /** Server process ids, by member index, for CPU accounting. */
  pids: (number | null)[];
  /** Called when the measured window opens and closes (after warm-up), e.g. to count fsyncs. */
  onWindowStart?: () => Promise<void>;
  onWindowEnd?: () => Promise<void>;
}

/** Runs op on every store in a closed loop; returns throughput and latency over the window. */
export async function closedLoop(
  stores: Store[],
  op: (store: Store, client: number, i: number) => Promise<number>,
  options: LoadOptions,
): Promise<LoadResult> {
  let window_start = Infinity;
  let window_end = Infinity;
  let stopped = false;
  const latencies: number[] = [];
  let bytes = 0;
  let errors = 0;
  const loops = stores.map(async (store, client) => {
    for (let i = 0; !stopped; i++) {
      const call = performance.now();
      let size: number;
      try {
        size = await op(store, client, i);
      } catch (error) {
        errors += 1;
        if (errors <= 3) console.error(`  (error: ${(error as Error).message})`);
        continue;
      }
      const ret = performance.now();
      if (call >= window_start && ret <= window_end) {
        latencies.push(ret - call);
        bytes += size;
      }
    }
  });
  await Bun.sleep(options.warmup_ms);
  await options.onWindowStart?.();
  const cpu_before = cpuSnapshot(options.pids);
  window_start = performance.now();
  await Bun.sleep(options.measure_ms);
  window_end = performance.now();
  const cpu_after = cpuSnapshot(options.pids);
  await options.onWindowEnd?.();
  stopped = true;
  await Promise.all(loops);

  const seconds = (window_end - window_start) / 1000;
  latencies.sort((a, b) => a - b);
  const ops = latencies.length;
  const kops = Math.max(ops, 1) / 1000;
  return {
    ops,
    bytes,
    seconds,
    ops_per_s: ops / seconds,
    mb_per_s: bytes / 1e6 / seconds,
    p50_ms: percentile(latencies, 0.5),
    p99_ms: percentile(latencies, 0.99),
    errors,
    server_cpu_ms_per_kop: cpu_after.servers.map((t, i) => (t - (cpu_before.servers[i] ?? 0)) / kops),
    client_cpu_ms_per_kop: (cpu_after.self - cpu_before.self) / kops,
  };
}

/** The q-quantile of ascending samples (NaN for none). */
export function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

// --- CPU time

const clock_ticks_per_s = Number(spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;

/** CPU ms (user + system, all threads) of each pid, and of this process. */
export function cpuSnapshot(pids: (number | null)[]): { servers: number[]; self: number } {
  const servers = pids.map((pid) => {
    if (pid === null) return 0;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the ")" that closes comm: state is field 3, utime 14, stime 15.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / clock_ticks_per_s;
    } catch {
      return 0;
    }
  });
  const self = process.cpuUsage();
  return { servers, self: (self.user + self.system) / 1000 };
}

/** CPU use of idle processes over ms, in percent of one core (summed over the pids). */
export async function idleCpuPercent(pids: (number | null)[], ms: number): Promise<number> {
  const before = cpuSnapshot(pids).servers.reduce((a, b) => a + b, 0);
  await Bun.sleep(ms);
  const after = cpuSnapshot(pids).servers.reduce((a, b) => a + b, 0);
  return (100 * (after - before)) / ms;
}

/**
 * Waits until the servers' CPU over a window of window_ms is at most quiet_percent of a core, or
 * timeout_ms passed; returns the ms waited and the last reading. A workload must not pay for the
 * work the previous one left behind (a checkpoint, compaction, the idle nudge after large puts),
 * which would fall on whichever system ran last.
 */
export async function waitQuiet(
  pids: (number | null)[],
  quiet_percent: number,
  timeout_ms: number,
  window_ms = 500,
): Promise<{ waited_ms: number; percent: number }> {
  const started = performance.now();
  for (;;) {
    const percent = await idleCpuPercent(pids, window_ms);
    const waited_ms = performance.now() - started;
    if (percent <= quiet_percent || waited_ms >= timeout_ms) return { waited_ms, percent };
  }
}

// --- fsync counting

export function perfAvailable(): boolean {
  const result = spawnSync(["perf", "stat", "-x", ",", "-e", "syscalls:sys_enter_fdatasync", "--", "true"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  return (
    result.exitCode === 0 &&
    /sys_enter_fdatasync/.test(result.stderr.toString()) &&
    !/not supported|<not counted>/.test(result.stderr.toString())
  );
}

/**
 * Counts fdatasync and fsync calls of one process between enable() and disable(), with perf stat
 * attached to the process's syscall tracepoints (started disabled, switched through a control
 * FIFO that acknowledges each command, so the counted interval is exact).
 */
export class SyncCounter {
  private readonly perf: Subprocess<"ignore", "pipe", "pipe">;
  private readonly control_fd: number;
  private readonly ack_fd: number;
  private readonly dir: string;
  private acks_seen = 0;
  private acks_text = "";

  constructor(pid: number) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-perf-"));
    const control = path.join(this.dir, "control");
    const ack = path.join(this.dir, "ack");
    spawnSync(["mkfifo", control, ack]);
    // Non-blocking opens: O_RDWR on the control FIFO and O_NONBLOCK on the ack FIFO never wait
    // for perf to open the other end (and the ack is polled, never read with a blocking call).
    this.control_fd = fs.openSync(control, fs.constants.O_RDWR);
    this.ack_fd = fs.openSync(ack, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    this.perf = spawn(
      [
        "perf",
        "stat",
        "-x",
        ",",
        "-D",
        "-1",
        "-e",
        "syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync",
        "-p",
        String(pid),
        "--control",
        `fifo:${control},${ack}`,
      ],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
  }

  private async command(text: string): Promise<void> {
    const wanted = this.acks_seen + 1;
    fs.writeSync(this.control_fd, `${text}\n`);
    const buffer = Buffer.alloc(64);
    await waitFor(
      `perf to acknowledge "${text}"`,
      () => {
        if (this.perf.exitCode !== null) throw new Error(`perf exited with code ${this.perf.exitCode}`);
        try {
          const n = fs.readSync(this.ack_fd, buffer, 0, buffer.length, null);
          this.acks_text += buffer.toString("utf8", 0, n);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
        }
        this.acks_seen = this.acks_text.split("ack").length - 1;
        return this.acks_seen >= wanted ? true : null;
      },
      10_000,
      2,
    );
  }

  enable(): Promise<void> {
    return this.command("enable");
  }

  disable(): Promise<void> {
    return this.command("disable");
  }

  /** Stops perf and returns the counts. */
  async finish(): Promise<{ fdatasync: number; fsync: number }> {
    this.perf.kill("SIGINT");
    const [text] = await Promise.all([new Response(this.perf.stderr).text(), this.perf.exited]);
    fs.closeSync(this.ack_fd);
    fs.closeSync(this.control_fd);
    fs.rmSync(this.dir, { recursive: true, force: true });
    const count = (event: string): number => {
      const line = text.split("\n").find((l) => l.includes(event));
      return line === undefined ? NaN : Number(line.split(",")[0]);
    };
    return { fdatasync: count("sys_enter_fdatasync"), fsync: count("sys_enter_fsync") };
  }
}

// --- failover

export interface FailoverSample {
  /** From SIGKILL of the leader to the first successful write issued after it. */
  recovery_ms: number;
  killed: number;
}

/** A fresh probe write is started this often after the kill (from an idle probe client). */
export const probe_interval_ms = 20;

/**
 * Under a write load from `writers`, SIGKILLs the leader and measures the time until a write
 * issued after the kill succeeds. Besides the load, a fresh probe write starts every
 * probe_interval_ms from an idle client of `probes` (made with a short attempt timeout), so the
 * result does not depend on how long a client library waits before retrying a request that hung
 * (etcd holds proposals made during an election until a server-side timeout): it is when the
 * cluster accepts writes again, to within the probe interval. Then restarts the member and waits until
 * it has caught up.
 */
export async function failoverOnce(
  cluster: BenchCluster,
  writers: Store[],
  probes: Store[],
  value: Uint8Array,
  label: string,
): Promise<FailoverSample> {
  await cluster.waitHealthy(30_000);
  let kill_at = Infinity;
  let first_success = Infinity;
  let stopped = false;
  let written = 0;
  const write = async (store: Store, key: string): Promise<void> => {
    const call = performance.now();
    try {
      await store.put(key, value);
    } catch {
      return;
    }
    written += 1;
    if (call >= kill_at) first_success = Math.min(first_success, performance.now());
  };
  // Every probe has a session and a connection before the kill.
  await Promise.all(probes.map((p, i) => p.put(`${label}/probe/${i}`, value)));
  const loops = writers.map(async (store, c) => {
    for (let i = 0; !stopped; i++) await write(store, `${label}/${c}/${i % 64}`);
  });
  await waitFor("the write load to run", () => (written >= 20 * writers.length ? true : null), 20_000, 5);
  const killed = await cluster.leader();
  kill_at = performance.now();
  const killing = cluster.kill(killed);
  const idle = [...probes];
  const in_flight: Promise<void>[] = [];
  let n = 0;
  await waitFor(
    "a write to succeed after the leader was killed",
    () => {
      if (first_success < Infinity) return true;
      const probe = idle.pop();
      if (probe !== undefined) {
        const i = n++;
        in_flight.push(write(probe, `${label}/probe/${i % 64}`).then(() => void idle.push(probe)));
      }
      return null;
    },
    60_000,
    probe_interval_ms,
  );
  stopped = true;
  await killing;
  await Promise.all([...loops, ...in_flight]);
  cluster.restart(killed);
  await cluster.waitHealthy(60_000, killed);
  return { recovery_ms: first_success - kill_at, killed };
}

// --- Peak memory

/** VmHWM (peak resident set) of a process in bytes; null once it has exited. */
export function peakRss(pid: number | "self"): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? null : Number(m[1]) * 1024;
  } catch {
    return null;
  }
}

/** Starts a new peak: VmHWM back to the current RSS (Linux >= 4.0). False when not allowed. */
export function restartPeakRss(pid: number | "self"): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}
