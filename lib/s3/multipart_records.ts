/**
 * The gateway's records of multipart uploads (docs/S3.md §2, §4): one upload record per S3 upload
 * under `.s3/upload/B/U` and one part record per uploaded part under `.s3/part/U/NNNNN`, as
 * self-describing CBOR. Everything a gateway needs to continue an upload lives here, so any gateway
 * can take the next call. The S3 UploadId is the native upload id, ".", and a random tag that only
 * the upload record knows: an id cannot be guessed from another upload's.
 */
import { randomBytes } from "node:crypto";
import { Encoder } from "cbor-x";
import type { Client } from "../client/client.ts";
import { ClientError } from "../client/errors.ts";
import { uploadRecordKey } from "./names.ts";
import { S3Error } from "./s3_error.ts";

const cbor = new Encoder({ useRecords: false, tagUint8Array: false });

/** Hex digits of the random tag in an UploadId (64 bits). */
export const upload_tag_hex_digits = 16;

export interface UploadRecord {
  /** The S3 object key, as the client named it. */
  key: string;
  created_ms: number;
  /** The native upload (Client.openUpload). */
  native_id: number;
  /** The block size create_upload answered; a part is cut into blocks of it. */
  block_size_max: number;
  content_type: string;
  /** x-amz-meta-* names (lowercase) and values (the header's bytes), in the order given. */
  meta: [string, Uint8Array][];
  tag: string;
  /** The access key that created it (ListParts and ListMultipartUploads show it as Initiator). */
  initiator: string;
}

export interface PartRecord {
  /** The native attempt the part's blocks were sent with. */
  attempt: bigint;
  /** 0 for an empty part: it has no native blocks (multipart.ts says why). */
  block_count: number;
  size: number;
  /** partChecksum of the blocks, as complete_upload wants it. */
  part_checksum: bigint;
  md5: Uint8Array;
  last_modified_ms: number;
  /** The block checksums, u64 big-endian each: complete checks the cluster's manifest against them. */
  block_checksums: Uint8Array;
}

export function newUploadTag(): string {
  return randomBytes(upload_tag_hex_digits / 2).toString("hex");
}

export function formatUploadId(native_id: number, tag: string): string {
  return `${native_id}.${tag}`;
}

/** The native id and tag of an UploadId; anything malformed is an upload that does not exist. */
export function parseUploadId(upload_id: string | null): { native_id: number; tag: string } {
  const m = upload_id === null ? null : /^([1-9][0-9]{0,15})\.([0-9a-f]+)$/.exec(upload_id);
  const native_id = m === null ? NaN : Number(m[1]);
  if (m === null || !Number.isSafeInteger(native_id) || m[2]!.length !== upload_tag_hex_digits) throw noSuchUpload(upload_id ?? "");
  return { native_id, tag: m[2]! };
}

export function noSuchUpload(upload_id: string): S3Error {
  return new S3Error(
    "NoSuchUpload",
    "the upload does not exist: it was completed or aborted, or its id is wrong",
    new Map([["UploadId", upload_id]]),
  );
}

function u64Hex(n: bigint): string {
  return n.toString(16).padStart(16, "0");
}

function damaged(what: string): S3Error {
  return new S3Error("InternalError", `the gateway's ${what} record is damaged (not what a gateway writes)`);
}

export function encodeUploadRecord(r: UploadRecord): Uint8Array {
  return cbor.encode({ ...r });
}

