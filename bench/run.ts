/**
 * The docs/DESIGN.md §9 benchmark: ToastyFS and (when Debian's etcd-server is installed) etcd, each as a
 * 3-member cluster on loopback with every write fsynced on a quorum, under the same closed-loop
 * workloads driven from this process. Prints a table with ratios ToastyFS/etcd from the same run.
 *
 *   ./node_modules/.bin/bun bench/run.ts [--quick] [--no-etcd] [--json FILE]
 *   ./node_modules/.bin/bun bench/run.ts --profile     (ToastyFS only, replicas under bun --cpu-prof)
 *   ./node_modules/.bin/bun bench/run.ts --large [--rss] (issue 14: 1 GiB objects against the machine's limit; bench/large.ts)
 *   ./node_modules/.bin/bun bench/run.ts --s3 [--quick] [--profile] (issue 15: the S3 gateway against the native client; bench/s3.ts)
 *   ./node_modules/.bin/bun bench/run.ts --auth [--quick] [--rounds N] [--profile] (issue 16: plain vs secret vs TLS + secret; bench/auth.ts)
 *   ./node_modules/.bin/bun bench/run.ts --client-failover [--quick] (issue 17: a CLI or Client put resuming after the primary's SIGKILL; bench/client_failover.ts)
 *   ./node_modules/.bin/bun bench/run.ts --tail [--quick] (issue 17: where the p99 of 64-client puts comes from; bench/tail.ts)
 *
 * Before each workload the page cache is written back (sync) and both clusters settle (waitQuiet:
 * their CPU back near idle), so no workload pays for what the one before it left behind. Results
 * move ±40% between runs on a shared 2-core machine; compare ratios, not absolutes.
 */
import * as fs from "node:fs";
import { spawnSync } from "bun";
import * as os from "node:os";
import * as path from "node:path";
import { EtcdCluster, ToastyCluster, etcdInstalled, type BenchCluster, type Store } from "./clusters.ts";
import { SyncCounter, closedLoop, failoverOnce, idleCpuPercent, perfAvailable, waitQuiet, type LoadResult } from "./measure.ts";
import { summarizeProfile } from "./profile.ts";
import { fmt, loadAverage, machine, table } from "./report.ts";
import { runLarge } from "./large.ts";
import { runS3 } from "./s3.ts";
import { runAuth } from "./auth.ts";
import { runClientFailover } from "./client_failover.ts";
import { runTail } from "./tail.ts";

/** The longest wait for both clusters to settle before a workload (waitQuiet). */
const quiet_timeout_ms = 15_000;

interface Settings {
  warmup_ms: number;
  measure_ms: number;
  failover_reps: number;
}

const usage =
  "usage: bun bench/run.ts [--quick] [--no-etcd] [--json FILE] [--profile] | --large [--rss] [--quick] [--lanes N] [--no-etcd] [--json FILE] | --s3 [--quick] [--profile] [--json FILE] | --auth [--quick] [--rounds N] [--profile] [--json FILE] | --client-failover [--quick] [--json FILE] | --tail [--quick] [--json FILE]";
