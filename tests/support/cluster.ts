/**
 * Real-process clusters for tests: replicas run as separate `toastyfs` processes (the compiled
 * executable when ./build.sh has made it, else `bun cmd/toastyfs.ts`) on free loopback ports with
 * throwaway data directories. Helpers wait for conditions with a deadline; nothing sleeps in place
 * of a condition.
 */
import { readSecretFile, type AuthKeys } from "../../lib/net/auth/secret.ts";
import { readTlsFiles, type TlsFiles } from "../../lib/net/tls.ts";
import { spawn, type Subprocess } from "bun";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePorts } from "./ports.ts";
export { freePorts };
import { clusterStatus } from "../../lib/client/client.ts";
import type { ReplicaStatus } from "../../lib/net/status_codec.ts";
import { parseAddress, type Address } from "../../lib/net/address.ts";
import { ProxyNetwork } from "./proxy.ts";

export const repo = path.resolve(import.meta.dir, "../..");
const binary = path.join(repo, "toastyfs");
const bun = path.join(repo, "node_modules/.bin/bun");

/** The command line that runs `toastyfs` here. */
export function toastyfsCommand(): string[] {
  return fs.existsSync(binary) ? [binary] : [bun, path.join(repo, "cmd/toastyfs.ts")];
}

let listen_option: boolean | null = null;

/** Whether the `toastyfs` that toastyfsCommand() runs takes --listen (an executable built before
 * the option existed does not; the source always does). */
