/**
 * The machine's limit that bench/large.ts measures each workload against, in the same run and on
 * the same file system as the replicas' data (docs/LARGE_OBJECTS.md §12.3):
 *
 * - puts: the object's bytes written to one file in each of the replica-like directories, in
 *   write_bytes pwrites with an fdatasync every sync_bytes. The copies are written concurrently,
 *   one async loop per directory (Bun runs the writes and syncs on its thread pool), because that
 *   is what three replicas on one machine do: three processes, each appending its own copy and
 *   syncing it, with their syncs in flight at the same time. Written in turn, each copy's syncs
 *   would wait for the others' and the limit would be lower than the disk allows.
 * - gets: a file of the object's size read in write_bytes reads after one read that puts it in the
 *   page cache: what serving an object from a replica's cache can never beat.
 *
 * Throughputs are the object's bytes (not bytes × copies) per second, so a ratio compares like
 * with like.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { assert } from "../lib/util/assert.ts";
import type { Pattern } from "./pattern.ts";

export const write_bytes = 4 * 1024 * 1024;
export const sync_bytes = 32 * 1024 * 1024;

export interface LimitResult {
  bytes: number;
  seconds: number;
  mb_per_s: number;
}

function result(bytes: number, started: number): LimitResult {
  const seconds = (performance.now() - started) / 1000;
  return { bytes, seconds, mb_per_s: bytes / 1e6 / seconds };
}

/** Whether a sync is due after a write ending at `end` (every sync_bytes, and at the end). */
export function syncDue(end: number, size: number): boolean {
  return end % sync_bytes === 0 || end === size;
}

async function writeCopy(file: string, size: number, pattern: Pattern): Promise<void> {
  const handle = await fs.promises.open(file, "w");
  try {
    const buffer = new Uint8Array(Math.min(write_bytes, size));
    for (let at = 0; at < size; at += write_bytes) {
      const chunk = buffer.subarray(0, Math.min(write_bytes, size - at));
      pattern.fill(chunk, at);
      for (let done = 0; done < chunk.length;) done += (await handle.write(chunk, done, chunk.length - done, at + done)).bytesWritten;
      if (syncDue(at + chunk.length, size)) await handle.datasync();
    }
  } finally {
    await handle.close();
  }
}

/** Writes `size` bytes of the pattern to `name` in each directory, concurrently (see above). */
export async function putLimit(dirs: string[], name: string, size: number, pattern: Pattern): Promise<LimitResult> {
  assert(size > 0, `size must be positive, got ${size}`);
  for (const dir of dirs) fs.mkdirSync(dir, { recursive: true });
  const started = performance.now();
  await Promise.all(dirs.map((dir) => writeCopy(path.join(dir, name), size, pattern)));
  return result(size, started);
}

function readAll(file: string, buffer: Uint8Array): number {
  const fd = fs.openSync(file, "r");
  let total = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) return total;
      total += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads the file twice in write_bytes reads and times the second (cached) read. */
export function getLimit(file: string): LimitResult {
  const buffer = new Uint8Array(write_bytes);
  const size = readAll(file, buffer);
  const started = performance.now();
  const again = readAll(file, buffer);
  assert(again === size, `${file} changed size while it was read (${size}, then ${again} bytes)`);
  return result(size, started);
}

/** The throughput over the limit; the limit is the mean of the measurements around the workload. */
export function ratioToLimit(mb_per_s: number, limits: LimitResult[]): { limit_mb_per_s: number; ratio: number } {
  assert(limits.length > 0, "a ratio needs at least one limit measurement");
  const limit_mb_per_s = limits.reduce((a, l) => a + l.mb_per_s, 0) / limits.length;
  return { limit_mb_per_s, ratio: mb_per_s / limit_mb_per_s };
}
