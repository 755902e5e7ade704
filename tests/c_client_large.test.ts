/**
 * The C client's large objects (clients/c: md5.c, wire_large.c, large.c). Without a cluster: its
 * unit tests under valgrind (MD5 against RFC 1321's test suite, PROTOCOL.md §5.11-5.12 vectors,
 * malformed read replies), every request body it encodes compared byte for byte with what
 * lib/store/large_bodies.ts encodes for the same input, read replies built by the TypeScript encoder
 * (valid and corrupted) parsed alike by both, and MD5 against Bun's. Against a real 3-replica cluster
 * with 1 MiB blocks, under valgrind: a 64 MiB put_fd/get_fd round trip, toastyfs_put/get above the
 * block size and above 16 MiB, get_stream ranges, a source that fails mid-way (upload aborted, no
 * leak), declared sizes and conditions, metadata, an object replaced while it is read.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as path from "node:path";
import { Condition } from "../lib/store/operations.ts";
import {
  ObjectKind,
  decodeReadReply,
  encodeAbortUpload,
  encodeCompleteUpload,
  encodeCreateUpload,
  encodePutObject,
  encodeReadReply,
  encodeReadRequest,
  encodeUserMeta,
  encodeWriteBlock,
  manifestChecksum,
  partChecksum,
  type ReadReply,
} from "../lib/store/large_bodies.ts";
import { checksum } from "../lib/util/checksum.ts";
import { repo, TestCluster, waitFor } from "./support/cluster.ts";

const c_dir = path.join(repo, "clients/c");
const build_dir = path.join(c_dir, "build");
const valgrind = Bun.which("valgrind");
const valgrind_args = ["--leak-check=full", "--error-exitcode=1", "--errors-for-leak-kinds=definite,indirect,possible"];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string[], options: { stdin?: Uint8Array; timeout_ms?: number } = {}): Promise<Run> {
  const proc = Bun.spawn(cmd, { cwd: c_dir, stdout: "pipe", stderr: "pipe", stdin: options.stdin ?? "ignore" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeout_ms ?? 60_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const u64hex = (n: bigint) => n.toString(16).padStart(16, "0");
const ascii = (s: string) => new TextEncoder().encode(s);

beforeAll(async () => {
  const made = await run(["make", "-C", c_dir, "all", "tests"], { timeout_ms: 120_000 });
  if (made.code !== 0) throw new Error(`make failed:\n${made.stdout}\n${made.stderr}`);
}, 120_000);

describe("C client large objects: codec", () => {
  test("large_unit_test (MD5 test suite of RFC 1321, PROTOCOL.md §5.11-5.12, malformed replies) passes under valgrind", async () => {
    const cmd = [path.join(build_dir, "large_unit_test")];
    const r = valgrind === null ? await run(cmd) : await run([valgrind, ...valgrind_args, ...cmd]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain(", 0 failed");
    if (valgrind !== null) expect(r.stderr).toContain("All heap blocks were freed -- no leaks are possible");
    console.log(r.stdout.trim());
  });

  test("every request body and checksum the C client encodes is byte for byte what large_bodies.ts encodes", async () => {
    const r = await run([path.join(build_dir, "large_unit_test"), "bodies"]);
    expect(r.code, r.stderr).toBe(0);
    const c = new Map(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => l.split(" ") as [string, string]),
    );
    const md5 = new Bun.CryptoHasher("md5").update("hello").digest() as Uint8Array;
    const metadata = {
      content_type: "text/plain; charset=utf-8",
      user_meta: encodeUserMeta([
        { name: "zeta", value: ascii("last") },
        { name: "alpha-1", value: new Uint8Array([0, 1, 2]) },
        { name: "m", value: new Uint8Array(0) },
      ]),
    };
    const none = { content_type: "", user_meta: new Uint8Array(0) };
    const parts = [
      { part_number: 1, block_count: 3, attempt: 0x0102030405060708n, part_size: 300, part_checksum: 0xdeadbeefcafef00dn },
      { part_number: 10000, block_count: 1048576, attempt: 0xffffffffffffffffn, part_size: 5, part_checksum: 7n },
    ];
    const expected: Record<string, string> = {
      create_upload: hex(
        encodeCreateUpload({
          key: ascii("big/object"),
          condition: Condition.if_version,
          if_version: 7,
          declared_size: 123456789,
          metadata,
        }),
      ),
      create_upload_plain: hex(
        encodeCreateUpload({ key: ascii("k"), condition: Condition.if_absent, if_version: 0, declared_size: null, metadata: none }),
      ),
      write_block: hex(
        encodeWriteBlock({
          upload_id: 2 ** 53 - 1,
          part_number: 10000,
          block_index: 1048575,
          attempt: 0xffffffffffffffffn,
          checksum: checksum(ascii("xyz")),
          data: ascii("xyz"),
        }),
      ),
      complete_upload: hex(
        encodeCompleteUpload({ upload_id: 42, condition: Condition.if_version, if_version: 9, declared_size: 305, md5, parts }),
      ),
      complete_upload_empty: hex(
        encodeCompleteUpload({ upload_id: 43, condition: Condition.none, if_version: 0, declared_size: null, md5: null, parts: [] }),
      ),
      abort_upload: hex(encodeAbortUpload(42)),
      put_object: hex(encodePutObject({ key: ascii("k"), condition: Condition.none, if_version: 0, md5, metadata, value: ascii("hello") })),
      put_object_plain: hex(
        encodePutObject({
          key: ascii("key"),
          condition: Condition.if_version,
          if_version: 3,
          md5: null,
          metadata: none,
          value: new Uint8Array(0),
        }),
      ),
      read: hex(
        encodeReadRequest({ key: ascii("big/object"), version: 9, offset: 2 ** 40, length: 4194304, metadata: false, block_map: true }),
      ),
      part_checksum: u64hex(partChecksum([1n, 2n, 0xffffffffffffffffn])),
      manifest_checksum: u64hex(manifestChecksum([1n, 2n, 0xffffffffffffffffn], 12345)),
    };
    expect(Object.fromEntries(c)).toEqual(expected);
  });

  test("read replies built by encodeReadReply, and corruptions of them, are accepted or refused as decodeReadReply does", async () => {
    const world = ascii("world");
    const block = (start: number, size: number, c: bigint) => ({ start, size, checksum: c });
    const header = {
      version: 5,
      timestamp: 1700000000301,
      size: 1000,
      checksum: 0x1234n,
      kind: ObjectKind.chunked,
      block_count: 10,
      md5: new Uint8Array(16).fill(7),
      metadata: { content_type: "a/b", user_meta: encodeUserMeta([{ name: "k", value: ascii("v") }]) },
    };
    const replies: ReadReply[] = [
      { header, block_map: [block(100, 100, 1n), block(200, 100, 2n)], data: new Uint8Array(150).fill(9) },
      { header: { ...header, metadata: null, md5: null }, block_map: null, data: new Uint8Array(0) },
      { header: { ...header, size: 0, block_count: 0, metadata: null }, block_map: [], data: new Uint8Array(0) },
      {
        header: { ...header, kind: ObjectKind.inline, size: 5, block_count: 1, checksum: checksum(world), md5: null },
        block_map: [block(0, 5, checksum(world))],
        data: world.subarray(1, 4),
      },
    ];
    const bodies: Uint8Array[] = [];
    for (const reply of replies) {
      const body = encodeReadReply(reply);
      bodies.push(body);
      // Every single-byte corruption of the fixed header and the block map, and every cut.
      for (let i = 0; i < Math.min(body.length, 160); i += 1) {
        const changed = body.slice();
        changed[i] = changed[i]! ^ (i % 3 === 0 ? 0x01 : i % 3 === 1 ? 0x80 : 0x20);
        bodies.push(changed);
      }
      for (let cut = 0; cut < body.length; cut += 7) bodies.push(body.subarray(0, cut));
    }
    const expected = (body: Uint8Array): string => {
      const r = decodeReadReply(body);
      if (r === null) return "malformed";
      const h = r.header;
      const md5 = h.md5 === null ? "none" : hex(h.md5);
      const map = r.block_map === null ? " none" : r.block_map.map((b) => ` ${b.start}+${b.size}:${u64hex(b.checksum)}`).join("");
      return `version ${h.version} timestamp ${h.timestamp} size ${h.size} checksum ${u64hex(h.checksum)} kind ${h.kind} blocks ${h.block_count} md5 ${md5} data ${r.data.length} map${map}`;
    };
    const tool = path.join(build_dir, "large_unit_test");
    let accepted = 0;
    for (let i = 0; i < bodies.length; i += 1) {
      const r = await run([tool, "read-reply"], { stdin: bodies[i]! });
      expect(r.code).toBe(0);
      const want = expected(bodies[i]!);
      expect(r.stdout.trim(), `body ${i}: ${hex(bodies[i]!)}`).toBe(want);
      if (want !== "malformed") accepted += 1;
    }
    console.log(`read replies: ${bodies.length} parsed alike by C and TypeScript (${accepted} accepted)`);
  }, 120_000);

  test("MD5 of 0 B .. 1 MiB + 13 B, fed in pieces of varying size, agrees with Bun's", async () => {
    const sizes = [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 65536, 1024 * 1024 + 13];
    for (const size of sizes) {
      const data = new Uint8Array(size);
      for (let i = 0; i < size; i += 65536) crypto.getRandomValues(data.subarray(i, Math.min(size, i + 65536)));
      const r = await run([path.join(build_dir, "large_unit_test"), "md5"], { stdin: data });
      expect(r.code).toBe(0);
      expect(r.stdout.trim(), `size ${size}`).toBe(hex(new Bun.CryptoHasher("md5").update(data).digest() as Uint8Array));
    }
  });
});

describe("C client large objects against a real 3-replica cluster with 1 MiB blocks", () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start(3, { extra_args: ["--block-size-max", String(1024 * 1024)] });
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  test("64 MiB put_fd/get_fd, puts and gets above the block size and 16 MiB, ranges, failing sources, conditions, metadata, object_changed: valgrind clean, no upload left open", async () => {
    const cmd = [path.join(build_dir, "large_client_test"), "large", cluster.cluster_arg];
    const started = Date.now();
    const r =
      valgrind === null
        ? await run(cmd, { timeout_ms: 400_000 })
        : await run([valgrind, ...valgrind_args, ...cmd], { timeout_ms: 400_000 });
    const context = `--- stdout\n${r.stdout}\n--- stderr\n${r.stderr.slice(-6000)}`;
    expect(r.code, context).toBe(0);
    expect(r.stdout, context).toContain("large: ok");
    if (valgrind !== null) {
      expect(r.stderr, context).toContain("ERROR SUMMARY: 0 errors from 0 contexts");
      expect(r.stderr, context).toContain("All heap blocks were freed -- no leaks are possible");
    } else console.warn("valgrind is not installed: large_client_test ran without it (no memory check)");
    console.log(`${r.stdout.trim()}\n(${valgrind === null ? "native" : "valgrind"}, ${Date.now() - started} ms)`);
    // Every upload the program started was completed or aborted: none is left for expiry.
    const open = async () => (await cluster.status()).map((s) => s?.counters.uploads_open ?? null);
    await waitFor("no open upload on any replica", async () => (await open()).every((n) => n === 0), 10_000, 50);
    console.log(`uploads_open per replica after the run: ${(await open()).join(", ")}`);
  }, 420_000);
});
