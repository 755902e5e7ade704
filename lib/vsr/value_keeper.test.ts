import { describe, expect, test } from "bun:test";
import { ValueKeeper, compaction_bytes_per_round, compaction_interval_ticks, type ValueKeeperHost } from "./value_keeper.ts";
import { value_repairs_max } from "./value_repair.ts";
import { buildRequestValue, buildValue, readRequestValue, readValue, type Envelope } from "./messages.ts";
import { RecordingHost } from "./value_keeper_fixture.ts";
import { Command } from "../net/codec.ts";
import { ObjectStore, type ObjectEntry, type ValueLocation } from "../store/object_store.ts";
import { checksum } from "../util/checksum.ts";

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Values on a fake disk, by location; a damaged one reads back as null, as a checksum failure does. */
class FakeDisk {
  readonly values = new Map<string, Uint8Array>();
  readonly damaged = new Set<string>();
  next_offset = 0;
  full = false;
  candidate: number | null = null;
  static where(location: ValueLocation): string {
    return `${location.segment}:${location.offset}`;
  }
  readValue(entry: ObjectEntry): Uint8Array | null {
    const where = FakeDisk.where(entry);
    return this.damaged.has(where) ? null : (this.values.get(where) ?? null);
  }
  writeValue(value: Uint8Array): ValueLocation {
    if (this.full) throw Object.assign(new Error("no space left on device (test)"), { code: "ENOSPC" as const });
    const location = { segment: 9, offset: this.next_offset++ };
    this.values.set(FakeDisk.where(location), value);
    return location;
  }
  compactionCandidate(): number | null {
    return this.candidate;
  }
}

class FakeHost extends RecordingHost implements ValueKeeperHost {
  readonly storage = new FakeDisk();
  store = new ObjectStore();
  constructor() {
    super(0, 7);
  }

  /** Puts key at (segment, offset) in the index and its bytes on the disk. */
  put(key: string, text: string, version: number, segment = 1): ObjectEntry {
    const value = bytes(text);
    const entry: ObjectEntry = { version, timestamp: 0, size: value.length, checksum: checksum(value), segment, offset: version };
    this.store.set(key, entry);
    this.storage.values.set(FakeDisk.where(entry), value);
    return entry;
  }
}

const peer: Envelope = { cluster: 1n, replica: 2, replica_count: 3, view: 1, incarnation: 5 };

