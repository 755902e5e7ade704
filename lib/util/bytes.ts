/**
 * Little-endian integer access on plain byte arrays. A DataView over a message's own bytes forces
 * the engine to materialize its ArrayBuffer, which profiling showed cost more than the checksums
 * on the hot path; these read and write the bytes directly.
 */
import { assert } from "./assert.ts";

export function readU16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

export function readU32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/** A u64 as a number; not a safe integer (check with Number.isSafeInteger) when >= 2^53. */
export function readU64(b: Uint8Array, o: number): number {
  return readU32(b, o + 4) * 2 ** 32 + readU32(b, o);
}

export function readU64Big(b: Uint8Array, o: number): bigint {
  return (BigInt(readU32(b, o + 4)) << 32n) | BigInt(readU32(b, o));
}

export function writeU16(b: Uint8Array, o: number, n: number): void {
  b[o] = n;
  b[o + 1] = n >>> 8;
}

export function writeU32(b: Uint8Array, o: number, n: number): void {
  b[o] = n;
  b[o + 1] = n >>> 8;
  b[o + 2] = n >>> 16;
  b[o + 3] = n >>> 24;
}

/** n must be a non-negative safe integer. */
export function writeU64(b: Uint8Array, o: number, n: number): void {
  writeU32(b, o, n >>> 0);
  writeU32(b, o + 4, Math.floor(n / 2 ** 32));
}

export function writeU64Big(b: Uint8Array, o: number, n: bigint): void {
  writeU32(b, o, Number(n & 0xffffffffn));
  writeU32(b, o + 4, Number((n >> 32n) & 0xffffffffn));
}

/** The parts one after another, in one new buffer. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Below this size a zero-filled `new Uint8Array` is as cheap as anything else. */
const uninitialized_size_min = 16 * 1024;

/**
 * A plain Uint8Array of `size` bytes whose contents are unspecified, for buffers the caller
 * overwrites completely (a read into it, a copy into it). Zero-filling a fresh 1 MiB buffer cost
 * about 35 µs of the 50 µs `new Uint8Array` takes here; for large buffers this skips it. It is a
 * plain Uint8Array (not a Buffer) so that `slice` keeps copying, as everywhere else in lib/.
 */
export function allocUninitialized(size: number): Uint8Array {
  if (size < uninitialized_size_min) return new Uint8Array(size);
  const buffer = Buffer.allocUnsafeSlow(size);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, size);
}

/** n rounded up to a multiple of 8 (records and values are 8-byte aligned on disk and on the wire). */
export function pad8(n: number): number {
  assert(n >= 0, "pad8: negative size");
  return (n + 7) & ~7;
}

/** Whether bytes[offset, offset + size) are all zero. */
export function isZero(bytes: Uint8Array, offset: number, size: number): boolean {
  assert(offset >= 0 && offset + size <= bytes.length, "isZero: range outside the buffer");
  for (let i = offset; i < offset + size; i++) if (bytes[i] !== 0) return false;
  return true;
}
