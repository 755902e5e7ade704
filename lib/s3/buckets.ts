/**
 * The bucket operations (docs/S3.md §2): a bucket is its record `.s3/bucket/B` (CBOR
 * `{created_ms, region}`), created with if_absent so that one of two concurrent creates wins.
 * requireBucket is what every object, listing and multipart handler calls first.
 */
import { Encoder } from "cbor-x";
import { ClientError } from "../client/errors.ts";
import type { S3Context, S3Handler, S3Request } from "./request.ts";
import type { S3Operation } from "./router.ts";
import { S3Error } from "./s3_error.ts";
import { bucketPrefix, bucketRecordKey, bucket_records_prefix, checkBucketName, uploadRecordsPrefix } from "./names.ts";
import { XmlWriter, readXmlBody, s3Xml } from "./xml.ts";
import { refuseUnsupportedBucketHeaders } from "./object_headers.ts";

/** A CreateBucketConfiguration body is a few hundred bytes; more is not one. */
export const create_bucket_body_bytes_max = 64 * 1024;
/** How long a bucket found to exist is believed without asking the cluster again. A bucket
 * deleted through another gateway may still take objects here for this long (docs/S3.md §2). */
export const bucket_cache_ms = 1000;
/** Buckets remembered at once; beyond it the oldest answer is forgotten. */
export const bucket_cache_entries_max = 4096;

const cbor = new Encoder({ useRecords: false });
const decoder = new TextDecoder();

/** cluster id + "/" + bucket -> when the positive answer was cached (performance.now, ms). */
const known = new Map<string, number>();

function cacheKey(context: S3Context, bucket: string): string {
  return `${context.client.membership.cluster}/${bucket}`;
}

/** Throws NoSuchBucket unless the bucket's record exists (positive answers cached bucket_cache_ms). */
export async function requireBucket(context: S3Context, bucket: string): Promise<void> {
  checkBucketName(bucket);
  const key = cacheKey(context, bucket);
  const seen = known.get(key);
  if (seen !== undefined && performance.now() - seen < bucket_cache_ms) return;
  if (!(await bucketExists(context, bucket))) throw noSuchBucket(bucket);
  known.delete(key);
  if (known.size >= bucket_cache_entries_max) known.delete(known.keys().next().value!);
  known.set(key, performance.now());
}

function forget(context: S3Context, bucket: string): void {
  known.delete(cacheKey(context, bucket));
}

async function bucketExists(context: S3Context, bucket: string): Promise<boolean> {
  try {
    await context.client.stat(bucketRecordKey(bucket));
    return true;
  } catch (error) {
    if (error instanceof ClientError && error.code === "not_found") return false;
    throw error;
  }
}

export function noSuchBucket(bucket: string): S3Error {
  return new S3Error("NoSuchBucket", `bucket ${bucket} does not exist`, new Map([["BucketName", bucket]]));
}

/** S3's date format in XML documents: ISO 8601 with milliseconds, UTC. */
export function isoDate(ms: number): string {
  return new Date(ms).toISOString();
}

function bucketOf(request: S3Request): string {
  if (request.bucket === null) throw new S3Error("InvalidRequest", "this operation needs a bucket");
  return request.bucket;
}

const listBuckets: S3Handler = async (request, context) => {
  const buckets: { name: string; created_ms: number }[] = [];
  for await (const entry of context.client.listAll(bucket_records_prefix)) {
    // The record is written once (if_absent), so its version's timestamp is the creation time.
    buckets.push({ name: decoder.decode(entry.key.subarray(bucket_records_prefix.length)), created_ms: entry.timestamp });
  }
  const xml = s3Xml("ListAllMyBucketsResult", (w) => {
    w.open("Owner").leaf("ID", request.access_key).leaf("DisplayName", request.access_key).close();
    w.open("Buckets");
    for (const b of buckets) w.open("Bucket").leaf("Name", b.name).leaf("CreationDate", isoDate(b.created_ms)).close();
    w.close();
  });
  return xmlResponse(xml);
};

