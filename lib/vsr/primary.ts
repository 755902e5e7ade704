/**
 * The acting primary's normal operation: it batches queued requests into prepares, counts the
 * durable copies that commit them, resends what backups have not acknowledged, and sends the
 * commit heartbeat that keeps backups following and confirms linearizable reads.
 *
 * Its state is the Leader's (leader.ts), a role object the replica creates when it starts leading
 * and drops when it stops; this part drives it against the replica's log and numbers through a
 * narrow host. Role changes stay with the replica: where a step ends this primary's term
 * (abdication) or hands work back (reads to serve), it returns that decision instead of acting.
 */
import { assert } from "../util/assert.ts";
import type { Message } from "../net/codec.ts";
import { housekeeping_interval_ticks, type Config } from "../constants.ts";
import { encodeHousekeeping } from "../store/large_bodies.ts";
import { Operation, freesSpace } from "../store/operations.ts";
import type { ObjectStore } from "../store/object_store.ts";
import { encodeBatch } from "./batch.ts";
import type { DurableState } from "./durable_state.ts";
import type { Env, ReplicaObserver, Status } from "./env.ts";
import type { Journal } from "./journal.ts";
import type { Leader, QueuedRequest } from "./leader.ts";
import { buildCommit, buildPrepare, readCommitOk, readPrepareOk, type Envelope } from "./messages.ts";
import type { CheckpointId, Storage } from "./storage.ts";
import type { Timeout } from "./timeout.ts";

/** What the primary reads and changes of the replica (Replica passes itself). */
export interface PrimaryHost {
  readonly config: Pick<
    Config,
    "journal_slot_count" | "checkpoint_interval_ops" | "view_change_timeout_ticks" | "upload_abandon_ms" | "reclaim_nudge_bytes_min"
  >;
  readonly replica: number;
  readonly env: Pick<Env, "sendToReplica" | "random" | "log">;
  readonly storage: Pick<Storage, "readPrepare" | "pinnedDeadBytes">;
  readonly journal: Pick<Journal, "header" | "setHeader" | "hasDurable">;
  readonly durable: Pick<DurableState, "idFor">;
  /** Whether the replica's flush is in flight (a prepare cut now waits for the next group). */
  readonly flushes: { inFlight(): boolean };
  readonly observer: Pick<ReplicaObserver, "primary"> | null;
  readonly status: Status;
  readonly view: number;
  readonly log_view_durable: number;
  readonly checkpoint: CheckpointId;
  readonly formed: boolean;
  readonly no_space: boolean;
  readonly ticks: number;
  readonly realtime: number;
  /** Non-null exactly while the replica is the acting primary. */
  readonly leader: Leader | null;
  /** The executed state: its open uploads are what housekeeping expires; what it references is
   * what the nudge's dead bytes exclude. */
  readonly store: ObjectStore;
  readonly state_sync: { readonly syncing: boolean };
  op: number;
  readonly commit_min: number;
  readonly commit_min_checksum: bigint;
  commit_max: number;
  commit_max_checksum: bigint | null;
  readonly timeout_prepare: Readonly<Pick<Timeout, "running" | "start" | "stop">>;
  readonly timeout_heartbeat: Readonly<Pick<Timeout, "stop" | "reset">>;
  isPrimary(): boolean;
  isActingPrimary(): boolean;
  envelope(view: number): Envelope;
  sendToOthers(message: Message): void;
  journalPrepare(message: Message): boolean;
  executeCommitted(): void;
  replicationQuorum(): number;
  opPrepareOkMax(): number;
}

/** What the heartbeat timeout asks of the replica: nothing more, or a view change (abdication). */
export type HeartbeatOutcome = "abdicate" | "done";

