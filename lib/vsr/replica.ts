/**
 * A Viewstamped Replication Revisited replica (docs/DESIGN.md §3–§4), as a pure, synchronous state
 * machine: one event in (tick, message, flush), effects out (messages through Env, writes through
 * Storage). It never touches a socket, a file, a timer or a clock, so the simulator and the real
 * node run exactly this code, and a seed replays a run exactly.
 *
 * The rules that guard against data loss, each marked "RULE" where it is enforced:
 * - persist before you promise: view (and log_view with its suffix) is durable before DoViewChange,
 *   StartView, PrepareOk or CommitOk is sent in it;
 * - a prepare is acknowledged only once durable; an op commits with f+1 durable copies;
 * - the hash chain decides which entries to trust; an op executes only if it chains to a known
 *   canonical anchor;
 * - the client table changes only when a committed op executes;
 * - reads are served by the primary only, once commit >= read_op and f backups confirmed the view
 *   after the read arrived;
 * - a brand-new cluster formats only when every replica reports a blank disk; a replica that lost
 *   its disk recovers without acknowledging anything until it has caught up.
 */
import { AssertionError, assert } from "../util/assert.ts";
import type { Prng } from "../util/prng.ts";
import { hex32 } from "../util/hex.ts";
import { LogLimiter } from "../net/log_limiter.ts";
import { Command, Header, type Message } from "../net/codec.ts";
import { journal_slot_count_max, key_size_max, value_size_max_default, view_headers_max, type Config } from "../constants.ts";
import { ObjectStore, type ObjectEntry } from "../store/object_store.ts";
import { executeRead, executeWrite, validateRequest } from "../store/execute.ts";
import { Operation, Result, encodeU64, isWrite } from "../store/operations.ts";
import { ClientTable, type StoredReply } from "./client_table.ts";
import { Journal } from "./journal.ts";
import { Formation, type FormationDecision } from "./formation.ts";
import { Timeout } from "./timeout.ts";
import { Leader, type PipelineEntry } from "./leader.ts";
import { restartLog } from "./journal_load.ts";
import { LogChain } from "./log_chain.ts";
import { RecentPrepares } from "./recent_prepares.ts";
import { planRepair } from "./repair_plan.ts";
import {
  assertSuffixHeld,
  chooseLog,
  decideSuffix,
  newViewChange,
  presence_absent,
  presence_faulty,
  presence_present,
  type DoViewChange,
  type SuffixDecision,
  type ViewChanging,
} from "./view_change.ts";
export { presence_absent, presence_faulty, presence_present, type DoViewChange, type SuffixDecision };
import { decodeBatch, encodeBatch } from "./batch.ts";
import { isNoSpace, type CheckpointId, type Recovered, type Storage, type VsrState } from "./storage.ts";
import { rootPrepare, stateDigest } from "./root.ts";
import { DurableState } from "./durable_state.ts";
import { SyncTargets, SyncTransfer, syncNeeded, sync_chunk_size_max } from "./state_sync.ts";
import { describeOps } from "./window.ts";
import { Scrubber } from "./scrubber.ts";
import { ValueRepairs, valueRepairPeer, type ValueRequest } from "./value_repair.ts";
import { Recovering } from "./recovery.ts";
import { primaryIndex, type Env, type LogLevel, type ReplicaObserver, type Status } from "./env.ts";
import {
  buildCommit,
  buildCommitOk,
  buildDoViewChange,
  buildHeaders,
  buildPing,
  buildPong,
  buildPrepare,
  buildPrepareOk,
  buildReply,
  buildRequestHeaders,
  buildRequestPrepare,
  buildRequestStartView,
  buildRequestSync,
  buildRequestValue,
  buildStartView,
  buildStartViewChange,
  buildSyncChunk,
  buildValue,
  decodeHeaders,
  readCommit,
  readCommitOk,
  readDoViewChange,
  readPing,
  readPong,
  readPrepareOk,
  readRequestPrepare,
  readRequestStartView,
  readRequestSync,
  readRequestValue,
  readStartView,
  readStartViewChange,
  readSyncChunk,
  readValue,
  suffixValid,
  type ClientReply,
  type Envelope,
  type OrderedRequest,
  type Reply,
  type ReplyTo,
} from "./messages.ts";
export { rootPrepare, stateDigest };

export type { Env, LogLevel, ReplicaObserver, Status };
export { primaryIndex };

/** Compaction runs every this many ticks and moves at most this many bytes each time (~10 MB/s),
 * so it never stalls requests. */
const compaction_interval_ticks = 10;
const compaction_bytes_per_round = 1024 * 1024;
/** Repair requests sent per repair tick (every 50 ms), so a far-behind replica catches up at
 * hundreds of prepares a second without flooding its peers. */
const repair_requests_max = 32;
/** The highest view a message may name. */
const view_max = 0xffff_ffff - 0x10_0000;

export class Replica {
  status: Status = "blank";
  view = 0;
  log_view = 0;
  /** What the superblock holds (RULE: persist before you promise): durable_state.ts. */
  get view_durable(): number {
    return this.durable.view;
  }
  get log_view_durable(): number {
    return this.durable.log_view;
  }
  op = 0;
  commit_min = 0;
  commit_max = 0;
  /** Checksum of the prepare at commit_min: the next op to execute must chain to it. */
  commit_min_checksum = 0n;
  /** The header of the prepare at commit_min (a checkpoint there records it as its anchor; its
   * journal slot may already hold the op a window later). */
  private commit_min_header: Header;
  /** The checkpoint a restart would load. */
  get checkpoint(): CheckpointId {
    return this.durable.checkpoint;
  }
  /** The durable view, log_view and checkpoint, the pending checkpoint, the superblock write in
   * flight, and the checkpoint ids prepares name. */
  private readonly durable: DurableState;
  store: ObjectStore;
  clients: ClientTable;
  readonly journal: Journal;
  readonly quorum: number;
  readonly f: number;
  private realtime = 0;
  private readonly root: Header;

  private ticks = 0;
  /** Prepares journaled and not yet executed, kept so a backup need not read them back. */
  private readonly recent_prepares: RecentPrepares;

  // Role state: each object exists only in its role (checked by invariants()).
  /** Non-null exactly while isActingPrimary(). */
  private leader: Leader | null = null;
  /** Non-null exactly while status is view_change. */
  private view_change: ViewChanging | null = null;
  /** Non-null exactly while status is recovering (lib/vsr/recovery.ts). */
  private recovering: Recovering | null = null;
  /** Normal status: start_view_change votes for higher views, per view (f+1 move this replica). */
  private svc_higher = new Map<number, Set<number>>();
  /** This replica, primary of `view`, has chosen the view's log but not yet sent start_view (it
   * waits for the log to be durable and complete): it does not lead yet. */
  private start_view_pending = false;

  // Backup state.
  /** Checksum of the prepare at commit_max, from the primary's commit heartbeat. */
  commit_max_checksum: bigint | null = null;
  /** The commit number the primary of this view claimed last, believed nowhere but in choosing
   * what to repair or which checkpoint to fetch: commit_max (executed, persisted, sent in a
   * do_view_change) takes only what this replica's own log confirms (learnPrimaryCommit). Without
   * it, one forged commit frame with a huge number was persisted and wedged every view change. */
  private commit_hint = 0;
  /** Highest checkpoint op the primary has reported. */
  private primary_checkpoint_op = 0;
  /** The checkpoint transfer in progress (lib/vsr/state_sync.ts). */
  private sync: SyncTransfer | null = null;
  /** Which checkpoint to sync: the primary's announced one, and a target no peer served. */
  private readonly sync_targets = new SyncTargets();

  // Blank/recovering state.
  /** Probes, the incarnation, and whether the cluster formed: it decides, this replica acts. */
  private readonly formation: Formation;
  /**
   * The cluster incarnation (RULE, incarnation): a random number the cluster chooses when it
   * forms, persisted in every superblock and carried in every replica message. A data directory
   * of an earlier cluster on the same addresses has another one, and its messages are refused: it
   * would otherwise join with another history and outvote acknowledged writes. Formation chooses
   * it (formation.ts); once formed it never changes.
   */
  get incarnation(): number {
    return this.formation.incarnation;
  }
  /** Warnings that would repeat with every message or probe (a peer of another incarnation, a
   * blank replica that cannot tell which incarnation to join): once a minute per subject, timed
   * in ticks. */
  private readonly warnings = new LogLimiter();

  private readonly timeout_normal: Timeout;
  private readonly timeout_heartbeat: Timeout;
  private readonly timeout_view_change: Timeout;
  private readonly timeout_view_change_resend: Timeout;
  private readonly timeout_prepare: Timeout;
  private readonly timeout_repair: Timeout;
  private readonly timeout_probe: Timeout;

  /** Counters for status and metrics. */
  readonly stats = {
    view_changes: 0,
    requests_rejected: 0,
    repairs_requested: 0,
    syncs: 0,
    messages_dropped: 0,
    /** Well-formed messages no honest replica sends (forged frames, or a bug), dropped. */
    protocol_violations: 0,
    bytes_compacted: 0,
    /** Values read back and verified by the scrubber, and complete passes over the namespace. */
    values_scrubbed: 0,
    scrub_passes: 0,
  };

  observer: ReplicaObserver | null = null;

  // Declared here rather than beside their users, so every field of the replica is in one place.
  /** Which values to verify next (cursor, byte budget, pass interval): scrubber.ts. */
  private readonly scrubber = new Scrubber();
  /** Keys whose value this replica found damaged, with what it expects (value_repair.ts): bounded. */
  private readonly value_repairs = new ValueRepairs();
  /** The disk ran out of space: writes are refused (no_space) and retried only after a probe
   * shows space again; reads go on. */
  private no_space = false;
  private no_space_ticks = 0;
  /** The commit of a start_view just installed; its acknowledgements wait for it to be durable. */
  private acks_after_start_view: number | null = null;
  /** A view change has stalled since this replica was last in normal status (log noise only). */
  private view_change_stalled = false;
  /** The log's shape: hash chain, window, and the suffix log_view vouches for (log_chain.ts). */
  private readonly chain: LogChain;
  /** The journal and head last checked by invariants() (its window checks cost a pass). */
  private invariants_mark = -1;

  constructor(
    readonly config: Config,
    readonly replica: number,
    readonly storage: Storage,
    readonly env: Env,
  ) {
    const n = config.replica_count;
    assert(n >= 1 && replica >= 0 && replica < n, `replica ${replica} out of range for ${n} replicas`);
    assert(
      config.checkpoint_interval_ops * 2 + config.pipeline_prepare_max <= config.journal_slot_count,
      "journal too small for two checkpoints and a pipeline",
    );
    assert(config.journal_slot_count <= journal_slot_count_max, `journal_slot_count must be at most ${journal_slot_count_max}`);
    assert(
      config.pipeline_prepare_max <= config.checkpoint_interval_ops,
      "the pipeline must be shorter than a checkpoint interval (lib/vsr/checkpoint.ts)",
    );
    assert(
      config.value_size_max >= 0 && config.value_size_max <= value_size_max_default,
      `value_size_max must be at most ${value_size_max_default} bytes (a prepare must fit in a message)`,
    );
    this.f = Math.floor((n - 1) / 2);
    this.quorum = Math.floor(n / 2) + 1;
    this.journal = new Journal(config.journal_slot_count);
    this.recent_prepares = new RecentPrepares(config.pipeline_prepare_max * 4);
    this.store = new ObjectStore();
    this.clients = new ClientTable(config.clients_max);
    this.root = rootPrepare(config.cluster, n);
    this.durable = new DurableState(replica, config.checkpoint_interval_ops, {
      op: 0,
      digest: stateDigest(this.store, this.clients),
      checksum: this.root.checksum,
    });
    this.commit_min_checksum = this.root.checksum;
    this.commit_min_header = this.root;
    this.journal.setHeader(this.root);
    const jitter = Math.max(1, Math.floor(config.view_change_timeout_ticks / 10));
    this.timeout_normal = new Timeout("normal", config.view_change_timeout_ticks - jitter + env.random.int(2 * jitter + 1));
    this.timeout_heartbeat = new Timeout("heartbeat", config.heartbeat_ticks);
    this.timeout_view_change = new Timeout("view_change", config.view_change_retry_ticks - jitter + env.random.int(2 * jitter + 1));
    this.timeout_view_change_resend = new Timeout("view_change_resend", config.heartbeat_ticks);
    this.timeout_prepare = new Timeout("prepare", config.prepare_retry_ticks);
    this.timeout_repair = new Timeout("repair", config.repair_ticks);
    this.timeout_probe = new Timeout("probe", config.probe_ticks);
    this.formation = new Formation(replica, n);
    this.chain = new LogChain(this);
  }

  // ---------------------------------------------------------------------------------------------
  // Driver interface

