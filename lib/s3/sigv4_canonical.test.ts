import { describe, expect, test } from "bun:test";
import {
  canonicalHeaderValue,
  canonicalQuery,
  formatAmzDate,
  parseAmzDate,
  percentDecode,
  signatureMatches,
  signingKey,
  splitQuery,
  uriEncode,
} from "./sigv4_canonical.ts";

const encoder = new TextEncoder();

describe("SigV4 URI encoding", () => {
  test("unreserved characters are kept, everything else is %XX with uppercase hex, UTF-8 byte by byte", () => {
    expect(uriEncode(encoder.encode("AZaz09-._~"))).toBe("AZaz09-._~");
    expect(uriEncode(encoder.encode("a b+c/é*'()!%=&"))).toBe("a%20b%2Bc%2F%C3%A9%2A%27%28%29%21%25%3D%26");
    expect(uriEncode(new Uint8Array([0, 0xff]))).toBe("%00%FF");
  });

  test("percent-decoding keeps '+' a plus, takes either hex case and any bytes; a broken escape is null", () => {
    expect(percentDecode("a+b%20c")).toEqual(encoder.encode("a+b c"));
    expect(percentDecode("%c3%A9é")).toEqual(encoder.encode("éé"));
    expect(percentDecode("%FF%00")).toEqual(new Uint8Array([0xff, 0]));
    for (const bad of ["%", "%4", "a%g0", "%%41"]) expect(percentDecode(bad)).toBeNull();
  });
});

describe("canonical query", () => {
  test("sorted by encoded name then value, names and values re-encoded, bare names get '='", () => {
    expect(canonicalQuery(splitQuery("prefix=J&max-keys=2"), null)).toBe("max-keys=2&prefix=J");
    expect(canonicalQuery(splitQuery("uploads&prefix=a/b&list-type=2"), null)).toBe("list-type=2&prefix=a%2Fb&uploads=");
    // Same parameters spelled differently sign the same: %7E vs ~, %2a vs *, lowercase hex.
    expect(canonicalQuery(splitQuery("k=%7e%2a&a=%c3%a9"), null)).toBe("a=%C3%A9&k=~%2A");
    // Repeated names sort by value; empty pieces are ignored.
    expect(canonicalQuery(splitQuery("a=2&&a=1&a="), null)).toBe("a=&a=1&a=2");
    // A '+' in the raw query is a literal plus, as every measured client means it (they send spaces as %20).
    expect(canonicalQuery(splitQuery("prefix=a+b"), null)).toBe("prefix=a%2Bb");
  });

  test("the skipped parameter is left out by its raw name; a broken escape is null", () => {
    expect(canonicalQuery(splitQuery("X-Amz-Signature=abc&b=1"), "X-Amz-Signature")).toBe("b=1");
    expect(canonicalQuery(splitQuery("a=%zz"), null)).toBeNull();
    expect(canonicalQuery([], null)).toBe("");
  });
});

test("header values are trimmed with inner whitespace runs collapsed", () => {
  expect(canonicalHeaderValue("  a   b\t\tc  ")).toBe("a b c");
  expect(canonicalHeaderValue("bytes=0-9")).toBe("bytes=0-9");
});

test("the signing key depends on the secret, the scope date and the region", () => {
  // Its exact value is proven by AWS's published signatures in sigv4.test.ts and sigv4_chunks.test.ts.
  const base = signingKey("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1");
  expect(base.length).toBe(32);
  expect(signingKey("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEX", "20130524", "us-east-1").equals(base)).toBe(false);
  expect(signingKey("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130525", "us-east-1").equals(base)).toBe(false);
  expect(signingKey("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "eu-west-1").equals(base)).toBe(false);
});

test("signatureMatches wants exactly 64 lowercase hex digits equal to the expected bytes", () => {
  const expected = Buffer.alloc(32, 0xab);
  expect(signatureMatches("ab".repeat(32), expected)).toBe(true);
  expect(signatureMatches("AB".repeat(32), expected)).toBe(false);
  expect(signatureMatches("ab".repeat(31) + "ac", expected)).toBe(false);
  expect(signatureMatches("ab".repeat(31), expected)).toBe(false);
  expect(signatureMatches("zz".repeat(32), expected)).toBe(false);
});

test("x-amz-date parsing accepts only real times in the basic format", () => {
  expect(parseAmzDate("20130524T000000Z")).toBe(Date.UTC(2013, 4, 24));
  expect(parseAmzDate("20240229T235959Z")).toBe(Date.UTC(2024, 1, 29, 23, 59, 59));
  for (const bad of [
    "20230229T000000Z",
    "20131324T000000Z",
    "20130524T240000Z",
    "20130524T000060Z",
    "2013-05-24T00:00:00Z",
    "20130524T000000",
    "",
  ])
    expect(parseAmzDate(bad)).toBeNull();
  expect(formatAmzDate(Date.UTC(2013, 4, 24, 1, 2, 3, 456))).toBe("20130524T010203Z");
});
