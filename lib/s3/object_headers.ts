/**
 * What the object handlers read from and write to HTTP headers (docs/S3.md §3): Content-Type and
 * x-amz-meta-* into the native object's metadata, the object's headers (ETag, Last-Modified,
 * metadata) out, and the conditional-read headers of RFC 9110 §13.2.2.
 */
import { contentTypeProblem, userMetaProblem, type MetaEntry, type ObjectHeader } from "../store/large_bodies.ts";
import { content_type_size_max_bytes } from "../constants.ts";
import { etagList, etagOf, parts_meta_name, sameEtag, userMetaOf } from "./etag.ts";
import { S3Error } from "./s3_error.ts";
import type { S3Request } from "./request.ts";
import { objectKey } from "./names.ts";

/** S3's limit on user metadata: the bytes of the names (without x-amz-meta-) and values. */
export const user_meta_bytes_max = 2048;
/** What S3 answers as Content-Type for an object stored without one. */
export const default_content_type = "binary/octet-stream";
const meta_header_prefix = "x-amz-meta-";

/** The bucket, key and native key of an object request. */
export function objectOf(request: S3Request): { bucket: string; key: string; native: Uint8Array } {
  if (request.bucket === null || request.key === null) throw new S3Error("InvalidRequest", "this operation needs a bucket and a key");
  return { bucket: request.bucket, key: request.key, native: objectKey(request.bucket, request.key) };
}

/** Header values are byte strings: each character is one byte (latin1), which round-trips any bytes. */
function latin1Bytes(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "latin1"));
}

/**
 * Write headers asking for what the gateway does not do: each is NotImplemented naming it, never
 * accepted and dropped (a client that asked for encryption, a retention lock or tags must not
 * believe it got them). An ACL of "private" and the STANDARD storage class are what every object
 * has, so they are accepted.
 */
const unsupported_write_headers: ReadonlyMap<string, string> = new Map([
  ["x-amz-server-side-encryption", "server-side encryption"],
  ["x-amz-server-side-encryption-aws-kms-key-id", "server-side encryption with KMS"],
  ["x-amz-server-side-encryption-context", "server-side encryption with KMS"],
  ["x-amz-server-side-encryption-bucket-key-enabled", "S3 bucket keys"],
  ["x-amz-server-side-encryption-customer-algorithm", "server-side encryption with customer keys (SSE-C)"],
  ["x-amz-server-side-encryption-customer-key", "server-side encryption with customer keys (SSE-C)"],
  ["x-amz-server-side-encryption-customer-key-md5", "server-side encryption with customer keys (SSE-C)"],
  ["x-amz-object-lock-mode", "Object Lock"],
  ["x-amz-object-lock-retain-until-date", "Object Lock"],
  ["x-amz-object-lock-legal-hold", "Object Lock legal holds"],
  ["x-amz-tagging", "object tagging"],
  ["x-amz-website-redirect-location", "website redirects"],
  ["x-amz-grant-full-control", "ACL grants"],
  ["x-amz-grant-read", "ACL grants"],
  ["x-amz-grant-read-acp", "ACL grants"],
  ["x-amz-grant-write-acp", "ACL grants"],
]);

/** "private" and "bucket-owner-full-control" describe what every object is (the gateway's keys own
 * all of it); any other canned ACL would grant access the gateway cannot enforce. */
const acls_accepted: ReadonlySet<string> = new Set(["private", "bucket-owner-full-control"]);

function refuseAcl(headers: Headers): void {
  const acl = headers.get("x-amz-acl");
  if (acl !== null && !acls_accepted.has(acl.trim()))
    throw new S3Error(
      "NotImplemented",
      `x-amz-acl ${JSON.stringify(acl)}: ACLs are not supported (every object is private to the gateway's keys)`,
    );
}

/** CreateBucket: Object Lock, grants and public ACLs are NotImplemented (a bucket that claimed a
 * lock it does not enforce would be worse than none). */
export function refuseUnsupportedBucketHeaders(headers: Headers): void {
  const lock = headers.get("x-amz-bucket-object-lock-enabled");
  if (lock !== null && lock.trim().toLowerCase() !== "false")
    throw new S3Error("NotImplemented", "Object Lock (x-amz-bucket-object-lock-enabled) is not supported by this gateway");
  for (const name of ["x-amz-grant-full-control", "x-amz-grant-read", "x-amz-grant-read-acp", "x-amz-grant-write", "x-amz-grant-write-acp"])
    if (headers.has(name)) throw new S3Error("NotImplemented", `ACL grants (${name}) are not supported by this gateway`);
  refuseAcl(headers);
}

export function refuseUnsupportedWriteHeaders(headers: Headers): void {
  for (const [name, what] of unsupported_write_headers)
    if (headers.has(name)) throw new S3Error("NotImplemented", `${what} (${name}) is not supported by this gateway`);
  refuseAcl(headers);
  const storage_class = headers.get("x-amz-storage-class");
  if (storage_class !== null && storage_class.trim() !== "STANDARD")
    throw new S3Error("NotImplemented", `x-amz-storage-class ${JSON.stringify(storage_class)}: only STANDARD is supported`);
}

