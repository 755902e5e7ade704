/** The large-object state (docs/LARGE_OBJECTS.md §4, §9.1): ownership, accounting, digest, invariants. */
import { describe, expect, test } from "bun:test";
import { ObjectStore } from "./object_store.ts";
import { slotKey, type Block, type Upload } from "./uploads.ts";
import { ClientTable } from "../vsr/client_table.ts";
import { stateDigest } from "../vsr/root.ts";
import { manifestChecksum } from "./large_bodies.ts";

const no_meta = { content_type: "", user_meta: new Uint8Array(0) };

/** A legacy state: two inline objects, no uploads ever. */
function legacyStore(): ObjectStore {
  const s = new ObjectStore();
  s.set("a", { version: 1, timestamp: 1000, size: 5, checksum: 0x1234n, segment: 1, offset: 100 });
  s.set("bb", { version: 3, timestamp: 2000, size: 0, checksum: 0xfedcba9876543210n, segment: 2, offset: 0 });
  s.revision = 4;
  return s;
}

/** One object "big" of two blocks (ids 1, 2) and one open upload holding a block (id 3). */
function largeStore(): ObjectStore {
  const s = new ObjectStore();
  const u = s.large.createUpload("big", 10, null, no_meta, 4);
  s.large.writeBlock({ upload_id: u.id, part: 1, attempt: 7n, index: 0 }, 16, 0xaan, { segment: 5, offset: 32 });
  s.large.writeBlock({ upload_id: u.id, part: 1, attempt: 7n, index: 1 }, 4, 0xbbn, { segment: 6, offset: 32 });
  s.large.adopt(u, [1, 2], "big");
  s.large.removeUpload(u);
  s.set("big", {
    version: 1,
    timestamp: 20,
    size: 20,
    checksum: manifestChecksum([0xaan, 0xbbn], 20),
    segment: 0,
    offset: 0,
    chunks: { blocks: [1, 2], ends: new Float64Array([16, 20]) },
  });
  const open = s.large.createUpload("next", 30, 100, { content_type: "text/plain", user_meta: new Uint8Array(0) }, 4);
  s.large.writeBlock({ upload_id: open.id, part: 2, attempt: 1n, index: 0 }, 8, 0xccn, { segment: 6, offset: 80 });
  s.invariants();
  return s;
}

describe("digest", () => {
  test("a legacy state digests exactly as before large objects (old data directories verify)", () => {
    // Pinned from the code before issue 14's step 2 (commit 640378f).
    const s = legacyStore();
    expect(s.digest()).toBe(0xf318463d09ed82ddn);
    expect(stateDigest(s, new ClientTable(4))).toBe(0xe18ec587afbe12ban);
    expect(stateDigest(new ObjectStore(), new ClientTable(4))).toBe(0xbb3302e8a9608868n);
    s.invariants();
  });

  test("once any upload existed, the counters and uploads are in the digest", () => {
    const s = legacyStore();
    const before = stateDigest(s, new ClientTable(4));
    const u = s.large.createUpload("x", 5000, null, no_meta, 4);
    const open = stateDigest(s, new ClientTable(4));
    expect(open).not.toBe(before);
    s.large.touch(u, 6000);
    const touched = stateDigest(s, new ClientTable(4));
    expect(touched).not.toBe(open);
    s.large.removeUpload(u);
    // No upload left, but the counter moved: not the legacy digest, so a replica that never saw
    // the upload cannot agree by accident.
    expect(s.large.digest()).toBe(0n);
    expect(stateDigest(s, new ClientTable(4))).not.toBe(before);
    s.invariants();
  });

  test("pending blocks are hashed; blocks owned by objects are covered by the manifest checksum", () => {
    const a = largeStore();
    const b = largeStore();
    expect(stateDigest(a, new ClientTable(4))).toBe(stateDigest(b, new ClientTable(4)));
    // Locations are local: moving a block does not change the digest.
    b.large.relocateBlock(1, { segment: 9, offset: 0 });
    b.large.relocateBlock(3, { segment: 9, offset: 16 });
    expect(stateDigest(b, new ClientTable(4))).toBe(stateDigest(a, new ClientTable(4)));
    expect(b.segments()).toEqual(new Set([6, 9]));
    expect(b.liveBytesIn(9)).toBe(24);
    expect(b.blocksIn(9).sort()).toEqual([1, 3]);
    b.invariants();
    // Another block in the open upload's slot does.
    b.large.writeBlock({ upload_id: 2, part: 2, attempt: 1n, index: 0 }, 8, 0xcdn, { segment: 6, offset: 80 });
    expect(stateDigest(b, new ClientTable(4))).not.toBe(stateDigest(a, new ClientTable(4)));
  });
});

