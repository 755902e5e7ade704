/**
 * The header ring file (docs/STORAGE.md §5): one record per journal slot, each held twice, so a
 * write lost or misdirected leaves the other copy. Records are written after the prepares they name
 * are durable (file_storage.ts flush), so a valid record means its prepare was durable first.
 */
import { assert } from "../util/assert.ts";
import { isZero } from "../util/bytes.ts";
import { FsError, type Fd, type FileSystem } from "./fs.ts";
import {
  damaged_record,
  decodeRecord,
  encodeRecord,
  header_record_size,
  ring_copies,
  type DecodedRecord,
  type PrepareLocation,
} from "./ring_record.ts";
import { classifySlot, newerCopy, type CopyState, type WriteBack } from "./ring_slot.ts";

/** What the ring says at recovery, slot by slot. */
export interface RingContents {
  /** The trusted record of every slot that has one. */
  records: DecodedRecord[];
  /** Slots whose op is unknown: a copy is torn or unreadable (ring_slot.ts). */
  damaged: Set<number>;
}

export class HeaderRing {
  fd: Fd = -1;
  /** The write sequence of the next record (above every one on disk). */
  record_sequence = 1;
  /** Reused for the records of one flush (grown as needed, see write). */
  private scratch = new Uint8Array(16 * header_record_size);

  constructor(
    private readonly fs: FileSystem,
    readonly slot_count: number,
  ) {
    assert(slot_count > 0, "header ring: no slots");
  }

  get size(): number {
    assert(Number.isSafeInteger(ring_copies * this.slot_count * header_record_size), "header ring: size");
    return ring_copies * this.slot_count * header_record_size;
  }

  /** The highest write sequence of any valid record, and the highest superblock sequence one names
   * (each record carries the sequence of the superblock that was durable when it was written); 0
   * for none. */
  peek(): { record_sequence_max: number; superblock_sequence_max: number } {
    const slot_count = this.slot_count;
    const ring = new Uint8Array(this.size);
    let n = 0;
    try {
      n = this.fs.pread(this.fd, ring, 0);
    } catch (error) {
      if (!(error instanceof FsError)) throw error;
      this.readRecords(ring, new Set());
      n = this.size;
    }
    let records = 0;
    let superblocks = 0;
    for (let index = 0; (index + 1) * header_record_size <= n; index++) {
      const record = decodeRecord(ring, index * header_record_size, index % slot_count, slot_count);
      if (record === null) continue;
      records = Math.max(records, record.sequence);
      superblocks = Math.max(superblocks, record.superblock_sequence);
    }
    assert(Number.isSafeInteger(records) && Number.isSafeInteger(superblocks), "header ring: peeked sequences");
    return { record_sequence_max: records, superblock_sequence_max: superblocks };
  }

  /** Reads the ring whole, or record by record when that fails: only the bad records are lost
   * (their indexes go into `unreadable`, their bytes read as zeros). */
  read(unreadable: Set<number>): Uint8Array {
    assert(this.fd >= 0 && unreadable.size === 0, "header ring: read before open, or twice into one set");
    const ring = new Uint8Array(this.size);
    try {
      if (this.fs.pread(this.fd, ring, 0) !== ring.length) throw new FsError("EIO", "header ring short");
    } catch (error) {
      if (!(error instanceof FsError)) throw error;
      this.readRecords(ring, unreadable);
    }
    return ring;
  }

  private readRecords(ring: Uint8Array, unreadable: Set<number>): void {
    assert(ring.length % header_record_size === 0, "header ring: partial record");
    for (let index = 0; index * header_record_size < ring.length; index++) {
      const record = ring.subarray(index * header_record_size, (index + 1) * header_record_size);
      try {
        if (this.fs.pread(this.fd, record, index * header_record_size) !== header_record_size) throw new FsError("EIO", "record short");
      } catch (error) {
        if (!(error instanceof FsError)) throw error;
        record.fill(0);
        unreadable.add(index);
      }
    }
  }

