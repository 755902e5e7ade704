/**
 * The Storage interface the replica uses (docs/STORAGE.md §12). lib/storage implements it over a
 * FileSystem; the replica never sees files. Writes are queued and become durable only through a
 * flush the driver runs as events (docs/STORAGE.md §10.9): begin takes the queued writes as a
 * group and names the files to fdatasync; the driver syncs them (on the thread pool in production,
 * as a later event in the simulator) and delivers synced, step after step, until the group is
 * completed. The replica acts on durability only at completion, which is how "persist before you
 * promise" is enforced; nothing here waits.
 */
import { assert } from "../util/assert.ts";
import type { Header, Message } from "../net/codec.ts";
import type { ObjectEntry, ObjectStore, ValueLocation } from "../store/object_store.ts";
import type { ClientTable } from "./client_table.ts";

/**
 * The no-space signal of this port: a write that fails because the disk is full throws an Error
 * whose `code` is "ENOSPC" (lib/storage's FsError is one; the simulated file system throws the
 * same). The replica treats it as a condition to wait out (refuse writes, keep serving reads) and
 * every other error as fatal. Declared here so lib/vsr never imports lib/storage.
 */
export function isNoSpace(error: unknown): error is Error & { code: "ENOSPC" } {
  return error instanceof Error && (error as Error & { code?: unknown }).code === "ENOSPC";
}

/** A checkpoint: the state after executing `op`, its digest over the logical state, and the
 * checksum of the prepare at `op` (the anchor the hash chain continues from). */
export interface CheckpointId {
  op: number;
  digest: bigint;
  checksum: bigint;
}

/** A checkpoint with what a replica needs to continue from it: the header of the prepare at its
 * op (the log's anchor) and the id of the checkpoint one interval before it (which the next
 * prepares name, lib/vsr/checkpoint.ts). */
export interface CheckpointMeta {
  id: CheckpointId;
  anchor: Header;
  previous: CheckpointId;
}

/** What the superblock holds for the replica. */
export interface VsrState {
  /** The cluster incarnation this replica belongs to (random, chosen when the cluster formed; 0
   * for a directory formatted before incarnations existed). Never changes once formed. */
  incarnation: number;
  view: number;
  /** The latest view in which this replica's log was in normal status. */
  log_view: number;
  commit_max: number;
  /** The log suffix log_view vouches for, ascending by op, persisted atomically with it. */
  view_headers: Header[];
  checkpoint: CheckpointId;
  /** The replica lost the state of its checkpoint and is recovering it from peers: until a state
   * without this flag is written, every open recovers again (its journal is being rewritten and
   * no longer holds what it acknowledged before). */
  recovering?: boolean;
}

/** The highest op the persisted state vouches for: the last of its view headers, or its
 * checkpoint. Above it, only prepares of log_view belong to the log (loadJournal, and the ring
 * restore that must not contradict it). */
export function vouchedMax(state: VsrState): number {
  // The state comes from our own superblock (checksummed) or from the replica itself: an unsorted
  // suffix would make the last header the wrong bound, and loadJournal would drop vouched ops.
  for (let i = 1; i < state.view_headers.length; i++) {
    assert(
      state.view_headers[i - 1]!.op < state.view_headers[i]!.op,
      () => `view headers not ascending at ${i}: op ${state.view_headers[i - 1]!.op} then ${state.view_headers[i]!.op}`,
    );
  }
  assert(state.log_view <= state.view, () => `log_view ${state.log_view} above view ${state.view}`);
  const max = state.view_headers.length > 0 ? state.view_headers[state.view_headers.length - 1]!.op : state.checkpoint.op;
  assert(Number.isSafeInteger(max) && max >= 0, () => `vouched max ${max}`);
  return max;
}

export interface RecoveredPrepare {
  header: Header;
  /** The header is known (its redundant copy is intact) but the prepare is damaged: it was
   * acknowledged, so it must be repaired from peers, never treated as absent. */
  faulty: boolean;
}

export interface Recovered {
  /** null: a never-formatted data directory. */
  state: VsrState | null;
  /** Journal entries found on disk (any order, any op; the replica filters them). */
  journal: RecoveredPrepare[];
  /** Journal slots whose record does not read back (torn, corrupted, unreadable, or the whole
   * ring lost), and that no unique durable prepare could restore: the op each held is unknown, and
   * it may have been acknowledged, so the replica must not vote to discard the op of its window
   * that maps to such a slot. Damage is persisted: a damaged slot reads back damaged at every
   * later open until a valid record is written into it. */
  damaged_slots: number[];
  /** The checkpoint at state.checkpoint (null when blank, or when its file is damaged: the
   * replica must then recover its state from peers, keeping the promises of `state`). */
  checkpoint: CheckpointMeta | null;
  /** state is null because the superblock was found older than what the journal shows was
   * written after it (several copies damaged): the replica's promises are lost with it. */
  superblock_lost?: boolean;
  /** The object namespace and client table at state.checkpoint. */
  store: ObjectStore;
  clients: ClientTable;
}

