import { describe, expect, test } from "bun:test";
import { damaged_record, damagedRecords, decodeRecord, encodeRecord, header_record_size, type PrepareLocation } from "./ring_record.ts";
import { Command, Header, finalize } from "../net/codec.ts";
import { header_size } from "../constants.ts";
import { AssertionError } from "../util/assert.ts";
import { Prng } from "../util/prng.ts";
import { isZero } from "../util/bytes.ts";

const slot_count = 16;

function location(prng: Prng, op: number): PrepareLocation {
  const h = new Header();
  h.command = Command.prepare;
  h.cluster = 0xc1n;
  h.op = op;
  h.view = prng.int(10);
  h.parent = prng.u64();
  const body = new Uint8Array(prng.int(64));
  finalize(h, body);
  return { header: h, op, checksum: h.checksum, segment: prng.int(1000), offset: 8 * prng.int(1 << 20), size: header_size + body.length };
}

describe("header ring records", () => {
  test("round trip: a record decodes, in its own slot, to what was encoded", () => {
    const prng = new Prng(1);
    for (let i = 0; i < 200; i++) {
      const op = prng.int(10_000);
      const l = location(prng, op);
      const record = new Uint8Array(header_record_size);
      encodeRecord(record, l, i + 1, prng.int(1000), slot_count);
      const decoded = decodeRecord(record, 0, op % slot_count, slot_count)!;
      expect(decoded.location).toEqual(l);
      expect(decoded.sequence).toBe(i + 1);
      // Valid only in its own slot: a misdirected write elsewhere is damage.
      expect(decodeRecord(record, 0, (op + 1) % slot_count, slot_count)).toBeNull();
    }
  });

  test("a flipped bit anywhere gives null, never an exception", () => {
    const prng = new Prng(2);
    const l = location(prng, 33);
    const record = new Uint8Array(header_record_size);
    encodeRecord(record, l, 7, 3, slot_count);
    for (let bit = 0; bit < header_record_size * 8; bit++) {
      const damaged = record.slice();
      damaged[bit >> 3]! ^= 1 << (bit & 7);
      expect(decodeRecord(damaged, 0, 33 % slot_count, slot_count)).toBeNull();
    }
  });

  test("the damaged record never decodes and is not blank; damagedRecords fills whole records", () => {
    expect(decodeRecord(damaged_record, 0, 0, slot_count)).toBeNull();
    expect(isZero(damaged_record, 0, header_record_size)).toBe(false);
    const bytes = damagedRecords(3 * header_record_size);
    for (let i = 0; i < 3; i++) expect(bytes.subarray(i * header_record_size, (i + 1) * header_record_size)).toEqual(damaged_record);
  });

  test("paired assertion: a record that would not decode back is never written", () => {
    const prng = new Prng(3);
    const l = location(prng, 5);
    l.header.op = 6; // the header no longer matches its checksum: it would read back as damage
    expect(() => encodeRecord(new Uint8Array(header_record_size), l, 1, 0, slot_count)).toThrow(AssertionError);
    const wide = location(prng, 5);
    wide.segment = 2 ** 32; // does not fit the u32 field
    expect(() => encodeRecord(new Uint8Array(header_record_size), wide, 1, 0, slot_count)).toThrow(AssertionError);
  });
});
