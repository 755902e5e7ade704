import { describe, expect, test } from "bun:test";
import {
  abort_upload_size,
  block_map_entries_max,
  complete_upload_fixed_size,
  contentTypeProblem,
  create_upload_fixed_size,
  decodeAbortUpload,
  decodeCompleteUpload,
  decodeCompleteUploadReply,
  decodeCreateUpload,
  decodeCreateUploadReply,
  decodeHousekeeping,
  decodePutObject,
  decodeReadReply,
  decodeReadRequest,
  decodeUploadIncomplete,
  decodeUserMeta,
  decodeWriteBlock,
  encodeAbortUpload,
  encodeCompleteUpload,
  encodeCompleteUploadReply,
  encodeCreateUpload,
  encodeCreateUploadReply,
  encodeHousekeeping,
  encodePutObject,
  encodeReadReply,
  encodeReadRequest,
  encodeUploadIncomplete,
  encodeUserMeta,
  encodeWriteBlock,
  manifestChecksum,
  metaNameProblem,
  ObjectKind,
  object_header_fixed_size,
  partChecksum,
  put_object_fixed_size,
  read_reply_size_max,
  read_request_fixed_size,
  readObjectHeader,
  upload_part_size,
  userMetaProblem,
  validateLargeRequest,
  write_block_fixed_size,
  type BlockMapEntry,
  type CompleteUploadRequest,
  type CreateUploadRequest,
  type MetaEntry,
  type ObjectHeader,
  type ObjectMetadata,
  type PutObjectRequest,
  type ReadReply,
  type ReadRequest,
  type UploadPart,
} from "./large_bodies.ts";
import { Condition, Operation, Result, isWrite, needsSession, operation_max, result_max } from "./operations.ts";
import { validateRequest } from "./execute.ts";
import {
  block_size_max_ceiling_bytes,
  block_size_min_bytes,
  content_type_size_max_bytes,
  defaultConfig,
  header_size,
  key_size_max,
  largeObjectConfigProblem,
  message_size_max,
  object_meta_size_max_bytes,
  object_size_max_bytes,
  part_blocks_max,
  read_size_max_bytes,
  upload_abandon_ms_ceiling,
  upload_parts_max,
  uploads_open_max_ceiling,
  type Config,
} from "../constants.ts";
import { checksum } from "../util/checksum.ts";
import { AssertionError } from "../util/assert.ts";
import { Prng } from "../util/prng.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

function bytes(prng: Prng, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = prng.int(256);
  return out;
}

function u53(prng: Prng, max = Number.MAX_SAFE_INTEGER): number {
  if (prng.chance(0.1)) return max;
  if (prng.chance(0.1)) return 0;
  return Math.min(max, prng.u32() * 2 ** 21 + (prng.u32() >>> 11));
}

function nonzeroU64(prng: Prng): bigint {
  const x = prng.u64();
  return x === 0n ? 1n : x;
}

function setU64(body: Uint8Array, offset: number, value: bigint): void {
  new DataView(body.buffer, body.byteOffset).setBigUint64(offset, value, true);
}

function setU32(body: Uint8Array, offset: number, value: number): void {
  new DataView(body.buffer, body.byteOffset).setUint32(offset, value, true);
}

function setU16(body: Uint8Array, offset: number, value: number): void {
  new DataView(body.buffer, body.byteOffset).setUint16(offset, value, true);
}

/** body with `extra` more bytes, or cut to `length`. */
function longer(body: Uint8Array, extra = 1): Uint8Array {
  const out = new Uint8Array(body.length + extra);
  out.set(body);
  return out;
}

function mutated(body: Uint8Array, change: (b: Uint8Array) => void): Uint8Array {
  const out = body.slice();
  change(out);
  return out;
}

function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
}

const name_chars = "abcdefghijklmnopqrstuvwxyz0123456789-";

function randomMeta(prng: Prng): MetaEntry[] {
  const entries: MetaEntry[] = [];
  const names = new Set<string>();
  let size = 0;
  for (let n = prng.int(6); n > 0; n--) {
    let name = "";
    for (let i = prng.range(1, prng.chance(0.1) ? 128 : 12); i > 0; i--) name += name_chars[prng.int(name_chars.length)];
    const value = bytes(prng, prng.int(prng.chance(0.1) ? 600 : 20));
    if (names.has(name) || size + 3 + name.length + value.length > object_meta_size_max_bytes) continue;
    names.add(name);
    size += 3 + name.length + value.length;
    entries.push({ name, value });
  }
  return entries;
}

function randomContentType(prng: Prng): string {
  let s = "";
  for (let i = prng.int(prng.chance(0.1) ? content_type_size_max_bytes + 1 : 30); i > 0; i--)
    s += String.fromCharCode(prng.range(0x20, 0x7e));
  return s;
}

function randomMetadata(prng: Prng): ObjectMetadata {
  return { content_type: randomContentType(prng), user_meta: encodeUserMeta(randomMeta(prng)) };
}

function randomKey(prng: Prng): Uint8Array {
  return bytes(prng, prng.chance(0.1) ? key_size_max : prng.range(1, 40));
}

function randomCondition(prng: Prng): Condition {
  return prng.pick([Condition.none, Condition.if_version, Condition.if_absent]);
}

const no_meta: ObjectMetadata = { content_type: "", user_meta: new Uint8Array(0) };
const key = new Uint8Array([107, 101, 121]); // "key"

// ---------------------------------------------------------------------------------------------

