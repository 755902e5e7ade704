import { describe, expect, test } from "bun:test";
import { ValueRepairs, valueRepairPeer, value_repairs_max, type WantedValue } from "./value_repair.ts";
import { checksum } from "../util/checksum.ts";
import { Prng } from "../util/prng.ts";
import { AssertionError } from "../util/assert.ts";
import { ObjectStore } from "../store/object_store.ts";

const value = new TextEncoder().encode("the good copy");
const good: WantedValue = { version: 7, checksum: checksum(value) };

function storeWith(key: string, entry: WantedValue): ObjectStore {
  const store = new ObjectStore();
  store.set(key, { ...entry, timestamp: 0, size: value.length, segment: 1, offset: 0 });
  return store;
}

describe("ValueRepairs", () => {
  test("a damaged value is queued once, and its request names the version and checksum wanted", () => {
    const repairs = new ValueRepairs();
    expect(repairs.damaged("k", good)).toEqual({ key: "k", version: 7, checksum: good.checksum });
    expect(repairs.has("k")).toBe(true);
    // Found damaged again (a client's get, the scrubber) while the repair is outstanding.
    expect(repairs.damaged("k", good)).toBeNull();
    expect(repairs.size).toBe(1);
  });

  test("at most value_repairs_max repairs are outstanding; a key refused is queued once one finishes", () => {
    const repairs = new ValueRepairs();
    for (let i = 0; i < value_repairs_max; i++) expect(repairs.damaged(`k${i}`, good)).not.toBeNull();
    expect(repairs.damaged("late", good)).toBeNull();
    expect(repairs.has("late")).toBe(false);
    expect(repairs.size).toBe(value_repairs_max);
    repairs.repaired("k0");
    expect(repairs.damaged("late", good)).toEqual({ key: "late", ...good });
    expect(repairs.size).toBe(value_repairs_max);
  });

  test("outstanding repairs are asked for again in queue order; a key deleted or overwritten since is forgotten", () => {
    const repairs = new ValueRepairs(8);
    const store = new ObjectStore();
    for (const [key, version] of [
      ["c", 1],
      ["a", 2],
      ["b", 3],
      ["d", 4],
    ] as const) {
      store.set(key, { version, timestamp: 0, size: 1, checksum: BigInt(version), segment: 1, offset: 0 });
      repairs.damaged(key, store.get(key)!);
    }
    store.remove("a");
    store.set("b", { version: 9, timestamp: 0, size: 1, checksum: 9n, segment: 1, offset: 0 });
    expect(repairs.outstanding(store)).toEqual([
      { key: "c", version: 1, checksum: 1n },
      { key: "d", version: 4, checksum: 4n },
    ]);
    expect(repairs.has("a")).toBe(false);
    expect(repairs.has("b")).toBe(false);
    expect(repairs.size).toBe(2);
    // Asking again does not consume them.
    expect(repairs.outstanding(store).map((r) => r.key)).toEqual(["c", "d"]);
  });

  test("the wanted value is accepted, and the repair completes once it is written back", () => {
    const repairs = new ValueRepairs();
    const store = storeWith("k", good);
    repairs.damaged("k", store.get("k")!);
    expect(repairs.verdict("k", 7, good.checksum, value, store.get("k"))).toBe("accept");
    repairs.repaired("k");
    expect(repairs.has("k")).toBe(false);
    expect(repairs.outstanding(store)).toEqual([]);
    // A duplicate answer arriving after the repair is not wanted any more.
    expect(repairs.verdict("k", 7, good.checksum, value, store.get("k"))).toBe("unwanted");
  });

  test("a value not asked for, of another version, or for an entry that moved on is not wanted", () => {
    const repairs = new ValueRepairs();
    const store = storeWith("k", good);
    expect(repairs.verdict("k", 7, good.checksum, value, store.get("k"))).toBe("unwanted");
    repairs.damaged("k", good);
    // A stale answer: an older version of the key.
    expect(repairs.verdict("k", 6, good.checksum, value, store.get("k"))).toBe("unwanted");
    // Another key.
    expect(repairs.verdict("j", 7, good.checksum, value, store.get("j"))).toBe("unwanted");
    // The checksum claimed is not the entry's.
    expect(repairs.verdict("k", 7, good.checksum ^ 1n, value, store.get("k"))).toBe("unwanted");
    // The key was deleted, or overwritten with a new version, before the answer came.
    expect(repairs.verdict("k", 7, good.checksum, value, undefined)).toBe("unwanted");
    expect(repairs.verdict("k", 7, good.checksum, value, { version: 8, checksum: good.checksum })).toBe("unwanted");
    expect(repairs.has("k")).toBe(true);
  });

  test("a wanted value whose bytes do not match its checksum is refused and the repair stays outstanding", () => {
    const repairs = new ValueRepairs();
    const store = storeWith("k", good);
    repairs.damaged("k", good);
    const wrong = value.slice();
    wrong[0]! ^= 1;
    expect(repairs.verdict("k", 7, good.checksum, wrong, store.get("k"))).toBe("mismatch");
    expect(repairs.verdict("k", 7, good.checksum, value.subarray(1), store.get("k"))).toBe("mismatch");
    expect(repairs.outstanding(store)).toEqual([{ key: "k", ...good }]);
  });

  test("completing a repair that is not outstanding is a bug", () => {
    expect(() => new ValueRepairs().repaired("k")).toThrow(AssertionError);
    expect(() => new ValueRepairs(0)).toThrow(AssertionError);
  });
});

