/**
 * The sync stream with large objects (docs/STORAGE.md §8): anchor v2, object v2, block and upload
 * records, between a SyncSource over a state executeLargeWrite built and a SyncReceiver writing
 * into segments of its own.
 */
import { describe, expect, test } from "bun:test";
import { SyncReceiver, SyncSource, type StoredReader } from "./sync_stream.ts";
import { SegmentFiles } from "./segments.ts";
import type { LoadedCheckpoint } from "./checkpoint_store.ts";
import { ObjectStore } from "../store/object_store.ts";
import { ClientTable } from "../vsr/client_table.ts";
import { Command, Header, finalize } from "../net/codec.ts";
import { stateDigest } from "../vsr/root.ts";
import type { CheckpointMeta, StoredBytes, SyncChunk, VsrState } from "../vsr/storage.ts";
import { checksum } from "../util/checksum.ts";
import { Prng } from "../util/prng.ts";
import { SimFs } from "../../sim/sim_fs.ts";
import { LargeDisk, logicalStateOf, stateOf } from "../../tests/support/large_state.ts";
import { cluster, options, replica_count } from "../../tests/support/storage_world.ts";
import { FileStorage } from "./file_storage.ts";
import { rootPrepare } from "../vsr/root.ts";
import {
  block_size_max_ceiling_bytes,
  content_type_size_max_bytes,
  header_size,
  key_size_max,
  message_size_max,
  object_meta_size_max_bytes,
  value_size_max_default,
} from "../constants.ts";
import { encodePutObject, encodeUserMeta, putObjectValueMax } from "../store/large_bodies.ts";
import { sizeLimitOf, validateRequest } from "../store/execute.ts";
import { Condition, Operation, Result } from "../store/operations.ts";
import { sync_chunk_size_max } from "../vsr/state_sync.ts";

const clients_max = 4;

function checkpointOf(store: ObjectStore, clients: ClientTable, op = 16): CheckpointMeta {
  const anchor = new Header();
  anchor.command = Command.prepare;
  anchor.op = op;
  finalize(anchor, new Uint8Array(8));
  return {
    id: { op, digest: stateDigest(store, clients), checksum: anchor.checksum },
    anchor,
    previous: { op: 0, digest: 1n, checksum: 2n },
  };
}

interface Source {
  checkpoint: CheckpointMeta;
  source: SyncSource;
  load: () => LoadedCheckpoint;
  read: StoredReader;
}

function sourceOf(d: LargeDisk, read?: StoredReader): Source {
  const clients = new ClientTable(clients_max);
  clients.restore(77n, {
    session: 3,
    request: 4,
    commit_op: 5,
    reply: { op: 5, timestamp: 6, operation: 2, result: 0, body: new Uint8Array(3) },
  });
  const checkpoint = checkpointOf(d.store, clients);
  const loaded: LoadedCheckpoint = { checkpoint, store: d.store, clients, chain: [16], base_bytes: 0, delta_bytes: 0 };
  const verified = (at: StoredBytes): Uint8Array | null => {
    const bytes = d.read(at);
    return checksum(bytes) === at.checksum ? bytes : null;
  };
  return { checkpoint, source: new SyncSource(), load: () => loaded, read: read ?? verified };
}

function chunk(s: Source, position: number, size_max: number): SyncChunk | null {
  return s.source.readChunk(s.checkpoint.id, position, size_max, s.load, s.read);
}

function stream(s: Source, size_max: number): SyncChunk[] {
  const out: SyncChunk[] = [];
  let position: number | null = 0;
  while (position !== null) {
    const c = chunk(s, position, size_max);
    expect(c).not.toBeNull();
    out.push(c!);
    position = c!.next;
  }
  return out;
}

function receiver(): { rx: SyncReceiver; files: SegmentFiles } {
  const fs = new SimFs(new Prng(99));
  fs.mkdir("journal");
  const files = new SegmentFiles(fs, 4096);
  return { rx: new SyncReceiver(files), files };
}