describe("user metadata", () => {
  test("round trip, sorted by name whatever the input order", () => {
    const prng = new Prng(101);
    for (let i = 0; i < 300; i++) {
      const entries = randomMeta(prng);
      const encoded = encodeUserMeta(prng.shuffle([...entries]));
      const decoded = decodeUserMeta(encoded)!;
      expect(decoded).toEqual([...entries].sort((a, b) => (a.name < b.name ? -1 : 1)));
      expect(encodeUserMeta(decoded)).toEqual(encoded); // canonical: one encoding per set
    }
  });

  test("the encoding byte by byte", () => {
    const encoded = encodeUserMeta([
      { name: "b", value: new Uint8Array([0xff]) },
      { name: "a-1", value: new Uint8Array(0) },
    ]);
    expect(hex(encoded)).toBe("03 00 00 61 2d 31 01 01 00 62 ff");
  });

  test("names: 1..128 characters of [a-z0-9-]", () => {
    expect(metaNameProblem("a")).toBeNull();
    expect(metaNameProblem("x".repeat(128))).toBeNull();
    expect(metaNameProblem("content-md5-2")).toBeNull();
    for (const bad of ["", "x".repeat(129), "A", "a_b", "a.b", "a b", "é", "a\u0000"]) expect(metaNameProblem(bad)).not.toBeNull();
    expect(
      userMetaProblem([
        { name: "a", value: new Uint8Array(0) },
        { name: "a", value: new Uint8Array(1) },
      ]),
    ).toContain("twice");
    expect(userMetaProblem([{ name: "a", value: new Uint8Array(object_meta_size_max_bytes - 4) }])).toBeNull();
    expect(userMetaProblem([{ name: "a", value: new Uint8Array(object_meta_size_max_bytes - 3) }])).toContain("2048");
  });

  test("the encoder refuses what the decoder would", () => {
    for (const entries of [
      [{ name: "Upper", value: new Uint8Array(0) }],
      [
        { name: "a", value: new Uint8Array(0) },
        { name: "a", value: new Uint8Array(0) },
      ],
      [{ name: "a", value: new Uint8Array(object_meta_size_max_bytes) }],
    ]) {
      expect(() => encodeUserMeta(entries)).toThrow(AssertionError);
    }
  });

  test("malformed encodings give null", () => {
    const good = encodeUserMeta([
      { name: "a", value: new Uint8Array([1]) },
      { name: "b", value: new Uint8Array([2, 3]) },
    ]);
    expect(decodeUserMeta(good)).not.toBeNull();
    expect(decodeUserMeta(new Uint8Array(0))).toEqual([]);
    // Cut anywhere but at the end of the first entry (5 bytes), which is a shorter valid encoding.
    for (let length = 1; length < good.length; length++) {
      if (length !== 5) expect(decodeUserMeta(good.subarray(0, length))).toBeNull();
    }
    expect(decodeUserMeta(good.subarray(0, 5))).toEqual([{ name: "a", value: new Uint8Array([1]) }]);
    expect(decodeUserMeta(longer(good))).toBeNull();
    const entry = (name: string, value: number[]) => [
      name.length,
      value.length & 0xff,
      value.length >> 8,
      ...[...name].map((c) => c.charCodeAt(0)),
      ...value,
    ];
    const cases: number[][] = [
      [...entry("b", []), ...entry("a", [])], // descending
      [...entry("a", []), ...entry("a", [1])], // duplicate
      [0, 0, 0], // empty name
      entry("A", []), // upper case
      entry("a_b", []),
      [129, 0, 0, ...new Array<number>(129).fill(0x61)], // name above 128
    ];
    for (const c of cases) expect(decodeUserMeta(new Uint8Array(c))).toBeNull();
    // Above 2048 bytes, even if well formed.
    expect(decodeUserMeta(new Uint8Array(entry("a", new Array<number>(2046).fill(7))))).toBeNull();
    expect(decodeUserMeta(new Uint8Array(entry("a", new Array<number>(2044).fill(7))))).not.toBeNull();
  });

  test("content type: printable ASCII, at most 255 bytes", () => {
    expect(contentTypeProblem("")).toBeNull();
    expect(contentTypeProblem("text/plain; charset=utf-8")).toBeNull();
    expect(contentTypeProblem("x".repeat(255))).toBeNull();
    expect(contentTypeProblem("x".repeat(256))).not.toBeNull();
    for (const bad of ["a\nb", "a\rb", "\u0000", "\u007f", "é"]) expect(contentTypeProblem(bad)).not.toBeNull();
  });
});

describe("create_upload", () => {
  function random(prng: Prng): CreateUploadRequest {
    return {
      key: randomKey(prng),
      condition: randomCondition(prng),
      if_version: u53(prng),
      declared_size: prng.chance(0.5) ? null : u53(prng),
      metadata: randomMetadata(prng),
    };
  }

  test("round trip", () => {
    const prng = new Prng(102);
    for (let i = 0; i < 300; i++) {
      const r = random(prng);
      const body = encodeCreateUpload(r);
      expect(body.length).toBe(create_upload_fixed_size + r.key.length + r.metadata.content_type.length + r.metadata.user_meta.length);
      expect(decodeCreateUpload(body)).toEqual(r);
    }
  });

  test("malformed bodies give null", () => {
    const good = encodeCreateUpload({
      key,
      condition: Condition.if_version,
      if_version: 5,
      declared_size: 100,
      metadata: { content_type: "text/plain", user_meta: encodeUserMeta([{ name: "a", value: new Uint8Array([1]) }]) },
    });
    expect(decodeCreateUpload(good)).not.toBeNull();
    for (let length = 0; length < good.length; length++) expect(decodeCreateUpload(good.subarray(0, length))).toBeNull();
    expect(decodeCreateUpload(longer(good))).toBeNull();
    const bad: [string, (b: Uint8Array) => void][] = [
      ["condition 3", (b) => (b[2] = 3)],
      ["an undefined flag", (b) => (b[3] = 3)],
      ["declared size without its flag", (b) => (b[3] = 0)],
      ["if_version 2^53", (b) => setU64(b, 8, 1n << 53n)],
      ["declared size 2^53", (b) => setU64(b, 16, 1n << 53n)],
      ["declared size 2^64-1", (b) => setU64(b, 16, (1n << 64n) - 1n)],
      ["a control byte in the content type", (b) => (b[create_upload_fixed_size + 3] = 10)],
      ["a bad metadata name", (b) => (b[create_upload_fixed_size + 3 + 10 + 3] = 0x41)],
      ["metadata cut short", (b) => setU16(b, 6, 3)],
    ];
    for (const [what, change] of bad) expect([what, decodeCreateUpload(mutated(good, change))]).toEqual([what, null]);
    // A user_meta_size above 2048 with that many bytes present.
    const big = new Uint8Array(create_upload_fixed_size + 1 + 2049);
    setU16(big, 0, 1);
    setU16(big, 6, 2049);
    expect(decodeCreateUpload(big)).toBeNull();
    // No declared size, declared_size 0: fine; reserved bytes are ignored.
    const plain = encodeCreateUpload({ key, condition: Condition.none, if_version: 0, declared_size: null, metadata: no_meta });
    expect(decodeCreateUpload(mutated(plain, (b) => ((b[5] = 9), (b[24] = 9))))!.declared_size).toBeNull();
  });

  test("the encoder asserts its inputs", () => {
    const r: CreateUploadRequest = { key, condition: Condition.none, if_version: 0, declared_size: null, metadata: no_meta };
    expect(() => encodeCreateUpload({ ...r, key: new Uint8Array(0) })).toThrow(AssertionError);
    expect(() => encodeCreateUpload({ ...r, declared_size: 2 ** 53 })).toThrow(AssertionError);
    expect(() => encodeCreateUpload({ ...r, metadata: { content_type: "a\n", user_meta: new Uint8Array(0) } })).toThrow(AssertionError);
    expect(() => encodeCreateUpload({ ...r, metadata: { content_type: "", user_meta: new Uint8Array([1, 0, 0, 0x41]) } })).toThrow(
      AssertionError,
    );
  });

  test("reply: upload id, block_size_max, object_size_max", () => {
    const prng = new Prng(103);
    for (let i = 0; i < 100; i++) {
      const r = {
        upload_id: Math.max(1, u53(prng)),
        block_size_max: prng.range(block_size_min_bytes, block_size_max_ceiling_bytes),
        object_size_max: Math.max(1, u53(prng)),
      };
      expect(decodeCreateUploadReply(encodeCreateUploadReply(r))).toEqual(r);
    }
    const good = encodeCreateUploadReply({
      upload_id: 1,
      block_size_max: block_size_max_ceiling_bytes,
      object_size_max: object_size_max_bytes,
    });
    expect(decodeCreateUploadReply(good.subarray(0, 23))).toBeNull();
    expect(decodeCreateUploadReply(longer(good))).toBeNull();
    for (const [offset, value] of [
      [0, 0n],
      [0, 1n << 53n],
      [8, BigInt(block_size_min_bytes - 1)],
      [8, BigInt(block_size_max_ceiling_bytes + 1)],
      [16, 0n],
      [16, 1n << 53n],
    ] as const) {
      expect(decodeCreateUploadReply(mutated(good, (b) => setU64(b, offset, value)))).toBeNull();
    }
  });
});

