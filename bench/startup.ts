/**
 * Startup time and memory of a replica that holds a large namespace (the issue: "a replica holding
 * 1 GB of objects in 100,000 keys starts in under 3 s and stays under 300 MB RSS").
 *
 *   ./node_modules/.bin/bun bench/startup.ts [--objects 100000] [--bytes-total 1GiB] [--clients 64]
 *       [--gets 5000] [--dir DIR] [--keep] [--no-record | --results FILE] [--profile DIR]
 *
 * 1. Starts a real 3-replica cluster (`./toastyfs` if it is newer than every source file, else
 *    `bun cmd/toastyfs.ts`) on free loopback ports, data under DIR (default $TMPDIR). Checks free
 *    space first (3 replicas each store every value) and scales the value size down, saying so,
 *    if the disk is too small.
 * 2. Writes --objects objects of bytes-total/objects bytes each (distinct keys, random bytes) from
 *    --clients concurrent lib/client clients, sampling every replica's VmRSS twice a second.
 * 3. Restarts each replica in turn (the two backups, then the primary): SIGTERM, wait for exit,
 *    spawn, and measures from the spawn: when its log says it opened the data directory, when it
 *    first answers status, and when it answers status in normal status with commit_min at the
 *    cluster's commit (caught up). VmRSS and VmHWM from /proc/PID/status once caught up.
 * 4. Serves --gets linearizable gets of random keys (values verified by length) through the
 *    primary, which by then is a restarted replica, and reads every replica's VmRSS/VmHWM again.
 * 5. Prints the figures and appends them to bench/RESULTS.md (unless --no-record) with the
 *    command, date and machine.
 *
 * --profile DIR: the last replica restarted runs from source under `bun --cpu-prof` (profile
 * written into DIR at its exit, summarized here) — to see where startup time goes.
 */
import { spawn, spawnSync, type Subprocess } from "bun";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client, clusterStatus } from "../lib/client/client.ts";
import { parseAddress, type Address } from "../lib/net/address.ts";
import type { ReplicaStatus } from "../lib/net/status_codec.ts";
import { freePorts, repo, toastyfsCommand, waitFor } from "./clusters.ts";
import { summarizeProfile, type CpuProfile } from "./profile.ts";

const usage =
  "usage: bun bench/startup.ts [--objects N] [--bytes-total SIZE] [--clients N] [--gets N] [--dir DIR] [--keep] [--no-record | --results FILE] [--profile DIR]\n" +
  "  SIZE: bytes, or with a unit: 512MiB, 1GiB, 1GB";

const kib = 1024;
const mib = 1024 * kib;
const gib = 1024 * mib;
const bun = path.join(repo, "node_modules/.bin/bun");

// ---------------------------------------------------------------------------------------------
// Arguments

function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/i.exec(text.trim());
  if (m === null) throw new Error(`bad size "${text}"`);
  const units: Record<string, number> = { b: 1, kb: 1e3, kib, mb: 1e6, mib, gb: 1e9, gib };
  return Math.round(Number(m[1]) * units[(m[2] ?? "b").toLowerCase()]!);
}

