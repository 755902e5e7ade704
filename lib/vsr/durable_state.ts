import { assert } from "../util/assert.ts";
import type { Header } from "../net/codec.ts";
import { checkpointFor } from "./checkpoint.ts";
import type { CheckpointId, VsrState } from "./storage.ts";

/** What a queued superblock write holds that the replica acts on once it is durable. */
export interface StateWritten {
  readonly view: number;
  readonly log_view: number;
  readonly checkpoint: CheckpointId;
  readonly incarnation: number;
}

/**
 * What this replica's superblock holds and what it is about to hold: the durable view, log_view
 * and checkpoint (RULE, persist before you promise: a replica promises only what a restart
 * reloads, docs/STORAGE.md §12), the checkpoint written whose superblock is not yet durable, the
 * superblock write in flight, and the ids of the recent checkpoints that prepares name. It decides
 * and records; the replica calls storage and chooses what to do next.
 */
export class DurableState {
  /** The view and log_view the superblock holds (-1: none written yet). */
  private view_ = -1;
  private log_view_ = -1;
  /** The checkpoint a restart would load. */
  private checkpoint_: CheckpointId;
  /** A checkpoint written (taken or synced) whose superblock is not yet durable. */
  private pending_: CheckpointId | null = null;
  /** The superblock write queued, if any (one at a time: a later write replaces it). */
  private written: StateWritten | null = null;
  /** The superblock write in the group of the flush in flight (docs/STORAGE.md §10.9), if any. */
  private flying: StateWritten | null = null;
  /** Ids of the recent checkpoints this replica took or synced, by op: prepares name them. */
  private readonly ids = new Map<number, CheckpointId>();
  /** The op last remembered: ids are kept for 4 intervals below it. */
  private remembered_op = 0;

  constructor(
    private readonly replica: number,
    private readonly interval_ops: number,
    root: CheckpointId,
  ) {
    assert(interval_ops > 0, "checkpoint interval must be positive");
    this.checkpoint_ = root;
    this.ids.set(root.op, root);
    this.remembered_op = root.op;
  }

  get view(): number {
    return this.view_;
  }
  get log_view(): number {
    return this.log_view_;
  }
  get checkpoint(): CheckpointId {
    return this.checkpoint_;
  }
  get pending(): CheckpointId | null {
    return this.pending_;
  }
  /** The view of the superblock write in the flush in flight (-1: none): on its way to the disk,
   * it can no longer be replaced. */
  get view_flushing(): number {
    return this.flying?.view ?? -1;
  }
  /** The newest superblock write queued or in flight and not yet durable, if any. */
  get in_flight(): StateWritten | null {
    return this.written ?? this.flying;
  }

  /** Opened from a superblock: what it holds is durable. checkpoint null: its file is damaged, so
   * the state is recovered from peers and the durable checkpoint stays the root until then. */
  restart(view: number, log_view: number, checkpoint: CheckpointId | null): void {
    assert(this.view_ === -1 && this.written === null && this.flying === null, () => `replica ${this.replica}: restarted twice`);
    assert(log_view <= view, () => `replica ${this.replica}: superblock log_view ${log_view} above its view ${view}`);
    this.view_ = view;
    this.log_view_ = log_view;
    if (checkpoint === null) return;
    this.checkpoint_ = checkpoint;
    this.remember(checkpoint);
  }

  /** Keeps id for prepares to name; ids more than 4 intervals below it are dropped (a prepare
   * names one at most 2 intervals back, lib/vsr/checkpoint.ts; the rest is margin for peers). */
  remember(id: CheckpointId): void {
    // Checkpoints sit at multiples of the interval (lib/vsr/checkpoint.ts): prepares name no other op.
    assert(
      id.op >= 0 && id.op % this.interval_ops === 0,
      () => `replica ${this.replica}: checkpoint at op ${id.op}, not a multiple of ${this.interval_ops}`,
    );
    this.ids.set(id.op, id);
    this.remembered_op = id.op;
    for (const op of this.ids.keys()) {
      if (op < id.op - 4 * this.interval_ops) this.ids.delete(op);
    }
  }

  /** The id of the checkpoint a prepare at op names: one this replica took or synced, or the one
   * its parent names already (the same checkpoint, within an interval). null: not taken yet, so
   * the primary must execute further before it prepares op. */
  idFor(op: number, parent: Header | null): CheckpointId | null {
    const named = checkpointFor(op, this.interval_ops);
    const own = this.ids.get(named);
    if (own !== undefined) return own;
    if (parent !== null && parent.checkpoint_op === named) return { op: named, digest: parent.checkpoint_digest, checksum: parent.context };
    return null;
  }

  /** The checkpoint an interval before op, which a checkpoint at op records as its predecessor. */
  previousOf(op: number): CheckpointId | undefined {
    return this.ids.get(op - this.interval_ops);
  }

  /** A checkpoint is being taken: its id is known whether or not its file can be written
   * (prepares name it; the next checkpoint records it as its predecessor). Returns that
   * predecessor, which the file records; taking one without it would break the chain. */
  taking(id: CheckpointId): CheckpointId {
    const previous = this.previousOf(id.op);
    assert(previous !== undefined, () => `replica ${this.replica}: checkpoint ${id.op} without the one before it`);
    this.remember(id);
    return previous;
  }

