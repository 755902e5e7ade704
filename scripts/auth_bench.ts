/**
 * Throughput of the frame tag (lib/net/auth/frame_tag.ts) on 4 MiB and 4 KiB frames: node:crypto's
 * createHmac (a new keyed HMAC per frame) against Bun.CryptoHasher with the key (new per frame), and
 * FrameSealer itself (which uses the latter). Prints MB/s (10^6 bytes per second).
 *
 *   bun scripts/auth_bench.ts
 */
import { createHmac } from "node:crypto";
import { FrameSealer } from "../lib/net/auth/frame_tag.ts";

const key = new Uint8Array(32).fill(7);
const sequence = new Uint8Array(8);

function measure(name: string, frame_size: number, run: (frame: Uint8Array) => void): void {
  const frame = new Uint8Array(frame_size).fill(0x5a);
  const total_bytes = 256 * 1024 * 1024;
  const count = Math.max(1, Math.floor(total_bytes / frame_size));
  for (let i = 0; i < Math.min(count, 16); i++) run(frame); // warm up
  const start = performance.now();
  for (let i = 0; i < count; i++) run(frame);
  const seconds = (performance.now() - start) / 1000;
  const mb_per_s = (count * frame_size) / seconds / 1e6;
  console.log(
    `${name.padEnd(34)} ${String(frame_size).padStart(8)} B frames: ${mb_per_s.toFixed(0).padStart(6)} MB/s, ${((seconds / count) * 1e6).toFixed(1)} µs per frame`,
  );
}

const sealer = new FrameSealer(key);
for (const size of [4 * 1024 * 1024, 4 * 1024]) {
  measure("node:crypto createHmac per frame", size, (frame) => {
    createHmac("sha256", key).update(sequence).update(frame).digest();
  });
  measure("Bun.CryptoHasher new per frame", size, (frame) => {
    const hasher = new Bun.CryptoHasher("sha256", key);
    hasher.update(sequence);
    hasher.update(frame);
    hasher.digest();
  });
  measure("FrameSealer", size, (frame) => {
    sealer.seal(frame);
  });
}