export class Primary {
  /** The op at the last housekeeping tick: unchanged a second later, with nothing queued or in
   * flight, the cluster is idle. */
  private op_at_last_look = -1;
  /** The term (its Leader) the nudge's memory below belongs to. */
  private nudge_leader: Leader | null = null;
  /** Ops the idle nudge may still prepare; 0: not nudging. */
  private nudge_ops_left = 0;
  /** The last nudge ran out of ops: the next idle look records what it left. */
  private nudge_exhausted = false;
  /** The dead bytes the last nudge that ran out of ops left (Infinity: none since a client's
   * request). */
  private pinned_after_last_nudge = Infinity;
  /** What nudges could not lower: no nudge starts while the dead bytes are at most this (lowered
   * as bytes are freed). */
  private pinned_after_nudge = 0;

  constructor(private readonly host: PrimaryHost) {}

  /** The highest op this primary may prepare: it must not overwrite journal slots that the last
   * durable checkpoint still needs, and it keeps one checkpoint interval of history for peers. */
  opPrepareMax(): number {
    const c = this.host.config;
    const max = this.host.checkpoint.op + c.journal_slot_count - c.checkpoint_interval_ops;
    // The replica's constructor keeps two intervals and a pipeline in the journal.
    assert(
      max > this.host.checkpoint.op,
      () => `primary ${this.host.replica}: no op to prepare above checkpoint ${this.host.checkpoint.op}`,
    );
    return max;
  }

  /** Batches queued requests into prepares while the pipeline has room (no batching timers). */
  prepareQueued(): void {
    const host = this.host;
    const leader = host.leader;
    if (leader === null) return;
    assert(host.isActingPrimary(), () => `primary ${host.replica}: a leader's state while not acting as primary of view ${host.view}`);
    // A full disk still takes the few bytes of writes that free space (and the nudge's no-ops,
    // which let retention release what they free): batches of nothing else.
    const only = host.no_space ? freesSpace : null;
    // Group commit cuts prepares at flush boundaries. While a flush is in flight, whatever is
    // prepared waits for the next group anyway, so requests stay queued and become one prepare
    // when the flush completes (onDurable calls this), instead of one prepare per arrival: each
    // prepare costs a ring record, a message to every backup, their prepare_oks and a commit
    // step. The wait costs nothing on the primary's path (the group could not begin sooner) and
    // the backups get the prepare as the primary's flush of it begins. A queue that already fills
    // half a batch is cut at once: it saves little, and large bodies reach the backups sooner.
    while (
      (!host.flushes.inFlight() || leader.queueFillsBatch()) &&
      leader.canPrepare(only) &&
      host.op + 1 <= this.opPrepareMax() &&
      host.leader === leader &&
      host.log_view_durable === host.view &&
      host.formed &&
      this.checkpointIdFor(host.op + 1) !== null
    ) {
      this.preparePrimary(leader, leader.takeBatch(only));
    }
  }

  /**
   * Every housekeeping_interval_ticks, if an open upload is untouched for upload_abandon_ms by this
   * primary's clock, queues a housekeeping entry carrying that age (LARGE_OBJECTS.md §8). Execution
   * compares the age with the prepare's timestamp only, so every replica expires the same uploads;
   * a wrong clock makes the proposal early (it expires nothing) or late, never divergent.
   */
  housekeeping(): void {
    const host = this.host;
    const leader = host.leader;
    if (leader === null || !host.formed || host.state_sync.syncing) {
      this.nudge_ops_left = 0;
      return;
    }
    // A new term: what this replica's nudges could not lower when it last led says nothing of
    // what clients deleted under other primaries since (it saw none of their requests).
    if (leader !== this.nudge_leader) {
      this.nudge_leader = leader;
      this.stopNudge();
    }
    if (this.nudge_ops_left > 0) this.nudge(leader);
    if (host.ticks % housekeeping_interval_ticks !== 0) return;
    const idle = leader.queued === 0 && leader.pipeline.length === 0 && host.op === this.op_at_last_look;
    this.op_at_last_look = host.op;
    const age = host.config.upload_abandon_ms;
    if (host.store.large.expired(host.realtime, age, 1).length > 0) {
      if (leader.queueInternal(Operation.housekeeping, encodeHousekeeping({ abandon_age_ms: age }))) this.prepareQueued();
    }
    this.considerNudge(leader, idle);
  }