const args = process.argv.slice(2);
const flags = {
  objects: 100_000,
  bytes_total: gib,
  clients: 64,
  gets: 5000,
  dir: os.tmpdir(),
  keep: false,
  record: true,
  profile: null as string | null,
  results: path.join(repo, "bench/RESULTS.md"),
};
try {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const next = (): string => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--objects") flags.objects = Number(next());
    else if (a === "--bytes-total") flags.bytes_total = parseSize(next());
    else if (a === "--clients") flags.clients = Number(next());
    else if (a === "--gets") flags.gets = Number(next());
    else if (a === "--dir") flags.dir = next();
    else if (a === "--keep") flags.keep = true;
    else if (a === "--no-record") flags.record = false;
    else if (a === "--results") flags.results = path.resolve(next());
    else if (a === "--profile") flags.profile = path.resolve(next());
    else if (a === "--help" || a === "-h") {
      console.log(usage);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  for (const [name, v] of [
    ["--objects", flags.objects],
    ["--clients", flags.clients],
    ["--gets", flags.gets],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < (name === "--gets" ? 0 : 1)) throw new Error(`${name} must be a positive integer`);
  }
} catch (error) {
  console.error(`error: ${(error as Error).message}\n${usage}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Machine and process helpers

function sh(command: string): string {
  const r = spawnSync(["sh", "-c", command], { stdout: "pipe", stderr: "pipe" });
  return r.stdout.toString().trim();
}

/** Bytes free to this user on the file system holding dir (df). */
function freeBytes(dir: string): number {
  const out = sh(`df -B1 --output=avail ${JSON.stringify(dir)} | tail -1`);
  const n = Number(out);
  if (!Number.isFinite(n)) throw new Error(`cannot read free space of ${dir} from df: ${out}`);
  return n;
}

interface Mem {
  rss_mb: number;
  hwm_mb: number;
}

function memOf(pid: number): Mem | null {
  try {
    const text = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
    return { rss_mb: kb("VmRSS") / 1024, hwm_mb: kb("VmHWM") / 1024 };
  } catch {
    return null;
  }
}

function fmtMb(n: number): string {
  return `${n.toFixed(0)} MB`;
}

function fmtS(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

function fmtBytes(n: number): string {
  return n >= gib ? `${(n / gib).toFixed(2)} GiB` : n >= mib ? `${(n / mib).toFixed(1)} MiB` : `${(n / kib).toFixed(1)} KiB`;
}

// ---------------------------------------------------------------------------------------------
// The cluster

interface Member {
  index: number;
  process: Subprocess | null;
  log_path: string;
  data: string;
  profiled: boolean;
}

class Cluster {
  readonly members: Member[];
  readonly addresses: Address[];
  readonly ports: number[];

  constructor(
    readonly dir: string,
    ports: number[],
    readonly base: string[],
  ) {
    // Replica index = position in the sorted address list (lib/net/address.ts membership).
    this.ports = [...ports].sort((a, b) => (`127.0.0.1:${a}` < `127.0.0.1:${b}` ? -1 : 1));
    this.addresses = this.ports.map((p) => parseAddress(`127.0.0.1:${p}`));
    this.members = this.ports.map((_, index) => ({
      index,
      process: null,
      log_path: path.join(dir, `replica-${index}.log`),
      data: path.join(dir, `replica-${index}`),
      profiled: false,
    }));
  }

  private command(index: number, profile_dir: string | null): string[] {
    const self = `127.0.0.1:${this.ports[index]}`;
    const peers = this.ports.filter((_, i) => i !== index).flatMap((p) => ["--peer", `127.0.0.1:${p}`]);
    const args = ["--addr", self, ...peers, "--data", this.members[index]!.data, "--log-level", "info"];
    if (profile_dir !== null) {
      return [
        bun,
        "--cpu-prof",
        `--cpu-prof-dir=${profile_dir}`,
        `--cpu-prof-name=replica-${index}.cpuprofile`,
        path.join(repo, "cmd/toastyfs.ts"),
        ...args,
      ];
    }
    return [...this.base, ...args];
  }

  /** Spawns a replica; returns Date.now() just before the spawn. */
  launch(index: number, profile_dir: string | null = null): number {
    const m = this.members[index]!;
    const log = fs.openSync(m.log_path, "a");
    const t0 = Date.now();
    m.process = spawn(this.command(index, profile_dir), { stdout: log, stderr: log, stdin: "ignore", cwd: repo });
    m.profiled = profile_dir !== null;
    fs.closeSync(log);
    return t0;
  }

  pid(index: number): number | null {
    return this.members[index]!.process?.pid ?? null;
  }

  /** SIGTERM and wait for the exit; returns how long the exit took. */
  async terminate(index: number): Promise<number> {
    const p = this.members[index]!.process;
    if (p === null) return 0;
    const t = performance.now();
    p.kill("SIGTERM");
    const timer = setTimeout(() => p.kill("SIGKILL"), 30_000);
    await p.exited;
    clearTimeout(timer);
    this.members[index]!.process = null;
    return performance.now() - t;
  }

  status(timeout_ms = 500): Promise<(ReplicaStatus | null)[]> {
    return clusterStatus(this.addresses, timeout_ms);
  }

  /** Every running replica in normal status under one primary, all within `lag` ops of the
   * highest commit. */
  async waitHealthy(timeout_ms: number, lag = 0): Promise<ReplicaStatus[]> {
    return waitFor(
      "a healthy cluster",
      async () => {
        const s = await this.status();
        if (s.some((x, i) => (x === null) !== (this.members[i]!.process === null))) return null;
        const up = s.filter((x): x is ReplicaStatus => x !== null);
        if (up.some((x) => x.status !== "normal") || up.filter((x) => x.primary).length !== 1) return null;
        const commit = Math.max(...up.map((x) => x.commit_max));
        if (up.some((x) => x.commit_min < commit - lag)) return null;
        return up;
      },
      timeout_ms,
      100,
    );
  }

  logSince(index: number, offset: number): string {
    const file = this.members[index]!.log_path;
    if (!fs.existsSync(file)) return "";
    const bytes = fs.readFileSync(file);
    return bytes.subarray(offset).toString("utf8");
  }

  logSize(index: number): number {
    const file = this.members[index]!.log_path;
    return fs.existsSync(file) ? fs.statSync(file).size : 0;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.members.map((m) => this.terminate(m.index)));
  }
}

/** Milliseconds from t0 to the first log line matching `pattern` (lib/node/log.ts text format:
 * an ISO timestamp first), or null. */
function logTime(log: string, pattern: RegExp, t0: number): number | null {
  for (const line of log.split("\n")) {
    if (!pattern.test(line)) continue;
    const t = Date.parse(line.slice(0, line.indexOf(" ")));
    if (Number.isFinite(t)) return t - t0;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Load

function randomPool(size: number): Uint8Array {
  const pool = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(pool.subarray(i, Math.min(size, i + 65536)));
  return pool;
}

function keyOf(i: number): string {
  return `startup-bench/${i.toString().padStart(8, "0")}`;
}

interface LoadFigures {
  seconds: number;
  puts: number;
  errors: number;
  rss_max_mb: number[];
  rss_end_mb: number[];
  hwm_end_mb: number[];
}

async function writeAll(cluster: Cluster, objects: number, value_size: number, client_count: number): Promise<LoadFigures> {
  const pool = randomPool(4 * mib + value_size);
  const clients = Array.from(
    { length: client_count },
    (_, i) => new Client({ addresses: cluster.addresses, client_id: BigInt(i), operation_timeout_ms: 60_000 }),
  );
  let next = 0;
  let done = 0;
  let errors = 0;
  const rss_max = cluster.members.map(() => 0);
  const sample = () => {
    cluster.members.forEach((m, i) => {
      const mem = m.process === null ? null : memOf(m.process.pid);
      if (mem !== null) rss_max[i] = Math.max(rss_max[i]!, mem.rss_mb);
    });
  };
  const sampler = setInterval(sample, 500);
  const start = performance.now();
  let last_report = start;
  const loops = clients.map(async (client) => {
    for (;;) {
      const i = next++;
      if (i >= objects) return;
      // Distinct bytes per object: a window into the random pool at a per-object offset.
      const offset = (i * 4099) % (4 * mib);
      const value = pool.subarray(offset, offset + value_size);
      for (let attempt = 0; ; attempt++) {
        try {
          await client.put(keyOf(i), value);
          break;
        } catch (error) {
          errors += 1;
          if (errors <= 5) console.error(`  put ${keyOf(i)} failed (attempt ${attempt + 1}): ${(error as Error).message}`);
          if (attempt >= 5) throw error;
        }
      }
      done += 1;
      const now = performance.now();
      if (now - last_report > 5000) {
        last_report = now;
        const s = (now - start) / 1000;
        const rss = cluster.members.map((m) => (m.process === null ? "-" : fmtMb(memOf(m.process.pid)?.rss_mb ?? NaN))).join(", ");
        console.log(
          `  ${done.toLocaleString("en")} / ${objects.toLocaleString("en")} puts, ${(done / s).toFixed(0)} puts/s, ${((done * value_size) / 1e6 / s).toFixed(1)} MB/s; replica RSS ${rss}`,
        );
      }
    }
  });
  try {
    await Promise.all(loops);
  } finally {
    clearInterval(sampler);
    await Promise.all(clients.map((c) => c.close()));
  }
  sample();
  const seconds = (performance.now() - start) / 1000;
  const end = cluster.members.map((m) => (m.process === null ? null : memOf(m.process.pid)));
  return {
    seconds,
    puts: done,
    errors,
    rss_max_mb: rss_max,
    rss_end_mb: end.map((m) => m?.rss_mb ?? NaN),
    hwm_end_mb: end.map((m) => m?.hwm_mb ?? NaN),
  };
}

interface RestartFigures {
  index: number;
  was_primary: boolean;
  profiled: boolean;
  stop_ms: number;
  opened_ms: number | null;
  listening_ms: number | null;
  first_status_ms: number;
  ready_ms: number;
  commit_target: number;
  objects: number;
  rss_mb: number;
  hwm_mb: number;
  log_lines: string[];
}

async function restart(cluster: Cluster, index: number, profile_dir: string | null): Promise<RestartFigures> {
  const before = await cluster.status();
  const was_primary = before[index]?.primary ?? false;
  const stop_ms = await cluster.terminate(index);
  // The cluster is idle: the restarted replica must reach the others' commit.
  await Bun.sleep(200);
  const others = (await cluster.status()).filter((s, i) => i !== index && s !== null) as ReplicaStatus[];
  const commit_target = Math.max(...others.map((s) => s.commit_max), ...before.filter((s) => s !== null).map((s) => s!.commit_max));
  const log_offset = cluster.logSize(index);
  const t0 = cluster.launch(index, profile_dir);
  let first_status_ms: number | null = null;
  let last: ReplicaStatus | null = null;
  const ready_ms = await waitFor(
    `replica ${index} to answer status in normal status at commit ${commit_target}`,
    async () => {
      // A short timeout: a poll sent before the replica listens must not hide the moment it does.
      const s = (await cluster.status(50))[index] ?? null;
      const now = Date.now() - t0;
      if (s === null) return null;
      first_status_ms ??= now;
      last = s;
      return s.status === "normal" && s.commit_min >= commit_target ? now : null;
    },
    60_000,
    5,
  );
  const pid = cluster.pid(index)!;
  const mem = memOf(pid)!;
  const log = cluster.logSince(index, log_offset);
  return {
    index,
    was_primary,
    profiled: profile_dir !== null,
    stop_ms,
    opened_ms: logTime(log, /replica \d+: opened at view/, t0),
    listening_ms: logTime(log, / listening on /, t0),
    first_status_ms: first_status_ms ?? ready_ms,
    ready_ms,
    commit_target,
    objects: (last as ReplicaStatus | null)?.objects ?? 0,
    rss_mb: mem.rss_mb,
    hwm_mb: mem.hwm_mb,
    log_lines: log.split("\n").filter((l) => l.length > 0),
  };
}

async function serveGets(
  cluster: Cluster,
  objects: number,
  value_size: number,
  gets: number,
  client_count: number,
): Promise<{ seconds: number; gets: number; errors: number }> {
  const clients = Array.from(
    { length: client_count },
    (_, i) => new Client({ addresses: cluster.addresses, client_id: BigInt(1000 + i), operation_timeout_ms: 30_000 }),
  );
  let next = 0;
  let errors = 0;
  const start = performance.now();
  await Promise.all(
    clients.map(async (client) => {
      for (;;) {
        if (next++ >= gets) return;
        const key = keyOf(Math.floor(Math.random() * objects));
        try {
          const r = await client.get(key);
          if (r.value.length !== value_size) throw new Error(`get ${key}: ${r.value.length} bytes, expected ${value_size}`);
        } catch (error) {
          errors += 1;
          if (errors <= 5) console.error(`  ${(error as Error).message}`);
        }
      }
    }),
  );
  await Promise.all(clients.map((c) => c.close()));
  return { seconds: (performance.now() - start) / 1000, gets, errors };
}

// ---------------------------------------------------------------------------------------------
// Main

const command_line = `./node_modules/.bin/bun bench/startup.ts ${args.join(" ")}`.trim();
const date = new Date().toUTCString();
const machine = {
  nproc: sh("nproc"),
  mem: sh('free -g | awk \'/^Mem:/ {print $2 " GiB total, " $7 " GiB available"}\''),
  uname: sh("uname -srm"),
  load: sh("cut -d' ' -f1-3 /proc/loadavg"),
  commit: sh(
    `cd ${JSON.stringify(repo)} && git rev-parse --short HEAD && git status --porcelain -- lib cmd | grep -q . && echo "(with uncommitted changes in lib/ or cmd/)"`,
  ).replace(/\n/g, " "),
};

fs.mkdirSync(flags.dir, { recursive: true });
const free = freeBytes(flags.dir);
const df_line = sh(`df -h ${JSON.stringify(flags.dir)} | tail -1`).replace(/\s+/g, " ");
// Every replica stores every value once (values stay in the journal segments), plus checkpoint
// files (about 100 bytes per object each) and a margin for the sparse tails of segments.
const margin = 2 * gib;
const needed = (total: number) => 3 * Math.ceil(total * 1.1) + 3 * flags.objects * 300 + margin;
let bytes_total = flags.bytes_total;
let scaled = "";
if (needed(bytes_total) > free) {
  const fits = Math.floor((free - margin - 3 * flags.objects * 300) / 3 / 1.1);
  if (fits < flags.objects * 64) {
    console.error(
      `error: ${flags.dir} has ${fmtBytes(free)} free; even ${flags.objects} objects of 64 bytes need about ${fmtBytes(needed(flags.objects * 64))}. Use --dir on a bigger disk or fewer --objects.`,
    );
    process.exit(1);
  }
  scaled = `SCALED DOWN: ${flags.dir} has ${fmtBytes(free)} free, ${fmtBytes(bytes_total)} across 3 replicas needs about ${fmtBytes(needed(bytes_total))}; writing ${fmtBytes(fits)} instead.`;
  console.error(`warning: ${scaled}`);
  bytes_total = fits;
}
const value_size = Math.max(1, Math.floor(bytes_total / flags.objects));
const { command: base, compiled } = toastyfsCommand();

console.log(
  `startup bench: ${flags.objects.toLocaleString("en")} objects x ${value_size.toLocaleString("en")} bytes = ${fmtBytes(value_size * flags.objects)} per replica, ${flags.clients} clients`,
);
console.log(
  `  replicas: ${compiled ? "./toastyfs (compiled)" : "bun cmd/toastyfs.ts (source: ./toastyfs missing or older than the sources)"}; data under ${flags.dir} (${fmtBytes(free)} free)`,
);
console.log(`  machine: nproc ${machine.nproc}, ${machine.mem}, ${machine.uname}, load ${machine.load}`);

const dir = fs.mkdtempSync(path.join(flags.dir, "toastyfs-startup-"));
const cluster = new Cluster(dir, await freePorts(3), base);
let exit_code = 0;
const stop = async () => {
  await cluster.stopAll();
  if (!flags.keep) fs.rmSync(dir, { recursive: true, force: true });
  else console.log(`  data kept in ${dir}`);
};
process.on("SIGINT", () => void stop().then(() => process.exit(130)));

try {
  for (let i = 0; i < 3; i++) cluster.launch(i);
  await cluster.waitHealthy(30_000);
  const idle = cluster.members.map((m) => memOf(m.process!.pid)!);
  console.log(`  cluster up; idle RSS ${idle.map((m) => fmtMb(m.rss_mb)).join(", ")}`);

  console.log(`writing ${flags.objects.toLocaleString("en")} objects...`);
  const load = await writeAll(cluster, flags.objects, value_size, flags.clients);
  console.log(
    `  ${load.puts.toLocaleString("en")} puts in ${load.seconds.toFixed(1)} s (${(load.puts / load.seconds).toFixed(0)} puts/s, ${((load.puts * value_size) / 1e6 / load.seconds).toFixed(1)} MB/s), ${load.errors} retried errors`,
  );
  console.log(
    `  RSS during the load (max of samples every 0.5 s): ${load.rss_max_mb.map(fmtMb).join(", ")}; at the end RSS ${load.rss_end_mb.map(fmtMb).join(", ")}, HWM ${load.hwm_end_mb.map(fmtMb).join(", ")}`,
  );

  const settled = await cluster.waitHealthy(120_000, 0);
  const primary = settled.find((s) => s.primary)!.replica;
  const du = cluster.members.map((m) => Number(sh(`du -sb ${JSON.stringify(m.data)} | cut -f1`)));
  const du_real = cluster.members.map((m) => Number(sh(`du -sB1 ${JSON.stringify(m.data)} | cut -f1`)));
  const ckpt = cluster.members.map((m) => {
    const files = fs.readdirSync(path.join(m.data, "checkpoint"));
    const sizes = files.map((f) => fs.statSync(path.join(m.data, "checkpoint", f)).size);
    return { files: files.length, bytes: sizes.reduce((a, b) => a + b, 0), largest: Math.max(0, ...sizes) };
  });
  const segments = cluster.members.map((m) => fs.readdirSync(path.join(m.data, "journal")).filter((f) => f.endsWith(".seg")).length);
  for (const s of settled) {
    const i = s.replica;
    console.log(
      `  replica ${i}${s.primary ? " (primary)" : ""}: ${s.objects.toLocaleString("en")} objects, ${fmtBytes(s.object_bytes)} of values, commit ${s.commit_max}, checkpoint ${s.checkpoint}; ` +
        `data dir ${fmtBytes(du[i]!)} apparent, ${fmtBytes(du_real[i]!)} on disk, ${segments[i]} segments, ${ckpt[i]!.files} checkpoint files (${fmtBytes(ckpt[i]!.bytes)}, largest ${fmtBytes(ckpt[i]!.largest)}); ` +
        `status disk_bytes ${fmtBytes(s.disk_bytes)}; checkpoints ${s.counters.checkpoints_base ?? "?"} base + ${s.counters.checkpoints_delta ?? "?"} delta`,
    );
  }

  console.log(
    `restarting each replica (backups first, then the primary ${primary}, which the others replace by a view change while it is down)...`,
  );
  const order = [...[0, 1, 2].filter((i) => i !== primary), primary];
  const restarts: RestartFigures[] = [];
  for (const [k, index] of order.entries()) {
    const profile = flags.profile !== null && k === order.length - 1 ? flags.profile : null;
    if (profile !== null) fs.mkdirSync(profile, { recursive: true });
    const r = await restart(cluster, index, profile);
    restarts.push(r);
    console.log(
      `  replica ${index}${r.was_primary ? " (was primary)" : ""}${r.profiled ? " [bun --cpu-prof, from source]" : ""}: SIGTERM exit ${fmtS(r.stop_ms)}; from spawn: ` +
        `data directory opened ${r.opened_ms === null ? "?" : fmtS(r.opened_ms)}, listening ${r.listening_ms === null ? "?" : fmtS(r.listening_ms)}, ` +
        `first status ${fmtS(r.first_status_ms)}, normal and caught up (commit ${r.commit_target}) ${fmtS(r.ready_ms)}; ` +
        `${r.objects.toLocaleString("en")} objects; RSS ${fmtMb(r.rss_mb)}, HWM ${fmtMb(r.hwm_mb)}`,
    );
    for (const line of r.log_lines.slice(0, 12)) console.log(`      | ${line}`);
    await cluster.waitHealthy(60_000, 0);
  }

  const after = await cluster.waitHealthy(30_000, 0);
  const get_primary = after.find((s) => s.primary)!.replica;
  console.log(`serving ${flags.gets.toLocaleString("en")} gets through the primary (replica ${get_primary}, restarted)...`);
  const gets = await serveGets(cluster, flags.objects, value_size, flags.gets, 16);
  const after_gets = cluster.members.map((m) => memOf(m.process!.pid)!);
  console.log(
    `  ${gets.gets.toLocaleString("en")} gets in ${gets.seconds.toFixed(1)} s (${(gets.gets / gets.seconds).toFixed(0)}/s), ${gets.errors} errors`,
  );
  console.log(
    `  after the gets: ${after_gets.map((m, i) => `replica ${i}${i === get_primary ? " (primary)" : ""} RSS ${fmtMb(m.rss_mb)} HWM ${fmtMb(m.hwm_mb)}`).join("; ")}`,
  );

  // Profiles are written when the profiled process exits.
  let profile_summary = "";
  if (flags.profile !== null) {
    const profiled = restarts[restarts.length - 1]!.index;
    await cluster.terminate(profiled);
    const file = path.join(flags.profile, `replica-${profiled}.cpuprofile`);
    if (fs.existsSync(file)) {
      profile_summary = summarizeProfile(JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile, 25);
      console.log(`cpu profile of replica ${profiled} (startup, catch-up, gets), ${file}:\n${profile_summary}`);
    }
  }

  // Targets: start in under 3 s, stay under 300 MB RSS.
  const backups = restarts.filter((r) => !r.was_primary);
  const worst_ready = Math.max(...backups.map((r) => r.ready_ms));
  const rss_all = [...load.rss_max_mb, ...load.hwm_end_mb, ...restarts.map((r) => r.hwm_mb), ...after_gets.map((m) => m.hwm_mb)];
  const worst_rss = Math.max(...rss_all);
  const start_ok = worst_ready < 3000;
  const rss_ok = worst_rss < 300;
  console.log(
    `targets: start < 3 s: ${start_ok ? "met" : "MISSED"} (slowest backup restart ${fmtS(worst_ready)}); RSS < 300 MB: ${rss_ok ? "met" : "MISSED"} (highest VmHWM/VmRSS seen ${fmtMb(worst_rss)})`,
  );

  if (flags.record) {
    const rows = restarts
      .map(
        (r) =>
          `| ${r.index}${r.was_primary ? " (the primary: the others changed views while it was down)" : ""}${r.profiled ? " (under --cpu-prof)" : ""} | ${r.opened_ms === null ? "?" : fmtS(r.opened_ms)} | ${r.listening_ms === null ? "?" : fmtS(r.listening_ms)} | ${fmtS(r.first_status_ms)} | **${fmtS(r.ready_ms)}** | ${r.objects.toLocaleString("en")} | ${fmtMb(r.rss_mb)} / ${fmtMb(r.hwm_mb)} | ${fmtMb(after_gets[r.index]!.rss_mb)} / ${fmtMb(after_gets[r.index]!.hwm_mb)}${r.index === get_primary ? " (primary: served the gets)" : ""} |`,
      )
      .join("\n");
    const section = `
## Startup and memory with 100,000 objects (bench/startup.ts)

Target (the issue): a replica holding 1 GB of objects in 100,000 keys starts in under 3 s and stays
under 300 MB RSS.

Command: \`${command_line}\`, ${date}, load average ${machine.load} at the start.
Machine: \`nproc\` ${machine.nproc}, ${machine.mem} (\`free -g\`), ${machine.uname}; data on \`${df_line}\` (\`df -h\`).
Replicas: ${compiled ? "`./toastyfs` (compiled)" : "`bun cmd/toastyfs.ts` (source)"} at commit ${machine.commit}, default configuration (1024 journal slots, a checkpoint every 256 ops, 64 MiB segments).
${scaled === "" ? "" : `\n**${scaled}**\n`}
What it does: a real 3-replica cluster on loopback; ${flags.clients} concurrent \`lib/client\` clients write
${flags.objects.toLocaleString("en")} distinct keys of ${value_size.toLocaleString("en")} random bytes (${fmtBytes(value_size * flags.objects)} of values per replica).
Each replica is then stopped (SIGTERM) and restarted in turn, the two backups first, then the
primary. Times are from the spawn of the restarted process: "opened" and "listening" are the
timestamps of its own log lines (\`opened at view ...\` once the data directory is read;
\`listening on ...\` once it serves), "status" is its first answer to a status request, and
"ready" is its first answer in normal status with \`commit_min\` at the cluster's commit (the
cluster is idle, so this is "caught up"). RSS = VmRSS / VmHWM from \`/proc/PID/status\`. Then
${flags.gets.toLocaleString("en")} linearizable gets of random keys (16 clients) go through the primary, by then a
restarted replica.

Load: ${load.puts.toLocaleString("en")} puts in ${load.seconds.toFixed(1)} s (${(load.puts / load.seconds).toFixed(0)} puts/s, ${((load.puts * value_size) / 1e6 / load.seconds).toFixed(1)} MB/s).
Replica RSS during the load (highest sample, every 0.5 s): ${load.rss_max_mb.map(fmtMb).join(", ")}; VmHWM at its end: ${load.hwm_end_mb.map(fmtMb).join(", ")}.
Data directory after the load, per replica: ${fmtBytes(du[0]!)} apparent / ${fmtBytes(du_real[0]!)} allocated (\`du\`), ${segments[0]} segments, ${ckpt[0]!.files} checkpoint files (${fmtBytes(ckpt[0]!.bytes)}, largest ${fmtBytes(ckpt[0]!.largest)}) on replica 0.

| replica restarted | opened | listening | status | ready (normal, caught up) | objects | RSS / HWM when ready | RSS / HWM after ${flags.gets.toLocaleString("en")} gets |
|---|---|---|---|---|---|---|---|
${rows}

What each restarted replica logged on opening its data directory:
${restarts.map((r) => `- replica ${r.index}: \`${(r.log_lines.find((l) => / opened at view /.test(l)) ?? "?").replace(/^\S+ \S+ \S+\s+/, "")}\``).join("\n")}

Gets: ${gets.gets.toLocaleString("en")} in ${gets.seconds.toFixed(1)} s, ${gets.errors} errors.

Targets: start < 3 s: **${start_ok ? "met" : "MISSED"}** (slowest backup ready at ${fmtS(worst_ready)}); RSS < 300 MB: **${rss_ok ? "met" : "MISSED"}** (highest VmRSS or VmHWM of any replica at any point: ${fmtMb(worst_rss)}).
`;
    fs.appendFileSync(flags.results, section);
    console.log(`appended to ${path.relative(process.cwd(), flags.results)}`);
  }
} catch (error) {
  console.error(`error: ${(error as Error).stack ?? error}`);
  for (const m of cluster.members) {
    const log = cluster.logSince(m.index, 0).split("\n").slice(-15).join("\n");
    console.error(`--- replica ${m.index} log (last lines) ---\n${log}`);
  }
  exit_code = 1;
} finally {
  await stop();
}
process.exit(exit_code);
