/**
 * The journal's segment files (docs/STORAGE.md): append-only files of prepares and of values
 * written on their own (repaired, compacted or received by state sync). A value stays where its
 * prepare put it; a segment is deleted once nothing refers to it (checkpoint_store.ts).
 */
import { assert } from "../util/assert.ts";
import { allocUninitialized, pad8 } from "../util/bytes.ts";
import { checksum } from "../util/checksum.ts";
import { decode, decodeHeader, encodeInto, writeHeader, type Message } from "../net/codec.ts";
import { header_size } from "../constants.ts";
import type { ValueLocation } from "../store/object_store.ts";
import { allocValueWithHeadroom } from "../store/operations.ts";
import { FsError, readFully, type Fd, type FileSystem } from "./fs.ts";
import type { PrepareLocation } from "./ring_record.ts";
import type { StoredBytes } from "../vsr/storage.ts";

/** Prepares up to this size are encoded into a reused buffer and written with one pwrite; larger
 * ones are written as header and body, the body straight from the message: a second system call
 * costs less than copying a large body into a freshly allocated buffer (which profiling showed for
 * every 1 MiB put, on every replica). */
const prepare_scratch_size = 64 * 1024;

/** Segments are zero-filled this far ahead of small appends (see preallocate). */
const preallocate_step_bytes = 1024 * 1024;
/** Source of those zeros (never written). */
const zeros = new Uint8Array(preallocate_step_bytes + prepare_scratch_size);

export interface Segment {
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
  /** Its fdatasync was handed to the driver by syncBegin and has not completed (docs/STORAGE.md
   * §10.9): its descriptor must stay open. A write meanwhile marks it dirty again, for the next
   * flush (a checkpoint's values may be in that write, §10.3). */
  in_flight: boolean;
}

export function segmentPath(id: number): string {
  assert(Number.isSafeInteger(id) && id >= 0, "segmentPath: id");
  return `journal/${id.toString().padStart(10, "0")}.seg`;
}

export class SegmentFiles {
  readonly segments = new Map<number, Segment>();
  /** The segment prepares and written values are appended to. */
  active: Segment | null = null;
  private next_id = 1;
  /** A segment was created since the last sync: the journal directory needs an fsync. */
  private created = false;
  /** Descriptors of segments removed while their fdatasync was in flight: closed when it completes,
   * so a sync on the thread pool never meets a closed (or reused) descriptor. At most one per
   * segment that was open at syncBegin. */
  private close_after_sync: Fd[] = [];
  /** Reused for encoding small prepares, and a large prepare's header (see prepare_scratch_size). */
  private readonly prepare_scratch = new Uint8Array(prepare_scratch_size);

  constructor(
    private readonly fs: FileSystem,
    private readonly segment_size_bytes: number,
  ) {
    assert(segment_size_bytes > 0, "segments: segment size");
  }

  get pendingCreate(): boolean {
    return this.created;
  }

  /** Opens every segment on disk (at recovery: none is appended to again). */
  openAll(): void {
    assert(this.segments.size === 0, "segments: opened twice");
    for (const name of this.fs.readdir("journal")) {
      const match = /^(\d{10})\.seg$/.exec(name);
      if (match === null) continue;
      const id = Number(match[1]);
      const fd = this.fs.open(segmentPath(id), false);
      const size = this.fs.size(fd);
      this.segments.set(id, { id, fd, write_offset: size, capacity: size, allocated: 0, max_op: -1, dirty: false, in_flight: false });
      this.next_id = Math.max(this.next_id, id + 1);
    }
  }

  /** A new segment with room for at least `size` bytes. */
  create(size: number, max_op: number): Segment {
    const id = this.next_id++;
    const capacity = Math.max(this.segment_size_bytes, pad8(size));
    const fd = this.fs.open(segmentPath(id), true);
    this.fs.truncate(fd, capacity);
    const segment: Segment = { id, fd, write_offset: 0, capacity, allocated: 0, max_op, dirty: true, in_flight: false };
    assert(!this.segments.has(id), "segments: id reused");
    this.segments.set(id, segment);
    this.created = true;
    return segment;
  }

