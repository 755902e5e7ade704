import { describe, expect, test } from "bun:test";
import { Scrubber, scrub_limits, type ScrubIndex, type ScrubLimits, type ScrubRepairing } from "./scrubber.ts";
import { ObjectStore } from "../store/object_store.ts";
import { AssertionError } from "../util/assert.ts";
import { BlockDisk, blockBytes } from "./value_keeper_fixture.ts";
import { Operation } from "../store/operations.ts";
import { encodeAbortUpload } from "../store/large_bodies.ts";

const limits: ScrubLimits = { values_per_tick: 3, bytes_per_tick: 100, pass_interval_ticks_min: 10 };

function storeOf(sizes: [string, number][]): ObjectStore {
  const store = new ObjectStore();
  let version = 0;
  for (const [key, size] of sizes)
    store.set(key, { version: ++version, timestamp: 0, size, checksum: BigInt(version), segment: 1, offset: 0 });
  return store;
}

const none: ScrubRepairing = { value: () => false, block: () => false };

/** Ticks the scrubber from tick `from` until `until`, collecting every key it hands out and the
 * ticks on which a pass completed. */
function run(
  scrubber: Scrubber,
  index: ScrubIndex,
  from: number,
  until: number,
  repairing: ScrubRepairing = none,
): { keys: string[]; passes: number[] } {
  const keys: string[] = [];
  const passes: number[] = [];
  for (let tick = from; tick < until; tick++) {
    const step = scrubber.tick(tick, true, index, repairing);
    keys.push(...step.keys);
    if (step.pass_completed) passes.push(tick);
  }
  return { keys, passes };
}

