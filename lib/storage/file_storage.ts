/**
 * The replica's Storage over a FileSystem (DESIGN §5, docs/STORAGE.md). The simulator runs this
 * exact code over its crashing file system; production runs it over node:fs.
 *
 * Data directory:
 *   superblock                 4 copies of the VSR state (superblock.ts)
 *   journal/headers            the redundant header ring: one 256-byte record per op slot
 *   journal/<id>.seg           append-only segment files of prepares; values stay in them
 *   checkpoint/<op>.ckpt       checkpoint files (checkpoint_file.ts)
 *
 * Write order per flush (group commit): prepares to segments, fdatasync them; then the superblock
 * if queued; then header records to the ring, fdatasync it. A prepare is acknowledged only after the
 * flush, so a header record on disk means the prepare was durable first: at recovery, a record
 * whose prepare is damaged is "faulty" (repair from peers), while a prepare with no record was never
 * acknowledged.
 */
import { assert } from "../util/assert.ts";
import { allocUninitialized, writeU32, writeU64, writeU64Big } from "../util/bytes.ts";
import { checksum } from "../util/checksum.ts";
import { Command, Header, decode, decodeHeader, encodeInto, writeHeader, type Message } from "../net/codec.ts";
import { header_size, message_size_max, wire_magic } from "../constants.ts";
import { ObjectStore, type ObjectEntry, type ValueLocation } from "../store/object_store.ts";
import { allocValueWithHeadroom } from "../store/operations.ts";
import { ClientTable, type ClientSession } from "../vsr/client_table.ts";
import { rootPrepare } from "../vsr/root.ts";
import { windowOp } from "../vsr/window.ts";
import { vouchedMax, type CheckpointId, type CheckpointMeta, type Recovered, type RecoveredPrepare, type Storage, type SyncChunk, type VsrState } from "../vsr/storage.ts";
import { FsError, type Fd, type FileSystem } from "./fs.ts";
import { readSuperblock, superblock_copies, superblock_copy_size, superblock_path, writeSuperblock, type SuperblockIdentity } from "./superblock.ts";
import {
  applyChain,
  checkpointPath,
  checkpoint_summary_prefix_size,
  decodeCheckpoint,
  decodeCheckpointSummary,
  encodeCheckpoint,
  storeRecords,
  type CheckpointContents,
  type CheckpointSummary,
} from "./checkpoint_file.ts";
import { Reader, Writer, readObjectMeta, readSession, writeObjectMeta, writeSession } from "./records.ts";

export const header_record_size = 256;
/** The header ring holds every record twice: copy A at slot × 256, copy B at (slots + slot) × 256. */
export const ring_copies = 2;
const headers_path = "journal/headers";

/** Prepares up to this size are encoded into a reused buffer and written with one pwrite; larger
 * ones are written as header and body, the body straight from the message: a second system call
 * costs less than copying a large body into a freshly allocated buffer (which profiling showed for
 * every 1 MiB put, on every replica). */
const prepare_scratch_size = 64 * 1024;

/** Segments are zero-filled this far ahead of small appends (see preallocate). */
const preallocate_step_bytes = 1024 * 1024;
/** Source of those zeros (never written). */
const zeros = new Uint8Array(preallocate_step_bytes + prepare_scratch_size);

export interface StorageOptions extends SuperblockIdentity {
  journal_slot_count: number;
  segment_size_bytes: number;
}

/** A data directory that belongs to another cluster or replica: refuse it, touch nothing. */
export class ForeignDataError extends Error {
  override name = "ForeignDataError";
}

interface Segment {
  id: number;
  fd: Fd;
  /** Next append offset (only for segments written since open). */
  write_offset: number;
  capacity: number;
  /** Bytes from the start known to have disk blocks: written, or zero-filled ahead of the appends
   * (see preallocate). A segment opened at recovery is never appended to, so 0 there. */
  allocated: number;
  /** Highest op of a prepare written into it (-1 if none known). */
  max_op: number;
  dirty: boolean;
}

interface PrepareLocation {
  header: Header;
  op: number;
  checksum: bigint;
  segment: number;
  offset: number;
  size: number;
}

interface RetainedCheckpoint {
  id: CheckpointId;
  /** Segments holding values this checkpoint's index refers to. */
  segments: Set<number>;
  /** The checkpoint files its state is read from: a base, then deltas, ending with its own. */
  chain: number[];
}

/** A segment only values keep alive is compacted (its live values copied forward) when less
 * than this fraction of it is live: disk use stays within about twice the live data. */
const compaction_live_ratio_max = 0.5;

/** A chain of delta files is cut (the next checkpoint is a base) when its deltas together
 * outweigh the base, or when it is this long: a restart reads at most about twice the index. */
const chain_length_max = 32;

const checkpoints_retained = 3;
/** Bytes of an object record besides its key and value: type, meta and padding. */
const sync_object_overhead = 8 + 40 + 16;
const sync_record_anchor = 1;
const sync_record_session = 2;
const sync_record_object = 3;

function segmentPath(id: number): string {
  return `journal/${id.toString().padStart(10, "0")}.seg`;
}

function pad8(n: number): number {
  return (n + 7) & ~7;
}

export class FileStorage implements Storage {
  private superblock_fd: Fd = -1;
  private headers_fd: Fd = -1;
  private sequence = 0;
  /** Counters for status and metrics: with many clients, flushes (and fdatasyncs) are far fewer
   * than prepares, and prepares fewer than puts (DESIGN §9, group commit). */
  readonly stats = { flushes: 0, fdatasyncs: 0, prepares_written: 0, checkpoints_base: 0, checkpoints_delta: 0, checkpoint_bytes: 0, superblock_writes: 0 };
  /** Which half of the superblock the next write starts with (superblock.ts). */
  private superblock_first_half = 0;
  private readonly segments = new Map<number, Segment>();
  private active: Segment | null = null;
  private next_segment_id = 1;
  private segments_created = false;
  /** Journaled prepares by op: usually one; after recovery, every copy found (lib/vsr picks). */
  private readonly prepares = new Map<number, PrepareLocation[]>();
  private pending_records: PrepareLocation[] = [];
  /** Reused for encoding small prepares, and a large prepare's header (see prepare_scratch_size). */
  private readonly prepare_scratch = new Uint8Array(prepare_scratch_size);
  /** Reused for the header records of one flush (grown as needed, see writeRecords). */
  private records_scratch = new Uint8Array(16 * header_record_size);
  /** The write sequence of the next header-ring record (above every one on disk). */
  private record_sequence = 1;
  private pending_state: VsrState | null = null;
  /** The published checkpoint, then older ones kept so lagging peers can still sync: a prepare
   * names a checkpoint up to two intervals behind it (lib/vsr/checkpoint.ts), so peers keep three. */
  private retained: RetainedCheckpoint[] = [];
  /** Written, not yet named by a durable superblock. */
  private written = new Map<number, RetainedCheckpoint>();
  /** A decoded retained checkpoint, cached while a peer syncs from it. */
  private serving: { id: CheckpointId; checkpoint: CheckpointMeta; store: ObjectStore; sessions: [bigint, ClientSession][]; keys: string[] } | null = null;
  /** The last checkpoint written, which the next one may be a delta of: only if it is of the same
   * store object (a store replaced by state sync starts a new base) and nothing failed since. */
  private tail: { op: number; store: ObjectStore; chain: number[]; base_bytes: number; delta_bytes: number } | null = null;
  private receiving: { id: CheckpointId; anchor: Header | null; previous: CheckpointId | null; revision: number; sessions: [bigint, ClientSession][]; store: ObjectStore; segment: Segment | null; segments: Segment[]; bad: boolean } | null = null;
  /** Segments of a sync received but not yet adopted by writeCheckpoint: deleted if the replica
   * rejects it (digest mismatch) and starts over, so a sync that keeps failing cannot fill the
   * disk. */
  private unadopted: Segment[] = [];
  private readonly root: Header;

