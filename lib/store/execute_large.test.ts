/** Execution of the large-object operations (docs/LARGE_OBJECTS.md §5, §8), against an in-memory disk. */
import { describe, expect, test } from "bun:test";
import {
  executeLargeRead,
  executeLargeWrite,
  executeRead,
  executeWrite,
  executedManifestBlocks,
  sizeLimitOf,
  validateRequest,
  type ExecuteResult,
  type LargeLimits,
} from "./execute.ts";
import { ObjectStore, type ObjectEntry } from "./object_store.ts";
import { Condition, Operation, Result, decodeU64, encodeKeyRequest, object_info_size, readObjectInfo } from "./operations.ts";
import {
  ObjectKind,
  decodeCompleteUploadReply,
  decodeCreateUploadReply,
  decodeReadReply,
  decodeUploadIncomplete,
  encodeAbortUpload,
  encodeCompleteUpload,
  encodeCreateUpload,
  encodeHousekeeping,
  encodePutObject,
  encodeReadRequest,
  encodeUserMeta,
  encodeWriteBlock,
  manifestChecksum,
  partChecksum,
  type ObjectMetadata,
  type UploadPart,
} from "./large_bodies.ts";
import type { Block } from "./uploads.ts";
import { expire_per_op_max, object_size_max_bytes } from "../constants.ts";
import { checksum } from "../util/checksum.ts";
import { Prng } from "../util/prng.ts";

const te = new TextEncoder();
const k = (s: string): Uint8Array => te.encode(s);
const no_meta: ObjectMetadata = { content_type: "", user_meta: new Uint8Array(0) };
const limits: LargeLimits = { uploads_open_max: 4, block_size_max: 64 };

/** A fake disk: each op's body is stored as its own segment, at offset 100. */
class Disk {
  readonly segments = new Map<number, Uint8Array>();
  private next = 1;
  readonly store = new ObjectStore();
  timestamp = 1000;
  limits: LargeLimits = limits;

  exec(operation: Operation, body: Uint8Array, timestamp = this.timestamp + 1): ExecuteResult {
    const segment = this.next++;
    const image = new Uint8Array(100 + body.length);
    image.set(body, 100);
    this.segments.set(segment, image);
    this.timestamp = timestamp;
    const location = { segment, offset: 100 };
    const result =
      operation === Operation.put || operation === Operation.delete
        ? executeWrite(this.store, timestamp, operation, body, location)
        : executeLargeWrite(this.store, this.limits, timestamp, operation, body, location);
    this.store.invariants();
    return result;
  }

  create(
    key: string,
    o: { condition?: Condition; if_version?: number; declared_size?: number | null; metadata?: ObjectMetadata } = {},
  ): ExecuteResult {
    const body = encodeCreateUpload({
      key: k(key),
      condition: o.condition ?? Condition.none,
      if_version: o.if_version ?? 0,
      declared_size: o.declared_size ?? null,
      metadata: o.metadata ?? no_meta,
    });
    return this.exec(Operation.create_upload, body);
  }

  createId(key: string, o: Parameters<Disk["create"]>[1] = {}): number {
    const r = this.create(key, o);
    expect(r.result).toBe(Result.ok);
    return decodeCreateUploadReply(r.body)!.upload_id;
  }

  block(upload_id: number, part_number: number, block_index: number, data: Uint8Array, attempt = 1n, timestamp?: number): ExecuteResult {
    const body = encodeWriteBlock({ upload_id, part_number, block_index, attempt, checksum: checksum(data), data });
    return this.exec(Operation.write_block, body, timestamp);
  }

  complete(
    upload_id: number,
    parts: UploadPart[],
    o: { condition?: Condition; if_version?: number; declared_size?: number | null; md5?: Uint8Array | null; user_meta?: Uint8Array } = {},
  ): ExecuteResult {
    const body = encodeCompleteUpload({
      upload_id,
      condition: o.condition ?? Condition.none,
      if_version: o.if_version ?? 0,
      declared_size: o.declared_size ?? null,
      md5: o.md5 ?? null,
      parts,
      user_meta: o.user_meta ?? null,
    });
    return this.exec(Operation.complete_upload, body);
  }

  abort(upload_id: number): ExecuteResult {
    return this.exec(Operation.abort_upload, encodeAbortUpload(upload_id));
  }

  housekeeping(age: number | null, timestamp: number): ExecuteResult {
    return this.exec(Operation.housekeeping, encodeHousekeeping({ abandon_age_ms: age }), timestamp);
  }

  readonly value_reader = (_key: string, entry: ObjectEntry): Uint8Array | null => {
    const image = this.segments.get(entry.segment);
    return image === undefined ? null : image.slice(entry.offset, entry.offset + entry.size);
  };

