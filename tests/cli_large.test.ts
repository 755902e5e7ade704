/**
 * Large objects through the real command line against a real 3-replica cluster with 1 MiB blocks
 * (docs/LARGE_OBJECTS.md §11.2): a 64 MiB put and get compared by sha256, ranges, -o through a
 * temporary file, metadata shown by stat, stdin of unknown size, a source file that shrinks while
 * it is streamed, an object replaced while it is read, and abort-upload.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { TestCluster, toastyfsCommand, waitFor } from "./support/cluster.ts";
import { expectOneError, toastyfs, type RunOptions } from "./support/cli.ts";
import { Client, clusterStatus } from "../lib/client/client.ts";
import { bodySource } from "../lib/client/body_source.ts";

const mib = 1024 * 1024;
let cluster: TestCluster;
let dir: string;
let big: string;
let big_sha: string;

beforeAll(async () => {
  cluster = await TestCluster.start(3, { extra_args: ["--block-size-max", String(mib)] });
  dir = path.join(cluster.dir, "files");
  fs.mkdirSync(dir);
  big = path.join(dir, "big");
  fs.writeFileSync(big, pattern(64 * mib, 1));
  big_sha = sha256(fs.readFileSync(big));
}, 60_000);

afterAll(async () => {
  await cluster?.destroy();
});

function cli(args: string[], options: RunOptions = {}) {
  return toastyfs([...args, "--cluster", cluster.cluster_arg], { timeout_ms: 120_000, ...options });
}

/** Bytes that differ at every offset and per seed (a block in the wrong place would show). */
function pattern(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let x = seed >>> 0;
  for (let i = 0; i + 4 <= size; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    view.setUint32(i, x ^ i, true);
  }
  return out;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function openUploads(): Promise<number> {
  const statuses = await clusterStatus(cluster.addresses);
  return Math.max(...statuses.map((s) => s?.counters.uploads_open ?? 0));
}

/** Every replica has executed the abort (a backup learns of the commit a moment after the primary). */
async function noOpenUploads(): Promise<void> {
  const statuses = async () => (await clusterStatus(cluster.addresses)).map((s) => s?.counters.uploads_open ?? -1);
  await waitFor("no open upload on any replica", async () => (await statuses()).every((n) => n === 0), 10_000, 10);
}

/** Starts `put KEY FILE` of a fresh 64 MiB file, calls disturb once the upload is open (the put is
 * then streaming the file), and returns how the put ended. */
async function putAndDisturb(
  key: string,
  name: string,
  disturb: (file: string, child: Bun.Subprocess) => void,
): Promise<{ code: number; stderr: string }> {
  const file = path.join(dir, name);
  fs.writeFileSync(file, pattern(64 * mib, name.length));
  const child = Bun.spawn([...toastyfsCommand(), "put", key, file, "--cluster", cluster.cluster_arg], { stdout: "pipe", stderr: "pipe" });
  await waitFor("the upload to open", async () => (await openUploads()) > 0, 30_000, 5);
  disturb(file, child);
  const code = await child.exited;
  return { code, stderr: await new Response(child.stderr).text() };
}

describe("large objects through the CLI", () => {
  test("a 64 MiB file put with 1 MiB blocks and got with -o is the same bytes; stat shows 64 blocks and the MD5", async () => {
    const put = await cli(["put", "big/one", big]);
    expect(put.stderr).toBe("");
    expect(put.code).toBe(0);
    expect(put.stdout).toMatch(/^\d+\n$/);
    const out = path.join(dir, "big.out");
    const get = await cli(["get", "big/one", "-o", out]);
    expect(get.stderr).toBe("");
    expect(get.code).toBe(0);
    expect(sha256(fs.readFileSync(out))).toBe(big_sha);
    // Written through a temporary file that is gone once renamed.
    expect(fs.readdirSync(dir).filter((f) => f.includes(".toastyfs-"))).toEqual([]);
    const stat = await cli(["stat", "big/one"]);
    expect(stat.stdout).toMatch(/^size\s+67108864 /m);
    expect(stat.stdout).toMatch(/^kind\s+chunked \(64 blocks/m);
    expect(stat.stdout).toContain(`md5       ${createHash("md5").update(fs.readFileSync(big)).digest("hex")}`);
    const stdout = await cli(["get", "big/one"]);
    expect(sha256(stdout.stdout_bytes)).toBe(big_sha);
  }, 120_000);

  test("the admin shell's put @FILE streams a file above the 16 MiB value limit as an upload", async () => {
    const put = await cli(["admin", "-c", "put admin/big @" + big]);
    expect(put.stderr).toBe("");
    expect(put.code).toBe(0);
    expect(put.stdout).toMatch(/^admin\/big: version \d+ \(67108864 bytes\)\n$/);
    const out = path.join(dir, "admin.out");
    expect((await cli(["get", "admin/big", "-o", out])).code).toBe(0);
    expect(sha256(fs.readFileSync(out))).toBe(big_sha);
  }, 120_000);

  test("--range START-END, START- and -N give exactly those bytes; a range past the end names the size", async () => {
    expect((await cli(["put", "big/range", big])).code).toBe(0);
    const bytes = fs.readFileSync(big);
    const cases: [string, number, number][] = [
      [`${mib - 10}-${mib + 9}`, mib - 10, mib + 10],
      [`${60 * mib + 5}-`, 60 * mib + 5, 64 * mib],
      ["-1000", 64 * mib - 1000, 64 * mib],
      ["0-0", 0, 1],
    ];
    for (const [range, from, to] of cases) {
      // --range=-N: as a separate argument, -1000 would read as options.
      const r = await cli(["get", "big/range", `--range=${range}`]);
      expect({ range, code: r.code, stderr: r.stderr }).toEqual({ range, code: 0, stderr: "" });
      expect({ range, sha: sha256(r.stdout_bytes) }).toEqual({ range, sha: sha256(bytes.subarray(from, to)) });
    }
    expectOneError(
      await cli(["get", "big/range", "--range", `${64 * mib}-`]),
      1,
      /range 67108864- is outside the object \(67108864 bytes\)/,
    );
    expectOneError(await cli(["get", "big/range", "--range", "5-2"]), 2, /--range must be START-END, START- or -N/);
  }, 120_000);

  test("--content-type and --meta are stored and shown by stat", async () => {
    const file = path.join(dir, "meta");
    fs.writeFileSync(file, pattern(3 * mib + 17, 2));
    const args = ["put", "big/meta", file, "--content-type", "application/x-test", "--meta", "owner=ann", "--meta", "build-id=42"];
    expect((await cli(args)).code).toBe(0);
    const stat = await cli(["stat", "big/meta"]);
    expect(stat.stdout).toMatch(/^type\s+application\/x-test$/m);
    expect(stat.stdout).toMatch(/^meta\s+build-id=42$/m);
    expect(stat.stdout).toMatch(/^meta\s+owner=ann$/m);
    // A small value with metadata is one put_object: the same lines.
    expect((await cli(["put", "small/meta", "-", "--meta", "a=b"], { stdin: "tiny" })).code).toBe(0);
    expect((await cli(["stat", "small/meta"])).stdout).toMatch(/^kind\s+inline$[\s\S]*^meta\s+a=b$/m);
  }, 60_000);

  test("stdin of unknown size larger than a block streams as an upload and reads back exactly", async () => {
    const value = pattern(5 * mib + 3, 3);
    const put = await cli(["put", "big/stdin", "-"], { stdin: value });
    expect(put.stderr).toBe("");
    expect(put.code).toBe(0);
    expect(sha256((await cli(["get", "big/stdin"])).stdout_bytes)).toBe(sha256(value));
    expect((await cli(["stat", "big/stdin"])).stdout).toMatch(/^kind\s+chunked \(6 blocks/m);
  }, 60_000);

  test("a source file that shrinks while it is put: source_changed naming the sizes, the upload aborted, nothing stored", async () => {
    // Once the upload is open the put is reading the file: cut it short under it.
    const r = await putAndDisturb("big/shrink", "shrinking", (file) => fs.truncateSync(file, 2 * mib));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error: put big\/shrink: .*shrinking shrank from 67108864 to \d+ bytes while it was read; upload \d+ was aborted\n$/,
    );
    await noOpenUploads();
    expectOneError(await cli(["stat", "big/shrink"]), 1, /not found/);
  }, 60_000);

  test("Ctrl-C during a put aborts its upload before exiting", async () => {
    const r = await putAndDisturb("big/interrupted", "interrupted", (_file, child) => child.kill("SIGINT"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: put big\/interrupted: the put was cancelled; upload \d+ was aborted\n$/);
    await noOpenUploads();
    expectOneError(await cli(["stat", "big/interrupted"]), 1, /not found/);
  }, 60_000);

  test("the TypeScript client: a stream put, a ranged getStream, parts sent in parallel out of order, head with metadata", async () => {
    const client = new Client({ addresses: cluster.addresses });
    try {
      const value = pattern(9 * mib + 5, 6);
      const put = await client.put("ts/stream", new Blob([value]).stream(), { content_type: "text/x", meta: { k: "v" } });
      expect(put.size).toBe(value.length);
      expect(put.md5).toEqual(new Uint8Array(createHash("md5").update(value).digest()));
      const h = await client.head("ts/stream");
      expect({ size: h.size, version: h.version, checksum: h.checksum, type: h.metadata?.content_type }).toEqual({
        size: value.length,
        version: put.version,
        checksum: put.checksum,
        type: "text/x",
      });
      const got = await client.getStream("ts/stream", { range: { start: 3 * mib - 1, end: 7 * mib } });
      expect(sha256(new Uint8Array(await new Response(got.body).arrayBuffer()))).toBe(sha256(value.subarray(3 * mib - 1, 7 * mib + 1)));
      const upload = await client.createUpload("ts/parts", { if_absent: true });
      const parts = await Promise.all([3, 1, 2].map((n) => upload.sendPart(n, bodySource(pattern(2 * mib + n, n)))));
      const done = await upload.complete(parts, {});
      const whole = await client.getStream("ts/parts");
      const expected = Buffer.concat([1, 2, 3].map((n) => pattern(2 * mib + n, n)));
      expect(whole.header.version).toBe(done.version);
      expect(sha256(new Uint8Array(await new Response(whole.body).arrayBuffer()))).toBe(sha256(expected));
      // Below value_size_max, the old get assembles a chunked object with the xxh64 of its bytes.
      expect(sha256((await client.get("ts/parts")).value)).toBe(sha256(expected));
    } finally {
      await client.close();
    }
  }, 60_000);

  test("an object replaced while it is streamed: object_changed naming both versions, exit 1", async () => {
    const v1 = Number((await cli(["put", "big/changing", big])).stdout);
    const child = Bun.spawn([...toastyfsCommand(), "get", "big/changing", "--cluster", cluster.cluster_arg], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const reader = child.stdout.getReader();
    // The first bytes mean the first read (version 0) is done; later reads name its version.
    expect((await reader.read()).done).toBe(false);
    const client = new Client({ addresses: cluster.addresses });
    const v2 = (await client.put("big/changing", new TextEncoder().encode("new"))).version;
    await client.close();
    while (!(await reader.read()).done);
    expect(await child.exited).toBe(1);
    expect(await new Response(child.stderr).text()).toBe(
      `error: get big/changing: changed while it was read (version ${v1} replaced by version ${v2})\n`,
    );
  }, 60_000);

  test("abort-upload aborts an open upload; a second time it is not found", async () => {
    const client = new Client({ addresses: cluster.addresses });
    const upload = await client.createUpload("big/aborted");
    await client.close();
    await waitFor("the upload on every replica", async () => (await openUploads()) === 1, 10_000, 10);
    const r = await cli(["abort-upload", String(upload.id)]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    await noOpenUploads();
    expectOneError(await cli(["abort-upload", String(upload.id)]), 1, /upload not found/);
    expectOneError(await cli(["abort-upload", "x"]), 2, /upload id must be a whole number/);
  }, 60_000);
});
