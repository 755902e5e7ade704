/**
 * Frame fuzzing for tests/fuzz_frames.test.ts: valid messages built with lib/net/codec.ts, then
 * mutated (bit flips, truncation, oversized or undersized size fields, wrong cluster, command,
 * sender, protocol or u64 fields with their checksums fixed up, plain garbage), sent over raw TCP
 * connections to one replica, one bad frame per connection (after 0-3 valid ones), so that the
 * replica's counters can be checked exactly: each invalid frame closes its connection and counts
 * once in frames_dropped_invalid; each connection closed in the middle of a frame counts once in
 * frames_truncated (docs/PROTOCOL.md §1.5, docs/DESIGN.md §7).
 */
import * as net from "node:net";
import { randomBytes } from "node:crypto";
import { Command, Offset, command_max, encode, finalize, Header } from "../../lib/net/codec.ts";
import { header_size, message_size_max, protocol_version, sender_client, view_headers_max } from "../../lib/constants.ts";
import { Condition, Operation, encodeKeyRequest, encodeListRequest } from "../../lib/store/operations.ts";
import { FrameReader } from "../../lib/net/frame_reader.ts";
import { checksum } from "../../lib/util/checksum.ts";
import type { Prng } from "../../lib/util/prng.ts";
import { replica_commands } from "../../sim/forger.ts";

const encoder = new TextEncoder();

export type Role = "peer" | "client";

/** What one connection is expected to do to the replica's counters. */
export type Expect = "invalid" | "truncated";

export interface FuzzCase {
  role: Role;
  kind: string;
  /** Frames in the case: the good ones and the bad one. */
  frames: number;
  /** Written in order (each element one write; a frame may be split over several). */
  writes: Uint8Array[];
  expect: Expect;
}

export interface FuzzTarget {
  cluster: bigint;
  replica_count: number;
  /** The view to put in peer messages (the target's current view, or 0). */
  view: number;
}

/** Recomputes the body checksum and then the header checksum of an encoded frame in place
 * (docs/PROTOCOL.md §2.3), so that a deliberately wrong field still passes the checksum checks. */
export function reseal(frame: Uint8Array): Uint8Array {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.length);
  view.setBigUint64(Offset.checksum_body, checksum(frame.subarray(header_size)), true);
  view.setBigUint64(Offset.checksum, checksum(frame.subarray(8, header_size)), true);
  return frame;
}

function randomBody(prng: Prng, max: number): Uint8Array<ArrayBuffer> {
  const body = new Uint8Array(prng.int(max + 1));
  for (let i = 0; i < body.length; i++) body[i] = prng.int(256);
  return body;
}

function randomKey(prng: Prng): Uint8Array {
  return encoder.encode(`fuzz/${prng.int(1000)}`);
}

/** A valid client request (register, put, get, delete, list, stat) for the cluster. */
export function clientRequest(prng: Prng, target: FuzzTarget): Uint8Array {
  const h = new Header();
  h.command = Command.request;
  h.cluster = target.cluster;
  h.replica = sender_client;
  h.client = randomBytes(8).readBigUInt64LE(0);
  h.request = 1 + prng.int(1000);
  h.session = prng.int(3);
  const op = prng.pick([Operation.register, Operation.put, Operation.get, Operation.delete, Operation.list, Operation.stat]);
  h.operation = op;
  let body: Uint8Array = new Uint8Array(0);
  if (op === Operation.put)
    body = encodeKeyRequest(randomKey(prng), randomBody(prng, prng.chance(0.05) ? 200_000 : 2000), Condition.none, 0);
  else if (op === Operation.get || op === Operation.delete || op === Operation.stat) body = encodeKeyRequest(randomKey(prng), null);
  else if (op === Operation.list) body = encodeListRequest(encoder.encode("fuzz/"), new Uint8Array(0), 1 + prng.int(100));
  return encode(finalize(h, body));
}

/** The replica commands the frame fuzzer mutates (all but the value and block repair pairs). */
const repair_commands = [Command.request_value, Command.value, Command.request_block, Command.block];
const peer_commands = replica_commands.filter((c) => !repair_commands.includes(c));

/** A valid peer message from a replica index in range (not necessarily meaningful). */
export function peerMessage(prng: Prng, target: FuzzTarget, command = prng.pick(peer_commands)): Uint8Array {
  const h = new Header();
  h.command = command;
  h.cluster = target.cluster;
  h.replica = prng.int(target.replica_count);
  h.replica_count = target.replica_count;
  h.view = target.view;
  h.op = prng.int(1_000_000);
  h.commit = prng.int(h.op + 1);
  h.context = prng.u64();
  h.parent = prng.u64();
  let body = new Uint8Array(0);
  if (command === Command.prepare || command === Command.sync_chunk) body = randomBody(prng, 4096);
  if (command === Command.headers || command === Command.start_view) body = randomBody(prng, 128 * view_headers_max);
  if (command === Command.do_view_change) body = randomBody(prng, 128 * 8 + 8);
  return encode(finalize(h, body));
}

