/** FrameWriter and FrameReader on an authenticated connection: every frame followed by its tag. */
import { describe, expect, test } from "bun:test";
import { Prng } from "../../util/prng.ts";
import type { Message } from "../codec.ts";
import { FrameError, FrameReader } from "../frame_reader.ts";
import { FrameWriter, external_body_size_min, type ByteSink } from "../frame_writer.ts";
import { concat, randomMessage, sameBytes, test_cluster } from "../test_support.ts";
import { FrameOpener, FrameSealer, tag_size } from "./frame_tag.ts";

const key = new Uint8Array(32).fill(42);

class Sink implements ByteSink {
  readonly received: Uint8Array[] = [];
  write(data: Uint8Array, byte_offset: number, byte_length: number): number {
    this.received.push(data.slice(byte_offset, byte_offset + byte_length));
    return byte_length;
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

function reader(opener_key = key): FrameReader {
  const r = new FrameReader({ cluster: test_cluster, replica_count: 3 });
  r.authenticate(new FrameOpener(opener_key));
  return r;
}

/** Feeds bytes in chunks of the given sizes (cycled) and returns what was decoded. */
function readAll(r: FrameReader, bytes: Uint8Array, chunk_sizes: number[]): Message[] {
  const out: Message[] = [];
  let offset = 0;
  for (let i = 0; offset < bytes.length; i++) {
    const size = chunk_sizes[i % chunk_sizes.length]!;
    r.push(bytes.subarray(offset, offset + size));
    offset += size;
    for (let m = r.next(); m !== null; m = r.next()) out.push(m);
  }
  return out;
}

async function written(messages_before: Message[], messages_after: Message[]): Promise<Uint8Array> {
  const writer = new FrameWriter({ tagged: true });
  for (const m of messages_before) expect(writer.send(m)).toBe(true);
  const sink = new Sink();
  writer.attach(sink, new FrameSealer(key));
  for (const m of messages_after) expect(writer.send(m)).toBe(true);
  await turn();
  return concat(sink.received);
}

describe("tagged stream", () => {
  const prng = new Prng(7);
  const before = [randomMessage(prng, 0), randomMessage(prng, 300)];
  // Large bodies go out from the message itself (external), small ones through the buffer.
  const after = [randomMessage(prng, external_body_size_min + 5), randomMessage(prng, 17), randomMessage(prng, 200_000)];
  const all = [...before, ...after];

  test("frames queued before and after attach arrive in order, each followed by its tag", async () => {
    const bytes = await written(before, after);
    expect(bytes.length).toBe(all.reduce((sum, m) => sum + m.header.size + tag_size, 0));
    for (const chunks of [[bytes.length], [1], [7, 130, 4096], [65_536 + 3]]) {
      const got = readAll(reader(), bytes, chunks);
      expect(got.length).toBe(all.length);
      got.forEach((m, i) => expect(sameBytes(m.body, all[i]!.body) && m.header.size === all[i]!.header.size).toBe(true));
    }
  });

  test("a flipped byte anywhere in a frame or its tag fails with code tag", async () => {
    const bytes = await written(before, after);
    // Positions in the body of the third frame, in its tag, and in a later frame's body.
    const third = before[0]!.header.size + before[1]!.header.size + 2 * tag_size;
    for (const position of [third + 200, third + after[0]!.header.size + 3, bytes.length - tag_size - 10]) {
      const altered = bytes.slice();
      altered[position]! ^= 0x10;
      let error: unknown = null;
      try {
        readAll(reader(), altered, [bytes.length]);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(FrameError);
      expect((error as FrameError).code).toBe("tag");
    }
  });

  test("a dropped or replayed frame fails", async () => {
    const bytes = await written(before, []);
    const first = before[0]!.header.size + tag_size;
    expect(() => readAll(reader(), bytes.subarray(first), [bytes.length])).toThrow("frame tag mismatch");
    const replayed = concat([bytes.subarray(0, first), bytes.subarray(0, first)]);
    expect(() => readAll(reader(), replayed, [replayed.length])).toThrow("frame tag mismatch");
  });

  test("another session key fails the first frame", async () => {
    const bytes = await written(before, []);
    expect(() => readAll(reader(new Uint8Array(32).fill(1)), bytes, [bytes.length])).toThrow("frame tag mismatch");
  });

  test("a tagged writer counts the tags against its bound", () => {
    const message = randomMessage(new Prng(1), 0);
    const writer = new FrameWriter({ tagged: true, buffered_bytes_max: 2 * message.header.size + tag_size });
    expect(writer.send(message)).toBe(true);
    expect(writer.send(message)).toBe(false);
    expect(writer.buffered_bytes).toBe(message.header.size + tag_size);
  });
});
