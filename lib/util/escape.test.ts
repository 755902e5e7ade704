import { describe, expect, test } from "bun:test";
import { EscapeError, escapeBytes, parseEscapeAt, unescapeBytes } from "./escape.ts";
import { Prng } from "./prng.ts";

const bytes = (...b: number[]) => new Uint8Array(b);
const utf8 = (s: string) => new TextEncoder().encode(s);

describe("escapeBytes", () => {
  test.each([
    ["plain ASCII stays", utf8("photos/cat.jpg"), "photos/cat.jpg"],
    ["backslash doubles", utf8("a\\b"), "a\\\\b"],
    ["newline, carriage return, tab", utf8("a\nb\rc\td"), "a\\nb\\rc\\td"],
    ["other control bytes and DEL as \\xHH", bytes(0x00, 0x1b, 0x5b, 0x7f), "\\x00\\x1b[\\x7f"],
    ["bytes that are not UTF-8", bytes(0x6b, 0xff, 0xfe, 0xc0, 0x80), "k\\xff\\xfe\\xc0\\x80"],
    ["a cut-off sequence", bytes(0x61, 0xe2, 0x82), "a\\xe2\\x82"],
    ["overlong and surrogate forms are not UTF-8", bytes(0xc0, 0xaf, 0xed, 0xa0, 0x80), "\\xc0\\xaf\\xed\\xa0\\x80"],
    ["printable UTF-8 stays", utf8("café ☕ 日本"), "café ☕ 日本"],
    ["a bidi override is escaped byte by byte", utf8("a\u202eb"), "a\\xe2\\x80\\xaeb"],
    ["zero-width space and no-break space are escaped", utf8("a\u200bb\u00a0c"), "a\\xe2\\x80\\x8bb\\xc2\\xa0c"],
    ["C1 controls are escaped", utf8("a\u009bb"), "a\\xc2\\x9bb"],
    ["spaces inside stay, at the ends are escaped", utf8(" a b "), "\\x20a b\\x20"],
    ["a single space", utf8(" "), "\\x20"],
  ])("%s", (_, input, shown) => {
    expect(escapeBytes(input)).toBe(shown);
    expect([...unescapeBytes(shown)]).toEqual([...input]);
  });

  test("random bytes: one line of visible text that reads back to the same bytes", () => {
    const prng = new Prng(12);
    for (let n = 0; n < 3000; n++) {
      const length = prng.range(1, 40);
      // Mostly bytes around the interesting edges: controls, ASCII, UTF-8 leads and continuations.
      const pool = [
        0x00, 0x09, 0x0a, 0x0d, 0x1b, 0x20, 0x41, 0x5c, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc2, 0xc3, 0xe2, 0xed, 0xef, 0xf0, 0xf4, 0xff,
      ];
      const input = new Uint8Array(Array.from({ length }, () => (prng.chance(0.7) ? prng.pick(pool) : prng.range(0, 255))));
      const shown = escapeBytes(input);
      expect(shown).not.toMatch(/[\p{C}\n\r]/u);
      expect(shown).not.toMatch(/^\s|\s$/);
      expect([...unescapeBytes(shown)]).toEqual([...input]);
    }
  });
});

describe("unescapeBytes", () => {
  test("escapes become bytes; everything else stays as it is", () => {
    expect([...unescapeBytes("a\\x00b\\xFF\\n\\\\\\\"\\'")]).toEqual([0x61, 0x00, 0x62, 0xff, 0x0a, 0x5c, 0x22, 0x27]);
    expect([...unescapeBytes(bytes(0xff, 0x5c, 0x74))]).toEqual([0xff, 0x09]);
    expect([...unescapeBytes("é")]).toEqual([0xc3, 0xa9]);
  });

  test.each([
    ["an unknown escape", "a\\qb", /unknown escape \\q: write \\\\ for a backslash/],
    ["\\x with one digit", "a\\x4", /\\x needs two hex digits .*"\\\\x4"/],
    ["\\x with no hex", "\\xzz", /\\x needs two hex digits/],
    ["a backslash at the end", "abc\\", /a backslash at the end/],
    ["a backslash before a byte that is not UTF-8", "a\\\xff", /unknown escape/],
  ])("%s is an error, never a guess", (_, input, message) => {
    const text = typeof input === "string" && input.includes("\xff") ? bytes(0x61, 0x5c, 0xff) : input;
    expect(() => unescapeBytes(text)).toThrow(EscapeError);
    expect(() => unescapeBytes(text)).toThrow(message);
  });

  test("parseEscapeAt says where the text after the escape starts", () => {
    expect(parseEscapeAt(utf8("x\\x41y"), 1)).toEqual({ byte: 0x41, next: 5 });
    expect(parseEscapeAt(utf8("\\n"), 0)).toEqual({ byte: 0x0a, next: 2 });
  });
});
