import { describe, expect, test } from "bun:test";
import { BodyDecoder, chunk_line_bytes_max } from "./http_body.ts";
import { HttpError } from "./http_head.ts";

/** Feeds text to a decoder in pieces of `step` bytes; returns the body and the bytes after it. */
function decode(
  framing: ConstructorParameters<typeof BodyDecoder>[0],
  text: string,
  step: number,
): { body: string; rest: string; done: boolean } {
  const decoder = new BodyDecoder(framing);
  const bytes = Buffer.from(text, "latin1");
  let body = "";
  let rest = "";
  for (let i = 0; i < bytes.length; i += step) {
    const piece = bytes.subarray(i, Math.min(bytes.length, i + step));
    if (decoder.done) {
      rest += piece.toString("latin1");
      continue;
    }
    const d = decoder.push(piece);
    for (const p of d.pieces) body += Buffer.from(p).toString("latin1");
    rest += piece.subarray(d.consumed).toString("latin1");
  }
  return { body, rest, done: decoder.done };
}

describe("request bodies", () => {
  test("Content-Length: exactly that many bytes, the rest is the next request, at any split", () => {
    for (const step of [1, 2, 3, 7, 100])
      expect(decode({ kind: "length", length: 5 }, "hello" + "GET / HTTP/1.1\r\n", step)).toEqual({
        body: "hello",
        rest: "GET / HTTP/1.1\r\n",
        done: true,
      });
    expect(new BodyDecoder({ kind: "length", length: 0 }).done).toBe(true);
  });

  test("chunked: sizes in any case, extensions and trailers skipped, at any split", () => {
    const text = "5\r\nhello\r\nA;name=value\r\n0123456789\r\n0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\nNEXT";
    for (const step of [1, 2, 5, 13, 1000])
      expect(decode({ kind: "chunked" }, text, step)).toEqual({ body: "hello0123456789", rest: "NEXT", done: true });
  });

  test("a body that stops early is not done", () => {
    expect(decode({ kind: "length", length: 10 }, "abc", 1).done).toBe(false);
    expect(decode({ kind: "chunked" }, "5\r\nhel", 2).done).toBe(false);
  });

  test("bad chunked framing is a 400", () => {
    for (const text of ["zz\r\n", "5\r\nhelloXX\r\n", "5\nhello", `${"1".repeat(chunk_line_bytes_max + 1)}`, "1234567890abc\r\n"]) {
      const decoder = new BodyDecoder({ kind: "chunked" });
      let error: unknown = null;
      try {
        decoder.push(Buffer.from(text, "latin1"));
      } catch (e) {
        error = e;
      }
      expect([text, error instanceof HttpError && error.status]).toEqual([text, 400]);
    }
  });
});
