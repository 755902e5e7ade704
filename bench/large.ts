/**
 * Issue 14's throughput must-show (docs/LARGE_OBJECTS.md §12.3): large objects through the
 * TypeScript client on a 3-replica ToastyFS cluster (default block size), each workload against
 * the machine's limit measured in the same run right before and right after it (bench/disk_limit.ts):
 *
 * - one client puts a 1 GiB object (a stream of pseudo-random chunks, bench/pattern.ts; never held
 *   whole), against the same bytes written and fdatasynced by three concurrent copies;
 * - one client gets it back with getStream, every byte compared with the pattern, against a read of
 *   a cached file of the same size;
 * - 8 clients put 256 MiB each at once, against 2 GiB written the same way as the first limit.
 *
 * Ratio = ToastyFS MB/s over the mean of the two limit measurements; the target is >= 0.5 for each.
 * With --rss, the peak RSS (VmHWM, reset before each workload) of every replica and of this
 * process (the clients). etcd refuses requests above 1.5 MiB, so it cannot run these workloads;
 * when it is installed, its 1 MiB put figure (bench/run.ts's workload) is printed beside ToastyFS's.
 *
 *   ./node_modules/.bin/bun bench/run.ts --large [--rss] [--quick] [--lanes N] [--no-etcd] [--json FILE]
 *
 * --quick: 256 MiB and 8 × 32 MiB. --lanes: blocks (reads) each client keeps in flight, default
 * client_lanes_default. MB = 10^6 bytes. Ctrl-C stops every cluster and removes its data.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client, clusterStatus } from "../lib/client/client.ts";
import { client_lanes_default } from "../lib/constants.ts";
import { EtcdCluster, ToastyCluster, etcdInstalled, type BenchCluster, type Store } from "./clusters.ts";
import { getLimit, putLimit, ratioToLimit, type LimitResult } from "./disk_limit.ts";
import { closedLoop, cpuSnapshot, peakRss, restartPeakRss, type LoadResult } from "./measure.ts";
import { Pattern, PatternCheck } from "./pattern.ts";
import { fmt, loadAverage, machine, table } from "./report.ts";

export interface LargeFlags {
  quick: boolean;
  rss: boolean;
  etcd: boolean;
  json: string | null;
  /** Lanes per client (ClientOptions.lanes); null: the client's default. */
  lanes: number | null;
}

const mib = 1024 * 1024;
const gib = 1024 * mib;
const target_ratio = 0.5;
const many_clients = 8;
/** One attempt of a block or read may wait behind a queue of others' blocks on a loaded machine. */
const operation_timeout_ms = 120_000;
/** etcd's default --max-request-bytes (1.5 MiB). */
const etcd_request_bytes_max = 1.5 * mib;
const limit_name = "copy";

interface Peaks {
  /** By replica index. */
  replicas: (number | null)[];
  bench: number | null;
}

/** CPU seconds (user + system) spent during a workload: by replica index, and this process (the
 * clients and the pattern). */
interface CpuSeconds {
  replicas: number[];
  bench: number;
}

/** What a workload cost besides its time. */
interface Seen {
  peaks: Peaks | null;
  cpu: CpuSeconds;
  /** Requests the replicas refused on arrival during the workload (busy, not_primary, ...: each a
   * whole block sent for nothing), summed over the replicas; null if a status did not answer. */
  refused: Refused | null;
}

/** Requests refused on arrival, and of those busy (the primary's queue full) and not_primary. */
interface Refused {
  all: number;
  busy: number;
  not_primary: number;
}

interface WorkloadResult {
  name: string;
  bytes: number;
  seconds: number;
  mb_per_s: number;
  /** "put limit" or "get limit": what the machine did around the workload, before then after. */
  limit_kind: string;
  limits: LimitResult[];
  limit_mb_per_s: number;
  ratio: number;
  /** What was checked and how it came out. */
  check: string;
  check_ok: boolean;
  peaks: Peaks | null;
  cpu: CpuSeconds;
}

interface EtcdResult {
  version: string;
  refusal: string;
  etcd_put: LoadResult;
  toasty_put: LoadResult;
}

