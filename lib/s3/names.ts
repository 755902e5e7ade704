/**
 * Where the gateway keeps buckets, objects and uploads in the cluster's one flat key space
 * (docs/S3.md §2), and S3's rules for bucket names and keys.
 */
import { key_size_max } from "../constants.ts";
import { S3Error } from "./s3_error.ts";

export const s3_key_size_max_bytes = 1024;
export const bucket_name_size_min = 3;
export const bucket_name_size_max = 63;
/** Every record of the gateway's own lives under this prefix; no bucket name can start with ".". */
export const gateway_prefix = ".s3/";

const encoder = new TextEncoder();

/** S3's rules: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit, no "..", not an
 * IPv4 address. Throws InvalidBucketName saying which rule the name breaks. */
export function checkBucketName(name: string): void {
  const bad = (why: string): never => {
    throw new S3Error("InvalidBucketName", `bucket name ${JSON.stringify(name)} ${why}`, new Map([["BucketName", name]]));
  };
  if (name.length < bucket_name_size_min || name.length > bucket_name_size_max)
    bad(`has ${name.length} characters: bucket names have ${bucket_name_size_min} to ${bucket_name_size_max}`);
  if (!/^[a-z0-9.-]+$/.test(name)) bad("may hold only lowercase letters, digits, '.' and '-'");
  if (!/^[a-z0-9]/.test(name) || !/[a-z0-9]$/.test(name)) bad("must start and end with a letter or digit");
  if (name.includes("..")) bad("must not hold two '.' in a row");
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) bad("must not look like an IP address");
}

/** The key's UTF-8 bytes, checked against S3's limit (KeyTooLongError). */
export function checkObjectKey(key: string): Uint8Array {
  const bytes = encoder.encode(key);
  if (bytes.length === 0) throw new S3Error("InvalidArgument", "an object key has at least one byte");
  if (bytes.length > s3_key_size_max_bytes)
    throw new S3Error("KeyTooLongError", `key of ${bytes.length} bytes: S3 keys are at most ${s3_key_size_max_bytes} bytes`);
  return bytes;
}

/** The native key of object `key` in `bucket`: "bucket/key". */
export function objectKey(bucket: string, key: string): Uint8Array {
  const k = checkObjectKey(key);
  const prefix = bucketPrefix(bucket);
  const out = new Uint8Array(prefix.length + k.length);
  out.set(prefix, 0);
  out.set(k, prefix.length);
  return out;
}

/** "bucket/": every native key of the bucket's objects starts with it. */
export function bucketPrefix(bucket: string): Uint8Array {
  return encoder.encode(`${bucket}/`);
}

export function bucketRecordKey(bucket: string): Uint8Array {
  return encoder.encode(`${gateway_prefix}bucket/${bucket}`);
}

export const bucket_records_prefix = encoder.encode(`${gateway_prefix}bucket/`);

export function uploadRecordKey(bucket: string, upload_id: string): Uint8Array {
  return encoder.encode(`${gateway_prefix}upload/${bucket}/${upload_id}`);
}

export function uploadRecordsPrefix(bucket: string): Uint8Array {
  return encoder.encode(`${gateway_prefix}upload/${bucket}/`);
}

export function partRecordKey(upload_id: string, part_number: number): Uint8Array {
  return encoder.encode(`${gateway_prefix}part/${upload_id}/${String(part_number).padStart(5, "0")}`);
}

export function partRecordsPrefix(upload_id: string): Uint8Array {
  return encoder.encode(`${gateway_prefix}part/${upload_id}/`);
}

// The longest native key the gateway makes must fit the cluster's limit.
if (bucket_name_size_max + 1 + s3_key_size_max_bytes > key_size_max)
  throw new Error(`key_size_max ${key_size_max} cannot hold a bucket name, '/' and an S3 key`);
