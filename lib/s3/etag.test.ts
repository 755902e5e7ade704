import { describe, expect, test } from "bun:test";
import { ObjectKind, encodeUserMeta, type ObjectHeader } from "../store/large_bodies.ts";
import { etagList, etagOf, md5Etag, multipartMd5, parts_meta_name, sameEtag } from "./etag.ts";

function header(o: Partial<ObjectHeader>): ObjectHeader {
  return {
    version: 7,
    timestamp: 1,
    size: 3,
    checksum: 0xabcn,
    kind: ObjectKind.inline,
    block_count: 1,
    md5: null,
    metadata: null,
    ...o,
  };
}

const md5_abc = new Uint8Array(Bun.CryptoHasher.hash("md5", "abc") as Uint8Array);

describe("ETags", () => {
  test("a single upload's ETag is its quoted hex MD5", () => {
    expect(etagOf(header({ md5: md5_abc }))).toBe('"900150983cd24fb0d6963f7d28e17f72"');
    expect(md5Etag(md5_abc)).toBe('"900150983cd24fb0d6963f7d28e17f72"');
  });

  test("a multipart ETag is the MD5 of the binary part MD5s and -N", () => {
    const parts = [md5_abc, new Uint8Array(Bun.CryptoHasher.hash("md5", "def") as Uint8Array)];
    const md5 = multipartMd5(parts);
    const concat = new Uint8Array(32);
    concat.set(parts[0]!, 0);
    concat.set(parts[1]!, 16);
    expect(Buffer.from(md5).toString("hex")).toBe(new Bun.CryptoHasher("md5").update(concat).digest("hex"));
    const user_meta = encodeUserMeta([{ name: parts_meta_name, value: new TextEncoder().encode("2") }]);
    const etag = etagOf(header({ md5, metadata: { content_type: "", user_meta } }));
    expect(etag).toBe(`"${Buffer.from(md5).toString("hex")}-2"`);
  });

  test("an object without an MD5 gets an ETag no client mistakes for one, different per version", () => {
    const a = etagOf(header({}));
    expect(a).toMatch(/^"[0-9a-f]{32}-1"$/);
    expect(etagOf(header({ version: 8 }))).not.toBe(a);
  });

  test("ETags compare equal quoted, unquoted or weak; lists split on commas", () => {
    expect(sameEtag('"abc"', "abc")).toBe(true);
    expect(sameEtag('W/"abc"', '"abc"')).toBe(true);
    expect(sameEtag('"abc"', '"abd"')).toBe(false);
    expect(etagList(' "a", "b" ,')).toEqual(['"a"', '"b"']);
  });
});
