/**
 * The superblock (docs/STORAGE.md §Superblock): the replica's VSR state in four checksummed,
 * sequence-numbered copies of superblock_copy_size bytes. A write goes copies 0–1, fdatasync,
 * copies 2–3, fdatasync: a crash or torn write in either half leaves the other half intact, one
 * sequence number apart. Reading takes the valid copy with the highest sequence.
 */
import { assert } from "../util/assert.ts";
import { readFully, type FileSystem, type Fd } from "./fs.ts";
import { decodeSuperblock, encodeSuperblock, superblock_copies, superblock_copy_size, type SuperblockRecord } from "./superblock_codec.ts";

export {
  decodeSuperblock,
  encodeSuperblock,
  sameRecord,
  superblock_copies,
  superblock_copy_size,
  type SuperblockIdentity,
  type SuperblockRecord,
} from "./superblock_codec.ts";

export const superblock_path = "superblock";

/**
 * Reads every copy; returns the valid one with the highest sequence (null if none is valid), how
 * many copies are damaged (a blank file has all four "damaged"), and which half must be written
 * first next time: the one that does not hold every valid copy of the newest state, so that a
 * torn write never destroys its last copy.
 */
export function readSuperblock(
  fs: FileSystem,
  fd: Fd,
): { record: SuperblockRecord | null; damaged: number; first_half: number; newest_copies: number } {
  let best: SuperblockRecord | null = null;
  let damaged = 0;
  const sequences: (number | null)[] = [];
  const buffer = new Uint8Array(superblock_copy_size);
  for (let copy = 0; copy < superblock_copies; copy++) {
    // An unreadable sector is a damaged copy; the others may be intact. Decoding stays outside
    // the read's error handling: a decoder that throws is a bug, not four damaged copies.
    const record = readFully(fs, fd, buffer, copy * superblock_copy_size) ? decodeSuperblock(buffer) : null;
    sequences.push(record?.sequence ?? null);
    if (record === null) {
      damaged += 1;
      continue;
    }
    if (best === null || record.sequence > best.sequence) best = record;
  }
  // Write first a half with no copy of the newest state; if both halves have one, either.
  const newest = best?.sequence ?? null;
  const holds = (half: number) => sequences[half * 2] === newest || sequences[half * 2 + 1] === newest;
  const first_half = newest !== null && holds(0) && !holds(1) ? 1 : 0;
  const newest_copies = sequences.filter((s) => s !== null && s === newest).length;
  assert(damaged + sequences.filter((s) => s !== null).length === superblock_copies, "readSuperblock: copies counted");
  return { record: best, damaged, first_half, newest_copies };
}

/** Writes all copies in two halves, each made durable before the next begins, first_half first
 * (see readSuperblock). */
export function writeSuperblock(fs: FileSystem, fd: Fd, record: SuperblockRecord, first_half = 0): void {
  assert(first_half === 0 || first_half === 1, "writeSuperblock: first half");
  const bytes = encodeSuperblock(record);
  for (const half of [first_half, 1 - first_half]) {
    writeSuperblockHalf(fs, fd, bytes, half);
    fs.fdatasync(fd);
  }
}

/** Writes one half (two copies) of an encoded state, not yet durable: a flush writes the halves as
 * two steps, each fdatasynced before the next (file_storage.ts), as writeSuperblock does inline. */
export function writeSuperblockHalf(fs: FileSystem, fd: Fd, bytes: Uint8Array, half: number): void {
  assert((half === 0 || half === 1) && bytes.length === superblock_copy_size, "writeSuperblockHalf: half or size");
  for (let copy = half * 2; copy < half * 2 + 2; copy++) fs.pwrite(fd, bytes, copy * superblock_copy_size);
}
