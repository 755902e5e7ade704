/**
 * Snapshot files (docs/STORAGE.md §17): one checkpoint of a cluster as `toastyfs snapshot save`
 * streamed it (docs/PROTOCOL.md §3.16), byte for byte the records of the state-sync stream
 * (docs/STORAGE.md §8) in the frames they arrived in, between a header that names the checkpoint
 * and a trailer that counts what the records hold and carries a SHA-256 of everything before it.
 *
 * SnapshotWriter writes one (restarting from the header when the stream has to start over);
 * SnapshotLoader rebuilds the state from the frames with the replica's own sync receiver
 * (lib/storage/sync_stream.ts), which checks every value and block against its checksum, and then
 * checks the state digest (lib/vsr/root.ts); readSnapshotFile does both for a file on disk.
 */
import * as fs from "node:fs";
import { createHash, type Hash } from "node:crypto";
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import { message_size_max } from "../constants.ts";
import { SyncReceiver } from "../storage/sync_stream.ts";
import type { Segment } from "../storage/segments.ts";
import { stateDigest } from "../vsr/root.ts";
import type { CheckpointId, CheckpointMeta } from "../vsr/storage.ts";
import type { ObjectStore } from "../store/object_store.ts";
import type { ClientTable } from "../vsr/client_table.ts";

export const snapshot_magic = 0x504e5354; // "TSNP"
export const snapshot_trailer_magic = 0x544e5354; // "TSNT"
export const snapshot_version = 1;
export const snapshot_header_size = 64;
export const snapshot_frame_header_size = 16;
export const snapshot_trailer_size = 72;
/** Where a loaded state's values sit: the snapshot file itself (ValueLocation.segment). */
export const snapshot_file_segment = 1;

export interface SnapshotHeader {
  cluster: bigint;
  replica_count: number;
  checkpoint: CheckpointId;
  /** When the save started streaming this checkpoint, ms since the Unix epoch. */
  created_ms: number;
}

export interface SnapshotTrailer {
  records: number;
  objects: number;
  /** Sum of the objects' sizes. */
  object_bytes: number;
  /** Bytes of the frames between header and trailer. */
  frame_bytes: number;
}

export function encodeSnapshotHeader(h: SnapshotHeader): Uint8Array {
  assert(h.replica_count >= 1 && h.replica_count <= 255 && h.checkpoint.op > 0, "snapshot header: fields");
  const bytes = new Uint8Array(snapshot_header_size);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, snapshot_magic, true);
  v.setUint32(4, snapshot_version, true);
  v.setBigUint64(8, h.cluster, true);
  v.setUint8(16, h.replica_count);
  v.setBigUint64(24, BigInt(h.checkpoint.op), true);
  v.setBigUint64(32, h.checkpoint.digest, true);
  v.setBigUint64(40, h.checkpoint.checksum, true);
  v.setBigUint64(48, BigInt(h.created_ms), true);
  v.setBigUint64(56, checksum(bytes.subarray(0, 56)), true);
  return bytes;
}

/** The header, or what is wrong with it. */
export function decodeSnapshotHeader(bytes: Uint8Array): SnapshotHeader | string {
  if (bytes.length < snapshot_header_size) return `the file is ${bytes.length} bytes, shorter than a header`;
  const v = new DataView(bytes.buffer, bytes.byteOffset, snapshot_header_size);
  if (v.getUint32(0, true) !== snapshot_magic) return "not a snapshot file (no TSNP magic at offset 0)";
  if (v.getUint32(4, true) !== snapshot_version) return `snapshot version ${v.getUint32(4, true)}, this toastyfs reads ${snapshot_version}`;
  if (v.getBigUint64(56, true) !== checksum(bytes.subarray(0, 56))) return "the header (bytes 0..64) does not match its checksum";
  const op = Number(v.getBigUint64(24, true));
  const created_ms = Number(v.getBigUint64(48, true));
  const replica_count = v.getUint8(16);
  if (!Number.isSafeInteger(op) || op < 1 || !Number.isSafeInteger(created_ms) || replica_count < 1)
    return "the header's fields are out of range";
  return {
    cluster: v.getBigUint64(8, true),
    replica_count,
    checkpoint: { op, digest: v.getBigUint64(32, true), checksum: v.getBigUint64(40, true) },
    created_ms,
  };
}

/** The trailer's fields (bytes 0..40) and its SHA-256 (bytes 40..72), or what is wrong. */
export function decodeSnapshotTrailer(bytes: Uint8Array): { trailer: SnapshotTrailer; sha256: Uint8Array } | string {
  assert(bytes.length === snapshot_trailer_size, "snapshot trailer: size");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (v.getUint32(0, true) !== snapshot_trailer_magic)
    return "no trailer at the end of the file (TSNT magic missing): the file is truncated or was not finished";
  const n = (offset: number) => Number(v.getBigUint64(offset, true));
  const trailer = { records: n(8), objects: n(16), object_bytes: n(24), frame_bytes: n(32) };
  if (!Object.values(trailer).every((x) => Number.isSafeInteger(x))) return "the trailer's counts are out of range";
  return { trailer, sha256: bytes.slice(40, 72) };
}

