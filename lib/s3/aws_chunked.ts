/**
 * The aws-chunked body decoder (docs/S3.md §1): the framing S3 clients use for
 * STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] and STREAMING-UNSIGNED-PAYLOAD-TRAILER bodies.
 *
 *   <hex size>[;chunk-signature=<64 hex>]\r\n <size bytes> \r\n   ... repeated, then size 0:
 *   0[;chunk-signature=<64 hex>]\r\n
 *   name:value\r\n ...                  trailers (…-TRAILER modes only), a signed trailer ending
 *   x-amz-trailer-signature:<64 hex>\r\n  with its signature
 *   \r\n                                 (some clients omit this last empty line)
 *
 * Data streams through as it arrives: a chunk is never held whole. Its signature is checked when
 * its last byte has passed, which is still before the iterator ends, so a consumer that acts only
 * at the end never acts on unverified bytes. Every failure is an S3Error.
 */
import { assert } from "../util/assert.ts";
import type { ChunkSignatureCheck } from "./auth_result.ts";
import { S3Error } from "./s3_error.ts";

/** Longest chunk header line, CRLF included ("<hex>;chunk-signature=<64 hex>\r\n" is 89 bytes). */
export const aws_chunked_header_line_max_bytes = 4 * 1024;
/** All trailer lines together, CRLFs included (a checksum and a signature take under 200). */
export const aws_chunked_trailers_max_bytes = 16 * 1024;
/** Largest chunk: S3 clients send 64 KiB to 8 MiB. */
export const aws_chunked_chunk_size_max_bytes = 16 * 1024 * 1024;

export const trailer_signature_name = "x-amz-trailer-signature";

export interface AwsChunkedOptions {
  /** The body's size after decoding (x-amz-decoded-content-length): exactly this many bytes. */
  decoded_length: number;
  /** streaming_signed: every chunk carries a signature, checked here. null: chunks carry none. */
  signatures: ChunkSignatureCheck | null;
  /** Trailers may follow the final chunk (the -TRAILER modes); signed when signatures is set. */
  trailer: boolean;
}

export interface AwsChunkedBody {
  /** The decoded bytes, in pieces as they arrive. */
  data: AsyncIterable<Uint8Array>;
  /** Trailers by lowercase name (the signature line excluded): complete once data has ended. */
  trailers: ReadonlyMap<string, string>;
}

const cr = 13;
const lf = 10;
const empty = new Uint8Array(0);
const sha256_of_empty_hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const signature_pattern = /^[0-9a-f]{64}$/;

function invalid(message: string): S3Error {
  return new S3Error("InvalidRequest", message);
}

export function decodeAwsChunked(raw: AsyncIterable<Uint8Array>, options: AwsChunkedOptions): AwsChunkedBody {
  assert(Number.isSafeInteger(options.decoded_length) && options.decoded_length >= 0, "decoded_length is a size");
  const trailers = new Map<string, string>();
  return { data: new Decoder(raw[Symbol.asyncIterator](), options, trailers).run(), trailers };
}

/** A CRLF-terminated line of at most `max` bytes, or how the body ended before one. */
type LineResult = { kind: "line"; text: string; bytes: number } | { kind: "eof_at_start" } | { kind: "eof_inside" };

class Decoder {
  private piece: Uint8Array = empty;
  private at = 0;
  private ended = false;
  private decoded = 0;
  private chunk_index = 0;
  /** Reused buffer for the line being read when it spans pieces. */
  private readonly line = new Uint8Array(Math.max(aws_chunked_header_line_max_bytes, aws_chunked_trailers_max_bytes));

  constructor(
    private readonly raw: AsyncIterator<Uint8Array>,
    private readonly o: AwsChunkedOptions,
    private readonly trailers: Map<string, string>,
  ) {}

