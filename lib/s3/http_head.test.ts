import { describe, expect, test } from "bun:test";
import { HttpError, header_bytes_max, header_count_max, headEnd, parseHead } from "./http_head.ts";

function parse(text: string) {
  const bytes = Buffer.from(text, "latin1");
  const end = headEnd(bytes, bytes.length, 0);
  expect(end).toBe(bytes.length);
  return parseHead(bytes, end);
}

function refused(text: string): HttpError {
  try {
    parse(text);
  } catch (e) {
    expect(e).toBeInstanceOf(HttpError);
    return e as HttpError;
  }
  throw new Error(`parsed: ${JSON.stringify(text)}`);
}

describe("request heads", () => {
  test("the target stays exactly as sent: dot segments, %2F, '+' and a raw query", () => {
    const head = parse("GET /b/a/../c/./%2F%2e%2e/k+x?list-type=2&prefix=a%2Fb HTTP/1.1\r\nHost: h\r\n\r\n");
    expect(head.method).toBe("GET");
    expect(head.target).toBe("/b/a/../c/./%2F%2e%2e/k+x?list-type=2&prefix=a%2Fb");
    expect(head.headers.get("host")).toBe("h");
  });

  test("header values are trimmed byte strings; repeats are joined; names are case-insensitive", () => {
    const head = parse("PUT /x HTTP/1.1\r\nX-Amz-Meta-A:  caf\xe9 \t\r\nx-amz-meta-b: 1\r\nX-AMZ-META-B: 2\r\nContent-Length: 3\r\n\r\n");
    expect(head.headers.get("x-amz-meta-a")).toBe("caf\xe9");
    expect(head.headers.get("x-amz-meta-b")).toBe("1, 2");
    expect(head.framing).toEqual({ kind: "length", length: 3 });
  });

  test("framing: none is an empty body, chunked, repeated equal Content-Lengths", () => {
    expect(parse("GET / HTTP/1.1\r\n\r\n").framing).toEqual({ kind: "length", length: 0 });
    expect(parse("PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").framing).toEqual({ kind: "chunked" });
    expect(parse("PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n").framing).toEqual({ kind: "length", length: 5 });
  });

  test("keep-alive by version and Connection; Expect: 100-continue on HTTP/1.1 only", () => {
    expect(parse("GET / HTTP/1.1\r\n\r\n").keep_alive).toBe(true);
    expect(parse("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive).toBe(false);
    expect(parse("GET / HTTP/1.0\r\n\r\n").keep_alive).toBe(false);
    expect(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive).toBe(true);
    expect(parse("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").expect_continue).toBe(true);
    expect(parse("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expect_continue).toBe(false);
  });

  test("leading empty lines are skipped; the head ends only at CRLF CRLF", () => {
    expect(parse("\r\nGET /a HTTP/1.1\r\n\r\n").target).toBe("/a");
    const partial = Buffer.from("GET / HTTP/1.1\r\nHost: h\r\n\r");
    expect(headEnd(partial, partial.length, 0)).toBe(-1);
  });

  test("bad input is an HttpError with the status to answer", () => {
    const cases: [string, number][] = [
      ["NOT HTTP\r\n\r\n", 400],
      ["GET / HTTP/2.0\r\n\r\n", 400],
      ["GET /a b HTTP/1.1\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nno colon\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nA: nul\x00\r\n\r\n", 400],
      ["PUT / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
      ["PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501],
      ["PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400],
      ["PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400],
      ["PUT / HTTP/1.1\r\nContent-Length: 99999999999999999\r\n\r\n", 400],
      [`GET / HTTP/1.1\r\n${"a: b\r\n".repeat(header_count_max + 1)}\r\n`, 431],
      [`GET / HTTP/1.1\r\nX: ${"a".repeat(header_bytes_max)}\r\n\r\n`, 400],
    ];
    for (const [text, status] of cases) expect([text, refused(text).status]).toEqual([text, status]);
  });
});