  /** A checkpoint file was written (taken or synced): it is pending until a superblock names it. */
  written_checkpoint(id: CheckpointId): void {
    assert(this.ids.get(id.op) === id, () => `replica ${this.replica}: checkpoint ${id.op} written but not remembered`);
    this.pending_ = id;
  }

  /** A checkpoint synced from a peer: its id and its predecessor's are known, its file written. */
  synced(target: CheckpointId, previous: CheckpointId): void {
    // The file records its predecessor: one interval before it, or the root for the first ones.
    assert(
      previous.op === Math.max(0, target.op - this.interval_ops),
      () => `replica ${this.replica}: synced checkpoint ${target.op} with predecessor ${previous.op}`,
    );
    this.remember(previous);
    this.remember(target);
    this.written_checkpoint(target);
  }

  /** Execution stopped at a checkpoint whose file could not be written: it waits there until the
   * file is, since past it no later op could take its place (checkpoints are at multiples of the
   * interval, and prepares name them). */
  missing(commit_min: number): boolean {
    return commit_min % this.interval_ops === 0 && commit_min > (this.pending_ ?? this.checkpoint_).op;
  }

  /** Whether the missing checkpoint at commit_min can be taken again: its predecessor is known. */
  retryable(commit_min: number): boolean {
    return this.missing(commit_min) && this.ids.has(commit_min - this.interval_ops);
  }

  /** The checkpoint the next superblock names: the pending one, else the durable one. */
  toWrite(): CheckpointId {
    const checkpoint = this.pending_ ?? this.checkpoint_;
    assert(
      checkpoint.op >= this.checkpoint_.op,
      () => `replica ${this.replica}: writing checkpoint ${checkpoint.op} over the durable ${this.checkpoint_.op}`,
    );
    return checkpoint;
  }

  /** A superblock write of state was queued. */
  record(state: VsrState): void {
    assert(
      state.view >= this.view_ && state.log_view >= this.log_view_,
      () => `replica ${this.replica}: writing view ${state.view}/${state.log_view} below the durable ${this.view_}/${this.log_view_}`,
    );
    assert(
      state.checkpoint.op >= this.checkpoint_.op,
      () => `replica ${this.replica}: writing checkpoint ${state.checkpoint.op} over the durable ${this.checkpoint_.op}`,
    );
    this.written = { view: state.view, log_view: state.log_view, checkpoint: state.checkpoint, incarnation: state.incarnation };
  }

  /** A flush began: the queued superblock write, if any, is in its group. */
  flushBegin(): void {
    assert(this.flying === null, () => `replica ${this.replica}: a flush began while another is in flight`);
    this.flying = this.written;
    this.written = null;
  }

  /** The flush in flight completed: returns the superblock it made durable, if its group had one
   * (the replica tells formation of its incarnation). */
  flushed(): StateWritten | null {
    const written = this.flying;
    if (written === null) return null;
    this.flying = null;
    assert(written.view >= this.view_ && written.log_view >= this.log_view_, "durable view went backwards");
    this.view_ = written.view;
    this.log_view_ = written.log_view;
    assert(written.checkpoint.op >= this.checkpoint_.op, "durable checkpoint went backwards");
    this.checkpoint_ = written.checkpoint;
    if (this.pending_ !== null && this.pending_.op <= this.checkpoint_.op) this.pending_ = null;
    return written;
  }

  /** recovering: a recovering replica whose checkpoint file was damaged may sync one below the
   * durable one (the root until then), and execute up to it before it persists anything. */
  invariants(recovering: boolean): void {
    // Runs after every simulator step: each check is a plain condition first, and the assert (with
    // its message closure) is reached only when one fails.
    if (this.log_view_ > Math.max(this.view_, 0))
      assert(false, `replica ${this.replica}: durable log_view ${this.log_view_} above the durable view ${this.view_}`);
    const pending = this.pending_;
    if (pending !== null) {
      if (!(recovering || pending.op > this.checkpoint_.op))
        assert(false, `replica ${this.replica}: pending checkpoint ${pending.op} not above the durable ${this.checkpoint_.op}`);
      if (this.ids.get(pending.op) !== pending)
        assert(false, `replica ${this.replica}: pending checkpoint ${pending.op} is not among the ids prepares name`);
    }
    if (this.flying !== null) this.queuedInvariants(this.flying);
    if (this.written !== null) this.queuedInvariants(this.written);
    const floor = this.remembered_op - 4 * this.interval_ops;
    for (const op of this.ids.keys()) {
      const id = this.ids.get(op)!;
      if (id.op !== op) assert(false, `replica ${this.replica}: checkpoint id ${id.op} kept under op ${op}`);
      if (op < floor) assert(false, `replica ${this.replica}: checkpoint id ${op} kept beyond 4 intervals below ${this.remembered_op}`);
    }
  }

  /** A state queued or in flight to the superblock never goes below the durable one. */
  private queuedInvariants(written: StateWritten): void {
    if (!(written.view >= this.view_ && written.log_view >= this.log_view_))
      assert(
        false,
        `replica ${this.replica}: queued view ${written.view}/${written.log_view} below the durable ${this.view_}/${this.log_view_}`,
      );
    if (!(written.checkpoint.op >= this.checkpoint_.op))
      assert(false, `replica ${this.replica}: queued checkpoint ${written.checkpoint.op} below the durable ${this.checkpoint_.op}`);
  }
}
