import { expect, test } from "bun:test";
import { snapshot_stream_idle_ticks, snapshot_streams_max } from "../constants.ts";
import { SnapshotStreams } from "./snapshot_streams.ts";

const id = (op: number) => ({ op, digest: BigInt(op) * 3n, checksum: BigInt(op) * 5n });

test("one source per checkpoint, shared by its readers; busy beyond the limit until one ends or idles", () => {
  expect(snapshot_streams_max).toBe(2);
  const streams = new SnapshotStreams();
  expect(streams.take(id(8), 0)).toBe(1);
  expect(streams.take(id(16), 1)).toBe(2);
  expect(streams.take(id(8), 2)).toBe(1); // another reader of the same checkpoint
  expect(streams.take({ ...id(8), digest: 1n }, 2)).toBeNull(); // the same op, another state
  expect(streams.take(id(24), 3)).toBeNull();
  streams.finished(1);
  expect(streams.serving).toBe(1);
  expect(streams.take(id(24), 4)).toBe(1);
  // 16 was last asked for at tick 1: idle long enough, its place goes to another checkpoint.
  expect(streams.take(id(32), snapshot_stream_idle_ticks)).toBeNull();
  expect(streams.take(id(32), snapshot_stream_idle_ticks + 1)).toBe(2);
  expect(streams.serving).toBe(2);
});
