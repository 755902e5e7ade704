/**
 * Prometheus metrics for one replica (`toastyfs serve --metrics 127.0.0.1:8181`): an HTTP endpoint
 * serving the text exposition format at /metrics.
 *
 * - Requests by operation and result, and a latency histogram per operation, measured at this node:
 *   from a client request's arrival (the first time this node sees that client's request number) to
 *   the reply being handed to the transport. A backup's "not_primary" answers count too, under
 *   their result. ReplicaNode calls the two hooks of RequestMetrics.
 * - Everything else is read at scrape time from the node's status document (the same one
 *   `toastyfs status` shows) and from the sizes of the files in the data directory.
 *
 * The same listener answers health checks: /livez (200 while the process serves) and /readyz (200
 * while the replica is ready, 503 with the reason otherwise: lib/node/readiness.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Command, type Header } from "../net/codec.ts";
import { formatAddress, type Address } from "../net/address.ts";
import { Operation, Result } from "../store/operations.ts";
import type { ReplicaStatus } from "../net/status_codec.ts";
import { readiness, readinessText, type ReadinessSnapshot } from "./readiness.ts";

/** Upper bounds of the latency buckets, in seconds. */
export const latency_buckets_s = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Requests waiting for their reply that are remembered for timing; beyond it the oldest is
 * forgotten (a request that is never answered must not leak memory). */
export const requests_tracked_max = 16_384;

class Histogram {
  readonly counts = new Array<number>(latency_buckets_s.length).fill(0);
  count = 0;
  sum_s = 0;

  observe(seconds: number): void {
    this.count += 1;
    this.sum_s += seconds;
    for (let i = 0; i < latency_buckets_s.length; i++) {
      if (seconds <= latency_buckets_s[i]!) {
        this.counts[i]! += 1;
        break;
      }
    }
  }
}

function operationName(operation: number): string {
  return Operation[operation] ?? `unknown_${operation}`;
}

function resultName(result: number): string {
  return Result[result] ?? `unknown_${result}`;
}

/** Counts and times client requests; fed by ReplicaNode's two hooks. */
export class RequestMetrics {
  /** (client, request number) -> arrival time, in arrival order. */
  private readonly arrivals = new Map<string, number>();
  /** "operation result" -> count. */
  readonly requests = new Map<string, number>();
  readonly latency = new Map<string, Histogram>();
  /** Replies for which no arrival was recorded (a duplicate answered twice, or forgotten). */
  replies_untimed = 0;

  constructor(private readonly now_ms: () => number = () => performance.now()) {}

  /** A client request arrived (header.command === request). A retry keeps the first arrival. */
  requestArrived(header: Header): void {
    const key = `${header.client}:${header.request}`;
    if (this.arrivals.has(key)) return;
    if (this.arrivals.size >= requests_tracked_max) {
      const oldest = this.arrivals.keys().next().value;
      if (oldest !== undefined) this.arrivals.delete(oldest);
    }
    this.arrivals.set(key, this.now_ms());
  }

  /** A message to a client is handed to the transport. */
  replySent(header: Header): void {
    if (header.command !== Command.reply) return;
    const operation = operationName(header.operation);
    const counter = `${operation} ${resultName(header.result)}`;
    this.requests.set(counter, (this.requests.get(counter) ?? 0) + 1);
    const key = `${header.client}:${header.request}`;
    const arrived = this.arrivals.get(key);
    if (arrived === undefined) {
      this.replies_untimed += 1;
      return;
    }
    this.arrivals.delete(key);
    let histogram = this.latency.get(operation);
    if (histogram === undefined) {
      histogram = new Histogram();
      this.latency.set(operation, histogram);
    }
    histogram.observe(Math.max(0, this.now_ms() - arrived) / 1000);
  }

  get in_flight(): number {
    return this.arrivals.size;
  }
}

