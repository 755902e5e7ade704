import { expect, test } from "bun:test";
import { manifestChecksum, partChecksum } from "../store/large_bodies.ts";
import { ChecksumList } from "./checksum_list.ts";

test("part and manifest checksums equal the replicas' partChecksum and manifestChecksum, across growth", () => {
  const list = new ChecksumList();
  const sums: bigint[] = [];
  for (let i = 0; i < 300; i++) {
    const c = (BigInt(i) * 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
    list.add(c);
    sums.push(c);
  }
  expect(list.part(0, 300)).toBe(partChecksum(sums));
  expect(list.part(17, 200)).toBe(partChecksum(sums.slice(17, 200)));
  expect(list.manifest(123_456_789)).toBe(manifestChecksum(sums, 123_456_789));
  list.add(5n);
  expect(list.manifest(1)).toBe(manifestChecksum([...sums, 5n], 1));
});
