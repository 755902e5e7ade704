/**
 * ListObjectsV2 and ListObjects (docs/S3.md §2): a bucket's objects are the native keys under
 * "B/", listed in the cluster's byte order. The gateway's own records live under ".s3/", which no
 * bucket prefix can reach.
 *
 * - Delimiter: any string. The keys that share a common prefix are contiguous in byte order, so
 *   once one is seen the scan seeks past all of them (list from the prefix followed by 0xff bytes
 *   up to the longest key: 0xff never occurs in UTF-8, so no S3 key is skipped by mistake) instead
 *   of paging through them.
 * - Continuation token: base64url of one byte (0: after this key, 1: after every key under this
 *   common prefix) and the key's bytes. Opaque to clients, and a gateway needs nothing else.
 * - ETag: the native list gives version, time, size and checksum but no MD5, so each listed object
 *   costs one head (a read of no bytes, with metadata). Heads go through the client one at a time
 *   (its main channel has one request in flight); a 1000-key page took 240-290 ms on a 3-replica
 *   loopback cluster on 2 shared cores (tests/s3_listing.test.ts logs it). An object deleted
 *   between the list and its head is left out.
 * - Keys XML 1.0 cannot carry (control characters) fail the listing with InvalidArgument unless
 *   the request asks for encoding-type=url, which the AWS SDKs and CLI send (xml.ts).
 * - A native key under B/ that is not UTF-8 (written with the native CLI) has no S3 name: it is
 *   skipped, never listed, whatever encoding-type says (S3 keys are UTF-8; no S3 call could name it).
 */
import { ClientError } from "../client/errors.ts";
import { key_size_max, list_limit_max } from "../constants.ts";
import { isoDate, requireBucket } from "./buckets.ts";
import { etagOf } from "./etag.ts";
import { bucketOf, invalidArgument, queryInteger, s3Handler, urlEncoder, writeOwner, s3XmlResponse } from "./handler_util.ts";
import { bucketPrefix } from "./names.ts";
import type { S3Context, S3Handler, S3Request } from "./request.ts";
import type { S3Operation } from "./router.ts";
import type { XmlWriter } from "./xml.ts";

/** S3's largest page (max-keys above it is taken as it). */
export const list_keys_max = 1000;

const encoder = new TextEncoder();
const strict_utf8 = new TextDecoder("utf-8", { fatal: true });

/** Where a listing resumes: after a key, or after every key under a common prefix. */
export interface Position {
  kind: "key" | "prefix";
  /** S3 key (or common prefix), without the bucket. */
  name: Uint8Array;
}

export function encodeToken(p: Position): string {
  const bytes = new Uint8Array(1 + p.name.length);
  bytes[0] = p.kind === "key" ? 0 : 1;
  bytes.set(p.name, 1);
  return Buffer.from(bytes).toString("base64url");
}

export function decodeToken(token: string): Position {
  const bytes = /^[A-Za-z0-9_-]+$/.test(token) ? new Uint8Array(Buffer.from(token, "base64url")) : new Uint8Array(0);
  if (bytes.length < 2 || bytes[0]! > 1 || bytes.length - 1 > key_size_max)
    throw invalidArgument("continuation-token", token, "The continuation token provided is incorrect");
  return { kind: bytes[0] === 0 ? "key" : "prefix", name: bytes.slice(1) };
}

/** The native key to list after, for a position in bucket_prefix's keys. */
function nativeAfter(bucket_prefix: Uint8Array, p: Position): Uint8Array {
  const length = p.kind === "key" ? bucket_prefix.length + p.name.length : key_size_max;
  const out = new Uint8Array(Math.max(length, bucket_prefix.length + p.name.length)).fill(0xff);
  out.set(bucket_prefix, 0);
  out.set(p.name, bucket_prefix.length);
  return out.subarray(0, Math.min(out.length, key_size_max));
}

export interface ListedObject {
  key: string;
  native_key: Uint8Array;
}

export interface Scan {
  objects: ListedObject[];
  prefixes: string[];
  truncated: boolean;
  /** Where the next page starts (the last object or prefix of this one), null when none is listed. */
  last: Position | null;
}

/** Up to max objects and common prefixes of the bucket under prefix, after `start`, in order. */
export async function scanBucket(
  context: S3Context,
  bucket: string,
  o: { prefix: string; delimiter: string; start: Position | null; max: number },
): Promise<Scan> {
  const bucket_prefix = bucketPrefix(bucket);
  const list_prefix = encoder.encode(`${bucket}/${o.prefix}`);
  const scan: Scan = { objects: [], prefixes: [], truncated: false, last: null };
  // No key is longer than key_size_max, so none has a longer prefix.
  if (o.max === 0 || list_prefix.length > key_size_max) return scan;
  let after = o.start === null ? new Uint8Array(0) : nativeAfter(bucket_prefix, o.start);
  /** The common prefix just listed: the rest of its keys in the page are skipped. */
  let current: string | null = null;
  for (;;) {
    const want = o.max - scan.objects.length - scan.prefixes.length + 1;
    const page = await context.client.list(list_prefix, { after, limit: Math.min(list_limit_max, want) });
    for (const entry of page.entries) {
      let key: string;
      try {
        key = strict_utf8.decode(entry.key.subarray(bucket_prefix.length));
      } catch {
        continue;
      }
      if (current !== null && key.startsWith(current)) continue;
      const at = o.delimiter === "" ? -1 : key.indexOf(o.delimiter, o.prefix.length);
      if (scan.objects.length + scan.prefixes.length === o.max) {
        scan.truncated = true;
        return scan;
      }
      if (at >= 0) {
        current = key.slice(0, at + o.delimiter.length);
        scan.prefixes.push(current);
        scan.last = { kind: "prefix", name: encoder.encode(current) };
      } else {
        current = null;
        scan.objects.push({ key, native_key: entry.key });
        scan.last = { kind: "key", name: entry.key.subarray(bucket_prefix.length) };
      }
    }
    if (!page.truncated || page.entries.length === 0) return scan;
    // Seek past the common prefix being skipped, else go on after the page's last key.
    after = current !== null ? nativeAfter(bucket_prefix, { kind: "prefix", name: encoder.encode(current) }) : page.entries.at(-1)!.key;
    current = null;
  }
}

