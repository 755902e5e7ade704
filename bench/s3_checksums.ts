/**
 * Throughput of the checksums the S3 gateway runs over every uploaded byte (lib/s3/checksums.ts),
 * next to the hashes it may run alongside (MD5 for the ETag, SHA-256 for a signed payload).
 * Usage: bun bench/s3_checksums.ts [MiB]   (default 64; three rounds, MiB/s each)
 */
import { type ChecksumAlgorithm, checksum_algorithms, newChecksum } from "../lib/s3/checksums.ts";

const mib = Number(process.argv[2] ?? 64);
const data = new Uint8Array(mib * 1024 * 1024);
for (let at = 0; at < data.length; at += 65536) crypto.getRandomValues(data.subarray(at, at + 65536));
const piece_bytes = 256 * 1024; // about what a request body stream delivers per read

function run(name: string, update: (piece: Uint8Array) => void, finish: () => void): string {
  const start = performance.now();
  for (let at = 0; at < data.length; at += piece_bytes) update(data.subarray(at, at + piece_bytes));
  finish();
  return `${name} ${(mib / ((performance.now() - start) / 1000)).toFixed(0)}`;
}

for (let round = 1; round <= 3; round++) {
  const results = checksum_algorithms.map((algorithm: ChecksumAlgorithm) => {
    const c = newChecksum(algorithm);
    return run(
      algorithm,
      (p) => c.update(p),
      () => c.digestBase64(),
    );
  });
  const md5 = new Bun.CryptoHasher("md5");
  results.push(
    run(
      "md5",
      (p) => md5.update(p),
      () => md5.digest(),
    ),
  );
  console.log(`round ${round} (MiB/s over ${mib} MiB): ${results.join("  ")}`);
}
