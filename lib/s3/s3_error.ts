/**
 * The S3 errors the gateway answers with (docs/S3.md): each code with its HTTP status, raised as an
 * S3Error anywhere in lib/s3 and rendered once, as S3's XML error document, by the gateway. A code
 * not in this table cannot be raised, so every error a client sees is one its SDK knows.
 */

export type S3ErrorCode =
  | "AccessDenied"
  | "AuthorizationHeaderMalformed"
  | "AuthorizationQueryParametersError"
  | "BadDigest"
  | "BucketAlreadyOwnedByYou"
  | "BucketNotEmpty"
  | "ConditionalRequestConflict"
  | "EntityTooLarge"
  | "EntityTooSmall"
  | "ExpiredToken"
  | "IncompleteBody"
  | "InternalError"
  | "InvalidAccessKeyId"
  | "InvalidArgument"
  | "InvalidBucketName"
  | "InvalidDigest"
  | "InvalidPart"
  | "InvalidPartOrder"
  | "InvalidRange"
  | "InvalidRequest"
  | "KeyTooLongError"
  | "MalformedXML"
  | "MetadataTooLarge"
  | "MethodNotAllowed"
  | "MissingContentLength"
  | "NoSuchBucket"
  | "NoSuchKey"
  | "NoSuchUpload"
  | "NotImplemented"
  | "PreconditionFailed"
  | "RequestTimeTooSkewed"
  | "RequestTimeout"
  | "ServiceUnavailable"
  | "SignatureDoesNotMatch"
  | "SlowDown"
  | "XAmzContentSHA256Mismatch";

/** HTTP status per code, as S3 answers them. */
export const s3_error_status: ReadonlyMap<S3ErrorCode, number> = new Map<S3ErrorCode, number>([
  ["AccessDenied", 403],
  ["AuthorizationHeaderMalformed", 400],
  ["AuthorizationQueryParametersError", 400],
  ["BadDigest", 400],
  ["BucketAlreadyOwnedByYou", 409],
  ["BucketNotEmpty", 409],
  ["ConditionalRequestConflict", 409],
  ["EntityTooLarge", 400],
  ["EntityTooSmall", 400],
  ["ExpiredToken", 400],
  ["IncompleteBody", 400],
  ["InternalError", 500],
  ["InvalidAccessKeyId", 403],
  ["InvalidArgument", 400],
  ["InvalidBucketName", 400],
  ["InvalidDigest", 400],
  ["InvalidPart", 400],
  ["InvalidPartOrder", 400],
  ["InvalidRange", 416],
  ["InvalidRequest", 400],
  ["KeyTooLongError", 400],
  ["MalformedXML", 400],
  ["MetadataTooLarge", 400],
  ["MethodNotAllowed", 405],
  ["MissingContentLength", 411],
  ["NoSuchBucket", 404],
  ["NoSuchKey", 404],
  ["NoSuchUpload", 404],
  ["NotImplemented", 501],
  ["PreconditionFailed", 412],
  ["RequestTimeTooSkewed", 403],
  ["RequestTimeout", 400],
  ["ServiceUnavailable", 503],
  ["SignatureDoesNotMatch", 403],
  ["SlowDown", 503],
  ["XAmzContentSHA256Mismatch", 400],
]);

export class S3Error extends Error {
  override name = "S3Error";
  constructor(
    readonly code: S3ErrorCode,
    /** For a person: what was wrong and, where there is one, the limit. */
    message: string,
    /** Extra elements of the error document (for example BucketName, Key, ArgumentName). */
    readonly fields: ReadonlyMap<string, string> = new Map(),
  ) {
    super(message);
  }

  get status(): number {
    return s3_error_status.get(this.code)!;
  }
}
