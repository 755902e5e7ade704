import { describe, expect, test } from "bun:test";
import {
  Condition,
  Operation,
  allocValueWithHeadroom,
  headroom_size_min,
  decodeKeyRequest,
  decodeListReply,
  decodeListRequest,
  decodeU64,
  encodeGetReply,
  encodeKeyRequest,
  encodeListReply,
  encodeListRequest,
  encodeU64,
  isWrite,
  key_request_fixed_size,
  list_reply_fixed_size,
  list_request_fixed_size,
  object_info_size,
  readObjectInfo,
  validKey,
  writeObjectInfo,
  type ListEntry,
  type ObjectInfo,
} from "./operations.ts";
import { key_size_max, list_limit_max } from "../constants.ts";
import { Prng } from "../util/prng.ts";

function bytes(prng: Prng, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = prng.int(256);
  return out;
}

function u53(prng: Prng): number {
  return prng.chance(0.1) ? Number.MAX_SAFE_INTEGER : prng.u32() * 2 ** 21 + (prng.u32() >>> 11);
}

function randomInfo(prng: Prng): ObjectInfo {
  return { version: u53(prng), timestamp: u53(prng), size: u53(prng), checksum: prng.u64() };
}

function setU64(body: Uint8Array, offset: number, value: bigint): void {
  new DataView(body.buffer, body.byteOffset).setBigUint64(offset, value, true);
}

describe("key requests", () => {
  test("round trip with random keys, values, conditions and versions", () => {
    const prng = new Prng(1);
    for (let i = 0; i < 300; i++) {
      const key = bytes(prng, prng.range(0, key_size_max + 1));
      const has_value = prng.chance(0.5);
      const value = has_value ? bytes(prng, prng.int(3000)) : null;
      const condition = prng.pick([Condition.none, Condition.if_version, Condition.if_absent]);
      const if_version = u53(prng);
      const body = encodeKeyRequest(key, value, condition, if_version);
      expect(body.length).toBe(key_request_fixed_size + key.length + (value?.length ?? 0));
      const request = decodeKeyRequest(body, has_value);
      expect(request).not.toBeNull();
      expect(request!.key).toEqual(key);
      expect(request!.condition).toBe(condition);
      expect(request!.if_version).toBe(if_version);
      expect(request!.value).toEqual(value ?? new Uint8Array(0));
      expect(request!.value_offset).toBe(key_request_fixed_size + key.length);
      // The value is a view into the body at value_offset (the replica locates it on disk so).
      expect(request!.value.buffer).toBe(body.buffer);
      expect(request!.value.byteOffset).toBe(body.byteOffset + request!.value_offset);
    }
  });

  test("defaults: no condition, version 0", () => {
    const request = decodeKeyRequest(encodeKeyRequest(new Uint8Array([1, 2]), null), false)!;
    expect(request.condition).toBe(Condition.none);
    expect(request.if_version).toBe(0);
  });

  test("decodes from a view with a byte offset", () => {
    const body = encodeKeyRequest(new Uint8Array([9, 8, 7]), new Uint8Array([1, 2, 3, 4]), Condition.if_version, 77);
    const outer = new Uint8Array(body.length + 5);
    outer.set(body, 5);
    const request = decodeKeyRequest(outer.subarray(5), true)!;
    expect(request.key).toEqual(new Uint8Array([9, 8, 7]));
    expect(request.value).toEqual(new Uint8Array([1, 2, 3, 4]));
    expect(request.if_version).toBe(77);
  });

  test("malformed key requests give null", () => {
    const key = new Uint8Array([1, 2, 3]);
    const get = encodeKeyRequest(key, null);
    const put = encodeKeyRequest(key, new Uint8Array([4, 5]));
    // Shorter than the fixed part, or than the key it announces.
    for (let length = 0; length < get.length; length++) {
      expect(decodeKeyRequest(get.subarray(0, length), false)).toBeNull();
      expect(decodeKeyRequest(get.subarray(0, length), true)).toBeNull();
    }
    // Bytes after the key where no value is expected.
    expect(decodeKeyRequest(put, false)).toBeNull();
    expect(decodeKeyRequest(put, true)).not.toBeNull();
    // Unknown condition.
    for (const condition of [3, 4, 255]) {
      const bad = get.slice();
      bad[2] = condition;
      expect(decodeKeyRequest(bad, false)).toBeNull();
    }
    // if_version beyond 2^53.
    for (const version of [1n << 53n, (1n << 64n) - 1n]) {
      const bad = get.slice();
      setU64(bad, 8, version);
      expect(decodeKeyRequest(bad, false)).toBeNull();
    }
    const edge = get.slice();
    setU64(edge, 8, (1n << 53n) - 1n);
    expect(decodeKeyRequest(edge, false)!.if_version).toBe(Number.MAX_SAFE_INTEGER);
  });

  test("validKey accepts 1..key_size_max bytes", () => {
    expect(validKey(new Uint8Array(0))).toBe(false);
    expect(validKey(new Uint8Array(1))).toBe(true);
    expect(validKey(new Uint8Array(key_size_max))).toBe(true);
    expect(validKey(new Uint8Array(key_size_max + 1))).toBe(false);
  });

  test("isWrite: register, put and delete go through the log", () => {
    expect([Operation.register, Operation.put, Operation.get, Operation.delete, Operation.list, Operation.stat].map(isWrite)).toEqual([
      true,
      true,
      false,
      true,
      false,
      false,
    ]);
  });
});