describe("valueRepairPeer", () => {
  test("asks every other replica and never itself, with one draw of the seeded PRNG", () => {
    for (const count of [2, 3, 5]) {
      for (let replica = 0; replica < count; replica++) {
        const random = new Prng(count * 10 + replica);
        const seen = new Set<number>();
        for (let i = 0; i < 200; i++) seen.add(valueRepairPeer(replica, count, random));
        expect([...seen].sort()).toEqual([...Array(count).keys()].filter((r) => r !== replica));
      }
    }
    const a = new Prng(1);
    const b = new Prng(1);
    valueRepairPeer(1, 3, a);
    b.int(2);
    expect(a.u32()).toBe(b.u32());
  });

  test("a replica alone has no peer to ask", () => {
    expect(() => valueRepairPeer(0, 1, new Prng(1))).toThrow(AssertionError);
  });
});

describe("ValueRepairs of blocks", () => {
  const data = new TextEncoder().encode("a block's bytes");
  const sum = checksum(data);
  /** A block table holding the given ids, each with `data`'s size and checksum. */
  const table = (...ids: number[]) => {
    const blocks = new Map(ids.map((id) => [id, { size: data.length, checksum: sum }]));
    return { block: (id: number) => blocks.get(id), blocks };
  };

  test("a damaged block is queued once by id, and counts against the limit values share", () => {
    const repairs = new ValueRepairs(3);
    expect(repairs.damagedBlock(5, sum)).toEqual({ id: 5, checksum: sum });
    expect(repairs.damagedBlock(5, sum)).toBeNull();
    expect(repairs.hasBlock(5)).toBe(true);
    expect(repairs.damaged("k", good)).not.toBeNull();
    expect(repairs.damagedBlock(6, sum)).not.toBeNull();
    expect(repairs.size).toBe(3);
    // Full: neither a value nor a block is queued until one finishes.
    expect(repairs.damagedBlock(7, sum)).toBeNull();
    expect(repairs.damaged("j", good)).toBeNull();
    repairs.repairedBlock(5);
    expect(repairs.damaged("j", good)).not.toBeNull();
  });

  test("outstanding block repairs are asked for again in queue order; a block that died since is forgotten", () => {
    const repairs = new ValueRepairs();
    repairs.damagedBlock(9, sum);
    repairs.damagedBlock(4, sum);
    repairs.damagedBlock(6, sum);
    expect(repairs.outstandingBlocks(table(4, 9))).toEqual([
      { id: 9, checksum: sum },
      { id: 4, checksum: sum },
    ]);
    expect(repairs.size).toBe(2);
    expect(repairs.hasBlock(6)).toBe(false);
  });

  test("the wanted bytes are accepted; bytes not asked for, of a dead block or another checksum are not wanted", () => {
    const repairs = new ValueRepairs();
    const { block } = table(1, 2);
    repairs.damagedBlock(1, sum);
    expect(repairs.blockVerdict(1, sum, data, { block })).toBe("accept");
    expect(repairs.blockVerdict(2, sum, data, { block })).toBe("unwanted");
    expect(repairs.blockVerdict(1, sum ^ 1n, data, { block })).toBe("unwanted");
    expect(repairs.blockVerdict(1, sum, data, table())).toBe("unwanted");
    repairs.repairedBlock(1);
    expect(repairs.blockVerdict(1, sum, data, { block })).toBe("unwanted");
    expect(() => repairs.repairedBlock(1)).toThrow(AssertionError);
  });

  test("wanted bytes that do not match the block's checksum or size are refused", () => {
    const repairs = new ValueRepairs();
    const { block } = table(1);
    repairs.damagedBlock(1, sum);
    const flipped = data.slice();
    flipped[3] = flipped[3]! ^ 0x10;
    expect(repairs.blockVerdict(1, sum, flipped, { block })).toBe("mismatch");
    expect(repairs.blockVerdict(1, sum, data.subarray(1), { block })).toBe("mismatch");
    expect(repairs.hasBlock(1)).toBe(true);
  });
});
