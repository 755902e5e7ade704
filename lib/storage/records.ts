/**
 * Binary records shared by checkpoint files and the state-sync stream (docs/STORAGE.md
 * §7, §8): client sessions and object metadata. Little-endian, 8-byte aligned.
 */
import { assert } from "../util/assert.ts";
import type { ClientSession } from "../vsr/client_table.ts";
import { stored_reply_body_max } from "../vsr/client_table.ts";
import type { EntryMeta, ObjectEntry } from "../store/object_store.ts";
import type { Block, Upload } from "../store/uploads.ts";
import { contentTypeProblem, decodeUserMeta, md5_size, type ObjectMetadata } from "../store/large_bodies.ts";
import { content_type_size_max_bytes, key_size_max, object_meta_size_max_bytes, object_size_max_bytes } from "../constants.ts";
import { keyFromBytes } from "../store/keys.ts";
import { isZero } from "../util/bytes.ts";

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

/** Object metadata: u16 key size, u16 flags (reserved before checkpoint version 3 and in sync
 * record 3), u32 reserved, u64 version, u64 timestamp, u64 size, u64 checksum, key, pad to 8.
 * (Checkpoints add the location; the sync stream adds the value bytes.) */
export function writeObjectMeta(w: Writer, key: string, e: ObjectEntry, flags = 0): void {
  assert(key.length >= 1 && key.length <= key_size_max, "object key size out of range");
  assert(flags >= 0 && flags <= object_flags_all, "object record flags");
  w.u16(key.length);
  w.u16(flags);
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
  flags: number;
  version: number;
  timestamp: number;
  size: number;
  checksum: bigint;
}

