/**
 * Request and reply bodies of the large-object operations (docs/LARGE_OBJECTS.md §5, issue 14;
 * docs/PROTOCOL.md §3.15): the one definition clients and replicas are written against.
 *
 * As in operations.ts: little-endian; decoders return null for a malformed body and never throw
 * (a body from the network is untrusted); encoders assert their inputs (a bad input is a bug of
 * the caller, not something to put on the wire). Every u64 except checksums, `attempt` and md5
 * bytes must be below 2^53. Reserved bytes are written as zero and ignored; flag bits that are not
 * defined, and fields whose flag is clear but which are not zero, make a body malformed, so that
 * they can be given a meaning later without an old replica silently ignoring it.
 */
import {
  block_size_max_ceiling_bytes,
  block_size_min_bytes,
  content_type_size_max_bytes,
  meta_name_size_max_bytes,
  object_meta_size_max_bytes,
  object_size_max_bytes,
  part_blocks_max,
  put_object_payload_max_bytes,
  read_size_max_bytes,
  upload_abandon_ms_ceiling,
  upload_parts_max,
  value_size_max_default,
} from "../constants.ts";
import { assert } from "../util/assert.ts";
import {
  allocUninitialized,
  isZero,
  pad8,
  readU16,
  readU32,
  readU64,
  readU64Big,
  writeU16,
  writeU32,
  writeU64,
  writeU64Big,
} from "../util/bytes.ts";
import { checksum } from "../util/checksum.ts";
import {
  Condition,
  Operation,
  Result,
  object_info_size,
  readObjectInfo,
  validKey,
  writeObjectInfo,
  type ObjectInfo,
} from "./operations.ts";

export const md5_size = 16;
const u64_limit = 2n ** 64n;

function isU53(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function isCondition(c: number): c is Condition {
  return c === Condition.none || c === Condition.if_version || c === Condition.if_absent;
}

function assertU64Big(n: bigint, what: string): void {
  assert(n >= 0n && n < u64_limit, () => `${what} ${n} is not a u64`);
}

function assertMd5(md5: Uint8Array | null): void {
  assert(md5 === null || md5.length === md5_size, () => `md5 must be ${md5_size} bytes, got ${md5?.length}`);
}

// ---------------------------------------------------------------------------------------------
// Metadata: content type and user metadata (§4)

/** An object's small metadata. user_meta is the canonical encoding (encodeUserMeta): it is stored
 * and hashed as these bytes, so every replica holds the same ones. */
export interface ObjectMetadata {
  /** Printable ASCII (0x20..0x7e), 0..255 bytes. */
  content_type: string;
  user_meta: Uint8Array;
}

export interface MetaEntry {
  /** 1..128 characters of [a-z0-9-]: S3 lowercases x-amz-meta-* names. */
  name: string;
  /** Any bytes. */
  value: Uint8Array;
}

/** Fixed part of one user-metadata entry: u8 name_size, u16 value_size. */
export const meta_entry_fixed_size = 3;

function isNameChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d;
}

/** Why a user-metadata name is not allowed, or null. For clients, to reject input before encoding. */
export function metaNameProblem(name: string): string | null {
  if (name.length < 1 || name.length > meta_name_size_max_bytes) return `a metadata name is 1 to ${meta_name_size_max_bytes} characters`;
  for (let i = 0; i < name.length; i++) {
    if (!isNameChar(name.charCodeAt(i))) return `metadata name ${JSON.stringify(name)}: only a-z, 0-9 and - are allowed`;
  }
  return null;
}

/** Why a content type is not allowed (it will be an HTTP header value: printable ASCII), or null. */
export function contentTypeProblem(content_type: string): string | null {
  if (content_type.length > content_type_size_max_bytes) return `a content type is at most ${content_type_size_max_bytes} bytes`;
  for (let i = 0; i < content_type.length; i++) {
    const c = content_type.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return "a content type is printable ASCII";
  }
  return null;
}

export function userMetaSize(entries: readonly MetaEntry[]): number {
  let size = 0;
  for (const e of entries) size += meta_entry_fixed_size + e.name.length + e.value.length;
  return size;
}

/** Why these entries cannot be user metadata (a bad name, a name twice, too large), or null. */
export function userMetaProblem(entries: readonly MetaEntry[]): string | null {
  const names = new Set<string>();
  for (const e of entries) {
    const problem = metaNameProblem(e.name);
    if (problem !== null) return problem;
    if (names.has(e.name)) return `metadata name ${e.name} given twice`;
    names.add(e.name);
  }
  const size = userMetaSize(entries);
  if (size > object_meta_size_max_bytes) return `user metadata is ${size} bytes encoded, at most ${object_meta_size_max_bytes}`;
  return null;
}

/** The canonical encoding: entries sorted by name (bytewise, which for [a-z0-9-] is string order). */
export function encodeUserMeta(entries: readonly MetaEntry[]): Uint8Array {
  const problem = userMetaProblem(entries);
  assert(problem === null, () => `user metadata: ${problem}`);
  const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out = new Uint8Array(userMetaSize(sorted));
  let offset = 0;
  for (const e of sorted) {
    out[offset] = e.name.length;
    writeU16(out, offset + 1, e.value.length);
    for (let i = 0; i < e.name.length; i++) out[offset + meta_entry_fixed_size + i] = e.name.charCodeAt(i);
    out.set(e.value, offset + meta_entry_fixed_size + e.name.length);
    offset += meta_entry_fixed_size + e.name.length + e.value.length;
  }
  assert(offset === out.length, "user metadata encoded to its computed size");
  return out;
}

