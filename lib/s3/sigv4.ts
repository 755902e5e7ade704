/**
 * AWS Signature Version 4 verification for the S3 gateway (docs/S3.md §5): the Authorization
 * header and presigned URLs. The gateway rebuilds the canonical request from the request exactly
 * as received (raw path, raw query, the headers the client signed), signs it with the access key's
 * secret and compares in constant time. There is no anonymous access and no SigV2.
 *
 * The result says who signed and how the payload is protected; payload.ts then holds the body to
 * that (the SHA-256, the chunk signatures, the trailer checksums).
 */
import type { Authenticated, PayloadMode } from "./auth_result.ts";
import type { Credentials } from "./credentials.ts";
import { S3Error } from "./s3_error.ts";
import {
  canonicalHeaderValue,
  canonicalQuery,
  credentialScope,
  formatAmzDate,
  hmac,
  parseAmzDate,
  sha256Hex,
  sigv4_algorithm,
  signatureMatches,
  signingKey,
  splitQuery,
  type RawQueryParameter,
} from "./sigv4_canonical.ts";
import { ChunkSignatureChain } from "./sigv4_chunks.ts";
import { parseAuthorizationHeader, parsePresignedQuery, presigned_parameters, type SignatureClaim } from "./sigv4_parse.ts";

export interface SignedRequest {
  method: string;
  /** The path exactly as received: still percent-encoded, never normalised ("..", "%2F" as sent). */
  raw_path: string;
  /** The query as received, without the "?"; "" if none. */
  raw_query: string;
  headers: Headers;
}

/** How far a request's time may be from the gateway's clock, either way (as S3). */
export const sigv4_clock_skew_max_ms = 15 * 60 * 1000;

const unsigned_payload = "UNSIGNED-PAYLOAD";
const streaming_signed = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const streaming_signed_trailer = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
const streaming_unsigned_trailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

/** Throws S3Error; returns who signed and how the payload is protected (lib/s3/auth_result.ts). */
export function authenticate(request: SignedRequest, credentials: Credentials, now_ms: number): Authenticated {
  const parameters = splitQuery(request.raw_query);
  const authorization = request.headers.get("authorization");
  const presigned = parameters.some(({ name }) => presigned_parameters.includes(name));
  if (authorization !== null && presigned)
    throw new S3Error(
      "InvalidArgument",
      "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
      new Map([["ArgumentName", "Authorization"]]),
    );
  if (authorization !== null) return authenticateHeader(request, parameters, authorization, credentials, now_ms);
  if (presigned) return authenticatePresigned(request, parameters, credentials, now_ms);
  if (parameters.some(({ name }) => name === "AWSAccessKeyId" || name === "Signature"))
    throw new S3Error("InvalidRequest", "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.");
  throw new S3Error(
    "AccessDenied",
    "Access Denied: the request is not signed and this gateway has no anonymous access (sign it with SigV4)",
  );
}

