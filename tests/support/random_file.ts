/**
 * Large random files for the round-trip and crash scripts and tests: written and hashed in chunks,
 * never held whole, so a 10 GiB file costs a chunk of memory.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";

const chunk_bytes = 8 * 1024 * 1024;

export interface SourceFile {
  path: string;
  size: number;
  sha256: string;
}

/** Writes size random bytes to file in chunks, returning their sha256. */
export function writeRandomFile(file: string, size: number): SourceFile {
  const hash = crypto.createHash("sha256");
  const fd = fs.openSync(file, "w");
  const buffer = Buffer.allocUnsafe(Math.min(chunk_bytes, Math.max(size, 1)));
  try {
    for (let written = 0; written < size;) {
      const chunk = buffer.subarray(0, Math.min(buffer.length, size - written));
      crypto.randomFillSync(chunk);
      hash.update(chunk);
      for (let off = 0; off < chunk.length;) off += fs.writeSync(fd, chunk, off, chunk.length - off);
      written += chunk.length;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { path: file, size, sha256: hash.digest("hex") };
}

export async function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file, { highWaterMark: chunk_bytes })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
