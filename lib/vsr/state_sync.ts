/**
 * State sync (docs/PROTOCOL.md §4.4, request_sync and sync_chunk): a replica more than a
 * checkpoint behind fetches a whole checkpoint from a peer in chunks, because the ops below the
 * checkpoint its log names may be gone from every peer's journal. This file decides which
 * checkpoint to fetch (SyncTargets) and tracks one transfer of it (SyncTransfer); it only answers
 * with decisions, so its driver keeps the control flow (StateSync, state_sync_driver.ts): it sends
 * the messages and drives storage (syncBegin, syncApply, syncFinish, writeCheckpoint), and the
 * replica installs what arrived.
 */
import { assert } from "../util/assert.ts";
import type { Config } from "../constants.ts";
import type { ObjectStore } from "../store/object_store.ts";
import type { ClientTable } from "./client_table.ts";
import { checkpointFor } from "./checkpoint.ts";
import { stateDigest } from "./root.ts";
import type { CheckpointId, CheckpointMeta } from "./storage.ts";

/** Size of one state-sync chunk request. */
export const sync_chunk_size_max = 256 * 1024;
/** How long a replica repairs its log instead of asking again for a checkpoint no peer served. */
export const sync_backoff_ticks = 200;
/** Ticks a replica waits after its first failed sync attempt before the next (100 ms at 10 ms
 * ticks); each further consecutive failure doubles the wait. */
export const sync_retry_ticks_min = 10;
/** The longest wait between failed sync attempts (5 s at 10 ms ticks): a stream that never
 * verifies (a bug, a corrupt or lying peer) costs one attempt per 5 s, not one per round trip. */
export const sync_retry_ticks_max = 500;
/** Of consecutive failed sync attempts, the first and every this many are logged at warn or error,
 * the others at debug, so a sync that keeps failing does not flood the log. */
export const sync_failure_log_every = 10;

/** Whether a replica whose head is head_op and that executed up to commit_min is more than a
 * checkpoint behind: the checkpoint its head names, or the one before the primary's durable
 * checkpoint, is above what it executed. Below those, peers may have synced past the ops it
 * lacks and never held them. */
export function syncNeeded(head_op: number, primary_checkpoint_op: number, commit_min: number, checkpoint_interval_ops: number): boolean {
  assert(checkpoint_interval_ops > 0, "checkpoint interval must be positive");
  const named = checkpointFor(head_op, checkpoint_interval_ops);
  const cluster = Math.max(named, primary_checkpoint_op - checkpoint_interval_ops);
  return cluster > commit_min;
}

/** The fields of a prepare header that name a checkpoint (its `context` is the anchor checksum). */
export interface CheckpointNaming {
  op: number;
  checkpoint_op: number;
  checkpoint_digest: bigint;
  context: bigint;
}

/** What a transfer wants after a repair tick without an accepted chunk ("retry": its wait after a
 * failed attempt ended, so it asks for the stream from the start). */
export type SyncStall = "wait" | "ask_next_peer" | "give_up" | "retry";

/** Consecutive failed sync attempts (a stream that did not parse or did not verify), across
 * transfers and targets until one succeeds: each failure makes the next attempt wait longer,
 * exponentially in ticks up to sync_retry_ticks_max. Without it a stream that never verifies is
 * fetched again as fast as messages flow, forever. Ticks only: no clock, no randomness. */
export class SyncFailures {
  private failures = 0;
  /** The next attempt sends no request before this tick. */
  private resume_tick = 0;

  /** Consecutive failed attempts since the last sync that succeeded. */
  get count(): number {
    return this.failures;
  }

  /** An attempt failed at tick `ticks`: the ticks the next one waits. */
  failed(ticks: number): number {
    assert(Number.isSafeInteger(ticks) && ticks >= 0, () => `sync failure at tick ${ticks}`);
    this.failures += 1;
    // The exponent is capped before the power so the arithmetic stays exact however long it fails.
    const doublings = Math.min(this.failures - 1, Math.ceil(Math.log2(sync_retry_ticks_max / sync_retry_ticks_min)));
    const wait = Math.min(sync_retry_ticks_max, sync_retry_ticks_min * 2 ** doublings);
    assert(wait >= sync_retry_ticks_min && wait <= sync_retry_ticks_max, () => `sync retry wait ${wait} ticks`);
    this.resume_tick = ticks + wait;
    return wait;
  }

  /** The tick before which no attempt may send its first request (0: none is waiting). */
  get resume(): number {
    return this.resume_tick;
  }

  /** Whether the last failure is one to report loudly: the first, and every sync_failure_log_every. */
  loud(): boolean {
    assert(this.failures > 0, "no failed sync attempt to log");
    return this.failures === 1 || this.failures % sync_failure_log_every === 0;
  }

