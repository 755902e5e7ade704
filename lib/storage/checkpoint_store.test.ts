/**
 * Checkpoints through FileStorage (checkpoint_store.ts): published, written but unpublished, and
 * garbage collection of what nothing needs.
 */
import { describe, expect, test } from "bun:test";
import { checkRecovery, expectValues, interval, options, SEEDS, segmentFiles, World } from "../../tests/support/storage_world.ts";
import { checkpointPath } from "./checkpoint_file.ts";
import { Prng } from "../util/prng.ts";

describe("FileStorage: checkpoints", () => {
  test("a published checkpoint is recovered with its store, clients and values", () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const w = new World(new Prng(seed));
      w.run(interval * w.prng.range(1, 8) + w.prng.int(interval));
      expect(w.checkpoint.op).toBeGreaterThan(0);
      w.fs.crash(w.prng);
      const recovered = w.reopen();
      expect(recovered.state!.checkpoint).toEqual(w.checkpoint);
      checkRecovery(w, recovered);
    }
  });

  test("a checkpoint written but not yet published does not replace the published one", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const w = new World(new Prng(seed));
      w.run(interval * 2 + 3);
      const published = w.checkpoint;
      w.publish = false;
      w.run(interval * 3 + 2);
      expect(w.snapshots.has(interval * 3)).toBe(true);
      expect(w.fs.exists(checkpointPath(interval * 3))).toBe(true);
      w.fs.crash(w.prng);
      const recovered = w.reopen();
      expect(recovered.state!.checkpoint).toEqual(published);
      checkRecovery(w, recovered);
      // The unpublished file is garbage after recovery.
      expect(w.fs.exists(checkpointPath(interval * 3))).toBe(false);
      expect(w.fs.exists(checkpointPath(interval * 2))).toBe(true);
    }
  });

  test("segments and checkpoint files nothing needs are deleted; everything needed is kept", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const w = new World(new Prng(seed), options(), 6);
      const published: number[] = [0];
      let checked = 0;
      while (w.op < 400) {
        const before = w.checkpoint.op;
        w.step(w.prng.range(1, 4));
        if (w.checkpoint.op === before) continue;
        published.push(w.checkpoint.op);
        const retained = published.slice(-3);
        // The last three checkpoints stay (peers may sync from them), with the files their state
        // is built from (a base and deltas); nothing else, and nothing newer than the last.
        const files = w.fs.readdir("checkpoint");
        for (const op of retained.filter((op) => op > 0)) expect(files).toContain(checkpointPath(op).slice("checkpoint/".length));
        for (const name of files) expect(Number(name.slice(0, 16))).toBeLessThanOrEqual(retained[retained.length - 1]!);
        expect(files.length).toBeLessThanOrEqual(3 + 32);
        // Needed: segments holding values of a retained checkpoint, or prepares after the oldest
        // of them or within a journal window below the newest (they serve peers' repairs), or the
        // one being appended to. Nothing else survives the publish.
        const horizon = Math.max(0, Math.min(retained[0]!, retained[retained.length - 1]! - w.opts.journal_slot_count));
        const needed = new Set<number>([w.segment_of.get(w.op)!]);
        for (const op of retained) for (const s of w.snapshots.get(op)!.segments) needed.add(s);
        for (let op = horizon + 1; op <= w.op; op++) needed.add(w.segment_of.get(op)!);
        expect(new Set(segmentFiles(w.fs))).toEqual(needed);
        checked += 1;
      }
      expect(checked).toBeGreaterThan(10);
      // Disk use stays bounded although far more was written.
      const written = new Set(w.segment_of.values()).size;
      expect(segmentFiles(w.fs).length).toBeLessThan(written / 2);
      // And after all this, the live state is intact.
      expectValues(w.storage, w.store, w.values);
      w.fs.crash(w.prng);
      checkRecovery(w, w.reopen());
    }
  });

  test("BUG: recovery reports no prepare as intact that it cannot read", () => {
    // recover() keeps journal entries up to journal_slot_count ops below the checkpoint (so
    // lagging peers can repair from them) and reports them intact, then its collectGarbage (with
    // only the current checkpoint retained) deletes the segments holding them.
    const failures: string[] = [];
    for (let seed = 1; seed <= 10; seed++) {
      const w = new World(new Prng(seed));
      w.run(150);
      w.fs.crash(w.prng);
      const recovered = w.reopen();
      const unreadable = recovered.journal
        .filter((e) => !e.faulty && w.storage.readPrepare(e.header.op, e.header.checksum) === null)
        .map((e) => e.header.op);
      if (unreadable.length > 0)
        failures.push(
          `seed ${seed}: checkpoint ${recovered.state!.checkpoint.op}, intact but unreadable ops ${unreadable.sort((a, b) => a - b).join(",")}`,
        );
    }
    expect(failures).toEqual([]);
  });
});
