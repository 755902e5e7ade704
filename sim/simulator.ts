/**
 * The deterministic simulator (docs/DESIGN.md §6): N replicas and M clients in one process on virtual
 * time, every random choice from one seed. The replicas are the real lib/vsr replicas over the
 * real lib/storage on a simulated file system that loses unsynced writes at a crash, talking
 * through a simulated network of encoded bytes. After every step the checker's invariants hold or
 * the run stops at that step; after the fault phase, a liveness phase heals all but at most f
 * faults and every request must complete; then every client history must be linearizable.
 */
import { Prng } from "../lib/util/prng.ts";
import { AssertionError } from "../lib/util/assert.ts";
import { Command, decode, encode, type Message } from "../lib/net/codec.ts";
import { Operation, Result, isWrite } from "../lib/store/operations.ts";
import { decodeReadRequest } from "../lib/store/large_bodies.ts";
import { defaultConfig, housekeeping_interval_ticks, type Config } from "../lib/constants.ts";
import { Replica } from "../lib/vsr/replica.ts";
import { stateDigest } from "../lib/vsr/root.ts";
import type { Env } from "../lib/vsr/env.ts";
import type { Storage } from "../lib/vsr/storage.ts";
import { FileStorage } from "../lib/storage/file_storage.ts";
import { readSuperblock, superblock_path } from "../lib/storage/superblock.ts";
import { SimFs, SimulatedCrash } from "./sim_fs.ts";
import { forgedReplicaMessage } from "./forger.ts";
import { FsError } from "../lib/storage/fs.ts";
import { Heap, type Timed } from "./heap.ts";
import { Network, type NetworkOptions, type Packet } from "./network.ts";
import { SimClient } from "./client.ts";
import { ClientLinks } from "./client_links.ts";
import { StateChecker, deadSegments, type IdleSnapshot } from "./checker.ts";
import { TracedStorage } from "./traced_storage.ts";
import type { History } from "../lib/check/history.ts";
import { checkLinearizable } from "../lib/check/linearizability.ts";

export type ReplicaClass = new (config: Config, replica: number, storage: Storage, env: Env) => Replica;

export interface SimOptions {
  seed: number;
  replicas: number;
  clients: number;
  /** Length of the fault phase, in replica ticks (10 ms of virtual time each). */
  ticks: number;
  verbose?: boolean;
  log?: (line: string) => void;
  /** The replica to run: tests pass deliberately broken subclasses. */
  replica_class?: ReplicaClass;
  /** Turn off fault kinds (tests of one mechanism). */
  faults?: { crashes?: boolean; network?: boolean; power_loss?: boolean; storage?: boolean };
  /** The storage the replicas run on: tests pass deliberately broken variants. */
  storage_class?: typeof FileStorage;
  /** Sees every message a replica sends, in order (scripts/trace_fingerprint.ts hashes them to
   * prove a refactoring changed no behaviour). */
  trace?: (from: number, to: number, message: Message) => void;
}

export interface SimResult {
  seed: number;
  ok: boolean;
  violation: string | null;
  step: number;
  time_ms: number;
  ops_committed: number;
  requests_completed: number;
  view_changes: number;
  faults: number;
  history_size: number;
  /** The linearizability check ran out of budget on some key (not a failure). */
  check_unknown: boolean;
  /** Clients' connects refused by a replica that was not running (each reported to the client's
   * sessions: onUnreachable), connections opened after such a refusal (onReachable), and retries
   * paced because a backup named a primary the client could not reach (docs/PROTOCOL.md §3.9). */
  client_refusals: number;
  client_reconnects: number;
  client_polls: number;
}

const tick_us = 10_000;
/** Each simulated disk's size. Far more than a run needs: the journal is a few hundred KiB. */
const sim_disk_bytes = 64 * 1024 * 1024;
/** Events queued at once beyond this are a message storm (an amplification bug): fail the run. */
const events_max = 200_000;
const fault_interval_us = 10_000;
const liveness_bound_us = 60_000_000;
/** The reclaim phase: the cluster is settled once no op has been committed for this long (more
 * than the two housekeeping looks, 1 s apart, that an idle nudge needs to begin), and it must
 * settle within reclaim_bound_us of every open upload passing its abandon age. */
const reclaim_quiet_us = 4_000_000;
const reclaim_bound_us = 60_000_000;
/** Replicas' clocks are off by at most this much (clock_offset_ms below). */
const clock_offset_max_ms = 1000;
const epoch_ms = 1_767_225_600_000; // virtual wall clock starts at 2026-01-01

enum Kind {
  deliver,
  tick,
  /** A flush begins (the driver's next turn after writes were queued, docs/STORAGE.md §10.9). */
  flush,
  /** The fdatasyncs of the flush step in flight return (its group completes after the last). */
  flush_synced,
  client,
  fault,
  /** Reopen a replica's data directory after an I/O error (lib/node retries after a second). */
  reopen,
  /** Cut off the primary that just sent prepares (FaultRates.isolate_after_prepare). */
  isolate,
  /** Power loss of one replica, restarted after a moment (a reopen of a damaged ring). */
  bounce,
  /** Power loss of one replica, left down (restarted by the random restarts). */
  crash,
  /** The outcome of client `node`'s connect to replica `incarnation` (that field names the
   * replica here): refused if it is still not running. */
  connect,
}

interface Event extends Timed {
  kind: Kind;
  node: number;
  incarnation: number;
  packet: Packet | null;
}

interface ReplicaNode {
  index: number;
  fs: SimFs;
  replica: Replica | null;
  incarnation: number;
  paused: boolean;
  inbox: Packet[];
  flush_scheduled: boolean;
  tick_us: number;
  clock_offset_ms: number;
  down_since: number;
  /** The disk was wiped: the replica comes back blank (a storage fault, within f). */
  wiped: boolean;
  storage: TracedStorage | null;
  /** A long pause ends at this time (µs); 0 for the random short pauses. */
  pause_until: number;
  /** The checkpoint op at which the replica's whole store was last checked. */
  store_checked_at: number;
}

/** Per-seed fault rates (swarm testing: each seed draws its own mix). */
interface FaultRates {
  crash: number;
  restart: number;
  crash_in_io: number;
  pause: number;
  unpause: number;
  partition: number;
  heal: number;
  clog: number;
  power_loss_at_us: number | null;
  disk_latency_mean_us: number;
  /** Replicas whose disks may be damaged: at most f, so some intact copy of every committed op
   * always exists (docs/DESIGN.md §6, the fault model). */
  faulty_disks: Set<number>;
  /** Per 10 ms, on a faulty disk: latent sector corruption, unreadable sector, failed fsync,
   * wipe (a replaced disk), running out of space. */
  corrupt: number;
  read_error: number;
  fsync_error: number;
  wipe: number;
  disk_full: number;
  misdirect: number;
  /** Damage the prepares a faulty replica acknowledged last, then crash it, and sometimes the
   * primary too: the case a replica must report its damaged prepares as faulty, never blank. */
  tail_corruption: number;
  /** Per 10 ms, on a faulty disk: make the ring records of the ops it made durable last unreadable
   * or corrupt (sometimes their prepares too), then power it off and reopen it twice: damage must
   * survive every reopen until a record replaces it. */
  ring_damage: number;
  /** Per prepare a primary sends: cut it off right after (its backups have the batch, it hears no
   * acknowledgement), and heal only after another replica has started a newer view. */
  isolate_after_prepare: number;
  /** Per 10 ms: pause the primary for 1-6 s; it wakes with a stale view and a full inbox. */
  primary_pause: number;
  /** Per 10 ms, for each replica whose log reaches into the last checkpoint interval of the window
   * its durable checkpoint covers: cut its power (a restart then reloads only that window). */
  edge_crash: number;
  /** Per 10 ms: a burst of forged replica messages (sim/forger.ts) to random replicas. In these
   * seeds a protocol violation is expected (counted, not a failure); everything else still is. */
  forge: number;
}

