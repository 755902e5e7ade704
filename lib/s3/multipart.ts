/**
 * Multipart uploads (docs/S3.md §4): each S3 upload is one native upload session; the gateway's
 * upload and part records (multipart_records.ts) hold what S3 needs and the native store does not:
 * the part MD5s, sizes and attempts, the key, the content type and user metadata. Every call reads
 * them from the cluster, so an upload started on one gateway can go on and finish on another.
 *
 * Empty parts: the native store has no empty parts, and S3 accepts an UploadPart of 0 bytes (it is
 * refused only at Complete, EntityTooSmall, unless it is the last part). An empty part therefore
 * gets a part record with no blocks and the MD5 of nothing; Complete leaves it out of the native
 * part list but counts its MD5 in the ETag, so an upload whose only part is empty completes to an
 * empty object with the ETag S3 gives it.
 */
import { bodySource } from "../client/body_source.ts";
import type { Client } from "../client/client.ts";
import { ClientError } from "../client/errors.ts";
import type { PartInfo } from "../client/large_put.ts";
import { part_blocks_max, upload_parts_max } from "../constants.ts";
import { encodeUserMeta, userMetaProblem, type MetaEntry } from "../store/large_bodies.ts";
import { assert } from "../util/assert.ts";
import { requireBucket } from "./buckets.ts";
import { etagOf, md5Etag, multipartEtag, multipartMd5, parts_meta_name, partCountOf, sameEtag } from "./etag.ts";
import { list_parts_handler, list_uploads_handler } from "./multipart_lists.ts";
import {
  blockChecksumsOf,
  decodePartRecord,
  encodePartRecord,
  encodeUploadRecord,
  formatUploadId,
  newUploadTag,
  noSuchUpload,
  packBlockChecksums,
  parseUploadId,
  readUploadRecord,
  type PartRecord,
  type UploadRecord,
} from "./multipart_records.ts";
import { partRecordKey, partRecordsPrefix, uploadRecordKey } from "./names.ts";
import type { S3Context, S3Handler, S3Request } from "./request.ts";
import { S3Error } from "./s3_error.ts";
import { conditionFailed, writeConditions } from "./write_conditions.ts";
import { readXmlBody, type XmlElement } from "./xml.ts";
import { invalidArgument, s3Handler, s3XmlResponse } from "./handler_util.ts";
import { contentTypeFromHeaders, metaOptions, objectOf, refuseUnsupportedWriteHeaders, userMetaFromHeaders } from "./object_headers.ts";
import { contentMd5 } from "./object_put.ts";
import type { S3Operation } from "./router.ts";

/** S3's smallest part, except the last one of an upload. A constant, not an option: the tests
 * send 5 MiB parts (a few of them cost well under a second here), and an option that loosens the
 * rule for tests is one that could loosen it in production. */
export const part_size_min_bytes = 5 * 1024 * 1024;
/** S3's largest part. */
export const part_size_max_bytes = 5 * 1024 * 1024 * 1024;
/** A CompleteMultipartUpload body: 10,000 parts of about 100 bytes each fit with room to spare. */
export const complete_body_max_bytes = 2 * 1024 * 1024;

/** The user metadata a completed object stores: the upload's and the part count, which the ETag's
 * "-N" shows and which is known only now (complete_upload replaces the upload's metadata). */
function completedMeta(record: UploadRecord, part_count: number): Uint8Array {
  assert(part_count >= 1 && part_count <= upload_parts_max, "a completed upload has 1..10,000 parts");
  const entries: MetaEntry[] = record.meta.map(([name, value]) => ({ name, value }));
  entries.push({ name: parts_meta_name, value: new TextEncoder().encode(String(part_count)) });
  return encodeUserMeta(entries);
}