describe("write_block", () => {
  test("round trip; the data is a view into the body", () => {
    const prng = new Prng(104);
    for (let i = 0; i < 200; i++) {
      const data = bytes(prng, prng.range(1, 2000));
      const r = {
        upload_id: u53(prng),
        part_number: prng.range(1, upload_parts_max),
        block_index: prng.chance(0.1) ? part_blocks_max - 1 : prng.int(100),
        attempt: nonzeroU64(prng),
        checksum: checksum(data),
        data,
      };
      const body = encodeWriteBlock(r);
      const decoded = decodeWriteBlock(body)!;
      expect(decoded).toEqual({ ...r, data_offset: write_block_fixed_size });
      expect(decoded.data.buffer).toBe(body.buffer);
      expect(decoded.data.byteOffset).toBe(body.byteOffset + write_block_fixed_size);
    }
  });

  test("malformed bodies give null", () => {
    const data = new Uint8Array([1, 2, 3]);
    const good = encodeWriteBlock({ upload_id: 7, part_number: 1, block_index: 0, attempt: 9n, checksum: checksum(data), data });
    expect(decodeWriteBlock(good)).not.toBeNull();
    // Shorter than the fields, or no data at all.
    for (let length = 0; length <= write_block_fixed_size; length++) expect(decodeWriteBlock(good.subarray(0, length))).toBeNull();
    const bad: [string, (b: Uint8Array) => void][] = [
      ["upload id 2^53", (b) => setU64(b, 0, 1n << 53n)],
      ["part 0", (b) => setU32(b, 8, 0)],
      ["part 10001", (b) => setU32(b, 8, upload_parts_max + 1)],
      ["index 2^20", (b) => setU32(b, 12, part_blocks_max)],
      ["attempt 0", (b) => setU64(b, 16, 0n)],
    ];
    for (const [what, change] of bad) expect([what, decodeWriteBlock(mutated(good, change))]).toEqual([what, null]);
    const edge = mutated(
      good,
      (b) => (setU32(b, 8, upload_parts_max), setU32(b, 12, part_blocks_max - 1), setU64(b, 16, (1n << 64n) - 1n)),
    );
    expect(decodeWriteBlock(edge)).not.toBeNull();
  });

  test("the encoder asserts its inputs", () => {
    const data = new Uint8Array([1]);
    const r = { upload_id: 1, part_number: 1, block_index: 0, attempt: 1n, checksum: checksum(data), data };
    expect(() => encodeWriteBlock({ ...r, data: new Uint8Array(0) })).toThrow(AssertionError);
    expect(() => encodeWriteBlock({ ...r, data: new Uint8Array(block_size_max_ceiling_bytes + 1) })).toThrow(AssertionError);
    expect(() => encodeWriteBlock({ ...r, part_number: 0 })).toThrow(AssertionError);
    expect(() => encodeWriteBlock({ ...r, block_index: part_blocks_max })).toThrow(AssertionError);
    expect(() => encodeWriteBlock({ ...r, attempt: 0n })).toThrow(AssertionError);
    expect(() => encodeWriteBlock({ ...r, attempt: 1n << 64n })).toThrow(AssertionError);
    expect(() => encodeWriteBlock({ ...r, upload_id: 2 ** 53 })).toThrow(AssertionError);
  });
});

