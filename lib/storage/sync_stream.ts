/**
 * The state-sync stream (docs/STORAGE.md §Sync stream): a checkpoint sent as records, the anchor
 * first, then the client sessions, then the objects with their values; a position is the index of
 * the next record. SyncSource encodes chunks of a retained checkpoint; SyncReceiver decodes them on
 * the replica that syncs, writing the values into segments of their own.
 */
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import { decodeHeader, writeHeader, type Header } from "../net/codec.ts";
import { header_size } from "../constants.ts";
import { ObjectStore, type ObjectEntry, type ValueLocation } from "../store/object_store.ts";
import { ClientTable, type ClientSession } from "../vsr/client_table.ts";
import type { CheckpointId, CheckpointMeta, SyncChunk } from "../vsr/storage.ts";
import { Reader, Writer, readObjectMeta, readSession, writeObjectMeta, writeSession } from "./records.ts";
import type { LoadedCheckpoint } from "./checkpoint_store.ts";
import type { Segment, SegmentFiles } from "./segments.ts";

/** Bytes of an object record besides its key and value: type, meta and padding. */
const sync_object_overhead = 8 + 40 + 16;
const sync_record_anchor = 1;
const sync_record_session = 2;
const sync_record_object = 3;

/** A decoded retained checkpoint, cached while a peer syncs from it. */
interface Serving {
  id: CheckpointId;
  checkpoint: CheckpointMeta;
  store: ObjectStore;
  sessions: [bigint, ClientSession][];
  keys: string[];
}

export class SyncSource {
  private serving: Serving | null = null;

  /** Part of a retained checkpoint (`load` reads its state when it is not the one cached);
   * null if it cannot be loaded, the position is out of range, or a value is damaged here. */
  readChunk(
    id: CheckpointId,
    position: number,
    size_max: number,
    load: () => LoadedCheckpoint | null,
    readValue: (entry: ObjectEntry) => Uint8Array | null,
  ): SyncChunk | null {
    assert(size_max > 0, "sync source: size_max");
    if (this.serving === null || this.serving.id.op !== id.op || this.serving.id.digest !== id.digest) {
      const loaded = id.op === 0 ? null : load();
      if (loaded === null) return null;
      this.serving = {
        id,
        checkpoint: loaded.checkpoint,
        store: loaded.store,
        sessions: loaded.clients.entries(),
        keys: [...loaded.store.all()].map(([k]) => k),
      };
    }
    const { sessions, keys } = this.serving;
    assert(keys.length === this.serving.store.count, "sync source: keys of another store");
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
        const value = readValue(entry);
        if (value === null) return null; // damaged here: the peer asks another replica
        w.u8(sync_record_object);
        w.align();
        writeObjectMeta(w, key, entry);
        w.raw(value);
        w.align();
      }
      index += 1;
    }
    assert(index > position, "sync source: a chunk without a record");
    return { bytes: w.finish().slice(), next: index < total ? index : null };
  }
}

interface Receiving {
  id: CheckpointId;
  anchor: Header | null;
  previous: CheckpointId | null;
  revision: number;
  sessions: [bigint, ClientSession][];
  store: ObjectStore;
  /** The segment received values are appended to. */
  segment: Segment | null;
  segments: Segment[];
  bad: boolean;
}

export class SyncReceiver {
  private receiving: Receiving | null = null;
  /** Segments of a sync received but not yet adopted by writeCheckpoint: deleted if the replica
   * rejects it (digest mismatch) and starts over, so a sync that keeps failing cannot fill the
   * disk. */
  private unadopted: Segment[] = [];

  constructor(private readonly segments: SegmentFiles) {}

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

  begin(id: CheckpointId): void {
    this.segments.discard([...(this.receiving?.segments ?? []), ...this.unadopted]);
    this.unadopted = [];
    this.receiving = {
      id,
      anchor: null,
      previous: null,
      revision: 0,
      sessions: [],
      store: new ObjectStore(),
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
      const type = r.u8();
      r.align();
      if (type === sync_record_anchor) {
        const h = decodeHeader(r.raw(header_size), 0);
        const revision = r.u64();
        const previous: CheckpointId = { op: r.u64(), digest: r.u64n(), checksum: r.u64n() };
        if (h === null || r.bad) return this.bad();
        rx.anchor = h;
        rx.revision = revision;
        rx.previous = previous;
      } else if (type === sync_record_session) {
        const session = readSession(r);
        if (session === null) return this.bad();
        rx.sessions.push(session);
      } else if (type === sync_record_object) {
        const meta = readObjectMeta(r);
        if (meta === null) return this.bad();
        const value = r.raw(meta.size);
        r.align();
        if (r.bad || checksum(value) !== meta.checksum) return this.bad();
        const location = this.appendValue(rx, value);
        rx.store.set(meta.key, { version: meta.version, timestamp: meta.timestamp, size: meta.size, checksum: meta.checksum, ...location });
      } else {
        return this.bad();
      }
    }
    return !r.bad || this.bad();
  }

  private bad(): boolean {
    assert(this.receiving !== null, "sync receiver: damage without a sync");
    if (this.receiving !== null) this.receiving.bad = true;
    return false;
  }

  /** Received values go into segments of their own, written once like journaled values. */
  private appendValue(rx: Receiving, value: Uint8Array): ValueLocation {
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
    // Deletes advance the revision without leaving an entry, so the stream carries it.
    if (rx.revision < rx.store.revision) return null;
    rx.store.revision = rx.revision;
    assert(rx.store.revision === rx.revision, "sync receiver: revision");
    return { store: rx.store, clients, checkpoint: { id: rx.id, anchor: rx.anchor, previous: rx.previous } };
  }
}
