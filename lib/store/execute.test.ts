import { describe, expect, test } from "bun:test";
import { executeRead, executeWrite, validateRequest, type ExecuteResult } from "./execute.ts";
import { ObjectStore, type ObjectEntry } from "./object_store.ts";
import {
  Condition,
  Operation,
  Result,
  decodeListReply,
  decodeU64,
  encodeKeyRequest,
  encodeListRequest,
  object_info_size,
  readObjectInfo,
} from "./operations.ts";
import { keyFromBytes } from "./keys.ts";
import { key_size_max, list_limit_max, list_reply_size_max } from "../constants.ts";
import { checksum } from "../util/checksum.ts";
import { Prng } from "../util/prng.ts";

const te = new TextEncoder();
const k = (s: string): Uint8Array => te.encode(s);

/** A fake disk: each write's request body is stored as "segment" = a counter, at offset 100. */
class Disk {
  readonly segments = new Map<number, Uint8Array>();
  private next = 1;
  store = new ObjectStore();
  timestamp = 1000;

  write(operation: Operation, body: Uint8Array): ExecuteResult {
    const segment = this.next++;
    const image = new Uint8Array(100 + body.length);
    image.set(body, 100);
    this.segments.set(segment, image);
    this.timestamp += 1;
    return executeWrite(this.store, this.timestamp, operation, body, { segment, offset: 100 });
  }

  put(key: string, value: Uint8Array, condition = Condition.none, if_version = 0): ExecuteResult {
    return this.write(Operation.put, encodeKeyRequest(k(key), value, condition, if_version));
  }

  del(key: string, condition = Condition.none, if_version = 0): ExecuteResult {
    return this.write(Operation.delete, encodeKeyRequest(k(key), null, condition, if_version));
  }

  readonly reader = (_key: string, entry: ObjectEntry): Uint8Array | null => {
    const image = this.segments.get(entry.segment);
    if (image === undefined) return null;
    return image.slice(entry.offset, entry.offset + entry.size);
  };

  read(operation: Operation, body: Uint8Array): ExecuteResult {
    return executeRead(this.store, operation, body, { value: this.reader, block: () => null, value_size_max: 1 << 20 });
  }

  get(key: string): ExecuteResult {
    return this.read(Operation.get, encodeKeyRequest(k(key), null));
  }
}

function version(result: ExecuteResult): number | null {
  return decodeU64(result.body);
}