function log(text: string): void {
  console.error(`[large ${new Date().toISOString().slice(11, 19)}] ${text}`);
}

function sizeText(bytes: number): string {
  return bytes >= gib ? `${bytes / gib} GiB` : `${bytes / mib} MiB`;
}

// --- Clean-up on every exit path: finally blocks, and Ctrl-C / SIGTERM (handlers below).

const running: BenchCluster[] = [];
let stopping: Promise<void> | null = null;

function stopAll(): Promise<void> {
  stopping ??= Promise.all(running.map((c) => c.stop())).then(() => undefined);
  return stopping;
}

function onSignal(signal: NodeJS.Signals, code: number): void {
  process.once(signal, () => {
    log(`${signal}: stopping the clusters and removing their data`);
    void stopAll().then(() => process.exit(code));
  });
}

// --- Measuring

class Bench {
  private primary = -1;

  constructor(
    readonly cluster: ToastyCluster,
    private readonly flags: LargeFlags,
  ) {}

  private limitDirs(): string[] {
    return Array.from({ length: this.cluster.size }, (_, i) => path.join(this.cluster.dir, `limit-${i}`));
  }

  private removeLimitFiles(): void {
    for (const dir of this.limitDirs()) fs.rmSync(dir, { recursive: true, force: true });
  }

  private client(id: number): Client {
    const lanes = this.flags.lanes;
    return new Client({
      addresses: this.cluster.addresses,
      client_id: BigInt(id),
      operation_timeout_ms,
      ...(lanes !== null ? { lanes } : {}),
    });
  }

  /** Runs fn and measures the CPU time of every process, and (with --rss) every peak RSS, restarted before. */
  private async observe<T>(fn: () => Promise<T>): Promise<{ value: T; seen: Seen }> {
    const pids = this.cluster.pids();
    if (this.flags.rss) for (const pid of [...pids, "self" as const]) if (pid !== null) restartPeakRss(pid);
    const refused_before = await this.refused();
    const before = cpuSnapshot(pids);
    const value = await fn();
    const after = cpuSnapshot(pids);
    const refused_after = await this.refused();
    const cpu = { replicas: after.servers.map((ms, i) => (ms - before.servers[i]!) / 1000), bench: (after.self - before.self) / 1000 };
    const peaks = this.flags.rss ? { replicas: pids.map((pid) => (pid === null ? null : peakRss(pid))), bench: peakRss("self") } : null;
    const refused =
      refused_before === null || refused_after === null
        ? null
        : {
            all: refused_after.all - refused_before.all,
            busy: refused_after.busy - refused_before.busy,
            not_primary: refused_after.not_primary - refused_before.not_primary,
          };
    return { value, seen: { peaks, cpu, refused } };
  }

  /** The replicas' refusal counters, summed; null if one does not answer. */
  private async refused(): Promise<Refused | null> {
    const statuses = await clusterStatus(this.cluster.addresses);
    if (statuses.some((s) => s === null)) return null;
    const sum = (name: string): number => statuses.reduce((n, s) => n + (s!.counters[name] ?? 0), 0);
    return { all: sum("requests_rejected"), busy: sum("requests_busy"), not_primary: sum("requests_not_primary") };
  }

  async primaryIndex(): Promise<number> {
    this.primary = await this.cluster.leader();
    return this.primary;
  }

  private async putLimit(size: number, seed: number, keep: boolean): Promise<LimitResult> {
    const limit = await putLimit(this.limitDirs(), limit_name, size, new Pattern(seed));
    log(`  put limit: ${sizeText(size)} x ${this.cluster.size} copies in ${fmt(limit.seconds, 2)} s = ${fmt(limit.mb_per_s)} MB/s`);
    if (!keep) this.removeLimitFiles();
    return limit;
  }

  private finish(
    name: string,
    bytes: number,
    seconds: number,
    limit_kind: string,
    limits: LimitResult[],
    check: string,
    check_ok: boolean,
    seen: Seen,
  ): WorkloadResult {
    const mb_per_s = bytes / 1e6 / seconds;
    const { limit_mb_per_s, ratio } = ratioToLimit(mb_per_s, limits);
    log(
      `  ${name}: ${fmt(seconds, 2)} s = ${fmt(mb_per_s)} MB/s, ratio ${fmt(ratio, 2)}; ${check}; requests refused on arrival: ${refusedText(seen.refused)}`,
    );
    return { name, bytes, seconds, mb_per_s, limit_kind, limits, limit_mb_per_s, ratio, check, check_ok, ...seen };
  }