/** Null unless `bytes` is exactly a canonical encoding: names valid and strictly ascending (so
 * unique), entries filling the bytes exactly, at most object_meta_size_max_bytes. */
export function decodeUserMeta(bytes: Uint8Array): MetaEntry[] | null {
  if (bytes.length > object_meta_size_max_bytes) return null;
  const entries: MetaEntry[] = [];
  let offset = 0;
  let previous = "";
  while (offset < bytes.length) {
    if (bytes.length < offset + meta_entry_fixed_size) return null;
    const name_size = bytes[offset]!;
    const value_size = readU16(bytes, offset + 1);
    const name_start = offset + meta_entry_fixed_size;
    const value_start = name_start + name_size;
    const end = value_start + value_size;
    if (name_size < 1 || name_size > meta_name_size_max_bytes || end > bytes.length) return null;
    let name = "";
    for (let i = name_start; i < value_start; i++) {
      if (!isNameChar(bytes[i]!)) return null;
      name += String.fromCharCode(bytes[i]!);
    }
    if (entries.length > 0 && name <= previous) return null;
    entries.push({ name, value: bytes.slice(value_start, end) });
    previous = name;
    offset = end;
  }
  return entries;
}

function writeAscii(out: Uint8Array, offset: number, s: string): void {
  for (let i = 0; i < s.length; i++) out[offset + i] = s.charCodeAt(i);
}

/** The content type at bytes, or null if it is not printable ASCII. */
function readContentType(bytes: Uint8Array): string | null {
  let s = "";
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c < 0x20 || c > 0x7e) return null;
    s += String.fromCharCode(c);
  }
  return s;
}

function assertMetadata(meta: ObjectMetadata): void {
  const problem = contentTypeProblem(meta.content_type);
  assert(problem === null, () => `content type: ${problem}`);
  assert(decodeUserMeta(meta.user_meta) !== null, "user_meta must be a canonical encoding (encodeUserMeta)");
}

/** The metadata at [offset, offset + ct_size + meta_size) of body, or null if malformed. */
function readMetadata(body: Uint8Array, offset: number, content_type_size: number, user_meta_size: number): ObjectMetadata | null {
  if (user_meta_size > object_meta_size_max_bytes) return null;
  const content_type = readContentType(body.subarray(offset, offset + content_type_size));
  const user_meta = body.subarray(offset + content_type_size, offset + content_type_size + user_meta_size);
  if (content_type === null || decodeUserMeta(user_meta) === null) return null;
  return { content_type, user_meta };
}

// ---------------------------------------------------------------------------------------------
// Checksums a client and the replicas compute alike (§5.1, §5.4)

/** part_checksum: xxh64 of the part's block checksums, u64 each, in index order. */
export function partChecksum(block_checksums: readonly bigint[]): bigint {
  assert(block_checksums.length >= 1 && block_checksums.length <= part_blocks_max, "a part has 1..part_blocks_max blocks");
  const bytes = new Uint8Array(8 * block_checksums.length);
  block_checksums.forEach((c, i) => writeU64Big(bytes, 8 * i, c));
  return checksum(bytes);
}

/** The checksum of a chunked object: xxh64 of its block checksums (u64 each, in object order),
 * then u64 size. */
export function manifestChecksum(block_checksums: readonly bigint[], size: number): bigint {
  assert(isU53(size) && size <= object_size_max_bytes, () => `object size ${size} out of range`);
  const bytes = new Uint8Array(8 * block_checksums.length + 8);
  block_checksums.forEach((c, i) => writeU64Big(bytes, 8 * i, c));
  writeU64(bytes, 8 * block_checksums.length, size);
  return checksum(bytes);
}

// ---------------------------------------------------------------------------------------------
// create_upload (7), §5.2

/** u16 key_size, u8 condition, u8 flags (bit 0 declared size), u8 content_type_size, u8 reserved,
 * u16 user_meta_size, u64 if_version, u64 declared_size, u64 reserved; then key, content type,
 * user metadata. */
export const create_upload_fixed_size = 32;
const create_flag_declared_size = 1;

export interface CreateUploadRequest {
  key: Uint8Array;
  condition: Condition;
  if_version: number;
  /** null: unknown (streamed from stdin). */
  declared_size: number | null;
  metadata: ObjectMetadata;
}

export function encodeCreateUpload(r: CreateUploadRequest): Uint8Array {
  assert(validKey(r.key), () => `key of ${r.key.length} bytes`);
  assert(isCondition(r.condition) && isU53(r.if_version), "condition and if_version");
  assert(r.declared_size === null || isU53(r.declared_size), () => `declared_size ${r.declared_size} is not below 2^53`);
  assertMetadata(r.metadata);
  const body = new Uint8Array(create_upload_fixed_size + keyedTailSize(r));
  writeKeyed(body, create_upload_fixed_size, r, r.declared_size === null ? 0 : create_flag_declared_size);
  writeU64(body, 16, r.declared_size ?? 0);
  return body;
}

/** The key is returned whatever its size: the caller answers key_invalid for 0 or > key_size_max bytes,
 * and value_too_large for a declared size above object_size_max (validateLargeRequest). */
export function decodeCreateUpload(body: Uint8Array): CreateUploadRequest | null {
  const keyed = readKeyed(body, create_upload_fixed_size, create_flag_declared_size);
  if (keyed === null || body.length !== keyed.end) return null;
  const declared = readU64(body, 16);
  if (!isU53(declared) || ((keyed.flags & create_flag_declared_size) === 0 && declared !== 0)) return null;
  const { key, condition, if_version, metadata } = keyed;
  return { key, condition, if_version, declared_size: (keyed.flags & create_flag_declared_size) !== 0 ? declared : null, metadata };
}

