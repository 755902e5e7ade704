/**
 * The chunk-signature chain against AWS's published example ("Signature Calculations for the
 * Authorization Header: Transferring Payload in Multiple Chunks", S3 API reference) and against an
 * aws-chunked body built here from the spec with node:crypto, independently of sigv4_canonical.ts.
 */
import { describe, expect, test } from "bun:test";
import { createHash, createHmac } from "node:crypto";
import type { ChunkSignatureCheck } from "./auth_result.ts";
import { Credentials } from "./credentials.ts";
import { authenticate } from "./sigv4.ts";
import { signingKey } from "./sigv4_canonical.ts";
import { ChunkSignatureChain } from "./sigv4_chunks.ts";

const aws_key = "AKIAIOSFODNN7EXAMPLE";
const aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const aws_now = Date.UTC(2013, 4, 24);
const aws_credentials = new Credentials(new Map([[aws_key, aws_secret]]));
const aws_scope = "20130524/us-east-1/s3/aws4_request";

const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");

/** The seed request of AWS's example: PUT /examplebucket/chunkObject.txt, 66,560 bytes in chunks of 64 KiB. */
function awsSeedRequest(signature: string) {
  return {
    method: "PUT",
    raw_path: "/examplebucket/chunkObject.txt",
    raw_query: "",
    headers: new Headers({
      host: "s3.amazonaws.com",
      "x-amz-date": "20130524T000000Z",
      "x-amz-storage-class": "REDUCED_REDUNDANCY",
      authorization: `AWS4-HMAC-SHA256 Credential=${aws_key}/${aws_scope},SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=${signature}`,
      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
      "content-encoding": "aws-chunked",
      "x-amz-decoded-content-length": "66560",
      "content-length": "66824",
    }),
  };
}

const aws_seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
const aws_chunk_signatures = [
  "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
  "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
  "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
];
const aws_chunks = [new Uint8Array(65536).fill(0x61), new Uint8Array(1024).fill(0x61), new Uint8Array(0)];

