/**
 * A prepare's body: the batch of client requests it orders (docs/PROTOCOL.md §Prepare).
 *   u32 count, u32 reserved; then per request, 8-aligned:
 *   u64 client, u64 session, u32 request, u8 operation, u8[3] reserved, u32 size, u32 reserved,
 *   then size bytes of request body, zero-padded to a multiple of 8.
 */
import { assert } from "../util/assert.ts";
import { allocUninitialized, readU32, readU64, readU64Big, writeU32, writeU64, writeU64Big } from "../util/bytes.ts";

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
  // The bit trick is 32-bit: a size past 2^31 would wrap negative and corrupt every offset after it.
  assert(Number.isSafeInteger(n) && n >= 0 && n < 2 ** 31 - 7, () => `batch size ${n} out of range`);
  return (n + 7) & ~7;
}

export function batchEntrySize(body_size: number): number {
  return batch_entry_header_size + padded(body_size);
}

export function encodeBatch(
  entries: { client: bigint; session: number; request: number; operation: number; body: Uint8Array }[],
): Uint8Array {
  let size = batch_header_size;
  for (const e of entries) size += batchEntrySize(e.body.length);
  // Not zero-filled up front (for a 1 MiB put that was a third of the cost of building the batch):
  // every byte is written below, reserved fields and padding as explicit zeros, so the prepare's
  // bytes (and checksum) stay a function of its requests alone.
  const out = allocUninitialized(size);
  writeU32(out, 0, entries.length);
  writeU32(out, 4, 0);
  let offset = batch_header_size;
  for (const e of entries) {
    // Each field must fit its wire slot exactly, or it would be truncated and read back as another request.
    assert(e.operation >= 0 && e.operation <= 0xff && Number.isInteger(e.operation), () => `batch operation ${e.operation}`);
    assert(e.request >= 0 && e.request <= 0xffffffff && Number.isInteger(e.request), () => `batch request ${e.request}`);
    assert(Number.isSafeInteger(e.session) && e.session >= 0, () => `batch session ${e.session}`);
    assert(e.client >= 0n && e.client < 1n << 64n, () => `batch client ${e.client}`);
    writeU64Big(out, offset, e.client);
    writeU64(out, offset + 8, e.session);
    writeU32(out, offset + 16, e.request);
    out[offset + 20] = e.operation;
    out[offset + 21] = 0;
    out[offset + 22] = 0;
    out[offset + 23] = 0;
    writeU32(out, offset + 24, e.body.length);
    writeU32(out, offset + 28, 0);
    out.set(e.body, offset + batch_entry_header_size);
    const end = offset + batchEntrySize(e.body.length);
    out.fill(0, offset + batch_entry_header_size + e.body.length, end);
    offset = end;
  }
  assert(offset === size, "batch size mismatch");
  return out;
}

/** Decodes a batch. Prepares are checksummed and built by a primary, so a malformed batch is a
 * bug or corruption that passed a 64-bit checksum: null, and the caller treats the prepare as bad. */
export function decodeBatch(body: Uint8Array): BatchEntry[] | null {
  if (body.length < batch_header_size) return null;
  const count = readU32(body, 0);
  const entries: BatchEntry[] = [];
  let offset = batch_header_size;
  for (let i = 0; i < count; i++) {
    if (offset + batch_entry_header_size > body.length) return null;
    const size = readU32(body, offset + 24);
    const body_offset = offset + batch_entry_header_size;
    if (body_offset + size > body.length) return null;
    entries.push({
      client: readU64Big(body, offset),
      session: readU64(body, offset + 8),
      request: readU32(body, offset + 16),
      operation: body[offset + 20]!,
      body: body.subarray(body_offset, body_offset + size),
      body_offset,
    });
    offset += batchEntrySize(size);
  }
  if (offset !== body.length) return null;
  // Values are located inside the journaled prepare by body_offset: each must point into the body, 8-aligned.
  assert(entries.length === count, "decoded batch count");
  for (const e of entries)
    assert(
      e.body_offset % 8 === 0 && e.body_offset + e.body.length <= body.length,
      () => `batch entry at ${e.body_offset} outside the body`,
    );
  return entries;
}
