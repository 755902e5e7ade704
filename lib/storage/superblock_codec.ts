/**
 * The byte layout of one superblock copy (docs/STORAGE.md §Superblock). Which copy is read and in
 * which order copies are written is superblock.ts.
 */
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import { Header, decodeHeader, writeHeader } from "../net/codec.ts";
import { header_size, view_headers_max } from "../constants.ts";
import type { VsrState } from "../vsr/storage.ts";

export const superblock_copies = 4;
export const superblock_copy_size = 16 * 1024;
const superblock_magic = 0x4b425354; // "TSBK"
const superblock_version = 1;
/** Fixed fields before the view headers. */
const fixed_size = 128;

export interface SuperblockIdentity {
  cluster: bigint;
  replica: number;
  replica_count: number;
}

export interface SuperblockRecord {
  sequence: number;
  identity: SuperblockIdentity;
  state: VsrState;
}

/*
 * Copy layout (little-endian):
 *   0  u64 checksum of bytes 8..copy_size
 *   8  u32 magic, 12 u32 version, 16 u64 sequence, 24 u64 cluster,
 *   32 u8 replica, 33 u8 replica_count, 34 u16 view_headers count, 36 u32 incarnation,
 *   40 u32 view, 44 u32 log_view, 48 u64 commit_max,
 *   56 u64 checkpoint op, 64 u64 checkpoint digest, 72 u64 checkpoint checksum,
 *   80 u8 flags (bit 0: recovering), 81..128 reserved (zero), then view_headers × 128 bytes,
 *   zero-padded.
 */
export function encodeSuperblock(record: SuperblockRecord): Uint8Array {
  const { state, identity } = record;
  assert(state.view_headers.length <= view_headers_max, "superblock: too many view headers");
  assert(fixed_size + view_headers_max * header_size <= superblock_copy_size, "superblock copy too small");
  const bytes = new Uint8Array(superblock_copy_size);
  const v = new DataView(bytes.buffer);
  v.setUint32(8, superblock_magic, true);
  v.setUint32(12, superblock_version, true);
  v.setBigUint64(16, BigInt(record.sequence), true);
  v.setBigUint64(24, identity.cluster, true);
  v.setUint8(32, identity.replica);
  v.setUint8(33, identity.replica_count);
  v.setUint16(34, state.view_headers.length, true);
  v.setUint32(36, state.incarnation, true);
  v.setUint32(40, state.view, true);
  v.setUint32(44, state.log_view, true);
  v.setBigUint64(48, BigInt(state.commit_max), true);
  v.setBigUint64(56, BigInt(state.checkpoint.op), true);
  v.setBigUint64(64, state.checkpoint.digest, true);
  v.setBigUint64(72, state.checkpoint.checksum, true);
  v.setUint8(80, state.recovering === true ? 1 : 0);
  state.view_headers.forEach((h, i) => writeHeader(h, bytes, fixed_size + i * header_size));
  v.setBigUint64(0, checksum(bytes.subarray(8)), true);
  assert(sameRecord(decodeSuperblock(bytes), record), () => `superblock: sequence ${record.sequence} does not decode to what was encoded`);
  return bytes;
}

/** Whether a decoded superblock holds exactly the fields of `expected`. */
export function sameRecord(decoded: SuperblockRecord | null, expected: SuperblockRecord): boolean {
  if (decoded === null) return false;
  const a = decoded.state;
  const b = expected.state;
  const id = decoded.identity;
  return (
    decoded.sequence === expected.sequence &&
    id.cluster === expected.identity.cluster &&
    id.replica === expected.identity.replica &&
    id.replica_count === expected.identity.replica_count &&
    a.incarnation === b.incarnation &&
    a.view === b.view &&
    a.log_view === b.log_view &&
    a.commit_max === b.commit_max &&
    a.checkpoint.op === b.checkpoint.op &&
    a.checkpoint.digest === b.checkpoint.digest &&
    a.checkpoint.checksum === b.checkpoint.checksum &&
    (a.recovering === true) === (b.recovering === true) &&
    a.view_headers.length === b.view_headers.length &&
    a.view_headers.every((h, i) => h.checksum === b.view_headers[i]!.checksum)
  );
}

/** The copy, decoded; null if it is damaged in any way (this never throws on what the disk holds). */
export function decodeSuperblock(bytes: Uint8Array): SuperblockRecord | null {
  if (bytes.length !== superblock_copy_size) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (v.getUint32(8, true) !== superblock_magic || v.getUint32(12, true) !== superblock_version) return null;
  if (checksum(bytes.subarray(8)) !== v.getBigUint64(0, true)) return null;
  const count = v.getUint16(34, true);
  if (count > view_headers_max) return null;
  const view_headers: Header[] = [];
  for (let i = 0; i < count; i++) {
    const h = decodeHeader(bytes, fixed_size + i * header_size);
    if (h === null) return null;
    view_headers.push(h);
  }
  assert(view_headers.length === count, "decodeSuperblock: view header count");
  return {
    sequence: Number(v.getBigUint64(16, true)),
    identity: { cluster: v.getBigUint64(24, true), replica: v.getUint8(32), replica_count: v.getUint8(33) },
    state: {
      incarnation: v.getUint32(36, true),
      view: v.getUint32(40, true),
      log_view: v.getUint32(44, true),
      commit_max: Number(v.getBigUint64(48, true)),
      checkpoint: { op: Number(v.getBigUint64(56, true)), digest: v.getBigUint64(64, true), checksum: v.getBigUint64(72, true) },
      view_headers,
      ...((v.getUint8(80) & 1) === 1 ? { recovering: true } : {}),
    },
  };
}