describe("complete_upload", () => {
  function randomParts(prng: Prng, count: number): UploadPart[] {
    const numbers = new Set<number>();
    while (numbers.size < count) numbers.add(prng.range(1, upload_parts_max));
    return [...numbers]
      .sort((a, b) => a - b)
      .map((part_number) => ({
        part_number,
        block_count: prng.range(1, part_blocks_max),
        attempt: nonzeroU64(prng),
        part_size: u53(prng),
        part_checksum: prng.u64(),
      }));
  }

  test("round trip", () => {
    const prng = new Prng(105);
    for (let i = 0; i < 200; i++) {
      const r: CompleteUploadRequest = {
        upload_id: u53(prng),
        condition: randomCondition(prng),
        if_version: u53(prng),
        declared_size: prng.chance(0.5) ? null : u53(prng),
        md5: prng.chance(0.5) ? null : bytes(prng, 16),
        parts: randomParts(prng, prng.chance(0.05) ? upload_parts_max : prng.int(20)),
        user_meta: prng.chance(0.5) ? null : encodeUserMeta([{ name: "toastyfs-s3-parts", value: bytes(prng, prng.int(8)) }]),
      };
      const body = encodeCompleteUpload(r);
      expect(body.length).toBe(complete_upload_fixed_size + upload_part_size * r.parts.length + (r.user_meta?.length ?? 0));
      expect(decodeCompleteUpload(body)).toEqual(r);
    }
  });

  test("malformed bodies give null", () => {
    const part = (part_number: number): UploadPart => ({ part_number, block_count: 2, attempt: 5n, part_size: 10, part_checksum: 77n });
    const good = encodeCompleteUpload({
      upload_id: 3,
      condition: Condition.if_absent,
      if_version: 0,
      declared_size: 20,
      md5: new Uint8Array(16).fill(1),
      parts: [part(1), part(2)],
    });
    expect(decodeCompleteUpload(good)).not.toBeNull();
    for (let length = 0; length < good.length; length++) expect(decodeCompleteUpload(good.subarray(0, length))).toBeNull();
    expect(decodeCompleteUpload(longer(good))).toBeNull();
    expect(decodeCompleteUpload(longer(good, upload_part_size))).toBeNull(); // a part more than part_count says
    const p1 = complete_upload_fixed_size;
    const p2 = complete_upload_fixed_size + upload_part_size;
    const bad: [string, (b: Uint8Array) => void][] = [
      ["upload id 2^53", (b) => setU64(b, 0, 1n << 53n)],
      ["condition 3", (b) => (b[8] = 3)],
      ["an undefined flag", (b) => (b[9] = 11)],
      ["a user metadata size without its flag", (b) => setU16(b, 10, 1)],
      ["md5 without its flag", (b) => (b[9] = 2)],
      ["declared size without its flag", (b) => (b[9] = 1)],
      ["if_version 2^53", (b) => setU64(b, 16, 1n << 53n)],
      ["declared size 2^53", (b) => setU64(b, 24, 1n << 53n)],
      ["part_count one less than the parts", (b) => setU32(b, 12, 1)],
      ["equal part numbers", (b) => setU32(b, p2, 1)],
      ["descending part numbers", (b) => (setU32(b, p1, 2), setU32(b, p2, 1))],
      ["part 0", (b) => setU32(b, p1, 0)],
      ["part 10001", (b) => setU32(b, p2, upload_parts_max + 1)],
      ["block_count 0", (b) => setU32(b, p1 + 4, 0)],
      ["block_count 2^20 + 1", (b) => setU32(b, p1 + 4, part_blocks_max + 1)],
      ["attempt 0", (b) => setU64(b, p2 + 8, 0n)],
      ["part size 2^53", (b) => setU64(b, p1 + 16, 1n << 53n)],
    ];
    for (const [what, change] of bad) expect([what, decodeCompleteUpload(mutated(good, change))]).toEqual([what, null]);
    // User metadata: its size must cover exactly the bytes after the parts, in a canonical encoding.
    const meta = encodeUserMeta([{ name: "n", value: new Uint8Array([1, 2]) }]);
    const with_meta = encodeCompleteUpload({ ...decodeCompleteUpload(good)!, user_meta: meta });
    expect(decodeCompleteUpload(with_meta)!.user_meta).toEqual(meta);
    expect(decodeCompleteUpload(longer(with_meta))).toBeNull();
    expect(decodeCompleteUpload(with_meta.subarray(0, with_meta.length - 1))).toBeNull();
    expect(decodeCompleteUpload(mutated(with_meta, (b) => (b[b.length - meta.length + 3] = 0x41)))).toBeNull(); // name "A"
    expect(decodeCompleteUpload(mutated(with_meta, (b) => (b[9] = 3)))).toBeNull(); // the bytes without the flag
    // More than 10,000 parts, even with every byte present.
    const many = new Uint8Array(complete_upload_fixed_size + upload_part_size * (upload_parts_max + 1));
    setU32(many, 12, upload_parts_max + 1);
    for (let i = 0; i <= upload_parts_max; i++) {
      const o = complete_upload_fixed_size + upload_part_size * i;
      setU32(many, o, i + 1);
      setU32(many, o + 4, 1);
      setU64(many, o + 8, 1n);
    }
    expect(decodeCompleteUpload(many)).toBeNull();
    setU32(many, 12, upload_parts_max);
    expect(decodeCompleteUpload(many.subarray(0, many.length - upload_part_size))!.parts.length).toBe(upload_parts_max);
    // No parts: an empty object.
    const empty = encodeCompleteUpload({
      upload_id: 1,
      condition: Condition.none,
      if_version: 0,
      declared_size: null,
      md5: null,
      parts: [],
    });
    expect(empty.length).toBe(complete_upload_fixed_size);
    expect(decodeCompleteUpload(empty)!.parts).toEqual([]);
  });

  test("the encoder asserts its inputs", () => {
    const part = (part_number: number): UploadPart => ({ part_number, block_count: 1, attempt: 1n, part_size: 1, part_checksum: 0n });
    const r: CompleteUploadRequest = {
      upload_id: 1,
      condition: Condition.none,
      if_version: 0,
      declared_size: null,
      md5: null,
      parts: [part(1)],
    };
    expect(() => encodeCompleteUpload({ ...r, parts: [part(2), part(1)] })).toThrow(AssertionError);
    expect(() => encodeCompleteUpload({ ...r, parts: [part(1), part(1)] })).toThrow(AssertionError);
    expect(() => encodeCompleteUpload({ ...r, parts: [{ ...part(1), block_count: 0 }] })).toThrow(AssertionError);
    expect(() => encodeCompleteUpload({ ...r, parts: [{ ...part(1), attempt: 0n }] })).toThrow(AssertionError);
    expect(() => encodeCompleteUpload({ ...r, md5: new Uint8Array(15) })).toThrow(AssertionError);
    expect(() => encodeCompleteUpload({ ...r, upload_id: -1 })).toThrow(AssertionError);
  });

  test("replies: ok (version, manifest checksum) and upload_incomplete", () => {
    const prng = new Prng(106);
    for (let i = 0; i < 100; i++) {
      const ok = { version: Math.max(1, u53(prng)), checksum: prng.u64() };
      expect(decodeCompleteUploadReply(encodeCompleteUploadReply(ok))).toEqual(ok);
      const incomplete = {
        part_number: prng.range(1, upload_parts_max),
        block_index: prng.chance(0.3) ? null : prng.int(part_blocks_max),
        stored_size: u53(prng),
      };
      expect(decodeUploadIncomplete(encodeUploadIncomplete(incomplete))).toEqual(incomplete);
    }
    const ok = encodeCompleteUploadReply({ version: 1, checksum: 2n });
    expect(decodeCompleteUploadReply(ok.subarray(0, 15))).toBeNull();
    expect(decodeCompleteUploadReply(longer(ok))).toBeNull();
    expect(decodeCompleteUploadReply(mutated(ok, (b) => setU64(b, 0, 0n)))).toBeNull();
    expect(decodeCompleteUploadReply(mutated(ok, (b) => setU64(b, 0, 1n << 53n)))).toBeNull();
    const inc = encodeUploadIncomplete({ part_number: 1, block_index: null, stored_size: 5 });
    expect(hex(inc)).toBe("01 00 00 00 ff ff ff ff 05 00 00 00 00 00 00 00");
    expect(decodeUploadIncomplete(inc.subarray(0, 15))).toBeNull();
    expect(decodeUploadIncomplete(longer(inc))).toBeNull();
    expect(decodeUploadIncomplete(mutated(inc, (b) => setU32(b, 0, 0)))).toBeNull();
    expect(decodeUploadIncomplete(mutated(inc, (b) => setU32(b, 0, upload_parts_max + 1)))).toBeNull();
    expect(decodeUploadIncomplete(mutated(inc, (b) => setU32(b, 4, part_blocks_max)))).toBeNull();
    expect(decodeUploadIncomplete(mutated(inc, (b) => setU64(b, 8, 1n << 53n)))).toBeNull();
  });
});

describe("abort_upload and housekeeping", () => {
  test("abort_upload: one u64 upload id", () => {
    const prng = new Prng(107);
    for (let i = 0; i < 100; i++) {
      const id = u53(prng);
      expect(decodeAbortUpload(encodeAbortUpload(id))).toBe(id);
    }
    expect(encodeAbortUpload(1).length).toBe(abort_upload_size);
    expect(decodeAbortUpload(new Uint8Array(7))).toBeNull();
    expect(decodeAbortUpload(new Uint8Array(9))).toBeNull();
    expect(decodeAbortUpload(mutated(new Uint8Array(8), (b) => setU64(b, 0, 1n << 53n)))).toBeNull();
    expect(() => encodeAbortUpload(2 ** 53)).toThrow(AssertionError);
  });

  test("housekeeping: empty (no-op) or the abandon age", () => {
    expect(encodeHousekeeping({ abandon_age_ms: null }).length).toBe(0);
    expect(decodeHousekeeping(new Uint8Array(0))).toEqual({ abandon_age_ms: null });
    for (const age of [1, 86_400_000, upload_abandon_ms_ceiling])
      expect(decodeHousekeeping(encodeHousekeeping({ abandon_age_ms: age }))).toEqual({ abandon_age_ms: age });
    for (const length of [1, 7, 9, 16]) expect(decodeHousekeeping(new Uint8Array(length))).toBeNull();
    expect(decodeHousekeeping(new Uint8Array(8))).toBeNull(); // age 0 would expire every upload
    expect(decodeHousekeeping(mutated(new Uint8Array(8), (b) => setU64(b, 0, BigInt(upload_abandon_ms_ceiling) + 1n)))).toBeNull();
    expect(() => encodeHousekeeping({ abandon_age_ms: 0 })).toThrow(AssertionError);
  });
});

