/**
 * The checksums S3 clients put in `x-amz-checksum-*` headers and trailers (docs/S3.md §1): CRC32,
 * CRC32C, CRC64NVME, SHA-1 and SHA-256 of a body, computed while it streams.
 *
 * CRC32 is Bun.hash.crc32 (the IEEE, reflected CRC of zlib; its second argument continues a
 * running value). CRC32C and CRC64NVME have no native implementation in Bun, so they are written
 * here, table-driven and eight bytes per step ("slice-by-8"): they run over every uploaded byte.
 */

export type ChecksumAlgorithm = "crc32" | "crc32c" | "crc64nvme" | "sha1" | "sha256";

export interface BodyChecksum {
  update(bytes: Uint8Array): void;
  /** base64, as x-amz-checksum-* carries it */
  digestBase64(): string;
}

export const checksum_algorithms: readonly ChecksumAlgorithm[] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/** Size in bytes of each algorithm's digest: a header or trailer value must decode to exactly this. */
export const checksum_size_bytes: ReadonlyMap<ChecksumAlgorithm, number> = new Map<ChecksumAlgorithm, number>([
  ["crc32", 4],
  ["crc32c", 4],
  ["crc64nvme", 8],
  ["sha1", 20],
  ["sha256", 32],
]);

const checksum_header_prefix = "x-amz-checksum-";

/** "x-amz-checksum-crc32" -> "crc32" (any case); null for any other name, including
 * x-amz-checksum-type, -algorithm and -mode, which name no digest. */
export function checksumAlgorithmOfHeader(name: string): ChecksumAlgorithm | null {
  const lower = name.toLowerCase();
  if (!lower.startsWith(checksum_header_prefix)) return null;
  const rest = lower.slice(checksum_header_prefix.length);
  return (checksum_algorithms as readonly string[]).includes(rest) ? (rest as ChecksumAlgorithm) : null;
}

export function checksumHeaderName(algorithm: ChecksumAlgorithm): string {
  return checksum_header_prefix + algorithm;
}

export function newChecksum(algorithm: ChecksumAlgorithm): BodyChecksum {
  switch (algorithm) {
    case "crc32":
      return new Crc32();
    case "crc32c":
      return new Crc32c();
    case "crc64nvme":
      return new Crc64Nvme();
    case "sha1":
    case "sha256":
      return new HashChecksum(algorithm);
  }
}

class Crc32 implements BodyChecksum {
  private crc = 0;
  update(bytes: Uint8Array): void {
    this.crc = Bun.hash.crc32(bytes, this.crc);
  }
  digestBase64(): string {
    return bigEndian32(this.crc).toBase64();
  }
}

class Crc32c implements BodyChecksum {
  private crc = 0;
  update(bytes: Uint8Array): void {
    this.crc = crc32c(bytes, this.crc);
  }
  digestBase64(): string {
    return bigEndian32(this.crc).toBase64();
  }
}

class Crc64Nvme implements BodyChecksum {
  private hi = 0;
  private lo = 0;
  update(bytes: Uint8Array): void {
    const [hi, lo] = crc64nvme(bytes, this.hi, this.lo);
    this.hi = hi;
    this.lo = lo;
  }
  digestBase64(): string {
    const out = new Uint8Array(8);
    const view = new DataView(out.buffer);
    view.setUint32(0, this.hi);
    view.setUint32(4, this.lo);
    return out.toBase64();
  }
}

class HashChecksum implements BodyChecksum {
  private readonly hasher: Bun.CryptoHasher;
  constructor(algorithm: "sha1" | "sha256") {
    this.hasher = new Bun.CryptoHasher(algorithm);
  }
  update(bytes: Uint8Array): void {
    this.hasher.update(bytes);
  }
  digestBase64(): string {
    return this.hasher.digest("base64");
  }
}

function bigEndian32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0);
  return out;
}

// ---- CRC32C (Castagnoli): reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF ----

const crc32c_poly_reflected = 0x82f63b78;

/** Eight tables of 256: table k gives the CRC of a byte followed by k zero bytes, so eight input
 * bytes fold into the register with eight lookups and no per-bit work. */
const crc32c_tables: Uint32Array = (() => {
  const t = new Uint32Array(8 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? (c >>> 1) ^ crc32c_poly_reflected : c >>> 1;
    t[i] = c >>> 0;
  }
  for (let k = 1; k < 8; k++)
    for (let i = 0; i < 256; i++) {
      const prev = t[(k - 1) * 256 + i];
      t[k * 256 + i] = ((prev >>> 8) ^ t[prev & 0xff]) >>> 0;
    }
  return t;
})();