  /**
   * The idle nudge (LARGE_OBJECTS.md §8): checkpoints advance only with ops, so on an idle cluster
   * the segments of deleted objects stay pinned by checkpoint retention and the journal horizon
   * forever. Once a second: an idle primary whose storage holds at least reclaim_nudge_bytes_min
   * such bytes starts preparing empty housekeeping entries (no-ops); a nudging one stops when none
   * are left or a client's request arrives. A journal and three checkpoint intervals of ops move
   * the horizon past everything dead when the nudge began, so that bounds it.
   */
  private considerNudge(leader: Leader, idle: boolean): void {
    const host = this.host;
    if (this.nudge_ops_left === 0 && !idle) return;
    const pinned = host.storage.pinnedDeadBytes(host.store);
    if (this.nudge_ops_left > 0) {
      // Once started it frees everything it can, not just down to the threshold: a delete of a
      // few segments' worth would otherwise leave one segment on disk for good.
      if (pinned === 0) this.nudge_ops_left = 0;
      return;
    }
    // A nudge that ran out of ops moved the horizon past everything dead when it began: what is
    // dead now died during it. That may be segments its own compaction emptied, still listed by
    // retained checkpoints, which the next nudge frees, however many bytes they are (judging by
    // what the nudge began with kept them for good when they outweighed what it freed). Or it is
    // what every nudge leaves, its own prepares' segments above the horizon: a nudge that ends
    // with no fewer dead bytes than the one before starts no other until more become dead, so an
    // idle cluster never nudges in a loop.
    if (this.nudge_exhausted) {
      this.nudge_exhausted = false;
      this.pinned_after_nudge = pinned < this.pinned_after_last_nudge ? 0 : pinned;
      this.pinned_after_last_nudge = pinned;
    }
    this.pinned_after_nudge = Math.min(this.pinned_after_nudge, pinned);
    // A full disk too: what a delete freed comes back only once retention lets go of it.
    if (pinned < host.config.reclaim_nudge_bytes_min || pinned <= this.pinned_after_nudge) return;
    this.nudge_ops_left = host.config.journal_slot_count + 3 * host.config.checkpoint_interval_ops;
    host.env.log(
      "info",
      `replica ${host.replica}: idle, with ${pinned} bytes of segments that nothing live references still kept by checkpoint retention: preparing up to ${this.nudge_ops_left} no-op entries to move the checkpoints on and free them`,
    );
    this.nudge(leader);
  }

  /** A client's request ends a nudge, which says nothing of what the nudge could free. */
  private stopNudge(): void {
    this.nudge_ops_left = 0;
    this.nudge_exhausted = false;
    this.pinned_after_last_nudge = Infinity;
    this.pinned_after_nudge = 0;
  }

  /** Prepares no-op entries while the pipeline has room, until a client's request waits. */
  private nudge(leader: Leader): void {
    if (leader.clientsQueued > 0) {
      this.stopNudge();
      return;
    }
    // One entry at a time: one left in the queue waits for room (pipeline, journal, checkpoint
    // or disk) and is prepared when ops commit.
    while (this.nudge_ops_left > 0 && leader.queued === 0) {
      if (!leader.queueInternal(Operation.housekeeping, encodeHousekeeping({ abandon_age_ms: null }))) return;
      this.nudge_ops_left -= 1;
      this.nudge_exhausted = this.nudge_ops_left === 0;
      this.prepareQueued();
    }
  }

