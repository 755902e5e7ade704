/**
 * The S3 error for a failed client call (docs/S3.md §7): every ClientError code maps to the S3 code
 * a client's SDK handles the same way (retry, give up, report), with the cluster's message kept.
 */
import { ClientError, type ClientErrorCode } from "../client/errors.ts";
import { S3Error, type S3ErrorCode } from "./s3_error.ts";

const by_code = new Map<ClientErrorCode, S3ErrorCode>([
  ["not_found", "NoSuchKey"],
  ["condition_failed", "PreconditionFailed"],
  ["key_invalid", "KeyTooLongError"],
  ["value_too_large", "EntityTooLarge"],
  ["bad_request", "InvalidRequest"],
  // The write may or may not have happened: 503 makes SDKs retry, and every gateway write is a
  // whole-object replace or a compare-and-set, so a retry is safe.
  ["evicted", "ServiceUnavailable"],
  ["no_quorum", "ServiceUnavailable"],
  ["closed", "ServiceUnavailable"],
  ["wrong_cluster", "InternalError"],
  ["protocol", "InternalError"],
  ["object_changed", "ConditionalRequestConflict"],
  ["upload_not_found", "NoSuchUpload"],
  ["range_invalid", "InvalidRange"],
  ["upload_incomplete", "InvalidPart"],
  ["size_mismatch", "IncompleteBody"],
  ["too_many_uploads", "SlowDown"],
  ["source_changed", "IncompleteBody"],
  ["aborted", "RequestTimeout"],
  ["checksum_mismatch", "InternalError"],
]);

/** An S3Error stays as it is; a ClientError becomes its S3 equivalent; anything else is a bug,
 * reported as InternalError with its message (the gateway logs it at error level). */
export function s3ErrorOf(error: unknown): S3Error {
  if (error instanceof S3Error) return error;
  if (error instanceof ClientError) return new S3Error(by_code.get(error.code) ?? "InternalError", error.message);
  return new S3Error("InternalError", error instanceof Error ? error.message : String(error));
}
