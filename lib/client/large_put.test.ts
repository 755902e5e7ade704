import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FakeCluster, clientFailure as failure, testBytes as bytes } from "../../tests/support/fake_cluster.ts";
import { Operation } from "../store/operations.ts";
import { decodeCompleteUpload, decodeWriteBlock, partChecksum } from "../store/large_bodies.ts";
import { checksum } from "../util/checksum.ts";
import { FileSource, bodySource, type BlockSource, type Body } from "./body_source.ts";
import { getStream } from "./large_get.ts";
import { LanePool, Upload, putBody, putSource, type LargePutOptions, type PutCalls } from "./large_put.ts";
import { ClientError } from "./errors.ts";

const block = 1024;

const key = new TextEncoder().encode("big/object");

function setup(lanes = 3, inline_max = block): { cluster: FakeCluster; calls: PutCalls } {
  const cluster = new FakeCluster(block);
  return { cluster, calls: { main: cluster.caller(), lanes: cluster.callers(lanes), inline_max } };
}

async function readBack(cluster: FakeCluster): Promise<Uint8Array> {
  const got = await getStream({ main: cluster.caller(), lanes: cluster.callers(2) }, key, { read_size: 700 });
  return new Uint8Array(await new Response(got.body).arrayBuffer());
}

function md5(value: Uint8Array): Uint8Array {
  return new Uint8Array(Bun.CryptoHasher.hash("md5", value) as Uint8Array);
}