describe("Scrubber", () => {
  test("walks the namespace in key order, values_per_tick at a time, and completes a pass at the end", () => {
    const store = storeOf([
      ["e", 1],
      ["a", 1],
      ["d", 1],
      ["b", 1],
      ["c", 1],
    ]);
    const scrubber = new Scrubber(limits);
    expect(scrubber.tick(0, true, store, none)).toEqual({ keys: ["a", "b", "c"], blocks: [], pass_completed: false });
    expect(scrubber.tick(1, true, store, none)).toEqual({ keys: ["d", "e"], blocks: [], pass_completed: true });
  });

  test("the cursor wraps around, and a new pass starts no sooner than pass_interval_ticks_min after the last one started", () => {
    const store = storeOf([
      ["a", 1],
      ["b", 1],
      ["c", 1],
      ["d", 1],
    ]);
    const scrubber = new Scrubber(limits);
    const { keys, passes } = run(scrubber, store, 0, 35);
    // Passes start at ticks 0, 10, 20, 30 and each takes two ticks.
    expect(passes).toEqual([1, 11, 21, 31]);
    expect(keys).toEqual(["a", "b", "c", "d", "a", "b", "c", "d", "a", "b", "c", "d", "a", "b", "c", "d"]);
  });

  test("a pass longer than the interval is followed by the next one at once", () => {
    const store = storeOf(Array.from({ length: 40 }, (_, i): [string, number] => [`k${String(i).padStart(2, "0")}`, 1]));
    const scrubber = new Scrubber(limits);
    const { keys, passes } = run(scrubber, store, 0, 28);
    // 40 keys at 3 per tick: 14 ticks per pass, longer than the 10-tick interval.
    expect(passes).toEqual([13, 27]);
    expect(keys.length).toBe(80);
    expect(keys.slice(40)).toEqual(keys.slice(0, 40));
  });

  test("keys written or deleted during a pass: the cursor carries on after the last key handed out", () => {
    const store = storeOf([
      ["a", 1],
      ["c", 1],
      ["e", 1],
      ["g", 1],
    ]);
    const scrubber = new Scrubber(limits);
    expect(scrubber.tick(0, true, store, none).keys).toEqual(["a", "c", "e"]);
    store.set("b", { version: 10, timestamp: 0, size: 1, checksum: 1n, segment: 1, offset: 0 }); // behind the cursor: next pass
    store.set("f", { version: 11, timestamp: 0, size: 1, checksum: 1n, segment: 1, offset: 0 });
    store.remove("e"); // the cursor's own key
    expect(scrubber.tick(1, true, store, none)).toEqual({ keys: ["f", "g"], blocks: [], pass_completed: true });
  });

  test("the byte budget: a large value is paid off over the ticks after it, also ticks it may not scrub", () => {
    const store = storeOf([
      ["a", 50],
      ["b", 350],
      ["c", 10],
      ["d", 10],
    ]);
    const scrubber = new Scrubber(limits);
    // a and b are handed out (the budget is checked before each key), then the debt is 400 - 0.
    expect(scrubber.tick(0, true, store, none)).toEqual({ keys: ["a", "b"], blocks: [], pass_completed: false });
    // Each tick pays off 100 bytes: 300, 200, 100 left are still a full tick's worth or more.
    expect(scrubber.tick(1, true, store, none).keys).toEqual([]);
    expect(scrubber.tick(2, false, store, none).keys).toEqual([]);
    expect(scrubber.tick(3, true, store, none).keys).toEqual([]);
    expect(scrubber.tick(4, true, store, none)).toEqual({ keys: ["c", "d"], blocks: [], pass_completed: true });
  });

  test("the bytes handed out per tick stay within the budget plus one value, and average out to it", () => {
    const sizes: [string, number][] = Array.from({ length: 200 }, (_, i) => [`k${String(i).padStart(3, "0")}`, 1 + ((i * 37) % 90)]);
    const store = storeOf(sizes);
    const size = new Map(sizes);
    const scrubber = new Scrubber({ ...limits, values_per_tick: 16 });
    let total = 0;
    let ticks = 0;
    for (; total < 5000; ticks++) {
      const step = scrubber.tick(ticks, true, store, none);
      const bytes = step.keys.reduce((sum, key) => sum + size.get(key)!, 0);
      expect(bytes).toBeLessThan(100 + 90);
      total += bytes;
    }
    // Handed out = paid off (100 a tick) + the debt left, which is below one tick's budget plus one value.
    expect(total).toBeLessThan(100 * ticks + 190);
    expect(total / ticks).toBeGreaterThan(80);
  });

  test("values_per_tick bounds the keys handed out whatever their size", () => {
    const store = storeOf(Array.from({ length: 10 }, (_, i): [string, number] => [`k${i}`, 0]));
    expect(new Scrubber(limits).tick(0, true, store, none).keys).toEqual(["k0", "k1", "k2"]);
  });

  test("keys under repair are passed over at no cost, and the cursor moves past them", () => {
    const store = storeOf([
      ["a", 1000],
      ["b", 1000],
      ["c", 10],
      ["d", 10],
    ]);
    const scrubber = new Scrubber(limits);
    const repairing: ScrubRepairing = { value: (key) => key === "a" || key === "b", block: () => false };
    expect(scrubber.tick(0, true, store, repairing)).toEqual({ keys: ["c"], blocks: [], pass_completed: false });
    expect(scrubber.tick(1, true, store, repairing)).toEqual({ keys: ["d"], blocks: [], pass_completed: true });
  });

  test("not active: nothing is handed out and the pass does not start", () => {
    const store = storeOf([["a", 1]]);
    const scrubber = new Scrubber(limits);
    expect(scrubber.tick(0, false, store, none)).toEqual({ keys: [], blocks: [], pass_completed: false });
    // The pass starts on the first active tick, not at tick 0.
    expect(scrubber.tick(5, true, store, none)).toEqual({ keys: ["a"], blocks: [], pass_completed: true });
    expect(scrubber.tick(14, true, store, none).keys).toEqual([]);
    expect(scrubber.tick(15, true, store, none).keys).toEqual(["a"]);
  });

  test("an empty namespace starts no pass, so the first key is scrubbed as soon as it exists", () => {
    const store = new ObjectStore();
    const scrubber = new Scrubber(limits);
    expect(scrubber.tick(0, true, store, none)).toEqual({ keys: [], blocks: [], pass_completed: false });
    store.set("a", { version: 1, timestamp: 0, size: 1, checksum: 1n, segment: 1, offset: 0 });
    expect(scrubber.tick(1, true, store, none)).toEqual({ keys: ["a"], blocks: [], pass_completed: true });
  });

  test("an index that lists a key at or before the cursor is a bug, not an endless pass", () => {
    const stuck: ScrubIndex = {
      count: 1,
      list: () => ({ keys: ["a"], truncated: true }),
      get: () => ({ size: 1, version: 1 }),
      large: new ObjectStore().large,
    };
    const scrubber = new Scrubber(limits);
    // It lists "a" again however far the cursor has moved: caught within a tick or two.
    expect(() => {
      scrubber.tick(0, true, stuck, none);
      scrubber.tick(1, true, stuck, none);
    }).toThrow(AssertionError);
  });

  test("the default limits are the rates docs/STORAGE.md §10.8 states", () => {
    expect(scrub_limits).toEqual({ values_per_tick: 16, bytes_per_tick: 64 * 1024, pass_interval_ticks_min: 1000 });
    expect(() => new Scrubber({ ...limits, bytes_per_tick: 0 })).toThrow(AssertionError);
  });
});

