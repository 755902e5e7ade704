import { type Fd, type FileSystem, FsError } from "../lib/storage/fs.ts";
import { assert } from "../lib/util/assert.ts";
import { checksum } from "../lib/util/checksum.ts";
import type { Prng } from "../lib/util/prng.ts";

/**
 * The simulator's file system (docs/DESIGN.md §5–§6): in memory, synchronous, deterministic, and honest
 * about power loss, which `kill -9` cannot test.
 *
 * Every file (inode) holds two images: the durable one (what a power cut leaves on the medium)
 * and the volatile one (what reads see now, like the page cache). pwrite and truncate change the
 * volatile image and append a pending record; fdatasync applies the file's pending records to its
 * durable image. Directories work the same way: each holds its volatile entries, its durable
 * entries and the pending changes between them (create, mkdir, unlink, rename); fsyncDir applies
 * them. fdatasync of a file never makes its directory entry durable.
 *
 * Invariant: a file's volatile image is its durable image with its pending records replayed in
 * order, and a directory's volatile entries are its durable entries with its pending changes
 * applied in order. Bytes past a file's size are zero in both images.
 *
 * A pending write's bytes are kept once: in the volatile image, where the write put them, until
 * something changes that range of the volatile image before the write is synced (a later write,
 * a truncate below it, a corruption's reread); only then are they copied aside into the file's
 * arena. Most writes (appends, the superblock's copies) are synced before anything overwrites
 * them, and copying every write into the arena first was a third of the simulator's file system
 * cost.
 *
 * crash() resolves every pending record independently: a write is lost, applied or torn (a random
 * subset of its sectors, the last possibly partially), a truncate and a directory change are lost
 * or applied (a rename as a whole). Every choice comes from the Prng, so a seed replays a run.
 */

/** The unit of torn writes, misdirected writes, corruption and read errors. */
export const SECTOR_SIZE = 512;

/** Largest file the simulator allows (a Uint8Array must hold it). */
export const FILE_SIZE_MAX = 2 ** 31;

/** Thrown by a mutating call when a crash armed by armCrash() fires inside it. When it is thrown
 * the file system has already crashed: every fd is invalid and only durable state remains. */
export class SimulatedCrash extends Error {
  override name = "SimulatedCrash";
  constructor(
    readonly operation: string,
    readonly mutation: number,
  ) {
    super(`simulated power loss during ${operation} (mutation ${mutation} after armCrash)`);
  }
}

export interface SimFsOptions {
  /** Total bytes of all files; a pwrite or truncate that would exceed it fails with ENOSPC.
   * Default: unlimited. */
  capacity_bytes?: number;
  /** Probability (0..1) that a pwrite lands at another sector-aligned offset of the same file.
   * Default 0. */
  misdirect_probability?: number;
  /** Files whose writes are never misdirected (opened under exactly these paths). */
  misdirect_exempt?: string[];
}

/** What a sector fault did, for the simulator's fault log. */
export interface SectorFault {
  path: string;
  sector: number;
  /** Bit indexes flipped within the sector (byte = bit >> 3); empty for a read error. */
  bits: number[];
}

/** Path -> durable (or volatile) content; null for a directory. Sorted by path, root excluded. */
export type FsSnapshot = Map<string, Uint8Array | null>;

/** Operation counts, for the simulator's statistics and for tests. */
export class SimFsCounters {
  /** Calls of mutating operations (the ones armCrash counts). */
  mutations = 0;
  opens = 0;
  creates = 0;
  closes = 0;
  preads = 0;
  pread_bytes = 0;
  pwrites = 0;
  pwrite_bytes = 0;
  truncates = 0;
  fdatasyncs = 0;
  /** Pending write bytes made durable by fdatasync. */
  fdatasync_bytes = 0;
  fsync_dirs = 0;
  renames = 0;
  unlinks = 0;
  mkdirs = 0;
  crashes = 0;
  wipes = 0;
  /** Fates of unsynced records at crashes and failed fsyncs. */
  unsynced_writes_lost = 0;
  unsynced_writes_applied = 0;
  unsynced_writes_torn = 0;
  unsynced_truncates_lost = 0;
  unsynced_truncates_applied = 0;
  unsynced_dir_changes_lost = 0;
  unsynced_dir_changes_applied = 0;
  misdirected_writes = 0;
  corruptions = 0;
  /** preads that failed with EIO on a read-error sector. */
  read_errors = 0;
  fsync_errors = 0;
  enospc_errors = 0;
}

const EMPTY = new Uint8Array(0);
/** Pending-record stride: [file offset (or new size), arena offset (IN_VOLATILE: the bytes are
 * the volatile image's at the file offset), length (TRUNCATE: a truncate)]. */
const RECORD = 3;
const TRUNCATE = -1;
const IN_VOLATILE = -1;
/** A file's pending-byte arena above this size is released after a sync instead of reused. */
const ARENA_KEEP_MAX = 4 << 20;

