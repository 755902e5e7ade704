/**
 * A real replica (docs/DESIGN.md §2): lib/vsr's replica over lib/storage on node:fs, the Bun TCP
 * transport, and the wall clock driving tick(). The same replica the simulator runs; this file
 * only supplies time and I/O:
 *
 * - every message and tick is handed to the replica synchronously;
 * - a flush begins at the end of a turn (setImmediate) when none is in flight, taking every write
 *   queued so far as one group (group commit); its fdatasyncs run on the thread pool while the
 *   event loop keeps receiving and gathering the next group (on the event loop when the group
 *   gathered a single request or prepare: a lone client), and only when its last step returned
 *   does the replica send the acknowledgements it allows (docs/STORAGE.md §10.9);
 * - an I/O error during a flush is never retried: the files are closed and the replica is
 *   reopened from disk, rejoining the cluster with whatever it finds there (docs/STORAGE.md §14.6);
 * - any other exception from the replica (an assertion: a bug) stops the process, after its trace
 *   is logged (once; repeats, across restarts too, as one line with a count: failure_log.ts) and
 *   written out.
 */
import type { AuthKeys } from "../net/auth/secret.ts";
import type { TlsFiles } from "../net/tls.ts";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { Prng } from "../util/prng.ts";
import { defaultConfig, flush_inline_arrivals_max, gc_received_bytes_step, read_cache_bytes_default, type Config } from "../constants.ts";
import { Command, finalize, Header, type Message } from "../net/codec.ts";
import { TcpTransport, type ConnectionInfo } from "../net/tcp_transport.ts";
import { formatAddress, indexOf, membership, type Address, type Membership } from "../net/address.ts";
import { Replica } from "../vsr/replica.ts";
import { primaryIndex, type Env } from "../vsr/env.ts";
import { FileStorage, ForeignDataError } from "../storage/file_storage.ts";
import { FsError } from "../storage/fs.ts";
import { fdatasyncAll, fdatasyncAllInline, NodeFs } from "./node_fs.ts";
import { Logger } from "./log.ts";
import { encodeStatus, type ReplicaStatus } from "../net/status_codec.ts";
import { DataDirectory } from "./data_directory.ts";
import { FailureLog } from "./failure_log.ts";
import { LogLimiter } from "../net/log_limiter.ts";
import { StartupError } from "./startup_error.ts";
import type { ReadinessSnapshot } from "./readiness.ts";

export { StartupError };

/** A logged warning kept in the status document is cut to this many characters. */
const last_warning_chars_max = 400;

export interface ReplicaNodeOptions {
  /** This replica's address, as peers and clients dial it; it must be one of `addresses`. */
  self: Address;
  /** The address to bind, when it differs from `self` (NAT, containers, a proxy in front of the
   * replica). Default: `self`. */
  listen?: Address;
  /** Every replica of the cluster, this one included (order does not matter). */
  addresses: Address[];
  /** Where to dial each replica, in replica index order, when not at its address (toastyfs
   * snapshot restore runs the new cluster on loopback ports under its real addresses' identity).
   * Default: the addresses. */
  dial?: Address[];
  data_dir: string;
  config?: Partial<Config>;
  logger: Logger;
  /** The cluster's keys (docs/PROTOCOL.md §6): every connection is authenticated. Null or absent:
   * none (loopback clusters and `toastyfs dev`). */
  secret?: AuthKeys | null;
  /** Mutual TLS on every connection, to and from peers and clients (docs/PROTOCOL.md §6.8). Null
   * or absent: plain TCP. */
  tls?: TlsFiles | null;
  /** Metrics hooks (lib/node/metrics.ts): told when a client request arrives and when a message
   * to a client is handed to the transport, to count requests and time them at this node. */
  requests?: RequestHooks;
  /** The fdatasyncs of a flush step, off the event loop (tests stand in for the disk). Default:
   * fdatasyncAll (lib/node/node_fs.ts, on the thread pool). */
  fdatasync?: (fds: readonly number[], done: (error: FsError | null) => void) => void;
}

