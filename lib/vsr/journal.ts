/**
 * The replica's in-memory view of its journal: for each op in the window of journal_slot_count
 * ops, the header it holds (or none) and what is known of its prepare on disk (SlotState). The
 * prepares themselves live in Storage.
 *
 * Independently of its state, a slot may be *damaged*: its record on disk was unreadable, so the
 * op it held is unknown. Which op that is, within the window, is known (damaged_op): this replica
 * must not vote that op away until a prepare is written into the slot again.
 */
import { AssertionError, assert } from "../util/assert.ts";
import type { Header } from "../net/codec.ts";

/**
 * What a slot holds. This replaces three parallel flags per slot (present: the prepare is on disk
 * and readable; dirty: its write is not durable yet; faulty: it was on disk and reads back
 * damaged), whose 8 combinations were only 4 legal ones with a header:
 *   present dirty faulty
 *   no      no    no      header   (and, without a header, empty)
 *   yes     yes   no      dirty
 *   yes     no    no      durable
 *   no      no    yes     faulty
 * The other four cannot happen: dirty without present would be an unwritten write waiting for a
 * flush (only a write sets dirty, and it sets present with it); present with faulty would be a
 * prepare that reads back both intact and damaged (every change set faulty only with present
 * false). Without a header no flag was ever set: a prepare is known only by its header.
 */
export enum SlotState {
  /** No header for any op of this slot. */
  empty,
  /** The header is known (from a peer, a start_view or the superblock), the prepare is not on
   * disk: repair fetches it. */
  header,
  /** The prepare is written, not yet durable (acknowledged only after the flush). */
  dirty,
  /** The prepare is written and durable. */
  durable,
  /** The header is known and the prepare was on disk but reads back damaged: it may have been
   * acknowledged, so it is repaired, never voted away. */
  faulty,
}

export class Journal {
  private readonly headers: (Header | null)[];
  /** Per slot: empty exactly when its header is null. */
  private readonly states: SlotState[];
  /** Per slot: the op whose record was found unreadable there (-1: none). */
  private readonly damaged_op: number[];
  /** Ops written since the last flush began (the next group). */
  private dirty_ops: number[] = [];
  /** Per slot: which write put its prepare there (a count of writes, 0: none since open). */
  private readonly write_id: number[];
  private writes = 0;
  /** The group of the flush in flight: each op with the write it took, so a slot written again
   * meanwhile is not completed by this group (docs/STORAGE.md §10.9), even with the same prepare:
   * a prepare found damaged and rewritten by repair is durable only once its new copy is. */
  private flying: { op: number; write: number }[] = [];
  /** Counts changes (for checks that only need to run when something changed). */
  mutations = 0;

  constructor(readonly slot_count: number) {
    assert(slot_count >= 4, "journal needs at least 4 slots");
    this.headers = new Array<Header | null>(slot_count).fill(null);
    this.states = new Array<SlotState>(slot_count).fill(SlotState.empty);
    this.damaged_op = new Array<number>(slot_count).fill(-1);
    this.write_id = new Array<number>(slot_count).fill(0);
  }

  private slot(op: number): number {
    const slot = op % this.slot_count;
    // Negative or fractional ops would index outside the arrays and read undefined as "no header".
    // (Condition first: this runs on every journal lookup, and a message closure per call showed.)
    if (!(slot >= 0 && Number.isInteger(slot))) assert(false, `journal: op ${op} has no slot`);
    return slot;
  }

  /** The state of the slot of this op, if it holds this op (empty if it holds another or none). */
  state(op: number): SlotState {
    return this.header(op) === null ? SlotState.empty : this.states[this.slot(op)]!;
  }

  /** Moves a slot to a new header and state: the one place slot states change. */
  private set(slot: number, header: Header | null, to: SlotState): void {
    assert(
      (header === null) === (to === SlotState.empty),
      () => `journal slot ${slot}: state ${SlotState[to]} with${header === null ? "out" : ""} a header`,
    );
    assert(header === null || this.slot(header.op) === slot, () => `journal slot ${slot}: op ${header!.op} maps elsewhere`);
    assert(header === null || (Number.isSafeInteger(header.op) && header.op >= 0), () => `journal slot ${slot}: op ${header!.op}`);
    this.headers[slot] = header;
    this.states[slot] = to;
  }