class FileNode {
  readonly kind = "file";
  /** Volatile image; bytes at and past `size` are zero. */
  data: Uint8Array = EMPTY;
  size = 0;
  /** Durable image; bytes at and past `durable_size` are zero. */
  durable: Uint8Array = EMPTY;
  durable_size = 0;
  /** Pending records, RECORD numbers each, oldest first. */
  pending: number[] = [];
  /** Copies of pending write bytes the volatile image no longer holds, referenced by the records. */
  arena: Uint8Array = EMPTY;
  arena_used = 0;
  /** Bytes of all pending writes (SimFsCounters.fdatasync_bytes). */
  pending_bytes = 0;
  /** The file range holding every pending write whose bytes are IN_VOLATILE (empty: low >= high):
   * a change of the volatile image outside it needs no look at the records. */
  volatile_low = Infinity;
  volatile_high = 0;
  /** In SimFs.dirty_files. */
  dirty = false;
  /** Volatile directory entries naming this file. */
  links = 0;
  /** Open fds. */
  opens = 0;
  read_errors: Set<number> | null = null;
  /** Visit stamp for tree walks. */
  mark = 0;
  /** Writes to it are never misdirected (SimFsOptions.misdirect_exempt). */
  exempt = false;
}

class DirNode {
  readonly kind = "dir";
  entries = new Map<string, Node>();
  durable = new Map<string, Node>();
  pending: DirChange[] = [];
  mark = 0;
}

type Node = FileNode | DirNode;

/** One unsynced directory change: remove `remove` (if not null), then set `add` to `node`. A
 * rename within one directory is one change; across directories it is one change in each,
 * linked as partners so a crash applies or loses both sides together. */
interface DirChange {
  remove: string | null;
  add: string | null;
  node: Node | null;
  partner: DirChange | null;
  /** At a crash: 0 undecided, 1 applied, 2 lost. */
  decision: 0 | 1 | 2;
}

export class SimFs implements FileSystem {
  readonly counters = new SimFsCounters();
  private root = new DirNode();
  private readonly fds = new Map<Fd, FileNode>();
  private next_fd = 3;
  private readonly dirty_files = new Set<FileNode>();
  private readonly dirty_dirs = new Set<DirNode>();
  private used = 0;
  private capacity = Infinity;
  private misdirect = 0;
  private readonly misdirect_exempt: Set<string>;
  private fail_next_fsync = false;
  /** Mutations left until an armed crash fires; 0 when not armed. */
  private crash_countdown = 0;
  private crash_armed_at = 0;
  private epoch = 0;

  constructor(
    private readonly prng: Prng,
    options: SimFsOptions = {},
  ) {
    if (options.capacity_bytes !== undefined) this.capacity_bytes = options.capacity_bytes;
    if (options.misdirect_probability !== undefined) this.misdirect_probability = options.misdirect_probability;
    this.misdirect_exempt = new Set(options.misdirect_exempt ?? []);
  }

  // ---- FileSystem -------------------------------------------------------------------------------

  open(path: string, create: boolean): Fd {
    if (create) {
      this.counters.mutations++;
      if (this.crash_countdown !== 0 && this.tick()) this.crashDuring("open", () => this.openNow(path, true));
    }
    return this.openNow(path, create);
  }

  close(fd: Fd): void {
    const node = this.file(fd);
    this.fds.delete(fd);
    node.opens--;
    this.counters.closes++;
    this.releaseIfDead(node);
  }

  pread(fd: Fd, buffer: Uint8Array, offset: number): number {
    const node = this.file(fd);
    checkOffset(offset, "pread");
    this.counters.preads++;
    if (offset >= node.size) return 0;
    const count = Math.min(buffer.length, node.size - offset);
    if (count === 0) return 0;
    if (node.read_errors !== null) this.checkReadErrors(node, offset, offset + count);
    buffer.set(node.data.subarray(offset, offset + count));
    this.counters.pread_bytes += count;
    return count;
  }

  pwrite(fd: Fd, buffer: Uint8Array, offset: number): void {
    this.counters.mutations++;
    if (this.crash_countdown !== 0 && this.tick()) this.crashDuring("pwrite", () => this.pwriteNow(fd, buffer, offset));
    this.pwriteNow(fd, buffer, offset);
  }

  fdatasync(fd: Fd): void {
    this.counters.mutations++;
    if (this.crash_countdown !== 0 && this.tick()) this.crashDuring("fdatasync", () => this.file(fd));
    this.fdatasyncNow(fd);
  }

  truncate(fd: Fd, size: number): void {
    this.counters.mutations++;
    if (this.crash_countdown !== 0 && this.tick()) this.crashDuring("truncate", () => this.truncateNow(fd, size));
    this.truncateNow(fd, size);
  }

  size(fd: Fd): number {
    return this.file(fd).size;
  }

  fsyncDir(path: string): void {
    this.counters.mutations++;
    if (this.crash_countdown !== 0 && this.tick()) this.crashDuring("fsyncDir", () => this.dirAt(path));
    this.fsyncDirNow(path);
  }

  rename(from: string, to: string): void {
    this.counters.mutations++;
    if (this.crash_countdown !== 0 && this.tick()) this.crashDuring("rename", () => this.renameNow(from, to));
    this.renameNow(from, to);
  }

  unlink(path: string): void {
    this.counters.mutations++;
    if (this.crash_countdown !== 0 && this.tick()) this.crashDuring("unlink", () => this.unlinkNow(path));
    this.unlinkNow(path);
  }

  mkdir(path: string): void {
    this.counters.mutations++;
    if (this.crash_countdown !== 0 && this.tick()) this.crashDuring("mkdir", () => this.mkdirNow(path));
    this.mkdirNow(path);
  }

