/**
 * DeleteObjects (POST /B?delete): up to 1,000 keys in one request, each deleted on its own and
 * reported as Deleted or Error (Quiet: errors only). Content-MD5 is not required: SDKs since
 * January 2025 send a CRC or nothing, and the payload layer has verified whatever was sent.
 * Deleting a key that does not exist succeeds, as in S3.
 */
import { ClientError } from "../client/errors.ts";
import { requireBucket } from "./buckets.ts";
import { s3ErrorOf } from "./client_errors.ts";
import { bucketOf, s3Handler, s3XmlResponse } from "./handler_util.ts";
import { objectKey, s3_key_size_max_bytes } from "./names.ts";
import type { S3Context, S3Handler, S3Request } from "./request.ts";
import type { S3Operation } from "./router.ts";
import { S3Error } from "./s3_error.ts";
import { readXmlBody, type XmlElement } from "./xml.ts";

/** S3's limit of keys per DeleteObjects; more is MalformedXML, as S3 answers. */
export const delete_objects_keys_max = 1000;
/** The request body: 1,000 keys of 1,024 bytes, each character escaped at worst as a 6-byte
 * character reference, plus the elements around them. */
export const delete_objects_body_max_bytes = delete_objects_keys_max * (6 * s3_key_size_max_bytes + 256);

interface Requested {
  key: string;
  version_id: string | null;
}

function requested(root: XmlElement): { quiet: boolean; objects: Requested[] } {
  if (root.name !== "Delete") throw new S3Error("MalformedXML", `the root element is ${root.name}, not Delete`);
  const quiet = root.children.some((c) => c.name === "Quiet" && c.text.trim() === "true");
  const objects: Requested[] = [];
  for (const el of root.children) {
    if (el.name !== "Object") continue;
    const key = el.children.find((c) => c.name === "Key");
    if (key === undefined) throw new S3Error("MalformedXML", "each Object of a Delete has a Key");
    objects.push({ key: key.text, version_id: el.children.find((c) => c.name === "VersionId")?.text ?? null });
  }
  if (objects.length === 0) throw new S3Error("MalformedXML", "a Delete names at least one Object");
  if (objects.length > delete_objects_keys_max)
    throw new S3Error("MalformedXML", `a Delete names ${objects.length} objects: at most ${delete_objects_keys_max}`);
  return { quiet, objects };
}

async function deleteOne(context: S3Context, bucket: string, o: Requested): Promise<S3Error | null> {
  // Buckets are not versioned: only the "null" version exists.
  if (o.version_id !== null && o.version_id !== "null")
    return new S3Error("InvalidArgument", `version ${o.version_id} does not exist: the bucket is not versioned`);
  try {
    await context.client.delete(objectKey(bucket, o.key));
    return null;
  } catch (e) {
    if (e instanceof ClientError && e.code === "not_found") return null;
    const error = s3ErrorOf(e);
    if (error.code === "InternalError") context.log("error", `DeleteObjects ${bucket}/${o.key}: ${error.message}`);
    return error;
  }
}

async function deleteObjects(request: S3Request, context: S3Context): Promise<Response> {
  const bucket = bucketOf(request);
  await requireBucket(context, bucket);
  const { quiet, objects } = requested(await readXmlBody(request.body, delete_objects_body_max_bytes));
  const results: { o: Requested; error: S3Error | null }[] = [];
  for (const o of objects) results.push({ o, error: await deleteOne(context, bucket, o) });
  return s3XmlResponse("DeleteResult", (w) => {
    for (const { o, error } of results) {
      if (error === null) {
        if (quiet) continue;
        w.open("Deleted");
        w.leaf("Key", o.key);
        if (o.version_id !== null) w.leaf("VersionId", o.version_id);
        w.close();
      } else {
        w.open("Error");
        w.leaf("Key", o.key);
        if (o.version_id !== null) w.leaf("VersionId", o.version_id);
        w.leaf("Code", error.code);
        w.leaf("Message", error.message);
        w.close();
      }
    }
  });
}

export const delete_objects_handlers: ReadonlyMap<S3Operation, S3Handler> = new Map<S3Operation, S3Handler>([
  ["DeleteObjects", s3Handler(deleteObjects)],
]);
