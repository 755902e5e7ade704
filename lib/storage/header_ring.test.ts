import { describe, expect, test } from "bun:test";
import { HeaderRing } from "./header_ring.ts";
import { damaged_record, encodeRecord, header_record_size, type PrepareLocation } from "./ring_record.ts";
import { classifySlot, copy_states, legalInputs, type CopyState, type Newer } from "./ring_slot.ts";
import { Command, Header, finalize } from "../net/codec.ts";
import { header_size } from "../constants.ts";
import { Prng } from "../util/prng.ts";
import { SimFs } from "../../sim/sim_fs.ts";

type Combination = [CopyState, CopyState, Newer];

function combinations(persists: boolean): Combination[] {
  const out: Combination[] = [];
  for (const a of copy_states)
    for (const b of copy_states)
      for (const n of ["a", "b", "-"] as Newer[]) {
        if (!legalInputs(a, b, n)) continue;
        if ((persists && (a === "forgotten" || b === "forgotten")) || (!persists && (a === "unreadable" || b === "unreadable"))) continue;
        out.push([a, b, n]);
      }
  return out;
}

function location(op: number): PrepareLocation {
  const h = new Header();
  h.command = Command.prepare;
  h.cluster = 0xc1n;
  h.op = op;
  finalize(h, new Uint8Array(8));
  return { header: h, op, checksum: h.checksum, segment: 1, offset: 0, size: header_size + 8 };
}

/**
 * Builds a ring with one slot per combination of copy states, recovers it, and checks that what
 * recovery trusts, reports damaged and writes back to each copy is what the table's row says.
 */
function check(persists: boolean): void {
  const cases = combinations(persists);
  const slot_count = cases.length;
  const fs = new SimFs(new Prng(1));
  const ring = new HeaderRing(fs, slot_count);
  ring.fd = fs.open("headers", true);
  const bytes = new Uint8Array(ring.size);
  const unreadable = new Set<number>();
  const prng = new Prng(2);
  const at = (copy: number, slot: number) => (copy * slot_count + slot) * header_record_size;
  cases.forEach(([a, b, newer], slot) => {
    [a, b].forEach((state, copy) => {
      const offset = at(copy, slot);
      if (state === "valid") {
        // Copy A holds op `slot`, copy B op `slot + slot_count`: which one is trusted shows.
        const sequence = (copy === 0) === (newer === "b") ? 1 : 2;
        encodeRecord(bytes.subarray(offset, offset + header_record_size), location(slot + copy * slot_count), sequence, 0, slot_count);
      } else if (state === "torn") {
        for (let i = 0; i < header_record_size; i++) bytes[offset + i] = 1 + prng.int(255);
      } else if (state === "unreadable" || state === "forgotten") {
        unreadable.add(copy * slot_count + slot);
      }
    });
  });
  const before = bytes.slice();
  const contents = ring.recover(bytes, unreadable, persists, (fd) => fs.fdatasync(fd));
  const after = new Uint8Array(ring.size);
  fs.pread(ring.fd, after, 0);
  cases.forEach(([a, b, newer], slot) => {
    const row = classifySlot(a, b, newer);
    const trusted = contents.records.find((r) => r.location.op % slot_count === slot);
    expect({ slot, label: row.label, trusted: trusted?.location.op ?? null }).toEqual({
      slot,
      label: row.label,
      trusted: row.trust === null ? null : slot + (row.trust === "a" ? 0 : slot_count),
    });
    expect({ label: row.label, damaged: contents.damaged.has(slot) }).toEqual({ label: row.label, damaged: row.damaged });
    [row.write_a, row.write_b].forEach((write, copy) => {
      const got = after.subarray(at(copy, slot), at(copy, slot) + header_record_size);
      const trusted_copy = row.trust === "a" ? 0 : 1;
      const want =
        write === "trusted"
          ? before.subarray(at(trusted_copy, slot), at(trusted_copy, slot) + header_record_size)
          : write === "own"
            ? before.subarray(at(copy, slot), at(copy, slot) + header_record_size)
            : write === "damaged_record"
              ? damaged_record
              : new Uint8Array(header_record_size);
      expect({ label: row.label, copy, bytes: [...got] }).toEqual({ label: row.label, copy, bytes: [...want] });
    });
  });
}

describe("header ring recovery follows the slot table", () => {
  test("a ring that persists damage: every combination of copy states, trusted copy, damage and write-back", () => {
    check(true);
  });

  test("the variant that forgets damage writes unreadable copies back as blank", () => {
    check(false);
  });

  test("peek finds the highest record and superblock sequences; write puts each record in both copies", () => {
    const fs = new SimFs(new Prng(3));
    const ring = new HeaderRing(fs, 8);
    ring.fd = fs.open("headers", true);
    fs.pwrite(ring.fd, new Uint8Array(ring.size), 0);
    expect(ring.peek()).toEqual({ record_sequence_max: 0, superblock_sequence_max: 0 });
    ring.record_sequence = 5;
    ring.write([location(6), location(7), location(8), location(3)], 9);
    expect(ring.peek()).toEqual({ record_sequence_max: 8, superblock_sequence_max: 9 });
    const bytes = new Uint8Array(ring.size);
    fs.pread(ring.fd, bytes, 0);
    for (const slot of [6, 7, 0, 3])
      expect(bytes.subarray(slot * header_record_size, (slot + 1) * header_record_size)).toEqual(
        bytes.subarray((8 + slot) * header_record_size, (9 + slot) * header_record_size),
      );
  });
});