describe("list requests", () => {
  test("round trip", () => {
    const prng = new Prng(2);
    for (let i = 0; i < 200; i++) {
      const prefix = bytes(prng, prng.int(key_size_max + 1));
      const after = bytes(prng, prng.int(key_size_max + 1));
      const limit = prng.range(1, list_limit_max);
      const request = decodeListRequest(encodeListRequest(prefix, after, limit));
      expect(request).toEqual({ prefix, after, limit });
    }
  });

  test("malformed list requests give null", () => {
    const good = encodeListRequest(new Uint8Array([1]), new Uint8Array([2, 3]), 10);
    expect(decodeListRequest(good)).not.toBeNull();
    for (let length = 0; length < good.length; length++) expect(decodeListRequest(good.subarray(0, length))).toBeNull();
    const longer = new Uint8Array(good.length + 1);
    longer.set(good);
    expect(decodeListRequest(longer)).toBeNull();
    for (const limit of [0, list_limit_max + 1, 2 ** 32 - 1])
      expect(decodeListRequest(encodeListRequest(new Uint8Array(0), new Uint8Array(0), limit))).toBeNull();
    expect(decodeListRequest(encodeListRequest(new Uint8Array(0), new Uint8Array(0), list_limit_max))).not.toBeNull();
    expect(decodeListRequest(encodeListRequest(new Uint8Array(key_size_max + 1), new Uint8Array(0), 1))).toBeNull();
    expect(decodeListRequest(encodeListRequest(new Uint8Array(0), new Uint8Array(key_size_max + 1), 1))).toBeNull();
  });
});

