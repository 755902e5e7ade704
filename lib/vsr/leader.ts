/**
 * What only the acting primary holds (Replica.isActingPrimary): created when it starts leading a
 * view, dropped when it leaves the role, so nothing of one term as primary leaks into the next.
 *
 * It owns the pipeline of prepares in flight, the queue of requests waiting for room in it, the
 * requests in flight per client, the linearizable-read queue (read_queue.ts), the tick each
 * backup last proved alive, and the progress counters behind abdication. It sends, journals and
 * executes nothing: the replica and the part driving its normal operation (primary.ts) ask it for
 * decisions (queue this request? which batch next? which ops commit? which prepares to resend, and
 * to whom? abdicate or send a heartbeat?) and carry them out. The rules themselves are in docs/PROTOCOL.md (normal operation, reads, view change).
 */
import { assert } from "../util/assert.ts";
import type { Message } from "../net/codec.ts";
import { batchEntrySize, batch_header_size } from "./batch.ts";
import { ReadQueue } from "./read_queue.ts";

export interface PipelineEntry {
  op: number;
  checksum: bigint;
  /** The prepare, kept while in flight for resending (null: read it back from the journal). */
  message: Message | null;
  /** The replicas that hold this prepare durably (the primary included once its copy is). */
  oks: Set<number>;
}

/** The cluster's shape and the limits a leader keeps to (from Config and the replica). */
export interface LeaderLimits {
  replica_count: number;
  /** This replica, the primary. */
  replica: number;
  /** Backups that must confirm a read round (with the primary, a quorum). */
  f: number;
  /** Replicas that must be heard within the view change timeout for the primary to stay. */
  quorum: number;
  request_queue_max: number;
  /** Bytes of request bodies the queue may hold (blocks are up to 4 MiB each): beyond, busy. */
  request_queue_bytes_max: number;
  read_queue_max: number;
  pipeline_prepare_max: number;
  batch_requests_max: number;
  batch_size_max: number;
  heartbeat_ticks: number;
  view_change_timeout_ticks: number;
}

/** A request waiting for room in the pipeline, as it will be written into a batch. Client 0 is the
 * primary itself (housekeeping, docs/LARGE_OBJECTS.md §5.5), never a client. */
export interface QueuedRequest {
  client: bigint;
  session: number;
  request: number;
  operation: number;
  body: Uint8Array;
}

/** What becomes of a write request offered to the queue. */
export type QueueDecision =
  /** A retry of a request already queued or being prepared: answered when that one executes. */
  | "in_flight"
  /** The queue is full: the client is told to retry. */
  | "busy"
  | "queued";

/** What the heartbeat timeout decides. */
export type HeartbeatDecision =
  /** RULE (abdication): no quorum heard within the view change timeout. */
  | { kind: "abdicate_unheard" }
  /** No progress for longer than the view change timeout while work is pending. */
  | { kind: "abdicate_stuck"; stall_ticks: number }
  | { kind: "heartbeat" };

/** A prepare in flight and the replicas it is resent to (those that have not acknowledged it). */
export interface Resend {
  entry: PipelineEntry;
  to: number[];
}

/** What Leader.invariants checks against: the replica's state around the leader's. */
export interface LeaderContext {
  op: number;
  commit_min: number;
  commit_max: number;
  /** The highest op this replica may count its own copy of (Replica.opPrepareOkMax). */
  op_prepare_ok_max: number;
  /** Whether the cluster is formed: before it the pipeline is empty but op may be anything. */
  formed: boolean;
  /** The checksum of the journal's header at op, if it has one. */
  checksumAt(op: number): bigint | null;
}

export class Leader {
  /** Prepares in flight: ops commit_max+1..op in order, with the replicas that hold each durably. */
  readonly pipeline: PipelineEntry[];
  /** Requests waiting for room in the pipeline (at most request_queue_max, and
   * request_queue_bytes_max bytes of bodies unless it holds a single request). */
  private readonly request_queue: QueuedRequest[] = [];
  private request_queue_bytes = 0;
  /** Whether the queue holds an entry of the primary's own (at most one at a time). */
  private internal_queued = false;
  /** Per client, the request number queued or prepared and not yet executed (a client has one
   * request outstanding at a time): a retry of it is answered when it executes. */
  private readonly inflight = new Map<bigint, number>();
  /** Heartbeat rounds and the linearizable reads waiting on them (lib/vsr/read_queue.ts). */
  readonly reads: ReadQueue<Message>;
  /** The tick each backup last proved it is in this view and log (abdication when a quorum is
   * silent for the view change timeout). */
  private readonly last_ack_tick: number[];
  /** Progress at the last heartbeat, and how long it has not moved (abdication when stuck). */
  private stall_commit_min: number;
  private stall_commit_max: number;
  private stall_ticks = 0;
  /** Whether a state sync moved execution past ops this term prepared (their requests stay in
   * inflight, so Leader.invariants can no longer account for every entry). */
  private executions_skipped = false;