describe("validateRequest", () => {
  const max = 100;
  const limits = { value_size_max: max, block_size_max: 64 };
  const key_request = (key: Uint8Array, value: Uint8Array | null, condition = Condition.none, v = 0) =>
    encodeKeyRequest(key, value, condition, v);

  test("register takes an empty body", () => {
    expect(validateRequest(Operation.register, new Uint8Array(0), limits)).toBe(Result.ok);
    expect(validateRequest(Operation.register, new Uint8Array(1), limits)).toBe(Result.bad_request);
  });

  test("keys of 0 and key_size_max + 1 bytes are invalid, 1 and key_size_max are fine", () => {
    for (const op of [Operation.put, Operation.get, Operation.stat, Operation.delete]) {
      const value = op === Operation.put ? new Uint8Array(3) : null;
      expect(validateRequest(op, key_request(new Uint8Array(0), value), limits)).toBe(Result.key_invalid);
      expect(validateRequest(op, key_request(new Uint8Array(key_size_max + 1), value), limits)).toBe(Result.key_invalid);
      expect(validateRequest(op, key_request(new Uint8Array(1), value), limits)).toBe(Result.ok);
      expect(validateRequest(op, key_request(new Uint8Array(key_size_max), value), limits)).toBe(Result.ok);
    }
  });

  test("values above the configured maximum are too large", () => {
    expect(validateRequest(Operation.put, key_request(k("a"), new Uint8Array(max)), limits)).toBe(Result.ok);
    expect(validateRequest(Operation.put, key_request(k("a"), new Uint8Array(max + 1)), limits)).toBe(Result.value_too_large);
    expect(validateRequest(Operation.put, key_request(k("a"), new Uint8Array(0)), limits)).toBe(Result.ok);
  });

  test("unknown operations are bad requests", () => {
    for (const op of [0, 13, 14, 255]) expect(validateRequest(op, key_request(k("a"), null), limits)).toBe(Result.bad_request);
  });

  test("conditions: on puts both, on deletes if_version only, on reads none", () => {
    for (const condition of [Condition.if_version, Condition.if_absent]) {
      expect(validateRequest(Operation.put, key_request(k("a"), new Uint8Array(1), condition, 3), limits)).toBe(Result.ok);
      expect(validateRequest(Operation.get, key_request(k("a"), null, condition, 3), limits)).toBe(Result.bad_request);
      expect(validateRequest(Operation.stat, key_request(k("a"), null, condition, 3), limits)).toBe(Result.bad_request);
    }
    expect(validateRequest(Operation.delete, key_request(k("a"), null, Condition.if_version, 3), limits)).toBe(Result.ok);
    expect(validateRequest(Operation.delete, key_request(k("a"), null, Condition.if_absent), limits)).toBe(Result.bad_request);
  });

  test("malformed bodies are bad requests", () => {
    expect(validateRequest(Operation.get, new Uint8Array(3), limits)).toBe(Result.bad_request);
    // A get carrying a value.
    expect(validateRequest(Operation.get, key_request(k("a"), new Uint8Array(2)), limits)).toBe(Result.bad_request);
    expect(validateRequest(Operation.delete, key_request(k("a"), new Uint8Array(2)), limits)).toBe(Result.bad_request);
    expect(validateRequest(Operation.list, encodeListRequest(k("a"), k(""), 10), limits)).toBe(Result.ok);
    expect(validateRequest(Operation.list, encodeListRequest(k("a"), k(""), 0), limits)).toBe(Result.bad_request);
    expect(validateRequest(Operation.list, new Uint8Array(15), limits)).toBe(Result.bad_request);
  });
});

