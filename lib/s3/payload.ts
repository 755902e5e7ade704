/**
 * Turns a request's raw body and its authentication result into the verified S3Request.body
 * (docs/S3.md §1): aws-chunked framing removed, and the payload hash, Content-MD5 and any
 * x-amz-checksum-* header or trailer checked while the bytes stream through.
 *
 * Headers that are malformed fail at once (verifiedBody throws). Everything about the bytes fails
 * from the iterator, before it reports its end, so a put that reads the body to its end never
 * completes on bytes that were not verified. A body that ends early (the client disconnected) is
 * IncompleteBody naming the bytes received and expected; one longer than announced is
 * InvalidRequest (it is not incomplete, it contradicts its own length).
 */
import type { PayloadMode } from "./auth_result.ts";
import { decodeAwsChunked } from "./aws_chunked.ts";
import {
  type BodyChecksum,
  type ChecksumAlgorithm,
  checksum_size_bytes,
  checksumAlgorithmOfHeader,
  checksumHeaderName,
  newChecksum,
} from "./checksums.ts";
import { S3Error } from "./s3_error.ts";

const md5_size_bytes = 16;
const aws_chunked_encoding = "aws-chunked";

export interface VerifyOptions {
  /** Hash the body to check Content-MD5 (default true). False for a handler that hashes the body
   * with MD5 anyway and checks Content-MD5 itself before anything it wrote becomes visible
   * (UploadPart: the part's ETag), so the same bytes are not hashed twice. The header's form is
   * checked either way. */
  content_md5?: boolean;
}

/** The verified body of a request (lib/s3/request.ts S3Request.body) and its size if known. */
export function verifiedBody(
  raw: ReadableStream<Uint8Array> | null,
  headers: Headers,
  payload: PayloadMode,
  o: VerifyOptions = {},
): { body: AsyncIterable<Uint8Array>; size: number | null } {
  const chunked = payload.kind === "streaming_signed" || payload.kind === "streaming_unsigned_trailer";
  const trailer_mode = payload.kind === "streaming_unsigned_trailer" || (payload.kind === "streaming_signed" && payload.trailer);
  if (!chunked) {
    // A framed body read as plain bytes would be stored framing and all.
    if (contentEncodings(headers.get("content-encoding")).includes(aws_chunked_encoding))
      throw new S3Error("InvalidRequest", "Content-Encoding aws-chunked needs a STREAMING-* x-amz-content-sha256");
    if (headers.get("x-amz-content-sha256")?.startsWith("STREAMING-"))
      throw new S3Error(
        "InvalidRequest",
        "x-amz-content-sha256 announces a STREAMING-* body that the request's authentication does not allow",
      );
  }
  const decoded_length = chunked ? decodedContentLength(headers) : null;
  const size = decoded_length ?? contentLength(headers);
  const content_md5 = contentMd5(headers);
  const expected = expectedChecksum(headers, trailer_mode);
  const source = new RawBody(raw);
  const framed =
    decoded_length !== null
      ? decodeAwsChunked(source.pieces(), {
          decoded_length,
          signatures: payload.kind === "streaming_signed" ? payload.chunks : null,
          trailer: trailer_mode,
        })
      : null;

  async function* body(): AsyncGenerator<Uint8Array, void, undefined> {
    const sha256 = payload.kind === "sha256" ? new Bun.CryptoHasher("sha256") : null;
    const md5 = content_md5 !== null && o.content_md5 !== false ? new Bun.CryptoHasher("md5") : null;
    const checksum: BodyChecksum | null = expected !== null ? newChecksum(expected.algorithm) : null;
    let received = 0;
    try {
      for await (const piece of framed !== null ? framed.data : source.pieces()) {
        if (framed === null && size !== null && received + piece.length > size)
          throw new S3Error("InvalidRequest", `the body is longer than its Content-Length of ${size} bytes`);
        received += piece.length;
        sha256?.update(piece);
        md5?.update(piece);
        checksum?.update(piece);
        yield piece;
      }
    } catch (e) {
      // The decoder sees a failed connection as an early end; say why it ended.
      if (e instanceof S3Error && e.code === "IncompleteBody" && source.failure !== null)
        throw new S3Error("IncompleteBody", `${e.message} (${source.failure})`);
      throw e;
    }
    if (framed === null) {
      const why = source.failure !== null ? ` (${source.failure})` : "";
      if (size !== null && received < size)
        throw new S3Error("IncompleteBody", `the body ended after ${received} of its Content-Length of ${size} bytes${why}`);
      if (size === null && source.failure !== null) throw new S3Error("IncompleteBody", `the body ended after ${received} bytes${why}`);
    }
    if (sha256 !== null && payload.kind === "sha256") {
      const computed = sha256.digest("hex");
      if (computed !== payload.hex.toLowerCase())
        throw new S3Error(
          "XAmzContentSHA256Mismatch",
          `x-amz-content-sha256 is ${payload.hex} but the SHA-256 of the ${received} bytes received is ${computed}`,
        );
    }
    if (md5 !== null && content_md5 !== null) {
      const computed = md5.digest("base64");
      if (!sameBase64(computed, content_md5))
        throw new S3Error("BadDigest", `Content-MD5 is ${content_md5} but the MD5 of the body is ${computed}`);
    }
    if (checksum !== null && expected !== null) verifyChecksum(expected, checksum.digestBase64(), framed?.trailers ?? new Map());
    else if (framed !== null) undeclaredTrailers(framed.trailers, null);
  }

  return { body: body(), size };
}

