import { describe, expect, test } from "bun:test";
import { splitLines, type Line } from "./lines.ts";

async function* chunks(...parts: (string | number[])[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield typeof p === "string" ? new TextEncoder().encode(p) : new Uint8Array(p);
}

async function all(stream: AsyncIterable<Uint8Array>, max = 100): Promise<Line[]> {
  const out: Line[] = [];
  for await (const line of splitLines(stream, max)) out.push(line);
  return out;
}

const text = (l: Line) => Buffer.from(l.bytes).toString("latin1");

describe("splitLines", () => {
  test("lines split across chunks, several per chunk, the last without a newline", async () => {
    const lines = await all(chunks("get a\nput b ", "x\n\nls", " c"));
    expect(lines.map(text)).toEqual(["get a", "put b x", "", "ls c"]);
    expect(lines.map((l) => l.number)).toEqual([1, 2, 3, 4]);
  });

  test("bytes that are not UTF-8 stay as they are", async () => {
    const lines = await all(chunks([0x67, 0x20, 0xff, 0xfe], [0x0a, 0xc0]));
    expect(lines.map((l) => [...l.bytes])).toEqual([[0x67, 0x20, 0xff, 0xfe], [0xc0]]);
  });

  test("a line over the limit is reported, not kept, and the next line still comes", async () => {
    const lines = await all(chunks("x".repeat(60), "y".repeat(60), "\nnext\n", "z".repeat(101)), 100);
    expect(lines.map((l) => [l.number, l.too_long, text(l)])).toEqual([
      [1, true, ""],
      [2, false, "next"],
      [3, true, ""],
    ]);
  });

  test("no input, no lines; a final newline adds no empty line", async () => {
    expect(await all(chunks())).toEqual([]);
    expect((await all(chunks("a\n"))).map(text)).toEqual(["a"]);
  });
});
