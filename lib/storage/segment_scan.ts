/**
 * At recovery, the parts of recent segments that no header-ring record accounts for are scanned for
 * prepare headers: a record write can be lost or misdirected while its prepare, synced before the
 * ring, is durable (docs/STORAGE.md §11).
 */
import { assert } from "../util/assert.ts";
import { Command, decodeHeader } from "../net/codec.ts";
import { header_size, message_size_max, wire_magic } from "../constants.ts";
import { FsError, type FileSystem } from "./fs.ts";
import type { Segment } from "./segments.ts";
import { pad8 } from "../util/bytes.ts";
import type { PrepareLocation } from "./ring_record.ts";

/** Segments are scanned for prepares in reads of this size. */
const scan_chunk_bytes = 1024 * 1024;
/** The first byte of the header magic as stored (little-endian). */
const magic_first_byte = wire_magic & 0xff;
/** Where the magic sits in a header (codec.ts), and where the op does. */
const magic_offset = 88;
const op_offset = 48;

export interface ScanResult {
  /** Prepare headers found outside every recorded extent (their bodies not yet verified). */
  found: PrepareLocation[];
  /** Ops of the window named by a damaged header found next to the magic. */
  suspects: Set<number>;
  /** False when a region could not be read: a copy may be hidden there. */
  clean: boolean;
}

/**
 * Scans the parts of recent segments that no record accounts for, at 8-byte-aligned offsets, for
 * headers of prepares of ops in [op_min, op_max]. Recent: the segments from the one before the
 * oldest holding a prepare of the window (or of the interval before it) on: prepares are written
 * in time order, a pipeline at a time, so a prepare whose record was lost sits among or after
 * those. With no record to go by (a lost ring), every segment is scanned. Not clean when a region
 * could not be read: a copy may be hidden there. Damaged headers naming an op of the window make
 * that op suspect (which only stops restores: see journal_recovery.ts).
 */
export function findUnrecorded(
  fs: FileSystem,
  segments: Map<number, Segment>,
  cluster: bigint,
  slot_count: number,
  records: PrepareLocation[],
  op_min: number,
  op_max: number,
): ScanResult {
  assert(op_min <= op_max + 1 && slot_count > 0, "findUnrecorded: window");
  let first_segment = Infinity;
  for (const r of records) if (r.op > op_min - 1 - slot_count && r.op <= op_max) first_segment = Math.min(first_segment, r.segment);
  if (first_segment === Infinity && records.length > 0) first_segment = Math.max(...records.map((r) => r.segment));
  first_segment = first_segment === Infinity ? 0 : first_segment - 1;
  const known = new Map<number, [number, number][]>();
  for (const r of records) {
    let extents = known.get(r.segment);
    if (extents === undefined) known.set(r.segment, (extents = []));
    extents.push([r.offset, r.offset + pad8(r.size)]);
  }
  const result: ScanResult = { found: [], suspects: new Set<number>(), clean: true };
  const ids = [...segments.keys()].filter((id) => id >= first_segment).sort((a, b) => a - b);
  for (const id of ids) {
    const segment = segments.get(id)!;
    const extents = (known.get(id) ?? []).sort((a, b) => a[0] - b[0]);
    const size = fs.size(segment.fd);
    let from = 0;
    for (const [start, end] of [...extents, [size, size] as [number, number]]) {
      if (start > from)
        result.clean = scanRegion(fs, segment, cluster, from, Math.min(start, size), size, op_min, op_max, result) && result.clean;
      from = Math.max(from, end);
    }
  }
  assert(
    result.found.every((l) => l.op >= op_min && l.op <= op_max),
    "findUnrecorded: found a prepare outside the window",
  );
  return result;
}

/** Scans [from, to) of a segment for prepare headers (see findUnrecorded); false if part of it
 * could not be read. */
function scanRegion(
  fs: FileSystem,
  segment: Segment,
  cluster: bigint,
  from: number,
  to: number,
  size: number,
  op_min: number,
  op_max: number,
  result: ScanResult,
): boolean {
  assert(from >= 0 && to <= size, "scanRegion: region outside the segment");
  const chunk = new Uint8Array(Math.min(scan_chunk_bytes, to - from) + header_size);
  const view = new DataView(chunk.buffer);
  let clean = true;
  for (let base = from; base < to; base += scan_chunk_bytes) {
    let n: number;
    try {
      n = fs.pread(segment.fd, chunk.subarray(0, Math.min(chunk.length, size - base)), base);
    } catch (error) {
      if (!(error instanceof FsError)) throw error;
      clean = false;
      continue;
    }
    const stop = Math.min(scan_chunk_bytes, to - base);
    // Headers start 8-byte aligned; find their magic's first byte natively (regions are mostly
    // zeros or value bytes), then check alignment and the whole magic.
    for (
      let m = chunk.indexOf(magic_first_byte, magic_offset);
      m !== -1 && m - magic_offset < stop && m - magic_offset + header_size <= n;
      m = chunk.indexOf(magic_first_byte, m + 1)
    ) {
      const at = m - magic_offset;
      if (at % 8 !== 0 || view.getUint32(m, true) !== wire_magic) continue;
      const header = decodeHeader(chunk, at);
      if (header === null) {
        // A damaged header naming an op of the window may be a prepare this replica journaled
        // (and, if its record was lost too, acknowledged): that op is suspect. Most often it is
        // one a crash cut short, never acknowledged; random bytes in a value almost never name
        // an op of the window next to the magic.
        const op = Number(view.getBigUint64(at + op_offset, true));
        if (op >= op_min && op <= op_max) result.suspects.add(op);
        continue;
      }
      if (header.cluster !== cluster || header.command !== Command.prepare || header.op < op_min || header.op > op_max) continue;
      if (header.size < header_size || header.size > message_size_max || base + at + header.size > size) continue;
      result.found.push({ header, op: header.op, checksum: header.checksum, segment: segment.id, offset: base + at, size: header.size });
    }
  }
  return clean;
}
