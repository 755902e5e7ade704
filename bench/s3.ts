/**
 * Issue 15's throughput must-show: the S3 gateway against the native TypeScript client, on one
 * 3-replica ToastyFS cluster, each workload run natively and then through the gateway (order
 * alternating from workload to workload) in the same run, back to back:
 *
 * - PUT 4 KiB objects, 1 client and 32 clients (ops/s, p50/p99 latency);
 * - PUT 1 MiB objects, 1 client and 32 clients (MB/s);
 * - GET 4 KiB and 1 MiB objects, 32 clients, of objects put through the gateway beforehand (the
 *   native side reads the same objects under their native keys, BUCKET/KEY);
 * - one 1 GiB upload: natively client.put of a stream; through the gateway a multipart upload by
 *   Bun's S3 client (file.write of a ReadableStream with 16 MiB parts, 4 in flight).
 *
 * The gateway is a separate `./toastyfs s3` process (what a user runs; `bun cmd/toastyfs.ts s3`
 * when ./toastyfs is older than the sources); its CPU time is read from /proc/PID/stat for every
 * workload, since on a small machine it competes with the replicas for the cores. Native clients
 * are lib/client Clients (one per simulated client, one request in flight each, as bench/run.ts);
 * S3 clients are Bun.S3Client (UNSIGNED-PAYLOAD, cheap on CPU), one per simulated client.
 *
 *   ./node_modules/.bin/bun bench/run.ts --s3 [--quick] [--json FILE]
 *   ./node_modules/.bin/bun bench/run.ts --s3 --profile [--quick]
 *
 * --quick: 2 s windows and a 256 MiB upload. --profile: the gateway side of each workload only,
 * each against a fresh gateway run from source under bun --cpu-prof; prints its top functions.
 * S3_ONLY=TEXT runs only the workloads whose name contains TEXT (e.g. S3_ONLY="32 clients").
 * MB = 10^6 bytes. Ctrl-C stops the cluster and the gateway and removes their data.
 */
import { spawn, type Subprocess } from "bun";
import { createHash, createHmac } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "../lib/client/client.ts";
import { formatAddress } from "../lib/net/address.ts";
import { ToastyCluster, freePorts, repo, toastyfsCommand, waitFor, type Store } from "./clusters.ts";
import { closedLoop, cpuSnapshot, idleCpuPercent, type LoadResult } from "./measure.ts";
import { Pattern } from "./pattern.ts";
import { summarizeProfile, type CpuProfile } from "./profile.ts";
import { fmt, loadAverage, machine, table } from "./report.ts";

export interface S3Flags {
  quick: boolean;
  profile: boolean;
  json: string | null;
}

const kib = 1024;
const mib = 1024 * kib;
const gib = 1024 * mib;
const clients_many = 32;
/** Keys a 1-client put cycles over, and per client of a 32-client put. */
const put_keys_one = 1000;
const put_keys_each = 100;
const small_get_keys = 1000;
const big_get_keys = 32;
/** The multipart upload's part size and parts in flight (Bun's default is 5 MiB parts). */
const part_bytes = 16 * mib;
const parts_in_flight = 4;
/** Patience for one native attempt of a 1 GiB put on a loaded machine (as bench/large.ts). */
const large_operation_timeout_ms = 120_000;
const gateway_start_timeout_ms = 30_000;
/** SIGTERM first (a profiled gateway writes its profile at exit), SIGKILL after this. */
const gateway_stop_grace_ms = 10_000;
const bucket = "bench";
const region = "us-east-1";
const bun = path.join(repo, "node_modules/.bin/bun");
/** Gateway/native at least this, by workload size (the issue's targets). */
const target_small = 0.6;
const target_large = 0.8;

function log(text: string): void {
  console.error(`[s3 ${new Date().toISOString().slice(11, 19)}] ${text}`);
}

function randomValue(size: number): Uint8Array {
  const value = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(value.subarray(i, Math.min(size, i + 65536)));
  return value;
}

