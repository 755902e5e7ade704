/**
 * Method + path + query → S3 operation (docs/S3.md §1), as the S3 REST API dispatches: the bucket
 * and key come from the path (path style, always) or from the Host header (virtual-hosted style,
 * when the host is a subdomain of --domain), and the operation from the method and the query's
 * subresource names. Query parameters that are not subresources (x-id, X-Amz-*, prefix, ...) are
 * left to the handlers.
 *
 * Decisions where S3 leaves room:
 * - Keys are names, not paths: percent-escapes are decoded exactly once, `%2F` is a '/' inside the
 *   key, `+` is a plus, and `.`/`..` segments are kept (`/b/a/../c` is key `a/../c`).
 * - NUL (U+0000) in a key is InvalidArgument: it truncates keys in C-string tools and in many
 *   clients' file names, and no S3 client needs it. The other control characters U+0001-U+001F are
 *   accepted, as S3 does, because the issue asks for keys of any UTF-8: a listing carries them with
 *   encoding-type=url (the AWS SDKs and CLIs send it by default); without it the listing code must
 *   check xmlSafe() (XML 1.0 cannot carry them, see xml.ts).
 * - CopyObject is a PutObject with an x-amz-copy-source header: route takes the headers as an
 *   optional last argument. Without them a copy is routed as PutObject, so the gateway must pass
 *   them (a copy treated as a put would store the empty body).
 * - Object versioning is not supported: a versionId other than "null" (the one version of an
 *   unversioned bucket) is NotImplemented here, once, rather than silently ignored by a handler.
 * - Object-only parameters on a bucket path (uploadId, partNumber, POST ?uploads) are InvalidRequest,
 *   never the bucket operation: DELETE /b/?uploadId=U must not become DeleteBucket.
 */
import { S3Error } from "./s3_error.ts";
import { checkBucketName, checkObjectKey } from "./names.ts";

export type S3Operation =
  | "ListBuckets"
  | "CreateBucket"
  | "HeadBucket"
  | "DeleteBucket"
  | "GetBucketLocation"
  | "ListObjectsV2"
  | "ListObjects"
  | "ListMultipartUploads"
  | "DeleteObjects"
  | "PutObject"
  | "CopyObject"
  | "GetObject"
  | "HeadObject"
  | "DeleteObject"
  | "CreateMultipartUpload"
  | "UploadPart"
  | "CompleteMultipartUpload"
  | "AbortMultipartUpload"
  | "ListParts";

export interface Route {
  operation: S3Operation;
  bucket: string | null;
  key: string | null;
}

type Method = "GET" | "HEAD" | "PUT" | "POST" | "DELETE";
const methods: ReadonlySet<string> = new Set<Method>(["GET", "HEAD", "PUT", "POST", "DELETE"]);
type Level = "bucket" | "object";

/**
 * Subresources of S3 operations this gateway does not implement: subresource → "level METHOD" →
 * the S3 operation's name (for the NotImplemented message). A subresource used at a level or with a
 * method S3 does not define is still NotImplemented, named by what was asked.
 */
