/**
 * Checkpoints and state sync, driven (docs/PROTOCOL.md §4.4, request_sync and sync_chunk): takes
 * the checkpoint at each interval, takes it again when a full disk refused it, and fetches a whole
 * checkpoint from a peer when this replica is more than one behind. state_sync.ts decides which
 * checkpoint to fetch (SyncTargets) and tracks one transfer (SyncTransfer); this part owns both,
 * sends the requests and answers them, and drives storage through the transfer. What arrived and
 * verified, the Replica installs (installSynced): the part owns the transfer, the Replica its state.
 *
 * Checkpoint taking lives here too because the two are one concern on disk: a sync writes the
 * checkpoint it received, and a checkpoint retried after a full disk waits while a sync is under way.
 *
 * Calls between parts, through the host: a backup asks for the header naming its target through
 * repairer.ts (host.repairer); log_chain.ts and start_view.ts call into this part (targetFrom,
 * primaryCheckpointIs, maybeStart) through their hosts.
 */
import { assert } from "../util/assert.ts";
import type { Header, Message } from "../net/codec.ts";
import { header_size, message_size_max, type Config } from "../constants.ts";
import { Result } from "../store/operations.ts";
import type { ObjectStore } from "../store/object_store.ts";
import type { ClientTable } from "./client_table.ts";
import type { Journal } from "./journal.ts";
import type { DurableState } from "./durable_state.ts";
import { isNoSpace, type CheckpointId, type CheckpointMeta, type Storage } from "./storage.ts";
import { stateDigest } from "./root.ts";
import { SyncFailures, SyncTargets, SyncTransfer, syncNeeded, sync_chunk_size_max } from "./state_sync.ts";
import { primaryIndex, type Env, type Status } from "./env.ts";
import {
  buildRequestSync,
  buildSnapshotChunk,
  buildSyncChunk,
  readRequestSnapshot,
  readRequestSync,
  readSyncChunk,
  type Envelope,
} from "./messages.ts";
import { SnapshotStreams } from "./snapshot_streams.ts";

/** A checkpoint as storage assembled it from a transfer, verified against the target. */
export interface SyncReceived {
  store: ObjectStore;
  clients: ClientTable;
  checkpoint: CheckpointMeta;
}

/** The members of Replica this part reads or calls. */
export interface StateSyncHost {
  readonly replica: number;
  readonly config: Pick<Config, "replica_count" | "checkpoint_interval_ops" | "clients_max" | "tick_ms">;
  readonly env: Pick<Env, "sendToReplica" | "sendToClient" | "log">;
  readonly storage: Pick<Storage, "writeCheckpoint" | "readSyncChunk" | "retains" | "syncBegin" | "syncApply" | "syncFinish" | "syncAbort">;
  readonly journal: Pick<Journal, "header">;
  readonly durable: Pick<DurableState, "checkpoint" | "taking" | "written_checkpoint" | "missing" | "retryable">;
  readonly stats: { syncs: number };
  readonly status: Status;
  readonly view: number;
  readonly op: number;
  readonly commit_min: number;
  readonly commit_max: number;
  readonly commit_min_checksum: bigint;
  readonly commit_min_header: Header;
  readonly store: ObjectStore;
  readonly clients: ClientTable;
  readonly no_space: boolean;
  readonly ticks: number;
  envelope(view: number): Envelope;
  diskFull(error: Error): void;
  writeState(): void;
  executeCommitted(): void;
  isPrimary(): boolean;
  commitKnown(): number;
  /** Repair requests (repairer.ts): a backup asks the primary for a committed header, which names the target. */
  readonly repairer: { requestHeaders(op_min: number, op_max: number): void };
  /** The checkpoint of target arrived, verified and written (durable with the next flush): it
   * becomes the replica's state. */
  installSynced(target: CheckpointId, received: SyncReceived): void;
}

export class StateSync {
  /** Highest checkpoint op the primary has reported. */
  private primary_checkpoint_op_ = 0;
  /** The checkpoint transfer in progress (lib/vsr/state_sync.ts). */
  private sync: SyncTransfer | null = null;
  /** Which checkpoint to sync: the primary's announced one, and a target no peer served. */
  private readonly sync_targets = new SyncTargets();
  /** Consecutive failed attempts and the backoff they impose on the next one (state_sync.ts). */
  private readonly failures = new SyncFailures();
  /** The checkpoints served to snapshot clients, each from a storage source of its own. */
  private readonly snapshot_streams = new SnapshotStreams();

  constructor(private readonly host: StateSyncHost) {
    assert(host.config.checkpoint_interval_ops > 0, "checkpoint interval must be positive");
  }