  async *run(): AsyncGenerator<Uint8Array, void, undefined> {
    for (;;) {
      const header = await this.readLine(
        aws_chunked_header_line_max_bytes,
        () => `the header line of chunk ${this.chunk_index} is longer than ${aws_chunked_header_line_max_bytes} bytes (the limit)`,
      );
      if (header.kind !== "line") {
        throw new S3Error(
          "IncompleteBody",
          `the aws-chunked body ended before its final chunk: received ${this.decoded} of ${this.o.decoded_length} bytes`,
        );
      }
      const { size, signature } = this.parseHeader(header.text);
      if (size > this.o.decoded_length - this.decoded)
        throw invalid(
          `chunk ${this.chunk_index} announces ${size} bytes but only ${this.o.decoded_length - this.decoded} of ` +
            `x-amz-decoded-content-length ${this.o.decoded_length} remain`,
        );
      const sha = this.o.signatures !== null && size > 0 ? new Bun.CryptoHasher("sha256") : null;
      let left = size;
      while (left > 0) {
        if (this.at === this.piece.length && !(await this.load())) {
          throw new S3Error(
            "IncompleteBody",
            `the aws-chunked body ended inside chunk ${this.chunk_index}: received ${this.decoded} of ${this.o.decoded_length} bytes`,
          );
        }
        const take = Math.min(left, this.piece.length - this.at);
        const out = this.piece.subarray(this.at, this.at + take);
        this.at += take;
        left -= take;
        this.decoded += take;
        sha?.update(out);
        yield out;
      }
      if (signature !== null) {
        assert(this.o.signatures !== null, "a signature is parsed only when signatures are expected");
        const digest = sha === null ? sha256_of_empty_hex : sha.digest("hex");
        if (!this.o.signatures.chunk(signature, digest))
          throw new S3Error("SignatureDoesNotMatch", `the signature of chunk ${this.chunk_index} (${size} bytes) does not match`);
      }
      if (size === 0) break;
      await this.expectCrlf(size);
      this.chunk_index++;
    }
    if (this.decoded < this.o.decoded_length)
      throw new S3Error(
        "IncompleteBody",
        `the aws-chunked body ended at its final chunk after ${this.decoded} of x-amz-decoded-content-length ${this.o.decoded_length} bytes`,
      );
    await this.readTrailers();
    await this.expectEnd();
  }

  /** "<hex>" or "<hex>;chunk-signature=<64 hex>", with the signature present exactly when expected. */
  private parseHeader(text: string): { size: number; signature: string | null } {
    const semicolon = text.indexOf(";");
    const hex = semicolon < 0 ? text : text.slice(0, semicolon);
    if (!/^[0-9a-fA-F]+$/.test(hex))
      throw invalid(`chunk ${this.chunk_index} header ${JSON.stringify(clip(text))} does not start with a hexadecimal size`);
    const digits = hex.replace(/^0+(?=.)/, "");
    const size = digits.length <= 8 ? parseInt(digits, 16) : Infinity;
    if (size > aws_chunked_chunk_size_max_bytes)
      throw invalid(
        `chunk ${this.chunk_index} announces 0x${clip(hex)} bytes: chunks are at most ${aws_chunked_chunk_size_max_bytes} bytes (16 MiB)`,
      );
    let signature: string | null = null;
    if (semicolon >= 0) {
      const extension = text.slice(semicolon + 1);
      const prefix = "chunk-signature=";
      if (!extension.startsWith(prefix))
        throw invalid(
          `chunk ${this.chunk_index} header has the extension ${JSON.stringify(clip(extension))}: only chunk-signature is allowed`,
        );
      if (this.o.signatures === null)
        throw invalid(`chunk ${this.chunk_index} carries a chunk-signature but x-amz-content-sha256 announces an unsigned payload`);
      signature = extension.slice(prefix.length);
      if (!signature_pattern.test(signature))
        throw new S3Error("SignatureDoesNotMatch", `the chunk-signature of chunk ${this.chunk_index} is not 64 lowercase hex digits`);
    } else if (this.o.signatures !== null) {
      throw new S3Error("SignatureDoesNotMatch", `chunk ${this.chunk_index} has no chunk-signature in a signed aws-chunked body`);
    }
    return { size, signature };
  }

