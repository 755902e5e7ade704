/**
 * authenticate() against AWS's published SigV4 examples (S3 API reference: "Signature
 * Calculations for the Authorization Header" and "Authenticating Requests: Using Query
 * Parameters"), then every way of tampering with them. Real clients (Bun.S3Client, the aws CLI)
 * are in sigv4_clients.test.ts; the chunk chain in sigv4_chunks.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { createHash, createHmac } from "node:crypto";
import { Prng } from "../util/prng.ts";
import { Credentials } from "./credentials.ts";
import { S3Error, type S3ErrorCode } from "./s3_error.ts";
import { authenticate, sigv4_clock_skew_max_ms, type SignedRequest } from "./sigv4.ts";

const key = "AKIAIOSFODNN7EXAMPLE";
const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const credentials = new Credentials(new Map([[key, secret]]));
const signed_at = Date.UTC(2013, 4, 24);
const host = "examplebucket.s3.amazonaws.com";
const empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const scope = `${key}/20130524/us-east-1/s3/aws4_request`;

function authorization(signed_headers: string, signature: string): string {
  return `AWS4-HMAC-SHA256 Credential=${scope},SignedHeaders=${signed_headers},Signature=${signature}`;
}

/** GET Object: GET /test.txt with Range: bytes=0-9. */
function getObject(): SignedRequest {
  return {
    method: "GET",
    raw_path: "/test.txt",
    raw_query: "",
    headers: new Headers({
      host,
      range: "bytes=0-9",
      "x-amz-content-sha256": empty_sha256,
      "x-amz-date": "20130524T000000Z",
      authorization: authorization(
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
      ),
    }),
  };
}

const welcome_sha256 = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";

/** PUT Object: "Welcome to Amazon S3." to /test$file.text, signing Date and x-amz-storage-class too. */
function putObject(): SignedRequest {
  return {
    method: "PUT",
    raw_path: "/test%24file.text",
    raw_query: "",
    headers: new Headers({
      host,
      date: "Fri, 24 May 2013 00:00:00 GMT",
      "x-amz-date": "20130524T000000Z",
      "x-amz-storage-class": "REDUCED_REDUNDANCY",
      "x-amz-content-sha256": welcome_sha256,
      authorization: authorization(
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
      ),
    }),
  };
}

/** GET Bucket (List Objects) with max-keys=2 and prefix=J, and GET Bucket lifecycle. */
function bucketGet(raw_query: string, signature: string): SignedRequest {
  return {
    method: "GET",
    raw_path: "/",
    raw_query,
    headers: new Headers({
      host,
      "x-amz-content-sha256": empty_sha256,
      "x-amz-date": "20130524T000000Z",
      authorization: authorization("host;x-amz-content-sha256;x-amz-date", signature),
    }),
  };
}
const list_signature = "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7";
const lifecycle_signature = "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543";

const presigned_query =
  "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" +
  "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host" +
  "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

/** The presigned GET /test.txt, valid for 86,400 s. */
function presigned(raw_query = presigned_query): SignedRequest {
  return { method: "GET", raw_path: "/test.txt", raw_query, headers: new Headers({ host }) };
}

function changed(request: SignedRequest, change: Partial<SignedRequest>, headers: Record<string, string | null> = {}): SignedRequest {
  const copy = new Headers(request.headers);
  for (const [name, value] of Object.entries(headers)) {
    if (value === null) copy.delete(name);
    else copy.set(name, value);
  }
  return { ...request, ...change, headers: copy };
}

/** The S3Error authenticate throws (failing the test if it throws anything else or nothing). */
function refusal(request: SignedRequest, now_ms = signed_at, creds = credentials): S3Error {
  try {
    authenticate(request, creds, now_ms);
  } catch (e) {
    if (e instanceof S3Error) return e;
    throw new Error(`not an S3Error: ${String(e)}`);
  }
  throw new Error("authenticate accepted the request");
}