  /** The header held for exactly this op, if any. */
  header(op: number): Header | null {
    if (op < 0) return null;
    const h = this.headers[this.slot(op)];
    return h !== null && h !== undefined && h.op === op ? h : null;
  }

  /** Whether the prepare for this op and checksum is written (readable from storage). */
  hasPrepare(op: number, checksum: bigint): boolean {
    const h = this.header(op);
    if (h === null || h.checksum !== checksum) return false;
    const state = this.states[this.slot(op)]!;
    return state === SlotState.dirty || state === SlotState.durable;
  }

  /** Whether the prepare for this op and checksum is written and durable. */
  hasDurable(op: number, checksum: bigint): boolean {
    const h = this.header(op);
    return h !== null && h.checksum === checksum && this.states[this.slot(op)] === SlotState.durable;
  }

  /** Whether this replica may have held (and acknowledged) this prepare but cannot read it: found
   * damaged on disk, or its slot's record was unreadable. It must be repaired, never voted away. */
  isFaulty(op: number, checksum: bigint): boolean {
    const slot = this.slot(op);
    if (this.damaged_op[slot] === op) return true;
    const h = this.header(op);
    return h !== null && h.checksum === checksum && this.states[slot] === SlotState.faulty;
  }

  /** Whether the record of this op's slot was unreadable (the op it held is unknown). */
  isDamaged(op: number): boolean {
    return op >= 0 && this.damaged_op[this.slot(op)] === op;
  }

  /** The ops whose slots are damaged, ascending, among those in (op_min, op_max]. */
  damagedOps(op_min: number, op_max: number): number[] {
    const ops: number[] = [];
    for (const op of this.damaged_op) if (op > op_min && op <= op_max) ops.push(op);
    return ops.sort((a, b) => a - b);
  }

  /** The slot's record was unreadable at open; `op` is the op of the window that maps to it. */
  markDamaged(op: number): void {
    assert(op >= 0, () => `damaged op ${op}`);
    this.mutations += 1;
    this.damaged_op[this.slot(op)] = op;
  }

  /** Records a header without its prepare (learned from a peer; the prepare must be repaired). */
  setHeader(header: Header): void {
    const slot = this.slot(header.op);
    this.mutations += 1;
    const old = this.headers[slot];
    if (old !== null && old !== undefined && old.op === header.op && old.checksum === header.checksum) return;
    this.set(slot, header, SlotState.header);
  }

  /** Records that the prepare was written to storage (durable at the next flush). Its record
   * replaces whatever the slot held, damage included. */
  wrote(header: Header): void {
    this.mutations += 1;
    const slot = this.slot(header.op);
    this.set(slot, header, SlotState.dirty);
    this.damaged_op[slot] = -1;
    this.writes += 1;
    this.write_id[slot] = this.writes;
    this.dirty_ops.push(header.op);
    assert(
      this.hasPrepare(header.op, header.checksum) && !this.isDamaged(header.op),
      () => `journal op ${header.op}: written but not readable`,
    );
  }

  /** Records a prepare found on disk at recovery (its record intact; the prepare intact or not).
   * Recovery fills a journal nothing was written into yet: the slot holds at most a header (the
   * checkpoint's anchor, or the root). */
  recovered(header: Header, intact: boolean): void {
    this.mutations += 1;
    const slot = this.slot(header.op);
    const from = this.states[slot]!;
    assert(
      from === SlotState.empty || from === SlotState.header,
      () => `journal slot ${slot}: op ${header.op} recovered over a ${SlotState[from]} slot`,
    );
    this.set(slot, header, intact ? SlotState.durable : SlotState.faulty);
  }