/** An aws-chunked body: "HEXSIZE;chunk-signature=SIG\r\n" DATA "\r\n" per chunk, the last one empty. */
function chunkedBody(chunks: Uint8Array[], signatures: string[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const encoder = new TextEncoder();
  chunks.forEach((chunk, i) => {
    parts.push(encoder.encode(`${chunk.length.toString(16)};chunk-signature=${signatures[i]}\r\n`), chunk, encoder.encode("\r\n"));
  });
  return Buffer.concat(parts);
}

/** Reads an aws-chunked body and asks the check about each chunk; the index of the first refused chunk, or -1. */
function firstRefusedChunk(body: Uint8Array, check: ChunkSignatureCheck): number {
  const text = Buffer.from(body).toString("latin1");
  let at = 0;
  for (let index = 0; ; index++) {
    const line_end = text.indexOf("\r\n", at);
    const m = /^([0-9a-f]+);chunk-signature=([0-9a-f]{64})$/.exec(text.slice(at, line_end));
    if (m === null) throw new Error(`bad chunk header at ${at}`);
    const size = parseInt(m[1], 16);
    const data = body.subarray(line_end + 2, line_end + 2 + size);
    if (!check.chunk(m[2], sha256(data))) return index;
    at = line_end + 2 + size + 2;
    if (size === 0) return -1;
  }
}

function streamingChecks(signature: string): ChunkSignatureCheck {
  const result = authenticate(awsSeedRequest(signature), aws_credentials, aws_now);
  expect(result.access_key).toBe(aws_key);
  if (result.payload.kind !== "streaming_signed") throw new Error(`payload ${result.payload.kind}`);
  expect(result.payload.trailer).toBe(false);
  return result.payload.chunks;
}

describe("AWS's chunked upload example", () => {
  test("the seed request authenticates and every published chunk signature is accepted in order", () => {
    expect(firstRefusedChunk(chunkedBody(aws_chunks, aws_chunk_signatures), streamingChecks(aws_seed))).toBe(-1);
  });

  test("a changed byte in a chunk is refused at that chunk, and nothing after it is accepted", () => {
    const changed = aws_chunks.map((c) => c.slice());
    changed[1][100] = 0x62;
    const checks = streamingChecks(aws_seed);
    expect(firstRefusedChunk(chunkedBody(changed, aws_chunk_signatures), checks)).toBe(1);
    // The chain is broken for good: even the right final signature no longer passes.
    expect(checks.chunk(aws_chunk_signatures[2], sha256(""))).toBe(false);
  });

  test("signatures in the wrong order, a dropped chunk or a chunk from elsewhere are refused", () => {
    const swapped = [aws_chunk_signatures[1], aws_chunk_signatures[0], aws_chunk_signatures[2]];
    expect(firstRefusedChunk(chunkedBody(aws_chunks, swapped), streamingChecks(aws_seed))).toBe(0);
    // Dropping the second chunk: the final chunk's signature chains from the second, not the first.
    const dropped = streamingChecks(aws_seed);
    expect(dropped.chunk(aws_chunk_signatures[0], sha256(aws_chunks[0]))).toBe(true);
    expect(dropped.chunk(aws_chunk_signatures[2], sha256(""))).toBe(false);
    // The same chunks under another seed (another request) do not verify.
    const other_seed = "0".repeat(64);
    const chain = new ChunkSignatureChain(signingKey(aws_secret, "20130524", "us-east-1"), "20130524T000000Z", aws_scope, other_seed);
    expect(chain.chunk(aws_chunk_signatures[0], sha256(aws_chunks[0]))).toBe(false);
  });

  test("a chunk signature in uppercase hex or of the wrong length is refused", () => {
    expect(streamingChecks(aws_seed).chunk(aws_chunk_signatures[0].toUpperCase(), sha256(aws_chunks[0]))).toBe(false);
    expect(streamingChecks(aws_seed).chunk(aws_chunk_signatures[0].slice(2), sha256(aws_chunks[0]))).toBe(false);
  });
});

test("AWS's trailer example: the trailer signature over 'x-amz-checksum-crc32c:wdBDMA==\\n' chains from the last chunk", () => {
  // From "Signature calculations for trailing headers (chunked uploads)": the final chunk's signature
  // and the trailer's.
  const last_chunk_signature = "e05ab64fe1dfdbf0b5870abbaabdb063c371d4e96f2767e6934d90529c5ae850";
  const key = signingKey(aws_secret, "20130524", "us-east-1");
  const chain = () => new ChunkSignatureChain(key, "20130524T000000Z", aws_scope, last_chunk_signature);
  const trailer_signature = "41e14ac611e27a8bb3d66c3bad6856f209297767d5dd4fc87d8fa9e422e03faf";
  expect(chain().trailer(trailer_signature, "x-amz-checksum-crc32c:wdBDMA==\n")).toBe(true);
  expect(chain().trailer(trailer_signature, "x-amz-checksum-crc32c:wdBDMB==\n")).toBe(false);
  expect(chain().trailer(last_chunk_signature, "x-amz-checksum-crc32c:wdBDMA==\n")).toBe(false);
});

describe("a body signed here from the spec", () => {
  const access_key = "chunk-key";
  const secret = "chunk-secret/+=";
  const credentials = new Credentials(new Map([[access_key, secret]]));
  const now = Date.UTC(2026, 11, 5, 12, 0, 0);
  const amz_date = "20261205T120000Z";
  const scope = "20261205/eu-central-7/s3/aws4_request";

  const hmac = (key: Uint8Array | string, data: string) => createHmac("sha256", key).update(data).digest();
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, "20261205"), "eu-central-7"), "s3"), "aws4_request");

  /** A signed STREAMING-...-TRAILER request with its body, every signature computed here from the spec. */
  function signedUpload(chunks: Uint8Array[], trailer_lines: string) {
    const headers = new Headers({
      host: "127.0.0.1:9000",
      "x-amz-date": amz_date,
      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
      "x-amz-trailer": "x-amz-checksum-sha256",
      "x-amz-decoded-content-length": String(chunks.reduce((n, c) => n + c.length, 0)),
      "content-encoding": "aws-chunked",
    });
    const signed = [...headers.keys()].sort();
    const canonical = [
      "PUT",
      "/bucket/some%20key",
      "",
      signed.map((name) => `${name}:${headers.get(name)}\n`).join(""),
      signed.join(";"),
      "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    ].join("\n");
    const seed = hmac(key, `AWS4-HMAC-SHA256\n${amz_date}\n${scope}\n${sha256(canonical)}`).toString("hex");
    headers.set(
      "authorization",
      `AWS4-HMAC-SHA256 Credential=${access_key}/${scope}, SignedHeaders=${signed.join(";")}, Signature=${seed}`,
    );
    const signatures: string[] = [];
    let previous = seed;
    for (const chunk of chunks) {
      previous = hmac(key, `AWS4-HMAC-SHA256-PAYLOAD\n${amz_date}\n${scope}\n${previous}\n${sha256("")}\n${sha256(chunk)}`).toString("hex");
      signatures.push(previous);
    }
    const trailer_signature = hmac(key, `AWS4-HMAC-SHA256-TRAILER\n${amz_date}\n${scope}\n${previous}\n${sha256(trailer_lines)}`).toString(
      "hex",
    );
    const request = { method: "PUT", raw_path: "/bucket/some%20key", raw_query: "", headers };
    return { request, body: chunkedBody(chunks, signatures), trailer_signature };
  }

  const chunks = [new Uint8Array(8192).map((_, i) => i * 7), new Uint8Array(3000).fill(9), new Uint8Array(0)];
  const trailer_lines = `x-amz-checksum-sha256:${createHash("sha256").update(Buffer.concat(chunks)).digest("base64")}\n`;

  function checks(request: ReturnType<typeof signedUpload>["request"]): ChunkSignatureCheck {
    const result = authenticate(request, credentials, now);
    if (result.payload.kind !== "streaming_signed") throw new Error(`payload ${result.payload.kind}`);
    expect(result.payload.trailer).toBe(true);
    return result.payload.chunks;
  }

  test("every chunk and the trailer are accepted", () => {
    const { request, body, trailer_signature } = signedUpload(chunks, trailer_lines);
    const check = checks(request);
    expect(firstRefusedChunk(body, check)).toBe(-1);
    expect(check.trailer(trailer_signature, trailer_lines)).toBe(true);
  });

  test("a changed trailer value, or a trailer checked before the last chunk, is refused", () => {
    const { request, body, trailer_signature } = signedUpload(chunks, trailer_lines);
    const check = checks(request);
    expect(firstRefusedChunk(body, check)).toBe(-1);
    expect(check.trailer(trailer_signature, trailer_lines.replace(":", ":A"))).toBe(false);
    const early = checks(request);
    expect(early.chunk(...firstChunk(body))).toBe(true);
    expect(early.trailer(trailer_signature, trailer_lines)).toBe(false);
  });

  test("a changed chunk is refused at that chunk", () => {
    const { request, body } = signedUpload(chunks, trailer_lines);
    const tampered = body.slice();
    // The body ends with the 3000-byte chunk's data, "\r\n", then "0;chunk-signature=<64 hex>\r\n\r\n" (86 bytes).
    tampered[tampered.length - 88 - 100] ^= 1;
    expect(firstRefusedChunk(tampered, checks(request))).toBe(1);
  });
});

/** The signature and data hash of the first chunk of a body. */
function firstChunk(body: Uint8Array): [string, string] {
  const text = Buffer.from(body).toString("latin1");
  const line_end = text.indexOf("\r\n");
  const [size, signature] = text.slice(0, line_end).split(";chunk-signature=");
  return [signature, sha256(body.subarray(line_end + 2, line_end + 2 + parseInt(size, 16)))];
}