export function decodeUploadRecord(bytes: Uint8Array): UploadRecord {
  const v: unknown = cbor.decode(bytes);
  if (typeof v !== "object" || v === null) throw damaged("upload");
  const r = v as Record<string, unknown>;
  const meta = r["meta"];
  const ok =
    typeof r["key"] === "string" &&
    Number.isSafeInteger(r["created_ms"]) &&
    Number.isSafeInteger(r["native_id"]) &&
    Number.isSafeInteger(r["block_size_max"]) &&
    typeof r["content_type"] === "string" &&
    typeof r["tag"] === "string" &&
    typeof r["initiator"] === "string" &&
    Array.isArray(meta) &&
    meta.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === "string" && e[1] instanceof Uint8Array);
  if (!ok) throw damaged("upload");
  return {
    key: r["key"] as string,
    created_ms: r["created_ms"] as number,
    native_id: r["native_id"] as number,
    block_size_max: r["block_size_max"] as number,
    content_type: r["content_type"] as string,
    meta: (meta as [string, Uint8Array][]).map(([name, value]) => [name, new Uint8Array(value)]),
    tag: r["tag"] as string,
    initiator: r["initiator"] as string,
  };
}

export function encodePartRecord(r: PartRecord): Uint8Array {
  return cbor.encode({
    attempt: u64Hex(r.attempt),
    block_count: r.block_count,
    size: r.size,
    part_checksum: u64Hex(r.part_checksum),
    md5: r.md5,
    last_modified_ms: r.last_modified_ms,
    block_checksums: r.block_checksums,
  });
}

export function decodePartRecord(bytes: Uint8Array): PartRecord {
  const v: unknown = cbor.decode(bytes);
  if (typeof v !== "object" || v === null) throw damaged("part");
  const r = v as Record<string, unknown>;
  const hex = (x: unknown): x is string => typeof x === "string" && /^[0-9a-f]{16}$/.test(x);
  const ok =
    hex(r["attempt"]) &&
    hex(r["part_checksum"]) &&
    Number.isSafeInteger(r["block_count"]) &&
    Number.isSafeInteger(r["size"]) &&
    Number.isSafeInteger(r["last_modified_ms"]) &&
    r["md5"] instanceof Uint8Array &&
    r["md5"].length === 16 &&
    r["block_checksums"] instanceof Uint8Array &&
    r["block_checksums"].length === 8 * (r["block_count"] as number);
  if (!ok) throw damaged("part");
  return {
    attempt: BigInt(`0x${r["attempt"] as string}`),
    block_count: r["block_count"] as number,
    size: r["size"] as number,
    part_checksum: BigInt(`0x${r["part_checksum"] as string}`),
    md5: new Uint8Array(r["md5"] as Uint8Array),
    last_modified_ms: r["last_modified_ms"] as number,
    block_checksums: new Uint8Array(r["block_checksums"] as Uint8Array),
  };
}

/** The block checksums as complete_upload's caller wants them. */
export function blockChecksumsOf(r: PartRecord): bigint[] {
  const view = new DataView(r.block_checksums.buffer, r.block_checksums.byteOffset, r.block_checksums.byteLength);
  const out: bigint[] = [];
  for (let i = 0; i < r.block_count; i++) out.push(view.getBigUint64(8 * i, false));
  return out;
}

export function packBlockChecksums(checksums: readonly bigint[]): Uint8Array {
  const out = new Uint8Array(8 * checksums.length);
  const view = new DataView(out.buffer);
  checksums.forEach((c, i) => view.setBigUint64(8 * i, c, false));
  return out;
}

/** The upload record an S3 call names: NoSuchUpload unless the id parses, its record exists in
 * this bucket and the record's tag and key are the ones the call names. */
export async function readUploadRecord(client: Client, bucket: string, key: string, upload_id: string | null): Promise<UploadRecord> {
  const { native_id, tag } = parseUploadId(upload_id);
  let bytes: Uint8Array;
  try {
    bytes = (await client.get(uploadRecordKey(bucket, upload_id!))).value;
  } catch (e) {
    if (e instanceof ClientError && e.code === "not_found") throw noSuchUpload(upload_id!);
    throw e;
  }
  const record = decodeUploadRecord(bytes);
  if (record.tag !== tag || record.native_id !== native_id || record.key !== key) throw noSuchUpload(upload_id!);
  return record;
}