export function readObjectMeta(r: Reader): ObjectMeta | null {
  const key_size = r.u16();
  const flags = r.u16();
  r.u32();
  const version = r.u64();
  const timestamp = r.u64();
  const size = r.u64();
  const checksum = r.u64n();
  const key = readKey(r, key_size);
  if (key === null) return null;
  assert(key.length === key_size, "readObjectMeta: key size");
  return { key, flags, version, timestamp, size, checksum };
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

// ---------------------------------------------------------------------------------------------
// Large objects (checkpoint version 3, sync records 4..7; docs/STORAGE.md §7, §8)

export const object_flag_chunked = 1;
export const object_flag_metadata = 2;
export const object_flag_md5 = 4;
const object_flags_all = object_flag_chunked | object_flag_metadata | object_flag_md5;

/** The flags of an entry's record: chunked, metadata (a content type or user metadata), md5. */
export function objectFlags(e: ObjectEntry): number {
  const meta = e.meta;
  let flags = e.chunks !== undefined ? object_flag_chunked : 0;
  if (meta !== undefined && (meta.content_type.length > 0 || meta.user_meta.length > 0)) flags |= object_flag_metadata;
  if (meta?.md5 != null) flags |= object_flag_md5;
  return flags;
}

/**
 * The object record of checkpoint version 3 (and, without the location, sync record 5): the
 * object meta with its flags; the location (u32 segment, u32 reserved, u64 offset; zero when
 * chunked); if chunked, u32 block count, u32 reserved, u64 block ids; if it has metadata or an
 * md5, the metadata part (writeEntryMeta).
 */
export function writeObjectRecord(w: Writer, key: string, e: ObjectEntry, location: boolean): void {
  assert(e.chunks === undefined || (e.segment === 0 && e.offset === 0), "a chunked entry has no location");
  const flags = objectFlags(e);
  writeObjectMeta(w, key, e, flags);
  if (location) {
    w.u32(e.segment);
    w.u32(0);
    w.u64(e.offset);
  }
  if (e.chunks !== undefined) {
    w.u32(e.chunks.blocks.length);
    w.u32(0);
    for (const id of e.chunks.blocks) w.u64(id);
  }
  if (e.meta !== undefined) writeEntryMeta(w, e.meta);
}

/** The record writeObjectRecord wrote; a chunked entry's ends are left empty (ObjectStore.restoreEntry
 * computes them from its blocks). null if anything in it is malformed. */
export function readObjectRecord(r: Reader, location: boolean): { key: string; entry: ObjectEntry } | null {
  const meta = readObjectMeta(r);
  if (meta === null || (meta.flags & ~object_flags_all) !== 0) return null;
  const entry: ObjectEntry = {
    version: meta.version,
    timestamp: meta.timestamp,
    size: meta.size,
    checksum: meta.checksum,
    segment: 0,
    offset: 0,
  };
  if (location) {
    entry.segment = r.u32();
    r.u32();
    entry.offset = r.u64();
  }
  if ((meta.flags & object_flag_chunked) !== 0) {
    const count = r.u32();
    r.u32();
    // The count comes from the record: it must fit in what is left before anything is allocated.
    if (r.bad || entry.segment !== 0 || entry.offset !== 0 || count < 1 || count * 8 > r.bytes.length - r.offset) return null;
    const blocks: number[] = [];
    for (let i = 0; i < count; i++) blocks.push(r.u64());
    entry.chunks = { blocks, ends: new Float64Array(0) };
  }
  if ((meta.flags & (object_flag_metadata | object_flag_md5)) !== 0) {
    const em = readEntryMeta(r, meta.flags);
    if (em === null) return null;
    entry.meta = em;
  }
  if (r.bad || !Number.isSafeInteger(entry.size) || entry.size > object_size_max_bytes) return null;
  return { key: meta.key, entry };
}

/** u8 content type size, u8 reserved, u16 user meta size, u32 reserved, 16 bytes md5 (zero if
 * none), content type, user meta, pad to 8. */
function writeEntryMeta(w: Writer, m: EntryMeta): void {
  assert(m.md5 === null || m.md5.length === md5_size, "md5 size");
  w.u8(m.content_type.length);
  w.u8(0);
  w.u16(m.user_meta.length);
  w.u32(0);
  w.raw(m.md5 ?? new Uint8Array(md5_size));
  writeMetadata(w, m);
}

function readEntryMeta(r: Reader, flags: number): EntryMeta | null {
  const ct_size = r.u8();
  r.u8();
  const meta_size = r.u16();
  r.u32();
  const md5 = r.raw(md5_size).slice();
  const has_md5 = (flags & object_flag_md5) !== 0;
  if (r.bad || (!has_md5 && !isZero(md5, 0, md5_size))) return null;
  const metadata = readMetadata(r, ct_size, meta_size);
  if (metadata === null) return null;
  // The flag says whether there is metadata: a record that disagrees is not one this code wrote.
  if (((flags & object_flag_metadata) !== 0) !== ct_size + meta_size > 0) return null;
  return { content_type: metadata.content_type, user_meta: metadata.user_meta, md5: has_md5 ? md5 : null };
}

/** Content type then user meta bytes, pad to 8 (their sizes were written before). */
function writeMetadata(w: Writer, m: ObjectMetadata): void {
  w.reserve(m.content_type.length);
  for (let i = 0; i < m.content_type.length; i++) w.bytes[w.offset + i] = m.content_type.charCodeAt(i);
  w.offset += m.content_type.length;
  w.raw(m.user_meta);
  w.align();
}

function readMetadata(r: Reader, ct_size: number, meta_size: number): ObjectMetadata | null {
  if (ct_size > content_type_size_max_bytes || meta_size > object_meta_size_max_bytes) return null;
  const content_type = keyFromBytes(r.raw(ct_size));
  const user_meta = r.raw(meta_size).slice();
  r.align();
  if (r.bad || contentTypeProblem(content_type) !== null || decodeUserMeta(user_meta) === null) return null;
  return { content_type, user_meta };
}

/** Stand-in for "no declared size" in an upload record. */
const no_declared_size = 2 ** 53 - 1;
export const upload_record_fixed_size = 40;

/** Upload record: u64 id, u64 created, u64 touched, u64 declared size (2^53−1: none), u16 key
 * size, u8 content type size, u8 reserved, u16 user meta size, u16 reserved, key, content type,
 * user meta, pad to 8. Its pending blocks are block records naming it. */
export function writeUploadRecord(w: Writer, u: Upload): void {
  assert(u.key.length >= 1 && u.key.length <= key_size_max, "upload key size out of range");
  w.u64(u.id);
  w.u64(u.created);
  w.u64(u.touched);
  w.u64(u.declared_size ?? no_declared_size);
  w.u16(u.key.length);
  w.u8(u.metadata.content_type.length);
  w.u8(0);
  w.u16(u.metadata.user_meta.length);
  w.u16(0);
  w.reserve(u.key.length);
  for (let i = 0; i < u.key.length; i++) w.bytes[w.offset + i] = u.key.charCodeAt(i);
  w.offset += u.key.length;
  writeMetadata(w, u.metadata);
}

/** An upload as recorded, with no slots yet (LargeState.restoreUpload); null if malformed. */
export function readUploadRecord(r: Reader): Upload | null {
  const id = r.u64();
  const created = r.u64();
  const touched = r.u64();
  const declared = r.u64();
  const key_size = r.u16();
  const ct_size = r.u8();
  r.u8();
  const meta_size = r.u16();
  r.u16();
  if (r.bad || key_size < 1 || key_size > key_size_max) return null;
  const key = keyFromBytes(r.raw(key_size));
  const metadata = readMetadata(r, ct_size, meta_size);
  if (metadata === null) return null;
  const declared_size = declared === no_declared_size ? null : declared;
  return { id, key, created, touched, declared_size, metadata, slots: new Map(), stored_bytes: 0 };
}

export const block_record_size = 48;

/** Block record (48 bytes): u64 id, u64 checksum, u32 size, u32 segment, u64 offset, u64 upload id
 * (0: an object version owns it), u32 part, u32 index, u64 attempt. The sync stream writes it
 * without a location (segment and offset zero). */
export function writeBlockRecord(w: Writer, b: Block, location: boolean): void {
  w.u64(b.id);
  w.u64(b.checksum);
  w.u32(b.size);
  w.u32(location ? b.segment : 0);
  w.u64(location ? b.offset : 0);
  w.u64(b.slot?.upload_id ?? 0);
  w.u32(b.slot?.part ?? 0);
  w.u32(b.slot?.index ?? 0);
  w.u64(b.slot?.attempt ?? 0n);
}

/** A block as recorded (key null: its object version claims it); null if malformed. */
export function readBlockRecord(r: Reader): Block | null {
  const id = r.u64();
  const block_checksum = r.u64n();
  const size = r.u32();
  const segment = r.u32();
  const offset = r.u64();
  const upload_id = r.u64();
  const part = r.u32();
  const index = r.u32();
  const attempt = r.u64n();
  if (r.bad) return null;
  if (upload_id === 0) {
    if (part !== 0 || index !== 0 || attempt !== 0n) return null;
    return { id, size, checksum: block_checksum, segment, offset, slot: null, key: null };
  }
  return { id, size, checksum: block_checksum, segment, offset, slot: { upload_id, part, index, attempt }, key: null };
}
