/**
 * The state-sync stream (docs/STORAGE.md §8): a checkpoint sent as records, the anchor first, then
 * the client sessions, then the objects in key order with their values (or, chunked, their blocks
 * as the records after them), then the open uploads in id order, each followed by its pending
 * blocks; a position is the index of a record. SyncSource encodes chunks of a retained checkpoint;
 * SyncReceiver decodes them on the replica that syncs, writing values and blocks into segments of
 * their own.
 */
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import { decodeHeader, writeHeader, type Header } from "../net/codec.ts";
import { block_size_max_ceiling_bytes, header_size } from "../constants.ts";
import type { ObjectEntry, ObjectStore, ValueLocation } from "../store/object_store.ts";
import type { Block, Upload } from "../store/uploads.ts";
import { ClientTable, type ClientSession } from "../vsr/client_table.ts";
import type { CheckpointId, CheckpointMeta, StoredBytes, SyncChunk } from "../vsr/storage.ts";
import {
  Reader,
  Writer,
  block_record_size,
  readBlockRecord,
  readObjectMeta,
  readObjectRecord,
  readSession,
  readUploadRecord,
  upload_record_fixed_size,
  writeBlockRecord,
  writeObjectMeta,
  writeObjectRecord,
  writeSession,
  writeUploadRecord,
} from "./records.ts";
import { restoreStore } from "./restore_store.ts";
import type { LoadedCheckpoint } from "./checkpoint_store.ts";
import type { Segment, SegmentFiles } from "./segments.ts";

/** Bytes of an object record besides its key and value: type, meta and padding. */
const sync_object_overhead = 8 + 40 + 16;
/** Bytes of a block record besides its data: type, the record and padding. */
const sync_block_overhead = 8 + block_record_size + 8;
/** Record types (docs/STORAGE.md §8). */
enum Type {
  anchor = 1,
  session,
  object,
  anchor_v2,
  object_v2,
  block,
  upload,
}

/** Reads stored bytes (a value or a block), checksum-verified; null if damaged or unreadable. */
export type StoredReader = (stored: StoredBytes) => Uint8Array | null;

/** A decoded retained checkpoint, cached while a peer syncs from it. */
interface Serving {
  id: CheckpointId;
  checkpoint: CheckpointMeta;
  store: ObjectStore;
  sessions: [bigint, ClientSession][];
  keys: string[];
  uploads: Upload[];
  /** Per upload (same index), its pending block ids ascending. */
  pending: number[][];
  /** Position of the first record of each item (keys, then uploads), and the total at the end: an
   * item is its record and then its blocks', so a position maps to (item, block) by binary search. */
  starts: number[];
}

/** One record of the stream, by position. */
type StreamRecord =
  | { kind: "anchor" }
  | { kind: "session"; index: number }
  | { kind: "object"; key: string; entry: ObjectEntry }
  | { kind: "upload"; upload: Upload }
  | { kind: "block"; block: Block };

export class SyncSource {
  private serving: Serving | null = null;

  /** Part of a retained checkpoint (`load` reads its state when it is not the one cached);
   * null if it cannot be loaded, the position is out of range, or a value or block is damaged here. */
  readChunk(
    id: CheckpointId,
    position: number,
    size_max: number,
    load: () => LoadedCheckpoint | null,
    readStored: StoredReader,
  ): SyncChunk | null {
    assert(size_max > 0, "sync source: size_max");
    if (this.serving === null || this.serving.id.op !== id.op || this.serving.id.digest !== id.digest) {
      const loaded = id.op === 0 ? null : load();
      if (loaded === null) return null;
      this.serving = serve(id, loaded);
    }
    const serving = this.serving;
    assert(serving.keys.length === serving.store.count, "sync source: keys of another store");
    const total = serving.starts[serving.starts.length - 1]!;
    if (!Number.isSafeInteger(position) || position < 0 || position >= total) return null;
    const w = new Writer(64 * 1024);
    let index = position;
    while (index < total && (index === position || w.offset < size_max)) {
      const record = recordAt(serving, index);
      // A chunk holds at least one record and never more than size_max plus one record, so a
      // maximum-size value or block travels alone and every chunk fits in a message.
      if (index > position && w.offset + recordBytes(record) > size_max) break;
      if (!writeRecord(w, serving, record, readStored)) return null; // damaged here: the peer asks another replica
      index += 1;
    }
    assert(index > position, "sync source: a chunk without a record");
    return { bytes: w.finish().slice(), next: index < total ? index : null };
  }
}

