import { describe, expect, test } from "bun:test";
import { ClientLinks } from "./client_links.ts";

const ms = 1000; // µs

describe("ClientLinks", () => {
  test("one connect at a time per replica: messages sent while it is under way wait for its outcome", () => {
    const links = new ClientLinks(3, () => 0);
    expect(links.connect(1, 5 * ms)).toBe(5 * ms);
    expect(links.connect(1, 6 * ms)).toBeNull();
    expect(links.connect(2, 6 * ms)).toBe(6 * ms); // another replica has its own connection
  });

  test("after a refusal the next attempt waits out the transport's backoff, doubling up to 1 s", () => {
    const links = new ClientLinks(3, () => 0); // jitter at its low end: half of each step
    let now = 0;
    const waits: number[] = [];
    for (let i = 0; i < 7; i++) {
      const at = links.connect(0, now)!;
      waits.push(at - now);
      now = at + 100;
      links.refused(0, now);
    }
    expect(waits).toEqual([0, 25 * ms, 50 * ms, 100 * ms, 200 * ms, 400 * ms, 500 * ms]);
    // The backoff is a floor, not a delay added to a later send.
    expect(links.connect(0, now + 10_000 * ms)).toBe(now + 10_000 * ms);
  });

  test("a connection that opens after a refusal is news once, and resets the backoff", () => {
    const links = new ClientLinks(3, () => 0.5);
    expect(links.accepted(2)).toBe(false); // never refused: nothing for the sessions
    links.connect(2, 0);
    links.refused(2, 1 * ms);
    links.connect(2, 2 * ms);
    links.refused(2, 40 * ms);
    expect(links.accepted(2)).toBe(true);
    expect(links.accepted(2)).toBe(false);
    expect(links.connect(2, 41 * ms)).toBe(41 * ms);
    links.refused(2, 42 * ms);
    expect(links.connect(2, 42 * ms)).toBe(42 * ms + 37_500); // the first step again: 50 ms jittered to 37.5
  });

  test("an attempt that ends without a refusal (the replica started, or a partition swallowed it) tells nothing", () => {
    const links = new ClientLinks(2, () => 0);
    links.connect(1, 0);
    links.unanswered(1);
    expect(links.accepted(1)).toBe(false);
    expect(links.connect(1, 3 * ms)).toBe(3 * ms); // no backoff either
  });

  test("outcomes for attempts never made, and unknown replicas, are bugs", () => {
    const links = new ClientLinks(2, () => 0);
    expect(() => links.refused(0, 0)).toThrow(/not attempted/);
    expect(() => links.unanswered(1)).toThrow(/no connect/);
    expect(() => links.connect(2, 0)).toThrow(/no replica 2/);
  });
});
