/**
 * The client's side of a replica: a request arriving at the primary is refused with the limit it
 * broke, answered from the client table, queued for a read round, or queued to be prepared; a
 * committed batch is applied to the object store and the client table, at most once per session,
 * and the primary answers each request's client.
 *
 * It owns no state: the store, the client table and the commit numbers are the Replica's (the
 * simulator, storage and state sync read and replace them), read and advanced through the host.
 * Replies go out through Replica.sendReply (a hook), a read round through Primary.sendCommit
 * (host.primary); the round a read waits for is Replica.readRound's, a hook a broken variant in
 * tests/broken_variants.test.ts overrides. docs/PROTOCOL.md says what the client sees: §3.13 the
 * checks on arrival, in order; §3.10 at-most-once; §3.12 linearizable reads.
 */
import { assert } from "../util/assert.ts";
import { Command, type Header, type Message } from "../net/codec.ts";
import { key_size_max, type Config } from "../constants.ts";
import type { ObjectEntry, ObjectStore } from "../store/object_store.ts";
import type { Block } from "../store/uploads.ts";
import { slotKey } from "../store/uploads.ts";
import {
  executeLargeRead,
  executeLargeWrite,
  executeRead,
  executeWrite,
  sizeLimitOf,
  validateRequest,
  type ExecuteResult,
  type ManifestBlocks,
  type Readers,
} from "../store/execute.ts";
import { decodeReadRequest, decodeWriteBlock, type WriteBlockRequest } from "../store/large_bodies.ts";
import { keyFromBytes } from "../store/keys.ts";
import { ReadCache } from "../store/read_cache.ts";
import { Operation, Result, encodeU64, freesSpace, isWrite } from "../store/operations.ts";
import type { ClientTable, StoredReply } from "./client_table.ts";
import type { Leader } from "./leader.ts";
import type { Journal } from "./journal.ts";
import type { RecentPrepares } from "./recent_prepares.ts";
import type { Storage } from "./storage.ts";
import { decodeBatch } from "./batch.ts";
import { buildReply, type ClientReply, type Envelope, type OrderedRequest, type Reply, type ReplyTo } from "./messages.ts";
import type { Env, ReplicaObserver, Status } from "./env.ts";

/** What the state machine reads of its Replica, and the commit numbers it advances as it executes. */
export interface StateMachineHost {
  readonly config: Pick<
    Config,
    "value_size_max" | "block_size_max" | "uploads_open_max" | "checkpoint_interval_ops" | "read_cache_bytes_max"
  >;
  readonly replica: number;
  readonly env: Pick<Env, "log" | "sendToClient">;
  readonly storage: Pick<Storage, "prepareBodyLocation" | "readPrepare">;
  readonly stats: { requests_rejected: number; requests_busy: number; requests_not_primary: number };
  readonly observer: Pick<ReplicaObserver, "executed" | "request"> | null;
  readonly status: Status;
  readonly view: number;
  readonly log_view: number;
  readonly log_view_durable: number;
  readonly op: number;
  commit_min: number;
  commit_max: number;
  commit_min_checksum: bigint;
  commit_min_header: Header;
  readonly realtime: number;
  readonly leader: Leader | null;
  readonly formed: boolean;
  readonly no_space: boolean;
  readonly store: ObjectStore;
  readonly clients: ClientTable;
  isPrimary(): boolean;
  envelope(view: number): Envelope;
  /** The heartbeat round a read arriving now waits for (a hook the simulator's tests override). */
  readRound(): number;
  /** Sends a reply to its client (a hook the simulator's tests use). */
  sendReply(reply: ClientReply): void;
  /** Whether a write_block may be answered at once (executedStateHolds; a hook broken variants override). */
  blockHeld(request: WriteBlockRequest): boolean;
  /** complete_upload's blocks at execution (executedManifestBlocks; a hook broken variants override). */
  manifestBlocksReady: ManifestBlocks;
  /** Answers a read from the executed state (executeRead/executeLargeRead; a hook broken variants override). */
  executeReadRequest(operation: Operation, body: Uint8Array, readers: Readers): ExecuteResult;
  /** The primary's normal operation (primary.ts): starts a heartbeat round, which waiting reads need confirmed. */
  readonly primary: { sendCommit(leader: Leader): void };
  readonly journal: Pick<Journal, "header" | "damaged">;
  /** Prepares journaled and not yet executed, kept so a backup need not read them back. */
  readonly recent_prepares: Pick<RecentPrepares, "take">;
  readonly start_view_pending: boolean;
  /** The log's shape (log_chain.ts): how far the log is verified, so far it may execute. */
  readonly chain: { verifiedUpTo(): number };
  /** Checkpoints (state_sync_driver.ts): none is executed during a transfer, execution waits at a
   * checkpoint that could not be written, and one is taken at each interval. */
  readonly state_sync: { readonly syncing: boolean; checkpointMissing(): boolean; takeCheckpoint(): boolean };
  /** Values and blocks at rest (value_keeper.ts): a read verifies the bytes it returns. */
  readonly values: { readValue(key: string, entry: ObjectEntry): Uint8Array | null; readBlock(block: Block): Uint8Array | null };
}