/** create_upload's ok reply: u64 upload_id, u64 block_size_max, u64 object_size_max (24 bytes). */
export interface CreateUploadReply {
  upload_id: number;
  block_size_max: number;
  object_size_max: number;
}
export const create_upload_reply_size = 24;

export function encodeCreateUploadReply(r: CreateUploadReply): Uint8Array {
  assert(isU53(r.upload_id) && r.upload_id >= 1, () => `upload_id ${r.upload_id}`);
  assert(r.block_size_max >= block_size_min_bytes && r.block_size_max <= block_size_max_ceiling_bytes, "block_size_max in range");
  assert(isU53(r.object_size_max) && r.object_size_max >= 1, "object_size_max below 2^53");
  const body = new Uint8Array(create_upload_reply_size);
  writeU64(body, 0, r.upload_id);
  writeU64(body, 8, r.block_size_max);
  writeU64(body, 16, r.object_size_max);
  return body;
}

export function decodeCreateUploadReply(body: Uint8Array): CreateUploadReply | null {
  if (body.length !== create_upload_reply_size) return null;
  const r = { upload_id: readU64(body, 0), block_size_max: readU64(body, 8), object_size_max: readU64(body, 16) };
  if (!isU53(r.upload_id) || r.upload_id < 1) return null;
  if (r.block_size_max < block_size_min_bytes || r.block_size_max > block_size_max_ceiling_bytes) return null;
  if (!isU53(r.object_size_max) || r.object_size_max < 1) return null;
  return r;
}

// ---------------------------------------------------------------------------------------------
// write_block (8), §5.3

/** u64 upload_id, u32 part_number, u32 block_index, u64 attempt, u64 checksum; then the data. */
export const write_block_fixed_size = 32;

export interface WriteBlockRequest {
  upload_id: number;
  /** 1..upload_parts_max. */
  part_number: number;
  /** 0..part_blocks_max-1. */
  block_index: number;
  /** Nonzero, chosen at random per upload of a part. */
  attempt: bigint;
  /** xxh64 of data. */
  checksum: bigint;
  /** A view of the data inside the body (no copy). */
  data: Uint8Array;
  /** Offset of the data inside the body, so the replica can locate the block on disk. */
  data_offset: number;
}

export function encodeWriteBlock(r: Omit<WriteBlockRequest, "data_offset">): Uint8Array {
  assert(isU53(r.upload_id), () => `upload_id ${r.upload_id} is not below 2^53`);
  assert(Number.isInteger(r.part_number) && r.part_number >= 1 && r.part_number <= upload_parts_max, "part_number in range");
  assert(Number.isInteger(r.block_index) && r.block_index >= 0 && r.block_index < part_blocks_max, "block_index in range");
  assert(r.attempt !== 0n, "attempt is nonzero");
  assertU64Big(r.attempt, "attempt");
  assertU64Big(r.checksum, "checksum");
  assert(r.data.length >= 1 && r.data.length <= block_size_max_ceiling_bytes, () => `block of ${r.data.length} bytes`);
  // Every byte is written below, so a 4 MiB block's body is not zero-filled first.
  const body = allocUninitialized(write_block_fixed_size + r.data.length);
  writeU64(body, 0, r.upload_id);
  writeU32(body, 8, r.part_number);
  writeU32(body, 12, r.block_index);
  writeU64Big(body, 16, r.attempt);
  writeU64Big(body, 24, r.checksum);
  body.set(r.data, write_block_fixed_size);
  return body;
}

/** Structure only: the data's checksum and its size against the cluster's block_size_max are
 * arrival checks (validateLargeRequest), not repeated wherever a body is decoded. */
export function decodeWriteBlock(body: Uint8Array): WriteBlockRequest | null {
  if (body.length <= write_block_fixed_size) return null; // the data is at least one byte
  const upload_id = readU64(body, 0);
  const part_number = readU32(body, 8);
  const block_index = readU32(body, 12);
  const attempt = readU64Big(body, 16);
  if (!isU53(upload_id) || part_number < 1 || part_number > upload_parts_max || block_index >= part_blocks_max || attempt === 0n)
    return null;
  return {
    upload_id,
    part_number,
    block_index,
    attempt,
    checksum: readU64Big(body, 24),
    data: body.subarray(write_block_fixed_size),
    data_offset: write_block_fixed_size,
  };
}

// ---------------------------------------------------------------------------------------------
// complete_upload (9), §5.4

/** u64 upload_id, u8 condition, u8 flags (bit 0 md5, bit 1 declared size), u16 reserved,
 * u32 part_count, u64 if_version, u64 declared_size, 16 bytes md5; then the parts. */
export const complete_upload_fixed_size = 48;
/** u32 part_number, u32 block_count, u64 attempt, u64 part_size, u64 part_checksum. */
export const upload_part_size = 32;
const complete_flag_md5 = 1;
const complete_flag_declared_size = 2;
/** User metadata follows the parts and replaces the upload's (the S3 gateway records a multipart
 * object's part count, known only at complete: docs/S3.md §3). */
const complete_flag_user_meta = 4;
const complete_flags = complete_flag_md5 | complete_flag_declared_size | complete_flag_user_meta;

export interface UploadPart {
  part_number: number;
  /** 1..part_blocks_max: blocks 0..block_count-1 of (part_number, attempt). */
  block_count: number;
  attempt: bigint;
  part_size: number;
  /** partChecksum of the part's block checksums. */
  part_checksum: bigint;
}

