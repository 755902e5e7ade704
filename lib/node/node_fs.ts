/**
 * The FileSystem of lib/storage over node:fs synchronous calls, rooted at a data directory.
 * Synchronous on purpose: one fdatasync per event-loop turn covers every write of that turn
 * (group commit), and the async forms cost about twice as much per call (a round trip through the thread pool).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { FsError, type Fd, type FileSystem, type FsErrorCode } from "../storage/fs.ts";

const codes = new Set<string>(["ENOENT", "EEXIST", "ENOSPC", "EIO", "EBADF", "EINVAL", "ENOTDIR", "EISDIR", "EACCES"]);

function wrap<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    const code =
      e.code !== undefined && codes.has(e.code)
        ? (e.code as FsErrorCode)
        : e.code === "EPERM" || e.code === "EROFS"
          ? "EACCES"
          : e.code === "EDQUOT"
            ? "ENOSPC"
            : "EIO";
    throw new FsError(code, `${what}: ${e.message}`);
  }
}

export class NodeFs implements FileSystem {
  constructor(readonly root: string) {}

  private resolve(p: string): string {
    if (p.includes("..") || p.startsWith("/")) throw new FsError("EINVAL", `path ${p} escapes the data directory`);
    return path.join(this.root, p);
  }

  open(p: string, create: boolean): Fd {
    const full = this.resolve(p);
    return wrap(`open ${full}`, () => fs.openSync(full, create ? fs.constants.O_RDWR | fs.constants.O_CREAT : fs.constants.O_RDWR, 0o644));
  }

  close(fd: Fd): void {
    wrap("close", () => fs.closeSync(fd));
  }

  pread(fd: Fd, buffer: Uint8Array, offset: number): number {
    let done = 0;
    while (done < buffer.length) {
      const n = wrap("read", () => fs.readSync(fd, buffer, done, buffer.length - done, offset + done));
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  pwrite(fd: Fd, buffer: Uint8Array, offset: number): void {
    let done = 0;
    while (done < buffer.length) {
      done += wrap("write", () => fs.writeSync(fd, buffer, done, buffer.length - done, offset + done));
    }
  }

  fdatasync(fd: Fd): void {
    wrap("fdatasync", () => fs.fdatasyncSync(fd));
  }

  truncate(fd: Fd, size: number): void {
    wrap("ftruncate", () => fs.ftruncateSync(fd, size));
  }

  size(fd: Fd): number {
    return wrap("fstat", () => fs.fstatSync(fd).size);
  }

  fsyncDir(p: string): void {
    const full = this.resolve(p);
    const fd = wrap(`open directory ${full}`, () => fs.openSync(full, fs.constants.O_RDONLY));
    try {
      wrap(`fsync directory ${full}`, () => fs.fsyncSync(fd));
    } finally {
      fs.closeSync(fd);
    }
  }

  rename(from: string, to: string): void {
    const a = this.resolve(from);
    const b = this.resolve(to);
    wrap(`rename ${a}`, () => fs.renameSync(a, b));
  }

  unlink(p: string): void {
    const full = this.resolve(p);
    wrap(`unlink ${full}`, () => fs.unlinkSync(full));
  }

  mkdir(p: string): void {
    const full = this.resolve(p);
    wrap(`mkdir ${full}`, () => fs.mkdirSync(full, { recursive: true }));
  }

  readdir(p: string): string[] {
    const full = this.resolve(p);
    return wrap(`readdir ${full}`, () => fs.readdirSync(full).sort());
  }

  exists(p: string): boolean {
    return fs.existsSync(this.resolve(p));
  }
}