/** One piece of a checkpoint's contents, streamed to a replica that state-syncs. */
export interface SyncChunk {
  /** Serialized records (docs/STORAGE.md §Sync stream); the receiver applies them in order. */
  bytes: Uint8Array;
  /** Position to ask for next; null when this was the last chunk. */
  next: number | null;
}

/** What a read of bytes at rest needs: an inline entry and a block (ObjectStore.large) both are one. */
export type StoredBytes = Pick<ObjectEntry, "segment" | "offset" | "size" | "checksum">;

export interface Storage {
  /** Reads the superblock, checkpoint and journal. Called once, at open. */
  recover(clients_max: number): Recovered;
  /** Queues a superblock write of the whole VSR state. */
  writeState(state: VsrState): void;
  /** Queues a prepare (header + body) for the journal. */
  writePrepare(message: Message): void;
  /** Whether there are queued writes that no flush has taken yet. */
  pending(): boolean;
  /** Whether a flush has begun and not completed (at most one is in flight). */
  flushing(): boolean;
  /** Takes every queued write as the group in flight and issues what may be issued now; returns
   * the files (descriptors) the driver must fdatasync before it calls flushSynced. Throws on an I/O
   * error: the replica must then stop. */
  flushBegin(): readonly number[];
  /** Every fdatasync of the files last returned succeeded: issues the group's next step, in the
   * order that keeps every acknowledgement true at a crash, and returns the files it needs synced;
   * null when the group is durable (completed). */
  flushSynced(): readonly number[] | null;
  /** Runs the fdatasyncs of the step in flight on the calling thread (the driver then calls
   * flushSynced). Throws on an I/O error, which is never retried. */
  flushSyncInline(): void;
  /** A journaled prepare with this op and checksum, verified; null if absent or damaged. */
  readPrepare(op: number, checksum: bigint): Message | null;
  /** Where the body of that prepare starts on disk (values are located inside it). */
  prepareBodyLocation(op: number, checksum: bigint): ValueLocation | null;
  /** A value's or a block's bytes (whatever names where they are, how many, and their
   * checksum), checksum-verified; null if unreadable or damaged. */
  readValue(stored: StoredBytes): Uint8Array | null;
  /** A segment worth compacting: one that only values keep alive and that is mostly dead
   * (docs/STORAGE.md §10.6); null if none. */
  compactionCandidate(store: ObjectStore): number | null;
  /** Bytes in segments that hold no value or block `store` references but are not unlinked yet,
   * because a retained checkpoint lists them or the horizon keeps their prepares
   * (docs/STORAGE.md §10.5; the primary's idle nudge, docs/LARGE_OBJECTS.md §8). */
  pinnedDeadBytes(store: ObjectStore): number;
  /** Writes a value repaired from a peer into a segment (durable at the next flush); returns
   * where it now lives. Throws the no-space signal (isNoSpace) when the disk is full. */
  writeValue(value: Uint8Array): ValueLocation;
  /** Writes a checkpoint's data files; the next flush makes them durable before its superblock
   * step (docs/STORAGE.md §10.3). It takes effect once a writeState naming it is flushed; until
   * then the previous checkpoint stays valid. */
  writeCheckpoint(checkpoint: CheckpointMeta, store: ObjectStore, clients: ClientTable): void;
  /** Reads part of a retained checkpoint, for a peer that is syncing (source 0) or a snapshot
   * client (source 1..snapshot_streams_max, docs/PROTOCOL.md §3.16): each source keeps its own
   * decoded copy of the checkpoint it serves, and a snapshot source drops it after serving its
   * last chunk. null if not retained, the position is past the end, or a value is damaged here. */
  readSyncChunk(id: CheckpointId, position: number, size_max: number, source?: number): SyncChunk | null;
  /** Whether this checkpoint is retained here (it can be served). */
  retains(id: CheckpointId): boolean;
  /** Begins receiving a checkpoint by state sync (discarding any earlier partial sync). */
  syncBegin(id: CheckpointId): void;
  /** Applies one received chunk; false if the chunk does not parse. */
  syncApply(bytes: Uint8Array): boolean;
  /** Finishes a sync: returns the namespace, client table and anchor header (null if the stream
   * was incomplete). The caller verifies the digest, then writes the checkpoint with
   * writeCheckpoint; the flush after it makes the received values durable with its file. */
  syncFinish(clients_max: number): { store: ObjectStore; clients: ClientTable; checkpoint: CheckpointMeta } | null;
  /** Drops a sync that will not be finished (a view change, a full disk, no peer serving it): its
   * segments are deleted now, not when the next sync begins, which may be never. */
  syncAbort(): void;
  /** Bytes of data files and journal, for status. */
  usedBytes(): number;
  /** Whether at least `bytes` more can be written (probed after the disk was found full). */
  hasSpace(bytes: number): boolean;
  /** Releases every open file (the replica is being stopped or reopened). */
  close(): void;
}
