/**
 * Must-show of large objects (docs/LARGE_OBJECTS.md §12.3): a random file of --size bytes through
 * `toastyfs put KEY FILE` and `toastyfs get KEY -o OUT`, and through the TypeScript client (put of
 * Bun.file, getStream into a sha256 hasher), each compared by sha256 with the source; with the
 * peak RSS (VmHWM) of every replica and of the client while putting and getting.
 * Limits: every replica under 400 MB, the CLI under 200 MB (MB = 10^6 bytes).
 *
 *   ./build.sh    # makes ./toastyfs, which this script runs
 *   bun scripts/large_roundtrip.ts --size 4GiB [--block-size-max BYTES] [--dir DIR] [--keep] [--client cli|ts|both]
 *   bun scripts/large_roundtrip.ts --size 10GiB --client cli     # the 10 GiB run, once
 *
 * It starts its own `toastyfs dev` cluster on free ports with its data under DIR (default: a new
 * directory in the system's temporary directory), waits until `toastyfs status` says healthy, and
 * stops it with SIGINT at the end or on a failure. The source file is written in 8 MiB chunks of
 * random bytes, hashed on the way, never held whole. Needs free space for the source, the output
 * and three replicas' copies of each put (it checks before starting). Replicas' and the script's
 * high-water marks are reset (/proc/PID/clear_refs) before each path, so each row is its own.
 * Exit 0 when every hash matches and every limit holds; 1 otherwise; 2 for a bad command line.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { Client } from "../lib/client/client.ts";
import { parseAddressList } from "../lib/net/address.ts";
import { sha256File, writeRandomFile } from "../tests/support/random_file.ts";

const usage =
  "usage: bun scripts/large_roundtrip.ts --size SIZE [--block-size-max BYTES] [--dir DIR] [--keep] [--client cli|ts|both]\n" +
  "  SIZE: bytes, or with a unit: 256MiB, 4GiB, 10GiB (KiB, MiB, GiB, TiB; KB, MB, GB are powers of 10)";

const repo = path.resolve(import.meta.dir, "..");
const binary = path.join(repo, "toastyfs");
const mb = 1e6;
const replica_limit_bytes = 400 * mb;
const cli_limit_bytes = 200 * mb;
/** How long the cluster may take to be healthy after `toastyfs dev` starts. */
const healthy_timeout_ms = 60_000;
const rss_poll_ms = 50;

function usageError(message: string): never {
  console.error(`error: ${message}\n${usage}`);
  process.exit(2);
}

class Failure extends Error {}

// --- Command line

