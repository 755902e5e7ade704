/**
 * PutObject and DeleteObject (docs/S3.md §3). A put streams the verified body into Client.put,
 * which writes nothing visible until the whole body has been read and checked: the body iterator
 * (payload.ts: payload hash, Content-MD5, checksums, length) throws before it ends if a check
 * fails, so the object is never half-written.
 */
import { ClientError } from "../client/errors.ts";
import { requireBucket } from "./buckets.ts";
import { md5Etag } from "./etag.ts";
import { contentTypeFromHeaders, metaOptions, objectOf, refuseUnsupportedWriteHeaders, userMetaFromHeaders } from "./object_headers.ts";
import type { S3Context, S3Request } from "./request.ts";
import { contentEncodings } from "./payload.ts";
import { S3Error } from "./s3_error.ts";
import { conditionFailed, writeConditions } from "./write_conditions.ts";

/** S3's largest single PutObject (and CopyObject); larger objects are multipart uploads. */
export const put_object_size_max_bytes = 5 * 1024 * 1024 * 1024;

/** Whether the body is aws-chunked (its decoded size may be unknown up front). */
function awsChunked(headers: Headers): boolean {
  return (
    contentEncodings(headers.get("content-encoding")).includes("aws-chunked") ||
    (headers.get("x-amz-content-sha256") ?? "").startsWith("STREAMING-")
  );
}

const md5_bytes = 16;

/** The Content-MD5 header's 16 bytes, or null when absent (InvalidDigest when it is not base64 of
 * 16 bytes). The body itself is checked against it by payload.ts. */
export function contentMd5(headers: Headers): Uint8Array | null {
  const text = headers.get("content-md5");
  if (text === null) return null;
  const trimmed = text.trim();
  const bytes = /^[A-Za-z0-9+/]*={0,2}$/.test(trimmed) ? new Uint8Array(Buffer.from(trimmed, "base64")) : new Uint8Array(0);
  if (bytes.length !== md5_bytes)
    throw new S3Error("InvalidDigest", `Content-MD5 ${JSON.stringify(text)} is not the base64 of a 16-byte MD5`);
  return bytes;
}

export async function putObject(request: S3Request, context: S3Context): Promise<Response> {
  const { bucket, native } = objectOf(request);
  refuseUnsupportedWriteHeaders(request.headers);
  const options = metaOptions(contentTypeFromHeaders(request.headers), userMetaFromHeaders(request.headers));
  if (request.size === null && !awsChunked(request.headers))
    throw new S3Error("MissingContentLength", "PutObject needs a Content-Length (or an aws-chunked body)");
  if (request.size !== null && request.size > put_object_size_max_bytes)
    throw new S3Error(
      "EntityTooLarge",
      `a PutObject body is at most ${put_object_size_max_bytes} bytes (5 GiB), got ${request.size}: use a multipart upload`,
      new Map([
        ["MaxSizeAllowed", String(put_object_size_max_bytes)],
        ["ProposedSize", String(request.size)],
      ]),
    );
  await requireBucket(context, bucket);
  const conditions = await writeConditions(request.headers, context.client, native);
  try {
    const result = await context.client.put(native, request.body, {
      ...options,
      ...conditions,
      ...(request.size === null ? {} : { size: request.size }),
    });
    return new Response(null, { status: 200, headers: { ETag: md5Etag(result.md5!) } });
  } catch (error) {
    throw conditionFailed(error);
  }
}

/** 204 whether or not the key existed, as S3. If-Match makes it conditional (412 otherwise). */
export async function deleteObject(request: S3Request, context: S3Context): Promise<Response> {
  const { bucket, native } = objectOf(request);
  if ((request.query.get("versionId") ?? "null") !== "null")
    throw new S3Error("NotImplemented", "versionId: this gateway keeps one version per key");
  await requireBucket(context, bucket);
  let if_version: number | undefined;
  if (request.headers.has("if-match")) {
    const conditions = await writeConditions(request.headers, context.client, native);
    if_version = conditions.if_version;
  }
  try {
    await context.client.delete(native, if_version === undefined ? {} : { if_version });
  } catch (error) {
    if (!(error instanceof ClientError && error.code === "not_found")) throw conditionFailed(error);
  }
  return new Response(null, { status: 204 });
}