function serve(id: CheckpointId, loaded: LoadedCheckpoint): Serving {
  const store = loaded.store;
  const keys = [...store.all()].map(([k]) => k);
  const uploads = store.large.allUploads();
  const pending = uploads.map((u) => store.large.pendingBlocks(u));
  const sessions = loaded.clients.entries();
  const starts: number[] = [];
  let position = 1 + sessions.length;
  for (const key of keys) {
    starts.push(position);
    position += 1 + (store.get(key)!.chunks?.blocks.length ?? 0);
  }
  for (const ids of pending) {
    starts.push(position);
    position += 1 + ids.length;
  }
  starts.push(position);
  assert(starts.length === keys.length + uploads.length + 1, "sync source: one start per item");
  return { id, checkpoint: loaded.checkpoint, store, sessions, keys, uploads, pending, starts };
}

function recordAt(serving: Serving, index: number): StreamRecord {
  const { sessions, keys, starts, store } = serving;
  if (index === 0) return { kind: "anchor" };
  if (index <= sessions.length) return { kind: "session", index: index - 1 };
  // The last item starting at or before index.
  let lo = 0;
  let hi = starts.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (starts[mid]! <= index) lo = mid;
    else hi = mid;
  }
  assert(starts[lo]! <= index && index < starts[lo + 1]!, "sync source: position outside its item");
  const within = index - starts[lo]!;
  if (lo < keys.length) {
    const key = keys[lo]!;
    const entry = store.get(key)!;
    if (within === 0) return { kind: "object", key, entry };
    return { kind: "block", block: store.large.block(entry.chunks!.blocks[within - 1]!)! };
  }
  const u = lo - keys.length;
  if (within === 0) return { kind: "upload", upload: serving.uploads[u]! };
  return { kind: "block", block: store.large.block(serving.pending[u]![within - 1]!)! };
}

/** About what a record takes in a chunk (the data-bearing ones exactly enough to keep chunks
 * within size_max plus one record). */
function recordBytes(record: StreamRecord): number {
  if (record.kind === "block") return sync_block_overhead + record.block.size;
  if (record.kind === "upload") return 8 + upload_record_fixed_size + record.upload.key.length + 8;
  if (record.kind !== "object") return 0; // anchor and sessions always go, as before
  const { key, entry } = record;
  const data = entry.chunks === undefined ? entry.size : 8 + 8 * entry.chunks.blocks.length;
  const meta = entry.meta === undefined ? 0 : 32 + entry.meta.content_type.length + entry.meta.user_meta.length;
  return sync_object_overhead + key.length + data + meta;
}

/** Appends one record; false if the bytes it carries are damaged here. */
function writeRecord(w: Writer, serving: Serving, record: StreamRecord, readStored: StoredReader): boolean {
  const { checkpoint, store } = serving;
  const large = store.large;
  if (record.kind === "anchor") {
    const v2 = large.upload_counter !== 0 || large.block_counter !== 0;
    w.u8(v2 ? Type.anchor_v2 : Type.anchor);
    w.align();
    w.reserve(header_size);
    writeHeader(checkpoint.anchor, w.bytes, w.offset);
    w.offset += header_size;
    w.u64(store.revision);
    w.u64(checkpoint.previous.op);
    w.u64(checkpoint.previous.digest);
    w.u64(checkpoint.previous.checksum);
    if (v2) {
      w.u64(large.upload_counter);
      w.u64(large.block_counter);
    }
  } else if (record.kind === "session") {
    const [client, session] = serving.sessions[record.index]!;
    w.u8(Type.session);
    w.align();
    writeSession(w, client, session);
  } else if (record.kind === "object") {
    const { key, entry } = record;
    // Inline objects without metadata keep record 3, so an old-style state streams as before.
    const v2 = entry.chunks !== undefined || entry.meta !== undefined;
    const value = entry.chunks === undefined ? readStored(entry) : null;
    if (entry.chunks === undefined && value === null) return false;
    w.u8(v2 ? Type.object_v2 : Type.object);
    w.align();
    if (v2) writeObjectRecord(w, key, entry, false);
    else writeObjectMeta(w, key, entry);
    if (value !== null) {
      w.raw(value);
      w.align();
    }
  } else if (record.kind === "upload") {
    w.u8(Type.upload);
    w.align();
    writeUploadRecord(w, record.upload);
  } else {
    const data = readStored(record.block);
    if (data === null) return false;
    w.u8(Type.block);
    w.align();
    writeBlockRecord(w, record.block, false);
    w.raw(data);
    w.align();
  }
  return true;
}

