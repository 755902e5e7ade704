import { describe, expect, test } from "bun:test";
import {
  Command,
  Header,
  Offset,
  command_max,
  decode,
  decodeHeader,
  encode,
  encodeInto,
  finalize,
  isClientCommand,
  writeHeader,
  type DecodeError,
  type Message,
} from "./codec.ts";
import { Prng } from "../util/prng.ts";
import { checksum } from "../util/checksum.ts";
import { AssertionError } from "../util/assert.ts";
import { header_size, protocol_version, replicas_max, sender_client, wire_magic } from "../constants.ts";

const all_commands: Command[] = [];
for (let c = 1; c <= command_max; c++) all_commands.push(c as Command);

/** A safe integer spread over the whole [0, 2^53) range (with the edges often). */
function u53(prng: Prng): number {
  switch (prng.int(8)) {
    case 0:
      return 0;
    case 1:
      return Number.MAX_SAFE_INTEGER;
    case 2:
      return prng.int(1000);
    default:
      return prng.u32() * 2 ** 21 + (prng.u32() >>> 11);
  }
}

function bytes(prng: Prng, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = prng.int(256);
  return out;
}

function randomHeader(prng: Prng, command: Command): Header {
  const h = new Header();
  h.command = command;
  h.cluster = prng.u64();
  h.parent = prng.u64();
  h.client = prng.u64();
  h.context = prng.u64();
  h.op = u53(prng);
  h.commit = u53(prng);
  h.timestamp = u53(prng);
  h.checkpoint_digest = prng.u64();
  h.checkpoint_op = u53(prng);
  h.view = prng.u32();
  h.log_view = prng.u32();
  h.request = prng.u32();
  h.incarnation = prng.u32();
  h.replica = prng.chance(0.2) ? sender_client : prng.int(replicas_max);
  h.operation = prng.int(256);
  h.result = prng.int(256);
  h.replica_count = prng.int(256);
  h.session = u53(prng);
  return h;
}

function randomMessage(prng: Prng, command: Command, body_max = 600): Message {
  const body = bytes(prng, prng.chance(0.2) ? 0 : prng.range(1, body_max));
  return finalize(randomHeader(prng, command), body);
}

/** Rewrites the header checksum of an encoded message after its header bytes were edited. */
function reseal(encoded: Uint8Array): void {
  new DataView(encoded.buffer, encoded.byteOffset).setBigUint64(Offset.checksum, checksum(encoded.subarray(8, header_size)), true);
}

function expectError(bytes: Uint8Array, cluster: bigint | null): DecodeError {
  const result = decode(bytes, cluster);
  expect(result.ok).toBe(false);
  return result.ok ? ("ok" as DecodeError) : result.error;
}

/** The error decode must report for a message whose byte `index` is damaged. */
function expectedErrorAt(index: number): DecodeError {
  if (index >= header_size) return "checksum_body";
  if (index >= Offset.magic && index < Offset.magic + 4) return "magic";
  if (index >= Offset.protocol && index < Offset.protocol + 2) return "protocol";
  if (index >= Offset.size && index < Offset.size + 4) return "size";
  return "checksum_header";
}

