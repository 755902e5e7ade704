/**
 * The replica's in-memory view of its journal: for each op in the window of journal_slot_count
 * ops, the header it holds (or none), whether the prepare itself is on disk, and whether that
 * write is durable yet. The prepares themselves live in Storage.
 *
 * A slot is in one of these states (the only legal combinations of the per-slot fields, checked by
 * invariants()):
 *   empty          no header
 *   header only    the header is known (from a peer, a start_view or the superblock), the
 *                  prepare is not on disk: repair fetches it
 *   dirty          the prepare is written, not yet durable (acknowledged only after the flush)
 *   durable        the prepare is written and durable
 *   faulty         the header is known and the prepare was on disk but reads back damaged: it may
 *                  have been acknowledged, so it is repaired, never voted away
 * and, independently of the header, a slot may be *damaged*: its record on disk was unreadable, so
 * the op it held is unknown. Which op that is, within the window, is known (damaged_op): this
 * replica must not vote that op away until a prepare is written into the slot again.
 */
import { AssertionError, assert } from "../util/assert.ts";
import type { Header } from "../net/codec.ts";

export class Journal {
  private readonly headers: (Header | null)[];
  private readonly present: boolean[];
  private readonly dirty: boolean[];
  private readonly faulty: boolean[];
  /** Per slot: the op whose record was found unreadable there (-1: none). */
  private readonly damaged_op: number[];
  private dirty_ops: number[] = [];
  /** Counts changes (for checks that only need to run when something changed). */
  mutations = 0;

  constructor(readonly slot_count: number) {
    assert(slot_count >= 4, "journal needs at least 4 slots");
    this.headers = new Array<Header | null>(slot_count).fill(null);
    this.present = new Array<boolean>(slot_count).fill(false);
    this.dirty = new Array<boolean>(slot_count).fill(false);
    this.faulty = new Array<boolean>(slot_count).fill(false);
    this.damaged_op = new Array<number>(slot_count).fill(-1);
  }

  private slot(op: number): number {
    return op % this.slot_count;
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
    return h !== null && h.checksum === checksum && this.present[this.slot(op)]!;
  }

  /** Whether the prepare for this op and checksum is written and durable. */
  hasDurable(op: number, checksum: bigint): boolean {
    return this.hasPrepare(op, checksum) && !this.dirty[this.slot(op)]!;
  }

  /** Whether this replica may have held (and acknowledged) this prepare but cannot read it: found
   * damaged on disk, or its slot's record was unreadable. It must be repaired, never voted away. */
  isFaulty(op: number, checksum: bigint): boolean {
    const slot = this.slot(op);
    if (this.damaged_op[slot] === op) return true;
    const h = this.header(op);
    return h !== null && h.checksum === checksum && this.faulty[slot]!;
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
    this.mutations += 1;
    this.damaged_op[this.slot(op)] = op;
  }

  /** Records a header without its prepare (learned from a peer; the prepare must be repaired). */
  setHeader(header: Header): void {
    const slot = this.slot(header.op);
    this.mutations += 1;
    const old = this.headers[slot];
    if (old !== null && old !== undefined && old.op === header.op && old.checksum === header.checksum) return;
    this.headers[slot] = header;
    this.present[slot] = false;
    this.dirty[slot] = false;
    this.faulty[slot] = false;
  }

  /** Records that the prepare was written to storage (durable at the next flush). Its record
   * replaces whatever the slot held, damage included. */
  wrote(header: Header): void {
    this.mutations += 1;
    const slot = this.slot(header.op);
    this.headers[slot] = header;
    this.present[slot] = true;
    this.dirty[slot] = true;
    this.faulty[slot] = false;
    this.damaged_op[slot] = -1;
    this.dirty_ops.push(header.op);
  }

  /** Records a prepare found on disk at recovery (its record intact; the prepare intact or not). */
  recovered(header: Header, intact: boolean): void {
    this.mutations += 1;
    const slot = this.slot(header.op);
    this.headers[slot] = header;
    this.present[slot] = intact;
    this.dirty[slot] = false;
    this.faulty[slot] = !intact;
  }

  /** The prepare was damaged when read back: keep the header, repair the prepare. */
  damaged(header: Header): void {
    this.mutations += 1;
    const slot = this.slot(header.op);
    this.headers[slot] = header;
    this.present[slot] = false;
    this.dirty[slot] = false;
    this.faulty[slot] = true;
  }

  /** Everything written so far is durable. Returns the ops that just became durable. */
  flushed(): number[] {
    this.mutations += 1;
    const ops = this.dirty_ops;
    this.dirty_ops = [];
    const durable: number[] = [];
    for (const op of ops) {
      const slot = this.slot(op);
      const h = this.headers[slot];
      if (h !== null && h !== undefined && h.op === op && this.dirty[slot]) {
        this.dirty[slot] = false;
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
    if (h !== null && h !== undefined && h.op === op) {
      this.headers[slot] = null;
      this.present[slot] = false;
      this.dirty[slot] = false;
      this.faulty[slot] = false;
    }
  }

  /** Known headers for ops in [op_min, op_max], ascending. */
  range(op_min: number, op_max: number): Header[] {
    const out: Header[] = [];
    for (let op = Math.max(0, op_min, op_max - this.slot_count + 1); op <= op_max; op++) {
      const h = this.header(op);
      if (h !== null) out.push(h);
    }
    return out;
  }

  /** The per-slot states are one of the legal combinations (see the class comment). */
  invariants(): void {
    for (let slot = 0; slot < this.slot_count; slot++) {
      const h = this.headers[slot] ?? null;
      if (h === null) {
        if (this.present[slot] || this.dirty[slot] || this.faulty[slot]) throw new AssertionError(`journal slot ${slot}: prepare state without a header`);
        continue;
      }
      if (h.op % this.slot_count !== slot) throw new AssertionError(`journal slot ${slot} holds op ${h.op}`);
      if (this.dirty[slot] && !this.present[slot]) throw new AssertionError(`journal slot ${slot} (op ${h.op}): dirty but not written`);
      if (this.faulty[slot] && this.present[slot]) throw new AssertionError(`journal slot ${slot} (op ${h.op}): both faulty and present`);
      const damaged = this.damaged_op[slot]!;
      if (damaged !== -1 && damaged % this.slot_count !== slot) throw new AssertionError(`journal slot ${slot}: damaged op ${damaged} maps elsewhere`);
    }
  }
}
