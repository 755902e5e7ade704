/**
 * What recovery reports about the journal when the header ring is damaged or a record write went
 * missing (docs/STORAGE.md §11): damage that stays damaged until a record replaces it, records
 * restored from a unique durable prepare, records lost to misdirected writes found in the
 * segments, and every copy of an op reported when more than one is on disk.
 */
import { describe, expect, test } from "bun:test";
import { FileStorage, header_record_size, type StorageOptions } from "./file_storage.ts";
import { Command, Header, finalize, type Message } from "../net/codec.ts";
import { rootPrepare, stateDigest } from "../vsr/root.ts";
import { ObjectStore } from "../store/object_store.ts";
import { ClientTable } from "../vsr/client_table.ts";
import type { Recovered, VsrState } from "../vsr/storage.ts";
import { Prng } from "../util/prng.ts";
import { SECTOR_SIZE, SimFs } from "../../sim/sim_fs.ts";

const cluster = 0x5eed0f1e5n;
const slots = 16;
const clients_max = 4;
const options: StorageOptions = { cluster, replica: 1, replica_count: 3, journal_slot_count: slots, segment_size_bytes: 4096 };

/** A data directory formatted at checkpoint 0, with prepares journaled through FileStorage. */
class Disk {
  readonly fs = new SimFs(new Prng(7));
  storage = new FileStorage(this.fs, options);
  readonly root = rootPrepare(cluster, 3);
  readonly state: VsrState;
  /** The last prepare written per op. */
  readonly written = new Map<number, Message>();

  constructor() {
    expect(this.storage.recover(clients_max).state).toBeNull();
    const checkpoint = { op: 0, digest: stateDigest(new ObjectStore(), new ClientTable(clients_max)), checksum: this.root.checksum };
    this.state = { incarnation: 7, view: 0, log_view: 0, commit_max: 0, view_headers: [], checkpoint };
    this.storage.writeState(this.state);
    this.storage.flush();
  }

  /** Journals and flushes prepares for ops from..to of `view`, chained to what is written below. */
  write(from: number, to: number, view = 0): Message[] {
    const out: Message[] = [];
    for (let op = from; op <= to; op++) {
      const h = new Header();
      h.command = Command.prepare;
      h.cluster = cluster;
      h.replica_count = 3;
      h.replica = view % 3;
      h.view = view;
      h.op = op;
      h.parent = (this.written.get(op - 1)?.header ?? this.root).checksum;
      const prepare = finalize(h, new Uint8Array(40 + op).fill(op & 0xff));
      this.storage.writePrepare(prepare);
      this.written.set(op, prepare);
      out.push(prepare);
    }
    this.storage.flush();
    return out;
  }

  /** Power loss, then a new FileStorage on what survived. */
  reopen(): Recovered {
    this.fs.crash(new Prng(3));
    this.storage = new FileStorage(this.fs, options);
    return this.storage.recover(clients_max);
  }

  /** The sectors holding the two copies of an op's ring record (docs/STORAGE.md §5). */
  ringSectors(op: number): number[] {
    return [0, 1].map((copy) => Math.floor(((copy * slots + (op % slots)) * header_record_size) / SECTOR_SIZE));
  }

  /** Overwrites both copies of an op's ring record, durably. */
  overwriteRecord(op: number, bytes: Uint8Array): void {
    const fd = this.fs.open("journal/headers", false);
    for (let copy = 0; copy < 2; copy++) this.fs.pwrite(fd, bytes, (copy * slots + (op % slots)) * header_record_size);
    this.fs.fdatasync(fd);
  }

  /** Flips one byte of a prepare's header on disk (by default its parent field: the magic and op
   * stay readable, the checksum fails; at 88, its magic: the scan no longer sees a header there),
   * durably. */
  damageHeader(prepare: Message, field_offset = 24): void {
    const location = this.storage.prepareBodyLocation(prepare.header.op, prepare.header.checksum)!;
    const fd = this.fs.open(`journal/${location.segment.toString().padStart(10, "0")}.seg`, false);
    const at = location.offset - 128 + field_offset;
    const byte = new Uint8Array(1);
    this.fs.pread(fd, byte, at);
    byte[0] = byte[0]! ^ 0x40;
    this.fs.pwrite(fd, byte, at);
    this.fs.fdatasync(fd);
  }
}

function copies(recovered: Recovered, op: number): bigint[] {
  return recovered.journal.filter((e) => e.header.op === op && !e.faulty).map((e) => e.header.checksum);
}

