import { describe, expect, test } from "bun:test";
import { FlushEvents, type FlushHost } from "./flush_events.ts";

/** A storage whose flush has two steps (segments, then the ring), recording what happened. */
class FakeHost implements FlushHost {
  readonly replica = 0;
  readonly events: string[] = [];
  queued = 0;
  step = 0;
  readonly storage = {
    pending: () => this.queued > 0,
    flushing: () => this.step > 0,
    flushBegin: () => {
      this.events.push(`begin ${this.queued}`);
      this.queued = 0;
      this.step = 1;
      return [10, 11];
    },
    flushSynced: () => {
      this.events.push(`synced ${this.step}`);
      if (this.step === 1) {
        this.step = 2;
        return [12];
      }
      this.step = 0;
      return null;
    },
    flushSyncInline: () => void this.events.push("inline"),
  };
  readonly journal = { flushBegin: () => void this.events.push("journal") };
  readonly durable = { flushBegin: () => void this.events.push("durable") };
}

describe("FlushEvents (docs/STORAGE.md §10.9)", () => {
  test("the replica acts on a group only when its last step returned, and one group is in flight", () => {
    const host = new FakeHost();
    const flushes = new FlushEvents(host, () => host.events.push("completed"));
    expect(flushes.needed()).toBe(false);
    host.queued = 2;
    expect(flushes.needed()).toBe(true);
    expect(flushes.begin()).toEqual([10, 11]);
    host.queued = 1; // the next group gathers meanwhile
    expect(flushes.needed()).toBe(false);
    expect(() => flushes.begin()).toThrow("another is in flight");
    expect(flushes.synced()).toEqual([12]);
    expect(host.events).not.toContain("completed");
    expect(flushes.synced()).toBeNull();
    expect(host.events).toEqual(["journal", "durable", "begin 2", "synced 1", "synced 2", "completed"]);
    expect(flushes.needed()).toBe(true);
  });

  test("now() finishes the flush in flight, then flushes what was gathered, on the calling thread", () => {
    const host = new FakeHost();
    const flushes = new FlushEvents(host, () => host.events.push("completed"));
    host.queued = 1;
    flushes.begin();
    host.queued = 3;
    flushes.now();
    expect(host.events.filter((e) => e === "completed")).toHaveLength(2);
    expect(host.events).toContain("begin 3");
    expect(flushes.inFlight()).toBe(false);
    expect(flushes.needed()).toBe(false);
  });
});