/** A harmless valid frame to send before the bad one: a ping as a peer, a get as a client. */
function harmless(prng: Prng, role: Role, target: FuzzTarget): Uint8Array {
  if (role === "client") {
    const h = new Header();
    h.command = Command.request;
    h.cluster = target.cluster;
    h.replica = sender_client;
    h.client = randomBytes(8).readBigUInt64LE(0);
    h.request = 1;
    h.operation = Operation.get;
    return encode(finalize(h, encodeKeyRequest(randomKey(prng), null)));
  }
  return peerMessage(prng, target, Command.ping);
}

function baseFrame(prng: Prng, role: Role, target: FuzzTarget): Uint8Array {
  return role === "client" ? clientRequest(prng, target) : peerMessage(prng, target);
}

type Mutation = (frame: Uint8Array, prng: Prng, target: FuzzTarget) => { bytes: Uint8Array; expect: Expect };

/** The mutations, by name. Each returns the bytes to send and what the replica must count. */
export const mutations: Record<string, Mutation> = {
  bitflip: (frame, prng) => {
    const bytes = frame.slice();
    const flips = 1 + prng.int(4);
    for (let i = 0; i < flips; i++) {
      const at = prng.int(bytes.length);
      bytes[at]! ^= 1 << prng.int(8);
    }
    // A flip that lands twice on the same bit undoes itself: make sure something changed.
    if (Buffer.compare(Buffer.from(bytes), Buffer.from(frame)) === 0) bytes[0]! ^= 1;
    return { bytes, expect: "invalid" };
  },
  truncated: (frame, prng) => ({ bytes: frame.slice(0, 1 + prng.int(frame.length - 1)), expect: "truncated" }),
  oversized: (frame, prng) => {
    const bytes = frame.slice(0, header_size);
    const size = prng.chance(0.5)
      ? message_size_max + 1 + prng.int(1000)
      : message_size_max + 1 + prng.int(0xffffffff - message_size_max - 1);
    new DataView(bytes.buffer).setUint32(Offset.size, size, true);
    return { bytes: reseal(bytes), expect: "invalid" };
  },
  undersized: (frame, prng) => {
    const bytes = frame.slice(0, header_size);
    new DataView(bytes.buffer).setUint32(Offset.size, prng.int(header_size), true);
    return { bytes: reseal(bytes), expect: "invalid" };
  },
  size_mismatch: (frame, prng) => {
    // The size field claims fewer bytes than the body: the body checksum no longer matches.
    if (frame.length <= header_size + 8) return mutations.bitflip!(frame, prng, { cluster: 0n, replica_count: 0, view: 0 });
    const bytes = frame.slice();
    const body = bytes.subarray(header_size);
    const view = new DataView(bytes.buffer);
    view.setBigUint64(Offset.checksum_body, checksum(body), true);
    view.setUint32(Offset.size, header_size + body.length - 8, true);
    view.setBigUint64(Offset.checksum, checksum(bytes.subarray(8, header_size)), true);
    return { bytes, expect: "invalid" };
  },
  wrong_cluster: (frame, prng) => {
    const bytes = frame.slice();
    new DataView(bytes.buffer).setBigUint64(Offset.cluster, prng.u64(), true);
    return { bytes: reseal(bytes), expect: "invalid" };
  },
  bad_command: (frame, prng) => {
    const bytes = frame.slice();
    bytes[Offset.command] = prng.chance(0.2) ? 0 : command_max + 1 + prng.int(255 - command_max);
    return { bytes: reseal(bytes), expect: "invalid" };
  },
  bad_sender: (frame, prng, target) => {
    const bytes = frame.slice();
    bytes[Offset.replica] = target.replica_count + prng.int(sender_client - target.replica_count);
    return { bytes: reseal(bytes), expect: "invalid" };
  },
  bad_protocol: (frame, prng) => {
    const bytes = frame.slice();
    new DataView(bytes.buffer).setUint16(Offset.protocol, protocol_version + 1 + prng.int(1000), true);
    return { bytes: reseal(bytes), expect: "invalid" };
  },
  u64_over_2_53: (frame, prng) => {
    const bytes = frame.slice();
    const field = prng.pick([Offset.op, Offset.commit, Offset.timestamp, Offset.checkpoint_op, Offset.session]);
    new DataView(bytes.buffer).setBigUint64(field, (1n << 53n) + (prng.u64() >> 12n), true);
    return { bytes: reseal(bytes), expect: "invalid" };
  },
  garbage: (_frame, prng) => {
    const bytes = randomBody(prng, 4096);
    if (bytes.length === 0) return { bytes: new Uint8Array([1]), expect: "truncated" };
    return { bytes, expect: bytes.length < header_size ? "truncated" : "invalid" };
  },
};