describe("executeWrite", () => {
  test("puts return increasing versions from a namespace-wide revision counter", () => {
    const d = new Disk();
    expect(version(d.put("a", k("1")))).toBe(1);
    expect(version(d.put("b", k("2")))).toBe(2);
    expect(version(d.put("a", k("3")))).toBe(3);
    expect(d.store.revision).toBe(3);
    expect(d.store.get("a")!.version).toBe(3);
    expect(d.store.get("b")!.version).toBe(2);
  });

  test("a put records the value's checksum, size, timestamp and location in the journaled body", () => {
    const d = new Disk();
    const value = new Uint8Array([0, 255, 7, 0]);
    const result = d.put("key", value);
    expect(result.result).toBe(Result.ok);
    const entry = d.store.get("key")!;
    expect(entry.size).toBe(4);
    expect(entry.checksum).toBe(checksum(value));
    expect(entry.timestamp).toBe(d.timestamp);
    // Body at offset 100 of the segment; the value follows the 16-byte fixed part and the key.
    expect(entry.offset).toBe(100 + 16 + 3);
    expect(d.reader("key", entry)).toEqual(value);
  });

  test("if_absent puts only when the key is absent", () => {
    const d = new Disk();
    expect(d.put("a", k("x"), Condition.if_absent).result).toBe(Result.ok);
    const failed = d.put("a", k("y"), Condition.if_absent);
    expect(failed.result).toBe(Result.condition_failed);
    expect(version(failed)).toBe(1);
    expect(d.store.revision).toBe(1);
    expect(d.get("a").body.subarray(object_info_size)).toEqual(k("x"));
  });

  test("if_version: match writes, mismatch and absent fail with the current version or 0", () => {
    const d = new Disk();
    const absent = d.put("a", k("x"), Condition.if_version, 0);
    expect(absent.result).toBe(Result.condition_failed);
    expect(version(absent)).toBe(0);
    const absent5 = d.put("a", k("x"), Condition.if_version, 5);
    expect(absent5.result).toBe(Result.condition_failed);
    expect(version(absent5)).toBe(0);
    expect(d.store.count).toBe(0);
    d.put("a", k("x"));
    d.put("b", k("y"));
    const mismatch = d.put("a", k("z"), Condition.if_version, 2);
    expect(mismatch.result).toBe(Result.condition_failed);
    expect(version(mismatch)).toBe(1);
    const match = d.put("a", k("z"), Condition.if_version, 1);
    expect(match.result).toBe(Result.ok);
    expect(version(match)).toBe(3);
    expect(d.get("a").body.subarray(object_info_size)).toEqual(k("z"));
  });

  test("deleting an absent key is not_found, with or without if_version, and changes nothing", () => {
    const d = new Disk();
    d.put("b", k("1"));
    const digest = d.store.digest();
    for (const [condition, v] of [
      [Condition.none, 0],
      [Condition.if_version, 0],
      [Condition.if_version, 1],
    ] as const) {
      const result = d.del("a", condition, v);
      expect(result.result).toBe(Result.not_found);
      expect(result.body.length).toBe(0);
    }
    expect(d.store.revision).toBe(1);
    expect(d.store.digest()).toBe(digest);
  });

  test("a delete returns the deleted version and bumps the revision", () => {
    const d = new Disk();
    d.put("a", k("1"));
    d.put("b", k("2"));
    const result = d.del("a");
    expect(result.result).toBe(Result.ok);
    expect(version(result)).toBe(1);
    expect(d.store.revision).toBe(3);
    expect(d.store.get("a")).toBeUndefined();
    expect(d.get("a").result).toBe(Result.not_found);
    // No ABA: a re-created key gets a version above the delete.
    expect(version(d.put("a", k("3")))).toBe(4);
  });

  test("a conditional delete removes only the expected version", () => {
    const d = new Disk();
    d.put("a", k("1"));
    d.put("a", k("2"));
    const mismatch = d.del("a", Condition.if_version, 1);
    expect(mismatch.result).toBe(Result.condition_failed);
    expect(version(mismatch)).toBe(2);
    expect(d.store.revision).toBe(2);
    const match = d.del("a", Condition.if_version, 2);
    expect(match.result).toBe(Result.ok);
    expect(version(match)).toBe(2);
    expect(d.store.count).toBe(0);
    expect(d.store.revision).toBe(3);
  });

  test("malformed bodies and invalid keys are bad requests that change nothing", () => {
    const d = new Disk();
    d.put("a", k("1"));
    const digest = d.store.digest();
    expect(d.write(Operation.put, new Uint8Array(5)).result).toBe(Result.bad_request);
    expect(d.put("", k("1")).result).toBe(Result.bad_request);
    expect(d.write(Operation.delete, encodeKeyRequest(k("a"), k("extra"))).result).toBe(Result.bad_request);
    expect(d.store.digest()).toBe(digest);
    expect(d.store.revision).toBe(1);
  });

  test("matches a model over random conditional puts and deletes", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const prng = new Prng(seed);
      const d = new Disk();
      const model = new Map<string, { version: number; value: Uint8Array }>();
      let revision = 0;
      const keys = ["a", "b", "c", "a/1", "\u00ff"];
      for (let i = 0; i < 300; i++) {
        const key = prng.pick(keys);
        const current = model.get(key);
        const guess = prng.pick([0, revision, current?.version ?? 0, prng.int(revision + 2)]);
        if (prng.chance(0.65)) {
          const value = new Uint8Array(prng.int(20)).map(() => prng.int(256));
          const condition = prng.pick([Condition.none, Condition.if_absent, Condition.if_version]);
          const result = d.put(key, value, condition, guess);
          const fails =
            (condition === Condition.if_absent && current !== undefined) ||
            (condition === Condition.if_version && current?.version !== guess);
          if (fails) {
            expect(result.result).toBe(Result.condition_failed);
            expect(version(result)).toBe(current?.version ?? 0);
          } else {
            revision += 1;
            expect(result.result).toBe(Result.ok);
            expect(version(result)).toBe(revision);
            model.set(key, { version: revision, value });
          }
        } else {
          const condition = prng.pick([Condition.none, Condition.if_version]);
          const result = d.del(key, condition, guess);
          if (current === undefined) expect(result.result).toBe(Result.not_found);
          else if (condition === Condition.if_version && current.version !== guess) {
            expect(result.result).toBe(Result.condition_failed);
            expect(version(result)).toBe(current.version);
          } else {
            revision += 1;
            expect(result.result).toBe(Result.ok);
            expect(version(result)).toBe(current.version);
            model.delete(key);
          }
        }
        expect(d.store.revision).toBe(revision);
      }
      expect(d.store.count).toBe(model.size);
      for (const key of keys) {
        const expected = model.get(key);
        const got = d.get(key);
        if (expected === undefined) {
          expect(got.result).toBe(Result.not_found);
        } else {
          expect(got.result).toBe(Result.ok);
          expect(readObjectInfo(got.body, 0)!.version).toBe(expected.version);
          expect(got.body.subarray(object_info_size)).toEqual(expected.value);
        }
      }
    }
  });
});