const args = process.argv.slice(2);
const flags = {
  quick: false,
  etcd: true,
  profile: false,
  large: false,
  s3: false,
  auth: false,
  client_failover: false,
  tail: false,
  rounds: null as number | null,
  rss: false,
  lanes: null as number | null,
  json: null as string | null,
};
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === "--quick") flags.quick = true;
  else if (a === "--no-etcd") flags.etcd = false;
  else if (a === "--profile") flags.profile = true;
  else if (a === "--large") flags.large = true;
  else if (a === "--s3") flags.s3 = true;
  else if (a === "--auth") flags.auth = true;
  else if (a === "--client-failover") flags.client_failover = true;
  else if (a === "--tail") flags.tail = true;
  else if (a === "--rounds" && args[i + 1] !== undefined) {
    const text = args[++i]!;
    flags.rounds = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(flags.rounds >= 1 && flags.rounds <= 20)) {
      console.error(`error: --rounds must be a whole number from 1 to 20, got "${text}"`);
      process.exit(2);
    }
  } else if (a === "--rss") flags.rss = true;
  else if (a === "--lanes" && args[i + 1] !== undefined) {
    const text = args[++i]!;
    flags.lanes = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(flags.lanes >= 1 && flags.lanes <= 64)) {
      console.error(`error: --lanes must be a whole number from 1 to 64 (the client's limit), got "${text}"`);
      process.exit(2);
    }
  } else if (a === "--json" && args[i + 1] !== undefined) flags.json = args[++i]!;
  else if (a === "--help" || a === "-h") {
    console.log(usage);
    process.exit(0);
  } else {
    console.error(`error: unknown argument ${a} (${usage})`);
    process.exit(2);
  }
}
if ((flags.rss || flags.lanes !== null) && !flags.large) {
  console.error(`error: --rss and --lanes go with --large (${usage})`);
  process.exit(2);
}
if (flags.s3 && (flags.large || !flags.etcd)) {
  console.error(`error: --s3 is its own run, without --large or --no-etcd (${usage})`);
  process.exit(2);
}
if (flags.auth && (flags.large || flags.s3 || !flags.etcd)) {
  console.error(`error: --auth is its own run, without --large, --s3 or --no-etcd (${usage})`);
  process.exit(2);
}
if (flags.client_failover && (flags.large || flags.s3 || flags.auth || flags.profile || !flags.etcd)) {
  console.error(`error: --client-failover is its own run, without --large, --s3, --auth, --profile or --no-etcd (${usage})`);
  process.exit(2);
}
if (flags.tail && (flags.large || flags.s3 || flags.auth || flags.profile || flags.client_failover)) {
  console.error(`error: --tail is its own run (ToastyFS only), without --large, --s3, --auth, --profile or --client-failover (${usage})`);
  process.exit(2);
}
if (flags.rounds !== null && !flags.auth) {
  console.error(`error: --rounds goes with --auth (${usage})`);
  process.exit(2);
}
if (flags.profile && flags.large) {
  console.error(`error: --profile and --large are separate runs (${usage})`);
  process.exit(2);
}
const settings: Settings = flags.quick
  ? { warmup_ms: 500, measure_ms: 2000, failover_reps: 2 }
  : { warmup_ms: 1000, measure_ms: 5000, failover_reps: 5 };

const kib = 1024;
const mib = 1024 * 1024;
const clients_many = 64;
const clients_big = 8;
const get_keys = 1000;
const big_get_keys = 16;
/** Clients that start a fresh write every 20 ms after the kill (bench/measure.ts failoverOnce). */
const failover_probes = 60;
/** A probe write that hangs (sent during the election) is retried on another member after this. */
const probe_attempt_timeout_ms = 250;

function randomValue(size: number): Uint8Array {
  const value = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(value.subarray(i, Math.min(size, i + 65536)));
  return value;
}

interface SyncStats {
  puts: number;
  /** Committed entries in the window: ToastyFS prepares (each a batch), etcd raft entries. */
  commits: number;
  /** Per member: [fdatasync, fsync]. */
  members: { fdatasync: number; fsync: number; leader: boolean; storage_fdatasyncs?: number }[];
}

interface SuiteResult {
  system: string;
  version: string;
  put1: LoadResult;
  put64: LoadResult;
  get64: LoadResult;
  putBig: LoadResult;
  getBig: LoadResult;
  failover_ms: number[];
  sync: SyncStats | null;
  leader: number;
}

async function prefill(stores: Store[], keys: string[], value: Uint8Array): Promise<void> {
  let next = 0;
  await Promise.all(
    stores.map(async (store) => {
      while (next < keys.length) await store.put(keys[next++]!, value);
    }),
  );
}

/**
 * One system's workloads, run step by step so that main() can interleave the two systems: on a
 * shared machine, background load then hits both sides of each comparison alike.
 */