  readdir(path: string): string[] {
    return Array.from(this.dirAt(path).entries.keys()).sort();
  }

  exists(path: string): boolean {
    const parts = splitPath(path);
    let node: Node = this.root;
    for (const part of parts) {
      if (node.kind !== "dir") return false;
      const next = node.entries.get(part);
      if (next === undefined) return false;
      node = next;
    }
    return true;
  }

  // ---- Power loss and faults --------------------------------------------------------------------

  /**
   * Power loss. Every unsynced record is resolved independently with `prng`: directory changes
   * are lost or applied (a rename as a whole), truncates lost or applied, writes lost, applied or
   * torn. Then the volatile state becomes the durable state and every open fd becomes invalid
   * (EBADF). Files no durable entry reaches are gone. Fault settings (capacity, misdirection,
   * failNextFsync, an armed crash, read-error sectors of surviving files) stay as they were.
   */
  crash(prng: Prng = this.prng): void {
    this.counters.crashes++;
    for (const dir of this.dirty_dirs) {
      for (const change of dir.pending) {
        let applied: boolean;
        if (change.partner !== null && change.partner.decision !== 0) applied = change.partner.decision === 1;
        else applied = prng.int(2) === 1;
        change.decision = applied ? 1 : 2;
        if (applied) {
          applyChange(dir.durable, change);
          this.counters.unsynced_dir_changes_applied++;
        } else {
          this.counters.unsynced_dir_changes_lost++;
        }
      }
      dir.pending = [];
    }
    this.dirty_dirs.clear();

    // The durable tree is the new namespace: recount links and reset every directory's entries.
    const epoch = ++this.epoch;
    const files: FileNode[] = [];
    this.walkDurable(this.root, epoch, files);

    for (const node of this.dirty_files) {
      if (node.mark === epoch) {
        this.settle(node, prng);
      } else {
        clearPending(node);
      }
      node.dirty = false;
    }
    this.dirty_files.clear();

    this.fds.clear();
    let used = 0;
    for (const node of files) used += node.size;
    this.used = used;
  }

  /** After `after_mutations` further mutating calls (open with create, pwrite, truncate,
   * fdatasync, fsyncDir, rename, unlink, mkdir; failing calls count too), the last of them runs,
   * then the file system crashes with the constructor's Prng and that call throws SimulatedCrash
   * instead of returning (or of throwing its own FsError). */
  armCrash(after_mutations: number): void {
    assert(Number.isSafeInteger(after_mutations) && after_mutations >= 1, `armCrash: after_mutations must be >= 1, got ${after_mutations}`);
    this.crash_countdown = after_mutations;
    this.crash_armed_at = this.counters.mutations;
  }

  disarmCrash(): void {
    this.crash_countdown = 0;
  }

  /** Mutations left before an armed crash fires, or 0 if none is armed. */
  crashArmedIn(): number {
    return this.crash_countdown;
  }

  /** The next fdatasync (of any file) throws EIO after dropping that file's dirty data the way a
   * crash would (each pending record lost, applied or torn), and resetting its volatile image to
   * the durable result. The error is reported once: a later fdatasync succeeds. */
  failNextFsync(): void {
    this.fail_next_fsync = true;
  }

  /** A replaced disk: every file and directory, durable and volatile, is gone (with their
   * read-error sectors); fds are invalid. Other fault settings stay. */
  wipe(): void {
    this.counters.wipes++;
    this.root = new DirNode();
    this.fds.clear();
    for (const node of this.dirty_files) node.dirty = false;
    this.dirty_files.clear();
    this.dirty_dirs.clear();
    this.used = 0;
  }

  /** Latent corruption: flips 1..8 random bits of a durable sector of the file (a random one if
   * `sector` is omitted). Reads see it unless a pending write covers those bytes. */
  corruptSector(path: string, sector?: number): SectorFault {
    const node = this.fileAt(path);
    const sectors = Math.ceil(node.durable_size / SECTOR_SIZE);
    if (sectors === 0) throw new FsError("EINVAL", `corruptSector: ${show(path)} has no durable data`);
    if (sector === undefined) sector = this.prng.int(sectors);
    else if (!Number.isSafeInteger(sector) || sector < 0 || sector >= sectors) {
      throw new FsError("EINVAL", `corruptSector: sector ${sector} is outside ${show(path)}'s ${sectors} durable sectors`);
    }
    const start = sector * SECTOR_SIZE;
    const end = Math.min(start + SECTOR_SIZE, node.durable_size);
    const bit_count = (end - start) * 8;
    const flips = Math.min(this.prng.range(1, 8), bit_count);
    const chosen = new Set<number>();
    while (chosen.size < flips) chosen.add(this.prng.int(bit_count));
    const bits = Array.from(chosen).sort((a, b) => a - b);
    for (const bit of bits) node.durable[start + (bit >> 3)] ^= 1 << (bit & 7);
    refreshVolatile(node, start, end);
    this.counters.corruptions++;
    return { path, sector, bits };
  }

  /** Corrupts a random durable sector of a random file whose path starts with `path_prefix`; null
   * if no such file has durable data. */
  corruptRandomSector(path_prefix = "", exclude: string[] = []): SectorFault | null {
    const path = this.pickFile(path_prefix, exclude);
    return path === null ? null : this.corruptSector(path);
  }

