/**
 * Conditional writes (docs/S3.md §3): If-None-Match: * and If-Match: ETAG on PutObject,
 * CompleteMultipartUpload and CopyObject's destination, mapped onto the cluster's compare-and-set
 * so that exactly one of many concurrent conditional writers wins.
 */
import type { Client } from "../client/client.ts";
import { ClientError } from "../client/errors.ts";
import type { Conditions } from "../client/large_put.ts";
import { etagList, etagOf, sameEtag } from "./etag.ts";
import { S3Error } from "./s3_error.ts";

/**
 * The native condition for a write's If-Match / If-None-Match headers ({} when it has none).
 * If-Match reads the current header to learn the version whose ETag matches; the write then names
 * that version, so a writer that slipped in between makes the write fail (412), never succeed on
 * another version.
 */
export async function writeConditions(headers: Headers, client: Client, key: Uint8Array): Promise<Conditions> {
  const if_match = headers.get("if-match");
  const if_none_match = headers.get("if-none-match");
  if (if_match !== null && if_none_match !== null)
    throw new S3Error("NotImplemented", "a write may carry If-Match or If-None-Match, not both");
  if (if_none_match !== null) {
    if (if_none_match.trim() !== "*")
      throw new S3Error("NotImplemented", `If-None-Match on a write accepts only "*", got ${JSON.stringify(if_none_match)}`);
    return { if_absent: true };
  }
  if (if_match === null) return {};
  const wanted = etagList(if_match);
  if (wanted.length === 0) throw new S3Error("InvalidArgument", "If-Match is empty", new Map([["ArgumentName", "If-Match"]]));
  let current;
  try {
    current = await client.head(key);
  } catch (e) {
    if (e instanceof ClientError && e.code === "not_found") throw new S3Error("NoSuchKey", "If-Match names an object that does not exist");
    throw e;
  }
  const etag = etagOf(current);
  if (!wanted.some((w) => w === "*" || sameEtag(w, etag)))
    throw new S3Error("PreconditionFailed", `If-Match ${if_match} does not match the object's ETag ${etag}`);
  return { if_version: current.version };
}

/** A write that failed its native condition: the S3 answer (412). */
export function conditionFailed(error: unknown): unknown {
  if (error instanceof ClientError && error.code === "condition_failed")
    return new S3Error("PreconditionFailed", "the object changed: the write's If-Match or If-None-Match condition does not hold");
  return error;
}