  /** A checkpoint transfer is under way (execution, compaction and scrubbing wait for it). */
  get syncing(): boolean {
    return this.sync !== null;
  }

  /** Highest checkpoint op the primary has reported. */
  get primary_checkpoint_op(): number {
    return this.primary_checkpoint_op_;
  }

  /** The primary's durable checkpoint op, from its heartbeat or its start_view: the latest counts. */
  primaryCheckpointIs(op: number): void {
    assert(Number.isSafeInteger(op) && op >= 0, () => `primary checkpoint op ${op}`);
    this.primary_checkpoint_op_ = op;
  }

  /** The durable checkpoint the primary of `view` announced in its heartbeat (SyncTargets). */
  primaryAnnounced(view: number, id: CheckpointId): void {
    assert(id.op > 0, "the primary announced no checkpoint");
    this.sync_targets.primaryAnnounced(view, id);
  }

  /** The transfer is dropped (a view change; it starts again once needed, maybeStart). */
  cancel(): void {
    assert(this.host.status === "view_change", () => `a sync cancelled in status ${this.host.status}: only a view change cancels one`);
    this.drop();
  }

  /** Ends the transfer for good: what it received is deleted now (on a full disk, those segments
   * may be what keeps the replica out of space). */
  private drop(): void {
    if (this.sync !== null) this.host.storage.syncAbort();
    this.sync = null;
  }

  /** Takes the checkpoint at commit_min; false if its file could not be written (disk full). */
  takeCheckpoint(): boolean {
    const host = this.host;
    const id: CheckpointId = { op: host.commit_min, digest: stateDigest(host.store, host.clients), checksum: host.commit_min_checksum };
    const anchor = host.commit_min_header;
    assert(
      anchor.op === id.op && anchor.checksum === id.checksum,
      () => `replica ${host.replica}: no header for its checkpoint op ${id.op}`,
    );
    const previous = host.durable.taking(id);
    try {
      host.storage.writeCheckpoint({ id, anchor, previous }, host.store, host.clients);
    } catch (error) {
      // Without the checkpoint the journal cannot wrap: the primary stops preparing when it is
      // full, which is the backpressure a full disk needs. retryCheckpoint tries again.
      if (!isNoSpace(error)) throw error;
      host.diskFull(error);
      return false;
    }
    host.durable.written_checkpoint(id);
    assert(!host.durable.missing(id.op), () => `replica ${host.replica}: checkpoint ${id.op} written but still missing`);
    if (host.status === "normal") host.writeState();
    return true;
  }

  /** Execution stopped at a checkpoint whose file could not be written: it waits there until the
   * file is (retryCheckpoint), since past it no later op could take its place (checkpoints are at
   * multiples of the interval, and prepares name them). */
  checkpointMissing(): boolean {
    assert(this.host.commit_min >= 0, () => `replica ${this.host.replica}: executed ${this.host.commit_min}`);
    return this.host.durable.missing(this.host.commit_min);
  }

  /** A checkpoint that could not be written (disk full) is taken again once there is space: the
   * journal cannot move past a window beyond the durable checkpoint (opJournalMax), so a replica
   * whose checkpoints failed would otherwise stop executing at the end of that window for good. */
  retryCheckpoint(): void {
    const host = this.host;
    if (host.no_space || this.sync !== null || (host.status !== "normal" && host.status !== "recovering")) return;
    if (!host.durable.retryable(host.commit_min)) return;
    assert(
      host.commit_min > 0 && host.commit_min % host.config.checkpoint_interval_ops === 0,
      () => `replica ${host.replica}: retrying a checkpoint at op ${host.commit_min}, off the interval`,
    );
    host.env.log("info", `replica ${host.replica}: retrying checkpoint ${host.commit_min}, which could not be written before`);
    if (this.takeCheckpoint()) host.executeCommitted();
  }

  /** RULE (state sync): a replica more than a checkpoint behind the primary's fetches a
   * checkpoint, accepting only one whose digest a committed prepare names. */
  maybeStart(): void {
    const host = this.host;
    if (this.sync !== null || host.status === "blank" || host.status === "view_change" || host.no_space) return;
    // Ops at or below the checkpoint the head names may be gone from every peer's journal (peers
    // that synced past them never had them): fetch that checkpoint instead of repairing them.
    if (!syncNeeded(host.op, this.primary_checkpoint_op_, host.commit_min, host.config.checkpoint_interval_ops)) return;
    assert(host.status === "normal" || host.status === "recovering", () => `replica ${host.replica}: syncing while ${host.status}`);
    if (host.isPrimary() && host.status === "normal") {
      // A primary's own log is canonical: its header at commit_max names a committed checkpoint.
      const committed = host.journal.header(host.commit_max);
      if (committed !== null) this.targetFrom(committed);
      return;
    }
    // The target comes from the header of a committed prepare: ask the primary for it.
    host.repairer.requestHeaders(host.commitKnown(), host.commitKnown());
  }