describe("codec round trips", () => {
  test("every command with random field values decodes to the same header and body", () => {
    const prng = new Prng(1);
    for (let round = 0; round < 40; round++) {
      for (const command of all_commands) {
        const message = randomMessage(prng, command);
        expect(message.header.size).toBe(header_size + message.body.length);
        const encoded = encode(message);
        expect(encoded.length).toBe(message.header.size);
        const decoded = decode(encoded, message.header.cluster);
        if (!decoded.ok) throw new Error(`decode failed: ${decoded.error} ${decoded.detail}`);
        expect(decoded.message.header).toEqual(message.header);
        expect(decoded.message.header).toBeInstanceOf(Header);
        expect(decoded.message.body).toEqual(message.body);
        // A client learning the cluster accepts any.
        expect(decode(encoded, null).ok).toBe(true);
        // decodeHeader reads the same header from the first 128 bytes alone.
        expect(decodeHeader(encoded, 0)).toEqual(message.header);
      }
    }
  });

  test("a message without a body is checked against the empty body's checksum", () => {
    const prng = new Prng(4);
    const message = finalize(randomHeader(prng, Command.commit));
    const encoded = encode(message);
    const decoded = decode(encoded, message.header.cluster);
    expect(decoded.ok && decoded.message.body.length).toBe(0);
    // A header that claims some other (non-empty) body, sealed as if valid: the body check refuses it.
    new DataView(encoded.buffer).setBigUint64(Offset.checksum_body, checksum(new Uint8Array([1])), true);
    reseal(encoded);
    expect(expectError(encoded, message.header.cluster)).toBe("checksum_body");
  });

  test("the wire layout is the documented one", () => {
    const prng = new Prng(2);
    const message = randomMessage(prng, Command.prepare);
    const encoded = encode(message);
    const v = new DataView(encoded.buffer);
    expect(v.getUint32(Offset.magic, true)).toBe(wire_magic);
    expect(v.getUint16(Offset.protocol, true)).toBe(protocol_version);
    expect(v.getUint32(Offset.size, true)).toBe(encoded.length);
    expect(v.getUint8(Offset.command)).toBe(Command.prepare);
    expect(v.getUint8(Offset.reserved)).toBe(0);
    expect(v.getBigUint64(Offset.cluster, true)).toBe(message.header.cluster);
    expect(v.getBigUint64(Offset.checksum_body, true)).toBe(checksum(message.body));
    expect(v.getBigUint64(Offset.checksum, true)).toBe(checksum(encoded.subarray(8, header_size)));
    const op = message.header.op;
    expect(v.getUint32(Offset.op, true) + v.getUint32(Offset.op + 4, true) * 2 ** 32).toBe(op);
    expect(encoded.subarray(header_size)).toEqual(message.body);
  });

  test("encodeInto writes at an offset of a shared buffer; messages decode from their slices", () => {
    const prng = new Prng(3);
    const messages = all_commands.map((c) => randomMessage(prng, c, 100));
    const total = messages.reduce((n, m) => n + m.header.size, 0);
    const buffer = new Uint8Array(total + 7);
    let offset = 7;
    for (const m of messages) offset += encodeInto(m, buffer, offset);
    expect(offset).toBe(buffer.length);
    offset = 7;
    for (const m of messages) {
      const decoded = decode(buffer.subarray(offset, offset + m.header.size), m.header.cluster);
      expect(decoded.ok).toBe(true);
      if (decoded.ok) {
        expect(decoded.message.header).toEqual(m.header);
        expect(decoded.message.body).toEqual(m.body);
      }
      expect(decodeHeader(buffer, offset)).toEqual(m.header);
      offset += m.header.size;
    }
  });

  test("decoded messages own their bytes: the caller may reuse the input buffer", () => {
    const prng = new Prng(4);
    const a = randomMessage(prng, Command.prepare, 50);
    const b = randomMessage(prng, Command.reply, 50);
    const buffer = encode(a);
    const first = decode(buffer, null);
    const second = decode(encode(b), null);
    buffer.fill(0xee);
    expect(first.ok && second.ok).toBe(true);
    if (first.ok && second.ok) {
      // Neither the reused input nor the codec's scratch space leaks into earlier results.
      expect(first.message.header).toEqual(a.header);
      expect(first.message.body).toEqual(a.body);
      expect(second.message.header).toEqual(b.header);
    }
  });

  test("the largest safe values of u64 number fields round trip", () => {
    const h = new Header();
    h.command = Command.commit;
    h.op = h.commit = h.timestamp = h.checkpoint_op = h.session = Number.MAX_SAFE_INTEGER;
    h.cluster = h.parent = h.client = h.context = h.checkpoint_digest = (1n << 64n) - 1n;
    h.view = h.log_view = h.request = h.incarnation = 2 ** 32 - 1;
    const m = finalize(h);
    const decoded = decode(encode(m), (1n << 64n) - 1n);
    expect(decoded.ok).toBe(true);
    if (decoded.ok) expect(decoded.message.header).toEqual(h);
  });

  test("finalize refuses a u64 number field that could not be decoded", () => {
    for (const field of ["op", "commit", "timestamp", "checkpoint_op", "session"] as const) {
      const h = new Header();
      h[field] = 2 ** 53;
      expect(() => finalize(h)).toThrow(AssertionError);
      h[field] = -1;
      expect(() => finalize(h)).toThrow(AssertionError);
    }
  });

  test("writeHeader writes the header bytes exactly as encode does", () => {
    const prng = new Prng(5);
    const m = randomMessage(prng, Command.headers, 10);
    const out = new Uint8Array(header_size + 3);
    writeHeader(m.header, out, 3);
    expect(out.slice(3)).toEqual(encode(m).slice(0, header_size));
  });
});