/** CRC32C of bytes, continuing from `previous` (the finished CRC of what came before; 0 to start). */
export function crc32c(bytes: Uint8Array, previous = 0): number {
  const t = crc32c_tables;
  let crc = ~previous >>> 0;
  let i = 0;
  const n = bytes.length;
  const n8 = n - (n % 8);
  while (i < n8) {
    const lo = crc ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    crc =
      t[1792 + (lo & 0xff)] ^
      t[1536 + ((lo >>> 8) & 0xff)] ^
      t[1280 + ((lo >>> 16) & 0xff)] ^
      t[1024 + (lo >>> 24)] ^
      t[768 + bytes[i + 4]] ^
      t[512 + bytes[i + 5]] ^
      t[256 + bytes[i + 6]] ^
      t[bytes[i + 7]];
    i += 8;
  }
  while (i < n) {
    crc = (crc >>> 8) ^ t[(crc ^ bytes[i]) & 0xff];
    i++;
  }
  return ~crc >>> 0;
}

// ---- CRC64NVME: polynomial 0xAD93D23594C93659 (reflected 0x9A6C9329AC4BC9B5), init and final
// xor all ones. The 64-bit register is kept as two uint32 halves: BigInt is far too slow here. ----

const crc64_poly_hi = 0x9a6c9329;
const crc64_poly_lo = 0xac4bc9b5;

/** As for CRC32C, eight tables of 256, each entry split into high and low halves. */
const crc64_tables_hi = new Uint32Array(8 * 256);
const crc64_tables_lo = new Uint32Array(8 * 256);
(() => {
  const th = crc64_tables_hi;
  const tl = crc64_tables_lo;
  for (let i = 0; i < 256; i++) {
    let hi = 0;
    let lo = i;
    for (let bit = 0; bit < 8; bit++) {
      const odd = lo & 1;
      lo = ((lo >>> 1) | (hi << 31)) >>> 0;
      hi = hi >>> 1;
      if (odd) {
        hi = (hi ^ crc64_poly_hi) >>> 0;
        lo = (lo ^ crc64_poly_lo) >>> 0;
      }
    }
    th[i] = hi;
    tl[i] = lo;
  }
  for (let k = 1; k < 8; k++)
    for (let i = 0; i < 256; i++) {
      const ph = th[(k - 1) * 256 + i];
      const pl = tl[(k - 1) * 256 + i];
      const idx = pl & 0xff;
      th[k * 256 + i] = ((ph >>> 8) ^ th[idx]) >>> 0;
      tl[k * 256 + i] = (((pl >>> 8) | (ph << 24)) ^ tl[idx]) >>> 0;
    }
})();

/** CRC64NVME of bytes, continuing from the finished CRC of what came before, given as its high and
 * low 32 bits (0, 0 to start). Returns [high, low]. */
export function crc64nvme(bytes: Uint8Array, previous_hi = 0, previous_lo = 0): [number, number] {
  const th = crc64_tables_hi;
  const tl = crc64_tables_lo;
  let hi = ~previous_hi >>> 0;
  let lo = ~previous_lo >>> 0;
  let i = 0;
  const n = bytes.length;
  const n8 = n - (n % 8);
  while (i < n8) {
    // The register is exactly eight bytes, so after xoring in eight input bytes every one of its
    // bytes is looked up and nothing of the old register survives a shift.
    const a = lo ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    const b = hi ^ (bytes[i + 4] | (bytes[i + 5] << 8) | (bytes[i + 6] << 16) | (bytes[i + 7] << 24));
    const i0 = 1792 + (a & 0xff);
    const i1 = 1536 + ((a >>> 8) & 0xff);
    const i2 = 1280 + ((a >>> 16) & 0xff);
    const i3 = 1024 + (a >>> 24);
    const i4 = 768 + (b & 0xff);
    const i5 = 512 + ((b >>> 8) & 0xff);
    const i6 = 256 + ((b >>> 16) & 0xff);
    const i7 = b >>> 24;
    hi = th[i0] ^ th[i1] ^ th[i2] ^ th[i3] ^ th[i4] ^ th[i5] ^ th[i6] ^ th[i7];
    lo = tl[i0] ^ tl[i1] ^ tl[i2] ^ tl[i3] ^ tl[i4] ^ tl[i5] ^ tl[i6] ^ tl[i7];
    i += 8;
  }
  while (i < n) {
    const idx = (lo ^ bytes[i]) & 0xff;
    lo = (((lo >>> 8) | (hi << 24)) ^ tl[idx]) >>> 0;
    hi = ((hi >>> 8) ^ th[idx]) >>> 0;
    i++;
  }
  return [~hi >>> 0, ~lo >>> 0];
}
