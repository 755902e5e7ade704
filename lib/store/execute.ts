/**
 * Executing object operations against the namespace. Writes run when a committed op executes, on
 * every replica, and must be deterministic: the version is the namespace's next revision and the
 * time is the prepare's timestamp (never a clock). Reads run at the primary under the read rule.
 * Limits violated give a typed error result, never an exception.
 */
import { checksum } from "../util/checksum.ts";
import { keyFromBytes, keyToBytes } from "./keys.ts";
import type { EntryMeta, ObjectEntry, ObjectStore, ValueLocation } from "./object_store.ts";
import type { ReadCache } from "./read_cache.ts";
import {
  Condition,
  Operation,
  Result,
  decodeKeyRequest,
  decodeListRequest,
  encodeGetReply,
  encodeListReply,
  encodeU64,
  validKey,
  type ListEntry,
} from "./operations.ts";
import { expire_per_op_max, list_reply_size_max, object_size_max_bytes, read_size_max_bytes } from "../constants.ts";
import { assert } from "../util/assert.ts";
import {
  ObjectKind,
  decodeAbortUpload,
  decodeCompleteUpload,
  decodeCreateUpload,
  decodeHousekeeping,
  decodePutObject,
  decodeReadRequest,
  decodeWriteBlock,
  encodeCompleteUploadReply,
  encodeCreateUploadReply,
  encodeReadReply,
  encodeUploadIncomplete,
  manifestChecksum,
  partChecksum,
  putObjectValueMax,
  validateLargeRequest,
  type BlockMapEntry,
  type ObjectHeader,
  type ObjectMetadata,
  type UploadIncomplete,
  type UploadPart,
} from "./large_bodies.ts";
import type { Block, Upload } from "./uploads.ts";
import { slotKey } from "./uploads.ts";

export interface ExecuteResult {
  result: Result;
  body: Uint8Array;
}

const empty = new Uint8Array(0);

/** The configuration a request is checked against on arrival. */
export interface ArrivalLimits {
  readonly value_size_max: number;
  readonly block_size_max: number;
}

/** Validates a request when it arrives, before it is ordered: bad requests never reach the log.
 * housekeeping (13) is the primary's own and bad_request from a client. */
export function validateRequest(operation: number, body: Uint8Array, limits: ArrivalLimits): Result {
  switch (operation) {
    case Operation.register:
      return body.length === 0 ? Result.ok : Result.bad_request;
    case Operation.put:
    case Operation.get:
    case Operation.stat:
    case Operation.delete: {
      const request = decodeKeyRequest(body, operation === Operation.put);
      if (request === null) return Result.bad_request;
      if (!validKey(request.key)) return Result.key_invalid;
      if (operation !== Operation.put && operation !== Operation.delete && request.condition !== Condition.none) return Result.bad_request;
      if (operation === Operation.delete && request.condition === Condition.if_absent) return Result.bad_request;
      if (request.value.length > limits.value_size_max) return Result.value_too_large;
      return Result.ok;
    }
    case Operation.list:
      return decodeListRequest(body) === null ? Result.bad_request : Result.ok;
    case Operation.create_upload:
    case Operation.write_block:
    case Operation.complete_upload:
    case Operation.abort_upload:
    case Operation.read:
    case Operation.put_object:
      return validateLargeRequest(operation, body, limits);
    default:
      return Result.bad_request;
  }
}

/** The limit a value_too_large answer to this operation names (PROTOCOL.md §3.7): the block size
 * for a block, the object size for an upload's declared or completed size, for a put_object the
 * value size its key and metadata leave (putObjectValueMax), else the value size. */
export function sizeLimitOf(operation: number, limits: ArrivalLimits, body?: Uint8Array): number {
  switch (operation) {
    case Operation.put_object: {
      const request = body === undefined ? null : decodePutObject(body);
      return request === null ? limits.value_size_max : putObjectValueMax(request, limits);
    }
    case Operation.write_block:
      return limits.block_size_max;
    case Operation.create_upload:
    case Operation.complete_upload:
      return object_size_max_bytes;
    default:
      return limits.value_size_max;
  }
}