  /** One client puts `size` bytes under key; the put limit before and after; keeps the last
   * limit's files (a cached file of the object's size for the get limit). */
  async putOne(key: string, size: number, seed: number): Promise<WorkloadResult> {
    const name = `put ${sizeText(size)}, 1 client`;
    log(name);
    const before = await this.putLimit(size, seed, false);
    const client = this.client(1);
    let seconds: number;
    let check: string;
    let check_ok: boolean;
    let seen: Seen;
    try {
      const measured = await this.observe(async () => {
        const started = performance.now();
        const put = await client.put(key, new Pattern(seed).chunks(size), { size });
        return { put, seconds: (performance.now() - started) / 1000 };
      });
      seconds = measured.value.seconds;
      seen = measured.seen;
      const head = await client.head(key);
      check_ok = head.size === size && head.version === measured.value.put.version;
      check = `head: ${head.size} bytes, ${head.block_count} blocks, version ${head.version}${check_ok ? "" : " (NOT the put's)"}`;
    } finally {
      await client.close();
    }
    const after = await this.putLimit(size, seed, true);
    return this.finish(name, size, seconds, "put limit", [before, after], check, check_ok, seen);
  }

  /** One client reads key back with getStream and compares every byte with the pattern. */
  async getOne(key: string, size: number, seed: number): Promise<WorkloadResult> {
    const name = `get ${sizeText(size)}, 1 client`;
    log(name);
    const file = path.join(this.limitDirs()[0]!, limit_name);
    const before = getLimit(file);
    log(`  get limit: ${fmt(before.mb_per_s)} MB/s`);
    const client = this.client(2);
    const check = new PatternCheck(new Pattern(seed));
    let seconds: number;
    let seen: Seen;
    try {
      const measured = await this.observe(async () => {
        const started = performance.now();
        const stream = await client.getStream(key);
        for await (const chunk of stream.body) check.update(chunk);
        return (performance.now() - started) / 1000;
      });
      seconds = measured.value;
      seen = measured.seen;
    } finally {
      await client.close();
    }
    const after = getLimit(file);
    log(`  get limit: ${fmt(after.mb_per_s)} MB/s`);
    this.removeLimitFiles();
    const check_ok = check.received === size && check.first_mismatch === null;
    const text =
      check.first_mismatch !== null
        ? `bytes DIFFER from byte ${check.first_mismatch}`
        : check.received !== size
          ? `${check.received} bytes, NOT ${size}`
          : `all ${size} bytes equal to what was put`;
    return this.finish(name, size, seconds, "get limit", [before, after], text, check_ok, seen);
  }

  /** `clients` clients put `size` bytes each at once (each its own pattern); the put limit for
   * the total before and after. */
  async putMany(clients: number, size: number): Promise<WorkloadResult> {
    const name = `put ${clients} x ${sizeText(size)}, ${clients} clients`;
    const total = clients * size;
    log(name);
    const before = await this.putLimit(total, 100, false);
    const members = Array.from({ length: clients }, (_, c) => this.client(10 + c));
    let seconds: number;
    let seen: Seen;
    let check_ok = true;
    let check: string;
    try {
      const measured = await this.observe(async () => {
        const started = performance.now();
        const puts = await Promise.all(
          members.map(async (client, c) => {
            const put = await client.put(`large/many/${c}`, new Pattern(100 + c).chunks(size), { size });
            return { put, seconds: (performance.now() - started) / 1000 };
          }),
        );
        return { puts, seconds: (performance.now() - started) / 1000 };
      });
      seconds = measured.value.seconds;
      seen = measured.seen;
      const heads = await Promise.all(members.map((client, c) => client.head(`large/many/${c}`)));
      const wrong = heads.filter((h, c) => h.size !== size || h.version !== measured.value.puts[c]!.put.version);
      check_ok = wrong.length === 0;
      const each = measured.value.puts.map((p) => p.seconds);
      check = `heads: ${heads.length - wrong.length} of ${clients} objects ${size} bytes at the put's version; clients done in ${fmt(Math.min(...each), 1)}-${fmt(Math.max(...each), 1)} s`;
    } finally {
      await Promise.all(members.map((m) => m.close()));
    }
    const after = await this.putLimit(total, 100, false);
    return this.finish(name, total, seconds, "put limit", [before, after], check, check_ok, seen);
  }
}

