/**
 * ListParts and ListMultipartUploads (docs/S3.md §4), from the gateway's upload and part records.
 *
 * Known gap: the cluster aborts uploads untouched for upload_abandon_ms, and the gateway's records
 * of such an upload stay (they are listed, and AbortMultipartUpload removes them). There is no
 * cheap native probe for "does upload N exist" that changes nothing (a complete or a write_block
 * would), so neither list checks.
 */
import { uploads_open_max_ceiling } from "../constants.ts";
import { isoDate, requireBucket } from "./buckets.ts";
import { md5Etag } from "./etag.ts";
import { bucketOf, queryInteger, urlEncoder, writeOwner, s3XmlResponse } from "./handler_util.ts";
import { objectOf } from "./object_headers.ts";
import { decodePartRecord, decodeUploadRecord, readUploadRecord, type PartRecord, type UploadRecord } from "./multipart_records.ts";
import { partRecordKey, partRecordsPrefix, uploadRecordsPrefix } from "./names.ts";
import type { S3Context, S3Request } from "./request.ts";

/** S3's largest page of parts and of uploads. */
export const list_parts_max = 1000;
export const list_uploads_max = 1000;
/** Upload records read for one ListMultipartUploads (they are sorted by key, which only the
 * records hold): as many as the cluster can have open, so only leaked records can go unlisted. */
export const upload_records_read_max = uploads_open_max_ceiling;

const decoder = new TextDecoder();

export async function list_parts_handler(request: S3Request, context: S3Context): Promise<Response> {
  const { bucket, key } = objectOf(request);
  const upload_id = request.query.get("uploadId");
  const record = await readUploadRecord(context.client, bucket, key, upload_id);
  const max = queryInteger(request, "max-parts", 0, list_parts_max, list_parts_max);
  const marker = queryInteger(request, "part-number-marker", 0, Number.MAX_SAFE_INTEGER, 0);
  const encode = urlEncoder(request);
  const page =
    max === 0 || marker >= 10_000
      ? { entries: [], truncated: false }
      : await context.client.list(partRecordsPrefix(upload_id!), { after: partRecordKey(upload_id!, marker), limit: max });
  const parts: { number: number; record: PartRecord }[] = [];
  for (const entry of page.entries) {
    const number = Number(decoder.decode(entry.key).slice(-5));
    parts.push({ number, record: decodePartRecord((await context.client.get(entry.key)).value) });
  }
  const last = parts[parts.length - 1];
  return s3XmlResponse("ListPartsResult", (w) => {
    w.leaf("Bucket", bucket);
    w.leaf("Key", encode(key));
    w.leaf("UploadId", upload_id!);
    writeOwner(w, "Initiator", record.initiator);
    writeOwner(w, "Owner", record.initiator);
    w.leaf("StorageClass", "STANDARD");
    w.leaf("PartNumberMarker", String(marker));
    w.leaf("NextPartNumberMarker", String(last?.number ?? marker));
    w.leaf("MaxParts", String(max));
    w.leaf("IsTruncated", String(page.truncated));
    if (request.query.has("encoding-type")) w.leaf("EncodingType", "url");
    for (const p of parts) {
      w.open("Part");
      w.leaf("PartNumber", String(p.number));
      w.leaf("LastModified", isoDate(p.record.last_modified_ms));
      w.leaf("ETag", md5Etag(p.record.md5));
      w.leaf("Size", String(p.record.size));
      w.close();
    }
  });
}

/** Keys in the cluster's order, of their UTF-8 bytes (not JavaScript's UTF-16 order). */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

interface Listed {
  upload_id: string;
  record: UploadRecord;
}

/** -1, 0 or 1: uploads in S3's order, by key, then by when they were initiated. */
function uploadOrder(a: Listed, b: Listed): number {
  if (a.record.key !== b.record.key) return byteOrder(a.record.key, b.record.key);
  if (a.record.created_ms !== b.record.created_ms) return a.record.created_ms - b.record.created_ms;
  return a.upload_id < b.upload_id ? -1 : a.upload_id > b.upload_id ? 1 : 0;
}