describe("codec rejects damaged messages", () => {
  test("every single-bit flip is rejected, with the error of the field it hit", () => {
    const prng = new Prng(10);
    for (const body_size of [0, 1, 37]) {
      for (const command of [Command.prepare, Command.request, Command.reply]) {
        const h = randomHeader(prng, command);
        const message = finalize(h, bytes(prng, body_size));
        const encoded = encode(message);
        for (let bit = 0; bit < encoded.length * 8; bit++) {
          const damaged = encoded.slice();
          damaged[bit >> 3]! ^= 1 << (bit & 7);
          expect(expectError(damaged, h.cluster)).toBe(expectedErrorAt(bit >> 3));
          expect(expectError(damaged, null)).toBe(expectedErrorAt(bit >> 3));
        }
      }
    }
  });

  test("truncated and extended frames are rejected", () => {
    const prng = new Prng(11);
    const message = randomMessage(prng, Command.prepare, 300);
    const encoded = encode(message);
    for (let length = 0; length < encoded.length; length++) {
      expect(expectError(encoded.subarray(0, length), null)).toBe(length < header_size ? "short" : "size");
    }
    for (let extra = 1; extra <= 16; extra++) {
      const longer = new Uint8Array(encoded.length + extra);
      longer.set(encoded);
      expect(expectError(longer, null)).toBe("size");
    }
  });

  test("a message of another cluster is rejected", () => {
    const prng = new Prng(12);
    for (let i = 0; i < 50; i++) {
      const message = randomMessage(prng, prng.pick(all_commands));
      const encoded = encode(message);
      const other = message.header.cluster ^ (1n << BigInt(prng.int(64)));
      expect(expectError(encoded, other)).toBe("cluster");
      expect(decode(encoded, message.header.cluster).ok).toBe(true);
    }
  });

  test("unknown commands and sender ids out of range are rejected", () => {
    for (const command of [0, command_max + 1, 255]) {
      const h = new Header();
      h.command = command as Command;
      expect(expectError(encode(finalize(h)), 0n)).toBe("command");
    }
    for (let replica = 0; replica < 256; replica++) {
      const h = new Header();
      h.command = Command.ping;
      h.replica = replica;
      const ok = replica < replicas_max || replica === sender_client;
      const result = decode(encode(finalize(h)), 0n);
      expect(result.ok).toBe(ok);
      if (!result.ok) expect(result.error).toBe("replica");
    }
  });

  test("a u64 number field of 2^53 or more is rejected even with valid checksums", () => {
    const fields = [Offset.op, Offset.commit, Offset.timestamp, Offset.checkpoint_op, Offset.session];
    for (const offset of fields) {
      for (const [hi, lo, ok] of [
        [2 ** 21 - 1, 2 ** 32 - 1, true], // 2^53 - 1
        [2 ** 21, 0, false], // 2^53
        [2 ** 32 - 1, 2 ** 32 - 1, false], // 2^64 - 1
      ] as const) {
        const h = new Header();
        h.command = Command.prepare;
        const encoded = encode(finalize(h, new Uint8Array(8)));
        const v = new DataView(encoded.buffer);
        v.setUint32(offset, lo, true);
        v.setUint32(offset + 4, hi, true);
        reseal(encoded);
        const result = decode(encoded, 0n);
        expect(result.ok).toBe(ok);
        if (!result.ok) expect(result.error).toBe("field");
        if (ok) expect(decodeHeader(encoded, 0)).not.toBeNull();
        else expect(decodeHeader(encoded, 0)).toBeNull();
      }
    }
  });

  test("a resealed header with another protocol version is rejected", () => {
    const encoded = encode(finalize(new Header()));
    new DataView(encoded.buffer).setUint16(Offset.protocol, protocol_version + 1, true);
    reseal(encoded);
    expect(expectError(encoded, 0n)).toBe("protocol");
  });
});

describe("decodeHeader", () => {
  test("every single-bit flip of a stored header gives null", () => {
    const prng = new Prng(20);
    for (let i = 0; i < 4; i++) {
      const message = randomMessage(prng, prng.pick(all_commands), 20);
      const stored = new Uint8Array(header_size * 2);
      writeHeader(message.header, stored, header_size);
      expect(decodeHeader(stored, header_size)).toEqual(message.header);
      for (let bit = 0; bit < header_size * 8; bit++) {
        const damaged = stored.slice();
        damaged[header_size + (bit >> 3)]! ^= 1 << (bit & 7);
        expect(decodeHeader(damaged, header_size)).toBeNull();
      }
    }
  });

  test("a blank or short header area gives null", () => {
    expect(decodeHeader(new Uint8Array(header_size), 0)).toBeNull();
    expect(decodeHeader(new Uint8Array(header_size * 3), header_size)).toBeNull();
    const encoded = encode(finalize(new Header()));
    expect(decodeHeader(encoded.subarray(0, header_size - 1), 0)).toBeNull();
    const padded = new Uint8Array(header_size + 10);
    padded.set(encoded, 10);
    expect(decodeHeader(padded, 10)).not.toBeNull();
    expect(decodeHeader(padded, 11)).toBeNull();
  });
});

test("a client's connection carries request, request_status and request_snapshot, and nothing else", () => {
  const allowed = Array.from({ length: command_max }, (_, i) => i + 1).filter(isClientCommand);
  expect(allowed).toEqual([Command.request, Command.request_status, Command.request_snapshot]);
});
