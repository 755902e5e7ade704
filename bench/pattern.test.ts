import { describe, expect, test } from "bun:test";
import { Pattern, PatternCheck, tile_bytes } from "./pattern.ts";

const size = 3 * tile_bytes + 12345;

function whole(p: Pattern): Uint8Array {
  const out = new Uint8Array(size);
  p.fill(out, 0);
  return out;
}

describe("Pattern", () => {
  test("any range is the same bytes as that range of the whole object", () => {
    const p = new Pattern(7);
    const all = whole(p);
    for (const [start, length] of [
      [0, 1],
      [3, 20],
      [tile_bytes - 5, 17],
      [2 * tile_bytes + 1, tile_bytes + 100],
      [size - 9, 9],
    ] as const) {
      const part = new Uint8Array(length);
      p.fill(part, start);
      expect(Buffer.compare(part, all.subarray(start, start + length))).toBe(0);
    }
  });

  test("chunks concatenate to the whole object", async () => {
    const p = new Pattern(7);
    const all = whole(p);
    const got: Uint8Array[] = [];
    for await (const c of p.chunks(size, 1_000_003)) got.push(c);
    expect(got.map((c) => c.length)).toEqual([1_000_003, 1_000_003, 1_000_003, size - 3_000_009]);
    expect(Buffer.compare(Buffer.concat(got), all)).toBe(0);
  });

  test("no two tiles alike, the same seed gives the same bytes, another seed other bytes", () => {
    const a = whole(new Pattern(7));
    const tiles = new Set<string>();
    for (let t = 0; t < 3; t++) tiles.add(Buffer.from(a.subarray(t * tile_bytes, (t + 1) * tile_bytes)).toString("base64"));
    expect(tiles.size).toBe(3);
    expect(Buffer.compare(whole(new Pattern(7)), a)).toBe(0);
    expect(Buffer.compare(whole(new Pattern(8)).subarray(0, 4096), a.subarray(0, 4096))).not.toBe(0);
  });
});

describe("PatternCheck", () => {
  test("accepts the object in any chunking and finds the first byte that differs", () => {
    const p = new Pattern(3);
    const all = whole(p);
    const good = new PatternCheck(p);
    for (let at = 0; at < size; at += 777_777) good.update(all.subarray(at, Math.min(size, at + 777_777)));
    expect(good.received).toBe(size);
    expect(good.first_mismatch).toBeNull();

    const bad = all.slice();
    bad[tile_bytes + 3]! ^= 1;
    const check = new PatternCheck(p);
    for (let at = 0; at < size; at += 500_000) check.update(bad.subarray(at, Math.min(size, at + 500_000)));
    expect(check.first_mismatch).toBe(tile_bytes + 3);
  });

  test("a tile served at another tile's place differs (the stamp)", () => {
    const p = new Pattern(3);
    const all = whole(p);
    const swapped = all.slice(0, 2 * tile_bytes);
    swapped.set(all.subarray(0, tile_bytes), tile_bytes);
    const check = new PatternCheck(p);
    check.update(swapped);
    expect(check.first_mismatch).not.toBeNull();
  });
});