  /** A header of the canonical log, committed if at or below what is known committed: the
   * checkpoint it names is a target when this replica is behind it. */
  targetFrom(h: Header): void {
    if (this.sync !== null) return;
    const host = this.host;
    const target = this.sync_targets.fromCommitted(h, host.commitKnown(), host.commit_min, host.config.checkpoint_interval_ops);
    assert(target === null || target.op > host.commit_min, () => `replica ${host.replica}: a sync target at or below what it executed`);
    if (target !== null) this.begin(target);
  }

  private begin(target: CheckpointId): void {
    const host = this.host;
    assert(this.sync === null, () => `replica ${host.replica}: a sync of ${target.op} begun while another is under way`);
    if (!this.sync_targets.allows(target, host.ticks)) return;
    host.env.log(
      "info",
      `replica ${host.replica}: behind the cluster (executed ${host.commit_min}, primary checkpoint ${this.primary_checkpoint_op_}): state-syncing checkpoint ${target.op}`,
    );
    host.stats.syncs += 1;
    host.storage.syncBegin(target);
    this.sync = new SyncTransfer(target, primaryIndex(host.view, host.config.replica_count), host.replica, host.config);
    // A new transfer after failed attempts (a view change cancelled the last, or it stalled) still
    // waits out their backoff: only a success lifts it.
    if (host.ticks < this.failures.resume) this.sync.waitUntil(this.failures.resume);
    else this.requestChunk();
  }

  private requestChunk(): void {
    const sync = this.sync;
    assert(sync !== null, () => `replica ${this.host.replica}: asking for a sync chunk with no sync under way`);
    const { peer, position } = sync.request();
    this.host.env.sendToReplica(peer, buildRequestSync(this.host.envelope(this.host.view), { checkpoint: sync.target, position }));
  }

  /** A peer's request for a chunk of a checkpoint this replica holds: served from storage. */
  onRequestSync(message: Message): void {
    const host = this.host;
    const { checkpoint, position } = readRequestSync(message);
    assert(position >= 0, () => `replica ${host.replica}: a sync chunk asked at position ${position}`);
    const chunk = host.storage.readSyncChunk(checkpoint, position, sync_chunk_size_max);
    // Only an object stored before put_object_payload_max_bytes can outgrow a message (PROTOCOL.md §7): never an
    // assertion (finalize's) from what a client stored; the peer asks another replica.
    if (chunk === null || header_size + chunk.bytes.length > message_size_max) return;
    host.env.sendToReplica(
      message.header.replica,
      buildSyncChunk(host.envelope(host.view), { checkpoint, position, next: chunk.next, body: chunk.bytes }),
    );
  }

  /** A client's request for part of a checkpoint (toastyfs snapshot save, docs/PROTOCOL.md §3.16):
   * served from storage as a peer's request_sync is, outside consensus (any replica, any status,
   * no session), from the durable checkpoint (op 0) or any retained one, and always answered. */
  onRequestSnapshot(message: Message): void {
    const host = this.host;
    const h = message.header;
    const request = readRequestSnapshot(message);
    const asked = typeof request === "string" ? { op: h.op, digest: h.checkpoint_digest, checksum: h.context } : request.checkpoint;
    const id = asked.op === 0 ? host.durable.checkpoint : asked;
    const answer = (result: Result, records: Uint8Array = new Uint8Array(0), next: number | null = null): void =>
      host.env.sendToClient(
        h.client,
        buildSnapshotChunk(host.envelope(host.view), {
          client: h.client,
          request: h.request,
          result,
          checkpoint: id,
          position: h.commit,
          next,
          body: records,
        }),
      );
    if (typeof request === "string") return answer(Result.bad_request);
    if (id.op === 0 || !host.storage.retains(id)) return answer(Result.not_found);
    const source = this.snapshot_streams.take(id, host.ticks);
    if (source === null) return answer(Result.busy);
    const chunk = host.storage.readSyncChunk(id, request.position, request.size_max, source);
    // A record that does not fit in a message cannot be sent (docs/PROTOCOL.md §7, as above).
    if (chunk === null || header_size + chunk.bytes.length > message_size_max) return answer(Result.unavailable);
    if (chunk.next === null) this.snapshot_streams.finished(source);
    answer(Result.ok, chunk.bytes, chunk.next);
  }