describe("segment accounting", () => {
  test("segments, live bytes and keys cover inline values and blocks alike", () => {
    const s = largeStore();
    s.set("small", { version: 2, timestamp: 40, size: 3, checksum: 1n, segment: 6, offset: 0 });
    expect(s.segments()).toEqual(new Set([5, 6]));
    expect(s.liveBytesIn(5)).toBe(16);
    expect(s.liveBytesIn(6)).toBe(4 + 8 + 3);
    expect(s.keysIn(6)).toEqual(["small"]);
    expect(s.blocksIn(6).sort()).toEqual([2, 3]);
    s.remove("big");
    expect(s.segments()).toEqual(new Set([6]));
    expect(s.liveBytesIn(6)).toBe(8 + 3);
    expect(() => s.relocate("nope", { segment: 1, offset: 0 })).toThrow();
    s.invariants();
  });

  test("a chunked object cannot be relocated as a value", () => {
    const s = largeStore();
    expect(() => s.relocate("big", { segment: 1, offset: 0 })).toThrow();
  });
});

describe("invariants catch a broken state", () => {
  test("a block with no owner", () => {
    const s = largeStore();
    s.large.upload(2)!.slots.delete(slotKey(2, 1n, 0));
    expect(() => s.invariants()).toThrow(/owner|stored_bytes|digest/);
  });

  test("a block with two owners", () => {
    const s = largeStore();
    const u = s.large.upload(2)!;
    u.slots.set(slotKey(3, 1n, 0), 3);
    expect(() => s.invariants()).toThrow(/two owners|another slot/);
  });

  test("an object naming a block an upload owns", () => {
    const s = largeStore();
    const big = s.get("big")!;
    s.set("big", { ...big, chunks: { blocks: [1, 3], ends: new Float64Array([16, 24]) }, size: 24 });
    expect(() => s.invariants()).toThrow(/not owned|missing/);
  });

  test("counters below an id", () => {
    const s = largeStore();
    s.large.block_counter = 2;
    expect(() => s.invariants()).toThrow(/above the counter/);
    const t = largeStore();
    t.large.upload_counter = 1;
    expect(() => t.invariants()).toThrow(/above the counter/);
  });

  test("ends that do not ascend or do not add up to the size", () => {
    const s = largeStore();
    s.get("big")!.chunks!.ends[0] = 17;
    expect(() => s.invariants()).toThrow(/end 0/);
    const t = largeStore();
    t.get("big")!.size = 21;
    expect(() => t.invariants()).toThrow(/add up|digest/);
  });

  test("stored bytes and segment bytes that do not add up", () => {
    const s = largeStore();
    s.large.upload(2)!.stored_bytes += 1;
    expect(() => s.invariants()).toThrow(/stored_bytes/);
    const t = largeStore();
    t.large.block_bytes += 1;
    expect(() => t.invariants()).toThrow(/block_bytes/);
  });

  test("an upload's time changed without its hash", () => {
    const s = largeStore();
    s.large.upload(2)!.touched += 1;
    expect(() => s.invariants()).toThrow(/digest/);
  });
});

describe("upload table", () => {
  test("bounded by uploads_open_max", () => {
    const s = new ObjectStore();
    for (let i = 0; i < 3; i++) s.large.createUpload(`k${i}`, i, null, no_meta, 3);
    expect(() => s.large.createUpload("k3", 3, null, no_meta, 3)).toThrow(/limit/);
    expect(s.large.upload_count).toBe(3);
  });

  test("expired: by cutoff, oldest touched first, ties by id, at most max", () => {
    const s = new ObjectStore();
    const times = [50, 10, 10, 70, 30];
    const ids = times.map((t, i) => s.large.createUpload(`k${i}`, t, null, no_meta, 8).id);
    expect(s.large.expired(60, 20, 10).map((u) => u.id)).toEqual([ids[1], ids[2], ids[4]]);
    expect(s.large.expired(60, 20, 2).map((u) => u.id)).toEqual([ids[1], ids[2]]);
    expect(s.large.expired(29, 20, 10).map((u) => u.id)).toEqual([]);
    expect(s.large.expired(30, 20, 10).map((u) => u.id)).toEqual([ids[1], ids[2]]);
  });
});

