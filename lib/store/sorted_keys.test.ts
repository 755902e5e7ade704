import { describe, expect, test } from "bun:test";
import { SortedKeys } from "./sorted_keys.ts";
import { Prng } from "../util/prng.ts";

describe("SortedKeys", () => {
  test("range respects prefix, after and limit", () => {
    const s = new SortedKeys();
    for (const k of ["b/2", "a", "b/1", "b/3", "c", "b"]) s.insert(k);
    s.insert("b/1"); // idempotent
    expect([...s.all()]).toEqual(["a", "b", "b/1", "b/2", "b/3", "c"]);
    expect(s.range("b/", "", 10)).toEqual({ keys: ["b/1", "b/2", "b/3"], truncated: false });
    expect(s.range("b/", "b/1", 1)).toEqual({ keys: ["b/2"], truncated: true });
    expect(s.range("b/", "b/3", 5)).toEqual({ keys: [], truncated: false });
    expect(s.range("", "b/2", 2)).toEqual({ keys: ["b/3", "c"], truncated: false });
    expect(s.range("", "a", 100).keys).toEqual(["b", "b/1", "b/2", "b/3", "c"]);
    s.remove("b/2");
    s.remove("zz");
    expect(s.range("b", "", 10).keys).toEqual(["b", "b/1", "b/3"]);
  });

  test("matches a naive model over random operations", () => {
    const prng = new Prng(7);
    const s = new SortedKeys();
    const model = new Set<string>();
    const alphabet = ["a", "b", "\u0000", "\u00ff", "/"];
    const randomKey = () => Array.from({ length: prng.range(0, 3) }, () => prng.pick(alphabet)).join("");
    for (let i = 0; i < 3000; i++) {
      const k = randomKey();
      if (prng.chance(0.6)) {
        s.insert(k);
        model.add(k);
      } else {
        s.remove(k);
        model.delete(k);
      }
      if (i % 50 === 0) {
        const prefix = randomKey().slice(0, 1);
        const after = randomKey();
        const limit = prng.range(1, 5);
        const expected = [...model].sort().filter((x) => x.startsWith(prefix) && x > after);
        const got = s.range(prefix, after, limit);
        expect(got.keys).toEqual(expected.slice(0, limit));
        expect(got.truncated).toBe(expected.length > limit);
      }
    }
  });
});