  /** From now on, a pread touching `sector` of the file throws EIO, until a pwrite touches the
   * sector (the drive remaps it), the file is cut below it, or the error is cleared. */
  setReadErrorSector(path: string, sector: number): void {
    if (!Number.isSafeInteger(sector) || sector < 0) throw new FsError("EINVAL", `setReadErrorSector: bad sector ${sector}`);
    const node = this.fileAt(path);
    node.read_errors ??= new Set();
    node.read_errors.add(sector);
  }

  clearReadErrorSector(path: string, sector: number): void {
    const node = this.fileAt(path);
    node.read_errors?.delete(sector);
    if (node.read_errors?.size === 0) node.read_errors = null;
  }

  /** Makes a random durable sector of a random file under `path_prefix` unreadable; null if no
   * such file has durable data. */
  injectRandomReadError(path_prefix = "", exclude: string[] = []): SectorFault | null {
    const path = this.pickFile(path_prefix, exclude);
    if (path === null) return null;
    const node = this.fileAt(path);
    const sector = this.prng.int(Math.ceil(node.durable_size / SECTOR_SIZE));
    this.setReadErrorSector(path, sector);
    return { path, sector, bits: [] };
  }

  get capacity_bytes(): number {
    return this.capacity;
  }

  /** Settable at any time (Infinity: unlimited). Lowering it below usedBytes() removes nothing;
   * it only makes growing writes fail. */
  set capacity_bytes(bytes: number) {
    assert(
      bytes === Infinity || (Number.isSafeInteger(bytes) && bytes >= 0),
      `capacity_bytes must be a non-negative integer or Infinity, got ${bytes}`,
    );
    this.capacity = bytes;
  }

  get misdirect_probability(): number {
    return this.misdirect;
  }

  set misdirect_probability(probability: number) {
    assert(probability >= 0 && probability <= 1, `misdirect_probability must be in [0, 1], got ${probability}`);
    this.misdirect = probability;
  }

  // ---- Inspection -------------------------------------------------------------------------------

  /** Bytes of all files the volatile namespace or an open fd still reaches (their volatile sizes). */
  usedBytes(): number {
    return this.used;
  }

  openFdCount(): number {
    return this.fds.size;
  }

  /** Files with unsynced writes or truncates, plus directories with unsynced changes. */
  dirtyCount(): number {
    return this.dirty_files.size + this.dirty_dirs.size;
  }

  /** What a crash that loses every unsynced record would leave: the durable namespace, with each
   * file's durable content (copies). */
  durableSnapshot(): FsSnapshot {
    return this.snapshot(true);
  }

  /** What reads see now (copies). */
  volatileSnapshot(): FsSnapshot {
    return this.snapshot(false);
  }

  /** A checksum of durableSnapshot(), for comparing runs. */
  durableFingerprint(): bigint {
    return fingerprint(this.durableSnapshot());
  }

  // ---- Operations ---------------------------------------------------------------------------------

  private openNow(path: string, create: boolean): Fd {
    const { dir, name } = this.parentOf(path, "open");
    let node = dir.entries.get(name);
    if (node === undefined) {
      if (!create) throw new FsError("ENOENT", `open: no such file ${show(path)}`);
      const file = new FileNode();
      file.links = 1;
      this.change(dir, null, name, file);
      this.counters.creates++;
      node = file;
    } else if (node.kind === "dir") {
      throw new FsError("EISDIR", `open: ${show(path)} is a directory`);
    }
    if (this.misdirect_exempt.has(path)) node.exempt = true;
    const fd = this.next_fd++;
    this.fds.set(fd, node);
    node.opens++;
    this.counters.opens++;
    return fd;
  }

  private pwriteNow(fd: Fd, buffer: Uint8Array, offset: number): void {
    const node = this.file(fd);
    checkOffset(offset, "pwrite");
    const length = buffer.length;
    this.counters.pwrites++;
    if (length === 0) return;
    const end = offset + length;
    if (end > FILE_SIZE_MAX) throw new FsError("EINVAL", `pwrite: end ${end} exceeds the file size limit ${FILE_SIZE_MAX}`);
    const growth = end > node.size ? end - node.size : 0;
    if (growth > 0 && this.used + growth > this.capacity) {
      this.counters.enospc_errors++;
      throw new FsError("ENOSPC", `pwrite: ${growth} more bytes would exceed the disk capacity (${this.used} of ${this.capacity} used)`);
    }
    if (node.read_errors !== null) clearReadErrors(node, offset, end);
    if (this.misdirect > 0 && !node.exempt && this.prng.chance(this.misdirect)) {
      this.pwriteMisdirected(node, buffer, offset, end);
    } else {
      writeVolatile(node, buffer, offset, end);
      this.record(node, offset, length);
    }
    this.used += growth;
    this.counters.pwrite_bytes += length;
  }

  /** The file's size changes as intended, but the bytes land at another offset with the same
   * position within a sector, clipped to the file; the intended range keeps its old content. */
  private pwriteMisdirected(node: FileNode, buffer: Uint8Array, offset: number, end: number): void {
    const new_size = Math.max(node.size, end);
    const sectors = Math.ceil(new_size / SECTOR_SIZE);
    const intended = Math.floor(offset / SECTOR_SIZE);
    if (sectors <= 1) {
      writeVolatile(node, buffer, offset, end);
      this.record(node, offset, buffer.length);
      return;
    }
    let target = this.prng.int(sectors - 1);
    if (target >= intended) target++;
    const landed = target * SECTOR_SIZE + (offset % SECTOR_SIZE);
    this.counters.misdirected_writes++;
    if (new_size > node.size) {
      truncateVolatile(node, new_size);
      this.recordTruncate(node, new_size);
    }
    if (landed >= new_size) return;
    const part = buffer.subarray(0, Math.min(buffer.length, new_size - landed));
    writeVolatile(node, part, landed, landed + part.length);
    this.record(node, landed, part.length);
  }

