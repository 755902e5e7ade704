/**
 * Real-process clusters for tests: replicas run as separate `toastyfs` processes (the compiled
 * executable when ./build.sh has made it, else `bun cmd/toastyfs.ts`) on free loopback ports with
 * throwaway data directories. Helpers wait for conditions with a deadline; nothing sleeps in place
 * of a condition.
 */
import { spawn, type Subprocess } from "bun";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as net from "node:net";
import { clusterStatus } from "../../lib/client/client.ts";
import type { ReplicaStatus } from "../../lib/node/status.ts";
import { parseAddress, type Address } from "../../lib/net/address.ts";

export const repo = path.resolve(import.meta.dir, "../..");
const binary = path.join(repo, "toastyfs");
const bun = path.join(repo, "node_modules/.bin/bun");

/** The command line that runs `toastyfs` here. */
export function toastyfsCommand(): string[] {
  return fs.existsSync(binary) ? [binary] : [bun, path.join(repo, "cmd/toastyfs.ts")];
}

export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<net.Server>((resolve, reject) => {
      const server = net.createServer();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve(server));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeout_ms = 20_000, interval_ms = 50): Promise<T> {
  const deadline = Date.now() + timeout_ms;
  let last_error: unknown = null;
  for (;;) {
    try {
      const value = await fn();
      if (value !== null && value !== undefined && value !== false) return value as T;
    } catch (error) {
      last_error = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}${last_error ? `: ${String(last_error)}` : ""}`);
    await Bun.sleep(interval_ms);
  }
}

export interface ReplicaProcess {
  index: number;
  port: number;
  address: string;
  data_dir: string;
  process: Subprocess | null;
  log_path: string;
}

export class TestCluster {
  readonly replicas: ReplicaProcess[];
  readonly addresses: Address[];

  private constructor(
    readonly dir: string,
    ports: number[],
  ) {
    const sorted = [...ports].sort((a, b) => String(`127.0.0.1:${a}`).localeCompare(`127.0.0.1:${b}`));
    this.replicas = sorted.map((port, index) => ({
      index,
      port,
      address: `127.0.0.1:${port}`,
      data_dir: path.join(dir, `replica-${port}`),
      process: null,
      log_path: path.join(dir, `replica-${port}.log`),
    }));
    this.addresses = this.replicas.map((r) => parseAddress(r.address));
  }

  /** Starts `count` replicas and waits until they are formatted and one is primary. */
  static async start(count = 3, options: { extra_args?: string[] } = {}): Promise<TestCluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-test-"));
    const cluster = new TestCluster(dir, await freePorts(count));
    cluster.extra_args = options.extra_args ?? [];
    for (const r of cluster.replicas) cluster.spawn(r);
    await cluster.waitHealthy();
    return cluster;
  }

  private extra_args: string[] = [];

  get cluster_arg(): string {
    return this.replicas.map((r) => r.address).join(",");
  }

  spawn(r: ReplicaProcess): void {
    const peers = this.replicas.filter((p) => p !== r).flatMap((p) => ["--peer", p.address]);
    const log = fs.openSync(r.log_path, "a");
    r.process = spawn([...toastyfsCommand(), "--addr", r.address, ...peers, "--data", r.data_dir, ...this.extra_args], {
      stdout: log,
      stderr: log,
      stdin: "ignore",
    });
    fs.closeSync(log);
  }

  async status(): Promise<(ReplicaStatus | null)[]> {
    return clusterStatus(this.addresses, 500);
  }

  /** All running replicas answer, in normal status, one of them primary, all at the same commit. */
  async waitHealthy(timeout_ms = 30_000): Promise<(ReplicaStatus | null)[]> {
    return waitFor("a healthy cluster", async () => {
      const statuses = await this.status();
      const running = this.replicas.filter((r) => r.process !== null);
      const up = statuses.filter((s): s is ReplicaStatus => s !== null);
      if (up.length < running.length || !up.some((s) => s.primary)) return null;
      if (up.some((s) => s.status !== "normal")) return null;
      return statuses;
    }, timeout_ms);
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