async function createUpload(request: S3Request, context: S3Context): Promise<Response> {
  const { bucket, key, native: native_key } = objectOf(request);
  await requireBucket(context, bucket);
  refuseUnsupportedWriteHeaders(request.headers);
  const meta = userMetaFromHeaders(request.headers);
  const content_type = contentTypeFromHeaders(request.headers);
  // The part count Complete adds must fit the native limit too: check with the largest.
  const largest = [...meta, { name: parts_meta_name, value: new TextEncoder().encode(String(upload_parts_max)) }];
  const problem = userMetaProblem(largest);
  if (problem !== null) throw new S3Error("MetadataTooLarge", `user metadata: ${problem}`);
  const upload = await context.client.createUpload(native_key, metaOptions(content_type, meta));
  const tag = newUploadTag();
  const upload_id = formatUploadId(upload.id, tag);
  const record: UploadRecord = {
    key,
    created_ms: context.now(),
    native_id: upload.id,
    block_size_max: upload.block_size_max,
    content_type: content_type ?? "",
    meta: meta.map((e) => [e.name, e.value]),
    tag,
    initiator: request.access_key,
  };
  try {
    await context.client.put(uploadRecordKey(bucket, upload_id), encodeUploadRecord(record), { if_absent: true });
  } catch (e) {
    await upload.abort().catch(() => undefined);
    throw e;
  }
  return s3XmlResponse("InitiateMultipartUploadResult", (w) => {
    w.leaf("Bucket", bucket);
    w.leaf("Key", key);
    w.leaf("UploadId", upload_id);
  });
}

function partNumberOf(request: S3Request): number {
  const text = request.query.get("partNumber") ?? "";
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= upload_parts_max))
    throw invalidArgument(
      "partNumber",
      text,
      `Part number must be an integer between 1 and ${upload_parts_max}, inclusive (got ${JSON.stringify(text)})`,
    );
  return n;
}

async function uploadPart(request: S3Request, context: S3Context): Promise<Response> {
  const { bucket, key } = objectOf(request);
  const part_number = partNumberOf(request);
  const upload_id = request.query.get("uploadId");
  const record = await readUploadRecord(context.client, bucket, key, upload_id);
  const size = request.size;
  if (size === null) throw new S3Error("MissingContentLength", "UploadPart needs the part's size (Content-Length)");
  const size_max = Math.min(part_size_max_bytes, part_blocks_max * record.block_size_max);
  if (size > size_max) throw new S3Error("EntityTooLarge", `a part of ${size} bytes: parts are at most ${size_max} bytes`);
  const content_md5 = contentMd5(request.headers);
  const source = bodySource(request.body, size, "the part");
  const md5 = new Bun.CryptoHasher("md5");
  let info: PartInfo | null = null;
  // Reading to the end also makes the body verify its checksums before the record is written.
  if (!(await source.atEnd())) {
    const upload = context.client.openUpload(record.native_id, record.block_size_max);
    info = await upload.sendPart(part_number, source, { md5 });
    assert(await source.atEnd(), "a part within size_max fits in one native part");
  }
  const digest = new Uint8Array(md5.digest() as Uint8Array);
  if (content_md5 !== null && !Buffer.from(content_md5).equals(Buffer.from(digest)))
    throw new S3Error("BadDigest", "the Content-MD5 you specified did not match what we received");
  const part: PartRecord = {
    attempt: info?.attempt ?? 0n,
    block_count: info?.block_count ?? 0,
    size: info?.part_size ?? 0,
    part_checksum: info?.part_checksum ?? 0n,
    md5: digest,
    last_modified_ms: context.now(),
    block_checksums: packBlockChecksums(info?.block_checksums ?? []),
  };
  const part_key = partRecordKey(upload_id!, part_number);
  await context.client.put(part_key, encodePartRecord(part));
  // An upload completed or aborted while the part streamed has had its records deleted: this
  // part's record would outlive it.
  if (!(await exists(context.client, uploadRecordKey(bucket, upload_id!)))) {
    await context.client.delete(part_key).catch(() => undefined);
    throw noSuchUpload(upload_id!);
  }
  return new Response(null, { status: 200, headers: { etag: md5Etag(part.md5) } });
}

async function exists(client: Client, key: Uint8Array): Promise<boolean> {
  try {
    await client.stat(key);
    return true;
  } catch (e) {
    if (e instanceof ClientError && e.code === "not_found") return false;
    throw e;
  }
}

interface RequestedPart {
  part_number: number;
  etag: string;
}