  /** Reads the data directory and joins the cluster in the view it has persisted. */
  open(realtime: number): void {
    assert(this.ticks === 0, () => `replica ${this.replica}: opened after ${this.ticks} ticks`);
    this.realtime = realtime;
    const recovered = this.storage.recover(this.config.clients_max);
    if (recovered.superblock_lost === true) {
      this.env.log(
        "error",
        `replica ${this.replica}: the superblock on disk is older than journal records written after a newer one (several of its copies are damaged): the promises it held are lost, so this replica discards its data directory and recovers from peers as one that lost its disk; check this disk`,
      );
    }
    if (recovered.state === null) {
      this.status = "blank";
      this.formation.candidate(randomIncarnation(this.env.random));
      this.timeout_probe.start();
      this.sendProbe();
      return;
    }
    this.loadState(recovered);
  }

  tick(realtime: number): void {
    this.realtime = realtime;
    this.ticks += 1;
    if (this.timeout_probe.tick()) this.sendProbe();
    if (this.timeout_normal.tick()) this.onNormalTimeout();
    if (this.timeout_heartbeat.tick()) this.onHeartbeatTimeout();
    if (this.timeout_view_change.tick()) this.onViewChangeTimeout();
    if (this.timeout_view_change_resend.tick()) this.onViewChangeResend();
    if (this.timeout_prepare.tick()) this.onPrepareTimeout();
    if (this.timeout_repair.tick()) this.repair();
    this.checkSpace();
    this.retryCheckpoint();
    if (this.ticks % compaction_interval_ticks === 0) this.compact();
    this.scrub();
    // Timeouts change roles: the role objects must still match the status they belong to.
    assert(
      (this.view_change !== null) === (this.status === "view_change") && (this.recovering !== null) === (this.status === "recovering"),
      () => `replica ${this.replica}: role state does not match status ${this.status} after a tick`,
    );
  }

  /**
   * Reads the values the scrubber names (a few in key order per tick) and verifies their checksums
   * (readValue), so a value damaged at rest is repaired from a peer while the other copies are
   * still good (scrubber.ts says why). Protected so a test can disable it.
   */
  protected scrub(): void {
    const step = this.scrubber.tick(this.ticks, !this.no_space && this.sync === null && this.status === "normal", this.store, (key) =>
      this.value_repairs.has(key),
    );
    for (const key of step.keys) {
      this.readValue(key, this.store.get(key)!);
      this.stats.values_scrubbed += 1;
    }
    if (step.pass_completed) this.stats.scrub_passes += 1;
  }

  /** Copies the live values of a mostly-dead segment forward, a bounded amount per call, so the
   * segment can be deleted once no retained checkpoint refers to it (docs/STORAGE.md §10.6). Physical only:
   * the logical state and its digest do not change. */
  private compact(): void {
    if (this.no_space || this.sync !== null || (this.status !== "normal" && this.status !== "recovering")) return;
    const segment = this.storage.compactionCandidate(this.store);
    if (segment === null) return;
    let budget = compaction_bytes_per_round;
    for (const key of this.store.keysIn(segment)) {
      if (budget <= 0) return;
      const entry = this.store.get(key)!;
      const value = this.readValue(key, entry);
      if (value === null) continue; // damaged: repaired from a peer into a new segment instead
      if (!this.relocateValue(key, value)) return;
      this.stats.bytes_compacted += entry.size;
      budget -= entry.size;
    }
  }

  /** Whether flush() has anything to make durable. */
  needsFlush(): boolean {
    return this.storage.pending();
  }

  /** Makes every queued write durable, then acts on what that allows. */
  flush(): void {
    if (!this.storage.pending()) return;
    this.storage.flush();
    assert(!this.storage.pending(), () => `replica ${this.replica}: writes still pending after a flush`);
    this.onDurable();
  }

  /** Primary of its view, in normal status, its start_view sent: it takes requests and reads. */
  isActingPrimary(): boolean {
    return this.status === "normal" && this.isPrimary() && !this.start_view_pending;
  }

  /** Starts leading this view with the given uncommitted suffix in flight: a fresh leader's state
   * (no request, read or acknowledgement of an earlier term carries over). */
  private lead(pipeline: PipelineEntry[]): void {
    assert(
      this.isActingPrimary(),
      () => `replica ${this.replica}: leading view ${this.view} while ${this.status}${this.isPrimary() ? "" : " and not its primary"}`,
    );
    assert(pipeline.length === 0 || pipeline[0]!.op === this.commit_max + 1, "the pipeline starts after commit_max");
    const c = this.config;
    this.leader = new Leader(
      {
        replica_count: c.replica_count,
        replica: this.replica,
        f: this.f,
        quorum: this.quorum,
        request_queue_max: c.request_queue_max,
        read_queue_max: c.read_queue_max,
        pipeline_prepare_max: c.pipeline_prepare_max,
        batch_requests_max: c.batch_requests_max,
        batch_size_max: c.batch_size_max,
        heartbeat_ticks: c.heartbeat_ticks,
        view_change_timeout_ticks: c.view_change_timeout_ticks,
      },
      pipeline,
      this.ticks,
      this.commit_min,
      this.commit_max,
    );
  }

  isPrimary(): boolean {
    return primaryIndex(this.view, this.config.replica_count) === this.replica;
  }

  onMessage(message: Message): void {
    const h = message.header;
    if (h.cluster !== this.config.cluster) return this.drop(message, "cluster mismatch");
    const from_client = h.command === Command.request;
    if (!from_client && (h.replica >= this.config.replica_count || h.replica_count !== this.config.replica_count)) {
      return this.drop(
        message,
        `sender ${h.replica} with replica_count ${h.replica_count} does not match this cluster of ${this.config.replica_count}`,
      );
    }
    if (!from_client && h.replica === this.replica && h.command !== Command.prepare) return this.drop(message, "message from self");
    if (!from_client && h.incarnation !== this.incarnation && h.command !== Command.ping && h.command !== Command.pong) {
      return this.otherIncarnation(message);
    }
    // A view this close to 2^32 is forged: the next view would wrap to 0 on the wire and wedge
    // the cluster (4 billion view changes do not happen).
    if (!from_client && h.view > view_max) return this.violation(h.replica, h.command, `view ${h.view} above ${view_max}`, h.checksum);
    if (!this.formed && this.status === "normal" && this.provesFormed(message)) this.form();
    switch (h.command) {
      case Command.ping:
        return this.onPing(message);
      case Command.pong:
        return this.onPong(message);
      case Command.request:
        return this.onRequest(message);
      case Command.prepare:
        return this.onPrepare(message);
      case Command.prepare_ok:
        return this.onPrepareOk(message);
      case Command.commit:
        return this.onCommit(message);
      case Command.commit_ok:
        return this.onCommitOk(message);
      case Command.start_view_change:
        return this.onStartViewChange(message);
      case Command.do_view_change:
        return this.onDoViewChange(message);
      case Command.start_view:
        return this.onStartView(message);
      case Command.request_start_view:
        return this.onRequestStartView(message);
      case Command.request_headers:
        return this.onRequestHeaders(message);
      case Command.headers:
        return this.onHeaders(message);
      case Command.request_prepare:
        return this.onRequestPrepare(message);
      case Command.request_sync:
        return this.onRequestSync(message);
      case Command.sync_chunk:
        return this.onSyncChunk(message);
      case Command.request_value:
        return this.onRequestValue(message);
      case Command.value:
        return this.onValue(message);
      case Command.reply:
      case Command.request_status:
      case Command.status:
        return this.drop(message, "not a replication message");
    }
  }

  drop(message: Message, why: string): void {
    this.stats.messages_dropped += 1;
    this.env.log(
      "debug",
      `replica ${this.replica}: dropped ${Command[message.header.command] ?? message.header.command} from ${message.header.replica}: ${why}`,
    );
  }

  /** A message that passed every check of the frame but contradicts what an honest peer does.
   * Only forged frames (or a bug) get here, and network input never trips an assertion: drop it,
   * count it, say so (the simulator, whose peers are honest, fails the seed). */
  private violation(from: number, command: Command, what: string, checksum: bigint | null): void {
    this.stats.protocol_violations += 1;
    this.stats.messages_dropped += 1;
    const text = `${Command[command] ?? command} from replica ${from}: ${what}`;
    this.env.log(
      "warn",
      `replica ${this.replica}: dropped ${text}; a forged frame or a bug: check what can reach this port, and report it if only replicas can`,
    );
    this.observer?.violation(this.replica, text, checksum);
  }

