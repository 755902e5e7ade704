/**
 * A minimal replica above FileStorage, shared by the storage tests in lib/storage (file_storage,
 * checkpoint_store, segments, sync_stream): it journals batches of puts, executes and checkpoints
 * them, crashes and recovers, and checks what recovery returns against what it wrote.
 */
import { expect } from "bun:test";
import { FileStorage, type StorageOptions } from "../../lib/storage/file_storage.ts";
import { Command, Header, encode, finalize, type Message } from "../../lib/net/codec.ts";
import { decodeBatch, encodeBatch } from "../../lib/vsr/batch.ts";
import { ObjectStore, type ObjectEntry } from "../../lib/store/object_store.ts";
import { ClientTable, type ClientSession } from "../../lib/vsr/client_table.ts";
import { rootPrepare, stateDigest } from "../../lib/vsr/root.ts";
import type { CheckpointId, Recovered, RecoveredPrepare, VsrState } from "../../lib/vsr/storage.ts";
import { Operation, Result, decodeKeyRequest, encodeKeyRequest } from "../../lib/store/operations.ts";
import { executeWrite } from "../../lib/store/execute.ts";
import { keyFromBytes, keyToBytes } from "../../lib/store/keys.ts";
import { Prng } from "../../lib/util/prng.ts";
import { SimFs } from "../../sim/sim_fs.ts";

export const cluster = 0x7f5c1a5e2n;
export const replica_count = 3;
export const slots = 64;
export const interval = 16;
export const clients_max = 8;

export function options(o: Partial<StorageOptions> = {}): StorageOptions {
  return { cluster, replica: 0, replica_count, journal_slot_count: slots, segment_size_bytes: 4096, ...o };
}

export function segmentPath(id: number): string {
  return `journal/${id.toString().padStart(10, "0")}.seg`;
}

export function segmentFiles(fs: SimFs): number[] {
  return fs
    .readdir("journal")
    .filter((name) => name.endsWith(".seg"))
    .map((name) => Number(name.slice(0, 10)));
}

/** What the replica keeps of a checkpoint it took, to check a recovered or synced one against. */
export interface Snapshot {
  id: CheckpointId;
  anchor: Header;
  previous: CheckpointId;
  store: [string, ObjectEntry][];
  revision: number;
  sessions: [bigint, ClientSession][];
  values: Map<string, Uint8Array>;
  segments: Set<number>;
}

/**
 * A minimal replica above the storage: it prepares batches of puts, journals them, executes them
 * once flushed (locating values through prepareBodyLocation, as StateMachine.execute in
 * lib/vsr/state_machine.ts does), checkpoints every `interval` ops and publishes checkpoints
 * through writeState, and remembers everything it wrote to check what recovery returns. After a
 * crash, resume() continues from what recovery returned, as a restarted replica does.
 */
export class World {
  readonly fs: SimFs;
  storage: FileStorage;
  readonly root: Header;
  store = new ObjectStore();
  clients = new ClientTable(clients_max);
  op = 0;
  executed = 0;
  parent: bigint;
  /** The prepares of the current log, by op. */
  readonly prepares = new Map<number, Message>();
  /** Every prepare header ever written, by checksum (earlier lives' logs included). */
  readonly history = new Map<bigint, Header>();
  /** Segment each prepare of the current log was written to. */
  readonly segment_of = new Map<number, number>();
  /** Ops of the current log whose flush returned. */
  readonly flushed = new Set<number>();
  /** Ops and state of a flush that was interrupted by a crash. */
  inflight_ops: number[] = [];
  inflight_state: VsrState | null = null;
  /** The state of the last flush that returned. */
  durable_state: VsrState;
  state: VsrState;
  readonly snapshots = new Map<number, Snapshot>();
  /** Digest and values after each op of the current log (a shadow execution at prepare time). */
  readonly digest_at = new Map<number, bigint>();
  readonly values_at = new Map<number, Map<string, Uint8Array>>();
  private shadow_store = new ObjectStore();
  private shadow_clients = new ClientTable(clients_max);
  private request = 0;
  readonly client = 0xc11e47n;
  /** Whether checkpoints are published through the superblock once written. */
  publish = true;

