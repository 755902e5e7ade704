/**
 * Helpers for the lib/net tests: seeded messages, raw frame surgery, free ports, and waiting for a
 * condition (tests never sleep in place of a condition).
 */
import { header_size, sender_client } from "../constants.ts";
import { checksum } from "../util/checksum.ts";
import type { Prng } from "../util/prng.ts";
import { Command, Header, Offset, finalize, type Message } from "./codec.ts";

export const test_cluster = 0x7a57_0000_c0ff_ee01n;

export interface MessageFields {
  command?: Command;
  replica?: number;
  client?: bigint;
  op?: number;
  request?: number;
  cluster?: bigint;
}

/** A finalized message with the given fields and body. */
export function makeMessage(fields: MessageFields, body: Uint8Array = new Uint8Array(0)): Message {
  const h = new Header();
  h.cluster = fields.cluster ?? test_cluster;
  h.command = fields.command ?? Command.ping;
  h.replica = fields.replica ?? sender_client;
  h.client = fields.client ?? 0n;
  h.op = fields.op ?? 0;
  h.request = fields.request ?? 0;
  return finalize(h, body);
}

export function randomBytes(prng: Prng, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    const x = prng.u32();
    out[i] = x;
    out[i + 1] = x >>> 8;
    out[i + 2] = x >>> 16;
    out[i + 3] = x >>> 24;
  }
  for (; i < length; i++) out[i] = prng.int(256);
  return out;
}

/** A message with random header fields (within what the reader accepts) and a body of `size`. */
export function randomMessage(prng: Prng, body_size: number, replica_count = 3): Message {
  const h = new Header();
  h.cluster = test_cluster;
  h.command = prng.range(1, Command.sync_chunk);
  h.replica = prng.chance(0.3) ? sender_client : prng.int(replica_count);
  h.client = prng.u64();
  h.parent = prng.u64();
  h.op = prng.u32() * 1024 + prng.int(1024);
  h.commit = prng.u32();
  h.view = prng.u32();
  h.request = prng.u32();
  h.operation = prng.int(256);
  return finalize(h, randomBytes(prng, body_size));
}

/** Rewrites the header checksum of an encoded frame after its header bytes were edited. */
export function reseal(frame: Uint8Array): void {
  new DataView(frame.buffer, frame.byteOffset, frame.byteLength).setBigUint64(
    Offset.checksum,
    checksum(frame.subarray(8, header_size)),
    true,
  );
}

/** Sets a u32 header field of an encoded frame and reseals it (a frame a buggy or hostile peer
 * could send: every check before the field's own passes). */
export function withU32(frame: Uint8Array, offset: number, value: number): Uint8Array {
  const copy = frame.slice();
  new DataView(copy.buffer).setUint32(offset, value, true);
  reseal(copy);
  return copy;
}

export { concat } from "../util/bytes.ts";

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/**
 * Polls `condition` (which may also drive the test, e.g. send one more message) every `interval_ms`
 * until it holds; throws with `what` after `timeout_ms`.
 */
export async function waitFor(what: string, condition: () => boolean, timeout_ms = 5000, interval_ms = 5): Promise<void> {
  const deadline = performance.now() + timeout_ms;
  for (;;) {
    if (condition()) return;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeout_ms} ms waiting for: ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, interval_ms));
  }
}

/** Ports the OS reports free right now (bind to 0, read, release). Used where a peer's address must
 * be known before it listens (or while it does not). */
export function freePorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () => Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }));
  const ports = listeners.map((l) => l.port);
  for (const l of listeners) l.stop(true);
  return ports;
}