/** The x-amz-meta-* headers as native metadata entries (names lowercase, as HTTP gives them). */
export function userMetaFromHeaders(headers: Headers): MetaEntry[] {
  const entries: MetaEntry[] = [];
  let s3_size = 0;
  for (const [name, value] of headers) {
    if (!name.startsWith(meta_header_prefix)) continue;
    const meta = name.slice(meta_header_prefix.length).toLowerCase();
    const argument = new Map([["ArgumentName", name]]);
    if (!/^[a-z0-9-]+$/.test(meta))
      throw new S3Error("InvalidArgument", `metadata header ${name}: names after x-amz-meta- may hold only a-z, 0-9 and -`, argument);
    if (meta === parts_meta_name)
      throw new S3Error("InvalidArgument", `metadata header ${name} is reserved for the gateway's multipart ETags`, argument);
    const bytes = latin1Bytes(value);
    s3_size += meta.length + bytes.length;
    entries.push({ name: meta, value: bytes });
  }
  if (s3_size > user_meta_bytes_max)
    throw new S3Error("MetadataTooLarge", `user metadata is ${s3_size} bytes (names and values): at most ${user_meta_bytes_max}`);
  const problem = userMetaProblem(entries);
  // The native encoding adds 3 bytes per entry and limits names to 128 characters.
  if (problem !== null) throw new S3Error("MetadataTooLarge", `user metadata: ${problem}`);
  return entries;
}

/** Content-Type as given, or undefined (the object then has none and reads as binary/octet-stream). */
export function contentTypeFromHeaders(headers: Headers): string | undefined {
  const content_type = headers.get("content-type");
  if (content_type === null) return undefined;
  const problem = contentTypeProblem(content_type);
  if (problem !== null)
    throw new S3Error(
      "InvalidArgument",
      `Content-Type: ${problem} (at most ${content_type_size_max_bytes} bytes)`,
      new Map([["ArgumentName", "Content-Type"]]),
    );
  return content_type;
}

/** The put options for the object's metadata. Always a metadata record (an empty one at least), so
 * that the cluster stores the MD5 and the ETag is the content's MD5. */
export function metaOptions(
  content_type: string | undefined,
  entries: readonly MetaEntry[],
): { content_type?: string; meta: Record<string, Uint8Array> } {
  const meta: Record<string, Uint8Array> = {};
  for (const e of entries) meta[e.name] = e.value;
  return content_type === undefined ? { meta } : { content_type, meta };
}

/** The user metadata of a stored object, without the gateway's reserved entry. */
export function storedUserMeta(header: ObjectHeader): MetaEntry[] {
  return userMetaOf(header).filter((e) => e.name !== parts_meta_name);
}

/** RFC 9110 IMF-fixdate ("Sat, 05 Dec 2026 16:09:12 GMT") of a time in ms since the epoch. */
export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

/** The headers of an object as GetObject and HeadObject send them. */
export function objectResponseHeaders(header: ObjectHeader): Headers {
  const headers = new Headers();
  const content_type = header.metadata?.content_type ?? "";
  headers.set("Content-Type", content_type === "" ? default_content_type : content_type);
  headers.set("ETag", etagOf(header));
  headers.set("Last-Modified", httpDate(header.timestamp));
  headers.set("Accept-Ranges", "bytes");
  for (const e of storedUserMeta(header)) headers.set(`${meta_header_prefix}${e.name}`, Buffer.from(e.value).toString("latin1"));
  return headers;
}

export type ReadOutcome = { ok: true } | { ok: false; status: 304 | 412; why: string };

/** The header names of a read's conditions: GetObject's own, or CopyObject's on its source. */
export interface ConditionHeaders {
  if_match: string;
  if_none_match: string;
  if_modified_since: string;
  if_unmodified_since: string;
}

export const get_conditions: ConditionHeaders = {
  if_match: "if-match",
  if_none_match: "if-none-match",
  if_modified_since: "if-modified-since",
  if_unmodified_since: "if-unmodified-since",
};

export const copy_source_conditions: ConditionHeaders = {
  if_match: "x-amz-copy-source-if-match",
  if_none_match: "x-amz-copy-source-if-none-match",
  if_modified_since: "x-amz-copy-source-if-modified-since",
  if_unmodified_since: "x-amz-copy-source-if-unmodified-since",
};

/** A date header in seconds since the epoch, or null when absent or not a date (then ignored, as
 * RFC 9110 §13.1.3 says). */
function dateSeconds(headers: Headers, name: string): number | null {
  const text = headers.get(name);
  if (text === null) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}

function etagMatches(list: string, etag: string): boolean {
  return etagList(list).some((t) => t === "*" || sameEtag(t, etag));
}

/**
 * RFC 9110 §13.2.2, in its order: If-Match, else If-Unmodified-Since (412 when false); then
 * If-None-Match, else If-Modified-Since (304 for GET and HEAD when false). Last-Modified has
 * whole seconds, as HTTP dates do.
 */
export function readConditions(headers: Headers, header: ObjectHeader, names: ConditionHeaders = get_conditions): ReadOutcome {
  const etag = etagOf(header);
  const modified_s = Math.floor(header.timestamp / 1000);
  const if_match = headers.get(names.if_match);
  if (if_match !== null) {
    if (!etagMatches(if_match, etag)) return { ok: false, status: 412, why: `${names.if_match} ${if_match} does not match ETag ${etag}` };
  } else {
    const since = dateSeconds(headers, names.if_unmodified_since);
    if (since !== null && modified_s > since)
      return { ok: false, status: 412, why: `the object was modified after ${names.if_unmodified_since}` };
  }
  const if_none_match = headers.get(names.if_none_match);
  if (if_none_match !== null) {
    if (etagMatches(if_none_match, etag))
      return { ok: false, status: 304, why: `${names.if_none_match} ${if_none_match} matches ETag ${etag}` };
  } else {
    const since = dateSeconds(headers, names.if_modified_since);
    if (since !== null && modified_s <= since)
      return { ok: false, status: 304, why: `the object was not modified since ${names.if_modified_since}` };
  }
  return { ok: true };
}
