/**
 * A FileSystem that passes every call to another one: tests that inject one kind of fault (a kill
 * at the next sync, an ENOSPC from fdatasync) extend it and override only the calls they break.
 */
import type { Fd, FileSystem } from "../../lib/storage/fs.ts";

export class ForwardingFs implements FileSystem {
  constructor(readonly inner: FileSystem) {}
  open(path: string, create: boolean): Fd {
    return this.inner.open(path, create);
  }
  close(fd: Fd): void {
    this.inner.close(fd);
  }
  pread(fd: Fd, buffer: Uint8Array, offset: number): number {
    return this.inner.pread(fd, buffer, offset);
  }
  pwrite(fd: Fd, buffer: Uint8Array, offset: number): void {
    this.inner.pwrite(fd, buffer, offset);
  }
  fdatasync(fd: Fd): void {
    this.inner.fdatasync(fd);
  }
  truncate(fd: Fd, size: number): void {
    this.inner.truncate(fd, size);
  }
  size(fd: Fd): number {
    return this.inner.size(fd);
  }
  fsyncDir(path: string): void {
    this.inner.fsyncDir(path);
  }
  rename(from: string, to: string): void {
    this.inner.rename(from, to);
  }
  unlink(path: string): void {
    this.inner.unlink(path);
  }
  mkdir(path: string): void {
    this.inner.mkdir(path);
  }
  readdir(path: string): string[] {
    return this.inner.readdir(path);
  }
  exists(path: string): boolean {
    return this.inner.exists(path);
  }
}