  broken = new Set<number>();
  readonly block_reader = (block: Block): Uint8Array | null => {
    const image = this.segments.get(block.segment);
    if (image === undefined || this.broken.has(block.id)) return null;
    const bytes = image.slice(block.offset, block.offset + block.size);
    return checksum(bytes) === block.checksum ? bytes : null;
  };

  read(
    key: string,
    o: { version?: number; offset?: number; length?: number; metadata?: boolean; block_map?: boolean } = {},
  ): ExecuteResult {
    const body = encodeReadRequest({
      key: k(key),
      version: o.version ?? 0,
      offset: o.offset ?? 0,
      length: o.length ?? 4096,
      metadata: o.metadata ?? false,
      block_map: o.block_map ?? false,
    });
    return executeLargeRead(this.store, body, { value: this.value_reader, block: this.block_reader });
  }

  /** Writes data in blocks of `size` as one part, and returns the part to complete with. */
  part(upload_id: number, part_number: number, data: Uint8Array, size: number, attempt = 1n): UploadPart {
    const sums: bigint[] = [];
    let index = 0;
    for (let o = 0; o < data.length; o += size, index++) {
      const chunk = data.subarray(o, Math.min(o + size, data.length));
      sums.push(checksum(chunk));
      expect(this.block(upload_id, part_number, index, chunk, attempt).result).toBe(Result.ok);
    }
    return { part_number, block_count: index, attempt, part_size: data.length, part_checksum: partChecksum(sums) };
  }

  /** A whole upload of data in parts of part_size, blocks of block_size; the version. */
  upload(key: string, data: Uint8Array, part_size: number, block_size: number): number {
    const id = this.createId(key);
    const parts: UploadPart[] = [];
    for (let o = 0, n = 1; o < data.length; o += part_size, n++)
      parts.push(this.part(id, n, data.subarray(o, Math.min(o + part_size, data.length)), block_size));
    const r = this.complete(id, parts);
    expect(r.result).toBe(Result.ok);
    return decodeCompleteUploadReply(r.body)!.version;
  }
}

function bytes(n: number, seed: number): Uint8Array {
  const prng = new Prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = prng.int(256);
  return out;
}

/** A body whose one-byte key "a" at `at` is cut out and its u16 key_size at 0 set to 0. */
function withoutKey(body: Uint8Array, at: number): Uint8Array {
  const out = new Uint8Array(body.length - 1);
  out.set(body.subarray(0, at));
  out.set(body.subarray(at + 1), at);
  out[0] = 0;
  out[1] = 0;
  return out;
}

const u64 = (r: ExecuteResult): number | null => decodeU64(r.body);

describe("arrival (validateRequest)", () => {
  const arrival = { value_size_max: 1 << 20, block_size_max: 64 };

  test("a well-formed large-object request is let in; housekeeping never is, from a client", () => {
    const create = encodeCreateUpload({ key: k("a"), condition: Condition.none, if_version: 0, declared_size: null, metadata: no_meta });
    expect(validateRequest(Operation.create_upload, create, arrival)).toBe(Result.ok);
    const data = bytes(64, 1);
    const block = encodeWriteBlock({ upload_id: 1, part_number: 1, block_index: 0, attempt: 1n, checksum: checksum(data), data });
    expect(validateRequest(Operation.write_block, block, arrival)).toBe(Result.ok);
    expect(validateRequest(Operation.abort_upload, encodeAbortUpload(1), arrival)).toBe(Result.ok);
    expect(validateRequest(Operation.housekeeping, encodeHousekeeping({ abandon_age_ms: null }), arrival)).toBe(Result.bad_request);
  });

  test("a block above block_size_max is too large and names that limit; a wrong checksum is a bad request", () => {
    const data = bytes(65, 2);
    const block = encodeWriteBlock({ upload_id: 1, part_number: 1, block_index: 0, attempt: 1n, checksum: checksum(data), data });
    expect(validateRequest(Operation.write_block, block, arrival)).toBe(Result.value_too_large);
    expect(sizeLimitOf(Operation.write_block, arrival)).toBe(64);
    expect(sizeLimitOf(Operation.create_upload, arrival)).toBe(object_size_max_bytes);
    expect(sizeLimitOf(Operation.put, arrival)).toBe(1 << 20);
    const lying = encodeWriteBlock({ upload_id: 1, part_number: 1, block_index: 0, attempt: 1n, checksum: 7n, data: bytes(8, 3) });
    expect(validateRequest(Operation.write_block, lying, arrival)).toBe(Result.bad_request);
  });
});