describe("journal recovery: damage is sticky", () => {
  test("an unreadable ring slot whose op has no unique copy stays damaged across reopens, until a record replaces it", () => {
    const disk = new Disk();
    disk.write(1, 6);
    // The ring sector of ops 6 and 7 becomes unreadable, and op 6's prepare is damaged too: no
    // copy can restore its record.
    disk.damageHeader(disk.written.get(6)!);
    for (const sector of disk.ringSectors(6)) disk.fs.setReadErrorSector("journal/headers", sector);
    const first = disk.reopen();
    expect(first.damaged_slots).toContain(6);
    // Reopened again (and again): still damaged, never mistaken for "never written".
    for (let i = 0; i < 2; i++) {
      const again = disk.reopen();
      expect(again.damaged_slots).toContain(6);
      expect(copies(again, 6)).toEqual([]);
    }
    // A prepare written into the slot replaces the damage.
    disk.write(6, 6, 1);
    expect(disk.reopen().damaged_slots).not.toContain(6);
  });

  test("a lost ring file makes every slot damaged but those restored from unique copies, and that survives the next crash", () => {
    const disk = new Disk();
    disk.write(1, 4);
    disk.damageHeader(disk.written.get(3)!);
    disk.fs.unlink("journal/headers");
    disk.fs.fsyncDir("journal");
    const damaged = [0, ...Array.from({ length: slots - 5 }, (_, i) => i + 5), 3].sort((a, b) => a - b);
    for (let open = 0; open < 2; open++) {
      const recovered = disk.reopen();
      expect(recovered.damaged_slots).toEqual(damaged);
      for (const op of [1, 2, 4]) expect(copies(recovered, op)).toEqual([disk.written.get(op)!.header.checksum]);
    }
  });
});

describe("journal recovery: two copies of every record", () => {
  test("a record whose write reached only one copy, or one copy damaged, is read from the other and rewritten to both", () => {
    const disk = new Disk();
    disk.write(1, 6);
    const fd = disk.fs.open("journal/headers", false);
    // Copy A of op 5 lost (zeros: a misdirected write), copy B of op 6 corrupted.
    disk.fs.pwrite(fd, new Uint8Array(header_record_size), 5 * header_record_size);
    disk.fs.pwrite(fd, new Uint8Array(header_record_size).fill(0x33), (slots + 6) * header_record_size);
    disk.fs.fdatasync(fd);
    const recovered = disk.reopen();
    expect(recovered.damaged_slots).toEqual([]);
    for (const op of [5, 6]) expect(copies(recovered, op)).toEqual([disk.written.get(op)!.header.checksum]);
    // Both copies agree again.
    const ring = new Uint8Array(2 * slots * header_record_size);
    disk.fs.pread(disk.fs.open("journal/headers", false), ring, 0);
    for (const op of [5, 6]) {
      expect(ring.subarray(op * header_record_size, (op + 1) * header_record_size)).toEqual(
        ring.subarray((slots + op) * header_record_size, (slots + op + 1) * header_record_size),
      );
    }
  });

  test("when the copies disagree, the record written last wins", () => {
    const disk = new Disk();
    disk.write(1, 4, 0);
    const fd = disk.fs.open("journal/headers", false);
    const older = new Uint8Array(header_record_size);
    disk.fs.pread(fd, older, 4 * header_record_size);
    disk.write(4, 4, 1); // op 4 again, from a later view: a newer record in both copies
    // Copy A goes back to the older record, as if the newer write to it had been lost.
    disk.fs.pwrite(fd, older, 4 * header_record_size);
    disk.fs.fdatasync(fd);
    const recovered = disk.reopen();
    const entries = recovered.journal.filter((e) => e.header.op === 4);
    expect(entries.map((e) => e.header.checksum)).toContain(disk.written.get(4)!.header.checksum);
    // The slot's record is the newer one again in both copies.
    const a = new Uint8Array(header_record_size);
    disk.fs.pread(disk.fs.open("journal/headers", false), a, 4 * header_record_size);
    expect(a).not.toEqual(older);
  });
});

describe("a superblock older than the journal", () => {
  test("a superblock that lost its newest copies (records show a newer one was written) is not trusted: the directory recovers as lost", () => {
    const disk = new Disk();
    disk.storage.writeState({ ...disk.state, view: 1, log_view: 1 });
    disk.write(1, 3, 1); // flushed with the view-1 superblock, so its records name that superblock
    // Every copy of the newest superblock is destroyed but one older copy, kept from the first
    // write (as several faults on one disk could leave it).
    const fd = disk.fs.open("superblock", false);
    const old_copy = new Uint8Array(16384);
    const first = new SimFs(new Prng(7));
    const fresh = new FileStorage(first, options);
    fresh.recover(clients_max);
    fresh.writeState(disk.state);
    fresh.flush();
    first.pread(first.open("superblock", false), old_copy, 0);
    for (let copy = 0; copy < 4; copy++) disk.fs.pwrite(fd, copy === 0 ? old_copy : new Uint8Array(16384).fill(0xee), copy * 16384);
    disk.fs.fdatasync(fd);
    const recovered = disk.reopen();
    expect(recovered.state).toBeNull();
    expect(recovered.superblock_lost).toBe(true);
  });

  test("an intact superblock with records of its own sequence is trusted", () => {
    const disk = new Disk();
    disk.write(1, 3);
    const recovered = disk.reopen();
    expect(recovered.state).not.toBeNull();
    expect(recovered.superblock_lost).toBeUndefined();
  });
});