  constructor(
    private readonly limits: LeaderLimits,
    pipeline: PipelineEntry[],
    ticks: number,
    commit_min: number,
    commit_max: number,
  ) {
    const n = limits.replica_count;
    assert(limits.replica >= 0 && limits.replica < n, () => `leader ${limits.replica} out of range for ${n} replicas`);
    assert(limits.quorum > n / 2 && limits.quorum <= n, () => `quorum ${limits.quorum} is not a majority of ${n}`);
    assert(
      limits.request_queue_max >= 1 && limits.pipeline_prepare_max >= 1 && limits.batch_requests_max >= 1,
      "a leader needs room for one request",
    );
    assert(pipeline.length === 0 || pipeline[0]!.op === commit_max + 1, "the pipeline starts after commit_max");
    this.pipeline = pipeline;
    this.reads = new ReadQueue<Message>(n, limits.replica, limits.f, limits.read_queue_max);
    this.last_ack_tick = new Array<number>(n).fill(ticks);
    this.stall_commit_min = commit_min;
    this.stall_commit_max = commit_max;
  }

  get queued(): number {
    return this.request_queue.length;
  }

  /** Requests of clients waiting in the queue (the primary's own entry not counted). */
  get clientsQueued(): number {
    return this.request_queue.length - (this.internal_queued ? 1 : 0);
  }

  /** Offers a validated write request, new to the client table, to the queue. */
  queueRequest(message: Message): QueueDecision {
    const h = message.header;
    assert(h.client !== 0n, () => `leader ${this.limits.replica}: a client request from client 0`);
    if (this.inflight.get(h.client) === h.request) return "in_flight";
    if (this.request_queue.length >= this.limits.request_queue_max) return "busy";
    // Bytes bound memory (a queue of 4 MiB blocks); one request is always let in, whatever its size.
    if (this.request_queue.length > 0 && this.request_queue_bytes + message.body.length > this.limits.request_queue_bytes_max)
      return "busy";
    this.request_queue.push({ client: h.client, session: h.session, request: h.request, operation: h.operation, body: message.body });
    this.request_queue_bytes += message.body.length;
    this.inflight.set(h.client, h.request);
    // One in-flight entry per client: a client never has two requests in flight (§3), so the map
    // is bounded by the queue plus the pipeline's batches.
    assert(
      this.request_queue.length <= this.limits.request_queue_max,
      () => `leader ${this.limits.replica}: request queue of ${this.request_queue.length} over ${this.limits.request_queue_max}`,
    );
    return "queued";
  }

  /** Queues an entry of the primary's own (client 0: housekeeping); false if one is queued
   * already or the queue is full. It is not in flight for any client and gets no reply. */
  queueInternal(operation: number, body: Uint8Array): boolean {
    if (this.internal_queued || this.request_queue.length >= this.limits.request_queue_max) return false;
    this.request_queue.push({ client: 0n, session: 0, request: 0, operation, body });
    this.request_queue_bytes += body.length;
    this.internal_queued = true;
    return true;
  }

  /** Whether a request (one `only` accepts, if given) waits and the pipeline has room for one more
   * prepare (the replica adds its own conditions: journal room, durable view, checkpoint known,
   * disk space). */
  canPrepare(only: ((operation: number) => boolean) | null = null): boolean {
    if (this.pipeline.length >= this.limits.pipeline_prepare_max) return false;
    return only === null ? this.request_queue.length > 0 : this.request_queue.some((r) => only(r.operation));
  }

  /** Whether the queue already holds half a batch (by bytes) or a whole one (by count): a prepare
   * cut from it now amortizes its fixed costs as well as a later one would. */
  queueFillsBatch(): boolean {
    return this.request_queue.length >= this.limits.batch_requests_max || 2 * this.request_queue_bytes >= this.limits.batch_size_max;
  }