  constructor(
    readonly prng: Prng,
    readonly opts: StorageOptions = options(),
    readonly keys = 12,
    readonly value_max = 900,
  ) {
    this.fs = new SimFs(prng.fork());
    this.root = rootPrepare(opts.cluster, opts.replica_count);
    this.parent = this.root.checksum;
    const id: CheckpointId = { op: 0, digest: stateDigest(this.store, this.clients), checksum: this.root.checksum };
    this.snapshots.set(0, {
      id,
      anchor: this.root,
      previous: id,
      store: [],
      revision: 0,
      sessions: [],
      values: new Map(),
      segments: new Set(),
    });
    this.digest_at.set(0, id.digest);
    this.values_at.set(0, new Map());
    this.state = { incarnation: 7, view: 0, log_view: 0, commit_max: 0, view_headers: [], checkpoint: id };
    this.storage = new FileStorage(this.fs, opts);
    const recovered = this.storage.recover(clients_max);
    expect(recovered.state).toBeNull();
    this.storage.writeState(this.state);
    this.storage.flush();
    this.durable_state = this.state;
  }

  get checkpoint(): CheckpointId {
    return this.state.checkpoint;
  }

  get values(): Map<string, Uint8Array> {
    return this.values_at.get(this.executed)!;
  }

  reopen(o: Partial<StorageOptions> = {}): Recovered {
    this.storage = new FileStorage(this.fs, { ...this.opts, ...o });
    return this.storage.recover(clients_max);
  }

  randomValue(): Uint8Array {
    const value = new Uint8Array(this.prng.int(this.value_max + 1));
    for (let i = 0; i < value.length; i++) value[i] = this.prng.pick([0x00, 0xff, this.prng.int(256)]);
    return value;
  }

  nextPrepare(): Message {
    const op = this.op + 1;
    const entries: { client: bigint; session: number; request: number; operation: number; body: Uint8Array }[] = [];
    if (op === 1) {
      entries.push({ client: this.client, session: 0, request: ++this.request, operation: Operation.register, body: new Uint8Array(0) });
    } else {
      const present = new Set([...this.shadow_store.all()].map(([k]) => k));
      for (let i = this.prng.range(1, 3); i > 0; i--) {
        const key = `key/${this.prng.int(this.keys)}\u0000\u00ff`;
        if (present.has(key) && this.prng.chance(0.15)) {
          // Deletes advance the revision without leaving an entry.
          entries.push({
            client: this.client,
            session: 1,
            request: ++this.request,
            operation: Operation.delete,
            body: encodeKeyRequest(keyToBytes(key), null),
          });
          present.delete(key);
        } else {
          entries.push({
            client: this.client,
            session: 1,
            request: ++this.request,
            operation: Operation.put,
            body: encodeKeyRequest(keyToBytes(key), this.randomValue()),
          });
          present.add(key);
        }
      }
    }
    const h = new Header();
    h.command = Command.prepare;
    h.cluster = this.opts.cluster;
    h.replica_count = this.opts.replica_count;
    h.op = op;
    h.parent = this.parent;
    h.commit = this.executed;
    h.timestamp = op * 1000 + this.prng.int(1000);
    h.view = this.state.view;
    h.request = entries.length;
    const message = finalize(h, encodeBatch(entries));
    this.op = op;
    this.parent = h.checksum;
    this.prepares.set(op, message);
    this.history.set(h.checksum, h);
    // Where the log leads, whatever the disk does.
    applyPrepare(message, { segment: 0, offset: 0 }, this.shadow_store, this.shadow_clients);
    this.digest_at.set(op, stateDigest(this.shadow_store, this.shadow_clients));
    this.values_at.set(op, valuesAfter(this.values_at.get(op - 1)!, message));
    return message;
  }