  private fdatasyncNow(fd: Fd): void {
    const node = this.file(fd);
    this.counters.fdatasyncs++;
    if (this.fail_next_fsync) {
      this.fail_next_fsync = false;
      this.counters.fsync_errors++;
      const before = node.size;
      this.settle(node, this.prng);
      this.used += node.size - before;
      this.undirty(node);
      throw new FsError("EIO", "fdatasync: write-back failed; this file's unsynced data may be lost");
    }
    if (!node.dirty) return;
    const pending = node.pending;
    for (let i = 0; i < pending.length; i += RECORD) {
      const offset = pending[i]!;
      const length = pending[i + 2]!;
      if (length === TRUNCATE) truncateDurable(node, offset);
      else if (pending[i + 1] === IN_VOLATILE) writeDurable(node, node.data, offset, length, offset);
      else writeDurable(node, node.arena, pending[i + 1]!, length, offset);
    }
    this.counters.fdatasync_bytes += node.pending_bytes;
    clearPending(node);
    this.undirty(node);
  }

  private truncateNow(fd: Fd, size: number): void {
    const node = this.file(fd);
    if (!Number.isSafeInteger(size) || size < 0 || size > FILE_SIZE_MAX) {
      throw new FsError("EINVAL", `truncate: size must be an integer in [0, ${FILE_SIZE_MAX}], got ${size}`);
    }
    this.counters.truncates++;
    const growth = size - node.size;
    if (growth > 0 && this.used + growth > this.capacity) {
      this.counters.enospc_errors++;
      throw new FsError("ENOSPC", `truncate: ${growth} more bytes would exceed the disk capacity (${this.used} of ${this.capacity} used)`);
    }
    if (node.read_errors !== null && growth < 0) clearReadErrors(node, size, Infinity);
    truncateVolatile(node, size);
    this.recordTruncate(node, size);
    this.used += growth;
  }

  private fsyncDirNow(path: string): void {
    const dir = this.dirAt(path);
    this.counters.fsync_dirs++;
    if (dir.pending.length === 0) return;
    for (const change of dir.pending) {
      applyChange(dir.durable, change);
      // The other side of a cross-directory rename now stands alone.
      if (change.partner !== null) change.partner.partner = null;
    }
    dir.pending = [];
    this.dirty_dirs.delete(dir);
  }

  private renameNow(from: string, to: string): void {
    const source = this.parentOf(from, "rename");
    const target = this.parentOf(to, "rename");
    const node = source.dir.entries.get(source.name);
    if (node === undefined) throw new FsError("ENOENT", `rename: no such file or directory ${show(from)}`);
    const existing = target.dir.entries.get(target.name);
    this.counters.renames++;
    if (existing === node) return; // POSIX: renaming a file onto itself (or another link to it) does nothing.
    if (node.kind === "dir") {
      if (source.dir !== target.dir) {
        throw new FsError(
          "EINVAL",
          `rename: the simulated file system moves directories only within their parent (${show(from)} -> ${show(to)})`,
        );
      }
      if (existing !== undefined && existing.kind === "file") throw new FsError("ENOTDIR", `rename: ${show(to)} is not a directory`);
      if (existing !== undefined && existing.kind === "dir" && existing.entries.size > 0) {
        throw new FsError("EEXIST", `rename: directory ${show(to)} is not empty`);
      }
    } else if (existing !== undefined && existing.kind === "dir") {
      throw new FsError("EISDIR", `rename: ${show(to)} is a directory`);
    }
    if (existing !== undefined && existing.kind === "file") {
      existing.links--;
      this.releaseIfDead(existing);
    }
    if (source.dir === target.dir) {
      this.change(source.dir, source.name, target.name, node);
    } else {
      const removal = this.change(source.dir, source.name, null, null);
      const addition = this.change(target.dir, null, target.name, node);
      removal.partner = addition;
      addition.partner = removal;
    }
  }

  private unlinkNow(path: string): void {
    const { dir, name } = this.parentOf(path, "unlink");
    const node = dir.entries.get(name);
    if (node === undefined) throw new FsError("ENOENT", `unlink: no such file ${show(path)}`);
    if (node.kind === "dir") throw new FsError("EISDIR", `unlink: ${show(path)} is a directory`);
    this.counters.unlinks++;
    this.change(dir, name, null, null);
    node.links--;
    this.releaseIfDead(node);
  }