export interface RequestHooks {
  requestArrived(header: Header): void;
  replySent(header: Header): void;
}

export class ReplicaNode {
  readonly membership: Membership;
  readonly index: number;
  readonly config: Config;
  private replica: Replica | null = null;
  private storage: FileStorage | null = null;
  private transport: TcpTransport | null = null;
  private directory: DataDirectory | null = null;
  private tick_timer: ReturnType<typeof setInterval> | null = null;
  private flush_scheduled = false;
  /** Counts flush steps handed to the thread pool: a completion whose number is not the last one
   * (the replica was dropped and reopened) is ignored. */
  private flush_step = 0;
  /** Requests and prepares that arrived since the last flush began: what the next group gathers.
   * A flush whose group gathered at most flush_inline_arrivals_max of them runs its fdatasyncs on
   * the event loop: nothing else is waiting to be received while the disk works, and the hand-off
   * to the thread pool and back costs a lone client 6-12% of its puts (bench/RESULTS.md, issue
   * 17). A busier group goes to the thread pool, so the loop keeps receiving the next one. */
  private arrivals_since_begin = 0;
  /** stop() waiting for the step on the thread pool to return (see stop()). */
  private step_waiters: (() => void)[] = [];
  private stopping = false;
  private readonly started_ms = Date.now();
  private readonly log: Logger;
  private problem: string | null = null;
  readonly counters = { storage_errors: 0, reopens: 0, status_requests: 0, gc_requests: 0, flush_steps_inline: 0, flush_steps_pool: 0 };
  /** bytes_in at the last collectGarbage request. */
  private gc_received_bytes = 0;
  /** The replica's status as last seen, since when (performance.now()) and in which view it was
   * entered: how long a view change has been going on is what tells a stuck one from a normal one. */
  private status_name = "down";
  private status_since_ms = performance.now();
  private status_view = 0;
  /** Per replica index (this one's entry unused): what status reports about each peer, and when it
   * last spoke as the primary of a view (readiness: a backup must hear the primary of its view). */
  private readonly peers: {
    heard_at_ms: number | null;
    connected: boolean;
    error: string | null;
    as_primary: { view: number; at_ms: number } | null;
  }[];
  private last_warning: { text: string; at_ms: number } | null = null;
  private readonly failures: FailureLog;
  /** A fatal failure was reported: nothing runs any more, the process is exiting. */
  private failed = false;
  /** Repeated storage error lines (a reopen that keeps failing): one per message per minute. */
  private readonly storage_log_limiter = new LogLimiter();

  constructor(readonly options: ReplicaNodeOptions) {
    this.membership = membership(options.addresses);
    this.index = indexOf(this.membership, options.self);
    if (this.index < 0) throw new StartupError(`--addr ${formatAddress(options.self)} is not among the cluster's addresses`);
    this.config = {
      ...defaultConfig(this.membership.replicas.length, this.membership.cluster),
      read_cache_bytes_max: read_cache_bytes_default,
      ...options.config,
    };
    this.log = options.logger.child(`replica=${this.index}`);
    this.peers = this.membership.replicas.map(() => ({ heard_at_ms: null, connected: false, error: null, as_primary: null }));
    this.failures = new FailureLog(options.data_dir, (level, text) => this.log.log(level, text));
  }

  /** Logs, and keeps the latest warning or error for the status document. */
  private note(level: "debug" | "info" | "warn" | "error", text: string): void {
    if (level === "warn" || level === "error")
      this.last_warning = {
        text: text.length > last_warning_chars_max ? `${text.slice(0, last_warning_chars_max - 3)}...` : text,
        at_ms: performance.now(),
      };
    this.log.log(level, text);
  }