describe("changes (what a delta checkpoint writes)", () => {
  test("every block and upload change is recorded once, with its newest record, and taking forgets them", () => {
    const s = largeStore();
    const first = s.takeChanges();
    // Blocks 1 and 2 were adopted (their newest record names the key), upload 1 closed, upload 2 open.
    expect([...first.blocks.keys()].sort()).toEqual([1, 2, 3]);
    expect(first.blocks.get(1)).toBe(s.large.block(1)!);
    expect(first.blocks.get(1)!.key).toBe("big");
    expect(first.uploads.get(1)).toBeNull();
    expect(first.uploads.get(2)).toBe(s.large.upload(2)!);
    expect([...first.objects.keys()]).toEqual(["big"]);
    const empty = s.takeChanges();
    expect([empty.objects.size, empty.blocks.size, empty.uploads.size]).toEqual([0, 0, 0]);

    const before = s.large.block(1)!;
    s.large.relocateBlock(1, { segment: 9, offset: 0 });
    s.large.touch(s.large.upload(2)!, 40);
    const moved = s.takeChanges();
    expect(moved.blocks.get(1)).toEqual({ ...before, segment: 9, offset: 0 });
    // Replaced, never changed in place: a checkpoint being written still holds the old record.
    expect(before.segment).toBe(5);
    expect(moved.uploads.get(2)!.touched).toBe(40);
    expect(moved.objects.size).toBe(0);

    s.remove("big"); // its blocks die
    s.large.removeUpload(s.large.upload(2)!); // and so does the pending one
    const gone = s.takeChanges();
    expect([...gone.blocks]).toEqual([
      [1, null],
      [2, null],
      [3, null],
    ]);
    expect(gone.uploads.get(2)).toBeNull();
    expect(gone.objects.get("big")).toBeNull();
  });

  test("a slot rewritten with other bytes records the new block and the death of the old", () => {
    const s = largeStore();
    s.takeChanges();
    s.large.writeBlock({ upload_id: 2, part: 2, attempt: 1n, index: 0 }, 8, 0xddn, { segment: 7, offset: 0 });
    expect([...s.takeChanges().blocks.entries()].map(([id, b]) => [id, b?.checksum ?? null])).toEqual([
      [3, null],
      [4, 0xddn],
    ]);
  });
});

describe("restore (loading a checkpoint or a sync)", () => {
  /** The records a checkpoint would hold of a store: uploads, blocks (no key: objects claim them), entries. */
  function rebuild(s: ObjectStore, edit: (blocks: Block[], uploads: Upload[]) => void = () => {}): ObjectStore | null {
    const uploads = s.large.allUploads().map((u) => ({ ...u, slots: new Map<string, number>(), stored_bytes: 0 }));
    const blocks = [...s.large.allBlocks()].map((b) => ({ ...b, key: null }));
    edit(blocks, uploads);
    const out = new ObjectStore();
    if (!out.large.restoreCounters(s.large.upload_counter, s.large.block_counter)) return null;
    for (const u of uploads) if (!out.large.restoreUpload(u)) return null;
    for (const b of blocks) if (!out.large.restoreBlock(b)) return null;
    for (const [key, entry] of s.all())
      if (!out.restoreEntry(key, { ...entry, chunks: entry.chunks && { blocks: entry.chunks.blocks, ends: new Float64Array(0) } }))
        return null;
    if (!out.restoreDone()) return null;
    out.revision = s.revision;
    return out;
  }

  test("rebuilds the same state: slots, ends, accounting, digest, and no changes", () => {
    const s = largeStore();
    const out = rebuild(s)!;
    out.invariants();
    expect(stateDigest(out, new ClientTable(4))).toBe(stateDigest(s, new ClientTable(4)));
    expect(out.get("big")!.chunks!.ends).toEqual(new Float64Array([16, 20]));
    expect(out.large.upload(2)!.slots.get(slotKey(2, 1n, 0))).toBe(3);
    expect(out.large.upload(2)!.stored_bytes).toBe(8);
    expect([...out.segments()].sort()).toEqual([...s.segments()].sort());
    expect(out.liveBytesIn(6)).toBe(s.liveBytesIn(6));
    const changes = out.takeChanges();
    expect([changes.objects.size, changes.blocks.size, changes.uploads.size]).toEqual([0, 0, 0]);
  });

  test("records that do not make a state are refused, not asserted", () => {
    expect(rebuild(largeStore(), (blocks) => blocks.shift())).toBeNull(); // a version's block is missing
    expect(rebuild(largeStore(), (_b, uploads) => uploads.pop())).toBeNull(); // a pending block without its upload
    expect(rebuild(largeStore(), (blocks) => blocks.push({ ...blocks[0]!, id: 4 }))).toBeNull(); // above the counter
    expect(rebuild(largeStore(), (blocks) => (blocks[2] = { ...blocks[2]!, slot: null }))).toBeNull(); // a block nobody owns
    expect(rebuild(largeStore(), (blocks) => (blocks[0] = { ...blocks[0]!, size: 17 }))).toBeNull(); // sizes do not add up
    expect(
      rebuild(largeStore(), (blocks) => blocks.push({ ...blocks[2]!, id: 3 })), // the same id twice
    ).toBeNull();
    expect(rebuild(largeStore(), (_b, uploads) => (uploads[0] = { ...uploads[0]!, touched: 1 }))).toBeNull(); // touched before created
  });

  test("a version cannot claim a block another version or a slot owns", () => {
    const s = largeStore();
    s.set("twin", { ...s.get("big")!, version: 2 }); // names blocks 1 and 2 too: not a state execution makes
    s.revision = 2;
    expect(rebuild(s)).toBeNull();
  });
});
