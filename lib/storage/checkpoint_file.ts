/**
 * Checkpoint files (docs/STORAGE.md §7). A checkpoint is the replicated state after executing op
 * (objects, open uploads, blocks, their counters) and the client table, plus the anchor header. It
 * is written as either
 *
 *   - a base: every object, upload and block, or
 *   - a delta: only those set, moved or removed since the previous checkpoint, applied on top of
 *     that checkpoint's file (its parent), which is a base or another delta.
 *
 * so a checkpoint costs what changed, not what is stored; FileStorage writes a new base once the
 * deltas since the last one outweigh it, which bounds what a restart reads to about twice the
 * index. Each file is written to a temporary name, made durable, renamed, and the directory made
 * durable; it takes effect only when a superblock names it.
 *
 *   0   u64 checksum of bytes 8..end
 *   8   u32 magic "TCKP", 12 u32 version (3; 2 when it represents the state exactly, see needsVersion3)
 *   16  u64 op, 24 u64 digest, 32 u64 anchor checksum
 *   40  u64 revision, 48 u32 sessions, 52 u32 segments, 56 u64 records
 *   64  u64 previous checkpoint op, 72 u64 its digest, 80 u64 its anchor checksum
 *   88  u8 kind (0 base, 1 delta), 89..96 reserved
 *   96  u64 parent op (a delta's parent file; a base: its own op), 104 u64 base op
 *   112 u64 block counter, 120 u64 upload counter (version 2: reserved, zero)
 *   128 anchor header (128 bytes)
 *   256 ids of the segments holding the values and blocks of the whole state at op (u32 each),
 *       padded to 8: a restarted replica reads only this far to keep retaining an older checkpoint
 *   then the whole client table: sessions (records.ts)
 *   then records, each a u8 tag padded to 8 (version 2: in deltas only, tags 1 and 2), then:
 *   1 object set (records.ts writeObjectRecord), 2 object removed (u16 key size, u16 reserved,
 *   u32 reserved, key, pad to 8), 3 upload set (writeUploadRecord), 4 upload removed (u64 id),
 *   5 block set (writeBlockRecord), 6 block removed (u64 id). A base holds only tags 1, 3, 5.
 */
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import { pad8 } from "../util/bytes.ts";
import { decodeHeader, writeHeader } from "../net/codec.ts";
import { header_size } from "../constants.ts";
import type { ObjectEntry, ObjectStore, StoreChanges } from "../store/object_store.ts";
import type { Block, Upload } from "../store/uploads.ts";
import { ClientTable, type ClientSession } from "../vsr/client_table.ts";
import type { CheckpointId, CheckpointMeta } from "../vsr/storage.ts";
import {
  Reader,
  Writer,
  readBlockRecord,
  readKey,
  readObjectMeta,
  readObjectRecord,
  readSession,
  readUploadRecord,
  writeBlockRecord,
  writeObjectRecord,
  writeSession,
  writeUploadRecord,
} from "./records.ts";
import { restoreStore } from "./restore_store.ts";

const checkpoint_magic = 0x504b4354; // "TCKP"
const checkpoint_version = 3;
/** Files of version 2 (objects inline only, untagged base records) are still read. */
const checkpoint_version_old = 2;
const fixed_size = 128;
/** Record tags: odd ones set, even ones remove (a base holds only odd ones). */
enum Tag {
  object_set = 1,
  object_removed,
  upload_set,
  upload_removed,
  block_set,
  block_removed,
}

export type CheckpointKind = "base" | "delta";

export function checkpointPath(op: number): string {
  assert(Number.isSafeInteger(op) && op >= 0, "checkpointPath: op");
  return `checkpoint/${op.toString().padStart(16, "0")}.ckpt`;
}

/** Where a checkpoint file sits in its chain. */
export interface ChainLink {
  kind: CheckpointKind;
  /** The file this delta applies to (a base: its own op). */
  parent_op: number;
  /** The base the chain starts from. */
  base_op: number;
}

