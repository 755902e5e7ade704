import { describe, expect, test } from "bun:test";
import { decodeSuperblock, encodeSuperblock, superblock_copy_size, type SuperblockRecord } from "./superblock_codec.ts";
import { superblockRecord as record, viewHeaders } from "../../tests/support/superblock_records.ts";
import { view_headers_max } from "../constants.ts";
import { checksum } from "../util/checksum.ts";
import { AssertionError } from "../util/assert.ts";
import { Prng } from "../util/prng.ts";

describe("superblock encoding", () => {
  test("round trips records with 0..64 view headers", () => {
    const prng = new Prng(1);
    for (let i = 0; i < 60; i++) {
      const r = record(prng, prng.u32(), i === 0 ? 0 : i === 1 ? view_headers_max : undefined);
      const bytes = encodeSuperblock(r);
      expect(bytes.length).toBe(superblock_copy_size);
      expect(decodeSuperblock(bytes)).toEqual(r);
    }
  });

  test("refuses more than view_headers_max headers", () => {
    const prng = new Prng(2);
    const r = record(prng, 1, 0);
    r.state.view_headers = viewHeaders(prng, view_headers_max + 1);
    expect(() => encodeSuperblock(r)).toThrow(AssertionError);
  });

  test("paired assertion: a state that would not decode back is never written", () => {
    const prng = new Prng(4);
    for (const broken of [
      (r: SuperblockRecord) => (r.identity.replica = 300), // does not fit its u8 field
      (r: SuperblockRecord) => (r.state.view = 2 ** 32), // does not fit its u32 field
    ]) {
      const r = record(prng, 1, 2);
      broken(r);
      expect(() => encodeSuperblock(r)).toThrow(AssertionError);
    }
  });

  test("damage of any kind gives null", () => {
    const prng = new Prng(3);
    const bytes = encodeSuperblock(record(prng, 5, 3));
    // A flipped bit anywhere in the used part, and in the zero padding.
    for (let i = 0; i < 200; i++) {
      const bit = i < 100 ? prng.int(1024 * 8) : prng.int(superblock_copy_size * 8);
      const damaged = bytes.slice();
      damaged[bit >> 3]! ^= 1 << (bit & 7);
      expect(decodeSuperblock(damaged)).toBeNull();
    }
    expect(decodeSuperblock(bytes.subarray(0, superblock_copy_size - 1))).toBeNull();
    expect(decodeSuperblock(new Uint8Array(superblock_copy_size))).toBeNull();
    const longer = new Uint8Array(superblock_copy_size + 1);
    longer.set(bytes);
    expect(decodeSuperblock(longer)).toBeNull();
    // A resealed copy announcing too many view headers.
    const many = bytes.slice();
    const v = new DataView(many.buffer);
    v.setUint16(34, view_headers_max + 1, true);
    v.setBigUint64(0, checksum(many.subarray(8)), true);
    expect(decodeSuperblock(many)).toBeNull();
  });
});