  /** Takes the next batch off the queue: in arrival order, at most batch_requests_max requests
   * and batch_size_max bytes encoded (one request always fits, whatever its size). With `only`,
   * just the requests it accepts, the others left queued in order: requests of different clients
   * are concurrent, so any order among them is one a client could have seen (a full disk takes
   * space-freeing writes past the others). */
  takeBatch(only: ((operation: number) => boolean) | null = null): QueuedRequest[] {
    assert(this.request_queue.length > 0, "a batch taken from an empty request queue");
    const batch: QueuedRequest[] = [];
    let size = batch_header_size;
    for (let i = 0; i < this.request_queue.length && batch.length < this.limits.batch_requests_max;) {
      const next = this.request_queue[i]!;
      if (only !== null && !only(next.operation)) {
        i += 1;
        continue;
      }
      const entry_size = batchEntrySize(next.body.length);
      if (batch.length > 0 && size + entry_size > this.limits.batch_size_max) break;
      batch.push(next);
      this.request_queue.splice(i, 1);
      this.request_queue_bytes -= next.body.length;
      if (next.client === 0n) this.internal_queued = false;
      size += entry_size;
    }
    assert(
      this.request_queue_bytes >= 0 && (this.request_queue.length > 0 || this.request_queue_bytes === 0),
      () => `leader ${this.limits.replica}: ${this.request_queue_bytes} bytes counted in a queue of ${this.request_queue.length}`,
    );
    // A single request larger than batch_size_max still goes alone (the request limit bounds it).
    assert(
      batch.length >= 1 && batch.length <= this.limits.batch_requests_max && (batch.length === 1 || size <= this.limits.batch_size_max),
      () => `leader ${this.limits.replica}: batch of ${batch.length} requests, ${size} bytes`,
    );
    return batch;
  }

  /** A prepare this primary sent: it follows the pipeline's last op (or commit_max). */
  prepared(op: number, checksum: bigint, message: Message): void {
    const last = this.pipeline[this.pipeline.length - 1];
    assert(
      last === undefined || op === last.op + 1,
      () => `leader ${this.limits.replica}: op ${op} prepared after pipeline op ${last!.op}`,
    );
    // prepared() follows canPrepare(): the pipeline is bounded by pipeline_prepare_max.
    assert(
      this.pipeline.length < this.limits.pipeline_prepare_max,
      () => `leader ${this.limits.replica}: op ${op} prepared into a full pipeline of ${this.pipeline.length}`,
    );
    this.pipeline.push({ op, checksum, message, oks: new Set() });
  }

  /** The pipeline entry of op, if in flight. */
  entry(op: number): PipelineEntry | undefined {
    return this.pipeline.find((e) => e.op === op);
  }

  /** Records that replica holds the prepare op with this checksum durably; false if no entry in
   * flight matches (committed already, or another prepare: a stale or forged ack). */
  ack(op: number, checksum: bigint, replica: number): boolean {
    assert(replica >= 0 && replica < this.limits.replica_count, () => `an ack from replica ${replica} of ${this.limits.replica_count}`);
    const entry = this.entry(op);
    if (entry === undefined || entry.checksum !== checksum) return false;
    entry.oks.add(replica);
    assert(
      entry.oks.size <= this.limits.replica_count,
      () => `op ${op}: ${entry.oks.size} acks from ${this.limits.replica_count} replicas`,
    );
    return true;
  }

  /** RULE (a quorum of durable copies before commit): pops, in op order, the entries that
   * `quorum` replicas hold or that are at or below commit_max already, and returns them. */
  popCommitted(quorum: number, commit_max: number): PipelineEntry[] {
    const popped: PipelineEntry[] = [];
    let commit = commit_max;
    while (this.pipeline.length > 0 && (this.pipeline[0]!.oks.size >= quorum || this.pipeline[0]!.op <= commit)) {
      const entry = this.pipeline.shift()!;
      assert(
        entry.op === commit + 1 || entry.op <= commit,
        () => `primary ${this.limits.replica}: committing op ${entry.op} after commit ${commit}`,
      );
      if (entry.op > commit) commit = entry.op;
      popped.push(entry);
    }
    return popped;
  }

  /** The prepare kept in flight for op with this checksum, if any (saves a journal read). */
  message(op: number, checksum: bigint): Message | null {
    for (const entry of this.pipeline) {
      if (entry.op === op && entry.checksum === checksum) return entry.message;
    }
    return null;
  }

  /** Every entry in flight in op order, with the replicas that have not acknowledged it. */
  resends(): Resend[] {
    return this.pipeline.map((entry) => {
      const to: number[] = [];
      for (let r = 0; r < this.limits.replica_count; r++) {
        if (r !== this.limits.replica && !entry.oks.has(r)) to.push(r);
      }
      return { entry, to };
    });
  }

  /** A request executed: it is no longer in flight (unless the client has a newer one). */
  executed(client: bigint, request: number): void {
    if (this.inflight.get(client) === request) this.inflight.delete(client);
  }

  /** A state sync moved commit_min past ops that never executed here. */
  skippedExecution(): void {
    this.executions_skipped = true;
  }

  /** A backup proved it is in this view and log at tick. */
  alive(replica: number, tick: number): void {
    assert(replica >= 0 && replica < this.limits.replica_count, () => `replica ${replica} alive of ${this.limits.replica_count}`);
    // Ticks only advance: a step back would make a silent replica look recently heard.
    assert(
      tick >= this.last_ack_tick[replica]!,
      () => `replica ${replica} heard at tick ${tick}, after tick ${this.last_ack_tick[replica]}`,
    );
    this.last_ack_tick[replica] = tick;
  }