export interface CompleteUploadRequest {
  upload_id: number;
  condition: Condition;
  if_version: number;
  declared_size: number | null;
  md5: Uint8Array | null;
  /** part_number strictly ascending; none makes an empty object. */
  parts: UploadPart[];
  /** A canonical user-metadata encoding that replaces the upload's; null keeps the upload's. */
  user_meta?: Uint8Array | null;
}

export function encodeCompleteUpload(r: CompleteUploadRequest): Uint8Array {
  assert(isU53(r.upload_id), () => `upload_id ${r.upload_id} is not below 2^53`);
  assert(isCondition(r.condition) && isU53(r.if_version), "condition and if_version");
  assert(r.declared_size === null || isU53(r.declared_size), "declared_size below 2^53");
  assertMd5(r.md5);
  assert(r.parts.length <= upload_parts_max, () => `${r.parts.length} parts`);
  const user_meta = r.user_meta ?? null;
  assert(user_meta === null || decodeUserMeta(user_meta) !== null, "user metadata is a canonical encoding");
  const parts_end = complete_upload_fixed_size + upload_part_size * r.parts.length;
  const body = new Uint8Array(parts_end + (user_meta?.length ?? 0));
  writeU64(body, 0, r.upload_id);
  body[8] = r.condition;
  body[9] =
    (r.md5 === null ? 0 : complete_flag_md5) |
    (r.declared_size === null ? 0 : complete_flag_declared_size) |
    (user_meta === null ? 0 : complete_flag_user_meta);
  if (user_meta !== null) {
    writeU16(body, 10, user_meta.length);
    body.set(user_meta, parts_end);
  }
  writeU32(body, 12, r.parts.length);
  writeU64(body, 16, r.if_version);
  writeU64(body, 24, r.declared_size ?? 0);
  if (r.md5 !== null) body.set(r.md5, 32);
  let previous = 0;
  r.parts.forEach((p, i) => {
    assert(
      Number.isInteger(p.part_number) && p.part_number > previous && p.part_number <= upload_parts_max,
      "part numbers ascend in 1..10000",
    );
    assert(Number.isInteger(p.block_count) && p.block_count >= 1 && p.block_count <= part_blocks_max, "block_count in range");
    assert(p.attempt !== 0n && isU53(p.part_size), "attempt nonzero, part_size below 2^53");
    assertU64Big(p.attempt, "attempt");
    assertU64Big(p.part_checksum, "part_checksum");
    const o = complete_upload_fixed_size + upload_part_size * i;
    writeU32(body, o, p.part_number);
    writeU32(body, o + 4, p.block_count);
    writeU64Big(body, o + 8, p.attempt);
    writeU64(body, o + 16, p.part_size);
    writeU64Big(body, o + 24, p.part_checksum);
    previous = p.part_number;
  });
  return body;
}

/** A declared size above object_size_max is value_too_large (validateLargeRequest), not malformed. */
export function decodeCompleteUpload(body: Uint8Array): CompleteUploadRequest | null {
  if (body.length < complete_upload_fixed_size) return null;
  const upload_id = readU64(body, 0);
  const condition = body[8]!;
  const flags = body[9]!;
  const part_count = readU32(body, 12);
  const if_version = readU64(body, 16);
  const declared = readU64(body, 24);
  const md5 = body.subarray(32, 48);
  const user_meta_size = readU16(body, 10);
  if (!isU53(upload_id) || !isCondition(condition) || (flags & ~complete_flags) !== 0) return null;
  if (!isU53(if_version) || !isU53(declared)) return null;
  if ((flags & complete_flag_declared_size) === 0 && declared !== 0) return null;
  if ((flags & complete_flag_md5) === 0 && !isZero(md5, 0, md5.length)) return null;
  if ((flags & complete_flag_user_meta) === 0 && user_meta_size !== 0) return null;
  const parts_end = complete_upload_fixed_size + upload_part_size * part_count;
  if (part_count > upload_parts_max || body.length !== parts_end + user_meta_size) return null;
  const user_meta = (flags & complete_flag_user_meta) !== 0 ? body.slice(parts_end) : null;
  if (user_meta !== null && decodeUserMeta(user_meta) === null) return null;
  const parts: UploadPart[] = [];
  let previous = 0;
  for (let i = 0; i < part_count; i++) {
    const o = complete_upload_fixed_size + upload_part_size * i;
    const p = {
      part_number: readU32(body, o),
      block_count: readU32(body, o + 4),
      attempt: readU64Big(body, o + 8),
      part_size: readU64(body, o + 16),
      part_checksum: readU64Big(body, o + 24),
    };
    if (p.part_number <= previous || p.part_number > upload_parts_max) return null;
    if (p.block_count < 1 || p.block_count > part_blocks_max || p.attempt === 0n || !isU53(p.part_size)) return null;
    parts.push(p);
    previous = p.part_number;
  }
  return {
    upload_id,
    condition,
    if_version,
    declared_size: (flags & complete_flag_declared_size) !== 0 ? declared : null,
    md5: (flags & complete_flag_md5) !== 0 ? md5.slice() : null,
    parts,
    user_meta,
  };
}

/** complete_upload's ok reply: u64 version, u64 manifest checksum (16 bytes). */
export interface CompleteUploadReply {
  version: number;
  checksum: bigint;
}
export const complete_upload_reply_size = 16;

export function encodeCompleteUploadReply(r: CompleteUploadReply): Uint8Array {
  assert(isU53(r.version) && r.version >= 1, () => `version ${r.version}`);
  assertU64Big(r.checksum, "checksum");
  const body = new Uint8Array(complete_upload_reply_size);
  writeU64(body, 0, r.version);
  writeU64Big(body, 8, r.checksum);
  return body;
}