// --- etcd

async function etcdComparison(toasty: ToastyCluster, quick: boolean): Promise<EtcdResult | string> {
  const version = etcdInstalled();
  if (version === null) return "etcd is not installed (apt-get install -y etcd-server): no etcd figure";
  log(`etcd ${version}: a put just above its request limit, then 1 MiB puts x ${many_clients} on both systems`);
  const etcd = await EtcdCluster.start(3, (c) => running.push(c));
  const stores: Store[] = [];
  try {
    const probe = etcd.client(0);
    stores.push(probe);
    // Just above the limit: 2 MiB and more is refused earlier, by gRPC's message size limit.
    const over = new Uint8Array(etcd_request_bytes_max + mib / 16);
    let refusal: string;
    try {
      await probe.put("large/over-limit", over);
      refusal = `a put of ${fmt(over.length)} bytes was ACCEPTED`;
    } catch (error) {
      refusal = `a put of ${fmt(over.length)} bytes was refused: ${(error as Error).message}`;
    }
    const value = new Uint8Array(mib);
    crypto.getRandomValues(value.subarray(0, 65536));
    const load = { warmup_ms: quick ? 500 : 1000, measure_ms: quick ? 2000 : 5000 };
    const run = async (cluster: BenchCluster): Promise<LoadResult> => {
      const clients = Array.from({ length: many_clients }, (_, i) => cluster.client(100 + i));
      stores.push(...clients);
      return closedLoop(clients, async (s, c, i) => (await s.put(`bp/${c}/${i % 4}`, value), mib), { ...load, pids: cluster.pids() });
    };
    const toasty_put = await run(toasty);
    const etcd_put = await run(etcd);
    return { version, refusal, etcd_put, toasty_put };
  } finally {
    await Promise.all(stores.map((s) => s.close()));
    await etcd.stop();
  }
}

// --- Report

