import { describe, expect, test } from "bun:test";
import { header_size, message_size_max, protocol_version, sender_client } from "../constants.ts";
import { Prng } from "../util/prng.ts";
import { Offset, encode, type Message } from "./codec.ts";
import { FrameError, FrameReader, reader_buffer_size_initial, type FrameErrorCode } from "./frame_reader.ts";
import { concat, makeMessage, randomBytes, randomMessage, reseal, sameBytes, test_cluster, withU32 } from "./test_support.ts";

/** Pushes each chunk and collects every message; rethrows FrameError. */
function readAll(reader: FrameReader, chunks: Iterable<Uint8Array>): Message[] {
  const out: Message[] = [];
  for (const chunk of chunks) {
    reader.push(chunk);
    for (let m = reader.next(); m !== null; m = reader.next()) out.push(m);
  }
  return out;
}

function errorOf(reader: FrameReader, chunks: Iterable<Uint8Array>): FrameError {
  try {
    readAll(reader, chunks);
  } catch (error) {
    if (error instanceof FrameError) return error;
    throw error;
  }
  throw new Error("expected a FrameError, but every frame was accepted");
}

/** Cuts `stream` into chunks of 1 byte .. 70 KB: a third tiny, a third small, a third large. */
function* randomChunks(prng: Prng, stream: Uint8Array): Generator<Uint8Array> {
  let offset = 0;
  while (offset < stream.length) {
    const kind = prng.int(3);
    const length = kind === 0 ? prng.range(1, 16) : kind === 1 ? prng.range(17, 2000) : prng.range(2001, 70_000);
    yield stream.subarray(offset, Math.min(stream.length, offset + length));
    offset += length;
  }
}

function expectSame(actual: Message[], expected: Message[]): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    expect(actual[i]!.header).toEqual(expected[i]!.header);
    expect(sameBytes(actual[i]!.body, expected[i]!.body)).toBe(true);
  }
}

function newReader(frame_size_max?: number): FrameReader {
  return new FrameReader({ cluster: test_cluster, replica_count: 3, frame_size_max });
}