  constructor(
    readonly fs: FileSystem,
    readonly options: StorageOptions,
  ) {
    this.root = rootPrepare(options.cluster, options.replica_count);
  }

  recover(clients_max: number): Recovered {
    const superblock_missing = !this.fs.exists(superblock_path);
    const headers_missing = !this.fs.exists(headers_path);
    this.fs.mkdir("journal");
    this.fs.mkdir("checkpoint");
    this.superblock_fd = this.fs.open(superblock_path, true);
    this.headers_fd = this.fs.open(headers_path, true);
    // The superblock and the header ring are written in place from now on: allocate them fully
    // (never over what is there), so a full disk can never make a flush, and so an
    // acknowledgement, fail.
    const superblock_size = superblock_copies * superblock_copy_size;
    const ring_size = ring_copies * this.options.journal_slot_count * header_record_size;
    const superblock_have = this.fs.size(this.superblock_fd);
    if (superblock_have < superblock_size) this.fs.pwrite(this.superblock_fd, new Uint8Array(superblock_size - superblock_have), superblock_have);
    // A superblock without its header ring lost every record of what it acknowledged: the new ring
    // is written as damaged records (not zeros, which mean "never written"), so the loss survives
    // a crash before the next open reads it.
    const ring_lost = headers_missing && !superblock_missing;
    const ring_have = this.fs.size(this.headers_fd);
    if (ring_have < ring_size) this.fs.pwrite(this.headers_fd, ring_lost && this.persistsDamage() ? damagedRecords(ring_size - ring_have) : new Uint8Array(ring_size - ring_have), ring_have);
    // With the write order of superblock.ts, the newest valid copy is never older than the last
    // state this replica promised: a promise follows a complete write of all four copies, and the
    // next write starts with a half that does not hold the only copies of the newest state. If the
    // disk destroyed every copy, the replica recovers as one that lost its disk (below).
    // A process killed in the middle of a flush (kill -9) leaves its writes in the page cache, not
    // on the disk: read back now they look durable, and a power loss later could still take them
    // away after this replica acted on them (promised the view, acknowledged the prepare). So make
    // what is read durable before it is used.
    this.datasync(this.superblock_fd);
    this.datasync(this.headers_fd);
    for (const dir of ["journal", "checkpoint", ""]) this.fs.fsyncDir(dir);
    const { record, first_half } = readSuperblock(this.fs, this.superblock_fd);
    this.superblock_first_half = first_half;
    // Sequences continue above anything left in the ring, whatever path this open takes: records
    // left behind (a blanking write that went astray, an open that never read the ring) must never
    // outrank new ones, nor name a superblock newer than the ones written from now on.
    const peek = this.peekRing(ring_size);
    this.record_sequence = peek.record_sequence_max + 1;
    if (record === null) {
      // Never formatted, or a format/recovery that crashed before its first superblock: nothing
      // here was ever promised to anyone, so whatever files exist are garbage.
      this.removeAll(ring_size);
      this.sequence = peek.superblock_sequence_max;
      return { state: null, journal: [], damaged_slots: [], checkpoint: null, store: new ObjectStore(), clients: new ClientTable(clients_max) };
    }
    const id = record.identity;
    if (id.cluster !== this.options.cluster || id.replica !== this.options.replica || id.replica_count !== this.options.replica_count) {
      throw new ForeignDataError(
        `data directory belongs to cluster ${id.cluster.toString(16)} replica ${id.replica} of ${id.replica_count}, not cluster ${this.options.cluster.toString(16)} replica ${this.options.replica} of ${this.options.replica_count}`,
      );
    }
    if (peek.superblock_sequence_max > record.sequence) {
      // A header-ring record was written after a superblock newer than every copy that survives:
      // the superblock lost its newest state (several damaged copies), and with it promises this
      // replica made. It must not act on the older state: it recovers as one that lost its disk.
      this.removeAll(ring_size);
      this.sequence = peek.superblock_sequence_max;
      return { state: null, journal: [], damaged_slots: [], checkpoint: null, store: new ObjectStore(), clients: new ClientTable(clients_max), superblock_lost: true };
    }
    this.sequence = record.sequence;
    const state = record.state;
    // Rewrite the state this replica is about to act on in all four copies: a copy may be damaged
    // or a write cut short between its halves (a damaged sector later could then leave only an
    // older state), and after a failed fsync the kernel may hold the newest copy only in a page it
    // marked clean, which syncing alone would not write.
    this.sequence += 1;
    writeSuperblock(this.fs, this.superblock_fd, { sequence: this.sequence, identity: this.options, state }, this.superblock_first_half);
    this.superblock_first_half = 0;
    let checkpoint: CheckpointMeta = { id: state.checkpoint, anchor: this.root, previous: state.checkpoint };
    let store = new ObjectStore();
    let clients = new ClientTable(clients_max);
    this.openSegments();
    for (const segment of this.segments.values()) this.datasync(segment.fd);
    if (state.checkpoint.op > 0 || state.recovering === true) {
      const loaded = state.recovering === true ? null : this.loadCheckpoint(state.checkpoint, clients_max);
      if (loaded === null) {
        // The state this replica executed is lost, but its promises (the superblock) are not: it
        // recovers the state from peers. Nothing is collected until it has a checkpoint again.
        // Recovery rewrites the journal, so from now on the journal no longer holds what this
        // replica acknowledged before: the superblock says so, and every open until recovery
        // completes recovers again, even if the checkpoint file reads back later.
        this.retained = [];
        if (state.recovering !== true) {
          this.sequence += 1;
          writeSuperblock(this.fs, this.superblock_fd, { sequence: this.sequence, identity: this.options, state: { ...state, recovering: true } }, this.superblock_first_half);
          this.superblock_first_half = 0;
        }
        return { state, journal: [], damaged_slots: [], checkpoint: null, store, clients };
      }
      checkpoint = loaded.checkpoint;
      store = loaded.store;
      clients = loaded.clients;
      this.retained = [{ id: state.checkpoint, segments: store.segments(), chain: loaded.chain }, ...this.olderCheckpoints(state.checkpoint.op)];
      this.tail = { op: state.checkpoint.op, store, chain: loaded.chain, base_bytes: loaded.base_bytes, delta_bytes: loaded.delta_bytes };
    } else {
      this.retained = [{ id: state.checkpoint, segments: new Set(), chain: [] }];
    }
    const { journal, damaged_slots } = this.readHeaderRing(state.checkpoint.op, restorable(state));
    this.collectGarbage();
    return { state, journal, damaged_slots, checkpoint, store, clients };
  }

  /** The highest write sequence of any valid header-ring record, and the highest superblock
   * sequence one names (each record carries the sequence of the superblock that was durable when
   * it was written, §5); 0 for none. */
  private peekRing(ring_size: number): { record_sequence_max: number; superblock_sequence_max: number } {
    const slot_count = this.options.journal_slot_count;
    const ring = new Uint8Array(ring_size);
    let n = 0;
    try {
      n = this.fs.pread(this.headers_fd, ring, 0);
    } catch {
      this.readRingRecords(ring, new Set());
      n = ring_size;
    }
    let records = 0;
    let superblocks = 0;
    for (let index = 0; (index + 1) * header_record_size <= n; index++) {
      const record = decodeRecord(ring, index * header_record_size, index % slot_count, slot_count);
      if (record === null) continue;
      records = Math.max(records, record.sequence);
      superblocks = Math.max(superblocks, record.superblock_sequence);
    }
    return { record_sequence_max: records, superblock_sequence_max: superblocks };
  }