  private mkdirNow(path: string): void {
    const parts = splitPath(path);
    this.counters.mkdirs++;
    let dir = this.root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const next = dir.entries.get(part);
      if (next === undefined) {
        const created = new DirNode();
        this.change(dir, null, part, created);
        dir = created;
      } else if (next.kind === "dir") {
        dir = next;
      } else {
        const prefix = parts.slice(0, i + 1).join("/");
        if (i === parts.length - 1) throw new FsError("EEXIST", `mkdir: ${show(prefix)} exists and is a file`);
        throw new FsError("ENOTDIR", `mkdir: ${show(prefix)} is a file, not a directory`);
      }
    }
  }

  // ---- Internals --------------------------------------------------------------------------------

  /** Counts a mutation against an armed crash; true when the crash fires now. */
  private tick(): boolean {
    this.crash_countdown--;
    return this.crash_countdown === 0;
  }

  private crashDuring(operation: string, run: () => unknown): never {
    const mutation = this.counters.mutations - this.crash_armed_at;
    try {
      run();
    } catch (error) {
      if (!(error instanceof FsError)) throw error;
    }
    this.crash(this.prng);
    throw new SimulatedCrash(operation, mutation);
  }

  private file(fd: Fd): FileNode {
    const node = this.fds.get(fd);
    if (node === undefined) throw new FsError("EBADF", `fd ${fd} is not open (closed, or invalidated by a crash)`);
    return node;
  }

  /** A pending write of the bytes writeVolatile just put at [offset, offset + length). */
  private record(node: FileNode, offset: number, length: number): void {
    node.pending.push(offset, IN_VOLATILE, length);
    node.pending_bytes += length;
    if (offset < node.volatile_low) node.volatile_low = offset;
    if (offset + length > node.volatile_high) node.volatile_high = offset + length;
    if (!node.dirty) this.markDirty(node);
  }

  private recordTruncate(node: FileNode, size: number): void {
    node.pending.push(size, 0, TRUNCATE);
    if (!node.dirty) this.markDirty(node);
  }

  private markDirty(node: FileNode): void {
    node.dirty = true;
    this.dirty_files.add(node);
  }

  private undirty(node: FileNode): void {
    node.dirty = false;
    this.dirty_files.delete(node);
  }

  /** Resolves a file's pending records into its durable image as a crash would, then makes the
   * volatile image equal to the durable one. Costs the extent of the pending records, not the
   * file size. */
  private settle(node: FileNode, prng: Prng): void {
    const pending = node.pending;
    // The images differ only where pending records touched them; a truncate touches everything
    // from its size up to the largest size either image had.
    let low = Infinity;
    let high = 0;
    for (let i = 0; i < pending.length; i += RECORD) {
      const offset = pending[i]!;
      const length = pending[i + 2]!;
      if (offset < low) low = offset;
      if (length === TRUNCATE) high = Math.max(high, offset, node.size, node.durable_size);
      else if (offset + length > high) high = offset + length;
    }
    for (let i = 0; i < pending.length; i += RECORD) {
      const offset = pending[i]!;
      const start = pending[i + 1]!;
      const length = pending[i + 2]!;
      if (length === TRUNCATE) {
        if (prng.int(2) === 1) {
          truncateDurable(node, offset);
          this.counters.unsynced_truncates_applied++;
        } else {
          this.counters.unsynced_truncates_lost++;
        }
        continue;
      }
      const fate = prng.int(3);
      // The volatile image is left alone until every record is resolved.
      const source = start === IN_VOLATILE ? node.data : node.arena;
      const at = start === IN_VOLATILE ? offset : start;
      if (fate === 0) {
        this.counters.unsynced_writes_lost++;
      } else if (fate === 1) {
        writeDurable(node, source, at, length, offset);
        this.counters.unsynced_writes_applied++;
      } else {
        tearDurable(node, source, at, length, offset, prng);
        this.counters.unsynced_writes_torn++;
      }
    }
    clearPending(node);
    if (low < high) resetVolatileRange(node, low, high);
    node.size = node.durable_size;
  }

  private change(dir: DirNode, remove: string | null, add: string | null, node: Node | null): DirChange {
    const change: DirChange = { remove, add, node, partner: null, decision: 0 };
    applyChange(dir.entries, change);
    dir.pending.push(change);
    this.dirty_dirs.add(dir);
    return change;
  }

  private releaseIfDead(node: FileNode): void {
    if (node.links === 0 && node.opens === 0) this.used -= node.size;
  }

  /** Marks every node the durable tree reaches with `epoch`, resets volatile entries to durable
   * ones, recounts links and collects the files (each once). */
  private walkDurable(dir: DirNode, epoch: number, files: FileNode[]): void {
    dir.mark = epoch;
    dir.entries = new Map(dir.durable);
    for (const node of dir.durable.values()) {
      if (node.kind === "dir") {
        if (node.mark !== epoch) this.walkDurable(node, epoch, files);
      } else {
        if (node.mark !== epoch) {
          node.mark = epoch;
          node.links = 0;
          node.opens = 0;
          files.push(node);
        }
        node.links++;
      }
    }
  }

  private snapshot(durable: boolean): FsSnapshot {
    const out: FsSnapshot = new Map();
    const visit = (dir: DirNode, prefix: string): void => {
      const entries = durable ? dir.durable : dir.entries;
      for (const name of Array.from(entries.keys()).sort()) {
        const node = entries.get(name)!;
        const path = prefix === "" ? name : `${prefix}/${name}`;
        if (node.kind === "dir") {
          out.set(path, null);
          visit(node, path);
        } else {
          out.set(path, durable ? node.durable.slice(0, node.durable_size) : node.data.slice(0, node.size));
        }
      }
    };
    visit(this.root, "");
    return out;
  }

  /** A random file (volatile namespace) under the prefix with durable data, or null. */
  private pickFile(path_prefix: string, exclude: string[] = []): string | null {
    const candidates: string[] = [];
    const visit = (dir: DirNode, prefix: string): void => {
      for (const name of Array.from(dir.entries.keys()).sort()) {
        const node = dir.entries.get(name)!;
        const path = prefix === "" ? name : `${prefix}/${name}`;
        if (node.kind === "dir") visit(node, path);
        else if (node.durable_size > 0 && path.startsWith(path_prefix) && !exclude.includes(path)) candidates.push(path);
      }
    };
    visit(this.root, "");
    return candidates.length === 0 ? null : this.prng.pick(candidates);
  }

  private checkReadErrors(node: FileNode, start: number, end: number): void {
    const first = Math.floor(start / SECTOR_SIZE);
    const last = Math.floor((end - 1) / SECTOR_SIZE);
    for (const sector of node.read_errors!) {
      if (sector >= first && sector <= last) {
        this.counters.read_errors++;
        throw new FsError("EIO", `pread: unreadable sector ${sector} (bytes ${sector * SECTOR_SIZE}..${(sector + 1) * SECTOR_SIZE})`);
      }
    }
  }

  private parentOf(path: string, operation: string): { dir: DirNode; name: string } {
    const parts = splitPath(path);
    if (parts.length === 0) {
      if (operation === "rename") throw new FsError("EINVAL", "rename: cannot rename the root directory");
      throw new FsError("EISDIR", `${operation}: the root "" is a directory`);
    }
    const dir = this.walk(parts, parts.length - 1, path);
    return { dir, name: parts[parts.length - 1]! };
  }

  private dirAt(path: string): DirNode {
    const parts = splitPath(path);
    return this.walk(parts, parts.length, path);
  }

  private fileAt(path: string): FileNode {
    const { dir, name } = this.parentOf(path, "lookup");
    const node = dir.entries.get(name);
    if (node === undefined) throw new FsError("ENOENT", `no such file ${show(path)}`);
    if (node.kind === "dir") throw new FsError("EISDIR", `${show(path)} is a directory`);
    return node;
  }

  /** The directory named by parts[0..count). */
  private walk(parts: string[], count: number, path: string): DirNode {
    let dir = this.root;
    for (let i = 0; i < count; i++) {
      const next = dir.entries.get(parts[i]!);
      if (next === undefined) throw new FsError("ENOENT", `no such directory ${show(parts.slice(0, i + 1).join("/"))} (in ${show(path)})`);
      if (next.kind !== "dir")
        throw new FsError("ENOTDIR", `${show(parts.slice(0, i + 1).join("/"))} is not a directory (in ${show(path)})`);
      dir = next;
    }
    return dir;
  }
}