describe("executeRead", () => {
  test("get returns the info and value, stat the info only, absent keys not_found", () => {
    const d = new Disk();
    const value = k("hello");
    d.put("x", value);
    const entry = d.store.get("x")!;
    const get = d.get("x");
    expect(get.result).toBe(Result.ok);
    expect(readObjectInfo(get.body, 0)).toEqual({ version: 1, timestamp: entry.timestamp, size: 5, checksum: checksum(value) });
    expect(get.body.subarray(object_info_size)).toEqual(value);
    const stat = d.read(Operation.stat, encodeKeyRequest(k("x"), null));
    expect(stat.result).toBe(Result.ok);
    expect(stat.body).toEqual(get.body.subarray(0, object_info_size));
    expect(d.get("y").result).toBe(Result.not_found);
    expect(d.read(Operation.stat, encodeKeyRequest(k("y"), null)).result).toBe(Result.not_found);
    expect(d.read(Operation.get, new Uint8Array(2)).result).toBe(Result.bad_request);
    expect(d.read(Operation.get, encodeKeyRequest(new Uint8Array(0), null)).result).toBe(Result.bad_request);
  });

  test("a value that cannot be read is unavailable (retry), never an empty success", () => {
    const d = new Disk();
    d.put("x", k("hello"));
    const unreadable = { value: () => null, block: () => null, value_size_max: 1 << 20 };
    expect(executeRead(d.store, Operation.get, encodeKeyRequest(k("x"), null), unreadable).result).toBe(Result.unavailable);
    // stat needs no value.
    expect(executeRead(d.store, Operation.stat, encodeKeyRequest(k("x"), null), unreadable).result).toBe(Result.ok);
  });

  test("list honours prefix, after, limit and the truncated flag", () => {
    const d = new Disk();
    for (const key of ["a", "b/1", "b/2", "b/3", "b0", "c"]) d.put(key, k(key));
    const list = (prefix: string, after: string, limit: number) => {
      const result = d.read(Operation.list, encodeListRequest(k(prefix), k(after), limit));
      expect(result.result).toBe(Result.ok);
      const reply = decodeListReply(result.body)!;
      return { keys: reply.entries.map((e) => keyFromBytes(e.key)), truncated: reply.truncated, entries: reply.entries };
    };
    expect(list("b/", "", 10)).toMatchObject({ keys: ["b/1", "b/2", "b/3"], truncated: false });
    expect(list("b/", "", 3)).toMatchObject({ keys: ["b/1", "b/2", "b/3"], truncated: false });
    expect(list("b/", "", 2)).toMatchObject({ keys: ["b/1", "b/2"], truncated: true });
    expect(list("b/", "b/2", 2)).toMatchObject({ keys: ["b/3"], truncated: false });
    expect(list("b", "b/3", 5)).toMatchObject({ keys: ["b0"], truncated: false });
    expect(list("", "", 1000).keys).toEqual(["a", "b/1", "b/2", "b/3", "b0", "c"]);
    expect(list("", "b0", 1000).keys).toEqual(["c"]);
    expect(list("z", "", 10)).toMatchObject({ keys: [], truncated: false });
    // Entries carry the object info.
    const entry = list("c", "", 1).entries[0]!;
    const stored = d.store.get("c")!;
    expect(entry).toMatchObject({ version: stored.version, timestamp: stored.timestamp, size: 1, checksum: stored.checksum });
    expect(d.read(Operation.list, encodeListRequest(k(""), k(""), list_limit_max + 1)).result).toBe(Result.bad_request);
  });

  test("keys, prefixes and after are bytes: 0x00, 0xfe, 0xff and non-UTF-8 stay distinct", () => {
    const d = new Disk();
    const b = (...bytes: number[]) => new Uint8Array(bytes);
    const keys = [b(107, 0xff), b(107, 0xfe), b(107, 0), b(107, 0, 0), b(107, 0xff, 0), b(107, 0xff, 0xff), b(0xff)];
    for (const key of keys) expect(d.write(Operation.put, encodeKeyRequest(key, key)).result).toBe(Result.ok);
    for (const key of keys) expect(d.read(Operation.get, encodeKeyRequest(key, null)).body.subarray(object_info_size)).toEqual(key);
    // 0xc0 is what a lossy UTF-8 decoding would fold 0xfe and 0xff into (U+FFFD): no such key.
    expect(d.read(Operation.get, encodeKeyRequest(b(107, 0xc0), null)).result).toBe(Result.not_found);
    const list = (prefix: Uint8Array, after: Uint8Array) =>
      decodeListReply(d.read(Operation.list, encodeListRequest(prefix, after, 100)).body)!.entries.map((e) => [...e.key]);
    expect(list(b(107, 0xff), b())).toEqual([
      [107, 0xff],
      [107, 0xff, 0],
      [107, 0xff, 0xff],
    ]);
    expect(list(b(107, 0), b())).toEqual([
      [107, 0],
      [107, 0, 0],
    ]);
    expect(list(b(107), b(107, 0))).toEqual([
      [107, 0, 0],
      [107, 0xfe],
      [107, 0xff],
      [107, 0xff, 0],
      [107, 0xff, 0xff],
    ]);
    expect(list(b(107), b(107, 0xff))).toEqual([
      [107, 0xff, 0],
      [107, 0xff, 0xff],
    ]);
    expect(list(b(), b(107, 0xff, 0xff))).toEqual([[0xff]]);
    expect(list(b(0xff), b(0xff))).toEqual([]);
  });

  test("paging with after visits every key exactly once", () => {
    const prng = new Prng(3);
    const d = new Disk();
    const keys = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const key = Array.from({ length: prng.range(1, 4) }, () => prng.pick(["a", "b", "/", "\u0000", "\u00ff"])).join("");
      keys.add(key);
      d.store.set(key, { version: i + 1, timestamp: 0, size: 0, checksum: 0n, segment: 0, offset: 0 });
    }
    for (const prefix of ["", "a", "b/"]) {
      const seen: string[] = [];
      let after: Uint8Array = new Uint8Array(0);
      for (;;) {
        const reply = decodeListReply(
          d.read(Operation.list, encodeListRequest(new Uint8Array([...prefix].map((c) => c.charCodeAt(0))), after, 7)).body,
        )!;
        for (const e of reply.entries) seen.push(keyFromBytes(e.key));
        if (!reply.truncated) break;
        after = reply.entries[reply.entries.length - 1]!.key;
      }
      expect(seen).toEqual([...keys].filter((key) => key.startsWith(prefix)).sort());
    }
  });

  test("a list of long keys stops below the reply size limit and says it is truncated", () => {
    const d = new Disk();
    for (let i = 0; i < list_limit_max; i++) {
      const key = i.toString().padStart(4, "0").padEnd(key_size_max, "k");
      d.store.set(key, { version: i + 1, timestamp: 0, size: 0, checksum: 0n, segment: 0, offset: 0 });
    }
    const result = d.read(Operation.list, encodeListRequest(new Uint8Array(0), new Uint8Array(0), list_limit_max));
    expect(result.result).toBe(Result.ok);
    expect(result.body.length).toBeLessThanOrEqual(list_reply_size_max);
    const reply = decodeListReply(result.body)!;
    expect(reply.truncated).toBe(true);
    expect(reply.entries.length).toBeGreaterThan(0);
    expect(reply.entries.length).toBeLessThan(list_limit_max);
  });
});