  write(count: number): number[] {
    const ops: number[] = [];
    for (let i = 0; i < count; i++) {
      const message = this.nextPrepare();
      this.storage.writePrepare(message);
      this.segment_of.set(message.header.op, this.storage.prepareBodyLocation(message.header.op, message.header.checksum)!.segment);
      ops.push(message.header.op);
    }
    return ops;
  }

  writeState(state: VsrState): void {
    this.state = state;
    this.storage.writeState(state);
    this.inflight_state = state;
  }

  flush(ops: number[]): void {
    this.inflight_ops = ops;
    this.storage.flush();
    for (const op of ops) this.flushed.add(op);
    this.inflight_ops = [];
    if (this.inflight_state !== null) this.durable_state = this.inflight_state;
    this.inflight_state = null;
  }

  /** Executes flushed ops in order, checkpointing every interval. */
  execute(): void {
    while (this.flushed.has(this.executed + 1)) {
      const op = this.executed + 1;
      const message = this.prepares.get(op)!;
      const location = this.storage.prepareBodyLocation(op, message.header.checksum);
      expect(location).not.toBeNull();
      applyPrepare(message, location!, this.store, this.clients);
      this.executed = op;
      expect(stateDigest(this.store, this.clients)).toBe(this.digest_at.get(op)!);
      if (op % interval === 0) this.takeCheckpoint();
    }
  }

  takeCheckpoint(): void {
    const op = this.executed;
    const anchor = this.prepares.get(op)!.header;
    const id: CheckpointId = { op, digest: stateDigest(this.store, this.clients), checksum: anchor.checksum };
    const previous = this.snapshots.get(op - interval)!.id;
    this.storage.writeCheckpoint({ id, anchor, previous }, this.store, this.clients);
    this.snapshots.set(op, {
      id,
      anchor,
      previous,
      store: [...this.store.all()].map(([k, e]) => [k, { ...e }]),
      revision: this.store.revision,
      sessions: this.clients.entries().map(([c, s]) => [c, { ...s, reply: { ...s.reply } }]),
      values: this.values,
      segments: segmentsOf(this.store),
    });
    if (!this.publish) return;
    this.writeState({ ...this.state, commit_max: op, checkpoint: id, view_headers: this.suffix() });
    this.flush([]);
  }

  /** Headers of the last few prepares, as a replica's superblock carries them. */
  suffix(): Header[] {
    const headers: Header[] = [];
    for (let op = Math.max(1, this.op - 7); op <= this.op; op++) headers.push(this.prepares.get(op)!.header);
    return headers;
  }

  /** Journals `count` prepares, flushes them and executes them. */
  step(count: number): void {
    const ops = this.write(count);
    this.flush(ops);
    this.execute();
  }

  run(until_op: number): void {
    while (this.op < until_op) this.step(this.prng.range(1, 4));
  }