  /** A sync verified and was installed: the next failure waits the shortest time again. */
  succeeded(): void {
    this.failures = 0;
    this.resume_tick = 0;
  }
}

/** Which checkpoint to fetch. Only one a committed prepare names, or the one the primary of this
 * view announced, is trusted: a received checkpoint is verified against this id alone. */
export class SyncTargets {
  /** The durable checkpoint the primary of `view` announced in its heartbeat (a sync target when
   * no replica serves the one a committed prepare names). */
  private primary_checkpoint: { view: number; id: CheckpointId } | null = null;
  /** A checkpoint no peer served: not asked for again until this tick (repair goes on). */
  private backoff: { op: number; until_tick: number } | null = null;

  /** The latest announcement counts (not the highest): a forged one is replaced by the next. */
  primaryAnnounced(view: number, id: CheckpointId): void {
    assert(id.op > 0, "the primary announced no checkpoint");
    this.primary_checkpoint = { view, id };
  }

  /** The checkpoint a header names, when that header is committed (at or below commit_known),
   * the checkpoint is above what this replica executed, and it is the one its op must name (a
   * header naming another is not a proof of anything). */
  fromCommitted(h: CheckpointNaming, commit_known: number, commit_min: number, checkpoint_interval_ops: number): CheckpointId | null {
    assert(commit_min <= commit_known, () => `executed ${commit_min} above the commit known ${commit_known}`);
    if (h.op > commit_known || h.checkpoint_op <= commit_min) return null;
    if (h.checkpoint_op !== checkpointFor(h.op, checkpoint_interval_ops)) return null;
    // A target is always a real checkpoint above what was executed (a sync to the root or below
    // commit_min would throw executed state away); the checks above guarantee it for any header.
    assert(
      h.checkpoint_op > commit_min && h.checkpoint_op > 0 && h.checkpoint_op < h.op,
      () => `sync target ${h.checkpoint_op} named by op ${h.op}, executed ${commit_min}`,
    );
    return { op: h.checkpoint_op, digest: h.checkpoint_digest, checksum: h.context };
  }

  /** Whether a transfer of target may start at this tick: not while backing off from a checkpoint
   * at or above it that no peer served. */
  allows(target: CheckpointId, ticks: number): boolean {
    assert(target.op > 0, "state sync to the root checkpoint");
    return this.backoff === null || target.op > this.backoff.op || ticks >= this.backoff.until_tick;
  }

  /** No peer served `stalled` (the cluster moved on, or its only holders have a value of it
   * damaged, and an idle cluster names no newer one). The primary's own durable checkpoint, the
   * state it executed (so committed, as trusted as the log it sends), is the next target when it
   * is newer and within what this replica knows is committed; otherwise the ops up to it may still
   * be in peers' journals, so it repairs them for a while before asking again (a newer checkpoint
   * may be named meanwhile), and null says so. */
  afterStall(stalled: CheckpointId, view: number, commit_min: number, commit_known: number, ticks: number): CheckpointId | null {
    assert(
      stalled.op > 0 && commit_min <= commit_known,
      () => `stalled on checkpoint ${stalled.op} with executed ${commit_min} above the commit known ${commit_known}`,
    );
    const own = this.primary_checkpoint;
    if (own !== null && own.view === view && own.id.op > stalled.op && own.id.op > commit_min && own.id.op <= commit_known) return own.id;
    this.backoff = { op: stalled.op, until_tick: ticks + sync_backoff_ticks };
    // The stalled target itself is refused until the backoff ends (repair gets its turn first).
    assert(!this.allows(stalled, ticks), () => `sync to ${stalled.op} still allowed right after it stalled`);
    return null;
  }
}

/** One transfer of a checkpoint: the position of the next chunk, the peer asked, and how long it
 * has been silent. Chunks are applied strictly in order, so only the chunk at the position asked
 * for is accepted; any other (another target, a duplicate, a late answer to an earlier peer) is
 * ignored. */
export class SyncTransfer {
  private position = 0;
  private asked: number;
  /** Repair ticks without an accepted chunk: every peer may have moved past the target. */
  private stalled = 0;
  /** After a failed attempt (SyncFailures): no request, and no chunk accepted, before this tick. */
  private resume_tick: number | null = null;

  constructor(
    readonly target: CheckpointId,
    first_peer: number,
    private readonly replica: number,
    private readonly config: Pick<Config, "replica_count" | "checkpoint_interval_ops">,
  ) {
    assert(target.op > 0, "state sync to the root checkpoint");
    assert(first_peer >= 0 && first_peer < config.replica_count, () => `peer ${first_peer} out of range`);
    assert(replica >= 0 && replica < config.replica_count, () => `replica ${replica} out of range`);
    this.asked = first_peer;
  }