class SystemRun {
  readonly stores: Store[];
  readonly result: Partial<SuiteResult> & { system: string; version: string; failover_ms: number[]; sync: SyncStats | null };
  private readonly small = randomValue(kib);
  private readonly large = randomValue(mib);
  private readonly load = { warmup_ms: settings.warmup_ms, measure_ms: settings.measure_ms };

  constructor(
    readonly cluster: BenchCluster,
    version: string,
    private readonly count_syncs: boolean,
  ) {
    this.stores = Array.from({ length: clients_many + failover_probes }, (_, i) =>
      i < clients_many ? cluster.client(i) : cluster.client(i, probe_attempt_timeout_ms),
    );
    this.result = { system: cluster.name, version, failover_ms: [], sync: null };
  }

  private log(text: string): void {
    console.error(`[${this.cluster.name}] ${text}`);
  }

  private get many(): Store[] {
    return this.stores.slice(0, clients_many);
  }

  private get big(): Store[] {
    return this.stores.slice(0, clients_big);
  }

  async put1(): Promise<void> {
    this.result.leader = await this.cluster.leader();
    this.log("1 KiB put, 1 client");
    this.result.put1 = await closedLoop([this.stores[0]!], async (s, _c, i) => (await s.put(`p1/${i % 1000}`, this.small), kib), {
      ...this.load,
      pids: this.cluster.pids(),
    });
  }

  async put64(): Promise<void> {
    this.log(`1 KiB put, ${clients_many} clients${this.count_syncs ? " (counting fsyncs with perf)" : ""}`);
    const counters = this.count_syncs ? this.cluster.pids().map((pid) => (pid === null ? null : new SyncCounter(pid))) : [];
    let commits_before = 0;
    let commits_after = 0;
    // ToastyFS also counts its own fdatasyncs (FileStorage stats): exact whichever thread ran them,
    // where perf stat -p follows only the threads that existed when it attached.
    const storageSyncs = async (): Promise<(number | null)[]> =>
      this.cluster instanceof ToastyCluster ? (await this.cluster.status()).map((s) => s?.counters.fdatasyncs ?? null) : [];
    let syncs_before: (number | null)[] = [];
    let syncs_after: (number | null)[] = [];
    const put64 = await closedLoop(this.many, async (s, c, i) => (await s.put(`p64/${c}/${i % 100}`, this.small), kib), {
      ...this.load,
      pids: this.cluster.pids(),
      onWindowStart: async () => {
        await Promise.all(counters.map((c) => c?.enable()));
        commits_before = await this.cluster.commitCount();
        syncs_before = await storageSyncs();
      },
      onWindowEnd: async () => {
        commits_after = await this.cluster.commitCount();
        syncs_after = await storageSyncs();
        await Promise.all(counters.map((c) => c?.disable()));
      },
    });
    this.result.put64 = put64;
    if (this.count_syncs) {
      const counts = await Promise.all(counters.map((c) => c?.finish() ?? Promise.resolve({ fdatasync: NaN, fsync: NaN })));
      const current = await this.cluster.leader();
      this.result.sync = {
        puts: put64.ops,
        commits: commits_after - commits_before,
        members: counts.map((c, i) => {
          const before = syncs_before[i];
          const after = syncs_after[i];
          const storage = before != null && after != null ? { storage_fdatasyncs: after - before } : {};
          return { ...c, leader: i === current, ...storage };
        }),
      };
    }
  }

  async get64(): Promise<void> {
    this.log(`prefilling ${get_keys} keys of 1 KiB`);
    const names = Array.from({ length: get_keys }, (_, k) => `g/${k}`);
    await prefill(this.many, names, this.small);
    this.log(`1 KiB linearizable get, ${clients_many} clients`);
    this.result.get64 = await closedLoop(this.many, (s, c, i) => s.get(names[(c * 7919 + i * 31) % get_keys]!), {
      ...this.load,
      pids: this.cluster.pids(),
    });
  }