/** The workload's shape, drawn per seed: how often clients act and how often the whole workload
 * goes quiet, so some views commit little and a stale suffix outlives them. */
interface WorkloadShape {
  /** Per client: mean think time between operations, µs. */
  think_mean_us: number[];
  /** Per 10 ms: the chance an idle phase starts (no client starts an operation). */
  idle: number;
  idle_mean_us: number;
  /** Per client: how long it waits for an answer before it tries another replica (some wait
   * seconds, as real clients do: a paused primary's late answers then count). */
  request_timeout_us: number[];
}

export class Simulator {
  private readonly prng: Prng;
  private readonly events = new Heap<Event>();
  private seq = 0;
  private now = 0;
  private step = 0;
  private readonly config: Config;
  private readonly nodes: ReplicaNode[] = [];
  private readonly clients: SimClient[] = [];
  private readonly client_nodes = new Map<bigint, number>();
  private readonly client_scheduled: number[] = [];
  /** Per client: its connections as the TCP client sees them (refused, or opened again). */
  private readonly links: ClientLinks[] = [];
  /** Draws the connect delays and reconnect backoffs (its own stream: a run with no crashes draws
   * nothing from it). */
  private readonly link_prng: Prng;
  private readonly network: Network;
  private readonly checker: StateChecker;
  private readonly history: History = [];
  private readonly rates: FaultRates;
  private readonly shape: WorkloadShape;
  /** The primary cut off by isolate_after_prepare, until a newer view starts elsewhere. */
  private isolated: { replica: number; view: number; since: number; newer_op: number } | null = null;
  private faults = 0;
  private violation: string | null = null;
  private readonly f: number;
  private liveness = false;
  private last_message: Message | null = null;
  private last_bytes: Uint8Array | null = null;

  constructor(readonly options: SimOptions) {
    const o = options;
    this.prng = new Prng(o.seed);
    this.f = Math.floor((o.replicas - 1) / 2);
    this.config = this.drawConfig();
    this.rates = this.drawRates();
    this.shape = this.drawShape();
    this.checker = new StateChecker(o.replicas);
    const network_prng = this.prng.fork();
    this.network = new Network(o.replicas + o.clients, o.replicas, this.drawNetwork(), network_prng, (delay, packet) =>
      this.schedule(delay, Kind.deliver, packet.to, 0, packet),
    );
    for (let i = 0; i < o.replicas; i++) {
      const skew = 1 + (this.prng.float() * 2 - 1) * 0.1;
      this.nodes.push({
        index: i,
        // A finite disk, so runaway disk use shows up as ENOSPC, which replicas handle, not as the
        // simulator running out of memory.
        // The superblock is exempt from misdirected writes (one would damage two copies at once)
        // and gets latent damage only while all four copies are intact (storageFaults): a faulty
        // disk never destroys the newest superblock state, as TigerBeetle's fault atlas keeps the
        // superblock recoverable. Losing it silently would be undetectable by any replica.
        fs: new SimFs(this.prng.fork(), {
          misdirect_probability: this.rates.faulty_disks.has(i) ? this.rates.misdirect : 0,
          capacity_bytes: sim_disk_bytes,
          misdirect_exempt: ["superblock"],
        }),
        replica: null,
        incarnation: 0,
        paused: false,
        inbox: [],
        flush_scheduled: false,
        tick_us: Math.round(tick_us * skew),
        clock_offset_ms: this.prng.int(2000) - 1000,
        down_since: 0,
        wiped: false,
        storage: null,
        pause_until: 0,
        store_checked_at: -1,
      });
    }
    const client_prng = this.prng.fork();
    for (let c = 0; c < o.clients; c++) {
      const node = o.replicas + c;
      const client = new SimClient(
        c,
        node,
        o.replicas,
        this.config.cluster,
        client_prng.fork(),
        {
          keys: 2 + this.prng.int(5),
          value_filler_max: 64,
          request_timeout_us: this.shape.request_timeout_us[c]!,
          think_mean_us: this.shape.think_mean_us[c]!,
        },
        {
          send: (from, to, bytes) => this.clientSend(from, to, bytes),
          writeReplied: (client_id, request, op) => this.checker.writeReplied(client_id, request, op),
          blockAcked: (slot, block_checksum, op) => this.checker.blockAcked(slot, block_checksum, op),
          manifestInstalled: (slots, op, client, request) => this.checker.manifestInstalled(slots, op, client, request),
          violation: (message) => this.fail(message),
          record: (operation) => this.history.push(operation),
        },
      );
      this.clients.push(client);
      for (const id of client.ids) this.client_nodes.set(id, node);
      this.client_scheduled.push(Infinity);
    }
    this.link_prng = this.prng.fork();
    for (let c = 0; c < o.clients; c++) this.links.push(new ClientLinks(o.replicas, () => this.link_prng.float()));
  }

  private drawConfig(): Config {
    const config = defaultConfig(this.options.replicas, this.prng.u64());
    // Small constants so every seed wraps the journal, checkpoints, collects segments and syncs.
    config.journal_slot_count = 64;
    config.checkpoint_interval_ops = 16;
    config.pipeline_prepare_max = 1 + this.prng.int(8);
    config.segment_size_bytes = 16 * 1024;
    config.clients_max = Math.max(1, this.options.clients - 1 + this.prng.int(4));
    config.request_queue_max = 64;
    config.batch_requests_max = 1 + this.prng.int(8);
    // Large objects in tiny blocks (docs/LARGE_OBJECTS.md §12.1), few uploads, a short abandon age.
    config.block_size_max = 16 + this.prng.int(497);
    config.uploads_open_max = 2 + this.prng.int(7);
    config.upload_abandon_ms = 2_000 + this.prng.int(18_001);
    config.request_queue_bytes_max = 64 * 1024;
    // The idle nudge (PROTOCOL.md §3.15.10) at a few segments' worth of dead bytes or less, so it
    // runs in most seeds' reclaim phase; in some, never (the production value is above anything a
    // simulated disk holds), so retention alone is exercised too.
    if (!this.prng.chance(0.2)) config.reclaim_nudge_bytes_min = 1 + this.prng.int(4 * config.segment_size_bytes);
    // The primary's read cache (lib/store/read_cache.ts) in most seeds, from a few values to the
    // whole working set, so gets are answered from it across overwrites, deletes, damage at rest,
    // view changes and state syncs; off in some, as a production config may have it.
    if (!this.prng.chance(0.25)) config.read_cache_bytes_max = 256 + this.prng.int(64 * 1024);
    return config;
  }