describe("get (3) and stat (6) of a chunked object", () => {
  test("get assembles a chunked object up to value_size_max with the xxh64 of its bytes; above, value_too_large", () => {
    const d = new Disk();
    const data = bytes(300, 4);
    d.upload("a", data, 200, 64);
    const readers = { value: d.value_reader, block: d.block_reader, value_size_max: 300 };
    const got = executeRead(d.store, Operation.get, encodeKeyRequest(k("a"), null), readers);
    expect(got.result).toBe(Result.ok);
    const info = readObjectInfo(got.body, 0)!;
    expect(info.checksum).toBe(checksum(data));
    expect(got.body.subarray(object_info_size)).toEqual(data);
    const stat = executeRead(d.store, Operation.stat, encodeKeyRequest(k("a"), null), readers);
    expect(readObjectInfo(stat.body, 0)!.checksum).toBe(d.store.get("a")!.checksum); // the manifest checksum
    const small = executeRead(d.store, Operation.get, encodeKeyRequest(k("a"), null), { ...readers, value_size_max: 299 });
    expect([small.result, decodeU64(small.body)]).toEqual([Result.value_too_large, 299]);
    d.broken.add(d.store.get("a")!.chunks!.blocks[2]!);
    expect(executeRead(d.store, Operation.get, encodeKeyRequest(k("a"), null), readers).result).toBe(Result.unavailable);
  });
});

describe("create_upload", () => {
  test("hands out increasing ids, never reused, and echoes the limits", () => {
    const d = new Disk();
    const r = d.create("a");
    expect(r.result).toBe(Result.ok);
    expect(decodeCreateUploadReply(r.body)).toEqual({ upload_id: 1, block_size_max: 64, object_size_max: object_size_max_bytes });
    expect(d.abort(1).result).toBe(Result.ok);
    expect(d.createId("a")).toBe(2);
    const u = d.store.large.upload(2)!;
    expect(u.created).toBe(d.timestamp);
    expect(u.touched).toBe(d.timestamp);
    expect(u.key).toBe("a");
  });

  test("an early condition answers condition_failed with the current version", () => {
    const d = new Disk();
    d.exec(Operation.put, encodeKeyRequest(k("a"), k("x"), Condition.none, 0));
    expect(d.create("a", { condition: Condition.if_absent }).result).toBe(Result.condition_failed);
    const r = d.create("a", { condition: Condition.if_version, if_version: 7 });
    expect([r.result, u64(r)]).toEqual([Result.condition_failed, 1]);
    const absent = d.create("b", { condition: Condition.if_version, if_version: 1 });
    expect([absent.result, u64(absent)]).toEqual([Result.condition_failed, 0]);
    expect(d.create("a", { condition: Condition.if_version, if_version: 1 }).result).toBe(Result.ok);
    expect(d.store.large.upload_count).toBe(1);
  });

  test("too_many_uploads at uploads_open_max, with the limit as its body", () => {
    const d = new Disk();
    for (let i = 0; i < limits.uploads_open_max; i++) d.createId(`k${i}`);
    const r = d.create("one-more");
    expect([r.result, u64(r)]).toEqual([Result.too_many_uploads, limits.uploads_open_max]);
    expect(d.store.large.upload_count).toBe(limits.uploads_open_max);
    expect(d.store.large.upload_counter).toBe(limits.uploads_open_max);
  });

  test("bad bodies, keys and declared sizes", () => {
    const d = new Disk();
    expect(d.exec(Operation.create_upload, new Uint8Array(10)).result).toBe(Result.bad_request);
    const keyless = withoutKey(
      encodeCreateUpload({ key: k("a"), condition: Condition.none, if_version: 0, declared_size: null, metadata: no_meta }),
      32,
    );
    expect(d.exec(Operation.create_upload, keyless).result).toBe(Result.key_invalid);
    const r = d.create("a", { declared_size: object_size_max_bytes + 1 });
    expect([r.result, u64(r)]).toEqual([Result.value_too_large, object_size_max_bytes]);
    expect(d.store.large.upload_counter).toBe(0);
  });
});

