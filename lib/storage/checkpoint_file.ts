/**
 * A checkpoint file (docs/STORAGE.md §Checkpoint): the namespace index and client table after
 * executing op, plus the anchor header. Written to a temporary name, made durable, renamed, and
 * the directory made durable; it takes effect only when a superblock names it.
 *
 *   0  u64 checksum of bytes 8..end
 *   8  u32 magic "TCKP", 12 u32 version, 16 u64 op, 24 u64 digest, 32 u64 anchor checksum,
 *   40 u64 revision, 48 u32 sessions, 52 u32 segments, 56 u64 objects,
 *   64 u64 previous checkpoint op, 72 u64 its digest, 80 u64 its anchor checksum, 88 reserved
 *   96 anchor header (128 bytes)
 *   224 the ids of the segments the objects' values live in (u32 each), zero-padded to 8 bytes:
 *       a restarted replica reads only this far to keep retaining an older checkpoint
 *   then sessions (records.ts), then objects: object meta (records.ts) followed by
 *   u32 segment, u32 reserved, u64 offset.
 */
import { checksum } from "../util/checksum.ts";
import { decodeHeader, writeHeader } from "../net/codec.ts";
import { header_size } from "../constants.ts";
import { ObjectStore } from "../store/object_store.ts";
import { ClientTable } from "../vsr/client_table.ts";
import type { CheckpointId, CheckpointMeta } from "../vsr/storage.ts";
import { Reader, Writer, readObjectMeta, readSession, writeObjectMeta, writeSession } from "./records.ts";

const checkpoint_magic = 0x504b4354; // "TCKP"
const checkpoint_version = 1;
const fixed_size = 96;

export function checkpointPath(op: number): string {
  return `checkpoint/${op.toString().padStart(16, "0")}.ckpt`;
}

export function encodeCheckpoint(checkpoint: CheckpointMeta, store: ObjectStore, clients: ClientTable, segments: Set<number> = valueSegments(store)): Uint8Array {
  const { id, anchor, previous } = checkpoint;
  const w = new Writer(fixed_size + header_size + 4 * segments.size + 64 * (store.count + clients.size + 1));
  w.offset = fixed_size;
  w.reserve(header_size);
  writeHeader(anchor, w.bytes, w.offset);
  w.offset += header_size;
  const segment_ids = [...segments].sort((a, b) => a - b);
  for (const segment of segment_ids) w.u32(segment);
  w.align();
  const sessions = clients.entries();
  for (const [client, session] of sessions) writeSession(w, client, session);
  for (const [key, entry] of store.all()) {
    writeObjectMeta(w, key, entry);
    w.u32(entry.segment);
    w.u32(0);
    w.u64(entry.offset);
  }
  const bytes = w.finish();
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  v.setUint32(8, checkpoint_magic, true);
  v.setUint32(12, checkpoint_version, true);
  v.setBigUint64(16, BigInt(id.op), true);
  v.setBigUint64(24, id.digest, true);
  v.setBigUint64(32, id.checksum, true);
  v.setBigUint64(40, BigInt(store.revision), true);
  v.setUint32(48, sessions.length, true);
  v.setUint32(52, segment_ids.length, true);
  v.setBigUint64(56, BigInt(store.count), true);
  v.setBigUint64(64, BigInt(previous.op), true);
  v.setBigUint64(72, previous.digest, true);
  v.setBigUint64(80, previous.checksum, true);
  v.setBigUint64(0, checksum(bytes.subarray(8)), true);
  return bytes;
}

/** The segments an object store's values live in. */
export function valueSegments(store: ObjectStore): Set<number> {
  const segments = new Set<number>();
  for (const [, entry] of store.all()) segments.add(entry.segment);
  return segments;
}

/** Bytes a summary needs (the fixed part and the anchor), before the segment list. */
export const checkpoint_summary_prefix_size = fixed_size + header_size;

/** The id, predecessor and value segments of a checkpoint, from the start of its file (the
 * file's checksum is verified only when it is read whole). null if it does not parse.
 * `bytes` must hold at least checkpoint_summary_prefix_size bytes plus 4 per segment. */
export function decodeCheckpointSummary(bytes: Uint8Array): { checkpoint: CheckpointMeta; segments: Set<number>; segments_size: number } | null {
  if (bytes.length < fixed_size + header_size) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (v.getUint32(8, true) !== checkpoint_magic || v.getUint32(12, true) !== checkpoint_version) return null;
  const id: CheckpointId = { op: Number(v.getBigUint64(16, true)), digest: v.getBigUint64(24, true), checksum: v.getBigUint64(32, true) };
  const previous: CheckpointId = { op: Number(v.getBigUint64(64, true)), digest: v.getBigUint64(72, true), checksum: v.getBigUint64(80, true) };
  const anchor = decodeHeader(bytes, fixed_size);
  if (anchor === null || anchor.op !== id.op || anchor.checksum !== id.checksum) return null;
  const count = v.getUint32(52, true);
  const segments_size = count * 4;
  if (bytes.length < fixed_size + header_size + segments_size) return { checkpoint: { id, anchor, previous }, segments: new Set(), segments_size };
  const segments = new Set<number>();
  for (let i = 0; i < count; i++) segments.add(v.getUint32(fixed_size + header_size + i * 4, true));
  return { checkpoint: { id, anchor, previous }, segments, segments_size };
}

export interface DecodedCheckpoint {
  checkpoint: CheckpointMeta;
  store: ObjectStore;
  clients: ClientTable;
}

/** Decodes and verifies a checkpoint file; null if it is damaged. */
export function decodeCheckpoint(bytes: Uint8Array, clients_max: number): DecodedCheckpoint | null {
  if (bytes.length < fixed_size + header_size) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (v.getUint32(8, true) !== checkpoint_magic || v.getUint32(12, true) !== checkpoint_version) return null;
  if (checksum(bytes.subarray(8)) !== v.getBigUint64(0, true)) return null;
  const id: CheckpointId = { op: Number(v.getBigUint64(16, true)), digest: v.getBigUint64(24, true), checksum: v.getBigUint64(32, true) };
  const revision = Number(v.getBigUint64(40, true));
  const session_count = v.getUint32(48, true);
  const segment_count = v.getUint32(52, true);
  const object_count = Number(v.getBigUint64(56, true));
  const previous: CheckpointId = { op: Number(v.getBigUint64(64, true)), digest: v.getBigUint64(72, true), checksum: v.getBigUint64(80, true) };
  const anchor = decodeHeader(bytes, fixed_size);
  if (anchor === null || anchor.op !== id.op || anchor.checksum !== id.checksum) return null;
  if (session_count > clients_max) return null;
  const r = new Reader(bytes);
  r.offset = fixed_size + header_size;
  for (let i = 0; i < segment_count; i++) r.u32();
  r.align();
  const clients = new ClientTable(clients_max);
  for (let i = 0; i < session_count; i++) {
    const session = readSession(r);
    if (session === null) return null;
    clients.restore(session[0], session[1]);
  }
  const store = new ObjectStore();
  for (let i = 0; i < object_count; i++) {
    const meta = readObjectMeta(r);
    const segment = r.u32();
    r.u32();
    const offset = r.u64();
    if (meta === null || r.bad) return null;
    store.set(meta.key, { version: meta.version, timestamp: meta.timestamp, size: meta.size, checksum: meta.checksum, segment, offset });
  }
  if (!r.done) return null;
  store.revision = revision;
  return { checkpoint: { id, anchor, previous }, store, clients };
}