interface Receiving {
  id: CheckpointId;
  anchor: Header | null;
  previous: CheckpointId | null;
  revision: number;
  upload_counter: number;
  block_counter: number;
  sessions: [bigint, ClientSession][];
  /** The state as received; built into a store at the end (restoreStore). */
  objects: Map<string, ObjectEntry>;
  uploads: Upload[];
  blocks: Block[];
  /** The block ids a chunked object announced and how many of them have arrived: its blocks are
   * the next records. */
  expecting: { ids: readonly number[]; next: number } | null;
  /** The upload whose pending blocks the block records that follow it are. */
  upload_id: number | null;
  /** The segment received values are appended to. */
  segment: Segment | null;
  segments: Segment[];
  bad: boolean;
}

/** Why a stream was refused, and where: for logs and `toastyfs snapshot verify`. */
export interface SyncRejection {
  /** The record's position in the stream (0: the anchor). */
  record: number;
  /** Its offset in the bytes given to the apply() that refused it. */
  offset: number;
  what: string;
}

export class SyncReceiver {
  private receiving: Receiving | null = null;
  /** Records applied since begin(). */
  records = 0;
  /** Why the stream being received was refused; null while it is not. */
  rejection: SyncRejection | null = null;
  /** Segments of a sync received but not yet adopted by writeCheckpoint: deleted if the replica
   * rejects it (digest mismatch) and starts over, so a sync that keeps failing cannot fill the
   * disk. */
  private unadopted: Segment[] = [];

  /** `segments` receives the values and blocks: the replica's segment files, or (toastyfs
   * snapshot) a sink that only notes where each one sits in a snapshot file. */
  constructor(private readonly segments: Pick<SegmentFiles, "create" | "appendValue" | "discard">) {}

  /** Objects received since begin(). */
  get objects(): number {
    return this.receiving?.objects.size ?? 0;
  }

  /** Whether a segment belongs to a sync not yet adopted (garbage collection leaves it). */
  holds(segment: Segment): boolean {
    assert(
      this.receiving === null || this.receiving.segment === null || this.receiving.segments.includes(this.receiving.segment),
      "sync receiver: current segment not listed",
    );
    return (this.receiving?.segments.includes(segment) ?? false) || this.unadopted.includes(segment);
  }

  /** A synced state is being checkpointed: its segments are now referenced. */
  adopt(): void {
    this.unadopted = [];
  }

  /** Deletes what a sync received and not adopted, and expects no more of it. */
  abort(): void {
    this.segments.discard([...(this.receiving?.segments ?? []), ...this.unadopted]);
    this.unadopted = [];
    this.receiving = null;
  }

  begin(id: CheckpointId): void {
    this.abort();
    this.records = 0;
    this.rejection = null;
    this.receiving = {
      id,
      anchor: null,
      previous: null,
      revision: 0,
      upload_counter: 0,
      block_counter: 0,
      sessions: [],
      objects: new Map(),
      uploads: [],
      blocks: [],
      expecting: null,
      upload_id: null,
      segment: null,
      segments: [],
      bad: false,
    };
    assert(this.unadopted.length === 0, "sync receiver: begin");
  }

  apply(bytes: Uint8Array): boolean {
    const rx = this.receiving;
    if (rx === null || rx.bad) return false;
    const r = new Reader(bytes);
    while (!r.done && !r.bad) {
      const offset = r.offset;
      const type = r.u8();
      r.align();
      // A chunked object's blocks follow it before anything else.
      if (rx.expecting !== null && type !== Type.block)
        return this.bad(offset, `a record of type ${type} where a block of the object before it was due`);
      const what = r.bad ? null : this.applyRecord(rx, r, type);
      if (what !== null || r.bad) return this.bad(offset, r.bad ? "a record cut short" : what!);
      this.records += 1;
    }
    return true;
  }

