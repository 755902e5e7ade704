/**
 * The fixed-layout binary message codec (docs/PROTOCOL.md). Every message is a 128-byte header
 * followed by a body. Both parts are checksummed, so a receiver can trust the header before it
 * reads the body, and a prepare's header checksum identifies the whole prepare (it covers the body
 * checksum). Pure: no I/O, so the replica, the simulator and the TCP transport share it.
 */
import { assert } from "../util/assert.ts";
import { checksum, checksumOfBody } from "../util/checksum.ts";
import { header_size, message_size_max, protocol_version, replicas_max, sender_client, wire_magic } from "../constants.ts";

export enum Command {
  ping = 1,
  pong = 2,
  request = 3,
  prepare = 4,
  prepare_ok = 5,
  reply = 6,
  commit = 7,
  commit_ok = 8,
  start_view_change = 9,
  do_view_change = 10,
  start_view = 11,
  request_start_view = 12,
  request_headers = 13,
  headers = 14,
  request_prepare = 15,
  request_sync = 16,
  sync_chunk = 17,
  /** A client (toastyfs status) asks one replica about itself; answered by the node, not by VSR. */
  request_status = 18,
  status = 19,
  /** A replica whose copy of a value is damaged asks a peer for it by key, version and checksum. */
  request_value = 20,
  value = 21,
  /** A replica whose copy of a block is damaged asks a peer for it by block id and checksum. */
  request_block = 22,
  block = 23,
  /** A client (toastyfs snapshot save) asks any replica for part of a retained checkpoint. */
  request_snapshot = 24,
  snapshot_chunk = 25,
}
export const command_max = 25;

/** The commands a client sends (sender 255, docs/PROTOCOL.md §1.1, §6.5): the only ones a client's
 * connection may carry, and the ones that teach a replica where to answer that client. */
export function isClientCommand(command: number): boolean {
  return command === Command.request || command === Command.request_status || command === Command.request_snapshot;
}

/** Byte offsets of the header fields. u64 fields sit at 8-aligned offsets. */
export const Offset = {
  checksum: 0,
  checksum_body: 8,
  cluster: 16,
  parent: 24,
  client: 32,
  context: 40,
  op: 48,
  commit: 56,
  timestamp: 64,
  checkpoint_digest: 72,
  checkpoint_op: 80,
  magic: 88,
  size: 92,
  view: 96,
  log_view: 100,
  request: 104,
  incarnation: 108,
  protocol: 112,
  command: 114,
  replica: 115,
  operation: 116,
  result: 117,
  replica_count: 118,
  reserved: 119,
  session: 120,
} as const;

/**
 * One header layout for every command; each command uses the fields docs/PROTOCOL.md lists for it
 * and leaves the others zero (lib/vsr/messages.ts gives them their per-command names). u64 identifiers are bigints; op numbers, commits and timestamps are
 * u64 on the wire but stay below 2^53, so they are numbers here.
 */
export class Header {
  checksum = 0n;
  checksum_body = 0n;
  cluster = 0n;
  parent = 0n;
  client = 0n;
  context = 0n;
  op = 0;
  commit = 0;
  timestamp = 0;
  checkpoint_digest = 0n;
  checkpoint_op = 0;
  size = header_size;
  view = 0;
  log_view = 0;
  request = 0;
  /** The cluster incarnation: chosen at random when the cluster forms (docs/PROTOCOL.md §4.1). */
  incarnation = 0;
  command: Command = Command.ping;
  replica = 0;
  operation = 0;
  result = 0;
  replica_count = 0;
  session = 0;

  clone(): Header {
    return Object.assign(new Header(), this);
  }
}

export interface Message {
  header: Header;
  body: Uint8Array;
}

/** The body of every message without one (nothing can change a zero-length array), and its
 * checksum: most messages (pings, commits, prepare_oks) have none, and each was a fresh array and
 * a hash call. */
const empty_body = new Uint8Array(0);
const empty_body_checksum = checksum(empty_body);

// Headers are encoded and decoded through one scratch buffer with a long-lived DataView: making a
// DataView over each message's own bytes (which materializes its ArrayBuffer) cost more than the
// whole rest of the codec. Single-threaded, and no call re-enters another.
const scratch_bytes = new Uint8Array(header_size);
const scratch = new DataView(scratch_bytes.buffer);
/** The bytes the header checksum covers (everything after the checksum field). */
const scratch_checksummed = scratch_bytes.subarray(8);