  private async expectCrlf(size: number): Promise<void> {
    for (const expected of [cr, lf]) {
      if (this.at === this.piece.length && !(await this.load()))
        throw new S3Error(
          "IncompleteBody",
          `the aws-chunked body ended after the data of chunk ${this.chunk_index}: received ${this.decoded} of ${this.o.decoded_length} bytes`,
        );
      if (this.piece[this.at] !== expected)
        throw invalid(`chunk ${this.chunk_index} is longer than its announced ${size} bytes (no CRLF after its data)`);
      this.at++;
    }
  }

  /**
   * Trailer lines up to the empty line. The body may also end cleanly right after the final
   * chunk's line or after a trailer's CRLF: some clients omit the closing empty line.
   */
  private async readTrailers(): Promise<void> {
    let budget = aws_chunked_trailers_max_bytes;
    let signed_lines = "";
    let signature: string | null = null;
    for (;;) {
      const line = await this.readLine(budget, () => `the trailers are longer than ${aws_chunked_trailers_max_bytes} bytes (the limit)`);
      if (line.kind === "eof_at_start") break;
      if (line.kind === "eof_inside") throw new S3Error("IncompleteBody", "the aws-chunked body ended inside its trailers");
      budget -= line.bytes;
      if (line.text === "") break;
      if (!this.o.trailer)
        throw invalid(`the body carries a trailer (${JSON.stringify(clip(line.text))}) but x-amz-content-sha256 announces none`);
      const colon = line.text.indexOf(":");
      if (colon <= 0) throw invalid(`trailer line ${JSON.stringify(clip(line.text))} is not name:value`);
      const name = line.text.slice(0, colon).trim().toLowerCase();
      const value = line.text.slice(colon + 1).trim();
      if (name === trailer_signature_name) {
        // An unsigned trailer needs no signature; one sent anyway is ignored rather than refused.
        if (this.o.signatures === null) continue;
        if (signature !== null) throw invalid(`the trailers carry ${trailer_signature_name} twice`);
        signature = value;
        continue;
      }
      if (signature !== null) throw invalid(`trailer ${name} follows ${trailer_signature_name}, which must come last`);
      if (this.trailers.has(name)) throw invalid(`the trailers carry ${name} twice`);
      this.trailers.set(name, value);
      signed_lines += `${line.text}\n`;
    }
    if (this.o.trailer && this.o.signatures !== null) {
      if (signature === null) throw new S3Error("SignatureDoesNotMatch", `the trailers of a signed body have no ${trailer_signature_name}`);
      if (!signature_pattern.test(signature) || !this.o.signatures.trailer(signature, signed_lines))
        throw new S3Error("SignatureDoesNotMatch", "the signature of the trailers does not match");
    }
  }

  /** Nothing may follow the body's end: a byte after it means the framing was misread. */
  private async expectEnd(): Promise<void> {
    while (this.at === this.piece.length) if (!(await this.load())) return;
    throw invalid(`${this.piece.length - this.at} or more bytes follow the end of the aws-chunked body`);
  }

  /** Reads a CRLF-terminated line of at most max bytes, CRLF included; the text (latin1) excludes it. */
  private async readLine(max: number, too_long: () => string): Promise<LineResult> {
    let length = 0;
    for (;;) {
      if (this.at === this.piece.length && !(await this.load())) return length === 0 ? { kind: "eof_at_start" } : { kind: "eof_inside" };
      const newline = this.piece.indexOf(lf, this.at);
      const end = newline < 0 ? this.piece.length : newline + 1;
      const part = this.piece.subarray(this.at, end);
      if (length + part.length > max) throw invalid(too_long());
      this.line.set(part, length);
      length += part.length;
      this.at = end;
      if (newline < 0) continue;
      if (length < 2 || this.line[length - 2] !== cr)
        throw invalid(
          `a line of the aws-chunked framing ends in LF without CR: ${JSON.stringify(clip(latin1(this.line.subarray(0, length))))}`,
        );
      const text = latin1(this.line.subarray(0, length - 2));
      return { kind: "line", text, bytes: length };
    }
  }

  private async load(): Promise<boolean> {
    if (this.ended) return false;
    for (;;) {
      const next = await this.raw.next();
      if (next.done) {
        this.ended = true;
        return false;
      }
      if (next.value.length === 0) continue;
      this.piece = next.value;
      this.at = 0;
      return true;
    }
  }
}

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}