/**
 * Executes a put or delete. body_location: where this request's body starts on disk (the value is
 * stored where its prepare was journaled, never copied).
 */
export function executeWrite(
  store: ObjectStore,
  timestamp: number,
  operation: Operation,
  body: Uint8Array,
  body_location: ValueLocation,
): ExecuteResult {
  const request = decodeKeyRequest(body, operation === Operation.put);
  if (request === null || !validKey(request.key)) return { result: Result.bad_request, body: empty };
  const key = keyFromBytes(request.key);
  const current = store.get(key);
  if (operation === Operation.delete && current === undefined) return { result: Result.not_found, body: empty };
  const conflict = conditionFails(request.condition, request.if_version, current);
  if (conflict) return { result: Result.condition_failed, body: encodeU64(current?.version ?? 0) };
  if (operation === Operation.delete) {
    if (current === undefined) return { result: Result.not_found, body: empty };
    store.remove(key);
    store.revision += 1;
    return { result: Result.ok, body: encodeU64(current.version) };
  }
  const entry = inlineEntry(store, timestamp, request, body_location);
  store.set(key, entry);
  return { result: Result.ok, body: encodeU64(entry.version) };
}

/** The next version of a key whose value is stored inline: its bytes stay where the prepare was
 * journaled (value_offset into the request body at body_location). */
function inlineEntry(
  store: ObjectStore,
  timestamp: number,
  request: { value: Uint8Array; value_offset: number },
  body_location: ValueLocation,
): ObjectEntry {
  return {
    version: store.revision + 1,
    timestamp,
    size: request.value.length,
    checksum: checksum(request.value),
    segment: body_location.segment,
    offset: body_location.offset + request.value_offset,
  };
}

function conditionFails(condition: Condition, if_version: number, current: ObjectEntry | undefined): boolean {
  if (condition === Condition.if_absent) return current !== undefined;
  if (condition === Condition.if_version) return current === undefined || current.version !== if_version;
  return false;
}

/** Reads a value from disk, verifying its checksum; null if it is damaged or unreadable. */
export type ValueReader = (key: string, entry: ObjectEntry) => Uint8Array | null;

/** How a read reaches the bytes at rest, and the largest value a get may return whole. */
export interface Readers {
  value: ValueReader;
  block: BlockReader;
  value_size_max: number;
  /** Get replies kept from earlier reads (the primary's, read_cache.ts); none: every get reads. */
  cache?: ReadCache | null;
}

/** get, stat and list. A get of a chunked object up to value_size_max is assembled from its blocks
 * and carries the xxh64 of its bytes, so an old client's check passes (LARGE_OBJECTS.md §5.7);
 * above, value_too_large naming value_size_max (use read). stat and list carry the manifest
 * checksum of a chunked object. */
export function executeRead(store: ObjectStore, operation: Operation, body: Uint8Array, readers: Readers): ExecuteResult {
  if (operation === Operation.list) return executeList(store, body);
  const request = decodeKeyRequest(body, false);
  if (request === null || !validKey(request.key)) return { result: Result.bad_request, body: empty };
  const key = keyFromBytes(request.key);
  const entry = store.get(key);
  if (entry === undefined) return { result: Result.not_found, body: empty };
  if (operation === Operation.stat) return { result: Result.ok, body: encodeGetReply(entry, null) };
  if (entry.chunks !== undefined) {
    if (entry.size > readers.value_size_max) return { result: Result.value_too_large, body: encodeU64(readers.value_size_max) };
    const whole = readChunks(store, entry, 0, entry.size, readers.block);
    if (whole === null) return { result: Result.unavailable, body: empty };
    return { result: Result.ok, body: encodeGetReply({ ...entry, checksum: checksum(whole.data) }, whole.data) };
  }
  const cache = readers.cache ?? null;
  const cached = cache?.get(key, entry) ?? null;
  if (cached !== null) return { result: Result.ok, body: cached };
  const value = readers.value(key, entry);
  if (value === null) return { result: Result.unavailable, body: empty };
  const reply = encodeGetReply(entry, value);
  cache?.put(key, entry, reply);
  return { result: Result.ok, body: reply };
}