  private removeAll(ring_size: number): void {
    for (const dir of ["journal", "checkpoint"]) {
      for (const name of this.fs.readdir(dir)) {
        if (`${dir}/${name}` !== headers_path) this.fs.unlink(`${dir}/${name}`);
      }
      this.fs.fsyncDir(dir);
    }
    // Blank the records in place: the ring stays allocated (see recover()).
    this.fs.pwrite(this.headers_fd, new Uint8Array(ring_size), 0);
    this.datasync(this.headers_fd);
  }

  private openSegments(): void {
    for (const name of this.fs.readdir("journal")) {
      const match = /^(\d{10})\.seg$/.exec(name);
      if (match === null) continue;
      const id = Number(match[1]);
      const fd = this.fs.open(segmentPath(id), false);
      const size = this.fs.size(fd);
      this.segments.set(id, { id, fd, write_offset: size, capacity: size, allocated: 0, max_op: -1, dirty: false });
      this.next_segment_id = Math.max(this.next_segment_id, id + 1);
    }
  }

  /**
   * Reads the header ring and finds every durable prepare of the window after the checkpoint,
   * (C, C + slots]. A record names where its prepare is; but a record write can be lost or land
   * elsewhere (a misdirected write) and leave an older record looking current, and a record can be
   * torn or unreadable. Segments are synced before the ring, so every prepare whose record was
   * being written is durable: the regions of recent segments that no record accounts for are
   * scanned for prepare headers (findUnrecorded). Every copy found is reported, several per op if
   * there are (the replica picks the one its log vouches for, lib/vsr/replica.ts loadState).
   *
   * A slot whose record does not decode is damaged: restored from the segments when exactly one
   * prepare for its op exists and the scan saw nothing that might be another (TigerBeetle's
   * "fix"), else reported, and kept damaged on disk. If part of the segments could not be read, a
   * lost record cannot be ruled out: every op of the window with no copy found is damaged too.
   */
  private readHeaderRing(checkpoint_op: number, restorable: (location: PrepareLocation) => boolean): { journal: RecoveredPrepare[]; damaged_slots: number[] } {
    const slot_count = this.options.journal_slot_count;
    const copy_size = slot_count * header_record_size;
    const ring = new Uint8Array(ring_copies * copy_size);
    const unreadable = new Set<number>();
    try {
      if (this.fs.pread(this.headers_fd, ring, 0) !== ring.length) throw new FsError("EIO", "header ring short");
    } catch {
      this.readRingRecords(ring, unreadable);
    }
    // Each slot holds its record twice (a write lost or misdirected leaves the other copy). Per
    // slot: the valid copy with the higher write sequence; if neither is valid, zeros in both
    // mean never written, anything else (an unreadable copy included) damaged.
    // Written back per copy: normally both get the chosen record (repairing a copy a write missed;
    // and after a failed fsync a record may sit in a page the kernel marked clean, which syncing
    // would not write), but a damaged copy beside a valid one keeps a damaged record (below).
    const written = new Uint8Array(ring_copies * copy_size);
    const records: PrepareLocation[] = [];
    const damaged = new Set<number>();
    let sequence_max = 0;
    for (let slot = 0; slot < slot_count; slot++) {
      let best: { header: Header; location: PrepareLocation; sequence: number; offset: number } | null = null;
      let damaged_copies = 0;
      for (let copy = 0; copy < ring_copies; copy++) {
        const index = copy * slot_count + slot;
        const offset = index * header_record_size;
        if (unreadable.has(index)) {
          if (this.persistsDamage()) damaged_copies += 1;
          continue;
        }
        const record = decodeRecord(ring, offset, slot, slot_count);
        if (record === null) {
          if (!isZero(ring, offset, header_record_size)) damaged_copies += 1;
          continue;
        }
        if (best === null || record.sequence > best.sequence) best = { ...record, offset };
      }
      for (let copy = 0; copy < ring_copies; copy++) {
        const at = (copy * slot_count + slot) * header_record_size;
        const index = copy * slot_count + slot;
        const own = unreadable.has(index) ? null : ring.subarray(at, at + header_record_size);
        const own_valid = own !== null && decodeRecord(ring, at, slot, slot_count) !== null;
        if (best !== null && (own_valid || damaged_copies === 0)) written.set(ring.subarray(best.offset, best.offset + header_record_size), at);
        else if (best !== null || damaged_copies > 0) written.set(own !== null && !isZero(ring, at, header_record_size) && !own_valid ? own : damaged_record, at);
      }
      if (best !== null) {
        sequence_max = Math.max(sequence_max, best.sequence);
        records.push(best.location);
        const segment = this.segments.get(best.location.segment);
        if (segment !== undefined) segment.max_op = Math.max(segment.max_op, best.header.op);
      }
      // A damaged copy may have held a newer record than the valid one (the write to the other
      // copy lost): which op the slot held last is then unknown, so it counts as damaged (and is
      // written back as a damaged record, not zeros, so the next open sees the same). The valid
      // copy's record is still used; the replica settles the damage where its log holds the
      // window's op for that slot intact.
      if (damaged_copies > 0) damaged.add(slot);
    }
    this.record_sequence = Math.max(this.record_sequence, sequence_max + 1);
    if (!this.persistsDamage()) {
      // (The simulator's variant that forgets damage writes zeros where a record was unreadable.)
      for (const index of unreadable) written.fill(0, index * header_record_size, (index + 1) * header_record_size);
    }
    this.fs.pwrite(this.headers_fd, written, 0);
    this.datasync(this.headers_fd);
    const window_min = checkpoint_op + 1;
    const window_max = checkpoint_op + slot_count;
    const found: RecoveredPrepare[] = [];
    const intact = new Map<number, PrepareLocation[]>();
    const faulty = new Map<number, PrepareLocation>();
    for (const location of records) {
      // Ops at or below the checkpoint are not replayed, but they still serve peers' repairs.
      if (location.op + slot_count <= checkpoint_op || location.op > window_max) continue;
      if (this.headerAt(location)) addCandidate(intact, location);
      else faulty.set(location.op, location);
    }
    const scan = this.persistsDamage() ? this.findUnrecorded(records, window_min, window_max) : { found: [], suspects: new Set<number>(), clean: true };
    // A copy found by the scan is reported only if it is whole: its header may have reached the
    // disk in a write the crash cut short. But any copy with a valid header is another candidate
    // when deciding whether a damaged record can be restored from a unique copy.
    const headers_found = new Map<number, PrepareLocation[]>();
    for (const location of scan.found) {
      addCandidate(headers_found, location);
      if (this.readPrepareAt(location) === null) continue;
      addCandidate(intact, location);
      const segment = this.segments.get(location.segment)!;
      segment.max_op = Math.max(segment.max_op, location.op); // so collection keeps it
    }
    // A record whose prepare was not where it said may have found it elsewhere.
    for (const [op, location] of faulty) {
      if (intact.get(op)?.some((c) => c.checksum === location.checksum)) faulty.delete(op);
    }
    const restored: PrepareLocation[] = [];
    // A whole copy found by the scan whose slot has no record of its op (blank, or an older op's)
    // gets one: otherwise, once the checkpoint passes it, no later open would find it (the scan
    // looks only at the window after the checkpoint) and it could no longer serve a peer's repair.
    const recorded = new Map<number, number>(); // slot -> op of its valid record
    for (const r of records) recorded.set(r.op % slot_count, r.op);
    for (const [op, candidates] of intact) {
      const slot = op % slot_count;
      const at = recorded.get(slot);
      if (candidates.length !== 1 || damaged.has(slot) || (at !== undefined && at >= op)) continue;
      if ((headers_found.get(op) ?? []).some((c) => c.checksum !== candidates[0]!.checksum)) continue;
      restored.push(candidates[0]!);
    }
    for (const slot of damaged) {
      const op = windowOp(checkpoint_op, slot, slot_count);
      const candidates = intact.get(op) ?? [];
      const unique = candidates.length === 1 && (headers_found.get(op) ?? []).every((c) => c.checksum === candidates[0]!.checksum);
      if (scan.clean && !scan.suspects.has(op) && unique && restorable(candidates[0]!) && this.restoresRecords()) restored.push(candidates[0]!);
    }
    if (restored.length > 0) {
      // The fix is persisted: the next open finds a valid record there.
      this.writeRecords(restored.sort((a, b) => a.op - b.op));
      this.datasync(this.headers_fd);
      for (const location of restored) {
        damaged.delete(location.op % slot_count);
        const segment = this.segments.get(location.segment);
        if (segment !== undefined) segment.max_op = Math.max(segment.max_op, location.op);
      }
    }
    // Damage means "which prepare this slot held is unknown"; the replica settles it where its log
    // picks a copy that is intact (lib/vsr/replica.ts damagedOps). A region the scan could not
    // read may hide the only copy of an op whose record was lost: every op of the window without
    // a copy is then damaged. A damaged header or body met by the scan only stops restores: most
    // are writes a crash cut short, never acknowledged, and counting them as damage would stall
    // view changes after any power loss. (A record lost from both ring copies whose prepare is also
    // damaged is three faults on one op, beyond what this detects.)
    if (!scan.clean) for (let op = window_min; op <= window_max; op++) if (!intact.has(op)) damaged.add(op % slot_count);
    for (const [op, locations] of intact) {
      this.prepares.set(op, locations);
      for (const location of locations) found.push({ header: location.header, faulty: false });
    }
    for (const location of faulty.values()) found.push({ header: location.header, faulty: true });
    return { journal: found, damaged_slots: [...damaged].sort((a, b) => a - b) };
  }

