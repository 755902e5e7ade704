/**
 * 64-bit checksums: xxHash64 (docs/DESIGN.md §4). Wide enough to identify prepares in a hash chain, fast
 * (about 10 GiB/s here), and small enough in C for the client library. Seed 0 everywhere.
 */
export function checksum(bytes: Uint8Array): bigint {
  return Bun.hash.xxHash64(bytes, 0n) as bigint;
}
