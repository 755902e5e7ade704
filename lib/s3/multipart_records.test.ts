import { describe, expect, test } from "bun:test";
import { S3Error } from "./s3_error.ts";
import {
  blockChecksumsOf,
  decodePartRecord,
  decodeUploadRecord,
  encodePartRecord,
  encodeUploadRecord,
  formatUploadId,
  noSuchUpload,
  newUploadTag,
  packBlockChecksums,
  parseUploadId,
  type PartRecord,
  type UploadRecord,
} from "./multipart_records.ts";

describe("UploadId", () => {
  test("native id and tag round-trip; anything else is NoSuchUpload", () => {
    const tag = newUploadTag();
    expect(tag).toMatch(/^[0-9a-f]{16}$/);
    expect(parseUploadId(formatUploadId(42, tag))).toEqual({ native_id: 42, tag });
    for (const bad of [null, "", "42", `42.${tag}x`, `042.${tag}`, `0.${tag}`, `99999999999999999.${tag}`, `42.${tag.toUpperCase()}A`]) {
      expect(() => parseUploadId(bad)).toThrow(noSuchUpload(bad ?? ""));
    }
  });
});

describe("records", () => {
  test("an upload record round-trips; a damaged one is InternalError", () => {
    const r: UploadRecord = {
      key: "a/é\u0001",
      created_ms: 1_700_000_000_123,
      native_id: 7,
      block_size_max: 4 << 20,
      content_type: "text/plain",
      meta: [["colour", new TextEncoder().encode("blue")]],
      tag: "0123456789abcdef",
      initiator: "AKID",
    };
    expect(decodeUploadRecord(encodeUploadRecord(r))).toEqual(r);
    expect(() => decodeUploadRecord(encodeUploadRecord({ ...r, meta: [["x", "not bytes" as unknown as Uint8Array]] }))).toThrow(S3Error);
  });

  test("a part record round-trips attempts and checksums above 2^53 exactly", () => {
    const checksums = [0xffff_ffff_ffff_fffen, 1n, 0x8000_0000_0000_0000n];
    const r: PartRecord = {
      attempt: 0xfedc_ba98_7654_3210n,
      block_count: 3,
      size: 9_000_000,
      part_checksum: 0x0123_4567_89ab_cdefn,
      md5: new Uint8Array(16).fill(9),
      last_modified_ms: 5,
      block_checksums: packBlockChecksums(checksums),
    };
    const back = decodePartRecord(encodePartRecord(r));
    expect(back).toEqual(r);
    expect(blockChecksumsOf(back)).toEqual(checksums);
    expect(() => decodePartRecord(encodePartRecord({ ...r, block_count: 4 }))).toThrow(S3Error);
  });
});
