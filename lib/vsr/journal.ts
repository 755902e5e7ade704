/**
 * The replica's in-memory view of its journal: for each op in the window of journal_slot_count
 * ops, the header it holds (or none), whether the prepare itself is on disk, and whether that
 * write is durable yet. The prepares themselves live in Storage.
 */
import { assert } from "../util/assert.ts";
import type { Header } from "../net/codec.ts";

export class Journal {
  private readonly headers: (Header | null)[];
  private readonly present: boolean[];
  private readonly dirty: boolean[];
  private readonly faulty: boolean[];
  private dirty_ops: number[] = [];

  constructor(readonly slot_count: number) {
    assert(slot_count >= 4, "journal needs at least 4 slots");
    this.headers = new Array<Header | null>(slot_count).fill(null);
    this.present = new Array<boolean>(slot_count).fill(false);
    this.dirty = new Array<boolean>(slot_count).fill(false);
    this.faulty = new Array<boolean>(slot_count).fill(false);
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

  /** Whether the prepare for this header was found damaged on disk (it may have been
   * acknowledged, so it must be repaired, never voted away). */
  isFaulty(op: number, checksum: bigint): boolean {
    const h = this.header(op);
    return h !== null && h.checksum === checksum && this.faulty[this.slot(op)]!;
  }

  /** Records a header without its prepare (learned from a peer; the prepare must be repaired). */
  setHeader(header: Header): void {
    const slot = this.slot(header.op);
    const old = this.headers[slot];
    if (old !== null && old !== undefined && old.op === header.op && old.checksum === header.checksum) return;
    this.headers[slot] = header;
    this.present[slot] = false;
    this.dirty[slot] = false;
    this.faulty[slot] = false;
  }

  /** Records that the prepare was written to storage (durable at the next flush). */
  wrote(header: Header): void {
    const slot = this.slot(header.op);
    this.headers[slot] = header;
    this.present[slot] = true;
    this.dirty[slot] = true;
    this.faulty[slot] = false;
    this.dirty_ops.push(header.op);
  }

  /** Records a prepare found intact on disk at recovery. */
  recovered(header: Header, intact: boolean): void {
    const slot = this.slot(header.op);
    this.headers[slot] = header;
    this.present[slot] = intact;
    this.dirty[slot] = false;
    this.faulty[slot] = !intact;
  }

  /** The prepare was damaged when read back: keep the header, repair the prepare. */
  damaged(header: Header): void {
    const slot = this.slot(header.op);
    this.headers[slot] = header;
    this.present[slot] = false;
    this.dirty[slot] = false;
    this.faulty[slot] = true;
  }

  /** Everything written so far is durable. Returns the ops that just became durable. */
  flushed(): number[] {
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

  remove(op: number): void {
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
}