/** The CompleteMultipartUpload body's parts, checked for order (InvalidPartOrder). */
function requestedParts(root: XmlElement): RequestedPart[] {
  if (root.name !== "CompleteMultipartUpload")
    throw new S3Error("MalformedXML", `the root element is ${root.name}, not CompleteMultipartUpload`);
  const parts: RequestedPart[] = [];
  for (const el of root.children) {
    if (el.name !== "Part") continue;
    const number_text = el.children.find((c) => c.name === "PartNumber")?.text.trim() ?? "";
    const etag = el.children.find((c) => c.name === "ETag")?.text.trim();
    const part_number = /^[0-9]{1,5}$/.test(number_text) ? Number(number_text) : NaN;
    if (!(part_number >= 1 && part_number <= upload_parts_max) || etag === undefined)
      throw new S3Error("MalformedXML", `each Part needs a PartNumber of 1..${upload_parts_max} and an ETag`);
    const previous = parts[parts.length - 1];
    if (previous !== undefined && part_number <= previous.part_number)
      throw new S3Error(
        "InvalidPartOrder",
        `part ${part_number} follows part ${previous.part_number}: the list must be in ascending order`,
      );
    parts.push({ part_number, etag });
  }
  if (parts.length === 0) throw new S3Error("MalformedXML", "CompleteMultipartUpload names no part: an upload completes with at least one");
  return parts;
}

function invalidPart(part_number: number, why: string): S3Error {
  return new S3Error("InvalidPart", `part ${part_number} ${why}`, new Map([["PartNumber", String(part_number)]]));
}

/** The MD5 S3 clients expect of an object made of these parts (from their ETags), or null if an
 * ETag is not a part MD5. */
function md5OfRequested(parts: readonly RequestedPart[]): Uint8Array | null {
  const md5s: Uint8Array[] = [];
  for (const p of parts) {
    const bare = p.etag.replace(/^"|"$/g, "");
    if (!/^[0-9a-fA-F]{32}$/.test(bare)) return null;
    md5s.push(new Uint8Array(Buffer.from(bare, "hex")));
  }
  return multipartMd5(md5s);
}

/**
 * A Complete whose upload is gone: a retry after a lost reply (or a concurrent Complete of the same
 * upload) succeeds, with the same ETag, when the object now is what completing these parts makes:
 * its MD5 is the MD5 of the part MD5s the request lists (which names the parts' contents) and its
 * recorded part count is what Complete records. Stateless: nothing has to outlive the upload.
 */
async function alreadyCompleted(client: Client, native_key: Uint8Array, parts: readonly RequestedPart[]): Promise<string | null> {
  const md5 = md5OfRequested(parts);
  if (md5 === null) return null;
  let header;
  try {
    header = await client.head(native_key);
  } catch (e) {
    if (e instanceof ClientError && e.code === "not_found") return null;
    throw e;
  }
  if (header.md5 === null || !Buffer.from(header.md5).equals(Buffer.from(md5))) return null;
  if (partCountOf(header) !== parts.length) return null;
  return etagOf(header);
}

/** The part records the Complete names, each checked against its ETag; the number of the first
 * part that has no record, if one has none. */
async function partsNamed(client: Client, upload_id: string, parts: readonly RequestedPart[]): Promise<PartRecord[] | number> {
  const records: PartRecord[] = [];
  for (const p of parts) {
    let part: PartRecord;
    try {
      part = decodePartRecord((await client.get(partRecordKey(upload_id, p.part_number))).value);
    } catch (e) {
      if (e instanceof ClientError && e.code === "not_found") return p.part_number;
      throw e;
    }
    if (!sameEtag(p.etag, md5Etag(part.md5))) throw invalidPart(p.part_number, `has ETag ${md5Etag(part.md5)}, not ${p.etag}`);
    records.push(part);
  }
  return records;
}

function checkPartSizes(parts: readonly RequestedPart[], records: readonly PartRecord[]): void {
  const small = records.findIndex((r, i) => i < records.length - 1 && r.size < part_size_min_bytes);
  if (small < 0) return;
  const { part_number } = parts[small]!;
  const size = records[small]!.size;
  throw new S3Error(
    "EntityTooSmall",
    `part ${part_number} is ${size} bytes: every part but the last is at least ${part_size_min_bytes} bytes`,
    new Map([
      ["PartNumber", String(part_number)],
      ["ProposedSize", String(size)],
      ["MinSizeAllowed", String(part_size_min_bytes)],
    ]),
  );
}

/** The native parts (an empty part has no blocks and is left out, see the module comment). */
function nativeParts(parts: readonly RequestedPart[], records: readonly PartRecord[]): PartInfo[] {
  return records.flatMap((r, i) =>
    r.block_count === 0
      ? []
      : [
          {
            part_number: parts[i]!.part_number,
            block_count: r.block_count,
            attempt: r.attempt,
            part_size: r.size,
            part_checksum: r.part_checksum,
            block_checksums: blockChecksumsOf(r),
          },
        ],
  );
}