export interface CheckpointContents {
  checkpoint: CheckpointMeta;
  link: ChainLink;
  revision: number;
  /** Segments holding the values of the whole state at this checkpoint. */
  segments: Set<number>;
  sessions: [bigint, ClientSession][];
  /** base: every object, upload and block; delta: the changes (null: removed). */
  records: StateRecords;
}

/** What a checkpoint's records are read from: a Map (a delta's changes, a decoded file), or for a
 * base the live store itself (baseRecords), so a base of 100,000 objects is not first copied into
 * a Map (that copy was two thirds of the 80 ms a base took to encode). */
export interface Records<K, V> extends Iterable<[K, V | null]> {
  readonly size: number;
}

/** The records of a checkpoint file and the counters at its op. */
export interface StateRecords {
  objects: Records<string, ObjectEntry>;
  uploads: Records<number, Upload>;
  blocks: Records<number, Block>;
  upload_counter: number;
  block_counter: number;
}

/** The store's whole state as base records, without a copy of its entries. Valid only while the
 * store is not changed (writeCheckpoint encodes synchronously). */
export function baseRecords(store: ObjectStore): StateRecords {
  assert(store.count >= 0, "baseRecords: count");
  const large = store.large;
  const uploads = large.allUploads();
  return {
    objects: { size: store.count, [Symbol.iterator]: () => store.all() },
    uploads: { size: uploads.length, [Symbol.iterator]: () => uploads.map((u): [number, Upload] => [u.id, u])[Symbol.iterator]() },
    blocks: {
      size: large.block_count,
      [Symbol.iterator]: () => [...large.allBlocks()].map((b): [number, Block] => [b.id, b])[Symbol.iterator](),
    },
    upload_counter: large.upload_counter,
    block_counter: large.block_counter,
  };
}

/** A delta's records: the changes taken from the store (ObjectStore.takeChanges), its counters. */
export function deltaRecords(store: ObjectStore, changes: StoreChanges): StateRecords {
  const large = store.large;
  return { ...changes, upload_counter: large.upload_counter, block_counter: large.block_counter };
}

export function encodeCheckpoint(c: CheckpointContents): Uint8Array {
  const { id, anchor, previous } = c.checkpoint;
  assert(anchor.op === id.op && anchor.checksum === id.checksum, "encodeCheckpoint: the anchor is not the checkpoint's prepare");
  assert(c.link.kind === "base" ? c.link.parent_op === id.op : c.link.parent_op < id.op, "encodeCheckpoint: chain link");
  const records = c.records.objects.size + c.records.uploads.size + c.records.blocks.size;
  const w = new Writer(fixed_size + header_size + 4 * c.segments.size + 64 * (records + c.sessions.length + 1));
  w.offset = fixed_size;
  w.reserve(header_size);
  writeHeader(anchor, w.bytes, w.offset);
  w.offset += header_size;
  const segment_ids = [...c.segments].sort((a, b) => a - b);
  for (const segment of segment_ids) w.u32(segment);
  w.align();
  for (const [client, session] of c.sessions) writeSession(w, client, session);
  const delta = c.link.kind === "delta";
  const r = c.records;
  const version = needsVersion3(r) ? checkpoint_version : checkpoint_version_old;
  const tag = (t: number): void => {
    assert(delta || t % 2 === 1, "a base holds no removals");
    if (!delta && version === checkpoint_version_old) return; // version 2 bases are untagged
    w.u8(t);
    w.align();
  };
  let record_count = 0;
  for (const [key, entry] of r.objects) {
    record_count += 1;
    tag(entry === null ? Tag.object_removed : Tag.object_set);
    if (entry !== null) {
      writeObjectRecord(w, key, entry, true);
      continue;
    }
    w.u16(key.length);
    w.u16(0);
    w.u32(0);
    w.reserve(key.length);
    for (let i = 0; i < key.length; i++) w.bytes[w.offset + i] = key.charCodeAt(i);
    w.offset += key.length;
    w.align();
  }
  for (const [id, upload] of r.uploads) {
    record_count += 1;
    tag(upload === null ? Tag.upload_removed : Tag.upload_set);
    if (upload === null) w.u64(id);
    else writeUploadRecord(w, upload);
  }
  for (const [id, block] of r.blocks) {
    record_count += 1;
    tag(block === null ? Tag.block_removed : Tag.block_set);
    if (block === null) w.u64(id);
    else writeBlockRecord(w, block, true);
  }
  const announced = r.objects.size + r.uploads.size + r.blocks.size;
  assert(record_count === announced, () => `checkpoint records: ${record_count} iterated, ${announced} announced`);
  const bytes = w.finish();
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  v.setUint32(8, checkpoint_magic, true);
  v.setUint32(12, version, true);
  v.setBigUint64(16, BigInt(id.op), true);
  v.setBigUint64(24, id.digest, true);
  v.setBigUint64(32, id.checksum, true);
  v.setBigUint64(40, BigInt(c.revision), true);
  v.setUint32(48, c.sessions.length, true);
  v.setUint32(52, segment_ids.length, true);
  v.setBigUint64(56, BigInt(records), true);
  v.setBigUint64(64, BigInt(previous.op), true);
  v.setBigUint64(72, previous.digest, true);
  v.setBigUint64(80, previous.checksum, true);
  v.setUint8(88, c.link.kind === "base" ? 0 : 1);
  v.setBigUint64(96, BigInt(c.link.parent_op), true);
  v.setBigUint64(104, BigInt(c.link.base_op), true);
  v.setBigUint64(112, BigInt(c.records.block_counter), true);
  v.setBigUint64(120, BigInt(c.records.upload_counter), true);
  v.setBigUint64(0, checksum(bytes.subarray(8)), true);
  return bytes;
}