function expectRefused(request: SignedRequest, code: S3ErrorCode, message?: RegExp, now_ms = signed_at): S3Error {
  const error = refusal(request, now_ms);
  expect(`${error.code}: ${error.message}`).toStartWith(`${code}: `);
  if (message !== undefined) expect(error.message).toMatch(message);
  return error;
}

describe("AWS's published examples are accepted", () => {
  test("GET Object with a Range header: the payload is the signed empty SHA-256", () => {
    expect(authenticate(getObject(), credentials, signed_at)).toEqual({ access_key: key, payload: { kind: "sha256", hex: empty_sha256 } });
  });

  test("PUT Object signing Date and x-amz-storage-class, path with an encoded '$'", () => {
    expect(authenticate(putObject(), credentials, signed_at).payload).toEqual({ kind: "sha256", hex: welcome_sha256 });
  });

  test("GET Bucket with a query (sorted before signing) and ?lifecycle (a bare name)", () => {
    expect(authenticate(bucketGet("max-keys=2&prefix=J", list_signature), credentials, signed_at).access_key).toBe(key);
    expect(authenticate(bucketGet("prefix=J&max-keys=2", list_signature), credentials, signed_at).access_key).toBe(key);
    expect(authenticate(bucketGet("lifecycle", lifecycle_signature), credentials, signed_at).access_key).toBe(key);
    expect(authenticate(bucketGet("lifecycle=", lifecycle_signature), credentials, signed_at).access_key).toBe(key);
  });

  test("the presigned GET, any time from 15 minutes before its date until it expires", () => {
    expect(authenticate(presigned(), credentials, signed_at)).toEqual({ access_key: key, payload: { kind: "unsigned" } });
    expect(authenticate(presigned(), credentials, signed_at - sigv4_clock_skew_max_ms).access_key).toBe(key);
    expect(authenticate(presigned(), credentials, signed_at + 86_400_000).access_key).toBe(key);
    // The parameters may come in any order.
    const reordered = presigned_query.split("&").reverse().join("&");
    expect(authenticate(presigned(reordered), credentials, signed_at).access_key).toBe(key);
  });

  test("15 minutes of clock skew either way is allowed; an unsigned header that is not x-amz-* may be added", () => {
    expect(authenticate(getObject(), credentials, signed_at + sigv4_clock_skew_max_ms).access_key).toBe(key);
    expect(authenticate(getObject(), credentials, signed_at - sigv4_clock_skew_max_ms).access_key).toBe(key);
    expect(authenticate(changed(getObject(), {}, { "user-agent": "x", expect: "100-continue" }), credentials, signed_at).access_key).toBe(
      key,
    );
    // Whitespace a proxy might add around or inside a value does not change what was signed.
    expect(authenticate(changed(getObject(), {}, { range: "  bytes=0-9 " }), credentials, signed_at).access_key).toBe(key);
  });
});

