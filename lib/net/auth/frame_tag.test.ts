import { describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { FrameOpener, FrameSealer, tag_size } from "./frame_tag.ts";

const key = Uint8Array.from({ length: 32 }, (_, i) => 100 + i);
const frames = [new Uint8Array(128).fill(1), new Uint8Array(300).fill(2), new Uint8Array(128).fill(3)];

describe("frame tag", () => {
  test("the tag is the first 16 bytes of HMAC-SHA256(key, u64 LE sequence ‖ frame)", () => {
    const sealer = new FrameSealer(key);
    for (let sequence = 0; sequence < 3; sequence++) {
      const seq = Buffer.alloc(8);
      seq.writeBigUInt64LE(BigInt(sequence));
      const expected = createHmac("sha256", key).update(seq).update(frames[sequence]!).digest().subarray(0, tag_size);
      expect(Buffer.from(sealer.seal(frames[sequence]!))).toEqual(expected);
    }
  });

  test("a frame in parts has the tag of the whole", () => {
    const whole = new FrameSealer(key).seal(frames[1]!);
    expect(new FrameSealer(key).seal(frames[1]!.subarray(0, 128), frames[1]!.subarray(128))).toEqual(whole);
  });

  test("in order and unaltered, every frame opens", () => {
    const sealer = new FrameSealer(key);
    const opener = new FrameOpener(key);
    for (const frame of frames) expect(opener.open(frame, sealer.seal(frame))).toBe(true);
  });

  test("an altered byte fails", () => {
    const tag = new FrameSealer(key).seal(frames[1]!);
    const altered = frames[1]!.slice();
    altered[200]! ^= 1;
    expect(new FrameOpener(key).open(altered, tag)).toBe(false);
    const bad_tag = tag.slice();
    bad_tag[15]! ^= 0x80;
    expect(new FrameOpener(key).open(frames[1]!, bad_tag)).toBe(false);
  });

  test("replayed, dropped and reordered frames fail", () => {
    const sealer = new FrameSealer(key);
    const tags = frames.map((frame) => sealer.seal(frame));
    const replay = new FrameOpener(key);
    expect(replay.open(frames[0]!, tags[0]!)).toBe(true);
    expect(replay.open(frames[0]!, tags[0]!)).toBe(false);
    const dropped = new FrameOpener(key);
    expect(dropped.open(frames[1]!, tags[1]!)).toBe(false);
    const reordered = new FrameOpener(key);
    expect(reordered.open(frames[0]!, tags[0]!)).toBe(true);
    expect(reordered.open(frames[2]!, tags[2]!)).toBe(false);
  });

  test("another key (the other direction, another connection) fails", () => {
    const other = key.slice();
    other[0]! ^= 1;
    expect(new FrameOpener(other).open(frames[0]!, new FrameSealer(key).seal(frames[0]!))).toBe(false);
  });

  test("an opener that failed refuses further use", () => {
    const opener = new FrameOpener(key);
    expect(opener.open(frames[0]!, new Uint8Array(tag_size))).toBe(false);
    expect(() => opener.open(frames[0]!, new Uint8Array(tag_size))).toThrow("FrameOpener used after a failed tag");
  });
});
