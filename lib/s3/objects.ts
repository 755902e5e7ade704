/**
 * The object operations (docs/S3.md §3), one file each: object_get.ts (GetObject, HeadObject),
 * object_put.ts (PutObject, DeleteObject), object_copy.ts (CopyObject); what they share with HTTP
 * headers is object_headers.ts.
 */
import { copyObject } from "./object_copy.ts";
import { getObject, headObject } from "./object_get.ts";
import { deleteObject, putObject } from "./object_put.ts";
import type { S3Handler } from "./request.ts";
import type { S3Operation } from "./router.ts";

export const object_handlers: ReadonlyMap<S3Operation, S3Handler> = new Map<S3Operation, S3Handler>([
  ["PutObject", putObject],
  ["CopyObject", copyObject],
  ["GetObject", getObject],
  ["HeadObject", headObject],
  ["DeleteObject", deleteObject],
]);