  /** The active segment, or a new preallocated one if this write does not fit. */
  segmentFor(size: number): Segment {
    if (this.active !== null && this.active.write_offset + size <= this.active.capacity) return this.active;
    const segment = this.create(size, -1);
    assert(segment.capacity >= size, "segmentFor: new segment too small");
    this.active = segment;
    return segment;
  }

  /** Raises what a segment is known to hold, so collection keeps it while that op matters. */
  noteOp(segment_id: number, op: number): void {
    assert(Number.isSafeInteger(op) && op >= 0, "noteOp: op");
    const segment = this.segments.get(segment_id);
    if (segment !== undefined) segment.max_op = Math.max(segment.max_op, op);
  }

  /**
   * Before an append of `size` bytes at the segment's write offset: keeps the segment's allocated
   * region (zero-filled, so its disk blocks exist) at least half a step ahead of the appends.
   * ftruncate only makes a sparse file, so without this every flush's fdatasync would also
   * allocate the blocks under the new prepares and commit that in the file system's journal;
   * into allocated blocks it is a plain data write (docs/STORAGE.md, "preallocate each segment";
   * measured here: a flush of a few small prepares, three replicas on one disk, 0.50 -> 0.36 ms,
   * CPU 0.13 -> 0.10 ms). Only small appends zero ahead: a large one allocates its own blocks in
   * one go, and zeroing ahead of 1 MiB values would double what they write. The zeros go at or
   * beyond the write offset, before the data, so they never cover anything written.
   */
  preallocate(segment: Segment, size: number): void {
    const end = segment.write_offset + size;
    assert(end <= segment.capacity, "preallocate: append beyond the segment");
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

  /** Appends a prepare; returns where it is. */
  writePrepare(message: Message): PrepareLocation {
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
    const location: PrepareLocation = {
      header: message.header,
      op: message.header.op,
      checksum: message.header.checksum,
      segment: segment.id,
      offset: segment.write_offset,
      size,
    };
    segment.write_offset += pad8(size);
    segment.max_op = Math.max(segment.max_op, message.header.op);
    segment.dirty = true;
    assert(location.offset + size <= segment.capacity, "writePrepare: segment overflow");
    return location;
  }

  /** Appends a value to `segment` (which has room); returns where it is. */
  appendValue(segment: Segment, value: Uint8Array): ValueLocation {
    assert(segment.write_offset + value.length <= segment.capacity, "appendValue: segment overflow");
    this.fs.pwrite(segment.fd, value, segment.write_offset);
    const location = { segment: segment.id, offset: segment.write_offset };
    segment.write_offset += pad8(value.length);
    segment.dirty = true;
    return location;
  }

  /** Writes a value into the active segment (durable at the next sync). */
  writeValue(value: Uint8Array): ValueLocation {
    const segment = this.segmentFor(value.length);
    assert(segment === this.active, "writeValue: not the active segment");
    this.preallocate(segment, value.length);
    return this.appendValue(segment, value);
  }

  /** The prepare at a location, verified whole; null if unreadable or damaged. */
  readPrepareAt(location: PrepareLocation, cluster: bigint): Message | null {
    const segment = this.segments.get(location.segment);
    if (segment === undefined) return null;
    // Filled by the read (or discarded), so not zeroed first; and the message keeps it (no copy).
    const bytes = allocUninitialized(location.size);
    if (!readFully(this.fs, segment.fd, bytes, location.offset)) return null;
    const decoded = decode(bytes, cluster, true);
    if (!decoded.ok || decoded.message.header.checksum !== location.checksum) return null;
    assert(decoded.message.header.op === location.op, "readPrepareAt: checksum matches, op does not");
    return decoded.message;
  }

  /** Whether the prepare header at a record's location is the one the record names. */
  headerAt(location: PrepareLocation): boolean {
    const segment = this.segments.get(location.segment);
    if (segment === undefined) return false;
    const buffer = new Uint8Array(header_size);
    if (!readFully(this.fs, segment.fd, buffer, location.offset)) return false;
    const on_disk = decodeHeader(buffer, 0);
    return on_disk !== null && on_disk.checksum === location.checksum;
  }

  /** A value's or a block's bytes, checksum-verified; null if unreadable or damaged. */
  readValue(entry: StoredBytes): Uint8Array | null {
    assert(entry.size >= 0 && entry.offset >= 0, "readValue: entry");
    const segment = this.segments.get(entry.segment);
    if (segment === undefined) return null;
    // Filled by the read (or discarded), so not zeroed first; with room in front for a get reply's
    // header, so the reply is built around it instead of copying it (lib/store/operations.ts).
    const bytes = allocValueWithHeadroom(entry.size);
    if (entry.size > 0 && !readFully(this.fs, segment.fd, bytes, entry.offset)) return null;
    return checksum(bytes) === entry.checksum ? bytes : null;
  }

  /** A flush begins (docs/STORAGE.md §10.9): the segments written since the last sync are returned
   * for the driver to fdatasync; they count as in flight until syncCompleted, which makes new
   * segments' names durable. Writes after this belong to the next sync. */
  syncBegin(): Fd[] {
    assert(this.close_after_sync.length === 0, "segments: a sync begun while another is in flight");
    const fds: Fd[] = [];
    for (const segment of this.segments.values()) {
      assert(!segment.in_flight, () => `segments: segment ${segment.id} still in flight at syncBegin`);
      if (!segment.dirty) continue;
      segment.dirty = false;
      segment.in_flight = true;
      fds.push(segment.fd);
    }
    return fds;
  }

  /** The fdatasyncs syncBegin returned have all succeeded: new segments' names are made durable
   * (on the calling thread: a segment is created once per segment_size_bytes written). */
  syncCompleted(): void {
    for (const segment of this.segments.values()) segment.in_flight = false;
    this.syncDirectory();
    for (const fd of this.close_after_sync) this.fs.close(fd);
    this.close_after_sync = [];
  }

  private syncDirectory(): void {
    // (`created` may outlive the segment it was set for: one created and then removed, by garbage
    // collection or an installed sync, still needs the directory fsync; sweep seed 203916113145.)
    if (this.created) {
      this.fs.fsyncDir("journal");
      this.created = false;
    }
  }

  /** Closes and deletes a segment (the caller fsyncs the directory). */
  remove(segment: Segment): void {
    assert(segment !== this.active, "segments: removing the active segment");
    if (segment.in_flight) this.close_after_sync.push(segment.fd);
    else this.fs.close(segment.fd);
    this.fs.unlink(segmentPath(segment.id));
    this.segments.delete(segment.id);
  }

  /** Deletes segments that are still open, and makes that durable. */
  discard(segments: Segment[]): void {
    if (segments.length === 0) return;
    assert(!segments.includes(this.active!), "segments: discarding the active segment");
    for (const segment of segments) {
      if (!this.segments.has(segment.id)) continue;
      this.remove(segment);
    }
    this.fs.fsyncDir("journal");
  }

  usedBytes(): number {
    assert(this.active === null || this.segments.get(this.active.id) === this.active, "segments: active segment not open");
    let total = 0;
    for (const segment of this.segments.values()) total += this.fs.size(segment.fd);
    return total;
  }

  /** Forgets every segment and returns their descriptors for the caller to close. */
  release(): Fd[] {
    const fds = [...this.segments.values()].map((s) => s.fd).concat(this.close_after_sync);
    this.close_after_sync = [];
    assert(
      fds.every((fd) => fd >= 0),
      "segments: a segment without a file",
    );
    this.segments.clear();
    this.active = null;
    return fds;
  }
}