describe("FrameReader", () => {
  test("random splits of a stream of valid messages (0 B .. 1 MiB bodies) all decode identically", () => {
    for (let seed = 1; seed <= 5; seed++) {
      const prng = new Prng(seed);
      const messages: Message[] = [];
      for (let i = 0; i < 120; i++) {
        const kind = prng.int(10);
        const size = kind === 0 ? 0 : kind <= 6 ? prng.range(1, 2000) : kind <= 8 ? prng.range(2001, 100_000) : 0;
        messages.push(randomMessage(prng, size));
      }
      // A few ~1 MiB bodies, at random places.
      for (let i = 0; i < 3; i++) messages.splice(prng.int(messages.length), 0, randomMessage(prng, 1024 * 1024 - prng.int(4096)));
      const stream = concat(messages.map(encode));

      const reader = newReader();
      expectSame(readAll(reader, randomChunks(prng, stream)), messages);
      expect(reader.buffered_bytes).toBe(0);
      // The retained buffer never grows: large frames are assembled in buffers of their own.
      expect(reader.buffer_capacity).toBe(reader_buffer_size_initial);

      // The whole stream in one chunk takes the zero-copy path for every frame.
      expectSame(readAll(newReader(), [stream]), messages);
    }
  });

  test("one byte at a time", () => {
    const prng = new Prng(42);
    const messages = Array.from({ length: 30 }, () => randomMessage(prng, prng.chance(0.3) ? 0 : prng.range(1, 300)));
    const stream = concat(messages.map(encode));
    const bytes = Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1));
    expectSame(readAll(newReader(), bytes), messages);
  });

  test("a truncated frame waits for the rest, whatever the cut", () => {
    const prng = new Prng(3);
    const message = randomMessage(prng, 1000);
    const frame = encode(message);
    for (const cut of [0, 1, 8, 127, 128, 129, 600, frame.length - 1]) {
      const reader = newReader();
      reader.push(frame.subarray(0, cut));
      expect(reader.next()).toBeNull();
      expect(reader.buffered_bytes).toBe(cut);
      expectSame(readAll(reader, [frame.subarray(cut)]), [message]);
      expect(reader.buffered_bytes).toBe(0);
    }
    // A header-only frame cut after its header completes on the next (empty) pass.
    const empty = encode(makeMessage({}));
    const reader = newReader();
    expectSame(readAll(reader, [empty.subarray(0, 100), empty.subarray(100)]), [makeMessage({})]);
  });

  test("every single-bit flip anywhere in a frame is detected, header flips before the body arrives", () => {
    const prng = new Prng(5);
    for (const body_size of [0, 40]) {
      const frame = encode(randomMessage(prng, body_size));
      for (let bit = 0; bit < frame.length * 8; bit++) {
        const flipped = frame.slice();
        flipped[bit >> 3]! ^= 1 << (bit & 7);
        const byte = bit >> 3;
        const expected: FrameErrorCode =
          byte >= header_size
            ? "checksum_body"
            : byte >= Offset.magic && byte < Offset.magic + 4
              ? "magic"
              : byte >= Offset.protocol && byte < Offset.protocol + 2
                ? "protocol"
                : "checksum_header";
        // Header damage is caught from the header alone; body damage once the body is complete.
        const chunks = byte < header_size ? [flipped.subarray(0, header_size)] : [flipped];
        expect(errorOf(newReader(), chunks).code).toBe(expected);
      }
    }
    // A large body: a sample of bit positions, delivered in random chunks.
    const frame = encode(randomMessage(prng, 64 * 1024));
    for (let i = 0; i < 300; i++) {
      const flipped = frame.slice();
      const bit = prng.int(frame.length * 8);
      flipped[bit >> 3]! ^= 1 << (bit & 7);
      const error = errorOf(newReader(), randomChunks(prng, flipped));
      expect(["checksum_body", "checksum_header", "magic", "protocol"]).toContain(error.code);
    }
  });

  test("oversized and undersized size fields are rejected from the header, before any body is buffered", () => {
    const prng = new Prng(9);
    const frame = encode(randomMessage(prng, 64));
    const junk = randomBytes(prng, 256 * 1024);
    for (const size of [message_size_max + 1, 0xffff_ffff, 0, header_size - 1]) {
      const reader = newReader();
      const error = errorOf(reader, [withU32(frame, Offset.size, size).subarray(0, header_size), junk]);
      expect(error.code).toBe("size");
      expect(reader.buffer_capacity).toBe(reader_buffer_size_initial); // memory did not grow
      expect(reader.buffered_bytes).toBeLessThanOrEqual(header_size);
    }
    // A smaller limit passed in applies the same way.
    const limited = newReader(4096);
    const big = encode(randomMessage(prng, 8192));
    const error = errorOf(limited, [big]);
    expect(error.code).toBe("size");
    expect(error.message).toContain("4096");
    expect(limited.buffer_capacity).toBe(reader_buffer_size_initial);
  });

  test("garbage from the first byte is rejected; after an error the reader stays failed", () => {
    const prng = new Prng(11);
    for (let i = 0; i < 50; i++) {
      const reader = newReader();
      expect(errorOf(reader, randomChunks(prng, randomBytes(prng, prng.range(header_size, 10_000)))).code).toBe("magic");
      expect(() => reader.push(encode(makeMessage({})))).toThrow(FrameError);
      expect(() => reader.next()).toThrow(FrameError);
    }
    const http = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".padEnd(200, " "));
    const error = errorOf(newReader(), [http]);
    expect(error.code).toBe("magic");
    expect(error.message).toContain("does not speak the ToastyFS protocol");
    // Fewer than 128 bytes of garbage cannot be judged yet: the reader waits.
    const short = newReader();
    short.push(randomBytes(prng, 100));
    expect(short.next()).toBeNull();
  });

  test("a frame for another cluster says the peer belongs to another cluster", () => {
    const foreign = encode(makeMessage({ cluster: 0x1234n }, new Uint8Array(10)));
    const reader = newReader();
    const error = errorOf(reader, [foreign]);
    expect(error.code).toBe("cluster");
    expect(error.message).toContain("another cluster");
    expect(error.message).toContain("--addr/--peer");
    // A reader with cluster null accepts any cluster.
    expect(readAll(new FrameReader({ cluster: null }), [foreign]).length).toBe(1);
  });

  test("protocol version, command, sender and u64 field violations each get their code", () => {
    const frame = encode(makeMessage({ replica: 1 }, new Uint8Array(16)));
    const protocol = frame.slice();
    new DataView(protocol.buffer).setUint16(Offset.protocol, protocol_version + 1, true);
    reseal(protocol);
    const protocol_error = errorOf(newReader(), [protocol]);
    expect(protocol_error.code).toBe("protocol");
    expect(protocol_error.message).toContain("same ToastyFS version");

    const command = frame.slice();
    command[Offset.command] = 200;
    reseal(command);
    expect(errorOf(newReader(), [command]).code).toBe("command");

    const replica = frame.slice();
    replica[Offset.replica] = 3; // replica_count is 3
    reseal(replica);
    expect(errorOf(newReader(), [replica]).code).toBe("replica");
    replica[Offset.replica] = sender_client;
    reseal(replica);
    expect(readAll(newReader(), [replica]).length).toBe(1);

    const field = withU32(frame, Offset.op + 4, 0xffff_ffff); // op >= 2^53
    expect(errorOf(newReader(), [field]).code).toBe("field");
  });

  test("a large frame's buffer grows with what arrives, not with what its header announces", () => {
    const prng = new Prng(14);
    const big = encode(randomMessage(prng, 16 * 1024 * 1024));
    const reader = newReader();
    reader.push(big.subarray(0, 1000));
    expect(reader.next()).toBeNull();
    expect(reader.large_frame_capacity).toBe(2 * reader_buffer_size_initial);
    reader.push(big.subarray(1000, 1024 * 1024));
    expect(reader.next()).toBeNull();
    expect(reader.large_frame_capacity).toBeLessThanOrEqual(2 * 1024 * 1024);
    reader.push(big.subarray(1024 * 1024, 4 * 1024 * 1024 + 200));
    expect(reader.next()).toBeNull();
    expect(reader.large_frame_capacity).toBe(big.length); // a quarter is here: straight to the frame size
    reader.push(big.subarray(4 * 1024 * 1024 + 200));
    const message = reader.next();
    expect(message).not.toBeNull();
    expect(message!.body.length).toBe(16 * 1024 * 1024);
    expect(reader.large_frame_capacity).toBe(0); // the message owns it now
    // The body is a view into the frame's own buffer, not into anything pushed.
    big.fill(0);
    expect(sameBytes(message!.body, big.subarray(128))).toBe(false);
  });

  test("a 1 MiB frame arriving in reads of 512 KiB gets one buffer, of its exact size", () => {
    const prng = new Prng(15);
    const frame = encode(randomMessage(prng, 1024 * 1024 + 32));
    const reader = newReader();
    reader.push(frame.subarray(0, 512 * 1024));
    expect(reader.next()).toBeNull();
    expect(reader.large_frame_capacity).toBe(frame.length);
    reader.push(frame.subarray(512 * 1024));
    expect(reader.next()!.body.length).toBe(1024 * 1024 + 32);
  });

  test("a buffer grown for a large frame is released afterwards", () => {
    const prng = new Prng(13);
    const big = encode(randomMessage(prng, 4 * 1024 * 1024));
    const small = randomMessage(prng, 10);
    const reader = newReader();
    // Deliver the big frame cut in two so it is assembled in the buffer.
    const out = readAll(reader, [big.subarray(0, 1000), big.subarray(1000), encode(small)]);
    expect(out.length).toBe(2);
    expect(reader.buffer_capacity).toBe(reader_buffer_size_initial);
  });
});
