import { describe, expect, test } from "bun:test";
import { ObjectStore, type ObjectEntry } from "./object_store.ts";
import { AssertionError } from "../util/assert.ts";
import { Prng } from "../util/prng.ts";

function randomKey(prng: Prng): string {
  let key = "";
  for (let i = prng.range(1, 12); i > 0; i--) key += String.fromCharCode(prng.pick([0, 0x2f, 0x61, 0x62, 0xff, prng.int(256)]));
  return key;
}

function randomEntry(prng: Prng, version: number): ObjectEntry {
  return { version, timestamp: prng.u32(), size: prng.int(10000), checksum: prng.u64(), segment: prng.int(100), offset: prng.u32() };
}

function randomEntries(prng: Prng, count: number): [string, ObjectEntry][] {
  const map = new Map<string, ObjectEntry>();
  let version = 0;
  while (map.size < count) map.set(randomKey(prng), randomEntry(prng, ++version));
  return [...map];
}

function storeOf(entries: [string, ObjectEntry][]): ObjectStore {
  const store = new ObjectStore();
  for (const [key, entry] of entries) store.set(key, { ...entry });
  return store;
}

describe("ObjectStore digest", () => {
  test("is independent of insertion order and of the history that led to the state", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const prng = new Prng(seed);
      const entries = randomEntries(prng, 50);
      const reference = storeOf(entries);
      expect(reference.digest()).not.toBe(0n);
      const shuffled = storeOf(prng.shuffle([...entries]));
      expect(shuffled.digest()).toBe(reference.digest());
      // Another history: other values first, extra keys that are later removed.
      const history = new ObjectStore();
      for (const [key] of prng.shuffle([...entries])) history.set(key, randomEntry(prng, 1));
      for (let i = 0; i < 20; i++) history.set(`extra${i}`, randomEntry(prng, 1));
      for (const [key, entry] of prng.shuffle([...entries])) history.set(key, { ...entry });
      for (let i = 0; i < 20; i++) history.remove(`extra${i}`);
      expect(history.digest()).toBe(reference.digest());
      expect(history.count).toBe(reference.count);
      expect(history.bytes).toBe(reference.bytes);
      expect([...history.all()]).toEqual([...reference.all()]);
    }
  });

  test("the empty store has digest 0, and removing everything returns to it", () => {
    const prng = new Prng(2);
    const store = new ObjectStore();
    expect(store.digest()).toBe(0n);
    const entries = randomEntries(prng, 30);
    for (const [key, entry] of entries) store.set(key, entry);
    for (const [key] of prng.shuffle(entries)) store.remove(key);
    expect(store.digest()).toBe(0n);
    expect(store.count).toBe(0);
    expect(store.bytes).toBe(0);
  });

  test("changes on every logical change: key added or removed, version, size, value checksum, key bytes", () => {
    const prng = new Prng(3);
    const entries = randomEntries(prng, 20);
    const base = storeOf(entries).digest();
    const [key, entry] = entries[7]!;
    const other_key = String.fromCharCode(key.charCodeAt(0) ^ 0x80) + key.slice(1);
    // Each change, and how to undo it.
    const changes: [string, (s: ObjectStore) => void, (s: ObjectStore) => void][] = [
      ["add a key", (s) => s.set("new key", randomEntry(prng, 99)), (s) => s.remove("new key")],
      ["remove a key", (s) => s.remove(key), (s) => s.set(key, { ...entry })],
      ["version", (s) => s.set(key, { ...entry, version: entry.version + 100 }), (s) => s.set(key, { ...entry })],
      ["size", (s) => s.set(key, { ...entry, size: entry.size + 1 }), (s) => s.set(key, { ...entry })],
      ["checksum", (s) => s.set(key, { ...entry, checksum: entry.checksum ^ 1n }), (s) => s.set(key, { ...entry })],
      [
        "key extended",
        (s) => (s.remove(key), s.set(key + "\u0000", { ...entry })),
        (s) => (s.remove(key + "\u0000"), s.set(key, { ...entry })),
      ],
      ["key byte", (s) => (s.remove(key), s.set(other_key, { ...entry })), (s) => (s.remove(other_key), s.set(key, { ...entry }))],
    ];
    const digests = new Set<bigint>([base]);
    for (const [name, change, undo] of changes) {
      const store = storeOf(entries);
      change(store);
      expect({ name, changed: store.digest() !== base }).toEqual({ name, changed: true });
      digests.add(store.digest());
      // Undoing the change restores the digest (a multiset hash, not a history hash).
      undo(store);
      expect({ name, digest: store.digest() }).toEqual({ name, digest: base });
    }
    expect(digests.size).toBe(changes.length + 1);
  });

  test("keys up to the 1024-byte maximum are hashed whole", () => {
    const base = "k".repeat(1023);
    const digests = new Set<bigint>();
    for (const last of ["\u0000", "\u0001", "\u00ff"]) {
      const store = new ObjectStore();
      store.set(base + last, { version: 1, timestamp: 0, size: 0, checksum: 0n, segment: 0, offset: 0 });
      digests.add(store.digest());
    }
    const short = new ObjectStore();
    short.set(base, { version: 1, timestamp: 0, size: 0, checksum: 0n, segment: 0, offset: 0 });
    digests.add(short.digest());
    expect(digests.size).toBe(4);
  });

  test("is unchanged by relocating values (compaction), which do move the entries", () => {
    const prng = new Prng(4);
    const entries = randomEntries(prng, 20);
    const store = storeOf(entries);
    const digest = store.digest();
    const bytes = store.bytes;
    for (const [key] of entries) store.relocate(key, { segment: 1000 + prng.int(5), offset: prng.u32() });
    expect(store.digest()).toBe(digest);
    expect(store.bytes).toBe(bytes);
    const [key] = entries[0]!;
    store.relocate(key, { segment: 77, offset: 1234 });
    expect(store.get(key)).toMatchObject({ segment: 77, offset: 1234 });
    expect(() => store.relocate("missing", { segment: 1, offset: 0 })).toThrow(AssertionError);
  });
});

