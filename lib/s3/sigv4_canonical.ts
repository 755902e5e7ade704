/**
 * The pieces of an AWS Signature Version 4 canonical request and the signing arithmetic
 * (docs/S3.md §5). The gateway verifies a signature by rebuilding what the client signed from the
 * request as received, so every function here works on the raw bytes a client sent: the path is
 * never normalised or re-encoded (S3 does not double-encode), and the query is decoded and
 * re-encoded with SigV4's own rules so that any spelling of the same parameters signs the same.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export const sigv4_algorithm = "AWS4-HMAC-SHA256";
export const sigv4_terminator = "aws4_request";
export const sigv4_service = "s3";
/** Hex SHA-256 of no bytes: the chunk string to sign hashes an empty "header" part. */
export const empty_sha256_hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const hex_digits = "0123456789ABCDEF";

function isUnreserved(byte: number): boolean {
  return (
    (byte >= 0x41 && byte <= 0x5a) || // A-Z
    (byte >= 0x61 && byte <= 0x7a) || // a-z
    (byte >= 0x30 && byte <= 0x39) || // 0-9
    byte === 0x2d || // -
    byte === 0x2e || // .
    byte === 0x5f || // _
    byte === 0x7e // ~
  );
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x41 + 10;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  return -1;
}

const encoder = new TextEncoder();

/**
 * The bytes a percent-encoded string stands for: %XX escapes decoded, every other character as its
 * UTF-8. A `+` stays a plus (RFC 3986, as SigV4 signs it; every client measured sends a space as
 * %20 and a plus as %2B). null when a `%` is not followed by two hex digits.
 */
export function percentDecode(text: string): Uint8Array | null {
  if (!text.includes("%")) return encoder.encode(text);
  const out: number[] = [];
  for (let i = 0; i < text.length;) {
    const code = text.charCodeAt(i);
    if (code === 0x25) {
      const high = i + 2 < text.length ? hexValue(text.charCodeAt(i + 1)) : -1;
      const low = high >= 0 ? hexValue(text.charCodeAt(i + 2)) : -1;
      if (low < 0) return null;
      out.push(high * 16 + low);
      i += 3;
    } else {
      // Copy the run up to the next escape as UTF-8 (a run may hold non-ASCII characters).
      let end = text.indexOf("%", i);
      if (end < 0) end = text.length;
      for (const byte of encoder.encode(text.slice(i, end))) out.push(byte);
      i = end;
    }
  }
  return Uint8Array.from(out);
}

/** SigV4's URI encoding: A-Z a-z 0-9 - . _ ~ kept, every other byte as %XX with uppercase hex. */
export function uriEncode(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) {
    if (isUnreserved(byte)) out += String.fromCharCode(byte);
    else out += "%" + hex_digits[byte >> 4] + hex_digits[byte & 15];
  }
  return out;
}

/** One query parameter as sent: the raw (still percent-encoded) name and value. */
export interface RawQueryParameter {
  name: string;
  value: string;
}

/** The parameters of a raw query ("a=1&b" -> a="1", b=""), in order; empty pieces ("a&&b") are skipped. */
export function splitQuery(raw_query: string): RawQueryParameter[] {
  const out: RawQueryParameter[] = [];
  if (raw_query === "") return out;
  for (const piece of raw_query.split("&")) {
    if (piece === "") continue;
    const equals = piece.indexOf("=");
    if (equals < 0) out.push({ name: piece, value: "" });
    else out.push({ name: piece.slice(0, equals), value: piece.slice(equals + 1) });
  }
  return out;
}

/**
 * The canonical query string: each name and value decoded, re-encoded with SigV4's rules, pairs
 * sorted by encoded name then encoded value, joined with `&`. `skip` is a parameter left out by its
 * raw name (X-Amz-Signature of a presigned URL). null when a parameter has a malformed escape.
 */
export function canonicalQuery(parameters: readonly RawQueryParameter[], skip: string | null): string | null {
  const pairs: Array<[string, string]> = [];
  for (const { name, value } of parameters) {
    if (name === skip) continue;
    const name_bytes = percentDecode(name);
    const value_bytes = percentDecode(value);
    if (name_bytes === null || value_bytes === null) return null;
    pairs.push([uriEncode(name_bytes), uriEncode(value_bytes)]);
  }
  // Encoded names and values are ASCII, so comparing strings compares bytes.
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([name, value]) => `${name}=${value}`).join("&");
}

/** A header value as signed: leading and trailing whitespace removed, inner runs of whitespace as one space. */
export function canonicalHeaderValue(value: string): string {
  return value.trim().replace(/\s+/g, " ");
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export function hmac(key: Uint8Array | string, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

/** The key a scope's signatures are made with: HMAC chain over "AWS4"+secret, date, region, "s3", "aws4_request". */
export function signingKey(secret: string, scope_date: string, region: string): Buffer {
  const date_key = hmac(`AWS4${secret}`, scope_date);
  const region_key = hmac(date_key, region);
  const service_key = hmac(region_key, sigv4_service);
  return hmac(service_key, sigv4_terminator);
}

/** "DATE/REGION/s3/aws4_request". */
export function credentialScope(scope_date: string, region: string): string {
  return `${scope_date}/${region}/${sigv4_service}/${sigv4_terminator}`;
}

/** True when `sent_hex` (64 lowercase hex digits, as the client sent it) is `expected`, compared in constant time. */
export function signatureMatches(sent_hex: string, expected: Uint8Array): boolean {
  if (!/^[0-9a-f]{64}$/.test(sent_hex) || expected.length !== 32) return false;
  return timingSafeEqual(Buffer.from(sent_hex, "hex"), expected);
}

/** Milliseconds since the epoch of an ISO 8601 basic timestamp "YYYYMMDDTHHMMSSZ", null if it is not one (or not a real date). */
export function parseAmzDate(text: string): number | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (m === null) return null;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number);
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const d = new Date(ms);
  // Date.UTC rolls 20260231 over into March; a client never signs such a date.
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day) return null;
  if (hour > 23 || minute > 59 || second > 59) return null;
  return ms;
}

/** The ISO 8601 basic form of a time, as the string to sign holds it. */
export function formatAmzDate(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}