function copyHeader(from: Uint8Array, offset: number): void {
  for (let i = 0; i < header_size; i++) scratch_bytes[i] = from[offset + i]!;
}

/** Sets size and both checksums; after this the header is immutable by convention. */
export function finalize(header: Header, body: Uint8Array = empty_body): Message {
  assert(
    header_size + body.length <= message_size_max,
    () => `message of ${header_size + body.length} bytes exceeds message_size_max ${message_size_max}`,
  );
  header.size = header_size + body.length;
  // A body kept for reuse (a cached get reply) was hashed once when it was kept.
  header.checksum_body = checksumOfBody(body);
  fillScratch(header);
  header.checksum = checksum(scratch_checksummed);
  return { header, body };
}

function setU64(view: DataView, offset: number, value: number): void {
  // Condition first: six of these per encoded header, and the message closure was made every time.
  if (!(Number.isSafeInteger(value) && value >= 0)) assert(false, `u64 field at ${offset} out of range: ${value}`);
  view.setUint32(offset, value >>> 0, true);
  view.setUint32(offset + 4, Math.floor(value / 2 ** 32), true);
}

function getU64(view: DataView, offset: number): number {
  const lo = view.getUint32(offset, true);
  const hi = view.getUint32(offset + 4, true);
  return hi * 2 ** 32 + lo;
}

/** Writes the header (including the checksum field as it stands) at buffer[offset..+128). */
export function writeHeader(header: Header, buffer: Uint8Array, offset: number): void {
  fillScratch(header);
  buffer.set(scratch_bytes, offset);
}

function fillScratch(header: Header): void {
  const v = scratch;
  v.setBigUint64(Offset.checksum, header.checksum, true);
  v.setBigUint64(Offset.checksum_body, header.checksum_body, true);
  v.setBigUint64(Offset.cluster, header.cluster, true);
  v.setBigUint64(Offset.parent, header.parent, true);
  v.setBigUint64(Offset.client, header.client, true);
  v.setBigUint64(Offset.context, header.context, true);
  setU64(v, Offset.op, header.op);
  setU64(v, Offset.commit, header.commit);
  setU64(v, Offset.timestamp, header.timestamp);
  v.setBigUint64(Offset.checkpoint_digest, header.checkpoint_digest, true);
  setU64(v, Offset.checkpoint_op, header.checkpoint_op);
  v.setUint32(Offset.magic, wire_magic, true);
  v.setUint32(Offset.size, header.size, true);
  v.setUint32(Offset.view, header.view, true);
  v.setUint32(Offset.log_view, header.log_view, true);
  v.setUint32(Offset.request, header.request, true);
  v.setUint32(Offset.incarnation, header.incarnation, true);
  v.setUint16(Offset.protocol, protocol_version, true);
  v.setUint8(Offset.command, header.command);
  v.setUint8(Offset.replica, header.replica);
  v.setUint8(Offset.operation, header.operation);
  v.setUint8(Offset.result, header.result);
  v.setUint8(Offset.replica_count, header.replica_count);
  v.setUint8(Offset.reserved, 0);
  setU64(v, Offset.session, header.session);
}

/** Encodes a finalized message into a new buffer. */
export function encode(message: Message): Uint8Array {
  const bytes = new Uint8Array(message.header.size);
  encodeInto(message, bytes, 0);
  return bytes;
}

/** Encodes a finalized message into buffer at offset (for coalesced socket writes). */
export function encodeInto(message: Message, buffer: Uint8Array, offset: number): number {
  assert(message.header.size === header_size + message.body.length, "encode: message not finalized");
  writeHeader(message.header, buffer, offset);
  buffer.set(message.body, offset + header_size);
  return message.header.size;
}

export type DecodeError =
  "short" | "magic" | "protocol" | "size" | "checksum_header" | "checksum_body" | "cluster" | "command" | "replica" | "field";

export type DecodeResult = { ok: true; message: Message } | { ok: false; error: DecodeError; detail: string };

/**
 * Decodes and validates one whole message. The body is copied, so the caller may reuse `bytes`.
 * cluster: the expected cluster id, or null to accept any (tools that inspect captured bytes;
 * replicas and clients always pass theirs, lib/net/address.ts).
 * owned: the caller hands `bytes` over (a buffer allocated for this one frame, never written
 * again): the body is then a view into it instead of a copy. For a 1 MiB prepare that copy, into
 * freshly allocated memory, was a large part of what a backup spent per put.
 */