  /** Listens first (a port in use fails before the data directory is touched), then opens the
   * data directory and joins the cluster. */
  async start(): Promise<void> {
    const transport = new TcpTransport(
      {
        cluster: this.membership.cluster,
        self: this.index,
        listen: this.options.listen ?? this.options.self,
        peers: this.options.dial ?? this.membership.replicas,
        // One write per connection per turn (docs/DESIGN.md §9): a primary makes a prepare in each of
        // several callbacks of a turn, and they now leave together (flushBegin() below sends them
        // before the flush of that turn begins).
        flush_per_turn: true,
        secret: this.options.secret ?? null,
        tls: this.options.tls ?? null,
        log: (level, text) => this.note(level, text),
      },
      {
        onMessage: (message, connection) => this.onMessage(message, connection),
        onConnectionOpen: (connection) => {
          if (connection.direction !== "outgoing" || connection.peer === null) return;
          const peer = this.peers[connection.peer]!;
          peer.connected = true;
          peer.error = null;
        },
        onConnectionClose: (connection, reason) => {
          if (connection.direction !== "outgoing" || connection.peer === null) return;
          const peer = this.peers[connection.peer]!;
          peer.connected = false;
          peer.error = reason;
        },
      },
    );
    await transport.start();
    this.transport = transport;
    try {
      this.directory = DataDirectory.open(this.options.data_dir);
      this.openReplica();
    } catch (error) {
      await transport.close();
      this.directory?.release();
      throw error;
    }
    this.tick_timer = setInterval(() => this.onTick(), this.config.tick_ms);
    const listen = this.options.listen ?? this.options.self;
    const dialed =
      formatAddress(listen) === formatAddress(this.options.self) ? "" : ` (peers and clients dial ${formatAddress(this.options.self)})`;
    this.log.log(
      "info",
      `listening on ${formatAddress(listen)}${dialed}, cluster ${this.membership.replicas.map(formatAddress).join(",")}, data ${path.resolve(this.options.data_dir)}`,
    );
  }

  private openReplica(): void {
    const storage = new FileStorage(new NodeFs(this.options.data_dir), {
      cluster: this.membership.cluster,
      replica: this.index,
      replica_count: this.membership.replicas.length,
      journal_slot_count: this.config.journal_slot_count,
      segment_size_bytes: this.config.segment_size_bytes,
    });
    const seed = randomBytes(6).readUIntLE(0, 6);
    const env: Env = {
      sendToReplica: (to, message) => void this.transport!.sendToReplica(to, message),
      sendToClient: (client, message) => {
        this.options.requests?.replySent(message.header); // metrics: reply time
        this.transport!.sendToClient(client, message);
      },
      random: new Prng(seed),
      log: (level, text) => this.note(level, text),
    };
    const replica = new Replica(this.config, this.index, storage, env);
    try {
      replica.open(Date.now());
    } catch (error) {
      storage.close();
      throw error;
    }
    this.storage = storage;
    this.replica = replica;
    this.afterEvent();
  }

  private onMessage(message: Message, connection: ConnectionInfo): void {
    if (this.failed) return;
    const sender = message.header.replica;
    if (sender < this.peers.length) {
      const peer = this.peers[sender]!;
      peer.heard_at_ms = performance.now();
      // The latest such message counts, not the highest view: a forged one is replaced by the next.
      if (primaryIndex(message.header.view, this.peers.length) === sender)
        peer.as_primary = { view: message.header.view, at_ms: peer.heard_at_ms };
    }
    if (message.header.command === Command.request_status) return this.fatalOnThrow(() => this.sendStatus(message, connection));
    if (this.replica === null) return;
    if (message.header.command === Command.request) this.options.requests?.requestArrived(message.header); // metrics: arrival time
    if (message.header.command === Command.request || message.header.command === Command.prepare) this.arrivals_since_begin += 1;
    const replica = this.replica;
    this.guard(() => replica.onMessage(message));
  }

  private onTick(): void {
    if (this.failed) return;
    this.collectGarbage();
    const replica = this.replica;
    if (replica !== null) this.guard(() => replica.tick(Date.now()));
    this.trackStatus();
  }

