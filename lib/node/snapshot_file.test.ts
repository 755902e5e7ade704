/**
 * Snapshot files (snapshot_file.ts): a checkpoint streamed by a FileStorage through a snapshot
 * source, written with SnapshotWriter, reads back whole with readSnapshotFile (the same state,
 * digest and values), and every kind of damage is refused with where and what.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { World, interval } from "../../tests/support/storage_world.ts";
import { Prng } from "../util/prng.ts";
import type { CheckpointId, SyncChunk } from "../vsr/storage.ts";
import type { FileStorage } from "../storage/file_storage.ts";
import {
  SnapshotFileError,
  SnapshotLoader,
  SnapshotWriter,
  readSnapshotFile,
  readStored,
  snapshot_header_size,
  snapshot_trailer_size,
} from "./snapshot_file.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-snapshot-file-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Streams checkpoint id from storage into a snapshot file, as toastyfs snapshot save does. */
function save(storage: FileStorage, id: CheckpointId, file: string, size_max: number, restart_from: CheckpointId | null = null): void {
  const writer = new SnapshotWriter(file);
  for (const checkpoint of restart_from === null ? [id] : [restart_from, id]) {
    writer.begin({ cluster: 0xabcn, replica_count: 3, checkpoint, created_ms: 1_700_000_000_000 });
    const loader = new SnapshotLoader(checkpoint);
    let position: number | null = 0;
    while (position !== null) {
      const chunk: SyncChunk = storage.readSyncChunk(checkpoint, position, size_max, 1)!;
      expect(chunk).not.toBeNull();
      const offset = writer.records_offset;
      writer.frame(position, chunk.bytes);
      expect(loader.frame(position, chunk.bytes, offset)).toBeNull();
      position = chunk.next;
      // A stream that starts over (its checkpoint no longer retained) drops what it wrote.
      if (checkpoint !== id && position !== null && position > 2) break;
    }
    if (checkpoint !== id) continue;
    const state = loader.finish();
    if (typeof state === "string") throw new Error(state);
    writer.finish({ records: state.records, objects: state.store.count, object_bytes: state.store.bytes });
  }
}

function world(seed: number): { w: World; id: CheckpointId; older: CheckpointId } {
  const w = new World(new Prng(seed));
  w.run(interval * 4 + 3);
  const ops = [...w.snapshots.keys()].filter((op) => op > 0).slice(-2);
  return { w, older: w.snapshots.get(ops[0]!)!.id, id: w.snapshots.get(ops[1]!)!.id };
}

describe("snapshot files", () => {
  test("a saved checkpoint reads back with its digest, objects and values, whatever the chunk size", () => {
    for (const [seed, size_max] of [
      [1, 1],
      [2, 300],
      [3, 64 * 1024],
    ] as const) {
      const { w, id, older } = world(seed);
      const file = path.join(dir, `ok-${seed}.tfs`);
      save(w.storage, id, file, size_max, seed === 2 ? older : null);
      const read = readSnapshotFile(file);
      expect(read.header).toEqual({ cluster: 0xabcn, replica_count: 3, checkpoint: id, created_ms: 1_700_000_000_000 });
      const snapshot = w.snapshots.get(id.op)!;
      expect(read.state.store.count).toBe(snapshot.store.length);
      expect(read.trailer.objects).toBe(snapshot.store.length);
      const fd = fs.openSync(file, "r");
      for (const [key, entry] of read.state.store.all()) expect(readStored(fd, entry)).toEqual(snapshot.values.get(key)!);
      fs.closeSync(fd);
    }
  });

  test("damage is refused, saying where and what", () => {
    const { w, id } = world(4);
    const file = path.join(dir, "good.tfs");
    save(w.storage, id, file, 500);
    const good = fs.readFileSync(file);
    const { state } = readSnapshotFile(file);
    const [, entry] = [...state.store.all()].find(([, e]) => e.size > 8)!;
    const damaged = (what: string, change: (b: Buffer) => Buffer): string => {
      const target = path.join(dir, `${what}.tfs`);
      fs.writeFileSync(target, change(Buffer.from(good)));
      try {
        readSnapshotFile(target);
      } catch (error) {
        expect(error).toBeInstanceOf(SnapshotFileError);
        return (error as Error).message;
      }
      throw new Error(`${what}: accepted`);
    };
    const flip = (offset: number) => (b: Buffer) => ((b[offset]! ^= 0x04), b);
    expect(damaged("value", flip(entry.offset + 1))).toMatch(
      /^record \d+ at offset \d+: an object whose value does not match its checksum$/,
    );
    expect(damaged("header", flip(30))).toBe("the header (bytes 0..64) does not match its checksum");
    expect(damaged("magic", flip(0))).toContain("not a snapshot file");
    expect(damaged("frame", flip(snapshot_header_size))).toMatch(/starts at record \d+, but 0 records came before it/);
    expect(damaged("truncated", (b) => b.subarray(0, b.length - 1))).toContain("truncated");
    expect(damaged("short", (b) => b.subarray(0, snapshot_header_size + 10))).toContain("truncated");
    expect(damaged("empty", (b) => b.subarray(0, 0))).toContain("shorter than a header");
    expect(damaged("count", flip(good.length - snapshot_trailer_size + 8))).toMatch(/the trailer counts \d+ records, the records hold \d+/);
    expect(damaged("sha", flip(good.length - 1))).toContain("SHA-256");
    // Frames cut differently hold the same records: only the position in a frame header says where.
    expect(damaged("length", flip(snapshot_header_size + 8))).toContain("do not fit");
  });

  test("the loader refuses records that do not belong where they are", () => {
    const { w, id } = world(5);
    const chunk = w.storage.readSyncChunk(id, 0, 1, 2)!;
    expect(new SnapshotLoader(id).frame(1, chunk.bytes, 100)).toContain("starts at record 1, but 0 records came before it");
    const other = new SnapshotLoader({ ...id, digest: id.digest ^ 1n });
    let position: number | null = 0;
    let offset = 0;
    while (position !== null) {
      const c: SyncChunk = w.storage.readSyncChunk(id, position, 4096, 2)!;
      expect(other.frame(position, c.bytes, offset)).toBeNull();
      offset += c.bytes.length;
      position = c.next;
    }
    expect(other.finish()).toMatch(/^the state rebuilt from the records has digest [0-9a-f]{16}, not the checkpoint's/);
  });
});