  private drawRates(): FaultRates {
    const p = this.prng;
    const crashes = this.options.faults?.crashes ?? true;
    const power_loss = (this.options.faults?.power_loss ?? true) && crashes && p.chance(0.3);
    return {
      crash: crashes ? p.float() * 0.004 : 0,
      restart: 0.01 + p.float() * 0.05,
      crash_in_io: p.float() * 0.5,
      pause: crashes ? p.float() * 0.001 : 0,
      unpause: 0.005 + p.float() * 0.05,
      partition: this.options.faults?.network === false ? 0 : p.float() * 0.004,
      heal: 0.005 + p.float() * 0.05,
      clog: this.options.faults?.network === false ? 0 : p.float() * 0.002,
      power_loss_at_us: power_loss ? p.int(Math.max(1, this.options.ticks)) * tick_us : null,
      disk_latency_mean_us: 50 + p.int(p.chance(0.2) ? 20_000 : 1_000),
      isolate_after_prepare: this.options.faults?.network === false || !p.chance(0.4) ? 0 : p.float() * 0.002,
      primary_pause: crashes && p.chance(0.3) ? p.float() * 0.003 : 0,
      edge_crash: crashes && p.chance(0.4) ? p.float() * 0.05 : 0,
      forge: this.options.faults?.network === false || !p.chance(0.3) ? 0 : p.float() * 0.1,
      ...this.drawStorageRates(),
    };
  }

  private drawShape(): WorkloadShape {
    const p = this.prng;
    const kind = p.int(3); // busy, mixed, slow
    const think_mean_us: number[] = [];
    for (let c = 0; c < this.options.clients; c++) {
      const slow = kind === 2 || (kind === 1 && p.chance(0.5));
      think_mean_us.push(slow ? 50_000 + p.int(1_500_000) : p.int(20_000));
    }
    const idle = p.chance(0.4) ? p.float() * 0.004 : 0;
    const patient = p.pick([0, 0.5, 1]); // the share of clients that wait seconds
    const request_timeout_us = think_mean_us.map(() => (p.chance(patient) ? 1_000_000 + p.int(2_000_000) : 300_000 + p.int(300_000)));
    return { think_mean_us, idle, idle_mean_us: 300_000 + p.int(2_000_000), request_timeout_us };
  }

  private drawStorageRates(): Pick<
    FaultRates,
    "faulty_disks" | "corrupt" | "read_error" | "fsync_error" | "wipe" | "disk_full" | "misdirect" | "tail_corruption" | "ring_damage"
  > {
    const p = this.prng;
    const faulty_disks = new Set<number>();
    const enabled = (this.options.faults?.storage ?? true) && this.f > 0 && p.chance(0.7);
    if (enabled) {
      const count = 1 + p.int(this.f);
      for (const r of p.shuffle([...Array(this.options.replicas).keys()]).slice(0, count)) faulty_disks.add(r);
    }
    const rate = (max: number) => (enabled ? p.float() * max : 0);
    return {
      faulty_disks,
      corrupt: rate(0.01),
      read_error: rate(0.003),
      fsync_error: rate(0.001),
      wipe: rate(0.0005),
      disk_full: rate(0.001),
      misdirect: rate(0.002),
      tail_corruption: rate(0.003),
      ring_damage: rate(0.002),
    };
  }

  private drawNetwork(): NetworkOptions {
    const p = this.prng;
    if (this.options.faults?.network === false) {
      return {
        delay_min_us: 100,
        delay_mean_us: 500,
        loss_probability: 0,
        duplicate_probability: 0,
        replay_probability: 0,
        corrupt_probability: 0,
      };
    }
    return {
      delay_min_us: 50 + p.int(500),
      delay_mean_us: 200 + p.int(p.chance(0.2) ? 50_000 : 5_000),
      loss_probability: p.chance(0.3) ? 0 : p.float() * 0.2,
      duplicate_probability: p.float() * 0.1,
      replay_probability: p.float() * 0.02,
      corrupt_probability: p.chance(0.5) ? 0 : p.float() * 0.005,
    };
  }

  private schedule(delay_us: number, kind: Kind, node: number, incarnation: number, packet: Packet | null): void {
    this.events.push({ time: this.now + Math.max(0, Math.floor(delay_us)), seq: this.seq++, kind, node, incarnation, packet });
  }

  private log(line: string): void {
    if (this.options.verbose) (this.options.log ?? console.log)(`${(this.now / 1000).toFixed(3).padStart(10)}ms ${line}`);
  }

  private fail(message: string): void {
    if (this.violation === null) this.violation = message;
  }

  run(): SimResult {
    for (const node of this.nodes) this.start(node);
    for (const client of this.clients) {
      client.wake_at = this.prng.int(50_000);
      this.scheduleClient(client);
    }
    this.schedule(fault_interval_us, Kind.fault, 0, 0, null);
    const fault_end_us = this.options.ticks * tick_us;
    while (this.violation === null && this.now < fault_end_us) this.runOne();
    if (this.violation === null) this.runLiveness();
    if (this.violation === null) this.runReclaim();
    if (this.violation === null) this.checkHistory();
    const result = this.result();
    this.log(
      `clients: ${result.client_refusals} refused connect(s) reported (onUnreachable), ${result.client_reconnects} connection(s) opened after one (onReachable), ${result.client_polls} retry(ies) paced because a backup named a primary the client could not reach`,
    );
    return result;
  }

  private check_unknown = false;

  private checkHistory(): void {
    for (const client of this.clients) client.abandon();
    const result = checkLinearizable(this.history);
    if (!result.ok) this.fail(`history not linearizable on key ${result.key}: ${result.reason}`);
    this.check_unknown = result.unknown === true;
  }

  private result(): SimResult {
    let view_changes = 0;
    for (const node of this.nodes) view_changes = Math.max(view_changes, node.replica?.view ?? 0);
    return {
      seed: this.options.seed,
      ok: this.violation === null,
      violation: this.violation,
      step: this.step,
      time_ms: Math.round(this.now / 1000),
      ops_committed: this.checker.commit_max,
      requests_completed: this.clients.reduce((sum, c) => sum + c.completed, 0),
      view_changes,
      faults: this.faults,
      history_size: this.history.length,
      check_unknown: this.check_unknown,
      client_refusals: this.clients.reduce((sum, c) => sum + c.connections.unreachable, 0),
      client_reconnects: this.clients.reduce((sum, c) => sum + c.connections.reachable, 0),
      client_polls: this.clients.reduce((sum, c) => sum + c.connections.polls, 0),
    };
  }

  private runOne(): void {
    const event = this.events.pop();
    if (event === undefined) {
      this.fail("simulation ran out of events");
      return;
    }
    this.now = event.time;
    this.step += 1;
    if (this.events.size > events_max) {
      this.fail(
        `message storm: ${this.events.size} events queued (more than ${events_max}): some message is answered with more messages than it carries`,
      );
      return;
    }
    try {
      this.dispatch(event);
    } catch (error) {
      if (error instanceof AssertionError) this.fail(`assertion failed: ${error.message}\n${error.stack ?? ""}`);
      else this.fail(`unexpected exception: ${error instanceof Error ? `${error.message}\n${error.stack}` : String(error)}`);
    }
    if (this.checker.violation !== null) this.fail(this.checker.violation);
  }