  private trackStatus(): void {
    const d = this.replica?.describe();
    const name = d?.status ?? "down";
    if (name === this.status_name) return;
    this.status_name = name;
    this.status_since_ms = performance.now();
    this.status_view = d?.view ?? 0;
  }

  /**
   * Asks for a (non-blocking) garbage collection after every gc_received_bytes_step of input.
   * Under a write load almost every byte received becomes garbage within a few turns (request
   * bodies, batches, prepares, frames), and the collector's own heuristics let it pile up to
   * hundreds of MB first (bench/RESULTS.md, startup: a 290 MB peak for a 35 MB live heap). This
   * bounds that pile by what arrives between two collections, whatever the collector decides.
   */
  private collectGarbage(): void {
    const received = this.transport?.stats.bytes_in ?? 0;
    if (received - this.gc_received_bytes < gc_received_bytes_step) return;
    this.gc_received_bytes = received;
    this.counters.gc_requests += 1;
    Bun.gc(false);
  }

  /** Runs replica code: an I/O error from any storage call it makes gets the same treatment as one
   * from a flush (reopen, never retry); anything else is a bug and stops the process. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      if (!(error instanceof FsError)) return this.fatal(error);
      this.onStorageError(error);
      return;
    }
    this.afterEvent();
  }

  private fatalOnThrow(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.fatal(error);
    }
  }

  /**
   * A bug (an assertion that failed): the state in memory can no longer be trusted, so nothing runs
   * any more, storage is not touched again, and the process exits once the trace is written out
   * (process.exit would cut a long write to a pipe short). Exit code 1, as for an uncaught error.
   */
  private fatal(error: unknown): void {
    if (this.failed) return;
    this.failed = true;
    if (this.tick_timer !== null) clearInterval(this.tick_timer);
    this.tick_timer = null;
    this.failures.fatal(error);
    process.stderr.write("", () => process.exit(1));
    setTimeout(() => process.exit(1), fatal_exit_wait_ms);
  }

  /** A flush begins at the end of a turn with writes queued, unless one is in flight (it begins the
   * next when it completes). */
  private afterEvent(): void {
    if (this.flush_scheduled || this.replica === null || !this.replica.flushes.needed()) return;
    this.flush_scheduled = true;
    setImmediate(() => this.flushBegin());
  }

  private flushBegin(): void {
    this.flush_scheduled = false;
    const replica = this.replica;
    if (replica === null || this.failed || this.stopping || !replica.flushes.needed()) return;
    // What this turn produced leaves before the disk works (the backups' journal writes overlap
    // the primary's).
    this.transport?.flushWrites();
    let files: readonly number[];
    try {
      files = replica.flushes.begin();
    } catch (error) {
      if (!(error instanceof FsError)) return this.fatal(error);
      return this.onStorageError(error);
    }
    const inline = this.options.fdatasync === undefined && this.arrivals_since_begin <= flush_inline_arrivals_max;
    this.arrivals_since_begin = 0;
    this.syncStep(replica, files, inline);
  }

  /** Hands one step's fdatasyncs to the thread pool, where the event loop runs on meanwhile, or
   * (inline) runs them now: then the next step, or the completion, follows before this returns. */
  private syncStep(replica: Replica, files: readonly number[], inline: boolean): void {
    const step = ++this.flush_step;
    if (this.options.fdatasync === undefined) this.counters[inline ? "flush_steps_inline" : "flush_steps_pool"] += 1;
    (this.options.fdatasync ?? (inline ? fdatasyncAllInline : fdatasyncAll))(files, (error) => {
      this.flushSynced(replica, step, error, inline);
      const waiters = this.step_waiters;
      this.step_waiters = [];
      for (const wake of waiters) wake();
    });
  }