export async function list_uploads_handler(request: S3Request, context: S3Context): Promise<Response> {
  const bucket = bucketOf(request);
  await requireBucket(context, bucket);
  const max = queryInteger(request, "max-uploads", 0, list_uploads_max, list_uploads_max);
  const prefix = request.query.get("prefix") ?? "";
  const delimiter = request.query.get("delimiter") ?? "";
  const key_marker = request.query.get("key-marker") ?? "";
  const upload_id_marker = request.query.get("upload-id-marker") ?? "";
  const encode = urlEncoder(request);
  const records_prefix = uploadRecordsPrefix(bucket);
  const all: Listed[] = [];
  for await (const entry of context.client.listAll(records_prefix)) {
    if (all.length === upload_records_read_max) {
      context.log("warn", `bucket ${bucket} has more than ${upload_records_read_max} upload records: the rest are not listed`);
      break;
    }
    let value: Uint8Array;
    try {
      value = (await context.client.get(entry.key)).value;
    } catch {
      continue; // completed or aborted since it was listed
    }
    all.push({ upload_id: decoder.decode(entry.key.subarray(records_prefix.length)), record: decodeUploadRecord(value) });
  }
  all.sort(uploadOrder);
  // After the marker: keys after key-marker, and with upload-id-marker the uploads of key-marker
  // that come after that one.
  const marker_index = upload_id_marker === "" ? -1 : all.findIndex((u) => u.record.key === key_marker && u.upload_id === upload_id_marker);
  // A key-marker that is a common prefix (a NextKeyMarker) resumes after all the keys under it.
  const at = delimiter === "" || !key_marker.startsWith(prefix) ? -1 : key_marker.indexOf(delimiter, prefix.length);
  const marker_is_prefix = at >= 0 && at + delimiter.length === key_marker.length;
  const after = all.filter((u, i) => {
    if (!u.record.key.startsWith(prefix)) return false;
    if (key_marker === "") return true;
    if (marker_is_prefix && u.record.key.startsWith(key_marker)) return false;
    if (u.record.key === key_marker) return marker_index >= 0 && i > marker_index;
    return byteOrder(u.record.key, key_marker) > 0;
  });
  const uploads: Listed[] = [];
  const prefixes: string[] = [];
  let truncated = false;
  let last: { key: string; upload_id: string } | null = null;
  for (const u of after) {
    const rest = u.record.key.slice(prefix.length);
    const at = delimiter === "" ? -1 : rest.indexOf(delimiter);
    const common = at < 0 ? null : prefix + rest.slice(0, at + delimiter.length);
    if (common !== null && prefixes[prefixes.length - 1] === common) continue;
    if (uploads.length + prefixes.length === max) {
      truncated = true;
      break;
    }
    if (common !== null) {
      prefixes.push(common);
      last = { key: common, upload_id: "" };
    } else {
      uploads.push(u);
      last = { key: u.record.key, upload_id: u.upload_id };
    }
  }
  return s3XmlResponse("ListMultipartUploadsResult", (w) => {
    w.leaf("Bucket", bucket);
    w.leaf("KeyMarker", encode(key_marker));
    w.leaf("UploadIdMarker", upload_id_marker);
    w.leaf("NextKeyMarker", encode(last?.key ?? ""));
    w.leaf("NextUploadIdMarker", last?.upload_id ?? "");
    if (delimiter !== "") w.leaf("Delimiter", encode(delimiter));
    w.leaf("Prefix", encode(prefix));
    w.leaf("MaxUploads", String(max));
    w.leaf("IsTruncated", String(truncated));
    if (request.query.has("encoding-type")) w.leaf("EncodingType", "url");
    for (const u of uploads) {
      w.open("Upload");
      w.leaf("Key", encode(u.record.key));
      w.leaf("UploadId", u.upload_id);
      writeOwner(w, "Initiator", u.record.initiator);
      writeOwner(w, "Owner", u.record.initiator);
      w.leaf("StorageClass", "STANDARD");
      w.leaf("Initiated", isoDate(u.record.created_ms));
      w.close();
    }
    for (const p of prefixes) {
      w.open("CommonPrefixes");
      w.leaf("Prefix", encode(p));
      w.close();
    }
  });
}