describe("put_object", () => {
  test("round trip; the value is a view into the body", () => {
    const prng = new Prng(108);
    for (let i = 0; i < 200; i++) {
      const r = {
        key: randomKey(prng),
        condition: randomCondition(prng),
        if_version: u53(prng),
        md5: prng.chance(0.5) ? null : bytes(prng, 16),
        metadata: randomMetadata(prng),
        value: bytes(prng, prng.int(3000)),
      };
      const body = encodePutObject(r);
      const value_offset = put_object_fixed_size + r.key.length + r.metadata.content_type.length + r.metadata.user_meta.length;
      const decoded = decodePutObject(body)!;
      expect(decoded).toEqual({ ...r, value_offset } satisfies PutObjectRequest);
      expect(decoded.value.byteOffset).toBe(body.byteOffset + value_offset);
    }
  });

  test("malformed bodies give null", () => {
    const good = encodePutObject({
      key,
      condition: Condition.none,
      if_version: 0,
      md5: null,
      metadata: { content_type: "a/b", user_meta: encodeUserMeta([{ name: "x", value: new Uint8Array([1]) }]) },
      value: new Uint8Array([9, 9]),
    });
    expect(decodePutObject(good)).not.toBeNull();
    // Everything up to the value must be there; the value may be empty.
    const value_offset = put_object_fixed_size + 3 + 3 + 5;
    for (let length = 0; length < value_offset; length++) expect(decodePutObject(good.subarray(0, length))).toBeNull();
    expect(decodePutObject(good.subarray(0, value_offset))!.value.length).toBe(0);
    const bad: [string, (b: Uint8Array) => void][] = [
      ["condition 3", (b) => (b[2] = 3)],
      ["an undefined flag", (b) => (b[3] = 2)],
      ["md5 without its flag", (b) => (b[20] = 1)],
      ["if_version 2^53", (b) => setU64(b, 8, 1n << 53n)],
      ["a control byte in the content type", (b) => (b[put_object_fixed_size + 3] = 0)],
      ["a bad metadata name", (b) => (b[put_object_fixed_size + 6 + 3] = 0x58)],
      ["user_meta_size above 2048", (b) => setU16(b, 6, 2049)],
    ];
    for (const [what, change] of bad) expect([what, decodePutObject(mutated(good, change))]).toEqual([what, null]);
  });

  test("the encoder asserts its inputs", () => {
    const r = { key, condition: Condition.none, if_version: 0, md5: null, metadata: no_meta, value: new Uint8Array(1) };
    expect(() => encodePutObject({ ...r, key: new Uint8Array(key_size_max + 1) })).toThrow(AssertionError);
    expect(() => encodePutObject({ ...r, md5: new Uint8Array(17) })).toThrow(AssertionError);
    expect(() => encodePutObject({ ...r, condition: 3 as Condition })).toThrow(AssertionError);
  });
});