  /** A peer of another cluster incarnation: its data directory belongs to another cluster that
   * had the same addresses. Dropped, and said once a minute per peer, with what to do. */
  private otherIncarnation(message: Message): void {
    const h = message.header;
    this.drop(message, `cluster incarnation ${hex32(h.incarnation)} is not ours (${hex32(this.incarnation)})`);
    if (this.status === "blank") return; // it has none yet: it adopts one when it recovers or formats
    if (this.warnings.admit(`incarnation of replica ${h.replica}`, this.ticks * this.config.tick_ms) === null) return;
    this.env.log(
      "error",
      `replica ${this.replica}: refusing replica ${h.replica}: its data directory belongs to cluster incarnation ${hex32(h.incarnation)}, this replica's to ${hex32(this.incarnation)} (a directory of an earlier cluster on the same addresses, or a different cluster): stop it and give it the right data directory, or an empty one to have it recover from the others`,
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Restart, formatting, and recovery from a lost disk

  private loadState(recovered: Recovered): void {
    const state = recovered.state!;
    this.formation.restart(state.incarnation);
    if (recovered.checkpoint === null) return this.recoverLostCheckpoint(state);
    this.view = state.view;
    this.log_view = state.log_view;
    this.durable.restart(state.view, state.log_view, state.checkpoint);
    this.commit_min = state.checkpoint.op;
    this.commit_min_checksum = state.checkpoint.checksum;
    this.commit_min_header = recovered.checkpoint.anchor;
    this.store = recovered.store;
    this.clients = recovered.clients;
    this.durable.remember(recovered.checkpoint.previous);
    const restart = restartLog(this.journal, recovered, recovered.checkpoint);
    if (restart.damaged.length > 0) {
      this.env.log(
        "warn",
        `replica ${this.replica}: ${restart.damaged.length} journal record(s) damaged on disk (ops ${describeOps(restart.damaged)}): repairing from peers; this replica will not vote to discard those ops until they are rewritten`,
      );
    }
    this.chain.vouched(state.view_headers);
    this.op = restart.op;
    this.commit_max = restart.commit_max;
    this.env.log(
      "info",
      `replica ${this.replica}: opened at view ${this.view} (log_view ${this.log_view}), checkpoint ${this.checkpoint.op}, op ${this.op}, commit ${this.commit_max}`,
    );
    this.timeout_repair.start();
    if (this.view > 0 || this.log_view > 0 || this.op > 0 || this.commit_max > 0) this.formation.form();
    if (!this.formed) {
      // Formatted but nothing happened yet: wait until every replica is formatted (see format()).
      this.status = "normal";
      if (this.isPrimary()) this.lead([]);
      this.timeout_probe.start();
      this.sendProbe();
    } else if (this.view === this.log_view) {
      if (this.isPrimary() && this.config.replica_count > 1) {
        // A restarted primary lost its pipeline and queues; a new view resolves the suffix.
        this.startViewChange(this.view + 1);
      } else if (this.isPrimary()) {
        this.status = "normal";
        this.start_view_pending = true;
        this.maybeFinishStartView();
      } else {
        this.enterNormalBackup();
      }
    } else {
      this.status = "view_change";
      this.view_change = newViewChange(this.replica);
      this.timeout_view_change.start();
      this.timeout_view_change_resend.start();
      this.sendToOthers(this.makeStartViewChange());
    }
  }

  /**
   * A cluster is formed once every replica has formatted. Until then a formatted replica does
   * nothing that changes its state (no prepares, no view changes), so it stays pristine and a
   * replica whose formatting was delayed (a partition at birth) still sees a blank cluster and
   * formats too, instead of mistaking itself for a replica that lost its disk.
   */
  private get formed(): boolean {
    return this.formation.formed;
  }

  /** Ops above those executed whose journal slot was found damaged: this replica cannot tell
   * whether it acknowledged them, so it never votes them away. */
  protected damagedOps(): number[] {
    return this.journal.damagedOps(this.commit_min, this.commit_min + this.config.journal_slot_count).filter((op) => {
      const h = this.journal.header(op);
      return h === null || !this.journal.hasDurable(op, h.checksum);
    });
  }

  /** Why this replica refuses writes, if it does (status, metrics). */
  problem(): string | null {
    if (this.no_space) return "disk full: this replica refuses new writes until space is freed (reads are still served)";
    const damaged = this.damagedOps();
    if (damaged.length > 0) return `journal damaged (ops ${describeOps(damaged)}): repairing from peers`;
    return null;
  }

  /** The checkpoint file is damaged: the executed state is gone, the promises are not. Recover
   * the state from peers as a lost disk would, in at least the view the superblock promised. */
  private recoverLostCheckpoint(state: VsrState): void {
    this.env.log(
      "error",
      `replica ${this.replica}: checkpoint ${state.checkpoint.op} is damaged on disk: recovering the state from peers; this replica acknowledges nothing until it has caught up`,
    );
    this.durable.restart(state.view, state.log_view, null);
    this.formation.form();
    // The superblock it writes when it rejoins must not name an older checkpoint than this one.
    this.enterRecovering(state.view, state.checkpoint.op);
  }

  /** Becomes recovering in view v (adopted, not installed: it waits for that view's start_view),
   * with no log view of its own, and asks the primary for the view's log. */
  private enterRecovering(view: number, checkpoint_floor: number): void {
    assert(
      this.recovering === null && this.leader === null && this.view_change === null,
      () => `replica ${this.replica}: recovering from status ${this.status}`,
    );
    this.status = "recovering";
    this.recovering = new Recovering(checkpoint_floor);
    this.view = view;
    this.log_view = 0;
    this.timeout_repair.start();
    this.timeout_normal.start();
    this.requestStartView();
  }

  /** Caught up and durable: a normal backup again, which may acknowledge. */
  private leaveRecovering(): void {
    assert(
      this.status === "recovering" && this.recovering !== null && this.sync === null,
      () => `replica ${this.replica}: leaving recovery from status ${this.status}`,
    );
    this.recovering = null;
    this.enterNormalBackup();
    assert((this.status as Status) === "normal" && !this.isActingPrimary(), "a recovered replica rejoins as a backup");
  }

  /** Whether a message shows the cluster formed (so every replica formatted): only what a forged
   * frame cannot fake by chance counts, the first prepare (it chains to the root) or a start_view
   * whose headers verify. A forged commit or view-change vote once formed a replica whose peers
   * were still blank, and the cluster never formed. Otherwise the probes tell (onPong). */
  private provesFormed(message: Message): boolean {
    const h = message.header;
    if (h.command === Command.prepare) return h.op === 1 && h.parent === this.root.checksum && decodeBatch(message.body) !== null;
    if (h.command === Command.start_view) {
      const headers = decodeHeaders(message.body, this.config.cluster);
      return headers !== null && suffixValid(headers, h.op);
    }
    return false;
  }

  private sendProbe(): void {
    if (this.status !== "blank" && this.formed) {
      this.timeout_probe.stop();
      return;
    }
    this.formation.round(this.env.random.u64());
    this.sendToOthers(buildPing(this.envelope(this.view), { nonce: this.formation.nonce }));
    this.followFormation(this.formation.decide());
  }

  private onPing(message: Message): void {
    const pong = buildPong(this.envelope(this.view), {
      nonce: readPing(message).nonce,
      state: this.formation.answer(this.status, this.view_durable),
      op: this.op,
      commit_max: this.commit_max,
      log_view: this.log_view,
      // The durable view: the floor a replica that lost its disk adopts (views being changed in
      // memory are not promises, and the cluster may settle below them).
      durable_view: Math.max(0, this.view_durable),
    });
    this.env.sendToReplica(message.header.replica, pong);
  }

  private onPong(message: Message): void {
    const h = message.header;
    const p = readPong(message);
    const pong = {
      replica: h.replica,
      nonce: p.nonce,
      answer: p.state,
      view: h.view,
      log_view: p.log_view,
      op: p.op,
      commit: p.commit_max,
      durable_view: p.durable_view,
      incarnation: h.incarnation,
    };
    this.followFormation(this.formation.pong(pong, this.status));
  }

  /** Acts on what formation decided (RULE formatting and RULE incarnation at formation are
   * decided in formation.ts). */
  private followFormation(decision: FormationDecision): void {
    switch (decision.kind) {
      case "wait":
        return;
      case "format":
        return this.format();
      case "form":
        return this.form();
      case "adopt":
        this.env.log(
          "info",
          `replica ${this.replica}: replica ${decision.peer} ${decision.peer_formed ? "belongs to a formed cluster" : "formatted"} with cluster incarnation ${hex32(decision.incarnation)}, ours is ${hex32(decision.previous)}: adopting it`,
        );
        this.writeState();
        if (decision.form) this.form();
        return;
      case "disagree":
        if (this.warnings.admit("no agreed incarnation", this.ticks * this.config.tick_ms) !== null) {
          const heard = decision.heard.map((r) => `replica ${r.replica}: ${hex32(r.incarnation)}`).join(", ");
          this.env.log(
            "error",
            `replica ${this.replica}: data directory is blank, and the formatted peers do not agree on a cluster incarnation (${heard}; ${this.f + 1} must agree): waiting; a peer's data directory is probably from another cluster on these addresses`,
          );
        }
        return;
      case "recover":
        this.env.log(
          "warn",
          `replica ${this.replica}: data directory is blank but the cluster has data: recovering from peers at view ${decision.view}; this replica acknowledges nothing until it has caught up`,
        );
        this.timeout_probe.stop();
        this.enterRecovering(decision.view, 0);
        return;
    }
  }

  private format(): void {
    this.env.log("info", `replica ${this.replica}: every replica reports a blank data directory: formatting a new cluster`);
    this.status = "normal";
    this.view = 0;
    this.log_view = 0;
    if (this.isPrimary()) this.lead([]);
    this.writeState();
    this.timeout_repair.start();
    if (this.config.replica_count === 1) this.form();
    else this.sendProbe();
  }

  private form(): void {
    this.formation.form();
    this.timeout_probe.stop();
    this.env.log("info", `replica ${this.replica}: every replica is formatted: the cluster is formed`);
    if (this.isPrimary() && this.formation.restarted && this.config.replica_count > 1) {
      // The cluster may have moved on while this primary lost what it had not synced: as after any
      // restart, a new view resolves the log rather than this replica's memory of it.
      this.startViewChange(this.view + 1);
    } else if (this.isPrimary()) {
      // Votes (forged ones too) may have moved it into a view change it will lead: it forms all the same.
      assert(this.leader !== null || this.status === "view_change", () => `replica ${this.replica}: forming as primary without leading`);
      this.leader?.aliveAll(this.ticks);
      this.timeout_heartbeat.start();
      this.timeout_prepare.start();
      this.prepareQueued();
    } else {
      this.timeout_normal.start();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Durability

  /** Queues a superblock write of the current VSR state. */
  private writeState(): void {
    const checkpoint = this.durable.toWrite();
    const state: VsrState = {
      incarnation: this.incarnation,
      view: this.view,
      log_view: this.log_view,
      commit_max: this.commit_max,
      view_headers: this.chain.suffixHeaders(),
      checkpoint,
    };
    this.chain.vouched(state.view_headers);
    this.storage.writeState(state);
    this.durable.record(state);
  }

  /** Called after a flush: everything queued before it is durable now. */
  private onDurable(): void {
    const written = this.durable.flushed();
    if (written !== null) this.formation.durable(written.incarnation);
    const durable_ops = this.journal.flushed();
    if (this.status === "recovering") {
      this.maybeFinishRecovering();
      return;
    }
    if (this.status === "view_change") {
      this.maybeSendDoViewChange();
      if (this.start_view_pending) this.maybeFinishStartView();
      return;
    }
    if (this.status !== "normal") return;
    if (this.isPrimary()) {
      for (const op of durable_ops) {
        const entry = this.leader?.entry(op);
        if (entry !== undefined && op <= this.opPrepareOkMax() && this.journal.hasDurable(op, entry.checksum))
          this.leader!.ack(op, entry.checksum, this.replica);
      }
      this.commitPipeline();
    } else if (this.acks_after_start_view !== null) {
      // The installed start_view is durable: acknowledge what the new primary has not seen
      // committed, in this view (ops this replica knows are committed included).
      const from = this.acks_after_start_view + 1;
      this.acks_after_start_view = null;
      for (let op = from; op <= this.op; op++) this.sendPrepareOk(op);
    } else {
      for (const op of durable_ops) this.sendPrepareOk(op);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Normal operation: the primary

  protected onRequest(message: Message): void {
    const h = message.header;
    const leader = this.leader;
    if (leader === null) return this.replyError(message, Result.not_primary);
    if (!this.formed) return this.replyError(message, Result.busy);
    const operation = h.operation;
    const valid = validateRequest(operation, message.body, this.config.value_size_max);
    if (valid !== Result.ok) return this.replyError(message, valid);
    if (!isWrite(operation)) return this.enqueueRead(leader, message);
    if (this.no_space) return this.replyError(message, Result.no_space);
    const session = this.clients.get(h.client);
    if (operation !== Operation.register && (session === undefined || session.session !== h.session)) {
      return this.replyError(message, Result.evicted);
    }
    if (session !== undefined && h.request <= session.request) {
      // A retry of an executed request gets its stored reply; an older one is stale.
      if (h.request === session.request)
        this.sendStoredReply({ client: h.client, request: session.request, session: session.session }, session.reply);
      return;
    }
    // A retry of a request already queued or being prepared is answered when that one executes.
    const queued = leader.queueRequest(message);
    if (queued === "in_flight") return;
    if (queued === "busy") return this.replyError(message, Result.busy);
    this.prepareQueued();
  }

  /** The highest op this primary may prepare: it must not overwrite journal slots that the last
   * durable checkpoint still needs, and it keeps one checkpoint interval of history for peers. */
  private opPrepareMax(): number {
    return this.checkpoint.op + this.config.journal_slot_count - this.config.checkpoint_interval_ops;
  }

  /**
   * RULE (a promise never outlives the memory behind it): the highest op this replica may
   * acknowledge (or count as its own copy, as primary). A restart reloads the durable checkpoint
   * and the journal window after it, ops (checkpoint, checkpoint + slots]; an acknowledged op
   * beyond it would be forgotten, and a view change could then discard a committed op
   * (TigerBeetle's op_prepare_ok_max). `checkpoint` is the durable one: a checkpoint taken or
   * synced counts only once the superblock naming it is flushed.
   */
  protected opPrepareOkMax(): number {
    return this.checkpoint.op + this.config.journal_slot_count;
  }

  /**
   * The highest op this replica may write into its journal. Its slot is that of op - slots,
   * which must be executed and inside the durable checkpoint: otherwise the write destroys an op
   * the replay from that checkpoint needs (and that this replica may have acknowledged). A
   * recovering replica has acknowledged nothing in this life and its durable state is not yet
   * what it will restart from, so it fills the window above what it has executed; what it then
   * acknowledges is bounded by opPrepareOkMax once it has made its checkpoint durable.
   */
  opJournalMax(): number {
    if (this.status === "recovering") return this.commit_min + this.config.journal_slot_count;
    return this.opPrepareOkMax();
  }

  /** Batches queued requests into prepares while the pipeline has room (no batching timers). */
  private prepareQueued(): void {
    const leader = this.leader;
    if (leader === null) return;
    while (
      leader.canPrepare() &&
      this.op + 1 <= this.opPrepareMax() &&
      this.leader === leader &&
      this.log_view_durable === this.view &&
      this.formed &&
      !this.no_space &&
      this.checkpointIdFor(this.op + 1) !== null
    ) {
      this.preparePrimary(leader, leader.takeBatch());
    }
  }

  private preparePrimary(leader: Leader, requests: Message[]): void {
    const parent = this.journal.header(this.op);
    assert(parent !== null, () => `primary ${this.replica}: no header at its head op ${this.op}`);
    const body = encodeBatch(
      requests.map((m) => ({
        client: m.header.client,
        session: m.header.session,
        request: m.header.request,
        operation: m.header.operation,
        body: m.body,
      })),
    );
    const op = this.op + 1;
    const checkpoint = this.checkpointIdFor(op);
    assert(checkpoint !== null, () => `primary ${this.replica}: no checkpoint named by op ${op}`);
    // Timestamps never go backwards, across primaries whose clocks disagree too.
    const timestamp = Math.max(parent.timestamp + 1, this.realtime);
    const prepare = buildPrepare(this.envelope(this.view), {
      op,
      parent: parent.checksum,
      commit_max: this.commit_max,
      timestamp,
      checkpoint,
      requests: requests.length,
      body,
    });
    const h = prepare.header;
    assert(h.timestamp > parent.timestamp, "the hash chain's timestamps strictly increase");
    this.op = h.op;
    // prepareQueued stops at opPrepareMax: the primary's own copy is one it may count.
    assert(
      this.op <= this.opPrepareOkMax(),
      () => `primary ${this.replica}: prepared op ${this.op} beyond what its durable checkpoint ${this.checkpoint.op} keeps`,
    );
    this.observer?.primary(this.replica, this.view);
    leader.prepared(h.op, h.checksum, prepare);
    // Send first, then journal: the backups' writes overlap the primary's own.
    this.sendToOthers(prepare);
    // The op is in this primary's log even if its own copy could not be written (disk full): the
    // header stays, and the prepare is repaired once there is space again.
    if (!this.journalPrepare(prepare)) this.journal.setHeader(prepare.header);
    if (!this.timeout_prepare.running) this.timeout_prepare.start();
  }

  private onPrepareOk(message: Message): void {
    const h = message.header;
    if (this.status !== "normal" || !this.isPrimary() || h.view !== this.view) return;
    const { op, checksum } = readPrepareOk(message);
    // Alive only if it acknowledges a prepare of this log (a forged ack names none).
    if (this.leader !== null && this.journal.header(op)?.checksum === checksum) this.leader.alive(h.replica, this.ticks);
    this.leader?.ack(op, checksum, h.replica);
    this.commitPipeline();
  }

  /** Commits pipeline entries, in op order, once f+1 replicas (the primary included) hold each
   * durably. RULE: a quorum of durable copies before commit. */
  private commitPipeline(): void {
    const leader = this.leader;
    for (const entry of leader?.popCommitted(this.replicationQuorum(), this.commit_max) ?? []) {
      assert(entry.op <= this.op, () => `primary ${this.replica}: committed op ${entry.op} above its head ${this.op}`);
      if (entry.op > this.commit_max) {
        this.commit_max = entry.op;
        this.commit_max_checksum = entry.checksum;
      }
    }
    if (leader === null || leader.pipeline.length === 0) this.timeout_prepare.stop();
    this.executeCommitted();
    this.prepareQueued();
  }

  /** The id of the checkpoint a prepare at op names (durable_state.ts); null: not taken yet, so
   * the primary must execute further before it prepares op. */
  private checkpointIdFor(op: number): CheckpointId | null {
    assert(op > 0, "op 0 is the root, which names no checkpoint");
    return this.durable.idFor(op, this.journal.header(op - 1));
  }

  /** f+1 (the simulator's tests override this to prove a smaller quorum is caught). */
  protected replicationQuorum(): number {
    return this.quorum;
  }

  private onPrepareTimeout(): void {
    const leader = this.leader;
    if (leader === null) {
      this.timeout_prepare.stop();
      return;
    }
    for (const { entry, to } of leader.resends()) {
      const prepare = entry.message ?? this.storage.readPrepare(entry.op, entry.checksum);
      if (prepare === null) continue; // repair will fetch it
      for (const r of to) this.env.sendToReplica(r, prepare);
    }
  }

  private onHeartbeatTimeout(): void {
    const leader = this.leader;
    if (leader === null) {
      this.timeout_heartbeat.stop();
      return;
    }
    if (this.log_view_durable !== this.view) return; // formatting: the superblock is on its way
    // RULE (abdication): a primary that hears from no quorum within the view change timeout stops
    // acting as primary, so a partitioned old primary cannot serve stale reads. A primary stuck
    // with work pending hands over too (Leader.heartbeat says when).
    const decision = leader.heartbeat(this.ticks, this.commit_min, this.commit_max);
    if (decision.kind === "abdicate_unheard") {
      this.env.log(
        "warn",
        `replica ${this.replica}: primary of view ${this.view} heard from no quorum for ${this.config.view_change_timeout_ticks} ticks: abdicating`,
      );
      this.startViewChange(this.view + 1);
      return;
    }
    if (decision.kind === "abdicate_stuck") {
      this.env.log(
        "warn",
        `replica ${this.replica}: primary of view ${this.view} has made no progress past op ${this.commit_min} (commit ${this.commit_max}, ${leader.pipeline.length} prepares in flight) for ${decision.stall_ticks} ticks: abdicating so a view change resolves the log`,
      );
      this.startViewChange(this.view + 1);
      return;
    }
    this.sendCommit(leader);
  }

  /** A commit heartbeat starts a new round: backups answer with commit_ok, which confirms to
   * waiting reads that this primary was still primary after they arrived. */
  private sendCommit(leader: Leader): void {
    const nonce = this.env.random.u64();
    const round = leader.reads.startRound(nonce);
    const commit_checksum =
      this.journal.header(this.commit_max)?.checksum ?? (this.commit_max === this.commit_min ? this.commit_min_checksum : 0n);
    assert(
      this.isActingPrimary() && this.leader === leader,
      () => `replica ${this.replica}: heartbeat of view ${this.view} while not acting as its primary`,
    );
    const commit = buildCommit(this.envelope(this.view), {
      commit_max: this.commit_max,
      commit_checksum,
      round,
      nonce,
      op: this.op,
      checkpoint: this.checkpoint,
    });
    this.timeout_heartbeat.reset();
    this.sendToOthers(commit);
  }

  private onCommitOk(message: Message): void {
    const h = message.header;
    const leader = this.leader;
    if (leader === null || h.view !== this.view) return;
    // A backup's commit number is not taken: nothing binds it to this log, so one forged frame
    // would commit ops no quorum holds. The pipeline commits on acknowledgements alone (ops
    // committed in an earlier view are in it, and their holders acknowledge them again).
    // The round's nonce, echoed: a forged commit_ok cannot confirm a round (and so a read) that
    // the backup never answered.
    const { round, nonce } = readCommitOk(message);
    if (!leader.reads.answers(round, nonce)) return;
    leader.alive(h.replica, this.ticks); // alive (a forged commit_ok must not keep a cut-off primary from abdicating)
    if (leader.reads.ack(h.replica, round)) this.serveReads();
  }

  // ---------------------------------------------------------------------------------------------
  // Linearizable reads

  private enqueueRead(leader: Leader, message: Message): void {
    if (this.log_view_durable !== this.view) return this.replyError(message, Result.busy);
    // RULE (reads): the read needs commit >= the op at arrival, and a heartbeat round sent after
    // it arrived, confirmed by f backups still in this view.
    if (!leader.reads.enqueue(message, this.op, this.readRound())) return this.replyError(message, Result.busy);
    this.serveReads();
  }

  /** The heartbeat round that confirms a read arriving now: the next one, sent after it arrived.
   * (The simulator's tests override this to prove a read confirmed by an earlier round is caught.) */
  protected readRound(): number {
    assert(this.leader !== null, () => `replica ${this.replica}: a read round asked of a replica not leading`);
    return this.leader.reads.round + 1;
  }

  /** Serves the reads whose conditions hold. Rounds are shared: reads that arrive while a round
   * is in flight wait for the next one, which is sent as soon as the current one is confirmed. */
  private serveReads(): void {
    const leader = this.leader;
    if (leader === null) return;
    for (const waiter of leader.reads.takeReady(this.commit_min)) {
      const h = waiter.message.header;
      const result = executeRead(this.store, h.operation, waiter.message.body, (key, entry) => this.readValue(key, entry));
      this.sendReply({
        client: h.client,
        request: h.request,
        session: h.session,
        operation: h.operation,
        result: result.result,
        body: result.body,
        op: 0,
        timestamp: this.realtime,
      });
    }
    if (leader.reads.roundDue()) this.sendCommit(leader);
  }

  // ---------------------------------------------------------------------------------------------
  // Normal operation: backups, and prepares arriving for repair

  private onPrepare(message: Message): void {
    const h = message.header;
    if (h.op === 0 || this.status === "blank") return;
    if (h.op <= this.commit_min) {
      // Executed here, so committed; a new primary that does not know it yet still needs the ack.
      if (this.status === "normal" && !this.isPrimary() && this.journal.hasPrepare(h.op, h.checksum)) this.sendPrepareOk(h.op);
      return;
    }
    if (this.chain.wanted(h)) {
      this.journalPrepare(message);
      return;
    }
    if (this.status === "normal" && !this.isPrimary() && h.view <= this.view && this.journal.hasPrepare(h.op, h.checksum)) {
      // Part of this view's log (perhaps prepared in an earlier view): the primary resends what
      // it has no acknowledgement for in this view, so acknowledge it again.
      this.sendPrepareOk(h.op);
      return;
    }
    if (h.view > this.view || (h.view === this.view && this.status === "view_change")) {
      // A view change completed without this replica: ask the new primary for its log.
      if (h.replica === primaryIndex(h.view, this.config.replica_count)) this.requestStartView(h.view);
      return;
    }
    if (h.view < this.view && this.mayJoinView(h.view) && h.replica === primaryIndex(h.view, this.config.replica_count)) {
      this.requestStartView(h.view);
      return;
    }
    if (this.status !== "normal" && this.status !== "recovering") return;
    if (this.isPrimary() || !this.fromPrimaryOfThisView(h)) return;
    this.onPrimaryContact(h);
    if (this.journal.hasPrepare(h.op, h.checksum)) {
      // The primary resends what it has no acknowledgement for: the ack may have been lost.
      this.sendPrepareOk(h.op);
      this.learnPrimaryCommit(Math.min(h.commit, h.op - 1), h.op - 1, h.parent);
      this.executeCommitted();
      return;
    }
    if (h.op > this.opJournalMax()) return; // too far ahead to journal (the primary resends it)
    if (decodeBatch(message.body) === null) return this.drop(message, "malformed batch in a prepare");
    const existing = this.journal.header(h.op);
    if (existing !== null && existing.view === this.view && existing.checksum !== h.checksum) {
      // One primary makes one prepare per op in its view: a second is forged (or this replica's
      // memory is wrong). Never a reason to stop: keep the one held.
      return this.violation(
        h.replica,
        h.command,
        `a second prepare for op ${h.op} in view ${this.view} (held ${existing.checksum.toString(16)}, got ${h.checksum.toString(16)})`,
        h.checksum,
      );
    }
    if (!this.journalPrepare(message)) return; // disk full: no acknowledgement
    if (h.op > this.op) {
      // Ops between the old head and this one are unknown: repair fetches them by hash chain.
      this.op = h.op;
    }
    this.chain.trimUnchained();
    this.sendPrepareOk(h.op); // sent now only if already durable; otherwise after the flush
    this.learnPrimaryCommit(Math.min(h.commit, h.op - 1), h.op - 1, h.parent);
    this.executeCommitted();
  }

  /** RULE: a backup journals new prepares only from the primary of its own view; an older view's
   * primary may be deposed, and its prepares may conflict with this view's log. (The simulator's
   * tests override this to prove a backup that takes an older view's prepares is caught.) */
  protected fromPrimaryOfThisView(h: Header): boolean {
    return h.view === this.view && h.replica === primaryIndex(this.view, this.config.replica_count);
  }

  /** Writes a prepare to the journal; false if the disk is full (it is then not journaled: no
   * acknowledgement, and repair fetches it again once space returns). */
  private journalPrepare(message: Message): boolean {
    const h = message.header;
    assert(
      h.op <= this.opJournalMax(),
      () =>
        `replica ${this.replica}: journaling op ${h.op} would overwrite op ${h.op - this.config.journal_slot_count}, which its durable checkpoint ${this.checkpoint.op} still needs`,
    );
    try {
      this.storage.writePrepare(message);
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      this.diskFull(error);
      return false;
    }
    this.journal.wrote(h);
    assert(
      this.journal.hasPrepare(h.op, h.checksum) && !this.journal.isDamaged(h.op),
      () => `replica ${this.replica}: op ${h.op} written but its slot does not hold it`,
    );
    this.recent_prepares.remember(message, this.commit_min);
    return true;
  }

  private diskFull(error: Error): void {
    assert(isNoSpace(error), () => `replica ${this.replica}: ${error.message} taken for a full disk`);
    if (!this.no_space)
      this.env.log(
        "error",
        `replica ${this.replica}: ${error.message}: the disk is full; refusing new writes (reads are still served) until space is freed`,
      );
    this.no_space = true;
    this.no_space_ticks = 0;
  }

  /** Every second while the disk is full, checks whether space has come back. A primary whose
   * journal cannot be written abdicates at once (docs/STORAGE.md §12): a backup with space leads instead. */
  private checkSpace(): void {
    if (!this.no_space) return;
    if (this.status === "normal" && this.isPrimary() && this.config.replica_count > 1) {
      this.env.log("warn", `replica ${this.replica}: primary of view ${this.view} cannot write its journal (disk full): abdicating`);
      this.startViewChange(this.view + 1);
    }
    this.no_space_ticks += 1;
    if (this.no_space_ticks < 100) return;
    this.no_space_ticks = 0;
    if (this.storage.hasSpace(this.config.batch_size_max)) {
      this.no_space = false;
      this.env.log("info", `replica ${this.replica}: disk space is available again: accepting writes`);
      this.prepareQueued();
    }
  }

  /** RULE (persist before you promise): an ack only for a durable prepare, in a durable view. */
  private sendPrepareOk(op: number): void {
    if (this.status !== "normal" || this.isPrimary()) return;
    if (this.view_durable !== this.view || this.log_view_durable !== this.view) return;
    const h = this.journal.header(op);
    if (h === null || op > this.op || op > this.opPrepareOkMax() || !this.prepareOkReady(op, h.checksum)) return;
    // RULE (a promise never outlives the memory behind it), asserted apart from opPrepareOkMax: a
    // restart reloads the durable checkpoint and the window after it, and nothing beyond.
    assert(
      op <= this.checkpoint.op + this.config.journal_slot_count,
      () =>
        `replica ${this.replica}: acknowledging op ${op} beyond what a restart from its durable checkpoint ${this.checkpoint.op} reloads`,
    );
    const ok = buildPrepareOk(this.envelope(this.view), { op, checksum: h.checksum, parent: h.parent, commit_max: this.commit_max });
    this.env.sendToReplica(primaryIndex(this.view, this.config.replica_count), ok);
  }

  /** RULE: a recovering replica persists its synced checkpoint before it rejoins. (The
   * simulator's tests override this to prove a replica that rejoins without it is caught.) */
  protected recoveryPersists(): boolean {
    return true;
  }

  /** RULE (persist before you promise): do_view_change waits for the view to be durable. (The
   * simulator's tests override this to prove a replica that does not wait is caught.) */
  protected promiseNeedsDurableView(): boolean {
    return true;
  }

  /** RULE: only a durable prepare may be acknowledged. */
  protected prepareOkReady(op: number, checksum_: bigint): boolean {
    return this.journal.hasDurable(op, checksum_);
  }

  private onCommit(message: Message): void {
    const h = message.header;
    if (this.status === "blank") return;
    if (h.view > this.view || (h.view === this.view && this.status === "view_change") || (h.view < this.view && this.mayJoinView(h.view))) {
      this.requestStartView(h.view);
      return;
    }
    if (h.view < this.view && this.status === "recovering" && h.replica === primaryIndex(h.view, this.config.replica_count)) {
      // A recovering replica that promised a view the cluster never reached waits for a start_view
      // of it that would never come: start_view_change carries its durable view, and moves the
      // cluster there (onStartViewChange).
      this.env.sendToReplica(h.replica, this.makeStartViewChange());
      return;
    }
    if (h.view < this.view || this.isPrimary()) return;
    if (this.status !== "normal" && this.status !== "recovering") return;
    const commit = readCommit(message);
    this.onPrimaryContact(h);
    this.learnPrimaryCommit(commit.commit_max, commit.commit_max, commit.commit_checksum);
    // The latest announcement counts (not the highest): a forged one is replaced by the next.
    if (commit.checkpoint.op > 0) this.sync_targets.primaryAnnounced(h.view, commit.checkpoint);
    if (this.status === "normal" && this.view_durable === this.view) {
      this.env.sendToReplica(
        h.replica,
        buildCommitOk(this.envelope(this.view), { round: commit.round, nonce: commit.nonce, commit_max: this.commit_max }),
      );
    }
    if (commit.op > this.op && this.journal.header(this.op) !== null && this.status === "normal") {
      // The primary is ahead: its prepares were lost on the way. Learn the headers, then repair.
      this.requestHeaders(this.op + 1, Math.min(commit.op, this.commit_min + this.config.journal_slot_count));
    }
    this.executeCommitted();
  }

  /** Heard from the primary of this view: reset the election timer, note what it claims. Its
   * numbers steer repair and state sync only; the latest claim replaces the one before, so a
   * forged number is forgotten at the next heartbeat. */
  private onPrimaryContact(h: Header): void {
    assert(
      !this.isPrimary() && h.view <= this.view,
      () => `replica ${this.replica}: primary contact in view ${h.view} while it is primary or in view ${this.view}`,
    );
    this.timeout_normal.reset();
    this.commit_hint = h.commit;
    // The primary's durable checkpoint, from its heartbeat (a prepare names an older one).
    if (h.command === Command.commit) this.primary_checkpoint_op = h.checkpoint_op;
    this.maybeStartSync();
  }

  /** RULE (commit numbers): a backup takes a commit number from the primary only when its own log
   * holds the prepare the number is anchored to (anchor_op with checksum anchor, at or above the
   * number): then the committed ops are in this replica's log, and the number is one of its
   * history. Anything else is a hint (commit_hint), never executed on nor persisted. */
  private learnPrimaryCommit(commit: number, anchor_op: number, anchor: bigint): void {
    if (commit <= this.commit_max || commit > anchor_op || anchor_op > this.op) return;
    const held = anchor_op === this.commit_min ? this.commit_min_checksum : this.journal.header(anchor_op)?.checksum;
    if (held !== anchor) return;
    this.commit_max = commit;
    this.commit_max_checksum = commit === anchor_op ? anchor : null;
    assert(this.commit_max <= this.op, () => `replica ${this.replica}: learned commit ${commit} above its head ${this.op}`);
  }

  /** The highest commit number heard of, verified or not: what repair and state sync aim at. */
  commitKnown(): number {
    const known = Math.max(this.commit_max, this.commit_hint);
    assert(known >= this.commit_min, () => `replica ${this.replica}: knows of commit ${known} below what it executed (${this.commit_min})`);
    return known;
  }

  private onNormalTimeout(): void {
    if (this.status === "normal" && !this.isPrimary()) {
      this.env.log(
        "info",
        `replica ${this.replica}: no word from primary ${primaryIndex(this.view, this.config.replica_count)} of view ${this.view}: starting a view change`,
      );
      this.startViewChange(this.view + 1);
    } else if (this.status === "recovering") {
      this.requestStartView();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Execution

  /** Executes committed ops in order; the primary replies to their clients. */
  private executeCommitted(): void {
    if (this.status !== "normal" && this.status !== "recovering") return;
    if (this.sync !== null || this.start_view_pending) return;
    if (this.commit_min >= this.commit_max) return;
    const up_to = this.chain.verifiedUpTo();
    const executed_before = this.commit_min;
    while (this.commit_min < up_to) {
      if (this.checkpointMissing()) break;
      const op = this.commit_min + 1;
      const header = this.journal.header(op)!;
      const prepare =
        this.pipelineMessage(op, header.checksum) ??
        this.recent_prepares.take(op, header.checksum) ??
        this.storage.readPrepare(op, header.checksum);
      if (prepare === null) {
        // Damaged on disk since it was written: repair fetches it again.
        this.env.log("warn", `replica ${this.replica}: prepare op ${op} is damaged on disk: repairing it from a peer before executing it`);
        this.journal.damaged(header);
        break;
      }
      this.execute(prepare);
      if (this.commit_min % this.config.checkpoint_interval_ops === 0) this.takeCheckpoint();
    }
    // Execution moves forward one op at a time, and never past the verified log.
    assert(
      this.commit_min >= executed_before && this.commit_min <= up_to,
      () => `replica ${this.replica}: executed from ${executed_before} to ${this.commit_min}, verified up to ${up_to}`,
    );
    if (this.isPrimary() && this.status === "normal") this.serveReads();
  }

  private pipelineMessage(op: number, checksum_: bigint): Message | null {
    const message = this.leader?.message(op, checksum_) ?? null;
    assert(
      message === null || (message.header.op === op && message.header.checksum === checksum_),
      () => `primary ${this.replica}: pipeline holds another prepare at op ${op}`,
    );
    return message;
  }

  private execute(prepare: Message): void {
    const h = prepare.header;
    assert(h.op === this.commit_min + 1, () => `replica ${this.replica}: executing op ${h.op} after ${this.commit_min}`);
    assert(h.parent === this.commit_min_checksum, () => `replica ${this.replica}: op ${h.op} does not chain to the op executed before it`);
    const batch = decodeBatch(prepare.body);
    assert(batch !== null, () => `replica ${this.replica}: prepare ${h.op} has a malformed batch`);
    const location = this.storage.prepareBodyLocation(h.op, h.checksum);
    assert(location !== null, () => `replica ${this.replica}: prepare ${h.op} executed but not journaled`);
    const reply = this.status === "normal" && this.isPrimary();
    for (const entry of batch) {
      this.leader?.executed(entry.client, entry.request);
      this.executeRequest(h, entry, { segment: location.segment, offset: location.offset + entry.body_offset }, reply);
    }
    this.commit_min = h.op;
    this.commit_min_checksum = h.checksum;
    this.commit_min_header = h;
    if (this.commit_min > this.commit_max) this.commit_max = this.commit_min;
    assert(this.commit_min <= this.op, () => `replica ${this.replica}: executed op ${this.commit_min} above its head ${this.op}`);
    this.observer?.executed(this.replica, prepare);
  }

  /** Executes one request of a committed batch; the primary (reply) answers its client. */
  private executeRequest(prepare: Header, req: OrderedRequest, body_location: { segment: number; offset: number }, reply: boolean): void {
    const { client, session, request, operation } = req;
    if (operation === Operation.register) {
      const existing = this.clients.get(client);
      // Registers are not checked for at-most-once: a register retried after its session was
      // evicted is indistinguishable from a new one, and harmless (the client re-registers again
      // when its next request is answered `evicted`).
      if (existing !== undefined && request <= existing.request) {
        if (reply && request === existing.request) this.sendStoredReply({ client, request, session: existing.session }, existing.reply);
        return;
      }
      const stored: StoredReply = { op: prepare.op, timestamp: prepare.timestamp, operation, result: Result.ok, body: new Uint8Array(0) };
      const evicted = this.clients.register(client, prepare.op, request, stored);
      if (evicted !== null) this.env.log("debug", `replica ${this.replica}: client table full: evicted client ${evicted.toString(16)}`);
      // The new session is the register's op.
      if (reply) this.sendStoredReply({ client, request, session: prepare.op }, stored);
      return;
    }
    const entry = this.clients.get(client);
    if (entry === undefined || entry.session !== session) {
      // RULE (sessions): evicted or stale sessions are refused at execution, on every replica alike.
      if (reply)
        this.sendReply({
          client,
          request,
          session,
          operation,
          result: Result.evicted,
          body: new Uint8Array(0),
          op: prepare.op,
          timestamp: prepare.timestamp,
        });
      return;
    }
    if (request <= entry.request) {
      // A duplicate that was ordered twice (a retry across a view change): executed at most once.
      this.observer?.request(this.replica, client, request, prepare.op, true);
      if (reply && request === entry.request) this.sendStoredReply({ client, request, session }, entry.reply);
      return;
    }
    const result = executeWrite(this.store, prepare.timestamp, operation, req.body, body_location);
    const stored: StoredReply = { op: prepare.op, timestamp: prepare.timestamp, operation, result: result.result, body: result.body };
    this.clients.record(client, prepare.op, request, stored);
    this.observer?.request(this.replica, client, request, prepare.op, false);
    if (reply) this.sendStoredReply({ client, request, session }, stored);
  }

  private sendStoredReply(to: ReplyTo, stored: StoredReply): void {
    this.sendReply({
      client: to.client,
      request: to.request,
      session: to.session,
      operation: stored.operation,
      result: stored.result,
      body: stored.body,
      op: stored.op,
      timestamp: stored.timestamp,
    });
  }

  protected sendReply(reply: ClientReply): void {
    this.env.sendToClient(reply.client, buildReply(this.envelope(this.view), { ...reply, commit: this.commit_max }));
  }

  private replyError(message: Message, result: Result): void {
    this.stats.requests_rejected += 1;
    const h = message.header;
    // A replica changing views names the last view whose primary it knew as a hint (a recovering
    // one, the view it adopted from its peers).
    const view = result === Result.not_primary && this.status === "view_change" ? this.log_view : this.view;
    // The limit a request broke travels with the error, so a client can name it.
    const limit = result === Result.value_too_large ? this.config.value_size_max : result === Result.key_invalid ? key_size_max : null;
    const body = limit === null ? new Uint8Array(0) : encodeU64(limit);
    const reply: Reply = {
      client: h.client,
      request: h.request,
      session: h.session,
      operation: h.operation,
      result,
      body,
      op: 0,
      commit: this.commit_max,
      timestamp: 0,
    };
    this.env.sendToClient(h.client, buildReply(this.envelope(view), reply));
  }

  /** The fields every message this replica sends carries (docs/PROTOCOL.md §4.2), in view. */
  private envelope(view: number): Envelope {
    assert(view <= this.view, () => `replica ${this.replica}: a message stamped view ${view}, ahead of its own view ${this.view}`);
    return {
      cluster: this.config.cluster,
      replica: this.replica,
      replica_count: this.config.replica_count,
      view,
      incarnation: this.incarnation,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Checkpoints and state sync

  /** Takes the checkpoint at commit_min; false if its file could not be written (disk full). */
  private takeCheckpoint(): boolean {
    const id: CheckpointId = { op: this.commit_min, digest: stateDigest(this.store, this.clients), checksum: this.commit_min_checksum };
    const anchor = this.commit_min_header;
    assert(
      anchor.op === id.op && anchor.checksum === id.checksum,
      () => `replica ${this.replica}: no header for its checkpoint op ${id.op}`,
    );
    const previous = this.durable.taking(id);
    try {
      this.storage.writeCheckpoint({ id, anchor, previous }, this.store, this.clients);
    } catch (error) {
      // Without the checkpoint the journal cannot wrap: the primary stops preparing when it is
      // full, which is the backpressure a full disk needs. retryCheckpoint tries again.
      if (!isNoSpace(error)) throw error;
      this.diskFull(error);
      return false;
    }
    this.durable.written_checkpoint(id);
    if (this.status === "normal") this.writeState();
    return true;
  }

  /** Execution stopped at a checkpoint whose file could not be written: it waits there until the
   * file is (retryCheckpoint), since past it no later op could take its place (checkpoints are at
   * multiples of the interval, and prepares name them). */
  private checkpointMissing(): boolean {
    return this.durable.missing(this.commit_min);
  }

  /** A checkpoint that could not be written (disk full) is taken again once there is space: the
   * journal cannot move past a window beyond the durable checkpoint (opJournalMax), so a replica
   * whose checkpoints failed would otherwise stop executing at the end of that window for good. */
  private retryCheckpoint(): void {
    if (this.no_space || this.sync !== null || (this.status !== "normal" && this.status !== "recovering")) return;
    if (!this.durable.retryable(this.commit_min)) return;
    this.env.log("info", `replica ${this.replica}: retrying checkpoint ${this.commit_min}, which could not be written before`);
    if (this.takeCheckpoint()) this.executeCommitted();
  }

  /** RULE (state sync): a replica more than a checkpoint behind the primary's fetches a
   * checkpoint, accepting only one whose digest a committed prepare names. */
  private maybeStartSync(): void {
    if (this.sync !== null || this.status === "blank" || this.status === "view_change" || this.no_space) return;
    // Ops at or below the checkpoint the head names may be gone from every peer's journal (peers
    // that synced past them never had them): fetch that checkpoint instead of repairing them.
    if (!syncNeeded(this.op, this.primary_checkpoint_op, this.commit_min, this.config.checkpoint_interval_ops)) return;
    if (this.isPrimary() && this.status === "normal") {
      // A primary's own log is canonical: its header at commit_max names a committed checkpoint.
      const committed = this.journal.header(this.commit_max);
      if (committed !== null) this.syncTargetFrom(committed);
      return;
    }
    // The target comes from the header of a committed prepare: ask the primary for it.
    this.requestHeaders(this.commitKnown(), this.commitKnown());
  }

  syncTargetFrom(h: Header): void {
    if (this.sync !== null) return;
    const target = this.sync_targets.fromCommitted(h, this.commitKnown(), this.commit_min, this.config.checkpoint_interval_ops);
    if (target !== null) this.beginSync(target);
  }

  private beginSync(target: CheckpointId): void {
    if (!this.sync_targets.allows(target, this.ticks)) return;
    this.env.log(
      "info",
      `replica ${this.replica}: behind the cluster (executed ${this.commit_min}, primary checkpoint ${this.primary_checkpoint_op}): state-syncing checkpoint ${target.op}`,
    );
    this.stats.syncs += 1;
    this.storage.syncBegin(target);
    this.sync = new SyncTransfer(target, primaryIndex(this.view, this.config.replica_count), this.replica, this.config);
    this.requestSyncChunk();
  }

  private requestSyncChunk(): void {
    const sync = this.sync;
    assert(sync !== null, () => `replica ${this.replica}: asking for a sync chunk with no sync under way`);
    const { peer, position } = sync.request();
    this.env.sendToReplica(peer, buildRequestSync(this.envelope(this.view), { checkpoint: sync.target, position }));
  }

  private onRequestSync(message: Message): void {
    const { checkpoint, position } = readRequestSync(message);
    const chunk = this.storage.readSyncChunk(checkpoint, position, sync_chunk_size_max);
    if (chunk === null) return;
    this.env.sendToReplica(
      message.header.replica,
      buildSyncChunk(this.envelope(this.view), { checkpoint, position, next: chunk.next, body: chunk.bytes }),
    );
  }

  private onSyncChunk(message: Message): void {
    const h = message.header;
    const chunk = readSyncChunk(message);
    const sync = this.sync;
    if (sync === null || !sync.accept(chunk.checkpoint.op, chunk.checkpoint.digest, chunk.position)) return;
    let applied: boolean;
    try {
      applied = this.storage.syncApply(message.body);
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      this.diskFull(error);
      this.sync = null; // started again once there is space (maybeStartSync)
      return;
    }
    if (!applied) {
      this.env.log("warn", `replica ${this.replica}: state sync chunk from ${h.replica} does not parse: restarting the sync`);
      this.storage.syncBegin(sync.target);
      sync.restart();
      return;
    }
    if (sync.applied(chunk.next) === "request_next") {
      this.requestSyncChunk();
      return;
    }
    this.finishSync();
  }

  private finishSync(): void {
    const sync = this.sync;
    assert(sync !== null, () => `replica ${this.replica}: finishing a sync that is not under way`);
    const received = this.storage.syncFinish(this.config.clients_max);
    if (received === null || !sync.verifies(received)) {
      this.env.log(
        "error",
        `replica ${this.replica}: state sync of checkpoint ${sync.target.op} from replica ${sync.peer} does not match its digest: retrying with another peer`,
      );
      this.storage.syncBegin(sync.target);
      sync.retryElsewhere();
      this.requestSyncChunk();
      return;
    }
    const { store, clients, checkpoint } = received;
    const anchor = checkpoint.anchor;
    try {
      this.storage.writeCheckpoint(checkpoint, store, clients);
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      this.diskFull(error);
      this.sync = null;
      return;
    }
    this.sync = null;
    this.store = store;
    this.clients = clients;
    if (this.leader !== null && sync.target.op > this.commit_min) this.leader.skippedExecution();
    this.commit_min = sync.target.op;
    this.commit_min_checksum = sync.target.checksum;
    this.commit_min_header = anchor;
    if (this.commit_max < this.commit_min) this.commit_max = this.commit_min;
    if (this.op < this.commit_min) this.op = this.commit_min;
    this.journal.setHeader(anchor);
    this.chain.applyViewHeaders();
    this.durable.synced(sync.target, checkpoint.previous);
    this.chain.trimUnchained();
    this.env.log("info", `replica ${this.replica}: state sync done at checkpoint ${sync.target.op}`);
    if (this.status !== "recovering") this.writeState();
    this.executeCommitted();
    this.maybeFinishRecovering();
  }

  // ---------------------------------------------------------------------------------------------
  // View change

  /** Leaves the current view for `view`: on this replica's own timeout, on start_view_change from
   * f+1 others, or on a do_view_change/start_view_change for a higher view while changing views. */
  private startViewChange(view: number): void {
    assert(view > this.view || (view === this.view && this.status !== "normal"), "view change to an older view");
    if (this.status === "recovering") return;
    if (view > this.view) this.stats.view_changes += 1;
    this.status = "view_change";
    this.view = view;
    this.view_change = newViewChange(this.replica);
    this.svc_higher = new Map();
    this.start_view_pending = false;
    this.leader = null;
    this.sync = null;
    assert(!this.isActingPrimary(), "a replica changing views does not lead");
    assert(
      this.view === view && this.view_change !== null && this.log_view <= this.view,
      () => `replica ${this.replica}: left for view ${view} but holds view ${this.view}, log_view ${this.log_view}`,
    );
    this.timeout_normal.stop();
    this.timeout_heartbeat.stop();
    this.timeout_prepare.stop();
    this.timeout_view_change.start();
    this.timeout_view_change_resend.start();
    this.sendToOthers(this.makeStartViewChange());
    this.maybeSendDoViewChange();
  }

  /** start_view_change carries the sender's durable view (context): a replica that has made a
   * view durable can never come back below it. */
  private makeStartViewChange(): Message {
    return buildStartViewChange(this.envelope(this.view), { durable_view: Math.max(0, this.view_durable) });
  }

  private onStartViewChange(message: Message): void {
    const h = message.header;
    if (this.status === "blank" || this.status === "recovering" || h.view < this.view) return;
    if (this.status === "normal") {
      // RULE: a replica in normal status leaves its view only on its own timeout or when f+1
      // others want to; one replica that cannot hear the primary must not depose it.
      if (h.view <= this.view) return;
      const promised = readStartViewChange(message).durable_view;
      if (this.isPrimary() && promised > this.view && promised <= h.view) {
        // The sender made a higher view durable (it sent do_view_change in it, after a quorum had
        // agreed to leave the view before), so it can never rejoin this one: without a view change
        // it would stay out for good. One view change to that view brings it back.
        this.env.log(
          "info",
          `replica ${this.replica}: replica ${h.replica} has promised view ${promised} and cannot return to view ${this.view}: moving the cluster to view ${promised} so it can rejoin`,
        );
        this.startViewChange(promised);
        return;
      }
      let votes = this.svc_higher.get(h.view);
      if (votes === undefined) {
        votes = new Set();
        this.svc_higher.set(h.view, votes);
      }
      votes.add(h.replica);
      if (votes.size >= this.f + 1) this.startViewChange(h.view);
      return;
    }
    if (h.view > this.view) this.startViewChange(h.view);
    assert(
      this.view === h.view && this.view_change !== null,
      () => `replica ${this.replica}: counting a start_view_change for view ${h.view} while in view ${this.view} (${this.status})`,
    );
    this.view_change!.svc_from.add(h.replica);
    this.maybeSendDoViewChange();
  }

  private onViewChangeResend(): void {
    if (this.status !== "view_change") {
      this.timeout_view_change_resend.stop();
      return;
    }
    this.sendToOthers(this.makeStartViewChange());
    // The same do_view_change again: built from durable state when first sent, it stays true, while
    // one rebuilt now could count a prepare written since, not yet durable, as never held.
    const dvc = this.view_change!.dvc_message;
    if (dvc !== null && !this.isPrimary()) this.env.sendToReplica(primaryIndex(this.view, this.config.replica_count), dvc);
  }

  /** A stalled view change moves on to the next view, but only once a quorum agreed to leave the
   * current one: a replica cut off alone keeps its view instead of racing ahead of the cluster. */
  private onViewChangeTimeout(): void {
    if (this.status !== "view_change") {
      this.timeout_view_change.stop();
      return;
    }
    if (this.view_change!.svc_from.size >= this.quorum) {
      // Once per episode at info (a partition stalls every ~600 ms while it lasts); then debug.
      this.env.log(
        this.view_change_stalled ? "debug" : "info",
        `replica ${this.replica}: view change to ${this.view} stalled: trying view ${this.view + 1}${this.view_change_stalled ? "" : " (further stalls until a view is established are logged at debug)"}`,
      );
      this.view_change_stalled = true;
      this.startViewChange(this.view + 1);
    }
  }

  /** RULE (persist before you promise): do_view_change is sent only once this view is durable,
   * and is built only from durable state (nothing is left to flush). */
  private maybeSendDoViewChange(): void {
    const vc = this.view_change;
    if (vc === null || vc.dvc_sent || vc.svc_from.size < this.quorum) return;
    if (this.view_durable !== this.view) {
      if (this.durable.in_flight?.view !== this.view) this.writeState();
      if (this.promiseNeedsDurableView()) return;
    }
    if (this.storage.pending() && this.promiseNeedsDurableView()) return;
    // RULE (persist before you promise), asserted apart from the checks above.
    assert(
      this.view_durable === this.view || !this.promiseNeedsDurableView(),
      () => `replica ${this.replica}: do_view_change for view ${this.view} before the view is durable (${this.view_durable})`,
    );
    vc.dvc_sent = true;
    this.sendDoViewChange(vc);
  }

  private sendDoViewChange(vc: ViewChanging): void {
    assert(
      this.status === "view_change" && this.view_change === vc && vc.dvc_sent,
      () => `replica ${this.replica}: a do_view_change outside its view change`,
    );
    assert(this.log_view < this.view, () => `replica ${this.replica}: do_view_change for view ${this.view} with log_view ${this.log_view}`);
    const primary = primaryIndex(this.view, this.config.replica_count);
    const headers = this.chain.suffixHeaders();
    const presence = new Uint8Array(headers.length);
    headers.forEach((header, i) => {
      presence[i] =
        this.journal.hasDurable(header.op, header.checksum) || header.op <= this.commit_min
          ? presence_present
          : this.journal.isFaulty(header.op, header.checksum)
            ? presence_faulty
            : presence_absent;
    });
    const faulty_ops = this.damagedOps();
    // RULE (damage is per slot): only the ops whose own slot is damaged are withheld from nacks.
    for (const op of faulty_ops)
      assert(this.journal.isDamaged(op), () => `replica ${this.replica}: reports op ${op} faulty, but its journal slot is not damaged`);
    const dvc: DoViewChange = { log_view: this.log_view, op: this.op, commit: this.commit_max, headers, presence, faulty_ops };
    this.observer?.doViewChange(this.replica, this.view, dvc);
    if (primary === this.replica) {
      vc.dvc_from.set(this.replica, dvc);
      this.maybeStartView();
      return;
    }
    vc.dvc_message = buildDoViewChange(this.envelope(this.view), dvc);
    this.env.sendToReplica(primary, vc.dvc_message);
  }

  private onDoViewChange(message: Message): void {
    const h = message.header;
    if (this.status === "blank" || this.status === "recovering" || h.view < this.view) return;
    if (primaryIndex(h.view, this.config.replica_count) !== this.replica) return;
    const body = readDoViewChange(message);
    if (typeof body === "string") return this.drop(message, body);
    // Its log was normal in an earlier view than the one it votes for.
    if (h.log_view >= h.view)
      return this.violation(h.replica, h.command, `log_view ${h.log_view} not below its view ${h.view}`, h.checksum);
    const { headers, presence, faulty_ops } = body;
    if (h.view === this.view && this.status === "normal") {
      // It missed the start_view: resend it.
      this.sendStartView(h.replica);
      return;
    }
    if (h.view > this.view) this.startViewChange(h.view);
    const vc = this.view_change;
    if (vc === null) return;
    assert(
      this.view === h.view && this.status === "view_change",
      () => `replica ${this.replica}: counting a do_view_change for view ${h.view} while in view ${this.view}`,
    );
    // A do_view_change implies its sender voted to leave the old view.
    vc.svc_from.add(h.replica);
    // A commit number above the sender's own head is none it could know (its log holds every op it
    // learned committed): believe it only up to there.
    assert(h.replica !== this.replica, "a do_view_change from itself arrives as a message");
    vc.dvc_from.set(h.replica, {
      log_view: h.log_view,
      op: h.op,
      commit: Math.min(h.commit, h.op),
      headers,
      presence,
      faulty_ops,
      checksum: h.checksum,
    });
    this.maybeSendDoViewChange();
    this.maybeStartView();
  }

  /** With do_view_change from a quorum (this replica's own included), the new primary takes the
   * log with the highest (log_view, op): that log holds every committed op. */
  private maybeStartView(): void {
    const vc = this.view_change;
    if (vc === null || this.start_view_pending || !vc.dvc_from.has(this.replica)) return;
    if (vc.dvc_from.size < this.quorum) return;
    let commit = this.commit_max;
    for (const dvc of vc.dvc_from.values()) commit = Math.max(commit, dvc.commit);
    const dvcs = [...vc.dvc_from.values()];
    const best = this.chooseLog(dvcs);
    if (best.op < commit && dvcs.some((dvc) => dvc.faulty_ops.some((op) => op > best.op && op <= commit))) {
      // A committed op above the chosen log is damaged where this quorum holds it: only a
      // replica not heard from yet can supply it.
      return;
    }
    if (best.op < commit) {
      // Committed ops are in every later view's log, so among honest senders the chosen log is
      // never below a commit number: one of them is forged (or buggy), and its vote is not
      // counted. If this replica's own number is above it, the chosen log is the lie; otherwise
      // the senders claiming more than it holds are.
      const own = vc.dvc_from.get(this.replica)!;
      for (const [from, dvc] of vc.dvc_from) {
        const liar = own.commit > best.op ? dvc === best : dvc.commit > best.op;
        if (!liar) continue;
        assert(
          from !== this.replica,
          () => `replica ${this.replica}: its own log (op ${dvc.op}) is below what it committed (${dvc.commit})`,
        );
        this.violation(
          from,
          Command.do_view_change,
          dvc === best
            ? `a log ending at op ${best.op} (log_view ${best.log_view}) below this replica's commit ${own.commit}`
            : `commit ${dvc.commit} above the chosen log's op ${best.op}`,
          dvc.checksum ?? null,
        );
        vc.dvc_from.delete(from);
      }
      return;
    }
    assert(
      best.op >= this.commit_min,
      () => `replica ${this.replica}: the chosen log (op ${best.op}) is shorter than what it executed (${this.commit_min})`,
    );
    const decision = this.decideSuffix(best, dvcs, commit);
    if (decision === "wait") {
      if (vc.dvc_from.size === this.config.replica_count) {
        this.env.log(
          "warn",
          `replica ${this.replica}: view ${this.view}: an uncommitted op of the chosen log is neither held intact by any replica nor known never to have committed (every copy is damaged): waiting for a replica to repair it`,
        );
      }
      return;
    }
    assertSuffixHeld(best, dvcs, commit, decision, this.quorum, () => `replica ${this.replica}: view ${this.view}`);
    if (decision.head < best.op) {
      this.env.log(
        "info",
        `replica ${this.replica}: a quorum never had op ${decision.head + 1} of the chosen log: it was not committed; discarding ops ${decision.head + 1}..${best.op}`,
      );
    }
    this.chain.installLog(decision.headers, decision.head);
    this.commit_max = Math.max(commit, this.commit_min);
    this.commit_max_checksum = null;
    assert(
      this.op >= this.commit_max && this.commit_max >= this.commit_min,
      () =>
        `replica ${this.replica}: starting view ${this.view} with op ${this.op}, commit ${this.commit_max}, executed ${this.commit_min}`,
    );
    this.log_view = this.view;
    this.start_view_pending = true;
    this.env.log("info", `replica ${this.replica}: starting view ${this.view} as primary with op ${this.op}, commit ${this.commit_max}`);
    this.writeState();
  }

  /** The view's log above the commit (lib/vsr/view_change.ts; the simulator's tests override
   * this to prove a wrong decision is caught). */
  protected decideSuffix(best: DoViewChange, dvcs: DoViewChange[], commit: number): SuffixDecision {
    return decideSuffix(best, dvcs, commit, this.quorum, this.commit_min);
  }

  /** The log with the highest (log_view, op) (the simulator's tests override this). */
  protected chooseLog(dvcs: DoViewChange[]): DoViewChange {
    return chooseLog(dvcs);
  }

  /** RULE (persist before you promise): start_view goes out once log_view and its suffix are
   * durable. */
  private maybeFinishStartView(): void {
    if (!this.start_view_pending || this.log_view_durable !== this.view || this.view_durable !== this.view) return;
    // The pipeline needs every header of the uncommitted suffix; repair fetches missing ones.
    for (let op = this.commit_max + 1; op <= this.op; op++) {
      if (this.journal.header(op) === null) return;
    }
    this.start_view_pending = false;
    this.status = "normal";
    this.view_change = null;
    this.view_change_stalled = false;
    this.observer?.primary(this.replica, this.view);
    const pipeline: PipelineEntry[] = [];
    for (let op = this.commit_max + 1; op <= this.op; op++) {
      const h = this.journal.header(op)!;
      const oks = new Set<number>();
      if (op <= this.opPrepareOkMax() && this.journal.hasDurable(op, h.checksum)) oks.add(this.replica);
      pipeline.push({ op, checksum: h.checksum, message: null, oks });
    }
    this.lead(pipeline);
    assert(
      this.leader !== null && this.view_change === null && this.log_view === this.view,
      () =>
        `replica ${this.replica}: leading view ${this.view} without a leader's state, or still changing views (log_view ${this.log_view})`,
    );
    assert(
      this.op === this.commit_max + pipeline.length,
      () =>
        `replica ${this.replica}: leading view ${this.view} with op ${this.op} but ${pipeline.length} ops in flight above commit ${this.commit_max}`,
    );
    this.timeout_view_change.stop();
    this.timeout_view_change_resend.stop();
    this.timeout_heartbeat.start();
    this.timeout_prepare.start();
    this.sendStartView(null);
    this.onPrepareTimeout();
    this.repair();
    this.commitPipeline();
  }

  private sendStartView(to: number | null, nonce = 0n): void {
    // A start_view vouches for this view's log: only once the view and the log are durable, and
    // only in a formed cluster (a forged request_start_view once got one out of a replica whose
    // format was not yet durable).
    if (!this.formed || this.view_durable !== this.view || this.log_view_durable !== this.view) return;
    assert(
      this.isPrimary() && this.log_view === this.view,
      () =>
        `replica ${this.replica}: a start_view for view ${this.view} from a replica that is not its primary (log_view ${this.log_view})`,
    );
    const message = buildStartView(this.envelope(this.view), {
      op: this.op,
      commit_max: this.commit_max,
      checkpoint_op: this.checkpoint.op,
      nonce,
      headers: this.chain.suffixHeaders(),
    });
    if (to === null) this.sendToOthers(message);
    else this.env.sendToReplica(to, message);
  }

  private onStartView(message: Message): void {
    const h = message.header;
    if (this.status === "blank" || (h.view < this.view && !this.mayJoinView(h.view))) return;
    if (h.replica !== primaryIndex(h.view, this.config.replica_count)) return;
    if (h.view === this.view && this.status === "normal") return;
    const sv = readStartView(message);
    if (typeof sv === "string") return this.drop(message, sv);
    const headers = sv.headers;
    if (this.status === "recovering" && h.view < this.view) return;
    // RULE (recovery): a replica that lost its state installs only a start_view answering its own
    // request, so its log is the primary's as it is now. A start_view sent earlier (delayed,
    // replayed) is a prefix of that view's log, and a replica that acknowledged ops of that view
    // before it lost them would install a log without them, then offer it in a view change.
    if (this.recovering !== null && !this.recovering.answers(sv.nonce)) return;
    if (h.op < this.commit_min) return; // a stale start_view: the view's log holds every committed op
    // Every later view's log holds what this replica executed: a log that names another prepare
    // at its last executed op is none an honest primary sends.
    const at_commit = headers.find((x) => x.op === this.commit_min);
    if (at_commit !== undefined && at_commit.checksum !== this.commit_min_checksum) {
      return this.violation(
        h.replica,
        h.command,
        `a log with another prepare at op ${this.commit_min}, which this replica executed`,
        h.checksum,
      );
    }
    // A start_view of the view this replica's log is already in (resent, delayed or replayed) is a
    // prefix of that log, which only grows within its view: it must not cut the ops this replica
    // has acknowledged since.
    const same_log = this.log_view === h.view && this.op >= h.op && this.status !== "recovering";
    this.view = h.view;
    this.log_view = h.view;
    this.view_change = null;
    this.svc_higher = new Map();
    this.leader = null;
    this.start_view_pending = false;
    if (same_log) {
      for (const header of headers) {
        if (header.op > this.commit_min && header.op <= this.commit_min + this.config.journal_slot_count) this.journal.setHeader(header);
      }
      this.chain.trimUnchained();
    } else {
      this.chain.installLog(headers, h.op);
    }
    // The new view's log is installed up to h.op: a commit number above it is none of its.
    this.commit_hint = h.commit;
    if (Math.min(h.commit, h.op) > this.commit_max) {
      this.commit_max = Math.min(h.commit, h.op);
      this.commit_max_checksum = null;
    }
    this.primary_checkpoint_op = h.checkpoint_op;
    this.timeout_view_change.stop();
    this.timeout_view_change_resend.stop();
    if (this.recovering !== null) {
      this.recovering.installed(h.view, h.op);
      this.timeout_normal.start();
      this.maybeStartSync();
      this.repair();
      this.maybeFinishRecovering();
      return;
    }
    this.enterNormalBackup();
    assert(
      this.view === h.view && this.log_view === h.view,
      () => `replica ${this.replica}: installed view ${h.view} as view ${this.view}, log_view ${this.log_view}`,
    );
    assert(
      this.view_change === null && this.leader === null && this.status === "normal",
      () => `replica ${this.replica}: installed view ${h.view} but still holds view change or leader state`,
    );
    this.writeState();
    this.acks_after_start_view = h.commit;
    this.env.log(
      "info",
      `replica ${this.replica}: installed view ${this.view} from primary ${h.replica}: op ${this.op}, commit ${this.commit_max}`,
    );
    this.maybeStartSync();
    this.repair();
    this.executeCommitted();
  }

  private enterNormalBackup(): void {
    assert(
      !this.isPrimary() && this.leader === null && !this.start_view_pending,
      () => `replica ${this.replica}: entering view ${this.view} as a backup while its primary`,
    );
    this.status = "normal";
    this.view_change_stalled = false;
    this.timeout_normal.start();
    this.timeout_heartbeat.stop();
    this.timeout_prepare.stop();
    this.timeout_view_change.stop();
    this.timeout_view_change_resend.stop();
    assert(
      !this.isActingPrimary() && this.leader === null,
      () => `replica ${this.replica}: a backup of view ${this.view} holding a leader's state`,
    );
  }

  /**
   * Whether this replica, changing views, may join the lower view v that it learns is alive: it
   * left its old view on its own timeout or votes, but promised nothing beyond view_durable (no
   * do_view_change or start_view is sent before the view is durable), so joining any view from
   * view_durable on breaks no promise, and spares a cluster that never followed it from waiting
   * for a view change it does not need.
   */
  private mayJoinView(v: number): boolean {
    return this.status === "view_change" && v >= this.view_durable && v >= this.log_view && v < this.view;
  }

  private requestStartView(view?: number): void {
    const v = view ?? this.view;
    const primary = primaryIndex(v, this.config.replica_count);
    if (primary === this.replica) return;
    let nonce = 0n;
    if (this.recovering !== null) {
      // Odd, so never 0: a start_view echoing 0 answers nobody's recovery.
      nonce = this.env.random.u64() | 1n;
      this.recovering.asked(nonce);
    }
    this.env.sendToReplica(primary, buildRequestStartView(this.envelope(this.view), { view: v, nonce }));
  }

  private onRequestStartView(message: Message): void {
    const h = message.header;
    if (h.view === this.view && this.isActingPrimary()) this.sendStartView(h.replica, readRequestStartView(message).nonce);
  }

  /** RULE (lost disk): a recovering replica rejoins once Recovering.step says it is ready; until
   * its view, installed log and synced checkpoint are durable it persists them, since a restart
   * must reload every op it will acknowledge (opPrepareOkMax). What it persists never names a
   * checkpoint older than the floor (retryCheckpoint takes one if a write failed). */
  private maybeFinishRecovering(): void {
    const recovering = this.recovering;
    if (recovering === null) return;
    const step = recovering.step({
      syncing: this.sync !== null,
      view: this.view,
      commit_min: this.commit_min,
      checkpoint_interval_ops: this.config.checkpoint_interval_ops,
      primary_checkpoint_op: this.primary_checkpoint_op,
      hasPrepare: (op) => {
        const h = this.journal.header(op);
        return h !== null && this.journal.hasPrepare(op, h.checksum);
      },
      checkpoint_op: (this.durable.pending ?? this.checkpoint).op,
      view_durable: this.view_durable,
      log_view_durable: this.log_view_durable,
      checkpointToPersist: () => this.durable.pending !== null && this.recoveryPersists(),
      ioPending: () => this.storage.pending(),
    });
    if (step === "not_durable") {
      if (this.durable.in_flight === null) this.writeState();
      return;
    }
    if (step !== "ready") return;
    // RULE, asserted apart from the condition above: what it synced or took is durable before it
    // acknowledges anything.
    assert(
      this.durable.pending === null,
      () => `replica ${this.replica}: rejoining before its synced checkpoint ${this.durable.pending?.op} is durable`,
    );
    this.env.log("info", `replica ${this.replica}: recovered: caught up to op ${recovering.op} in view ${this.view}; acknowledging again`);
    this.leaveRecovering();
    for (let op = this.commit_min + 1; op <= this.op; op++) this.sendPrepareOk(op);
    this.executeCommitted();
  }

  // ---------------------------------------------------------------------------------------------
  // Repair: missing or damaged prepares are fetched from peers by (op, checksum)

  private repair(): void {
    if (this.status === "blank" || (this.status === "view_change" && !this.start_view_pending)) return;
    if (this.sync !== null) {
      // A stalled sync asks the next peer (the one asked may have moved past this checkpoint);
      // when no peer answers, the cluster has moved on: start over from a newer checkpoint, or
      // repair for a while (SyncTargets.afterStall).
      const stall = this.sync.repairTick();
      if (stall === "give_up") {
        this.env.log("info", `replica ${this.replica}: no peer serves checkpoint ${this.sync.target.op} any more: syncing a newer one`);
        const stalled = this.sync.target;
        this.sync = null;
        const next = this.sync_targets.afterStall(stalled, this.view, this.commit_min, this.commitKnown(), this.ticks);
        if (next !== null) this.beginSync(next);
        return;
      }
      if (stall === "ask_next_peer") this.requestSyncChunk();
      return;
    }
    if (this.recovering !== null && this.recovering.view !== this.view) {
      this.requestStartView();
      return;
    }
    if (this.status === "recovering") this.maybeFinishRecovering();
    this.repairValues();
    this.maybeStartSync();
    if (!this.isPrimary() && this.commitKnown() > this.op) {
      this.requestHeaders(this.op + 1, Math.min(this.commitKnown(), this.commit_min + this.config.journal_slot_count));
    }
    const plan = planRepair(this.journal, this.commit_min, Math.min(this.op, this.opJournalMax()), repair_requests_max, view_headers_max);
    for (const { op, checksum } of plan.prepares) this.requestPrepare(op, checksum);
    if (plan.headers !== null) this.requestHeaders(plan.headers.op_min, plan.headers.op_max);
  }

  private requestPrepare(op: number, checksum_: bigint): void {
    assert(op > this.commit_min, () => `replica ${this.replica}: repairing op ${op}, which it executed`);
    this.stats.repairs_requested += 1;
    this.env.sendToReplica(this.repairPeer(), buildRequestPrepare(this.envelope(this.view), { op, checksum: checksum_ }));
  }

  /** Backups ask the primary first and a random peer otherwise; the primary asks a random peer. */
  private repairPeer(): number {
    const primary = primaryIndex(this.view, this.config.replica_count);
    if (primary !== this.replica && this.env.random.chance(0.5)) return primary;
    let peer = this.env.random.int(this.config.replica_count - 1);
    if (peer >= this.replica) peer += 1;
    // (A lone replica has no peer: what it asks for goes nowhere, and only its own disk can help.)
    assert(
      this.config.replica_count === 1 || (peer !== this.replica && peer < this.config.replica_count),
      () => `replica ${this.replica}: repair peer ${peer}`,
    );
    return peer;
  }

  private requestHeaders(op_min: number, op_max: number): void {
    assert(
      op_min >= 0 && op_max - op_min <= this.config.journal_slot_count,
      () => `replica ${this.replica}: asking for headers ${op_min}..${op_max}`,
    );
    if (op_max < op_min || this.config.replica_count === 1) return;
    const request = buildRequestHeaders(this.envelope(this.view), { op_min, op_max });
    const primary = primaryIndex(this.view, this.config.replica_count);
    this.env.sendToReplica(primary !== this.replica ? primary : this.repairPeer(), request);
  }

  /** Serves any prepare storage holds with that exact (op, checksum), whether or not this
   * replica's log holds it (a copy of an executed op the log did not pick at open still serves a
   * peer that needs it): the requester verifies what it receives by its checksum. */
  private onRequestPrepare(message: Message): void {
    const h = message.header;
    const { op, checksum } = readRequestPrepare(message);
    const prepare = this.storage.readPrepare(op, checksum);
    if (prepare === null) {
      // Damaged since it was written: this replica repairs it too.
      if (this.journal.hasPrepare(op, checksum)) this.journal.damaged(this.journal.header(op)!);
      return;
    }
    this.env.sendToReplica(h.replica, prepare);
  }

  private onRequestHeaders(message: Message): void {
    const h = message.header;
    if (this.status === "blank") return;
    const headers = this.journal.range(Math.max(h.commit, h.op - view_headers_max + 1), Math.min(h.op, this.op));
    if (headers.length === 0) return;
    // These come from the primary of this view, in normal status: canonical.
    const canonical = this.isActingPrimary();
    this.env.sendToReplica(
      h.replica,
      buildHeaders(this.envelope(this.view), { op: this.op, commit_max: this.commit_max, canonical, headers }),
    );
  }

  private onHeaders(message: Message): void {
    if (this.status !== "normal" && this.status !== "recovering" && !this.start_view_pending) return;
    if (!this.chain.acceptHeaders(message)) return;
    // The repair timer asks for what is still missing; answering every headers message with a
    // new round of requests would let two replicas amplify each other's traffic.
    if (this.start_view_pending) this.maybeFinishStartView();
    this.executeCommitted();
  }

  // ---------------------------------------------------------------------------------------------
  // Values damaged on disk are fetched again from peers

  /** Writes a value (compacted or repaired) to the head segment and points the index at it.
   * False when the disk is full: the replica has then gone to no_space and the caller stops. */
  private relocateValue(key: string, value: Uint8Array): boolean {
    try {
      this.store.relocate(key, this.storage.writeValue(value));
      return true;
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      this.diskFull(error);
      return false;
    }
  }

  /** Reads a value (verified against its checksum); a damaged one is queued for repair, and a
   * read of it is answered `unavailable` (the client retries). */
  private readValue(key: string, entry: ObjectEntry): Uint8Array | null {
    const value = this.storage.readValue(entry);
    if (value !== null) return value;
    const request = this.value_repairs.damaged(key, entry);
    if (request !== null) {
      this.env.log("warn", `replica ${this.replica}: value of version ${entry.version} is damaged on disk: repairing it from a peer`);
      this.requestValue(request);
    }
    return null;
  }

  private requestValue(request: ValueRequest): void {
    const message = buildRequestValue(this.envelope(this.view), { version: request.version, checksum: request.checksum, key: request.key });
    this.env.sendToReplica(valueRepairPeer(this.replica, this.config.replica_count, this.env.random), message);
  }

  private onRequestValue(message: Message): void {
    const h = message.header;
    if (this.status === "blank") return;
    const request = readRequestValue(message);
    if (typeof request === "string") return; // silently, as always: a repair request is no claim
    const { key } = request;
    const entry = this.store.get(key);
    if (entry === undefined || entry.version !== request.version || entry.checksum !== request.checksum) return;
    const value = this.storage.readValue(entry);
    if (value === null) return;
    this.env.sendToReplica(
      h.replica,
      buildValue(this.envelope(this.view), { version: entry.version, checksum: entry.checksum, key, value }),
    );
  }

  private onValue(message: Message): void {
    const h = message.header;
    const repaired = readValue(message);
    if (typeof repaired === "string") return this.drop(message, repaired);
    const { key, value } = repaired;
    const verdict = this.value_repairs.verdict(key, repaired.version, repaired.checksum, value, this.store.get(key));
    if (verdict === "unwanted") return;
    if (verdict === "mismatch") return this.drop(message, "repaired value does not match its checksum");
    if (!this.relocateValue(key, value)) return;
    this.value_repairs.repaired(key);
    this.env.log("info", `replica ${this.replica}: repaired a damaged value (version ${h.op}) from replica ${h.replica}`);
  }

  /** Retries value repairs whose answer was lost; forgets those whose key has moved on. */
  private repairValues(): void {
    for (const request of this.value_repairs.outstanding(this.store)) this.requestValue(request);
  }

  // ---------------------------------------------------------------------------------------------
  // Helpers

  private sendToOthers(message: Message): void {
    // Relayed prepares keep their primary's envelope; everything else this replica sends is its own.
    assert(
      message.header.replica === this.replica || message.header.command === Command.prepare,
      () => `replica ${this.replica}: broadcasting replica ${message.header.replica}'s ${Command[message.header.command]}`,
    );
    for (let r = 0; r < this.config.replica_count; r++) {
      if (r !== this.replica) this.env.sendToReplica(r, message);
    }
  }

  /**
   * The replica's invariants (TigerBeetle style), checked by the simulator after every event so
   * a broken one stops the run at the step that broke it. Cheap enough for that; never called on
   * the hot path in production.
   */
  invariants(): void {
    if (this.commit_min > this.commit_max) this.broken(`commit_min ${this.commit_min} > commit_max ${this.commit_max}`);
    if (this.commit_min > this.op) this.broken(`commit_min ${this.commit_min} > op ${this.op}`);
    if (this.log_view > this.view) this.broken(`log_view ${this.log_view} > view`);
    if (this.view_durable > this.view || this.log_view_durable > Math.max(this.view_durable, 0))
      this.broken(`durable view ${this.view_durable}/${this.log_view_durable} ahead of view`);
    this.durable.invariants(this.status === "recovering");
    this.chain.invariants();
    if (this.status !== "recovering" && this.status !== "blank") {
      if (this.checkpoint.op > this.commit_min)
        this.broken(`durable checkpoint ${this.checkpoint.op} above what it executed (${this.commit_min})`);
      if (this.log_view_durable > this.log_view) this.broken(`durable log_view ${this.log_view_durable} above log_view ${this.log_view}`);
    }
    if (this.status === "normal" && this.log_view !== this.view) this.broken(`normal with log_view ${this.log_view}`);
    if (this.sync !== null && this.status !== "normal" && this.status !== "recovering")
      this.broken("state sync outside normal or recovering");
    if (this.commit_min_header.op !== this.commit_min || this.commit_min_header.checksum !== this.commit_min_checksum)
      this.broken(`the header it executed last is not op ${this.commit_min}`);
    const anchor = this.journal.header(this.commit_min);
    if (anchor !== null && anchor.checksum !== this.commit_min_checksum)
      this.broken(`journal op ${this.commit_min} does not match what it executed there`);
    if ((this.leader !== null) !== this.isActingPrimary())
      this.broken(this.leader === null ? "acting as primary without a leader's state" : "a leader's state while not acting as primary");
    if ((this.view_change !== null) !== (this.status === "view_change"))
      this.broken(this.view_change === null ? "changing views without view change state" : "view change state outside a view change");
    if ((this.recovering !== null) !== (this.status === "recovering"))
      this.broken(this.recovering === null ? "recovering without recovery state" : "recovery state outside recovering");
    if (this.leader !== null) {
      const at = {
        op: this.op,
        commit_min: this.commit_min,
        commit_max: this.commit_max,
        op_prepare_ok_max: this.opPrepareOkMax(),
        formed: this.formed,
        checksumAt: (op: number) => this.journal.header(op)?.checksum ?? null,
      };
      this.leader.invariants(at, (what) => this.broken(what));
    }
    // The window checks cost a pass over the journal: only when the journal or the head moved.
    const mark = this.journal.mutations + this.op * 4096 + this.commit_min;
    if (mark === this.invariants_mark) return;
    this.invariants_mark = mark;
    for (let op = this.op + 1; op <= this.commit_min + this.config.journal_slot_count; op++) {
      if (this.journal.header(op) !== null) this.broken(`a header at op ${op}, above its head ${this.op}`);
    }
    this.journal.invariants();
    this.clients.invariants();
  }

  private broken(what: string): never {
    throw new AssertionError(`replica ${this.replica} (${this.status}, view ${this.view}): ${what}`);
  }

  /** A summary for status displays and the simulator. */
  describe(): {
    status: Status;
    view: number;
    log_view: number;
    op: number;
    commit_min: number;
    commit_max: number;
    checkpoint: number;
    primary: boolean;
  } {
    return {
      status: this.status,
      view: this.view,
      log_view: this.log_view,
      op: this.op,
      commit_min: this.commit_min,
      commit_max: this.commit_max,
      checkpoint: this.checkpoint.op,
      primary: this.isActingPrimary(),
    };
  }
}

/** A random nonzero u32: a blank replica's candidate cluster incarnation. */
function randomIncarnation(random: Prng): number {
  return 1 + random.int(0xffff_fffe);
}