/** The executed state holds this block in its slot (the same checksum and size): it was written by
 * a committed op, so it is durable on a quorum and a retry of it may be answered at once. */
export function executedStateHolds(store: ObjectStore, request: WriteBlockRequest): boolean {
  const upload = store.large.upload(request.upload_id);
  const held = upload?.slots.get(slotKey(request.part_number, request.attempt, request.block_index));
  const block = held === undefined ? undefined : store.large.block(held);
  return block !== undefined && block.checksum === request.checksum && block.size === request.data.length;
}

/** A read (get, stat, list or read) answered from the executed state. */
export function readFromStore(store: ObjectStore, operation: Operation, body: Uint8Array, readers: Readers): ExecuteResult {
  return operation === Operation.read ? executeLargeRead(store, body, readers) : executeRead(store, operation, body, readers);
}

export class StateMachine {
  /** Get replies kept to answer repeated gets without the disk (read_cache.ts); null when off. */
  readonly read_cache: ReadCache | null;

  constructor(private readonly host: StateMachineHost) {
    this.read_cache = host.config.read_cache_bytes_max > 0 ? new ReadCache(host.config.read_cache_bytes_max) : null;
  }

  /** A client's request at this replica. True: it was queued to be prepared, and the primary
   * should prepare what its pipeline has room for. */
  onRequest(message: Message): boolean {
    const host = this.host;
    const h = message.header;
    assert(h.command === Command.request, () => `replica ${host.replica}: command ${h.command} handled as a request`);
    const leader = host.leader;
    if (leader === null) return this.replyError(message, Result.not_primary);
    if (!host.formed) return this.replyError(message, Result.busy);
    const operation = h.operation;
    // Client 0 is the primary's own (housekeeping entries in a batch), never a client's.
    if (h.client === 0n) return this.replyError(message, Result.bad_request);
    const valid = validateRequest(operation, message.body, host.config);
    if (valid !== Result.ok) return this.replyError(message, valid);
    if (operation === Operation.read) return this.onRead(leader, message);
    if (!isWrite(operation)) return this.enqueueRead(leader, message);
    if (host.no_space && !freesSpace(operation)) return this.replyError(message, Result.no_space);
    if (operation === Operation.write_block) return this.onWriteBlock(leader, message);
    const session = host.clients.get(h.client);
    if (operation !== Operation.register && (session === undefined || session.session !== h.session)) {
      return this.replyError(message, Result.evicted);
    }
    if (session !== undefined && h.request <= session.request) {
      // A retry of an executed request gets its stored reply; an older one is stale.
      if (h.request === session.request)
        this.sendStoredReply({ client: h.client, request: session.request, session: session.session }, session.reply);
      return false;
    }
    return this.enqueueWrite(leader, message);
  }

  /** Queues a write to be prepared. True: the primary should prepare what its pipeline has room
   * for. A retry of a request already queued or being prepared is answered when that one executes. */
  private enqueueWrite(leader: Leader, message: Message): boolean {
    const queued = leader.queueRequest(message);
    if (queued === "in_flight") return false;
    if (queued === "busy") return this.replyError(message, Result.busy);
    return true;
  }

