/**
 * Binary records shared by checkpoint files and the state-sync stream (docs/STORAGE.md
 * §7, §8): client sessions and object metadata. Little-endian, 8-byte aligned.
 */
import { assert } from "../util/assert.ts";
import type { ClientSession } from "../vsr/client_table.ts";
import { stored_reply_body_max } from "../vsr/client_table.ts";
import type { ObjectEntry } from "../store/object_store.ts";
import { key_size_max } from "../constants.ts";
import { keyFromBytes } from "../store/keys.ts";

export class Writer {
  bytes: Uint8Array;
  view: DataView;
  offset = 0;

  constructor(capacity = 4096) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, "Writer: capacity");
    this.bytes = new Uint8Array(capacity);
    this.view = new DataView(this.bytes.buffer);
  }

  reserve(n: number): void {
    assert(n >= 0 && this.offset <= this.bytes.length, "Writer.reserve: negative size or offset past the end");
    if (this.offset + n <= this.bytes.length) return;
    let capacity = this.bytes.length * 2;
    while (capacity < this.offset + n) capacity *= 2;
    const next = new Uint8Array(capacity);
    next.set(this.bytes.subarray(0, this.offset));
    this.bytes = next;
    this.view = new DataView(next.buffer);
  }

  u8(n: number): void {
    assert(n >= 0 && n <= 0xff, "Writer.u8: out of range");
    this.reserve(1);
    this.view.setUint8(this.offset, n);
    this.offset += 1;
  }
  u16(n: number): void {
    assert(n >= 0 && n <= 0xffff, "Writer.u16: out of range");
    this.reserve(2);
    this.view.setUint16(this.offset, n, true);
    this.offset += 2;
  }
  u32(n: number): void {
    assert(n >= 0 && n <= 0xffffffff, "Writer.u32: out of range");
    this.reserve(4);
    this.view.setUint32(this.offset, n, true);
    this.offset += 4;
  }
  u64(n: number | bigint): void {
    assert(typeof n === "bigint" ? n >= 0n : Number.isSafeInteger(n) && n >= 0, "Writer.u64: out of range");
    this.reserve(8);
    this.view.setBigUint64(this.offset, BigInt(n), true);
    this.offset += 8;
  }
  raw(b: Uint8Array): void {
    assert(b.buffer !== this.bytes.buffer, "Writer.raw: source aliases the buffer");
    this.reserve(b.length);
    this.bytes.set(b, this.offset);
    this.offset += b.length;
  }
  /** Zero bytes up to the next multiple of 8. */
  align(): void {
    const pad = (8 - (this.offset % 8)) % 8;
    this.reserve(pad);
    this.bytes.fill(0, this.offset, this.offset + pad);
    this.offset += pad;
    assert(this.offset % 8 === 0, "Writer.align");
  }
  finish(): Uint8Array {
    assert(this.offset <= this.bytes.length, "Writer.finish: offset past the end");
    return this.bytes.subarray(0, this.offset);
  }
}

/** Reads records; every read is bounds-checked and a short or malformed input sets `bad`. */
export class Reader {
  private readonly view: DataView;
  offset = 0;
  bad = false;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  private need(n: number): boolean {
    assert(n >= 0, "Reader.need: negative size");
    if (this.bad || this.offset + n > this.bytes.length) {
      this.bad = true;
      return false;
    }
    return true;
  }
  u8(): number {
    if (!this.need(1)) return 0;
    return this.view.getUint8(this.offset++);
  }
  u16(): number {
    if (!this.need(2)) return 0;
    const n = this.view.getUint16(this.offset, true);
    this.offset += 2;
    assert(this.offset <= this.bytes.length, "Reader.u16: read past the end");
    return n;
  }
  u32(): number {
    if (!this.need(4)) return 0;
    const n = this.view.getUint32(this.offset, true);
    this.offset += 4;
    assert(this.offset <= this.bytes.length, "Reader.u32: read past the end");
    return n;
  }
  u64n(): bigint {
    if (!this.need(8)) return 0n;
    const n = this.view.getBigUint64(this.offset, true);
    this.offset += 8;
    assert(this.offset <= this.bytes.length, "Reader.u64n: read past the end");
    return n;
  }
  u64(): number {
    const n = Number(this.u64n());
    if (!Number.isSafeInteger(n)) this.bad = true;
    return n;
  }
  raw(n: number): Uint8Array {
    if (!this.need(n)) return new Uint8Array(0);
    const b = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    assert(b.length === n, "Reader.raw: short slice");
    return b;
  }
  align(): void {
    const pad = (8 - (this.offset % 8)) % 8;
    if (this.need(pad)) this.offset += pad;
    assert(this.bad || this.offset % 8 === 0, "Reader.align");
  }
  get done(): boolean {
    return this.offset === this.bytes.length;
  }
}