export function decodeCompleteUploadReply(body: Uint8Array): CompleteUploadReply | null {
  if (body.length !== complete_upload_reply_size) return null;
  const version = readU64(body, 0);
  if (!isU53(version) || version < 1) return null;
  return { version, checksum: readU64Big(body, 8) };
}

/** upload_incomplete's body: u32 part_number, u32 block_index (0xffffffff: only the part's size or
 * checksum differs), u64 the size stored for that part (16 bytes). */
export interface UploadIncomplete {
  part_number: number;
  /** null: every block is there, but the part's size or checksum differs. */
  block_index: number | null;
  stored_size: number;
}
export const upload_incomplete_size = 16;
const no_block_index = 0xffffffff;

export function encodeUploadIncomplete(r: UploadIncomplete): Uint8Array {
  assert(Number.isInteger(r.part_number) && r.part_number >= 1 && r.part_number <= upload_parts_max, "part_number in range");
  assert(
    r.block_index === null || (Number.isInteger(r.block_index) && r.block_index >= 0 && r.block_index < part_blocks_max),
    "block_index",
  );
  assert(isU53(r.stored_size), "stored_size below 2^53");
  const body = new Uint8Array(upload_incomplete_size);
  writeU32(body, 0, r.part_number);
  writeU32(body, 4, r.block_index ?? no_block_index);
  writeU64(body, 8, r.stored_size);
  return body;
}

export function decodeUploadIncomplete(body: Uint8Array): UploadIncomplete | null {
  if (body.length !== upload_incomplete_size) return null;
  const part_number = readU32(body, 0);
  const index = readU32(body, 4);
  const stored_size = readU64(body, 8);
  if (part_number < 1 || part_number > upload_parts_max || !isU53(stored_size)) return null;
  if (index !== no_block_index && index >= part_blocks_max) return null;
  return { part_number, block_index: index === no_block_index ? null : index, stored_size };
}

// ---------------------------------------------------------------------------------------------
// abort_upload (10), housekeeping (13), §5.5

export const abort_upload_size = 8;

export function encodeAbortUpload(upload_id: number): Uint8Array {
  assert(isU53(upload_id), () => `upload_id ${upload_id} is not below 2^53`);
  const body = new Uint8Array(abort_upload_size);
  writeU64(body, 0, upload_id);
  return body;
}

/** The upload id, or null. */
export function decodeAbortUpload(body: Uint8Array): number | null {
  if (body.length !== abort_upload_size) return null;
  const upload_id = readU64(body, 0);
  return isU53(upload_id) ? upload_id : null;
}

/** A housekeeping entry: empty (a no-op that advances the log, §8's nudge) or the abandon age. */
export interface Housekeeping {
  /** null: a no-op; else 1..upload_abandon_ms_ceiling. */
  abandon_age_ms: number | null;
}

export function encodeHousekeeping(h: Housekeeping): Uint8Array {
  if (h.abandon_age_ms === null) return new Uint8Array(0);
  const age = h.abandon_age_ms;
  assert(Number.isSafeInteger(age) && age >= 1 && age <= upload_abandon_ms_ceiling, () => `abandon age ${age} ms`);
  const body = new Uint8Array(8);
  writeU64(body, 0, age);
  return body;
}

export function decodeHousekeeping(body: Uint8Array): Housekeeping | null {
  if (body.length === 0) return { abandon_age_ms: null };
  if (body.length !== 8) return null;
  const age = readU64(body, 0);
  if (!Number.isSafeInteger(age) || age < 1 || age > upload_abandon_ms_ceiling) return null;
  return { abandon_age_ms: age };
}

// ---------------------------------------------------------------------------------------------
// put_object (12), §5.5

/** u16 key_size, u8 condition, u8 flags (bit 0 md5), u8 content_type_size, u8 reserved,
 * u16 user_meta_size, u64 if_version, 16 bytes md5; then key, content type, user metadata, value. */
export const put_object_fixed_size = 32;
const put_object_flag_md5 = 1;

export interface PutObjectRequest {
  key: Uint8Array;
  condition: Condition;
  if_version: number;
  md5: Uint8Array | null;
  metadata: ObjectMetadata;
  /** A view of the value inside the body (no copy). */
  value: Uint8Array;
  /** Offset of the value inside the body, so the replica can locate it on disk. */
  value_offset: number;
}

export function encodePutObject(r: Omit<PutObjectRequest, "value_offset">): Uint8Array {
  assert(validKey(r.key), () => `key of ${r.key.length} bytes`);
  assert(isCondition(r.condition) && isU53(r.if_version), "condition and if_version");
  assertMd5(r.md5);
  assertMetadata(r.metadata);
  assert(r.value.length <= value_size_max_default, () => `value of ${r.value.length} bytes`);
  const value_offset = put_object_fixed_size + keyedTailSize(r);
  const body = new Uint8Array(value_offset + r.value.length);
  writeKeyed(body, put_object_fixed_size, r, r.md5 === null ? 0 : put_object_flag_md5);
  if (r.md5 !== null) body.set(r.md5, 16);
  body.set(r.value, value_offset);
  return body;
}

/** The key and value are returned whatever their sizes: key_invalid and value_too_large are the
 * caller's answers (validateLargeRequest). */