  /**
   * write_block (LARGE_OBJECTS.md §5.3) needs no session and is not recorded in the client table:
   * executing it twice is harmless. A block the executed state already holds in that slot is
   * answered at once (the executed state is committed, so the block is durable on a quorum); an
   * upload the executed state closed is gone for good. An upload id above the counter may be
   * created by an op not executed here yet: it is prepared, and execution decides.
   */
  private onWriteBlock(leader: Leader, message: Message): boolean {
    const host = this.host;
    const request = decodeWriteBlock(message.body);
    assert(request !== null, () => `replica ${host.replica}: a write_block let in with a malformed body`);
    const large = host.store.large;
    const upload = large.upload(request.upload_id);
    if (upload === undefined && request.upload_id <= large.upload_counter) return this.replyError(message, Result.upload_not_found);
    if (host.blockHeld(request)) {
      this.replyNow(message, Result.ok, new Uint8Array(0));
      return false;
    }
    return this.enqueueWrite(leader, message);
  }

  /**
   * read (LARGE_OBJECTS.md §7): version 0 takes the linearizable read path; a named version the
   * executed store holds is served at once, without a read round, since its bytes are all a read of
   * it can return; otherwise the read waits for a round (this primary may not have executed that
   * version yet), then is served or answered object_changed.
   */
  private onRead(leader: Leader, message: Message): false {
    const request = decodeReadRequest(message.body);
    assert(request !== null, () => `replica ${this.host.replica}: a read let in with a malformed body`);
    if (request.version !== 0 && this.host.store.get(keyFromBytes(request.key))?.version === request.version) {
      this.serveRead(message);
      return false;
    }
    return this.enqueueRead(leader, message);
  }

  /** The bytes at rest, as reads reach them. */
  private readers(): Readers {
    const values = this.host.values;
    return {
      value: (key, entry) => values.readValue(key, entry),
      block: (block) => values.readBlock(block),
      value_size_max: this.host.config.value_size_max,
      cache: this.read_cache,
    };
  }

  /** Answers a read from the executed store (the caller checked the read rule). */
  private serveRead(message: Message): void {
    const h = message.header;
    const host = this.host;
    const result = host.executeReadRequest(h.operation, message.body, this.readers());
    this.replyNow(message, result.result, result.body);
  }

  /** A reply decided at arrival, from the executed state: it names no op. */
  private replyNow(message: Message, result: Result, body: Uint8Array): void {
    const h = message.header;
    this.host.sendReply({
      client: h.client,
      request: h.request,
      session: h.session,
      operation: h.operation,
      result,
      body,
      op: 0,
      timestamp: this.host.realtime,
    });
  }

  private enqueueRead(leader: Leader, message: Message): false {
    const host = this.host;
    assert(!isWrite(message.header.operation), () => `replica ${host.replica}: a write queued as a read`);
    if (host.log_view_durable !== host.view) return this.replyError(message, Result.busy);
    // RULE (reads): the read needs commit >= the op at arrival, and a heartbeat round sent after
    // it arrived, confirmed by f backups still in this view.
    if (!leader.reads.enqueue(message, host.op, host.readRound())) return this.replyError(message, Result.busy);
    this.serveReads();
    return false;
  }

  /** Serves the reads whose conditions hold. Rounds are shared: reads that arrive while a round
   * is in flight wait for the next one, which is sent as soon as the current one is confirmed. */
  serveReads(): void {
    const host = this.host;
    const leader = host.leader;
    if (leader === null) return;
    // RULE (reads): only the primary of this view, in normal status, answers reads.
    assert(
      host.status === "normal" && host.isPrimary(),
      () => `replica ${host.replica}: serving reads while not normal primary of view ${host.view} (${host.status})`,
    );
    for (const waiter of leader.reads.takeReady(host.commit_min)) this.serveRead(waiter.message);
    if (leader.reads.roundDue()) host.primary.sendCommit(leader);
  }

  /** The prepare at op from the primary's pipeline, which still holds it in memory; null if none. */
  pipelineMessage(op: number, checksum_: bigint): Message | null {
    const message = this.host.leader?.message(op, checksum_) ?? null;
    assert(
      message === null || (message.header.op === op && message.header.checksum === checksum_),
      () => `primary ${this.host.replica}: pipeline holds another prepare at op ${op}`,
    );
    return message;
  }

