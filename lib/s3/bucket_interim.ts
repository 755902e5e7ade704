/**
 * INTERIM, until branch s3-gateway lands lib/s3/buckets.ts: requireBucket with the signature the
 * gateway helper exports, so multipart, listing and DeleteObjects check the bucket the same way.
 * The lead unifies on merge (the imports then point at buckets.ts).
 */
import { ClientError } from "../client/errors.ts";
import { bucketRecordKey } from "./names.ts";
import type { S3Context } from "./request.ts";
import { S3Error } from "./s3_error.ts";

export async function requireBucket(context: S3Context, bucket: string): Promise<void> {
  try {
    await context.client.stat(bucketRecordKey(bucket));
  } catch (e) {
    if (e instanceof ClientError && e.code === "not_found")
      throw new S3Error("NoSuchBucket", `bucket ${bucket} does not exist`, new Map([["BucketName", bucket]]));
    throw e;
  }
}
