import { describe, expect, spyOn, test } from "bun:test";
import * as codec from "./superblock_codec.ts";
import {
  encodeSuperblock,
  readSuperblock,
  superblock_copies,
  superblock_copy_size,
  superblock_path,
  writeSuperblock,
  type SuperblockRecord,
} from "./superblock.ts";
import { Prng } from "../util/prng.ts";
import { SECTOR_SIZE, SimFs, SimulatedCrash } from "../../sim/sim_fs.ts";
import { superblockRecord as record } from "../../tests/support/superblock_records.ts";

function open(fs: SimFs): number {
  return fs.open(superblock_path, true);
}

describe("readSuperblock", () => {
  test("a blank file has no superblock and four damaged copies", () => {
    const fs = new SimFs(new Prng(1));
    expect(readSuperblock(fs, open(fs))).toMatchObject({ record: null, damaged: superblock_copies });
  });

  test("returns the last record written, with all copies intact", () => {
    const prng = new Prng(2);
    const fs = new SimFs(new Prng(2));
    const fd = open(fs);
    let last: SuperblockRecord | null = null;
    for (let sequence = 1; sequence <= 5; sequence++) {
      last = record(prng, sequence);
      writeSuperblock(fs, fd, last);
      expect(readSuperblock(fs, fd)).toMatchObject({ record: last, damaged: 0 });
    }
    expect(fs.size(fd)).toBe(superblock_copies * superblock_copy_size);
  });

  test("picks the valid copy with the highest sequence, whichever copy holds it", () => {
    const prng = new Prng(3);
    for (let round = 0; round < 20; round++) {
      const fs = new SimFs(new Prng(round));
      const fd = open(fs);
      const records = prng.shuffle([1, 2, 3, 4].map((s) => record(prng, s * 10 + round, 2)));
      records.forEach((r, copy) => fs.pwrite(fd, encodeSuperblock(r), copy * superblock_copy_size));
      const best = records.reduce((a, b) => (b.sequence > a.sequence ? b : a));
      expect(readSuperblock(fs, fd)).toMatchObject({ record: best, damaged: 0 });
    }
  });

  test("corrupting one, two or three copies leaves the newest intact one; four leave nothing", () => {
    const prng = new Prng(4);
    for (let round = 0; round < 40; round++) {
      const fs = new SimFs(new Prng(100 + round));
      const fd = open(fs);
      const older = record(prng, 1);
      const newer = record(prng, 2);
      writeSuperblock(fs, fd, older);
      writeSuperblock(fs, fd, newer);
      const copies = prng.shuffle([0, 1, 2, 3]);
      for (let damaged = 1; damaged <= 4; damaged++) {
        const copy = copies[damaged - 1]!;
        // A sector inside the used part of the copy (the header area), so the damage is real.
        fs.corruptSector(superblock_path, (copy * superblock_copy_size) / SECTOR_SIZE + prng.int(2));
        const read = readSuperblock(fs, fd);
        expect(read.damaged).toBe(damaged);
        expect(read.record).toEqual(damaged < 4 ? newer : null);
      }
    }
  });

  test("an unreadable sector damages only its copy", () => {
    const prng = new Prng(5);
    const fs = new SimFs(new Prng(5));
    const fd = open(fs);
    const r = record(prng, 7);
    writeSuperblock(fs, fd, r);
    fs.setReadErrorSector(superblock_path, 0);
    fs.setReadErrorSector(superblock_path, (2 * superblock_copy_size) / SECTOR_SIZE + 3);
    expect(readSuperblock(fs, fd)).toMatchObject({ record: r, damaged: 2 });
  });

  test("a crash at any point of a superblock write leaves the old or the new record", () => {
    const prng = new Prng(6);
    const outcomes = new Set<string>();
    for (let seed = 1; seed <= 150; seed++) {
      for (let n = 1; n <= 6; n++) {
        const fs = new SimFs(new Prng(seed * 10 + n));
        const older = record(prng, 1);
        const newer = record(prng, 2);
        let fd = open(fs);
        fs.fsyncDir("");
        writeSuperblock(fs, fd, older);
        fs.armCrash(n);
        expect(() => writeSuperblock(fs, fd, newer)).toThrow(SimulatedCrash);
        fd = open(fs);
        const read = readSuperblock(fs, fd).record;
        const which = read === null ? "none" : read.sequence === 1 ? "old" : "new";
        outcomes.add(`${n}:${which}`);
        expect(read).toEqual(which === "old" ? older : newer);
      }
    }
    // Both outcomes actually happen (the crash points are real).
    expect([...outcomes].some((o) => o.endsWith("old"))).toBe(true);
    expect([...outcomes].some((o) => o.endsWith("new"))).toBe(true);
  });
});

describe("write order", () => {
  test("the next write starts with the half that does not hold the only copies of the newest state", () => {
    const fs = new SimFs(new Prng(9));
    const fd = open(fs);
    const prng = new Prng(10);
    const older = record(prng, 1);
    const newer = record(prng, 2);
    // Copies 0-1 hold the newer state, 2-3 the older one (a write torn between its halves).
    fs.pwrite(fd, encodeSuperblock(newer), 0);
    fs.pwrite(fd, encodeSuperblock(newer), superblock_copy_size);
    fs.pwrite(fd, encodeSuperblock(older), 2 * superblock_copy_size);
    fs.pwrite(fd, encodeSuperblock(older), 3 * superblock_copy_size);
    expect(readSuperblock(fs, fd)).toMatchObject({ record: newer, damaged: 0, first_half: 1 });
    // Newest in 2-3 only: start with 0-1.
    fs.pwrite(fd, encodeSuperblock(older), 0);
    fs.pwrite(fd, encodeSuperblock(older), superblock_copy_size);
    fs.pwrite(fd, encodeSuperblock(newer), 2 * superblock_copy_size);
    expect(readSuperblock(fs, fd)).toMatchObject({ record: newer, first_half: 0 });
  });
});

describe("a decoder bug is not damage", () => {
  test("an exception from decodeSuperblock that is not a file-system error propagates out of readSuperblock", () => {
    const fs = new SimFs(new Prng(9));
    const fd = open(fs);
    writeSuperblock(fs, fd, record(new Prng(9), 3, 2));
    const spy = spyOn(codec, "decodeSuperblock").mockImplementation(() => {
      throw new TypeError("decoder bug");
    });
    try {
      expect(() => readSuperblock(fs, fd)).toThrow(TypeError);
    } finally {
      spy.mockRestore();
    }
    expect(readSuperblock(fs, fd).damaged).toBe(0);
  });

  test("an unreadable copy is still damage, not an exception", () => {
    const fs = new SimFs(new Prng(10));
    const fd = open(fs);
    writeSuperblock(fs, fd, record(new Prng(10), 3, 2));
    fs.setReadErrorSector(superblock_path, 0);
    const result = readSuperblock(fs, fd);
    expect(result.record?.sequence).toBe(3);
    expect(result.damaged).toBe(1);
  });
});
