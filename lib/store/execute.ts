/**
 * Executing object operations against the namespace. Writes run when a committed op executes, on
 * every replica, and must be deterministic: the version is the namespace's next revision and the
 * time is the prepare's timestamp (never a clock). Reads run at the primary under the read rule.
 * Limits violated give a typed error result, never an exception.
 */
import { checksum } from "../util/checksum.ts";
import { keyFromBytes, keyToBytes } from "./keys.ts";
import type { ObjectEntry, ObjectStore, ValueLocation } from "./object_store.ts";
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
import { list_reply_size_max } from "../constants.ts";

export interface ExecuteResult {
  result: Result;
  body: Uint8Array;
}

const empty = new Uint8Array(0);

/** Validates a request when it arrives, before it is ordered: bad requests never reach the log. */
export function validateRequest(operation: number, body: Uint8Array, value_size_max: number): Result {
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
      if (request.value.length > value_size_max) return Result.value_too_large;
      return Result.ok;
    }
    case Operation.list:
      return decodeListRequest(body) === null ? Result.bad_request : Result.ok;
    default:
      return Result.bad_request;
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
  const version = store.revision + 1;
  const entry: ObjectEntry = {
    version,
    timestamp,
    size: request.value.length,
    checksum: checksum(request.value),
    segment: body_location.segment,
    offset: body_location.offset + request.value_offset,
  };
  store.set(key, entry);
  return { result: Result.ok, body: encodeU64(version) };
}

function conditionFails(condition: Condition, if_version: number, current: ObjectEntry | undefined): boolean {
  if (condition === Condition.if_absent) return current !== undefined;
  if (condition === Condition.if_version) return current === undefined || current.version !== if_version;
  return false;
}

/** Reads a value from disk, verifying its checksum; null if it is damaged or unreadable. */
export type ValueReader = (key: string, entry: ObjectEntry) => Uint8Array | null;

export function executeRead(store: ObjectStore, operation: Operation, body: Uint8Array, read: ValueReader): ExecuteResult {
  if (operation === Operation.list) return executeList(store, body);
  const request = decodeKeyRequest(body, false);
  if (request === null || !validKey(request.key)) return { result: Result.bad_request, body: empty };
  const key = keyFromBytes(request.key);
  const entry = store.get(key);
  if (entry === undefined) return { result: Result.not_found, body: empty };
  if (operation === Operation.stat) return { result: Result.ok, body: encodeGetReply(entry, null) };
  const value = read(key, entry);
  if (value === null) return { result: Result.unavailable, body: empty };
  return { result: Result.ok, body: encodeGetReply(entry, value) };
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