/** One connection's worth: 0-3 harmless valid frames, then one mutated frame, written whole,
 * coalesced, or dribbled in small pieces. */
export function fuzzCase(prng: Prng, role: Role, target: FuzzTarget): FuzzCase {
  const kind = prng.pick(Object.keys(mutations));
  const { bytes, expect } = mutations[kind]!(baseFrame(prng, role, target), prng, target);
  const frames: Uint8Array[] = [];
  for (let i = prng.int(4); i > 0; i--) frames.push(harmless(prng, role, target));
  frames.push(bytes);
  const style = prng.int(3);
  let writes: Uint8Array[];
  if (style === 0) writes = frames;
  else if (style === 1) writes = [Buffer.concat(frames)];
  else {
    const all = Buffer.concat(frames);
    writes = [];
    for (let at = 0; at < all.length;) {
      const n = 1 + prng.int(Math.min(300, all.length - at));
      writes.push(all.subarray(at, at + n));
      at += n;
    }
  }
  return { role, kind, frames: frames.length, writes, expect };
}

/**
 * Sends a case over a new connection and waits until the replica has dealt with it: for an
 * invalid frame, until the replica closes the connection; for a truncated one, the fuzzer ends
 * the connection and waits until it is closed. Resolves with what happened; never rejects.
 */
export function sendCase(port: number, c: FuzzCase, timeout_ms = 5000): Promise<"closed" | "timeout" | "refused"> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    let connected = false;
    const timer = setTimeout(() => finish("timeout"), timeout_ms);
    const finish = (how: "closed" | "timeout" | "refused") => {
      clearTimeout(timer);
      socket.destroy();
      resolve(how);
    };
    socket.on("error", () => {}); // a reset from the replica is the expected answer
    socket.on("close", () => finish(connected ? "closed" : "refused"));
    socket.on("data", () => {}); // replies to valid requests: not looked at here
    socket.on("connect", async () => {
      connected = true;
      for (const chunk of c.writes) {
        if (socket.destroyed) return;
        socket.write(chunk);
        if (c.writes.length > 1) await new Promise((r) => setImmediate(r));
      }
      if (c.expect === "truncated") socket.end();
    });
  });
}

/**
 * Sends `total` fuzz cases, `parallel` connections at a time, round robin over the replicas (even
 * case numbers as a peer, odd as a client). `seen` is told of each case before it is sent. Resolves
 * with how many connections ended each way (sendCase).
 */
export async function fuzzConnections(
  replicas: readonly { index: number; port: number }[],
  prng: Prng,
  target: FuzzTarget,
  total: number,
  parallel: number,
  seen: (c: FuzzCase, replica: number) => void = () => {},
): Promise<Map<string, number>> {
  const outcomes = new Map<string, number>();
  let sent = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (sent < total) {
        const n = sent++;
        const r = replicas[n % replicas.length]!;
        const c = fuzzCase(prng, n % 2 === 0 ? "peer" : "client", target);
        seen(c, r.index);
        const outcome = await sendCase(r.port, c);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    }),
  );
  return outcomes;
}

/**
 * Well-formed requests (valid frames) with malformed contents: unknown operations, random bodies,
 * bad key sizes, conditions an operation does not take. Every one must be answered with an error
 * reply (docs/PROTOCOL.md §1.5: a client request is never silently dropped for being well-formed
 * but invalid). Sent over one connection; resolves with the replies' results by request number.
 */