function supportsListenOption(): boolean {
  if (listen_option === null) {
    const result = Bun.spawnSync([...toastyfsCommand(), "serve", "--help"], { stdout: "pipe", stderr: "pipe" });
    listen_option = result.stdout.toString().includes("--listen");
  }
  return listen_option;
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  timeout_ms = 20_000,
  interval_ms = 50,
): Promise<T> {
  const deadline = Date.now() + timeout_ms;
  let last_error: unknown = null;
  for (;;) {
    try {
      const value = await fn();
      if (value !== null && value !== undefined && value !== false) return value as T;
    } catch (error) {
      last_error = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}${last_error ? `: ${String(last_error)}` : ""}`);
    await Bun.sleep(interval_ms);
  }
}

export interface ReplicaProcess {
  index: number;
  /** The listed port (the address in the cluster's membership). */
  port: number;
  /** Where the process really listens: `port`, or another one when a proxy sits on `port`. */
  listen_port: number;
  address: string;
  data_dir: string;
  process: Subprocess | null;
  log_path: string;
}

/** Rewrites a replica's command line (e.g. to run it in its own mount namespace); the process it
 * starts must end up being the replica itself (exec), so signals reach it. */
export type CommandWrapper = (replica: ReplicaProcess, command: string[]) => string[];

export class TestCluster {
  readonly replicas: ReplicaProcess[];
  readonly addresses: Address[];

  /** Set when started with `proxy: true`: the proxies on the listed addresses (tests/support/proxy.ts). */
  network: ProxyNetwork | null = null;

  private constructor(
    readonly dir: string,
    ports: number[],
    listen_ports: number[] | null = null,
  ) {
    const sorted = [...ports].sort((a, b) => String(`127.0.0.1:${a}`).localeCompare(`127.0.0.1:${b}`));
    this.replicas = sorted.map((port, index) => ({
      index,
      port,
      listen_port: listen_ports === null ? port : listen_ports[index]!,
      address: `127.0.0.1:${port}`,
      data_dir: path.join(dir, `replica-${port}`),
      process: null,
      log_path: path.join(dir, `replica-${port}.log`),
    }));
    this.addresses = this.replicas.map((r) => parseAddress(r.address));
  }

  /**
   * Starts `count` replicas and waits until they are formatted and one is primary.
   * proxy: put a ProxyNetwork on the listed addresses (`cluster.network`), each forwarding to its
   * replica's real port, so tests can cut replica-to-replica links while clients still reach
   * every replica (see tests/support/proxy.ts).
   */
  static async start(
    count = 3,
    options: {
      extra_args?: string[];
      proxy?: boolean;
      wrap?: CommandWrapper;
      secret_file?: string;
      /** Mutual TLS: every replica gets these files, and so do the harness's own status checks. */
      tls?: { cert: string; key: string; ca: string };
    } = {},
  ): Promise<TestCluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-test-"));
    const ports = await freePorts(options.proxy ? 2 * count : count);
    const cluster = options.proxy ? new TestCluster(dir, ports.slice(0, count), ports.slice(count)) : new TestCluster(dir, ports);
    cluster.extra_args = [...(options.extra_args ?? [])];
    if (options.secret_file !== undefined) {
      cluster.extra_args.push("--secret-file", options.secret_file);
      cluster.secret = readSecretFile(options.secret_file);
    }
    if (options.tls !== undefined) {
      const { cert, key, ca } = options.tls;
      cluster.extra_args.push("--tls-cert", cert, "--tls-key", key, "--tls-ca", ca);
      cluster.tls = readTlsFiles(cert, key, ca);
    }
    cluster.wrap = options.wrap ?? null;
    if (options.proxy) {
      cluster.network = await ProxyNetwork.start(
        "127.0.0.1",
        cluster.replicas.map((r) => r.port),
        cluster.replicas.map((r) => r.listen_port),
      );
    }
    for (const r of cluster.replicas) cluster.spawn(r);
    await cluster.waitHealthy();
    return cluster;
  }

  private extra_args: string[] = [];
  /** The cluster's keys when started with a secret_file: the harness's own status checks need them. */
  secret: AuthKeys | null = null;
  /** The TLS files when started with tls. */
  tls: TlsFiles | null = null;
  private wrap: CommandWrapper | null = null;

  get cluster_arg(): string {
    return this.replicas.map((r) => r.address).join(",");
  }

  spawn(r: ReplicaProcess): void {
    const peers = this.replicas.filter((p) => p !== r).flatMap((p) => ["--peer", p.address]);
    const args = ["--addr", r.address, ...peers, "--data", r.data_dir, ...this.extra_args];
    let command = [...toastyfsCommand(), ...args];
    if (r.listen_port !== r.port) {
      // A proxy sits on the listed address: the replica binds its real port (--listen).
      const listen = ["--listen", `127.0.0.1:${r.listen_port}`];
      command = supportsListenOption() ? [...command, ...listen] : [bun, path.join(repo, "cmd/toastyfs.ts"), ...args, ...listen];
    }
    if (this.wrap !== null) command = this.wrap(r, command);
    const log = fs.openSync(r.log_path, "a");
    fs.writeSync(log, `--- test harness: starting replica ${r.index} at ${new Date().toISOString()}\n`);
    r.process = spawn(command, { stdout: log, stderr: log, stdin: "ignore" });
    fs.closeSync(log);
  }

  /** Whether the replica's process is running (paused counts as running). */
  running(r: ReplicaProcess): boolean {
    return r.process !== null && r.process.exitCode === null && r.process.signalCode === null;
  }

  /** kill -9, and waits until the process is gone (so its port and data directory are free). */
  async crash(r: ReplicaProcess): Promise<void> {
    const p = r.process;
    this.kill(r, "SIGKILL");
    if (p !== null) await p.exited;
  }

  /** kill -9 of every running replica at once (power loss, as far as processes go). */
  async crashAll(): Promise<void> {
    const running = this.replicas.flatMap((r) => (r.process === null ? [] : [r.process]));
    for (const r of this.replicas) this.kill(r, "SIGKILL");
    await Promise.all(running.map((p) => p.exited));
  }

  /** SIGSTOP: the process is frozen with its sockets open; resume() continues it. */
  pause(r: ReplicaProcess): void {
    this.kill(r, "SIGSTOP");
  }

  resume(r: ReplicaProcess): void {
    this.kill(r, "SIGCONT");
  }

  /** Each replica's status; null for one that does not answer within timeout_ms. */
  async status(timeout_ms = 500): Promise<(ReplicaStatus | null)[]> {
    return clusterStatus(this.addresses, timeout_ms, this.secret, this.tls);
  }

  /** All running replicas answer, in normal status, one of them primary, all at the same commit. */
  async waitHealthy(timeout_ms = 30_000): Promise<(ReplicaStatus | null)[]> {
    return waitFor(
      "a healthy cluster",
      async () => {
        const statuses = await this.status();
        const running = this.replicas.filter((r) => r.process !== null);
        const up = statuses.filter((s): s is ReplicaStatus => s !== null);
        if (up.length < running.length || !up.some((s) => s.primary)) return null;
        if (up.some((s) => s.status !== "normal")) return null;
        return statuses;
      },
      timeout_ms,
    );
  }

  /**
   * Every running replica answers, in normal status in one view with one primary, and all agree:
   * the same commit (fully executed) and the same object count and bytes. What a cluster at rest
   * looks like once repair and state sync are done.
   */
  async waitConverged(timeout_ms = 30_000): Promise<ReplicaStatus[]> {
    let last: (ReplicaStatus | null)[] = [];
    try {
      return await waitFor(
        "the replicas to converge",
        async () => {
          const statuses = (last = await this.status());
          const up = this.replicas.filter((r) => r.process !== null).map((r) => statuses[r.index] ?? null);
          if (up.some((s) => s === null)) return null;
          const s = up as ReplicaStatus[];
          const first = s[0]!;
          if (s.filter((x) => x.primary).length !== 1) return null;
          const agree = s.every(
            (x) =>
              x.status === "normal" &&
              x.view === first.view &&
              x.commit_min === first.commit_max &&
              x.commit_max === first.commit_max &&
              x.objects === first.objects &&
              x.object_bytes === first.object_bytes,
          );
          return agree ? s : null;
        },
        timeout_ms,
        100,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}\nlast status:\n${describeStatuses(last)}`);
    }
  }

  async primary(): Promise<ReplicaProcess> {
    return waitFor("a primary", async () => {
      const statuses = await this.status();
      const p = statuses.find((s) => s?.primary);
      return p ? this.replicas[p.replica] : null;
    });
  }

  kill(r: ReplicaProcess, signal: NodeJS.Signals | number = "SIGKILL"): void {
    r.process?.kill(signal);
    if (signal === "SIGKILL" || signal === 9) r.process = null;
  }

  async stop(r: ReplicaProcess): Promise<number | null> {
    const p = r.process;
    if (p === null) return null;
    p.kill("SIGTERM");
    const code = await p.exited;
    r.process = null;
    return code;
  }

  restart(r: ReplicaProcess): void {
    if (r.process !== null) this.kill(r);
    this.spawn(r);
  }

  logs(r: ReplicaProcess): string {
    return fs.existsSync(r.log_path) ? fs.readFileSync(r.log_path, "utf8") : "";
  }

  /** Stops every replica (SIGKILL) and removes the directory unless keep is set. */
  async destroy(keep = false): Promise<void> {
    await this.network?.close();
    this.network = null;
    for (const r of this.replicas) {
      if (r.process !== null) {
        r.process.kill("SIGKILL");
        await r.process.exited;
        r.process = null;
      }
    }
    if (!keep) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One line per replica, for failure messages and test output. */
export function describeStatuses(statuses: (ReplicaStatus | null)[]): string {
  return statuses
    .map((s, i) =>
      s === null
        ? `  replica ${i}: down`
        : `  replica ${i}: ${s.status}${s.primary ? " primary" : ""} view ${s.view} op ${s.op} commit ${s.commit_min}/${s.commit_max} checkpoint ${s.checkpoint} objects ${s.objects} (${s.object_bytes} bytes)${s.problem ? ` problem: ${s.problem}` : ""}`,
    )
    .join("\n");
}