  /** Executes committed ops in order, as far as the log is verified (log_chain.ts), taking a
   * checkpoint at each interval; the primary replies to their clients and serves the reads that
   * were waiting for them. */
  executeCommitted(): void {
    const host = this.host;
    if (host.status !== "normal" && host.status !== "recovering") return;
    if (host.state_sync.syncing || host.start_view_pending) return;
    if (host.commit_min >= host.commit_max) return;
    const up_to = host.chain.verifiedUpTo();
    const executed_before = host.commit_min;
    while (host.commit_min < up_to) {
      if (host.state_sync.checkpointMissing()) break;
      const op = host.commit_min + 1;
      const header = host.journal.header(op)!;
      const prepare =
        this.pipelineMessage(op, header.checksum) ??
        host.recent_prepares.take(op, header.checksum) ??
        host.storage.readPrepare(op, header.checksum);
      if (prepare === null) {
        // Damaged on disk since it was written: repair fetches it again.
        host.env.log("warn", `replica ${host.replica}: prepare op ${op} is damaged on disk: repairing it from a peer before executing it`);
        host.journal.damaged(header);
        break;
      }
      this.execute(prepare);
      if (host.commit_min % host.config.checkpoint_interval_ops === 0) host.state_sync.takeCheckpoint();
    }
    // Execution moves forward one op at a time, and never past the verified log.
    assert(
      host.commit_min >= executed_before && host.commit_min <= up_to,
      () => `replica ${host.replica}: executed from ${executed_before} to ${host.commit_min}, verified up to ${up_to}`,
    );
    if (host.isPrimary() && host.status === "normal") this.serveReads();
  }

  /** Executes the committed prepare after commit_min and advances commit_min to it. */
  execute(prepare: Message): void {
    const host = this.host;
    const h = prepare.header;
    assert(h.op === host.commit_min + 1, () => `replica ${host.replica}: executing op ${h.op} after ${host.commit_min}`);
    assert(h.parent === host.commit_min_checksum, () => `replica ${host.replica}: op ${h.op} does not chain to the op executed before it`);
    const batch = decodeBatch(prepare.body);
    assert(batch !== null, () => `replica ${host.replica}: prepare ${h.op} has a malformed batch`);
    const location = host.storage.prepareBodyLocation(h.op, h.checksum);
    assert(location !== null, () => `replica ${host.replica}: prepare ${h.op} executed but not journaled`);
    const reply = host.status === "normal" && host.isPrimary();
    for (const entry of batch) {
      const body_location = { segment: location.segment, offset: location.offset + entry.body_offset };
      if (entry.client === 0n) {
        this.executeInternal(h, entry, body_location);
        continue;
      }
      host.leader?.executed(entry.client, entry.request);
      this.executeRequest(h, entry, body_location, reply);
    }
    host.commit_min = h.op;
    host.commit_min_checksum = h.checksum;
    host.commit_min_header = h;
    if (host.commit_min > host.commit_max) host.commit_max = host.commit_min;
    assert(host.commit_min <= host.op, () => `replica ${host.replica}: executed op ${host.commit_min} above its head ${host.op}`);
    host.observer?.executed(host.replica, prepare);
  }

  /** An entry of the primary's own (client 0): housekeeping, which no client waits for and the
   * client table does not record (LARGE_OBJECTS.md §5.5). */
  private executeInternal(prepare: Header, req: OrderedRequest, body_location: { segment: number; offset: number }): void {
    const host = this.host;
    assert(
      req.operation === Operation.housekeeping && req.session === 0 && req.request === 0,
      () => `replica ${host.replica}: op ${prepare.op} has a client-0 entry of operation ${req.operation}`,
    );
    const result = executeLargeWrite(host.store, host.config, prepare.timestamp, req.operation, req.body, body_location);
    assert(result.result === Result.ok, () => `replica ${host.replica}: housekeeping at op ${prepare.op} failed with ${result.result}`);
  }