/**
 * A lower bound on the bytes encodeCheckpoint writes for a delta of these records (every field
 * counted at its smallest: a tag and an object record with its key and location per set, a tag,
 * the key and its size per removal, a tag and an id per upload or block). CheckpointStore.write
 * skips encoding a delta that could not fit beside the base it would be kept instead of (its
 * encoding would be thrown away): the bytes written are the same, the wasted encoding is not.
 */
export function deltaBytesAtLeast(records: StateRecords, sessions: number): number {
  let bytes = fixed_size + header_size + sessions * 56;
  for (const [key, entry] of records.objects) bytes += (entry === null ? 16 : 64) + pad8(key.length);
  bytes += 16 * (records.uploads.size + records.blocks.size);
  return bytes;
}

/**
 * Whether a file needs version 3: a state that never had an upload (both counters 0, so no upload
 * or block) and whose records are all inline objects without metadata is written as version 2,
 * byte for byte as before issue 14, as the sync stream keeps its old records for such a state. Old
 * data directories then keep their files and their sizes (which the rebase rule and the simulator's
 * disk see), so nothing changes for a cluster that does not use large objects. A base scans its
 * entries once; the encoding after it costs far more.
 */
function needsVersion3(r: StateRecords): boolean {
  if (r.upload_counter !== 0 || r.block_counter !== 0 || r.uploads.size > 0 || r.blocks.size > 0) return true;
  for (const [, entry] of r.objects) if (entry !== null && (entry.chunks !== undefined || entry.meta !== undefined)) return true;
  return false;
}

/** More segments than this (a segment list of 64 MiB) is a damaged count. */
const segment_count_max = 1 << 24;

/** Bytes a summary needs (the fixed part and the anchor), before the segment list. */
export const checkpoint_summary_prefix_size = fixed_size + header_size;

export interface CheckpointSummary {
  checkpoint: CheckpointMeta;
  link: ChainLink;
  segments: Set<number>;
  /** Bytes of the segment list (read this many more after the prefix for `segments`). */
  segments_size: number;
  version: number;
}

/** The id, chain link and value segments of a checkpoint, from the start of its file (the
 * file's checksum is verified only when it is read whole). null if it does not parse. */
