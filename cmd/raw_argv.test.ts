import { describe, expect, test } from "bun:test";
import { MarkedArgs, camelCase, kebabCase, userArgs, type RawArg } from "./raw_argv.ts";

const enc = (s: string) => new TextEncoder().encode(s);
/** A /proc/self/cmdline image: each entry followed by NUL. */
const cmdline = (...entries: (string | number[])[]) => new Uint8Array(entries.flatMap((e) => [...(typeof e === "string" ? enc(e) : e), 0]));
const arg = (text: string, bytes: Uint8Array = enc(text)): RawArg => ({ bytes, text, exact: true });

describe("userArgs", () => {
  test("under bun: cmdline is bun, the script, the arguments", () => {
    const args = userArgs(
      ["/usr/bin/bun", "/repo/cmd/toastyfs.ts", "put", "k\uFFFD", "-"],
      cmdline("/usr/bin/bun", "cmd/toastyfs.ts", "put", [0x6b, 0xff], "-"),
    );
    expect(args.map((a) => [...a.bytes])).toEqual([[...enc("put")], [0x6b, 0xff], [0x2d]]);
    expect(args.every((a) => a.exact)).toBe(true);
  });

  test("compiled: cmdline has the executable where argv has bun and the embedded script", () => {
    const args = userArgs(["bun", "/$bunfs/root/toastyfs", "get", "k\uFFFD"], cmdline("./toastyfs", "get", [0x6b, 0xfe]));
    expect(args.map((a) => [...a.bytes])).toEqual([[...enc("get")], [0x6b, 0xfe]]);
  });

  test("runtime flags in front (bun --smol script) and empty arguments at the end", () => {
    const args = userArgs(["bun", "/s.ts", "put", "", ""], cmdline("bun", "--smol", "s.ts", "put", "", ""));
    expect(args.map((a) => a.text)).toEqual(["put", "", ""]);
    expect(args.map((a) => a.bytes.length)).toEqual([3, 0, 0]);
  });

  test("no arguments", () => {
    expect(userArgs(["bun", "/s.ts"], cmdline("bun", "s.ts"))).toEqual([]);
  });

  test("a cmdline that does not match argv is not trusted: argv's strings, and U+FFFD marked inexact", () => {
    const args = userArgs(["bun", "/s.ts", "get", "k\uFFFD"], cmdline("bun", "s.ts", "get", "other"));
    expect(args.map((a) => [a.text, a.exact])).toEqual([
      ["get", true],
      ["k\uFFFD", false],
    ]);
    const none = userArgs(["bun", "/s.ts", "get", "é"], null);
    expect(none.map((a) => [[...a.bytes], a.exact])).toEqual([
      [[...enc("get")], true],
      [[0xc3, 0xa9], true],
    ]);
  });
});

describe("MarkedArgs", () => {
  const commands = new Set(["put", "get", "ls"]);

  test("values and positionals go to the parser as markers; options and command names as text", () => {
    const args = [arg("put"), arg("--if-version"), arg("007"), arg(""), arg("k\uFFFD", new Uint8Array([0x6b, 0xff])), arg("-"), arg("ls")];
    const m = new MarkedArgs(args, commands);
    expect(m.parser_args[0]).toBe("put");
    expect(m.parser_args[1]).toBe("--if-version");
    for (const i of [2, 3, 4, 5]) expect(m.parser_args[i]).toMatch(/^\u0000\d+\u0000$/);
    expect(m.parser_args[6]).toBe("ls"); // a command name given as a key is still the text
    expect(m.argOf(m.parser_args[2])?.text).toBe("007");
    expect(m.unmark(m.parser_args[3])).toBe("");
    expect([...m.argOf(m.parser_args[4])!.bytes]).toEqual([0x6b, 0xff]);
    expect(m.argOf("put")).toBeUndefined();
    expect(m.unmark([m.parser_args[2], "x", 3])).toEqual(["007", "x", 3]);
  });

  test("after the first --, everything is an argument (the -- itself is dropped)", () => {
    const m = new MarkedArgs([arg("put"), arg("--if-absent"), arg("--"), arg("-dash"), arg("--"), arg("put")], commands);
    expect(m.parser_args.length).toBe(5);
    expect(m.parser_args.slice(0, 2)).toEqual(["put", "--if-absent"]);
    expect(m.parser_args.slice(2).map((p) => m.unmark(p))).toEqual(["-dash", "--", "put"]);
    for (const p of m.parser_args.slice(2)) expect(p.startsWith("-")).toBe(false);
    expect(m.before_double_dash.map((a) => a.text)).toEqual(["put", "--if-absent"]);
  });

  test("--name=value keeps the name and marks the value", () => {
    const m = new MarkedArgs([arg("--output=x\uFFFD", new Uint8Array([...enc("--output=x"), 0xff]))], commands);
    expect(m.parser_args[0]).toMatch(/^--output=\u0000\d+\u0000$/);
    expect([...m.argOf(m.parser_args[0]!.slice("--output=".length))!.bytes]).toEqual([0x78, 0xff]);
  });

  test("dashed boolean flags reach the parser in camelCase, which it knows as booleans", () => {
    const m = new MarkedArgs([arg("put"), arg("--if-absent"), arg("key")], commands, new Set(["if-absent"]));
    expect(m.parser_args.slice(0, 2)).toEqual(["put", "--ifAbsent"]);
    expect(camelCase("if-absent")).toBe("ifAbsent");
    expect(kebabCase("ifAbsent")).toBe("if-absent");
  });
});