let args;
try {
  args = parseArgs({
    options: {
      size: { type: "string" },
      "block-size-max": { type: "string" },
      dir: { type: "string" },
      keep: { type: "boolean", default: false },
      client: { type: "string", default: "both" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  }).values;
} catch (error) {
  usageError((error as Error).message);
}
if (args.help) {
  console.log(usage);
  process.exit(0);
}

const units: Record<string, number> = {
  "": 1,
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
};

function parseSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  if (m === null) return null;
  const unit = units[m[2]!.toLowerCase()];
  if (unit === undefined) return null;
  const bytes = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : null;
}

if (args.size === undefined) usageError("--size is required");
const size = parseSize(args.size) ?? usageError(`--size must be a byte count like 268435456, 256MiB or 4GiB, got "${args.size}"`);
const block_size_max = args["block-size-max"];
if (block_size_max !== undefined && !/^\d+$/.test(block_size_max))
  usageError(`--block-size-max must be a whole number of bytes, got "${block_size_max}"`);
const client_choice = args.client;
if (client_choice !== "cli" && client_choice !== "ts" && client_choice !== "both")
  usageError(`--client must be cli, ts or both, got "${client_choice}"`);
const paths: ("cli" | "ts")[] = client_choice === "both" ? ["cli", "ts"] : [client_choice];
const keep = args.keep;

const reproduce = [
  "bun scripts/large_roundtrip.ts",
  `--size ${args.size}`,
  ...(block_size_max !== undefined ? [`--block-size-max ${block_size_max}`] : []),
  ...(args.dir !== undefined ? [`--dir ${args.dir}`] : []),
  `--client ${client_choice}`,
  ...(keep ? ["--keep"] : []),
].join(" ");

if (!fs.existsSync(binary)) {
  console.error(`error: ${binary} does not exist: run ./build.sh first (this script measures the built executable)`);
  process.exit(1);
}

// --- Small helpers

function formatMB(bytes: number | null): string {
  return bytes === null ? "?" : `${(bytes / mb).toFixed(1)} MB`;
}

function formatSize(bytes: number): string {
  for (const [unit, n] of [
    ["GiB", 1024 ** 3],
    ["MiB", 1024 ** 2],
    ["KiB", 1024],
  ] as const)
    if (bytes >= n && bytes % n === 0) return `${bytes / n} ${unit}`;
  return `${bytes} B`;
}

function log(text: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${text}`);
}

/** VmHWM of a process in bytes, or null when it cannot be read (it has exited). */
function vmHWM(pid: number | "self"): number | null {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(status);
    return m === null ? null : Number(m[1]) * 1024;
  } catch {
    return null;
  }
}

/** Resets a process's VmHWM to its current RSS (Linux ≥ 4.0); false when not allowed. */
function resetHWM(pid: number | "self"): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A base port with base..base+2 free (the replicas; no metrics are served). */
async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const free = await Promise.all([0, 1, 2].map((i) => portFree(base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Failure("found no three free consecutive ports in 50 tries");
}

async function run(command: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(command, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
  return { code: await child.exited, stdout, stderr };
}

/** Child process ids of pid (as tests/cli_dev.test.ts finds the replicas). */
async function childrenOf(pid: number): Promise<number[]> {
  const r = await run(["ps", "-o", "pid=", "--ppid", String(pid)]);
  return r.stdout
    .split("\n")
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
}

// --- The cluster

interface Dev {
  process: Subprocess<"ignore", "pipe", "pipe">;
  output: string;
  cluster: string;
  replicas: number[];
}

let dev: Dev | null = null;

function devTail(): string {
  if (dev === null) return "";
  const lines = dev.output.trimEnd().split("\n");
  return `\n--- last lines of toastyfs dev ---\n${lines.slice(-30).join("\n")}`;
}

async function startCluster(data: string): Promise<Dev> {
  const base = await freeBasePort();
  const command = [binary, "dev", "--data", data, "--base-port", String(base), "--no-metrics"];
  if (block_size_max !== undefined) command.push("--block-size-max", block_size_max);
  log(`starting: ${command.join(" ")}`);
  const child = Bun.spawn(command, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const d: Dev = { process: child, output: "", cluster: [0, 1, 2].map((i) => `127.0.0.1:${base + i}`).join(","), replicas: [] };
  dev = d;
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) d.output += decoder.decode(chunk, { stream: true });
  };
  void collect(child.stdout);
  void collect(child.stderr);

  const deadline = Date.now() + healthy_timeout_ms;
  let last = "";
  for (;;) {
    if (child.exitCode !== null) throw new Failure(`toastyfs dev exited with code ${child.exitCode} before the cluster was healthy`);
    const status = await run([binary, "status", "--cluster", d.cluster]);
    last = (status.stdout + status.stderr).trim();
    if (status.code === 0 && /^healthy:/m.test(status.stdout)) break;
    if (Date.now() > deadline)
      throw new Failure(`the cluster was not healthy within ${healthy_timeout_ms / 1000} s; last toastyfs status:\n${last}`);
    await Bun.sleep(200);
  }
  d.replicas = await childrenOf(child.pid);
  if (d.replicas.length !== 3)
    throw new Failure(`expected 3 replica processes under toastyfs dev (pid ${child.pid}), found ${d.replicas.length}`);
  log(`cluster ${d.cluster} healthy; replica pids ${d.replicas.join(", ")}`);
  return d;
}

function devRunning(): boolean {
  return dev !== null && dev.process.exitCode === null;
}

/** Stops the cluster with SIGINT; returns toastyfs dev's exit code (0: every replica stopped cleanly). */
async function stopCluster(): Promise<number | null> {
  const d = dev;
  if (d === null) return null;
  if (d.process.exitCode !== null) return d.process.exitCode;
  d.process.kill("SIGINT");
  const code = await Promise.race([d.process.exited, Bun.sleep(30_000).then(() => "timeout" as const)]);
  if (code === "timeout") {
    log("toastyfs dev did not stop within 30 s of SIGINT: killing it and its replicas");
    for (const pid of d.replicas) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    d.process.kill("SIGKILL");
    return null;
  }
  return code;
}

// --- The CLI path

interface Measured {
  seconds: number;
  /** The CLI's peak RSS: /usr/bin/time's %M when available (exact), else the polled VmHWM. */
  hwm: number | null;
  polled_hwm: number | null;
}

const time_binary = fs.existsSync("/usr/bin/time") ? "/usr/bin/time" : null;

/** The pid whose parent is ppid, from /proc (the toastyfs under /usr/bin/time). */
function childPid(ppid: number): number | null {
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "utf8");
      // Fields after the command name (in parentheses, which may hold spaces): state, ppid, ...
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === ppid) return Number(name);
    } catch {
      // exited meanwhile
    }
  }
  return null;
}

/** The toastyfs put or get running now, and /usr/bin/time around it if any (stopped on Ctrl-C:
 * SIGTERM to time alone would leave toastyfs running). */
let cli_child: { time: Subprocess | null; toastyfs: number | null } | null = null;
const time_file = path.join(os.tmpdir(), `large_roundtrip-time-${process.pid}`);

/** Runs a toastyfs command, measuring its wall time and peak RSS. */
async function measureCli(what: string, toastyfs_args: string[], timeout_ms: number): Promise<Measured> {
  const command = time_binary !== null ? [time_binary, "-o", time_file, "-f", "%M", binary, ...toastyfs_args] : [binary, ...toastyfs_args];
  const started = performance.now();
  const child = Bun.spawn(command, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const running = { time: time_binary !== null ? child : null, toastyfs: time_binary === null ? child.pid : null };
  cli_child = running;
  const outputs = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
  // Poll VmHWM every 50 ms and keep the last value read: it is a high-water mark, so the last read
  // is the peak so far; the final few ms before exit may be missed (the /usr/bin/time figure is exact).
  let polled: number | null = null;
  const poller = setInterval(() => {
    running.toastyfs ??= childPid(child.pid);
    if (running.toastyfs === null) return;
    const hwm = vmHWM(running.toastyfs);
    if (hwm !== null) polled = hwm;
  }, rss_poll_ms);
  const timer = setTimeout(() => child.kill("SIGKILL"), timeout_ms);
  const code = await child.exited;
  const seconds = (performance.now() - started) / 1000;
  cli_child = null;
  clearInterval(poller);
  clearTimeout(timer);
  const [stdout, stderr] = await outputs;
  let timed: number | null = null;
  if (time_binary !== null) {
    try {
      const text = fs.readFileSync(time_file, "utf8");
      fs.rmSync(time_file, { force: true });
      const m = /^(\d+)\s*$/m.exec(text);
      if (m !== null) timed = Number(m[1]) * 1024;
      // /usr/bin/time writes "Command exited with non-zero status N" before the figure on failure.
    } catch {
      // no figure
    }
  }
  if (code !== 0 || child.signalCode !== null)
    throw new Failure(
      `${what} failed (${child.signalCode !== null ? `killed by ${child.signalCode}${child.signalCode === "SIGKILL" ? `, after the ${timeout_ms / 1000} s deadline?` : ""}` : `exit ${code}`}): toastyfs ${toastyfs_args.join(" ")}\nstdout: ${stdout.trim()}\nstderr: ${stderr.trim()}`,
    );
  return { seconds, hwm: timed ?? polled, polled_hwm: polled };
}

// --- Results

interface Row {
  path: "cli" | "ts";
  put_seconds: number;
  get_seconds: number;
  /** Peak RSS of the client: the CLI's put and get, or this process for ts. */
  client_put_hwm: number | null;
  client_get_hwm: number | null;
  replica_hwm: (number | null)[];
  sha_ok: boolean;
}

const rows: Row[] = [];
const notes: string[] = [];

function resetReplicas(d: Dev): void {
  const ok = d.replicas.map((pid) => resetHWM(pid));
  if (!ok.every(Boolean))
    notes.push("could not reset the replicas' VmHWM (/proc/PID/clear_refs): replica figures are cumulative over the run");
}

function mbPerSecond(seconds: number): string {
  return (size / mb / seconds).toFixed(1);
}

function printSummary(): boolean {
  const header = [
    "size",
    "path",
    "sha256",
    "put MB/s",
    "get MB/s",
    "client peak put",
    "client peak get",
    "replica 0",
    "replica 1",
    "replica 2",
  ];
  const table: string[][] = [header];
  for (const r of rows)
    table.push([
      formatSize(size),
      r.path,
      r.sha_ok ? "match" : "MISMATCH",
      mbPerSecond(r.put_seconds),
      mbPerSecond(r.get_seconds),
      formatMB(r.client_put_hwm),
      formatMB(r.client_get_hwm),
      ...r.replica_hwm.map(formatMB),
    ]);
  const widths = header.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  const lines = table.map((row) =>
    row
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join("  ")
      .trimEnd(),
  );
  console.log(`\nlarge round trip: ${formatSize(size)} (${size} bytes), block_size_max ${block_size_max ?? "default"}; MB = 10^6 bytes`);
  console.log(lines.join("\n"));
  console.log("client peak: VmHWM of the toastyfs CLI process; for ts, of this script's process (includes its own overhead)");

  let ok = rows.every((r) => r.sha_ok);
  const limit = (label: string, value: number | null, max: number): void => {
    const pass = value !== null && value < max;
    if (!pass) ok = false;
    console.log(`  ${pass ? "PASS" : "FAIL"}  ${label}: ${formatMB(value)} < ${formatMB(max)}`);
  };
  console.log("limits:");
  for (const r of rows) {
    for (let i = 0; i < r.replica_hwm.length; i++) limit(`${r.path}: replica ${i} peak`, r.replica_hwm[i] ?? null, replica_limit_bytes);
    if (r.path === "cli") {
      limit("cli: toastyfs put peak", r.client_put_hwm, cli_limit_bytes);
      limit("cli: toastyfs get peak", r.client_get_hwm, cli_limit_bytes);
    }
  }
  const primary = /primary (\S+), view/.exec(dev?.output ?? "")?.[1];
  console.log(
    `replica i is ${dev?.cluster.split(",").join(", ")} in that order${primary !== undefined ? `; primary at start: ${primary}` : ""}`,
  );
  for (const note of notes) console.log(`note: ${note}`);
  console.log(`reproduce: ${reproduce}`);
  return ok;
}

// --- Main

const work = args.dir !== undefined ? path.resolve(args.dir) : fs.mkdtempSync(path.join(os.tmpdir(), "large_roundtrip-"));
const made_work = args.dir === undefined || !fs.existsSync(work);
fs.mkdirSync(work, { recursive: true });
const source = path.join(work, "source.bin");
const output = path.join(work, "output.bin");
const cluster_dir = path.join(work, "cluster");

function cleanUp(): void {
  fs.rmSync(time_file, { force: true });
  if (keep) {
    log(`kept ${work} (source, output, cluster data)`);
    return;
  }
  fs.rmSync(source, { force: true });
  fs.rmSync(output, { force: true });
  fs.rmSync(cluster_dir, { recursive: true, force: true });
  if (made_work) fs.rmSync(work, { recursive: true, force: true });
}

let interrupted = false;
process.on("SIGINT", () => {
  if (interrupted) return;
  interrupted = true;
  log("interrupted: stopping the cluster");
  if (cli_child !== null) {
    try {
      if (cli_child.toastyfs !== null) process.kill(cli_child.toastyfs, "SIGTERM");
    } catch {
      // already gone
    }
    cli_child.time?.kill("SIGTERM");
  }
  void stopCluster().then(() => {
    cleanUp();
    process.exit(130);
  });
});

async function main(): Promise<void> {
  // Space: the source, the CLI's output, and every replica's copy of each path's put (a put of
  // the second path does not free the first's blocks at once), plus 5% or 1 GiB.
  const peak_copies = Math.max(paths.includes("cli") ? 2 + 3 : 0, 1 + 3 * paths.length);
  const needed = peak_copies * size + Math.max(2 ** 30, 0.05 * peak_copies * size);
  const fsStat = fs.statfsSync(work);
  const free = fsStat.bavail * fsStat.bsize;
  if (free < needed)
    throw new Failure(
      `not enough free space in ${work}: ${(free / 2 ** 30).toFixed(1)} GiB free, ${(needed / 2 ** 30).toFixed(1)} GiB needed ` +
        `(${peak_copies} copies of ${formatSize(size)}: source${paths.includes("cli") ? ", output" : ""}, 3 replicas × ${paths.length} put${paths.length === 1 ? "" : "s"}; plus margin). Use --dir on a larger disk, or --client cli`,
    );

  // The cluster first: a cluster that does not start fails the run before gigabytes are written.
  const d = await startCluster(cluster_dir);
  log(`writing ${formatSize(size)} of random bytes to ${source}`);
  const t0 = performance.now();
  const source_sha = writeRandomFile(source, size).sha256;
  log(`source written in ${((performance.now() - t0) / 1000).toFixed(1)} s, sha256 ${source_sha}`);
  // A generous deadline for each transfer: 2 minutes plus 4 MB/s.
  const transfer_timeout_ms = 120_000 + (size / (4 * mb)) * 1000;

  for (const p of paths) {
    resetReplicas(d);
    const key = `large-roundtrip-${p}`;
    if (p === "cli") {
      log(`cli: toastyfs put ${key}`);
      const put = await measureCli("toastyfs put", ["put", key, source, "--cluster", d.cluster], transfer_timeout_ms);
      log(`cli: put in ${put.seconds.toFixed(1)} s; toastyfs get ${key} -o`);
      const get = await measureCli("toastyfs get", ["get", key, "-o", output, "--cluster", d.cluster], transfer_timeout_ms);
      log(`cli: get in ${get.seconds.toFixed(1)} s; hashing the output`);
      const output_sha = await sha256File(output);
      if (time_binary !== null)
        notes.push(
          `cli peaks from /usr/bin/time %M; polled VmHWM (every ${rss_poll_ms} ms) was ${formatMB(put.polled_hwm)} (put), ${formatMB(get.polled_hwm)} (get)`,
        );
      rows.push({
        path: "cli",
        put_seconds: put.seconds,
        get_seconds: get.seconds,
        client_put_hwm: put.hwm,
        client_get_hwm: get.hwm,
        replica_hwm: d.replicas.map(vmHWM),
        sha_ok: output_sha === source_sha,
      });
      if (output_sha !== source_sha) console.error(`error: cli: sha256 of ${output} is ${output_sha}, the source's is ${source_sha}`);
      if (!keep) fs.rmSync(output, { force: true });
    } else {
      if (!resetHWM("self")) notes.push("could not reset this process's VmHWM: the ts figures include everything before");
      const client = new Client({ addresses: parseAddressList(d.cluster), operation_timeout_ms: 60_000 });
      try {
        log(`ts: client.put ${key}`);
        let started = performance.now();
        await client.put(key, Bun.file(source));
        const put_seconds = (performance.now() - started) / 1000;
        const put_hwm = vmHWM("self");
        resetHWM("self");
        log(`ts: put in ${put_seconds.toFixed(1)} s; client.getStream ${key}`);
        started = performance.now();
        const stream = await client.getStream(key);
        const hash = crypto.createHash("sha256");
        let received = 0;
        for await (const chunk of stream.body) {
          hash.update(chunk);
          received += chunk.length;
        }
        const get_seconds = (performance.now() - started) / 1000;
        const got_sha = hash.digest("hex");
        if (received !== size) console.error(`error: ts: getStream delivered ${received} bytes, the source has ${size}`);
        if (got_sha !== source_sha) console.error(`error: ts: sha256 of the stream is ${got_sha}, the source's is ${source_sha}`);
        rows.push({
          path: "ts",
          put_seconds,
          get_seconds,
          client_put_hwm: put_hwm,
          client_get_hwm: vmHWM("self"),
          replica_hwm: d.replicas.map(vmHWM),
          sha_ok: got_sha === source_sha && received === size,
        });
      } finally {
        await client.close();
      }
    }
  }
}

let exit_code = 0;
try {
  await main();
} catch (error) {
  // Ctrl-C: the SIGINT handler stops the cluster, cleans up and exits.
  if (interrupted) await new Promise(() => {});
  exit_code = 1;
  const message = error instanceof Failure ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
  console.error(`error: ${message}${devTail()}`);
}
// A dev that exited by itself was reported by the failure it caused.
const dev_running = devRunning();
const dev_code = await stopCluster();
if (dev_running && dev_code !== 0) {
  exit_code = 1;
  console.error(`error: toastyfs dev did not stop cleanly on SIGINT (exit ${dev_code ?? "none: killed"})${devTail()}`);
}
if (rows.length > 0 && !printSummary()) exit_code = 1;
if (rows.length === 0) console.log(`reproduce: ${reproduce}`);
if (exit_code !== 0) console.error("large round trip: FAILED");
cleanUp();
process.exit(exit_code);
