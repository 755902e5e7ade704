/**
 * Strict parsing of what a SigV4 client claims (docs/S3.md §5): the Authorization header
 * ("AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/s3/aws4_request, SignedHeaders=a;b, Signature=hex")
 * and the X-Amz-* parameters of a presigned URL. Every defect is an S3Error saying what is wrong
 * (AuthorizationHeaderMalformed, AuthorizationQueryParametersError), never a TypeError.
 */
import { S3Error, type S3ErrorCode } from "./s3_error.ts";
import { parseAmzDate, sigv4_algorithm, sigv4_service, sigv4_terminator, type RawQueryParameter } from "./sigv4_canonical.ts";

/** X-Amz-Expires of a presigned URL: at least a second, at most seven days (as S3). */
export const presigned_expires_min_s = 1;
export const presigned_expires_max_s = 7 * 24 * 60 * 60;

/** What a signature says about itself, whichever way it came. */
export interface SignatureClaim {
  access_key: string;
  /** YYYYMMDD of the credential scope. */
  scope_date: string;
  region: string;
  /** Lowercase header names, in the order the client listed them. */
  signed_headers: string[];
  /** 64 lowercase hex digits. */
  signature: string;
}

export interface PresignedClaim extends SignatureClaim {
  /** X-Amz-Date as sent, "YYYYMMDDTHHMMSSZ", and its time. */
  amz_date: string;
  date_ms: number;
  expires_s: number;
  /** X-Amz-Content-Sha256 when the URL carries one. */
  content_sha256: string | null;
}

type Fail = (why: string) => never;

function failWith(code: S3ErrorCode, prefix: string): Fail {
  return (why) => {
    throw new S3Error(code, `${prefix}${why}`);
  };
}

/** A header name as SignedHeaders may list it: an RFC 9110 token, lowercase. */
const signed_header_pattern = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
const signature_pattern = /^[0-9a-f]{64}$/;

/** "AK/DATE/REGION/s3/aws4_request" -> its parts; any region is accepted, the service must be s3. */
export function parseCredential(credential: string, fail: Fail): Pick<SignatureClaim, "access_key" | "scope_date" | "region"> {
  const parts = credential.split("/");
  if (parts.length !== 5)
    fail(`Credential ${JSON.stringify(credential)} has ${parts.length} parts: expected ACCESS_KEY/YYYYMMDD/REGION/s3/aws4_request`);
  const [access_key, scope_date, region, service, terminator] = parts;
  if (access_key === "") fail("Credential has an empty access key id");
  if (!/^\d{8}$/.test(scope_date) || parseAmzDate(`${scope_date}T000000Z`) === null)
    fail(`Credential date ${JSON.stringify(scope_date)} is not a date of the form YYYYMMDD`);
  if (region === "" || !/^[\x21-\x7e]+$/.test(region)) fail(`Credential region ${JSON.stringify(region)} is empty or not printable ASCII`);
  if (service !== sigv4_service) fail(`Credential service ${JSON.stringify(service)} is not ${sigv4_service}`);
  if (terminator !== sigv4_terminator) fail(`Credential ends with ${JSON.stringify(terminator)}, not ${sigv4_terminator}`);
  return { access_key, scope_date, region };
}

export function parseSignedHeaders(text: string, fail: Fail): string[] {
  if (text === "") fail("SignedHeaders is empty");
  const names = text.split(";");
  const seen = new Set<string>();
  for (const name of names) {
    if (!signed_header_pattern.test(name)) fail(`SignedHeaders holds ${JSON.stringify(name)}, not a lowercase header name`);
    if (seen.has(name)) fail(`SignedHeaders lists ${name} twice`);
    seen.add(name);
  }
  if (!seen.has("host")) fail("SignedHeaders must include host");
  return names;
}

function parseSignature(text: string, fail: Fail): string {
  if (!signature_pattern.test(text)) fail("Signature must be 64 lowercase hex digits");
  return text;
}