const unsupported = new Map<string, Map<string, string>>();
function unsupportedOperations(subresource: string, level: Level, by_method: ReadonlyArray<[Method, string]>): void {
  let table = unsupported.get(subresource);
  if (table === undefined) {
    table = new Map();
    unsupported.set(subresource, table);
  }
  for (const [method, operation] of by_method) table.set(`${level} ${method}`, operation);
}
/** Get/Put/Delete<Name> for a bucket subresource. */
function bucketConfiguration(subresource: string, name: string, verbs: string = "GPD"): void {
  const by_method: [Method, string][] = [];
  if (verbs.includes("G")) by_method.push(["GET", `Get${name}`]);
  if (verbs.includes("P")) by_method.push(["PUT", `Put${name}`]);
  if (verbs.includes("D")) by_method.push(["DELETE", `Delete${name}`]);
  unsupportedOperations(subresource, "bucket", by_method);
}
bucketConfiguration("acl", "BucketAcl", "GP");
bucketConfiguration("policy", "BucketPolicy");
bucketConfiguration("policyStatus", "BucketPolicyStatus", "G");
bucketConfiguration("cors", "BucketCors");
unsupportedOperations("lifecycle", "bucket", [
  ["GET", "GetBucketLifecycleConfiguration"],
  ["PUT", "PutBucketLifecycleConfiguration"],
  ["DELETE", "DeleteBucketLifecycle"],
]);
bucketConfiguration("tagging", "BucketTagging");
bucketConfiguration("versioning", "BucketVersioning", "GP");
unsupportedOperations("versions", "bucket", [["GET", "ListObjectVersions"]]);
bucketConfiguration("website", "BucketWebsite");
bucketConfiguration("logging", "BucketLogging", "GP");
bucketConfiguration("notification", "BucketNotificationConfiguration", "GP");
bucketConfiguration("replication", "BucketReplication");
bucketConfiguration("encryption", "BucketEncryption");
bucketConfiguration("object-lock", "ObjectLockConfiguration", "GP");
bucketConfiguration("accelerate", "BucketAccelerateConfiguration", "GP");
bucketConfiguration("requestPayment", "BucketRequestPayment", "GP");
bucketConfiguration("ownershipControls", "BucketOwnershipControls");
bucketConfiguration("publicAccessBlock", "PublicAccessBlock");
bucketConfiguration("analytics", "BucketAnalyticsConfiguration");
bucketConfiguration("inventory", "BucketInventoryConfiguration");
bucketConfiguration("metrics", "BucketMetricsConfiguration");
bucketConfiguration("intelligent-tiering", "BucketIntelligentTieringConfiguration");
unsupportedOperations("acl", "object", [
  ["GET", "GetObjectAcl"],
  ["PUT", "PutObjectAcl"],
]);
unsupportedOperations("tagging", "object", [
  ["GET", "GetObjectTagging"],
  ["PUT", "PutObjectTagging"],
  ["DELETE", "DeleteObjectTagging"],
]);
unsupportedOperations("retention", "object", [
  ["GET", "GetObjectRetention"],
  ["PUT", "PutObjectRetention"],
]);
unsupportedOperations("legal-hold", "object", [
  ["GET", "GetObjectLegalHold"],
  ["PUT", "PutObjectLegalHold"],
]);
unsupportedOperations("restore", "object", [["POST", "RestoreObject"]]);
unsupportedOperations("select", "object", [["POST", "SelectObjectContent"]]);
unsupportedOperations("torrent", "object", [["GET", "GetObjectTorrent"]]);
unsupportedOperations("attributes", "object", [["GET", "GetObjectAttributes"]]);
/** GET of these without ?id lists the bucket's configurations. */
const listed_configurations: ReadonlyMap<string, string> = new Map([
  ["analytics", "ListBucketAnalyticsConfigurations"],
  ["inventory", "ListBucketInventoryConfigurations"],
  ["metrics", "ListBucketMetricsConfigurations"],
  ["intelligent-tiering", "ListBucketIntelligentTieringConfigurations"],
]);

/** The names of the unsupported subresources route() recognises (for tests and docs/S3.md). */
export const unsupported_subresources: ReadonlyArray<string> = [...unsupported.keys()];

function notImplemented(operation: string): never {
  throw new S3Error("NotImplemented", `${operation} is not implemented by this gateway`);
}

function methodNotAllowed(method: string, level: Level | "service", why: string): never {
  throw new S3Error(
    "MethodNotAllowed",
    `${method} is not allowed on ${level === "service" ? "the service" : `a ${level}`}: ${why}`,
    new Map([
      ["Method", method],
      ["ResourceType", level.toUpperCase()],
    ]),
  );
}