  /** Whether the prepare header at a record's location is the one the record names. */
  private headerAt(location: PrepareLocation): boolean {
    const segment = this.segments.get(location.segment);
    if (segment === undefined) return false;
    const buffer = new Uint8Array(header_size);
    try {
      const read = this.fs.pread(segment.fd, buffer, location.offset);
      const on_disk = read === header_size ? decodeHeader(buffer, 0) : null;
      return on_disk !== null && on_disk.checksum === location.checksum;
    } catch {
      return false;
    }
  }

  /**
   * Scans the parts of recent segments that no record accounts for, at 8-byte-aligned offsets, for
   * headers of prepares of ops in [op_min, op_max]. Recent: the segments from the one before the
   * oldest holding a prepare of the window (or of the interval before it) on: prepares are written
   * in time order, a pipeline at a time, so a prepare whose record was lost sits among or after
   * those. With no record to go by (a lost ring), every segment is scanned. Not clean when a region
   * could not be read: a copy may be hidden there. Damaged headers naming an op of the window make
   * that op suspect (which only stops restores: see readHeaderRing).
   */
  private findUnrecorded(records: PrepareLocation[], op_min: number, op_max: number): { found: PrepareLocation[]; suspects: Set<number>; clean: boolean } {
    const slot_count = this.options.journal_slot_count;
    let first_segment = Infinity;
    for (const r of records) if (r.op > op_min - 1 - slot_count && r.op <= op_max) first_segment = Math.min(first_segment, r.segment);
    if (first_segment === Infinity && records.length > 0) first_segment = Math.max(...records.map((r) => r.segment));
    first_segment = first_segment === Infinity ? 0 : first_segment - 1;
    const known = new Map<number, [number, number][]>();
    for (const r of records) {
      let extents = known.get(r.segment);
      if (extents === undefined) known.set(r.segment, (extents = []));
      extents.push([r.offset, r.offset + pad8(r.size)]);
    }
    const found: PrepareLocation[] = [];
    const suspects = new Set<number>();
    let clean = true;
    const ids = [...this.segments.keys()].filter((id) => id >= first_segment).sort((a, b) => a - b);
    for (const id of ids) {
      const segment = this.segments.get(id)!;
      const extents = (known.get(id) ?? []).sort((a, b) => a[0] - b[0]);
      const size = this.fs.size(segment.fd);
      let from = 0;
      for (const [start, end] of [...extents, [size, size] as [number, number]]) {
        if (start > from) clean = this.scanRegion(segment, from, Math.min(start, size), size, op_min, op_max, found, suspects) && clean;
        from = Math.max(from, end);
      }
    }
    return { found, suspects, clean };
  }

  /** Scans [from, to) of a segment for prepare headers (see findUnrecorded). */
  private scanRegion(segment: Segment, from: number, to: number, size: number, op_min: number, op_max: number, found: PrepareLocation[], suspects: Set<number>): boolean {
    const chunk = new Uint8Array(Math.min(scan_chunk_bytes, to - from) + header_size);
    const view = new DataView(chunk.buffer);
    let clean = true;
    for (let base = from; base < to; base += scan_chunk_bytes) {
      let n: number;
      try {
        n = this.fs.pread(segment.fd, chunk.subarray(0, Math.min(chunk.length, size - base)), base);
      } catch {
        clean = false;
        continue;
      }
      const stop = Math.min(scan_chunk_bytes, to - base);
      // Headers start 8-byte aligned; find their magic's first byte natively (regions are mostly
      // zeros or value bytes), then check alignment and the whole magic.
      for (let m = chunk.indexOf(magic_first_byte, 88); m !== -1 && m - 88 < stop && m - 88 + header_size <= n; m = chunk.indexOf(magic_first_byte, m + 1)) {
        const at = m - 88;
        if (at % 8 !== 0 || view.getUint32(m, true) !== wire_magic) continue;
        const header = decodeHeader(chunk, at);
        if (header === null) {
          // A damaged header naming an op of the window may be a prepare this replica journaled
          // (and, if its record was lost too, acknowledged): that op is suspect. Most often it is
          // one a crash cut short, never acknowledged; random bytes in a value almost never name
          // an op of the window next to the magic.
          const op = Number(view.getBigUint64(at + 48, true));
          if (op >= op_min && op <= op_max) suspects.add(op);
          continue;
        }
        if (header.cluster !== this.options.cluster || header.command !== Command.prepare || header.op < op_min || header.op > op_max) continue;
        if (header.size < header_size || header.size > message_size_max || base + at + header.size > size) continue;
        found.push({ header, op: header.op, checksum: header.checksum, segment: segment.id, offset: base + at, size: header.size });
      }
    }
    return clean;
  }

  /** RULE (damage is sticky): damage found at open is written back as damaged records. (The
   * simulator's tests override this to prove storage that forgets damage at the next open is
   * caught.) */
  protected persistsDamage(): boolean {
    return true;
  }

  /** RULE: a damaged record whose prepare is the only copy of its op is restored from it. (The
   * simulator's tests override this to prove that without it, and with damage counted for the
   * whole journal, a cluster stalls.) */
  protected restoresRecords(): boolean {
    return true;
  }

