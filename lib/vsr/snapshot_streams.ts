/**
 * Which of storage's snapshot sources serves a checkpoint to snapshot clients (docs/PROTOCOL.md
 * §3.16, request_snapshot). A source holds a decoded copy of the checkpoint it serves, about as
 * large as the replica's own index, so at most snapshot_streams_max checkpoints are served at once;
 * each has a source of its own (Storage.readSyncChunk's `source`, 1..snapshot_streams_max), so two
 * clients reading different checkpoints do not reload each other's, and a peer's state sync keeps
 * its own (source 0). A stream is taken by the first request for its checkpoint, shared by every
 * client reading that checkpoint, and given back when its last chunk is served or once nobody
 * asked for a chunk of it for snapshot_stream_idle_ticks (a client that went away). Ticks only.
 */
import { assert } from "../util/assert.ts";
import { snapshot_stream_idle_ticks, snapshot_streams_max } from "../constants.ts";
import type { CheckpointId } from "./storage.ts";

interface Stream {
  id: CheckpointId;
  last_tick: number;
}

export class SnapshotStreams {
  private readonly streams: (Stream | null)[] = Array.from({ length: snapshot_streams_max }, () => null);

  /** The source (1..snapshot_streams_max) that serves `id` at tick `now`; null while every source
   * serves another checkpoint that was asked for within snapshot_stream_idle_ticks. */
  take(id: CheckpointId, now: number): number | null {
    assert(id.op > 0 && Number.isSafeInteger(now) && now >= 0, () => `snapshot stream of checkpoint ${id.op} at tick ${now}`);
    let free = -1;
    for (let i = 0; i < this.streams.length; i++) {
      const stream = this.streams[i]!;
      if (stream !== null && stream.id.op === id.op && stream.id.digest === id.digest && stream.id.checksum === id.checksum) {
        stream.last_tick = now;
        return i + 1;
      }
      if (free < 0 && (stream === null || now - stream.last_tick >= snapshot_stream_idle_ticks)) free = i;
    }
    if (free < 0) return null;
    this.streams[free] = { id, last_tick: now };
    return free + 1;
  }

  /** The last chunk of the stream `source` serves went out: its place is free (storage dropped its
   * copy). Another client still reading it takes a source again with its next request. */
  finished(source: number): void {
    assert(Number.isInteger(source) && source >= 1 && source <= this.streams.length, () => `snapshot source ${source}`);
    this.streams[source - 1] = null;
  }

  /** Checkpoints being served, for tests and status. */
  get serving(): number {
    return this.streams.filter((s) => s !== null).length;
  }
}
