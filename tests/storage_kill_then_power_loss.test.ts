/**
 * docs/STORAGE.md §"kill -9 versus power loss": a process killed in the middle of a flush leaves
 * its writes in the kernel's page cache, not on the disk. The restarted replica reads them back
 * through that cache at recovery. If it acted on them (promised the view, acknowledged the
 * prepare) without making them durable, a power loss before the kernel writes those pages back
 * (about 30 s by default) would take back what the restarted replica acted on.
 *
 * recover() makes what it reads durable (fdatasync of the superblock, the header ring and the
 * segments, and fsync of the directories) before anything is used; these tests hold it to that.
 *
 * The simulated file system (sim/sim_fs.ts) models this exactly: its volatile image is the page
 * cache, which a process kill keeps and crash() (power loss) resolves against the durable image.
 */
import { describe, expect, test } from "bun:test";
import { FileStorage, type StorageOptions } from "../lib/storage/file_storage.ts";
import type { Fd } from "../lib/storage/fs.ts";
import { ForwardingFs } from "./support/forwarding_fs.ts";
import { formatStorage, registerPrepare } from "./support/storage_fixture.ts";
import type { Header, Message } from "../lib/net/codec.ts";
import type { VsrState } from "../lib/vsr/storage.ts";
import { Prng } from "../lib/util/prng.ts";
import { SimFs } from "../sim/sim_fs.ts";

const cluster = 0x5ca1ab1en;
const replica_count = 3;
const clients_max = 8;
const options: StorageOptions = { cluster, replica: 1, replica_count, journal_slot_count: 64, segment_size_bytes: 4096 };
const seeds = 40;

/** The process dies (kill -9) when it next calls fdatasync: nothing more is written, and what it
 * wrote stays in the page cache (the SimFs volatile image). */
class Killed extends Error {}

class KillableFs extends ForwardingFs {
  armed = false;
  constructor(readonly fs: SimFs) {
    super(fs);
  }
  override fdatasync(fd: Fd): void {
    if (this.armed) throw new Killed("kill -9");
    this.fs.fdatasync(fd);
  }
  override fsyncDir(path: string): void {
    if (this.armed) throw new Killed("kill -9");
    this.fs.fsyncDir(path);
  }
}

function formatted(seed: number): { sim: SimFs; fs: KillableFs; storage: FileStorage; state: VsrState; root: Header } {
  const sim = new SimFs(new Prng(seed));
  const fs = new KillableFs(sim);
  return { sim, fs, ...formatStorage(fs, options, clients_max) };
}

function prepare(op: number, parent: bigint, view: number): Message {
  return registerPrepare(options, op, parent, view);
}

describe("kill -9 and then a power loss (docs/STORAGE.md)", () => {
  test("a view recovered after a kill during a superblock write is still there after a power loss", () => {
    const lost: string[] = [];
    for (let seed = 1; seed <= seeds; seed++) {
      const { sim, fs, storage, state } = formatted(seed);
      storage.writeState({ ...state, view: 1 });
      storage.flush(); // view 1 is durable: promised
      storage.writeState({ ...state, view: 2 });
      fs.armed = true;
      expect(() => storage.flush()).toThrow(Killed); // killed between the first half's pwrite and its fdatasync
      fs.armed = false;
      // The restarted process reads view 2 through the page cache and acts on it (it sends
      // do_view_change or prepare_ok in view 2: a promise never to go back to view 1).
      const restarted = new FileStorage(fs, options).recover(clients_max).state!;
      expect(restarted.view).toBe(2);
      sim.crash(); // power loss before the kernel wrote the page back
      const after = new FileStorage(fs, options).recover(clients_max).state;
      if (after === null || after.view < restarted.view)
        lost.push(`seed ${seed}: acted on view ${restarted.view}, then view ${after?.view ?? "none"}`);
    }
    expect(lost).toEqual([]);
  });

  test("a prepare recovered as journaled after a kill during a flush is still journaled after a power loss", () => {
    const lost: string[] = [];
    for (let seed = 1; seed <= seeds; seed++) {
      const { sim, fs, storage, root } = formatted(seed);
      const first = prepare(1, root.checksum, 0);
      storage.writePrepare(first);
      storage.flush();
      const second = prepare(2, first.header.checksum, 0);
      storage.writePrepare(second);
      // Let the segment's fdatasync through; die at the header ring's.
      let syncs = 0;
      const sync = fs.fdatasync.bind(fs);
      fs.fdatasync = (fd: Fd) => {
        if (++syncs === 2) throw new Killed("kill -9");
        sync(fd);
      };
      expect(() => storage.flush()).toThrow(Killed);
      fs.fdatasync = sync;
      // The restarted replica finds op 2 journaled and intact: it acknowledges it (prepare_ok).
      const restarted = new FileStorage(fs, options).recover(clients_max);
      expect(restarted.journal.some((e) => e.header.op === 2 && !e.faulty)).toBe(true);
      sim.crash();
      const after = new FileStorage(fs, options).recover(clients_max);
      // Without its header record, op 2 is "never acknowledged": a do_view_change may nack it.
      if (!after.journal.some((e) => e.header.op === 2)) lost.push(`seed ${seed}: op 2 acknowledged after the restart, then absent`);
    }
    expect(lost).toEqual([]);
  });
});