// --- Clean-up: every cluster and gateway started is stopped on every exit path, Ctrl-C included.

const stoppers = new Set<() => Promise<unknown>>();

async function stopEverything(): Promise<void> {
  const all = [...stoppers];
  stoppers.clear();
  await Promise.all(all.map((stop) => stop()));
}

/** Installed by runS3 only: bench/run.ts imports this file for every mode. */
function stopOnSignals(): void {
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping the gateway and the cluster`);
      void stopEverything().then(() => process.exit(code));
    });
  }
}

// --- The gateway process

interface Keys {
  access_key: string;
  secret: string;
}

class GatewayProcess {
  private constructor(
    private readonly process: Subprocess,
    readonly url: string,
    readonly log_path: string,
  ) {}

  get pid(): number {
    return this.process.pid;
  }

  /** `toastyfs s3` in front of the cluster, on a free port; under bun --cpu-prof (from source)
   * when profile is given. Resolves once it answers HTTP. */
  static async start(cluster: ToastyCluster, keys: Keys, profile?: { dir: string; name: string }): Promise<GatewayProcess> {
    const [port] = await freePorts(1);
    const args = [
      "s3",
      "--listen",
      `127.0.0.1:${port}`,
      "--cluster",
      cluster.addresses.map(formatAddress).join(","),
      "--log-level",
      "warn",
    ];
    const command =
      profile === undefined
        ? [...toastyfsCommand().command, ...args]
        : [
            bun,
            "--cpu-prof",
            `--cpu-prof-dir=${profile.dir}`,
            `--cpu-prof-name=${profile.name}`,
            path.join(repo, "cmd/toastyfs.ts"),
            ...args,
          ];
    const log_path = path.join(cluster.dir, `gateway-${port}.log`);
    const out = fs.openSync(log_path, "a");
    const child = spawn(command, {
      stdout: out,
      stderr: out,
      stdin: "ignore",
      cwd: repo,
      env: { ...process.env, TOASTYFS_S3_ACCESS_KEY: keys.access_key, TOASTYFS_S3_SECRET_KEY: keys.secret },
    });
    fs.closeSync(out);
    const gateway = new GatewayProcess(child, `http://127.0.0.1:${port}`, log_path);
    stoppers.add(gateway.stop);
    await waitFor(
      `the gateway to answer on ${gateway.url}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`the gateway exited with code ${child.exitCode}: ${gateway.logTail()}`);
        try {
          await fetch(gateway.url, { signal: AbortSignal.timeout(1000) });
          return true;
        } catch {
          return null;
        }
      },
      gateway_start_timeout_ms,
    );
    return gateway;
  }

  logTail(): string {
    return fs.existsSync(this.log_path) ? fs.readFileSync(this.log_path, "utf8").slice(-2000) : "(no log)";
  }

  readonly stop = async (): Promise<void> => {
    stoppers.delete(this.stop);
    if (this.process.exitCode !== null) return;
    this.process.kill("SIGTERM");
    const timer = setTimeout(() => this.process.kill("SIGKILL"), gateway_stop_grace_ms);
    await this.process.exited;
    clearTimeout(timer);
  };
}

/**
 * CreateBucket, signed here with SigV4 from its definition (Bun.S3Client has no bucket calls):
 * the canonical request of a bodiless PUT /BUCKET signing host, x-amz-content-sha256, x-amz-date.
 */
async function createBucket(url: string, keys: Keys, name: string): Promise<void> {
  const amz_date = new Date()
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  const date = amz_date.slice(0, 8);
  const empty_sha256 = createHash("sha256").update("").digest("hex");
  const host = new URL(url).host;
  const signed = "host;x-amz-content-sha256;x-amz-date";
  const canonical = [
    "PUT",
    `/${name}`,
    "",
    `host:${host}`,
    `x-amz-content-sha256:${empty_sha256}`,
    `x-amz-date:${amz_date}`,
    "",
    signed,
    empty_sha256,
  ];
  const scope = `${date}/${region}/s3/aws4_request`;
  const to_sign = ["AWS4-HMAC-SHA256", amz_date, scope, createHash("sha256").update(canonical.join("\n")).digest("hex")].join("\n");
  let key: Buffer = createHmac("sha256", `AWS4${keys.secret}`).update(date).digest();
  for (const part of [region, "s3", "aws4_request"]) key = createHmac("sha256", key).update(part).digest();
  const signature = createHmac("sha256", key).update(to_sign).digest("hex");
  const response = await fetch(`${url}/${name}`, {
    method: "PUT",
    headers: {
      "x-amz-content-sha256": empty_sha256,
      "x-amz-date": amz_date,
      authorization: `AWS4-HMAC-SHA256 Credential=${keys.access_key}/${scope}, SignedHeaders=${signed}, Signature=${signature}`,
    },
  });
  if (response.status !== 200) throw new Error(`CreateBucket ${name}: HTTP ${response.status}: ${await response.text()}`);
}

function s3Client(gateway: GatewayProcess, keys: Keys): Bun.S3Client {
  return new Bun.S3Client({ endpoint: gateway.url, accessKeyId: keys.access_key, secretAccessKey: keys.secret, bucket, region });
}

/** A closed-loop client of the gateway. A get checks the length it was given. */
function s3Store(s3: Bun.S3Client): Store {
  return {
    put: async (key, value) => void (await s3.write(key, value)),
    get: async (key) => (await s3.file(key).arrayBuffer()).byteLength,
    close: async () => {},
  };
}

// --- Measuring

/** CPU seconds (user + system) over a measured window. */
interface CpuSeconds {
  gateway: number;
  /** The three replicas together. */
  replicas: number;
  /** This process: the native clients or the S3 clients. */
  bench: number;
}

interface Measured {
  ops_per_s: number;
  mb_per_s: number;
  p50_ms: number;
  p99_ms: number;
  seconds: number;
  ops: number;
  errors: number;
  cpu: CpuSeconds;
  /** What was checked after the workload, if anything. */
  check: string | null;
  check_ok: boolean;
}

type Unit = "ops/s" | "MB/s";

interface WorkloadResult {
  name: string;
  unit: Unit;
  target: number;
  /** One operation timed whole (the large upload), not a closed loop. */
  one_shot: boolean;
  native: Measured | null;
  gateway: Measured;
}

interface Workload {
  name: string;
  unit: Unit;
  target: number;
  one_shot: boolean;
  /** Once, before either side (with the unprofiled gateway). */
  prepare?: () => Promise<void>;
  native: () => Promise<Measured>;
  gateway: (gateway: GatewayProcess) => Promise<Measured>;
}

/** A closed loop's figures; its CPU per 1000 operations back to seconds in the window. */
function fromLoad(l: LoadResult, replicas: number): Measured {
  const kops = Math.max(l.ops, 1) / 1000;
  const seconds = (per_kop: number) => (per_kop * kops) / 1000;
  const servers = l.server_cpu_ms_per_kop.map(seconds);
  return {
    ops_per_s: l.ops_per_s,
    mb_per_s: l.mb_per_s,
    p50_ms: l.p50_ms,
    p99_ms: l.p99_ms,
    seconds: l.seconds,
    ops: l.ops,
    errors: l.errors,
    cpu: {
      replicas: servers.slice(0, replicas).reduce((a, b) => a + b, 0),
      gateway: servers[replicas] ?? NaN,
      bench: seconds(l.client_cpu_ms_per_kop),
    },
    check: null,
    check_ok: true,
  };
}

class S3Bench {
  private readonly small = randomValue(4 * kib);
  private readonly big = randomValue(mib);
  private readonly natives: Store[];
  private readonly load: { warmup_ms: number; measure_ms: number };
  readonly large_bytes: number;

  constructor(
    readonly cluster: ToastyCluster,
    /** The gateway prefills go through (and, outside --profile, every workload). */
    private readonly main_gateway: GatewayProcess,
    private readonly keys: Keys,
    quick: boolean,
  ) {
    this.natives = Array.from({ length: clients_many }, (_, i) => cluster.client(i));
    this.load = quick ? { warmup_ms: 500, measure_ms: 2000 } : { warmup_ms: 1000, measure_ms: 5000 };
    this.large_bytes = quick ? 256 * mib : gib;
  }

  private pids(gateway: GatewayProcess): (number | null)[] {
    return [...this.cluster.pids(), gateway.pid];
  }

  private s3Stores(gateway: GatewayProcess, count: number): Store[] {
    return Array.from({ length: count }, () => s3Store(s3Client(gateway, this.keys)));
  }

  /** Native keys of what the gateway stores as KEY in the bench bucket (docs/S3.md §2). */
  private native(key: string): string {
    return `${bucket}/${key}`;
  }

  private async loop(gateway: GatewayProcess, stores: Store[], op: (s: Store, c: number, i: number) => Promise<number>): Promise<Measured> {
    return fromLoad(await closedLoop(stores, op, { ...this.load, pids: this.pids(gateway) }), this.cluster.size);
  }

  /** Puts of `value` from `clients` clients, natively under n/ and through the gateway under g/. */
  private puts(name: string, value: Uint8Array, clients: number): Workload {
    const keys = clients === 1 ? put_keys_one : put_keys_each;
    const key = (side: string, c: number, i: number) => `${side}/${name}/${c}/${i % keys}`;
    const unit: Unit = value.length >= mib ? "MB/s" : "ops/s";
    const size = value.length;
    return {
      name: `PUT ${size >= mib ? `${size / mib} MiB` : `${size / kib} KiB`}, ${clients} client${clients === 1 ? "" : "s"}`,
      unit,
      target: unit === "MB/s" ? target_large : target_small,
      one_shot: false,
      native: () =>
        this.loop(this.main_gateway, this.natives.slice(0, clients), async (s, c, i) => (await s.put(key("n", c, i), value), size)),
      gateway: (gateway) =>
        this.loop(gateway, this.s3Stores(gateway, clients), async (s, c, i) => (await s.put(key("g", c, i), value), size)),
    };
  }

  /** Gets of `count` objects of `value`'s size put through the gateway first, 32 clients. */
  private gets(name: string, value: Uint8Array, count: number): Workload {
    const keys = Array.from({ length: count }, (_, k) => `${name}/${k}`);
    const size = value.length;
    const pick = (c: number, i: number) => keys[(c * 7919 + i * 31) % count]!;
    const checked = async (length: Promise<number>) => {
      const n = await length;
      if (n !== size) throw new Error(`a get returned ${n} bytes, not ${size}`);
      return n;
    };
    const unit: Unit = size >= mib ? "MB/s" : "ops/s";
    return {
      name: `GET ${size >= mib ? `${size / mib} MiB` : `${size / kib} KiB`}, ${clients_many} clients`,
      unit,
      target: unit === "MB/s" ? target_large : target_small,
      one_shot: false,
      prepare: async () => {
        log(`  prefilling ${count} objects of ${fmt(size)} bytes through the gateway`);
        const stores = this.s3Stores(this.main_gateway, clients_many);
        let next = 0;
        await Promise.all(
          stores.map(async (s) => {
            while (next < count) await s.put(keys[next++]!, value);
          }),
        );
      },
      native: () => this.loop(this.main_gateway, this.natives, (s, c, i) => checked(s.get(this.native(pick(c, i))))),
      gateway: (gateway) => this.loop(gateway, this.s3Stores(gateway, clients_many), (s, c, i) => checked(s.get(pick(c, i)))),
    };
  }

  /** Runs fn once and measures its wall time and every process's CPU time. */
  private async once(gateway: GatewayProcess, bytes: number, fn: () => Promise<void>): Promise<Measured> {
    const pids = this.pids(gateway);
    const before = cpuSnapshot(pids);
    const started = performance.now();
    await fn();
    const seconds = (performance.now() - started) / 1000;
    const after = cpuSnapshot(pids);
    const used = after.servers.map((ms, i) => (ms - before.servers[i]!) / 1000);
    return {
      ops_per_s: 1 / seconds,
      mb_per_s: bytes / 1e6 / seconds,
      p50_ms: seconds * 1000,
      p99_ms: seconds * 1000,
      seconds,
      ops: 1,
      errors: 0,
      cpu: {
        replicas: used.slice(0, this.cluster.size).reduce((a, b) => a + b, 0),
        gateway: used[this.cluster.size]!,
        bench: (after.self - before.self) / 1000,
      },
      check: null,
      check_ok: true,
    };
  }

  /** The object's native header must say `size` bytes. */
  private async checkSize(client: Client, native_key: string, size: number, measured: Measured): Promise<Measured> {
    const head = await client.head(native_key);
    const ok = head.size === size;
    return { ...measured, check: `native head of ${native_key}: ${fmt(head.size)} bytes${ok ? "" : ` (NOT ${fmt(size)})`}`, check_ok: ok };
  }

  private upload(): Workload {
    const size = this.large_bytes;
    const client = () =>
      new Client({ addresses: this.cluster.addresses, client_id: 900n, operation_timeout_ms: large_operation_timeout_ms });
    return {
      name: `PUT ${size >= gib ? `${size / gib} GiB` : `${size / mib} MiB`}, one upload`,
      unit: "MB/s",
      target: target_large,
      one_shot: true,
      native: async () => {
        const c = client();
        try {
          const m = await this.once(
            this.main_gateway,
            size,
            async () => void (await c.put("n/large", new Pattern(1).chunks(size), { size })),
          );
          return await this.checkSize(c, "n/large", size, m);
        } finally {
          await c.close();
        }
      },
      gateway: async (gateway) => {
        const s3 = s3Client(gateway, this.keys);
        const m = await this.once(gateway, size, async () => {
          const chunks = new Pattern(2).chunks(size);
          const stream = new ReadableStream<Uint8Array>({
            async pull(controller) {
              const next = await chunks.next();
              if (next.done) controller.close();
              else controller.enqueue(next.value);
            },
          });
          // A stream body is a multipart upload; the writer() API was not used: its write() does not
          // wait for parts to be sent, so the bench process would hold the whole object.
          await s3.file("large").write(new Response(stream), { partSize: part_bytes, queueSize: parts_in_flight });
        });
        const c = client();
        try {
          return await this.checkSize(c, this.native("large"), size, m);
        } finally {
          await c.close();
        }
      },
    };
  }

  workloads(): Workload[] {
    return [
      this.puts("p4k1", this.small, 1),
      this.puts("p4k32", this.small, clients_many),
      this.puts("p1m1", this.big, 1),
      this.puts("p1m32", this.big, clients_many),
      this.gets("g4k", this.small, small_get_keys),
      this.gets("g1m", this.big, big_get_keys),
      this.upload(),
    ];
  }

  close(): Promise<unknown> {
    return Promise.all(this.natives.map((s) => s.close()));
  }
}

// --- Report

function figure(m: Measured, unit: Unit, one_shot: boolean): string {
  if (one_shot) return `${fmt(m.mb_per_s)} MB/s (${fmt(m.seconds, 1)} s)`;
  const latency = `p50 ${fmt(m.p50_ms, 1)} p99 ${fmt(m.p99_ms, 1)} ms`;
  return unit === "MB/s" ? `${fmt(m.mb_per_s)} MB/s, ${latency}` : `${fmt(m.ops_per_s)} ops/s, ${latency}`;
}

function value(m: Measured, unit: Unit): number {
  return unit === "MB/s" ? m.mb_per_s : m.ops_per_s;
}

function report(results: WorkloadResult[]): string {
  const out: string[] = [];
  out.push(
    table(
      ["workload", "native", "gateway", "gateway/native", "target", "met"],
      results.map((r) => {
        const ratio = r.native === null ? NaN : value(r.gateway, r.unit) / value(r.native, r.unit);
        return [
          r.name,
          r.native === null ? "-" : figure(r.native, r.unit, r.one_shot),
          figure(r.gateway, r.unit, r.one_shot),
          fmt(ratio, 2),
          `>= ${r.target}`,
          Number.isNaN(ratio) ? "-" : ratio >= r.target ? "yes" : "NO",
        ];
      }),
    ),
  );
  out.push("");
  /** CPU seconds per unit of work done: µs per operation, or ms per MB. */
  const per = (cpu_s: number, m: Measured, unit: Unit) =>
    unit === "MB/s"
      ? `${fmt((1000 * cpu_s) / Math.max(m.mb_per_s * m.seconds, 1e-9), 1)} ms/MB`
      : `${fmt((1e6 * cpu_s) / Math.max(m.ops, 1))} µs/op`;
  const all = (m: Measured) => m.cpu.gateway + m.cpu.replicas + m.cpu.bench;
  const pair = (r: WorkloadResult, cell: (m: Measured) => string) => `${r.native === null ? "-" : cell(r.native)}, ${cell(r.gateway)}`;
  out.push(
    table(
      [
        "CPU seconds in the window",
        "window s",
        "gateway process",
        "gateway cores busy",
        "gateway CPU per unit",
        "replicas (native, gateway)",
        "bench process (native, gateway)",
        "all: cores busy (native, gateway)",
        "all: CPU per unit (native, gateway)",
      ],
      results.map((r) => [
        r.name,
        pair(r, (m) => fmt(m.seconds, 1)),
        fmt(r.gateway.cpu.gateway, 2),
        fmt(r.gateway.cpu.gateway / r.gateway.seconds, 2),
        per(r.gateway.cpu.gateway, r.gateway, r.unit),
        pair(r, (m) => fmt(m.cpu.replicas, 2)),
        pair(r, (m) => fmt(m.cpu.bench, 2)),
        pair(r, (m) => fmt(all(m) / m.seconds, 2)),
        pair(r, (m) => per(all(m), m, r.unit)),
      ]),
    ),
  );
  out.push(
    `user + system time from /proc/PID/stat (gateway, replicas) and process.cpuUsage() (this process: the clients) over each side's measured window; ` +
      `cores busy = CPU s / window s, of the ${os.cpus().length} this machine has (shared with anything else running); ` +
      `all = gateway + replicas + bench process: when the cores are full, gateway/native follows the inverse ratio of "all: CPU per unit"`,
  );
  const errors = results.map((r) => `${r.name}: ${r.native?.errors ?? "-"}, ${r.gateway.errors}`);
  out.push(`client errors in the windows (native, gateway): ${errors.join("; ")}`);
  for (const r of results) {
    for (const [side, m] of [
      ["native", r.native],
      ["gateway", r.gateway],
    ] as const) {
      if (m?.check) out.push(`check, ${r.name}, ${side}: ${m.check}`);
    }
  }
  return out.join("\n");
}

