/**
 * A prepare's body: the batch of client requests it orders (docs/PROTOCOL.md §Prepare).
 *   u32 count, u32 reserved; then per request, 8-aligned:
 *   u64 client, u64 session, u32 request, u8 operation, u8[3] reserved, u32 size, u32 reserved,
 *   then size bytes of request body, zero-padded to a multiple of 8.
 */
import { assert } from "../util/assert.ts";

export const batch_header_size = 8;
export const batch_entry_header_size = 32;

export interface BatchEntry {
  client: bigint;
  session: number;
  request: number;
  operation: number;
  body: Uint8Array;
  /** Offset of body within the batch (so a value can be located inside the journaled prepare). */
  body_offset: number;
}

function padded(n: number): number {
  return (n + 7) & ~7;
}

export function batchEntrySize(body_size: number): number {
  return batch_entry_header_size + padded(body_size);
}

export function encodeBatch(entries: { client: bigint; session: number; request: number; operation: number; body: Uint8Array }[]): Uint8Array {
  let size = batch_header_size;
  for (const e of entries) size += batchEntrySize(e.body.length);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, entries.length, true);
  let offset = batch_header_size;
  for (const e of entries) {
    v.setBigUint64(offset, e.client, true);
    v.setFloat64(offset + 8, 0, true);
    v.setUint32(offset + 8, e.session >>> 0, true);
    v.setUint32(offset + 12, Math.floor(e.session / 2 ** 32), true);
    v.setUint32(offset + 16, e.request, true);
    v.setUint8(offset + 20, e.operation);
    v.setUint32(offset + 24, e.body.length, true);
    out.set(e.body, offset + batch_entry_header_size);
    offset += batchEntrySize(e.body.length);
  }
  assert(offset === size, "batch size mismatch");
  return out;
}

/** Decodes a batch. Prepares are checksummed and built by a primary, so a malformed batch is a
 * bug or corruption that passed a 64-bit checksum: null, and the caller treats the prepare as bad. */
export function decodeBatch(body: Uint8Array): BatchEntry[] | null {
  if (body.length < batch_header_size) return null;
  const v = new DataView(body.buffer, body.byteOffset, body.length);
  const count = v.getUint32(0, true);
  const entries: BatchEntry[] = [];
  let offset = batch_header_size;
  for (let i = 0; i < count; i++) {
    if (offset + batch_entry_header_size > body.length) return null;
    const size = v.getUint32(offset + 24, true);
    const body_offset = offset + batch_entry_header_size;
    if (body_offset + size > body.length) return null;
    entries.push({
      client: v.getBigUint64(offset, true),
      session: v.getUint32(offset + 8, true) + v.getUint32(offset + 12, true) * 2 ** 32,
      request: v.getUint32(offset + 16, true),
      operation: v.getUint8(offset + 20),
      body: body.subarray(body_offset, body_offset + size),
      body_offset,
    });
    offset += batchEntrySize(size);
  }
  if (offset !== body.length) return null;
  return entries;
}
