/**
 * Checkpoint files (docs/STORAGE.md §Checkpoints). A checkpoint is the namespace index and the
 * client table after executing op, plus the anchor header. It is written as either
 *
 *   - a base: every object, or
 *   - a delta: only the objects set, moved or removed since the previous checkpoint, applied on
 *     top of that checkpoint's file (its parent), which is a base or another delta.
 *
 * so a checkpoint costs what changed, not what is stored; FileStorage writes a new base once the
 * deltas since the last one outweigh it, which bounds what a restart reads to about twice the
 * index. Each file is written to a temporary name, made durable, renamed, and the directory made
 * durable; it takes effect only when a superblock names it.
 *
 *   0   u64 checksum of bytes 8..end
 *   8   u32 magic "TCKP", 12 u32 version (2)
 *   16  u64 op, 24 u64 digest, 32 u64 anchor checksum
 *   40  u64 revision, 48 u32 sessions, 52 u32 segments, 56 u64 records
 *   64  u64 previous checkpoint op, 72 u64 its digest, 80 u64 its anchor checksum
 *   88  u8 kind (0 base, 1 delta), 89..96 reserved
 *   96  u64 parent op (a delta's parent file; a base: its own op), 104 u64 base op, 112..128 reserved
 *   128 anchor header (128 bytes)
 *   256 ids of the segments holding the values of the whole state at op (u32 each), padded to 8:
 *       a restarted replica reads only this far to keep retaining an older checkpoint
 *   then the whole client table: sessions (records.ts)
 *   then records: a base holds object meta (records.ts) + u32 segment, u32 reserved, u64 offset
 *   per object; a delta holds per change a u8 tag (1 set, 2 removed) padded to 8, then for a set
 *   the same object record, for a removal u16 key size, u16 reserved, u32 reserved, key, pad to 8.
 */
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import { decodeHeader, writeHeader } from "../net/codec.ts";
import { header_size } from "../constants.ts";
import { ObjectStore, type ObjectEntry } from "../store/object_store.ts";
import { ClientTable, type ClientSession } from "../vsr/client_table.ts";
import type { CheckpointId, CheckpointMeta } from "../vsr/storage.ts";
import { Reader, Writer, readKey, readObjectMeta, readSession, writeObjectMeta, writeSession } from "./records.ts";

const checkpoint_magic = 0x504b4354; // "TCKP"
const checkpoint_version = 2;
const fixed_size = 128;
const tag_set = 1;
const tag_removed = 2;

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
  /** base: every object; delta: the changes (null: removed). */
  records: CheckpointRecords;
}

/** What a checkpoint's records are read from: a Map (a delta's changes, a decoded file), or for a
 * base the live store itself (storeRecords), so a base of 100,000 objects is not first copied into
 * a Map (that copy was two thirds of the 80 ms a base took to encode). */
export interface CheckpointRecords extends Iterable<[string, ObjectEntry | null]> {
  readonly size: number;
}

/** The store's entries in key order, as checkpoint records, without a copy. Valid only while the
 * store is not changed (writeCheckpoint encodes synchronously). */
export function storeRecords(store: ObjectStore): CheckpointRecords {
  assert(store.count >= 0, "storeRecords: count");
  return { size: store.count, [Symbol.iterator]: () => store.all() };
}