  private dispatch(event: Event): void {
    switch (event.kind) {
      case Kind.deliver:
        return this.deliver(event.packet!);
      case Kind.tick:
        return this.onTick(event);
      case Kind.flush:
        return this.onFlush(event);
      case Kind.flush_synced:
        return this.onFlushSynced(event);
      case Kind.client:
        return this.onClient(event.node);
      case Kind.fault:
        return this.onFault();
      case Kind.reopen: {
        const node = this.nodes[event.node]!;
        if (node.replica === null && node.incarnation === event.incarnation) this.start(node);
        return;
      }
      case Kind.isolate:
        return this.isolate(event.node);
      case Kind.bounce:
        return this.bounce(event.node);
      case Kind.crash: {
        const node = this.nodes[event.node]!;
        if (node.replica === null || node.incarnation !== event.incarnation || this.liveness) return;
        this.log(`fault: power loss of replica ${node.index}`);
        node.fs.crash(this.prng);
        this.down(node);
        return;
      }
      case Kind.connect:
        return this.onConnect(event.node, event.incarnation);
    }
  }

  // --- Replicas

  private start(node: ReplicaNode): void {
    node.incarnation += 1;
    node.flush_scheduled = false;
    node.inbox = [];
    const index = node.index;
    const StorageClass = this.options.storage_class ?? FileStorage;
    const storage = new TracedStorage(
      new StorageClass(node.fs, {
        cluster: this.config.cluster,
        replica: index,
        replica_count: this.options.replicas,
        journal_slot_count: this.config.journal_slot_count,
        segment_size_bytes: this.config.segment_size_bytes,
      }),
      (prepares) => this.checker.flushed(index, prepares),
    );
    const env: Env = {
      sendToReplica: (to, message) => this.send(index, to, message),
      sendToClient: (client, message) => {
        const to = this.client_nodes.get(client);
        if (to !== undefined) this.send(index, to, message);
      },
      random: this.prng.fork(),
      log: (level, text) => this.log(`${level} ${text}`),
    };
    const ReplicaClass = this.options.replica_class ?? Replica;
    const replica = new ReplicaClass(this.config, index, storage, env);
    replica.observer = {
      executed: (r, prepare) => this.checker.executed(r, prepare),
      request: (r, client, request, op, duplicate) => this.checker.request(r, client, request, op, duplicate),
      primary: (r, view) => this.checker.primary(r, view),
      doViewChange: (r, view, dvc) => this.checker.doViewChange(r, view, dvc),
      violation: (r, text, checksum) => this.checker.protocolViolation(r, text, checksum),
    };
    node.replica = replica;
    node.storage = storage;
    this.guard(node, () => {
      replica.open(this.realtime(node));
      // A damaged disk may have lost the superblock (the replica then recovers as a blank one):
      // like a wipe, that is within the fault model; anywhere else it would be a bug.
      if (replica.view_durable === -1 && this.rates.faulty_disks.has(index)) this.checker.wiped(index);
      else if (!node.wiped) {
        this.checker.restarted(index, replica.view_durable);
        if (replica.status !== "recovering" && replica.status !== "blank") {
          const journal = replica.journal;
          this.checker.reopened(
            index,
            replica.log_view,
            replica.commit_min,
            (op, checksum) => journal.header(op)?.checksum === checksum || journal.isDamaged(op),
          );
        }
      }
    });
    if (node.replica === null) return; // the open itself failed: a reopen is scheduled
    node.wiped = false;
    this.schedule(node.tick_us, Kind.tick, index, node.incarnation, null);
    this.afterReplicaEvent(node);
  }

  private realtime(node: ReplicaNode): number {
    return epoch_ms + Math.floor(this.now / 1000) + node.clock_offset_ms;
  }

  private send(from: number, to: number, message: Message): void {
    const node = this.nodes[from]!;
    this.options.trace?.(from, to, message);
    this.checker.sent(from, message, node.replica?.view_durable ?? -1, node.replica?.view ?? -1);
    const h = message.header;
    if (
      h.command === Command.reply &&
      h.op === 0 &&
      !isWrite(h.operation) &&
      (h.result === Result.ok || h.result === Result.not_found) &&
      node.replica !== null
    ) {
      this.checker.readServed(from, h.client, h.request, node.replica.commit_min);
    }
    if (
      h.command === Command.prepare &&
      h.replica === from &&
      message !== this.last_message &&
      this.rates.isolate_after_prepare > 0 &&
      this.isolated === null &&
      !this.liveness
    ) {
      // Once per prepare (its first send). Half the time the cut comes before this prepare goes
      // out (only the primary holds it: a stale suffix for a later view change to judge), half
      // the time after the rest of the batch (the backups hold it, unacknowledged).
      if (this.prng.chance(this.rates.isolate_after_prepare)) {
        this.isolated = { replica: from, view: h.view, since: this.now, newer_op: -1 };
        if (this.prng.chance(0.5)) this.isolate(from);
        else this.schedule(0, Kind.isolate, from, 0, null);
      }
    }
    if (message !== this.last_message) {
      this.last_message = message;
      this.last_bytes = encode(message);
    }
    this.network.send(from, to, this.last_bytes!);
  }

  /** Runs replica code; a simulated power cut inside it (an armed crash in the file system)
   * takes the replica down at that point. */
  private guard(node: ReplicaNode, fn: () => void): void {
    try {
      fn();
    } catch (error) {
      if (error instanceof SimulatedCrash) {
        this.log(`replica ${node.index}: crashed during I/O`);
        this.down(node);
        return;
      }
      if (error instanceof FsError && this.rates.faulty_disks.has(node.index)) {
        // What lib/node does on an I/O error: never retry it; reopen the data directory and let
        // the protocol repair what is missing.
        this.log(`replica ${node.index}: ${error.message}: reopening its data directory`);
        this.down(node);
        // Like lib/node: at once the first time, then after a second while errors keep coming.
        const recent = this.now - (this.last_reopen.get(node.index) ?? -Infinity) < 1_000_000;
        this.last_reopen.set(node.index, this.now);
        this.schedule(recent ? 1_000_000 : 0, Kind.reopen, node.index, node.incarnation, null);
        return;
      }
      throw error;
    }
  }

  /** When each replica last reopened after an I/O error. */
  private readonly last_reopen = new Map<number, number>();

  private down(node: ReplicaNode): void {
    node.storage?.close();
    node.storage = null;
    node.replica = null;
    node.incarnation += 1;
    node.down_since = this.now;
    node.paused = false;
    node.inbox = [];
  }

