/**
 * The records of the header ring (docs/STORAGE.md §5): one 256-byte record per journal slot, each
 * held twice, naming where the prepare of that slot's op sits in the segments. This file is the
 * record's byte layout only; which copy recovery trusts is ring_slot.ts, the ring's reads and
 * writes header_ring.ts.
 */
import { assert } from "../util/assert.ts";
import { writeU32, writeU64, writeU64Big } from "../util/bytes.ts";
import { checksum } from "../util/checksum.ts";
import { decodeHeader, writeHeader, type Header } from "../net/codec.ts";
import { header_size } from "../constants.ts";

export const header_record_size = 256;
/** The header ring holds every record twice: copy A at slot × 256, copy B at (slots + slot) × 256. */
export const ring_copies = 2;
export const headers_path = "journal/headers";
/** Where a record's checksum sits: it covers every byte before it. */
const checksum_offset = 248;

/** Where a journaled prepare is: the segment, offset and size of its bytes, with its header. */
export interface PrepareLocation {
  header: Header;
  op: number;
  checksum: bigint;
  segment: number;
  offset: number;
  size: number;
}

export interface DecodedRecord {
  header: Header;
  location: PrepareLocation;
  /** Write sequence: of two differing valid copies, the higher is newer. */
  sequence: number;
  /** The sequence of the superblock that was durable when the record was written. */
  superblock_sequence: number;
}

/** Header ring record: the prepare header, u32 segment, u32 size, u64 offset, u64 write sequence
 * (which of two differing valid copies is newer), u64 the sequence of the superblock durable when
 * it was written, reserved, and at 248 a u64 checksum of bytes 0..248. Decoding the bytes written
 * must give back what was encoded (asserted: a record that cannot be read back is never written). */
export function encodeRecord(
  record: Uint8Array,
  location: PrepareLocation,
  sequence: number,
  superblock_sequence: number,
  slot_count: number,
): void {
  assert(record.length === header_record_size, "encodeRecord: record size");
  assert(
    Number.isSafeInteger(sequence) && sequence > 0 && Number.isSafeInteger(superblock_sequence) && superblock_sequence >= 0,
    "encodeRecord: sequences out of range",
  );
  writeHeader(location.header, record, 0);
  record.fill(0, header_size, checksum_offset);
  writeU32(record, 128, location.segment);
  writeU32(record, 132, location.size);
  writeU64(record, 136, location.offset);
  writeU64(record, 144, sequence);
  writeU64(record, 152, superblock_sequence);
  writeU64Big(record, checksum_offset, checksum(record.subarray(0, checksum_offset)));
  const decoded = decodeRecord(record, 0, location.op % slot_count, slot_count);
  assert(
    decoded !== null &&
      decoded.location.op === location.op &&
      decoded.location.checksum === location.checksum &&
      decoded.location.segment === location.segment &&
      decoded.location.offset === location.offset &&
      decoded.location.size === location.size &&
      decoded.sequence === sequence &&
      decoded.superblock_sequence === superblock_sequence,
    () => `encodeRecord: op ${location.op} does not decode to what was encoded`,
  );
}

/** A record is valid only in its own slot: a misdirected write elsewhere is damage. Damage of any
 * kind gives null; this never throws on what the disk holds. */
export function decodeRecord(ring: Uint8Array, offset: number, slot: number, slot_count: number): DecodedRecord | null {
  assert(
    offset >= 0 && offset + header_record_size <= ring.length && slot >= 0 && slot < slot_count,
    "decodeRecord: record outside the ring",
  );
  const record = ring.subarray(offset, offset + header_record_size);
  const v = new DataView(record.buffer, record.byteOffset, header_record_size);
  if (v.getBigUint64(checksum_offset, true) !== checksum(record.subarray(0, checksum_offset))) return null;
  const header = decodeHeader(record, 0);
  if (header === null) return null;
  const location: PrepareLocation = {
    header,
    op: header.op,
    checksum: header.checksum,
    segment: v.getUint32(128, true),
    size: v.getUint32(132, true),
    offset: Number(v.getBigUint64(136, true)),
  };
  const sequence = Number(v.getBigUint64(144, true));
  const superblock_sequence = Number(v.getBigUint64(152, true));
  if (
    location.size !== header.size ||
    header.op % slot_count !== slot ||
    !Number.isSafeInteger(sequence) ||
    !Number.isSafeInteger(superblock_sequence)
  )
    return null;
  return { header, location, sequence, superblock_sequence };
}

/** A header-ring record that stands for "damaged: the op this slot held is unknown" (docs/STORAGE.md
 * §5). It never decodes (its checksum field is zero), and it is not all zeros ("never written"). */
export const damaged_record = (() => {
  const record = new Uint8Array(header_record_size);
  record.set(new TextEncoder().encode("toastyfs:damaged"), 0);
  return record;
})();

/** `size` bytes of damaged records, for a ring whose records were all lost. */
export function damagedRecords(size: number): Uint8Array {
  assert(size >= 0, "damagedRecords: negative size");
  const bytes = new Uint8Array(size);
  for (let offset = 0; offset + header_record_size <= size; offset += header_record_size) bytes.set(damaged_record, offset);
  return bytes;
}
