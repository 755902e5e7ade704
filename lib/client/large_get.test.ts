import { describe, expect, test } from "bun:test";
import { FakeCluster, clientFailure as failure, testBytes as bytes } from "../../tests/support/fake_cluster.ts";
import { Operation } from "../store/operations.ts";
import { ObjectKind } from "../store/large_bodies.ts";
import { getStream, head, parseRange, type ByteRange, type GetCalls } from "./large_get.ts";
import { putBody } from "./large_put.ts";

const block = 1000;
const key = new TextEncoder().encode("obj");

async function stored(value: Uint8Array, lanes = 2): Promise<{ cluster: FakeCluster; calls: GetCalls }> {
  const cluster = new FakeCluster(block);
  await putBody({ main: cluster.caller(), lanes: cluster.callers(2), inline_max: block }, key, value, { meta: { a: "b" } });
  return { cluster, calls: { main: cluster.caller("get main"), lanes: cluster.callers(lanes) } };
}

async function all(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(body).arrayBuffer());
}

describe("parseRange", () => {
  test("START-END, START- and -SUFFIX, inclusive; anything else is null", () => {
    expect(parseRange("0-99")).toEqual({ start: 0, end: 99 });
    expect(parseRange("100-")).toEqual({ start: 100 });
    expect(parseRange("-500")).toEqual({ suffix: 500 });
    for (const bad of ["", "-", "5-4", "a-b", "1-2-3", " 1-2", "99999999999999999999-"]) expect(parseRange(bad)).toBeNull();
  });
});

describe("getStream", () => {
  test("the whole object, read in strides that do not line up with the blocks, with header, metadata and md5 checked", async () => {
    const value = bytes(7 * block + 123);
    const { calls } = await stored(value);
    const got = await getStream(calls, key, { read_size: 700, md5: true });
    expect(got.header.kind).toBe(ObjectKind.chunked);
    expect(got.header.block_count).toBe(8);
    expect(got.header.metadata?.content_type).toBe("");
    expect(got.length).toBe(value.length);
    expect(await all(got.body)).toEqual(value);
  });

  test("ranges: start-end, start-, -suffix, an end past the object clamped; each is exactly those bytes", async () => {
    const value = bytes(5 * block + 10, 2);
    const { calls } = await stored(value);
    const cases: [ByteRange, number, number][] = [
      [{ start: 0, end: 0 }, 0, 1],
      [{ start: 999, end: 1000 }, 999, 1001],
      [{ start: 1500, end: 3700 }, 1500, 3701],
      [{ start: 4000 }, 4000, value.length],
      [{ suffix: 1234 }, value.length - 1234, value.length],
      [{ suffix: 10 ** 9 }, 0, value.length],
      [{ start: 10, end: 10 ** 9 }, 10, value.length],
    ];
    for (const [range, from, to] of cases) {
      const got = await getStream(calls, key, { range, read_size: 333 });
      expect({ range, start: got.start, length: got.length }).toEqual({ range, start: from, length: to - from });
      expect({ range, bytes: await all(got.body) }).toEqual({ range, bytes: value.slice(from, to) });
    }
  });

  test("a range starting at or beyond the end is range_invalid naming the object's size", async () => {
    const { calls } = await stored(bytes(2 * block));
    for (const start of [2 * block, 2 * block + 1, 10 ** 6]) {
      const e = await failure(getStream(calls, key, { range: { start } }));
      expect(e.code).toBe("range_invalid");
      expect(e.message).toBe(`range ${start}- is outside the object (2000 bytes)`);
    }
  });

  test("read-ahead follows the consumer: with nothing pulled, at most `lanes` reads beyond the first go out", async () => {
    const value = bytes(20 * block);
    const { cluster, calls } = await stored(value, 2);
    const reads_before = cluster.count(Operation.read);
    const got = await getStream(calls, key, { read_size: 500 });
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(cluster.count(Operation.read) - reads_before).toBeLessThanOrEqual(1 + 2);
    const reader = got.body.getReader();
    await reader.read();
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(cluster.count(Operation.read) - reads_before).toBeLessThanOrEqual(2 + 2);
    let rest = 0;
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += r.value.length;
    expect(rest).toBe(value.length - 500);
    expect(cluster.count(Operation.read) - reads_before).toBe(40);
  });

  test("later reads are pinned to the first read's version: an overwrite mid-get is object_changed naming both versions", async () => {
    const value = bytes(6 * block);
    const { cluster, calls } = await stored(value);
    const got = await getStream(calls, key, { read_size: 1000 });
    const first = got.header.version;
    await putBody({ main: cluster.caller("writer"), lanes: cluster.callers(1), inline_max: block }, key, bytes(10, 9));
    const e = await failure(all(got.body));
    expect(e.code).toBe("object_changed");
    expect(e.message).toBe(`changed while it was read (version ${first} replaced by version ${first + 1})`);
  });

  test("bytes that do not match their block's checksum are checksum_mismatch, never delivered silently", async () => {
    const { cluster, calls } = await stored(bytes(3 * block));
    cluster.corrupt_blocks = true;
    const got = await getStream(calls, key, { read_size: 400 });
    expect((await failure(all(got.body))).code).toBe("checksum_mismatch");
  });

  test("inline and empty objects stream too; head returns the header without bytes", async () => {
    const cluster = new FakeCluster(block);
    const put = { main: cluster.caller(), lanes: cluster.callers(1), inline_max: block };
    const calls = { main: cluster.caller("g"), lanes: cluster.callers(2) };
    await putBody(put, key, bytes(900));
    let got = await getStream(calls, key, { read_size: 256 });
    expect(got.header.kind).toBe(ObjectKind.inline);
    expect(await all(got.body)).toEqual(bytes(900));
    await putBody(put, key, new Uint8Array(0));
    got = await getStream(calls, key);
    expect(await all(got.body)).toEqual(new Uint8Array(0));
    const h = await head(calls.main, key);
    expect(h.size).toBe(0);
    await expect(getStream(calls, new TextEncoder().encode("absent"))).rejects.toMatchObject({ code: "not_found" });
  });
});