  private deliver(packet: Packet): void {
    if (packet.to >= this.options.replicas) {
      const client = this.clients[packet.to - this.options.replicas]!;
      const decoded = decode(packet.bytes, this.config.cluster);
      if (!decoded.ok) return;
      client.onMessage(decoded.message, packet.from, this.now);
      this.scheduleClient(client);
      return;
    }
    const node = this.nodes[packet.to]!;
    if (node.replica === null) return;
    // A client's message arrived: its connection to this replica is open (a paused replica's
    // kernel still accepts). After a refusal, that is what the TCP client's onReachable hears.
    if (packet.from >= this.options.replicas) this.clientAccepted(packet.from - this.options.replicas, node.index);
    if (node.paused) {
      if (node.inbox.length < 1000) node.inbox.push(packet);
      return;
    }
    const decoded = decode(packet.bytes, this.config.cluster);
    if (!decoded.ok) return; // corrupted on the way: dropped, as the real transport does
    const rh = decoded.message.header;
    // A read pinned to a version is served at once when the primary holds that version: it needs no
    // floor (its bytes can only be that version's, PROTOCOL.md §3.15.10).
    if (rh.command === Command.request && !isWrite(rh.operation) && !pinnedRead(decoded.message))
      this.checker.readArrived(node.index, rh.client, rh.request);
    const replica = node.replica;
    this.guard(node, () => replica.onMessage(decoded.message));
    this.afterReplicaEvent(node);
  }

  private onTick(event: Event): void {
    const node = this.nodes[event.node]!;
    if (node.incarnation !== event.incarnation || node.replica === null) return;
    this.schedule(node.tick_us, Kind.tick, node.index, node.incarnation, null);
    if (node.paused) return;
    const replica = node.replica;
    this.guard(node, () => replica.tick(this.realtime(node)));
    this.afterReplicaEvent(node);
  }

  private afterReplicaEvent(node: ReplicaNode): void {
    if (node.replica === null) return;
    try {
      node.replica.invariants();
      // The whole store at each checkpoint (O(state)): every block owned once, by an upload slot or
      // an object version that names it, and every byte count adds up (docs/LARGE_OBJECTS.md §12.2).
      if (node.replica.checkpoint.op !== node.store_checked_at) {
        node.store_checked_at = node.replica.checkpoint.op;
        node.replica.store.invariants();
      }
    } catch (error) {
      if (!(error instanceof AssertionError)) throw error;
      this.fail(`invariant broken: ${error.message}`);
    }
    if (node.flush_scheduled || !node.replica.flushes.needed()) return;
    node.flush_scheduled = true;
    this.schedule(0, Kind.flush, node.index, node.incarnation, null);
  }

  /** Begins a flush (docs/STORAGE.md §10.9): the replica's queued writes become the group in
   * flight; its segments' fdatasync returns a disk latency later, as a separate event. Nothing the
   * group allows happens before the last step's event, and a crash before it loses what the
   * simulated file system has not synced. */
  private onFlush(event: Event): void {
    const node = this.nodes[event.node]!;
    if (node.incarnation !== event.incarnation || node.replica === null) return;
    node.flush_scheduled = false;
    if (node.paused) {
      node.flush_scheduled = true;
      this.schedule(tick_us, Kind.flush, node.index, node.incarnation, null);
      return;
    }
    const replica = node.replica;
    if (!replica.flushes.needed()) return;
    this.guard(node, () => void replica.flushes.begin());
    if (node.replica === replica) this.scheduleFlushSynced(node);
    this.afterReplicaEvent(node);
  }

  /** Each step of a flush (segments and checkpoint files, each superblock half, the header ring)
   * takes half the disk latency. */
  private scheduleFlushSynced(node: ReplicaNode): void {
    this.schedule(this.prng.exponential(this.rates.disk_latency_mean_us / 2), Kind.flush_synced, node.index, node.incarnation, null);
  }

  /** The step's fdatasyncs return: they run on the simulated file system now (a crash before this
   * event lost the writes they cover), then the replica issues the next step or completes. */
  private onFlushSynced(event: Event): void {
    const node = this.nodes[event.node]!;
    if (node.incarnation !== event.incarnation || node.replica === null) return;
    if (node.paused) {
      this.schedule(tick_us, Kind.flush_synced, node.index, node.incarnation, null);
      return;
    }
    const replica = node.replica;
    const storage = node.storage!;
    let next: readonly number[] | null = null;
    this.guard(node, () => {
      storage.flushSyncInline();
      next = replica.flushes.synced();
    });
    if (node.replica !== replica) return;
    if (next !== null) this.scheduleFlushSynced(node);
    this.afterReplicaEvent(node);
  }

  // --- Clients

  private scheduleClient(client: SimClient): void {
    const at = client.next_wake;
    if (at === Infinity || at >= this.client_scheduled[client.index]!) return;
    this.client_scheduled[client.index] = at;
    this.events.push({
      time: Math.max(at, this.now),
      seq: this.seq++,
      kind: Kind.client,
      node: client.index,
      incarnation: 0,
      packet: null,
    });
  }

  /** A client's message to a replica. A replica that is not running refuses the connection: the
   * message goes nowhere, and the client hears of the refusal after a connect delay (a refused
   * connect is quick: the network's one-way latency), as the TCP client's onUnreachable. */
  private clientSend(from: number, to: number, bytes: Uint8Array): void {
    if (this.nodes[to]!.replica !== null) return this.network.send(from, to, bytes);
    const client = from - this.options.replicas;
    const at = this.links[client]!.connect(to, this.now);
    if (at === null) return; // an attempt is under way: its outcome stands for this message too
    const o = this.network.options;
    const delay = at - this.now + o.delay_min_us + this.link_prng.exponential(o.delay_mean_us);
    this.schedule(delay, Kind.connect, client, to, null);
  }

  /** The outcome of a client's connect: refused if the replica is still not running. A partition
   * between them is silence, not a refusal (TCP would time out, as the session's attempt timeout
   * already does); a replica that started meanwhile would have accepted (the next message opens). */
  private onConnect(index: number, replica: number): void {
    const links = this.links[index]!;
    const from = this.options.replicas + index;
    if (this.nodes[replica]!.replica !== null || this.network.isBlocked(from, replica) || this.network.isBlocked(replica, from)) {
      links.unanswered(replica);
      return;
    }
    links.refused(replica, this.now);
    const client = this.clients[index]!;
    this.log(`client ${index}: replica ${replica} refused the connection (not running)`);
    client.onUnreachable(replica, this.now);
    this.scheduleClient(client);
  }

  private clientAccepted(index: number, replica: number): void {
    if (!this.links[index]!.accepted(replica)) return;
    const client = this.clients[index]!;
    this.log(`client ${index}: connected to replica ${replica} again`);
    client.onReachable(replica);
    this.scheduleClient(client);
  }

  private onClient(index: number): void {
    const client = this.clients[index]!;
    if (this.now < this.client_scheduled[index]!) return; // superseded by an earlier wakeup
    this.client_scheduled[index] = Infinity;
    client.wake(this.now);
    this.scheduleClient(client);
  }

  // --- Faults

  private upCount(): number {
    return this.nodes.filter((n) => n.replica !== null && !n.paused).length;
  }