export function decodeCheckpointSummary(bytes: Uint8Array): CheckpointSummary | null {
  assert(checkpoint_summary_prefix_size <= fixed_size + header_size, "checkpoint summary prefix");
  if (bytes.length < checkpoint_summary_prefix_size) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const version = v.getUint32(12, true);
  if (v.getUint32(8, true) !== checkpoint_magic || (version !== checkpoint_version && version !== checkpoint_version_old)) return null;
  const id: CheckpointId = { op: Number(v.getBigUint64(16, true)), digest: v.getBigUint64(24, true), checksum: v.getBigUint64(32, true) };
  const previous: CheckpointId = {
    op: Number(v.getBigUint64(64, true)),
    digest: v.getBigUint64(72, true),
    checksum: v.getBigUint64(80, true),
  };
  const kind_byte = v.getUint8(88);
  if (kind_byte > 1) return null;
  const link: ChainLink = {
    kind: kind_byte === 0 ? "base" : "delta",
    parent_op: Number(v.getBigUint64(96, true)),
    base_op: Number(v.getBigUint64(104, true)),
  };
  if (link.kind === "base" ? link.parent_op !== id.op || link.base_op !== id.op : link.parent_op >= id.op || link.base_op > link.parent_op)
    return null;
  const anchor = decodeHeader(bytes, fixed_size);
  if (anchor === null || anchor.op !== id.op || anchor.checksum !== id.checksum) return null;
  const count = v.getUint32(52, true);
  // The prefix is not covered by the file's checksum until the file is read whole: a damaged count
  // must not make the reader allocate gigabytes (or throw doing so).
  if (count > segment_count_max) return null;
  const segments_size = count * 4;
  const segments = new Set<number>();
  if (bytes.length >= checkpoint_summary_prefix_size + segments_size) {
    for (let i = 0; i < count; i++) segments.add(v.getUint32(checkpoint_summary_prefix_size + i * 4, true));
  }
  return { checkpoint: { id, anchor, previous }, link, segments, segments_size, version };
}

/** Decodes and verifies one checkpoint file; null if it is damaged. */
export function decodeCheckpoint(bytes: Uint8Array, clients_max: number): CheckpointContents | null {
  assert(clients_max > 0, "decodeCheckpoint: clients_max");
  const summary = decodeCheckpointSummary(bytes);
  if (summary === null) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (checksum(bytes.subarray(8)) !== v.getBigUint64(0, true)) return null;
  const revision = Number(v.getBigUint64(40, true));
  const session_count = v.getUint32(48, true);
  const record_count = Number(v.getBigUint64(56, true));
  if (session_count > clients_max || !Number.isSafeInteger(record_count)) return null;
  const r = new Reader(bytes);
  r.offset = checkpoint_summary_prefix_size + summary.segments_size;
  r.align();
  const sessions: [bigint, ClientSession][] = [];
  for (let i = 0; i < session_count; i++) {
    const session = readSession(r);
    if (session === null) return null;
    sessions.push(session);
  }
  const old = summary.version === checkpoint_version_old;
  const records: DecodedRecords = {
    objects: new Map(),
    uploads: new Map(),
    blocks: new Map(),
    upload_counter: old ? 0 : Number(v.getBigUint64(120, true)),
    block_counter: old ? 0 : Number(v.getBigUint64(112, true)),
  };
  if (!Number.isSafeInteger(records.upload_counter) || !Number.isSafeInteger(records.block_counter)) return null;
  const delta = summary.link.kind === "delta";
  for (let i = 0; i < record_count; i++) {
    let tag = Tag.object_set;
    if (delta || !old) {
      tag = r.u8();
      r.align();
      // A base holds no removals; a version 2 file, only objects.
      if (tag < Tag.object_set || tag > Tag.block_removed || (!delta && tag % 2 === 0) || (old && tag > Tag.object_removed)) return null;
    }
    if (!readRecord(r, tag, old, records)) return null;
  }
  if (!r.done) return null;
  assert(sessions.length === session_count, "decodeCheckpoint: counts");
  return { checkpoint: summary.checkpoint, link: summary.link, revision, segments: summary.segments, sessions, records };
}

