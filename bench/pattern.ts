/**
 * Pseudo-random object contents for bench/large.ts, any size without holding it: a pool of
 * seeded pseudo-random bytes, read as tiles of tile_bytes at offsets that change from tile to tile,
 * each tile's first 8 bytes replaced by its index, so no two tiles of an object are alike (a block
 * served at the wrong offset differs) and any range can be regenerated to compare a get against.
 * Producing a byte costs a copy, not a random draw: the bench measures the store, not the generator.
 */
import { assert } from "../lib/util/assert.ts";

/** Bytes per tile (one copy from the pool plus an 8-byte stamp). */
export const tile_bytes = 1024 * 1024;
/** The pool's size: tiles start at multiples of 4 KiB inside it (4,096 distinct offsets). */
const pool_bytes = 16 * 1024 * 1024;
const offset_step = 4096;
const stamp_bytes = 8;

export class Pattern {
  /** pool_bytes + tile_bytes, so a tile at any offset below pool_bytes fits. */
  private readonly pool: Uint8Array;
  private readonly stamp = new Uint8Array(stamp_bytes);
  private readonly stamp_view = new DataView(this.stamp.buffer);

  constructor(readonly seed: number) {
    assert(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32, `seed must be a u32, got ${seed}`);
    const words = new Uint32Array((pool_bytes + tile_bytes) / 4);
    // xorshift32; a zero state would stay zero.
    let x = seed ^ 0x9e3779b9 || 1;
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x >>> 0;
    }
    this.pool = new Uint8Array(words.buffer);
  }

  /** Where tile t's bytes start in the pool (a multiple of offset_step below pool_bytes). */
  private tileOffset(tile: number): number {
    // Multiplicative hashing in 32 bits (a product of doubles would lose bits past 2^53).
    return (((Math.imul(tile, 2654435761) ^ this.seed) >>> 0) % (pool_bytes / offset_step)) * offset_step;
  }

  /** Writes the object's bytes at [position, position + out.length) into out. */
  fill(out: Uint8Array, position: number): void {
    assert(Number.isSafeInteger(position) && position >= 0, `position must be a byte offset, got ${position}`);
    let done = 0;
    while (done < out.length) {
      const at = position + done;
      const tile = Math.floor(at / tile_bytes);
      const within = at - tile * tile_bytes;
      const n = Math.min(out.length - done, tile_bytes - within);
      const from = this.tileOffset(tile) + within;
      out.set(this.pool.subarray(from, from + n), done);
      if (within < stamp_bytes) {
        this.stamp_view.setBigUint64(0, BigInt(tile), true);
        const k = Math.min(stamp_bytes - within, n);
        out.set(this.stamp.subarray(within, within + k), done);
      }
      done += n;
    }
  }

  /** The object of `size` bytes as chunks of chunk_bytes (the last shorter), each a new array. */
  async *chunks(size: number, chunk_bytes = 4 * tile_bytes): AsyncGenerator<Uint8Array> {
    assert(chunk_bytes > 0, `chunk_bytes must be positive, got ${chunk_bytes}`);
    for (let at = 0; at < size; at += chunk_bytes) {
      const chunk = new Uint8Array(Math.min(chunk_bytes, size - at));
      this.fill(chunk, at);
      yield chunk;
    }
  }
}

/**
 * Compares a stream of chunks (any boundaries) against the pattern from position 0: the bytes
 * seen and the offset of the first difference (null when none).
 */
export class PatternCheck {
  private scratch = new Uint8Array(0);
  received = 0;
  first_mismatch: number | null = null;

  constructor(private readonly pattern: Pattern) {}

  update(chunk: Uint8Array): void {
    if (this.first_mismatch === null) {
      if (this.scratch.length < chunk.length) this.scratch = new Uint8Array(chunk.length);
      const expected = this.scratch.subarray(0, chunk.length);
      this.pattern.fill(expected, this.received);
      if (Buffer.compare(expected, chunk) !== 0) {
        let i = 0;
        while (expected[i] === chunk[i]) i++;
        this.first_mismatch = this.received + i;
      }
    }
    this.received += chunk.length;
  }
}