describe("tampering is refused", () => {
  test("each signed header changed", () => {
    for (const [name, value] of [
      ["host", "otherbucket.s3.amazonaws.com"],
      ["range", "bytes=0-10"],
      ["x-amz-date", "20130524T000001Z"],
      ["x-amz-content-sha256", welcome_sha256],
    ])
      expectRefused(changed(getObject(), {}, { [name]: value }), "SignatureDoesNotMatch", /does not match/);
    for (const [name, value] of [
      ["date", "Fri, 24 May 2013 00:00:01 GMT"],
      ["x-amz-storage-class", "STANDARD"],
    ])
      expectRefused(changed(putObject(), {}, { [name]: value }), "SignatureDoesNotMatch");
  });

  test("a signed header removed", () => {
    expectRefused(
      changed(getObject(), {}, { range: null }),
      "SignatureDoesNotMatch",
      /SignedHeaders names range but the request has no range header/,
    );
    expectRefused(
      changed(getObject(), {}, { "x-amz-content-sha256": null }),
      "InvalidRequest",
      /Missing required header.*x-amz-content-sha256/,
    );
  });

  test("the method, the path, or a query parameter changed or added", () => {
    expectRefused(changed(getObject(), { method: "HEAD" }), "SignatureDoesNotMatch");
    expectRefused(changed(getObject(), { method: "DELETE" }), "SignatureDoesNotMatch");
    for (const raw_path of ["/test.txT", "/test.txt/", "//test.txt", "/test%2Etxt", "/./test.txt", "/x/../test.txt"])
      expectRefused(changed(getObject(), { raw_path }), "SignatureDoesNotMatch");
    expectRefused(changed(getObject(), { raw_query: "versionId=1" }), "SignatureDoesNotMatch");
    expectRefused(bucketGet("max-keys=3&prefix=J", list_signature), "SignatureDoesNotMatch");
    expectRefused(bucketGet("max-keys=2&prefix=J&delimiter=%2F", list_signature), "SignatureDoesNotMatch");
    expectRefused(bucketGet("max-keys=2", list_signature), "SignatureDoesNotMatch");
  });

  test("the error document carries what was signed, so a client author can compare", () => {
    const error = expectRefused(changed(getObject(), { raw_path: "/other" }), "SignatureDoesNotMatch");
    expect(error.fields.get("CanonicalRequest")).toStartWith("GET\n/other\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n");
    expect(error.fields.get("StringToSign")).toStartWith("AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n");
    expect(error.fields.get("AWSAccessKeyId")).toBe(key);
    expect(error.status).toBe(403);
  });

  test("an unsigned x-amz-* header added (metadata, a copy source) is AccessDenied naming it", () => {
    const error = expectRefused(
      changed(getObject(), {}, { "x-amz-meta-owner": "mallory", "x-amz-copy-source": "/b/k" }),
      "AccessDenied",
      /headers present in the request which were not signed: x-amz-copy-source, x-amz-meta-owner/,
    );
    expect(error.fields.get("HeadersNotSigned")).toBe("x-amz-copy-source, x-amz-meta-owner");
  });

  test("a wrong secret or an unknown key", () => {
    const wrong = new Credentials(new Map([[key, secret.replace("K7", "K8")]]));
    expect(refusal(getObject(), signed_at, wrong).code).toBe("SignatureDoesNotMatch");
    expect(refusal(presigned(), signed_at, wrong).code).toBe("SignatureDoesNotMatch");
    const other = new Credentials(new Map([["someone-else", secret]]));
    const error = refusal(getObject(), signed_at, other);
    expect(error.code).toBe("InvalidAccessKeyId");
    expect(error.fields.get("AWSAccessKeyId")).toBe(key);
    expect(refusal(presigned(), signed_at, other).code).toBe("InvalidAccessKeyId");
  });

  test("16 minutes of skew either way is RequestTimeTooSkewed, saying the limit", () => {
    const minute = 60_000;
    for (const now of [signed_at + 16 * minute, signed_at - 16 * minute]) {
      const error = expectRefused(getObject(), "RequestTimeTooSkewed", /at most 15 minutes either way/, now);
      expect(error.fields.get("MaxAllowedSkewMilliseconds")).toBe("900000");
    }
    expectRefused(getObject(), "RequestTimeTooSkewed", undefined, signed_at + sigv4_clock_skew_max_ms + 1);
  });

  test("a presigned URL altered: path, expiry, an added parameter, or the signature", () => {
    expectRefused(changed(presigned(), { raw_path: "/test.txt2" }), "SignatureDoesNotMatch");
    expectRefused(changed(presigned(), { method: "PUT" }), "SignatureDoesNotMatch");
    expectRefused(presigned(presigned_query.replace("X-Amz-Expires=86400", "X-Amz-Expires=604800")), "SignatureDoesNotMatch");
    expectRefused(presigned(presigned_query + "&versionId=2"), "SignatureDoesNotMatch");
    expectRefused(presigned(presigned_query.replace("Signature=aeeed", "Signature=aeeee")), "SignatureDoesNotMatch");
    expectRefused(changed(presigned(), {}, { host: "evil.example" }), "SignatureDoesNotMatch");
  });

  test("a presigned URL after its expiry, or used more than 15 minutes before its date", () => {
    const error = expectRefused(presigned(), "AccessDenied", /^Request has expired$/, signed_at + 86_400_000 + 1);
    expect(error.fields.get("Expires")).toBe("2013-05-25T00:00:00.000Z");
    expectRefused(presigned(), "AccessDenied", /not valid yet/, signed_at - sigv4_clock_skew_max_ms - 1);
  });
});