// --- Main

async function profileGateway(cluster: ToastyCluster, keys: Keys, workloads: Workload[]): Promise<WorkloadResult[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-s3-profile-"));
  const results: WorkloadResult[] = [];
  for (const [i, w] of workloads.entries()) {
    log(w.name);
    await w.prepare?.();
    const name = `gateway-${i}.cpuprofile`;
    const gateway = await GatewayProcess.start(cluster, keys, { dir, name });
    let measured: Measured;
    try {
      measured = await w.gateway(gateway);
    } finally {
      await gateway.stop();
    }
    results.push({ name: w.name, unit: w.unit, target: w.target, one_shot: w.one_shot, native: null, gateway: measured });
    console.log(
      `\n=== ${w.name} through a gateway under bun --cpu-prof: ${figure(measured, w.unit, w.one_shot)}; gateway CPU ${fmt(measured.cpu.gateway, 2)} s in ${fmt(measured.seconds, 1)} s`,
    );
    const file = path.join(dir, name);
    if (fs.existsSync(file)) console.log(summarizeProfile(JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile, 20));
    else console.log(`  (no profile written: ${gateway.logTail()})`);
  }
  console.log(`\nprofiles in ${dir}`);
  return results;
}

export async function runS3(flags: S3Flags): Promise<void> {
  stopOnSignals();
  const started = performance.now();
  const keys: Keys = { access_key: "bench", secret: createHash("sha256").update(String(Math.random())).digest("hex").slice(0, 40) };
  console.log(`machine: ${machine()}`);
  const results: WorkloadResult[] = [];
  let description = "";
  try {
    const cluster = await ToastyCluster.start(3, { launched: (c) => void stoppers.add(() => c.stop()) });
    const stat = fs.statfsSync(cluster.dir);
    const needed = 3 * 2 * (flags.quick ? 256 * mib : gib) + 2 * gib;
    if (stat.bavail * stat.bsize < needed)
      throw new Error(`${cluster.dir}: ${fmt((stat.bavail * stat.bsize) / gib, 1)} GiB free, the run needs ${fmt(needed / gib, 1)} GiB`);
    const gateway = await GatewayProcess.start(cluster, keys);
    await createBucket(gateway.url, keys, bucket);
    const gateway_command = toastyfsCommand().compiled
      ? "./toastyfs s3 (compiled)"
      : "bun cmd/toastyfs.ts s3 (source; ./toastyfs missing or older)";
    description = `ToastyFS: 3 replicas, ${cluster.description}; gateway: ${flags.profile ? "bun --cpu-prof cmd/toastyfs.ts s3, a fresh one per workload" : gateway_command}, on ${gateway.url}`;
    console.log(description);
    const settings = flags.quick ? "--quick: warm-up 0.5 s, measure 2 s" : "warm-up 1 s, measure 5 s";
    console.log(
      `settings: ${settings} per workload; ${clients_many} clients; S3 clients: Bun.S3Client (UNSIGNED-PAYLOAD); multipart parts of ${part_bytes / mib} MiB, ${parts_in_flight} in flight`,
    );
    console.log(`idle CPU of the gateway: ${fmt(await idleCpuPercent([gateway.pid], 2000), 1)}% of a core`);
    const bench = new S3Bench(cluster, gateway, keys, flags.quick);
    try {
      // As bench/run.ts's PROFILE_ONLY: a substring of the workloads' names, for a quick look at a few.
      const only = process.env.S3_ONLY;
      const workloads = bench.workloads().filter((w) => only === undefined || w.name.includes(only));
      if (flags.profile) results.push(...(await profileGateway(cluster, keys, workloads)));
      else {
        for (const [i, w] of workloads.entries()) {
          log(w.name);
          await w.prepare?.();
          // Alternate the order, so background load does not always fall on one side.
          let native: Measured;
          let through: Measured;
          if (i % 2 === 0) {
            native = await w.native();
            through = await w.gateway(gateway);
          } else {
            through = await w.gateway(gateway);
            native = await w.native();
          }
          log(`  native ${figure(native, w.unit, w.one_shot)}; gateway ${figure(through, w.unit, w.one_shot)}`);
          results.push({ name: w.name, unit: w.unit, target: w.target, one_shot: w.one_shot, native, gateway: through });
        }
      }
    } finally {
      await bench.close();
    }
  } finally {
    await stopEverything();
  }
  console.log("");
  console.log(report(results));
  console.log(
    "\nS3 clients are Bun's built-in S3 client (UNSIGNED-PAYLOAD: no SHA-256 of the body); the AWS SDKs hash or checksum every body and would cost the client more CPU.",
  );
  console.log(`bench took ${fmt((performance.now() - started) / 1000)} s; load average at the end ${loadAverage()}`);
  if (results.some((r) => !r.gateway.check_ok || r.native?.check_ok === false)) {
    console.error("error: a check failed (see the check lines)");
    process.exitCode = 1;
  }
  if (flags.json !== null) fs.writeFileSync(flags.json, JSON.stringify({ machine: machine(), description, flags, results }, null, 2));
}