/**
 * Writes a snapshot file: begin (again, if the stream starts over) with the header, a frame per
 * chunk, finish with the trailer, then fdatasync and close. The caller names a temporary path and
 * renames it only after finish.
 */
export class SnapshotWriter {
  private fd: number;
  private offset = 0;
  private hash: Hash = createHash("sha256");

  constructor(readonly path: string) {
    this.fd = fs.openSync(path, "w", 0o600);
  }

  /** Where the next frame's records will sit in the file. */
  get records_offset(): number {
    return this.offset + snapshot_frame_header_size;
  }

  get bytes_written(): number {
    return this.offset;
  }

  /** Starts (over) with this checkpoint: whatever was written is discarded. */
  begin(header: SnapshotHeader): void {
    fs.ftruncateSync(this.fd, 0);
    this.offset = 0;
    this.hash = createHash("sha256");
    this.write(encodeSnapshotHeader(header));
  }

  frame(position: number, records: Uint8Array): void {
    assert(this.offset >= snapshot_header_size && records.length % 8 === 0 && records.length > 0, "snapshot frame: records");
    const head = new Uint8Array(snapshot_frame_header_size);
    const v = new DataView(head.buffer);
    v.setBigUint64(0, BigInt(position), true);
    v.setBigUint64(8, BigInt(records.length), true);
    this.write(head);
    this.write(records);
  }

  /** Writes the trailer, makes the file durable and closes it. */
  finish(t: Omit<SnapshotTrailer, "frame_bytes">): void {
    const fields = new Uint8Array(40);
    const v = new DataView(fields.buffer);
    v.setUint32(0, snapshot_trailer_magic, true);
    v.setBigUint64(8, BigInt(t.records), true);
    v.setBigUint64(16, BigInt(t.objects), true);
    v.setBigUint64(24, BigInt(t.object_bytes), true);
    v.setBigUint64(32, BigInt(this.offset - snapshot_header_size), true);
    this.write(fields);
    const sha = new Uint8Array(this.hash.digest());
    fs.writeSync(this.fd, sha, 0, sha.length, this.offset);
    fs.fdatasyncSync(this.fd);
    this.close();
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  private write(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(this.fd, bytes, done, bytes.length - done, this.offset + done);
    this.hash.update(bytes);
    this.offset += bytes.length;
  }
}

/** A loaded snapshot: its state, whose values and blocks are located in the file
 * (segment snapshot_file_segment, offset in the file). */
export interface SnapshotState {
  store: ObjectStore;
  clients: ClientTable;
  checkpoint: CheckpointMeta;
  records: number;
}

/**
 * Rebuilds a snapshot's state, frame by frame, with the replica's sync receiver: every record must
 * parse and fit where it is, and every value and block match its checksum. Values are not kept:
 * the state records where each sits in the file (the frame's file offset is given with it).
 */
export class SnapshotLoader {
  private readonly receiver: SyncReceiver;
  private frame_bytes: Uint8Array = new Uint8Array(0);
  private frame_offset = 0;

  constructor(readonly checkpoint: CheckpointId) {
    const sink = {
      create: (_size: number, max_op: number): Segment => ({
        id: snapshot_file_segment,
        fd: -1,
        write_offset: 0,
        capacity: Number.MAX_SAFE_INTEGER,
        allocated: 0,
        max_op,
        dirty: false,
        in_flight: false,
      }),
      // The value is a view into the frame: where it sits in the frame is where it sits in the file.
      appendValue: (segment: Segment, value: Uint8Array) => ({
        segment: segment.id,
        offset: this.frame_offset + value.byteOffset - this.frame_bytes.byteOffset,
      }),
      discard: (): void => {},
    };
    this.receiver = new SyncReceiver(sink);
    this.receiver.begin(checkpoint);
  }

  get records(): number {
    return this.receiver.records;
  }

  get objects(): number {
    return this.receiver.objects;
  }

  /** One frame: the records from `position`, found at `file_offset`. What is wrong, or null. */
  frame(position: number, records: Uint8Array, file_offset: number): string | null {
    if (position !== this.receiver.records)
      return `the frame at offset ${file_offset - snapshot_frame_header_size} starts at record ${position}, but ${this.receiver.records} records came before it`;
    this.frame_bytes = records;
    this.frame_offset = file_offset;
    if (this.receiver.apply(records)) return null;
    const r = this.receiver.rejection!;
    return `record ${r.record} at offset ${file_offset + r.offset}: ${r.what}`;
  }