  /** One record of a type; what is wrong with it if it is malformed or does not fit where it is. */
  private applyRecord(rx: Receiving, r: Reader, type: number): string | null {
    if (type === Type.anchor || type === Type.anchor_v2) {
      const h = decodeHeader(r.raw(header_size), 0);
      const revision = r.u64();
      const previous: CheckpointId = { op: r.u64(), digest: r.u64n(), checksum: r.u64n() };
      if (type === Type.anchor_v2) {
        rx.upload_counter = r.u64();
        rx.block_counter = r.u64();
      }
      if (h === null || r.bad) return "an anchor that does not parse";
      rx.anchor = h;
      rx.revision = revision;
      rx.previous = previous;
    } else if (type === Type.session) {
      const session = readSession(r);
      if (session === null) return "a session that does not parse";
      rx.sessions.push(session);
    } else if (type === Type.object || type === Type.object_v2) {
      const object = type === Type.object ? legacyObject(r) : readObjectRecord(r, false);
      if (object === null) return "an object that does not parse";
      if (rx.objects.has(object.key)) return "an object whose key came before";
      const { key, entry } = object;
      rx.upload_id = null;
      if (entry.chunks !== undefined) {
        rx.expecting = { ids: entry.chunks.blocks, next: 0 };
      } else {
        const value = r.raw(entry.size);
        r.align();
        if (r.bad) return "an object cut short";
        if (checksum(value) !== entry.checksum) return "an object whose value does not match its checksum";
        Object.assign(entry, this.append(rx, value));
      }
      rx.objects.set(key, entry);
    } else if (type === Type.upload) {
      const upload = readUploadRecord(r);
      if (upload === null) return "an upload that does not parse";
      rx.uploads.push(upload);
      rx.upload_id = upload.id;
    } else if (type === Type.block) {
      return this.applyBlock(rx, r);
    } else {
      return `an unknown record type ${type}`;
    }
    return null;
  }

  /** A block record: one a chunked object announced, or a pending block of the upload before it. */
  private applyBlock(rx: Receiving, r: Reader): string | null {
    const block = readBlockRecord(r);
    if (block === null || block.segment !== 0 || block.offset !== 0 || block.size > block_size_max_ceiling_bytes)
      return "a block that does not parse";
    const data = r.raw(block.size);
    r.align();
    if (r.bad) return "a block cut short";
    if (checksum(data) !== block.checksum) return `block ${block.id} whose data does not match its checksum`;
    const expecting = rx.expecting;
    if (expecting !== null) {
      if (block.slot !== null || expecting.ids[expecting.next] !== block.id)
        return `block ${block.id} where the object before it names another`;
      expecting.next += 1;
      if (expecting.next === expecting.ids.length) rx.expecting = null;
    } else if (block.slot === null || block.slot.upload_id !== rx.upload_id) {
      return `block ${block.id} that belongs to no object or upload before it`;
    }
    rx.blocks.push({ ...block, ...this.append(rx, data) });
    return null;
  }

  private bad(offset: number, what: string): boolean {
    assert(this.receiving !== null, "sync receiver: damage without a sync");
    if (this.receiving !== null) this.receiving.bad = true;
    this.rejection = { record: this.records, offset, what };
    return false;
  }

  /** Received values and blocks go into segments of their own, written once like journaled values. */
  private append(rx: Receiving, value: Uint8Array): ValueLocation {
    let segment = rx.segment;
    if (segment === null || segment.write_offset + value.length > segment.capacity) {
      segment = this.segments.create(value.length, rx.id.op);
      rx.segment = segment;
      rx.segments.push(segment);
    }
    assert(segment.max_op === rx.id.op, "sync receiver: appending to a segment of another sync");
    return this.segments.appendValue(segment, value);
  }

  finish(clients_max: number): { store: ObjectStore; clients: ClientTable; checkpoint: CheckpointMeta } | null {
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
    if (rx.expecting !== null) return null; // a chunked object's blocks never came
    const store = restoreStore(rx);
    // Deletes advance the revision without leaving an entry, so the stream carries it.
    if (store === null || rx.revision < store.revision) return null;
    store.revision = rx.revision;
    assert(store.revision === rx.revision, "sync receiver: revision");
    return { store, clients, checkpoint: { id: rx.id, anchor: rx.anchor, previous: rx.previous } };
  }
}

/** A record 3 object (inline, no metadata): its meta; its value follows. */
function legacyObject(r: Reader): { key: string; entry: ObjectEntry } | null {
  const meta = readObjectMeta(r);
  if (meta === null) return null;
  return {
    key: meta.key,
    entry: { version: meta.version, timestamp: meta.timestamp, size: meta.size, checksum: meta.checksum, segment: 0, offset: 0 },
  };
}
