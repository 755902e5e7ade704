/**
 * Request and reply bodies of the object operations (docs/PROTOCOL.md §Operations). Shared by the
 * replica, the TypeScript client and (through the document) the C client. All integers are
 * little-endian. Decoders return null on a malformed body instead of throwing: a request from the
 * network is untrusted.
 */
import { key_size_max, key_size_min, list_limit_max } from "../constants.ts";
import { allocUninitialized, readU16, readU32, readU64, readU64Big, writeU16, writeU32, writeU64, writeU64Big } from "../util/bytes.ts";

export enum Operation {
  register = 1,
  put = 2,
  get = 3,
  delete = 4,
  list = 5,
  stat = 6,
  // Large objects (docs/PROTOCOL.md §3.15; bodies in large_bodies.ts).
  create_upload = 7,
  write_block = 8,
  complete_upload = 9,
  abort_upload = 10,
  read = 11,
  put_object = 12,
  /** Made only by the primary, as a batch entry of client 0; a client's is bad_request on arrival. */
  housekeeping = 13,
}
/** The highest code a client may send (13, housekeeping, is internal). */
export const operation_max = 12;
/** The highest code a replica executes today: 7..13 are defined but answered bad_request. */
export const operation_executed_max = 6;

/** Writes go through the log; reads are served by the primary under the read rule. The large-object
 * writes are listed so that later steps need not redefine the kinds; a replica rejects them on
 * arrival (validateRequest) before this is asked. */
export function isWrite(operation: Operation): boolean {
  switch (operation) {
    case Operation.register:
    case Operation.put:
    case Operation.delete:
    case Operation.create_upload:
    case Operation.write_block:
    case Operation.complete_upload:
    case Operation.abort_upload:
    case Operation.put_object:
    case Operation.housekeeping:
      return true;
    default:
      return false;
  }
}

/** Writes a replica with a full disk still takes (docs/PROTOCOL.md §6, "A full disk"): they are a
 * few bytes each and free space (delete, abort_upload, the primary's housekeeping), or a client
 * needs one to send them (register). */
export function freesSpace(operation: Operation): boolean {
  return (
    operation === Operation.delete ||
    operation === Operation.abort_upload ||
    operation === Operation.housekeeping ||
    operation === Operation.register
  );
}

/** Whether a client must hold a session to send it (docs/LARGE_OBJECTS.md §5): writes recorded in
 * the client table do; register makes one; write_block is idempotent and not recorded, so a
 * client's extra lanes never register; reads never need one; housekeeping is not a client's. */
export function needsSession(operation: Operation): boolean {
  return (
    isWrite(operation) && operation !== Operation.register && operation !== Operation.write_block && operation !== Operation.housekeeping
  );
}

export enum Result {
  ok = 0,
  not_found = 1,
  condition_failed = 2,
  key_invalid = 3,
  value_too_large = 4,
  bad_request = 5,
  /** The client's session was evicted from the client table: register again. */
  evicted = 6,
  /** This replica is not the primary of its view (header.view says which view it is in). */
  not_primary = 7,
  /** The primary's queues are full; retry after a short backoff. */
  busy = 8,
  /** The replica cannot read a value right now (damaged, being repaired); retry. */
  unavailable = 9,
  /** The primary's disk is full: writes are refused until space returns; reads still work. */
  no_space = 10,
  /** The replier belongs to another cluster: the request carried another cluster id, because the
   * sender's address list differs from the replicas'. Sent once, then the connection is closed
   * (lib/net/cluster_mismatch.ts); the body is the replier's cluster id. */
  wrong_cluster = 11,
  // Large objects (docs/PROTOCOL.md §3.15.9).
  /** A read named a version that is no longer current; the body is the current version (0: absent). */
  object_changed = 12,
  /** The upload is unknown, completed, aborted or expired. */
  upload_not_found = 13,
  /** A read's offset is beyond the object; the body is the object's size. */
  range_invalid = 14,
  /** A complete named a block that is missing or does not match (body: large_bodies.ts UploadIncomplete). */
  upload_incomplete = 15,
  /** The completed size differs from the declared one; the body is the actual size. */
  size_mismatch = 16,
  /** The cluster's uploads_open_max uploads are open; the body is that limit. */
  too_many_uploads = 17,
}
export const result_max = 17;