function concat(chunks: SyncChunk[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.bytes.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c.bytes, o);
    o += c.bytes.length;
  }
  return out;
}

/** Records the stream holds: anchor, session, objects, their blocks, uploads, their pending blocks. */
function recordCount(store: ObjectStore): number {
  let n = 2 + store.large.upload_count;
  for (const [, e] of store.all()) n += 1 + (e.chunks?.blocks.length ?? 0);
  for (const u of store.large.allUploads()) n += u.slots.size;
  return n;
}

describe("sync stream with large objects", () => {
  test("reproduces chunked objects, metadata, uploads and pending blocks with their bytes, at any chunk size", () => {
    for (let seed = 1; seed <= 15; seed++) {
      const d = new LargeDisk(new Prng(seed));
      d.run(60);
      const s = sourceOf(d);
      const whole = concat(stream(s, 1 << 20));
      for (const size_max of [1, 40, 200, 4096]) {
        const chunks = stream(s, size_max);
        // Smaller than one record: one record per chunk. And however cut, the same records.
        if (size_max === 1) expect(chunks.length).toBe(recordCount(d.store));
        expect(concat(chunks)).toEqual(whole);
        const { rx, files } = receiver();
        rx.begin(s.checkpoint.id);
        for (const c of chunks) expect(rx.apply(c.bytes)).toBe(true);
        const received = rx.finish(clients_max)!;
        expect(received).not.toBeNull();
        received.store.invariants();
        expect(stateDigest(received.store, received.clients)).toBe(s.checkpoint.id.digest);
        expect(logicalStateOf(received.store)).toEqual(logicalStateOf(d.store));
        // Every value and block is in the receiver's own segments, intact.
        for (const [key, e] of received.store.all())
          if (e.chunks === undefined) expect(files.readValue(e)).toEqual(d.read(d.store.get(key)!));
        for (const b of received.store.large.allBlocks()) expect(files.readValue(b)).toEqual(d.read(d.store.large.block(b.id)!));
      }
    }
  });

  test("the largest put_object a primary accepts streams in one message, and a byte more is refused", () => {
    const key = new Uint8Array(key_size_max).fill(0x6b);
    const empty = encodeUserMeta([{ name: "m", value: new Uint8Array(0) }]).length;
    const user_meta = encodeUserMeta([{ name: "m", value: new Uint8Array(object_meta_size_max_bytes - empty).fill(0x76) }]);
    const metadata = { content_type: "t".repeat(content_type_size_max_bytes), user_meta };
    const arrival = { value_size_max: value_size_max_default, block_size_max: block_size_max_ceiling_bytes };
    const value_max = putObjectValueMax({ key, metadata }, arrival);
    const body = (size: number) =>
      encodePutObject({
        key,
        condition: Condition.none,
        if_version: 0,
        md5: new Uint8Array(16).fill(1),
        metadata,
        value: new Uint8Array(size),
      });
    // The request one byte longer still fits a message: the bound, not the message size, refuses it.
    expect(header_size + body(value_max + 1).length).toBeLessThanOrEqual(message_size_max);
    expect(validateRequest(Operation.put_object, body(value_max + 1), arrival)).toBe(Result.value_too_large);
    expect(sizeLimitOf(Operation.put_object, arrival, body(value_max + 1))).toBe(value_max);
    expect(validateRequest(Operation.put_object, body(value_max), arrival)).toBe(Result.ok);
    const d = new LargeDisk(new Prng(5));
    expect(d.exec(Operation.put_object, body(value_max))).toBe(Result.ok);
    const chunks = stream(sourceOf(d), sync_chunk_size_max);
    const largest = Math.max(...chunks.map((c) => c.bytes.length));
    // Within a few bytes of the message size, and inside it.
    expect(header_size + largest).toBeLessThanOrEqual(message_size_max);
    expect(header_size + largest).toBeGreaterThan(message_size_max - 128);
  });

  test("any position is served on its own (a position maps to its record without walking)", () => {
    const d = new LargeDisk(new Prng(4));
    d.run(80);
    const s = sourceOf(d);
    const records = stream(s, 1).map((c) => c.bytes);
    const fresh = sourceOf(d);
    const prng = new Prng(5);
    for (let i = 0; i < 200; i++) {
      const position = prng.int(records.length);
      expect(chunk(fresh, position, 1)!.bytes).toEqual(records[position]!);
    }
    expect(chunk(fresh, records.length, 1)).toBeNull();
  });

  test("a block damaged at the source gives null (the peer asks another replica)", () => {
    const d = new LargeDisk(new Prng(6));
    while (d.store.large.block_count === 0) d.run(5);
    const damaged = [...d.store.large.allBlocks()][0]!;
    const s = sourceOf(d, (at) => {
      const bytes = d.read(at);
      if (at === d.store.large.block(damaged.id)) bytes[0]! ^= 1;
      return checksum(bytes) === at.checksum ? bytes : null;
    });
    let nulls = 0;
    for (let position = 0; position < recordCount(d.store); position++) if (chunk(s, position, 1) === null) nulls += 1;
    expect(nulls).toBe(1);
  });

  test("a block whose bytes do not match its checksum is rejected by the receiver", () => {
    const d = new LargeDisk(new Prng(8));
    while (d.store.large.block_count === 0) d.run(5);
    const s = sourceOf(d, (at) => {
      const bytes = d.read(at);
      if ("slot" in at) bytes[bytes.length - 1]! ^= 0x80; // a source that does not verify, or a flip in flight
      return bytes;
    });
    const { rx } = receiver();
    rx.begin(s.checkpoint.id);
    const results = stream(s, 1).map((c) => rx.apply(c.bytes));
    expect(results.includes(false)).toBe(true);
    expect(rx.finish(clients_max)).toBeNull();
  });

  test("a stream cut before a chunked object's blocks, or with a block out of place, is refused", () => {
    const d = new LargeDisk(new Prng(9));
    while ([...d.store.all()].every(([, e]) => e.chunks === undefined)) d.run(5);
    const s = sourceOf(d);
    const records = stream(s, 1);
    const first_block = records.findIndex((c) => c.bytes[0] === 6);
    // Without the block: the object's blocks never come, so the next record (or the end) is refused.
    const { rx } = receiver();
    rx.begin(s.checkpoint.id);
    for (const [i, c] of records.entries()) if (i !== first_block) rx.apply(c.bytes);
    expect(rx.finish(clients_max)).toBeNull();
    // A block record alone, where no object or upload announced it.
    const lone = receiver();
    lone.rx.begin(s.checkpoint.id);
    expect(lone.rx.apply(records[0]!.bytes)).toBe(true);
    expect(lone.rx.apply(records[first_block]!.bytes)).toBe(false);
  });

  test("an old-style state streams byte for byte as before large objects, with anchor 1 and object 3", () => {
    // The state and the pinned hashes below come from the code before issue 14's step 4 (main at 93a1f12).
    const values = new Map<number, Uint8Array>();
    const store = new ObjectStore();
    for (let i = 0; i < 9; i++) {
      const value = new Uint8Array(i * 7).map((_, j) => (i * 31 + j) & 0xff);
      values.set(i + 1, value);
      store.set(`key-${i}`, {
        version: i + 1,
        timestamp: 1000 + i,
        size: value.length,
        checksum: checksum(value),
        segment: i + 1,
        offset: 0,
      });
    }
    store.revision = 12;
    const clients = new ClientTable(4);
    const body = new Uint8Array([1, 2, 3]);
    clients.restore(77n, { session: 3, request: 4, commit_op: 5, reply: { op: 5, timestamp: 6, operation: 2, result: 0, body } });
    const anchor = new Header();
    anchor.command = Command.prepare;
    anchor.op = 16;
    finalize(anchor, new Uint8Array(8));
    const checkpoint = { id: { op: 16, digest: 5n, checksum: anchor.checksum }, anchor, previous: { op: 0, digest: 1n, checksum: 2n } };
    const loaded: LoadedCheckpoint = { checkpoint, store, clients, chain: [16], base_bytes: 0, delta_bytes: 0 };
    const s: Source = { checkpoint, source: new SyncSource(), load: () => loaded, read: (e) => values.get(e.segment)! };
    const pinned: [number, number, bigint][] = [
      [1, 11, 0x2196aff34bdfd1f6n],
      [60, 11, 0x2196aff34bdfd1f6n],
      [4096, 1, 0x300e8b6dcf7f8430n],
    ];
    for (const [size_max, count, hash] of pinned) {
      const chunks = stream(s, size_max);
      expect(chunks.length).toBe(count);
      const sums = chunks.map((c) => checksum(c.bytes)).join(",");
      expect(checksum(new TextEncoder().encode(sums))).toBe(hash);
    }
  });
});

