/**
 * The object commands and the admin line mode through the real command line, against a real
 * 3-replica cluster: put (file and stdin), get (stdout and -o), ls, ls --long, stat, delete,
 * conditional puts, status, and `toastyfs admin` fed from a pipe.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { TestCluster } from "./support/cluster.ts";
import { expectOneError, toastyfs, type RunOptions } from "./support/cli.ts";

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

/** toastyfs with --cluster pointing at the test cluster. */
function cli(args: string[], options: RunOptions = {}) {
  return toastyfs([...args, "--cluster", cluster.cluster_arg], options);
}

describe("object commands", () => {
  test("put from stdin prints the version; get writes the raw bytes to stdout", async () => {
    const put = await cli(["put", "hello", "-"], { stdin: "hello, world\n" });
    expect(put.stderr).toBe("");
    expect(put.code).toBe(0);
    expect(put.stdout).toMatch(/^\d+\n$/);
    const get = await cli(["get", "hello"]);
    expect(get.code).toBe(0);
    expect(get.stdout).toBe("hello, world\n");
    // No file argument at all also reads stdin.
    const again = await cli(["put", "hello"], { stdin: "second\n" });
    expect(Number(again.stdout)).toBeGreaterThan(Number(put.stdout));
    expect((await cli(["get", "hello"])).stdout).toBe("second\n");
  }, 30_000);

  test("put FILE and get -o FILE round-trip 3 MiB of binary data exactly", async () => {
    const value = new Uint8Array(3 * 1024 * 1024);
    for (let i = 0; i < value.length; i++) value[i] = (i * 31 + (i >> 8)) & 0xff;
    const input = path.join(dir, "in.bin");
    const output = path.join(dir, "out.bin");
    fs.writeFileSync(input, value);
    const put = await cli(["put", "blobs/big", input]);
    expect(put.code).toBe(0);
    const get = await cli(["get", "blobs/big", "-o", output]);
    expect(get.code).toBe(0);
    expect(get.stdout).toBe("");
    expect(Buffer.compare(fs.readFileSync(output), Buffer.from(value))).toBe(0);
    const stdout = await cli(["get", "blobs/big"]);
    expect(Buffer.compare(Buffer.from(stdout.stdout_bytes), Buffer.from(value))).toBe(0);
  }, 30_000);

  test("an empty value round-trips", async () => {
    expect((await cli(["put", "empty", "-"], { stdin: "" })).code).toBe(0);
    const get = await cli(["get", "empty"]);
    expect(get.code).toBe(0);
    expect(get.stdout_bytes.length).toBe(0);
  }, 30_000);

  test("ls lists keys by prefix, ls --long adds size, version, checksum and time; stat shows one", async () => {
    for (const k of ["dir/a", "dir/b", "dir/c"]) expect((await cli(["put", k, "-"], { stdin: k })).code).toBe(0);
    const ls = await cli(["ls", "dir/"]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toBe("dir/a\ndir/b\ndir/c\n");
    const all = await cli(["ls"]);
    expect(all.stdout.split("\n")).toContain("hello");
    const long = await cli(["ls", "--long", "dir/"]);
    const rows = long.stdout.trim().split("\n");
    expect(rows.length).toBe(3);
    expect(rows[0]).toMatch(/^\s*5\s+\d+\s+[0-9a-f]{16}\s+\d{4}-\d\d-\d\dT\S+Z\s+dir\/a$/);
    const stat = await cli(["stat", "dir/b"]);
    expect(stat.code).toBe(0);
    expect(stat.stdout).toMatch(/^key\s+dir\/b$/m);
    expect(stat.stdout).toMatch(/^size\s+5 /m);
    expect(stat.stdout).toMatch(/^version\s+\d+$/m);
    expect(stat.stdout).toMatch(/^checksum\s+[0-9a-f]{16}$/m);
  }, 30_000);

  test("delete, then get and stat fail with exit 1 and 'not found'", async () => {
    expect((await cli(["put", "gone", "-"], { stdin: "x" })).code).toBe(0);
    const del = await cli(["delete", "gone"]);
    expect(del.code).toBe(0);
    expect(del.stderr).toBe("");
    expectOneError(await cli(["get", "gone"]), 1, /^error: get gone: not found$/);
    expectOneError(await cli(["stat", "gone"]), 1, /not found/);
    expectOneError(await cli(["delete", "gone"]), 1, /not found/);
  }, 30_000);

  test("--if-absent and --if-version: compare-and-set, exit 1 when the condition fails", async () => {
    const first = await cli(["put", "cas", "-", "--if-absent"], { stdin: "one" });
    expect(first.code).toBe(0);
    const v1 = Number(first.stdout);
    expectOneError(await cli(["put", "cas", "-", "--if-absent"], { stdin: "two" }), 1, /condition failed: the current version is \d+/);
    expectOneError(
      await cli(["put", "cas", "-", "--if-version", String(v1 + 1000)], { stdin: "two" }),
      1,
      new RegExp(`condition failed: the current version is ${v1}`),
    );
    const second = await cli(["put", "cas", "-", "--if-version", String(v1)], { stdin: "two" });
    expect(second.code).toBe(0);
    expect((await cli(["get", "cas"])).stdout).toBe("two");
    expectOneError(await cli(["delete", "cas", "--if-version", String(v1)]), 1, /condition failed/);
    expect((await cli(["delete", "cas", "--if-version", second.stdout.trim()])).code).toBe(0);
  }, 30_000);

  test("TOASTYFS_CLUSTER is used when --cluster is absent", async () => {
    const r = await toastyfs(["get", "hello"], { env: { TOASTYFS_CLUSTER: cluster.cluster_arg } });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("second\n");
  }, 30_000);

  test("get -o into a directory that does not exist: one error line, exit 1", async () => {
    expectOneError(await cli(["get", "hello", "-o", path.join(dir, "no/such/dir/file")]), 1, /cannot write .*no such file or directory/);
  }, 30_000);

  test("put of a missing file or a directory, or with bad metadata: one error line, exit 2, nothing stored", async () => {
    expectOneError(await cli(["put", "nofile", path.join(dir, "missing")]), 2, /cannot read .*missing: no such file or directory/);
    expectOneError(await cli(["put", "nofile", dir]), 2, /cannot read .*: it is a directory/);
    expectOneError(await cli(["put", "nofile", "-", "--meta", "Owner=ann"], { stdin: "x" }), 2, /only a-z, 0-9 and - are allowed/);
    expectOneError(await cli(["put", "nofile", "-", "--meta", "owner"], { stdin: "x" }), 2, /--meta must be name=value/);
    expectOneError(await cli(["stat", "nofile"]), 1, /not found/);
  }, 30_000);
});

describe("status", () => {
  test("one line per replica with role, view, op, commit, checkpoint, lag, disk; healthy", async () => {
    const r = await cli(["status"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^ADDRESS\s+REACHABLE\s+ROLE\s+VIEW\s+OP\s+COMMIT\s+CHECKPOINT\s+LAG\s+DISK$/);
    for (const replica of cluster.replicas)
      expect(r.stdout).toMatch(
        new RegExp(
          `^${replica.address.replace(/\./g, "\\.")}\\s+yes\\s+(primary|backup)\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\S+`,
          "m",
        ),
      );
    expect(lines.filter((l) => /^\S+\s+yes\s+primary\s/.test(l)).length).toBe(1);
    expect(lines[lines.length - 1]).toMatch(/^healthy: 3 of 3 replicas up, primary 127\.0\.0\.1:\d+$/);
  }, 30_000);
});

describe("admin in line mode (stdin is a pipe)", () => {
  test("status and get: every replica and the value, exit 0", async () => {
    expect((await cli(["put", "admin/key", "-"], { stdin: "the value" })).code).toBe(0);
    const r = await cli(["admin"], { stdin: "status\nget admin/key\n", timeout_ms: 20_000 });
    expect(r.timed_out).toBe(false);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    for (const replica of cluster.replicas) expect(r.stdout).toContain(replica.address);
    expect(r.stdout).toMatch(/^healthy/m);
    expect(r.stdout).toMatch(/^the value$/m);
  }, 30_000);

  test("comments and blank lines are skipped; put, stat, ls, delete work; quit stops reading", async () => {
    const script = [
      "# a comment",
      "",
      'put "admin/with space" hello   world',
      'stat "admin/with space"',
      'get "admin/with space"',
      "ls admin/",
      "delete admin/key",
      "quit",
      "bogus after quit",
    ].join("\n");
    const r = await cli(["admin"], { stdin: script + "\n", timeout_ms: 20_000 });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^admin\/with space: version \d+ \(13 bytes\)$/m);
    expect(r.stdout).toMatch(/^hello {3}world$/m);
    expect(r.stdout).toMatch(/^admin\/key\nadmin\/with space$/m);
    expect(r.stdout).toMatch(/^admin\/key: deleted$/m);
  }, 30_000);

  test("an unknown command: one error line naming the line, the rest still runs, exit 1", async () => {
    const r = await cli(["admin"], { stdin: "bogus\nget hello\nget admin/nothing\n", timeout_ms: 20_000 });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toEqual([
      'error: line 1: unknown command "bogus" (type help for the list)',
      "error: line 3: get admin/nothing: not found",
    ]);
    expect(r.stdout).toBe("second\n");
  }, 30_000);

  test("help lists the commands; empty input exits 0 at once (never waits past EOF)", async () => {
    const help = await cli(["admin"], { stdin: "help\n", timeout_ms: 10_000 });
    expect(help.code).toBe(0);
    for (const command of ["status", "replica", "ls", "get", "stat", "put", "delete", "quit"])
      expect(help.stdout).toMatch(new RegExp(`^  ${command}\\b`, "m"));
    const empty = await cli(["admin"], { timeout_ms: 10_000 });
    expect(empty.timed_out).toBe(false);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toBe("");
  }, 30_000);

  test("-c runs one command: replica details by index", async () => {
    const r = await cli(["admin", "-c", "replica 0"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`address      ${cluster.replicas[0]!.address} (replica 0)`);
    expect(r.stdout).toMatch(/^ {2}frames_in\s+\d+$/m);
  }, 30_000);
});