describe("ObjectStore accounting", () => {
  test("count, bytes and revision follow a model through random sets and removes", () => {
    const prng = new Prng(5);
    const store = new ObjectStore();
    const model = new Map<string, number>();
    let revision = 0;
    for (let i = 0; i < 3000; i++) {
      const key = `k${prng.int(60)}`;
      if (prng.chance(0.6)) {
        const entry = randomEntry(prng, ++revision);
        store.set(key, entry);
        model.set(key, entry.size);
      } else {
        const removed = store.remove(key);
        expect(removed?.size).toBe(model.get(key));
        model.delete(key);
      }
      expect(store.count).toBe(model.size);
      expect(store.bytes).toBe([...model.values()].reduce((a, b) => a + b, 0));
      expect(store.revision).toBe(revision);
    }
    expect([...store.all()].map(([k]) => k)).toEqual([...model.keys()].sort());
  });

  test("set raises the revision to the entry's version, never lowers it", () => {
    const store = new ObjectStore();
    store.set("a", { version: 5, timestamp: 0, size: 1, checksum: 1n, segment: 0, offset: 0 });
    expect(store.revision).toBe(5);
    store.set("b", { version: 3, timestamp: 0, size: 1, checksum: 1n, segment: 0, offset: 0 });
    expect(store.revision).toBe(5);
    expect(() => store.set("c", { version: 0, timestamp: 0, size: 1, checksum: 1n, segment: 0, offset: 0 })).toThrow(AssertionError);
    expect(store.get("c")).toBeUndefined();
    expect(store.remove("zzz")).toBeUndefined();
  });

  test("list: prefix, after and limit in byte order", () => {
    const store = new ObjectStore();
    for (const key of ["b", "a\u00ff", "a", "a\u0000", "ab"])
      store.set(key, { version: 1, timestamp: 0, size: 0, checksum: 0n, segment: 0, offset: 0 });
    expect(store.list("a", "", 10)).toEqual({ keys: ["a", "a\u0000", "ab", "a\u00ff"], truncated: false });
    expect(store.list("a", "a", 2)).toEqual({ keys: ["a\u0000", "ab"], truncated: true });
    store.remove("ab");
    expect(store.list("a", "a\u0000", 10)).toEqual({ keys: ["a\u00ff"], truncated: false });
  });
});