  /** Every replica counts as heard at tick (the cluster just formed: nobody could answer before). */
  aliveAll(tick: number): void {
    assert(
      this.last_ack_tick.every((t) => t <= tick),
      () => `leader ${this.limits.replica}: all heard at tick ${tick}, before an earlier ack`,
    );
    this.last_ack_tick.fill(tick);
  }

  /** The heartbeat timeout at tick, with the replica's progress: abdicate, or send a heartbeat.
   * Keeps the stall counters. */
  heartbeat(tick: number, commit_min: number, commit_max: number): HeartbeatDecision {
    const l = this.limits;
    // The stall detector compares against the last progress seen: commits never go back in a term.
    assert(
      commit_min <= commit_max && commit_min >= this.stall_commit_min && commit_max >= this.stall_commit_max,
      () => `leader ${l.replica}: commit ${commit_min}/${commit_max} after ${this.stall_commit_min}/${this.stall_commit_max}`,
    );
    let heard = 1;
    for (let r = 0; r < l.replica_count; r++) {
      if (r !== l.replica && tick - this.last_ack_tick[r]! <= l.view_change_timeout_ticks) heard += 1;
    }
    if (heard < l.quorum && tick > l.view_change_timeout_ticks) return { kind: "abdicate_unheard" };
    // A primary that cannot execute what is committed (the prepares it lacks are gone from its
    // peers' journals, and no committed prepare names a checkpoint it could sync yet) would hold
    // the cluster still: let the next replica, further ahead, lead.
    // Likewise a pipeline whose head no replica holds (its only copy was lost with a disk): only
    // a view change can resolve it (its do_view_change quorum votes the op away).
    const stuck =
      (commit_min < commit_max || this.pipeline.length > 0) && commit_min === this.stall_commit_min && commit_max === this.stall_commit_max;
    if (stuck) {
      this.stall_ticks += l.heartbeat_ticks;
      if (this.stall_ticks > l.view_change_timeout_ticks && l.replica_count > 1)
        return { kind: "abdicate_stuck", stall_ticks: this.stall_ticks };
    } else {
      this.stall_commit_min = commit_min;
      this.stall_commit_max = commit_max;
      this.stall_ticks = 0;
    }
    return { kind: "heartbeat" };
  }

  /** Throws (through broken) if the leader's state contradicts itself or the replica's. */
  invariants(at: LeaderContext, broken: (what: string) => never): void {
    if (this.request_queue.length > this.limits.request_queue_max || this.reads.length > this.limits.read_queue_max)
      broken("queues over their bounds");
    let bytes = 0;
    let internal = 0;
    for (const m of this.request_queue) {
      bytes += m.body.length;
      if (m.client === 0n) internal += 1;
    }
    if (bytes !== this.request_queue_bytes || internal !== (this.internal_queued ? 1 : 0))
      broken("request queue bytes or internal entries miscounted");
    if (this.request_queue.length > 1 && bytes > this.limits.request_queue_bytes_max) broken(`request queue holds ${bytes} bytes`);
    this.reads.invariants();
    // Every request this term prepared has executed, unless a state sync skipped some: then each
    // request still in flight must be queued (execution is what clears an entry).
    if (at.op === at.commit_min && !this.executions_skipped && this.inflight.size > 0) {
      const queued = new Set<string>();
      for (const m of this.request_queue) queued.add(`${m.client}:${m.request}`);
      for (const [client, request] of this.inflight) {
        if (!queued.has(`${client}:${request}`))
          broken(`client ${client} request ${request} in flight, neither queued nor in a prepare awaiting execution`);
      }
    }
    // `formed` is this replica's knowledge, not the cluster's: one that never saw the proof may
    // still lead a view whose log has ops (sweep seed 194927161161); the rest holds once it knows.
    if (!at.formed) return;
    if (at.op !== at.commit_max + this.pipeline.length)
      broken(`primary op ${at.op} != commit ${at.commit_max} + ${this.pipeline.length} in flight`);
    for (let i = 0; i < this.pipeline.length; i++) {
      const entry = this.pipeline[i]!;
      if (entry.op !== at.commit_max + 1 + i) broken(`pipeline entry ${i} is op ${entry.op}`);
      if (at.checksumAt(entry.op) !== entry.checksum) broken(`pipeline op ${entry.op} is not the journal's`);
      if (entry.oks.has(this.limits.replica) && entry.op > at.op_prepare_ok_max)
        broken(`counts its own copy of op ${entry.op} beyond what a restart reloads`);
      for (const r of entry.oks) {
        if (r < 0 || r >= this.limits.replica_count) broken(`pipeline op ${entry.op} acknowledged by replica ${r}`);
      }
    }
  }
}