export function decodePutObject(body: Uint8Array): PutObjectRequest | null {
  const keyed = readKeyed(body, put_object_fixed_size, put_object_flag_md5);
  if (keyed === null) return null;
  const md5 = body.subarray(16, 32);
  if ((keyed.flags & put_object_flag_md5) === 0 && !isZero(md5, 0, md5.length)) return null;
  const { key, condition, if_version, metadata, end: value_offset } = keyed;
  const has_md5 = (keyed.flags & put_object_flag_md5) !== 0;
  return { key, condition, if_version, md5: has_md5 ? md5.slice() : null, metadata, value: body.subarray(value_offset), value_offset };
}

// ---------------------------------------------------------------------------------------------
// The layout create_upload and put_object share: u16 key_size @0, u8 condition @2, u8 flags @3,
// u8 content_type_size @4, u8 reserved @5, u16 user_meta_size @6, u64 if_version @8; after the
// fixed part, the key, the content type and the user metadata.

interface Keyed {
  key: Uint8Array;
  condition: Condition;
  if_version: number;
  metadata: ObjectMetadata;
}

/** Bytes of the key, content type and user metadata after the fixed part. */
function keyedTailSize(r: Keyed): number {
  return r.key.length + r.metadata.content_type.length + r.metadata.user_meta.length;
}

function writeKeyed(body: Uint8Array, fixed: number, r: Keyed, flags: number): void {
  assert(body.length >= fixed + keyedTailSize(r), () => `a body of ${body.length} bytes holds no key and metadata after ${fixed}`);
  const ct = r.metadata.content_type.length;
  writeU16(body, 0, r.key.length);
  body[2] = r.condition;
  body[3] = flags;
  body[4] = ct;
  writeU16(body, 6, r.metadata.user_meta.length);
  writeU64(body, 8, r.if_version);
  body.set(r.key, fixed);
  writeAscii(body, fixed + r.key.length, r.metadata.content_type);
  body.set(r.metadata.user_meta, fixed + r.key.length + ct);
}

/** The shared fields, with flags outside `flags_known` malformed; `end` is the offset after the
 * metadata (null: malformed, or the body ends before it). */
function readKeyed(body: Uint8Array, fixed: number, flags_known: number): (Keyed & { flags: number; end: number }) | null {
  if (body.length < fixed) return null;
  const key_size = readU16(body, 0);
  const condition = body[2]!;
  const flags = body[3]!;
  const content_type_size = body[4]!;
  const user_meta_size = readU16(body, 6);
  const if_version = readU64(body, 8);
  if (!isCondition(condition) || (flags & ~flags_known) !== 0 || !isU53(if_version)) return null;
  const end = fixed + key_size + content_type_size + user_meta_size;
  if (body.length < end) return null;
  const metadata = readMetadata(body, fixed + key_size, content_type_size, user_meta_size);
  if (metadata === null) return null;
  return { key: body.subarray(fixed, fixed + key_size), condition, if_version, metadata, flags, end };
}

// ---------------------------------------------------------------------------------------------
// read (11), §5.6

/** u16 key_size, u8 flags (bit 0 metadata, bit 1 block map), u8 reserved, u32 length,
 * u64 version, u64 offset; then the key. */
export const read_request_fixed_size = 24;
const read_flag_metadata = 1;
const read_flag_block_map = 2;

export interface ReadRequest {
  key: Uint8Array;
  /** 0: the current version (the linearizable read path); else exactly this one. */
  version: number;
  offset: number;
  /** 0..read_size_max_bytes; 0 asks for the header only (head). */
  length: number;
  metadata: boolean;
  block_map: boolean;
}

export function encodeReadRequest(r: ReadRequest): Uint8Array {
  assert(validKey(r.key), () => `key of ${r.key.length} bytes`);
  assert(isU53(r.version) && isU53(r.offset), "version and offset below 2^53");
  assert(Number.isInteger(r.length) && r.length >= 0 && r.length <= read_size_max_bytes, () => `read length ${r.length}`);
  const body = new Uint8Array(read_request_fixed_size + r.key.length);
  writeU16(body, 0, r.key.length);
  body[2] = (r.metadata ? read_flag_metadata : 0) | (r.block_map ? read_flag_block_map : 0);
  writeU32(body, 4, r.length);
  writeU64(body, 8, r.version);
  writeU64(body, 16, r.offset);
  body.set(r.key, read_request_fixed_size);
  return body;
}

/** The key is returned whatever its size (the caller answers key_invalid). */
export function decodeReadRequest(body: Uint8Array): ReadRequest | null {
  if (body.length < read_request_fixed_size) return null;
  const key_size = readU16(body, 0);
  const flags = body[2]!;
  const length = readU32(body, 4);
  const version = readU64(body, 8);
  const offset = readU64(body, 16);
  if ((flags & ~(read_flag_metadata | read_flag_block_map)) !== 0 || length > read_size_max_bytes) return null;
  if (!isU53(version) || !isU53(offset) || body.length !== read_request_fixed_size + key_size) return null;
  return {
    key: body.subarray(read_request_fixed_size),
    version,
    offset,
    length,
    metadata: (flags & read_flag_metadata) !== 0,
    block_map: (flags & read_flag_block_map) !== 0,
  };
}

// ---------------------------------------------------------------------------------------------
// The object header (§5.1), the block map and the read reply

export enum ObjectKind {
  /** One value in one prepare (put, put_object); checksum = xxh64 of the bytes. */
  inline = 0,
  /** A manifest of blocks (complete_upload); checksum = manifestChecksum. */
  chunked = 1,
}

/** Object info (32 bytes), u8 kind, u8 flags, u8 content_type_size, u8 reserved, u16 user_meta_size,
 * u16 reserved, u32 block_count, u32 reserved, 16 bytes md5; then, with flag bit 1, content type,
 * user metadata and zeros to a multiple of 8. */