describe("what a presigned URL may say", () => {
  const without = (name: string) =>
    presigned_query
      .split("&")
      .filter((p) => !p.startsWith(`${name}=`))
      .join("&");

  test("X-Amz-Expires must be 1..604800 seconds", () => {
    for (const expires of ["0", "604801", "-1", "1.5", "", "99999999", "abc"])
      expectRefused(
        presigned(presigned_query.replace("X-Amz-Expires=86400", `X-Amz-Expires=${expires}`)),
        "AuthorizationQueryParametersError",
        /X-Amz-Expires .*from 1 to 604800/,
      );
  });

  test("each of the six parameters is required; none may appear twice", () => {
    for (const name of ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"])
      expectRefused(presigned(without(name)), "AuthorizationQueryParametersError", new RegExp(`missing: ${name}$`));
    expectRefused(
      presigned(presigned_query + "&X-Amz-Expires=10"),
      "AuthorizationQueryParametersError",
      /X-Amz-Expires appears more than once/,
    );
  });

  test("wrong algorithm, date, credential or signed headers", () => {
    const replace = (from: string, to: string) => presigned(presigned_query.replace(from, to));
    expectRefused(
      replace("Algorithm=AWS4-HMAC-SHA256", "Algorithm=AWS4-HMAC-SHA512"),
      "AuthorizationQueryParametersError",
      /X-Amz-Algorithm/,
    );
    expectRefused(replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013-05-24"), "AuthorizationQueryParametersError", /ISO8601/);
    expectRefused(
      replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=20130525T000000Z"),
      "AuthorizationQueryParametersError",
      /not the day/,
    );
    expectRefused(replace("%2Fs3%2F", "%2Fs4%2F"), "AuthorizationQueryParametersError", /service "s4" is not s3/);
    expectRefused(replace("SignedHeaders=host", "SignedHeaders=range"), "AuthorizationQueryParametersError", /must include host/);
    expectRefused(
      replace("Credential=AKIA", "Credential=%E0%A4%A"),
      "AuthorizationQueryParametersError",
      /not valid percent-encoded UTF-8/,
    );
  });

  test("a payload hash given in the URL is signed and becomes the payload mode", () => {
    // Changing the URL's hash breaks the signature; giving one it did not sign too.
    expectRefused(presigned(presigned_query + `&X-Amz-Content-Sha256=${empty_sha256}`), "SignatureDoesNotMatch");
    expectRefused(presigned(presigned_query + "&X-Amz-Content-Sha256=SOMETHING"), "InvalidArgument", /X-Amz-Content-Sha256 must be/);
  });
});

describe("which mechanism", () => {
  test("no signature at all is AccessDenied: there is no anonymous access", () => {
    expectRefused({ method: "GET", raw_path: "/b/k", raw_query: "", headers: new Headers({ host }) }, "AccessDenied", /anonymous/);
  });

  test("both an Authorization header and a presigned query is InvalidArgument", () => {
    const both = changed(presigned(), {}, { authorization: getObject().headers.get("authorization") });
    expect(expectRefused(both, "InvalidArgument", /Only one auth mechanism/).fields.get("ArgumentName")).toBe("Authorization");
  });

  test("SigV2, in a header or a query, is InvalidRequest asking for AWS4-HMAC-SHA256", () => {
    const v2 = { method: "GET", raw_path: "/b/k", raw_query: "", headers: new Headers({ host, authorization: "AWS AKID:c2lnbmF0dXJl" }) };
    expectRefused(v2, "InvalidRequest", /Please use AWS4-HMAC-SHA256/);
    const v2_query = {
      method: "GET",
      raw_path: "/b/k",
      raw_query: "AWSAccessKeyId=AKID&Expires=1&Signature=abc",
      headers: new Headers({ host }),
    };
    expectRefused(v2_query, "InvalidRequest", /Please use AWS4-HMAC-SHA256/);
  });

  test("an unknown payload mode is InvalidArgument naming the header, before any signature work", () => {
    for (const value of ["STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "abc", empty_sha256.slice(1), "unsigned-payload"]) {
      const error = expectRefused(
        changed(getObject(), {}, { "x-amz-content-sha256": value }),
        "InvalidArgument",
        /x-amz-content-sha256 must be/,
      );
      expect(error.fields.get("ArgumentName")).toBe("x-amz-content-sha256");
    }
  });

  test("a request time that is missing or not a time", () => {
    expectRefused(changed(getObject(), {}, { "x-amz-date": null }), "AccessDenied", /valid Date or x-amz-date/);
    expectRefused(changed(getObject(), {}, { "x-amz-date": "yesterday" }), "AccessDenied", /valid Date or x-amz-date/);
    // Without x-amz-date the Date header is the request time, and then it must be signed.
    expectRefused(
      changed(getObject(), {}, { "x-amz-date": null, date: "Fri, 24 May 2013 00:00:00 GMT" }),
      "AuthorizationHeaderMalformed",
      /must include date/,
    );
    expectRefused(changed(putObject(), {}, { "x-amz-date": null }), "SignatureDoesNotMatch", /no x-amz-date header/);
  });
});

test("a request timed by the Date header alone: the string to sign holds that time in the basic format", () => {
  // Signed here from the spec with node:crypto; real clients all send x-amz-date, so no captured one exists.
  const hmac = (k: Uint8Array | string, data: string) => createHmac("sha256", k).update(data).digest();
  const signing_key = hmac(hmac(hmac(hmac(`AWS4${secret}`, "20130524"), "us-east-1"), "s3"), "aws4_request");
  const canonical = ["GET", "/test.txt", "", `date:Fri, 24 May 2013 00:00:07 GMT\nhost:${host}\nx-amz-content-sha256:${empty_sha256}\n`];
  canonical.push("date;host;x-amz-content-sha256", empty_sha256);
  const digest = createHash("sha256").update(canonical.join("\n")).digest("hex");
  const signature = hmac(signing_key, `AWS4-HMAC-SHA256\n20130524T000007Z\n20130524/us-east-1/s3/aws4_request\n${digest}`).toString("hex");
  const request = {
    method: "GET",
    raw_path: "/test.txt",
    raw_query: "",
    headers: new Headers({
      host,
      date: "Fri, 24 May 2013 00:00:07 GMT",
      "x-amz-content-sha256": empty_sha256,
      authorization: authorization("date;host;x-amz-content-sha256", signature),
    }),
  };
  expect(authenticate(request, credentials, signed_at).access_key).toBe(key);
  expectRefused(changed(request, {}, { date: "Fri, 24 May 2013 00:00:08 GMT" }), "SignatureDoesNotMatch");
  expectRefused(changed(request, {}, { date: "not a date" }), "AccessDenied", /valid Date or x-amz-date/);
  expectRefused(request, "RequestTimeTooSkewed", /the request is 960 s behind the server's clock/, signed_at + 7000 + 16 * 60_000);
});

describe("malformed Authorization headers", () => {
  const good_credential = `Credential=${scope}`;
  const good_signed = "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date";
  const good_signature = "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
  const cases: Array<[string, RegExp]> = [
    ["", /algorithm is ""/],
    ["AWS4-HMAC-SHA256", /must follow AWS4-HMAC-SHA256/],
    ["AWS4-HMAC-SHA256 ,", /expected Name=value, found ""/],
    ["Bearer abc", /algorithm is "Bearer"/],
    ["aws4-hmac-sha256 Credential=x", /algorithm is "aws4-hmac-sha256"/],
    [`AWS4-HMAC-SHA256 ${good_credential}, ${good_signed}`, /Signature is missing/],
    [`AWS4-HMAC-SHA256 ${good_signed}, ${good_signature}`, /Credential is missing/],
    [`AWS4-HMAC-SHA256 ${good_credential}, ${good_signature}`, /SignedHeaders is missing/],
    [`AWS4-HMAC-SHA256 ${good_credential}, ${good_credential}, ${good_signed}, ${good_signature}`, /Credential appears twice/],
    [`AWS4-HMAC-SHA256 ${good_credential}, ${good_signed}, ${good_signature}, Extra=1`, /unknown component "Extra"/],
    [`AWS4-HMAC-SHA256 ${good_credential}, ${good_signed}, ${good_signature},`, /expected Name=value, found ""/],
    [
      `AWS4-HMAC-SHA256 ${good_credential} ${good_signed} ${good_signature}`,
      /the value of Credential holds whitespace: components are separated by ","/,
    ],
    [`AWS4-HMAC-SHA256 =x, ${good_signed}, ${good_signature}`, /expected Name=value/],
    [`AWS4-HMAC-SHA256 Credential=${key}/20130524/us-east-1/s3, ${good_signed}, ${good_signature}`, /has 4 parts/],
    [`AWS4-HMAC-SHA256 Credential=${key}/20130524/us-east-1/s3/aws4_request/x, ${good_signed}, ${good_signature}`, /has 6 parts/],
    [`AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request, ${good_signed}, ${good_signature}`, /empty access key id/],
    [`AWS4-HMAC-SHA256 Credential=${key}/2013-05-24/us-east-1/s3/aws4_request, ${good_signed}, ${good_signature}`, /not a date/],
    [`AWS4-HMAC-SHA256 Credential=${key}/20131324/us-east-1/s3/aws4_request, ${good_signed}, ${good_signature}`, /not a date/],
    [`AWS4-HMAC-SHA256 Credential=${key}/20130524//s3/aws4_request, ${good_signed}, ${good_signature}`, /region "" is empty/],
    [
      `AWS4-HMAC-SHA256 Credential=${key}/20130524/us-east-1/iam/aws4_request, ${good_signed}, ${good_signature}`,
      /service "iam" is not s3/,
    ],
    [`AWS4-HMAC-SHA256 Credential=${key}/20130524/us-east-1/s3/aws5_request, ${good_signed}, ${good_signature}`, /not aws4_request/],
    [
      `AWS4-HMAC-SHA256 Credential=${key}/20130523/us-east-1/s3/aws4_request, ${good_signed}, ${good_signature}`,
      /date 20130523 is not the day/,
    ],
    [`AWS4-HMAC-SHA256 ${good_credential}, SignedHeaders=, ${good_signature}`, /SignedHeaders is empty/],
    [`AWS4-HMAC-SHA256 ${good_credential}, SignedHeaders=Host;range, ${good_signature}`, /"Host", not a lowercase header name/],
    [`AWS4-HMAC-SHA256 ${good_credential}, SignedHeaders=host;;range, ${good_signature}`, /"", not a lowercase/],
    [`AWS4-HMAC-SHA256 ${good_credential}, SignedHeaders=host;host;x-amz-date, ${good_signature}`, /lists host twice/],
    [`AWS4-HMAC-SHA256 ${good_credential}, SignedHeaders=range;x-amz-content-sha256;x-amz-date, ${good_signature}`, /must include host/],
    [`AWS4-HMAC-SHA256 ${good_credential}, SignedHeaders=host;range;x-amz-date, ${good_signature}`, /must include x-amz-content-sha256/],
    [`AWS4-HMAC-SHA256 ${good_credential}, SignedHeaders=host;range;x-amz-content-sha256, ${good_signature}`, /must include x-amz-date/],
    [`AWS4-HMAC-SHA256 ${good_credential}, ${good_signed}, Signature=`, /64 lowercase hex/],
    [
      `AWS4-HMAC-SHA256 ${good_credential}, ${good_signed}, Signature=F0E8BDB87C964420E857BD35B5D6ED310BD44F0170ABA48DD91039C6036BDB41`,
      /64 lowercase hex/,
    ],
    [`AWS4-HMAC-SHA256 ${good_credential}, ${good_signed}, ${good_signature}0`, /64 lowercase hex/],
    [`AWS4-HMAC-SHA256 ${good_credential}, ${good_signed}, Signature=${"g".repeat(64)}`, /64 lowercase hex/],
  ];

  test("each shape is AuthorizationHeaderMalformed saying what is wrong", () => {
    for (const [value, why] of cases) {
      const error = refusal(changed(getObject(), {}, { authorization: value }));
      expect(`${JSON.stringify(value)} -> ${error.code}: ${error.message}`).toMatch(
        new RegExp(`-> AuthorizationHeaderMalformed: The authorization header is malformed: .*${why.source}`),
      );
      expect(error.status).toBe(400);
    }
  });

  test("the well-formed spellings real signers use are accepted: ', ' or ',' between components", () => {
    for (const separator of [",", ", ", " , "]) {
      const value = `AWS4-HMAC-SHA256 ${[good_credential, good_signed, good_signature].join(separator)}`;
      expect(authenticate(changed(getObject(), {}, { authorization: value }), credentials, signed_at).access_key).toBe(key);
    }
  });

  test("random damage to a valid header or query is always an S3Error, never a crash", () => {
    const prng = new Prng(15);
    const alphabet = "AWS4-HMAC-SHA256 Credential=/,;=Signature SignedHeaders host%20\u00e9\u0000\uffff0123456789abcdef";
    const damage = (text: string): string => {
      let out = text;
      for (let edits = 1 + prng.int(4); edits > 0; edits--) {
        const at = prng.int(out.length + 1);
        const kind = prng.int(3);
        const c = alphabet[prng.int(alphabet.length)];
        if (kind === 0) out = out.slice(0, at) + c + out.slice(at);
        else if (kind === 1) out = out.slice(0, at) + out.slice(at + 1 + prng.int(8));
        else out = out.slice(0, at) + c + out.slice(at + 1);
      }
      return out;
    };
    const base = getObject().headers.get("authorization")!;
    let refused = 0;
    let tried = 0;
    for (let i = 0; i < 3000; i++) {
      const requests = [presigned(damage(presigned_query))];
      // Headers refuses some values (NUL, characters above U+00FF) itself: an HTTP server never hands those over.
      const header = damage(base);
      if (/^[\x20-\x7e\xe9]*$/.test(header)) requests.push(changed(getObject(), {}, { authorization: header }));
      for (const request of requests) {
        tried++;
        try {
          authenticate(request, credentials, signed_at);
        } catch (e) {
          if (!(e instanceof S3Error))
            throw new Error(`${String(e)} for ${JSON.stringify(request.raw_query || request.headers.get("authorization"))}`);
          refused++;
        }
      }
    }
    // Nearly every damaged request is refused (a damaged query can still be the same request, e.g. "&&").
    expect(tried).toBeGreaterThan(5000);
    expect(refused).toBeGreaterThan(tried - 100);
  });
});