  /** A step's fdatasyncs returned: the next step, or the group completed and what it allows
   * (acknowledgements, replies) leaves at once. */
  private flushSynced(replica: Replica, step: number, error: FsError | null, step_inline: boolean): void {
    if (replica !== this.replica || step !== this.flush_step || this.failed) return;
    // RULE: never retry a failed fsync (below).
    if (error !== null) return this.onStorageError(error);
    let next: readonly number[] | null;
    try {
      next = replica.flushes.synced();
    } catch (error) {
      if (!(error instanceof FsError)) return this.fatal(error);
      return this.onStorageError(error);
    } finally {
      this.transport?.flushWrites();
    }
    if (next !== null) return this.syncStep(replica, next, step_inline);
    this.problem = null;
    this.afterEvent();
  }

  /** RULE (docs/STORAGE.md §14.6): never retry a failed fsync and then acknowledge, since the kernel may have
   * dropped the dirty pages. Close everything, reread the data directory, and let the protocol
   * repair from peers what is missing. */
  private onStorageError(error: FsError): void {
    this.counters.storage_errors += 1;
    this.problem = `storage error: ${error.message}`;
    this.logRepeated(
      `${error.message}: closing the data directory and reopening it from disk; the replica acknowledges nothing until it has reread its journal (check the disk: dmesg, free space)`,
    );
    this.storage?.close();
    this.replica = null;
    this.storage = null;
    if (this.stopping) return; // stop() closes what is left
    try {
      this.counters.reopens += 1;
      this.openReplica();
    } catch (reopen) {
      // A directory that now belongs to another cluster may be put right while we wait; anything
      // else that is not an I/O error is a bug.
      if (!(reopen instanceof FsError) && !(reopen instanceof ForeignDataError)) return this.fatal(reopen);
      this.logRepeated(`reopening the data directory failed: ${reopen.message}; retrying every ${reopen_retry_ms / 1000} s`);
      const retry = reopen instanceof FsError ? reopen : new FsError("EIO", reopen.message);
      setTimeout(() => {
        if (!this.stopping && !this.failed && this.replica === null) this.onStorageError(retry);
      }, reopen_retry_ms);
    }
  }

  /** An error line that may repeat every second (a disk that stays broken): one per message per
   * minute, with the count of those not logged. */
  private logRepeated(text: string): void {
    const suppressed = this.storage_log_limiter.admit(text, Date.now());
    if (suppressed === null) return;
    this.note("error", suppressed > 0 ? `${text} (${suppressed} more times since the last line)` : text);
  }

  status(): ReplicaStatus {
    this.trackStatus();
    const now = performance.now();
    const r = this.replica;
    const d = r?.describe();
    const cache = r?.state_machine.read_cache ?? null;
    return {
      replica: this.index,
      address: formatAddress(this.options.self),
      status: d?.status ?? "down",
      primary: d?.primary ?? false,
      view: d?.view ?? 0,
      log_view: d?.log_view ?? 0,
      op: d?.op ?? 0,
      commit_min: d?.commit_min ?? 0,
      commit_max: d?.commit_max ?? 0,
      checkpoint: d?.checkpoint ?? 0,
      disk_bytes: this.storage?.usedBytes() ?? 0,
      objects: r?.store.count ?? 0,
      object_bytes: r?.store.bytes ?? 0,
      uptime_ms: Date.now() - this.started_ms,
      problem: this.problem ?? r?.problem() ?? null,
      counters: {
        ...(r?.stats ?? {}),
        ...(this.storage?.stats ?? {}),
        ...this.counters,
        ...(this.transport?.stats ?? {}),
        // Large objects (docs/PROTOCOL.md §3.15): what uploads and blocks hold now.
        uploads_open: r?.store.large.upload_count ?? 0,
        blocks_live: r?.store.large.block_count ?? 0,
        block_bytes_live: r?.store.large.block_bytes ?? 0,
        // Segments nothing live references that retention still keeps (the idle nudge frees them).
        pinned_dead_bytes: r && this.storage ? this.storage.pinnedDeadBytes(r.store) : 0,
        // The primary's read cache (docs/STORAGE.md §10.10): gets answered from it, gets that read
        // the disk while it was on, and the bytes it holds now.
        read_cache_hits: cache?.hits ?? 0,
        read_cache_misses: cache?.misses ?? 0,
        read_cache_bytes: cache?.bytes ?? 0,
      },
      status_ms: Math.round(now - this.status_since_ms),
      status_view: this.status_view,
      peers: this.peers.flatMap((p, i) =>
        i === this.index
          ? []
          : [
              {
                replica: i,
                address: formatAddress(this.membership.replicas[i]!),
                heard_ms: p.heard_at_ms === null ? null : Math.round(now - p.heard_at_ms),
                connected: p.connected,
                error: p.error,
              },
            ],
      ),
      last_warning: this.last_warning === null ? null : { text: this.last_warning.text, ms_ago: Math.round(now - this.last_warning.at_ms) },
      incarnation: r?.incarnation ?? null,
    };
  }

