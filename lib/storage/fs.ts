/**
 * The small file-system interface lib/storage is written against (docs/DESIGN.md §5). Production passes
 * node:fs sync calls (lib/node/node_fs.ts); the simulator passes a file system that loses or tears
 * every write and directory entry not yet synced when it crashes (sim/sim_fs.ts). Keeping the
 * interface synchronous keeps the storage code free of await, so the simulator can run it.
 *
 * Paths are relative to the file system's root (the replica's data directory), '/'-separated,
 * without '..'. Every call may throw an FsError.
 */
import { assert } from "../util/assert.ts";

export type FsErrorCode = "ENOENT" | "EEXIST" | "ENOSPC" | "EIO" | "EBADF" | "EINVAL" | "ENOTDIR" | "EISDIR" | "EACCES";

export class FsError extends Error {
  override name = "FsError";
  constructor(
    readonly code: FsErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** An open file. Numbers are assigned by the file system. */
export type Fd = number;

export interface FileSystem {
  /** Opens a file for reading and writing. create: make it if missing (the new directory entry is
   * durable only after fsyncDir of its parent). Throws ENOENT if missing and !create. */
  open(path: string, create: boolean): Fd;
  close(fd: Fd): void;
  /** Reads up to buffer.length bytes at offset; returns how many were read (fewer at end of file). */
  pread(fd: Fd, buffer: Uint8Array, offset: number): number;
  /** Writes all of buffer at offset, extending the file if needed. Not durable until fdatasync. */
  pwrite(fd: Fd, buffer: Uint8Array, offset: number): void;
  /** Makes every earlier write to this file, and its size, durable. */
  fdatasync(fd: Fd): void;
  /** Sets the file's size (extends with zeros, or cuts). Durable after fdatasync. */
  truncate(fd: Fd, size: number): void;
  size(fd: Fd): number;
  /** Makes the directory's entries (creates, renames, unlinks in it) durable. "" is the root. */
  fsyncDir(path: string): void;
  /** Atomically replaces `to` with `from`. Durable after fsyncDir of the directory. */
  rename(from: string, to: string): void;
  unlink(path: string): void;
  /** Creates a directory (and missing parents). No error if it exists. */
  mkdir(path: string): void;
  /** Entry names in a directory, sorted. Throws ENOENT if it does not exist. */
  readdir(path: string): string[];
  exists(path: string): boolean;
}

/** Reads into `buffer` at `offset`; false if the read fails or comes up short. Only an FsError is a
 * failed read: any other exception is a bug and propagates. */
export function readFully(fs: FileSystem, fd: Fd, buffer: Uint8Array, offset: number): boolean {
  assert(offset >= 0, "readFully: negative offset");
  try {
    return fs.pread(fd, buffer, offset) === buffer.length;
  } catch (error) {
    if (error instanceof FsError) return false;
    throw error;
  }
}

/** Runs one file-system call; null if it throws an FsError (the caller treats the file as absent or
 * damaged). Any other exception is a bug and propagates. Keep decoding out of `call`. */
export function fsOrNull<T>(call: () => T): T | null {
  try {
    return call();
  } catch (error) {
    if (error instanceof FsError) return null;
    throw error;
  }
}