export function encodeCheckpoint(c: CheckpointContents): Uint8Array {
  const { id, anchor, previous } = c.checkpoint;
  assert(anchor.op === id.op && anchor.checksum === id.checksum, "encodeCheckpoint: the anchor is not the checkpoint's prepare");
  assert(c.link.kind === "base" ? c.link.parent_op === id.op : c.link.parent_op < id.op, "encodeCheckpoint: chain link");
  const w = new Writer(fixed_size + header_size + 4 * c.segments.size + 64 * (c.records.size + c.sessions.length + 1));
  w.offset = fixed_size;
  w.reserve(header_size);
  writeHeader(anchor, w.bytes, w.offset);
  w.offset += header_size;
  const segment_ids = [...c.segments].sort((a, b) => a - b);
  for (const segment of segment_ids) w.u32(segment);
  w.align();
  for (const [client, session] of c.sessions) writeSession(w, client, session);
  let record_count = 0;
  for (const [key, entry] of c.records) {
    record_count += 1;
    if (c.link.kind === "delta") {
      w.u8(entry === null ? tag_removed : tag_set);
      w.align();
    }
    if (entry === null) {
      w.u16(key.length);
      w.u16(0);
      w.u32(0);
      w.reserve(key.length);
      for (let i = 0; i < key.length; i++) w.bytes[w.offset + i] = key.charCodeAt(i);
      w.offset += key.length;
      w.align();
      continue;
    }
    writeObjectMeta(w, key, entry);
    w.u32(entry.segment);
    w.u32(0);
    w.u64(entry.offset);
  }
  assert(record_count === c.records.size, () => `checkpoint records: ${record_count} iterated, ${c.records.size} announced`);
  const bytes = w.finish();
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  v.setUint32(8, checkpoint_magic, true);
  v.setUint32(12, checkpoint_version, true);
  v.setBigUint64(16, BigInt(id.op), true);
  v.setBigUint64(24, id.digest, true);
  v.setBigUint64(32, id.checksum, true);
  v.setBigUint64(40, BigInt(c.revision), true);
  v.setUint32(48, c.sessions.length, true);
  v.setUint32(52, segment_ids.length, true);
  v.setBigUint64(56, BigInt(c.records.size), true);
  v.setBigUint64(64, BigInt(previous.op), true);
  v.setBigUint64(72, previous.digest, true);
  v.setBigUint64(80, previous.checksum, true);
  v.setUint8(88, c.link.kind === "base" ? 0 : 1);
  v.setBigUint64(96, BigInt(c.link.parent_op), true);
  v.setBigUint64(104, BigInt(c.link.base_op), true);
  v.setBigUint64(0, checksum(bytes.subarray(8)), true);
  return bytes;
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
}

/** The id, chain link and value segments of a checkpoint, from the start of its file (the
 * file's checksum is verified only when it is read whole). null if it does not parse. */
export function decodeCheckpointSummary(bytes: Uint8Array): CheckpointSummary | null {
  assert(checkpoint_summary_prefix_size <= fixed_size + header_size, "checkpoint summary prefix");
  if (bytes.length < checkpoint_summary_prefix_size) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (v.getUint32(8, true) !== checkpoint_magic || v.getUint32(12, true) !== checkpoint_version) return null;
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
  return { checkpoint: { id, anchor, previous }, link, segments, segments_size };
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
  const records = new Map<string, ObjectEntry | null>();
  const delta = summary.link.kind === "delta";
  for (let i = 0; i < record_count; i++) {
    let tag = tag_set;
    if (delta) {
      tag = r.u8();
      r.align();
      if (tag !== tag_set && tag !== tag_removed) return null;
    }
    if (tag === tag_removed) {
      const key_size = r.u16();
      r.u16();
      r.u32();
      const key = readKey(r, key_size);
      if (key === null) return null;
      records.set(key, null);
      continue;
    }
    const meta = readObjectMeta(r);
    const segment = r.u32();
    r.u32();
    const offset = r.u64();
    if (meta === null || r.bad) return null;
    records.set(meta.key, { version: meta.version, timestamp: meta.timestamp, size: meta.size, checksum: meta.checksum, segment, offset });
  }
  if (!r.done) return null;
  assert(sessions.length === session_count && records.size <= record_count, "decodeCheckpoint: counts");
  return { checkpoint: summary.checkpoint, link: summary.link, revision, segments: summary.segments, sessions, records };
}

/** The state a chain of files describes, base first. */
export function applyChain(chain: CheckpointContents[], clients_max: number): { store: ObjectStore; clients: ClientTable } | null {
  if (chain.length === 0 || chain[0]!.link.kind !== "base") return null;
  const store = new ObjectStore();
  for (const file of chain) {
    for (const [key, entry] of file.records) {
      if (entry === null) store.remove(key);
      else store.set(key, entry);
    }
  }
  const last = chain[chain.length - 1]!;
  assert(
    chain.every((f, i) => i === 0 || f.link.parent_op === chain[i - 1]!.checkpoint.id.op),
    "applyChain: files out of order",
  );
  store.revision = last.revision;
  store.takeChanges(); // the loaded state is the checkpoint itself: nothing changed since
  const clients = new ClientTable(clients_max);
  for (const [client, session] of last.sessions) {
    if (clients.get(client) !== undefined) return null;
    clients.restore(client, session);
  }
  return { store, clients };
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
    records: storeRecords(store),
  };
}
