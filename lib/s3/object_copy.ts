/**
 * CopyObject (docs/S3.md §3): the source's one version streamed from Client.getStream into a put of
 * the destination, with the source's metadata (x-amz-metadata-directive COPY, the default) or the
 * request's (REPLACE), the x-amz-copy-source-if-* conditions on the source and If-Match /
 * If-None-Match on the destination. A source that changes while it is copied fails the copy; the
 * destination is never written with a mix.
 */
import { ClientError } from "../client/errors.ts";
import type { GetStream } from "../client/large_get.ts";
import { requireBucket } from "./buckets.ts";
import { md5Etag } from "./etag.ts";
import { isoDate } from "./buckets.ts";
import {
  copy_source_conditions,
  contentTypeFromHeaders,
  metaOptions,
  objectOf,
  readConditions,
  storedUserMeta,
  refuseUnsupportedWriteHeaders,
  userMetaFromHeaders,
} from "./object_headers.ts";
import { noSuchKey } from "./object_get.ts";
import { put_object_size_max_bytes } from "./object_put.ts";
import { checkBucketName, objectKey } from "./names.ts";
import type { S3Context, S3Request } from "./request.ts";
import { S3Error } from "./s3_error.ts";
import { conditionFailed, writeConditions } from "./write_conditions.ts";
import { s3Xml } from "./xml.ts";
import { xmlResponse } from "./buckets.ts";

/** x-amz-copy-source: `/bucket/key` or `bucket/key`, percent-encoded. */
export function parseCopySource(text: string): { bucket: string; key: string } {
  const invalid = (why: string): never => {
    throw new S3Error(
      "InvalidArgument",
      `x-amz-copy-source ${JSON.stringify(text)}: ${why}`,
      new Map([["ArgumentName", "x-amz-copy-source"]]),
    );
  };
  const question = text.indexOf("?");
  const path = question < 0 ? text : text.slice(0, question);
  if (question >= 0) {
    const query = new URLSearchParams(text.slice(question + 1));
    if ((query.get("versionId") ?? "null") !== "null")
      throw new S3Error("NotImplemented", "x-amz-copy-source with versionId: this gateway keeps one version per key");
  }
  let decoded = "";
  try {
    decoded = decodeURIComponent(path);
  } catch {
    invalid("not valid percent-encoding");
  }
  const trimmed = decoded.startsWith("/") ? decoded.slice(1) : decoded;
  const slash = trimmed.indexOf("/");
  if (slash <= 0 || slash === trimmed.length - 1) invalid("expected /bucket/key");
  const bucket = trimmed.slice(0, slash);
  checkBucketName(bucket);
  return { bucket, key: trimmed.slice(slash + 1) };
}

function directive(headers: Headers): "COPY" | "REPLACE" {
  const text = (headers.get("x-amz-metadata-directive") ?? "COPY").trim().toUpperCase();
  if (text !== "COPY" && text !== "REPLACE")
    throw new S3Error(
      "InvalidArgument",
      `x-amz-metadata-directive must be COPY or REPLACE, got ${JSON.stringify(text)}`,
      new Map([["ArgumentName", "x-amz-metadata-directive"]]),
    );
  return text;
}

export async function copyObject(request: S3Request, context: S3Context): Promise<Response> {
  const destination = objectOf(request);
  const source_text = request.headers.get("x-amz-copy-source");
  if (source_text === null) throw new S3Error("InvalidRequest", "CopyObject needs x-amz-copy-source");
  const source = parseCopySource(source_text);
  const source_native = objectKey(source.bucket, source.key);
  const mode = directive(request.headers);
  refuseUnsupportedWriteHeaders(request.headers);
  if (request.headers.has("x-amz-tagging-directive"))
    throw new S3Error("NotImplemented", "object tagging (x-amz-tagging-directive) is not supported by this gateway");
  // Validated before any read, so a bad header costs nothing.
  const replaced = mode === "REPLACE" ? metaOptions(contentTypeFromHeaders(request.headers), userMetaFromHeaders(request.headers)) : null;
  await requireBucket(context, source.bucket);
  if (destination.bucket !== source.bucket) await requireBucket(context, destination.bucket);
  if (mode === "COPY" && source.bucket === destination.bucket && source.key === destination.key)
    throw new S3Error(
      "InvalidRequest",
      "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata (use x-amz-metadata-directive: REPLACE)",
    );
  const conditions = await writeConditions(request.headers, context.client, destination.native);
  let stream: GetStream;
  try {
    stream = await context.client.getStream(source_native);
  } catch (error) {
    throw noSuchKey(error, source.key);
  }
  const header = stream.header;
  const outcome = readConditions(request.headers, header, copy_source_conditions);
  const too_large = header.size > put_object_size_max_bytes;
  if (!outcome.ok || too_large) {
    void stream.body.cancel().catch(() => undefined);
    if (too_large)
      throw new S3Error(
        "InvalidRequest",
        `the copy source is ${header.size} bytes: CopyObject copies at most ${put_object_size_max_bytes} bytes (5 GiB)`,
      );
    // S3 answers every failed copy-source condition with 412.
    throw new S3Error("PreconditionFailed", outcome.ok ? "" : outcome.why);
  }
  const metadata =
    replaced ??
    metaOptions(
      header.metadata?.content_type === "" || header.metadata === null ? undefined : header.metadata.content_type,
      storedUserMeta(header),
    );
  let result;
  try {
    result = await context.client.put(destination.native, stream.body, { ...metadata, ...conditions, size: header.size });
  } catch (error) {
    throw conditionFailed(error);
  }
  const etag = md5Etag(result.md5!);
  const modified = await writtenAt(context, destination.native, result.version);
  const xml = s3Xml("CopyObjectResult", (w) => w.leaf("LastModified", isoDate(modified)).leaf("ETag", etag));
  return xmlResponse(xml);
}

/** When the version just written was written: the cluster's timestamp if it is still the current
 * version, else the gateway's clock (a later writer already replaced it). */
async function writtenAt(context: S3Context, key: Uint8Array, version: number): Promise<number> {
  try {
    const info = await context.client.stat(key);
    if (info.version === version) return info.timestamp;
  } catch (error) {
    if (!(error instanceof ClientError && error.code === "not_found")) throw error;
  }
  return context.now();
}