describe("read", () => {
  test("request round trip", () => {
    const prng = new Prng(109);
    for (let i = 0; i < 200; i++) {
      const r: ReadRequest = {
        key: randomKey(prng),
        version: u53(prng),
        offset: u53(prng),
        length: prng.chance(0.1) ? read_size_max_bytes : prng.int(100_000),
        metadata: prng.chance(0.5),
        block_map: prng.chance(0.5),
      };
      const body = encodeReadRequest(r);
      expect(body.length).toBe(read_request_fixed_size + r.key.length);
      expect(decodeReadRequest(body)).toEqual(r);
    }
  });

  test("malformed requests give null", () => {
    const good = encodeReadRequest({ key, version: 0, offset: 0, length: 10, metadata: true, block_map: true });
    for (let length = 0; length < good.length; length++) expect(decodeReadRequest(good.subarray(0, length))).toBeNull();
    expect(decodeReadRequest(longer(good))).toBeNull();
    const bad: [string, (b: Uint8Array) => void][] = [
      ["an undefined flag", (b) => (b[2] = 4)],
      ["length above read_size_max", (b) => setU32(b, 4, read_size_max_bytes + 1)],
      ["version 2^53", (b) => setU64(b, 8, 1n << 53n)],
      ["offset 2^53", (b) => setU64(b, 16, 1n << 53n)],
    ];
    for (const [what, change] of bad) expect([what, decodeReadRequest(mutated(good, change))]).toEqual([what, null]);
    expect(() =>
      encodeReadRequest({ key, version: 0, offset: 0, length: read_size_max_bytes + 1, metadata: false, block_map: false }),
    ).toThrow(AssertionError);
  });

  function randomReply(prng: Prng): ReadReply {
    const chunked = prng.chance(0.6);
    const block_sizes = Array.from({ length: chunked ? prng.int(12) : prng.int(2) }, () => prng.range(1, 300));
    const size = block_sizes.reduce((a, b) => a + b, 0);
    const checksums = block_sizes.map(() => prng.u64());
    const header: ObjectHeader = {
      version: Math.max(1, u53(prng)),
      timestamp: u53(prng),
      size,
      checksum: chunked ? manifestChecksum(checksums, size) : prng.u64(),
      kind: chunked ? ObjectKind.chunked : ObjectKind.inline,
      block_count: block_sizes.length,
      md5: prng.chance(0.5) ? bytes(prng, 16) : null,
      metadata: prng.chance(0.5) ? randomMetadata(prng) : null,
    };
    // A range [first block's start + a, last block's end - b) of blocks first..last.
    let block_map: BlockMapEntry[] | null = null;
    let data: Uint8Array = new Uint8Array(0);
    if (size > 0) {
      const first = prng.int(block_sizes.length);
      const last = prng.range(first, block_sizes.length - 1);
      const starts = block_sizes.map((_, i) => block_sizes.slice(0, i).reduce((a, b) => a + b, 0));
      const from = starts[first]! + prng.int(block_sizes[first]!);
      const to = Math.max(from, starts[last]! + block_sizes[last]! - prng.int(block_sizes[last]!));
      data = bytes(prng, to - from);
      if (prng.chance(0.6)) {
        block_map = [];
        for (let i = first; i <= last; i++) block_map.push({ start: starts[i]!, size: block_sizes[i]!, checksum: checksums[i]! });
      }
    } else if (prng.chance(0.5)) {
      block_map = [];
    }
    return { header, block_map, data };
  }

  test("reply round trip", () => {
    const prng = new Prng(110);
    for (let i = 0; i < 400; i++) {
      const r = randomReply(prng);
      const body = encodeReadReply(r);
      expect((body.length - r.data.length) % 8).toBe(0); // what precedes the data is padded to 8
      expect(decodeReadReply(body)).toEqual(r);
      expect(readObjectHeader(body)!.header).toEqual(r.header);
    }
  });

  test("malformed replies give null", () => {
    const header: ObjectHeader = {
      version: 4,
      timestamp: 5,
      size: 30,
      checksum: 6n,
      kind: ObjectKind.chunked,
      block_count: 2,
      md5: null,
      metadata: { content_type: "t", user_meta: new Uint8Array(0) },
    };
    const block_map = [
      { start: 0, size: 10, checksum: 1n },
      { start: 10, size: 20, checksum: 2n },
    ];
    const good = encodeReadReply({ header, block_map, data: new Uint8Array(25) });
    expect(decodeReadReply(good)).not.toBeNull();
    const map = object_header_fixed_size + 8;
    const entries = map + 8;
    for (let length = 0; length < entries + 48; length++) expect(decodeReadReply(good.subarray(0, length))).toBeNull();
    const bad: [string, (b: Uint8Array) => void][] = [
      ["version 2^53", (b) => setU64(b, 0, 1n << 53n)],
      ["kind 2", (b) => (b[32] = 2)],
      ["an undefined flag", (b) => (b[33] |= 8)],
      ["md5 without its flag", (b) => (b[50] = 1)],
      ["metadata sizes without the flag", (b) => (b[33] &= ~2)],
      ["user_meta_size above 2048", (b) => setU16(b, 36, 2049)],
      ["a chunked object with no blocks but bytes", (b) => setU32(b, 40, 0)],
      ["more blocks than bytes", (b) => setU32(b, 40, 31)],
      ["an inline object of two blocks", (b) => (b[32] = 0)],
      ["a content type with a control byte", (b) => (b[object_header_fixed_size] = 9)],
      ["a block map above its bound", (b) => setU32(b, map, block_map_entries_max + 1)],
      ["a gap in the block map", (b) => setU64(b, entries + 24, 11n)],
      ["an empty block", (b) => setU64(b, entries + 8, 0n)],
      ["a block past the object's end", (b) => setU64(b, entries + 24 + 8, 21n)],
      ["a block start of 2^53", (b) => setU64(b, entries, 1n << 53n)],
      ["more blocks in the map than in the object", (b) => setU32(b, 40, 1)],
    ];
    for (const [what, change] of bad) expect([what, decodeReadReply(mutated(good, change))]).toEqual([what, null]);
    // More data than the object holds.
    expect(decodeReadReply(longer(good, 6))).toBeNull();
    expect(decodeReadReply(longer(good, 5))).not.toBeNull();
    // An inline object: one block, or none when empty.
    const inline = { ...header, kind: ObjectKind.inline, block_count: 1, metadata: null };
    expect(decodeReadReply(encodeReadReply({ header: inline, block_map: null, data: new Uint8Array(30) }))).not.toBeNull();
    const inline_map = encodeReadReply({ header: inline, block_map: [{ start: 0, size: 30, checksum: 1n }], data: new Uint8Array(3) });
    expect(decodeReadReply(inline_map)).not.toBeNull();
    const inline_entry = object_header_fixed_size + 8;
    expect(decodeReadReply(mutated(inline_map, (b) => setU64(b, inline_entry + 8, 29n)))).toBeNull(); // not the whole value
    expect(() => encodeReadReply({ header: inline, block_map: [{ start: 0, size: 29, checksum: 1n }], data: new Uint8Array(0) })).toThrow(
      AssertionError,
    );
    expect(() => encodeReadReply({ header: { ...inline, block_count: 2 }, block_map: null, data: new Uint8Array(0) })).toThrow(
      AssertionError,
    );
    expect(() => encodeReadReply({ header: { ...inline, size: 0 }, block_map: null, data: new Uint8Array(0) })).toThrow(AssertionError);
    expect(() => encodeReadReply({ header, block_map: [block_map[1]!, block_map[0]!], data: new Uint8Array(0) })).toThrow(AssertionError);
    expect(() => encodeReadReply({ header, block_map, data: new Uint8Array(31) })).toThrow(AssertionError);
  });

  test("the largest read reply fits in a message, and so does the largest write_block", () => {
    expect(read_reply_size_max).toBe(10_488_184); // PROTOCOL.md §3.15.8
    expect(header_size + read_reply_size_max).toBeLessThanOrEqual(message_size_max);
    expect(header_size + write_block_fixed_size + block_size_max_ceiling_bytes).toBeLessThanOrEqual(message_size_max);
    // Halving the floor of block_size_max would break it: the floor is not arbitrary.
    expect(header_size + read_reply_size_max + 24 * (read_size_max_bytes / block_size_min_bytes)).toBeGreaterThan(message_size_max);
  });
});

describe("checksums", () => {
  test("part and manifest checksums are xxh64 of the u64 checksums (and the size)", () => {
    const le = (values: bigint[]) => {
      const b = new Uint8Array(8 * values.length);
      values.forEach((v, i) => setU64(b, 8 * i, v));
      return b;
    };
    expect(partChecksum([1n, 2n])).toBe(checksum(le([1n, 2n])));
    expect(manifestChecksum([1n, 2n], 300)).toBe(checksum(le([1n, 2n, 300n])));
    expect(manifestChecksum([], 0)).toBe(checksum(le([0n])));
    expect(manifestChecksum([], 0).toString(16)).toBe("34c96acdcadb1bbb"); // PROTOCOL.md §3.15.2
    expect(() => partChecksum([])).toThrow(AssertionError);
    expect(() => manifestChecksum([], object_size_max_bytes + 1)).toThrow(AssertionError);
  });
});