describe("write_block", () => {
  test("to an unknown upload answers upload_not_found", () => {
    const d = new Disk();
    expect(d.block(1, 1, 0, k("abc")).result).toBe(Result.upload_not_found);
    expect(d.store.large.block_counter).toBe(0);
  });

  test("stores a block where its prepare was journaled and touches the upload", () => {
    const d = new Disk();
    const id = d.createId("a");
    expect(d.block(id, 1, 0, k("hello"), 9n, 5000).result).toBe(Result.ok);
    const block = d.store.large.block(1)!;
    expect(block).toMatchObject({
      id: 1,
      size: 5,
      checksum: checksum(k("hello")),
      offset: 132,
      slot: { upload_id: id, part: 1, attempt: 9n, index: 0 },
    });
    expect(d.store.segments().has(block.segment)).toBe(true);
    expect(d.store.blocksIn(block.segment)).toEqual([1]);
    expect(d.store.liveBytesIn(block.segment)).toBe(5);
    expect(d.store.large.upload(id)!.touched).toBe(5000);
    expect(d.block_reader(block)).toEqual(k("hello"));
  });

  test("re-executed with the same bytes is harmless: no new block, the duplicate's bytes dead", () => {
    const d = new Disk();
    const id = d.createId("a");
    d.block(id, 1, 0, k("hello"));
    const before = d.store.large.block(1)!;
    expect(d.block(id, 1, 0, k("hello"), 1n, 7000).result).toBe(Result.ok);
    expect(d.store.large.block_counter).toBe(1);
    expect(d.store.large.block_count).toBe(1);
    expect(d.store.large.block(1)).toBe(before);
    expect(d.store.segments()).toEqual(new Set([before.segment]));
    expect(d.store.large.upload(id)!.touched).toBe(7000);
  });

  test("other bytes in the same slot replace it: the old block dies", () => {
    const d = new Disk();
    const id = d.createId("a");
    d.block(id, 1, 0, k("hello"));
    const old = d.store.large.block(1)!;
    d.block(id, 1, 0, k("world!"));
    expect(d.store.large.block(1)).toBeUndefined();
    expect(d.store.large.block(2)!.size).toBe(6);
    expect(d.store.segments().has(old.segment)).toBe(false);
    expect(d.store.large.upload(id)!.stored_bytes).toBe(6);
    // Another attempt is another slot: both are held until complete names one.
    d.block(id, 1, 0, k("other"), 2n);
    expect(d.store.large.block_count).toBe(2);
    expect(d.store.large.upload(id)!.stored_bytes).toBe(11);
  });
});