describe("putBody", () => {
  test("a body over one block is cut into full blocks of the cluster's size, sent as one part, and reads back exactly", async () => {
    const { cluster, calls } = setup();
    const value = bytes(10 * block + 300);
    const result = await putBody(calls, key, value);
    const blocks = cluster.received.filter((r) => r.operation === Operation.write_block);
    expect(cluster.count(Operation.create_upload)).toBe(1);
    expect(blocks.length).toBe(11);
    expect(cluster.count(Operation.complete_upload)).toBe(1);
    expect(result.size).toBe(value.length);
    expect(result.md5).toEqual(md5(value));
    expect(await readBack(cluster)).toEqual(value);
    expect(cluster.store.large.upload_count).toBe(0);
  });

  test("block indexes, sizes, one nonzero attempt, and the part checksum of §5.4 exactly", async () => {
    const { cluster, calls } = setup();
    const value = bytes(3 * block + 5, 7);
    const blocks: { index: number; size: number; attempt: bigint; checksum: bigint }[] = [];
    let complete: ReturnType<typeof decodeCompleteUpload> = null;
    cluster.before = (operation, body) => {
      if (operation === Operation.write_block) {
        const w = decodeWriteBlock(body)!;
        blocks.push({ index: w.block_index, size: w.data.length, attempt: w.attempt, checksum: w.checksum });
      }
      if (operation === Operation.complete_upload) complete = decodeCompleteUpload(body);
    };
    await putBody(calls, key, value);
    blocks.sort((a, b) => a.index - b.index);
    expect(blocks.map((b) => b.index)).toEqual([0, 1, 2, 3]);
    expect(blocks.map((b) => b.size)).toEqual([block, block, block, 5]);
    expect(new Set(blocks.map((b) => b.attempt)).size).toBe(1);
    expect(blocks[0]!.attempt).not.toBe(0n);
    const expected = [0, 1, 2, 3].map((i) => checksum(value.subarray(i * block, Math.min(value.length, (i + 1) * block))));
    expect(blocks.map((b) => b.checksum)).toEqual(expected);
    const c = complete!;
    expect(c.parts).toEqual([
      { part_number: 1, block_count: 4, attempt: blocks[0]!.attempt, part_size: value.length, part_checksum: partChecksum(expected) },
    ]);
    expect(c.declared_size).toBe(value.length);
    expect(c.md5).toEqual(md5(value));
  });

  test("at most one block per lane and `lanes` blocks in flight in all", async () => {
    for (const lanes of [1, 3]) {
      const { cluster, calls } = setup(lanes);
      await putBody(calls, key, bytes(20 * block));
      // The fake throws if a lane has two requests at once; the main channel is idle meanwhile.
      expect(cluster.max_in_flight).toBe(lanes);
    }
  });

  test("a block is read from the source only when a lane is free: (lanes + 1) blocks in memory at most", async () => {
    const { cluster, calls } = setup(3);
    const inner = bodySource(bytes(30 * block));
    let busy_at_read = 0;
    const source: BlockSource = {
      size: inner.size,
      next: (max) => {
        busy_at_read = Math.max(busy_at_read, cluster.in_flight);
        return inner.next(max);
      },
      atEnd: () => inner.atEnd(),
    };
    await putSource(calls, key, source);
    expect(busy_at_read).toBe(2);
  });

  test("bytes, a Blob, a Bun.file, a ReadableStream of odd chunks and an async iterable store the same object", async () => {
    const value = bytes(5 * block + 77, 3);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-put-"));
    const file = path.join(dir, "v");
    fs.writeFileSync(file, value);
    const chunks = (sizes: number[]): Uint8Array[] => {
      const out: Uint8Array[] = [];
      for (let at = 0, i = 0; at < value.length; i++) {
        const n = sizes[i % sizes.length]!;
        out.push(value.slice(at, at + n));
        at += n;
      }
      return out;
    };
    const bodies: [string, () => Body][] = [
      ["bytes", () => value],
      ["blob", () => new Blob([value])],
      ["file", () => Bun.file(file)],
      ["stream", () => new Blob(chunks([1, 999, 3000, 17])).stream()],
      [
        "iterable",
        () =>
          (async function* () {
            yield* chunks([block + 1, 2]);
          })(),
      ],
    ];
    try {
      for (const [name, body] of bodies) {
        const { cluster, calls } = setup();
        const result = await putBody(calls, key, body());
        expect({ name, size: result.size }).toEqual({ name, size: value.length });
        expect({ name, back: await readBack(cluster) }).toEqual({ name, back: value });
      }
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });

  test("a body of one block or less is one put; with metadata one put_object carrying the md5", async () => {
    const small = bytes(block);
    let { cluster, calls } = setup();
    await putBody(calls, key, small);
    expect(cluster.received.map((r) => r.operation)).toEqual([Operation.put]);
    ({ cluster, calls } = setup());
    const r = await putBody(calls, key, small, { content_type: "text/plain", meta: { owner: "ann" } });
    expect(cluster.received.map((r) => r.operation)).toEqual([Operation.put_object]);
    expect(r.md5).toEqual(md5(small));
    const got = await getStream({ main: cluster.caller(), lanes: cluster.callers(1) }, key);
    expect(got.header.metadata?.content_type).toBe("text/plain");
    expect(got.header.md5).toEqual(md5(small));
  });

  test("a stream that ends within one block is one put; one that does not becomes an upload with no declared size", async () => {
    let { cluster, calls } = setup();
    await putBody(calls, key, new Blob([bytes(block)]).stream());
    expect(cluster.received.map((r) => r.operation)).toEqual([Operation.put]);
    ({ cluster, calls } = setup());
    let declared: number | null = 0;
    cluster.before = (operation, body) => {
      if (operation === Operation.complete_upload) declared = decodeCompleteUpload(body)!.declared_size;
    };
    await putBody(calls, key, new Blob([bytes(block + 1)]).stream());
    expect(cluster.count(Operation.write_block)).toBe(2);
    expect(declared).toBeNull();
  });

  test("metadata, content type and user metadata travel with an upload", async () => {
    const { cluster, calls } = setup();
    await putBody(calls, key, bytes(3 * block), { content_type: "application/x-tar", meta: { "build-id": "42" } });
    const got = await getStream({ main: cluster.caller(), lanes: cluster.callers(1) }, key);
    expect(got.header.metadata?.content_type).toBe("application/x-tar");
    await expect(putBody(calls, key, bytes(10), { meta: { Bad: "x" } })).rejects.toThrow(/only a-z, 0-9 and - are allowed/);
    await expect(putBody(calls, key, bytes(10), { content_type: "a\nb" })).rejects.toThrow(/printable ASCII/);
  });

  test("a stream shorter or longer than its declared size is source_changed, and the upload is aborted", async () => {
    for (const [given, declared, word] of [
      [3 * block, 4 * block, "shrank"],
      [5 * block, 4 * block, "grew"],
    ] as const) {
      const { cluster, calls } = setup();
      const e = await failure(putBody(calls, key, new Blob([bytes(given)]).stream(), { size: declared, source_name: "data.bin" }));
      expect(e.code).toBe("source_changed");
      expect(e.message).toContain(`data.bin ${word} from ${declared}`);
      expect(e.upload_id).toBe(1);
      expect(e.upload_aborted).toBe(true);
      expect(cluster.count(Operation.abort_upload)).toBe(1);
      expect(cluster.store.large.upload_count).toBe(0);
      expect(cluster.store.get("big/object")).toBeUndefined();
    }
  });

  test("a file that shrinks or grows while it is streamed is source_changed naming the sizes; the upload is aborted", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-put-"));
    const file = path.join(dir, "v");
    try {
      for (const change of ["shrink", "grow"] as const) {
        fs.writeFileSync(file, bytes(8 * block));
        const { cluster, calls } = setup(1);
        cluster.before = (operation, _body, index) => {
          if (operation !== Operation.write_block || index !== 3) return;
          if (change === "shrink") fs.truncateSync(file, 5 * block + 10);
          else fs.appendFileSync(file, bytes(100));
        };
        const fd = fs.openSync(file, "r");
        try {
          const e = await failure(putSource(calls, key, new FileSource(fd, "v")));
          expect(e.code).toBe("source_changed");
          expect(e.message).toBe(
            change === "shrink"
              ? `v shrank from ${8 * block} to ${5 * block + 10} bytes while it was read`
              : `v grew from ${8 * block} to ${8 * block + 100} bytes while it was read`,
          );
          expect(e.upload_aborted).toBe(true);
          expect(cluster.store.large.upload_count).toBe(0);
        } finally {
          fs.closeSync(fd);
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });

  test("a block that fails stops the put: no block is read after it, the upload is aborted, the error names it", async () => {
    const { cluster, calls } = setup(2);
    cluster.before = (operation, _body, index) => {
      if (operation === Operation.write_block && index === 4) throw new ClientError("no_quorum", "no replica answered");
    };
    const e = await failure(putBody(calls, key, bytes(50 * block)));
    expect(e.code).toBe("no_quorum");
    expect(e.upload_id).toBe(1);
    // Blocks already on a lane finish; nothing more is sent.
    expect(cluster.count(Operation.write_block)).toBeLessThanOrEqual(4 + 2);
    expect(cluster.count(Operation.complete_upload)).toBe(0);
    expect(cluster.store.large.upload_count).toBe(0);
  });

  test("an aborted signal stops the put and aborts the upload", async () => {
    const { cluster, calls } = setup(2);
    const controller = new AbortController();
    cluster.before = (operation, _body, index) => {
      if (operation === Operation.write_block && index === 3) controller.abort();
    };
    const e = await failure(putBody(calls, key, bytes(50 * block), { signal: controller.signal }));
    expect(e.code).toBe("aborted");
    expect(e.upload_aborted).toBe(true);
    expect(cluster.count(Operation.write_block)).toBeLessThan(8);
    expect(cluster.store.large.upload_count).toBe(0);
  });

  test("conditions keep their meaning: if_absent on an existing key fails and leaves the object", async () => {
    const { cluster, calls } = setup();
    const first = bytes(3 * block, 1);
    await putBody(calls, key, first);
    const e = await failure(putBody(calls, key, bytes(3 * block, 2), { if_absent: true }));
    expect(e.code).toBe("condition_failed");
    const current = cluster.store.get("big/object")!.version;
    await putBody(calls, key, bytes(2 * block, 3), { if_version: current });
    expect(await readBack(cluster)).toEqual(bytes(2 * block, 3));
    await expect(putBody(calls, key, first, { if_version: 1, if_absent: true })).rejects.toThrow(/cannot be combined/);
  });

  test("progress reports acknowledged bytes, ending at the size", async () => {
    const { calls } = setup();
    const seen: number[] = [];
    const options: LargePutOptions = { onProgress: (n) => seen.push(n) };
    await putBody(calls, key, bytes(4 * block + 1), options);
    expect(seen.at(-1)).toBe(4 * block + 1);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
  });
});

describe("Upload", () => {
  test("parts sent in any order, each with its own attempt, complete in part order; abort frees them", async () => {
    const { cluster, calls } = setup();
    const one = bytes(2 * block + 3, 1);
    const two = bytes(block + 9, 2);
    const upload = await Upload.create(calls, key, { condition: 0, if_version: 0, declared_size: null, metadata: null });
    const [p2, p1] = await Promise.all([upload.sendPart(2, bodySource(two)), upload.sendPart(1, bodySource(one))]);
    expect(p1.attempt).not.toBe(p2.attempt);
    const result = await upload.complete([p2, p1], {});
    expect(result.size).toBe(one.length + two.length);
    const both = new Uint8Array(one.length + two.length);
    both.set(one);
    both.set(two, one.length);
    expect(await readBack(cluster)).toEqual(both);
    const other = await Upload.create(calls, key, { condition: 0, if_version: 0, declared_size: null, metadata: null });
    await other.sendPart(1, bodySource(one));
    await other.abort();
    expect(cluster.store.large.upload_count).toBe(0);
    await expect(other.abort()).rejects.toMatchObject({ code: "upload_not_found" });
  });

  test("an upload reopened by id elsewhere (other calls, no create) takes parts and completes; the first sees its parts", async () => {
    const { cluster, calls } = setup();
    const one = bytes(block + 5, 3);
    const two = bytes(7, 4);
    const created = await Upload.create(calls, key, { condition: 0, if_version: 0, declared_size: null, metadata: null });
    const p1 = await created.sendPart(1, bodySource(one));
    // Another process: its own callers, only the id and block size of the first.
    const elsewhere = Upload.open(
      { main: cluster.caller(), lanes: cluster.callers(2), inline_max: block },
      created.id,
      created.block_size_max,
    );
    const p2 = await elsewhere.sendPart(2, bodySource(two));
    await elsewhere.complete([p1, p2], {});
    const both = new Uint8Array(one.length + two.length);
    both.set(one);
    both.set(two, one.length);
    expect(await readBack(cluster)).toEqual(both);
    await expect(Upload.open(calls, created.id, block).abort()).rejects.toMatchObject({ code: "upload_not_found" });
  });
});

describe("the lane window", () => {
  /** A lane whose busy replies a test sets. */
  const lane = (): { call: () => Promise<Uint8Array>; busy_replies: number } => ({
    call: () => Promise.resolve(new Uint8Array(0)),
    busy_replies: 0,
  });

  test("a block refused busy halves the blocks in flight, once per round; acknowledged blocks grow it back to every lane", async () => {
    const lanes = [lane(), lane(), lane(), lane()];
    const pool = new LanePool(lanes);
    const held = [];
    for (let i = 0; i < 4; i++) held.push(await pool.acquire(undefined));
    expect(pool.allowed).toBe(4);
    // Two blocks of the same round were refused busy: one halving.
    (held[0] as { busy_replies: number }).busy_replies += 1;
    (held[1] as { busy_replies: number }).busy_replies += 1;
    pool.release(held[0]!);
    pool.release(held[1]!);
    expect(pool.allowed).toBe(2);
    // Two still in flight: a third waits until one comes back.
    let third = false;
    const waiting = pool.acquire(undefined).then((l) => ((third = true), l));
    await Promise.resolve();
    expect(third).toBe(false);
    pool.release(held[2]!);
    const l3 = await waiting;
    expect(third).toBe(true);
    // A refusal after the halving is news: halved again, to 1 at the least.
    (l3 as { busy_replies: number }).busy_replies += 1;
    pool.release(l3);
    expect(pool.allowed).toBe(1);
    pool.release(held[3]!);
    // Blocks acknowledged without a refusal grow it back, up to the lanes there are.
    for (let i = 0; i < 40; i++) pool.release(await pool.acquire(undefined));
    expect(pool.allowed).toBe(4);
  });
});