function executeList(store: ObjectStore, body: Uint8Array): ExecuteResult {
  const request = decodeListRequest(body);
  if (request === null) return { result: Result.bad_request, body: empty };
  const range = store.list(keyFromBytes(request.prefix), keyFromBytes(request.after), request.limit);
  const entries: ListEntry[] = [];
  let size = 0;
  let truncated = range.truncated;
  for (const key of range.keys) {
    const entry = store.get(key)!;
    size += 64 + key.length;
    if (size > list_reply_size_max) {
      truncated = true;
      break;
    }
    entries.push({ version: entry.version, timestamp: entry.timestamp, size: entry.size, checksum: entry.checksum, key: keyToBytes(key) });
  }
  return { result: Result.ok, body: encodeListReply(entries, truncated) };
}

// ---------------------------------------------------------------------------------------------
// Large objects (docs/LARGE_OBJECTS.md §5, PROTOCOL.md §3.15).

/** Cluster-wide configuration execution depends on: every replica must be configured alike. */
export interface LargeLimits {
  readonly uploads_open_max: number;
  /** Only echoed in create_upload's reply. */
  readonly block_size_max: number;
}

/**
 * Executes create_upload, write_block, complete_upload, abort_upload, put_object or housekeeping
 * when its committed op executes. body_location: where this request's body starts on disk (a
 * block's or value's bytes stay where the prepare was journaled). housekeeping's reply is never
 * sent (client 0); its body is the number of uploads it expired, for tests and counters.
 */
export function executeLargeWrite(
  store: ObjectStore,
  limits: LargeLimits,
  timestamp: number,
  operation: Operation,
  body: Uint8Array,
  body_location: ValueLocation,
  manifest_blocks: ManifestBlocks = (upload, parts) => executedManifestBlocks(store, upload, parts),
): ExecuteResult {
  assert(Number.isSafeInteger(timestamp) && timestamp >= 0, () => `timestamp ${timestamp}`);
  switch (operation) {
    case Operation.create_upload:
      return executeCreateUpload(store, limits, timestamp, body);
    case Operation.write_block:
      return executeWriteBlock(store, timestamp, body, body_location);
    case Operation.complete_upload:
      return executeCompleteUpload(store, timestamp, body, manifest_blocks);
    case Operation.abort_upload: {
      const upload_id = decodeAbortUpload(body);
      if (upload_id === null) return { result: Result.bad_request, body: empty };
      const upload = store.large.upload(upload_id);
      if (upload === undefined) return { result: Result.upload_not_found, body: empty };
      store.large.removeUpload(upload);
      return { result: Result.ok, body: empty };
    }
    case Operation.put_object:
      return executePutObject(store, timestamp, body, body_location);
    case Operation.housekeeping: {
      const h = decodeHousekeeping(body);
      if (h === null) return { result: Result.bad_request, body: empty };
      if (h.abandon_age_ms === null) return { result: Result.ok, body: encodeU64(0) };
      const expired = store.large.expired(timestamp, h.abandon_age_ms, expire_per_op_max);
      for (const upload of expired) store.large.removeUpload(upload);
      return { result: Result.ok, body: encodeU64(expired.length) };
    }
    default:
      return { result: Result.bad_request, body: empty };
  }
}