  private onFault(): void {
    if (this.liveness) return;
    this.schedule(fault_interval_us, Kind.fault, 0, 0, null);
    const p = this.prng;
    const r = this.rates;
    if (r.power_loss_at_us !== null && this.now >= r.power_loss_at_us) {
      r.power_loss_at_us = null;
      this.faults += 1;
      this.log(`fault: power loss: every replica crashes at once`);
      for (const node of this.nodes) {
        if (node.replica === null) continue;
        node.fs.crash(p);
        this.down(node);
      }
      return;
    }
    const up = this.upCount();
    const budget = up - (this.options.replicas - this.f);
    for (const node of this.nodes) {
      if (node.replica === null && p.chance(r.restart)) {
        this.log(`fault: restart replica ${node.index}`);
        this.start(node);
      } else if (node.paused && (node.pause_until > 0 ? this.now >= node.pause_until : p.chance(r.unpause))) {
        this.log(`fault: unpause replica ${node.index}`);
        this.unpause(node);
      }
    }
    this.healIsolated();
    if (this.shape.idle > 0 && p.chance(this.shape.idle)) this.idlePhase();
    if (budget > 0 && r.edge_crash > 0) {
      const edge = this.config.journal_slot_count - this.config.checkpoint_interval_ops;
      const node = this.nodes.find(
        (n) => n.replica !== null && !n.paused && n.replica.status === "normal" && n.replica.op > n.replica.checkpoint.op + edge,
      );
      if (node !== undefined && p.chance(r.edge_crash)) {
        this.faults += 1;
        this.log(
          `fault: power loss of replica ${node.index}, its log at op ${node.replica!.op} near the end of the window of its durable checkpoint ${node.replica!.checkpoint.op}`,
        );
        node.fs.crash(p);
        this.down(node);
        return;
      }
    }
    if (budget > 0 && p.chance(r.crash)) {
      const node = p.pick(this.nodes.filter((n) => n.replica !== null && !n.paused));
      this.faults += 1;
      if (p.chance(r.crash_in_io)) {
        const after = 1 + p.int(20);
        this.log(`fault: replica ${node.index} will lose power within its next ${after} writes`);
        node.fs.armCrash(after);
      } else if (p.chance(0.5)) {
        this.log(`fault: crash replica ${node.index} (power loss: unsynced writes lost or torn)`);
        node.fs.crash(p);
        this.down(node);
      } else {
        // kill -9: the process dies, the page cache (what it wrote but did not sync) survives, and
        // the next start reads it back; a power loss may still come later.
        this.log(`fault: kill -9 replica ${node.index} (its unsynced writes stay in the page cache)`);
        this.down(node);
      }
    } else if (budget > 0 && p.chance(r.pause)) {
      const node = p.pick(this.nodes.filter((n) => n.replica !== null && !n.paused));
      this.faults += 1;
      this.log(`fault: pause replica ${node.index}`);
      node.paused = true;
      node.pause_until = 0;
    } else if (budget > 0 && p.chance(r.primary_pause)) {
      const node = this.nodes.find((n) => n.replica !== null && !n.paused && n.replica.describe().primary);
      if (node !== undefined) {
        this.faults += 1;
        node.paused = true;
        node.pause_until = this.now + 1_000_000 + p.int(5_000_000);
        this.log(`fault: pause the primary, replica ${node.index}, for ${Math.round((node.pause_until - this.now) / 1000)}ms`);
      }
    }
    for (const index of r.faulty_disks) this.storageFaults(this.nodes[index]!);
    if (p.chance(r.partition) && this.options.replicas > 1) {
      this.faults += 1;
      this.log(`fault: ${this.network.partition()}`);
    } else if (p.chance(r.heal)) {
      this.network.heal();
    }
    if (p.chance(r.clog) && this.options.replicas > 1) {
      this.faults += 1;
      this.log(`fault: ${this.network.clogRandom(50_000 + p.int(1_000_000))}`);
    }
    if (r.forge > 0 && this.options.replicas > 1 && p.chance(r.forge)) this.forge();
  }

  /** A burst of forged replica messages, each to a random running replica, with numbers near that
   * replica's own (its view, its commit number, its incarnation: what a forger on the network
   * could learn). */
  private forge(): void {
    const p = this.prng;
    const up = this.nodes.filter((n) => n.replica !== null);
    if (up.length === 0) return;
    const count = 1 + p.int(8);
    this.faults += 1;
    this.log(`fault: ${count} forged replica message(s)`);
    for (let i = 0; i < count; i++) {
      const node = p.pick(up);
      const replica = node.replica!;
      const d = replica.describe();
      const target = {
        cluster: this.config.cluster,
        replica_count: this.options.replicas,
        incarnation: replica.incarnation,
        view: d.view,
        op: d.commit_max,
        blocks: { counter: replica.store.large.block_counter, live: [...replica.store.large.allBlocks()] },
      };
      const bytes = forgedReplicaMessage(p, target, node.index, epoch_ms + Math.floor(this.now / 1000));
      this.checker.forged.add(new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getBigUint64(0, true));
      this.schedule(p.int(1000), Kind.deliver, node.index, 0, { from: node.index, to: node.index, bytes });
    }
  }

  private storageFaults(node: ReplicaNode): void {
    const p = this.prng;
    const r = this.rates;
    const fs = node.fs;
    // Only while every superblock copy is intact may one be damaged. Checked only when a fault
    // fires: decoding four copies per replica per tick was a third of the simulator's time.
    const exclude = () => (this.superblockIntact(fs) ? [] : ["superblock"]);
    if (p.chance(r.corrupt)) {
      const fault = fs.corruptRandomSector("", exclude());
      if (fault !== null) {
        this.faults += 1;
        this.log(`fault: replica ${node.index}: corrupted sector ${fault.sector} of ${fault.path}`);
      }
    }
    if (p.chance(r.read_error)) {
      const fault = fs.injectRandomReadError("", exclude());
      if (fault !== null) {
        this.faults += 1;
        this.log(`fault: replica ${node.index}: unreadable sector ${fault.sector} of ${fault.path}`);
      }
    }
    if (p.chance(r.fsync_error)) {
      this.faults += 1;
      this.log(`fault: replica ${node.index}: its next fsync fails (and may drop the dirty data)`);
      fs.failNextFsync();
    }
    if (p.chance(r.disk_full)) {
      this.faults += 1;
      const full = fs.capacity_bytes === sim_disk_bytes;
      fs.capacity_bytes = full ? fs.usedBytes() + p.int(64 * 1024) : sim_disk_bytes;
      this.log(`fault: replica ${node.index}: disk ${full ? "full" : "space freed"}`);
    }
    if (p.chance(r.tail_corruption) && node.replica !== null && node.storage !== null) this.corruptTail(node);
    if (p.chance(r.ring_damage) && node.replica !== null && node.storage !== null) this.damageRing(node);
    if (p.chance(r.wipe) && !this.anotherWithoutData(node)) {
      this.faults += 1;
      this.log(`fault: replica ${node.index}: disk replaced (wiped)`);
      fs.wipe();
      this.checker.wiped(node.index);
      this.down(node);
      node.wiped = true;
      this.start(node);
    }
  }

  /** Whether a replica other than this one is running without the cluster's data (blank, or
   * recovering it from peers): a replaced disk now would leave two replicas without it, beyond
   * the f faults the cluster is built to survive (a 3-replica cluster would keep its data on one
   * disk and rightly refuse to re-form), so the simulator does not inject it. */
  private anotherWithoutData(node: ReplicaNode): boolean {
    return this.nodes.some((other) => other !== node && (other.replica?.status === "recovering" || other.replica?.status === "blank"));
  }

