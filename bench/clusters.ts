/**
 * The two systems under test, each a 3-member cluster of real processes on loopback with data
 * directories on the same disk: ToastyFS (`./toastyfs` when it is built and newer than the
 * sources, else `bun cmd/toastyfs.ts`) and etcd (Debian's etcd-server, when installed).
 * Every wait polls a condition against a deadline.
 */
import { spawn, type Subprocess } from "bun";
import * as fs from "node:fs";
import { freePorts } from "../tests/support/ports.ts";
export { freePorts };
import * as os from "node:os";
import * as path from "node:path";
import { Client, clusterStatus } from "../lib/client/client.ts";
import { parseAddress, type Address } from "../lib/net/address.ts";
import type { ReplicaStatus } from "../lib/net/status_codec.ts";
import { EtcdClient, etcdStatus } from "./etcd_client.ts";
import type { AuthKeys } from "../lib/net/auth/secret.ts";
import type { TlsFiles } from "../lib/net/tls.ts";

export const repo = path.resolve(import.meta.dir, "..");
const bun = path.join(repo, "node_modules/.bin/bun");

/** What a workload needs from one client of either system. */
export interface Store {
  put(key: string, value: Uint8Array): Promise<void>;
  /** The value's length. */
  get(key: string): Promise<number>;
  close(): Promise<void>;
}

