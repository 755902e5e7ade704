/**
 * The replica's side of a flush (docs/STORAGE.md §10.9), as the events its driver delivers: begin
 * (every write queued so far becomes the group in flight), synced (the fdatasyncs of a step
 * returned), and completed (the last step returned: only now does the replica act on the group).
 * At most one group is in flight; writes queued meanwhile wait for the next. Nothing here waits: the
 * driver runs the fdatasyncs (the thread pool in lib/node, a later event in the simulator).
 */
import { assert } from "../util/assert.ts";
import type { DurableState } from "./durable_state.ts";
import type { Journal } from "./journal.ts";
import type { Storage } from "./storage.ts";

export interface FlushHost {
  readonly replica: number;
  readonly storage: Pick<Storage, "pending" | "flushing" | "flushBegin" | "flushSynced" | "flushSyncInline">;
  readonly journal: Pick<Journal, "flushBegin">;
  readonly durable: Pick<DurableState, "flushBegin">;
}

export class FlushEvents {
  constructor(
    private readonly host: FlushHost,
    /** Acts on the group that just became durable (acknowledgements, the new view, replies). */
    protected readonly completed: () => void,
  ) {}

  /** Whether a flush should begin now: writes are queued and none is in flight. */
  needed(): boolean {
    return !this.host.storage.flushing() && this.host.storage.pending();
  }

  /** Whether a flush has begun and not completed. */
  inFlight(): boolean {
    return this.host.storage.flushing();
  }

  /** Event "begin": returns the files to fdatasync before synced(). */
  begin(): readonly number[] {
    const h = this.host;
    assert(!h.storage.flushing(), () => `replica ${h.replica}: a flush began while another is in flight`);
    h.journal.flushBegin();
    h.durable.flushBegin();
    return h.storage.flushBegin();
  }

  /** Event "synced": every fdatasync last returned succeeded. Returns the next files to sync, or
   * null once the group completed and the replica acted on it. */
  synced(): readonly number[] | null {
    const next = this.host.storage.flushSynced();
    if (next !== null) return next;
    this.completed();
    return null;
  }

  /** The flush in flight, then everything queued, on the calling thread (tests, shutdown). */
  now(): void {
    if (this.inFlight()) this.completeInline();
    if (!this.host.storage.pending()) return;
    this.begin();
    this.completeInline();
  }

  private completeInline(): void {
    do this.host.storage.flushSyncInline();
    while (this.synced() !== null);
  }
}
