import { describe, expect, test } from "bun:test";
import { createCipheriv, createHmac } from "node:crypto";
import { FrameOpener as Opener, FrameSealer as Sealer, tag_size } from "./frame_tag.ts";
import { handshake_version, handshake_version_gmac, type HandshakeVersion } from "./handshake.ts";

const key = Uint8Array.from({ length: 32 }, (_, i) => 100 + i);
const frames = [new Uint8Array(128).fill(1), new Uint8Array(300).fill(2), new Uint8Array(128).fill(3)];

test("version 1: the tag is the first 16 bytes of HMAC-SHA256(key, u64 LE sequence ‖ frame)", () => {
  const sealer = new Sealer(key);
  for (let sequence = 0; sequence < 3; sequence++) {
    const seq = Buffer.alloc(8);
    seq.writeBigUInt64LE(BigInt(sequence));
    const expected = createHmac("sha256", key).update(seq).update(frames[sequence]!).digest().subarray(0, tag_size);
    expect(Buffer.from(sealer.seal(frames[sequence]!))).toEqual(expected);
  }
});

test("version 2: the tag is AES-256-GCM's over the frame as additional data, nonce u64 LE sequence ‖ 4 zero bytes", () => {
  const sealer = new Sealer(key, handshake_version_gmac);
  for (let sequence = 0; sequence < 3; sequence++) {
    const nonce = Buffer.alloc(12);
    nonce.writeBigUInt64LE(BigInt(sequence));
    const gcm = createCipheriv("aes-256-gcm", key, nonce);
    gcm.setAAD(frames[sequence]!);
    gcm.final();
    expect(Buffer.from(sealer.seal(frames[sequence]!))).toEqual(gcm.getAuthTag());
  }
  // Not the HMAC tag: a version-1 opener refuses it.
  expect(new Opener(key).open(frames[0]!, new Sealer(key, handshake_version_gmac).seal(frames[0]!))).toBe(false);
});

describe.each([handshake_version, handshake_version_gmac] as HandshakeVersion[])("frame tag, handshake version %d", (version) => {
  // The same behaviour from both kinds of tag.
  const FrameSealer = class extends Sealer {
    constructor(k: Uint8Array) {
      super(k, version);
    }
  };
  const FrameOpener = class extends Opener {
    constructor(k: Uint8Array) {
      super(k, version);
    }
  };

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