// ---- Helpers on images -----------------------------------------------------------------------------

function splitPath(path: string): string[] {
  if (typeof path !== "string") throw new FsError("EINVAL", `path must be a string, got ${typeof path}`);
  if (path === "") return [];
  if (path.startsWith("/")) throw new FsError("EINVAL", `path ${show(path)} must be relative to the data directory (no leading '/')`);
  const parts = path.split("/");
  for (const part of parts) {
    if (part === "") throw new FsError("EINVAL", `path ${show(path)} has an empty component (double or trailing '/')`);
    if (part === "." || part === "..") throw new FsError("EINVAL", `path ${show(path)} must not contain '.' or '..'`);
    if (part.includes("\0")) throw new FsError("EINVAL", `path ${show(path)} contains a NUL byte`);
  }
  return parts;
}

function show(path: string): string {
  return JSON.stringify(path);
}

function checkOffset(offset: number, operation: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0)
    throw new FsError("EINVAL", `${operation}: offset must be a non-negative integer, got ${offset}`);
}

/** A buffer of at least `need` bytes (doubling), holding the first `used` bytes of `buffer`. */
function grow(buffer: Uint8Array, need: number, used: number): Uint8Array {
  const next = new Uint8Array(Math.min(Math.max(need, buffer.length * 2, 256), Math.max(need, FILE_SIZE_MAX)));
  next.set(buffer.subarray(0, used));
  return next;
}

function writeVolatile(node: FileNode, bytes: Uint8Array, offset: number, end: number): void {
  keepPendingBytes(node, offset, end);
  if (end > node.data.length) node.data = grow(node.data, end, node.size);
  node.data.set(bytes, offset);
  if (end > node.size) node.size = end;
}

function truncateVolatile(node: FileNode, size: number): void {
  if (size < node.size) {
    keepPendingBytes(node, size, node.size);
    node.data.fill(0, size, node.size);
  } else if (size > node.data.length) node.data = grow(node.data, size, node.size);
  node.size = size;
}

function writeDurable(node: FileNode, source: Uint8Array, start: number, length: number, offset: number): void {
  const end = offset + length;
  if (end > node.durable.length) node.durable = grow(node.durable, end, node.durable_size);
  node.durable.set(source.subarray(start, start + length), offset);
  if (end > node.durable_size) node.durable_size = end;
}

function truncateDurable(node: FileNode, size: number): void {
  if (size < node.durable_size) node.durable.fill(0, size, node.durable_size);
  else if (size > node.durable.length) node.durable = grow(node.durable, size, node.durable_size);
  node.durable_size = size;
}

/** A torn write: each sector but the last applied or not; the last lost, applied, or applied up
 * to a random byte within it. */
