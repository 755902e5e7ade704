/**
 * The client side of aws-chunked bodies, for tests: an encoder that frames bytes the way S3 clients
 * do, and chunk signatures computed with node:crypto from the SigV4 definitions (signing key =
 * HMAC chain "AWS4"+secret, date, region, "s3", "aws4_request"; chunk string to sign
 * AWS4-HMAC-SHA256-PAYLOAD, trailer string to sign AWS4-HMAC-SHA256-TRAILER). A ChunkSignatureCheck
 * built the same way stands in for what sigv4.ts hands the decoder.
 */
import { createHash, createHmac } from "node:crypto";
import type { ChunkSignatureCheck } from "../../lib/s3/auth_result.ts";
import { S3Error } from "../../lib/s3/s3_error.ts";

/** The credentials and time of AWS's published SigV4 streaming examples. */
export const aws_example = {
  secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  amz_date: "20130524T000000Z",
  date: "20130524",
  region: "us-east-1",
};

const sha256_empty = createHash("sha256").update("").digest("hex");

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function signingKey(secret: string, date: string, region: string): Buffer {
  const step = (key: Buffer | string, data: string): Buffer => createHmac("sha256", key).update(data).digest();
  return step(step(step(step(`AWS4${secret}`, date), region), "s3"), "aws4_request");
}

/** The chain of signatures of one body, from its seed (the request's own signature). */
export class ChunkSigner {
  private previous: string;
  private readonly scope: string;
  constructor(
    private readonly key: Buffer,
    private readonly amz_date: string,
    date: string,
    region: string,
    seed: string,
  ) {
    this.previous = seed;
    this.scope = `${date}/${region}/s3/aws4_request`;
  }

  static example(seed: string): ChunkSigner {
    const e = aws_example;
    return new ChunkSigner(signingKey(e.secret, e.date, e.region), e.amz_date, e.date, e.region, seed);
  }

  /** The signature of the next chunk, given its SHA-256; advances the chain. */
  chunk(chunk_sha256_hex: string): string {
    const to_sign = ["AWS4-HMAC-SHA256-PAYLOAD", this.amz_date, this.scope, this.previous, sha256_empty, chunk_sha256_hex].join("\n");
    this.previous = createHmac("sha256", this.key).update(to_sign).digest("hex");
    return this.previous;
  }

  /** The signature of the trailer lines ("name:value\n" each). */
  trailer(trailer_lines: string): string {
    const to_sign = ["AWS4-HMAC-SHA256-TRAILER", this.amz_date, this.scope, this.previous, sha256Hex(trailer_lines)].join("\n");
    this.previous = createHmac("sha256", this.key).update(to_sign).digest("hex");
    return this.previous;
  }
}

/** A real ChunkSignatureCheck: recomputes each signature in the chain and compares. */
export function realChunkCheck(signer: ChunkSigner): ChunkSignatureCheck & { chunks: number; trailers: number } {
  const check = {
    chunks: 0,
    trailers: 0,
    chunk(signature_hex: string, chunk_sha256_hex: string): boolean {
      check.chunks++;
      return signer.chunk(chunk_sha256_hex) === signature_hex;
    },
    trailer(signature_hex: string, trailer_lines: string): boolean {
      check.trailers++;
      return signer.trailer(trailer_lines) === signature_hex;
    },
  };
  return check;
}

export interface EncodeOptions {
  /** Sizes of the data chunks, used in turn (the last one repeats). */
  chunk_sizes: number[];
  /** Sign every chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]). */
  signer?: ChunkSigner;
  /** Trailer lines after the final chunk (the -TRAILER modes): signed when signer is set. */
  trailers?: [string, string][];
  /** The closing empty line; some clients leave it out. Default true. */
  final_crlf?: boolean;
}

const encoder = new TextEncoder();

export function encodeAwsChunked(data: Uint8Array, o: EncodeOptions): Uint8Array {
  const parts: Uint8Array[] = [];
  const header = (size: number, chunk: Uint8Array): string => {
    const signature = o.signer ? `;chunk-signature=${o.signer.chunk(sha256Hex(chunk))}` : "";
    return `${size.toString(16)}${signature}\r\n`;
  };
  for (let at = 0, i = 0; at < data.length; i++) {
    const size = Math.min(o.chunk_sizes[Math.min(i, o.chunk_sizes.length - 1)], data.length - at);
    const chunk = data.subarray(at, at + size);
    parts.push(encoder.encode(header(size, chunk)), chunk, encoder.encode("\r\n"));
    at += size;
  }
  parts.push(encoder.encode(header(0, new Uint8Array(0))));
  if (o.trailers) {
    const lines = o.trailers.map(([name, value]) => `${name}:${value}\n`).join("");
    for (const [name, value] of o.trailers) parts.push(encoder.encode(`${name}:${value}\r\n`));
    if (o.signer) parts.push(encoder.encode(`x-amz-trailer-signature:${o.signer.trailer(lines)}\r\n`));
  }
  if (o.final_crlf ?? true) parts.push(encoder.encode("\r\n"));
  return Buffer.concat(parts);
}

/** bytes in pieces of the given sizes, used in turn (the last one repeats). */
export function splitBytes(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.min(sizes[Math.min(i, sizes.length - 1)], bytes.length - at);
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

export async function* piecesOf(pieces: Uint8Array[]): AsyncGenerator<Uint8Array, void, undefined> {
  for (const p of pieces) yield p;
}

export function streamOf(pieces: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < pieces.length) controller.enqueue(pieces[i++]);
      else controller.close();
    },
  });
}

/** A stream that delivers pieces and then fails, as a request body does when the client goes away. */
export function failingStreamOf(pieces: Uint8Array[], error: Error): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < pieces.length) controller.enqueue(pieces[i++]);
      else controller.error(error);
    },
  });
}

export async function collect(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of body) parts.push(new Uint8Array(p));
  return Buffer.concat(parts);
}

export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(out.subarray(at, Math.min(n, at + 65536)));
  return out;
}

/** The S3Error the action fails with; any other outcome fails the test. */
export async function s3Failure(action: () => Promise<unknown> | unknown): Promise<S3Error> {
  try {
    await action();
  } catch (e) {
    if (e instanceof S3Error) return e;
    throw e;
  }
  throw new Error("expected an S3Error, but the body was accepted");
}