describe("replies", () => {
  test("object info round trip, and unsafe integers are rejected", () => {
    const prng = new Prng(3);
    for (let i = 0; i < 100; i++) {
      const info = randomInfo(prng);
      const body = new Uint8Array(object_info_size + 8);
      writeObjectInfo(info, body, 8);
      expect(readObjectInfo(body, 8)).toEqual(info);
      expect(readObjectInfo(body.subarray(0, object_info_size + 7), 8)).toBeNull();
    }
    for (const field of [0, 8, 16]) {
      const body = new Uint8Array(object_info_size);
      setU64(body, field, 1n << 53n);
      expect(readObjectInfo(body, 0)).toBeNull();
    }
  });

  test("u64 replies", () => {
    for (const n of [0, 1, 2 ** 32, Number.MAX_SAFE_INTEGER]) expect(decodeU64(encodeU64(n))).toBe(n);
    expect(decodeU64(new Uint8Array(7))).toBeNull();
    expect(decodeU64(new Uint8Array(9))).toBeNull();
    const big = new Uint8Array(8);
    setU64(big, 0, 1n << 53n);
    expect(decodeU64(big)).toBeNull();
  });

  test("get and stat replies are the object info followed by the value", () => {
    const prng = new Prng(4);
    const info = randomInfo(prng);
    const value = bytes(prng, 100);
    const get = encodeGetReply(info, value);
    expect(readObjectInfo(get, 0)).toEqual(info);
    expect(get.subarray(object_info_size)).toEqual(value);
    const stat = encodeGetReply(info, null);
    expect(stat.length).toBe(object_info_size);
    expect(readObjectInfo(stat, 0)).toEqual(info);
  });

  test("a large value read with headroom becomes a get reply without a copy, once; a small one is copied", () => {
    const prng = new Prng(6);
    for (const size of [0, 100, headroom_size_min - 1, headroom_size_min, 100_000]) {
      const info = randomInfo(prng);
      const value = allocValueWithHeadroom(size);
      value.set(bytes(prng, size));
      const expected = value.slice();
      const get = encodeGetReply(info, value);
      if (size >= headroom_size_min)
        expect(get.buffer).toBe(value.buffer); // built in place
      else expect(get.buffer).not.toBe(value.buffer);
      expect(readObjectInfo(get, 0)).toEqual(info);
      expect(get.subarray(object_info_size)).toEqual(expected);
      // A second reply from the same value gets a body of its own.
      const other = randomInfo(prng);
      const again = encodeGetReply(other, value);
      expect(again.buffer).not.toBe(value.buffer);
      expect(readObjectInfo(again, 0)).toEqual(other);
      expect(readObjectInfo(get, 0)).toEqual(info);
      // A view into some other buffer is copied, never written around.
      const host = bytes(prng, size + 64);
      const before = host.slice();
      const view = host.subarray(object_info_size, object_info_size + size);
      expect(encodeGetReply(info, view).buffer).not.toBe(host.buffer);
      expect(host).toEqual(before);
    }
  });

  test("list reply round trip", () => {
    const prng = new Prng(5);
    for (let i = 0; i < 100; i++) {
      const entries: ListEntry[] = Array.from({ length: prng.int(20) }, () => ({
        ...randomInfo(prng),
        key: bytes(prng, prng.range(1, 300)),
      }));
      const truncated = prng.chance(0.5);
      const body = encodeListReply(entries, truncated);
      expect(decodeListReply(body)).toEqual({ entries, truncated });
    }
    expect(decodeListReply(encodeListReply([], false))).toEqual({ entries: [], truncated: false });
  });

  test("malformed list replies give null", () => {
    const prng = new Prng(6);
    const entries: ListEntry[] = Array.from({ length: 3 }, () => ({ ...randomInfo(prng), key: bytes(prng, 5) }));
    const body = encodeListReply(entries, true);
    for (let length = 0; length < body.length; length++) expect(decodeListReply(body.subarray(0, length))).toBeNull();
    const longer = new Uint8Array(body.length + 1);
    longer.set(body);
    expect(decodeListReply(longer)).toBeNull();
    for (const count of [4, 2 ** 32 - 1]) {
      const bad = body.slice();
      new DataView(bad.buffer).setUint32(0, count, true);
      expect(decodeListReply(bad)).toBeNull();
    }
    const bad_key = body.slice();
    new DataView(bad_key.buffer).setUint16(list_reply_fixed_size + object_info_size, 60000, true);
    expect(decodeListReply(bad_key)).toBeNull();
  });
});

describe("decoders never throw on untrusted input", () => {
  test("random and mutated bodies give null or a well-formed result", () => {
    const prng = new Prng(7);
    const seeds = [
      encodeKeyRequest(new Uint8Array([1, 2, 3]), new Uint8Array([4, 5, 6, 7]), Condition.if_version, 9),
      encodeKeyRequest(new Uint8Array([1]), null),
      encodeListRequest(new Uint8Array([1, 2]), new Uint8Array([3]), 5),
      encodeListReply([{ version: 1, timestamp: 2, size: 3, checksum: 4n, key: new Uint8Array([5, 6]) }], false),
      encodeU64(42),
      encodeGetReply({ version: 1, timestamp: 2, size: 3, checksum: 4n }, new Uint8Array([1, 2, 3])),
    ];
    for (let i = 0; i < 20000; i++) {
      let body: Uint8Array;
      if (prng.chance(0.5)) {
        body = bytes(prng, prng.int(80));
        // Small fields make the decoders go deeper than pure noise would.
        for (let j = 0; j < body.length; j++) if (prng.chance(0.5)) body[j] = prng.int(4);
      } else {
        const seed = prng.pick(seeds);
        body = seed.slice(0, prng.chance(0.3) ? prng.int(seed.length + 1) : seed.length);
        for (let flips = prng.range(1, 3); flips > 0 && body.length > 0; flips--) body[prng.int(body.length)] = prng.int(256);
      }
      const offset = prng.int(8);
      const view = new Uint8Array(body.length + offset).subarray(offset);
      view.set(body);
      const key = decodeKeyRequest(view, prng.chance(0.5));
      if (key !== null) expect(key.value_offset).toBe(key_request_fixed_size + key.key.length);
      const list = decodeListRequest(view);
      if (list !== null) expect(list_request_fixed_size + list.prefix.length + list.after.length).toBe(view.length);
      const reply = decodeListReply(view);
      if (reply !== null) expect(reply.entries.length).toBeLessThanOrEqual(view.length / (object_info_size + 2));
      const n = decodeU64(view);
      if (n !== null) expect(Number.isSafeInteger(n)).toBe(true);
      readObjectInfo(view, prng.int(40));
    }
  });
});