  /** The peer asked last (or to be asked next). */
  get peer(): number {
    return this.asked;
  }

  /** The next request: whom to ask, for the chunk at which position. Never this replica itself
   * (a primary that fell behind may sync too). */
  request(): { peer: number; position: number } {
    assert(this.resume_tick === null, () => `state sync asks for a chunk while waiting until tick ${this.resume_tick}`);
    if (this.asked === this.replica) this.asked = this.next(this.asked);
    assert(this.asked !== this.replica || this.config.replica_count === 1, "state sync asks itself");
    return { peer: this.asked, position: this.position };
  }

  /** Whether a chunk for checkpoint (op, digest) from `position` is the one this transfer waits
   * for; accepting it means the peer answers, so the stall count starts again. */
  accept(op: number, digest: bigint, position: number): boolean {
    // While waiting after a failed attempt nothing was asked: a late chunk of the failed stream
    // must not start the next attempt early.
    if (this.resume_tick !== null) return false;
    if (op !== this.target.op || digest !== this.target.digest || position !== this.position) return false;
    this.stalled = 0;
    return true;
  }

  /** The accepted chunk was applied; `next` is the position it says follows (null after the last
   * chunk): ask for that one, or verify what arrived. */
  applied(next: number | null): "request_next" | "complete" {
    assert(this.stalled === 0, "a chunk applied without being accepted");
    // The codec refuses a timestamp of 2^53 or more (docs/PROTOCOL.md §1.2).
    assert(next === null || (Number.isSafeInteger(next) && next >= 0), () => `next position ${next}`);
    if (next === null) return "complete";
    this.position = next;
    return "request_next";
  }

  /** Whether the transfer is waiting out the backoff after a failed attempt. */
  get waiting(): boolean {
    return this.resume_tick !== null;
  }

  /** No request before tick `resume_tick` (a failed attempt's backoff, SyncFailures); the repair
   * tick at or after it says "retry". */
  waitUntil(resume_tick: number): void {
    assert(Number.isSafeInteger(resume_tick) && resume_tick > 0, () => `state sync waits until tick ${resume_tick}`);
    this.resume_tick = resume_tick;
  }

  /** Whether the checkpoint storage assembled is the target: its state digest, its anchor's op and
   * checksum, and the op of the checkpoint before it (which the next checkpoint records) must all
   * be what the committed prepare named. */
  verifies(received: { store: ObjectStore; clients: ClientTable; checkpoint: CheckpointMeta }): boolean {
    const meta = received.checkpoint;
    assert(this.stalled === 0, "verifying a transfer whose last chunk was not accepted");
    if (stateDigest(received.store, received.clients) !== this.target.digest) return false;
    return (
      meta.anchor.op === this.target.op &&
      meta.anchor.checksum === this.target.checksum &&
      meta.previous.op === this.target.op - this.config.checkpoint_interval_ops
    );
  }

  /** What arrived did not parse or did not verify (the peer that served it is broken or lying):
   * start over from the beginning with the next peer other than this replica, at tick
   * `resume_tick`. */
  retryElsewhere(resume_tick: number): void {
    const broken = this.asked;
    this.position = 0;
    this.asked = this.next(this.asked);
    if (this.asked === this.replica) this.asked = this.next(this.asked);
    this.waitUntil(resume_tick);
    // The peer that served a stream that did not verify is not asked again right away.
    assert(
      this.asked !== broken || this.config.replica_count === 1,
      () => `state sync retries the peer ${broken} whose stream did not verify`,
    );
  }

  /** A repair tick passed at tick `ticks`. While waiting after a failed attempt, nothing counts as
   * a stall; once the wait is over, "retry" (ask for the stream from its start). Otherwise a
   * chunk arriving resets the count, so only a transfer silent for a whole repair tick asks the
   * next peer (the one asked may have moved past this checkpoint), once per tick; after every peer
   * had two chances, the cluster has moved on and the target is dropped. */
  repairTick(ticks: number): SyncStall {
    if (this.resume_tick !== null) {
      if (ticks < this.resume_tick) return "wait";
      this.resume_tick = null;
      this.stalled = 0;
      assert(this.position === 0, () => `state sync retries from position ${this.position}`);
      return "retry";
    }
    this.stalled += 1;
    if (this.stalled > 2 * this.config.replica_count + 1) return "give_up";
    if (this.stalled > 1) {
      this.asked = this.next(this.asked);
      return "ask_next_peer";
    }
    return "wait";
  }

  private next(peer: number): number {
    assert(peer >= 0 && peer < this.config.replica_count, () => `peer ${peer} out of range`);
    return (peer + 1) % this.config.replica_count;
  }
}