function authenticateHeader(
  request: SignedRequest,
  parameters: readonly RawQueryParameter[],
  authorization: string,
  credentials: Credentials,
  now_ms: number,
): Authenticated {
  const claim = parseAuthorizationHeader(authorization);
  const malformed = (why: string): never => {
    throw new S3Error("AuthorizationHeaderMalformed", `The authorization header is malformed: ${why}`);
  };
  // The request time: x-amz-date, else the HTTP Date header (SigV4 allows either).
  const x_amz_date = request.headers.get("x-amz-date");
  const http_date = request.headers.get("date");
  const date_header = x_amz_date !== null ? "x-amz-date" : "date";
  let date_ms: number | null = null;
  if (x_amz_date !== null) date_ms = parseAmzDate(x_amz_date);
  else if (http_date !== null && !Number.isNaN(Date.parse(http_date))) date_ms = Date.parse(http_date);
  if (date_ms === null) throw new S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header");
  const amz_date = x_amz_date ?? formatAmzDate(date_ms);
  for (const required of [date_header, "x-amz-content-sha256"])
    if (!claim.signed_headers.includes(required)) malformed(`SignedHeaders must include ${required}`);
  const content_sha256 = request.headers.get("x-amz-content-sha256");
  if (content_sha256 === null) throw new S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
  // As S3: every x-amz-* header sent must be signed, so nothing on the way can add one (metadata, copy source, checksums).
  const unsigned: string[] = [];
  for (const name of request.headers.keys()) if (name.startsWith("x-amz-") && !claim.signed_headers.includes(name)) unsigned.push(name);
  if (unsigned.length > 0)
    throw new S3Error(
      "AccessDenied",
      `There were headers present in the request which were not signed: ${unsigned.join(", ")}`,
      new Map([["HeadersNotSigned", unsigned.join(", ")]]),
    );
  if (claim.scope_date !== amz_date.slice(0, 8))
    malformed(`the Credential date ${claim.scope_date} is not the day of ${date_header} ${amz_date}`);
  const secret = secretOf(credentials, claim.access_key);
  const skew_ms = date_ms - now_ms;
  if (Math.abs(skew_ms) > sigv4_clock_skew_max_ms)
    throw new S3Error(
      "RequestTimeTooSkewed",
      `The difference between the request time and the server's time is too large: the request is ${Math.round(Math.abs(skew_ms) / 1000)} s ${skew_ms < 0 ? "behind" : "ahead of"} the server's clock, at most ${sigv4_clock_skew_max_ms / 60_000} minutes either way`,
      new Map([
        ["RequestTime", amz_date],
        ["ServerTime", new Date(now_ms).toISOString()],
        ["MaxAllowedSkewMilliseconds", String(sigv4_clock_skew_max_ms)],
      ]),
    );
  const kind = payloadKind(content_sha256, "x-amz-content-sha256");
  const verified = verify(request, claim, secret, amz_date, canonicalQueryOf(parameters, null), content_sha256);
  return { access_key: claim.access_key, payload: payloadMode(kind, content_sha256, verified) };
}

function authenticatePresigned(
  request: SignedRequest,
  parameters: readonly RawQueryParameter[],
  credentials: Credentials,
  now_ms: number,
): Authenticated {
  const claim = parsePresignedQuery(parameters);
  if (claim.scope_date !== claim.amz_date.slice(0, 8))
    throw new S3Error(
      "AuthorizationQueryParametersError",
      `the X-Amz-Credential date ${claim.scope_date} is not the day of X-Amz-Date ${claim.amz_date}`,
    );
  const secret = secretOf(credentials, claim.access_key);
  if (claim.date_ms - now_ms > sigv4_clock_skew_max_ms)
    throw new S3Error(
      "AccessDenied",
      `Request is not valid yet: X-Amz-Date ${claim.amz_date} is more than ${sigv4_clock_skew_max_ms / 60_000} minutes ahead of the server's time`,
      new Map([["ServerTime", new Date(now_ms).toISOString()]]),
    );
  const expires_ms = claim.date_ms + claim.expires_s * 1000;
  if (now_ms > expires_ms)
    throw new S3Error(
      "AccessDenied",
      "Request has expired",
      new Map([
        ["X-Amz-Expires", String(claim.expires_s)],
        ["Expires", new Date(expires_ms).toISOString()],
        ["ServerTime", new Date(now_ms).toISOString()],
      ]),
    );
  // A presigned URL carries no payload hash unless it says so (a parameter, or a header it signed).
  const signed_header_hash = claim.signed_headers.includes("x-amz-content-sha256") ? request.headers.get("x-amz-content-sha256") : null;
  const content_sha256 = claim.content_sha256 ?? signed_header_hash ?? unsigned_payload;
  const kind = payloadKind(content_sha256, claim.content_sha256 !== null ? "X-Amz-Content-Sha256" : "x-amz-content-sha256");
  const verified = verify(request, claim, secret, claim.amz_date, canonicalQueryOf(parameters, "X-Amz-Signature"), content_sha256);
  return { access_key: claim.access_key, payload: payloadMode(kind, content_sha256, verified) };
}

function secretOf(credentials: Credentials, access_key: string): string {
  const secret = credentials.secret(access_key);
  if (secret === null)
    throw new S3Error(
      "InvalidAccessKeyId",
      "The AWS Access Key Id you provided does not exist in our records.",
      new Map([["AWSAccessKeyId", access_key]]),
    );
  return secret;
}

