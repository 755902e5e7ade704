import { describe, expect, test } from "bun:test";
import { message_size_max } from "../constants.ts";
import { Prng } from "../util/prng.ts";
import { encode, type Message } from "./codec.ts";
import { FrameReader } from "./frame_reader.ts";
import {
  FrameWriter,
  external_body_size_min,
  write_buffer_size_initial,
  write_buffer_size_max,
  write_buffer_size_retain_max,
  type ByteSink,
} from "./frame_writer.ts";
import { concat, randomMessage, sameBytes, test_cluster } from "./test_support.ts";

/** A sink that records every write and accepts at most `accept` bytes per call (-1: closed). */
class FakeSink implements ByteSink {
  readonly writes: number[] = [];
  readonly received: Uint8Array[] = [];
  constructor(public accept = Infinity) {}
  write(data: Uint8Array, byte_offset: number, byte_length: number): number {
    this.writes.push(byte_length);
    if (this.accept < 0) return -1;
    const n = Math.min(byte_length, this.accept);
    this.received.push(data.slice(byte_offset, byte_offset + n));
    return n;
  }
  bytes(): Uint8Array {
    return concat(this.received);
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

function decodeAll(bytes: Uint8Array): Message[] {
  const reader = new FrameReader({ cluster: test_cluster });
  reader.push(bytes);
  const out: Message[] = [];
  for (let m = reader.next(); m !== null; m = reader.next()) out.push(m);
  return out;
}

describe("FrameWriter", () => {
  test("messages sent in one turn leave in one write, in order", async () => {
    const prng = new Prng(1);
    const sink = new FakeSink();
    const writer = new FrameWriter();
    writer.attach(sink);
    const messages = Array.from({ length: 100 }, () => randomMessage(prng, prng.range(0, 3000)));
    for (const m of messages) expect(writer.send(m)).toBe(true);
    expect(sink.writes.length).toBe(0); // nothing until the turn ends
    await turn();
    expect(sink.writes.length).toBe(1);
    expect(writer.writes).toBe(1);
    expect(sameBytes(sink.bytes(), concat(messages.map(encode)))).toBe(true);
    expect(writer.buffered_bytes).toBe(0);
    expect(writer.messages_queued).toBe(100);
  });

  test("short and zero writes resume on drain without losing or reordering bytes", async () => {
    const prng = new Prng(2);
    const sink = new FakeSink(1000);
    const writer = new FrameWriter();
    writer.attach(sink);
    const messages = Array.from({ length: 50 }, () => randomMessage(prng, prng.range(0, 5000)));
    const expected = concat(messages.map(encode));
    for (const m of messages.slice(0, 25)) writer.send(m);
    await turn();
    expect(writer.is_blocked).toBe(true);
    // While blocked, sends only queue: no write per turn until drain.
    for (const m of messages.slice(25)) writer.send(m);
    await turn();
    expect(sink.writes.length).toBe(1);
    sink.accept = 0;
    writer.flush(); // a drain that finds the kernel full again
    expect(writer.is_blocked).toBe(true);
    for (let drains = 0; writer.buffered_bytes > 0; drains++) {
      expect(drains).toBeLessThan(10_000);
      sink.accept = prng.range(0, 7000);
      writer.flush(); // what the socket's drain handler does
    }
    expect(writer.is_blocked).toBe(false);
    expect(sameBytes(sink.bytes(), expected)).toBe(true);
    expect(decodeAll(sink.bytes()).length).toBe(50);
    expect(writer.bytes_written).toBe(expected.length);
  });

  test("a large body goes out from the message itself, right after the buffered bytes", async () => {
    const prng = new Prng(7);
    const sink = new FakeSink();
    const writer = new FrameWriter();
    writer.attach(sink);
    const small = randomMessage(prng, 100);
    const large = randomMessage(prng, external_body_size_min);
    writer.send(small);
    writer.send(large);
    expect(writer.buffer_capacity).toBe(write_buffer_size_initial); // the body was not copied in
    expect(writer.buffered_bytes).toBe(encode(small).length + encode(large).length);
    await turn();
    expect(sink.writes).toEqual([encode(small).length + 128, large.body.length]);
    expect(sameBytes(sink.bytes(), concat([encode(small), encode(large)]))).toBe(true);
    expect(writer.buffered_bytes).toBe(0);
  });

  test("per_turn: messages from several callbacks of one turn leave in one write", async () => {
    const prng = new Prng(10);
    for (const per_turn of [false, true]) {
      const sink = new FakeSink();
      const writer = new FrameWriter({ per_turn });
      writer.attach(sink);
      const messages = Array.from({ length: 3 }, () => randomMessage(prng, 100));
      // Three timer callbacks due in the same turn, like three sockets' data events: microtasks
      // run after each of them, immediates once after all.
      for (const m of messages) setTimeout(() => writer.send(m), 0);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(sink.writes.length).toBe(per_turn ? 1 : 3);
      expect(sameBytes(sink.bytes(), concat(messages.map(encode)))).toBe(true);
    }
  });

  test("several large bodies in one turn are all written from their messages", async () => {
    const prng = new Prng(9);
    const sink = new FakeSink();
    const writer = new FrameWriter();
    writer.attach(sink);
    const messages = [
      randomMessage(prng, external_body_size_min),
      randomMessage(prng, 10),
      randomMessage(prng, external_body_size_min + 1),
      randomMessage(prng, external_body_size_min + 2),
    ];
    for (const m of messages) writer.send(m);
    expect(writer.buffer_capacity).toBe(write_buffer_size_initial);
    await turn();
    // header | body | small message + header | body | header | body
    expect(sink.writes).toEqual([
      128,
      messages[0]!.body.length,
      encode(messages[1]!).length + 128,
      messages[2]!.body.length,
      128,
      messages[3]!.body.length,
    ]);
    expect(sameBytes(sink.bytes(), concat(messages.map(encode)))).toBe(true);
  });

  test("large and small messages, any write sizes: the stream is intact and in order", async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const prng = new Prng(100 + seed);
      const sink = new FakeSink(prng.chance(0.5) ? Infinity : prng.range(0, 300_000));
      const writer = new FrameWriter();
      writer.attach(sink);
      const messages: Message[] = [];
      for (let turns = 0; turns < 8; turns++) {
        for (let i = prng.range(1, 4); i > 0; i--) {
          const m = randomMessage(prng, prng.chance(0.4) ? prng.range(external_body_size_min, 300_000) : prng.range(0, 2000));
          expect(writer.send(m)).toBe(true);
          messages.push(m);
        }
        await turn();
        if (prng.chance(0.5)) {
          sink.accept = prng.chance(0.3) ? Infinity : prng.range(0, 300_000);
          writer.flush(); // a drain
        }
      }
      for (let drains = 0; writer.buffered_bytes > 0; drains++) {
        expect(drains).toBeLessThan(10_000);
        sink.accept = prng.range(0, 300_000);
        writer.flush();
      }
      const expected = concat(messages.map(encode));
      expect(writer.bytes_written).toBe(expected.length);
      expect(sameBytes(sink.bytes(), expected)).toBe(true);
      expect(writer.is_blocked).toBe(false);
    }
  });

  test("a closed sink keeps a pending large body counted until detach", async () => {
    const prng = new Prng(8);
    const sink = new FakeSink(-1);
    const writer = new FrameWriter();
    writer.attach(sink);
    const large = randomMessage(prng, external_body_size_min + 10);
    writer.send(large);
    await turn();
    expect(writer.buffered_bytes).toBe(encode(large).length);
    expect(writer.detach()).toBe(encode(large).length);
    expect(writer.buffered_bytes).toBe(0);
  });

  test("a blocked writer drops new messages above its bound and counts them; memory stays bounded", async () => {
    const prng = new Prng(3);
    const bound = 256 * 1024;
    const sink = new FakeSink(0);
    const writer = new FrameWriter({ buffered_bytes_max: bound });
    writer.attach(sink);
    let accepted = 0;
    let dropped = 0;
    for (let i = 0; i < 2000; i++) {
      if (writer.send(randomMessage(prng, prng.range(0, 2000)))) accepted += 1;
      else dropped += 1;
      if (i % 100 === 0) await turn();
      expect(writer.buffered_bytes).toBeLessThanOrEqual(bound);
      expect(writer.buffer_capacity).toBeLessThanOrEqual(bound);
    }
    expect(dropped).toBeGreaterThan(0);
    expect(writer.messages_dropped).toBe(dropped);
    expect(writer.messages_queued).toBe(accepted);
    // Once the peer reads again, everything accepted arrives intact and sending works again.
    sink.accept = Infinity;
    writer.flush();
    expect(decodeAll(sink.bytes()).length).toBe(accepted);
    expect(writer.send(randomMessage(prng, 10))).toBe(true);
  });

  test("the default bound is 64 MiB plus one maximum-size message", () => {
    expect(new FrameWriter().buffered_bytes_max).toBe(write_buffer_size_max);
    expect(write_buffer_size_max).toBe(64 * 1024 * 1024 + message_size_max);
  });

  test("messages sent before attach wait for the connection; detach discards what is queued", async () => {
    const prng = new Prng(4);
    const writer = new FrameWriter();
    const early = randomMessage(prng, 100);
    writer.send(early);
    await turn();
    expect(writer.buffered_bytes).toBe(encode(early).length);
    const sink = new FakeSink(50); // a partial frame reaches the old connection
    writer.attach(sink);
    await turn();
    expect(writer.buffered_bytes).toBeGreaterThan(0);
    expect(writer.detach()).toBe(encode(early).length - 50);
    expect(writer.buffered_bytes).toBe(0);
    // A new connection starts at a frame boundary.
    const next = new FakeSink();
    writer.attach(next);
    const later = randomMessage(prng, 30);
    writer.send(later);
    await turn();
    expect(sameBytes(next.bytes(), encode(later))).toBe(true);
  });

  test("a closed sink (-1) keeps the bytes for the close handler to discard", async () => {
    const prng = new Prng(5);
    const writer = new FrameWriter();
    writer.attach(new FakeSink(-1));
    writer.send(randomMessage(prng, 10));
    await turn();
    expect(writer.buffered_bytes).toBeGreaterThan(0);
    expect(writer.detach()).toBeGreaterThan(0);
  });

  test("a buffer grown by a burst is released once flushed", async () => {
    const prng = new Prng(6);
    const sink = new FakeSink(0);
    const writer = new FrameWriter();
    writer.attach(sink);
    // Bodies below external_body_size_min are copied in (large ones never are).
    for (let i = 0; i < 100; i++) writer.send(randomMessage(prng, external_body_size_min - 1));
    await turn();
    expect(writer.buffer_capacity).toBeGreaterThan(write_buffer_size_retain_max);
    sink.accept = Infinity;
    writer.flush();
    expect(writer.buffer_capacity).toBe(write_buffer_size_initial);
  });

  test("a blocked writer queues large bodies without copying them, and sends them intact on drain", async () => {
    const prng = new Prng(11);
    const sink = new FakeSink(1000);
    const writer = new FrameWriter();
    writer.attach(sink);
    const messages = Array.from({ length: 10 }, (_, i) => randomMessage(prng, i % 3 === 0 ? 100 : 1024 * 1024));
    for (const m of messages) writer.send(m);
    await turn();
    expect(writer.is_blocked).toBe(true);
    const later = randomMessage(prng, 1024 * 1024);
    writer.send(later);
    expect(writer.buffer_capacity).toBe(write_buffer_size_initial);
    expect(writer.buffered_bytes).toBe(concat([...messages, later].map(encode)).length - sink.bytes().length);
    expect(sink.bytes().length).toBeLessThan(2000);
    sink.accept = Infinity;
    writer.flush();
    expect(writer.is_blocked).toBe(false);
    expect(sameBytes(sink.bytes(), concat([...messages, later].map(encode)))).toBe(true);
  });
});