describe("complete_upload", () => {
  test("installs a chunked object: blocks in part-then-index order, manifest checksum, cumulative ends", () => {
    const d = new Disk();
    const data = bytes(100, 1);
    const id = d.createId("a", { declared_size: 100 });
    const p2 = d.part(id, 2, data.subarray(60), 16); // parts in any order
    const p1 = d.part(id, 1, data.subarray(0, 60), 16);
    const r = d.complete(id, [p1, p2]);
    expect(r.result).toBe(Result.ok);
    const entry = d.store.get("a")!;
    const sums = entry.chunks!.blocks.map((b) => d.store.large.block(b)!.checksum);
    expect(decodeCompleteUploadReply(r.body)).toEqual({ version: 1, checksum: manifestChecksum(sums, 100) });
    expect(entry).toMatchObject({ version: 1, size: 100, timestamp: d.timestamp, segment: 0, offset: 0 });
    expect([...entry.chunks!.ends]).toEqual([16, 32, 48, 60, 76, 92, 100]);
    expect(entry.chunks!.blocks).toEqual([4, 5, 6, 7, 1, 2, 3]);
    expect(d.store.large.upload(id)).toBeUndefined();
    expect(d.store.large.block(4)!.key).toBe("a");
    expect(d.store.revision).toBe(1);
  });

  test("unknown, completed or aborted upload answers upload_not_found", () => {
    const d = new Disk();
    expect(d.complete(1, []).result).toBe(Result.upload_not_found);
    const id = d.createId("a");
    expect(d.complete(id, []).result).toBe(Result.ok);
    expect(d.complete(id, []).result).toBe(Result.upload_not_found);
    expect(d.block(id, 1, 0, k("late")).result).toBe(Result.upload_not_found);
    expect(d.abort(id).result).toBe(Result.upload_not_found);
  });

  test("no parts makes an empty object", () => {
    const d = new Disk();
    const id = d.createId("a", { declared_size: 0 });
    expect(d.complete(id, []).result).toBe(Result.ok);
    expect(d.store.get("a")).toMatchObject({ size: 0, checksum: manifestChecksum([], 0) });
    expect(d.store.get("a")!.chunks!.blocks).toEqual([]);
  });

  test("a missing block answers upload_incomplete naming it; the upload stays open", () => {
    const d = new Disk();
    const id = d.createId("a");
    const data = bytes(48, 2);
    const part = d.part(id, 1, data, 16);
    // Block 1 of the part is replaced under another attempt only: (1, 1n, 1) still there; ask for 4 blocks.
    const r = d.complete(id, [{ ...part, block_count: 4 }]);
    expect(r.result).toBe(Result.upload_incomplete);
    expect(decodeUploadIncomplete(r.body)).toEqual({ part_number: 1, block_index: 3, stored_size: 48 });
    const other = d.complete(id, [part, { ...part, part_number: 2 }]);
    expect(decodeUploadIncomplete(other.body)).toEqual({ part_number: 2, block_index: 0, stored_size: 0 });
    const wrong_attempt = d.complete(id, [{ ...part, attempt: 5n }]);
    expect(decodeUploadIncomplete(wrong_attempt.body)).toEqual({ part_number: 1, block_index: 0, stored_size: 0 });
    expect(d.store.large.upload(id)).toBeDefined();
    expect(d.store.get("a")).toBeUndefined();
    // The client re-sends the named block and completes again.
    expect(d.complete(id, [part]).result).toBe(Result.ok);
  });

  test("a mismatching size or part checksum answers upload_incomplete with no block index", () => {
    const d = new Disk();
    const id = d.createId("a");
    const part = d.part(id, 1, bytes(40, 3), 16);
    const size = d.complete(id, [{ ...part, part_size: 41 }]);
    expect([size.result, decodeUploadIncomplete(size.body)]).toEqual([
      Result.upload_incomplete,
      { part_number: 1, block_index: null, stored_size: 40 },
    ]);
    const sum = d.complete(id, [{ ...part, part_checksum: part.part_checksum ^ 1n }]);
    expect(decodeUploadIncomplete(sum.body)).toEqual({ part_number: 1, block_index: null, stored_size: 40 });
    // A block rewritten with other bytes no longer matches the client's part checksum.
    d.block(id, 1, 1, bytes(16, 99));
    const rewritten = d.complete(id, [part]);
    expect(decodeUploadIncomplete(rewritten.body)!.block_index).toBeNull();
  });

  test("step 2 is asked of the manifest hook: executedManifestBlocks by default, and its answer decides", () => {
    const d = new Disk();
    const id = d.createId("a");
    const part = d.part(id, 1, bytes(40, 4), 16);
    const upload = d.store.large.upload(id)!;
    const found = executedManifestBlocks(d.store, upload, [part]);
    expect("blocks" in found ? found.blocks.map((b) => b.size) : found).toEqual([16, 16, 8]);
    expect(executedManifestBlocks(d.store, upload, [{ ...part, block_count: 4 }])).toEqual({
      missing: { part_number: 1, block_index: 3, stored_size: 40 },
    });
    // A hook that reports a block missing wins over a store that holds every block.
    const body = encodeCompleteUpload({
      upload_id: id,
      condition: Condition.none,
      if_version: 0,
      declared_size: null,
      md5: null,
      parts: [part],
    });
    const missing = { part_number: 1, block_index: 2, stored_size: 32 };
    const r = executeLargeWrite(d.store, limits, 2000, Operation.complete_upload, body, { segment: 99, offset: 0 }, () => ({ missing }));
    expect([r.result, decodeUploadIncomplete(r.body)]).toEqual([Result.upload_incomplete, missing]);
    expect(d.store.get("a")).toBeUndefined();
    expect(d.complete(id, [part]).result).toBe(Result.ok);
  });

  test("size_mismatch against complete's declared size, else create's", () => {
    const d = new Disk();
    const id = d.createId("a", { declared_size: 50 });
    const part = d.part(id, 1, bytes(40, 4), 16);
    const r = d.complete(id, [part]);
    expect([r.result, u64(r)]).toEqual([Result.size_mismatch, 40]);
    expect(d.complete(id, [part], { declared_size: 41 }).result).toBe(Result.size_mismatch);
    expect(d.complete(id, [part], { declared_size: 40 }).result).toBe(Result.ok);
  });

  test("compare-and-set at complete is binding; a failed one leaves the upload open", () => {
    const d = new Disk();
    const id = d.createId("a", { condition: Condition.if_absent });
    const part = d.part(id, 1, bytes(20, 5), 16);
    d.exec(Operation.put, encodeKeyRequest(k("a"), k("racer"), Condition.none, 0)); // version 1
    const r = d.complete(id, [part], { condition: Condition.if_absent });
    expect([r.result, u64(r)]).toEqual([Result.condition_failed, 1]);
    expect(d.complete(id, [part], { condition: Condition.if_version, if_version: 2 }).result).toBe(Result.condition_failed);
    expect(d.store.large.upload(id)!.slots.size).toBe(2);
    const ok = d.complete(id, [part], { condition: Condition.if_version, if_version: 1 });
    expect(ok.result).toBe(Result.ok);
    expect(decodeCompleteUploadReply(ok.body)!.version).toBe(2);
  });

  test("blocks the manifest does not name die with the upload", () => {
    const d = new Disk();
    const id = d.createId("a");
    d.part(id, 1, bytes(32, 6), 16, 1n); // an abandoned attempt of part 1
    d.block(id, 3, 0, k("never named"));
    const part = d.part(id, 1, bytes(20, 7), 16, 2n);
    expect(d.store.large.block_count).toBe(5);
    expect(d.complete(id, [part]).result).toBe(Result.ok);
    expect(d.store.large.block_count).toBe(2);
    expect(d.store.large.block_bytes).toBe(20);
    expect([...d.store.segments()].reduce((n, s) => n + d.store.liveBytesIn(s), 0)).toBe(20);
  });

  test("metadata from create, md5 from complete; the header carries them", () => {
    const d = new Disk();
    const metadata = { content_type: "video/mp4", user_meta: encodeUserMeta([{ name: "owner", value: k("ann") }]) };
    const id = d.createId("a", { metadata });
    const md5 = bytes(16, 8);
    const part = d.part(id, 1, bytes(10, 9), 16);
    expect(d.complete(id, [part], { md5 }).result).toBe(Result.ok);
    expect(d.store.get("a")!.meta).toEqual({ ...metadata, md5 });
    const reply = decodeReadReply(d.read("a", { length: 0, metadata: true }).body)!;
    expect(reply.header).toMatchObject({ kind: ObjectKind.chunked, block_count: 1, md5, metadata });
  });

  test("user metadata given at complete replaces the upload's; the content type stays", () => {
    const d = new Disk();
    const metadata = { content_type: "video/mp4", user_meta: encodeUserMeta([{ name: "owner", value: k("ann") }]) };
    const id = d.createId("a", { metadata });
    const user_meta = encodeUserMeta([
      { name: "owner", value: k("ann") },
      { name: "toastyfs-s3-parts", value: k("3") },
    ]);
    const part = d.part(id, 1, bytes(10, 9), 16);
    expect(d.complete(id, [part], { user_meta }).result).toBe(Result.ok);
    expect(d.store.get("a")!.meta).toEqual({ content_type: "video/mp4", user_meta, md5: null });
  });
});