export enum Condition {
  none = 0,
  if_version = 1,
  if_absent = 2,
}

/** Fixed part of a key operation's body: u16 key_size, u8 condition, u8 reserved, u32 reserved,
 * u64 if_version; then the key; then (put only) the value. */
export const key_request_fixed_size = 16;
/** Fixed part of a list body: u16 prefix_size, u16 after_size, u32 limit, u64 reserved. */
export const list_request_fixed_size = 16;

export interface KeyRequest {
  key: Uint8Array;
  condition: Condition;
  if_version: number;
  /** put only: a view of the value inside the body (no copy). */
  value: Uint8Array;
  /** Offset of the value inside the body, so the replica can locate it on disk. */
  value_offset: number;
}

export interface ListRequest {
  prefix: Uint8Array;
  after: Uint8Array;
  limit: number;
}

export function encodeKeyRequest(key: Uint8Array, value: Uint8Array | null, condition = Condition.none, if_version = 0): Uint8Array {
  // Every byte is written below (the reserved ones as zeros), so a large put's body is not
  // zero-filled first.
  const body = allocUninitialized(key_request_fixed_size + key.length + (value?.length ?? 0));
  writeU16(body, 0, key.length);
  body[2] = condition;
  body[3] = 0;
  writeU32(body, 4, 0);
  writeU64(body, 8, if_version);
  body.set(key, key_request_fixed_size);
  if (value !== null) body.set(value, key_request_fixed_size + key.length);
  return body;
}

export function decodeKeyRequest(body: Uint8Array, has_value: boolean): KeyRequest | null {
  if (body.length < key_request_fixed_size) return null;
  const key_size = readU16(body, 0);
  const condition = body[2]!;
  const if_version = readU64(body, 8);
  if (condition > Condition.if_absent || !Number.isSafeInteger(if_version)) return null;
  const value_offset = key_request_fixed_size + key_size;
  if (body.length < value_offset) return null;
  if (!has_value && body.length !== value_offset) return null;
  return {
    key: body.subarray(key_request_fixed_size, value_offset),
    condition,
    if_version,
    value: body.subarray(value_offset),
    value_offset,
  };
}

export function encodeListRequest(prefix: Uint8Array, after: Uint8Array, limit: number): Uint8Array {
  const body = new Uint8Array(list_request_fixed_size + prefix.length + after.length);
  writeU16(body, 0, prefix.length);
  writeU16(body, 2, after.length);
  writeU32(body, 4, limit);
  body.set(prefix, list_request_fixed_size);
  body.set(after, list_request_fixed_size + prefix.length);
  return body;
}

export function decodeListRequest(body: Uint8Array): ListRequest | null {
  if (body.length < list_request_fixed_size) return null;
  const prefix_size = readU16(body, 0);
  const after_size = readU16(body, 2);
  const limit = readU32(body, 4);
  if (prefix_size > key_size_max || after_size > key_size_max) return null;
  if (body.length !== list_request_fixed_size + prefix_size + after_size) return null;
  if (limit < 1 || limit > list_limit_max) return null;
  return {
    prefix: body.subarray(list_request_fixed_size, list_request_fixed_size + prefix_size),
    after: body.subarray(list_request_fixed_size + prefix_size),
    limit,
  };
}

export function validKey(key: Uint8Array): boolean {
  return key.length >= key_size_min && key.length <= key_size_max;
}

/** Object metadata as replies carry it: u64 version, u64 timestamp (ms), u64 size, u64 checksum. */
export const object_info_size = 32;

export interface ObjectInfo {
  version: number;
  timestamp: number;
  size: number;
  checksum: bigint;
}

export function writeObjectInfo(info: ObjectInfo, body: Uint8Array, offset: number): void {
  writeU64(body, offset, info.version);
  writeU64(body, offset + 8, info.timestamp);
  writeU64(body, offset + 16, info.size);
  writeU64Big(body, offset + 24, info.checksum);
}

export function readObjectInfo(body: Uint8Array, offset: number): ObjectInfo | null {
  if (body.length < offset + object_info_size) return null;
  const info = {
    version: readU64(body, offset),
    timestamp: readU64(body, offset + 8),
    size: readU64(body, offset + 16),
    checksum: readU64Big(body, offset + 24),
  };
  if (!Number.isSafeInteger(info.version) || !Number.isSafeInteger(info.timestamp) || !Number.isSafeInteger(info.size)) return null;
  return info;
}