function executeCreateUpload(store: ObjectStore, limits: LargeLimits, timestamp: number, body: Uint8Array): ExecuteResult {
  const request = decodeCreateUpload(body);
  if (request === null) return { result: Result.bad_request, body: empty };
  if (!validKey(request.key)) return { result: Result.key_invalid, body: empty };
  if (request.declared_size !== null && request.declared_size > object_size_max_bytes) {
    return { result: Result.value_too_large, body: encodeU64(object_size_max_bytes) };
  }
  const key = keyFromBytes(request.key);
  const current = store.get(key);
  // An early check only: complete_upload's condition is the binding one (§5.4).
  if (conditionFails(request.condition, request.if_version, current)) {
    return { result: Result.condition_failed, body: encodeU64(current?.version ?? 0) };
  }
  if (store.large.upload_count >= limits.uploads_open_max) {
    return { result: Result.too_many_uploads, body: encodeU64(limits.uploads_open_max) };
  }
  const metadata: ObjectMetadata = { content_type: request.metadata.content_type, user_meta: request.metadata.user_meta.slice() };
  const upload = store.large.createUpload(key, timestamp, request.declared_size, metadata, limits.uploads_open_max);
  assert(upload.id === store.large.upload_counter && store.large.upload_count <= limits.uploads_open_max, "a new id, within the limit");
  const reply = { upload_id: upload.id, block_size_max: limits.block_size_max, object_size_max: object_size_max_bytes };
  return { result: Result.ok, body: encodeCreateUploadReply(reply) };
}

/** The data's checksum and size were checked on arrival (validateLargeRequest) and are not
 * re-checked here: block_size_max is configuration, and execution must not depend on it. */
function executeWriteBlock(store: ObjectStore, timestamp: number, body: Uint8Array, body_location: ValueLocation): ExecuteResult {
  const request = decodeWriteBlock(body);
  if (request === null) return { result: Result.bad_request, body: empty };
  const upload = store.large.upload(request.upload_id);
  if (upload === undefined) return { result: Result.upload_not_found, body: empty };
  const held = upload.slots.get(slotKey(request.part_number, request.attempt, request.block_index));
  const replaced = held === undefined ? 0 : store.large.block(held)!.size;
  if (upload.stored_bytes - replaced + request.data.length > 2 * object_size_max_bytes) {
    return { result: Result.value_too_large, body: encodeU64(object_size_max_bytes) };
  }
  const slot = { upload_id: upload.id, part: request.part_number, attempt: request.attempt, index: request.block_index };
  const location = { segment: body_location.segment, offset: body_location.offset + request.data_offset };
  const { id } = store.large.writeBlock(slot, request.data.length, request.checksum, location);
  store.large.touch(upload, timestamp);
  assert(
    store.large.block(id)!.checksum === request.checksum && upload.stored_bytes <= 2 * object_size_max_bytes,
    "the slot holds this block",
  );
  return { result: Result.ok, body: empty };
}

function executeCompleteUpload(store: ObjectStore, timestamp: number, body: Uint8Array, manifest_blocks: ManifestBlocks): ExecuteResult {
  const request = decodeCompleteUpload(body);
  if (request === null) return { result: Result.bad_request, body: empty };
  const upload = store.large.upload(request.upload_id);
  if (upload === undefined) return { result: Result.upload_not_found, body: empty };
  const found = manifest_blocks(upload, request.parts);
  if ("missing" in found) return { result: Result.upload_incomplete, body: encodeUploadIncomplete(found.missing) };
  const blocks = found.blocks;
  let size = 0;
  for (const b of blocks) size += b.size;
  const declared = request.declared_size ?? upload.declared_size;
  if (declared !== null && declared !== size) return { result: Result.size_mismatch, body: encodeU64(size) };
  if (size > object_size_max_bytes) return { result: Result.value_too_large, body: encodeU64(object_size_max_bytes) };
  const current = store.get(upload.key);
  if (conditionFails(request.condition, request.if_version, current)) {
    return { result: Result.condition_failed, body: encodeU64(current?.version ?? 0) };
  }
  const ids = blocks.map((b) => b.id);
  const ends = new Float64Array(blocks.length);
  let end = 0;
  blocks.forEach((b, i) => (ends[i] = end += b.size));
  const manifest = manifestChecksum(
    blocks.map((b) => b.checksum),
    size,
  );
  const version = store.revision + 1;
  const entry: ObjectEntry = { version, timestamp, size, checksum: manifest, segment: 0, offset: 0, chunks: { blocks: ids, ends } };
  const user_meta = request.user_meta ?? upload.metadata.user_meta;
  const meta = entryMeta({ content_type: upload.metadata.content_type, user_meta }, request.md5);
  if (meta !== undefined) entry.meta = meta;
  store.large.adopt(upload, ids, upload.key);
  store.set(upload.key, entry); // the previous version's blocks (or value) die
  store.large.removeUpload(upload); // and so do the blocks the manifest does not name
  assert(store.revision === version && (ends.length === 0 ? 0 : ends[ends.length - 1]) === size, "the manifest is installed whole");
  return { result: Result.ok, body: encodeCompleteUploadReply({ version, checksum: manifest }) };
}