function report(results: WorkloadResult[], primary: number, etcd: EtcdResult | string | null): string {
  const out: string[] = [];
  out.push(
    table(
      ["workload", "ToastyFS", "machine limit (before, after)", "ratio", "target", "met", "check"],
      results.map((r) => [
        r.name,
        `${fmt(r.mb_per_s)} MB/s (${fmt(r.seconds, 1)} s)`,
        `${r.limit_kind} ${fmt(r.limit_mb_per_s)} MB/s (${r.limits.map((l) => fmt(l.mb_per_s)).join(", ")})`,
        fmt(r.ratio, 2),
        `>= ${target_ratio}`,
        r.ratio >= target_ratio ? "yes" : "NO",
        r.check,
      ]),
    ),
  );
  out.push(
    "put limit: the same bytes written to one file in each of 3 directories beside the replicas' data, 4 MiB pwrites, " +
      "fdatasync every 32 MiB, the 3 copies concurrently (as 3 replicas write theirs); get limit: a cached file of the object's size read in 4 MiB reads",
  );
  out.push("");
  const per_gib = (cpu_s: number, r: WorkloadResult) => fmt(cpu_s / (r.bytes / gib), 2);
  out.push(
    table(
      [
        "CPU seconds per GiB",
        ...results[0]!.cpu.replicas.map((_, i) => `replica ${i}${i === primary ? " (primary)" : ""}`),
        "bench process",
        "all",
        "cores busy",
      ],
      results.map((r) => {
        const all = r.cpu.replicas.reduce((a, b) => a + b, 0) + r.cpu.bench;
        return [r.name, ...r.cpu.replicas.map((c) => per_gib(c, r)), per_gib(r.cpu.bench, r), per_gib(all, r), fmt(all / r.seconds, 2)];
      }),
    ),
  );
  out.push(
    `user + system time from /proc/PID/stat and process.cpuUsage() over each workload; cores busy = all / wall time, of the ${os.cpus().length} this machine has (shared with anything else running)`,
  );
  const with_peaks = results.filter((r) => r.peaks !== null);
  if (with_peaks.length > 0) {
    const mb = (b: number | null) => (b === null ? "?" : `${fmt(b / 1e6, 1)} MB`);
    out.push("");
    out.push(
      table(
        [
          "peak RSS (VmHWM)",
          ...with_peaks[0]!.peaks!.replicas.map((_, i) => `replica ${i}${i === primary ? " (primary)" : ""}`),
          "bench process",
        ],
        with_peaks.map((r) => [r.name, ...r.peaks!.replicas.map(mb), mb(r.peaks!.bench)]),
      ),
    );
    out.push("reset before each workload (/proc/PID/clear_refs); the bench process holds every client and the pattern pools (17 MiB each)");
  }
  out.push("");
  out.push(
    `etcd: refuses requests above ${sizeText(etcd_request_bytes_max)} (--max-request-bytes, default 1,572,864), so it cannot run these workloads.`,
  );
  if (typeof etcd === "string") out.push(etcd);
  else if (etcd !== null) {
    out.push(`etcd ${etcd.version}: ${etcd.refusal}`);
    out.push(
      `1 MiB put, ${many_clients} clients (bench/run.ts's workload): ToastyFS ${fmt(etcd.toasty_put.mb_per_s)} MB/s, etcd ${fmt(etcd.etcd_put.mb_per_s)} MB/s (${fmt(etcd.toasty_put.mb_per_s / etcd.etcd_put.mb_per_s, 2)}x)`,
    );
  }
  return out.join("\n");
}

// --- Main

export async function runLarge(flags: LargeFlags): Promise<void> {
  onSignal("SIGINT", 130);
  onSignal("SIGTERM", 143);
  const started = performance.now();
  const single = flags.quick ? 256 * mib : gib;
  const each = flags.quick ? 32 * mib : 256 * mib;
  console.log(`machine: ${machine()}`);
  const results: WorkloadResult[] = [];
  let etcd: EtcdResult | string | null = null;
  let primary = -1;
  try {
    const cluster = await ToastyCluster.start(3, { launched: (c) => running.push(c) });
    // Space: the two objects and the limit copies, 3 replicas each, plus a margin.
    const stat = fs.statfsSync(cluster.dir);
    const needed = 3 * (single + many_clients * each) + 3 * Math.max(single, many_clients * each) + gib;
    if (stat.bavail * stat.bsize < needed)
      throw new Error(`${cluster.dir}: ${fmt((stat.bavail * stat.bsize) / gib, 1)} GiB free, the run needs ${fmt(needed / gib, 1)} GiB`);
    console.log(
      `ToastyFS: 3 replicas, ${cluster.description}, data in ${cluster.dir}; lanes per client: ${flags.lanes ?? client_lanes_default}`,
    );
    const bench = new Bench(cluster, flags);
    primary = await bench.primaryIndex();
    results.push(await bench.putOne("large/single", single, 1));
    results.push(await bench.getOne("large/single", single, 1));
    results.push(await bench.putMany(many_clients, each));
    etcd = flags.etcd ? await etcdComparison(cluster, flags.quick) : "etcd: not run (--no-etcd)";
  } finally {
    await stopAll();
  }
  console.log("");
  console.log(report(results, primary, etcd));
  console.log(`\nbench took ${fmt((performance.now() - started) / 1000)} s; load average at the end ${loadAverage()}`);
  if (results.some((r) => !r.check_ok)) {
    console.error("error: a check failed (see the check column)");
    process.exitCode = 1;
  }
  if (flags.json !== null) fs.writeFileSync(flags.json, JSON.stringify({ machine: machine(), flags, results, etcd }, null, 2));
}

function refusedText(r: Refused | null): string {
  return r === null ? "?" : `${r.all} (busy ${r.busy}, not_primary ${r.not_primary})`;
}
