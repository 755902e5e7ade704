import { describe, expect, test } from "bun:test";
import { batchEntrySize, batch_entry_header_size, batch_header_size, decodeBatch, encodeBatch, type BatchEntry } from "./batch.ts";
import { Command, Header, decode, encode, finalize } from "../net/codec.ts";
import { header_size } from "../constants.ts";
import { Prng } from "../util/prng.ts";

type Entry = Omit<BatchEntry, "body_offset">;

function randomEntry(prng: Prng, size: number): Entry {
  const body = new Uint8Array(size);
  for (let i = 0; i < size; i++) body[i] = prng.int(256);
  return {
    client: prng.u64(),
    session: prng.chance(0.2) ? Number.MAX_SAFE_INTEGER : prng.u32() * 2 ** 21 + (prng.u32() >>> 11),
    request: prng.u32(),
    operation: prng.int(256),
    body,
  };
}

/** Body sizes around every padding boundary, and large ones. */
function randomSize(prng: Prng): number {
  switch (prng.int(4)) {
    case 0:
      return prng.int(17);
    case 1:
      return prng.pick([0, 1, 7, 8, 9, 15, 16, 4999, 5000]);
    default:
      return prng.int(5001);
  }
}

function expectSameEntries(decoded: BatchEntry[], entries: Entry[], encoded: Uint8Array): void {
  expect(decoded.length).toBe(entries.length);
  let offset = batch_header_size;
  decoded.forEach((d, i) => {
    const e = entries[i]!;
    expect(d.client).toBe(e.client);
    expect(d.session).toBe(e.session);
    expect(d.request).toBe(e.request);
    expect(d.operation).toBe(e.operation);
    expect(d.body).toEqual(e.body);
    expect(d.body_offset).toBe(offset + batch_entry_header_size);
    expect(d.body_offset % 8).toBe(0);
    expect(encoded.subarray(d.body_offset, d.body_offset + e.body.length)).toEqual(e.body);
    // Padding after the body is zero.
    const end = offset + batchEntrySize(e.body.length);
    expect(encoded.subarray(d.body_offset + e.body.length, end).every((b) => b === 0)).toBe(true);
    offset = end;
  });
  expect(offset).toBe(encoded.length);
}

describe("batch", () => {
  test("round trips 0..N entries with bodies of 0..5000 bytes", () => {
    const prng = new Prng(1);
    for (let round = 0; round < 200; round++) {
      const count = round < 5 ? round : prng.int(12);
      const entries = Array.from({ length: count }, () => randomEntry(prng, randomSize(prng)));
      const encoded = encodeBatch(entries);
      expect(encoded.length).toBe(batch_header_size + entries.reduce((n, e) => n + batchEntrySize(e.body.length), 0));
      expect(encoded.length % 8).toBe(0);
      const decoded = decodeBatch(encoded);
      expect(decoded).not.toBeNull();
      expectSameEntries(decoded!, entries, encoded);
    }
  });

  test("an empty batch is the 8-byte header with count 0", () => {
    const encoded = encodeBatch([]);
    expect(encoded).toEqual(new Uint8Array(batch_header_size));
    expect(decodeBatch(encoded)).toEqual([]);
  });

  test("batchEntrySize pads the body to 8 bytes", () => {
    expect(batchEntrySize(0)).toBe(32);
    expect(batchEntrySize(1)).toBe(40);
    expect(batchEntrySize(8)).toBe(40);
    expect(batchEntrySize(9)).toBe(48);
  });

  test("decodes a batch inside a larger buffer, with body_offset relative to the batch", () => {
    const prng = new Prng(2);
    const entries = Array.from({ length: 5 }, () => randomEntry(prng, prng.int(40)));
    const encoded = encodeBatch(entries);
    const outer = new Uint8Array(encoded.length + 24);
    outer.set(encoded, 13);
    const decoded = decodeBatch(outer.subarray(13, 13 + encoded.length));
    expect(decoded).not.toBeNull();
    expectSameEntries(decoded!, entries, encoded);
  });

  test("body_offset locates each request body inside the journaled prepare", () => {
    // The replica stores a value where its prepare was written: at prepare offset + header_size +
    // body_offset (+ the value's offset in the request body).
    const prng = new Prng(3);
    for (let round = 0; round < 20; round++) {
      const entries = Array.from({ length: prng.range(1, 6) }, () => randomEntry(prng, randomSize(prng)));
      const h = new Header();
      h.command = Command.prepare;
      h.op = round + 1;
      const wire = encode(finalize(h, encodeBatch(entries)));
      const decoded = decode(wire, 0n);
      expect(decoded.ok).toBe(true);
      if (!decoded.ok) continue;
      const batch = decodeBatch(decoded.message.body)!;
      batch.forEach((d, i) => {
        expect(wire.subarray(header_size + d.body_offset, header_size + d.body_offset + d.body.length)).toEqual(entries[i]!.body);
      });
    }
  });

  test("a truncated batch is rejected at every length", () => {
    const prng = new Prng(4);
    const entries = [randomEntry(prng, 3), randomEntry(prng, 0), randomEntry(prng, 17)];
    const encoded = encodeBatch(entries);
    for (let length = 0; length < encoded.length; length++) {
      expect(decodeBatch(encoded.subarray(0, length))).toBeNull();
    }
  });

  test("trailing bytes are rejected", () => {
    const prng = new Prng(5);
    for (const count of [0, 1, 4]) {
      const encoded = encodeBatch(Array.from({ length: count }, () => randomEntry(prng, prng.int(30))));
      for (const extra of [1, 7, 8, 32, 40]) {
        const longer = new Uint8Array(encoded.length + extra);
        longer.set(encoded);
        expect(decodeBatch(longer)).toBeNull();
      }
    }
  });

  test("a count larger than the entries present is rejected", () => {
    const prng = new Prng(6);
    const encoded = encodeBatch(Array.from({ length: 3 }, () => randomEntry(prng, prng.int(30))));
    for (const count of [4, 5, 1000, 2 ** 32 - 1]) {
      const bad = encoded.slice();
      new DataView(bad.buffer).setUint32(0, count, true);
      expect(decodeBatch(bad)).toBeNull();
    }
    // A smaller count leaves bytes unaccounted for.
    const fewer = encoded.slice();
    new DataView(fewer.buffer).setUint32(0, 2, true);
    expect(decodeBatch(fewer)).toBeNull();
  });

  test("an entry size running past the end is rejected", () => {
    const prng = new Prng(7);
    const encoded = encodeBatch([randomEntry(prng, 16), randomEntry(prng, 8)]);
    const last_size_at = batch_header_size + batchEntrySize(16) + 24;
    for (const size of [9, 17, 2 ** 32 - 1]) {
      const bad = encoded.slice();
      new DataView(bad.buffer).setUint32(last_size_at, size, true);
      expect(decodeBatch(bad)).toBeNull();
    }
  });

  test("random bytes never make decodeBatch throw", () => {
    const prng = new Prng(8);
    for (let i = 0; i < 5000; i++) {
      const length = prng.int(200);
      const body = new Uint8Array(length);
      for (let j = 0; j < length; j++) body[j] = prng.chance(0.7) ? 0 : prng.int(256);
      if (length >= 4 && prng.chance(0.5)) new DataView(body.buffer).setUint32(0, prng.int(4), true);
      const decoded = decodeBatch(body);
      if (decoded !== null) {
        for (const e of decoded) expect(e.body_offset + e.body.length).toBeLessThanOrEqual(length);
      }
    }
  });
});