describe("deaths of blocks (§8)", () => {
  test("an overwrite by complete, put or put_object frees the old version's blocks", () => {
    const d = new Disk();
    d.upload("a", bytes(64, 10), 64, 16);
    const first = d.store.get("a")!.chunks!.blocks;
    d.upload("a", bytes(30, 11), 64, 16);
    for (const b of first) expect(d.store.large.block(b)).toBeUndefined();
    expect(d.store.large.block_count).toBe(2);
    d.exec(Operation.put, encodeKeyRequest(k("a"), k("inline now"), Condition.none, 0));
    expect(d.store.large.block_count).toBe(0);
    expect(d.store.large.block_bytes).toBe(0);
    d.upload("a", bytes(30, 12), 64, 16);
    const put_object = encodePutObject({
      key: k("a"),
      condition: Condition.none,
      if_version: 0,
      md5: null,
      metadata: no_meta,
      value: k("v"),
    });
    expect(d.exec(Operation.put_object, put_object).result).toBe(Result.ok);
    expect(d.store.large.block_count).toBe(0);
  });

  test("delete frees them", () => {
    const d = new Disk();
    d.upload("a", bytes(64, 13), 32, 16);
    const segments = d.store.segments();
    expect(segments.size).toBe(4);
    expect(d.exec(Operation.delete, encodeKeyRequest(k("a"), null, Condition.none, 0)).result).toBe(Result.ok);
    expect(d.store.large.block_count).toBe(0);
    expect(d.store.segments().size).toBe(0);
  });

  test("abort frees them; a second abort answers upload_not_found", () => {
    const d = new Disk();
    const id = d.createId("a");
    d.part(id, 1, bytes(40, 14), 16);
    expect(d.abort(id).result).toBe(Result.ok);
    expect(d.store.large.block_count).toBe(0);
    expect(d.store.large.upload_count).toBe(0);
    expect(d.abort(id).result).toBe(Result.upload_not_found);
    expect(d.exec(Operation.abort_upload, new Uint8Array(7)).result).toBe(Result.bad_request);
  });
});

describe("housekeeping", () => {
  test("expires uploads touched at or before timestamp − age, oldest touched first, blocks included", () => {
    const d = new Disk();
    d.limits = { uploads_open_max: 100, block_size_max: 64 };
    const a = d.createId("a"); // touched 1001
    const b = d.createId("b"); // 1002
    const c = d.createId("c"); // 1003
    d.block(a, 1, 0, k("keeps a alive"), 1n, 1500);
    const r = d.housekeeping(500, 1502); // cutoff: touched ≤ 1002
    expect([r.result, u64(r)]).toEqual([Result.ok, 1]);
    expect([a, b, c].map((id) => d.store.large.upload(id) !== undefined)).toEqual([true, false, true]);
    expect(u64(d.housekeeping(500, 2000))).toBe(2);
    expect(d.store.large.upload_count).toBe(0);
    expect(d.store.large.block_count).toBe(0);
  });

  test("at most expire_per_op_max per entry, the oldest first", () => {
    const d = new Disk();
    d.limits = { uploads_open_max: 100, block_size_max: 64 };
    const ids: number[] = [];
    // Created in reverse time order, so id order is not touch order.
    for (let i = 0; i < 70; i++) {
      ids.push(d.createId(`k${i}`));
      d.store.large.touch(d.store.large.upload(ids[i]!)!, 10_000 - i);
    }
    expect(u64(d.housekeeping(1, 20_000))).toBe(expire_per_op_max);
    const left = d.store.large.allUploads().map((u) => u.id);
    expect(left).toEqual(ids.slice(0, 70 - expire_per_op_max)); // the most recently touched stay
    expect(u64(d.housekeeping(1, 20_000))).toBe(70 - expire_per_op_max);
  });

  test("an empty body is a no-op, a bad one bad_request", () => {
    const d = new Disk();
    d.createId("a");
    expect(u64(d.housekeeping(null, 1e12))).toBe(0);
    expect(d.store.large.upload_count).toBe(1);
    expect(d.exec(Operation.housekeeping, new Uint8Array(3)).result).toBe(Result.bad_request);
    expect(d.exec(Operation.housekeeping, new Uint8Array(8)).result).toBe(Result.bad_request); // age 0
  });
});

