import { assert } from "./assert.ts";

/**
 * xoshiro128**: a small, fast, seedable PRNG (Math.random cannot be seeded). The only source of randomness
 * in the core and the simulator, so a seed replays a run exactly.
 */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    assert(Number.isSafeInteger(seed) && seed >= 0, `prng seed must be a non-negative safe integer, got ${seed}`);
    // splitmix32 over both halves of the seed spreads small seeds over the whole state.
    let s = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    // Held as int32 from the start (u32 leaves them so): a field that is sometimes a uint32 above
    // 2^31 is a double to the JIT, and every draw then converts.
    this.a = next() | 0;
    this.b = next() | 0;
    this.c = next() | 0;
    this.d = next() | 0;
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** A uniformly distributed integer in [0, n), without modulo bias. */
  int(n: number): number {
    // The message only on failure: a template argument is built on every call (the simulator
    // draws several times per event).
    if (!(Number.isInteger(n) && n > 0 && n <= 2 ** 32)) assert(false, `prng int bound must be in [1, 2^32], got ${n}`);
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const x = this.u32();
      if (x < limit) return x % n;
    }
  }

  /** An integer in [min, max], both inclusive. */
  range(min: number, max: number): number {
    if (!(min <= max)) assert(false, `prng range: min ${min} > max ${max}`);
    return min + this.int(max - min + 1);
  }

  /** A float in [0, 1) with 32 bits of precision. */
  float(): number {
    return this.u32() / 2 ** 32;
  }

  /** True with the given probability (0..1). */
  chance(probability: number): boolean {
    return this.float() < probability;
  }

  /** A 64-bit value, as a bigint. */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  pick<T>(items: readonly T[]): T {
    assert(items.length > 0, "prng pick from an empty list");
    return items[this.int(items.length)]!;
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = items[i]!;
      items[i] = items[j]!;
      items[j] = t;
    }
    return items;
  }

  /** An exponentially distributed integer with the given mean (for latencies and durations). */
  exponential(mean: number): number {
    return Math.floor(-Math.log(1 - this.float()) * mean);
  }

  /** A new generator whose stream is independent of this one's future draws. */
  fork(): Prng {
    return new Prng(this.u32() * 2 ** 21 + (this.u32() >>> 11));
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