/** The body's checksum against the header, or against the trailer x-amz-trailer announced. */
function verifyChecksum(expected: ExpectedChecksum, computed: string, trailers: ReadonlyMap<string, string>): void {
  const name = checksumHeaderName(expected.algorithm);
  let value = expected.value;
  const where = value === null ? "trailer" : "header";
  undeclaredTrailers(trailers, value === null ? name : null);
  if (value === null) {
    value = trailers.get(name) ?? null;
    if (value === null) throw new S3Error("InvalidRequest", `x-amz-trailer announces ${name} but the body's trailers do not carry it`);
    checkChecksumValue(expected.algorithm, value, "trailer");
  }
  if (!sameBase64(computed, value))
    throw new S3Error(
      "BadDigest",
      `the ${expected.algorithm.toUpperCase()} checksum of the body is ${computed} but ${name} (${where}) is ${value}`,
    );
}

function undeclaredTrailers(trailers: ReadonlyMap<string, string>, declared: string | null): void {
  for (const name of trailers.keys())
    if (name !== declared)
      throw new S3Error("InvalidRequest", `the body carries the trailer ${name}, which x-amz-trailer does not announce`);
}

/** The body as the connection delivers it. A stream error (the client went away) ends it and is
 * remembered: the size checks then report how much arrived. */
class RawBody {
  failure: string | null = null;
  constructor(private readonly raw: ReadableStream<Uint8Array> | null) {}

  async *pieces(): AsyncGenerator<Uint8Array, void, undefined> {
    if (this.raw === null) return;
    const reader = this.raw.getReader();
    try {
      for (;;) {
        let next: Awaited<ReturnType<typeof reader.read>>;
        try {
          next = await reader.read();
        } catch (e) {
          this.failure = `the connection failed: ${e instanceof Error ? e.message : String(e)}`;
          return;
        }
        if (next.done) return;
        yield next.value;
      }
    } finally {
      reader.releaseLock();
    }
  }
}

/** The Content-Encoding values in order, lowercase (a list like "aws-chunked, gzip" is allowed). */
export function contentEncodings(value: string | null): string[] {
  if (value === null) return [];
  return value
    .split(",")
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v !== "");
}

/** Content-Encoding as an object should store it: without the aws-chunked transfer framing (null
 * when nothing else remains). */