  onSyncChunk(message: Message): void {
    const host = this.host;
    const h = message.header;
    const chunk = readSyncChunk(message);
    const sync = this.sync;
    if (sync === null || !sync.accept(chunk.checkpoint.op, chunk.checkpoint.digest, chunk.position)) return;
    assert(chunk.checkpoint.op === sync.target.op, () => `replica ${host.replica}: a chunk of ${chunk.checkpoint.op} accepted`);
    let applied: boolean;
    try {
      applied = host.storage.syncApply(message.body);
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      host.diskFull(error);
      this.drop(); // started again once there is space (maybeStart)
      return;
    }
    if (!applied) {
      this.attemptFailed(sync, h.replica, "a chunk that does not parse", "warn");
      return;
    }
    if (sync.applied(chunk.next) === "request_next") {
      this.requestChunk();
      return;
    }
    this.finish();
  }

  private finish(): void {
    const host = this.host;
    const sync = this.sync;
    assert(sync !== null, () => `replica ${host.replica}: finishing a sync that is not under way`);
    const received = host.storage.syncFinish(host.config.clients_max);
    if (received === null || !sync.verifies(received)) {
      this.attemptFailed(sync, sync.peer, "a state that does not match its digest", "error");
      return;
    }
    try {
      host.storage.writeCheckpoint(received.checkpoint, received.store, received.clients);
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      host.diskFull(error);
      this.drop();
      return;
    }
    this.sync = null;
    this.failures.succeeded();
    host.installSynced(sync.target, received);
  }

  /** An attempt failed (what `from` sent did not parse, or the state assembled did not verify):
   * its bytes are released now (syncBegin discards the partial or rejected state's segments, so a
   * sync that keeps failing holds at most one attempt's bytes), and the stream is fetched again
   * from the start from the next peer once the backoff has passed (SyncFailures). One line per
   * attempt, loud only for the first and every sync_failure_log_every-th. */
  private attemptFailed(sync: SyncTransfer, from: number, what: string, level: "warn" | "error"): void {
    const host = this.host;
    host.storage.syncBegin(sync.target);
    const wait = this.failures.failed(host.ticks);
    sync.retryElsewhere(host.ticks + wait);
    const attempt = this.failures.count;
    host.env.log(
      this.failures.loud() ? level : "debug",
      `replica ${host.replica}: state sync of checkpoint ${sync.target.op} failed on attempt ${attempt}: replica ${from} sent ${what}; ` +
        `retrying with replica ${sync.peer} in ${wait * host.config.tick_ms} ms (attempt ${attempt + 1})`,
    );
  }

  /** A repair tick: true while a transfer is under way (repair waits for it). A stalled sync asks
   * the next peer (the one asked may have moved past this checkpoint); when no peer answers, the
   * cluster has moved on: start over from a newer checkpoint, or repair for a while
   * (SyncTargets.afterStall). A transfer waiting after a failed attempt asks again once its wait
   * is over. */
  repairTick(): boolean {
    const host = this.host;
    const sync = this.sync;
    if (sync === null) return false;
    const stall = sync.repairTick(host.ticks);
    if (stall === "give_up") {
      host.env.log("info", `replica ${host.replica}: no peer serves checkpoint ${sync.target.op} any more: syncing a newer one`);
      const stalled = sync.target;
      this.drop();
      const next = this.sync_targets.afterStall(stalled, host.view, host.commit_min, host.commitKnown(), host.ticks);
      // Only a newer checkpoint follows one no peer served.
      assert(next === null || next.op > stalled.op, () => `replica ${host.replica}: syncing ${stalled.op} again right after it stalled`);
      if (next !== null) this.begin(next);
      return true;
    }
    if (stall === "ask_next_peer" || stall === "retry") this.requestChunk();
    return true;
  }

  /** What holds whenever the replica is between events. */
  invariants(): void {
    const host = this.host;
    assert(
      Number.isSafeInteger(this.primary_checkpoint_op_) && this.primary_checkpoint_op_ >= 0,
      () => `replica ${host.replica}: primary checkpoint op ${this.primary_checkpoint_op_}`,
    );
    if (this.sync === null) return;
    assert(
      this.sync.target.op > 0 && this.sync.peer >= 0 && this.sync.peer < host.config.replica_count,
      () => `replica ${host.replica}: a sync of checkpoint ${this.sync?.target.op} from peer ${this.sync?.peer}`,
    );
    // Only failed attempts make a transfer wait.
    assert(!this.sync.waiting || this.failures.count > 0, () => `replica ${host.replica}: a sync waiting with no failed attempt`);
  }
}
