/**
 * The C client's large objects (clients/c: md5.c, wire_large.c, upload.c, read_stream.c). Without a cluster: its
 * unit tests under valgrind (MD5 against RFC 1321's test suite, PROTOCOL.md §5.11-5.12 vectors,
 * malformed read replies), every request body it encodes compared byte for byte with what
 * lib/store/large_bodies.ts encodes for the same input, read replies built by the TypeScript encoder
 * (valid and corrupted) parsed alike by both, and MD5 against Bun's. Against a real 3-replica cluster
 * with 1 MiB blocks, under valgrind: a 64 MiB put_fd/get_fd round trip, toastyfs_put/get above the
 * block size and above 16 MiB, get_stream ranges, a source that fails mid-way (upload aborted, no
 * leak), declared sizes and conditions, metadata, an object replaced while it is read. Against a
 * fake replica that forges replies (short data, wrong block or object checksums, a missing block
 * map, a version that changes, a 3 GiB object, bad upload replies): every call fails cleanly with
 * the status that names the problem, valgrind clean.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Command, encode, finalize, Header, type Message } from "../lib/net/codec.ts";
import { FrameReader } from "../lib/net/frame_reader.ts";
import { membership, parseAddress } from "../lib/net/address.ts";
import { Condition, Operation, Result, encodeU64 } from "../lib/store/operations.ts";
import {
  ObjectKind,
  decodeReadReply,
  decodeReadRequest,
  decodeWriteBlock,
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
import { TestCluster, waitFor } from "./support/cluster.ts";
import { build_dir, c_dir, run, underValgrind, valgrind, type Run } from "./support/c_run.ts";

const MiB = 1024 * 1024;
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
    const r = await run(underValgrind(cmd));
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
    const r = await run(underValgrind(cmd), { timeout_ms: 400_000 });
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

  test("a 128 MiB put_fd and get_fd through files: the process peaks far below the object's size (one block, one message)", async () => {
    const file = path.join(os.tmpdir(), `toastyfs-c-memory-${process.pid}`);
    const chunk = new Uint8Array(MiB);
    crypto.getRandomValues(chunk.subarray(0, 65536));
    const sink = fs.openSync(file, "w");
    try {
      for (let i = 0; i < 128; i++) {
        chunk[65536 + i] = i; // every 1 MiB block differs
        for (let at = 65536; at < MiB; at += 65536) chunk.copyWithin(at, 0, 65536);
        chunk[MiB - 1] = i;
        fs.writeSync(sink, chunk);
      }
      fs.closeSync(sink);
      const r = await run([path.join(build_dir, "large_client_test"), "memory", cluster.cluster_arg, file], { timeout_ms: 120_000 });
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
      const hwm_kib = Number(/VmHWM (\d+) KiB/.exec(r.stdout)?.[1]);
      console.log(`${r.stdout.trim()}`);
      // A 4 MiB block buffer (the handle's size until the cluster says 1 MiB), a 4 MiB read reply and
      // the program itself; 128 MiB would show if anything held the object.
      expect(hwm_kib).toBeGreaterThan(0);
      expect(hwm_kib).toBeLessThan(24 * 1024);
    } finally {
      fs.rmSync(file, { force: true });
    }
  }, 150_000);
});

// --- A fake one-replica cluster that serves one chunked object and forges its replies

type Forgery =
  | "none"
  | "short_data" // a read returns one byte less than asked
  | "bad_block_checksum" // the block map's first checksum is wrong
  | "map_missing" // data without a block map
  | "version_flip" // a pinned read is answered with another version in its header
  | "manifest_wrong" // every block is right, the object's checksum is not
  | "md5_wrong" // the stored MD5 is not the bytes'
  | "object_changed" // the object is replaced after the first read
  | "huge" // get: value_too_large; the object is 3 GiB
  | "create_bad_block_size" // create_upload announces 4 MiB + 1 byte blocks
  | "complete_checksum_wrong"; // complete_upload answers a manifest checksum that is not the blocks'

class ForgingReplica {
  private server: { stop(closeActiveConnections?: boolean): void; port: number } | null = null;
  cluster = 0n;
  address = "";
  private version = 3;
  private readonly data: Uint8Array;
  private readonly blocks: { start: number; size: number; checksum: bigint }[] = [];
  private readonly md5: Uint8Array;
  private received: bigint[] = [];
  private received_bytes = 0;

  constructor(private readonly forgery: Forgery) {
    const size = forgery === "huge" ? 3 * 1024 * MiB : 10 * MiB + 7;
    this.data = new Uint8Array(forgery === "huge" ? 0 : size);
    for (let i = 0; i < this.data.length; i++) this.data[i] = (i * 2654435761) >>> 24;
    for (let start = 0; start < size; start += MiB) {
      const end = Math.min(size, start + MiB);
      this.blocks.push({ start, size: end - start, checksum: forgery === "huge" ? 0n : checksum(this.data.subarray(start, end)) });
    }
    this.md5 = new Bun.CryptoHasher("md5").update(this.data).digest() as Uint8Array;
    if (forgery === "md5_wrong") this.md5[0] = this.md5[0]! ^ 1;
  }

  get size(): number {
    return this.blocks.length === 0 ? 0 : this.blocks[this.blocks.length - 1]!.start + this.blocks[this.blocks.length - 1]!.size;
  }

  start(): void {
    // A reply of 4 MiB does not fit the socket's buffer: what write() did not take waits for drain.
    type State = { reader: FrameReader; pending: Uint8Array[] };
    const flush = (socket: { data: State; write(b: Uint8Array): number }) => {
      while (socket.data.pending.length > 0) {
        const next = socket.data.pending[0]!;
        const written = socket.write(next);
        if (written === next.length) socket.data.pending.shift();
        else {
          socket.data.pending[0] = next.subarray(Math.max(0, written));
          return;
        }
      }
    };
    const server = Bun.listen<State>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: (socket) => {
          socket.data = { reader: new FrameReader({ cluster: this.cluster }), pending: [] };
        },
        data: (socket, chunk) => {
          let message: Message | null;
          try {
            socket.data.reader.push(chunk);
            while ((message = socket.data.reader.next()) !== null) {
              if (message.header.command !== Command.request) continue;
              socket.data.pending.push(this.answer(message));
              flush(socket);
            }
          } catch {
            socket.end();
          }
        },
        drain: (socket) => flush(socket),
      },
    });
    this.server = server;
    const m = membership([parseAddress(`127.0.0.1:${server.port}`)]);
    this.cluster = m.cluster;
    this.address = `127.0.0.1:${server.port}`;
  }

  stop(): void {
    this.server?.stop(true);
  }

  private answer(request: Message): Uint8Array {
    const h = new Header();
    h.command = Command.reply;
    h.cluster = this.cluster;
    h.replica = 0;
    h.replica_count = 1;
    h.client = request.header.client;
    h.request = request.header.request;
    h.operation = request.header.operation;
    h.session = request.header.session;
    h.timestamp = 1700000000000;
    let body: Uint8Array = new Uint8Array(0);
    const f = this.forgery;
    switch (request.header.operation as Operation) {
      case Operation.register:
        h.session = 1;
        h.op = 1;
        break;
      case Operation.get:
        h.result = Result.value_too_large;
        body = encodeU64(16 * MiB);
        break;
      case Operation.read: {
        const r = decodeReadRequest(request.body)!;
        if (r.version !== 0 && r.version !== this.version) {
          h.result = Result.object_changed;
          body = encodeU64(this.version);
          break;
        }
        if (r.offset > this.size) {
          h.result = Result.range_invalid;
          body = encodeU64(this.size);
          break;
        }
        body = this.readReply(r.version, r.offset, r.length);
        if (f === "object_changed" && r.version === 0) this.version += 1; // replaced after every first read
        break;
      }
      case Operation.create_upload: {
        body = new Uint8Array(24);
        const view = new DataView(body.buffer);
        view.setBigUint64(0, 9n, true);
        view.setBigUint64(8, BigInt(f === "create_bad_block_size" ? 4 * MiB + 1 : MiB), true);
        view.setBigUint64(16, 5497558138880n, true);
        this.received = [];
        this.received_bytes = 0;
        break;
      }
      case Operation.write_block: {
        const w = decodeWriteBlock(request.body)!;
        this.received.push(w.checksum);
        this.received_bytes += w.data.length;
        break;
      }
      case Operation.complete_upload: {
        body = new Uint8Array(16);
        const view = new DataView(body.buffer);
        const manifest = manifestChecksum(this.received, this.received_bytes);
        view.setBigUint64(0, 10n, true);
        view.setBigUint64(8, f === "complete_checksum_wrong" ? manifest ^ 1n : manifest, true);
        break;
      }
      default:
        h.result = Result.bad_request;
    }
    return encode(finalize(h, body));
  }

  private readReply(version: number, offset: number, length: number): Uint8Array {
    const f = this.forgery;
    const end = Math.min(this.size, offset + length);
    const map = end > offset ? this.blocks.filter((b) => b.start < end && b.start + b.size > offset).map((b) => ({ ...b })) : [];
    if (f === "bad_block_checksum" && map.length > 0) map[0]!.checksum ^= 1n;
    const manifest = manifestChecksum(
      this.blocks.map((b) => b.checksum),
      this.size,
    );
    const header = {
      version: f === "version_flip" && version !== 0 ? this.version + 1 : this.version,
      timestamp: 1700000000000,
      size: this.size,
      checksum: f === "manifest_wrong" ? manifest ^ 1n : manifest,
      kind: ObjectKind.chunked,
      block_count: this.blocks.length,
      md5: this.md5,
      metadata: null,
    };
    let data = f === "huge" ? new Uint8Array(0) : this.data.subarray(offset, end);
    if (f === "short_data" && data.length > 1) data = data.subarray(0, data.length - 1);
    return encodeReadReply({ header, block_map: f === "map_missing" ? null : map, data });
  }
}

describe("C client large objects against a replica that forges replies", () => {
  // What each call of `large_client_test forged` must end with: get_stream of the whole object, a
  // 2 MiB range at 3 MiB + 5, toastyfs_get, a 5 MiB toastyfs_put (codes of toastyfs.h).
  const OK = 0,
    VALUE_TOO_LARGE = -4,
    PROTOCOL = -9,
    OBJECT_CHANGED = -13;
  const cases: [Forgery, [number, number, number, number]][] = [
    ["none", [OK, OK, OK, OK]],
    ["short_data", [PROTOCOL, PROTOCOL, PROTOCOL, OK]],
    ["bad_block_checksum", [PROTOCOL, PROTOCOL, PROTOCOL, OK]],
    ["map_missing", [PROTOCOL, PROTOCOL, PROTOCOL, OK]],
    ["version_flip", [PROTOCOL, PROTOCOL, PROTOCOL, OK]],
    ["manifest_wrong", [PROTOCOL, OK, PROTOCOL, OK]],
    ["md5_wrong", [PROTOCOL, OK, PROTOCOL, OK]],
    ["object_changed", [OBJECT_CHANGED, OBJECT_CHANGED, OBJECT_CHANGED, OK]],
    ["huge", [PROTOCOL, PROTOCOL, VALUE_TOO_LARGE, OK]],
    ["create_bad_block_size", [OK, OK, OK, PROTOCOL]],
    ["complete_checksum_wrong", [OK, OK, OK, PROTOCOL]],
  ];

  test("each forgery makes the calls it touches fail with the status that names it, and nothing else (valgrind clean)", async () => {
    const replicas = cases.map(([forgery]) => new ForgingReplica(forgery));
    for (const r of replicas) r.start();
    try {
      const tool = path.join(build_dir, "large_client_test");
      const runs: Run[] = [];
      // Three at a time: valgrind is slow, and the machine is shared.
      for (let i = 0; i < replicas.length; i += 3)
        runs.push(
          ...(await Promise.all(
            replicas.slice(i, i + 3).map((r) => run(underValgrind([tool, "forged", r.address]), { timeout_ms: 120_000 })),
          )),
        );
      runs.forEach((r, i) => {
        const [forgery, expected] = cases[i]!;
        const context = `${forgery}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr.slice(-4000)}`;
        expect(r.code, context).toBe(0);
        expect(r.stdout, context).toContain("forged: ok");
        if (valgrind !== null) expect(r.stderr, context).toContain("All heap blocks were freed -- no leaks are possible");
        const codes = ["get_stream", "range", "get", "put"].map((what) =>
          Number(new RegExp(`^${what}: (-?\\d+)`, "m").exec(r.stdout)?.[1]),
        );
        expect(codes, context).toEqual(expected);
        console.log(`${forgery}: ${r.stdout.trim().split("\n").slice(0, 4).join(" | ")}`);
      });
    } finally {
      for (const r of replicas) r.stop();
    }
  }, 400_000);
});