  /** Reads the ring record by record when a bulk read fails: only the bad records are lost. */
  private readRingRecords(ring: Uint8Array, unreadable: Set<number>): void {
    for (let index = 0; index * header_record_size < ring.length; index++) {
      const record = ring.subarray(index * header_record_size, (index + 1) * header_record_size);
      try {
        if (this.fs.pread(this.headers_fd, record, index * header_record_size) !== header_record_size) throw new FsError("EIO", "record short");
      } catch {
        record.fill(0);
        unreadable.add(index);
      }
    }
  }

  writeState(state: VsrState): void {
    this.pending_state = state;
  }

  writePrepare(message: Message): void {
    const size = message.header.size;
    const segment = this.segmentFor(size);
    this.preallocate(segment, size);
    const scratch = this.prepare_scratch;
    if (size <= scratch.length) {
      encodeInto(message, scratch, 0);
      this.fs.pwrite(segment.fd, scratch.subarray(0, size), segment.write_offset);
    } else {
      writeHeader(message.header, scratch, 0);
      this.fs.pwrite(segment.fd, scratch.subarray(0, header_size), segment.write_offset);
      this.fs.pwrite(segment.fd, message.body, segment.write_offset + header_size);
    }
    const location: PrepareLocation = { header: message.header, op: message.header.op, checksum: message.header.checksum, segment: segment.id, offset: segment.write_offset, size };
    segment.write_offset += pad8(size);
    segment.max_op = Math.max(segment.max_op, message.header.op);
    segment.dirty = true;
    this.stats.prepares_written += 1;
    this.prepares.set(location.op, [location]);
    this.pending_records.push(location);
  }

  /** The active segment, or a new preallocated one if this write does not fit. */
  private segmentFor(size: number): Segment {
    if (this.active !== null && this.active.write_offset + size <= this.active.capacity) return this.active;
    const id = this.next_segment_id++;
    const capacity = Math.max(this.options.segment_size_bytes, pad8(size));
    const fd = this.fs.open(segmentPath(id), true);
    this.fs.truncate(fd, capacity);
    const segment: Segment = { id, fd, write_offset: 0, capacity, allocated: 0, max_op: -1, dirty: true };
    this.segments.set(id, segment);
    this.segments_created = true;
    this.active = segment;
    return segment;
  }

  /**
   * Before an append of `size` bytes at the segment's write offset: keeps the segment's allocated
   * region (zero-filled, so its disk blocks exist) at least half a step ahead of the appends.
   * ftruncate only makes a sparse file, so without this every flush's fdatasync would also
   * allocate the blocks under the new prepares and commit that in the file system's journal;
   * into allocated blocks it is a plain data write (DESIGN §5 "preallocate each segment";
   * measured here: a flush of a few small prepares, three replicas on one disk, 0.50 -> 0.36 ms,
   * CPU 0.13 -> 0.10 ms). Only small appends zero ahead: a large one allocates its own blocks in
   * one go, and zeroing ahead of 1 MiB values would double what they write. The zeros go at or
   * beyond the write offset, before the data, so they never cover anything written.
   */
  private preallocate(segment: Segment, size: number): void {
    const end = segment.write_offset + size;
    if (size < preallocate_step_bytes / 4 && end + preallocate_step_bytes / 2 > segment.allocated && segment.allocated < segment.capacity) {
      const from = Math.max(segment.allocated, segment.write_offset);
      const to = Math.min(segment.capacity, Math.max(end, from + preallocate_step_bytes));
      try {
        this.fs.pwrite(segment.fd, zeros.subarray(0, to - from), from);
        segment.dirty = true;
      } catch (error) {
        // A disk too full to preallocate may still take the append itself: let that decide.
        if (!(error instanceof FsError) || error.code !== "ENOSPC") throw error;
        segment.allocated = segment.capacity; // and stop trying in this segment
        return;
      }
      segment.allocated = to;
    }
    segment.allocated = Math.max(segment.allocated, end);
  }

  pending(): boolean {
    return this.pending_records.length > 0 || this.pending_state !== null || this.segments_created;
  }

  flush(): void {
    this.stats.flushes += 1;
    this.syncSegments();
    // The superblock before the ring records: a record of a new view's prepare may replace one of
    // an op this replica acknowledged in its old log_view, and must not be durable while the
    // superblock still offers that old log (a crash between the two would leave a log of the old
    // view missing an op it acknowledged in it). The superblock vouches only for headers, so
    // records that follow it are never missing from what it promises.
    const state = this.pending_state;
    if (state !== null) {
      this.pending_state = null;
      this.sequence += 1;
      writeSuperblock(this.fs, this.superblock_fd, { sequence: this.sequence, identity: this.options, state }, this.superblock_first_half);
      this.superblock_first_half = 0;
      this.stats.superblock_writes += 1;
      this.stats.fdatasyncs += 2; // one per half (superblock.ts)
      const current = this.retained[0];
      if (current === undefined && state.checkpoint.op === 0) this.retained = [{ id: state.checkpoint, segments: new Set(), chain: [] }];
      else if (current === undefined || state.checkpoint.op > current.id.op) this.publish(state.checkpoint);
    }
    if (this.pending_records.length > 0) {
      this.writeRecords(this.pending_records);
      this.datasync(this.headers_fd);
      this.pending_records = [];
    }
  }

  /**
   * Writes header records to the ring, in the order given (a later record for the same slot wins),
   * with one pwrite per run of consecutive slots instead of one per record: the prepares of one
   * flush are usually consecutive ops, so this is usually a single system call.
   */
  private writeRecords(locations: PrepareLocation[]): void {
    const slot_count = this.options.journal_slot_count;
    const size = locations.length * header_record_size;
    if (this.records_scratch.length < size) this.records_scratch = new Uint8Array(Math.max(size, 2 * this.records_scratch.length));
    const buffer = this.records_scratch;
    let run_start = 0;
    for (let i = 0; i < locations.length; i++) {
      encodeRecord(buffer.subarray(i * header_record_size, (i + 1) * header_record_size), locations[i]!, this.record_sequence++, this.sequence);
      const slot = locations[i]!.op % slot_count;
      const next = locations[i + 1];
      if (next === undefined || next.op % slot_count !== slot + 1) {
        const first_slot = locations[run_start]!.op % slot_count;
        const run = buffer.subarray(run_start * header_record_size, (i + 1) * header_record_size);
        // Both copies (§5): a write lost or misdirected leaves the other.
        for (let copy = 0; copy < ring_copies; copy++) this.fs.pwrite(this.headers_fd, run, (copy * slot_count + first_slot) * header_record_size);
        run_start = i + 1;
      }
    }
  }

  /** Makes every segment written since the last sync durable, and new segments' names too. */
  private syncSegments(): void {
    for (const segment of this.segments.values()) {
      if (!segment.dirty) continue;
      this.datasync(segment.fd);
      segment.dirty = false;
    }
    if (this.segments_created) {
      this.fs.fsyncDir("journal");
      this.segments_created = false;
    }
  }

  private publish(id: CheckpointId): void {
    const written = this.written.get(id.op);
    assert(written !== undefined && written.id.digest === id.digest, () => `storage: superblock names checkpoint ${id.op}, which was not written`);
    this.retained = [written, ...this.retained].slice(0, checkpoints_retained);
    for (const op of [...this.written.keys()]) if (op <= id.op) this.written.delete(op);
    this.collectGarbage();
  }