  async putBig(): Promise<void> {
    this.log(`1 MiB put, ${clients_big} clients`);
    this.result.putBig = await closedLoop(this.big, async (s, c, i) => (await s.put(`bp/${c}/${i % 4}`, this.large), mib), {
      ...this.load,
      pids: this.cluster.pids(),
    });
  }

  async getBig(): Promise<void> {
    this.log(`prefilling ${big_get_keys} keys of 1 MiB`);
    const names = Array.from({ length: big_get_keys }, (_, k) => `bg/${k}`);
    await prefill(this.big, names, this.large);
    this.log(`1 MiB get, ${clients_big} clients`);
    this.result.getBig = await closedLoop(this.big, (s, c, i) => s.get(names[(c + i) % big_get_keys]!), {
      ...this.load,
      pids: this.cluster.pids(),
    });
  }

  async failover(rep: number): Promise<void> {
    const sample = await failoverOnce(this.cluster, this.stores.slice(8, 16), this.stores.slice(clients_many), this.small, `f${rep}`);
    this.log(
      `failover ${rep + 1}/${settings.failover_reps}: killed member ${sample.killed}, writes succeeded again after ${sample.recovery_ms.toFixed(0)} ms`,
    );
    this.result.failover_ms.push(sample.recovery_ms);
  }

  finished(): SuiteResult {
    const r = this.result;
    if (
      r.put1 === undefined ||
      r.put64 === undefined ||
      r.get64 === undefined ||
      r.putBig === undefined ||
      r.getBig === undefined ||
      r.leader === undefined
    ) {
      throw new Error(`${r.system}: a workload did not run`);
    }
    return { ...r, put1: r.put1, put64: r.put64, get64: r.get64, putBig: r.putBig, getBig: r.getBig, leader: r.leader };
  }

  close(): Promise<unknown> {
    return Promise.all(this.stores.map((s) => s.close()));
  }
}

// --- Report

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

interface Row {
  name: string;
  cell(r: SuiteResult): string;
  value(r: SuiteResult): number;
  /** docs/DESIGN.md §9: the absolute target, etcd's figure there, and whether lower is better. */
  target: number;
  design_etcd: number;
  lower_is_better?: boolean;
  target_text: string;
  /** An extra condition on the target (p99). */
  also?: (r: SuiteResult) => boolean;
}

const latency = (l: LoadResult) => `p50 ${fmt(l.p50_ms, 1)} p99 ${fmt(l.p99_ms, 1)} ms`;
const rows: Row[] = [
  {
    name: "1 KiB put, 1 client",
    cell: (r) => `${fmt(r.put1.ops_per_s)} ops/s, ${latency(r.put1)}`,
    value: (r) => r.put1.ops_per_s,
    target: 600,
    design_etcd: 487,
    target_text: ">= 600 ops/s",
  },
  {
    name: "1 KiB put, 64 clients",
    cell: (r) => `${fmt(r.put64.ops_per_s)} ops/s, ${latency(r.put64)}`,
    value: (r) => r.put64.ops_per_s,
    target: 6000,
    design_etcd: 3050,
    target_text: ">= 6,000 ops/s, p99 <= 30 ms",
    also: (r) => r.put64.p99_ms <= 30,
  },
  {
    name: "1 KiB lin. get, 64 clients",
    cell: (r) => `${fmt(r.get64.ops_per_s)} ops/s, ${latency(r.get64)}`,
    value: (r) => r.get64.ops_per_s,
    target: 10000,
    design_etcd: 4432,
    target_text: ">= 10,000 ops/s",
  },
  {
    name: "1 MiB put, 8 clients",
    cell: (r) => `${fmt(r.putBig.mb_per_s)} MB/s, ${latency(r.putBig)}`,
    value: (r) => r.putBig.mb_per_s,
    target: 100,
    design_etcd: 49,
    target_text: ">= 100 MB/s",
  },
  {
    name: "1 MiB get, 8 clients",
    cell: (r) => `${fmt(r.getBig.mb_per_s)} MB/s, ${latency(r.getBig)}`,
    value: (r) => r.getBig.mb_per_s,
    target: 800,
    design_etcd: 440,
    target_text: ">= 800 MB/s",
  },
  {
    name: "primary SIGKILL -> writes ok",
    cell: (r) =>
      `${fmt(median(r.failover_ms) / 1000, 2)} s (${fmt(Math.min(...r.failover_ms) / 1000, 2)}-${fmt(Math.max(...r.failover_ms) / 1000, 2)}, n=${r.failover_ms.length})`,
    value: (r) => median(r.failover_ms) / 1000,
    target: 1.5,
    design_etcd: 1.8,
    lower_is_better: true,
    target_text: "<= 1.5 s",
  },
];