  /** Whether every copy of a disk's superblock reads back valid (so one may be damaged). */
  private superblockIntact(fs: SimFs): boolean {
    if (!fs.exists(superblock_path)) return false;
    const fd = fs.open(superblock_path, false);
    try {
      return readSuperblock(fs, fd).damaged === 0;
    } catch (error) {
      if (error instanceof FsError) return false;
      throw error;
    } finally {
      fs.close(fd);
    }
  }

  private unpause(node: ReplicaNode): void {
    node.paused = false;
    node.pause_until = 0;
    const inbox = node.inbox;
    node.inbox = [];
    for (const packet of inbox) this.deliver(packet);
    this.afterReplicaEvent(node);
  }

  /** Cuts off the primary that just sent prepares (see FaultRates.isolate_after_prepare). */
  private isolate(index: number): void {
    const target = this.isolated;
    if (target === null || target.replica !== index || this.liveness) return;
    this.faults += 1;
    const clients = this.prng.chance(0.5);
    this.network.isolate(index, clients);
    this.log(`fault: isolate replica ${index}, primary of view ${target.view}${clients ? " (clients too)" : ""}`);
  }

  /**
   * Heals the isolated primary once another replica leads a newer view and has committed an op
   * in it (or after 10 s). Half the time the partition flips instead: the primary of that newer
   * view is cut off as the old one returns, so the next view change meets the old primary's stale
   * log (possibly longer, from an older log_view) before it has installed the newer view's.
   */
  private healIsolated(): void {
    const target = this.isolated;
    if (target === null) return;
    const newer = this.nodes.find(
      (n) =>
        n.index !== target.replica &&
        n.replica !== null &&
        n.replica.status === "normal" &&
        n.replica.view > target.view &&
        n.replica.describe().primary,
    );
    if (newer !== undefined && target.newer_op === -1) target.newer_op = newer.replica!.op;
    const moved = newer !== undefined && newer.replica!.commit_max > target.newer_op;
    if (!moved && this.now - target.since < 10_000_000) return;
    this.isolated = null;
    this.network.unisolate(target.replica);
    this.log(`fault: heal the isolated replica ${target.replica}${moved ? " after a newer view started" : ""}`);
    if (newer !== undefined && this.prng.chance(0.5)) {
      this.isolated = { replica: newer.index, view: newer.replica!.view, since: this.now, newer_op: -1 };
      this.isolate(newer.index);
    }
  }

  /** An idle phase: no client starts a new operation for a while (those in flight go on). */
  private idlePhase(): void {
    const until = this.now + Math.round(this.prng.exponential(this.shape.idle_mean_us));
    this.log(`workload: idle for ${Math.round((until - this.now) / 1000)}ms`);
    // A client that wakes before then waits it out (SimClient.wake).
    for (const client of this.clients) client.idle_until = until;
  }

  /**
   * Damages the header-ring records of the ops a faulty replica made durable last (unreadable or
   * corrupted sectors, and sometimes their prepares in the segments too, so no unique copy can
   * restore them), then cuts its power and reopens it twice: what it acknowledged must stay
   * known as damaged at every reopen, until a valid record replaces it.
   */
  private damageRing(node: ReplicaNode): void {
    const p = this.prng;
    const slot_count = this.config.journal_slot_count;
    let damaged = 0;
    for (const [op, checksum] of node.storage!.last_flushed) {
      if (damaged > 0 && p.chance(0.5)) continue;
      // The ring holds each record twice (lib/storage/file_storage.ts ring_copies): damage one
      // copy, or both.
      const copies = p.chance(0.7) ? [0, 1] : [p.int(2)];
      try {
        for (const copy of copies) {
          const sector = Math.floor(((copy * slot_count + (op % slot_count)) * 256) / 512);
          if (p.chance(0.5)) node.fs.setReadErrorSector("journal/headers", sector);
          else node.fs.corruptSector("journal/headers", sector);
        }
        damaged += 1;
      } catch {
        continue; // not durable there
      }
      const location = node.storage!.prepareBodyLocation(op, checksum);
      if (location !== null && p.chance(0.5)) {
        try {
          node.fs.corruptSector(`journal/${location.segment.toString().padStart(10, "0")}.seg`, Math.floor((location.offset - 128) / 512));
        } catch {
          // Not durable there.
        }
      }
    }
    if (damaged === 0) return;
    this.faults += 1;
    this.log(
      `fault: replica ${node.index}: ${damaged} header-ring record(s) of ops it just made durable damaged; power off, reopened twice`,
    );
    node.fs.crash(p);
    this.down(node);
    // Sometimes the primary goes down a moment later (once it has likely committed and executed
    // the ops whose acknowledgements were in flight): then those may be intact only there.
    const primary = this.nodes.find((n) => n.replica?.describe().primary === true);
    if (primary !== undefined && p.chance(0.5)) {
      this.log(`fault: the primary, replica ${primary.index}, will lose power in a moment`);
      this.schedule(p.int(60_000), Kind.crash, primary.index, primary.incarnation, null);
    }
    const first = 20_000 + p.int(300_000);
    this.schedule(first, Kind.reopen, node.index, node.incarnation, null);
    this.schedule(first + 5_000 + p.int(500_000), Kind.bounce, node.index, 0, null);
  }

  /** Power loss of one replica and a restart a moment later. */
  private bounce(index: number): void {
    const node = this.nodes[index]!;
    if (this.liveness) return;
    if (node.replica !== null) {
      this.log(`fault: replica ${index}: power off and reopen`);
      node.fs.crash(this.prng);
      this.down(node);
    }
    this.schedule(20_000 + this.prng.int(300_000), Kind.reopen, index, node.incarnation, null);
  }

  private corruptTail(node: ReplicaNode): void {
    const p = this.prng;
    let damaged = 0;
    for (const [op, checksum] of node.storage!.last_flushed) {
      const location = node.storage!.prepareBodyLocation(op, checksum);
      if (location === null) continue;
      const path = `journal/${location.segment.toString().padStart(10, "0")}.seg`;
      try {
        node.fs.corruptSector(path, Math.floor(location.offset / 512));
        damaged += 1;
      } catch {
        // Not durable there (a later crash dropped it): nothing to damage.
      }
    }
    if (damaged === 0) return;
    this.faults += 1;
    node.fs.crash(p);
    this.down(node);
    this.log(`fault: replica ${node.index}: ${damaged} prepare(s) it just acknowledged damaged on disk, and it crashed`);
    const primary = this.nodes.find((n) => n.replica?.describe().primary === true);
    if (primary !== undefined && p.chance(0.7)) {
      primary.fs.crash(p);
      this.down(primary);
      this.log(`fault: the primary, replica ${primary.index}, crashed too`);
    }
  }

  // --- Liveness