/** A reply body holding one u64 (put: new version; delete: deleted version; condition_failed:
 * the current version, 0 if absent). */
export function encodeU64(n: number): Uint8Array {
  const body = new Uint8Array(8);
  writeU64(body, 0, n);
  return body;
}

export function decodeU64(body: Uint8Array): number | null {
  if (body.length !== 8) return null;
  const n = readU64(body, 0);
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * Buffers made by allocValueWithHeadroom and not yet used by encodeGetReply. A storage that reads
 * values from disk (lib/storage/file_storage.ts) reads each into one of these, so that a get reply
 * is built around the value in place: copying a 1 MiB value into a new reply body was a seventh of
 * what the primary spent per 1 MiB get. The Storage interface is unchanged (readValue still returns
 * just the value); a value from anywhere else is copied as before.
 */
const values_with_headroom = new WeakSet<ArrayBufferLike>();

/** Below this a value gets no headroom: copying it into the reply costs less than the headroom's
 * bookkeeping (a materialized ArrayBuffer, the WeakSet entry and the subarray, about 0.5 µs). */
export const headroom_size_min = 16 * 1024;

/** A buffer for a value of `size` bytes, with room for a get reply's ObjectInfo in front of it
 * when the value is large; returns the view of the value (contents unspecified: the caller fills
 * all of it). */
export function allocValueWithHeadroom(size: number): Uint8Array {
  if (size < headroom_size_min) return new Uint8Array(size);
  const whole = allocUninitialized(object_info_size + size);
  values_with_headroom.add(whole.buffer);
  return whole.subarray(object_info_size);
}

/** get reply: ObjectInfo then the value. stat reply: ObjectInfo only. */
export function encodeGetReply(info: ObjectInfo, value: Uint8Array | null): Uint8Array {
  if (
    value !== null &&
    value.byteOffset === object_info_size &&
    value.buffer.byteLength === object_info_size + value.length &&
    values_with_headroom.delete(value.buffer)
  ) {
    // The value sits right behind free room for the info (allocValueWithHeadroom): fill that in and
    // answer with the whole buffer. Used once, so two replies never share one buffer.
    const body = new Uint8Array(value.buffer, 0, object_info_size + value.length);
    writeObjectInfo(info, body, 0);
    return body;
  }
  const body = allocUninitialized(object_info_size + (value?.length ?? 0)); // every byte written below
  writeObjectInfo(info, body, 0);
  if (value !== null) body.set(value, object_info_size);
  return body;
}

/** list reply: u32 count, u8 truncated (more keys follow the last one), 3 reserved; then per key:
 * ObjectInfo, u16 key_size, key. */
export const list_reply_fixed_size = 8;
export const list_entry_fixed_size = object_info_size + 2;

export interface ListEntry extends ObjectInfo {
  key: Uint8Array;
}

export function encodeListReply(entries: ListEntry[], truncated: boolean): Uint8Array {
  let size = list_reply_fixed_size;
  for (const e of entries) size += list_entry_fixed_size + e.key.length;
  const body = new Uint8Array(size);
  writeU32(body, 0, entries.length);
  body[4] = truncated ? 1 : 0;
  let offset = list_reply_fixed_size;
  for (const e of entries) {
    writeObjectInfo(e, body, offset);
    writeU16(body, offset + object_info_size, e.key.length);
    body.set(e.key, offset + list_entry_fixed_size);
    offset += list_entry_fixed_size + e.key.length;
  }
  return body;
}

export function decodeListReply(body: Uint8Array): { entries: ListEntry[]; truncated: boolean } | null {
  if (body.length < list_reply_fixed_size) return null;
  const count = readU32(body, 0);
  const truncated = body[4] === 1;
  const entries: ListEntry[] = [];
  let offset = list_reply_fixed_size;
  for (let i = 0; i < count; i++) {
    const info = readObjectInfo(body, offset);
    if (info === null || body.length < offset + list_entry_fixed_size) return null;
    const key_size = readU16(body, offset + object_info_size);
    const start = offset + list_entry_fixed_size;
    if (body.length < start + key_size) return null;
    entries.push({ ...info, key: body.slice(start, start + key_size) });
    offset = start + key_size;
  }
  if (offset !== body.length) return null;
  return { entries, truncated };
}