/** Builds the text exposition format, one metric family at a time. */
class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): this {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, value: number, labels: Record<string, string> = {}): this {
    const entries = Object.entries(labels);
    const text = entries.length === 0 ? "" : `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
    this.lines.push(`${name}${text} ${Number.isFinite(value) ? String(value) : value > 0 ? "+Inf" : "NaN"}`);
    return this;
  }

  gauge(name: string, help: string, value: number, labels: Record<string, string> = {}): this {
    return this.family(name, "gauge", help).sample(name, value, labels);
  }

  counter(name: string, help: string, value: number): this {
    return this.family(name, "counter", help).sample(name, value);
  }

  text(): string {
    return this.lines.join("\n") + "\n";
  }
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Bytes used by each top-level entry of the data directory (a directory counts its files). */
export function dataDirectorySizes(dir: string): Map<string, number> {
  const sizes = new Map<string, number>();
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return sizes;
  }
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(dir, entry.name);
    try {
      if (entry.isDirectory()) {
        let total = 0;
        for (const file of fs.readdirSync(full)) total += fs.statSync(path.join(full, file)).size;
        sizes.set(entry.name, total);
      } else if (entry.isFile()) {
        sizes.set(entry.name, fs.statSync(full).size);
      }
    } catch {
      // Removed while we looked (a checkpoint replaced, a segment collected): skip it this time.
    }
  }
  return sizes;
}

/** Counters of the status document with their own metric names; the rest are exported as
 * toastyfs_<name>_total. */
const frames_dropped: Record<string, string> = {
  frames_dropped_invalid: "invalid",
  frames_truncated: "truncated",
  messages_dropped_backpressure: "backpressure",
  messages_dropped_no_route: "no_route",
};

export function renderMetrics(status: ReplicaStatus, requests: RequestMetrics, data_dir: string, ready: boolean): string {
  const e = new Exposition();
  const replica = { replica: String(status.replica), address: status.address };
  e.gauge("toastyfs_replica_info", "This replica's index and address (always 1).", 1, replica);
  e.family("toastyfs_replica_status", "gauge", "1 for the replica's current status (normal, view_change, recovering, blank, down).");
  for (const s of ["normal", "view_change", "recovering", "blank", "down"])
    e.sample("toastyfs_replica_status", status.status === s ? 1 : 0, { status: s });
  e.gauge("toastyfs_replica_primary", "1 if this replica is the primary of its view.", status.primary ? 1 : 0);
  e.gauge(
    "toastyfs_replica_problem",
    "1 if the replica reports a problem (disk full, storage error); see toastyfs status.",
    status.problem === null ? 0 : 1,
  );
  e.gauge("toastyfs_ready", "1 while /readyz answers 200 (normal status, hears its primary or a quorum, caught up).", ready ? 1 : 0);
  e.gauge("toastyfs_view", "Current view number.", status.view);
  e.gauge("toastyfs_log_view", "The view of the newest log this replica vouches for.", status.log_view);
  e.gauge("toastyfs_op", "Highest op number in the journal.", status.op);
  e.gauge("toastyfs_commit_executed", "Highest op executed by this replica (commit_min).", status.commit_min);
  e.gauge("toastyfs_commit_known", "Highest op this replica knows to be committed (commit_max).", status.commit_max);
  e.gauge("toastyfs_checkpoint_op", "Op of the newest durable checkpoint.", status.checkpoint);
  e.gauge("toastyfs_journal_ops", "Ops in the journal beyond the checkpoint.", Math.max(0, status.op - status.checkpoint));
  e.gauge("toastyfs_objects", "Objects stored.", status.objects);
  e.gauge("toastyfs_object_bytes", "Bytes of object values stored (logical size).", status.object_bytes);
  e.gauge("toastyfs_disk_bytes", "Bytes of journal segment files (values live there).", status.disk_bytes);
  e.family("toastyfs_data_directory_bytes", "gauge", "Bytes on disk per part of the data directory (journal, checkpoint, superblock).");
  for (const [part, bytes] of dataDirectorySizes(data_dir)) if (part !== "LOCK") e.sample("toastyfs_data_directory_bytes", bytes, { part });
  e.gauge("toastyfs_uptime_seconds", "Seconds since the process started.", status.uptime_ms / 1000);
  e.counter("toastyfs_view_changes_total", "View changes this replica took part in since it started.", status.counters.view_changes ?? 0);

  e.family("toastyfs_requests_total", "counter", "Client requests answered by this replica, by operation and result.");
  for (const [key, count] of [...requests.requests].sort()) {
    const [operation, result] = key.split(" ");
    e.sample("toastyfs_requests_total", count, { operation: operation!, result: result! });
  }
  e.gauge("toastyfs_requests_in_flight", "Client requests received and not yet answered by this replica.", requests.in_flight);
  e.family("toastyfs_request_duration_seconds", "histogram", "Time from a request's arrival at this replica to its reply being sent.");
  for (const [operation, h] of [...requests.latency].sort(([a], [b]) => a.localeCompare(b))) {
    let cumulative = 0;
    latency_buckets_s.forEach((le, i) => {
      cumulative += h.counts[i]!;
      e.sample("toastyfs_request_duration_seconds_bucket", cumulative, { operation, le: String(le) });
    });
    e.sample("toastyfs_request_duration_seconds_bucket", h.count, { operation, le: "+Inf" });
    e.sample("toastyfs_request_duration_seconds_sum", h.sum_s, { operation });
    e.sample("toastyfs_request_duration_seconds_count", h.count, { operation });
  }

  e.family(
    "toastyfs_frames_dropped_total",
    "counter",
    "Messages dropped by the transport, by reason (invalid frames close their connection).",
  );
  for (const [counter, reason] of Object.entries(frames_dropped))
    e.sample("toastyfs_frames_dropped_total", status.counters[counter] ?? 0, { reason });
  // What uploads, blocks and the read cache hold now: levels, not counts of events.
  for (const [name, help] of Object.entries(level_gauges)) e.gauge(`toastyfs_${name}`, help, status.counters[name] ?? 0);
  for (const name of Object.keys(status.counters).sort()) {
    if (name === "view_changes" || name in frames_dropped || name in level_gauges) continue;
    const metric = `toastyfs_${name.replace(/[^a-zA-Z0-9_]/g, "_")}_total`;
    e.counter(metric, `The replica's ${name.replace(/_/g, " ")} counter.`, status.counters[name] ?? 0);
  }
  return e.text();
}