  /** Executes one request of a committed batch; the primary (reply) answers its client. */
  private executeRequest(prepare: Header, req: OrderedRequest, body_location: { segment: number; offset: number }, reply: boolean): void {
    const host = this.host;
    assert(prepare.op === host.commit_min + 1, () => `replica ${host.replica}: a request of op ${prepare.op} after ${host.commit_min}`);
    const { client, session, request, operation } = req;
    if (operation === Operation.register) {
      const existing = host.clients.get(client);
      // Registers are not checked for at-most-once: a register retried after its session was
      // evicted is indistinguishable from a new one, and harmless (the client re-registers again
      // when its next request is answered `evicted`).
      if (existing !== undefined && request <= existing.request) {
        if (reply && request === existing.request) this.sendStoredReply({ client, request, session: existing.session }, existing.reply);
        return;
      }
      const stored: StoredReply = { op: prepare.op, timestamp: prepare.timestamp, operation, result: Result.ok, body: new Uint8Array(0) };
      const evicted = host.clients.register(client, prepare.op, request, stored);
      if (evicted !== null) host.env.log("debug", `replica ${host.replica}: client table full: evicted client ${evicted.toString(16)}`);
      // The new session is the register's op.
      if (reply) this.sendStoredReply({ client, request, session: prepare.op }, stored);
      return;
    }
    if (operation === Operation.write_block) {
      // write_block: idempotent, so neither a session nor at-most-once is needed; the reply is
      // never stored (a retry is answered from the executed state on arrival).
      const result = executeLargeWrite(host.store, host.config, prepare.timestamp, operation, req.body, body_location);
      if (reply)
        this.sendStoredReply(
          { client, request, session },
          { op: prepare.op, timestamp: prepare.timestamp, operation, result: result.result, body: result.body },
        );
      return;
    }
    const entry = host.clients.get(client);
    if (entry === undefined || entry.session !== session) {
      // RULE (sessions): evicted or stale sessions are refused at execution, on every replica alike.
      if (reply)
        this.sendStoredReply(
          { client, request, session },
          { op: prepare.op, timestamp: prepare.timestamp, operation, result: Result.evicted, body: new Uint8Array(0) },
        );
      return;
    }
    if (request <= entry.request) {
      // A duplicate that was ordered twice (a retry across a view change): executed at most once.
      host.observer?.request(host.replica, client, request, prepare.op, true);
      if (reply && request === entry.request) this.sendStoredReply({ client, request, session }, entry.reply);
      return;
    }
    const result =
      operation === Operation.put || operation === Operation.delete
        ? executeWrite(host.store, prepare.timestamp, operation, req.body, body_location)
        : executeLargeWrite(host.store, host.config, prepare.timestamp, operation, req.body, body_location, (upload, parts) =>
            host.manifestBlocksReady(upload, parts),
          );
    const stored: StoredReply = { op: prepare.op, timestamp: prepare.timestamp, operation, result: result.result, body: result.body };
    host.clients.record(client, prepare.op, request, stored);
    host.observer?.request(host.replica, client, request, prepare.op, false);
    if (reply) this.sendStoredReply({ client, request, session }, stored);
  }

  private sendStoredReply(to: ReplyTo, stored: StoredReply): void {
    // A stored reply is of an executed op, or of the one executing now.
    assert(stored.op <= this.host.commit_min + 1, () => `replica ${this.host.replica}: a stored reply of op ${stored.op} not executed`);
    this.host.sendReply({
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

  /** Refuses a request on arrival; false, so a refusal never asks the primary to prepare. */
  private replyError(message: Message, result: Result): false {
    const host = this.host;
    assert(result !== Result.ok, () => `replica ${host.replica}: an error reply without an error`);
    host.stats.requests_rejected += 1;
    if (result === Result.busy) host.stats.requests_busy += 1;
    if (result === Result.not_primary) host.stats.requests_not_primary += 1;
    const h = message.header;
    // A replica changing views names the last view whose primary it knew as a hint (a recovering
    // one, the view it adopted from its peers).
    const view = result === Result.not_primary && host.status === "view_change" ? host.log_view : host.view;
    // The limit a request broke travels with the error, so a client can name it.
    const limit =
      result === Result.value_too_large
        ? sizeLimitOf(h.operation, host.config, message.body)
        : result === Result.key_invalid
          ? key_size_max
          : null;
    const body = limit === null ? new Uint8Array(0) : encodeU64(limit);
    const reply: Reply = {
      client: h.client,
      request: h.request,
      session: h.session,
      operation: h.operation,
      result,
      body,
      op: 0,
      commit: host.commit_max,
      timestamp: 0,
    };
    host.env.sendToClient(h.client, buildReply(host.envelope(view), reply));
    return false;
  }
}