  /** Deletes checkpoint files and segments nothing needs any more: a segment goes once no
   * retained checkpoint refers to its values and all its prepares are at or below the oldest
   * checkpoint (values executed since are in segments with newer prepares). */
  private collectGarbage(): void {
    const keep_ops = new Set<number>();
    for (const c of [...this.retained, ...this.written.values()]) for (const op of c.chain) keep_ops.add(op);
    let removed = false;
    for (const name of this.fs.readdir("checkpoint")) {
      const match = /^(\d{16})\.ckpt(\.tmp)?$/.exec(name);
      if (match === null || (match[2] === undefined && keep_ops.has(Number(match[1])))) continue;
      this.fs.unlink(`checkpoint/${name}`);
      removed = true;
    }
    if (removed) this.fs.fsyncDir("checkpoint");
    const horizon = this.horizon();
    removed = false;
    for (const segment of [...this.segments.values()]) {
      if (segment === this.active || this.receiving?.segments.includes(segment) || this.unadopted.includes(segment)) continue;
      if (segment.max_op > horizon) continue;
      if (this.retained.some((c) => c.segments.has(segment.id))) continue;
      let referenced = false;
      for (const w of this.written.values()) referenced ||= w.segments.has(segment.id);
      if (referenced) continue;
      this.fs.close(segment.fd);
      this.fs.unlink(segmentPath(segment.id));
      this.segments.delete(segment.id);
      removed = true;
    }
    if (removed) this.fs.fsyncDir("journal");
    const prune_below = (this.retained[0]?.id.op ?? 0) - this.options.journal_slot_count;
    for (const op of [...this.prepares.keys()]) if (op <= prune_below) this.prepares.delete(op);
  }

  /** Prepares within a journal window below the published checkpoint still serve peers' repairs
   * (recovery reports them), and those above it are replayed; a segment whose prepares are all at
   * or below this op is kept only for the values in it. */
  private horizon(): number {
    return Math.min(this.retained[this.retained.length - 1]?.id.op ?? 0, (this.retained[0]?.id.op ?? 0) - this.options.journal_slot_count);
  }

  compactionCandidate(store: ObjectStore): number | null {
    const horizon = this.horizon();
    let best: number | null = null;
    let best_ratio = compaction_live_ratio_max;
    for (const segment of this.segments.values()) {
      if (segment === this.active || segment.max_op > horizon || this.receiving?.segments.includes(segment) || this.unadopted.includes(segment)) continue;
      const live = store.liveBytesIn(segment.id);
      if (live === 0) continue; // collected as soon as no retained checkpoint needs it
      const ratio = live / Math.max(1, segment.capacity);
      if (ratio < best_ratio) {
        best = segment.id;
        best_ratio = ratio;
      }
    }
    return best;
  }

  readPrepare(op: number, checksum_: bigint): Message | null {
    const location = this.prepares.get(op)?.find((l) => l.checksum === checksum_);
    return location === undefined ? null : this.readPrepareAt(location);
  }

  private readPrepareAt(location: PrepareLocation): Message | null {
    const checksum_ = location.checksum;
    const segment = this.segments.get(location.segment);
    if (segment === undefined) return null;
    // Filled by the read (or discarded), so not zeroed first; and the message keeps it (no copy).
    const bytes = allocUninitialized(location.size);
    try {
      if (this.fs.pread(segment.fd, bytes, location.offset) !== location.size) return null;
    } catch {
      return null;
    }
    const decoded = decode(bytes, this.options.cluster, true);
    if (!decoded.ok || decoded.message.header.checksum !== checksum_) return null;
    return decoded.message;
  }

  prepareBodyLocation(op: number, checksum_: bigint): ValueLocation | null {
    const location = this.prepares.get(op)?.find((l) => l.checksum === checksum_);
    if (location === undefined) return null;
    return { segment: location.segment, offset: location.offset + header_size };
  }

  readValue(entry: ObjectEntry): Uint8Array | null {
    const segment = this.segments.get(entry.segment);
    if (segment === undefined) return null;
    // Filled by the read (or discarded), so not zeroed first; with room in front for a get reply's
    // header, so the reply is built around it instead of copying it (lib/store/operations.ts).
    const bytes = allocValueWithHeadroom(entry.size);
    try {
      if (entry.size > 0 && this.fs.pread(segment.fd, bytes, entry.offset) !== entry.size) return null;
    } catch {
      return null;
    }
    return checksum(bytes) === entry.checksum ? bytes : null;
  }

  writeValue(value: Uint8Array): ValueLocation {
    const segment = this.segmentFor(value.length);
    this.preallocate(segment, value.length);
    this.fs.pwrite(segment.fd, value, segment.write_offset);
    const location = { segment: segment.id, offset: segment.write_offset };
    segment.write_offset += pad8(value.length);
    segment.dirty = true;
    return location;
  }

  /** Writes a delta of what changed since the last checkpoint of the same store, or a base when
   * there is none, or when the deltas since the last base would outweigh it. */
  writeCheckpoint(checkpoint: CheckpointMeta, store: ObjectStore, clients: ClientTable): void {
    const id = checkpoint.id;
    this.unadopted = []; // a synced state being checkpointed: its segments are now referenced
    const changes = store.takeChanges();
    const tail = this.tail;
    this.tail = null; // until this write succeeds, the next checkpoint must be a base
    // The values the index points at must be durable before anything points at the index.
    this.syncSegments();
    const common = { checkpoint, revision: store.revision, segments: store.segments(), sessions: clients.entries() };
    let contents: CheckpointContents | null = null;
    let bytes: Uint8Array | null = null;
    if (tail !== null && tail.store === store && tail.op < id.op && tail.chain.length < chain_length_max) {
      contents = { ...common, link: { kind: "delta", parent_op: tail.op, base_op: tail.chain[0]! }, records: changes };
      bytes = encodeCheckpoint(contents);
      if (tail.delta_bytes + bytes.length > tail.base_bytes) bytes = null;
    }
    if (bytes === null) {
      contents = { ...common, link: { kind: "base", parent_op: id.op, base_op: id.op }, records: storeRecords(store) };
      bytes = encodeCheckpoint(contents);
    }
    const path = checkpointPath(id.op);
    const tmp = `${path}.tmp`;
    const fd = this.fs.open(tmp, true);
    this.fs.truncate(fd, 0);
    this.fs.pwrite(fd, bytes, 0);
    this.datasync(fd);
    this.fs.close(fd);
    this.fs.rename(tmp, path);
    this.fs.fsyncDir("checkpoint");
    const base = contents!.link.kind === "base";
    if (base) this.stats.checkpoints_base += 1;
    else this.stats.checkpoints_delta += 1;
    this.stats.checkpoint_bytes += bytes.length;
    const chain = base ? [id.op] : [...tail!.chain, id.op];
    this.tail = { op: id.op, store, chain, base_bytes: base ? bytes.length : tail!.base_bytes, delta_bytes: base ? 0 : tail!.delta_bytes + bytes.length };
    this.written.set(id.op, { id, segments: common.segments, chain });
  }