export async function malformedRequests(
  port: number,
  prng: Prng,
  target: FuzzTarget,
  count: number,
  timeout_ms = 10_000,
): Promise<{ sent: number; results: Map<number, number> }> {
  const client = randomBytes(8).readBigUInt64LE(0);
  const frames: Uint8Array[] = [];
  for (let request = 1; request <= count; request++) {
    const h = new Header();
    h.command = Command.request;
    h.cluster = target.cluster;
    h.replica = sender_client;
    h.client = client;
    h.request = request;
    h.session = prng.int(3);
    const roll = prng.int(5);
    let body: Uint8Array;
    if (roll === 0) {
      h.operation = prng.chance(0.3) ? 0 : 7 + prng.int(249); // unknown operation
      body = randomBody(prng, 64);
    } else if (roll === 1) {
      h.operation = prng.pick([Operation.get, Operation.stat, Operation.delete, Operation.list, Operation.register]);
      // A body that does not parse (never empty: an empty body is a valid register).
      do body = randomBody(prng, 64);
      while (body.length === 0);
    } else if (roll === 2) {
      h.operation = prng.pick([Operation.get, Operation.stat, Operation.put]);
      body = encodeKeyRequest(new Uint8Array(0), null); // empty key
    } else if (roll === 3) {
      h.operation = prng.pick([Operation.get, Operation.stat]);
      body = encodeKeyRequest(randomKey(prng), null, Condition.if_version, 1); // a condition a read does not take
    } else {
      h.operation = Operation.list;
      body = encodeListRequest(new Uint8Array(0), new Uint8Array(0), 1);
      new DataView(body.buffer).setUint32(4, prng.chance(0.5) ? 0 : 1001 + prng.int(100000), true); // limit out of range
    }
    frames.push(encode(finalize(h, body)));
  }
  const results = new Map<number, number>();
  const reader = new FrameReader({ cluster: target.cluster });
  await new Promise<void>((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    const timer = setTimeout(done, timeout_ms);
    function done(): void {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    }
    socket.on("error", done);
    socket.on("close", done);
    socket.on("connect", () => socket.write(Buffer.concat(frames)));
    socket.on("data", (chunk: Buffer) => {
      try {
        reader.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
        for (let m = reader.next(); m !== null; m = reader.next()) {
          if (m.header.command === Command.reply && m.header.client === client) results.set(m.header.request, m.header.result);
        }
      } catch {
        done();
        return;
      }
      if (results.size === count) done();
    });
  });
  return { sent: count, results };
}

/** Peer messages a forger could send without being a Byzantine replica (questions, and messages
 * whose bodies the replica must parse and reject), for the valid-frame, malformed-body phase. */
const parsed_body_commands = [
  Command.start_view,
  Command.headers,
  Command.do_view_change,
  Command.sync_chunk,
  Command.value,
  Command.request_value,
  Command.block,
  Command.request_block,
  Command.request_headers,
  Command.request_prepare,
  Command.request_sync,
  Command.request_start_view,
  Command.ping,
  Command.pong,
];

/**
 * Valid frames (checksums right, sender in range, the cluster's view) whose bodies are garbage or
 * whose fields make no sense, over one connection. None is invalid as a frame, so the connection
 * must stay open; the replica must drop each message it cannot use, and stay up. Resolves with
 * whether the replica closed the connection, and whether it answered the status request sent
 * after them all.
 */
export async function malformedPeerMessages(
  port: number,
  prng: Prng,
  target: FuzzTarget,
  count: number,
  self: number,
): Promise<{ closed_by_replica: boolean; answered: boolean }> {
  const frames: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const command = prng.pick(parsed_body_commands);
    const h = new Header();
    h.command = command;
    h.cluster = target.cluster;
    let sender = prng.int(target.replica_count - 1);
    if (sender >= self) sender += 1;
    h.replica = sender;
    h.replica_count = target.replica_count;
    h.view = target.view;
    h.log_view = prng.chance(0.5) ? target.view : prng.int(target.view + 1);
    h.op = prng.int(100_000);
    h.commit = prng.int(h.op + 1);
    h.request = prng.int(300);
    h.operation = prng.int(4);
    h.result = prng.int(2);
    h.context = prng.u64();
    h.checkpoint_op = prng.int(h.op + 1);
    h.checkpoint_digest = prng.u64();
    const shape = prng.int(4);
    const body =
      shape === 0
        ? new Uint8Array(0)
        : shape === 1
          ? randomBody(prng, 64)
          : shape === 2
            ? randomBody(prng, 128 * view_headers_max + 64)
            : new Uint8Array(128 * (1 + prng.int(8)));
    frames.push(encode(finalize(h, body)));
  }
  // Then a status request on the same connection: its answer proves the replica read everything
  // before it and kept the connection open (docs/PROTOCOL.md §1.1: replies go to the connection
  // the request came in on).
  const barrier = new Header();
  barrier.command = Command.request_status;
  barrier.cluster = target.cluster;
  barrier.replica = sender_client;
  barrier.client = randomBytes(8).readBigUInt64LE(0);
  frames.push(encode(finalize(barrier)));
  const reader = new FrameReader({ cluster: target.cluster });
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    let done = false;
    const finish = (closed_by_replica: boolean, answered: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ closed_by_replica, answered });
    };
    const timer = setTimeout(() => finish(false, false), 20_000);
    socket.on("error", () => finish(true, false));
    socket.on("close", () => finish(true, false));
    socket.on("connect", () => socket.write(Buffer.concat(frames)));
    socket.on("data", (chunk: Buffer) => {
      try {
        reader.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
        for (let m = reader.next(); m !== null; m = reader.next()) {
          if (m.header.command === Command.status && m.header.client === barrier.client) finish(false, true);
        }
      } catch {
        finish(true, false);
      }
    });
  });
}

export { forgedReplicaMessage as forgedPeerMessage, type ForgeTarget } from "../../sim/forger.ts";