describe("journal recovery: records restored and found", () => {
  test("a torn record whose prepare is the only copy of its op is rewritten from it (TigerBeetle's fix)", () => {
    const disk = new Disk();
    disk.write(1, 5);
    disk.overwriteRecord(5, new Uint8Array(header_record_size).fill(0x5a));
    const recovered = disk.reopen();
    expect(recovered.damaged_slots).toEqual([]);
    expect(copies(recovered, 5)).toEqual([disk.written.get(5)!.header.checksum]);
    // The fix is persisted: the slot reads back valid without another restore.
    const bytes = new Uint8Array(header_record_size);
    const fd = disk.fs.open("journal/headers", false);
    disk.fs.pread(fd, bytes, 5 * header_record_size);
    expect(bytes.some((b) => b !== 0)).toBe(true);
    expect(disk.reopen().damaged_slots).toEqual([]);
  });

  test("a record lost to a misdirected write is found in the segments", () => {
    const disk = new Disk();
    disk.write(1, 7);
    // Op 7's record never reached its slot, in either copy (both writes landed elsewhere): the slot
    // reads as never written, and its prepare is durable in the segment.
    disk.overwriteRecord(7, new Uint8Array(header_record_size));
    const recovered = disk.reopen();
    expect(copies(recovered, 7)).toEqual([disk.written.get(7)!.header.checksum]);
    expect(disk.storage.readPrepare(7, disk.written.get(7)!.header.checksum)?.header).toEqual(disk.written.get(7)!.header);
  });

  test("two copies of an op and a damaged record: both copies are reported and the slot stays damaged", () => {
    const disk = new Disk();
    disk.write(1, 4, 0);
    const old = disk.written.get(4)!;
    disk.write(4, 4, 1); // op 4 again, from a later view
    for (const sector of disk.ringSectors(4)) disk.fs.setReadErrorSector("journal/headers", sector);
    const recovered = disk.reopen();
    expect(recovered.damaged_slots).toContain(4);
    expect(copies(recovered, 4).sort()).toEqual([old.header.checksum, disk.written.get(4)!.header.checksum].sort());
  });

  test("a damaged slot is not restored from a stale copy of its op from an earlier view", () => {
    const disk = new Disk();
    // Deposed primary of view 0: it prepared ops 1-4. View 1 kept ops 1-2 (vouched by the
    // superblock) and prepared new ops 3-4, which this replica journaled and acknowledged.
    disk.write(1, 4, 0);
    const stale = disk.written.get(4)!;
    const vouched = [disk.written.get(1)!.header, disk.written.get(2)!.header];
    disk.storage.writeState({ ...disk.state, view: 1, log_view: 1, view_headers: vouched });
    disk.write(3, 4, 1);
    const acked = disk.written.get(4)!;
    // Both ring copies of op 4's slot and its view-1 prepare are damaged: the only intact copy of
    // op 4 on disk is the stale one, which must not settle the slot.
    disk.damageHeader(acked, 88);
    for (const sector of disk.ringSectors(4)) disk.fs.setReadErrorSector("journal/headers", sector);
    const recovered = disk.reopen();
    expect(copies(recovered, 4)).toContain(stale.header.checksum);
    expect(recovered.damaged_slots).toContain(4);
  });

  test("a copy whose header reached the disk but not its body is not reported", () => {
    const disk = new Disk();
    disk.write(1, 3);
    // Op 4 written but never flushed: at the crash its write is lost, applied or torn.
    const h = new Header();
    h.command = Command.prepare;
    h.cluster = cluster;
    h.replica_count = 3;
    h.op = 4;
    h.parent = disk.written.get(3)!.header.checksum;
    const prepare = finalize(h, new Uint8Array(3000).fill(9));
    disk.storage.writePrepare(prepare);
    for (let seed = 1; seed <= 20; seed++) {
      const recovered = disk.reopen();
      for (const checksum of copies(recovered, 4)) expect(disk.storage.readPrepare(4, checksum)).not.toBeNull();
    }
  });
});
