/**
 * The chained signatures of an aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]):
 * the request's own signature is the seed, each chunk's signature covers the previous signature
 * and the chunk's SHA-256, and the trailer's covers the last chunk's signature and the trailer
 * lines. The chain means chunks cannot be dropped, reordered or spliced from another upload.
 */
import type { ChunkSignatureCheck } from "./auth_result.ts";
import { empty_sha256_hex, hmac, sha256Hex, signatureMatches } from "./sigv4_canonical.ts";

export class ChunkSignatureChain implements ChunkSignatureCheck {
  #previous: string;
  /** Once a signature fails the chain is broken for good: nothing after a bad chunk can be right. */
  #broken = false;

  constructor(
    private readonly signing_key: Uint8Array,
    /** x-amz-date of the request, "YYYYMMDDTHHMMSSZ". */
    private readonly amz_date: string,
    /** "DATE/REGION/s3/aws4_request". */
    private readonly scope: string,
    /** The request's signature (lowercase hex): the first chunk's "previous signature". */
    seed_signature: string,
  ) {
    this.#previous = seed_signature;
  }

  chunk(signature_hex: string, chunk_sha256_hex: string): boolean {
    const string_to_sign = `AWS4-HMAC-SHA256-PAYLOAD\n${this.amz_date}\n${this.scope}\n${this.#previous}\n${empty_sha256_hex}\n${chunk_sha256_hex}`;
    return this.#advance(signature_hex, string_to_sign);
  }

  trailer(signature_hex: string, trailer_lines: string): boolean {
    const string_to_sign = `AWS4-HMAC-SHA256-TRAILER\n${this.amz_date}\n${this.scope}\n${this.#previous}\n${sha256Hex(trailer_lines)}`;
    return this.#advance(signature_hex, string_to_sign);
  }

  #advance(signature_hex: string, string_to_sign: string): boolean {
    if (this.#broken) return false;
    if (!signatureMatches(signature_hex, hmac(this.signing_key, string_to_sign))) {
      this.#broken = true;
      return false;
    }
    this.#previous = signature_hex;
    return true;
  }
}
