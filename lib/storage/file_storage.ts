/**
 * The replica's Storage over a FileSystem (docs/STORAGE.md). The simulator runs this
 * exact code over its crashing file system; production runs it over node:fs.
 *
 * Data directory:
 *   superblock                 4 copies of the VSR state (superblock.ts)
 *   journal/headers            the redundant header ring: one 256-byte record per op slot
 *   journal/<id>.seg           append-only segment files of prepares; values stay in them
 *   checkpoint/<op>.ckpt       checkpoint files (checkpoint_file.ts)
 *
 * Write order per flush (group commit): prepares to segments and checkpoint files written since the
 * last flush, fdatasync them (and name the checkpoints); then the superblock if queued, a half per
 * step; then header records to the ring, fdatasync it. A prepare is acknowledged only after the
 * flush, so a header record on disk means the prepare was durable first: at recovery, a record
 * whose prepare is damaged is "faulty" (repair from peers), while a prepare with no record was never
 * acknowledged.
 *
 * This file is the facade and the recovery sequence; the concerns behind it have files of their
 * own: segments.ts (segment files), header_ring.ts with ring_record.ts and ring_slot.ts (the header
 * ring), journal_recovery.ts with segment_scan.ts (what recovery finds), checkpoint_store.ts
 * (checkpoints and garbage collection), sync_stream.ts (the state-sync stream), space_probe.ts.
 */
import { assert } from "../util/assert.ts";
import { Command, type Header, type Message } from "../net/codec.ts";
import { ObjectStore, type ValueLocation } from "../store/object_store.ts";
import { ClientTable } from "../vsr/client_table.ts";
import { rootPrepare } from "../vsr/root.ts";
import type { CheckpointId, CheckpointMeta, Recovered, Storage, StoredBytes, SyncChunk, VsrState } from "../vsr/storage.ts";
import { FsError, type Fd, type FileSystem } from "./fs.ts";
import {
  readSuperblock,
  superblock_copies,
  superblock_copy_size,
  superblock_path,
  encodeSuperblock,
  writeSuperblock,
  writeSuperblockHalf,
  type SuperblockIdentity,
} from "./superblock.ts";
import { damagedRecords, headers_path, type PrepareLocation } from "./ring_record.ts";
import { HeaderRing } from "./header_ring.ts";
import { SegmentFiles } from "./segments.ts";
import { recoverJournal, restorable } from "./journal_recovery.ts";
import { CheckpointStore, type ReclaimView } from "./checkpoint_store.ts";
import { SyncReceiver, SyncSource } from "./sync_stream.ts";
import { hasSpace } from "./space_probe.ts";
import { header_size, snapshot_streams_max } from "../constants.ts";

export { header_record_size, ring_copies } from "./ring_record.ts";

export interface StorageOptions extends SuperblockIdentity {
  journal_slot_count: number;
  segment_size_bytes: number;
}

/** A data directory that belongs to another cluster or replica: refuse it, touch nothing. */
export class ForeignDataError extends Error {
  override name = "ForeignDataError";
}

export class FileStorage implements Storage {
  private superblock_fd: Fd = -1;
  private sequence = 0;
  /** Counters for status and metrics: with many clients, flushes (and fdatasyncs) are far fewer
   * than prepares, and prepares fewer than puts (docs/STORAGE.md, group commit). */
  readonly stats = {
    flushes: 0,
    fdatasyncs: 0,
    prepares_written: 0,
    checkpoints_base: 0,
    checkpoints_delta: 0,
    checkpoint_bytes: 0,
    superblock_writes: 0,
  };
  /** Which half of the superblock the next write starts with (superblock.ts). */
  private superblock_first_half = 0;
  private readonly ring: HeaderRing;
  private readonly files: SegmentFiles;
  private readonly checkpoints: CheckpointStore;
  /** The state-sync stream's sources: peers' (0), then one per snapshot stream (readSyncChunk). */
  private readonly sources = Array.from({ length: 1 + snapshot_streams_max }, () => new SyncSource());
  private readonly receiver: SyncReceiver;
  /** Journaled prepares by op: usually one; after recovery, every copy found (lib/vsr picks). */
  private readonly prepares = new Map<number, PrepareLocation[]>();
  private pending_records: PrepareLocation[] = [];
  private pending_state: VsrState | null = null;
  /** The group of writes whose flush has begun and not completed (docs/STORAGE.md §10.9): at most
   * one. step: which fdatasyncs the driver is running, fds: on which files. */
  private flight: {
    step: "segments" | "superblock_first" | "superblock_second" | "ring";
    records: PrepareLocation[];
    state: VsrState | null;
    fds: Fd[];
    /** The state's encoding, once its first half is written (the second half writes the same). */
    superblock: Uint8Array | null;
  } | null = null;
  private readonly root: Header;

