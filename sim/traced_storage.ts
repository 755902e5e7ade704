/**
 * Wraps the replica's real Storage to tell the checker which prepares each completed flush made durable:
 * the ground truth for "a reply needs f+1 durable copies". Adds no behaviour of its own.
 */
import type { Message } from "../lib/net/codec.ts";
import type { ObjectStore, ValueLocation } from "../lib/store/object_store.ts";
import type { ClientTable } from "../lib/vsr/client_table.ts";
import type { CheckpointId, CheckpointMeta, Recovered, Storage, StoredBytes, SyncChunk, VsrState } from "../lib/vsr/storage.ts";
import type { FileStorage } from "../lib/storage/file_storage.ts";
import type { ReclaimView } from "../lib/storage/checkpoint_store.ts";

export class TracedStorage implements Storage {
  private written: [number, bigint][] = [];
  /** The prepares in the group of the flush in flight. */
  private flying: [number, bigint][] = [];
  /** The prepares the last successful flush made durable (the simulator aims faults at them). */
  last_flushed: [number, bigint][] = [];

  constructor(
    readonly inner: FileStorage,
    private readonly onFlushed: (prepares: [number, bigint][]) => void,
  ) {}

  recover(clients_max: number): Recovered {
    // Right after a restart the file system holds only durable data: whatever recovery finds
    // intact survived (a crash inside a flush can make writes durable without the flush returning).
    const recovered = this.inner.recover(clients_max);
    this.onFlushed(recovered.journal.filter((e) => !e.faulty).map((e) => [e.header.op, e.header.checksum]));
    return recovered;
  }
  writeState(state: VsrState): void {
    this.inner.writeState(state);
  }
  writePrepare(message: Message): void {
    this.inner.writePrepare(message);
    this.written.push([message.header.op, message.header.checksum]);
  }
  pending(): boolean {
    return this.inner.pending();
  }
  flushing(): boolean {
    return this.inner.flushing();
  }
  flushBegin(): readonly number[] {
    this.flying = this.written;
    this.written = [];
    return this.inner.flushBegin();
  }
  flushSynced(): readonly number[] | null {
    const next = this.inner.flushSynced();
    if (next !== null) return next;
    const group = this.flying;
    this.flying = [];
    if (group.length > 0) this.last_flushed = group;
    this.onFlushed(group);
    return null;
  }
  flushSyncInline(): void {
    this.inner.flushSyncInline();
  }
  readPrepare(op: number, checksum: bigint): Message | null {
    return this.inner.readPrepare(op, checksum);
  }
  prepareBodyLocation(op: number, checksum: bigint): ValueLocation | null {
    return this.inner.prepareBodyLocation(op, checksum);
  }
  readValue(stored: StoredBytes): Uint8Array | null {
    return this.inner.readValue(stored);
  }
  compactionCandidate(store: ObjectStore): number | null {
    return this.inner.compactionCandidate(store);
  }
  pinnedDeadBytes(store: ObjectStore): number {
    return this.inner.pinnedDeadBytes(store);
  }
  /** For the checker's reclaim invariant; the replica never calls it. */
  reclaimView(): ReclaimView {
    return this.inner.reclaimView();
  }
  writeValue(value: Uint8Array): ValueLocation {
    return this.inner.writeValue(value);
  }
  writeCheckpoint(checkpoint: CheckpointMeta, store: ObjectStore, clients: ClientTable): void {
    this.inner.writeCheckpoint(checkpoint, store, clients);
  }
  readSyncChunk(id: CheckpointId, position: number, size_max: number, source?: number): SyncChunk | null {
    return this.inner.readSyncChunk(id, position, size_max, source);
  }
  retains(id: CheckpointId): boolean {
    return this.inner.retains(id);
  }
  syncBegin(id: CheckpointId): void {
    this.inner.syncBegin(id);
  }
  syncApply(bytes: Uint8Array): boolean {
    return this.inner.syncApply(bytes);
  }
  syncFinish(clients_max: number): { store: ObjectStore; clients: ClientTable; checkpoint: CheckpointMeta } | null {
    return this.inner.syncFinish(clients_max);
  }
  syncAbort(): void {
    this.inner.syncAbort();
  }

  usedBytes(): number {
    return this.inner.usedBytes();
  }
  hasSpace(bytes: number): boolean {
    return this.inner.hasSpace(bytes);
  }
  close(): void {
    this.inner.close();
  }
}
