/**
 * After the disk was found full, the replica probes whether it has space again by writing and
 * removing a probe file (lib/vsr/storage.ts hasSpace).
 */
import { assert } from "../util/assert.ts";
import { FsError, type FileSystem } from "./fs.ts";

export const space_probe_path = "journal/space.probe";
/** The probe writes at most this much, whatever is asked: enough to see the disk take writes. */
export const space_probe_bytes_max = 1 << 20;

/** Writes and removes a probe file of `bytes` (at most space_probe_bytes_max); false if the file
 * system refuses (any FsError). Any other exception propagates: a bug, or the simulator's power
 * loss (sim/sim_fs.ts SimulatedCrash), which must take the replica down where it happens instead of
 * reading as "no space" and leaving it running on a file system whose descriptors are all gone. */
export function hasSpace(fs: FileSystem, bytes: number): boolean {
  assert(bytes >= 0, "hasSpace: negative size");
  try {
    const fd = fs.open(space_probe_path, true);
    try {
      fs.pwrite(fd, new Uint8Array(Math.min(bytes, space_probe_bytes_max)), 0);
      return true;
    } finally {
      fs.close(fd);
      fs.unlink(space_probe_path);
    }
  } catch (error) {
    if (error instanceof FsError) return false;
    throw error;
  }
}
