/**
 * What the multipart, listing and DeleteObjects handlers share: client errors turned into S3
 * errors, the request's bucket and key, XML responses, owners, and S3's integer query parameters.
 */
import { xmlResponse } from "./buckets.ts";
import { s3ErrorOf } from "./client_errors.ts";
import type { S3Handler, S3Request } from "./request.ts";
import { S3Error } from "./s3_error.ts";
import { s3Xml, type XmlWriter } from "./xml.ts";

/** A handler whose client errors reach the gateway as their S3 equivalents. */
export function s3Handler(handler: S3Handler): S3Handler {
  return (request, context) =>
    handler(request, context).catch((e: unknown) => {
      throw s3ErrorOf(e);
    });
}

export function bucketOf(request: S3Request): string {
  if (request.bucket === null) throw new S3Error("InvalidRequest", "this operation needs a bucket");
  return request.bucket;
}

/** 200 with the S3 document `root` holding what fill writes. */
export function s3XmlResponse(root: string, fill: (w: XmlWriter) => void): Response {
  return xmlResponse(s3Xml(root, fill));
}

/** Owner, Initiator: the gateway has no accounts, so an access key is the identity S3 shows. */
export function writeOwner(w: XmlWriter, element: string, access_key: string): void {
  w.open(element);
  w.leaf("ID", access_key);
  w.leaf("DisplayName", access_key);
  w.close();
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
