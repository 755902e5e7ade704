/**
 * What authentication hands to the payload decoder (docs/S3.md §5): who signed the request and how
 * its payload is protected. sigv4.ts produces it; payload.ts consumes it.
 */

/** Verifies the chained signatures of an aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD):
 * each chunk's signature covers the previous signature and the chunk's SHA-256. */
export interface ChunkSignatureCheck {
  /** The next chunk (the final one is empty): true if signature_hex, as sent, is right. */
  chunk(signature_hex: string, chunk_sha256_hex: string): boolean;
  /** The trailer of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER body: its signature over the
   * trailer lines ("name:value\n" each, as sent). */
  trailer(signature_hex: string, trailer_lines: string): boolean;
}

export type PayloadMode =
  /** x-amz-content-sha256 is the body's hex SHA-256. */
  | { kind: "sha256"; hex: string }
  /** UNSIGNED-PAYLOAD (and presigned URLs without a payload hash). */
  | { kind: "unsigned" }
  /** STREAMING-AWS4-HMAC-SHA256-PAYLOAD, with -TRAILER when trailer is true. */
  | { kind: "streaming_signed"; chunks: ChunkSignatureCheck; trailer: boolean }
  /** STREAMING-UNSIGNED-PAYLOAD-TRAILER. */
  | { kind: "streaming_unsigned_trailer" };

export interface Authenticated {
  access_key: string;
  payload: PayloadMode;
}