describe("test vectors of docs/PROTOCOL.md §5.11-§5.12", () => {
  test("write_block: upload 1, part 1, block 0, attempt 0x0102030405060708, data 'hello'", () => {
    const data = new TextEncoder().encode("hello");
    const body = encodeWriteBlock({
      upload_id: 1,
      part_number: 1,
      block_index: 0,
      attempt: 0x0102030405060708n,
      checksum: checksum(data),
      data,
    });
    expect(hex(body)).toBe(
      "01 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 08 07 06 05 04 03 02 01 a3 6d 9f 88 7d 82 c7 26 68 65 6c 6c 6f",
    );
    expect(validateLargeRequest(Operation.write_block, body, defaultConfig(3, 0n))).toBe(Result.ok);
  });

  test("read of 'hello' at version 0, bytes 1..3, with metadata and block map, and its reply", () => {
    const request = encodeReadRequest({
      key: new TextEncoder().encode("hello"),
      version: 0,
      offset: 1,
      length: 3,
      metadata: true,
      block_map: true,
    });
    expect(hex(request)).toBe("05 00 03 00 03 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 68 65 6c 6c 6f");
    const world = new TextEncoder().encode("world");
    const reply = encodeReadReply({
      header: {
        version: 1,
        timestamp: 1700000000301,
        size: 5,
        checksum: checksum(world),
        kind: ObjectKind.inline,
        block_count: 1,
        md5: null,
        metadata: { content_type: "text/plain", user_meta: encodeUserMeta([{ name: "a", value: new TextEncoder().encode("b") }]) },
      },
      block_map: [{ start: 0, size: 5, checksum: checksum(world) }],
      data: world.subarray(1, 4),
    });
    expect(hex(reply)).toBe(
      [
        "01 00 00 00 00 00 00 00 2d 69 e5 cf 8b 01 00 00 05 00 00 00 00 00 00 00 ef 51 ee 66 fe fb 78 e7",
        "00 06 0a 00 05 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
        "74 65 78 74 2f 70 6c 61 69 6e 01 01 00 61 62 00",
        "01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 05 00 00 00 00 00 00 00 ef 51 ee 66 fe fb 78 e7",
        "6f 72 6c",
      ].join(" "),
    );
  });
});

describe("arrival checks (not wired into the replica yet)", () => {
  const limits = { block_size_max: 1000, value_size_max: 2000 };

  test("validateLargeRequest: bad_request, key_invalid, value_too_large, ok", () => {
    const data = new Uint8Array(1000).fill(3);
    const block = (d: Uint8Array, sum = checksum(d)) =>
      encodeWriteBlock({ upload_id: 1, part_number: 1, block_index: 0, attempt: 1n, checksum: sum, data: d });
    expect(validateLargeRequest(Operation.write_block, block(data), limits)).toBe(Result.ok);
    expect(validateLargeRequest(Operation.write_block, block(data, checksum(data) ^ 1n), limits)).toBe(Result.bad_request);
    expect(validateLargeRequest(Operation.write_block, block(new Uint8Array(1001)), limits)).toBe(Result.value_too_large);
    expect(validateLargeRequest(Operation.write_block, new Uint8Array(write_block_fixed_size), limits)).toBe(Result.bad_request);

    const create = (r: Partial<CreateUploadRequest>) =>
      encodeCreateUpload({ key, condition: Condition.none, if_version: 0, declared_size: null, metadata: no_meta, ...r });
    expect(validateLargeRequest(Operation.create_upload, create({}), limits)).toBe(Result.ok);
    expect(validateLargeRequest(Operation.create_upload, create({ declared_size: object_size_max_bytes }), limits)).toBe(Result.ok);
    expect(validateLargeRequest(Operation.create_upload, create({ declared_size: object_size_max_bytes + 1 }), limits)).toBe(
      Result.value_too_large,
    );
    const no_key = mutated(create({}), (b) => setU16(b, 0, 0)).subarray(0, create_upload_fixed_size);
    expect(validateLargeRequest(Operation.create_upload, no_key, limits)).toBe(Result.key_invalid);
    expect(validateLargeRequest(Operation.create_upload, new Uint8Array(5), limits)).toBe(Result.bad_request);

    const complete = (declared_size: number | null) =>
      encodeCompleteUpload({ upload_id: 1, condition: Condition.none, if_version: 0, declared_size, md5: null, parts: [] });
    expect(validateLargeRequest(Operation.complete_upload, complete(null), limits)).toBe(Result.ok);
    expect(validateLargeRequest(Operation.complete_upload, complete(object_size_max_bytes + 1), limits)).toBe(Result.value_too_large);
    expect(validateLargeRequest(Operation.complete_upload, new Uint8Array(47), limits)).toBe(Result.bad_request);

    expect(validateLargeRequest(Operation.abort_upload, encodeAbortUpload(1), limits)).toBe(Result.ok);
    expect(validateLargeRequest(Operation.abort_upload, new Uint8Array(9), limits)).toBe(Result.bad_request);

    const read = (k: Uint8Array) => encodeReadRequest({ key: k, version: 0, offset: 0, length: 0, metadata: false, block_map: false });
    expect(validateLargeRequest(Operation.read, read(key), limits)).toBe(Result.ok);
    const long_key = new Uint8Array(read_request_fixed_size + key_size_max + 1);
    setU16(long_key, 0, key_size_max + 1);
    expect(validateLargeRequest(Operation.read, long_key, limits)).toBe(Result.key_invalid);
    expect(validateLargeRequest(Operation.read, longer(read(key)), limits)).toBe(Result.bad_request);

    const put = (value: Uint8Array) =>
      encodePutObject({ key, condition: Condition.none, if_version: 0, md5: null, metadata: no_meta, value });
    expect(validateLargeRequest(Operation.put_object, put(new Uint8Array(2000)), limits)).toBe(Result.ok);
    expect(validateLargeRequest(Operation.put_object, put(new Uint8Array(2001)), limits)).toBe(Result.value_too_large);
    expect(
      validateLargeRequest(
        Operation.put_object,
        mutated(put(new Uint8Array(0)), (b) => (b[2] = 9)),
        limits,
      ),
    ).toBe(Result.bad_request);

    // housekeeping is never a client's; older codes are not large-object operations.
    expect(validateLargeRequest(Operation.housekeeping, new Uint8Array(0), limits)).toBe(Result.bad_request);
    expect(validateLargeRequest(Operation.put, new Uint8Array(0), limits)).toBe(Result.bad_request);
  });

  test("validateRequest lets every well-formed new operation in, except housekeeping (the primary's own)", () => {
    const data = new Uint8Array([1]);
    const well_formed: [Operation, Uint8Array][] = [
      [
        Operation.create_upload,
        encodeCreateUpload({ key, condition: Condition.none, if_version: 0, declared_size: null, metadata: no_meta }),
      ],
      [
        Operation.write_block,
        encodeWriteBlock({ upload_id: 1, part_number: 1, block_index: 0, attempt: 1n, checksum: checksum(data), data }),
      ],
      [
        Operation.complete_upload,
        encodeCompleteUpload({ upload_id: 1, condition: Condition.none, if_version: 0, declared_size: null, md5: null, parts: [] }),
      ],
      [Operation.abort_upload, encodeAbortUpload(1)],
      [Operation.read, encodeReadRequest({ key, version: 0, offset: 0, length: 1, metadata: false, block_map: false })],
      [Operation.put_object, encodePutObject({ key, condition: Condition.none, if_version: 0, md5: null, metadata: no_meta, value: data })],
      [Operation.housekeeping, new Uint8Array(0)],
    ];
    expect(well_formed.map(([op]) => op)).toEqual([7, 8, 9, 10, 11, 12, 13]);
    for (const [operation, body] of well_formed) {
      expect(validateLargeRequest(operation, body, defaultConfig(3, 0n))).toBe(
        operation === Operation.housekeeping ? Result.bad_request : Result.ok,
      );
      expect([operation, validateRequest(operation, body, defaultConfig(3, 0n))]).toEqual([
        operation,
        operation === Operation.housekeeping ? Result.bad_request : Result.ok,
      ]);
    }
    for (const operation of [0, 14, 255])
      expect(validateRequest(operation, new Uint8Array(0), defaultConfig(3, 0n))).toBe(Result.bad_request);
  });
});