  constructor(
    readonly fs: FileSystem,
    readonly options: StorageOptions,
  ) {
    assert(options.journal_slot_count > 0 && options.segment_size_bytes > 0, "storage: options");
    this.root = rootPrepare(options.cluster, options.replica_count);
    this.ring = new HeaderRing(fs, options.journal_slot_count);
    this.files = new SegmentFiles(fs, options.segment_size_bytes);
    this.receiver = new SyncReceiver(this.files);
    this.checkpoints = new CheckpointStore(fs, this.files, options.journal_slot_count, this.stats, (segment) =>
      this.receiver.holds(segment),
    );
  }

  recover(clients_max: number): Recovered {
    assert(this.superblock_fd < 0 && this.ring.fd < 0, "recover: storage already open");
    const superblock_missing = !this.fs.exists(superblock_path);
    const headers_missing = !this.fs.exists(headers_path);
    this.fs.mkdir("journal");
    this.fs.mkdir("checkpoint");
    this.superblock_fd = this.fs.open(superblock_path, true);
    this.ring.fd = this.fs.open(headers_path, true);
    // The superblock and the header ring are written in place from now on: allocate them fully
    // (never over what is there), so a full disk can never make a flush, and so an
    // acknowledgement, fail.
    const superblock_size = superblock_copies * superblock_copy_size;
    const ring_size = this.ring.size;
    const superblock_have = this.fs.size(this.superblock_fd);
    if (superblock_have < superblock_size)
      this.fs.pwrite(this.superblock_fd, new Uint8Array(superblock_size - superblock_have), superblock_have);
    // A superblock without its header ring lost every record of what it acknowledged: the new ring
    // is written as damaged records (not zeros, which mean "never written"), so the loss survives
    // a crash before the next open reads it.
    const ring_lost = headers_missing && !superblock_missing;
    const ring_have = this.fs.size(this.ring.fd);
    if (ring_have < ring_size)
      this.fs.pwrite(
        this.ring.fd,
        ring_lost && this.persistsDamage() ? damagedRecords(ring_size - ring_have) : new Uint8Array(ring_size - ring_have),
        ring_have,
      );
    // With the write order of superblock.ts, the newest valid copy is never older than the last
    // state this replica promised: a promise follows a complete write of all four copies, and the
    // next write starts with a half that does not hold the only copies of the newest state. If the
    // disk destroyed every copy, the replica recovers as one that lost its disk (below).
    // A process killed in the middle of a flush (kill -9) leaves its writes in the page cache, not
    // on the disk: read back now they look durable, and a power loss later could still take them
    // away after this replica acted on them (promised the view, acknowledged the prepare). So make
    // what is read durable before it is used.
    this.datasync(this.superblock_fd);
    this.datasync(this.ring.fd);
    for (const dir of ["journal", "checkpoint", ""]) this.fs.fsyncDir(dir);
    const { record, first_half } = readSuperblock(this.fs, this.superblock_fd);
    this.superblock_first_half = first_half;
    // Sequences continue above anything left in the ring, whatever path this open takes: records
    // left behind (a blanking write that went astray, an open that never read the ring) must never
    // outrank new ones, nor name a superblock newer than the ones written from now on.
    const peek = this.ring.peek();
    this.ring.record_sequence = peek.record_sequence_max + 1;
    if (record === null) {
      // Never formatted, or a format/recovery that crashed before its first superblock: nothing
      // here was ever promised to anyone, so whatever files exist are garbage.
      this.removeAll(ring_size);
      this.sequence = peek.superblock_sequence_max;
      return blankRecovery(clients_max);
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
      return { ...blankRecovery(clients_max), superblock_lost: true };
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
    this.files.openAll();
    for (const segment of this.files.segments.values()) this.datasync(segment.fd);
    if (state.checkpoint.op > 0 || state.recovering === true) {
      const loaded = state.recovering === true ? null : this.checkpoints.load(state.checkpoint, clients_max);
      if (loaded === null) {
        // The state this replica executed is lost, but its promises (the superblock) are not: it
        // recovers the state from peers. Nothing is collected until it has a checkpoint again.
        // Recovery rewrites the journal, so from now on the journal no longer holds what this
        // replica acknowledged before: the superblock says so, and every open until recovery
        // completes recovers again, even if the checkpoint file reads back later.
        this.checkpoints.forget();
        if (state.recovering !== true) {
          this.sequence += 1;
          writeSuperblock(
            this.fs,
            this.superblock_fd,
            { sequence: this.sequence, identity: this.options, state: { ...state, recovering: true } },
            this.superblock_first_half,
          );
          this.superblock_first_half = 0;
        }
        return { state, journal: [], damaged_slots: [], checkpoint: null, store, clients };
      }
      checkpoint = loaded.checkpoint;
      store = loaded.store;
      clients = loaded.clients;
      this.checkpoints.adopt(state.checkpoint, loaded);
    } else {
      this.checkpoints.adoptRoot(state.checkpoint);
    }
    const context = {
      fs: this.fs,
      cluster: this.options.cluster,
      ring: this.ring,
      segments: this.files,
      datasync: (fd: Fd) => this.datasync(fd),
      superblock_sequence: this.sequence,
      persists_damage: this.persistsDamage(),
      restores_records: this.restoresRecords(),
    };
    const { journal, damaged_slots, prepares } = recoverJournal(context, state.checkpoint.op, restorable(state));
    for (const [op, locations] of prepares) this.prepares.set(op, locations);
    this.collectGarbage();
    assert(
      damaged_slots.every((slot) => slot >= 0 && slot < this.options.journal_slot_count),
      "recover: damaged slot outside the ring",
    );
    return { state, journal, damaged_slots, checkpoint, store, clients };
  }

  /** Deletes every file but the ring, and blanks the ring in place (it stays allocated, see
   * recover()). */
  private removeAll(ring_size: number): void {
    assert(ring_size === this.ring.size, "removeAll: ring size");
    for (const dir of ["journal", "checkpoint"]) {
      for (const name of this.fs.readdir(dir)) {
        if (`${dir}/${name}` !== headers_path) this.fs.unlink(`${dir}/${name}`);
      }
      this.fs.fsyncDir(dir);
    }
    this.fs.pwrite(this.ring.fd, new Uint8Array(ring_size), 0);
    this.datasync(this.ring.fd);
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

  writeState(state: VsrState): void {
    assert(state.view >= state.log_view, "writeState: log_view above view");
    this.pending_state = state;
  }

  writePrepare(message: Message): void {
    assert(this.ring.fd >= 0, "writePrepare: storage not open");
    assert(
      message.header.command === Command.prepare && message.header.size === header_size + message.body.length,
      "writePrepare: not a whole prepare",
    );
    const location = this.files.writePrepare(message);
    this.stats.prepares_written += 1;
    this.prepares.set(location.op, [location]);
    this.pending_records.push(location);
  }

  pending(): boolean {
    assert(this.pending_records.length === 0 || this.ring.fd >= 0, "pending: records queued on a closed storage");
    return this.pending_records.length > 0 || this.pending_state !== null || this.files.pendingCreate || this.checkpoints.pending();
  }

  flushing(): boolean {
    return this.flight !== null;
  }

  /** Takes every write queued so far as the group in flight (docs/STORAGE.md §10.9); returns the
   * segments and checkpoint files the driver must fdatasync before flushSynced (new segments'
   * names are synced in flushSynced, once they are). */
  flushBegin(): Fd[] {
    assert(this.superblock_fd >= 0 && this.ring.fd >= 0, "flushBegin: storage not open");
    assert(this.flight === null, "flushBegin: a flush is already in flight");
    this.stats.flushes += 1;
    // Checkpoint files written since the last flush are synced with the segments their indexes
    // point into: both before the superblock step, which may name the checkpoint.
    const fds = [...this.files.syncBegin(), ...this.checkpoints.flushBegin()];
    this.stats.fdatasyncs += fds.length;
    this.flight = { step: "segments", records: this.pending_records, state: this.pending_state, fds, superblock: null };
    this.pending_records = [];
    this.pending_state = null;
    return fds;
  }

  /** Every fdatasync of the files last returned succeeded: issues the group's next step and
   * returns the files it needs synced, or null once the group is durable (completed). */
  flushSynced(): Fd[] | null {
    const flight = this.flight;
    assert(flight !== null, "flushSynced: no flush in flight");
    assert(this.superblock_fd >= 0 && this.ring.fd >= 0, "flushSynced: storage not open");
    if (flight.step === "segments") {
      this.files.syncCompleted();
      this.checkpoints.flushRename();
      // The superblock before the ring records: a record of a new view's prepare may replace one of
      // an op this replica acknowledged in its old log_view, and must not be durable while the
      // superblock still offers that old log (a crash between the two would leave a log of the old
      // view missing an op it acknowledged in it). The superblock vouches only for headers, so
      // records that follow it are never missing from what it promises. Its two halves are two
      // steps, each synced before the next is written (superblock.ts), so a torn write never
      // destroys the newest state's last copy.
      const state = flight.state;
      if (state !== null) {
        this.sequence += 1;
        flight.superblock = encodeSuperblock({ sequence: this.sequence, identity: this.options, state });
        writeSuperblockHalf(this.fs, this.superblock_fd, flight.superblock, this.superblock_first_half);
        this.stats.fdatasyncs += 1;
        flight.step = "superblock_first";
        flight.fds = [this.superblock_fd];
        return flight.fds;
      }
    } else if (flight.step === "superblock_first") {
      writeSuperblockHalf(this.fs, this.superblock_fd, flight.superblock!, 1 - this.superblock_first_half);
      this.stats.fdatasyncs += 1;
      flight.step = "superblock_second";
      return flight.fds;
    } else if (flight.step === "superblock_second") {
      this.superblock_first_half = 0;
      this.stats.superblock_writes += 1;
      if (this.checkpoints.stateFlushed(flight.state!.checkpoint)) this.collectGarbage();
    }
    if (flight.step !== "ring" && flight.records.length > 0) {
      this.ring.write(flight.records, this.sequence);
      this.stats.fdatasyncs += 1;
      flight.step = "ring";
      flight.fds = [this.ring.fd];
      return flight.fds;
    }
    this.flight = null;
    return null;
  }

  /** Runs the fdatasyncs of the step in flight on the calling thread (the simulator delivers them
   * as an event; tests and shutdown need them now). The caller then calls flushSynced. */
  flushSyncInline(): void {
    assert(this.flight !== null, "flushSyncInline: no flush in flight");
    for (const fd of this.flight.fds) this.syncFile(fd);
  }

  /** A whole flush on the calling thread: the group in flight, if any, then everything queued. */
  flush(): void {
    if (this.flight !== null) this.completeInline();
    this.flushBegin();
    this.completeInline();
    assert(!this.pending(), "flush: writes still queued");
  }

  private completeInline(): void {
    do this.flushSyncInline();
    while (this.flushSynced() !== null);
  }

  /** Deletes files nothing needs (checkpoint_store.ts), and forgets prepares no longer read. */
  private collectGarbage(): void {
    const prune_below = this.checkpoints.collectGarbage();
    assert(prune_below < (this.checkpoints.retained[0]?.id.op ?? 0) + 1, "collectGarbage: pruning above the published checkpoint");
    for (const op of [...this.prepares.keys()]) if (op <= prune_below) this.prepares.delete(op);
  }

  compactionCandidate(store: ObjectStore): number | null {
    const candidate = this.checkpoints.compactionCandidate(store);
    assert(candidate === null || this.files.segments.has(candidate), "compactionCandidate: a segment that is not open");
    return candidate;
  }

  pinnedDeadBytes(store: ObjectStore): number {
    return this.checkpoints.pinnedDeadBytes(store);
  }

  /** Read-only: what garbage collection decides on (checkpoint_store.ts reclaimView). */
  reclaimView(): ReclaimView {
    return this.checkpoints.reclaimView();
  }

  readPrepare(op: number, checksum_: bigint): Message | null {
    const location = this.prepares.get(op)?.find((l) => l.checksum === checksum_);
    if (location === undefined) return null;
    assert(location.op === op, "readPrepare: a location filed under another op");
    return this.files.readPrepareAt(location, this.options.cluster);
  }

  prepareBodyLocation(op: number, checksum_: bigint): ValueLocation | null {
    const location = this.prepares.get(op)?.find((l) => l.checksum === checksum_);
    if (location === undefined) return null;
    assert(location.size >= header_size, "prepareBodyLocation: prepare smaller than its header");
    return { segment: location.segment, offset: location.offset + header_size };
  }

  readValue(stored: StoredBytes): Uint8Array | null {
    const value = this.files.readValue(stored);
    assert(value === null || value.length === stored.size, "readValue: value of another size");
    return value;
  }

  writeValue(value: Uint8Array): ValueLocation {
    assert(this.ring.fd >= 0, "writeValue: storage not open");
    return this.files.writeValue(value);
  }

  writeCheckpoint(checkpoint: CheckpointMeta, store: ObjectStore, clients: ClientTable): void {
    assert(checkpoint.id.op > (this.checkpoints.retained[0]?.id.op ?? -1), "writeCheckpoint: not above the published checkpoint");
    this.checkpoints.write(checkpoint, store, clients);
    // Only a written checkpoint adopts a sync's segments: if a full disk refused it, the replica
    // drops the sync, and syncAbort must still find them to delete.
    this.receiver.adopt();
  }

  readSyncChunk(id: CheckpointId, position: number, size_max: number, source = 0): SyncChunk | null {
    assert(Number.isInteger(source) && source >= 0 && source < this.sources.length, () => `readSyncChunk: source ${source}`);
    if (!this.retains(id)) return null;
    const chunk = this.sources[source]!.readChunk(
      id,
      position,
      size_max,
      () => this.checkpoints.load(id, 1 << 30),
      (entry) => this.files.readValue(entry),
    );
    // A snapshot client reads its stream once; a peer may ask again, so its copy stays.
    if (source > 0 && chunk !== null && chunk.next === null) this.sources[source] = new SyncSource();
    return chunk;
  }

  retains(id: CheckpointId): boolean {
    return this.checkpoints.find(id) !== undefined;
  }

  syncBegin(id: CheckpointId): void {
    assert(this.ring.fd >= 0, "syncBegin: storage not open");
    this.receiver.begin(id);
  }

  syncApply(bytes: Uint8Array): boolean {
    assert(this.ring.fd >= 0, "syncApply: storage not open");
    return this.receiver.apply(bytes);
  }

  syncFinish(clients_max: number): { store: ObjectStore; clients: ClientTable; checkpoint: CheckpointMeta } | null {
    assert(clients_max > 0, "syncFinish: clients_max");
    return this.receiver.finish(clients_max);
  }

  syncAbort(): void {
    assert(this.ring.fd >= 0, "syncAbort: storage not open");
    this.receiver.abort();
  }

  hasSpace(bytes: number): boolean {
    assert(Number.isSafeInteger(bytes), "hasSpace: bytes");
    return hasSpace(this.fs, bytes);
  }

  /** Closes every file (before reopening after an I/O error, or at shutdown). */
  close(): void {
    const fds = [this.superblock_fd, this.ring.fd, ...this.files.release(), ...this.checkpoints.release()];
    for (const fd of fds) {
      if (fd < 0) continue;
      try {
        this.fs.close(fd);
      } catch (error) {
        // Already invalid (the file system failed): nothing more to release.
        if (!(error instanceof FsError)) throw error;
      }
    }
    this.superblock_fd = this.ring.fd = -1;
    this.flight = null;
    assert(this.files.segments.size === 0 && this.files.active === null, "close: segments left open");
  }

  /** Every fdatasync of this storage goes through here, so group commit shows in the counters. */
  private datasync(fd: Fd): void {
    this.stats.fdatasyncs += 1;
    this.syncFile(fd);
  }

  private syncFile(fd: Fd): void {
    assert(fd >= 0, "datasync: file not open");
    try {
      this.fs.fdatasync(fd);
    } catch (error) {
      // Whatever the reason (EIO, or ENOSPC on some file systems), the kernel may have dropped the
      // dirty pages: this is never a full disk to wait out and retry, it is a reopen
      // (docs/STORAGE.md).
      if (error instanceof FsError) throw new FsError("EIO", `fdatasync failed: ${error.message}`);
      throw error;
    }
  }

  usedBytes(): number {
    const used = this.files.usedBytes();
    assert(used >= 0, "usedBytes: negative");
    return used;
  }
}

/** What recovery reports for a directory holding nothing this replica promised: no state, an empty
 * log and namespace. */
function blankRecovery(clients_max: number): Recovered {
  return { state: null, journal: [], damaged_slots: [], checkpoint: null, store: new ObjectStore(), clients: new ClientTable(clients_max) };
}
