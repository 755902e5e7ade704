/**
 * The block checksums of an object in order, 8 bytes each, from which part checksums and the
 * manifest checksum are computed exactly as the replicas do (LARGE_OBJECTS.md §5.1, §5.4;
 * large_bodies.ts partChecksum, manifestChecksum), without a bigint per block: 8 bytes a block is
 * 40 MB for 5 TiB in 1 MiB blocks.
 */
import { assert } from "../util/assert.ts";
import { writeU64, writeU64Big } from "../util/bytes.ts";
import { checksum } from "../util/checksum.ts";

export class ChecksumList {
  private bytes = new Uint8Array(8 * 64);
  count = 0;

  add(block_checksum: bigint): void {
    if (8 * (this.count + 2) > this.bytes.length) {
      const grown = new Uint8Array(this.bytes.length * 2);
      grown.set(this.bytes.subarray(0, 8 * this.count));
      this.bytes = grown;
    }
    writeU64Big(this.bytes, 8 * this.count, block_checksum);
    this.count += 1;
  }

  /** part_checksum of blocks [from, to): xxh64 of their checksums. */
  part(from: number, to: number): bigint {
    assert(0 <= from && from < to && to <= this.count, () => `blocks ${from}..${to} of ${this.count}`);
    return checksum(this.bytes.subarray(8 * from, 8 * to));
  }

  /** The manifest checksum of an object made of every block added: xxh64 of the checksums, then
   * u64 size. (add keeps room for the 8 bytes of size.) */
  manifest(size: number): bigint {
    writeU64(this.bytes, 8 * this.count, size);
    return checksum(this.bytes.subarray(0, 8 * this.count + 8));
  }
}
