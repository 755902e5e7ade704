/**
 * What a gateway handler gets (docs/S3.md): a request already routed, authenticated and with its
 * body decoded and verified, and the gateway's shared state. Handlers return a Response or throw
 * an S3Error; the gateway renders errors, logs and counts.
 */
import type { Client } from "../client/client.ts";

export interface S3Request {
  /** Unique per request: x-amz-request-id and the RequestId of an error document. */
  id: string;
  method: string;
  /** null for the service (ListBuckets). */
  bucket: string | null;
  /** The object key, percent-decoded UTF-8; null for bucket and service requests. */
  key: string | null;
  query: URLSearchParams;
  headers: Headers;
  /** The access key that signed the request. */
  access_key: string;
  /**
   * The payload's bytes as the client meant them: aws-chunked framing removed, every chunk
   * signature, the payload hash and any x-amz-checksum-* header or trailer verified. The iterator
   * throws an S3Error (BadDigest, XAmzContentSHA256Mismatch, SignatureDoesNotMatch, IncompleteBody)
   * before it reports its end if a check fails, so a put that reads it to its end never completes
   * on bytes that were not verified.
   */
  body: AsyncIterable<Uint8Array>;
  /** The payload's size in bytes when the request says it (x-amz-decoded-content-length, else
   * Content-Length), null otherwise. */
  size: number | null;
}

export interface S3Context {
  client: Client;
  region: string;
  /** Wall-clock milliseconds (Date.now in the gateway; fixed in tests). */
  now(): number;
  log(level: "debug" | "info" | "warn" | "error", text: string): void;
}

export type S3Handler = (request: S3Request, context: S3Context) => Promise<Response>;
