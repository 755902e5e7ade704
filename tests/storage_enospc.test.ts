/**
 * docs/STORAGE.md §"A full disk" and §"A failed fsync": rules of the storage layer, each of which
 * the code once broke (the first two found while writing STORAGE.md).
 *
 * 1. The header ring is preallocated at format so that a full disk can never make a flush fail
 *    (file_storage.ts recover()). A fresh directory has no superblock record yet, so recover()
 *    goes on to removeAll(), which once truncated journal/headers back to 0 bytes: the ring then
 *    grew by extending writes for its first journal_slot_count ops, and each of those flushes
 *    could hit ENOSPC (an FsError out of flush(): the node reopened instead of entering no_space).
 *
 * 2. An fdatasync that fails with ENOSPC (NFS, thin provisioning, or EDQUOT, which NodeFs also
 *    maps to ENOSPC) once surfaced from writeCheckpoint() as FsError ENOSPC, the code the replica
 *    reads as "disk full" (lib/vsr/state_sync_driver.ts takeCheckpoint and finish catch it, mark no_space and
 *    carry on with the same FileStorage). writeCheckpoint then fdatasynced the segments, which may hold
 *    prepares written since the last flush; the next flush fdatasyncs them again, Linux reports
 *    success (the error was reported once), the header records go out and the prepares are
 *    acknowledged although their pages may have been dropped. A failed fsync must never look like
 *    a full disk: every fdatasync failure is reported as EIO, and the replica reopens from disk
 *    (docs/DESIGN.md §5). (writeCheckpoint now leaves every fdatasync to the flush after it; the
 *    test checks that flush.)
 *
 * 3. A checkpoint skipped for a full disk left its partial .tmp (and, once, its descriptor) until
 *    the next collection, holding the space the replica waited for.
 */
import { describe, expect, test } from "bun:test";
import { FileStorage, header_record_size, ring_copies, type StorageOptions } from "../lib/storage/file_storage.ts";
import { FsError, type Fd, type FileSystem } from "../lib/storage/fs.ts";
import { ForwardingFs } from "./support/forwarding_fs.ts";
import { formatStorage, registerPrepare } from "./support/storage_fixture.ts";
import type { Header, Message } from "../lib/net/codec.ts";
import { ObjectStore } from "../lib/store/object_store.ts";
import { ClientTable } from "../lib/vsr/client_table.ts";
import { stateDigest } from "../lib/vsr/root.ts";
import type { CheckpointId, VsrState } from "../lib/vsr/storage.ts";
import { Prng } from "../lib/util/prng.ts";
import { SimFs } from "../sim/sim_fs.ts";

const cluster = 0xd15cf011n;
const replica_count = 3;
const clients_max = 8;
const options: StorageOptions = { cluster, replica: 0, replica_count, journal_slot_count: 64, segment_size_bytes: 4096 };

/** SimFs whose fdatasync can be made to fail with a chosen code, dropping the file's unsynced
 * data as a failed write-back does (SimFs.failNextFsync). */
class FailingFs extends ForwardingFs {
  fail_with: "ENOSPC" | null = null;
  constructor(readonly fs: SimFs) {
    super(fs);
  }
  override fdatasync(fd: Fd): void {
    if (this.fail_with === null) return this.fs.fdatasync(fd);
    const code = this.fail_with;
    this.fail_with = null;
    this.fs.failNextFsync();
    try {
      this.fs.fdatasync(fd);
    } catch {
      throw new FsError(code, "fdatasync: No space left on device");
    }
  }
}

function prepare(op: number, parent: bigint): Message {
  return registerPrepare(options, op, parent);
}

function format(fs: FileSystem): { storage: FileStorage; state: VsrState; root: Header } {
  return formatStorage(fs, options, clients_max);
}

describe("a full disk (docs/STORAGE.md)", () => {
  test("a formatted directory's header ring is allocated in full, so a flush never extends it", () => {
    const sim = new SimFs(new Prng(1));
    format(sim);
    const fd = sim.open("journal/headers", false);
    expect(sim.size(fd)).toBe(ring_copies * options.journal_slot_count * header_record_size);
    sim.close(fd);
  });

  test("an ENOSPC from fdatasync is not reported as a full disk", () => {
    const fs = new FailingFs(new SimFs(new Prng(2)));
    const { storage, root } = format(fs);
    const first = prepare(1, root.checksum);
    storage.writePrepare(first); // written, not yet flushed: its segment is dirty
    const store = new ObjectStore();
    const clients = new ClientTable(clients_max);
    const id: CheckpointId = { op: 1, digest: stateDigest(store, clients), checksum: first.header.checksum };
    const previous: CheckpointId = { op: 0, digest: stateDigest(store, clients), checksum: root.checksum };
    // writeCheckpoint only writes its file; the flush after it syncs that file and the segments
    // (docs/STORAGE.md §10.3), so that is where the failed fdatasync surfaces.
    storage.writeCheckpoint({ id, anchor: first.header, previous }, store, clients);
    fs.fail_with = "ENOSPC";
    let code: string | null = null;
    try {
      storage.flush();
    } catch (error) {
      code = error instanceof FsError ? error.code : "not an FsError";
    }
    expect(code).not.toBeNull(); // the failure is reported...
    expect(code).not.toBe("ENOSPC"); // ...but not as the code that means "refuse writes, carry on"
  });

  test("a checkpoint skipped for a full disk leaves no partial file holding the space it took", () => {
    // A pwrite into a full disk writes what fits, then fails (NodeFs.pwrite loops on short
    // writes). The skipped checkpoint's .tmp is garbage at once: left until the next collection (a
    // publish, which needs a checkpoint written, or a restart), it would keep the replica out of
    // space.
    class ShortWriteFs extends ForwardingFs {
      full = false;
      override pwrite(fd: Fd, buffer: Uint8Array, offset: number): void {
        if (!this.full) return this.inner.pwrite(fd, buffer, offset);
        this.inner.pwrite(fd, buffer.subarray(0, buffer.length >> 1), offset);
        throw new FsError("ENOSPC", "write: No space left on device");
      }
    }
    const sim = new SimFs(new Prng(4));
    const fs = new ShortWriteFs(sim);
    const { storage, root } = format(fs);
    const first = prepare(1, root.checksum);
    storage.writePrepare(first);
    storage.flush();
    const used = sim.usedBytes();
    const store = new ObjectStore();
    const clients = new ClientTable(clients_max);
    const digest = stateDigest(store, clients);
    const id: CheckpointId = { op: 1, digest, checksum: first.header.checksum };
    fs.full = true;
    let code: string | null = null;
    try {
      storage.writeCheckpoint({ id, anchor: first.header, previous: { op: 0, digest, checksum: root.checksum } }, store, clients);
    } catch (error) {
      code = error instanceof FsError ? error.code : "not an FsError";
    }
    fs.full = false;
    expect(code).toBe("ENOSPC"); // the replica skips the checkpoint and retries it with space
    expect(sim.readdir("checkpoint")).toEqual([]);
    expect(sim.usedBytes()).toBe(used);
    expect(storage.pending()).toBe(false); // nothing of it is left for a flush
  });
});
