import { describe, expect, test } from "bun:test";
import { Scrubber, scrub_limits, type ScrubIndex, type ScrubLimits } from "./scrubber.ts";
import { ObjectStore } from "../store/object_store.ts";
import { AssertionError } from "../util/assert.ts";

const limits: ScrubLimits = { values_per_tick: 3, bytes_per_tick: 100, pass_interval_ticks_min: 10 };

function storeOf(sizes: [string, number][]): ObjectStore {
  const store = new ObjectStore();
  let version = 0;
  for (const [key, size] of sizes)
    store.set(key, { version: ++version, timestamp: 0, size, checksum: BigInt(version), segment: 1, offset: 0 });
  return store;
}

const none = (): boolean => false;

/** Ticks the scrubber from tick `from` until `until`, collecting every key it hands out and the
 * ticks on which a pass completed. */
function run(
  scrubber: Scrubber,
  index: ScrubIndex,
  from: number,
  until: number,
  repairing: (key: string) => boolean = none,
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
    expect(scrubber.tick(0, true, store, none)).toEqual({ keys: ["a", "b", "c"], pass_completed: false });
    expect(scrubber.tick(1, true, store, none)).toEqual({ keys: ["d", "e"], pass_completed: true });
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
    expect(scrubber.tick(1, true, store, none)).toEqual({ keys: ["f", "g"], pass_completed: true });
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
    expect(scrubber.tick(0, true, store, none)).toEqual({ keys: ["a", "b"], pass_completed: false });
    // Each tick pays off 100 bytes: 300, 200, 100 left are still a full tick's worth or more.
    expect(scrubber.tick(1, true, store, none).keys).toEqual([]);
    expect(scrubber.tick(2, false, store, none).keys).toEqual([]);
    expect(scrubber.tick(3, true, store, none).keys).toEqual([]);
    expect(scrubber.tick(4, true, store, none)).toEqual({ keys: ["c", "d"], pass_completed: true });
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
    const repairing = (key: string): boolean => key === "a" || key === "b";
    expect(scrubber.tick(0, true, store, repairing)).toEqual({ keys: ["c"], pass_completed: false });
    expect(scrubber.tick(1, true, store, repairing)).toEqual({ keys: ["d"], pass_completed: true });
  });

  test("not active: nothing is handed out and the pass does not start", () => {
    const store = storeOf([["a", 1]]);
    const scrubber = new Scrubber(limits);
    expect(scrubber.tick(0, false, store, none)).toEqual({ keys: [], pass_completed: false });
    // The pass starts on the first active tick, not at tick 0.
    expect(scrubber.tick(5, true, store, none)).toEqual({ keys: ["a"], pass_completed: true });
    expect(scrubber.tick(14, true, store, none).keys).toEqual([]);
    expect(scrubber.tick(15, true, store, none).keys).toEqual(["a"]);
  });

  test("an empty namespace starts no pass, so the first key is scrubbed as soon as it exists", () => {
    const store = new ObjectStore();
    const scrubber = new Scrubber(limits);
    expect(scrubber.tick(0, true, store, none)).toEqual({ keys: [], pass_completed: false });
    store.set("a", { version: 1, timestamp: 0, size: 1, checksum: 1n, segment: 1, offset: 0 });
    expect(scrubber.tick(1, true, store, none)).toEqual({ keys: ["a"], pass_completed: true });
  });

  test("an index that lists a key at or before the cursor is a bug, not an endless pass", () => {
    const stuck: ScrubIndex = { count: 1, list: () => ({ keys: ["a"], truncated: true }), get: () => ({ size: 1 }) };
    const scrubber = new Scrubber(limits);
    scrubber.tick(0, true, stuck, none);
    expect(() => scrubber.tick(1, true, stuck, none)).toThrow(AssertionError);
  });

  test("the default limits are the rates docs/STORAGE.md §10.8 states", () => {
    expect(scrub_limits).toEqual({ values_per_tick: 16, bytes_per_tick: 64 * 1024, pass_interval_ticks_min: 1000 });
    expect(() => new Scrubber({ ...limits, bytes_per_tick: 0 })).toThrow(AssertionError);
  });
});