const level_gauges: Record<string, string> = {
  uploads_open: "Uploads open (created, neither completed, aborted nor expired).",
  blocks_live: "Blocks held by open uploads and stored objects.",
  block_bytes_live: "Bytes of those blocks.",
  pinned_dead_bytes: "Bytes of segments nothing live references that checkpoint retention still keeps (an idle primary nudges them free).",
  read_cache_bytes: "Bytes of get replies the primary's read cache holds (bodies, keys and per-entry overhead).",
};

const endpoints = "see /metrics, /livez, /readyz (?verbose: one line per check)";

export class MetricsError extends Error {
  override name = "MetricsError";
}

export interface MetricsSource {
  status(): ReplicaStatus;
  readiness(): ReadinessSnapshot;
  readonly data_dir: string;
}

/** Serves /metrics until stop(). Fails with MetricsError if the address cannot be bound. */
export class MetricsServer {
  private server: ReturnType<typeof Bun.serve> | null = null;

  constructor(
    readonly address: Address,
    private readonly source: MetricsSource,
    readonly requests: RequestMetrics,
  ) {}

  start(): void {
    try {
      this.server = Bun.serve({
        hostname: this.address.host,
        port: this.address.port,
        fetch: (request) => this.handle(request),
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const why =
        code === "EADDRINUSE" ? "the port is in use" : code === "EADDRNOTAVAIL" ? "no such local address" : (error as Error).message;
      throw new MetricsError(`cannot serve metrics on ${formatAddress(this.address)}: ${why}`);
    }
  }

  get port(): number {
    return this.server?.port ?? this.address.port;
  }

  private handle(request: Request): Response {
    const url = new URL(request.url);
    const text = { "content-type": "text/plain; charset=utf-8" };
    if (url.pathname === "/metrics") {
      const ready = readiness(this.source.readiness()).ready;
      return new Response(renderMetrics(this.source.status(), this.requests, this.source.data_dir, ready), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    // Answering at all is the check: the event loop turns.
    if (url.pathname === "/livez") return new Response("ok\n", { headers: text });
    if (url.pathname === "/readyz") {
      const r = readiness(this.source.readiness());
      return new Response(readinessText(r, url.searchParams.has("verbose")), { status: r.ready ? 200 : 503, headers: text });
    }
    if (url.pathname === "/") return new Response(`toastyfs replica: ${endpoints}\n`, { headers: text });
    return new Response(`not found: ${endpoints}\n`, { status: 404, headers: text });
  }

  async stop(): Promise<void> {
    await this.server?.stop(true);
    this.server = null;
  }
}