interface Described {
  key: string;
  etag: string;
  size: number;
  last_modified_ms: number;
}

/** The objects' ETags, sizes and times, from a head each (an object gone since is left out). */
async function describe(context: S3Context, objects: readonly ListedObject[]): Promise<Described[]> {
  const out: Described[] = [];
  for (const o of objects) {
    try {
      const header = await context.client.head(o.native_key);
      out.push({ key: o.key, etag: etagOf(header), size: header.size, last_modified_ms: header.timestamp });
    } catch (e) {
      if (e instanceof ClientError && e.code === "not_found") continue;
      throw e;
    }
  }
  return out;
}

function common(request: S3Request) {
  return {
    bucket: bucketOf(request),
    prefix: request.query.get("prefix") ?? "",
    delimiter: request.query.get("delimiter") ?? "",
    max: queryInteger(request, "max-keys", 0, list_keys_max, list_keys_max),
    encode: urlEncoder(request),
  };
}

async function listObjectsV2(request: S3Request, context: S3Context): Promise<Response> {
  const { bucket, prefix, delimiter, max, encode } = common(request);
  await requireBucket(context, bucket);
  const token = request.query.get("continuation-token");
  const start_after = request.query.get("start-after");
  const start: Position | null =
    token !== null
      ? decodeToken(token)
      : start_after !== null && start_after !== ""
        ? { kind: "key", name: encoder.encode(start_after) }
        : null;
  const scan = await scanBucket(context, bucket, { prefix, delimiter, start, max });
  const objects = await describe(context, scan.objects);
  const fetch_owner = request.query.get("fetch-owner") === "true";
  return s3XmlResponse("ListBucketResult", (w) => {
    w.leaf("Name", bucket);
    w.leaf("Prefix", encode(prefix));
    if (delimiter !== "") w.leaf("Delimiter", encode(delimiter));
    w.leaf("MaxKeys", String(max));
    w.leaf("KeyCount", String(objects.length + scan.prefixes.length));
    w.leaf("IsTruncated", String(scan.truncated));
    if (token !== null) w.leaf("ContinuationToken", token);
    if (scan.truncated && scan.last !== null) w.leaf("NextContinuationToken", encodeToken(scan.last));
    if (start_after !== null) w.leaf("StartAfter", encode(start_after));
    if (request.query.has("encoding-type")) w.leaf("EncodingType", "url");
    for (const o of objects) writeContents(w, o, encode, fetch_owner ? request.access_key : null);
    writePrefixes(w, scan.prefixes, encode);
  });
}

async function listObjectsV1(request: S3Request, context: S3Context): Promise<Response> {
  const { bucket, prefix, delimiter, max, encode } = common(request);
  await requireBucket(context, bucket);
  const marker = request.query.get("marker") ?? "";
  const scan = await scanBucket(context, bucket, { prefix, delimiter, start: markerPosition(marker, prefix, delimiter), max });
  const objects = await describe(context, scan.objects);
  return s3XmlResponse("ListBucketResult", (w) => {
    w.leaf("Name", bucket);
    w.leaf("Prefix", encode(prefix));
    w.leaf("Marker", encode(marker));
    // As S3: NextMarker only with a delimiter; without one, clients resume after the last key.
    if (scan.truncated && delimiter !== "" && scan.last !== null) w.leaf("NextMarker", encode(Buffer.from(scan.last.name).toString()));
    w.leaf("MaxKeys", String(max));
    if (delimiter !== "") w.leaf("Delimiter", encode(delimiter));
    w.leaf("IsTruncated", String(scan.truncated));
    if (request.query.has("encoding-type")) w.leaf("EncodingType", "url");
    for (const o of objects) writeContents(w, o, encode, request.access_key);
    writePrefixes(w, scan.prefixes, encode);
  });
}

/** A v1 marker that is a common prefix (as NextMarker gives it) resumes after all its keys. */
function markerPosition(marker: string, prefix: string, delimiter: string): Position | null {
  if (marker === "") return null;
  const at = delimiter === "" || !marker.startsWith(prefix) ? -1 : marker.indexOf(delimiter, prefix.length);
  const is_prefix = at >= 0 && at + delimiter.length === marker.length;
  return { kind: is_prefix ? "prefix" : "key", name: encoder.encode(marker) };
}

function writeContents(w: XmlWriter, o: Described, encode: (s: string) => string, owner: string | null): void {
  w.open("Contents");
  w.leaf("Key", encode(o.key));
  w.leaf("LastModified", isoDate(o.last_modified_ms));
  w.leaf("ETag", o.etag);
  w.leaf("Size", String(o.size));
  if (owner !== null) writeOwner(w, "Owner", owner);
  w.leaf("StorageClass", "STANDARD");
  w.close();
}

function writePrefixes(w: XmlWriter, prefixes: readonly string[], encode: (s: string) => string): void {
  for (const p of prefixes) {
    w.open("CommonPrefixes");
    w.leaf("Prefix", encode(p));
    w.close();
  }
}

export const listing_handlers: ReadonlyMap<S3Operation, S3Handler> = new Map<S3Operation, S3Handler>([
  ["ListObjectsV2", s3Handler(listObjectsV2)],
  ["ListObjects", s3Handler(listObjectsV1)],
]);