/** Session: u64 client, u64 session, u64 request, u64 commit_op, u64 reply op, u64 reply
 * timestamp, u8 operation, u8 result, u16 body size, u32 reserved, body, pad to 8. */
export function writeSession(w: Writer, client: bigint, s: ClientSession): void {
  assert(s.reply.body.length <= stored_reply_body_max, "writeSession: reply body too large to read back");
  w.u64(client);
  w.u64(s.session);
  w.u64(s.request);
  w.u64(s.commit_op);
  w.u64(s.reply.op);
  w.u64(s.reply.timestamp);
  w.u8(s.reply.operation);
  w.u8(s.reply.result);
  w.u16(s.reply.body.length);
  w.u32(0);
  w.raw(s.reply.body);
  w.align();
}

export function readSession(r: Reader): [bigint, ClientSession] | null {
  const client = r.u64n();
  const session = r.u64();
  const request = r.u64();
  const commit_op = r.u64();
  const op = r.u64();
  const timestamp = r.u64();
  const operation = r.u8();
  const result = r.u8();
  const size = r.u16();
  r.u32();
  if (size > stored_reply_body_max) return null;
  const body = r.raw(size).slice();
  r.align();
  if (r.bad) return null;
  assert(body.length === size, "readSession: body size");
  return [client, { session, request, commit_op, reply: { op, timestamp, operation, result, body } }];
}

/** Object metadata: u16 key size, u16 reserved, u32 reserved, u64 version, u64 timestamp,
 * u64 size, u64 checksum, key, pad to 8. (Checkpoints add the location; the sync stream adds the
 * value bytes.) */
export function writeObjectMeta(w: Writer, key: string, e: ObjectEntry): void {
  assert(key.length >= 1 && key.length <= key_size_max, "object key size out of range");
  w.u16(key.length);
  w.u16(0);
  w.u32(0);
  w.u64(e.version);
  w.u64(e.timestamp);
  w.u64(e.size);
  w.u64(e.checksum);
  w.reserve(key.length);
  for (let i = 0; i < key.length; i++) w.bytes[w.offset + i] = key.charCodeAt(i);
  w.offset += key.length;
  w.align();
}

export interface ObjectMeta {
  key: string;
  version: number;
  timestamp: number;
  size: number;
  checksum: bigint;
}

export function readObjectMeta(r: Reader): ObjectMeta | null {
  const key_size = r.u16();
  r.u16();
  r.u32();
  const version = r.u64();
  const timestamp = r.u64();
  const size = r.u64();
  const checksum = r.u64n();
  const key = readKey(r, key_size);
  if (key === null) return null;
  assert(key.length === key_size, "readObjectMeta: key size");
  return { key, version, timestamp, size, checksum };
}

/** Reads a key of key_size bytes and the padding after it; null if the size is out of range or the
 * record is cut short. */
export function readKey(r: Reader, key_size: number): string | null {
  if (key_size < 1 || key_size > key_size_max) return null;
  const key_bytes = r.raw(key_size);
  r.align();
  if (r.bad) return null;
  assert(key_bytes.length === key_size, "readKey: short key");
  return keyFromBytes(key_bytes);
}