  /** Heals everything but at most f crashed replicas; every request must then complete and every
   * replica that is up must converge to the same state, within a bound. */
  private runLiveness(): void {
    this.liveness = true;
    const p = this.prng;
    if (this.isolated !== null) this.network.unisolate(this.isolated.replica);
    this.isolated = null;
    this.network.heal();
    this.network.options = {
      ...this.network.options,
      loss_probability: 0,
      duplicate_probability: 0,
      replay_probability: 0,
      corrupt_probability: 0,
    };
    // Replicas whose disks were damaged count against the budget of f: they hold the only copies
    // of nothing, but a replica kept down may have held the only other good copy.
    for (const index of this.rates.faulty_disks) this.nodes[index]!.fs.capacity_bytes = sim_disk_bytes;
    const keep_down = p.int(Math.max(0, this.f - this.rates.faulty_disks.size) + 1);
    const down_order = p.shuffle([...this.nodes]);
    let kept = 0;
    for (const node of down_order) {
      node.fs.disarmCrash();
      if (node.paused) this.unpause(node);
      if (node.replica === null) {
        if (kept < keep_down) kept += 1;
        else this.start(node);
      }
    }
    // Fill the budget of f down replicas from those that are up, so liveness is tested at the edge.
    for (const node of down_order) {
      if (kept >= keep_down) break;
      if (node.replica !== null) {
        this.log(`liveness: keeping replica ${node.index} down`);
        node.fs.crash(p);
        this.down(node);
        kept += 1;
      }
    }
    this.log(`liveness: network healed, ${kept} replica(s) left down`);
    for (const client of this.clients) {
      client.active = false;
      client.idle_until = 0;
      if (client.idle) client.wake_at = Infinity;
    }
    const deadline = this.now + liveness_bound_us;
    while (this.violation === null && this.now < deadline) {
      if (this.now % 100_000 < 20_000 && this.converged()) return;
      this.runOne();
    }
    if (this.violation !== null) return;
    if (this.converged()) return;
    const pending = this.clients.filter((c) => !c.idle).map((c) => c.index);
    const states = this.nodes.map((n) => (n.replica === null ? `${n.index}:down` : `${n.index}:${JSON.stringify(n.replica.describe())}`));
    const reason = this.unconverged_reason === "" ? "" : `; ${this.unconverged_reason}`;
    this.fail(
      `liveness: not converged ${liveness_bound_us / 1_000_000}s after healing; clients still waiting: [${pending.join(",")}]${reason}; replicas: ${states.join(" ")}`,
    );
  }

  /**
   * Invariant 3, reclaim (docs/LARGE_OBJECTS.md §12.2): the converged cluster stays healed and
   * idle (no client starts anything) until every open upload is past upload_abandon_ms by every
   * replica's clock and no op has been committed for reclaim_quiet_us (housekeeping and the idle
   * nudge are done), within a bound; then every replica that is up must have expired every such
   * upload and let go of every segment that nothing needs, and the replicas must still agree.
   */
  private runReclaim(): void {
    const up = () => this.nodes.filter((n) => n.replica !== null);
    const age = this.config.upload_abandon_ms;
    let touched_max: number | null = null;
    const idle = new Map<number, IdleSnapshot>();
    const nudged = this.checker.nudge_ops_since_client > 0;
    for (const node of up()) {
      const replica = node.replica!;
      for (const u of replica.store.large.allUploads()) touched_max = Math.max(touched_max ?? u.touched, u.touched);
      const dead = deadSegments(node.storage!.reclaimView(), replica.store.segments());
      idle.set(node.index, { op: replica.commit_min, dead, nudged, primary: replica.describe().primary });
    }
    // Housekeeping looks once a second (up to 10% slower on a slow tick), and a clock may be behind.
    const look_ms = Math.ceil(housekeeping_interval_ticks * tick_us * 1.1) / 1000;
    const due_ms = touched_max === null ? null : touched_max + age + 2 * look_ms;
    this.log(`reclaim: idle${due_ms === null ? "" : ` until every open upload is past its abandon age (${age}ms)`}`);
    const wall_min = () => epoch_ms + Math.floor(this.now / 1000) - clock_offset_max_ms;
    while (this.violation === null && due_ms !== null && wall_min() < due_ms) this.runOne();
    const deadline = this.now + reclaim_bound_us;
    let commit = -1;
    let commit_since = this.now;
    for (;;) {
      if (this.violation !== null) return;
      const now_commit = Math.max(...up().map((n) => n.replica!.commit_max));
      if (now_commit !== commit) {
        commit = now_commit;
        commit_since = this.now;
      }
      if (this.now - commit_since >= reclaim_quiet_us && this.now % 100_000 < 20_000 && this.converged()) break;
      if (this.now >= deadline) {
        const reason = this.unconverged_reason === "" ? "" : ` (${this.unconverged_reason})`;
        return this.fail(
          `reclaim: the idle cluster did not settle within ${reclaim_bound_us / 1_000_000}s (ops still committed ${Math.round((this.now - commit_since) / 1000)}ms ago, at op ${commit})${reason}`,
        );
      }
      this.runOne();
    }
    for (const node of up()) {
      const replica = node.replica!;
      const at_idle = idle.get(node.index);
      if (at_idle === undefined) continue; // down when the phase began (never: no faults now)
      this.checker.reclaimed({
        replica: node.index,
        primary: replica.describe().primary && at_idle.primary,
        op: replica.commit_min,
        uploads: replica.store.large.allUploads(),
        live_segments: replica.store.segments(),
        storage: node.storage!.reclaimView(),
        expired_by_ms: due_ms === null ? -Infinity : due_ms - age,
        idle: at_idle,
        config: this.config,
      });
    }
    if (this.checker.violation !== null) this.fail(this.checker.violation);
  }

  private converged(): boolean {
    this.unconverged_reason = "";
    if (this.clients.some((c) => !c.idle)) return false;
    const up = this.nodes.filter((n) => n.replica !== null).map((n) => n.replica!);
    if (up.length === 0) return false;
    const commit = Math.max(...up.map((r) => r.commit_max));
    if (commit < this.checker.commit_max) return false;
    let digest: bigint | null = null;
    for (const r of up) {
      if (r.status !== "normal" || r.commit_min !== commit) return false;
      const d = stateDigest(r.store, r.clients);
      if (digest === null) digest = d;
      else if (d !== digest) {
        this.fail(`replicas converged to op ${commit} with different state digests`);
        return false;
      }
    }
    // Full redundancy is restored too: every replica that is up holds an intact copy of every
    // value and block (the scrubber finds them damaged at rest and repairs them from peers).
    for (const node of this.nodes) {
      if (node.replica === null || node.storage === null) continue;
      let damaged = 0;
      for (const [, entry] of node.replica.store.all()) {
        if (entry.chunks === undefined && node.storage.readValue(entry) === null) damaged += 1;
      }
      for (const block of node.replica.store.large.allBlocks()) if (node.storage.readValue(block) === null) damaged += 1;
      this.unconverged_reason = damaged > 0 ? `replica ${node.index} still holds ${damaged} damaged value(s)` : "";
      if (damaged > 0) return false;
    }
    return true;
  }

  /** Why the last converged() check found the replicas not converged, when it was not the state. */
  private unconverged_reason = "";
}

function pinnedRead(message: Message): boolean {
  if (message.header.operation !== Operation.read) return false;
  const request = decodeReadRequest(message.body);
  return request !== null && request.version !== 0;
}

export function simulate(options: SimOptions): SimResult {
  return new Simulator(options).run();
}