/** The LocationConstraint of a CreateBucketConfiguration body, or "" when there is none. */
async function locationConstraint(request: S3Request): Promise<string> {
  if (request.size === 0) return "";
  const root = await readXmlBody(request.body, create_bucket_body_bytes_max);
  if (root.name !== "CreateBucketConfiguration")
    throw new S3Error("MalformedXML", `a CreateBucket body is a CreateBucketConfiguration, got ${root.name}`);
  const location = root.children.find((c) => c.name === "LocationConstraint");
  return location === undefined ? "" : location.text.trim();
}

const createBucket: S3Handler = async (request, context) => {
  const bucket = bucketOf(request);
  checkBucketName(bucket);
  refuseUnsupportedBucketHeaders(request.headers);
  refuseUnsupportedBucketHeaders(request.headers);
  const location = await locationConstraint(request);
  if (location !== "" && location !== context.region)
    throw new S3Error(
      "InvalidArgument",
      `LocationConstraint ${JSON.stringify(location)} is not this gateway's region ${JSON.stringify(context.region)}`,
      new Map([
        ["ArgumentName", "LocationConstraint"],
        ["ArgumentValue", location],
      ]),
    );
  const record = cbor.encode({ created_ms: context.now(), region: context.region });
  try {
    await context.client.put(bucketRecordKey(bucket), record, { if_absent: true });
  } catch (error) {
    if (error instanceof ClientError && error.code === "condition_failed")
      throw new S3Error("BucketAlreadyOwnedByYou", `bucket ${bucket} already exists`, new Map([["BucketName", bucket]]));
    throw error;
  }
  return new Response(null, { status: 200, headers: { Location: `/${bucket}` } });
};

const headBucket: S3Handler = async (request, context) => {
  const bucket = bucketOf(request);
  checkBucketName(bucket);
  if (!(await bucketExists(context, bucket))) throw noSuchBucket(bucket);
  return new Response(null, { status: 200, headers: { "x-amz-bucket-region": context.region } });
};

async function anyKey(context: S3Context, prefix: Uint8Array): Promise<boolean> {
  return (await context.client.list(prefix, { limit: 1 })).entries.length > 0;
}

const deleteBucket: S3Handler = async (request, context) => {
  const bucket = bucketOf(request);
  checkBucketName(bucket);
  forget(context, bucket);
  if (!(await bucketExists(context, bucket))) throw noSuchBucket(bucket);
  if ((await anyKey(context, bucketPrefix(bucket))) || (await anyKey(context, uploadRecordsPrefix(bucket))))
    throw new S3Error(
      "BucketNotEmpty",
      `bucket ${bucket} still holds objects or multipart uploads: delete or abort them first`,
      new Map([["BucketName", bucket]]),
    );
  try {
    await context.client.delete(bucketRecordKey(bucket));
  } catch (error) {
    // Deleted meanwhile by another request: the outcome the client asked for.
    if (!(error instanceof ClientError && error.code === "not_found")) throw error;
  }
  forget(context, bucket);
  return new Response(null, { status: 204 });
};

const getBucketLocation: S3Handler = async (request, context) => {
  const bucket = bucketOf(request);
  await requireBucket(context, bucket);
  // S3 answers an empty LocationConstraint for us-east-1, its original region.
  const region = context.region === "us-east-1" ? "" : context.region;
  // The document's root holds the text itself, which s3Xml (children only) cannot say.
  return xmlResponse(`<?xml version="1.0" encoding="UTF-8"?>\n${new XmlWriter().leaf("LocationConstraint", region).toString()}`);
};

export function xmlResponse(xml: string, status = 200): Response {
  return new Response(xml, { status, headers: { "Content-Type": "application/xml" } });
}

export const bucket_handlers: ReadonlyMap<S3Operation, S3Handler> = new Map<S3Operation, S3Handler>([
  ["ListBuckets", listBuckets],
  ["CreateBucket", createBucket],
  ["HeadBucket", headBucket],
  ["DeleteBucket", deleteBucket],
  ["GetBucketLocation", getBucketLocation],
]);