  /** What /readyz decides on (lib/node/readiness.ts), taken now. */
  readiness(): ReadinessSnapshot {
    const now = performance.now();
    const r = this.replica;
    const d = r?.describe();
    const view = d?.view ?? 0;
    const primary = primaryIndex(view, this.peers.length);
    const contact = primary === this.index ? null : this.peers[primary]!.as_primary;
    const ago = (at_ms: number | null): number | null => (at_ms === null ? null : Math.round(now - at_ms));
    return {
      replica: this.index,
      replica_count: this.peers.length,
      status: d?.status ?? "down",
      view,
      acting_primary: d?.primary ?? false,
      syncing: r?.state_sync.syncing ?? false,
      primary_heard_ms: contact !== null && contact.view === view ? ago(contact.at_ms) : null,
      backups_heard_ms: this.peers.flatMap((p, i) => (i === this.index ? [] : [ago(p.heard_at_ms)])),
      commit_min: d?.commit_min ?? 0,
      commit_known: r?.commitKnown() ?? 0,
    };
  }

  private sendStatus(request: Message, connection: ConnectionInfo): void {
    this.counters.status_requests += 1;
    const h = new Header();
    h.command = Command.status;
    h.cluster = this.membership.cluster;
    h.replica = this.index;
    h.replica_count = this.membership.replicas.length;
    h.client = request.header.client;
    h.request = request.header.request;
    h.view = this.replica?.view ?? 0;
    void connection;
    this.transport?.sendToClient(request.header.client, finalize(h, encodeStatus(this.status())));
  }

  /** SIGTERM/SIGINT: stop ticking, let the flush in flight complete, flush what is queued, close
   * the files. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.tick_timer !== null) clearInterval(this.tick_timer);
    // The step on the thread pool is waited for, never synced again here: a second fdatasync of
    // the same files racing one that fails may return success for pages the kernel dropped (one
    // error is reported once per open file), and completing the group on it would acknowledge
    // writes that are lost (docs/STORAGE.md §14.6). Its completion goes on to the ring step, if
    // any, and completes the group, or reports the error, as while running.
    while (this.replica !== null && !this.failed && this.replica.flushes.inFlight()) {
      await new Promise<void>((wake) => this.step_waiters.push(wake));
    }
    if (this.replica !== null && !this.failed && this.replica.flushes.needed()) {
      try {
        this.replica.flushes.now();
      } catch (error) {
        this.log.log("error", `final flush failed: ${(error as Error).message}`);
      }
    }
    await this.transport?.close();
    this.storage?.close();
    this.directory?.release();
    this.replica = null;
    this.log.log("info", "stopped");
  }
}

/** A failed reopen of the data directory is retried this often. */
export const reopen_retry_ms = 1000;
/** After a fatal failure, the process exits once its trace is written, or after this long. */
export const fatal_exit_wait_ms = 2000;

export function dataDirFor(address: Address): string {
  return path.join("toastyfs-data", `${address.host.replace(/[^A-Za-z0-9.-]/g, "_")}_${address.port}`);
}