/** Step 2 of complete_upload (§5.4): the blocks a manifest names, in object order, or the first one
 * missing or mismatching. */
export type ManifestBlocksFound = { blocks: Block[] } | { missing: UploadIncomplete };

/** How execution finds a manifest's blocks. The rule is executedManifestBlocks (the executed store
 * only, which log order makes "durable on a quorum", §6); a replica passes it through a hook
 * (Replica.manifestBlocksReady) so tests/broken_variants.test.ts can prove that trusting a check
 * made on arrival instead is caught. */
export type ManifestBlocks = (upload: Upload, parts: readonly UploadPart[]) => ManifestBlocksFound;

/** Step 2 against the executed store: every named slot holds a block, and each part's blocks match
 * its size and checksum. */
export function executedManifestBlocks(store: ObjectStore, upload: Upload, parts: readonly UploadPart[]): ManifestBlocksFound {
  const blocks: Block[] = [];
  for (const part of parts) {
    const missing = completePart(upload, store, part, blocks);
    if (missing !== null) return { missing };
  }
  return { blocks };
}

/** Appends a part's blocks to out, or says what is missing or mismatching (§5.4 step 2). */
function completePart(upload: Upload, store: ObjectStore, part: UploadPart, out: Block[]): UploadIncomplete | null {
  assert(part.block_count >= 1 && store.large.upload(upload.id) === upload, "a part of an open upload has blocks");
  const first = out.length;
  let stored = 0;
  for (let index = 0; index < part.block_count; index++) {
    const id = upload.slots.get(slotKey(part.part_number, part.attempt, index));
    if (id === undefined) {
      out.length = first;
      return { part_number: part.part_number, block_index: index, stored_size: stored };
    }
    const block = store.large.block(id)!;
    stored += block.size;
    out.push(block);
  }
  const part_checksum = partChecksum(out.slice(first).map((b) => b.checksum));
  if (stored !== part.part_size || part_checksum !== part.part_checksum) {
    out.length = first;
    return { part_number: part.part_number, block_index: null, stored_size: stored };
  }
  return null;
}

/** Metadata worth storing: none when there is no content type, no user metadata and no md5, so such
 * an object hashes like any legacy entry. */
function entryMeta(metadata: ObjectMetadata, md5: Uint8Array | null): EntryMeta | undefined {
  assert(md5 === null || md5.length === 16, "an md5 is 16 bytes");
  if (metadata.content_type.length === 0 && metadata.user_meta.length === 0 && md5 === null) return undefined;
  return { content_type: metadata.content_type, user_meta: metadata.user_meta.slice(), md5: md5 === null ? null : md5.slice() };
}

/** An inline put with metadata; the md5 is the primary's to verify on arrival (§5.5). */
function executePutObject(store: ObjectStore, timestamp: number, body: Uint8Array, body_location: ValueLocation): ExecuteResult {
  const request = decodePutObject(body);
  if (request === null) return { result: Result.bad_request, body: empty };
  if (!validKey(request.key)) return { result: Result.key_invalid, body: empty };
  const key = keyFromBytes(request.key);
  const current = store.get(key);
  if (conditionFails(request.condition, request.if_version, current)) {
    return { result: Result.condition_failed, body: encodeU64(current?.version ?? 0) };
  }
  const entry = inlineEntry(store, timestamp, request, body_location);
  const meta = entryMeta(request.metadata, request.md5);
  if (meta !== undefined) entry.meta = meta;
  store.set(key, entry);
  assert(store.revision === entry.version, "put_object takes the next version");
  return { result: Result.ok, body: encodeU64(entry.version) };
}

