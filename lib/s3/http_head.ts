/**
 * An HTTP/1.1 request head (request line and header fields, RFC 9112 §3 and §5) parsed from bytes,
 * for the gateway's own server (http_server.ts). The request target is kept exactly as sent: no
 * "." or ".." segments resolved, no percent-decoding (SigV4 signs the raw path; docs/S3.md §5).
 * Header values are byte strings (one character per byte, latin1), as node:http gave them.
 *
 * Anything malformed is an HttpError naming what is wrong; the server answers it and closes the
 * connection.
 */

/** The request line and headers together, CRLFs included. */
export const header_bytes_max = 16 * 1024;
/** Header fields in one request (the AWS SDKs send about 12; 100 leaves room for x-amz-meta-*). */
export const header_count_max = 100;

/** A request the server refuses before any handler sees it: the status to answer and why. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** How the request's body is delimited (RFC 9112 §6.3). */
export type BodyFraming = { kind: "length"; length: number } | { kind: "chunked" };

export interface RequestHead {
  method: string;
  /** The request target exactly as sent (path and query). */
  target: string;
  /** 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minor_version: number;
  headers: Headers;
  framing: BodyFraming;
  /** The client asked for "100 Continue" before it sends the body. */
  expect_continue: boolean;
  /** The connection may carry another request after this one (keep-alive). */
  keep_alive: boolean;
}

const request_line = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e\x80-\xff]+) HTTP\/1\.([01])$/;
const field_name = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const field_value = /^[\t\x20-\x7e\x80-\xff]*$/;
const length_digits = /^\d{1,16}$/;

/** Where the head ends in buf (the index after its blank line), or -1 if it has not all arrived.
 * `from`: where to start looking (the bytes before it were already searched). */
export function headEnd(buf: Uint8Array, length: number, from: number): number {
  for (let i = Math.max(3, from); i < length; i++)
    if (buf[i] === 0x0a && buf[i - 1] === 0x0d && buf[i - 2] === 0x0a && buf[i - 3] === 0x0d) return i + 1;
  return -1;
}

/** Parses a head of `length` bytes ending in its blank line (headEnd found it). */
export function parseHead(bytes: Uint8Array, length: number): RequestHead {
  if (length > header_bytes_max) throw new HttpError(400, `the request line and headers are over ${header_bytes_max} bytes`);
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, length - 4).toString("latin1");
  const lines = text.split("\r\n");
  // RFC 9112 §2.2: empty lines before the request line are ignored.
  let first = 0;
  while (first < lines.length - 1 && lines[first] === "") first++;
  const m = request_line.exec(lines[first]!);
  if (m === null) throw new HttpError(400, `not a valid HTTP/1.1 request line: ${JSON.stringify(lines[first]!.slice(0, 100))}`);
  if (lines.length - first - 1 > header_count_max) throw new HttpError(431, `more than ${header_count_max} header fields`);
  const headers = new Headers();
  for (let i = first + 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    // A line starting with whitespace continues the previous one (obsolete line folding): refused, as RFC 9112 §5.2 allows.
    const name = colon < 0 ? "" : line.slice(0, colon);
    if (!field_name.test(name)) throw new HttpError(400, `not a valid header line: ${JSON.stringify(line.slice(0, 100))}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!field_value.test(value)) throw new HttpError(400, `the value of header ${name} holds a control character`);
    headers.append(name, value);
  }
  const minor_version = Number(m[3]);
  const connection = (headers.get("connection") ?? "").toLowerCase();
  return {
    method: m[1]!,
    target: m[2]!,
    minor_version,
    headers,
    framing: framingOf(headers),
    expect_continue: (headers.get("expect") ?? "").toLowerCase() === "100-continue" && minor_version === 1,
    keep_alive: minor_version === 1 ? !/(^|,)\s*close\s*(,|$)/.test(connection) : /(^|,)\s*keep-alive\s*(,|$)/.test(connection),
  };
}

/** Content-Length or chunked; both at once is refused (a request smuggling vector, RFC 9112 §6.3). */
function framingOf(headers: Headers): BodyFraming {
  const transfer = headers.get("transfer-encoding");
  const length = headers.get("content-length");
  if (transfer !== null) {
    if (length !== null) throw new HttpError(400, "a request has both Transfer-Encoding and Content-Length");
    if (transfer.trim().toLowerCase() !== "chunked")
      throw new HttpError(501, `Transfer-Encoding ${JSON.stringify(transfer.slice(0, 100))} is not supported (only chunked)`);
    return { kind: "chunked" };
  }
  if (length === null) return { kind: "length", length: 0 };
  // Headers joins repeated fields with ", ": repeats of one value are allowed, different ones are not.
  const values = new Set(length.split(",").map((v) => v.trim()));
  const value = values.size === 1 ? [...values][0]! : "";
  if (!length_digits.test(value) || !Number.isSafeInteger(Number(value)))
    throw new HttpError(400, `Content-Length ${JSON.stringify(length.slice(0, 100))} is not a byte count`);
  return { kind: "length", length: Number(value) };
}
