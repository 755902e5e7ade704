/**
 * 64-bit checksums: xxHash64 (docs/DESIGN.md §4). Wide enough to identify prepares in a hash chain, fast
 * (about 10 GiB/s here), and small enough in C for the client library. Seed 0 everywhere.
 */
export function checksum(bytes: Uint8Array): bigint {
  return Bun.hash.xxHash64(bytes, 0n) as bigint;
}

/**
 * Checksums of buffers that are sent many times unchanged: a get reply the primary keeps in its
 * read cache (lib/store/read_cache.ts) is finalized again for every get it answers, and hashing a
 * 1 MiB body each time was about a tenth of what the primary spent per get. The owner computes
 * the checksum once, when it starts reusing the buffer (keepChecksum), and never writes the buffer
 * again; a message's body checksum (lib/net/codec.ts finalize) is then looked up instead of
 * computed (a lookup that misses costs about 5 ns, hashing 1 KiB about 170). Receivers always
 * hash what they receive. Should the kept bytes change anyway (a bug, or memory going bad), the
 * body no longer matches the checksum it is sent with and the receiver rejects the frame: the
 * damage is caught, not passed on.
 */
const kept = new WeakMap<Uint8Array, bigint>();

/** Computes and keeps the checksum of a buffer that will not change again. */
export function keepChecksum(bytes: Uint8Array): void {
  kept.set(bytes, checksum(bytes));
}

/** checksum(bytes), or what keepChecksum computed when it was given this very buffer. */
export function checksumOfBody(bytes: Uint8Array): bigint {
  if (bytes.length === 0) return checksum(bytes);
  return kept.get(bytes) ?? checksum(bytes);
}
