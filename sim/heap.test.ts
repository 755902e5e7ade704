import { describe, expect, test } from "bun:test";
import { Prng } from "../lib/util/prng.ts";
import { Heap, type Timed } from "./heap.ts";

describe("Heap", () => {
  test("pops in (time, seq) order under random interleaved pushes and pops, with many equal times", () => {
    const prng = new Prng(17);
    const heap = new Heap<Timed>();
    const reference: Timed[] = [];
    let seq = 0;
    for (let round = 0; round < 20_000; round++) {
      if (reference.length === 0 || prng.chance(0.55)) {
        const item = { time: prng.int(50), seq: seq++ };
        heap.push(item);
        reference.push(item);
      } else {
        reference.sort((a, b) => a.time - b.time || a.seq - b.seq);
        expect(heap.pop()).toBe(reference.shift()!);
      }
      expect(heap.size).toBe(reference.length);
    }
    reference.sort((a, b) => a.time - b.time || a.seq - b.seq);
    for (const item of reference) expect(heap.pop()).toBe(item);
    expect(heap.pop()).toBeUndefined();
    expect(heap.peek()).toBeUndefined();
  });
});
