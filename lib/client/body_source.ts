/**
 * The bytes of a put, read a block at a time (LARGE_OBJECTS.md §11.1): whatever the caller gives
 * (bytes, a Blob or Bun.file, a ReadableStream, an async iterable, or an open file descriptor), the
 * put asks for the next block of at most `max` bytes and never holds more than that of the source.
 * A source whose size is known is checked against it: a file that shrinks or grows while it is
 * streamed is a source_changed error (§10), not an object with a mix of old and new bytes.
 */
import * as fs from "node:fs";
import { assert } from "../util/assert.ts";
import { ClientError } from "./errors.ts";

export type Body = Uint8Array | Blob | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

export interface BlockSource {
  /** The size in bytes if known before reading (bytes, a Blob, a file, or a size the caller
   * declared), else null. */
  readonly size: number | null;
  /** The next max bytes (fewer only at the end), or an empty array at the end. The bytes may be
   * overwritten by the next call: the caller copies what it keeps. */
  next(max: number): Promise<Uint8Array>;
  /** Whether every byte has been read (a stream is read ahead by one chunk to know). */
  atEnd(): Promise<boolean>;
}

/** `what` names the source in errors ("big.iso", "the body"). */
export function bodySource(body: Body, declared_size: number | null = null, what = "the body"): BlockSource {
  if (body instanceof Uint8Array) return checkedSize(new BytesSource(body), declared_size, what);
  if (body instanceof Blob) return checkedSize(new BlobSource(body, what), declared_size, what);
  const iterable: AsyncIterable<Uint8Array> =
    body instanceof ReadableStream ? (body as unknown as AsyncIterable<Uint8Array>) : (body as AsyncIterable<Uint8Array>);
  return new StreamSource(iterable[Symbol.asyncIterator](), declared_size, what);
}

function checkedSize(source: BlockSource, declared: number | null, what: string): BlockSource {
  if (declared !== null && source.size !== declared)
    throw new ClientError("size_mismatch", `${what} is ${source.size} bytes, not the ${declared} bytes declared for it`);
  return source;
}

function shrank(what: string, from: number, to: number): ClientError {
  return new ClientError("source_changed", `${what} shrank from ${from} to ${to} bytes while it was read`);
}

function grew(what: string, from: number, to: string): ClientError {
  return new ClientError("source_changed", `${what} grew from ${from} to ${to} bytes while it was read`);
}

class BytesSource implements BlockSource {
  private offset = 0;
  constructor(private readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.length;
  }
  next(max: number): Promise<Uint8Array> {
    const end = Math.min(this.bytes.length, this.offset + max);
    const view = this.bytes.subarray(this.offset, end);
    this.offset = end;
    return Promise.resolve(view);
  }
  atEnd(): Promise<boolean> {
    return Promise.resolve(this.offset === this.bytes.length);
  }
}

class BlobSource implements BlockSource {
  private offset = 0;
  readonly size: number;
  constructor(
    private readonly blob: Blob,
    private readonly what: string,
  ) {
    this.size = blob.size;
  }
  async next(max: number): Promise<Uint8Array> {
    const end = Math.min(this.size, this.offset + max);
    if (end === this.offset) return new Uint8Array(0);
    const bytes = new Uint8Array(await this.blob.slice(this.offset, end).arrayBuffer());
    // A Bun.file read past a file that shrank comes back short.
    if (bytes.length !== end - this.offset) throw shrank(this.what, this.size, this.offset + bytes.length);
    this.offset = end;
    return bytes;
  }
  atEnd(): Promise<boolean> {
    return Promise.resolve(this.offset === this.size);
  }
}

/** Chunks of any size from a stream, regrouped into blocks in one reused buffer. */
class StreamSource implements BlockSource {
  private pending: Uint8Array = new Uint8Array(0);
  private done = false;
  private total = 0;
  private buffer: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly iterator: AsyncIterator<Uint8Array>,
    readonly size: number | null,
    private readonly what: string,
  ) {}

  async next(max: number): Promise<Uint8Array> {
    if (this.buffer.length !== max) this.buffer = new Uint8Array(max);
    let filled = 0;
    while (filled < max && (await this.fill())) {
      const n = Math.min(max - filled, this.pending.length);
      this.buffer.set(this.pending.subarray(0, n), filled);
      this.pending = this.pending.subarray(n);
      filled += n;
    }
    this.total += filled;
    if (this.size !== null && this.total > this.size) throw grew(this.what, this.size, `at least ${this.total}`);
    if (this.size !== null && this.done && this.pending.length === 0 && this.total < this.size)
      throw shrank(this.what, this.size, this.total);
    return this.buffer.subarray(0, filled);
  }

  async atEnd(): Promise<boolean> {
    const end = !(await this.fill());
    if (end && this.size !== null && this.total !== this.size) throw shrank(this.what, this.size, this.total);
    return end;
  }

  /** Makes pending non-empty unless the stream has ended; false at the end. */
  private async fill(): Promise<boolean> {
    while (this.pending.length === 0 && !this.done) {
      const r = await this.iterator.next();
      if (r.done === true) this.done = true;
      else this.pending = r.value;
    }
    return this.pending.length > 0;
  }
}

/**
 * An open file read with pread into one reused buffer, against the size fstat gave when it was
 * opened: reading stops at that size, and one byte past it is tried at the end, so a file that
 * grew is noticed too.
 */
export class FileSource implements BlockSource {
  private offset = 0;
  private buffer: Uint8Array = new Uint8Array(0);
  readonly size: number;

  constructor(
    private readonly fd: number,
    private readonly what: string,
  ) {
    this.size = fs.fstatSync(fd).size;
  }

  next(max: number): Promise<Uint8Array> {
    const want = Math.min(max, this.size - this.offset);
    if (this.buffer.length < want) this.buffer = new Uint8Array(max);
    let filled = 0;
    while (filled < want) {
      const n = fs.readSync(this.fd, this.buffer, filled, want - filled, this.offset + filled);
      if (n === 0) throw shrank(this.what, this.size, this.offset + filled);
      filled += n;
    }
    this.offset += filled;
    return Promise.resolve(this.buffer.subarray(0, filled));
  }

  atEnd(): Promise<boolean> {
    if (this.offset < this.size) return Promise.resolve(false);
    assert(this.offset === this.size, "never read past the size taken at open");
    const probe = new Uint8Array(1);
    if (fs.readSync(this.fd, probe, 0, 1, this.size) > 0) throw grew(this.what, this.size, String(fs.fstatSync(this.fd).size));
    return Promise.resolve(true);
  }
}
