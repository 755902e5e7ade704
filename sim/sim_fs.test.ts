import { describe, expect, test } from "bun:test";
import { FsError } from "../lib/storage/fs.ts";
import { concat } from "../lib/util/bytes.ts";
import { Prng } from "../lib/util/prng.ts";
import { SECTOR_SIZE, SimFs, SimulatedCrash } from "./sim_fs.ts";

const SEEDS = 300;

/** Deterministic bytes, different for each tag. */
function pattern(length: number, tag: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (tag * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

function read(fs: SimFs, path: string): Uint8Array | null {
  if (!fs.exists(path)) return null;
  const fd = fs.open(path, false);
  const out = new Uint8Array(fs.size(fd));
  expect(fs.pread(fd, out, 0)).toBe(out.length);
  fs.close(fd);
  return out;
}

/** Creates (or overwrites) a file with `data`, fdatasyncs it and fsyncs its parent directory. */
function writeDurable(fs: SimFs, path: string, data: Uint8Array): void {
  const fd = fs.open(path, true);
  fs.truncate(fd, 0);
  fs.pwrite(fd, data, 0);
  fs.fdatasync(fd);
  fs.close(fd);
  const slash = path.lastIndexOf("/");
  fs.fsyncDir(slash < 0 ? "" : path.slice(0, slash));
}

function code(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof FsError) return error.code;
    throw error;
  }
  return "ok";
}