function invalidRequest(message: string): never {
  throw new S3Error("InvalidRequest", message);
}

const encoder = new TextEncoder();
const strict_utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The raw path part decoded once: percent-escapes to bytes, the bytes as UTF-8; null if either is
 * invalid (the caller says which error). */
function percentDecode(raw: string): string | null {
  if (!raw.isWellFormed()) return null;
  if (!raw.includes("%")) return raw;
  const bytes: number[] = [];
  let literal_start = 0;
  const flush = (end: number) => {
    for (const b of encoder.encode(raw.slice(literal_start, end))) bytes.push(b);
  };
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] !== "%") continue;
    flush(i);
    const hex = raw.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return null;
    bytes.push(Number.parseInt(hex, 16));
    i += 2;
    literal_start = i + 1;
  }
  flush(raw.length);
  try {
    return strict_utf8.decode(new Uint8Array(bytes));
  } catch {
    return null;
  }
}

function decodeBucket(raw: string): string {
  const bucket = percentDecode(raw);
  if (bucket === null)
    throw new S3Error(
      "InvalidBucketName",
      `bucket name ${JSON.stringify(raw)} has an invalid percent-escape`,
      new Map([["BucketName", raw]]),
    );
  checkBucketName(bucket);
  return bucket;
}

/** The key, or null for an empty key (the request is then for the bucket, as S3). */
function decodeKey(raw: string): string | null {
  if (raw === "") return null;
  const key = percentDecode(raw);
  if (key === null) throw new S3Error("InvalidArgument", "the object key in the path has an invalid percent-escape or is not UTF-8");
  const nul = key.indexOf("\u0000");
  if (nul !== -1) throw new S3Error("InvalidArgument", `the object key holds a NUL character (at character ${nul}); keys may not hold NUL`);
  checkObjectKey(key);
  return key;
}

/** The host without its port, lowercased (DNS names are case-insensitive); IPv6 literals kept. */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    return end === -1 ? h : h.slice(0, end + 1);
  }
  const colon = h.indexOf(":");
  const name = colon === -1 ? h : h.slice(0, colon);
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/** Bucket (null for the service) and the raw key part of the request. */
function locate(raw_path: string, host: string | null, domain: string | null): { bucket: string | null; raw_key: string } {
  if (!raw_path.startsWith("/")) invalidRequest(`the request path ${JSON.stringify(raw_path)} does not start with '/'`);
  if (host !== null && domain !== null) {
    const name = hostName(host);
    const suffix = `.${hostName(domain)}`;
    if (name.endsWith(suffix) && name.length > suffix.length) {
      const bucket = name.slice(0, -suffix.length);
      checkBucketName(bucket);
      return { bucket, raw_key: raw_path.slice(1) };
    }
  }
  if (raw_path === "/") return { bucket: null, raw_key: "" };
  const slash = raw_path.indexOf("/", 1);
  const raw_bucket = slash === -1 ? raw_path.slice(1) : raw_path.slice(1, slash);
  return { bucket: decodeBucket(raw_bucket), raw_key: slash === -1 ? "" : raw_path.slice(slash + 1) };
}

/** Throws S3Error: NotImplemented naming the S3 operation for anything known but unsupported,
 * MethodNotAllowed / InvalidRequest / InvalidArgument / InvalidBucketName for bad requests.
 * raw_path is the request target's path exactly as sent (not normalized, still percent-encoded);
 * raw_query the part after '?'. headers, when given, tells CopyObject from PutObject. */
