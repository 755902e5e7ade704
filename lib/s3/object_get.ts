/**
 * GetObject and HeadObject (docs/S3.md §3): one version of the object streamed from
 * Client.getStream (a change while it streams errors the stream, so the response is cut short and
 * never mixes versions), with Range, the conditional-read headers and the response-* overrides.
 */
import { ClientError } from "../client/errors.ts";
import { parseRange, type ByteRange, type GetStream } from "../client/large_get.ts";
import type { ObjectHeader } from "../store/large_bodies.ts";
import { requireBucket } from "./buckets.ts";
import { errorResponse } from "./error_response.ts";
import { etagOf } from "./etag.ts";
import { httpDate, objectOf, objectResponseHeaders, readConditions } from "./object_headers.ts";
import type { S3Context, S3Request } from "./request.ts";
import { checkBucketName } from "./names.ts";
import { S3Error } from "./s3_error.ts";

/** GetObject's query parameters that override a response header (S3 lets a signed request set them). */
export const response_overrides: ReadonlyMap<string, string> = new Map([
  ["response-content-type", "Content-Type"],
  ["response-content-language", "Content-Language"],
  ["response-expires", "Expires"],
  ["response-cache-control", "Cache-Control"],
  ["response-content-disposition", "Content-Disposition"],
  ["response-content-encoding", "Content-Encoding"],
]);

function overridesOf(query: URLSearchParams): Map<string, string> {
  const out = new Map<string, string>();
  for (const [parameter, header] of response_overrides) {
    const value = query.get(parameter);
    if (value === null) continue;
    if (!/^[\x20-\x7e\t]*$/.test(value))
      throw new S3Error(
        "InvalidArgument",
        `${parameter} must be printable ASCII (it becomes the ${header} header)`,
        new Map([["ArgumentName", parameter]]),
      );
    out.set(header, value);
  }
  return out;
}

/**
 * The Range header as one byte range, or null to serve the whole object: a header that is not
 * `bytes=`, names several ranges, or does not parse is ignored, as RFC 9110 §14.2 allows and S3
 * does. A range that parses but lies outside the object is 416 (unsatisfiable).
 */
export function rangeOf(headers: Headers): ByteRange | null {
  const text = headers.get("range");
  if (text === null) return null;
  const m = /^\s*bytes\s*=\s*(.*?)\s*$/i.exec(text);
  if (m === null || m[1]!.includes(",")) return null;
  return parseRange(m[1]!);
}

/** Whether no byte of an object of `size` bytes is in the range. */
function unsatisfiable(range: ByteRange, size: number): boolean {
  if ("suffix" in range) return range.suffix === 0 || size === 0;
  return range.start >= size;
}

function rangeNotSatisfiable(request: S3Request, range: ByteRange, size: number): Response {
  const text = "suffix" in range ? `-${range.suffix}` : `${range.start}-${range.end ?? ""}`;
  const error = new S3Error(
    "InvalidRange",
    `range bytes=${text} is outside the object (${size} bytes)`,
    new Map([
      ["RangeRequested", `bytes=${text}`],
      ["ActualObjectSize", String(size)],
    ]),
  );
  return errorResponse(error, resourceOf(request), request.id, { "Content-Range": `bytes */${size}` });
}

function resourceOf(request: S3Request): string {
  return `/${request.bucket ?? ""}/${request.key ?? ""}`;
}

/** 304 (with the validators) or a thrown 412 when the request's conditions fail; null when they hold. */
function conditionResponse(request: S3Request, header: ObjectHeader): Response | null {
  const outcome = readConditions(request.headers, header);
  if (outcome.ok) return null;
  if (outcome.status === 412) throw new S3Error("PreconditionFailed", outcome.why, new Map([["Condition", outcome.why]]));
  return new Response(null, { status: 304, headers: { ETag: etagOf(header), "Last-Modified": httpDate(header.timestamp) } });
}

export function noSuchKey(error: unknown, key: string): unknown {
  if (error instanceof ClientError && error.code === "not_found")
    return new S3Error("NoSuchKey", `no object ${JSON.stringify(key)}`, new Map([["Key", key]]));
  return error;
}

