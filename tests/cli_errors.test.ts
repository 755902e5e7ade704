/**
 * Every bad input a new user would try gives exactly one `error: ...` line on stderr, the right
 * exit code (2 usage, 1 the operation failed) and no stack trace. No cluster runs here: the
 * addresses given are free ports nobody listens on.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePorts } from "./support/cluster.ts";
import { expectOneError, toastyfs } from "./support/cli.ts";

let nobody: string;
let tmp: string;
const long_key = "k".repeat(1089);

beforeAll(async () => {
  nobody = (await freePorts(3)).map((p) => `127.0.0.1:${p}`).join(",");
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-cli-"));
});

describe("usage errors exit 2 with one line", () => {
  const cases: [string, string[], RegExp][] = [
    ["unknown command", ["frobnicate"], /unknown command "frobnicate".*put/],
    ["unknown option", ["get", "k", "--bogus"], /unknown option --bogus/],
    ["unknown option on put", ["put", "k", "--prot", "1"], /unknown option --prot/],
    ["missing argument to put", ["put"], /missing argument.*put <key>/],
    ["missing argument to get", ["get"], /missing argument.*get <key>/],
    ["missing argument to stat", ["stat"], /missing argument/],
    ["missing argument to delete", ["delete"], /missing argument/],
    ["too many arguments", ["get", "a", "b"], /too many arguments/],
    ["option without its value", ["get", "k", "--cluster"], /--cluster.*needs a value/],
    ["bad --cluster address", ["get", "k", "--cluster", "nope"], /bad address "nope"/],
    ["bad port", ["ls", "--cluster", "127.0.0.1:99999"], /port must be 1-65535/],
    ["duplicate address", ["ls", "--cluster", "127.0.0.1:7001,127.0.0.1:7001"], /listed twice/],
    ["key over 1088 bytes (get)", ["get", long_key], /1089 bytes: keys are 1 to 1088 bytes/],
    ["key over 1088 bytes (put)", ["put", long_key, "-"], /1089 bytes/],
    ["key over 1088 bytes (delete)", ["delete", long_key], /1089 bytes/],
    ["key over 1088 bytes (stat)", ["stat", long_key], /1089 bytes/],
    ["file that does not exist", ["put", "k", "/nonexistent/file"], /cannot read \/nonexistent\/file: no such file/],
    ["bad --if-version", ["put", "k", "-", "--if-version", "abc"], /--if-version must be a version number/],
    ["bad --timeout", ["get", "k", "--timeout", "soon"], /--timeout must be/],
    ["serve without --addr", [], /--addr host:port is required/],
    ["serve with a bad address", ["--addr", "localhost"], /bad address "localhost"/],
    ["serve with a bad metrics address", ["--addr", "127.0.0.1:7001", "--metrics", "x"], /--metrics: bad address/],
    ["serve with a bad log level", ["--addr", "127.0.0.1:7001", "--log-level", "loud"], /--log-level must be/],
    ["serve with a scrub rate of 0", ["--addr", "127.0.0.1:7001", "--scrub-rate", "0"], /--scrub-rate must be between 1 and 6710, got 0/],
    ["dev with an even replica count", ["dev", "--replicas", "2"], /--replicas must be odd/],
    ["dev with a bad port", ["dev", "--base-port", "abc"], /--base-port must be a whole number/],
    ["admin -c with an unknown command", ["admin", "-c", "bogus", "--cluster", "127.0.0.1:7001"], /unknown command "bogus"/],
    ["admin -c with a missing argument", ["admin", "-c", "get", "--cluster", "127.0.0.1:7001"], /missing argument: usage: get KEY/],
    // Issue 12: a key starting with - is an unknown option (not `-h` hidden in `-dash`), and says how to pass it.
    [
      "a key starting with - without --",
      ["put", "-dash", "/etc/hostname"],
      /unknown option -d \(in "-dash"\) for toastyfs put.*toastyfs put -- -dash/,
    ],
    ["an unknown option before --help", ["get", "--bogus", "--help"], /unknown option --bogus/],
    // Issue 12: one of the two conditions used to be dropped in the admin shell.
    [
      "admin put with --if-absent and --if-version",
      ["admin", "-c", "put --if-absent --if-version 3 k v", "--timeout", "1"],
      /--if-version or --if-absent, not both/,
    ],
    ["admin put of a file that does not exist", ["admin", "-c", "put @/nonexistent", "--timeout", "1"], /\/nonexistent/],
    ["admin put with no value", ["admin", "-c", "put k", "--timeout", "1"], /no value for k.*put k ""/],
    // Issue 12: an empty argument was read as the number 0.
    ["empty --if-version", ["put", "k", "-", "--if-version", "", "--timeout", "1"], /--if-version is empty/],
    ["empty --timeout", ["get", "k", "--timeout", ""], /--timeout is empty/],
    ["empty --output", ["get", "k", "-o", "", "--timeout", "1"], /--output is empty/],
    ["empty admin -c", ["admin", "-c", "", "--timeout", "1"], /--command is empty/],
    [
      "a number-like --if-version",
      ["put", "k", "-", "--if-version", "1e3", "--timeout", "1"],
      /--if-version must be a version number.*"1e3"/,
    ],
  ];
  // Run them all at once: each is a separate process and none touches a cluster.
  let results: Awaited<ReturnType<typeof toastyfs>>[] = [];
  beforeAll(async () => {
    results = await Promise.all(cases.map(([, args]) => toastyfs(args, { env: { TOASTYFS_CLUSTER: nobody }, timeout_ms: 20_000 })));
  }, 60_000);
  cases.forEach(([name, , pattern], i) => {
    test(name, () => expectOneError(results[i]!, 2, pattern));
  });

  test("a bad TOASTYFS_CLUSTER names the variable", async () => {
    expectOneError(await toastyfs(["ls"], { env: { TOASTYFS_CLUSTER: "a:b:c" } }), 2, /TOASTYFS_CLUSTER: bad address/);
  });

  test("a directory given as the file", async () => {
    expectOneError(await toastyfs(["put", "k", tmp], { env: { TOASTYFS_CLUSTER: nobody } }), 2, /is a directory/);
  });
});

describe("an unreachable cluster fails with exit 1, saying a majority must run", () => {
  test("get, put, ls, stat and delete give up after --timeout", async () => {
    const file = path.join(tmp, "value");
    fs.writeFileSync(file, "v");
    const runs = await Promise.all([
      toastyfs(["get", "k", "--cluster", nobody, "--timeout", "1.5"]),
      toastyfs(["put", "k", file, "--cluster", nobody, "--timeout", "1.5"]),
      toastyfs(["ls", "--cluster", nobody, "--timeout", "1.5"]),
      toastyfs(["stat", "k", "--timeout", "1.5"], { env: { TOASTYFS_CLUSTER: nobody } }),
      toastyfs(["delete", "k", "--cluster", nobody, "--timeout", "1.5"]),
    ]);
    for (const r of runs) {
      expectOneError(r, 1, /within 1500 ms.*a majority \(2 of 3\) of .* running and reachable/);
      expect(r.elapsed_ms).toBeLessThan(10_000);
    }
  }, 30_000);

  // Started at once, checked last: it takes the full default timeout.
  let default_timeout: Promise<Awaited<ReturnType<typeof toastyfs>>>;
  beforeAll(() => {
    default_timeout = toastyfs(["get", "k", "--cluster", nobody], { timeout_ms: 20_000 });
  });

  test("status lists every replica as down and says there is no quorum (exit 1)", async () => {
    const r = await toastyfs(["status", "--cluster", nobody]);
    expect(r.code).toBe(1);
    for (const address of nobody.split(",")) expect(r.stdout).toMatch(new RegExp(`${address.replace(/\./g, "\\.")}\\s+no\\s+down`));
    expect(r.stdout).toMatch(/^no quorum: only 0 of 3 replicas answer and 2 are needed/m);
  });

  test("admin in line mode reports the failure and exits 1", async () => {
    const r = await toastyfs(["admin", "--cluster", nobody, "--timeout", "1"], { stdin: "get k\n" });
    expectOneError(r, 1, /^error: line 1: get k: no replica completed/);
  }, 20_000);

  test("without --timeout a CLI command gives up after 10 s, not the library's 15 s", async () => {
    const r = await default_timeout;
    expectOneError(r, 1, /within 10000 ms/);
    expect(r.elapsed_ms).toBeLessThan(14_000);
  }, 30_000);
});

describe("help and version", () => {
  test("--help lists the commands and exits 0", async () => {
    const r = await toastyfs(["--help"]);
    expect(r.code).toBe(0);
    for (const command of ["dev", "put", "get", "delete", "ls", "stat", "status", "admin", "serve"]) expect(r.stdout).toContain(command);
  });

  test("put --help shows its options", async () => {
    const r = await toastyfs(["put", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("--if-version");
    expect(r.stdout).toContain("--cluster");
  });

  test("--version and -v print toastyfs's own version (package.json), not the runtime's", async () => {
    const version = (await Bun.file(path.join(import.meta.dir, "../package.json")).json()).version as string;
    for (const flag of ["--version", "-v"]) {
      const r = await toastyfs([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toStartWith(`toastyfs ${version} `);
      expect(r.stdout).not.toMatch(/bun-v2\d/);
    }
  });

  test("dev --help says metrics are on unless --no-metrics", async () => {
    const r = await toastyfs(["dev", "--help"]);
    expect(r.code).toBe(0);
    const line = r.stdout.split("\n").find((l) => l.includes("--no-metrics"));
    expect(line).toBeDefined();
    expect(line).not.toContain("(default: true)");
    expect(line).toMatch(/metrics are served by default/);
  });
});