function report(toasty: SuiteResult, etcd: SuiteResult | null): string {
  const out: string[] = [];
  const header = [
    "workload",
    `ToastyFS`,
    ...(etcd ? [`etcd ${etcd.version}`, "ToastyFS/etcd"] : []),
    "docs/DESIGN.md §9 target",
    "target met",
    ...(etcd ? ["target as etcd ratio", "ratio met"] : []),
  ];
  const body = rows.map((row) => {
    const t = row.value(toasty);
    const met_abs = (row.lower_is_better ? t <= row.target : t >= row.target) && (row.also?.(toasty) ?? true);
    const cells = [row.name, row.cell(toasty)];
    if (etcd) {
      const e = row.value(etcd);
      cells.push(row.cell(etcd), `${fmt(t / e, 2)}x${row.lower_is_better ? " (lower is better)" : ""}`);
    }
    cells.push(row.target_text, met_abs ? "yes" : "NO");
    if (etcd) {
      const wanted = row.target / row.design_etcd;
      const ratio = t / row.value(etcd);
      const met_ratio = row.lower_is_better ? ratio <= wanted : ratio >= wanted;
      cells.push(`${row.lower_is_better ? "<=" : ">="} ${fmt(wanted, 2)}x`, met_ratio ? "yes" : "NO");
    }
    return cells;
  });
  out.push(table(header, body));

  out.push("");
  const cpu_header = [
    "CPU ms per 1000 ops",
    ...[toasty, ...(etcd ? [etcd] : [])].flatMap((r) => [`${r.system} leader`, `${r.system} followers`, `${r.system} client`]),
  ];
  const cpu_rows = (["put1", "put64", "get64", "putBig", "getBig"] as const).map((w, i) => {
    const cells = [rows[i]!.name];
    for (const r of [toasty, ...(etcd ? [etcd] : [])]) {
      const l = r[w];
      const leader = l.server_cpu_ms_per_kop[r.leader] ?? NaN;
      const followers = l.server_cpu_ms_per_kop.reduce((a, b) => a + b, 0) - leader;
      cells.push(fmt(leader), fmt(followers), fmt(l.client_cpu_ms_per_kop));
    }
    return cells;
  });
  out.push(table(cpu_header, cpu_rows));

  for (const r of [toasty, ...(etcd ? [etcd] : [])]) {
    const s = r.sync;
    if (s === null) continue;
    const per = s.members.map(
      (m, i) =>
        `member ${i}${m.leader ? " (leader)" : ""}: ${fmt(m.fdatasync)} fdatasync + ${fmt(m.fsync)} fsync = ${fmt(s.puts / Math.max(1, m.fdatasync + m.fsync), 1)} puts per sync` +
        (m.storage_fdatasyncs === undefined
          ? ""
          : `; its own count: ${fmt(m.storage_fdatasyncs)} fdatasyncs = ${fmt(s.puts / Math.max(1, m.storage_fdatasyncs), 1)} puts per fdatasync`),
    );
    const unit = r.system === "ToastyFS" ? "prepares" : "raft entries";
    out.push("");
    out.push(
      `Group commit, ${r.system}, 1 KiB put x 64 clients (perf stat on syscalls:sys_enter_fdatasync/fsync): ${fmt(s.puts)} puts, ${fmt(s.commits)} ${unit} committed (${fmt(s.puts / Math.max(1, s.commits), 1)} puts per ${unit === "prepares" ? "prepare" : "entry"})`,
    );
    for (const line of per) out.push(`  ${line}`);
  }
  const errors = [toasty, ...(etcd ? [etcd] : [])].map(
    (r) => `${r.system}: ${[r.put1, r.put64, r.get64, r.putBig, r.getBig].reduce((a, l) => a + l.errors, 0)}`,
  );
  out.push("", `client errors during measured workloads (retried): ${errors.join(", ")}`);
  return out.join("\n");
}

