/**
 * Values in segment files (segments.ts), read through FileStorage.
 */
import { describe, expect, test } from "bun:test";
import { options, segmentPath, World } from "../../tests/support/storage_world.ts";
import { Prng } from "../util/prng.ts";
import { SECTOR_SIZE } from "../../sim/sim_fs.ts";

describe("FileStorage: values", () => {
  test("readValue returns null for a corrupted value and the value otherwise", () => {
    let corrupted = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const w = new World(new Prng(seed), options(), 12, 3000);
      w.run(30);
      // A value with a whole sector inside it.
      const candidates = [...w.store.all()].filter(
        ([, e]) => Math.ceil(e.offset / SECTOR_SIZE) * SECTOR_SIZE + SECTOR_SIZE <= e.offset + e.size,
      );
      if (candidates.length === 0) continue;
      const [key, entry] = w.prng.pick(candidates);
      w.fs.corruptSector(segmentPath(entry.segment), Math.ceil(entry.offset / SECTOR_SIZE));
      corrupted += 1;
      expect(w.storage.readValue(entry)).toBeNull();
      for (const [other, e] of w.store.all()) {
        if (other === key) continue;
        const overlaps =
          e.segment === entry.segment &&
          e.offset < (Math.ceil(entry.offset / SECTOR_SIZE) + 1) * SECTOR_SIZE &&
          e.offset + e.size > Math.ceil(entry.offset / SECTOR_SIZE) * SECTOR_SIZE;
        if (!overlaps) expect(w.storage.readValue(e)).toEqual(w.values.get(other)!);
      }
      // Also after a restart.
      w.fs.crash(w.prng);
      const recovered = w.reopen();
      expect(recovered.state).not.toBeNull();
      expect(w.storage.readValue(entry)).toBeNull();
    }
    expect(corrupted).toBeGreaterThan(30);
  });

  test("readValue returns null for an unreadable sector, a missing segment or a wrong checksum", () => {
    const w = new World(new Prng(5), options(), 4, 2000);
    w.run(10);
    const [key, entry] = [...w.store.all()].find(([, e]) => e.size > 0)!;
    expect(w.storage.readValue(entry)).toEqual(w.values.get(key)!);
    expect(w.storage.readValue({ ...entry, checksum: entry.checksum ^ 1n })).toBeNull();
    expect(w.storage.readValue({ ...entry, segment: 9999 })).toBeNull();
    expect(w.storage.readValue({ ...entry, offset: entry.offset + 1 })).toBeNull();
    w.fs.setReadErrorSector(segmentPath(entry.segment), Math.floor(entry.offset / SECTOR_SIZE));
    expect(w.storage.readValue(entry)).toBeNull();
  });
});
