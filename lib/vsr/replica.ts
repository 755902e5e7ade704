/**
 * A Viewstamped Replication Revisited replica (docs/DESIGN.md §3–§4), as a pure, synchronous state
 * machine: one event in (tick, message, flush), effects out (messages through Env, writes through
 * Storage). It never touches a socket, a file, a timer or a clock, so the simulator and the real
 * node run exactly this code, and a seed replays a run exactly.
 *
 * This file holds the state every phase shares, the role changes, the dispatch of messages and
 * timeouts, and the backup's normal path; each other phase is a part in its own file (the list is
 * in docs/DESIGN.md §2.1), so a rule below may be enforced in a part: search for "RULE".
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
import { Command, Header, type Message } from "../net/codec.ts";
import { journal_slot_count_max, largeObjectConfigProblem, value_size_max_default, type Config } from "../constants.ts";
import { ObjectStore } from "../store/object_store.ts";
import { ClientTable } from "./client_table.ts";
import { Journal } from "./journal.ts";
import { Formation } from "./formation.ts";
import { FormationDriver } from "./formation_driver.ts";
import { Timeout } from "./timeout.ts";
import { Leader, type PipelineEntry } from "./leader.ts";
import { Primary } from "./primary.ts";
import { restartLog } from "./journal_load.ts";
import { LogChain } from "./log_chain.ts";
import { RecentPrepares } from "./recent_prepares.ts";
import { chooseLog, decideSuffix, newViewChange, type DoViewChange, type SuffixDecision, type ViewChanging } from "./view_change.ts";
import { decodeBatch } from "./batch.ts";
import { isNoSpace, type CheckpointId, type Recovered, type Storage, type VsrState } from "./storage.ts";
import { rootPrepare, stateDigest } from "./root.ts";
import { DurableState } from "./durable_state.ts";
import { FlushEvents } from "./flush_events.ts";
import { StateSync, type SyncReceived } from "./state_sync_driver.ts";
import { describeOps } from "./window.ts";
import { ValueKeeper } from "./value_keeper.ts";
import { Repairer } from "./repairer.ts";
import { Recovering, recoveryFacts } from "./recovery.ts";
import { DiskSpace } from "./disk_space.ts";
import { admit } from "./admit.ts";
import { ViewInstall } from "./start_view.ts";
import { ViewChangeVotes } from "./view_change_votes.ts";
import { StateMachine, executedStateHolds, readFromStore } from "./state_machine.ts";
import { executedManifestBlocks, type ExecuteResult, type ManifestBlocksFound, type Readers } from "../store/execute.ts";
import type { UploadPart, WriteBlockRequest } from "../store/large_bodies.ts";
import type { Upload } from "../store/uploads.ts";
import type { Operation } from "../store/operations.ts";
import {
  newReplicaStats,
  primaryIndex,
  summarize,
  type Env,
  type ReplicaObserver,
  type ReplicaStats,
  type ReplicaSummary,
  type Status,
} from "./env.ts";
import { buildCommitOk, buildPrepareOk, buildReply, readCommit, type ClientReply, type Envelope } from "./messages.ts";

export class Replica {
  status: Status = "blank";
  view = 0;
  log_view = 0;
  /** What the superblock holds (RULE: persist before you promise): durable_state.ts. */
  get view_durable(): number {
    return this.durable.view;
  }
  get view_flushing(): number {
    return this.durable.view_flushing;
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
  commit_min_header: Header;
  /** The checkpoint a restart would load. */
  get checkpoint(): CheckpointId {
    return this.durable.checkpoint;
  }
  /** The durable view, log_view and checkpoint, the pending checkpoint, the superblock write in
   * flight, and the checkpoint ids prepares name. */
  readonly durable: DurableState;
  store: ObjectStore;
  clients: ClientTable;
  readonly journal: Journal;
  /** The flush events its driver delivers: begin, synced, completed (docs/STORAGE.md §10.9). */
  readonly flushes: FlushEvents;
  readonly quorum: number;
  readonly f: number;
  realtime = 0;
  readonly root: Header;

  ticks = 0;
  /** Prepares journaled and not yet executed, kept so a backup need not read them back. */
  readonly recent_prepares: RecentPrepares;

  // Role state: each object exists only in its role (checked by invariants()).
  /** Non-null exactly while isActingPrimary(). */
  leader: Leader | null = null;
  /** Non-null exactly while status is view_change. */
  view_change: ViewChanging | null = null;
  /** Non-null exactly while status is recovering (lib/vsr/recovery.ts). */
  recovering: Recovering | null = null;
  /** This replica, primary of `view`, has chosen the view's log but not yet sent start_view (it
   * waits for the log to be durable and complete): it does not lead yet. */
  start_view_pending = false;

  // Backup state.
  /** Checksum of the prepare at commit_max, from the primary's commit heartbeat. */
  commit_max_checksum: bigint | null = null;
  /** The commit number the primary of this view claimed last, believed nowhere but in choosing
   * what to repair or which checkpoint to fetch: commit_max (executed, persisted, sent in a
   * do_view_change) takes only what this replica's own log confirms (learnPrimaryCommit). Without
   * it, one forged commit frame with a huge number was persisted and wedged every view change. */
  commit_hint = 0;

  // Blank/recovering state.
  /** Probes, the incarnation, and whether the cluster formed: it decides, formation_driver acts. */
  readonly formation: Formation;
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

  readonly timeout_normal: Timeout;
  readonly timeout_heartbeat: Timeout;
  readonly timeout_view_change: Timeout;
  readonly timeout_view_change_resend: Timeout;
  readonly timeout_prepare: Timeout;
  private readonly timeout_repair: Timeout;

  /** Counters for status and metrics (env.ts). */
  readonly stats: ReplicaStats = newReplicaStats();

  observer: ReplicaObserver | null = null;

  /** The commit of a start_view just installed; its acknowledgements wait for it to be durable. */
  acks_after_start_view: number | null = null;
  /** The disk ran out of space: writes are refused (no_space), reads go on. */
  get no_space(): boolean {
    return this.space.full;
  }

  // The parts (docs/DESIGN.md §2.1): each owns its state and sees this replica through the host
  // interface its file declares. Members are public where a host names them; nothing outside
  // lib/vsr calls or writes them (only open, tick, onMessage, flush, describe, problem, stats,
  // invariants and the read-only state are for drivers and the simulator).
  /** The acting primary's normal operation, driving the Leader (primary.ts). */
  readonly primary: Primary;
  /** Requests on arrival, and committed batches applied to the store and the client table
   * (state_machine.ts). Status reads its read cache's counters. */
  readonly state_machine: StateMachine;
  /** The log's shape: hash chain, window, and the suffix log_view vouches for (log_chain.ts). */
  readonly chain: LogChain;
  /** Votes to leave a view, and the do_view_change sent once (view_change_votes.ts). */
  readonly votes: ViewChangeVotes;
  /** The new view's log and start_view: choosing, sending, installing, asking (start_view.ts). */
  readonly view_install: ViewInstall;
  /** What the log is missing, asked of peers, and peers' requests answered (repairer.ts). */
  readonly repairer: Repairer;
  /** Checkpoints taken and retried, the primary's checkpoint, and the transfer in progress (state_sync_driver.ts). */
  readonly state_sync: StateSync;
  /** Values at rest: scrubbing, compaction, repair of damaged values (value_keeper.ts). */
  readonly values: ValueKeeper;
  /** Whether the disk has room, probed while it has not (disk_space.ts). */
  private readonly space: DiskSpace;
  /** Sends and answers the probes and follows what formation decides (formation_driver.ts). */
  private readonly formation_driver: FormationDriver;
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
    const large_object_problem = largeObjectConfigProblem(config);
    assert(large_object_problem === null, () => `${large_object_problem}`);
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
    this.formation = new Formation(replica, n);
    this.flushes = new FlushEvents(this, () => this.onDurable());
    // A part's constructor never calls its host: each receives this half-built replica and first
    // uses it when the replica is opened, so their order here does not matter.
    this.space = new DiskSpace(replica, env, storage, config.batch_size_max);
    this.chain = new LogChain(this);
    this.values = new ValueKeeper(this);
    this.repairer = new Repairer(this);
    this.primary = new Primary(this);
    this.view_install = new ViewInstall(this);
    this.votes = new ViewChangeVotes(this);
    this.state_machine = new StateMachine(this);
    this.state_sync = new StateSync(this);
    this.formation_driver = new FormationDriver(this);
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
      this.formation_driver.openBlank();
      return;
    }
    this.loadState(recovered);
  }

  tick(realtime: number): void {
    this.realtime = realtime;
    this.ticks += 1;
    this.formation_driver.tick();
    if (this.timeout_normal.tick()) this.onNormalTimeout();
    if (this.timeout_heartbeat.tick() && this.primary.onHeartbeatTimeout() === "abdicate") this.startViewChange(this.view + 1);
    if (this.timeout_view_change.tick() && !this.votes.onViewChangeTimeout()) this.timeout_view_change.stop();
    if (this.timeout_view_change_resend.tick() && !this.votes.onViewChangeResend()) this.timeout_view_change_resend.stop();
    if (this.timeout_prepare.tick()) this.primary.onPrepareTimeout();
    if (this.timeout_repair.tick()) this.repair();
    this.primary.housekeeping();
    this.checkSpace();
    this.state_sync.retryCheckpoint();
    this.values.compact(
      this.ticks,
      !this.no_space && !this.state_sync.syncing && (this.status === "normal" || this.status === "recovering"),
    );
    this.scrub();
    // Timeouts change roles: the role objects must still match the status they belong to.
    assert(
      (this.view_change !== null) === (this.status === "view_change") && (this.recovering !== null) === (this.status === "recovering"),
      () => `replica ${this.replica}: role state does not match status ${this.status} after a tick`,
    );
  }

  /** Verifies a few values at rest per tick (value_keeper.ts). Protected so a test can disable it. */
  protected scrub(): void {
    this.values.scrub(this.ticks, !this.no_space && !this.state_sync.syncing && this.status === "normal");
  }

  /** Primary of its view, in normal status, its start_view sent: it takes requests and reads. */
  isActingPrimary(): boolean {
    return this.status === "normal" && this.isPrimary() && !this.start_view_pending;
  }

  /** Starts leading this view with the given uncommitted suffix in flight: a fresh leader's state
   * (no request, read or acknowledgement of an earlier term carries over). */
  lead(pipeline: PipelineEntry[]): void {
    assert(
      this.isActingPrimary(),
      () => `replica ${this.replica}: leading view ${this.view} while ${this.status}${this.isPrimary() ? "" : " and not its primary"}`,
    );
    assert(pipeline.length === 0 || pipeline[0]!.op === this.commit_max + 1, "the pipeline starts after commit_max");
    const limits = { ...this.config, replica: this.replica, f: this.f, quorum: this.quorum };
    this.leader = new Leader(limits, pipeline, this.ticks, this.commit_min, this.commit_max);
  }

  isPrimary(): boolean {
    return primaryIndex(this.view, this.config.replica_count) === this.replica;
  }

  onMessage(message: Message): void {
    const h = message.header;
    const admission = admit(h, this.config, this.replica, this.incarnation);
    if (admission.kind === "drop") return this.drop(message, admission.why);
    if (admission.kind === "other_incarnation") return this.formation_driver.otherIncarnation(message);
    if (admission.kind === "violation") return this.violation(h.replica, h.command, admission.what, h.checksum);
    if (!this.formed && this.status === "normal" && this.formation_driver.provesFormed(message)) this.form();
    switch (h.command) {
      case Command.ping:
        return this.formation_driver.onPing(message);
      case Command.pong:
        return this.formation_driver.onPong(message);
      case Command.request:
        return this.onRequest(message);
      case Command.prepare:
        return this.onPrepare(message);
      case Command.prepare_ok:
        return this.primary.onPrepareOk(message);
      case Command.commit:
        return this.onCommit(message);
      case Command.commit_ok:
        if (this.primary.onCommitOk(message)) this.state_machine.serveReads();
        return;
      case Command.start_view_change:
        return this.votes.onStartViewChange(message);
      case Command.do_view_change:
        return this.votes.onDoViewChange(message);
      case Command.start_view:
        return this.view_install.onStartView(message);
      case Command.request_start_view:
        return this.view_install.onRequestStartView(message);
      case Command.request_headers:
        return this.repairer.onRequestHeaders(message);
      case Command.headers:
        return this.onHeaders(message);
      case Command.request_prepare:
        return this.repairer.onRequestPrepare(message);
      case Command.request_sync:
        return this.state_sync.onRequestSync(message);
      case Command.sync_chunk:
        return this.state_sync.onSyncChunk(message);
      case Command.request_snapshot:
        return this.state_sync.onRequestSnapshot(message);
      case Command.request_value:
        return this.values.onRequestValue(message);
      case Command.value:
        return this.values.onValue(message);
      case Command.request_block:
        return this.values.onRequestBlock(message);
      case Command.block:
        return this.values.onBlock(message);
      case Command.reply:
      case Command.request_status:
      case Command.status:
      case Command.snapshot_chunk:
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
  violation(from: number, command: Command, what: string, checksum: bigint | null): void {
    this.stats.protocol_violations += 1;
    this.stats.messages_dropped += 1;
    const text = `${Command[command] ?? command} from replica ${from}: ${what}`;
    this.env.log(
      "warn",
      `replica ${this.replica}: dropped ${text}; a forged frame or a bug: check what can reach this port, and report it if only replicas can`,
    );
    this.observer?.violation(this.replica, text, checksum);
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
      this.formation_driver.start();
    } else if (this.view === this.log_view) {
      if (this.isPrimary() && this.config.replica_count > 1) {
        // A restarted primary lost its pipeline and queues; a new view resolves the suffix.
        this.startViewChange(this.view + 1);
      } else if (this.isPrimary()) {
        this.status = "normal";
        this.start_view_pending = true;
        this.view_install.maybeFinishStartView();
      } else {
        this.enterNormalBackup();
      }
    } else {
      this.status = "view_change";
      this.view_change = newViewChange(this.replica);
      this.timeout_view_change.start();
      this.timeout_view_change_resend.start();
      this.sendToOthers(this.votes.makeStartViewChange());
    }
  }

  /**
   * A cluster is formed once every replica has formatted. Until then a formatted replica does
   * nothing that changes its state (no prepares, no view changes), so it stays pristine and a
   * replica whose formatting was delayed (a partition at birth) still sees a blank cluster and
   * formats too, instead of mistaking itself for a replica that lost its disk.
   */
  get formed(): boolean {
    return this.formation.formed;
  }

  /** Ops above those executed whose journal slot was found damaged: this replica cannot tell
   * whether it acknowledged them, so it never votes them away. */
  damagedOps(): number[] {
    return this.journal.damagedOps(this.commit_min, this.commit_min + this.config.journal_slot_count).filter((op) => {
      const h = this.journal.header(op);
      return h === null || !this.journal.hasDurable(op, h.checksum);
    });
  }

  /** Why this replica refuses writes, if it does (status, metrics). */
  problem(): string | null {
    if (this.no_space) return "disk full: refusing new writes until space is freed (reads, deletes and abort-upload still served)";
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
  enterRecovering(view: number, checkpoint_floor: number): void {
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
    this.view_install.requestStartView();
  }

  /** Caught up and durable: a normal backup again, which may acknowledge. */
  private leaveRecovering(): void {
    assert(
      this.status === "recovering" && this.recovering !== null && !this.state_sync.syncing,
      () => `replica ${this.replica}: leaving recovery from status ${this.status}`,
    );
    this.recovering = null;
    this.enterNormalBackup();
    assert((this.status as Status) === "normal" && !this.isActingPrimary(), "a recovered replica rejoins as a backup");
  }

  format(): void {
    this.env.log("info", `replica ${this.replica}: every replica reports a blank data directory: formatting a new cluster`);
    this.status = "normal";
    this.view = 0;
    this.log_view = 0;
    if (this.isPrimary()) this.lead([]);
    this.writeState();
    this.timeout_repair.start();
    if (this.config.replica_count === 1) this.form();
    else this.formation_driver.sendProbe();
  }

  form(): void {
    this.formation.form();
    this.formation_driver.stop();
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
      this.primary.prepareQueued();
    } else {
      this.timeout_normal.start();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Durability

  /** Queues a superblock write of the current VSR state. */
  writeState(): void {
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

  /** Called when a flush completed: its group is durable now (flush_events.ts). Protected for a
   * broken variant (tests/broken_variants.test.ts) that calls it too early. */
  protected onDurable(): void {
    const written = this.durable.flushed();
    if (written !== null) this.formation.durable(written.incarnation);
    const durable_ops = this.journal.flushed();
    if (this.status === "recovering") {
      this.maybeFinishRecovering();
      return;
    }
    if (this.status === "view_change") {
      this.votes.maybeSendDoViewChange();
      if (this.start_view_pending) this.view_install.maybeFinishStartView();
      return;
    }
    if (this.status !== "normal") return;
    if (this.isPrimary()) {
      this.primary.onDurable(durable_ops);
    } else if (this.acks_after_start_view !== null) {
      // Once the installed start_view is durable, acknowledge what the new primary has not seen
      // committed, in this view (ops this replica knows are committed included). A flush in
      // flight when it was installed completes first without it (docs/STORAGE.md §10.9): the
      // acknowledgements wait for the flush that has it.
      if (this.view_durable !== this.view || this.log_view_durable !== this.view) return;
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
    if (this.state_machine.onRequest(message)) this.primary.prepareQueued();
  }

  /**
   * RULE (a promise never outlives the memory behind it): the highest op this replica may
   * acknowledge (or count as its own copy, as primary). A restart reloads the durable checkpoint
   * and the journal window after it, ops (checkpoint, checkpoint + slots]; an acknowledged op
   * beyond it would be forgotten, and a view change could then discard a committed op
   * (TigerBeetle's op_prepare_ok_max). `checkpoint` is the durable one: a checkpoint taken or
   * synced counts only once the superblock naming it is flushed.
   */
  opPrepareOkMax(): number {
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

  /** f+1 (the simulator's tests override this to prove a smaller quorum is caught). */
  replicationQuorum(): number {
    return this.quorum;
  }

  // ---------------------------------------------------------------------------------------------
  // Linearizable reads

  /** The heartbeat round that confirms a read arriving now: the next one, sent after it arrived.
   * (The simulator's tests override this to prove a read confirmed by an earlier round is caught.) */
  readRound(): number {
    assert(this.leader !== null, () => `replica ${this.replica}: a read round asked of a replica not leading`);
    return this.leader.reads.round + 1;
  }

  /** Hooks broken variants override (tests/broken_variants.test.ts): a write_block answered on
   * arrival only when the executed state holds it; a manifest's blocks found in the executed state
   * only (LARGE_OBJECTS.md §6); a read answered from the executed state. */
  blockHeld(request: WriteBlockRequest): boolean {
    return executedStateHolds(this.store, request);
  }
  manifestBlocksReady(upload: Upload, parts: readonly UploadPart[]): ManifestBlocksFound {
    return executedManifestBlocks(this.store, upload, parts);
  }
  executeReadRequest(operation: Operation, body: Uint8Array, readers: Readers): ExecuteResult {
    return readFromStore(this.store, operation, body, readers);
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
      if (h.replica === primaryIndex(h.view, this.config.replica_count)) this.view_install.requestStartView(h.view);
      return;
    }
    if (h.view < this.view && this.view_install.mayJoinView(h.view) && h.replica === primaryIndex(h.view, this.config.replica_count)) {
      this.view_install.requestStartView(h.view);
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
  journalPrepare(message: Message): boolean {
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

  /** A write failed for lack of space (disk_space.ts). */
  diskFull(error: Error): void {
    this.space.filled(error);
  }

  /** While the disk is full: a primary abdicates (docs/STORAGE.md §12), so a backup with space
   * leads instead, but at most once per interval (disk_space.ts); once space is back, queued
   * requests are prepared. */
  private checkSpace(): void {
    if (!this.space.full) return;
    if (this.status === "normal" && this.isPrimary() && this.config.replica_count > 1 && this.space.abdicate()) {
      this.env.log("warn", `replica ${this.replica}: primary of view ${this.view} cannot write its journal (disk full): abdicating`);
      this.startViewChange(this.view + 1);
    }
    if (this.space.tick()) this.primary.prepareQueued();
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
  recoveryPersists(): boolean {
    return true;
  }

  /** RULE (persist before you promise): do_view_change waits for the view to be durable. (The
   * simulator's tests override this to prove a replica that does not wait is caught.) */
  promiseNeedsDurableView(): boolean {
    return true;
  }

  /** RULE: only a durable prepare may be acknowledged. */
  protected prepareOkReady(op: number, checksum_: bigint): boolean {
    return this.journal.hasDurable(op, checksum_);
  }

  private onCommit(message: Message): void {
    const h = message.header;
    if (this.status === "blank") return;
    if (
      h.view > this.view ||
      (h.view === this.view && this.status === "view_change") ||
      (h.view < this.view && this.view_install.mayJoinView(h.view))
    ) {
      this.view_install.requestStartView(h.view);
      return;
    }
    if (h.view < this.view && this.status === "recovering" && h.replica === primaryIndex(h.view, this.config.replica_count)) {
      // A recovering replica that promised a view the cluster never reached waits for a start_view
      // of it that would never come: start_view_change carries its durable view, and moves the
      // cluster there (onStartViewChange).
      this.env.sendToReplica(h.replica, this.votes.makeStartViewChange());
      return;
    }
    if (h.view < this.view || this.isPrimary()) return;
    if (this.status !== "normal" && this.status !== "recovering") return;
    const commit = readCommit(message);
    this.onPrimaryContact(h);
    this.learnPrimaryCommit(commit.commit_max, commit.commit_max, commit.commit_checksum);
    // The latest announcement counts (not the highest): a forged one is replaced by the next.
    if (commit.checkpoint.op > 0) this.state_sync.primaryAnnounced(h.view, commit.checkpoint);
    if (this.status === "normal" && this.view_durable === this.view) {
      this.env.sendToReplica(
        h.replica,
        buildCommitOk(this.envelope(this.view), { round: commit.round, nonce: commit.nonce, commit_max: this.commit_max }),
      );
    }
    if (commit.op > this.op && this.journal.header(this.op) !== null && this.status === "normal") {
      // The primary is ahead: its prepares were lost on the way. Learn the headers, then repair.
      this.repairer.requestHeaders(this.op + 1, Math.min(commit.op, this.commit_min + this.config.journal_slot_count));
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
    if (h.command === Command.commit) this.state_sync.primaryCheckpointIs(h.checkpoint_op);
    this.state_sync.maybeStart();
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
      this.view_install.requestStartView();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Execution

  /** Executes committed ops in order (state_machine.ts). */
  executeCommitted(): void {
    this.state_machine.executeCommitted();
  }

  sendReply(reply: ClientReply): void {
    this.env.sendToClient(reply.client, buildReply(this.envelope(this.view), { ...reply, commit: this.commit_max }));
  }

  /** The fields every message this replica sends carries (docs/PROTOCOL.md §4.2), in view. */
  envelope(view: number): Envelope {
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

  /** A synced checkpoint verified and its file written (durable with the next flush, before any
   * superblock names it): it becomes this replica's state, as if it had executed up to it. */
  installSynced(target: CheckpointId, received: SyncReceived): void {
    const { store, clients, checkpoint } = received;
    const anchor = checkpoint.anchor;
    assert(
      !this.state_sync.syncing && anchor.op === target.op && anchor.checksum === target.checksum,
      () => `replica ${this.replica}: synced checkpoint ${target.op} anchored at op ${anchor.op}, or installed mid-transfer`,
    );
    this.store = store;
    this.clients = clients;
    if (this.leader !== null && target.op > this.commit_min) this.leader.skippedExecution();
    this.commit_min = target.op;
    this.commit_min_checksum = target.checksum;
    this.commit_min_header = anchor;
    if (this.commit_max < this.commit_min) this.commit_max = this.commit_min;
    if (this.op < this.commit_min) this.op = this.commit_min;
    this.journal.setHeader(anchor);
    this.chain.applyViewHeaders();
    this.durable.synced(target, checkpoint.previous);
    this.chain.trimUnchained();
    this.env.log("info", `replica ${this.replica}: state sync done at checkpoint ${target.op}`);
    if (this.status !== "recovering") this.writeState();
    this.executeCommitted();
    this.maybeFinishRecovering();
  }

  // ---------------------------------------------------------------------------------------------
  // View change

  /** Leaves the current view for `view`: on this replica's own timeout, on start_view_change from
   * f+1 others, or on a do_view_change/start_view_change for a higher view while changing views. */
  startViewChange(view: number): void {
    assert(view > this.view || (view === this.view && this.status !== "normal"), "view change to an older view");
    if (this.status === "recovering") return;
    if (view > this.view) this.stats.view_changes += 1;
    this.status = "view_change";
    this.view = view;
    this.view_change = newViewChange(this.replica);
    this.leaveRole();
    this.state_sync.cancel();
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
    this.sendToOthers(this.votes.makeStartViewChange());
    this.votes.maybeSendDoViewChange();
  }

  /** The view's log above the commit (lib/vsr/view_change.ts; the simulator's tests override
   * this to prove a wrong decision is caught). */
  decideSuffix(best: DoViewChange, dvcs: DoViewChange[], commit: number): SuffixDecision {
    return decideSuffix(best, dvcs, commit, this.quorum, this.commit_min);
  }

  /** The log with the highest (log_view, op) (the simulator's tests override this). */
  chooseLog(dvcs: DoViewChange[]): DoViewChange {
    return chooseLog(dvcs);
  }

  /** What any change of view resets: no leader, no start_view pending, no votes for higher views
   * (they were for leaving the view this replica is leaving now). */
  private leaveRole(): void {
    this.votes.forgetHigherViews();
    this.start_view_pending = false;
    this.leader = null;
  }

  /** Takes view `view` and its log from a start_view (start_view.ts): it is no longer changing
   * views; it becomes a backup (enterNormalBackup) or, recovering, waits to catch up. */
  adoptView(view: number): void {
    assert(view >= this.view || this.status === "view_change", () => `replica ${this.replica}: adopting view ${view} below ${this.view}`);
    this.view = view;
    this.log_view = view;
    this.view_change = null;
    this.leaveRole();
    this.timeout_view_change.stop();
    this.timeout_view_change_resend.stop();
  }

  /** As the new view's primary, has chosen its log (start_view.ts): start_view waits until that
   * log is durable and complete (enterNormalPrimary). */
  awaitStartView(): void {
    assert(
      this.status === "view_change" && this.isPrimary() && this.view_change !== null && !this.start_view_pending,
      () => `replica ${this.replica}: choosing the log of view ${this.view} while ${this.status}`,
    );
    this.log_view = this.view;
    this.start_view_pending = true;
  }

  /** The new primary's log is durable and complete: it leaves the view change and leads, with the
   * uncommitted suffix as its pipeline. */
  enterNormalPrimary(pipeline: PipelineEntry[]): void {
    assert(
      this.start_view_pending && this.isPrimary() && this.log_view === this.view,
      () => `replica ${this.replica}: leading view ${this.view} without having chosen its log (log_view ${this.log_view})`,
    );
    this.start_view_pending = false;
    this.status = "normal";
    this.view_change = null;
    this.votes.viewEstablished();
    this.observer?.primary(this.replica, this.view);
    this.lead(pipeline);
    this.timeout_view_change.stop();
    this.timeout_view_change_resend.stop();
    this.timeout_heartbeat.start();
    this.timeout_prepare.start();
  }

  enterNormalBackup(): void {
    assert(
      !this.isPrimary() && this.leader === null && !this.start_view_pending,
      () => `replica ${this.replica}: entering view ${this.view} as a backup while its primary`,
    );
    this.status = "normal";
    this.votes.viewEstablished();
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

  /** RULE (lost disk): a recovering replica rejoins once Recovering.step says it is ready; until
   * its view, installed log and synced checkpoint are durable it persists them, since a restart
   * must reload every op it will acknowledge (opPrepareOkMax). What it persists never names a
   * checkpoint older than the floor (retryCheckpoint takes one if a write failed). */
  maybeFinishRecovering(): void {
    const recovering = this.recovering;
    if (recovering === null) return;
    const step = recovering.step(recoveryFacts(this));
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

  repair(): void {
    if (this.status === "blank" || (this.status === "view_change" && !this.start_view_pending)) return;
    if (this.state_sync.repairTick()) return;
    if (this.recovering !== null && this.recovering.view !== this.view) {
      this.view_install.requestStartView();
      return;
    }
    if (this.status === "recovering") this.maybeFinishRecovering();
    this.values.repairValues();
    this.state_sync.maybeStart();
    this.repairer.repair();
  }

  private onHeaders(message: Message): void {
    if (this.status !== "normal" && this.status !== "recovering" && !this.start_view_pending) return;
    if (!this.chain.acceptHeaders(message)) return;
    // The repair timer asks for what is still missing; answering every headers message with a
    // new round of requests would let two replicas amplify each other's traffic.
    if (this.start_view_pending) this.view_install.maybeFinishStartView();
    this.executeCommitted();
  }

  // ---------------------------------------------------------------------------------------------
  // Helpers

  sendToOthers(message: Message): void {
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
    if (this.view_flushing > this.view) this.broken(`superblock of view ${this.view_flushing} being flushed, ahead of view ${this.view}`);
    this.durable.invariants(this.status === "recovering");
    this.votes.invariants(this.broken);
    this.formation_driver.invariants();
    this.chain.invariants();
    if (this.status !== "recovering" && this.status !== "blank") {
      if (this.checkpoint.op > this.commit_min)
        this.broken(`durable checkpoint ${this.checkpoint.op} above what it executed (${this.commit_min})`);
      if (this.log_view_durable > this.log_view) this.broken(`durable log_view ${this.log_view_durable} above log_view ${this.log_view}`);
    }
    if (this.status === "normal" && this.log_view !== this.view) this.broken(`normal with log_view ${this.log_view}`);
    if (this.state_sync.syncing && this.status !== "normal" && this.status !== "recovering")
      this.broken("state sync outside normal or recovering");
    this.state_sync.invariants();
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
      this.leader.invariants(at, this.broken);
    }
    this.values.invariants();
    this.space.invariants();
    // The window checks cost a pass over the journal: only when the journal or the head moved.
    const mark = this.journal.mutations + this.op * 4096 + this.commit_min;
    if (mark === this.invariants_mark) return;
    this.invariants_mark = mark;
    const above_head = this.journal.invariants(this.op, this.commit_min + this.config.journal_slot_count);
    if (above_head !== -1) this.broken(`a header at op ${above_head}, above its head ${this.op}`);
    this.clients.invariants();
  }

  /** A field: the parts' invariants take it as their callback (no closure per check). */
  private readonly broken = (what: string): never => {
    throw new AssertionError(`replica ${this.replica} (${this.status}, view ${this.view}): ${what}`);
  };

  /** A summary for status displays and the simulator. */
  describe(): ReplicaSummary {
    return summarize(this);
  }
}