// --- Main

/** ToastyFS replicas under bun --cpu-prof, one fresh cluster per workload so profiles do not mix. */
async function runProfile(): Promise<void> {
  const small = randomValue(kib);
  const large = randomValue(mib);
  const workloads: {
    name: string;
    clients: number;
    prepare?: (stores: Store[]) => Promise<void>;
    op: (s: Store, c: number, i: number) => Promise<number>;
  }[] = [
    { name: "1 KiB put x 64", clients: clients_many, op: async (s, c, i) => (await s.put(`p/${c}/${i % 100}`, small), kib) },
    {
      name: "1 KiB get x 64",
      clients: clients_many,
      prepare: (stores) =>
        prefill(
          stores,
          Array.from({ length: get_keys }, (_, k) => `g/${k}`),
          small,
        ),
      op: (s, c, i) => s.get(`g/${(c * 7919 + i * 31) % get_keys}`),
    },
    { name: "1 MiB put x 8", clients: clients_big, op: async (s, c, i) => (await s.put(`bp/${c}/${i % 4}`, large), mib) },
    {
      name: "1 MiB get x 8",
      clients: clients_big,
      prepare: (stores) =>
        prefill(
          stores,
          Array.from({ length: big_get_keys }, (_, k) => `bg/${k}`),
          large,
        ),
      op: (s, c, i) => s.get(`bg/${(c + i) % big_get_keys}`),
    },
  ];
  const only = process.env.PROFILE_ONLY;
  for (const w of workloads) {
    if (only !== undefined && !w.name.includes(only)) continue;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `toastyfs-profile-`));
    const cluster = await ToastyCluster.start(3, { profile_dir: dir });
    const stores = Array.from({ length: w.clients }, (_, i) => cluster.client(i));
    let leader = -1;
    let result: LoadResult;
    try {
      leader = await cluster.leader();
      await w.prepare?.(stores);
      result = await closedLoop(stores, w.op, { ...settings, pids: cluster.pids() });
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await cluster.stop();
    }
    console.log(
      `\n=== ${w.name}: ${fmt(result.ops_per_s)} ops/s (${fmt(result.mb_per_s)} MB/s), ${latency(result)} under the profiler; CPU ms per 1000 ops: ${result.server_cpu_ms_per_kop.map((c, i) => `replica ${i}${i === leader ? " (primary)" : ""} ${fmt(c)}`).join(", ")}, client ${fmt(result.client_cpu_ms_per_kop)}; profiles in ${dir}`,
    );
    for (const file of fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".cpuprofile"))
      .sort()) {
      const index = Number(/replica-(\d+)/.exec(file)?.[1] ?? -1);
      if (index !== leader && index !== (leader + 1) % 3) continue; // the primary and one backup
      console.log(`\n${file}${index === leader ? " (primary)" : " (backup)"}:`);
      console.log(summarizeProfile(JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")), 20));
    }
  }
}

