/**
 * Keys are bytes end to end (issue 12, items 3 and 6), through the real command line against a
 * real 3-replica cluster: raw argument bytes are the key, ls/stat/admin print unprintable and
 * non-UTF-8 bytes escaped (never a raw newline or escape code), a listed key can be fed back, the
 * admin shell takes escapes, and keys starting with `-` work after `--`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { TestCluster } from "./support/cluster.ts";
import { expectOneError, type RunOptions } from "./support/cli.ts";
import { raw, toastyfsRaw, type RawArg } from "./support/raw_args.ts";
import { Client } from "../lib/client/client.ts";
import { parseAddressList } from "../lib/net/address.ts";

let cluster: TestCluster;
let dir: string;

beforeAll(async () => {
  cluster = await TestCluster.start(3);
  dir = path.join(cluster.dir, "files");
  fs.mkdirSync(dir);
}, 60_000);

afterAll(async () => {
  await cluster?.destroy();
});

/** toastyfs against the test cluster (named in the environment, so that `--` can end the line). */
function cli(args: RawArg[], options: RunOptions = {}) {
  return toastyfsRaw(args, { ...options, env: { ...options.env, TOASTYFS_CLUSTER: cluster.cluster_arg } });
}

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString("latin1");
const byteOrder = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe("non-UTF-8 keys on the command line (item 3)", () => {
  test("k\\xff and k\\xfe are two keys; k\\xc0 is neither", async () => {
    const v1 = await cli(["put", raw("bin/k\\xff"), "-"], { stdin: "v1" });
    expect(v1.stderr).toBe("");
    expect(v1.code).toBe(0);
    const v2 = await cli(["put", raw("bin/k\\xfe"), "-"], { stdin: "v2" });
    expect(v2.code).toBe(0);
    expect((await cli(["get", raw("bin/k\\xff")])).stdout).toBe("v1");
    expect((await cli(["get", raw("bin/k\\xfe")])).stdout).toBe("v2");
    expectOneError(await cli(["get", raw("bin/k\\xc0")]), 1, /not found/);
    const ls = await cli(["ls", "bin/"]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toBe("bin/k\\xfe\nbin/k\\xff\n");
    // A raw prefix selects by bytes too.
    expect((await cli(["ls", raw("bin/k\\xff")])).stdout).toBe("bin/k\\xff\n");
    // The key a person sees in messages is escaped the same way.
    expectOneError(await cli(["get", raw("bin/k\\xc0")]), 1, /^error: get bin\/k\\xc0: not found$/);
  }, 30_000);

  // Every kind of byte a key can hold that a terminal must not get raw, and what ls prints.
  const cases: [key: Uint8Array, shown: string][] = [
    [raw("esc/k\\xff"), "esc/k\\xff"],
    [raw("esc/line\nbreak"), "esc/line\\nbreak"],
    [raw("esc/\\x1b[31mred"), "esc/\\x1b[31mred"],
    [raw("esc/tab\there"), "esc/tab\\there"],
    [raw("esc/cr\rx"), "esc/cr\\rx"],
    [raw("esc/back\\slash"), "esc/back\\\\slash"],
    [raw("esc/café"), "esc/café"],
    [raw("esc/ space "), "esc/ space\\x20"],
    [raw("esc/cut\\xc3"), "esc/cut\\xc3"],
    [raw("esc/\\xe2\\x80\\xaertl"), "esc/\\xe2\\x80\\xaertl"],
    [raw("esc/del\\x7f"), "esc/del\\x7f"],
  ];

  test("ls, ls -l and stat print such keys escaped, one line each, never raw", async () => {
    for (const [key, shown] of cases) {
      const put = await cli(["put", key, "-"], { stdin: `value of ${shown}` });
      expect(put.stderr).toBe("");
      expect(put.code).toBe(0);
    }
    const sorted = [...cases].sort((a, b) => byteOrder(a[0], b[0]));
    const ls = await cli(["ls", "esc/"]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toBe(sorted.map(([, shown]) => shown).join("\n") + "\n");
    expect(text(ls.stdout_bytes)).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f\x80-\x9f]/);
    const long = await cli(["ls", "-l", "esc/"]);
    const rows = long.stdout.trimEnd().split("\n");
    expect(rows.length).toBe(cases.length);
    rows.forEach((row, i) => expect(row.endsWith(`Z  ${sorted[i]![1]}`)).toBe(true));
    const stat = await cli(["stat", raw("esc/\\x1b[31mred")]);
    expect(stat.code).toBe(0);
    expect(stat.stdout).toMatch(/^key {7}esc\/\\x1b\[31mred$/m);
    expect(stat.stdout).not.toContain("\x1b");
  }, 60_000);

  test("a listed key fed back with --escaped: get, put and delete reach the same key", async () => {
    const ls = await cli(["ls", "esc/"]);
    const lines = ls.stdout.trimEnd().split("\n");
    expect(lines.length).toBe(cases.length);
    for (const line of lines) {
      const get = await cli(["get", "--escaped", line]);
      expect(get.stderr).toBe("");
      expect(get.stdout).toBe(`value of ${line}`);
    }
    const put = await cli(["put", "--escaped", "esc/line\\nbreak", "-"], { stdin: "changed" });
    expect(put.code).toBe(0);
    expect((await cli(["get", raw("esc/line\nbreak")])).stdout).toBe("changed");
    expect((await cli(["delete", "--escaped", "esc/k\\xff"])).code).toBe(0);
    expectOneError(await cli(["get", raw("esc/k\\xff")]), 1, /not found/);
    expect((await cli(["ls", "--escaped", "esc/\\xe2"])).stdout).toBe("esc/\\xe2\\x80\\xaertl\n");
    expectOneError(await cli(["get", "--escaped", "esc/\\q"]), 2, /escape/);
  }, 60_000);
});

describe("the admin shell takes escapes and raw bytes in keys (item 3)", () => {
  test("\\x00, \\n, \\\\ and \\xff in keys; output escaped; raw bytes on stdin", async () => {
    const script = [
      'put "adm/\\x00z" zero',
      "put adm/nl\\nx newline",
      "put adm/back\\\\ backslash",
      "put adm/k\\xff high",
      "ls adm/",
      "get adm/nl\\nx",
      "stat adm/k\\xff",
      "put 'adm/lit\\x' literal",
    ].join("\n");
    // One line with a raw 0xff byte in the key (not an escape).
    const bytes = Buffer.concat([Buffer.from(script + "\nget "), Buffer.from(raw("adm/k\\xff")), Buffer.from("\nls 'adm/lit'\n")]);
    const r = await cli(["admin"], { stdin: bytes, timeout_ms: 20_000 });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^adm\/\\x00z: version \d+ \(4 bytes\)$/m);
    expect(r.stdout).toMatch(/^adm\/nl\\nx: version \d+ \(7 bytes\)$/m);
    expect(r.stdout).toContain("adm/\\x00z\nadm/back\\\\\nadm/k\\xff\nadm/nl\\nx\n");
    expect(r.stdout).toMatch(/^newline$/m);
    expect(r.stdout).toMatch(/^key {7}adm\/k\\xff$/m);
    expect(r.stdout).toMatch(/^high$/m);
    // Single quotes are literal, as in a shell: the key holds a backslash.
    expect(r.stdout).toMatch(/^adm\/lit\\\\x$/m);
    expect(text(r.stdout_bytes)).not.toMatch(/[\x00\x1b\xff]/);
    // The CLI sees the same keys.
    expect((await cli(["get", "--escaped", "adm/\\x00z"])).stdout).toBe("zero");
  }, 30_000);

  test("admin -c with a raw key and an unknown escape", async () => {
    const r = await cli(["admin", "-c", Buffer.concat([Buffer.from("get "), Buffer.from(raw("adm/k\\xff"))])]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("high\n");
    expectOneError(await cli(["admin", "-c", "get adm/\\q"]), 2, /unknown escape \\q/);
  }, 30_000);
});

describe("the TypeScript client: byte keys, prefixes and after", () => {
  test("list with NUL and 0xff in prefix and after, page by page", async () => {
    const client = new Client({ addresses: parseAddressList(cluster.cluster_arg), operation_timeout_ms: 10_000 });
    try {
      const keys = ["tsc/\\x00", "tsc/\\x00\\x00", "tsc/a", "tsc/\\xfe", "tsc/\\xff", "tsc/\\xff\\x00", "tsc/\\xff\\xff"].map(raw);
      for (const k of keys) await client.put(k, k);
      const all: Uint8Array[] = [];
      for await (const e of client.listAll(raw("tsc/"))) all.push(e.key);
      expect(all.map(text)).toEqual([...keys].sort(byteOrder).map(text));
      const ff = await client.list(raw("tsc/\\xff"), { limit: 10 });
      expect(ff.entries.map((e) => text(e.key))).toEqual(["tsc/\\xff", "tsc/\\xff\\x00", "tsc/\\xff\\xff"].map((k) => text(raw(k))));
      const after = await client.list(raw("tsc/"), { after: raw("tsc/\\x00"), limit: 2 });
      expect(after.entries.map((e) => text(e.key))).toEqual(["tsc/\\x00\\x00", "tsc/a"].map((k) => text(raw(k))));
      expect(after.truncated).toBe(true);
      const nul = await client.list(raw("tsc/\\x00"), { after: raw("tsc/\\x00"), limit: 10 });
      expect(nul.entries.map((e) => text(e.key))).toEqual([text(raw("tsc/\\x00\\x00"))]);
      expect(Buffer.from((await client.get(raw("tsc/\\xff\\x00"))).value)).toEqual(Buffer.from(raw("tsc/\\xff\\x00")));
      await expect(client.list(new Uint8Array(1089))).rejects.toThrow(/prefix of 1089 bytes/);
    } finally {
      await client.close();
    }
  }, 30_000);
});

describe("keys starting with - (item 6)", () => {
  test("put -dash FILE without -- is an error naming the option and --, and stores nothing", async () => {
    const file = path.join(dir, "dash");
    fs.writeFileSync(file, "dash value");
    const r = await cli(["put", "-dash", file]);
    expectOneError(r, 2, /unknown option -d .*-- -dash/);
    expect(r.stdout).toBe("");
    const ls = await cli(["ls"]);
    expect(ls.stdout.split("\n")).not.toContain("-dash");
    expectOneError(await cli(["get", "--bogus"]), 2, /unknown option --bogus.*-- --bogus/);
  }, 30_000);

  test("a flag before the key does not swallow it: put --if-absent KEY FILE", async () => {
    const file = path.join(dir, "flag-first");
    fs.writeFileSync(file, "from the file");
    const put = await cli(["put", "--if-absent", "flag/first", file], { stdin: "from stdin" });
    expect(put.stderr).toBe("");
    expect(put.code).toBe(0);
    expect((await cli(["get", "flag/first"])).stdout).toBe("from the file");
    expectOneError(await cli(["put", "--if-absent", "flag/first", file]), 1, /condition failed/);
  }, 30_000);

  test("put -- -dash FILE stores it; get, stat, ls and delete take -- too", async () => {
    const file = path.join(dir, "dash");
    fs.writeFileSync(file, "dash value");
    const put = await cli(["put", "--", "-dash", file]);
    expect(put.stderr).toBe("");
    expect(put.code).toBe(0);
    expect((await cli(["get", "--", "-dash"])).stdout).toBe("dash value");
    expect((await cli(["stat", "--", "-dash"])).stdout).toMatch(/^key {7}-dash$/m);
    expect((await cli(["ls", "--", "-d"])).stdout).toBe("-dash\n");
    // Options still work before the --, and a value may come from stdin with - after it.
    const stdin = await cli(["put", "--if-absent", "--", "--double", "-"], { stdin: "dd" });
    expect(stdin.code).toBe(0);
    expect((await cli(["get", "--", "--double"])).stdout).toBe("dd");
    expect((await cli(["delete", "--", "-dash"])).code).toBe(0);
    expectOneError(await cli(["get", "--", "-dash"]), 1, /not found/);
  }, 30_000);
});
