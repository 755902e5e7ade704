/**
 * The state-sync stream (sync_stream.ts) between two FileStorages.
 */
import { describe, expect, test } from "bun:test";
import { clients_max, expectValues, interval, options, segmentPath, World } from "../../tests/support/storage_world.ts";
import { FileStorage } from "./file_storage.ts";
import type { ObjectEntry } from "../store/object_store.ts";
import { stateDigest } from "../vsr/root.ts";
import type { CheckpointId, SyncChunk, VsrState } from "../vsr/storage.ts";
import { header_size } from "../constants.ts";
import { Prng } from "../util/prng.ts";
import { SECTOR_SIZE, SimFs } from "../../sim/sim_fs.ts";

describe("FileStorage: state sync", () => {
  function newReplica(seed: number): { fs: SimFs; storage: FileStorage } {
    const fs = new SimFs(new Prng(seed));
    const storage = new FileStorage(fs, options({ replica: 1 }));
    expect(storage.recover(clients_max).state).toBeNull();
    return { fs, storage };
  }

  function chunks(source: FileStorage, id: CheckpointId, size_max: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let position: number | null = 0;
    while (position !== null) {
      const chunk = source.readSyncChunk(id, position, size_max);
      expect(chunk).not.toBeNull();
      out.push(chunk!.bytes);
      expect(chunk!.next === null || chunk!.next > position).toBe(true);
      position = chunk!.next;
    }
    return out;
  }

  test("a stream refused says which record and what is wrong with it", () => {
    const w = new World(new Prng(7));
    w.run(interval * 3 + 1);
    const snapshot = w.snapshots.get(interval * 2)!;
    const stream = chunks(w.storage, snapshot.id, 1 << 20);
    expect(stream).toHaveLength(1);
    const bytes = stream[0]!.slice();
    // Damage the value of an object (records: the anchor, the sessions, then objects in key order).
    const k = snapshot.store.findIndex(([key]) => (snapshot.values.get(key)?.length ?? 0) >= 32);
    const value = snapshot.values.get(snapshot.store[k]![0])!;
    const at = Buffer.from(bytes).indexOf(Buffer.from(value));
    expect(at).toBeGreaterThan(0);
    bytes[at + 5]! ^= 1;
    const b = newReplica(77);
    b.storage.syncBegin(snapshot.id);
    expect(b.storage.syncApply(bytes)).toBe(false);
    const receiver = (
      b.storage as unknown as { receiver: { rejection: { record: number; offset: number; what: string }; records: number } }
    ).receiver;
    const record = 1 + snapshot.sessions.length + k;
    expect(receiver.rejection).toMatchObject({ record, what: "an object whose value does not match its checksum" });
    expect(receiver.records).toBe(record);
    expect(bytes[receiver.rejection.offset]).toBe(3); // the record's type byte: an object
    expect(receiver.rejection.offset).toBeLessThan(at);
  });

  test("streaming a checkpoint reproduces its store, clients and values on another replica", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const w = new World(new Prng(seed));
      w.run(interval * w.prng.range(3, 8) + w.prng.int(interval));
      // Any retained checkpoint: the newest or one a lagging peer still names.
      const retained = [...w.snapshots.keys()].filter((op) => op > 0).slice(-3);
      const snapshot = w.snapshots.get(w.prng.pick(retained))!;
      const size_max = w.prng.pick([1, 200, 4096, 256 * 1024]);
      const stream = chunks(w.storage, snapshot.id, size_max);
      if (size_max === 1) expect(stream.length).toBe(1 + snapshot.sessions.length + snapshot.store.length);
      const b = newReplica(seed + 1000);
      b.storage.syncBegin(snapshot.id);
      for (const chunk of stream) expect(b.storage.syncApply(chunk)).toBe(true);
      const received = b.storage.syncFinish(clients_max)!;
      expect(received).not.toBeNull();
      expect(stateDigest(received.store, received.clients)).toBe(snapshot.id.digest);
      expect(received.checkpoint).toEqual({ id: snapshot.id, anchor: snapshot.anchor, previous: snapshot.previous });
      expect(received.store.revision).toBe(snapshot.revision);
      expect(received.clients.entries()).toEqual(snapshot.sessions);
      const logical = (entries: [string, ObjectEntry][]) => entries.map(([k, e]) => [k, e.version, e.timestamp, e.size, e.checksum]);
      expect(logical([...received.store.all()])).toEqual(logical(snapshot.store));
      expectValues(b.storage, received.store, snapshot.values);
      // The replica then writes the checkpoint and publishes it; it survives a crash.
      b.storage.writeCheckpoint(received.checkpoint, received.store, received.clients);
      const state: VsrState = {
        incarnation: 7,
        view: 0,
        log_view: 0,
        commit_max: snapshot.id.op,
        view_headers: [],
        checkpoint: snapshot.id,
      };
      b.storage.writeState(state);
      b.storage.flush();
      b.fs.crash(new Prng(seed));
      const storage = new FileStorage(b.fs, options({ replica: 1 }));
      const recovered = storage.recover(clients_max);
      expect(recovered.state).toEqual(state);
      expect(stateDigest(recovered.store, recovered.clients)).toBe(snapshot.id.digest);
      expectValues(storage, recovered.store, snapshot.values);
      // And it can serve the same checkpoint to the next peer.
      const c = newReplica(seed + 2000);
      c.storage.syncBegin(snapshot.id);
      for (const chunk of chunks(storage, snapshot.id, 4096)) expect(c.storage.syncApply(chunk)).toBe(true);
      const again = c.storage.syncFinish(clients_max)!;
      expect(stateDigest(again.store, again.clients)).toBe(snapshot.id.digest);
    }
  });

  test("chunks stay within size_max plus one record, so a large value travels alone", () => {
    for (let seed = 1; seed <= 10; seed++) {
      const w = new World(new Prng(seed), options(), 12, 3000);
      w.run(interval * 2);
      const snapshot = w.snapshots.get(w.checkpoint.op)!;
      const total = 1 + snapshot.sessions.length + snapshot.store.length;
      for (const size_max of [1, 500, 2000, 8192]) {
        let position: number | null = 0;
        let records = 0;
        while (position !== null) {
          const chunk: SyncChunk = w.storage.readSyncChunk(w.checkpoint, position, size_max)!;
          const count = (chunk.next ?? total) - position;
          expect(count).toBeGreaterThanOrEqual(1);
          // An anchor or session record is at most 200 bytes; an object is checked before it is added.
          if (count > 1) expect(chunk.bytes.length).toBeLessThanOrEqual(size_max + 200);
          records += count;
          position = chunk.next;
        }
        expect(records).toBe(total);
      }
    }
  });

  test("only retained checkpoints are served, from valid positions", () => {
    const w = new World(new Prng(7));
    w.run(interval * 6);
    const current = w.checkpoint;
    expect(w.storage.readSyncChunk(current, 0, 4096)).not.toBeNull();
    expect(w.storage.readSyncChunk({ ...current, digest: current.digest ^ 1n }, 0, 4096)).toBeNull();
    expect(w.storage.readSyncChunk({ ...current, checksum: current.checksum ^ 1n }, 0, 4096)).toBeNull();
    expect(w.storage.readSyncChunk(w.snapshots.get(interval)!.id, 0, 4096)).toBeNull(); // long gone
    expect(w.storage.readSyncChunk(w.snapshots.get(0)!.id, 0, 4096)).toBeNull();
    const snapshot = w.snapshots.get(current.op)!;
    const total = 1 + snapshot.sessions.length + snapshot.store.length;
    expect(w.storage.readSyncChunk(current, total - 1, 4096)?.next).toBeNull();
    for (const position of [-1, total, 0.5, Number.NaN]) expect(w.storage.readSyncChunk(current, position, 4096)).toBeNull();
  });

  // FileStorage keeps three checkpoints because a prepare names one up to two intervals behind it
  // (lib/vsr/checkpoint.ts), and a lagging peer can sync only to a checkpoint a committed prepare
  // names. recover() restores only the superblock's checkpoint and its collectGarbage deletes the
  // other two files, so after a cluster-wide power loss no replica can serve the checkpoint the
  // head names until the cluster commits one or two more intervals.
  test("a restarted replica still serves the checkpoints it retained before the restart", () => {
    const w = new World(new Prng(10));
    w.run(interval * 5 + 3);
    const retained = [...w.snapshots.values()].map((s) => s.id).slice(-3);
    for (const id of retained) expect(w.storage.readSyncChunk(id, 0, 4096)).not.toBeNull();
    w.fs.crash(w.prng);
    w.reopen();
    for (const id of retained)
      expect({ op: id.op, served: w.storage.readSyncChunk(id, 0, 4096) !== null }).toEqual({ op: id.op, served: true });
  });

  test("a source whose value is damaged refuses to serve it", () => {
    const w = new World(new Prng(8), options(), 4, 3000);
    w.run(interval * 2);
    const [, entry] = [...w.store.all()].find(([, e]) => e.size >= 2 * SECTOR_SIZE)!;
    w.fs.corruptSector(segmentPath(entry.segment), Math.ceil(entry.offset / SECTOR_SIZE));
    let position: number | null = 0;
    let refused = false;
    while (position !== null) {
      const chunk = w.storage.readSyncChunk(w.checkpoint, position, 1);
      if (chunk === null) {
        refused = true;
        break;
      }
      position = chunk.next;
    }
    expect(refused).toBe(true);
  });

  test("a chunk damaged in its structure or values is refused by syncApply", () => {
    let refused = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const w = new World(new Prng(seed), options(), 5, 60);
      w.run(interval * 2);
      const stream = chunks(w.storage, w.checkpoint, 1);
      // One record per chunk: [anchor, sessions..., objects...].
      for (let index = 0; index < stream.length; index++) {
        const chunk = stream[index]!;
        const object = index > w.clients.size;
        // Damage to the record type, the anchor header, a value, or the chunk's length.
        const positions = [0];
        if (index === 0) for (let i = 8; i < 8 + header_size; i += 7) positions.push(i);
        if (object) {
          const value_start = 40 + Math.ceil(new DataView(chunk.buffer, chunk.byteOffset).getUint16(0 + 8, true) / 8) * 8 + 8;
          for (let i = value_start; i < chunk.length - 8; i += 5) positions.push(i);
        }
        for (const position of positions) {
          const damaged = chunk.slice();
          damaged[position]! ^= 0x5a;
          const b = newReplica(seed * 100 + index);
          b.storage.syncBegin(w.checkpoint);
          for (let j = 0; j < index; j++) expect(b.storage.syncApply(stream[j]!)).toBe(true);
          expect(b.storage.syncApply(damaged)).toBe(false);
          // Once refused, the sync stays failed until it begins again.
          expect(b.storage.syncApply(stream[index]!)).toBe(false);
          expect(b.storage.syncFinish(clients_max)).toBeNull();
          refused += 1;
        }
        for (const cut of [1, 8]) {
          const b = newReplica(seed);
          b.storage.syncBegin(w.checkpoint);
          for (let j = 0; j < index; j++) b.storage.syncApply(stream[j]!);
          expect(b.storage.syncApply(chunk.subarray(0, chunk.length - cut))).toBe(false);
        }
      }
    }
    expect(refused).toBeGreaterThan(100);
  });

  // Not every field of the stream is covered by a check: syncApply verifies structure, the anchor
  // header and value checksums, and the replica then checks the state digest, the anchor and
  // previous.op (lib/vsr/state_sync_driver.ts, StateSync finishing a transfer). An object's timestamp is in neither the digest
  // (lib/store/object_store.ts entryHash) nor any checksum, and neither are previous.digest and
  // previous.checksum, so a chunk damaged there installs a different state than the source's.
  // Sync chunks travel in checksummed messages, so this needs damage outside the wire.

  test("an aborted sync deletes the segments it wrote, and takes no more chunks", () => {
    const w = new World(new Prng(10));
    w.run(interval * 2);
    const stream = chunks(w.storage, w.checkpoint, 1);
    const b = newReplica(10);
    const idle = b.fs.usedBytes();
    b.storage.syncBegin(w.checkpoint);
    for (const chunk of stream.slice(0, -1)) expect(b.storage.syncApply(chunk)).toBe(true);
    expect(b.fs.usedBytes()).toBeGreaterThan(idle);
    b.storage.syncAbort();
    expect(b.fs.usedBytes()).toBe(idle);
    expect(b.storage.syncApply(stream.at(-1)!)).toBe(false);
  });

  test("a synced state whose checkpoint a full disk refused is deleted when the sync is dropped", () => {
    // StateSync.finish: writeCheckpoint fails with ENOSPC, the replica drops the sync (syncAbort).
    // Its segments are referenced by nothing: kept, they would hold the space it waits for.
    const w = new World(new Prng(11));
    w.run(interval * 2);
    const b = newReplica(11);
    const idle = b.fs.usedBytes();
    b.storage.syncBegin(w.checkpoint);
    for (const chunk of chunks(w.storage, w.checkpoint, 4096)) expect(b.storage.syncApply(chunk)).toBe(true);
    const received = b.storage.syncFinish(clients_max)!;
    expect(received).not.toBeNull();
    expect(b.fs.usedBytes()).toBeGreaterThan(idle);
    b.fs.capacity_bytes = b.fs.usedBytes() + 8;
    expect(() => b.storage.writeCheckpoint(received.checkpoint, received.store, received.clients)).toThrow("exceed the disk capacity");
    b.storage.syncAbort();
    b.fs.capacity_bytes = Infinity;
    expect(b.fs.usedBytes()).toBe(idle);
  });

  test("an incomplete stream does not finish", () => {
    const w = new World(new Prng(9));
    w.run(interval * 2);
    const stream = chunks(w.storage, w.checkpoint, 1);
    const b = newReplica(9);
    b.storage.syncBegin(w.checkpoint);
    for (const chunk of stream.slice(1)) expect(b.storage.syncApply(chunk)).toBe(true);
    expect(b.storage.syncFinish(clients_max)).toBeNull(); // no anchor
    expect(b.storage.syncApply(stream[0]!)).toBe(false); // no sync in progress
    // syncBegin discards a partial sync.
    b.storage.syncBegin(w.checkpoint);
    b.storage.syncApply(stream[0]!);
    b.storage.syncBegin(w.checkpoint);
    for (const chunk of stream) expect(b.storage.syncApply(chunk)).toBe(true);
    const received = b.storage.syncFinish(clients_max)!;
    expect(stateDigest(received.store, received.clients)).toBe(w.checkpoint.digest);
  });
});