describe("put_object", () => {
  test("an inline put with metadata; without any it hashes like put", () => {
    const meta = { content_type: "text/plain", user_meta: new Uint8Array(0) };
    const md5 = bytes(16, 15);
    const d = new Disk();
    const body = encodePutObject({ key: k("a"), condition: Condition.none, if_version: 0, md5, metadata: meta, value: k("hello") });
    const r = d.exec(Operation.put_object, body);
    expect([r.result, u64(r)]).toEqual([Result.ok, 1]);
    expect(d.store.get("a")!.meta).toEqual({ ...meta, md5 });
    expect(d.value_reader("a", d.store.get("a")!)).toEqual(k("hello"));
    const read = decodeReadReply(d.read("a", { metadata: true }).body)!;
    expect(read.header).toMatchObject({ kind: ObjectKind.inline, md5, metadata: meta, block_count: 1 });
    expect(read.data).toEqual(k("hello"));

    const plain = new Disk();
    const bare = encodePutObject({
      key: k("a"),
      condition: Condition.none,
      if_version: 0,
      md5: null,
      metadata: no_meta,
      value: k("hello"),
    });
    plain.exec(Operation.put_object, bare, 5);
    const legacy = new Disk();
    legacy.exec(Operation.put, encodeKeyRequest(k("a"), k("hello"), Condition.none, 0), 5);
    expect(plain.store.get("a")!.meta).toBeUndefined();
    expect(plain.store.digest()).toBe(legacy.store.digest());
    expect(d.store.digest()).not.toBe(legacy.store.digest());
  });

  test("conditions, keys and bad bodies", () => {
    const d = new Disk();
    const body = (condition: Condition, v: number) =>
      encodePutObject({ key: k("a"), condition, if_version: v, md5: null, metadata: no_meta, value: k("x") });
    expect(d.exec(Operation.put_object, body(Condition.if_version, 1)).result).toBe(Result.condition_failed);
    expect(d.exec(Operation.put_object, body(Condition.if_absent, 0)).result).toBe(Result.ok);
    expect(d.exec(Operation.put_object, body(Condition.if_absent, 0)).result).toBe(Result.condition_failed);
    expect(d.exec(Operation.put_object, body(Condition.if_version, 1)).result).toBe(Result.ok);
    expect(d.exec(Operation.put_object, withoutKey(body(Condition.none, 0), 32)).result).toBe(Result.key_invalid);
    expect(d.exec(Operation.put_object, new Uint8Array(12)).result).toBe(Result.bad_request);
  });
});