  /**
   * Classifies every slot of a ring read at recovery (ring_slot.ts), and writes back what the
   * table says for each copy, durably, so the next open reads the same. `persists_damage` false is
   * the simulator's broken variant that forgets unreadable records.
   */
  recover(ring: Uint8Array, unreadable: Set<number>, persists_damage: boolean, datasync: (fd: Fd) => void): RingContents {
    const slot_count = this.slot_count;
    assert(ring.length === this.size, "header ring: recovered ring size");
    const written = new Uint8Array(this.size);
    const records: DecodedRecord[] = [];
    const damaged = new Set<number>();
    let sequence_max = 0;
    for (let slot = 0; slot < slot_count; slot++) {
      const states: CopyState[] = [];
      const decoded: (DecodedRecord | null)[] = [];
      for (let copy = 0; copy < ring_copies; copy++) {
        const index = copy * slot_count + slot;
        const offset = index * header_record_size;
        const record = unreadable.has(index) ? null : decodeRecord(ring, offset, slot, slot_count);
        decoded.push(record);
        if (unreadable.has(index)) states.push(persists_damage ? "unreadable" : "forgotten");
        else if (record !== null) states.push("valid");
        else states.push(isZero(ring, offset, header_record_size) ? "blank" : "torn");
      }
      const [a, b] = states as [CopyState, CopyState];
      const row = classifySlot(a, b, newerCopy(a, b, decoded[0]?.sequence ?? 0, decoded[1]?.sequence ?? 0));
      const trusted = row.trust === null ? null : row.trust === "a" ? 0 : 1;
      const writes: WriteBack[] = [row.write_a, row.write_b];
      for (let copy = 0; copy < ring_copies; copy++) {
        const at = (copy * slot_count + slot) * header_record_size;
        const write = writes[copy]!;
        if (write === "trusted") {
          const from = (trusted! * slot_count + slot) * header_record_size;
          written.set(ring.subarray(from, from + header_record_size), at);
        } else if (write === "own") written.set(ring.subarray(at, at + header_record_size), at);
        else if (write === "damaged_record") written.set(damaged_record, at);
      }
      if (trusted !== null) {
        const record = decoded[trusted]!;
        sequence_max = Math.max(sequence_max, record.sequence);
        records.push(record);
      }
      if (row.damaged) damaged.add(slot);
    }
    this.record_sequence = Math.max(this.record_sequence, sequence_max + 1);
    this.fs.pwrite(this.fd, written, 0);
    datasync(this.fd);
    return { records, damaged };
  }

  /**
   * Writes records, in the order given (a later record for the same slot wins), with one pwrite
   * per run of consecutive slots instead of one per record: the prepares of one flush are usually
   * consecutive ops, so this is usually a single system call. The caller makes them durable.
   */
  write(locations: PrepareLocation[], superblock_sequence: number): void {
    const slot_count = this.slot_count;
    assert(this.fd >= 0, "header ring: write before open");
    const size = locations.length * header_record_size;
    if (this.scratch.length < size) this.scratch = new Uint8Array(Math.max(size, 2 * this.scratch.length));
    const buffer = this.scratch;
    let run_start = 0;
    for (let i = 0; i < locations.length; i++) {
      encodeRecord(
        buffer.subarray(i * header_record_size, (i + 1) * header_record_size),
        locations[i]!,
        this.record_sequence++,
        superblock_sequence,
        slot_count,
      );
      const slot = locations[i]!.op % slot_count;
      const next = locations[i + 1];
      if (next === undefined || next.op % slot_count !== slot + 1) {
        const first_slot = locations[run_start]!.op % slot_count;
        const run = buffer.subarray(run_start * header_record_size, (i + 1) * header_record_size);
        // Both copies: a write lost or misdirected leaves the other.
        for (let copy = 0; copy < ring_copies; copy++) this.fs.pwrite(this.fd, run, (copy * slot_count + first_slot) * header_record_size);
        run_start = i + 1;
      }
    }
    assert(run_start === locations.length, "header ring: records left unwritten");
  }
}