/** A decoded file's records. */
interface DecodedRecords extends StateRecords {
  objects: Map<string, ObjectEntry | null>;
  uploads: Map<number, Upload | null>;
  blocks: Map<number, Block | null>;
}

/** Reads one record of a tag into records; false if it is malformed. */
function readRecord(r: Reader, tag: number, old: boolean, records: DecodedRecords): boolean {
  if (tag === Tag.object_removed) {
    const key_size = r.u16();
    r.u16();
    r.u32();
    const key = readKey(r, key_size);
    if (key === null) return false;
    records.objects.set(key, null);
  } else if (tag === Tag.object_set && old) {
    const meta = readObjectMeta(r);
    const segment = r.u32();
    r.u32();
    const offset = r.u64();
    if (meta === null || r.bad) return false;
    records.objects.set(meta.key, {
      version: meta.version,
      timestamp: meta.timestamp,
      size: meta.size,
      checksum: meta.checksum,
      segment,
      offset,
    });
  } else if (tag === Tag.object_set) {
    const object = readObjectRecord(r, true);
    if (object === null) return false;
    records.objects.set(object.key, object.entry);
  } else if (tag === Tag.upload_set) {
    const upload = readUploadRecord(r);
    if (upload === null) return false;
    records.uploads.set(upload.id, upload);
  } else if (tag === Tag.block_set) {
    const block = readBlockRecord(r);
    if (block === null) return false;
    records.blocks.set(block.id, block);
  } else {
    const id = r.u64();
    if (r.bad) return false;
    if (tag === Tag.upload_removed) records.uploads.set(id, null);
    else records.blocks.set(id, null);
  }
  return !r.bad;
}

/** The state a chain of files describes, base first; null if its records do not make a state
 * (an upload's block without its upload, a block owned twice, ...). */
export function applyChain(chain: CheckpointContents[], clients_max: number): { store: ObjectStore; clients: ClientTable } | null {
  if (chain.length === 0 || chain[0]!.link.kind !== "base") return null;
  assert(
    chain.every((f, i) => i === 0 || f.link.parent_op === chain[i - 1]!.checkpoint.id.op),
    "applyChain: files out of order",
  );
  // The newest record of each key and id wins; the state is then built once, whole (blocks name
  // their owners, so it cannot be built record by record in file order).
  const objects = new Map<string, ObjectEntry>();
  const uploads = new Map<number, Upload>();
  const blocks = new Map<number, Block>();
  for (const file of chain) {
    const { records } = file;
    overlay(objects, records.objects);
    overlay(uploads, records.uploads);
    overlay(blocks, records.blocks);
  }
  const last = chain[chain.length - 1]!;
  const store = restoreStore({
    objects,
    uploads: uploads.values(),
    blocks: blocks.values(),
    upload_counter: last.records.upload_counter,
    block_counter: last.records.block_counter,
  });
  if (store === null || last.revision < store.revision) return null;
  store.revision = last.revision;
  const clients = new ClientTable(clients_max);
  for (const [client, session] of last.sessions) {
    if (clients.get(client) !== undefined) return null;
    clients.restore(client, session);
  }
  return { store, clients };
}

/** Applies a file's records over the state so far. A record set again moves to the end, so the
 * state is then built in the order its records were last written, as applying them one by one would
 * (the order of keys within a segment, which compaction moves in, stays what it was). */
function overlay<K, V>(into: Map<K, V>, records: Records<K, V>): void {
  for (const [k, value] of records) {
    into.delete(k);
    if (value !== null) into.set(k, value);
  }
}

/** A base of the whole state (tests, and the first checkpoint of a store). */
export function baseContents(checkpoint: CheckpointMeta, store: ObjectStore, clients: ClientTable): CheckpointContents {
  assert(checkpoint.anchor.op === checkpoint.id.op, "baseContents: the anchor is not the checkpoint's prepare");
  return {
    checkpoint,
    link: { kind: "base", parent_op: checkpoint.id.op, base_op: checkpoint.id.op },
    revision: store.revision,
    segments: store.segments(),
    sessions: clients.entries(),
    records: baseRecords(store),
  };
}