  /** Continues from what recovery returned, as a restarted replica: executes the journal from the
   * checkpoint along the hash chain and drops the rest of its log (it prepares new ops there). */
  resume(recovered: Recovered): void {
    const state = recovered.state!;
    this.state = this.durable_state = state;
    this.inflight_ops = [];
    this.inflight_state = null;
    const journal = journalByOp(recovered);
    let op = state.checkpoint.op;
    let parent = state.checkpoint.checksum;
    for (;;) {
      const entry = chained(journal, op + 1, parent);
      if (entry === undefined || entry.faulty) break;
      op += 1;
      parent = entry.header.checksum;
      expect(parent).toBe(this.prepares.get(op)!.header.checksum);
    }
    this.store = recovered.store;
    this.clients = recovered.clients;
    this.executed = state.checkpoint.op;
    this.op = op;
    this.parent = parent;
    for (const map of [this.prepares, this.segment_of, this.digest_at, this.values_at])
      for (const o of [...map.keys()]) if (o > op) map.delete(o);
    for (const o of [...this.flushed]) if (o > op) this.flushed.delete(o);
    // What recovery found is durable, even if its flush never returned.
    for (let o = state.checkpoint.op + 1; o <= op; o++) this.flushed.add(o);
    for (const o of [...this.snapshots.keys()]) if (o > state.checkpoint.op) this.snapshots.delete(o);
    this.shadow_store = new ObjectStore();
    this.shadow_clients = new ClientTable(clients_max);
    for (let o = 1; o <= op; o++) applyPrepare(this.prepares.get(o)!, { segment: 0, offset: 0 }, this.shadow_store, this.shadow_clients);
    this.request = this.shadow_clients.get(this.client)?.request ?? 0;
    // Execute the journal from the checkpoint (taking the checkpoints it passes).
    this.execute();
    expect(this.executed).toBe(op);
  }
}

export function segmentsOf(store: ObjectStore): Set<number> {
  const segments = new Set<number>();
  for (const [, entry] of store.all()) segments.add(entry.segment);
  return segments;
}

export function valuesAfter(before: Map<string, Uint8Array>, message: Message): Map<string, Uint8Array> {
  const values = new Map(before);
  for (const entry of decodeBatch(message.body)!) {
    if (entry.operation === Operation.put) {
      const request = decodeKeyRequest(entry.body, true)!;
      values.set(keyFromBytes(request.key), request.value.slice());
    } else if (entry.operation === Operation.delete) {
      values.delete(keyFromBytes(decodeKeyRequest(entry.body, false)!.key));
    }
  }
  return values;
}

/** Executes a prepare's batch as the replica does. */
export function applyPrepare(
  message: Message,
  location: { segment: number; offset: number },
  store: ObjectStore,
  clients: ClientTable,
): void {
  const h = message.header;
  for (const entry of decodeBatch(message.body)!) {
    if (entry.operation === Operation.register) {
      clients.register(entry.client, h.op, entry.request, {
        op: h.op,
        timestamp: h.timestamp,
        operation: entry.operation,
        result: Result.ok,
        body: new Uint8Array(0),
      });
      continue;
    }
    const result = executeWrite(store, h.timestamp, entry.operation, entry.body, {
      segment: location.segment,
      offset: location.offset + entry.body_offset,
    });
    expect(result.result).toBe(Result.ok);
    clients.record(entry.client, h.op, entry.request, {
      op: h.op,
      timestamp: h.timestamp,
      operation: entry.operation,
      result: result.result,
      body: result.body,
    });
  }
}

/** Recovered prepares by op: usually one; several when copies of an op from different lives are
 * on disk (recovery reports every copy it finds; the replica picks by its log). Never the same
 * prepare twice. */
export function journalByOp(recovered: Recovered): Map<number, RecoveredPrepare[]> {
  const map = new Map<number, RecoveredPrepare[]>();
  for (const entry of recovered.journal) {
    let list = map.get(entry.header.op);
    if (list === undefined) map.set(entry.header.op, (list = []));
    expect(list.some((e) => e.header.checksum === entry.header.checksum)).toBe(false);
    list.push(entry);
  }
  return map;
}

/** The recovered copy of op that continues the hash chain from `parent`. */
export function chained(journal: Map<number, RecoveredPrepare[]>, op: number, parent: bigint): RecoveredPrepare | undefined {
  return journal.get(op)?.find((e) => e.header.parent === parent);
}

export function expectSameMessage(actual: Message | null, expected: Message): void {
  expect(actual).not.toBeNull();
  expect(encode(actual!)).toEqual(encode(expected));
}

export function expectValues(storage: FileStorage, store: ObjectStore, values: Map<string, Uint8Array>): void {
  expect(store.count).toBe(values.size);
  for (const [key, entry] of store.all()) {
    const value = storage.readValue(entry);
    expect(value).not.toBeNull();
    expect(value!).toEqual(values.get(key)!);
  }
}