describe("FileStorage with large objects", () => {
  test("blocks in real segments survive a checkpoint, garbage collection, a crash and restart, and a sync to another replica", () => {
    for (let seed = 1; seed <= 6; seed++) {
      const fs = new SimFs(new Prng(seed));
      const storage = new FileStorage(fs, options());
      expect(storage.recover(clients_max).state).toBeNull();
      const clients = new ClientTable(clients_max);
      const root = rootPrepare(cluster, replica_count);
      const root_id = { op: 0, digest: stateDigest(new ObjectStore(), clients), checksum: root.checksum };
      const initial: VsrState = { incarnation: 7, view: 0, log_view: 0, commit_max: 0, view_headers: [], checkpoint: root_id };
      storage.writeState(initial);
      storage.flush();
      // A large state whose values and blocks are copied into this storage's segments, as repair
      // and compaction put them there; then the active segment moves on, so only the checkpoint's
      // segment list keeps them.
      const d = new LargeDisk(new Prng(seed));
      d.run(80);
      const store = d.store;
      for (const [key, e] of [...store.all()]) if (e.chunks === undefined) store.relocate(key, storage.writeValue(d.read(e)));
      storage.writeValue(new Uint8Array(4000)); // the blocks get segments of their own
      for (const b of [...store.large.allBlocks()]) store.large.relocateBlock(b.id, storage.writeValue(d.read(b)));
      storage.writeValue(new Uint8Array(4000));
      // Three checkpoints, so the horizon (the oldest retained, and the newest less a journal) passes
      // those segments: each publish collects every segment no retained checkpoint lists.
      let previous = root_id;
      let checkpoint = checkpointOf(store, clients);
      let state = initial;
      for (const op of [80, 96, 112]) {
        checkpoint = { ...checkpointOf(store, clients, op), previous };
        storage.writeCheckpoint(checkpoint, store, clients);
        state = { ...initial, commit_max: op, checkpoint: checkpoint.id };
        storage.writeState(state);
        storage.flush();
        previous = checkpoint.id;
      }
      fs.crash(new Prng(seed));
      const restarted = new FileStorage(fs, options());
      const recovered = restarted.recover(clients_max);
      expect(recovered.state).toEqual(state);
      recovered.store.invariants();
      expect(stateOf(recovered.store)).toEqual(stateOf(store));
      for (const b of recovered.store.large.allBlocks()) {
        expect(restarted.readValue(b)).not.toBeNull();
      }
      // Served from the restarted replica to a new one, in chunks smaller than most blocks.
      const peer = new FileStorage(new SimFs(new Prng(seed + 100)), options({ replica: 1 }));
      expect(peer.recover(clients_max).state).toBeNull();
      peer.syncBegin(checkpoint.id);
      let position: number | null = 0;
      while (position !== null) {
        const c = restarted.readSyncChunk(checkpoint.id, position, 48);
        expect(c).not.toBeNull();
        expect(peer.syncApply(c!.bytes)).toBe(true);
        position = c!.next;
      }
      const received = peer.syncFinish(clients_max)!;
      expect(stateDigest(received.store, received.clients)).toBe(checkpoint.id.digest);
      expect(logicalStateOf(received.store)).toEqual(logicalStateOf(store));
    }
  });
});