  /** The state, once every frame is in, or what is wrong with it. */
  finish(): SnapshotState | string {
    const records = this.receiver.records;
    const received = this.receiver.finish(1 << 30);
    if (received === null)
      return `the ${records} records do not make a whole state (no anchor, or a chunked object without all its blocks)`;
    const id = this.checkpoint;
    const anchor = received.checkpoint.anchor;
    if (anchor.op !== id.op || anchor.checksum !== id.checksum)
      return `the anchor record is the prepare of op ${anchor.op} (checksum ${hex(anchor.checksum)}), not op ${id.op} (${hex(id.checksum)})`;
    const digest = stateDigest(received.store, received.clients);
    if (digest !== id.digest) return `the state rebuilt from the records has digest ${hex(digest)}, not the checkpoint's ${hex(id.digest)}`;
    return { ...received, records };
  }
}

function hex(n: bigint): string {
  return n.toString(16).padStart(16, "0");
}

export interface SnapshotFile {
  header: SnapshotHeader;
  trailer: SnapshotTrailer;
  state: SnapshotState;
  size: number;
}

/** Error text for a snapshot file that is damaged or not one: what is wrong and where. */
export class SnapshotFileError extends Error {
  override name = "SnapshotFileError";
}

/** Reads and checks a whole snapshot file (toastyfs snapshot verify, and restore before it writes
 * anything): header, every frame and record, the trailer's counts and SHA-256, the digest. */
export function readSnapshotFile(path: string): SnapshotFile {
  const fd = fs.openSync(path, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const read = (offset: number, length: number): Uint8Array => {
      const bytes = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const n = fs.readSync(fd, bytes, done, length - done, offset + done);
        if (n === 0) throw new SnapshotFileError(`the file ends at byte ${offset + done}, inside what starts at offset ${offset}`);
        done += n;
      }
      return bytes;
    };
    const fail = (what: string): never => {
      throw new SnapshotFileError(what);
    };
    const head = read(0, Math.min(size, snapshot_header_size));
    const header = decodeSnapshotHeader(head);
    if (typeof header === "string") return fail(header);
    if (size < snapshot_header_size + snapshot_trailer_size) return fail(`the file is ${size} bytes: truncated (no room for a trailer)`);
    const end = size - snapshot_trailer_size;
    const decoded = decodeSnapshotTrailer(read(end, snapshot_trailer_size));
    if (typeof decoded === "string") return fail(decoded);
    const { trailer, sha256 } = decoded;
    if (trailer.frame_bytes !== end - snapshot_header_size)
      return fail(
        `the trailer says ${trailer.frame_bytes} bytes of records, the file holds ${end - snapshot_header_size}: truncated or extended`,
      );
    const hash = createHash("sha256").update(head);
    const loader = new SnapshotLoader(header.checkpoint);
    let offset = snapshot_header_size;
    while (offset < end) {
      if (end - offset < snapshot_frame_header_size) return fail(`a frame header cut short at offset ${offset}`);
      const frame_head = read(offset, snapshot_frame_header_size);
      const v = new DataView(frame_head.buffer);
      const position = Number(v.getBigUint64(0, true));
      const length = Number(v.getBigUint64(8, true));
      if (length < 8 || length % 8 !== 0 || length > message_size_max || offset + snapshot_frame_header_size + length > end)
        return fail(`the frame at offset ${offset} claims ${length} bytes of records, which do not fit`);
      const records = read(offset + snapshot_frame_header_size, length);
      hash.update(frame_head).update(records);
      const problem = loader.frame(position, records, offset + snapshot_frame_header_size);
      if (problem !== null) return fail(problem);
      offset += snapshot_frame_header_size + length;
    }
    const state = loader.finish();
    if (typeof state === "string") return fail(state);
    const objects = state.store.count;
    const counted = { records: state.records, objects, object_bytes: state.store.bytes };
    for (const [name, value] of Object.entries(counted)) {
      const said = trailer[name as keyof typeof counted];
      if (said !== value) return fail(`the trailer counts ${said} ${name.replace("_", " ")}, the records hold ${value}`);
    }
    hash.update(read(end, 40));
    if (!Buffer.from(hash.digest()).equals(Buffer.from(sha256)))
      return fail("the file's SHA-256 does not match its trailer: bytes changed where no record checksum covers them");
    return { header, trailer, state, size };
  } finally {
    fs.closeSync(fd);
  }
}

/** The bytes of a value or block of a loaded snapshot (located in the file by SnapshotLoader). */
export function readStored(fd: number, stored: { segment: number; offset: number; size: number; checksum: bigint }): Uint8Array {
  assert(stored.segment === snapshot_file_segment, "readStored: not in a snapshot file");
  const bytes = new Uint8Array(stored.size);
  let done = 0;
  while (done < stored.size) {
    const n = fs.readSync(fd, bytes, done, stored.size - done, stored.offset + done);
    if (n === 0) throw new SnapshotFileError(`the file ends inside the value at offset ${stored.offset}`);
    done += n;
  }
  if (checksum(bytes) !== stored.checksum)
    throw new SnapshotFileError(`the value at offset ${stored.offset} changed since it was verified`);
  return bytes;
}