/** Checks a recovered checkpoint against what the replica took. */
export function expectCheckpoint(w: World, recovered: Recovered, storage: FileStorage): void {
  const id = recovered.state!.checkpoint;
  const snapshot = w.snapshots.get(id.op)!;
  expect(snapshot).toBeDefined();
  expect(id).toEqual(snapshot.id);
  expect(recovered.checkpoint!.id).toEqual(snapshot.id);
  expect(recovered.checkpoint!.anchor).toEqual(snapshot.anchor);
  expect(recovered.checkpoint!.previous).toEqual(snapshot.previous);
  expect([...recovered.store.all()]).toEqual(snapshot.store);
  expect(recovered.store.revision).toBe(snapshot.revision);
  expect(recovered.clients.entries()).toEqual(snapshot.sessions);
  expect(stateDigest(recovered.store, recovered.clients)).toBe(id.digest);
  expectValues(storage, recovered.store, snapshot.values);
}

/**
 * Checks everything recovery must guarantee after a crash: the durable (or the interrupted) state;
 * its checkpoint; every flushed prepare after it intact and readable; prepares of an interrupted
 * flush absent or intact; nothing else, nothing garbage. Then replays the journal from the
 * checkpoint along the hash chain, as the replica does, and checks it reaches the state the replica
 * had (digest and every value read back from disk).
 */
export function checkRecovery(w: World, recovered: Recovered): void {
  const state = recovered.state!;
  expect(state).not.toBeNull();
  const candidates = [w.durable_state, ...(w.inflight_state === null ? [] : [w.inflight_state])];
  expect(candidates.some((s) => Bun.deepEquals(s, state))).toBe(true);
  const storage = w.storage;
  expectCheckpoint(w, recovered, storage);
  const journal = journalByOp(recovered);
  const checkpoint_op = state.checkpoint.op;
  for (const [op, entries] of journal) {
    for (const entry of entries) {
      // Never garbage: every header recovery reports is one the replica wrote for that op.
      expect(w.history.get(entry.header.checksum)).toEqual(entry.header);
      if (op <= checkpoint_op) continue;
      expect(entry.faulty).toBe(false);
      // Reported intact: readable, whole. (A prepare written in a flush that never returned, or
      // in an earlier life, may have reached the disk anyway: then it is durable, and reported.)
      const current = w.prepares.get(op);
      if (current !== undefined && current.header.checksum === entry.header.checksum) {
        expectSameMessage(storage.readPrepare(op, entry.header.checksum), current);
      } else {
        const read = storage.readPrepare(op, entry.header.checksum);
        expect(read?.header).toEqual(entry.header);
      }
    }
  }
  for (const op of w.flushed) {
    if (op > checkpoint_op) expect(journal.get(op)?.some((e) => e.header.checksum === w.prepares.get(op)!.header.checksum)).toBe(true);
  }
  // Replay from the checkpoint along the hash chain.
  let op = checkpoint_op;
  let parent = state.checkpoint.checksum;
  for (;;) {
    const entry = chained(journal, op + 1, parent);
    if (entry === undefined) break;
    op += 1;
    parent = entry.header.checksum;
    expect(parent).toBe(w.prepares.get(op)!.header.checksum);
    const message = storage.readPrepare(op, parent)!;
    const location = storage.prepareBodyLocation(op, parent)!;
    applyPrepare(message, location, recovered.store, recovered.clients);
  }
  expect(op).toBeGreaterThanOrEqual(Math.max(checkpoint_op, ...[...w.flushed].filter((o) => o > checkpoint_op)));
  expect(stateDigest(recovered.store, recovered.clients)).toBe(w.digest_at.get(op)!);
  expectValues(storage, recovered.store, w.values_at.get(op)!);
}

export const SEEDS = 60;