/** Reads a block's bytes from disk, verifying its checksum; null if damaged or unreadable. */
export type BlockReader = (block: Block) => Uint8Array | null;

/**
 * Serves a read (§5.6, §7 rule 4) from the executed store: version 0 is the current one (the caller
 * ran the linearizable read path), any other version is served only while it is current, else
 * object_changed. The bytes are min(length, size − offset) from offset; whole blocks are read (and
 * verified by the readers) and sliced.
 */
export function executeLargeRead(store: ObjectStore, body: Uint8Array, readers: Pick<Readers, "value" | "block">): ExecuteResult {
  const request = decodeReadRequest(body);
  if (request === null) return { result: Result.bad_request, body: empty };
  if (!validKey(request.key)) return { result: Result.key_invalid, body: empty };
  assert(request.length <= read_size_max_bytes, "decodeReadRequest bounds the length");
  const key = keyFromBytes(request.key);
  const entry = store.get(key);
  if (request.version === 0 && entry === undefined) return { result: Result.not_found, body: empty };
  if (entry === undefined || (request.version !== 0 && entry.version !== request.version)) {
    return { result: Result.object_changed, body: encodeU64(entry?.version ?? 0) };
  }
  if (request.offset > entry.size) return { result: Result.range_invalid, body: encodeU64(entry.size) };
  const length = Math.min(request.length, entry.size - request.offset);
  const header: ObjectHeader = {
    version: entry.version,
    timestamp: entry.timestamp,
    size: entry.size,
    checksum: entry.checksum,
    kind: entry.chunks === undefined ? ObjectKind.inline : ObjectKind.chunked,
    block_count: entry.chunks === undefined ? (entry.size > 0 ? 1 : 0) : entry.chunks.blocks.length,
    md5: entry.meta?.md5 ?? null,
    metadata: request.metadata ? { content_type: entry.meta?.content_type ?? "", user_meta: entry.meta?.user_meta ?? empty } : null,
  };
  const served =
    entry.chunks === undefined
      ? readInline(key, entry, request.offset, length, readers.value)
      : readChunks(store, entry, request.offset, length, readers.block);
  if (served === null) return { result: Result.unavailable, body: empty };
  return { result: Result.ok, body: encodeReadReply({ header, block_map: request.block_map ? served.map : null, data: served.data }) };
}

function readInline(
  key: string,
  entry: ObjectEntry,
  offset: number,
  length: number,
  read: ValueReader,
): { data: Uint8Array; map: BlockMapEntry[] } | null {
  if (length === 0) return { data: empty, map: [] };
  const value = read(key, entry);
  if (value === null) return null;
  assert(value.length === entry.size, () => `value of ${value.length} bytes, entry says ${entry.size}`);
  return { data: value.subarray(offset, offset + length), map: [{ start: 0, size: entry.size, checksum: entry.checksum }] };
}

/** The blocks covering [offset, offset + length), found by binary search in ends. */
function readChunks(
  store: ObjectStore,
  entry: ObjectEntry,
  offset: number,
  length: number,
  read: BlockReader,
): { data: Uint8Array; map: BlockMapEntry[] } | null {
  const chunks = entry.chunks!;
  if (length === 0) return { data: empty, map: [] };
  let lo = 0;
  let hi = chunks.ends.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (chunks.ends[mid]! > offset) hi = mid;
    else lo = mid + 1;
  }
  const data = new Uint8Array(length);
  const map: BlockMapEntry[] = [];
  let filled = 0;
  for (let i = lo; filled < length; i++) {
    const block = store.large.block(chunks.blocks[i]!)!;
    const start = chunks.ends[i]! - block.size;
    const bytes = read(block);
    if (bytes === null) return null;
    assert(bytes.length === block.size, () => `block ${block.id} read as ${bytes.length} bytes, is ${block.size}`);
    const from = offset + filled - start;
    const take = Math.min(block.size - from, length - filled);
    data.set(bytes.subarray(from, from + take), filled);
    filled += take;
    map.push({ start, size: block.size, checksum: block.checksum });
  }
  return { data, map };
}