  /** The checkpoint files older than the published one that this replica still retains (so it
   * can serve peers that sync, after a restart as before it), newest first. */
  private olderCheckpoints(current_op: number): RetainedCheckpoint[] {
    const older: RetainedCheckpoint[] = [];
    const ops = this.fs
      .readdir("checkpoint")
      .map((name) => /^(\d{16})\.ckpt$/.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .filter((op) => op < current_op)
      .sort((a, b) => b - a)
      .slice(0, checkpoints_retained - 1);
    for (const op of ops) {
      const summary = this.readCheckpointSummary(op);
      const chain = summary === null ? null : this.chainOf(summary);
      if (summary !== null && chain !== null) older.push({ id: summary.checkpoint.id, segments: summary.segments, chain });
    }
    return older;
  }

  /** The files a checkpoint's state is read from, following parents from their headers. */
  private chainOf(summary: CheckpointSummary): number[] | null {
    const chain = [summary.checkpoint.id.op];
    let link = summary.link;
    while (link.kind === "delta") {
      if (chain.length > chain_length_max) return null;
      const parent = this.readCheckpointSummary(link.parent_op);
      if (parent === null) return null;
      chain.unshift(link.parent_op);
      link = parent.link;
    }
    return chain;
  }

  private readCheckpointSummary(op: number): CheckpointSummary | null {
    return this.withCheckpointFile(op, (fd) => {
      const prefix = new Uint8Array(checkpoint_summary_prefix_size);
      if (this.fs.pread(fd, prefix, 0) !== prefix.length) return null;
      const first = decodeCheckpointSummary(prefix);
      if (first === null) return null;
      const whole = new Uint8Array(checkpoint_summary_prefix_size + first.segments_size);
      if (this.fs.pread(fd, whole, 0) !== whole.length) return null;
      return decodeCheckpointSummary(whole);
    });
  }

  /** Reads one checkpoint file whole, verifying its checksum; null if missing or damaged. */
  private readCheckpointFile(op: number, clients_max: number): { contents: CheckpointContents; size: number } | null {
    return this.withCheckpointFile(op, (fd) => {
      const bytes = new Uint8Array(this.fs.size(fd));
      if (this.fs.pread(fd, bytes, 0) !== bytes.length) return null;
      const contents = decodeCheckpoint(bytes, clients_max);
      return contents === null || contents.checkpoint.id.op !== op ? null : { contents, size: bytes.length };
    });
  }

  /** Opens the checkpoint file of `op`, runs read on it and closes it; null if it is missing or
   * any read fails (a damaged or unreadable file is treated as absent by every caller). */
  private withCheckpointFile<T>(op: number, read: (fd: Fd) => T | null): T | null {
    let fd: Fd;
    try {
      fd = this.fs.open(checkpointPath(op), false);
    } catch {
      return null;
    }
    try {
      return read(fd);
    } catch {
      return null;
    } finally {
      this.fs.close(fd);
    }
  }

  /** The state at a checkpoint: its file, and the files of its chain back to a base, applied in
   * order. null if any file is missing or damaged, or the result is not that checkpoint. */
  private loadCheckpoint(
    id: CheckpointId,
    clients_max: number,
  ): { checkpoint: CheckpointMeta; store: ObjectStore; clients: ClientTable; chain: number[]; base_bytes: number; delta_bytes: number } | null {
    const files: CheckpointContents[] = [];
    let delta_bytes = 0;
    let base_bytes = 0;
    let op = id.op;
    for (;;) {
      if (files.length > chain_length_max) return null;
      const file = this.readCheckpointFile(op, clients_max);
      if (file === null) return null;
      files.unshift(file.contents);
      if (file.contents.link.kind === "base") {
        base_bytes = file.size;
        break;
      }
      delta_bytes += file.size;
      op = file.contents.link.parent_op;
    }
    const last = files[files.length - 1]!.checkpoint;
    if (last.id.op !== id.op || last.id.digest !== id.digest || last.id.checksum !== id.checksum) return null;
    const state = applyChain(files, clients_max);
    if (state === null) return null;
    return { checkpoint: last, ...state, chain: files.map((f) => f.checkpoint.id.op), base_bytes, delta_bytes };
  }

  // --- State sync: the stream is the anchor, then sessions, then objects with their values;
  // a position is the index of the next record.

  readSyncChunk(id: CheckpointId, position: number, size_max: number): SyncChunk | null {
    const retained = this.retained.find((c) => c.id.op === id.op && c.id.digest === id.digest && c.id.checksum === id.checksum);
    if (retained === undefined) return null;
    if (this.serving === null || this.serving.id.op !== id.op || this.serving.id.digest !== id.digest) {
      const loaded = id.op === 0 ? null : this.loadCheckpoint(id, 1 << 30);
      if (loaded === null) return null;
      this.serving = { id, checkpoint: loaded.checkpoint, store: loaded.store, sessions: loaded.clients.entries(), keys: [...loaded.store.all()].map(([k]) => k) };
    }
    const { sessions, keys } = this.serving;
    const checkpoint = { checkpoint: this.serving.checkpoint, store: this.serving.store };
    const total = 1 + sessions.length + keys.length;
    if (!Number.isSafeInteger(position) || position < 0 || position >= total) return null;
    const w = new Writer(64 * 1024);
    let index = position;
    while (index < total && (index === position || w.offset < size_max)) {
      if (index === 0) {
        w.u8(sync_record_anchor);
        w.align();
        w.reserve(header_size);
        writeHeader(checkpoint.checkpoint.anchor, w.bytes, w.offset);
        w.offset += header_size;
        w.u64(checkpoint.store.revision);
        w.u64(checkpoint.checkpoint.previous.op);
        w.u64(checkpoint.checkpoint.previous.digest);
        w.u64(checkpoint.checkpoint.previous.checksum);
      } else if (index <= sessions.length) {
        w.u8(sync_record_session);
        w.align();
        writeSession(w, sessions[index - 1]![0], sessions[index - 1]![1]);
      } else {
        const key = keys[index - 1 - sessions.length]!;
        const entry = checkpoint.store.get(key)!;
        // A chunk holds at least one record and never more than size_max plus one record, so a
        // maximum-size value travels alone and every chunk fits in a message.
        if (index > position && w.offset + sync_object_overhead + key.length + entry.size > size_max) break;
        const value = this.readValue(entry);
        if (value === null) return null; // damaged here: the peer asks another replica
        w.u8(sync_record_object);
        w.align();
        writeObjectMeta(w, key, entry);
        w.raw(value);
        w.align();
      }
      index += 1;
    }
    return { bytes: w.finish().slice(), next: index < total ? index : null };
  }

  syncBegin(id: CheckpointId): void {
    this.discardSegments([...(this.receiving?.segments ?? []), ...this.unadopted]);
    this.unadopted = [];
    this.receiving = { id, anchor: null, previous: null, revision: 0, sessions: [], store: new ObjectStore(), segment: null, segments: [], bad: false };
  }

  syncApply(bytes: Uint8Array): boolean {
    const rx = this.receiving;
    if (rx === null || rx.bad) return false;
    const r = new Reader(bytes);
    while (!r.done && !r.bad) {
      const type = r.u8();
      r.align();
      if (type === sync_record_anchor) {
        const h = decodeHeader(r.raw(header_size), 0);
        const revision = r.u64();
        const previous: CheckpointId = { op: r.u64(), digest: r.u64n(), checksum: r.u64n() };
        if (h === null || r.bad) return this.syncBad();
        rx.anchor = h;
        rx.revision = revision;
        rx.previous = previous;
      } else if (type === sync_record_session) {
        const session = readSession(r);
        if (session === null) return this.syncBad();
        rx.sessions.push(session);
      } else if (type === sync_record_object) {
        const meta = readObjectMeta(r);
        if (meta === null) return this.syncBad();
        const value = r.raw(meta.size);
        r.align();
        if (r.bad || checksum(value) !== meta.checksum) return this.syncBad();
        const location = this.appendValue(rx, value);
        rx.store.set(meta.key, { version: meta.version, timestamp: meta.timestamp, size: meta.size, checksum: meta.checksum, ...location });
      } else {
        return this.syncBad();
      }
    }
    return !r.bad || this.syncBad();
  }

  private syncBad(): boolean {
    if (this.receiving !== null) this.receiving.bad = true;
    return false;
  }

  /** Received values go into segments of their own, written once like journaled values. */
  private appendValue(rx: NonNullable<FileStorage["receiving"]>, value: Uint8Array): ValueLocation {
    let segment = rx.segment;
    if (segment === null || segment.write_offset + value.length > segment.capacity) {
      const id = this.next_segment_id++;
      const capacity = Math.max(this.options.segment_size_bytes, pad8(value.length));
      const fd = this.fs.open(segmentPath(id), true);
      this.fs.truncate(fd, capacity);
      segment = { id, fd, write_offset: 0, capacity, allocated: 0, max_op: rx.id.op, dirty: true };
      this.segments.set(id, segment);
      this.segments_created = true;
      rx.segment = segment;
      rx.segments.push(segment);
    }
    this.fs.pwrite(segment.fd, value, segment.write_offset);
    const location = { segment: segment.id, offset: segment.write_offset };
    segment.write_offset += pad8(value.length);
    segment.dirty = true;
    return location;
  }

  syncFinish(clients_max: number): { store: ObjectStore; clients: ClientTable; checkpoint: CheckpointMeta } | null {
    const rx = this.receiving;
    this.receiving = null;
    if (rx === null) return null;
    this.unadopted = rx.segments;
    if (rx.bad || rx.anchor === null || rx.previous === null || rx.sessions.length > clients_max) return null;
    const clients = new ClientTable(clients_max);
    for (const [client, session] of rx.sessions) {
      if (clients.get(client) !== undefined) return null;
      clients.restore(client, session);
    }
    // Deletes advance the revision without leaving an entry, so the stream carries it.
    if (rx.revision < rx.store.revision) return null;
    rx.store.revision = rx.revision;
    return { store: rx.store, clients, checkpoint: { id: rx.id, anchor: rx.anchor, previous: rx.previous } };
  }

  private discardSegments(segments: Segment[]): void {
    if (segments.length === 0) return;
    for (const segment of segments) {
      if (!this.segments.has(segment.id)) continue;
      this.fs.close(segment.fd);
      this.fs.unlink(segmentPath(segment.id));
      this.segments.delete(segment.id);
    }
    this.fs.fsyncDir("journal");
  }

  /** Writes and removes a probe file of `bytes` to see whether the disk has space again. */
  hasSpace(bytes: number): boolean {
    const path = "journal/space.probe";
    try {
      const fd = this.fs.open(path, true);
      try {
        this.fs.pwrite(fd, new Uint8Array(Math.min(bytes, 1 << 20)), 0);
        return true;
      } finally {
        this.fs.close(fd);
        this.fs.unlink(path);
      }
    } catch {
      return false;
    }
  }

  /** Closes every file (before reopening after an I/O error, or at shutdown). */
  close(): void {
    const fds = [this.superblock_fd, this.headers_fd, ...[...this.segments.values()].map((s) => s.fd)];
    this.segments.clear();
    this.active = null;
    for (const fd of fds) {
      if (fd < 0) continue;
      try {
        this.fs.close(fd);
      } catch {
        // Already invalid (the file system failed): nothing more to release.
      }
    }
    this.superblock_fd = this.headers_fd = -1;
  }

  /** Every fdatasync of this storage goes through here, so group commit shows in the counters. */
  private datasync(fd: Fd): void {
    this.stats.fdatasyncs += 1;
    try {
      this.fs.fdatasync(fd);
    } catch (error) {
      // Whatever the reason (EIO, or ENOSPC on some file systems), the kernel may have dropped the
      // dirty pages: this is never a full disk to wait out and retry, it is a reopen (DESIGN §5).
      if (error instanceof FsError) throw new FsError("EIO", `fdatasync failed: ${error.message}`);
      throw error;
    }
  }

  usedBytes(): number {
    let total = 0;
    for (const segment of this.segments.values()) total += this.fs.size(segment.fd);
    return total;
  }
}


/** Header ring record: the prepare header, u32 segment, u32 size, u64 offset, u64 write sequence
 * (which of two differing valid copies is newer), u64 the sequence of the superblock durable when
 * it was written, reserved, and at 248 a u64 checksum of bytes 0..248. */
function encodeRecord(record: Uint8Array, location: PrepareLocation, sequence: number, superblock_sequence: number): void {
  assert(record.length === header_record_size, "encodeRecord: record size");
  writeHeader(location.header, record, 0);
  record.fill(0, header_size, 248);
  writeU32(record, 128, location.segment);
  writeU32(record, 132, location.size);
  writeU64(record, 136, location.offset);
  writeU64(record, 144, sequence);
  writeU64(record, 152, superblock_sequence);
  writeU64Big(record, 248, checksum(record.subarray(0, 248)));
}

/** A header-ring record that stands for "damaged: the op this slot held is unknown" (docs/STORAGE.md
 * §5). It never decodes (its checksum field is zero), and it is not all zeros ("never written"). */
const damaged_record = (() => {
  const record = new Uint8Array(header_record_size);
  record.set(new TextEncoder().encode("toastyfs:damaged"), 0);
  return record;
})();

function addCandidate(candidates: Map<number, PrepareLocation[]>, location: PrepareLocation): void {
  let list = candidates.get(location.op);
  if (list === undefined) candidates.set(location.op, (list = []));
  if (!list.some((c) => c.checksum === location.checksum)) list.push(location);
}

function damagedRecords(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let offset = 0; offset + header_record_size <= size; offset += header_record_size) bytes.set(damaged_record, offset);
  return bytes;
}