function canonicalQueryOf(parameters: readonly RawQueryParameter[], skip: string | null): string {
  const query = canonicalQuery(parameters, skip);
  if (query === null) throw new S3Error("InvalidArgument", "the query string holds a '%' that is not followed by two hex digits");
  return query;
}

type PayloadKind = "sha256" | "unsigned" | "streaming_signed" | "streaming_signed_trailer" | "streaming_unsigned_trailer";

function payloadKind(value: string, header: string): PayloadKind {
  if (/^[0-9a-fA-F]{64}$/.test(value)) return "sha256";
  if (value === unsigned_payload) return "unsigned";
  if (value === streaming_signed) return "streaming_signed";
  if (value === streaming_signed_trailer) return "streaming_signed_trailer";
  if (value === streaming_unsigned_trailer) return "streaming_unsigned_trailer";
  throw new S3Error(
    "InvalidArgument",
    `${header} must be the payload's hex SHA-256, ${unsigned_payload}, ${streaming_signed}, ${streaming_signed_trailer} or ${streaming_unsigned_trailer}`,
    new Map([
      ["ArgumentName", header],
      ["ArgumentValue", value.slice(0, 100)],
    ]),
  );
}

function payloadMode(kind: PayloadKind, value: string, verified: Verified): PayloadMode {
  switch (kind) {
    case "sha256":
      return { kind: "sha256", hex: value.toLowerCase() };
    case "unsigned":
      return { kind: "unsigned" };
    case "streaming_unsigned_trailer":
      return { kind: "streaming_unsigned_trailer" };
    case "streaming_signed":
    case "streaming_signed_trailer":
      return {
        kind: "streaming_signed",
        chunks: new ChunkSignatureChain(verified.signing_key, verified.amz_date, verified.scope, verified.signature),
        trailer: kind === "streaming_signed_trailer",
      };
  }
}

/** What a verified signature leaves for the chunk chain. */
interface Verified {
  signing_key: Buffer;
  amz_date: string;
  scope: string;
  signature: string;
}

/** Signing keys already derived: a key is four HMACs, about half of what verifying a small
 * request costs, and it changes only with the day, the region and the secret. Bounded: cleared
 * whole when full (a few keys a day are in use). */
const signing_keys = new Map<string, Buffer>();
export const signing_keys_max = 256;

function cachedSigningKey(secret: string, scope_date: string, region: string): Buffer {
  const id = `${scope_date}\n${region}\n${secret}`;
  let key = signing_keys.get(id);
  if (key === undefined) {
    if (signing_keys.size >= signing_keys_max) signing_keys.clear();
    key = signingKey(secret, scope_date, region);
    signing_keys.set(id, key);
  }
  return key;
}

function verify(
  request: SignedRequest,
  claim: SignatureClaim,
  secret: string,
  amz_date: string,
  canonical_query: string,
  payload_hash: string,
): Verified {
  if (!request.raw_path.startsWith("/"))
    throw new S3Error("InvalidRequest", `the request target ${JSON.stringify(request.raw_path.slice(0, 100))} is not a path`);
  let canonical_headers = "";
  for (const name of claim.signed_headers) {
    const value = request.headers.get(name);
    if (value === null) throw new S3Error("SignatureDoesNotMatch", `SignedHeaders names ${name} but the request has no ${name} header`);
    canonical_headers += `${name}:${canonicalHeaderValue(value)}\n`;
  }
  const canonical_request = [
    request.method,
    request.raw_path,
    canonical_query,
    canonical_headers,
    claim.signed_headers.join(";"),
    payload_hash,
  ].join("\n");
  const scope = credentialScope(claim.scope_date, claim.region);
  const string_to_sign = `${sigv4_algorithm}\n${amz_date}\n${scope}\n${sha256Hex(canonical_request)}`;
  const signing_key = cachedSigningKey(secret, claim.scope_date, claim.region);
  if (!signatureMatches(claim.signature, hmac(signing_key, string_to_sign)))
    throw new S3Error(
      "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
      new Map([
        ["AWSAccessKeyId", claim.access_key],
        ["SignatureProvided", claim.signature],
        ["StringToSign", string_to_sign],
        ["CanonicalRequest", canonical_request],
      ]),
    );
  return { signing_key, amz_date, scope, signature: claim.signature };
}