describe("codes", () => {
  test("operation and result codes of LARGE_OBJECTS.md §5 and §5.8", () => {
    expect([Operation.create_upload, Operation.write_block, Operation.complete_upload, Operation.abort_upload]).toEqual([7, 8, 9, 10]);
    expect([Operation.read, Operation.put_object, Operation.housekeeping]).toEqual([11, 12, 13]);
    expect(operation_max).toBe(12);
    expect([Result.object_changed, Result.upload_not_found, Result.range_invalid]).toEqual([12, 13, 14]);
    expect([Result.upload_incomplete, Result.size_mismatch, Result.too_many_uploads]).toEqual([15, 16, 17]);
    expect(result_max).toBe(17);
  });

  test("kinds: which operations go through the log, and which need a session", () => {
    const all = Array.from({ length: 13 }, (_, i) => (i + 1) as Operation);
    expect(all.filter(isWrite)).toEqual([1, 2, 4, 7, 8, 9, 10, 12, 13]);
    expect(all.filter(needsSession)).toEqual([2, 4, 7, 9, 10, 12]);
  });
});

describe("configuration of the large-object limits", () => {
  test("the defaults are the production values of LARGE_OBJECTS.md §2 and are in range", () => {
    const config = defaultConfig(3, 0n);
    expect(config.block_size_max).toBe(4 * 1024 * 1024);
    expect(config.uploads_open_max).toBe(1024);
    expect(config.upload_abandon_ms).toBe(86_400_000);
    expect(config.request_queue_bytes_max).toBe(64 * 1024 * 1024);
    expect(config.reclaim_nudge_bytes_min).toBe(16 * 1024 * 1024);
    expect(config.scrub_bytes_per_tick).toBe(64 * 1024);
    expect(largeObjectConfigProblem(config)).toBeNull();
    expect(object_size_max_bytes).toBe(5_497_558_138_880);
    expect(object_size_max_bytes).toBeLessThan(2 ** 53);
  });

  test("each limit out of range is named", () => {
    const base = defaultConfig(3, 0n);
    const cases: [Partial<Config>, string][] = [
      [{ block_size_max: block_size_min_bytes - 1 }, "block_size_max"],
      [{ block_size_max: block_size_max_ceiling_bytes + 1 }, "block_size_max"],
      [{ block_size_max: 1000, value_size_max: 999 }, "block_size_max"],
      [{ block_size_max: 1.5 }, "block_size_max"],
      [{ scrub_bytes_per_tick: 4095 }, "scrub_bytes_per_tick"],
      [{ scrub_bytes_per_tick: 64 * 1024 * 1024 + 1 }, "scrub_bytes_per_tick"],
      [{ uploads_open_max: 0 }, "uploads_open_max"],
      [{ uploads_open_max: uploads_open_max_ceiling + 1 }, "uploads_open_max"],
      [{ upload_abandon_ms: 0 }, "upload_abandon_ms"],
      [{ upload_abandon_ms: upload_abandon_ms_ceiling + 1 }, "upload_abandon_ms"],
      [{ request_queue_bytes_max: base.block_size_max + 31 }, "request_queue_bytes_max"],
      [{ reclaim_nudge_bytes_min: 0 }, "reclaim_nudge_bytes_min"],
    ];
    for (const [change, name] of cases) expect(largeObjectConfigProblem({ ...base, ...change })).toStartWith(name);
    // The simulator's values of step 8 are in range.
    const sim = {
      ...base,
      block_size_max: 16,
      uploads_open_max: 2,
      upload_abandon_ms: 2000,
      request_queue_bytes_max: 64 * 1024,
      reclaim_nudge_bytes_min: 1024,
    };
    expect(largeObjectConfigProblem(sim)).toBeNull();
  });
});

describe("decoders never throw on untrusted input", () => {
  test("random and mutated bodies give null or a well-formed result", () => {
    const prng = new Prng(111);
    const data = new Uint8Array([1, 2, 3]);
    const meta = { content_type: "a/b", user_meta: encodeUserMeta([{ name: "k", value: new Uint8Array([1]) }]) };
    const seeds = [
      encodeCreateUpload({ key, condition: Condition.if_version, if_version: 3, declared_size: 9, metadata: meta }),
      encodeWriteBlock({ upload_id: 2, part_number: 3, block_index: 4, attempt: 5n, checksum: checksum(data), data }),
      encodeCompleteUpload({
        upload_id: 1,
        condition: Condition.none,
        if_version: 0,
        declared_size: 3,
        md5: new Uint8Array(16),
        parts: [{ part_number: 1, block_count: 1, attempt: 1n, part_size: 3, part_checksum: 0n }],
      }),
      encodePutObject({ key, condition: Condition.none, if_version: 0, md5: null, metadata: meta, value: data }),
      encodeReadRequest({ key, version: 1, offset: 2, length: 3, metadata: true, block_map: false }),
      encodeReadReply({
        header: { version: 1, timestamp: 2, size: 3, checksum: 4n, kind: ObjectKind.chunked, block_count: 1, md5: null, metadata: meta },
        block_map: [{ start: 0, size: 3, checksum: 4n }],
        data,
      }),
      encodeUserMeta([
        { name: "a", value: data },
        { name: "b", value: data },
      ]),
      encodeUploadIncomplete({ part_number: 1, block_index: 2, stored_size: 3 }),
    ];
    const decoders: ((b: Uint8Array) => unknown)[] = [
      decodeCreateUpload,
      decodeWriteBlock,
      decodeCompleteUpload,
      decodePutObject,
      decodeReadRequest,
      decodeReadReply,
      decodeUserMeta,
      decodeUploadIncomplete,
      decodeCreateUploadReply,
      decodeCompleteUploadReply,
      decodeAbortUpload,
      decodeHousekeeping,
    ];
    let accepted = 0;
    for (let i = 0; i < 20000; i++) {
      let body: Uint8Array;
      if (prng.chance(0.3)) {
        body = bytes(prng, prng.int(120));
        for (let j = 0; j < body.length; j++) if (prng.chance(0.6)) body[j] = prng.int(4);
      } else {
        const seed = prng.pick(seeds);
        body = seed.slice(0, prng.chance(0.3) ? prng.int(seed.length + 1) : seed.length);
        for (let flips = prng.range(1, 3); flips > 0 && body.length > 0; flips--) body[prng.int(body.length)] = prng.int(256);
      }
      const offset = prng.int(8);
      const view = new Uint8Array(body.length + offset).subarray(offset);
      view.set(body);
      for (const decode of decoders) if (decode(view) !== null) accepted += 1;
      validateLargeRequest(prng.range(7, 13), view, defaultConfig(3, 0n));
    }
    expect(accepted).toBeGreaterThan(1000); // the mutations reach past the first checks
  });
});