  private preparePrimary(leader: Leader, requests: QueuedRequest[]): void {
    const host = this.host;
    // A client's request ends the idle nudge: the cluster is no longer idle.
    if (requests.some((r) => r.client !== 0n)) this.stopNudge();
    const parent = host.journal.header(host.op);
    assert(parent !== null, () => `primary ${host.replica}: no header at its head op ${host.op}`);
    const body = encodeBatch(requests);
    const op = host.op + 1;
    const checkpoint = this.checkpointIdFor(op);
    assert(checkpoint !== null, () => `primary ${host.replica}: no checkpoint named by op ${op}`);
    // Timestamps never go backwards, across primaries whose clocks disagree too.
    const timestamp = Math.max(parent.timestamp + 1, host.realtime);
    const prepare = buildPrepare(host.envelope(host.view), {
      op,
      parent: parent.checksum,
      commit_max: host.commit_max,
      timestamp,
      checkpoint,
      requests: requests.length,
      body,
    });
    const h = prepare.header;
    assert(h.timestamp > parent.timestamp, "the hash chain's timestamps strictly increase");
    host.op = h.op;
    // prepareQueued stops at opPrepareMax: the primary's own copy is one it may count.
    assert(
      host.op <= host.opPrepareOkMax(),
      () => `primary ${host.replica}: prepared op ${host.op} beyond what its durable checkpoint ${host.checkpoint.op} keeps`,
    );
    host.observer?.primary(host.replica, host.view);
    leader.prepared(h.op, h.checksum, prepare);
    // Send first, then journal: the backups' writes overlap the primary's own.
    host.sendToOthers(prepare);
    // The op is in this primary's log even if its own copy could not be written (disk full): the
    // header stays, and the prepare is repaired once there is space again.
    if (!host.journalPrepare(prepare)) host.journal.setHeader(prepare.header);
    if (!host.timeout_prepare.running) host.timeout_prepare.start();
  }

  onPrepareOk(message: Message): void {
    const host = this.host;
    const h = message.header;
    if (host.status !== "normal" || !host.isPrimary() || h.view !== host.view) return;
    // The replica drops messages from itself but prepares: its own copy is counted in onDurable.
    assert(h.replica !== host.replica, () => `primary ${host.replica}: a prepare_ok from itself`);
    const { op, checksum } = readPrepareOk(message);
    // Alive only if it acknowledges a prepare of this log (a forged ack names none).
    if (host.leader !== null && host.journal.header(op)?.checksum === checksum) host.leader.alive(h.replica, host.ticks);
    host.leader?.ack(op, checksum, h.replica);
    this.commitPipeline();
  }

  /** After a flush, as primary in normal status: its own copies of the ops just made durable
   * count toward their quorum, up to what a restart reloads. */
  onDurable(durable_ops: number[]): void {
    const host = this.host;
    assert(host.status === "normal" && host.isPrimary(), () => `primary ${host.replica}: its durable ops counted while ${host.status}`);
    for (const op of durable_ops) {
      const entry = host.leader?.entry(op);
      if (entry !== undefined && op <= host.opPrepareOkMax() && host.journal.hasDurable(op, entry.checksum))
        host.leader!.ack(op, entry.checksum, host.replica);
    }
    this.commitPipeline();
  }

  /** Commits pipeline entries, in op order, once f+1 replicas (the primary included) hold each
   * durably. RULE: a quorum of durable copies before commit. */
  commitPipeline(): void {
    const host = this.host;
    const leader = host.leader;
    for (const entry of leader?.popCommitted(host.replicationQuorum(), host.commit_max) ?? []) {
      assert(entry.op <= host.op, () => `primary ${host.replica}: committed op ${entry.op} above its head ${host.op}`);
      if (entry.op > host.commit_max) {
        host.commit_max = entry.op;
        host.commit_max_checksum = entry.checksum;
      }
    }
    // What stays in flight is above what committed (popCommitted took everything at or below it).
    assert(
      leader === null || leader.pipeline.length === 0 || leader.pipeline[0]!.op > host.commit_max,
      () => `primary ${host.replica}: op ${leader!.pipeline[0]!.op} left in flight at or below commit ${host.commit_max}`,
    );
    if (leader === null || leader.pipeline.length === 0) host.timeout_prepare.stop();
    host.executeCommitted();
    this.prepareQueued();
  }

  /** The id of the checkpoint a prepare at op names (durable_state.ts); null: not taken yet, so
   * the primary must execute further before it prepares op. */
  checkpointIdFor(op: number): CheckpointId | null {
    assert(op > 0, "op 0 is the root, which names no checkpoint");
    return this.host.durable.idFor(op, this.host.journal.header(op - 1));
  }

