/**
 * Runs a shell script next to `toastyfs dev` on the dev addresses (127.0.0.1:8081-8083), which the
 * C example hard-codes the way a user's first program would. Where the machine allows it the
 * cluster and the script share a private network namespace (`unshare --net`), so the fixed ports
 * never collide with another cluster on the machine (other tests, a developer's own `toastyfs dev`);
 * otherwise they run on the host if those ports are free, and the run is skipped with the reason
 * if they are not.
 *
 * Run as a script (inside the namespace): `bun dev_ports.ts SPEC_JSON`; it prints one JSON line,
 * the DevPortsOutcome.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client, clusterStatus } from "../../lib/client/client.ts";
import { parseAddress } from "../../lib/net/address.ts";
import { portFree } from "./cli.ts";
import { repo, toastyfsCommand } from "./cluster.ts";

export const dev_ports = [8081, 8082, 8083];
const dev_addresses = dev_ports.map((p) => parseAddress(`127.0.0.1:${p}`));
const bun = path.join(repo, "node_modules/.bin/bun");
const outcome_marker = "DEV_PORTS_OUTCOME ";

export interface DevPortsSpec {
  /** Shell scripts (each run by `sh -e`, in order, until one fails), in cwd, with env added to
   * the inherited environment. */
  scripts: string[];
  cwd: string;
  env?: Record<string, string>;
  /** The key to read back after the scripts ran: its value (`toastyfs get`) and version. */
  read_key?: string;
  timeout_ms?: number;
}

export type DevPortsOutcome =
  | { skipped: string }
  | {
      runs: Captured[];
      /** read_key's value as `toastyfs get` printed it, its version, and the newest op number any
       * replica reports (null where it could not be read). */
      value: string | null;
      version: number | null;
      op: number | null;
      dev_log: string;
      isolated: boolean;
    };

export interface Captured {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function capture(cmd: string[], options: { cwd?: string; env?: Record<string, string>; timeout_ms: number }): Promise<Captured> {
  const child = Bun.spawn(cmd, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let timed_out = false;
  const timer = setTimeout(() => {
    timed_out = true;
    child.kill("SIGKILL");
  }, options.timeout_ms);
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  clearTimeout(timer);
  return { code: timed_out ? null : code, stdout, stderr: timed_out ? `${stderr}\n(killed after ${options.timeout_ms} ms)` : stderr };
}

/** Whether this machine lets us make a network namespace with a working loopback. */
async function namespaceWorks(): Promise<boolean> {
  if (Bun.which("unshare") === null || Bun.which("ip") === null) return false;
  const probe = await capture(["unshare", "--net", "--map-root-user", "sh", "-c", "ip link set lo up"], { timeout_ms: 10_000 });
  return probe.code === 0;
}

/** Runs spec.scripts with a dev cluster on 127.0.0.1:8081-8083 (see the module comment). */
export async function runWithDevCluster(spec: DevPortsSpec): Promise<DevPortsOutcome> {
  const timeout_ms = (spec.timeout_ms ?? 90_000) + 30_000;
  const self = [bun, path.join(import.meta.dir, "dev_ports.ts"), JSON.stringify(spec)];
  const isolated = await namespaceWorks();
  let cmd: string[];
  if (isolated) {
    cmd = ["unshare", "--net", "--map-root-user", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", ...self];
  } else {
    const free = await Promise.all(dev_ports.map(portFree));
    const busy = dev_ports.filter((_, i) => !free[i]);
    if (busy.length > 0)
      return {
        skipped: `no network namespace here (unshare or ip missing, or unshare --net --map-root-user refused) and 127.0.0.1 port(s) ${busy.join(", ")} are in use (is a \`toastyfs dev\` cluster running?)`,
      };
    cmd = [...self, "host"];
  }
  const ran = await capture(cmd, { timeout_ms });
  const line = ran.stdout.split("\n").find((l) => l.startsWith(outcome_marker));
  if (line === undefined) throw new Error(`the dev cluster runner printed no outcome (exit ${ran.code}):\n${ran.stdout}\n${ran.stderr}`);
  const outcome = JSON.parse(line.slice(outcome_marker.length)) as DevPortsOutcome;
  if ("runs" in outcome) outcome.isolated = isolated;
  return outcome;
}

/** Inside the namespace (or on the host): dev cluster up, script, read back, cluster down. */
async function main(spec: DevPortsSpec, on_host: boolean): Promise<DevPortsOutcome> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-dev-ports-"));
  // On the host the metrics ports (8181-8183) may be taken too; they play no part here.
  const args = ["dev", "--data", path.join(dir, "data"), ...(on_host ? ["--no-metrics"] : [])];
  const dev = Bun.spawn([...toastyfsCommand(), ...args], { cwd: dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let dev_log = "";
  const decoder = new TextDecoder();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) dev_log += decoder.decode(chunk, { stream: true });
  };
  const collecting = Promise.all([collect(dev.stdout), collect(dev.stderr)]);
  try {
    const deadline = Date.now() + 60_000;
    // `toastyfs dev` prints this once a primary is elected (cmd/dev.ts).
    while (!dev_log.includes("serving (primary")) {
      if (dev.exitCode !== null) {
        // On the host another process may have taken a port since it was found free.
        if (on_host) return { skipped: `toastyfs dev exited with ${dev.exitCode} before serving (a port taken meanwhile?):\n${dev_log}` };
        throw new Error(`toastyfs dev exited with ${dev.exitCode} before serving:\n${dev_log}`);
      }
      if (Date.now() > deadline) throw new Error(`toastyfs dev did not elect a primary within 60 s:\n${dev_log}`);
      await Bun.sleep(50);
    }
    const runs: Captured[] = [];
    for (const script of spec.scripts) {
      const ran = await capture(["sh", "-e", "-c", script], { cwd: spec.cwd, env: spec.env, timeout_ms: spec.timeout_ms ?? 90_000 });
      runs.push(ran);
      if (ran.code !== 0) break;
    }
    let value: string | null = null;
    let version: number | null = null;
    if (spec.read_key !== undefined) {
      const got = await capture([...toastyfsCommand(), "get", spec.read_key], { timeout_ms: 30_000 });
      value = got.code === 0 ? got.stdout : null;
      const client = new Client({ addresses: dev_addresses });
      try {
        version = (await client.stat(spec.read_key)).version;
      } catch {
        version = null;
      } finally {
        await client.close();
      }
    }
    const ops = (await clusterStatus(dev_addresses, 1000)).flatMap((s) => (s === null ? [] : [s.op]));
    return { runs, value, version, op: ops.length === 0 ? null : Math.max(...ops), dev_log, isolated: false };
  } finally {
    dev.kill("SIGINT");
    const stopped = await Promise.race([dev.exited, Bun.sleep(20_000).then(() => "timeout" as const)]);
    if (stopped === "timeout") dev.kill("SIGKILL");
    await collecting;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const spec = JSON.parse(process.argv[2]!) as DevPortsSpec;
  const outcome = await main(spec, process.argv[3] === "host");
  console.log(outcome_marker + JSON.stringify(outcome));
  process.exit(0);
}