function equal(a: Uint8Array | null | undefined, b: Uint8Array | null | undefined): boolean {
  if (a === null || a === undefined || b === null || b === undefined) return a === b;
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** Asserts that after a crash the volatile view equals the durable view and old fds are dead.
 * (usedBytes counts a file reachable by two names once, so the sum over paths is an upper bound
 * when renames may have left a file under two names.) */
function expectSettled(fs: SimFs, exact_used = true): void {
  expect(fs.dirtyCount()).toBe(0);
  expect(fs.openFdCount()).toBe(0);
  const durable = fs.durableSnapshot();
  const live = fs.volatileSnapshot();
  expect([...live.keys()]).toEqual([...durable.keys()]);
  for (const [path, data] of durable) expect(equal(live.get(path), data)).toBe(true);
  let used = 0;
  for (const data of durable.values()) used += data?.length ?? 0;
  if (exact_used) expect(fs.usedBytes()).toBe(used);
  else expect(fs.usedBytes()).toBeLessThanOrEqual(used);
}

describe("crash semantics of file data", () => {
  test("an unsynced write is lost, applied or torn; synced data always survives", () => {
    const old = pattern(4 * SECTOR_SIZE, 1);
    const write = pattern(4 * SECTOR_SIZE, 2);
    const write_at = SECTOR_SIZE + 100; // unaligned: overlaps the old data and extends the file
    const applied = new Uint8Array(write_at + write.length);
    applied.set(old);
    applied.set(write, write_at);
    const outcomes = new Map<string, number>([
      ["lost", 0],
      ["applied", 0],
      ["torn", 0],
    ]);
    for (let seed = 0; seed < SEEDS; seed++) {
      const fs = new SimFs(new Prng(seed));
      writeDurable(fs, "f", old);
      const fd = fs.open("f", false);
      fs.pwrite(fd, write, write_at);
      expect(equal(read(fs, "f"), applied)).toBe(true); // reads see volatile content
      expect(equal(fs.durableSnapshot().get("f"), old)).toBe(true);
      fs.crash(new Prng(seed + 1_000_000));
      expect(code(() => fs.size(fd))).toBe("EBADF");
      expectSettled(fs);
      const after = read(fs, "f")!;
      // Bytes outside the write are the synced ones; bytes inside are old or new, byte by byte.
      expect(equal(after.subarray(0, write_at), old.subarray(0, write_at))).toBe(true);
      expect(after.length).toBeGreaterThanOrEqual(old.length);
      for (let i = write_at; i < after.length; i++) {
        const was = i < old.length ? old[i] : 0;
        expect(after[i] === was || after[i] === write[i - write_at]).toBe(true);
      }
      const outcome = equal(after, old) ? "lost" : equal(after, applied) ? "applied" : "torn";
      outcomes.set(outcome, outcomes.get(outcome)! + 1);
    }
    for (const [outcome, count] of outcomes) {
      expect(count, outcome).toBeGreaterThan(SEEDS / 10);
    }
  });

  test("a torn write changes whole sectors except possibly a partial last one", () => {
    let partial = 0;
    for (let seed = 0; seed < SEEDS; seed++) {
      const fs = new SimFs(new Prng(seed));
      writeDurable(fs, "f", new Uint8Array(8 * SECTOR_SIZE));
      const fd = fs.open("f", false);
      fs.pwrite(fd, new Uint8Array(8 * SECTOR_SIZE).fill(0xff), 0);
      fs.crash();
      const after = read(fs, "f")!;
      expect(after.length).toBe(8 * SECTOR_SIZE);
      for (let sector = 0; sector < 7; sector++) {
        const bytes = after.subarray(sector * SECTOR_SIZE, (sector + 1) * SECTOR_SIZE);
        expect(bytes.every((b) => b === 0) || bytes.every((b) => b === 0xff)).toBe(true);
      }
      const last = after.subarray(7 * SECTOR_SIZE);
      const ones = last.findIndex((b) => b === 0);
      if (ones > 0) {
        partial++;
        expect(last.subarray(ones).every((b) => b === 0)).toBe(true); // a prefix of the sector
      }
    }
    expect(partial).toBeGreaterThan(0);
  });

  test("fdatasync makes writes and truncates durable; later unsynced ones resolve at a crash", () => {
    let cut = 0;
    let kept = 0;
    for (let seed = 0; seed < 100; seed++) {
      const fs = new SimFs(new Prng(seed));
      const data = pattern(3000, 3);
      writeDurable(fs, "f", data);
      const fd = fs.open("f", false);
      fs.truncate(fd, 1000);
      expect(fs.size(fd)).toBe(1000);
      fs.crash();
      const after = read(fs, "f")!;
      if (after.length === 1000) cut++;
      else kept++;
      expect(equal(after, data.subarray(0, after.length))).toBe(true);
      expect(after.length === 1000 || after.length === 3000).toBe(true);
    }
    expect(cut).toBeGreaterThan(0);
    expect(kept).toBeGreaterThan(0);

    const fs = new SimFs(new Prng(1));
    writeDurable(fs, "f", pattern(3000, 3));
    const fd = fs.open("f", false);
    fs.truncate(fd, 10_000); // extends with zeros
    fs.pwrite(fd, pattern(10, 4), 5000);
    fs.truncate(fd, 6000);
    fs.fdatasync(fd);
    const expected = concat([pattern(3000, 3), new Uint8Array(2000), pattern(10, 4), new Uint8Array(990)]);
    expect(equal(fs.durableSnapshot().get("f"), expected)).toBe(true);
    fs.crash();
    expect(equal(read(fs, "f"), expected)).toBe(true);
  });

  test("a new file's fdatasync does not make its directory entry durable", () => {
    let vanished = 0;
    let survived = 0;
    const data = pattern(1500, 5);
    for (let seed = 0; seed < 100; seed++) {
      const fs = new SimFs(new Prng(seed));
      fs.mkdir("d");
      fs.fsyncDir("");
      const fd = fs.open("d/new", true);
      fs.pwrite(fd, data, 0);
      fs.fdatasync(fd);
      expect(fs.durableSnapshot().has("d/new")).toBe(false);
      fs.crash();
      const after = read(fs, "d/new");
      if (after === null) vanished++;
      else {
        survived++;
        expect(equal(after, data)).toBe(true); // if the entry survived, the synced data did
      }
      // With fsyncDir of the parent it always survives.
      const fs2 = new SimFs(new Prng(seed));
      fs2.mkdir("d");
      fs2.fsyncDir("");
      writeDurable(fs2, "d/new", data);
      fs2.crash();
      expect(equal(read(fs2, "d/new"), data)).toBe(true);
    }
    expect(vanished).toBeGreaterThan(0);
    expect(survived).toBeGreaterThan(0);
  });

  test("a directory made without fsyncDir of its parent may vanish with its contents", () => {
    let vanished = 0;
    for (let seed = 0; seed < 100; seed++) {
      const fs = new SimFs(new Prng(seed));
      fs.mkdir("a/b");
      writeDurable(fs, "a/b/f", pattern(10, 6)); // fsyncs "a/b", not "a" or ""
      fs.fsyncDir("a");
      fs.crash();
      if (!fs.exists("a")) vanished++;
      else expect(equal(read(fs, "a/b/f"), pattern(10, 6))).toBe(true);
      fs.mkdir("x/y");
      fs.fsyncDir("x");
      fs.fsyncDir("");
      fs.crash();
      expect(fs.readdir("x")).toEqual(["y"]);
    }
    expect(vanished).toBeGreaterThan(0);
  });
  test("writes overwritten or cut before their sync still reach the medium as written", () => {
    // Overlapping unsynced writes, cuts and corruptions, then one sync: the durable image is what
    // reads saw, and a crash right after the sync changes nothing.
    for (let seed = 0; seed < 50; seed++) {
      const prng = new Prng(seed);
      const fs = new SimFs(new Prng(seed + 500));
      writeDurable(fs, "f", pattern(prng.range(1, 4000), 99));
      let model = read(fs, "f")!;
      const fd = fs.open("f", false);
      for (let step = 0; step < 30; step++) {
        const op = prng.int(8);
        if (op < 6) {
          const data = pattern(prng.range(1, 1500), seed * 100 + step);
          const offset = prng.int(4000);
          fs.pwrite(fd, data, offset);
          const next = new Uint8Array(Math.max(model.length, offset + data.length));
          next.set(model);
          next.set(data, offset);
          model = next;
        } else if (op === 6) {
          const size = prng.int(5000);
          fs.truncate(fd, size);
          const next = new Uint8Array(size);
          next.set(model.subarray(0, size));
          model = next;
        } else if (fs.durableSnapshot().get("f")!.length > 0) {
          // Corrupts the medium under the pending writes: reads still see every pending write.
          const fault = fs.corruptRandomSector("f");
          expect(fault).not.toBeNull();
          const durable = fs.durableSnapshot().get("f")!;
          const start = fault!.sector * SECTOR_SIZE;
          // Where no pending write covers the sector, reads see the flipped bits: adopt them.
          const seen = read(fs, "f")!;
          for (let i = start; i < Math.min(start + SECTOR_SIZE, durable.length, model.length); i++) {
            if (seen[i] !== model[i]) {
              expect(seen[i]).toBe(durable[i]!);
              model[i] = seen[i]!;
            }
          }
        }
        expect(equal(read(fs, "f"), model)).toBe(true);
      }
      fs.fdatasync(fd);
      expect(equal(fs.durableSnapshot().get("f"), model)).toBe(true);
      fs.crash();
      expect(equal(read(fs, "f"), model)).toBe(true);
    }
  });
  test("a crash can apply an unsynced write that a later unsynced write or cut replaced", () => {
    // A pending write's bytes stay in the volatile image until something changes that range; then
    // they are kept aside, because a crash may lose the later change and apply the earlier write.
    const n = 3 * SECTOR_SIZE;
    const old = pattern(n, 1);
    const first = pattern(n, 2);
    const second = pattern(n, 3);
    let first_only = 0;
    let uncut = 0;
    for (let seed = 0; seed < 200; seed++) {
      const fs = new SimFs(new Prng(seed));
      writeDurable(fs, "f", old);
      writeDurable(fs, "g", old);
      const f = fs.open("f", false);
      fs.pwrite(f, first, 0);
      fs.pwrite(f, second, 0);
      const g = fs.open("g", false);
      fs.pwrite(g, first, 0);
      fs.truncate(g, 0);
      fs.crash(new Prng(seed + 1_000_000));
      const after_f = read(fs, "f")!;
      for (let i = 0; i < n; i++) expect([old[i], first[i], second[i]]).toContain(after_f[i]!);
      if (equal(after_f, first)) first_only++;
      const after_g = read(fs, "g")!;
      if (after_g.length === n) {
        for (let i = 0; i < n; i++) expect([old[i], first[i]]).toContain(after_g[i]!);
        if (equal(after_g, first)) uncut++;
      } else {
        expect(after_g.length).toBe(0);
      }
    }
    expect(first_only).toBeGreaterThan(0);
    expect(uncut).toBeGreaterThan(0);
  });
});

describe("crash semantics of directory entries", () => {
  test("rename without fsyncDir is all or nothing", () => {
    const old = pattern(700, 7);
    const replacement = pattern(900, 8);
    let applied = 0;
    let lost = 0;
    for (let seed = 0; seed < SEEDS; seed++) {
      const fs = new SimFs(new Prng(seed));
      writeDurable(fs, "sb", old);
      writeDurable(fs, "sb.tmp", replacement);
      fs.rename("sb.tmp", "sb");
      expect(fs.readdir("")).toEqual(["sb"]);
      expect(equal(read(fs, "sb"), replacement)).toBe(true);
      fs.crash();
      const names = fs.readdir("");
      if (names.length === 1) {
        applied++;
        expect(names).toEqual(["sb"]);
        expect(equal(read(fs, "sb"), replacement)).toBe(true);
      } else {
        lost++;
        expect(names).toEqual(["sb", "sb.tmp"]);
        expect(equal(read(fs, "sb"), old)).toBe(true);
        expect(equal(read(fs, "sb.tmp"), replacement)).toBe(true);
      }
      // After fsyncDir the rename always holds.
      fs.rename(names.length === 1 ? "sb" : "sb.tmp", "final");
      fs.fsyncDir("");
      fs.crash();
      expect(equal(read(fs, "final"), replacement)).toBe(true);
    }
    expect(applied).toBeGreaterThan(SEEDS / 5);
    expect(lost).toBeGreaterThan(SEEDS / 5);
  });

  test("a rename across directories is all or nothing when neither side is synced", () => {
    let moved = 0;
    let stayed = 0;
    for (let seed = 0; seed < 100; seed++) {
      const fs = new SimFs(new Prng(seed));
      fs.mkdir("a");
      fs.mkdir("b");
      fs.fsyncDir("");
      writeDurable(fs, "a/f", pattern(10, 9));
      fs.rename("a/f", "b/g");
      fs.crash();
      const in_a = fs.exists("a/f");
      const in_b = fs.exists("b/g");
      expect(in_a !== in_b).toBe(true);
      if (in_b) moved++;
      else stayed++;
      expect(equal(read(fs, in_a ? "a/f" : "b/g"), pattern(10, 9))).toBe(true);
    }
    expect(moved).toBeGreaterThan(0);
    expect(stayed).toBeGreaterThan(0);
  });

  test("an unlink without fsyncDir may come back", () => {
    let back = 0;
    let gone = 0;
    for (let seed = 0; seed < 100; seed++) {
      const fs = new SimFs(new Prng(seed));
      writeDurable(fs, "x", pattern(100, 10));
      fs.unlink("x");
      expect(fs.exists("x")).toBe(false);
      fs.crash();
      if (fs.exists("x")) {
        back++;
        expect(equal(read(fs, "x"), pattern(100, 10))).toBe(true);
        fs.unlink("x");
        fs.fsyncDir("");
        fs.crash();
        expect(fs.exists("x")).toBe(false);
      } else {
        gone++;
      }
    }
    expect(back).toBeGreaterThan(0);
    expect(gone).toBeGreaterThan(0);
  });

  test("an unlinked file stays readable through an open fd", () => {
    const fs = new SimFs(new Prng(1));
    writeDurable(fs, "x", pattern(100, 11));
    const fd = fs.open("x", false);
    fs.unlink("x");
    const out = new Uint8Array(100);
    expect(fs.pread(fd, out, 0)).toBe(100);
    expect(equal(out, pattern(100, 11))).toBe(true);
    expect(fs.usedBytes()).toBe(100);
    fs.close(fd);
    expect(fs.usedBytes()).toBe(0);
  });
});

describe("namespace and errors", () => {
  test("paths, directories and error codes", () => {
    const fs = new SimFs(new Prng(1));
    expect(code(() => fs.open("/abs", true))).toBe("EINVAL");
    expect(code(() => fs.open("a/../b", true))).toBe("EINVAL");
    expect(code(() => fs.open("a//b", true))).toBe("EINVAL");
    expect(code(() => fs.open("a/", true))).toBe("EINVAL");
    expect(code(() => fs.open("./a", true))).toBe("EINVAL");
    expect(code(() => fs.mkdir("/x"))).toBe("EINVAL");
    expect(code(() => fs.open("missing", false))).toBe("ENOENT");
    expect(code(() => fs.open("nodir/f", true))).toBe("ENOENT");
    expect(code(() => fs.readdir("nodir"))).toBe("ENOENT");
    expect(code(() => fs.fsyncDir("nodir"))).toBe("ENOENT");
    expect(code(() => fs.unlink("missing"))).toBe("ENOENT");
    expect(code(() => fs.rename("missing", "b"))).toBe("ENOENT");
    expect(code(() => fs.open("", true))).toBe("EISDIR");
    expect(code(() => fs.rename("", "x"))).toBe("EINVAL");

    fs.mkdir("d/e");
    fs.mkdir("d/e"); // no error if it exists
    fs.mkdir("");
    const fd = fs.open("d/f", true);
    expect(fs.readdir("")).toEqual(["d"]);
    expect(fs.readdir("d")).toEqual(["e", "f"]);
    expect(fs.exists("")).toBe(true);
    expect(fs.exists("d/e")).toBe(true);
    expect(fs.exists("d/f/g")).toBe(false);
    expect(code(() => fs.open("d", false))).toBe("EISDIR");
    expect(code(() => fs.unlink("d/e"))).toBe("EISDIR");
    expect(code(() => fs.readdir("d/f"))).toBe("ENOTDIR");
    expect(code(() => fs.fsyncDir("d/f"))).toBe("ENOTDIR");
    expect(code(() => fs.open("d/f/g", true))).toBe("ENOTDIR");
    expect(code(() => fs.mkdir("d/f"))).toBe("EEXIST");
    expect(code(() => fs.mkdir("d/f/g"))).toBe("ENOTDIR");
    expect(code(() => fs.rename("d/f", "d/e"))).toBe("EISDIR");
    expect(code(() => fs.rename("d/e", "d/f"))).toBe("ENOTDIR");
    expect(code(() => fs.rename("d/e", "e"))).toBe("EINVAL");
    expect(code(() => fs.pwrite(fd, new Uint8Array(1), -1))).toBe("EINVAL");
    expect(code(() => fs.pread(fd, new Uint8Array(1), 1.5))).toBe("EINVAL");
    expect(code(() => fs.truncate(fd, -1))).toBe("EINVAL");
    fs.close(fd);
    expect(code(() => fs.close(fd))).toBe("EBADF");
    expect(code(() => fs.pread(fd, new Uint8Array(1), 0))).toBe("EBADF");
    expect(code(() => fs.pwrite(fd, new Uint8Array(1), 0))).toBe("EBADF");
    expect(code(() => fs.fdatasync(fd))).toBe("EBADF");

    // Directories rename within their parent, onto nothing or an empty directory.
    fs.mkdir("d/z");
    fs.rename("d/e", "d/z");
    expect(fs.readdir("d")).toEqual(["f", "z"]);
    fs.mkdir("d/z/inner");
    fs.mkdir("d/y");
    expect(code(() => fs.rename("d/y", "d/z"))).toBe("EEXIST");
    fs.rename("d/z", "d/w");
    expect(fs.readdir("d")).toEqual(["f", "w", "y"]);
    expect(fs.exists("d/w/inner")).toBe(true);

    // Renaming onto itself does nothing; onto another file replaces it.
    const a = fs.open("a", true);
    fs.pwrite(a, pattern(5, 1), 0);
    fs.close(a);
    fs.rename("a", "a");
    expect(equal(read(fs, "a"), pattern(5, 1))).toBe(true);
    fs.rename("a", "d/f");
    expect(fs.exists("a")).toBe(false);
    expect(equal(read(fs, "d/f"), pattern(5, 1))).toBe(true);
    expect(fs.usedBytes()).toBe(5);
  });

  test("pread returns fewer bytes at the end of the file and 0 past it", () => {
    const fs = new SimFs(new Prng(1));
    const fd = fs.open("f", true);
    fs.pwrite(fd, pattern(10, 1), 0);
    fs.pwrite(fd, pattern(10, 2), 20); // leaves a hole of zeros
    expect(fs.size(fd)).toBe(30);
    const out = new Uint8Array(16);
    expect(fs.pread(fd, out, 8)).toBe(16);
    expect(equal(out, concat([pattern(10, 1).subarray(8), new Uint8Array(10), pattern(10, 2).subarray(0, 4)]))).toBe(true);
    expect(fs.pread(fd, out, 25)).toBe(5);
    expect(fs.pread(fd, out, 30)).toBe(0);
    expect(fs.pread(fd, out, 100)).toBe(0);
    fs.truncate(fd, 5);
    fs.truncate(fd, 12); // the cut bytes come back as zeros
    expect(equal(read(fs, "f"), concat([pattern(10, 1).subarray(0, 5), new Uint8Array(7)]))).toBe(true);
  });

  test("the volatile view matches a plain in-memory model over random operations", () => {
    for (let seed = 0; seed < 20; seed++) {
      const prng = new Prng(seed);
      const fs = new SimFs(new Prng(seed + 77));
      const model = new Map<string, Uint8Array>();
      const names = ["a", "b", "c", "d/e"];
      fs.mkdir("d");
      for (let step = 0; step < 400; step++) {
        const name = prng.pick(names);
        const op = prng.int(6);
        if (op === 0 || !model.has(name)) {
          const fd = fs.open(name, true);
          fs.close(fd);
          if (!model.has(name)) model.set(name, new Uint8Array(0));
        } else if (op === 1) {
          const fd = fs.open(name, false);
          const data = pattern(prng.range(1, 3000), step);
          const offset = prng.int(5000);
          fs.pwrite(fd, data, offset);
          if (prng.chance(0.3)) fs.fdatasync(fd);
          fs.close(fd);
          const old = model.get(name)!;
          const next = new Uint8Array(Math.max(old.length, offset + data.length));
          next.set(old);
          next.set(data, offset);
          model.set(name, next);
        } else if (op === 2) {
          const fd = fs.open(name, false);
          const size = prng.int(6000);
          fs.truncate(fd, size);
          fs.close(fd);
          const next = new Uint8Array(size);
          next.set(model.get(name)!.subarray(0, size));
          model.set(name, next);
        } else if (op === 3) {
          const to = prng.pick(names);
          fs.rename(name, to);
          if (to !== name) {
            model.set(to, model.get(name)!);
            model.delete(name);
          }
        } else if (op === 4) {
          fs.unlink(name);
          model.delete(name);
        } else {
          fs.fsyncDir(prng.chance(0.5) ? "" : "d");
        }
        let used = 0;
        for (const [path, data] of model) {
          expect(equal(read(fs, path), data)).toBe(true);
          used += data.length;
        }
        expect(fs.usedBytes()).toBe(used);
      }
      const snapshot = fs.volatileSnapshot();
      expect([...snapshot.keys()].filter((p) => snapshot.get(p) !== null).sort()).toEqual([...model.keys()].sort());
    }
  });
});

describe("faults", () => {
  test("ENOSPC changes nothing; capacity is settable at runtime", () => {
    const fs = new SimFs(new Prng(1), { capacity_bytes: 1000 });
    const fd = fs.open("f", true);
    fs.pwrite(fd, pattern(600, 1), 0);
    fs.fdatasync(fd);
    const other = fs.open("g", true);
    fs.pwrite(other, pattern(300, 2), 0);
    expect(fs.usedBytes()).toBe(900);
    const durable_before = fs.durableFingerprint();
    expect(code(() => fs.pwrite(fd, pattern(200, 3), 550))).toBe("ENOSPC"); // 150 more bytes
    expect(code(() => fs.pwrite(other, pattern(101, 4), 300))).toBe("ENOSPC");
    expect(code(() => fs.truncate(fd, 701))).toBe("ENOSPC");
    expect(fs.counters.enospc_errors).toBe(3);
    expect(fs.size(fd)).toBe(600);
    expect(fs.size(other)).toBe(300);
    expect(fs.usedBytes()).toBe(900);
    expect(equal(read(fs, "f"), pattern(600, 1))).toBe(true);
    fs.fdatasync(fd);
    expect(fs.durableFingerprint()).toBe(durable_before);
    // Overwrites within the file and growth up to the capacity still work.
    fs.pwrite(fd, pattern(600, 5), 0);
    fs.pwrite(other, pattern(100, 6), 300);
    expect(fs.usedBytes()).toBe(1000);
    expect(code(() => fs.pwrite(other, new Uint8Array(1), 400))).toBe("ENOSPC");
    // Freeing: a cut, an unlink, or more capacity.
    fs.truncate(other, 0);
    expect(fs.usedBytes()).toBe(600);
    fs.pwrite(other, pattern(400, 7), 0);
    fs.capacity_bytes = 5000;
    fs.pwrite(other, pattern(3000, 8), 400);
    expect(fs.usedBytes()).toBe(4000);
    fs.close(other);
    fs.unlink("g");
    expect(fs.usedBytes()).toBe(600);
    fs.capacity_bytes = Infinity;
    fs.truncate(fd, 1 << 20);
    expect(fs.usedBytes()).toBe(1 << 20);
  });

  test("failNextFsync throws EIO once and the file's unsynced data is not guaranteed", () => {
    const old = pattern(2048, 1);
    const next = pattern(2048, 2);
    let lost_some = 0;
    let kept = 0;
    for (let seed = 0; seed < 100; seed++) {
      const fs = new SimFs(new Prng(seed));
      writeDurable(fs, "f", old);
      writeDurable(fs, "other", old);
      const fd = fs.open("f", false);
      const other = fs.open("other", false);
      fs.pwrite(fd, next, 0);
      fs.pwrite(other, next, 0);
      fs.failNextFsync();
      expect(code(() => fs.fdatasync(fd))).toBe("EIO");
      expect(fs.counters.fsync_errors).toBe(1);
      // The error is reported once: the retry "succeeds", but reads now show what is on the disk.
      fs.fdatasync(fd);
      const after = read(fs, "f")!;
      expect(equal(after, fs.durableSnapshot().get("f"))).toBe(true);
      for (let i = 0; i < after.length; i++) expect(after[i] === old[i] || after[i] === next[i]).toBe(true);
      if (equal(after, next)) kept++;
      else lost_some++;
      // Other files are untouched.
      expect(equal(read(fs, "other"), next)).toBe(true);
      fs.fdatasync(other);
      expect(equal(fs.durableSnapshot().get("other"), next)).toBe(true);
      fs.close(fd);
    }
    expect(lost_some).toBeGreaterThan(0);
    expect(kept).toBeGreaterThan(0);
  });

  test("corruption flips bits of one durable sector, seen by reads", () => {
    const fs = new SimFs(new Prng(3));
    const data = pattern(5 * SECTOR_SIZE - 7, 1);
    expect(code(() => fs.corruptSector("missing", 0))).toBe("ENOENT");
    fs.mkdir("journal");
    fs.fsyncDir("");
    fs.open("journal/empty", true);
    expect(code(() => fs.corruptSector("journal/empty"))).toBe("EINVAL");
    writeDurable(fs, "journal/seg1", data);
    expect(code(() => fs.corruptSector("journal/seg1", 5))).toBe("EINVAL");
    const fault = fs.corruptSector("journal/seg1", 1);
    expect(fault.path).toBe("journal/seg1");
    expect(fault.sector).toBe(1);
    expect(fault.bits.length).toBeGreaterThanOrEqual(1);
    expect(fault.bits.length).toBeLessThanOrEqual(8);
    const after = read(fs, "journal/seg1")!;
    let flipped = 0;
    for (let i = 0; i < data.length; i++) {
      const diff = after[i]! ^ data[i]!;
      if (diff !== 0) expect(i >= SECTOR_SIZE && i < 2 * SECTOR_SIZE).toBe(true);
      for (let bit = 0; bit < 8; bit++) if (diff & (1 << bit)) flipped++;
    }
    expect(flipped).toBe(fault.bits.length);
    expect(equal(fs.durableSnapshot().get("journal/seg1"), after)).toBe(true);

    // The random helper respects the prefix, and reports nothing when nothing matches.
    writeDurable(fs, "superblock", pattern(100, 2));
    expect(fs.corruptRandomSector("nothing/")).toBeNull();
    for (let i = 0; i < 10; i++) {
      const random = fs.corruptRandomSector("journal/")!;
      expect(random.path).toBe("journal/seg1");
      expect(random.sector).toBeLessThan(5);
    }
    expect(fs.counters.corruptions).toBe(11);
    expect(equal(read(fs, "superblock"), pattern(100, 2))).toBe(true);
  });

  test("corruption under a pending write shows once the write is lost, not before", () => {
    const fs = new SimFs(new Prng(4));
    writeDurable(fs, "f", new Uint8Array(2 * SECTOR_SIZE));
    const fd = fs.open("f", false);
    fs.pwrite(fd, new Uint8Array(SECTOR_SIZE).fill(7), 0); // covers all of sector 0
    fs.corruptSector("f", 0);
    expect(
      read(fs, "f")!
        .subarray(0, SECTOR_SIZE)
        .every((b) => b === 7),
    ).toBe(true);
    fs.fdatasync(fd);
    expect(
      fs
        .durableSnapshot()
        .get("f")!
        .subarray(0, SECTOR_SIZE)
        .every((b) => b === 7),
    ).toBe(true);
  });

  test("a read-error sector makes preads touching it throw EIO until rewritten", () => {
    const fs = new SimFs(new Prng(5));
    writeDurable(fs, "f", pattern(4 * SECTOR_SIZE, 1));
    fs.setReadErrorSector("f", 2);
    const fd = fs.open("f", false);
    const out = new Uint8Array(SECTOR_SIZE);
    expect(fs.pread(fd, out, 0)).toBe(SECTOR_SIZE);
    expect(fs.pread(fd, out, SECTOR_SIZE)).toBe(SECTOR_SIZE);
    expect(code(() => fs.pread(fd, out, 2 * SECTOR_SIZE))).toBe("EIO");
    expect(code(() => fs.pread(fd, out, 2 * SECTOR_SIZE - 1))).toBe("EIO");
    expect(code(() => fs.pread(fd, out, 3 * SECTOR_SIZE - 1))).toBe("EIO");
    expect(fs.pread(fd, out, 3 * SECTOR_SIZE)).toBe(SECTOR_SIZE);
    expect(fs.counters.read_errors).toBe(3);
    // It survives a crash (it is the medium), and a write to the sector remaps it.
    fs.crash();
    const fd2 = fs.open("f", false);
    expect(code(() => fs.pread(fd2, out, 2 * SECTOR_SIZE))).toBe("EIO");
    fs.pwrite(fd2, new Uint8Array(1), 2 * SECTOR_SIZE + 10);
    expect(fs.pread(fd2, out, 2 * SECTOR_SIZE)).toBe(SECTOR_SIZE);
    fs.setReadErrorSector("f", 0);
    fs.clearReadErrorSector("f", 0);
    expect(fs.pread(fd2, out, 0)).toBe(SECTOR_SIZE);
    const fault = fs.injectRandomReadError("f")!;
    expect(fault.path).toBe("f");
    expect(code(() => fs.pread(fd2, out, fault.sector * SECTOR_SIZE))).toBe("EIO");
  });

  test("misdirected writes land elsewhere in the file and leave the intended range alone", () => {
    const fs = new SimFs(new Prng(6), { misdirect_probability: 1 });
    const fd = fs.open("f", true);
    fs.fsyncDir("");
    fs.misdirect_probability = 0;
    fs.pwrite(fd, new Uint8Array(8 * SECTOR_SIZE), 0);
    fs.misdirect_probability = 1;
    const data = new Uint8Array(SECTOR_SIZE).fill(9);
    fs.pwrite(fd, data, 3 * SECTOR_SIZE);
    expect(fs.counters.misdirected_writes).toBe(1);
    const after = read(fs, "f")!;
    expect(after.length).toBe(8 * SECTOR_SIZE);
    expect(after.subarray(3 * SECTOR_SIZE, 4 * SECTOR_SIZE).every((b) => b === 0)).toBe(true);
    let landed = -1;
    for (let sector = 0; sector < 8; sector++) {
      if (after[sector * SECTOR_SIZE] === 9) landed = sector;
    }
    expect(landed).not.toBe(-1);
    expect(landed).not.toBe(3);
    expect(after.subarray(landed * SECTOR_SIZE, (landed + 1) * SECTOR_SIZE).every((b) => b === 9)).toBe(true);
    fs.fdatasync(fd);
    expect(equal(fs.durableSnapshot().get("f"), after)).toBe(true);
    // Off by default.
    const plain = new SimFs(new Prng(6));
    const pfd = plain.open("f", true);
    for (let i = 0; i < 100; i++) plain.pwrite(pfd, data, i * SECTOR_SIZE);
    expect(plain.counters.misdirected_writes).toBe(0);
  });

  test("wipe empties everything, durable and volatile", () => {
    const fs = new SimFs(new Prng(7));
    fs.mkdir("d");
    fs.fsyncDir("");
    writeDurable(fs, "d/f", pattern(100, 1));
    const fd = fs.open("d/g", true);
    fs.pwrite(fd, pattern(100, 2), 0);
    fs.wipe();
    expect(fs.readdir("")).toEqual([]);
    expect(fs.exists("d")).toBe(false);
    expect(code(() => fs.size(fd))).toBe("EBADF");
    expect(fs.usedBytes()).toBe(0);
    expect(fs.durableSnapshot().size).toBe(0);
    expect(fs.dirtyCount()).toBe(0);
    fs.crash();
    expect(fs.readdir("")).toEqual([]);
    writeDurable(fs, "new", pattern(3, 3));
    expect(fs.readdir("")).toEqual(["new"]);
  });
});

describe("armCrash", () => {
  test("throws SimulatedCrash at exactly the Nth mutation; durable state matches what was synced", () => {
    const A = pattern(1024, 1);
    const B = pattern(1024, 2);
    const C = pattern(512, 3);
    let renamed = 0;
    let not_renamed = 0;
    for (let seed = 0; seed < 60; seed++) {
      for (let n = 1; n <= 8; n++) {
        const fs = new SimFs(new Prng(seed * 100 + n));
        writeDurable(fs, "f", A);
        const fd = fs.open("f", false);
        let g = -1;
        const steps: (() => void)[] = [
          () => fs.pwrite(fd, B, 1024), // 1
          () => fs.fdatasync(fd), // 2
          () => fs.pwrite(fd, C, 0), // 3
          () => {
            g = fs.open("g", true); // 4
          },
          () => fs.fdatasync(fd), // 5
          () => fs.fsyncDir(""), // 6
          () => fs.pread(fd, new Uint8Array(10), 0), // not a mutation
          () => fs.close(g), // not a mutation
          () => fs.rename("f", "h"), // 7
          () => fs.unlink("g"), // 8
        ];
        fs.armCrash(n);
        let completed = 0;
        let crash: SimulatedCrash | null = null;
        for (const step of steps) {
          try {
            step();
            completed++;
          } catch (error) {
            if (!(error instanceof SimulatedCrash)) throw error;
            crash = error;
            break;
          }
        }
        expect(crash).not.toBeNull();
        expect(crash!.mutation).toBe(n);
        const mutations_completed = completed > 6 ? completed - 2 : completed;
        expect(mutations_completed).toBe(n - 1);
        expect(fs.crashArmedIn()).toBe(0);
        expect(code(() => fs.size(fd))).toBe("EBADF");
        expectSettled(fs);

        const name = fs.exists("h") ? "h" : "f";
        if (n >= 7) expect(fs.exists("h") !== fs.exists("f")).toBe(true);
        else expect(fs.exists("f")).toBe(true);
        if (n >= 7 && fs.exists("h")) renamed++;
        if (n >= 7 && fs.exists("f")) not_renamed++;
        const f = read(fs, name)!;
        // Bytes 0..512: A until step 3 wrote C; after step 5 synced, C exactly.
        for (let i = 0; i < 512; i++) {
          if (n < 3) expect(f[i]).toBe(A[i]!);
          else if (n >= 6) expect(f[i]).toBe(C[i]!);
          else expect(f[i] === A[i] || f[i] === C[i]).toBe(true);
        }
        expect(equal(f.subarray(512, 1024), A.subarray(512))).toBe(true);
        // Bytes 1024..2048: B, once step 2 synced it.
        if (n >= 3) expect(equal(f.subarray(1024), B)).toBe(true);
        else expect(f.length).toBeLessThanOrEqual(2048);
        // g exists only if its creation happened and (after step 6) always.
        if (n < 4) expect(fs.exists("g")).toBe(false);
        if (n === 7) expect(fs.exists("g")).toBe(true);
        // Nothing is pending afterwards: a second crash changes nothing.
        const before = fs.durableFingerprint();
        fs.crash();
        expect(fs.durableFingerprint()).toBe(before);
      }
    }
    expect(renamed).toBeGreaterThan(0);
    expect(not_renamed).toBeGreaterThan(0);
  });

  test("a failing call counts as a mutation and throws SimulatedCrash instead of its error", () => {
    const fs = new SimFs(new Prng(1));
    fs.armCrash(2);
    fs.mkdir("d");
    expect(() => fs.open("missing/f", true)).toThrow(SimulatedCrash);
    expect(fs.counters.crashes).toBe(1);
    // Reads and closes do not count; disarm works.
    fs.armCrash(1);
    fs.readdir("");
    fs.exists("d");
    expect(fs.crashArmedIn()).toBe(1);
    fs.disarmCrash();
    expect(fs.crashArmedIn()).toBe(0);
    fs.mkdir("e");
    expect(fs.counters.crashes).toBe(1);
  });
});

describe("determinism", () => {
  /** A random workload with crashes and faults; returns the durable fingerprint and counters. */
  function run(seed: number): { fingerprint: bigint; counters: string; snapshot: Map<string, Uint8Array | null> } {
    const prng = new Prng(seed);
    const fs = new SimFs(prng.fork(), { misdirect_probability: 0.05, capacity_bytes: 200_000 });
    const names = ["a", "b", "d/c", "d/e"];
    const fds = new Map<string, number>();
    for (let step = 0; step < 2000; step++) {
      const name = prng.pick(names);
      const op = prng.int(12);
      try {
        if (op === 0) fs.mkdir("d");
        else if (op === 1) fds.set(name, fds.get(name) ?? fs.open(name, true));
        else if (op <= 4 && fds.has(name)) fs.pwrite(fds.get(name)!, pattern(prng.range(1, 2000), step), prng.int(20_000));
        else if (op === 5 && fds.has(name)) fs.fdatasync(fds.get(name)!);
        else if (op === 6 && fds.has(name)) fs.truncate(fds.get(name)!, prng.int(10_000));
        else if (op === 7) fs.fsyncDir(prng.chance(0.5) ? "" : "d");
        else if (op === 8) fs.rename(name, prng.pick(names));
        else if (op === 9 && prng.chance(0.3)) fs.unlink(name);
        else if (op === 10 && prng.chance(0.1)) {
          fs.crash();
          fds.clear();
          expectSettled(fs, false);
        } else if (op === 11) {
          const choice = prng.int(4);
          if (choice === 0) fs.corruptRandomSector();
          else if (choice === 1) fs.failNextFsync();
          else if (choice === 2 && fs.crashArmedIn() === 0) fs.armCrash(prng.range(1, 20));
          else fs.capacity_bytes = prng.range(50_000, 300_000);
        }
      } catch (error) {
        if (error instanceof SimulatedCrash) {
          fds.clear();
          expectSettled(fs, false);
        } else if (!(error instanceof FsError)) throw error;
        else if (error.code === "EBADF") fds.delete(name);
      }
    }
    fs.crash();
    return { fingerprint: fs.durableFingerprint(), counters: JSON.stringify(fs.counters), snapshot: fs.durableSnapshot() };
  }

  test("the same seed and operations give byte-identical durable state (and crashes settle)", () => {
    const fingerprints = new Set<bigint>();
    for (let seed = 0; seed < 10; seed++) {
      const first = run(seed);
      const second = run(seed);
      expect(second.fingerprint).toBe(first.fingerprint);
      expect(second.counters).toBe(first.counters);
      expect([...second.snapshot.keys()]).toEqual([...first.snapshot.keys()]);
      for (const [path, data] of first.snapshot) expect(equal(second.snapshot.get(path), data)).toBe(true);
      fingerprints.add(first.fingerprint);
      // The workload really exercises crashes and faults.
      const counters = JSON.parse(first.counters) as Record<string, number>;
      for (const name of [
        "crashes",
        "unsynced_writes_torn",
        "unsynced_dir_changes_lost",
        "misdirected_writes",
        "corruptions",
        "fsync_errors",
      ]) {
        expect(counters[name], name).toBeGreaterThan(0);
      }
    }
    expect(fingerprints.size).toBeGreaterThan(5);
  });
});