  /** The prepare was damaged when read back: keep the header, repair the prepare. Only a prepare
   * written (the header's own) can be read back. */
  damaged(header: Header): void {
    this.mutations += 1;
    const slot = this.slot(header.op);
    assert(
      this.hasPrepare(header.op, header.checksum),
      () => `journal slot ${slot}: op ${header.op} read back damaged, but its prepare was not written (${SlotState[this.states[slot]!]})`,
    );
    this.set(slot, header, SlotState.faulty);
  }

  /** A flush began: every prepare written so far is in its group. */
  flushBegin(): void {
    assert(this.flying.length === 0, "journal: a flush began while another is in flight");
    for (const op of this.dirty_ops) {
      const slot = this.slot(op);
      const h = this.headers[slot];
      if (h !== null && h !== undefined && h.op === op) this.flying.push({ op, write: this.write_id[slot]! });
    }
    this.dirty_ops = [];
  }

  /** The flush in flight completed: its group is durable. Returns the ops that just became durable. */
  flushed(): number[] {
    this.mutations += 1;
    const group = this.flying;
    this.flying = [];
    const durable: number[] = [];
    for (const { op, write } of group) {
      const slot = this.slot(op);
      const h = this.headers[slot];
      // Written again (by another prepare or the same one, its copy in the next group), removed
      // or found damaged since: not this group's write to complete.
      if (h !== null && h !== undefined && h.op === op && this.write_id[slot] === write && this.states[slot] === SlotState.dirty) {
        this.set(slot, h, SlotState.durable);
        durable.push(op);
      }
    }
    return durable;
  }

  /** Forgets the header (a damaged slot stays damaged: removing a header proves nothing about
   * what the disk held). */
  remove(op: number): void {
    this.mutations += 1;
    const slot = this.slot(op);
    const h = this.headers[slot];
    if (h !== null && h !== undefined && h.op === op) this.set(slot, null, SlotState.empty);
    // A damaged slot stays damaged (see above): remove must never clear what the disk told us.
    assert(
      this.damaged_op[slot] === -1 || this.damaged_op[slot]! % this.slot_count === slot,
      () => `journal slot ${slot}: damaged op ${this.damaged_op[slot]} maps elsewhere`,
    );
  }

  /** Known headers for ops in [op_min, op_max], ascending. */
  range(op_min: number, op_max: number): Header[] {
    const out: Header[] = [];
    for (let op = Math.max(0, op_min, op_max - this.slot_count + 1); op <= op_max; op++) {
      const h = this.header(op);
      if (h !== null) out.push(h);
    }
    // Callers (start_view, do_view_change) send this as the vouched suffix: ascending, within the range.
    assert(
      out.length <= this.slot_count && (out.length === 0 || (out[0]!.op >= op_min && out[out.length - 1]!.op <= op_max)),
      () => `journal range [${op_min}, ${op_max}] out of bounds`,
    );
    return out;
  }

  /**
   * Each slot's state agrees with its header (see SlotState). Returns the lowest op in
   * (above, up_to] that the journal holds a header for, or -1: the replica's check that nothing
   * sits above its head, done in the same pass over the slots (both run after most simulator
   * steps; an op-by-op header() walk of the window was a second pass).
   */
  invariants(above = Infinity, up_to = -Infinity): number {
    let found = -1;
    for (let slot = 0; slot < this.slot_count; slot++) {
      const h = this.headers[slot] ?? null;
      const state = this.states[slot]!;
      if ((h === null) !== (state === SlotState.empty))
        throw new AssertionError(`journal slot ${slot}: state ${SlotState[state]} with${h === null ? "out" : ""} a header`);
      if (h !== null) {
        if (h.op % this.slot_count !== slot) throw new AssertionError(`journal slot ${slot} holds op ${h.op}`);
        if (h.op > above && h.op <= up_to && (found === -1 || h.op < found)) found = h.op;
      }
      const damaged = this.damaged_op[slot]!;
      if (damaged !== -1 && damaged % this.slot_count !== slot)
        throw new AssertionError(`journal slot ${slot}: damaged op ${damaged} maps elsewhere`);
    }
    return found;
  }
}
