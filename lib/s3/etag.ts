/**
 * ETags as S3 clients expect them (docs/S3.md §3): the hex MD5 of the content for a single upload,
 * the MD5 of the parts' binary MD5s and "-N" for a multipart one. The part count lives in the
 * reserved user-metadata name parts_meta_name; an object written natively without an MD5 gets an
 * opaque ETag with a "-1" suffix, so clients that check a plain ETag against the content's MD5 do
 * not take it for one.
 */
import type { MetaEntry, ObjectHeader } from "../store/large_bodies.ts";
import { decodeUserMeta } from "../store/large_bodies.ts";

/** Reserved: the gateway writes it, a client may not (InvalidArgument). */
export const parts_meta_name = "toastyfs-s3-parts";

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** The object's user metadata entries (empty when it has none or it was not asked for). */
export function userMetaOf(header: ObjectHeader): MetaEntry[] {
  if (header.metadata === null || header.metadata.user_meta.length === 0) return [];
  return decodeUserMeta(header.metadata.user_meta) ?? [];
}

/** The part count of a multipart object, or null for a single upload. */
export function partCountOf(header: ObjectHeader): number | null {
  const entry = userMetaOf(header).find((e) => e.name === parts_meta_name);
  if (entry === undefined) return null;
  const n = Number(new TextDecoder().decode(entry.value));
  return Number.isInteger(n) && n >= 1 ? n : null;
}

/** The quoted ETag of an object (needs a header read with metadata for multipart objects). */
export function etagOf(header: ObjectHeader): string {
  if (header.md5 === null) {
    const sum = header.checksum.toString(16).padStart(16, "0");
    return `"${sum}${header.version.toString(16).padStart(16, "0")}-1"`;
  }
  const parts = partCountOf(header);
  return parts === null ? md5Etag(header.md5) : multipartEtag(header.md5, parts);
}

/** The quoted ETag of a single upload with this MD5. */
export function md5Etag(md5: Uint8Array): string {
  return `"${hex(md5)}"`;
}

/** The quoted ETag of a multipart object: its stored MD5 (multipartMd5) and the part count. */
export function multipartEtag(md5: Uint8Array, part_count: number): string {
  return `"${hex(md5)}-${part_count}"`;
}

/** The MD5 a multipart object stores: MD5 of the parts' binary MD5s, in part order. */
export function multipartMd5(part_md5s: readonly Uint8Array[]): Uint8Array {
  const hasher = new Bun.CryptoHasher("md5");
  for (const md5 of part_md5s) hasher.update(md5);
  return new Uint8Array(hasher.digest() as Uint8Array);
}

/** ETags compare equal quoted or unquoted, and a weak "W/" prefix is ignored (RFC 9110 weak
 * comparison, which is what S3 does for If-Match and If-None-Match). */
export function sameEtag(a: string, b: string): boolean {
  return bare(a) === bare(b);
}

function bare(etag: string): string {
  let t = etag.trim();
  if (t.startsWith("W/")) t = t.slice(2);
  if (t.length >= 2 && t.startsWith('"') && t.endsWith('"')) t = t.slice(1, -1);
  return t;
}

/** The ETags of an If-Match or If-None-Match header: a comma-separated list, or "*". */
export function etagList(header: string): string[] {
  return header
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
}