describe("ValueKeeper", () => {
  test("a damaged value read is queued for repair once, asked of a peer, and read as unavailable", () => {
    const host = new FakeHost();
    const keeper = new ValueKeeper(host);
    const good = host.put("a", "alpha", 1);
    expect(keeper.readValue("a", good)).toEqual(bytes("alpha"));
    host.storage.damaged.add(FakeDisk.where(good));
    expect(keeper.readValue("a", good)).toBeNull();
    expect(keeper.readValue("a", good)).toBeNull();
    expect(keeper.repairing).toBe(1);
    expect(host.sent.length).toBe(1);
    const { to, message } = host.sent[0]!;
    expect(to === 1 || to === 2).toBe(true);
    expect(message.header.command).toBe(Command.request_value);
    expect(readRequestValue(message)).toEqual({ key: "a", version: 1, checksum: good.checksum });
  });

  test("a peer's copy of the damaged value is written back and the repair is done; a late duplicate is ignored", () => {
    const host = new FakeHost();
    const keeper = new ValueKeeper(host);
    const good = host.put("a", "alpha", 1);
    host.storage.damaged.add(FakeDisk.where(good));
    keeper.readValue("a", good);
    const answer = buildValue(peer, { key: "a", version: 1, checksum: good.checksum, value: bytes("alpha") });
    keeper.onValue(answer);
    expect(keeper.repairing).toBe(0);
    const moved = host.store.get("a")!;
    expect(moved.segment).toBe(9);
    expect(keeper.readValue("a", moved)).toEqual(bytes("alpha"));
    keeper.onValue(answer);
    expect(host.store.get("a")).toBe(moved);
    expect(host.dropped).toEqual([]);
  });

  test("a copy that does not match its checksum is dropped and the repair stays outstanding", () => {
    const host = new FakeHost();
    const keeper = new ValueKeeper(host);
    const good = host.put("a", "alpha", 1);
    host.storage.damaged.add(FakeDisk.where(good));
    keeper.readValue("a", good);
    keeper.onValue(buildValue(peer, { key: "a", version: 1, checksum: good.checksum, value: bytes("alphA") }));
    expect(host.dropped).toEqual(["repaired value does not match its checksum"]);
    expect(keeper.repairing).toBe(1);
    expect(host.store.get("a")).toEqual(good);
  });

  test("a repaired value that finds the disk full goes to no_space and stays wanted", () => {
    const host = new FakeHost();
    const keeper = new ValueKeeper(host);
    const good = host.put("a", "alpha", 1);
    host.storage.damaged.add(FakeDisk.where(good));
    keeper.readValue("a", good);
    host.storage.full = true;
    keeper.onValue(buildValue(peer, { key: "a", version: 1, checksum: good.checksum, value: bytes("alpha") }));
    expect(host.full_errors.length).toBe(1);
    expect(keeper.repairing).toBe(1);
  });

  test("outstanding repairs are asked for again; one whose key moved on is forgotten", () => {
    const host = new FakeHost();
    const keeper = new ValueKeeper(host);
    const a = host.put("a", "alpha", 1);
    const b = host.put("b", "beta", 2);
    host.storage.damaged.add(FakeDisk.where(a)).add(FakeDisk.where(b));
    keeper.readValue("a", a);
    keeper.readValue("b", b);
    host.put("b", "beta two", 3);
    host.sent.length = 0;
    keeper.repairValues();
    expect(host.sent.map(({ message }) => readRequestValue(message))).toEqual([{ key: "a", version: 1, checksum: a.checksum }]);
    expect(keeper.repairing).toBe(1);
  });

  test("a peer's request is served only for the exact version and checksum, from an intact copy", () => {
    const host = new FakeHost();
    const keeper = new ValueKeeper(host);
    const good = host.put("a", "alpha", 1);
    keeper.onRequestValue(buildRequestValue(peer, { key: "a", version: 2, checksum: good.checksum }));
    keeper.onRequestValue(buildRequestValue(peer, { key: "b", version: 1, checksum: good.checksum }));
    expect(host.sent).toEqual([]);
    keeper.onRequestValue(buildRequestValue(peer, { key: "a", version: 1, checksum: good.checksum }));
    expect(host.sent.length).toBe(1);
    expect(host.sent[0]!.to).toBe(2);
    expect(readValue(host.sent[0]!.message)).toEqual({ key: "a", version: 1, checksum: good.checksum, value: bytes("alpha") });
    host.storage.damaged.add(FakeDisk.where(good));
    keeper.onRequestValue(buildRequestValue(peer, { key: "a", version: 1, checksum: good.checksum }));
    expect(host.sent.length).toBe(1);
    // A blank replica has no state to serve from.
    host.status = "blank";
    host.storage.damaged.clear();
    keeper.onRequestValue(buildRequestValue(peer, { key: "a", version: 1, checksum: good.checksum }));
    expect(host.sent.length).toBe(1);
  });

  test("scrubbing reads every value, counts passes, finds the damaged one, and does nothing while inactive", () => {
    const host = new FakeHost();
    const keeper = new ValueKeeper(host);
    const entries = ["a", "b", "c"].map((key, i) => host.put(key, `value ${key}`, i + 1));
    host.storage.damaged.add(FakeDisk.where(entries[1]!));
    keeper.scrub(0, false);
    expect(host.stats.values_scrubbed).toBe(0);
    keeper.scrub(1, true);
    expect(host.stats).toEqual({ bytes_compacted: 0, values_scrubbed: 3, scrub_passes: 1 });
    expect(keeper.repairing).toBe(1);
    expect(host.sent.map(({ message }) => readRequestValue(message))).toEqual([{ key: "b", version: 2, checksum: entries[1]!.checksum }]);
  });

  test("compaction moves the candidate segment's live values every compaction_interval_ticks, only while active", () => {
    const host = new FakeHost();
    const keeper = new ValueKeeper(host);
    host.put("a", "alpha", 1, 3);
    const b = host.put("b", "beta", 2, 3);
    host.put("c", "gamma", 3, 4);
    host.storage.candidate = 3;
    keeper.compact(compaction_interval_ticks + 1, true);
    keeper.compact(compaction_interval_ticks, false);
    expect(host.store.keysIn(3).length).toBe(2);
    // A damaged value is not copied: it is repaired from a peer into a new segment instead.
    host.storage.damaged.add(FakeDisk.where(b));
    keeper.compact(compaction_interval_ticks, true);
    expect(host.store.keysIn(3)).toEqual(["b"]);
    expect(host.store.get("a")!.segment).toBe(9);
    expect(host.store.get("c")!.segment).toBe(4);
    expect(host.stats.bytes_compacted).toBe(5);
    expect(keeper.repairing).toBe(1);
  });

  test("compaction stops at its byte budget and when the disk is full", () => {
    const host = new FakeHost();
    const keeper = new ValueKeeper(host);
    const big = "x".repeat(compaction_bytes_per_round);
    host.put("a", big, 1, 3);
    host.put("b", big, 2, 3);
    host.storage.candidate = 3;
    keeper.compact(0, true);
    expect(host.store.keysIn(3).length).toBe(1);
    host.storage.full = true;
    keeper.compact(compaction_interval_ticks, true);
    expect(host.store.keysIn(3).length).toBe(1);
    expect(host.full_errors.length).toBe(1);
    keeper.invariants();
  });

  test("at most value_repairs_max damaged values are queued at once", () => {
    const host = new FakeHost();
    const keeper = new ValueKeeper(host);
    for (let i = 0; i <= value_repairs_max; i++) {
      const entry = host.put(`k${i}`, `value ${i}`, i + 1);
      host.storage.damaged.add(FakeDisk.where(entry));
      keeper.readValue(`k${i}`, entry);
    }
    expect(keeper.repairing).toBe(value_repairs_max);
    expect(host.sent.length).toBe(value_repairs_max);
    keeper.invariants();
  });
});