/**
 * Complete: the records are read and checked, the native upload completed under the request's
 * condition, then the records deleted (parts first: a gateway that stops half-way leaves the
 * upload record, which ListMultipartUploads shows and AbortMultipartUpload removes, never part
 * records nothing names). Whenever the upload or one of its parts turns out to be gone, the
 * request may be a retry of a Complete that succeeded (alreadyCompleted).
 */
async function completeUpload(request: S3Request, context: S3Context): Promise<Response> {
  const { bucket, key, native: native_key } = objectOf(request);
  const upload_id = request.query.get("uploadId");
  parseUploadId(upload_id);
  const parts = requestedParts(await readXmlBody(request.body, complete_body_max_bytes));
  const done = (etag: string): Response =>
    s3XmlResponse("CompleteMultipartUploadResult", (w) => {
      w.leaf("Location", `http://${request.headers.get("host") ?? "localhost"}/${bucket}/${encodeURIComponent(key).replace(/%2F/g, "/")}`);
      w.leaf("Bucket", bucket);
      w.leaf("Key", key);
      w.leaf("ETag", etag);
    });
  /** The upload (or a part) is gone: success if the object is what this Complete makes. */
  const gone = async (error: S3Error): Promise<Response> => {
    const etag = await alreadyCompleted(context.client, native_key, parts);
    if (etag === null) throw error;
    await deleteRecords(context.client, bucket, upload_id!);
    return done(etag);
  };
  let record: UploadRecord;
  try {
    record = await readUploadRecord(context.client, bucket, key, upload_id);
  } catch (e) {
    if (!(e instanceof S3Error && e.code === "NoSuchUpload")) throw e;
    return gone(e);
  }
  // Every part must exist with its ETag before sizes are judged: a missing part is the news.
  const records = await partsNamed(context.client, upload_id!, parts);
  if (typeof records === "number") return gone(invalidPart(records, "was not uploaded"));
  checkPartSizes(parts, records);
  const conditions = await writeConditions(request.headers, context.client, native_key);
  const md5 = multipartMd5(records.map((r) => r.md5));
  const upload = context.client.openUpload(record.native_id, record.block_size_max);
  try {
    await upload.complete(nativeParts(parts, records), { ...conditions, md5, user_meta: completedMeta(record, parts.length) });
  } catch (e) {
    if (e instanceof ClientError && e.code === "upload_not_found") return gone(noSuchUpload(upload_id!));
    throw conditionFailed(e);
  }
  await deleteRecords(context.client, bucket, upload_id!);
  return done(multipartEtag(md5, parts.length));
}

/** Every part record of the upload (those Complete left out too), then the upload record. A
 * record already gone (another Complete or Abort of the upload got there first) is no error. */
async function deleteRecords(client: Client, bucket: string, upload_id: string): Promise<void> {
  const keys: Uint8Array[] = [];
  for await (const entry of client.listAll(partRecordsPrefix(upload_id))) keys.push(entry.key);
  for (const k of [...keys, uploadRecordKey(bucket, upload_id)]) {
    try {
      await client.delete(k);
    } catch (e) {
      if (!(e instanceof ClientError && e.code === "not_found")) throw e;
    }
  }
}

async function abortUpload(request: S3Request, context: S3Context): Promise<Response> {
  const { bucket, key } = objectOf(request);
  const upload_id = request.query.get("uploadId");
  const record = await readUploadRecord(context.client, bucket, key, upload_id);
  try {
    await context.client.abortUpload(record.native_id);
  } catch (e) {
    // Expired by the cluster (upload_abandon_ms): the records are all that is left to remove.
    if (!(e instanceof ClientError && e.code === "upload_not_found")) throw e;
  }
  await deleteRecords(context.client, bucket, upload_id!);
  return new Response(null, { status: 204 });
}

export const multipart_handlers: ReadonlyMap<S3Operation, S3Handler> = new Map<S3Operation, S3Handler>([
  ["CreateMultipartUpload", s3Handler(createUpload)],
  ["UploadPart", s3Handler(uploadPart)],
  ["CompleteMultipartUpload", s3Handler(completeUpload)],
  ["AbortMultipartUpload", s3Handler(abortUpload)],
  ["ListParts", s3Handler(list_parts_handler)],
  ["ListMultipartUploads", s3Handler(list_uploads_handler)],
]);