/** Segments are scanned for prepares in reads of this size (findUnrecorded). */
const scan_chunk_bytes = 1024 * 1024;
/** The first byte of the header magic as stored (little-endian). */
const magic_first_byte = wire_magic & 0xff;

function isZero(bytes: Uint8Array, offset: number, size: number): boolean {
  for (let i = offset; i < offset + size; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** A record is valid only in its own slot: a misdirected write elsewhere is damage. */
function decodeRecord(ring: Uint8Array, offset: number, slot: number, slot_count: number): { header: Header; location: PrepareLocation; sequence: number; superblock_sequence: number } | null {
  const record = ring.subarray(offset, offset + header_record_size);
  const v = new DataView(record.buffer, record.byteOffset, header_record_size);
  if (v.getBigUint64(248, true) !== checksum(record.subarray(0, 248))) return null;
  const header = decodeHeader(record, 0);
  if (header === null) return null;
  const location: PrepareLocation = {
    header,
    op: header.op,
    checksum: header.checksum,
    segment: v.getUint32(128, true),
    size: v.getUint32(132, true),
    offset: Number(v.getBigUint64(136, true)),
  };
  const sequence = Number(v.getBigUint64(144, true));
  const superblock_sequence = Number(v.getBigUint64(152, true));
  if (location.size !== header.size || header.op % slot_count !== slot || !Number.isSafeInteger(sequence) || !Number.isSafeInteger(superblock_sequence)) return null;
  return { header, location, sequence, superblock_sequence };
}

/**
 * Whether a copy found on disk may restore a damaged ring slot: only one the replica's log could
 * hold, by the rule it loads its journal with (lib/vsr/replica.ts loadJournal): within the suffix
 * the superblock vouches for, the vouched prepare; above it, a prepare of the log_view. The unique
 * intact copy of an op may be a stale one from an earlier view (this replica once prepared that op
 * as a primary that was then deposed) while the prepare the slot really held is damaged too:
 * restoring the stale one would make the slot look settled, and the op it acknowledged absent.
 */
function restorable(state: VsrState): (location: PrepareLocation) => boolean {
  const vouched = new Map<number, bigint>();
  for (const h of state.view_headers) vouched.set(h.op, h.checksum);
  const vouched_max = vouchedMax(state);
  return (location) => {
    if (location.op > vouched_max) return location.header.view === state.log_view;
    const want = vouched.get(location.op);
    return want === undefined || want === location.checksum;
  };
}
