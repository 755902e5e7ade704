/**
 * What the multipart, listing and DeleteObjects handlers share: client errors turned into S3
 * errors, the request's bucket and key, XML responses, owners, and S3's integer query parameters.
 */
import { assert } from "../util/assert.ts";
import { s3ErrorOf } from "./client_errors.ts";
import type { S3Handler, S3Request } from "./request.ts";
import { S3Error } from "./s3_error.ts";
import { s3Xml, type XmlWriter } from "./xml_interim.ts";

/** A handler whose client errors reach the gateway as their S3 equivalents. */
export function s3Handler(handler: S3Handler): S3Handler {
  return (request, context) =>
    handler(request, context).catch((e: unknown) => {
      throw s3ErrorOf(e);
    });
}

export function bucketOf(request: S3Request): string {
  assert(request.bucket !== null, "the router sends bucket operations with a bucket");
  return request.bucket;
}

export function targetOf(request: S3Request): { bucket: string; key: string } {
  assert(request.bucket !== null && request.key !== null, "the router sends object operations with a bucket and key");
  return { bucket: request.bucket, key: request.key };
}

export function xmlResponse(root: string, fill: (w: XmlWriter) => void, headers: Record<string, string> = {}): Response {
  return new Response(s3Xml(root, fill), { status: 200, headers: { "content-type": "application/xml", ...headers } });
}

/** Owner, Initiator: the gateway has no accounts, so an access key is the identity S3 shows. */
export function writeOwner(w: XmlWriter, element: string, access_key: string): void {
  w.open(element);
  w.leaf("ID", access_key);
  w.leaf("DisplayName", access_key);
  w.close(element);
}

/** An integer query parameter in min..max (default when absent); InvalidArgument naming it. */
export function queryInteger(request: S3Request, name: string, min: number, max: number, fallback: number): number {
  const text = request.query.get(name);
  if (text === null) return fallback;
  const n = /^[0-9]{1,16}$/.test(text) ? Number(text) : NaN;
  if (!(n >= min)) throw invalidArgument(name, text, `${name} must be a whole number of at least ${min}`);
  return Math.min(n, max);
}

export function invalidArgument(name: string, value: string, message: string): S3Error {
  return new S3Error(
    "InvalidArgument",
    message,
    new Map([
      ["ArgumentName", name],
      ["ArgumentValue", value],
    ]),
  );
}

/** encoding-type=url: S3 percent-encodes names in the response ('/' kept, as S3 does). Anything
 * else is InvalidArgument. */
export function urlEncoder(request: S3Request): (text: string) => string {
  const type = request.query.get("encoding-type");
  if (type === null) return (text) => text;
  if (type !== "url") throw invalidArgument("encoding-type", type, `encoding-type must be "url", got ${JSON.stringify(type)}`);
  return (text) => encodeURIComponent(text).replace(/%2F/g, "/");
}