describe("Scrubber over blocks", () => {
  const wide: ScrubLimits = { values_per_tick: 4, bytes_per_tick: 1000, pass_interval_ticks_min: 10 };

  /** Ticks until a pass completes; what it handed out. */
  function pass(scrubber: Scrubber, disk: BlockDisk, from: number): { keys: string[]; blocks: number[]; ticks: number } {
    const keys: string[] = [];
    const blocks: number[] = [];
    for (let tick = from; tick < from + 10_000; tick++) {
      const step = scrubber.tick(tick, true, disk.store, none);
      keys.push(...step.keys);
      blocks.push(...step.blocks);
      if (step.pass_completed) return { keys, blocks, ticks: tick - from + 1 };
    }
    throw new Error("no pass completed");
  }

  /** Inline values b and d, chunked objects a (3 blocks) and c (2), and two open uploads. */
  function mixed(): BlockDisk {
    const disk = new BlockDisk();
    disk.upload(
      "a",
      [1, 2, 3].map((s) => blockBytes(10, s)),
    );
    disk.put("b", blockBytes(5, 4));
    disk.upload(
      "c",
      [5, 6].map((s) => blockBytes(10, s)),
    );
    disk.put("d", blockBytes(5, 7));
    disk.openUpload(
      "u",
      [8, 9].map((s) => blockBytes(10, s)),
    );
    disk.openUpload(
      "v",
      [10].map((s) => blockBytes(10, s)),
    );
    return disk;
  }

  const objectBlocks = (disk: BlockDisk, key: string): readonly number[] => disk.store.get(key)!.chunks!.blocks;
  const uploadBlocks = (disk: BlockDisk, id: number): number[] => [...disk.store.large.upload(id)!.slots.values()].sort((x, y) => x - y);

  test("a pass hands out every inline value and every live block once: keys in order, then the uploads' blocks", () => {
    const disk = mixed();
    const [u, v] = disk.store.large.allUploads().map((upload) => upload.id);
    const { keys, blocks } = pass(new Scrubber(wide), disk, 0);
    expect(keys).toEqual(["b", "d"]);
    expect(blocks).toEqual([...objectBlocks(disk, "a"), ...objectBlocks(disk, "c"), ...uploadBlocks(disk, u!), ...uploadBlocks(disk, v!)]);
    expect(blocks.length).toBe(disk.store.large.block_count);
  });

  test("every tick takes at most values_per_tick steps, and block bytes count against the byte budget", () => {
    const disk = new BlockDisk();
    disk.upload(
      "a",
      [1, 2, 3, 4].map((s) => blockBytes(1500, s)),
    );
    const scrubber = new Scrubber(wide);
    // Each block costs 1,500 bytes of a 1,000 a tick: one is handed out while the debt is below a
    // tick's budget (0, 500, 1,000 is not, 0, 500), so four blocks take five ticks.
    const handed = Array.from({ length: 6 }, (_, tick) => scrubber.tick(tick, true, disk.store, none).blocks.length);
    expect(handed).toEqual([1, 1, 0, 1, 1, 0]);
    // A hundred tiny blocks: four steps a tick, then the pass ends.
    const many = new BlockDisk();
    many.upload(
      "z",
      Array.from({ length: 100 }, (_, i) => blockBytes(1, i)),
    );
    const { blocks, ticks } = pass(new Scrubber(wide), many, 0);
    expect(blocks.length).toBe(100);
    expect(ticks).toBe(26); // a step to enter the key, then 100 blocks, 4 a tick
  });

  test("blocks under repair are passed over; a chunked object overwritten mid-pass is not read on", () => {
    const disk = mixed();
    const a = objectBlocks(disk, "a");
    const scrubber = new Scrubber({ ...wide, values_per_tick: 2 });
    const repairing: ScrubRepairing = { value: () => false, block: (id) => id === a[1] };
    // Enter a, hand out its first block; then skip the second (under repair) and hand out the third.
    expect(scrubber.tick(0, true, disk.store, repairing).blocks).toEqual([a[0]]);
    expect(scrubber.tick(1, true, disk.store, repairing).blocks).toEqual([a[2]]);
    // b is handed out and c entered; then c is overwritten by an inline value before its blocks are read.
    const c = objectBlocks(disk, "c");
    expect(scrubber.tick(2, true, disk.store, repairing)).toEqual({ keys: ["b"], blocks: [], pass_completed: false });
    disk.put("c", blockBytes(3, 1));
    expect(disk.store.large.block(c[0]!)).toBeUndefined();
    const rest = pass(scrubber, disk, 3);
    // The new c is behind the cursor (next pass); d and the uploads' blocks follow.
    expect(rest.keys).toEqual(["d"]);
    expect(rest.blocks.length).toBe(3);
    expect(rest.blocks).not.toContain(c[0]);
  });

  test("uploads completed or aborted mid-pass: the pass goes on without them and ends; the next one reads the new object", () => {
    const disk = mixed();
    const [u, v] = disk.store.large.allUploads().map((upload) => upload.id);
    const scrubber = new Scrubber({ ...wide, values_per_tick: 1 });
    let tick = 0;
    const seen: number[] = [];
    // Walk until the first upload's first block is handed out.
    const first = uploadBlocks(disk, u!)[0]!;
    while (!seen.includes(first)) seen.push(...scrubber.tick(tick++, true, disk.store, none).blocks);
    const [aborted] = uploadBlocks(disk, v!);
    // u's blocks now belong to the object "u", a key behind the cursor: they wait for the next pass.
    disk.complete(u!);
    disk.exec(Operation.abort_upload, encodeAbortUpload(v!)); // v's block dies
    expect(disk.store.large.block(aborted!)).toBeUndefined();
    const rest = pass(scrubber, disk, tick);
    expect(rest.blocks).toEqual([]);
    expect(disk.store.large.upload_count).toBe(0);
    const next = pass(scrubber, disk, tick + 100);
    expect(next.blocks).toEqual([...objectBlocks(disk, "a"), ...objectBlocks(disk, "c"), ...objectBlocks(disk, "u")]);
  });

  test("a store with only uploads open is scrubbed; a new store (a state sync) leaves the cursor merely out of date", () => {
    const disk = new BlockDisk();
    disk.openUpload(
      "u",
      [1, 2].map((s) => blockBytes(10, s)),
    );
    const scrubber = new Scrubber({ ...wide, values_per_tick: 2 });
    expect(disk.store.count).toBe(0);
    expect(scrubber.tick(0, true, disk.store, none).blocks.length).toBe(1);
    // The replica's store is replaced by one synced from a peer: other keys, other ids.
    const synced = mixed();
    const rest = pass(scrubber, synced, 1);
    // The cursor was in the uploads: the rest of this pass is the uploads of the new store; the next pass is whole.
    expect(rest.keys).toEqual([]);
    const whole = pass(scrubber, synced, 100);
    expect(whole.blocks.length).toBe(synced.store.large.block_count);
    expect(whole.keys).toEqual(["b", "d"]);
  });
});