/**
 * A read of an object missed (or failed): NoSuchBucket when the bucket does not exist, else
 * NoSuchKey. Reads go to the object first and ask about the bucket only on a miss, which saves a
 * get or head the bucket check (a cluster read, at most once a second per bucket: buckets.ts) on
 * every hit. An object can exist only in a bucket that existed when it was written; a bucket
 * deleted since is empty (DeleteBucket refuses a bucket with objects), so a hit answers as the
 * bucket check would, except for the object of a put that raced a DeleteBucket, which the put's
 * own bucket check could not see either (docs/S3.md §2).
 */
async function missed(context: S3Context, bucket: string, key: string, error: unknown): Promise<unknown> {
  if (!(error instanceof ClientError && error.code === "not_found")) return error;
  await requireBucket(context, bucket);
  return noSuchKey(error, key);
}

function checkGetQuery(request: S3Request): void {
  // Reading one part of a multipart object is not supported: serving the whole object instead
  // would hand a client the wrong bytes.
  if (request.query.has("partNumber")) throw new S3Error("NotImplemented", "GetObject and HeadObject with partNumber are not supported");
  if ((request.query.get("versionId") ?? "null") !== "null")
    throw new S3Error("NotImplemented", "versionId: this gateway keeps one version per key");
}

function okResponse(
  header: ObjectHeader,
  range: ByteRange | null,
  overrides: Map<string, string>,
  body: ReadableStream<Uint8Array> | null,
  start: number,
  length: number,
): Response {
  const headers = objectResponseHeaders(header);
  for (const [name, value] of overrides) headers.set(name, value);
  headers.set("Content-Length", String(length));
  if (range === null) return new Response(body, { status: 200, headers });
  headers.set("Content-Range", `bytes ${start}-${start + length - 1}/${header.size}`);
  return new Response(body, { status: 206, headers });
}

export async function getObject(request: S3Request, context: S3Context): Promise<Response> {
  const { bucket, key, native } = objectOf(request);
  checkGetQuery(request);
  const overrides = overridesOf(request.query);
  checkBucketName(bucket);
  const range = rangeOf(request.headers);
  let stream: GetStream;
  try {
    stream = await context.client.getStream(native, range === null ? {} : { range });
  } catch (error) {
    if (range === null || !(error instanceof ClientError && error.code === "range_invalid"))
      throw await missed(context, bucket, key, error);
    // Conditions come before the range (RFC 9110 §13.2.2): read them from the header.
    let header: ObjectHeader;
    try {
      header = await context.client.head(native);
    } catch (e) {
      throw await missed(context, bucket, key, e);
    }
    return conditionResponse(request, header) ?? rangeNotSatisfiable(request, range, header.size);
  }
  const header = stream.header;
  const early =
    conditionResponse(request, header) ??
    (range !== null && unsatisfiable(range, header.size) ? rangeNotSatisfiable(request, range, header.size) : null);
  if (early !== null) {
    void stream.body.cancel().catch(() => undefined);
    return early;
  }
  return okResponse(header, range, overrides, stream.body, stream.start, stream.length);
}

export async function headObject(request: S3Request, context: S3Context): Promise<Response> {
  const { bucket, key, native } = objectOf(request);
  checkGetQuery(request);
  const overrides = overridesOf(request.query);
  checkBucketName(bucket);
  let header: ObjectHeader;
  try {
    header = await context.client.head(native);
  } catch (error) {
    throw await missed(context, bucket, key, error);
  }
  const early = conditionResponse(request, header);
  if (early !== null) return early;
  const range = rangeOf(request.headers);
  if (range === null) return okResponse(header, null, overrides, null, 0, header.size);
  if (unsatisfiable(range, header.size)) return rangeNotSatisfiable(request, range, header.size);
  const start = "suffix" in range ? Math.max(0, header.size - range.suffix) : range.start;
  const end = "suffix" in range || range.end === undefined ? header.size : Math.min(header.size, range.end + 1);
  return okResponse(header, range, overrides, null, start, end - start);
}