  onPrepareTimeout(): void {
    const host = this.host;
    const leader = host.leader;
    if (leader === null) {
      host.timeout_prepare.stop();
      return;
    }
    for (const { entry, to } of leader.resends()) {
      const prepare = entry.message ?? host.storage.readPrepare(entry.op, entry.checksum);
      if (prepare === null) continue; // repair will fetch it
      // Resent as kept or read back: either way the very prepare the entry counts acks for.
      assert(
        prepare.header.op === entry.op && prepare.header.checksum === entry.checksum,
        () => `primary ${host.replica}: resending another prepare for op ${entry.op}`,
      );
      for (const r of to) host.env.sendToReplica(r, prepare);
    }
  }

  /** The heartbeat timeout: a heartbeat, or "abdicate" when the replica must start a view change
   * to the next view (it has logged why). */
  onHeartbeatTimeout(): HeartbeatOutcome {
    const host = this.host;
    const leader = host.leader;
    if (leader === null) {
      host.timeout_heartbeat.stop();
      return "done";
    }
    if (host.log_view_durable !== host.view) return "done"; // formatting: the superblock is on its way
    // RULE (abdication): a primary that hears from no quorum within the view change timeout stops
    // acting as primary, so a partitioned old primary cannot serve stale reads. A primary stuck
    // with work pending hands over too (Leader.heartbeat says when).
    const decision = leader.heartbeat(host.ticks, host.commit_min, host.commit_max);
    if (decision.kind === "abdicate_unheard") {
      host.env.log(
        "warn",
        `replica ${host.replica}: primary of view ${host.view} heard from no quorum for ${host.config.view_change_timeout_ticks} ticks: abdicating`,
      );
      return "abdicate";
    }
    if (decision.kind === "abdicate_stuck") {
      host.env.log(
        "warn",
        `replica ${host.replica}: primary of view ${host.view} has made no progress past op ${host.commit_min} (commit ${host.commit_max}, ${leader.pipeline.length} prepares in flight) for ${decision.stall_ticks} ticks: abdicating so a view change resolves the log`,
      );
      return "abdicate";
    }
    this.sendCommit(leader);
    return "done";
  }

  /** A commit heartbeat starts a new round: backups answer with commit_ok, which confirms to
   * waiting reads that this primary was still primary after they arrived. */
  sendCommit(leader: Leader): void {
    const host = this.host;
    const nonce = host.env.random.u64();
    const round = leader.reads.startRound(nonce);
    const commit_checksum =
      host.journal.header(host.commit_max)?.checksum ?? (host.commit_max === host.commit_min ? host.commit_min_checksum : 0n);
    assert(
      host.isActingPrimary() && host.leader === leader,
      () => `replica ${host.replica}: heartbeat of view ${host.view} while not acting as its primary`,
    );
    const commit = buildCommit(host.envelope(host.view), {
      commit_max: host.commit_max,
      commit_checksum,
      round,
      nonce,
      op: host.op,
      checkpoint: host.checkpoint,
    });
    host.timeout_heartbeat.reset();
    host.sendToOthers(commit);
  }

  /** A backup answered a heartbeat round; true if that confirmed reads the replica may now serve. */
  onCommitOk(message: Message): boolean {
    const host = this.host;
    const h = message.header;
    const leader = host.leader;
    if (leader === null || h.view !== host.view) return false;
    assert(h.replica !== host.replica, () => `primary ${host.replica}: a commit_ok from itself`);
    // A backup's commit number is not taken: nothing binds it to this log, so one forged frame
    // would commit ops no quorum holds. The pipeline commits on acknowledgements alone (ops
    // committed in an earlier view are in it, and their holders acknowledge them again).
    // The round's nonce, echoed: a forged commit_ok cannot confirm a round (and so a read) that
    // the backup never answered.
    const { round, nonce } = readCommitOk(message);
    if (!leader.reads.answers(round, nonce)) return false;
    leader.alive(h.replica, host.ticks); // alive (a forged commit_ok must not keep a cut-off primary from abdicating)
    return leader.reads.ack(h.replica, round);
  }
}