export function storedContentEncoding(value: string | null): string | null {
  const rest = contentEncodings(value).filter((v) => v !== aws_chunked_encoding);
  return rest.length === 0 ? null : rest.join(", ");
}

function decodedContentLength(headers: Headers): number {
  const value = headers.get("x-amz-decoded-content-length");
  if (value === null)
    throw new S3Error("MissingContentLength", "an aws-chunked body (x-amz-content-sha256 STREAMING-*) needs x-amz-decoded-content-length");
  return parseLength(value, "x-amz-decoded-content-length");
}

function contentLength(headers: Headers): number | null {
  const value = headers.get("content-length");
  return value === null ? null : parseLength(value, "Content-Length");
}

function parseLength(value: string, name: string): number {
  const n = /^\d{1,16}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n))
    throw new S3Error("InvalidArgument", `${name} ${JSON.stringify(value)} is not a byte count`, new Map([["ArgumentName", name]]));
  return n;
}

function contentMd5(headers: Headers): string | null {
  const value = headers.get("content-md5");
  if (value === null) return null;
  if (decodedBase64Size(value) !== md5_size_bytes)
    throw new S3Error("InvalidDigest", `Content-MD5 ${JSON.stringify(value)} is not the base64 of ${md5_size_bytes} bytes`);
  return value;
}

interface ExpectedChecksum {
  algorithm: ChecksumAlgorithm;
  /** The header's value; null when x-amz-trailer announces it in the body's trailer. */
  value: string | null;
}

/** The one checksum the request carries: its algorithm and the header's value, or null as the value
 * when x-amz-trailer says the body's trailer carries it. */
function expectedChecksum(headers: Headers, trailer_mode: boolean): ExpectedChecksum | null {
  const found = new Map<ChecksumAlgorithm, string | null>();
  for (const [name, value] of headers) {
    const algorithm = checksumAlgorithmOfHeader(name);
    if (algorithm === null) continue;
    checkChecksumValue(algorithm, value, "header");
    found.set(algorithm, value);
  }
  const trailer = headers.get("x-amz-trailer");
  if (trailer !== null) {
    if (!trailer_mode)
      throw new S3Error("InvalidRequest", "x-amz-trailer needs a -TRAILER x-amz-content-sha256 (a body that can carry trailers)");
    for (const name of trailer.split(",").map((n) => n.trim().toLowerCase())) {
      if (name === "") continue;
      const algorithm = checksumAlgorithmOfHeader(name);
      if (algorithm === null)
        throw new S3Error("InvalidRequest", `x-amz-trailer names ${JSON.stringify(name)}: only x-amz-checksum-* trailers are supported`);
      if (found.has(algorithm)) throw new S3Error("InvalidRequest", `${name} is given both as a header and as a trailer`);
      found.set(algorithm, null);
    }
  }
  if (found.size > 1)
    throw new S3Error(
      "InvalidRequest",
      `the request carries more than one checksum (${[...found.keys()].join(", ")}): at most one is allowed`,
    );
  for (const [algorithm, value] of found) return { algorithm, value };
  return null;
}

function checkChecksumValue(algorithm: ChecksumAlgorithm, value: string, where: "header" | "trailer"): void {
  const size = checksum_size_bytes.get(algorithm)!;
  if (decodedBase64Size(value) !== size)
    throw new S3Error(
      "InvalidRequest",
      `the value of the ${checksumHeaderName(algorithm)} ${where}, ${JSON.stringify(value)}, is not the base64 of ${size} bytes`,
    );
}

/** Size of strict, padded base64 once decoded; -1 if value is not such base64. */
function decodedBase64Size(value: string): number {
  if (value.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) return -1;
  const padding = value.endsWith("==") ? 2 : value.endsWith("=") ? 1 : 0;
  return (value.length / 4) * 3 - padding;
}

/** Two base64 texts of the same digest compare equal even if one has non-zero unused bits. */
function sameBase64(a: string, b: string): boolean {
  return Buffer.from(a, "base64").equals(Buffer.from(b, "base64"));
}