export const object_header_fixed_size = 64;
const header_flag_md5 = 1;
const header_flag_metadata = 2;
/** Not in LARGE_OBJECTS.md §5.1, which leaves the reply's layout to the request's flags: set when
 * a block map follows the header, so that a reply can be parsed on its own (PROTOCOL.md §3.15.8). */
const header_flag_block_map = 4;

export interface ObjectHeader extends ObjectInfo {
  kind: ObjectKind;
  /** Inline: 1, or 0 when empty. Chunked: the blocks of the manifest (0 when empty). */
  block_count: number;
  md5: Uint8Array | null;
  /** null: not asked for (read flag bit 0 clear). */
  metadata: ObjectMetadata | null;
}

export interface BlockMapEntry {
  /** Offset of the block's first byte in the object. */
  start: number;
  size: number;
  checksum: bigint;
}

/** u32 count, u32 reserved; then per block u64 start, u64 size, u64 checksum. */
export const block_map_fixed_size = 8;
export const block_map_entry_size = 24;
/** The blocks a read of read_size_max_bytes can touch when no block is smaller than the floor of
 * block_size_max, plus a partial one at each end. */
export const block_map_entries_max = Math.floor(read_size_max_bytes / block_size_min_bytes) + 2;
/** The largest read reply body: header with the largest metadata, the largest block map, the
 * largest read. Below message_size_max (checked by the test). */
export const read_reply_size_max =
  object_header_fixed_size +
  pad8(content_type_size_max_bytes + object_meta_size_max_bytes) +
  block_map_fixed_size +
  block_map_entry_size * block_map_entries_max +
  read_size_max_bytes;

export interface ReadReply {
  header: ObjectHeader;
  /** Present when the read asked for it: the blocks [offset, offset + data.length) touches. */
  block_map: BlockMapEntry[] | null;
  data: Uint8Array;
}

function assertHeader(h: ObjectHeader): void {
  assert(isU53(h.version) && isU53(h.timestamp) && isU53(h.size), "object info below 2^53");
  assertU64Big(h.checksum, "checksum");
  assertMd5(h.md5);
  if (h.kind === ObjectKind.inline) {
    assert(h.block_count === (h.size > 0 ? 1 : 0) && h.size <= value_size_max_default, "an inline object is one block, 0 if empty");
  } else {
    assert(h.kind === ObjectKind.chunked, () => `object kind ${h.kind}`);
    assert(h.size <= object_size_max_bytes && Number.isInteger(h.block_count), "chunked object size");
    assert(h.block_count >= 0 && h.block_count <= 0xffffffff && h.block_count > 0 === h.size > 0, "block_count fits a u32, 0 iff empty");
  }
  if (h.metadata !== null) assertMetadata(h.metadata);
}

function metadataSize(meta: ObjectMetadata | null): number {
  return meta === null ? 0 : pad8(meta.content_type.length + meta.user_meta.length);
}

export function encodeReadReply(r: ReadReply): Uint8Array {
  const h = r.header;
  assertHeader(h);
  assert(r.data.length <= read_size_max_bytes && r.data.length <= h.size, () => `read of ${r.data.length} bytes`);
  assert(r.block_map === null || r.block_map.length <= block_map_entries_max, "block map within its bound");
  assert(r.block_map === null || r.block_map.length <= h.block_count, "no more blocks in the map than in the object");
  assert(
    r.block_map === null || h.kind === ObjectKind.chunked || r.block_map.every((b) => b.start === 0 && b.size === h.size),
    "an inline object's one block is the whole value",
  );
  const map_start = object_header_fixed_size + metadataSize(h.metadata);
  const data_start = map_start + (r.block_map === null ? 0 : block_map_fixed_size + block_map_entry_size * r.block_map.length);
  const body = allocUninitialized(data_start + r.data.length);
  body.fill(0, 0, data_start); // reserved bytes, padding, md5 when absent
  writeObjectInfo(h, body, 0);
  body[object_info_size] = h.kind;
  body[33] =
    (h.md5 === null ? 0 : header_flag_md5) |
    (h.metadata === null ? 0 : header_flag_metadata) |
    (r.block_map === null ? 0 : header_flag_block_map);
  body[34] = h.metadata?.content_type.length ?? 0;
  writeU16(body, 36, h.metadata?.user_meta.length ?? 0);
  writeU32(body, 40, h.block_count);
  if (h.md5 !== null) body.set(h.md5, 48);
  if (h.metadata !== null) {
    writeAscii(body, object_header_fixed_size, h.metadata.content_type);
    body.set(h.metadata.user_meta, object_header_fixed_size + h.metadata.content_type.length);
  }
  if (r.block_map !== null) {
    writeU32(body, map_start, r.block_map.length);
    let end = r.block_map[0]?.start ?? 0;
    r.block_map.forEach((b, i) => {
      assert(
        b.start === end && b.size >= 1 && isU53(b.size) && b.start + b.size <= h.size,
        "block map entries are contiguous blocks of the object",
      );
      assertU64Big(b.checksum, "block checksum");
      const o = map_start + block_map_fixed_size + block_map_entry_size * i;
      writeU64(body, o, b.start);
      writeU64(body, o + 8, b.size);
      writeU64Big(body, o + 16, b.checksum);
      end = b.start + b.size;
    });
  }
  body.set(r.data, data_start);
  return body;
}

