/**
 * Hand-signed S3 requests (SigV4, Authorization header) for the cases Bun's S3 client cannot
 * express: conditional writes, bucket operations, bad input. The path is sent and signed exactly
 * as given (already percent-encoded).
 */
import {
  canonicalHeaderValue,
  canonicalQuery,
  credentialScope,
  formatAmzDate,
  hmac,
  sha256Hex,
  signingKey,
  sigv4_algorithm,
  splitQuery,
} from "../../lib/s3/sigv4_canonical.ts";

export interface S3Key {
  access_key: string;
  secret: string;
  region: string;
}

export interface SignParts {
  method: string;
  /** Host and port, as the Host header carries them. */
  host: string;
  /** Percent-encoded path, sent and signed as it is. */
  path: string;
  query?: string;
  headers?: Record<string, string>;
  /** The body's hex SHA-256, or UNSIGNED-PAYLOAD (the default). */
  payload_hash?: string;
}

/** The headers of a signed request: the given ones plus host, x-amz-date, x-amz-content-sha256, authorization. */
export function signHeaders(key: S3Key, p: SignParts, now_ms = Date.now()): Record<string, string> {
  const amz_date = formatAmzDate(now_ms);
  const scope = credentialScope(amz_date.slice(0, 8), key.region);
  const headers = new Map<string, string>();
  for (const [name, value] of Object.entries(p.headers ?? {})) headers.set(name.toLowerCase(), value);
  headers.set("host", p.host);
  headers.set("x-amz-date", amz_date);
  headers.set("x-amz-content-sha256", p.payload_hash ?? "UNSIGNED-PAYLOAD");
  const names = [...headers.keys()].sort();
  const canonical = [
    p.method,
    p.path,
    canonicalQuery(splitQuery(p.query ?? ""), null) ?? "",
    names.map((n) => `${n}:${canonicalHeaderValue(headers.get(n)!)}\n`).join(""),
    names.join(";"),
    headers.get("x-amz-content-sha256")!,
  ].join("\n");
  const to_sign = [sigv4_algorithm, amz_date, scope, sha256Hex(canonical)].join("\n");
  const signature = hmac(signingKey(key.secret, amz_date.slice(0, 8), key.region), to_sign).toString("hex");
  const out: Record<string, string> = Object.fromEntries(headers);
  out.authorization = `${sigv4_algorithm} Credential=${key.access_key}/${scope}, SignedHeaders=${names.join(";")}, Signature=${signature}`;
  return out;
}

/** fetch with a signed request to the endpoint (http://host:port). */
export function signedFetch(
  endpoint: string,
  key: S3Key,
  p: Omit<SignParts, "host"> & { body?: Uint8Array | string; sign_body?: boolean },
): Promise<Response> {
  const host = new URL(endpoint).host;
  const payload_hash = p.sign_body === true ? sha256Hex(p.body ?? "") : p.payload_hash;
  const headers = signHeaders(key, { ...p, host, ...(payload_hash === undefined ? {} : { payload_hash }) });
  const query = p.query === undefined || p.query === "" ? "" : `?${p.query}`;
  return fetch(`${endpoint}${p.path}${query}`, { method: p.method, headers, ...(p.body === undefined ? {} : { body: p.body }) });
}