describe("read", () => {
  test("ranges across block boundaries return exactly the object's bytes, with the block map", () => {
    const d = new Disk();
    const data = bytes(300, 16);
    const version = d.upload("a", data, 100, 17); // blocks of 17 and a short last one per part
    const entry = d.store.get("a")!;
    const prng = new Prng(17);
    for (let i = 0; i < 300; i++) {
      const offset = prng.int(301);
      const length = prng.int(120);
      const r = d.read("a", { version: i % 2 === 0 ? 0 : version, offset, length, block_map: true });
      expect(r.result).toBe(Result.ok);
      const reply = decodeReadReply(r.body)!;
      const end = Math.min(offset + length, 300);
      expect(reply.data).toEqual(data.subarray(offset, end));
      expect(reply.header).toMatchObject({
        version,
        size: 300,
        kind: ObjectKind.chunked,
        checksum: entry.checksum,
        block_count: entry.chunks!.blocks.length,
      });
      const map = reply.block_map!;
      if (end === offset) expect(map).toEqual([]);
      else {
        expect(map[0]!.start).toBeLessThanOrEqual(offset);
        expect(map[0]!.start + map[0]!.size).toBeGreaterThan(offset);
        const last = map[map.length - 1]!;
        expect(last.start + last.size).toBeGreaterThanOrEqual(end);
        expect(last.start).toBeLessThan(end);
        for (const b of map) expect(b.checksum).toBe(checksum(data.subarray(b.start, b.start + b.size)));
      }
    }
  });

  test("not_found, object_changed after an overwrite or delete, range_invalid", () => {
    const d = new Disk();
    expect(d.read("a").result).toBe(Result.not_found);
    const absent = d.read("a", { version: 3 });
    expect([absent.result, u64(absent)]).toEqual([Result.object_changed, 0]);
    const v1 = d.upload("a", bytes(50, 18), 50, 16);
    expect(d.read("a", { version: v1, offset: 20 }).result).toBe(Result.ok);
    const v2 = d.upload("a", bytes(50, 19), 50, 16);
    const changed = d.read("a", { version: v1, offset: 20 });
    expect([changed.result, u64(changed)]).toEqual([Result.object_changed, v2]);
    const bad = d.read("a", { version: v2, offset: 51 });
    expect([bad.result, u64(bad)]).toEqual([Result.range_invalid, 50]);
    const at_end = decodeReadReply(d.read("a", { offset: 50 }).body)!;
    expect(at_end.data.length).toBe(0);
    d.exec(Operation.delete, encodeKeyRequest(k("a"), null, Condition.none, 0));
    const gone = d.read("a", { version: v2 });
    expect([gone.result, u64(gone)]).toEqual([Result.object_changed, 0]);
  });

  test("inline objects are one block; a damaged block answers unavailable", () => {
    const d = new Disk();
    d.exec(Operation.put, encodeKeyRequest(k("i"), k("0123456789"), Condition.none, 0));
    const reply = decodeReadReply(d.read("i", { offset: 3, length: 4, block_map: true }).body)!;
    expect(reply.data).toEqual(k("3456"));
    expect(reply.block_map).toEqual([{ start: 0, size: 10, checksum: checksum(k("0123456789")) }]);
    expect(reply.header.metadata).toBeNull();
    d.upload("c", bytes(40, 20), 40, 16);
    d.broken.add(d.store.get("c")!.chunks!.blocks[1]!);
    expect(d.read("c", { offset: 0, length: 10 }).result).toBe(Result.ok); // only block 0
    expect(d.read("c", { offset: 10, length: 10 }).result).toBe(Result.unavailable);
    const keyless = withoutKey(encodeReadRequest({ key: k("a"), version: 0, offset: 0, length: 1, metadata: false, block_map: false }), 24);
    expect(executeLargeRead(d.store, keyless, { value: d.value_reader, block: d.block_reader }).result).toBe(Result.key_invalid);
    expect(executeLargeRead(d.store, new Uint8Array(5), { value: d.value_reader, block: d.block_reader }).result).toBe(Result.bad_request);
  });
});

describe("determinism", () => {
  test("two replicas executing the same random ops agree on everything, and invariants hold throughout", () => {
    const run = (): ObjectStore => {
      const d = new Disk();
      d.limits = { uploads_open_max: 6, block_size_max: 64 };
      const prng = new Prng(42);
      const keys = ["a", "b", "c"];
      let completed = 0;
      for (let step = 0; step < 600; step++) {
        const upload_ids = d.store.large.allUploads().map((u) => u.id);
        const upload =
          upload_ids.length > 0 && prng.int(4) > 0 ? upload_ids[prng.int(upload_ids.length)]! : prng.int(d.store.large.upload_counter + 2);
        const key = keys[prng.int(keys.length)]!;
        switch (prng.int(8)) {
          case 0:
            d.create(key);
            break;
          case 1:
          case 2:
          case 3:
            d.block(upload, 1 + prng.int(2), prng.int(3), bytes(1 + prng.int(20), prng.int(4)), BigInt(1 + prng.int(2)));
            break;
          case 4: {
            const u = d.store.large.upload(upload);
            const parts: UploadPart[] = [];
            for (const part_number of [1, 2]) {
              const attempt = BigInt(1 + prng.int(2));
              const blocks: Block[] = [];
              for (let i = 0; u !== undefined && i < 3; i++) {
                const id = u.slots.get(`${part_number}:${attempt}:${i}`);
                if (id === undefined) break;
                blocks.push(d.store.large.block(id)!);
              }
              if (blocks.length === 0) continue;
              const size = blocks.reduce((n, b) => n + b.size, 0);
              parts.push({
                part_number,
                block_count: blocks.length,
                attempt,
                part_size: size,
                part_checksum: partChecksum(blocks.map((b) => b.checksum)),
              });
            }
            if (d.complete(upload, parts).result === Result.ok) completed++;
            break;
          }
          case 5:
            d.abort(upload);
            break;
          case 6:
            d.exec(
              prng.int(2) === 0 ? Operation.put : Operation.delete,
              encodeKeyRequest(k(key), prng.int(2) === 0 ? k("v") : null, Condition.none, 0),
            );
            break;
          default:
            d.housekeeping(1 + prng.int(30), d.timestamp + 1);
        }
      }
      expect(d.store.large.block_counter).toBeGreaterThan(50);
      expect(completed).toBeGreaterThan(10);
      return d.store;
    };
    const a = run();
    const b = run();
    expect(a.digest()).toBe(b.digest());
    expect(a.large.digest()).toBe(b.large.digest());
    expect([a.revision, a.large.upload_counter, a.large.block_counter]).toEqual([
      b.revision,
      b.large.upload_counter,
      b.large.block_counter,
    ]);
  });
});