async function main(): Promise<void> {
  if (flags.s3) return runS3(flags);
  if (flags.auth) return runAuth(flags);
  if (flags.client_failover) return runClientFailover(flags);
  if (flags.tail) return runTail(flags);
  if (flags.profile) return runProfile();
  if (flags.large) return runLarge(flags);
  const started = performance.now();
  console.log(`machine: ${machine()}`);
  console.log(
    `settings: ${flags.quick ? "--quick, " : ""}warm-up ${settings.warmup_ms} ms, measure ${settings.measure_ms} ms per workload, ${settings.failover_reps} failovers`,
  );
  const count_syncs = perfAvailable();
  if (!count_syncs) console.log("perf with syscall tracepoints is not available: fsyncs are not counted");
  const etcd_version = flags.etcd ? etcdInstalled() : null;
  if (flags.etcd && etcd_version === null) console.log("etcd is not installed (apt-get install -y etcd-server): measuring ToastyFS only");

  const clusters: BenchCluster[] = [];
  const runs: SystemRun[] = [];
  try {
    const toasty_cluster = await ToastyCluster.start(3);
    clusters.push(toasty_cluster);
    console.log(`ToastyFS: 3 replicas, ${toasty_cluster.description}`);
    runs.push(new SystemRun(toasty_cluster, "0.1.0", count_syncs));
    if (etcd_version !== null) {
      const etcd_cluster = await EtcdCluster.start(3);
      clusters.push(etcd_cluster);
      console.log(`etcd ${etcd_version}: 3 members, gRPC KV API over HTTP/2 (bench/etcd_client.ts), default durability (WAL fdatasync)`);
      runs.push(new SystemRun(etcd_cluster, etcd_version, count_syncs));
      console.log("both clusters stay up; each workload runs on one system, then the other (order alternating)");
    }
    const idle = await Promise.all(clusters.map((c) => idleCpuPercent(c.pids(), 2000)));
    console.log(
      `idle CPU of each cluster (3 processes together): ${clusters.map((c, i) => `${c.name} ${fmt(idle[i]!, 1)}% of a core`).join(", ")}`,
    );
    const steps: ((r: SystemRun) => Promise<void>)[] = [
      (r) => r.put1(),
      (r) => r.put64(),
      (r) => r.get64(),
      (r) => r.putBig(),
      (r) => r.getBig(),
      ...Array.from({ length: settings.failover_reps }, (_, rep) => (r: SystemRun) => r.failover(rep)),
    ];
    // Before each workload, both clusters settle: what the last one left to do (checkpoints after
    // large puts, the idle nudge) must not fall on the next, whichever system that is.
    const all_pids = (): (number | null)[] => clusters.flatMap((c) => c.pids());
    const quiet_percent = Math.max(5, 2 * idle.reduce((a, b) => a + b, 0));
    for (let i = 0; i < steps.length; i++) {
      for (const r of i % 2 === 0 ? runs : [...runs].reverse()) {
        // The disk too: the last workload's dirty pages (a GiB of 1 MiB values in the page cache)
        // are written back before the next starts, or its fdatasyncs queue behind them.
        const synced = performance.now();
        spawnSync(["sync"]);
        const sync_ms = performance.now() - synced;
        if (sync_ms > 1000) console.error(`  (waited ${fmt(sync_ms / 1000, 1)} s for the page cache to be written back)`);
        const quiet = await waitQuiet(all_pids(), quiet_percent, quiet_timeout_ms);
        if (quiet.waited_ms > 1000 || quiet.percent > quiet_percent)
          console.error(`  (waited ${fmt(quiet.waited_ms / 1000, 1)} s for the clusters to settle: ${fmt(quiet.percent, 1)}% of a core)`);
        await steps[i]!(r);
      }
    }
  } finally {
    await Promise.all(runs.map((r) => r.close()));
    await Promise.all(clusters.map((c) => c.stop()));
  }
  const toasty = runs[0]!.finished();
  const etcd = runs[1]?.finished() ?? null;
  console.log("");
  console.log(report(toasty, etcd));
  console.log(`\nbench took ${((performance.now() - started) / 1000).toFixed(0)} s; load average at the end ${loadAverage()}`);
  if (flags.json !== null) fs.writeFileSync(flags.json, JSON.stringify({ machine: machine(), settings, toasty, etcd }, null, 2));
}

await main();