function tearDurable(node: FileNode, source: Uint8Array, start: number, length: number, offset: number, prng: Prng): void {
  const end = offset + length;
  const first = Math.floor(offset / SECTOR_SIZE);
  const last = Math.floor((end - 1) / SECTOR_SIZE);
  for (let sector = first; sector <= last; sector++) {
    const piece_start = Math.max(offset, sector * SECTOR_SIZE);
    const piece_end = Math.min(end, (sector + 1) * SECTOR_SIZE);
    let piece_length = piece_end - piece_start;
    if (sector < last) {
      if (prng.int(2) === 0) continue;
    } else {
      const fate = prng.int(3);
      if (fate === 0) continue;
      if (fate === 2) {
        if (piece_length < 2) continue;
        piece_length = prng.range(1, piece_length - 1);
      }
    }
    writeDurable(node, source, start + (piece_start - offset), piece_length, piece_start);
  }
}

/** Before the volatile image's bytes [start, end) change: copies the bytes of every pending write
 * they hold into the arena, so the write still has them when it is synced or a crash resolves it. */
function keepPendingBytes(node: FileNode, start: number, end: number): void {
  if (end <= node.volatile_low || start >= node.volatile_high) return;
  const pending = node.pending;
  let low = Infinity;
  let high = 0;
  for (let i = 0; i < pending.length; i += RECORD) {
    if (pending[i + 1] !== IN_VOLATILE) continue;
    const offset = pending[i]!;
    const length = pending[i + 2]!;
    if (offset < end && offset + length > start) {
      const need = node.arena_used + length;
      if (need > node.arena.length) node.arena = grow(node.arena, need, node.arena_used);
      node.arena.set(node.data.subarray(offset, offset + length), node.arena_used);
      pending[i + 1] = node.arena_used;
      node.arena_used = need;
    } else {
      if (offset < low) low = offset;
      if (offset + length > high) high = offset + length;
    }
  }
  node.volatile_low = low;
  node.volatile_high = high;
}

function clearPending(node: FileNode): void {
  node.pending.length = 0;
  node.pending_bytes = 0;
  node.volatile_low = Infinity;
  node.volatile_high = 0;
  node.arena_used = 0;
  if (node.arena.length > ARENA_KEEP_MAX) node.arena = EMPTY;
}

/** Copies the durable image's bytes [low, high) into the volatile image (zeros past either
 * image's buffer). */
function resetVolatileRange(node: FileNode, low: number, high: number): void {
  if (node.data.length < node.durable_size) node.data = grow(node.data, node.durable_size, Math.min(node.size, low));
  const data = node.data;
  const durable = node.durable;
  const copy_end = Math.min(high, durable.length, data.length);
  if (copy_end > low) data.set(durable.subarray(low, copy_end), low);
  const zero_end = Math.min(high, data.length);
  if (zero_end > Math.max(low, copy_end)) data.fill(0, Math.max(low, copy_end), zero_end);
}

/** Recomputes the volatile bytes [start, end) from the durable image and the pending records (as
 * if the page cache reread them from the medium). */
function refreshVolatile(node: FileNode, start: number, end: number): void {
  const bytes = node.durable.slice(start, end);
  const pending = node.pending;
  for (let i = 0; i < pending.length; i += RECORD) {
    const offset = pending[i]!;
    const length = pending[i + 2]!;
    if (length === TRUNCATE) {
      if (offset < end) bytes.fill(0, Math.max(offset, start) - start);
      continue;
    }
    const from = Math.max(offset, start);
    const to = Math.min(offset + length, end);
    if (from >= to) continue;
    // A write whose bytes are still in the volatile image is the last change of its range (any
    // later one would have moved them to the arena), so reading them back before the image is
    // rewritten below is exact.
    const source = pending[i + 1] === IN_VOLATILE ? node.data : node.arena;
    const source_start = (pending[i + 1] === IN_VOLATILE ? offset : pending[i + 1]!) + (from - offset);
    bytes.set(source.subarray(source_start, source_start + (to - from)), from - start);
  }
  const limit = Math.min(end, node.size);
  if (limit > start) node.data.set(bytes.subarray(0, limit - start), start);
}

function clearReadErrors(node: FileNode, start: number, end: number): void {
  const first = Math.floor(start / SECTOR_SIZE);
  const last = end === Infinity ? Infinity : Math.floor((end - 1) / SECTOR_SIZE);
  const errors = node.read_errors!;
  for (const sector of errors) {
    // A cut keeps a sector that still holds bytes below the new size.
    if (end === Infinity ? sector * SECTOR_SIZE >= start : sector >= first && sector <= last) errors.delete(sector);
  }
  if (errors.size === 0) node.read_errors = null;
}

function applyChange(entries: Map<string, Node>, change: DirChange): void {
  if (change.remove !== null) entries.delete(change.remove);
  if (change.add !== null) entries.set(change.add, change.node!);
}

function fingerprint(snapshot: FsSnapshot): bigint {
  const encoder = new TextEncoder();
  let total = 0;
  const parts: Uint8Array[] = [];
  for (const [path, data] of snapshot) {
    const header = encoder.encode(`${path}\0${data === null ? "d" : `f${data.length}`}\0`);
    parts.push(header);
    total += header.length;
    if (data !== null) {
      parts.push(data);
      total += data.length;
    }
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return checksum(all);
}