export function route(
  method: string,
  raw_path: string,
  raw_query: string,
  host: string | null,
  domain: string | null,
  headers: Headers | null = null,
): Route {
  if (!methods.has(method)) methodNotAllowed(method, "service", "S3 uses GET, HEAD, PUT, POST and DELETE");
  const m = method as Method;
  const { bucket, raw_key } = locate(raw_path, host, domain);
  const query = new URLSearchParams(raw_query.startsWith("?") ? raw_query.slice(1) : raw_query);
  if (bucket === null) {
    if (m !== "GET") methodNotAllowed(m, "service", "only GET (ListBuckets) is defined on '/'");
    return { operation: "ListBuckets", bucket: null, key: null };
  }
  const key = decodeKey(raw_key);
  const level: Level = key === null ? "bucket" : "object";
  for (const [subresource, table] of unsupported) {
    if (!query.has(subresource)) continue;
    const listed = listed_configurations.get(subresource);
    if (listed !== undefined && level === "bucket" && m === "GET" && !query.has("id")) notImplemented(listed);
    notImplemented(table.get(`${level} ${m}`) ?? `${m} ?${subresource} on ${level === "bucket" ? "a bucket" : "an object"}`);
  }
  const r = (operation: S3Operation): Route => ({ operation, bucket, key });
  return key === null ? bucketRoute(m, query, r) : objectRoute(m, query, headers, r);
}

function bucketRoute(m: Method, query: URLSearchParams, r: (operation: S3Operation) => Route): Route {
  for (const name of ["uploadId", "partNumber"])
    if (query.has(name)) invalidRequest(`?${name} names a multipart upload of an object, but the request has no object key`);
  switch (m) {
    case "GET": {
      if (query.has("location")) return r("GetBucketLocation");
      if (query.has("uploads")) return r("ListMultipartUploads");
      const list_type = query.get("list-type");
      if (list_type === null) return r("ListObjects");
      if (list_type === "2") return r("ListObjectsV2");
      throw new S3Error(
        "InvalidArgument",
        `list-type ${JSON.stringify(list_type)}: only list-type=2 is defined`,
        argument("list-type", list_type),
      );
    }
    case "HEAD":
      return r("HeadBucket");
    case "PUT":
      return r("CreateBucket");
    case "DELETE":
      return r("DeleteBucket");
    case "POST":
      if (query.has("delete")) return r("DeleteObjects");
      if (query.has("uploads")) invalidRequest("POST ?uploads (CreateMultipartUpload) needs an object key");
      notImplemented("PostObject (browser form upload)");
  }
}

function objectRoute(m: Method, query: URLSearchParams, headers: Headers | null, r: (operation: S3Operation) => Route): Route {
  const version_id = query.get("versionId");
  if (version_id !== null && version_id !== "null") notImplemented(`${m} of an object version (versionId; object versioning)`);
  const copy = headers !== null && headers.has("x-amz-copy-source");
  const upload_id = query.has("uploadId");
  switch (m) {
    case "GET":
      if (upload_id) return r("ListParts");
      if (query.has("partNumber")) notImplemented("GetObject of one part (partNumber)");
      return r("GetObject");
    case "HEAD":
      if (query.has("partNumber")) notImplemented("HeadObject of one part (partNumber)");
      return r("HeadObject");
    case "PUT": {
      const part_number = query.has("partNumber");
      if (upload_id !== part_number)
        throw new S3Error(
          "InvalidArgument",
          `UploadPart needs both uploadId and partNumber; the request has only ${upload_id ? "uploadId" : "partNumber"}`,
          argument(upload_id ? "partNumber" : "uploadId", ""),
        );
      if (upload_id) {
        if (copy) notImplemented("UploadPartCopy");
        return r("UploadPart");
      }
      return r(copy ? "CopyObject" : "PutObject");
    }
    case "DELETE":
      return r(upload_id ? "AbortMultipartUpload" : "DeleteObject");
    case "POST":
      if (query.has("uploads")) return r("CreateMultipartUpload");
      if (upload_id) return r("CompleteMultipartUpload");
      methodNotAllowed(m, "object", "POST on an object needs ?uploads or ?uploadId");
  }
}

function argument(name: string, value: string): Map<string, string> {
  return new Map([
    ["ArgumentName", name],
    ["ArgumentValue", value],
  ]);
}