/** The header at the start of body and where what follows it starts, or null if malformed. */
export function readObjectHeader(body: Uint8Array): { header: ObjectHeader; end: number; block_map: boolean } | null {
  if (body.length < object_header_fixed_size) return null;
  const info = readObjectInfo(body, 0);
  if (info === null) return null;
  const kind = body[32]!;
  const flags = body[33]!;
  const content_type_size = body[34]!;
  const user_meta_size = readU16(body, 36);
  const block_count = readU32(body, 40);
  const md5 = body.subarray(48, 64);
  if ((flags & ~(header_flag_md5 | header_flag_metadata | header_flag_block_map)) !== 0) return null;
  if ((flags & header_flag_md5) === 0 && !isZero(md5, 0, md5.length)) return null;
  if (kind === ObjectKind.inline) {
    if (info.size > value_size_max_default || block_count !== (info.size > 0 ? 1 : 0)) return null;
  } else if (kind === ObjectKind.chunked) {
    if (info.size > object_size_max_bytes || block_count > 0 !== info.size > 0 || block_count > info.size) return null;
  } else {
    return null;
  }
  let metadata: ObjectMetadata | null = null;
  let end = object_header_fixed_size;
  if ((flags & header_flag_metadata) !== 0) {
    end += pad8(content_type_size + user_meta_size);
    if (body.length < end) return null;
    metadata = readMetadata(body, object_header_fixed_size, content_type_size, user_meta_size);
    if (metadata === null) return null;
  } else if (content_type_size !== 0 || user_meta_size !== 0) {
    return null;
  }
  const header = { ...info, kind, block_count, md5: (flags & header_flag_md5) !== 0 ? md5.slice() : null, metadata };
  return { header, end, block_map: (flags & header_flag_block_map) !== 0 };
}

export function decodeReadReply(body: Uint8Array): ReadReply | null {
  const parsed = readObjectHeader(body);
  if (parsed === null) return null;
  const { header } = parsed;
  let offset = parsed.end;
  let block_map: BlockMapEntry[] | null = null;
  if (parsed.block_map) {
    if (body.length < offset + block_map_fixed_size) return null;
    const count = readU32(body, offset);
    if (count > block_map_entries_max || count > header.block_count) return null;
    offset += block_map_fixed_size;
    if (body.length < offset + block_map_entry_size * count) return null;
    block_map = [];
    for (let i = 0; i < count; i++, offset += block_map_entry_size) {
      const b = { start: readU64(body, offset), size: readU64(body, offset + 8), checksum: readU64Big(body, offset + 16) };
      if (!isU53(b.start) || !isU53(b.size) || b.size < 1 || b.start + b.size > header.size) return null;
      if (i > 0 && b.start !== block_map[i - 1]!.start + block_map[i - 1]!.size) return null;
      // An inline object's one block is the whole value.
      if (header.kind === ObjectKind.inline && (b.start !== 0 || b.size !== header.size)) return null;
      block_map.push(b);
    }
  }
  const data = body.subarray(offset);
  if (data.length > read_size_max_bytes || data.length > header.size) return null;
  return { header, block_map, data };
}

/** The largest value a put_object with this key and metadata may carry: value_size_max, less
 * what the key and metadata take of put_object_payload_max_bytes (so the object's sync record fits
 * a message, constants.ts). */
export function putObjectValueMax(r: { key: Uint8Array; metadata: ObjectMetadata }, limits: { readonly value_size_max: number }): number {
  const named = r.key.length + r.metadata.content_type.length + r.metadata.user_meta.length;
  return Math.min(limits.value_size_max, put_object_payload_max_bytes - named);
}

// ---------------------------------------------------------------------------------------------
// Arrival checks that need only the body and the configuration (§3.13 step 3)

/**
 * What a primary answers a large-object request on arrival, as far as the body alone decides:
 * bad_request, key_invalid, value_too_large, else ok (the state decides the rest); called by
 * validateRequest (execute.ts). An md5 is the client's claim and is not verified (PROTOCOL.md §3.15.6).
 */
export function validateLargeRequest(
  operation: number,
  body: Uint8Array,
  limits: { readonly block_size_max: number; readonly value_size_max: number },
): Result {
  switch (operation) {
    case Operation.create_upload: {
      const r = decodeCreateUpload(body);
      if (r === null) return Result.bad_request;
      if (!validKey(r.key)) return Result.key_invalid;
      return r.declared_size !== null && r.declared_size > object_size_max_bytes ? Result.value_too_large : Result.ok;
    }
    case Operation.write_block: {
      const r = decodeWriteBlock(body);
      if (r === null || checksum(r.data) !== r.checksum) return Result.bad_request;
      return r.data.length > limits.block_size_max ? Result.value_too_large : Result.ok;
    }
    case Operation.complete_upload: {
      const r = decodeCompleteUpload(body);
      if (r === null) return Result.bad_request;
      return r.declared_size !== null && r.declared_size > object_size_max_bytes ? Result.value_too_large : Result.ok;
    }
    case Operation.abort_upload:
      return decodeAbortUpload(body) === null ? Result.bad_request : Result.ok;
    case Operation.read: {
      const r = decodeReadRequest(body);
      if (r === null) return Result.bad_request;
      return validKey(r.key) ? Result.ok : Result.key_invalid;
    }
    case Operation.put_object: {
      const r = decodePutObject(body);
      if (r === null) return Result.bad_request;
      if (!validKey(r.key)) return Result.key_invalid;
      return r.value.length > putObjectValueMax(r, limits) ? Result.value_too_large : Result.ok;
    }
    default:
      // housekeeping is made by the primary only; anything else is not a large-object operation.
      return Result.bad_request;
  }
}