export function decode(bytes: Uint8Array, cluster: bigint | null, owned = false): DecodeResult {
  if (bytes.length < header_size) return fail("short", `message of ${bytes.length} bytes is shorter than the ${header_size}-byte header`);
  copyHeader(bytes, 0);
  const v = scratch;
  const magic = v.getUint32(Offset.magic, true);
  if (magic !== wire_magic) return fail("magic", `bad magic 0x${magic.toString(16)}`);
  const protocol = v.getUint16(Offset.protocol, true);
  if (protocol !== protocol_version) return fail("protocol", `protocol version ${protocol}, this replica speaks ${protocol_version}`);
  const size = v.getUint32(Offset.size, true);
  if (size !== bytes.length || size > message_size_max)
    return fail("size", `header says ${size} bytes, frame has ${bytes.length} (max ${message_size_max})`);
  const header_checksum = checksum(scratch_checksummed);
  if (header_checksum !== v.getBigUint64(Offset.checksum, true)) return fail("checksum_header", "header checksum mismatch");
  const body = size === header_size ? empty_body : owned ? bytes.subarray(header_size, size) : bytes.slice(header_size, size);
  const body_checksum = body.length === 0 ? empty_body_checksum : checksum(body);
  if (body_checksum !== v.getBigUint64(Offset.checksum_body, true)) return fail("checksum_body", "body checksum mismatch");
  const h = readHeader(v);
  if (h === null) return fail("field", "a u64 field exceeds 2^53");
  if (cluster !== null && h.cluster !== cluster)
    return fail("cluster", `cluster ${h.cluster.toString(16)} is not this cluster ${cluster.toString(16)}`);
  if (h.command < 1 || h.command > command_max) return fail("command", `unknown command ${h.command}`);
  if (h.replica >= replicas_max && h.replica !== sender_client) return fail("replica", `sender ${h.replica} out of range`);
  return { ok: true, message: { header: h, body } };
}

function fail(error: DecodeError, detail: string): DecodeResult {
  return { ok: false, error, detail };
}

function readHeader(v: DataView): Header | null {
  const h = new Header();
  h.checksum = v.getBigUint64(Offset.checksum, true);
  h.checksum_body = v.getBigUint64(Offset.checksum_body, true);
  h.cluster = v.getBigUint64(Offset.cluster, true);
  h.parent = v.getBigUint64(Offset.parent, true);
  h.client = v.getBigUint64(Offset.client, true);
  h.context = v.getBigUint64(Offset.context, true);
  h.op = getU64(v, Offset.op);
  h.commit = getU64(v, Offset.commit);
  h.timestamp = getU64(v, Offset.timestamp);
  h.checkpoint_digest = v.getBigUint64(Offset.checkpoint_digest, true);
  h.checkpoint_op = getU64(v, Offset.checkpoint_op);
  h.session = getU64(v, Offset.session);
  // Spelled out (no array of the five to loop over): every decoded message and header comes here.
  if (
    !Number.isSafeInteger(h.op) ||
    !Number.isSafeInteger(h.commit) ||
    !Number.isSafeInteger(h.timestamp) ||
    !Number.isSafeInteger(h.checkpoint_op) ||
    !Number.isSafeInteger(h.session)
  )
    return null;
  h.size = v.getUint32(Offset.size, true);
  h.view = v.getUint32(Offset.view, true);
  h.log_view = v.getUint32(Offset.log_view, true);
  h.request = v.getUint32(Offset.request, true);
  h.incarnation = v.getUint32(Offset.incarnation, true);
  h.command = v.getUint8(Offset.command);
  h.replica = v.getUint8(Offset.replica);
  h.operation = v.getUint8(Offset.operation);
  h.result = v.getUint8(Offset.result);
  h.replica_count = v.getUint8(Offset.replica_count);
  return h;
}

/** Decodes a header stored on its own (journal header area, header lists in messages), verifying
 * its checksum. Returns null if it is damaged or blank. */
export function decodeHeader(bytes: Uint8Array, offset: number): Header | null {
  if (bytes.length < offset + header_size) return null;
  copyHeader(bytes, offset);
  const v = scratch;
  if (v.getUint32(Offset.magic, true) !== wire_magic) return null;
  if (checksum(scratch_checksummed) !== v.getBigUint64(Offset.checksum, true)) return null;
  return readHeader(v);
}