/** The Authorization header of a SigV4 request. SigV2 ("AWS AK:sig") is InvalidRequest: not supported. */
export function parseAuthorizationHeader(value: string): SignatureClaim {
  const fail: Fail = failWith("AuthorizationHeaderMalformed", "The authorization header is malformed: ");
  const space = value.indexOf(" ");
  const algorithm = space < 0 ? value : value.slice(0, space);
  if (algorithm !== sigv4_algorithm) {
    if (algorithm === "AWS")
      throw new S3Error("InvalidRequest", "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.");
    fail(`the algorithm is ${JSON.stringify(algorithm.slice(0, 40))}, only ${sigv4_algorithm} is supported`);
  }
  if (space < 0) fail(`Credential, SignedHeaders and Signature must follow ${sigv4_algorithm}`);
  const components = new Map<string, string>();
  for (const raw of value.slice(space + 1).split(",")) {
    const component = raw.trim();
    const equals = component.indexOf("=");
    if (equals <= 0) fail(`expected Name=value, found ${JSON.stringify(component.slice(0, 40))}`);
    const name = component.slice(0, equals);
    if (name !== "Credential" && name !== "SignedHeaders" && name !== "Signature")
      fail(`unknown component ${JSON.stringify(name.slice(0, 40))}`);
    if (components.has(name)) fail(`${name} appears twice`);
    const component_value = component.slice(equals + 1);
    if (/\s/.test(component_value)) fail(`the value of ${name} holds whitespace: components are separated by ","`);
    components.set(name, component_value);
  }
  const get = (name: string): string => {
    const v = components.get(name);
    if (v === undefined) return fail(`${name} is missing`);
    return v;
  };
  return {
    ...parseCredential(get("Credential"), fail),
    signed_headers: parseSignedHeaders(get("SignedHeaders"), fail),
    signature: parseSignature(get("Signature"), fail),
  };
}

/** The query parameters that make a request presigned (any one of them is a claim to be one). */
export const presigned_parameters = [
  "X-Amz-Algorithm",
  "X-Amz-Credential",
  "X-Amz-Date",
  "X-Amz-Expires",
  "X-Amz-SignedHeaders",
  "X-Amz-Signature",
];

/** The X-Amz-* parameters of a presigned URL; `parameters` as sent (raw). */
export function parsePresignedQuery(parameters: readonly RawQueryParameter[]): PresignedClaim {
  const fail: Fail = failWith("AuthorizationQueryParametersError", "");
  const wanted = new Set([...presigned_parameters, "X-Amz-Content-Sha256"]);
  const values = new Map<string, string>();
  for (const { name, value } of parameters) {
    if (!wanted.has(name)) continue;
    if (values.has(name)) fail(`${name} appears more than once`);
    let decoded: string;
    try {
      decoded = decodeURIComponent(value);
    } catch {
      return fail(`${name} is not valid percent-encoded UTF-8`);
    }
    values.set(name, decoded);
  }
  const missing = presigned_parameters.filter((name) => !values.has(name));
  if (missing.length > 0)
    fail(
      `Query-string authentication version 4 requires the ${presigned_parameters.join(", ")} parameters; missing: ${missing.join(", ")}`,
    );
  const get = (name: string): string => values.get(name)!;
  if (get("X-Amz-Algorithm") !== sigv4_algorithm) fail(`X-Amz-Algorithm only supports "${sigv4_algorithm}"`);
  const amz_date = get("X-Amz-Date");
  const date_ms = parseAmzDate(amz_date);
  if (date_ms === null) fail(`X-Amz-Date must be in the ISO8601 Long Format "yyyyMMdd'T'HHmmss'Z'"`);
  const expires = get("X-Amz-Expires");
  const expires_s = /^\d{1,7}$/.test(expires) ? Number(expires) : -1;
  if (expires_s < presigned_expires_min_s || expires_s > presigned_expires_max_s)
    fail(
      `X-Amz-Expires is ${JSON.stringify(expires.slice(0, 20))}: it must be a whole number of seconds from ${presigned_expires_min_s} to ${presigned_expires_max_s} (7 days)`,
    );
  return {
    ...parseCredential(get("X-Amz-Credential"), fail),
    signed_headers: parseSignedHeaders(get("X-Amz-SignedHeaders"), fail),
    signature: parseSignature(get("X-Amz-Signature"), fail),
    amz_date,
    date_ms,
    expires_s,
    content_sha256: values.get("X-Amz-Content-Sha256") ?? null,
  };
}