export interface BenchCluster {
  readonly name: string;
  readonly size: number;
  /** Process ids of running members, by index (null when down). */
  pids(): (number | null)[];
  /** Waits for a leader (ToastyFS: primary) and returns its index. */
  leader(timeout_ms?: number): Promise<number>;
  /** SIGKILL, and waits until the process is gone. */
  kill(index: number): Promise<void>;
  restart(index: number): void;
  /** Every running member up and following one leader, and index (if given) caught up. */
  waitHealthy(timeout_ms?: number, caught_up?: number): Promise<void>;
  /** Writes committed so far (ToastyFS: prepares, each a batch of requests; etcd: raft index). */
  commitCount(): Promise<number>;
  /** attempt_timeout_ms: an attempt unanswered this long is retried (on another member). */
  client(index: number, attempt_timeout_ms?: number): Store;
  /** SIGTERM (profiles are written at exit), then SIGKILL after a grace period; removes data. */
  stop(keep?: boolean): Promise<void>;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null> | T | null, timeout_ms: number, interval_ms = 50): Promise<T> {
  const deadline = performance.now() + timeout_ms;
  for (;;) {
    const value = await fn();
    if (value !== null) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}`);
    await Bun.sleep(interval_ms);
  }
}

/** Launches every member and waits until the cluster is healthy; stops it (and removes its data)
 * if it is not. */
async function startHealthy<C extends ProcessCluster & BenchCluster>(cluster: C, launched?: (cluster: BenchCluster) => void): Promise<C> {
  cluster.launchAll();
  launched?.(cluster);
  try {
    await cluster.waitHealthy(30_000);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

interface Member {
  index: number;
  process: Subprocess | null;
  log_path: string;
}

abstract class ProcessCluster {
  protected readonly members: Member[];

  constructor(
    readonly dir: string,
    readonly size: number,
  ) {
    this.members = Array.from({ length: size }, (_, index) => ({ index, process: null, log_path: path.join(dir, `member-${index}.log`) }));
  }

  protected abstract command(index: number): string[];

  /** Every member, for start. */
  launchAll(): void {
    for (let i = 0; i < this.size; i++) this.launch(i);
  }

  protected launch(index: number): void {
    const m = this.members[index]!;
    const log = fs.openSync(m.log_path, "a");
    m.process = spawn(this.command(index), { stdout: log, stderr: log, stdin: "ignore", cwd: repo });
    fs.closeSync(log);
  }

  pids(): (number | null)[] {
    return this.members.map((m) => m.process?.pid ?? null);
  }

  async kill(index: number): Promise<void> {
    const p = this.members[index]!.process;
    if (p === null) return;
    p.kill("SIGKILL");
    await p.exited;
    this.members[index]!.process = null;
  }

  restart(index: number): void {
    if (this.members[index]!.process !== null) throw new Error(`member ${index} is running`);
    this.launch(index);
  }

  protected running(index: number): boolean {
    return this.members[index]!.process !== null;
  }

  async stop(keep = false): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        const p = m.process;
        if (p === null) return;
        p.kill("SIGTERM");
        const timer = setTimeout(() => p.kill("SIGKILL"), 10_000);
        await p.exited;
        clearTimeout(timer);
        m.process = null;
      }),
    );
    if (!keep) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  logs(index: number): string {
    const file = this.members[index]!.log_path;
    return fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
  }
}

// ---------------------------------------------------------------------------------------------
// ToastyFS

/** The compiled executable if it is newer than every source file, else the source. */
export function toastyfsCommand(): { command: string[]; compiled: boolean } {
  const binary = path.join(repo, "toastyfs");
  if (fs.existsSync(binary) && fs.statSync(binary).mtimeMs >= newestSource()) return { command: [binary], compiled: true };
  return { command: [bun, path.join(repo, "cmd/toastyfs.ts")], compiled: false };
}

function newestSource(): number {
  let newest = 0;
  for (const top of ["cmd", "lib"]) {
    for (const file of fs.readdirSync(path.join(repo, top), { recursive: true, encoding: "utf8" })) {
      if (file.endsWith(".ts")) newest = Math.max(newest, fs.statSync(path.join(repo, top, file)).mtimeMs);
    }
  }
  return newest;
}

export interface ToastyOptions {
  /** Run replicas from source under `bun --cpu-prof`, profiles into this directory. */
  profile_dir?: string;
  /** Called once the processes are started, before they are healthy (so Ctrl-C can stop them). */
  launched?: (cluster: BenchCluster) => void;
  /** More replica options (bench/auth.ts: --secret-file, --tls-*). */
  args?: string[];
  /** What every client (and the status probes) needs to get in: the secret, TLS files. */
  access?: { secret?: AuthKeys | null; tls?: TlsFiles | null };
}

export class ToastyCluster extends ProcessCluster implements BenchCluster {
  readonly name = "ToastyFS";
  readonly addresses: Address[];
  readonly compiled: boolean;
  private readonly base: string[];

  private constructor(
    dir: string,
    private readonly ports: number[],
    private readonly options: ToastyOptions,
  ) {
    super(dir, ports.length);
    // Replica index = position in the sorted address list (lib/net/address.ts membership).
    this.ports.sort((a, b) => (`127.0.0.1:${a}` < `127.0.0.1:${b}` ? -1 : 1));
    this.addresses = this.ports.map((p) => parseAddress(`127.0.0.1:${p}`));
    const { command, compiled } = toastyfsCommand();
    this.compiled = compiled && options.profile_dir === undefined;
    this.base = this.compiled ? command : [bun, path.join(repo, "cmd/toastyfs.ts")];
  }

  static async start(size = 3, options: ToastyOptions = {}): Promise<ToastyCluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-bench-"));
    return startHealthy(new ToastyCluster(dir, await freePorts(size), options), options.launched);
  }

  get description(): string {
    return this.options.profile_dir !== undefined
      ? "bun --cpu-prof cmd/toastyfs.ts"
      : this.compiled
        ? "./toastyfs (compiled)"
        : "bun cmd/toastyfs.ts (source; ./toastyfs missing or older than the sources)";
  }

  protected command(index: number): string[] {
    const self = `127.0.0.1:${this.ports[index]}`;
    const peers = this.ports.filter((_, i) => i !== index).flatMap((p) => ["--peer", `127.0.0.1:${p}`]);
    const args = [
      "--addr",
      self,
      ...peers,
      "--data",
      path.join(this.dir, `replica-${index}`),
      "--log-level",
      "warn",
      ...(this.options.args ?? []),
    ];
    const profile = this.options.profile_dir;
    if (profile !== undefined) {
      return [
        bun,
        "--cpu-prof",
        `--cpu-prof-dir=${profile}`,
        `--cpu-prof-name=replica-${index}.cpuprofile`,
        path.join(repo, "cmd/toastyfs.ts"),
        ...args,
      ];
    }
    return [...this.base, ...args];
  }

  async status(): Promise<(ReplicaStatus | null)[]> {
    return clusterStatus(this.addresses, 500, this.options.access?.secret ?? null, this.options.access?.tls ?? null);
  }

  async leader(timeout_ms = 20_000): Promise<number> {
    return waitFor(
      "a ToastyFS primary",
      async () => {
        const s = (await this.status()).find((x) => x?.primary && x.status === "normal");
        return s ? s.replica : null;
      },
      timeout_ms,
    );
  }

  async waitHealthy(timeout_ms = 30_000, caught_up?: number): Promise<void> {
    await waitFor(
      "a healthy ToastyFS cluster",
      async () => {
        const statuses = await this.status();
        const up = statuses.filter((s, i) => s !== null && this.running(i)) as ReplicaStatus[];
        if (up.length < this.members.filter((m) => m.process !== null).length) return null;
        if (!up.some((s) => s.primary) || up.some((s) => s.status !== "normal")) return null;
        if (caught_up !== undefined) {
          const commit = Math.max(...up.map((s) => s.commit_max));
          if ((statuses[caught_up]?.commit_min ?? -1) < commit - 64) return null;
        }
        return true;
      },
      timeout_ms,
    );
  }

  async commitCount(): Promise<number> {
    return Math.max(0, ...(await this.status()).map((s) => s?.commit_max ?? 0));
  }

  client(index: number, attempt_timeout_ms?: number): Store {
    const client = new Client({
      addresses: this.addresses,
      client_id: BigInt(index),
      operation_timeout_ms: 30_000,
      ...this.options.access,
      ...(attempt_timeout_ms !== undefined ? { attempt_timeout_ms } : {}),
    });
    return {
      put: async (key, value) => void (await client.put(key, value)),
      get: async (key) => (await client.get(key)).value.length,
      close: () => client.close(),
    };
  }
}

// ---------------------------------------------------------------------------------------------
// etcd

export function etcdInstalled(): string | null {
  const found = Bun.which("etcd");
  if (found === null) return null;
  const result = Bun.spawnSync([found, "--version"], { stdout: "pipe", stderr: "pipe" });
  const version = /etcd Version: (\S+)/.exec(result.stdout.toString())?.[1];
  return version === undefined ? null : `${version}`;
}

export class EtcdCluster extends ProcessCluster implements BenchCluster {
  readonly name = "etcd";
  readonly endpoints: string[];
  private member_ids: (string | null)[];

  private constructor(
    dir: string,
    client_ports: number[],
    private readonly peer_ports: number[],
  ) {
    super(dir, client_ports.length);
    this.endpoints = client_ports.map((p) => `127.0.0.1:${p}`);
    this.member_ids = client_ports.map(() => null);
  }

  static async start(size = 3, launched?: (cluster: BenchCluster) => void): Promise<EtcdCluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-bench-"));
    const ports = await freePorts(2 * size);
    return startHealthy(new EtcdCluster(dir, ports.slice(0, size), ports.slice(size)), launched);
  }

  protected command(index: number): string[] {
    const peer = (i: number) => `http://127.0.0.1:${this.peer_ports[i]}`;
    const initial = this.peer_ports.map((_, i) => `m${i}=${peer(i)}`).join(",");
    return [
      "etcd",
      "--name",
      `m${index}`,
      "--data-dir",
      path.join(this.dir, `m${index}`),
      "--listen-client-urls",
      `http://${this.endpoints[index]}`,
      "--advertise-client-urls",
      `http://${this.endpoints[index]}`,
      "--listen-peer-urls",
      peer(index),
      "--initial-advertise-peer-urls",
      peer(index),
      "--initial-cluster",
      initial,
      "--initial-cluster-state",
      "new",
      "--initial-cluster-token",
      path.basename(this.dir),
      // 1 MiB puts keep every revision until compaction: room for the whole run.
      "--quota-backend-bytes",
      String(8 * 2 ** 30),
      "--logger",
      "zap",
      "--log-level",
      "warn",
    ];
  }

  private async statuses() {
    return Promise.all(this.endpoints.map((e, i) => (this.running(i) ? etcdStatus(e, 500) : Promise.resolve(null))));
  }

  async leader(timeout_ms = 20_000): Promise<number> {
    return waitFor(
      "an etcd leader",
      async () => {
        const statuses = await this.statuses();
        statuses.forEach((s, i) => {
          if (s !== null) this.member_ids[i] = s.member_id;
        });
        for (let i = 0; i < statuses.length; i++) {
          const s = statuses[i];
          if (s && s.leader !== "0" && s.leader === s.member_id) return i;
        }
        return null;
      },
      timeout_ms,
    );
  }

  async waitHealthy(timeout_ms = 30_000, caught_up?: number): Promise<void> {
    await waitFor(
      "a healthy etcd cluster",
      async () => {
        const statuses = await this.statuses();
        const running = this.members.filter((m) => m.process !== null).length;
        const up = statuses.filter((s) => s !== null);
        if (up.length < running) return null;
        const leader = up[0]!.leader;
        if (leader === "0" || up.some((s) => s!.leader !== leader) || !up.some((s) => s!.member_id === leader)) return null;
        if (caught_up !== undefined) {
          const index = Math.max(...up.map((s) => s!.raft_index));
          if ((statuses[caught_up]?.raft_index ?? -1) < index - 64) return null;
        }
        return true;
      },
      timeout_ms,
    );
  }

  async commitCount(): Promise<number> {
    return Math.max(0, ...(await this.statuses()).map((s) => s?.raft_index ?? 0));
  }

  client(index: number, attempt_timeout_ms?: number): Store {
    const client = new EtcdClient(this.endpoints, index, attempt_timeout_ms);
    return {
      put: (key, value) => client.put(key, value),
      get: async (key) => (await client.get(key)).length,
      close: async () => client.close(),
    };
  }
}
