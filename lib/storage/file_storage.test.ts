import { describe, expect, test } from "bun:test";
import { FileStorage, ForeignDataError, type StorageOptions } from "./file_storage.ts";
import { checkpointPath } from "./checkpoint_file.ts";
import { Command, Header, encode, finalize, type Message } from "../net/codec.ts";
import { decodeBatch, encodeBatch } from "../vsr/batch.ts";
import { ObjectStore, type ObjectEntry } from "../store/object_store.ts";
import { ClientTable, type ClientSession } from "../vsr/client_table.ts";
import { rootPrepare, stateDigest } from "../vsr/root.ts";
import type { CheckpointId, Recovered, RecoveredPrepare, SyncChunk, VsrState } from "../vsr/storage.ts";
import { Operation, Result, decodeKeyRequest, encodeKeyRequest } from "../store/operations.ts";
import { executeWrite } from "../store/execute.ts";
import { keyFromBytes, keyToBytes } from "../store/keys.ts";
import { header_size } from "../constants.ts";
import { Prng } from "../util/prng.ts";
import { SECTOR_SIZE, SimFs, SimulatedCrash } from "../../sim/sim_fs.ts";

const cluster = 0x7f5c1a5e2n;
const replica_count = 3;
const slots = 64;
const interval = 16;
const clients_max = 8;

function options(o: Partial<StorageOptions> = {}): StorageOptions {
  return { cluster, replica: 0, replica_count, journal_slot_count: slots, segment_size_bytes: 4096, ...o };
}

function segmentPath(id: number): string {
  return `journal/${id.toString().padStart(10, "0")}.seg`;
}

function segmentFiles(fs: SimFs): number[] {
  return fs
    .readdir("journal")
    .filter((name) => name.endsWith(".seg"))
    .map((name) => Number(name.slice(0, 10)));
}

/** What the replica keeps of a checkpoint it took, to check a recovered or synced one against. */
interface Snapshot {
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
 * once flushed (locating values through prepareBodyLocation, as lib/vsr/replica.ts does),
 * checkpoints every `interval` ops and publishes checkpoints through writeState, and remembers
 * everything it wrote to check what recovery returns. After a crash, resume() continues from what
 * recovery returned, as a restarted replica does.
 */
class World {
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
    this.snapshots.set(0, { id, anchor: this.root, previous: id, store: [], revision: 0, sessions: [], values: new Map(), segments: new Set() });
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
          entries.push({ client: this.client, session: 1, request: ++this.request, operation: Operation.delete, body: encodeKeyRequest(keyToBytes(key), null) });
          present.delete(key);
        } else {
          entries.push({ client: this.client, session: 1, request: ++this.request, operation: Operation.put, body: encodeKeyRequest(keyToBytes(key), this.randomValue()) });
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
    for (const map of [this.prepares, this.segment_of, this.digest_at, this.values_at]) for (const o of [...map.keys()]) if (o > op) map.delete(o);
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

function segmentsOf(store: ObjectStore): Set<number> {
  const segments = new Set<number>();
  for (const [, entry] of store.all()) segments.add(entry.segment);
  return segments;
}

function valuesAfter(before: Map<string, Uint8Array>, message: Message): Map<string, Uint8Array> {
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
function applyPrepare(message: Message, location: { segment: number; offset: number }, store: ObjectStore, clients: ClientTable): void {
  const h = message.header;
  for (const entry of decodeBatch(message.body)!) {
    if (entry.operation === Operation.register) {
      clients.register(entry.client, h.op, entry.request, { op: h.op, timestamp: h.timestamp, operation: entry.operation, result: Result.ok, body: new Uint8Array(0) });
      continue;
    }
    const result = executeWrite(store, h.timestamp, entry.operation, entry.body, { segment: location.segment, offset: location.offset + entry.body_offset });
    expect(result.result).toBe(Result.ok);
    clients.record(entry.client, h.op, entry.request, { op: h.op, timestamp: h.timestamp, operation: entry.operation, result: result.result, body: result.body });
  }
}

/** Recovered prepares by op: usually one; several when copies of an op from different lives are
 * on disk (recovery reports every copy it finds; the replica picks by its log). Never the same
 * prepare twice. */
function journalByOp(recovered: Recovered): Map<number, RecoveredPrepare[]> {
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
function chained(journal: Map<number, RecoveredPrepare[]>, op: number, parent: bigint): RecoveredPrepare | undefined {
  return journal.get(op)?.find((e) => e.header.parent === parent);
}

function expectSameMessage(actual: Message | null, expected: Message): void {
  expect(actual).not.toBeNull();
  expect(encode(actual!)).toEqual(encode(expected));
}

function expectValues(storage: FileStorage, store: ObjectStore, values: Map<string, Uint8Array>): void {
  expect(store.count).toBe(values.size);
  for (const [key, entry] of store.all()) {
    const value = storage.readValue(entry);
    expect(value).not.toBeNull();
    expect(value!).toEqual(values.get(key)!);
  }
}

/** Checks a recovered checkpoint against what the replica took. */
function expectCheckpoint(w: World, recovered: Recovered, storage: FileStorage): void {
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
function checkRecovery(w: World, recovered: Recovered): void {
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

const SEEDS = 60;

describe("FileStorage: blank directories and identity", () => {
  test("a blank directory recovers as never formatted, and a formatted one with its state", () => {
    const w = new World(new Prng(1));
    const recovered = w.reopen();
    expect(recovered.state).toEqual(w.state);
    expect(recovered.journal).toEqual([]);
    expect(recovered.checkpoint!.anchor).toEqual(w.root);
    expect(recovered.store.count).toBe(0);
    expect(recovered.clients.size).toBe(0);
  });

  test("a directory of another cluster, replica or replica count throws ForeignDataError and is left untouched", () => {
    const w = new World(new Prng(2));
    w.run(20);
    const before = w.fs.volatileSnapshot();
    for (const other of [{ cluster: cluster + 1n }, { replica: 1 }, { replica_count: 5 }]) {
      expect(() => w.reopen(other)).toThrow(ForeignDataError);
      expect(w.fs.volatileSnapshot()).toEqual(before);
    }
    // The right identity still opens it.
    w.fs.crash(w.prng);
    checkRecovery(w, w.reopen());
  });

  test("a crash while formatting leaves a blank directory or the formatted one", () => {
    const outcomes = { blank: 0, formatted: 0 };
    for (let seed = 1; seed <= 30; seed++) {
      const fs = new SimFs(new Prng(seed));
      const storage = new FileStorage(fs, options());
      expect(storage.recover(clients_max).state).toBeNull();
      const root = rootPrepare(cluster, replica_count);
      const state: VsrState = { incarnation: 7, view: 0, log_view: 0, commit_max: 0, view_headers: [], checkpoint: { op: 0, digest: 1n, checksum: root.checksum } };
      storage.writeState(state);
      fs.armCrash(1 + (seed % 6));
      expect(() => storage.flush()).toThrow(SimulatedCrash);
      const reopened = new FileStorage(fs, options());
      const recovered = reopened.recover(clients_max);
      if (recovered.state === null) {
        outcomes.blank += 1;
        // Blank again: formatting can simply be retried.
        expect(recovered.journal).toEqual([]);
        reopened.writeState(state);
        reopened.flush();
        expect(new FileStorage(fs, options()).recover(clients_max).state).toEqual(state);
      } else {
        outcomes.formatted += 1;
        expect(recovered.state).toEqual(state);
      }
    }
    expect(outcomes.blank).toBeGreaterThan(0);
    expect(outcomes.formatted).toBeGreaterThan(0);
  });
});

describe("FileStorage: journal durability across crashes", () => {
  test("every flushed prepare is recovered intact; unflushed ones are absent or intact", () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const w = new World(new Prng(seed));
      w.run(w.prng.range(1, 120));
      // Some prepares journaled but never flushed.
      const unflushed = w.write(w.prng.int(5));
      w.fs.crash(w.prng);
      const recovered = w.reopen();
      const journal = journalByOp(recovered);
      for (const op of unflushed) {
        for (const entry of journal.get(op) ?? []) {
          expect(entry.header).toEqual(w.prepares.get(op)!.header);
          expectSameMessage(w.storage.readPrepare(op, entry.header.checksum), w.prepares.get(op)!);
        }
        const read = w.storage.readPrepare(op, w.prepares.get(op)!.header.checksum);
        if (read !== null) expectSameMessage(read, w.prepares.get(op)!);
      }
      w.inflight_ops = unflushed;
      checkRecovery(w, recovered);
    }
  });

  test("a crash at any point of any write leaves the last durable state or the one being written, never garbage", () => {
    let crashes_in_flush = 0;
    let new_states = 0;
    for (let seed = 1; seed <= SEEDS * 2; seed++) {
      const prng = new Prng(seed);
      const w = new World(prng);
      w.run(prng.int(100));
      w.fs.armCrash(1 + prng.int(40));
      try {
        w.run(w.op + 60);
        w.fs.disarmCrash();
        w.fs.crash(prng);
      } catch (error) {
        if (!(error instanceof SimulatedCrash)) throw error;
        if (w.inflight_ops.length > 0 || w.inflight_state !== null) crashes_in_flush += 1;
      }
      const recovered = w.reopen();
      if (w.inflight_state !== null && Bun.deepEquals(recovered.state, w.inflight_state)) new_states += 1;
      checkRecovery(w, recovered);
    }
    // The crash points land inside flushes, and some interrupted superblock writes did take effect.
    expect(crashes_in_flush).toBeGreaterThan(SEEDS / 2);
    expect(new_states).toBeGreaterThan(0);
  });

  test("a replica's lifetime of crashes and restarts loses nothing that was flushed", () => {
    const seen = { lives: 0, interrupted: 0, checkpoints: 0 };
    for (let seed = 1; seed <= 40; seed++) {
      const prng = new Prng(seed);
      const w = new World(prng);
      for (let life = 0; life < 6; life++) {
        // Crash inside a write (as the simulator arms it) or between two operations.
        const armed = prng.chance(0.7);
        if (armed) w.fs.armCrash(1 + prng.int(30));
        try {
          w.run(w.op + prng.range(5, 60));
          w.fs.disarmCrash();
          // Some prepares journaled but not flushed when the power goes.
          w.write(prng.int(4));
          w.fs.crash(prng);
        } catch (error) {
          if (!(error instanceof SimulatedCrash)) throw error;
          seen.interrupted += 1;
        }
        const recovered = w.reopen();
        checkRecovery(w, recovered);
        w.resume(w.reopen());
        seen.lives += 1;
      }
      seen.checkpoints += w.checkpoint.op / interval;
    }
    expect(seen.interrupted).toBeGreaterThan(seen.lives / 3);
    expect(seen.checkpoints).toBeGreaterThan(100);
  });

  test("a prepare larger than a segment gets a segment of its own", () => {
    const w = new World(new Prng(3), options(), 4, 20000);
    w.run(40);
    w.fs.crash(w.prng);
    checkRecovery(w, w.reopen());
  });

  test("a prepare whose header is damaged is faulty; a damaged prepare is never returned", () => {
    const seen = { faulty: 0, body_only: 0 };
    for (let seed = 1; seed <= 30; seed++) {
      const w = new World(new Prng(seed));
      w.run(12);
      const locations = new Map<number, { path: string; offset: number }>();
      for (let op = 1; op <= w.op; op++) {
        locations.set(op, { path: segmentPath(w.segment_of.get(op)!), offset: w.storage.prepareBodyLocation(op, w.prepares.get(op)!.header.checksum)!.offset - header_size });
      }
      const op = w.prng.range(2, w.op);
      const target = locations.get(op)!;
      // A sector holding the header, or one inside the body only.
      const sector = w.prng.chance(0.5) ? Math.floor(target.offset / SECTOR_SIZE) : Math.floor((target.offset + header_size) / SECTOR_SIZE) + 1;
      if (sector * SECTOR_SIZE >= target.offset + w.prepares.get(op)!.header.size) continue;
      w.fs.corruptSector(target.path, sector);
      const disk = w.fs.durableSnapshot();
      w.fs.crash(w.prng);
      const recovered = w.reopen();
      const journal = journalByOp(recovered);
      for (let other = 1; other <= w.op; other++) {
        const message = w.prepares.get(other)!;
        const at = locations.get(other)!;
        const on_disk = disk.get(at.path)!.subarray(at.offset, at.offset + message.header.size);
        const expected = encode(message);
        const header_intact = expected.subarray(0, header_size).every((b, i) => b === on_disk[i]);
        const intact = expected.every((b, i) => b === on_disk[i]);
        const entries = journal.get(other) ?? [];
        expect(entries.length).toBe(1);
        const entry = entries[0];
        // Acknowledged: reported (never as absent), with the header that was written.
        expect(entry).toBeDefined();
        expect(entry!.header).toEqual(message.header);
        // A header damaged on disk makes it faulty (to be repaired from peers).
        expect(entry!.faulty).toBe(!header_intact);
        const read = w.storage.readPrepare(other, message.header.checksum);
        if (intact) expectSameMessage(read, message);
        else expect(read).toBeNull();
        if (!header_intact) seen.faulty += 1;
        else if (!intact) seen.body_only += 1;
      }
    }
    expect(seen.faulty).toBeGreaterThan(3);
    expect(seen.body_only).toBeGreaterThan(3);
  });

  test("readPrepare and prepareBodyLocation need the exact checksum", () => {
    const w = new World(new Prng(4));
    w.run(5);
    const message = w.prepares.get(3)!;
    expectSameMessage(w.storage.readPrepare(3, message.header.checksum), message);
    expect(w.storage.readPrepare(3, message.header.checksum ^ 1n)).toBeNull();
    expect(w.storage.readPrepare(999, message.header.checksum)).toBeNull();
    expect(w.storage.prepareBodyLocation(3, message.header.checksum ^ 1n)).toBeNull();
    const location = w.storage.prepareBodyLocation(3, message.header.checksum)!;
    expect(location.segment).toBe(w.segment_of.get(3)!);
  });
});

describe("FileStorage: superblock", () => {
  test("writeState + flush survives a crash", () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const w = new World(new Prng(seed));
      w.run(w.prng.int(50));
      w.writeState({ ...w.state, view: w.state.view + 1 + w.prng.int(5), view_headers: w.op > 0 ? w.suffix() : [] });
      w.flush([]);
      w.fs.crash(w.prng);
      const recovered = w.reopen();
      expect(recovered.state).toEqual(w.state);
      checkRecovery(w, recovered);
    }
  });

  test("a crash at each step of a superblock write leaves the old or the new state", () => {
    const outcomes = { old: 0, new: 0 };
    for (let seed = 1; seed <= SEEDS; seed++) {
      for (let n = 1; n <= 6; n++) {
        const w = new World(new Prng(seed * 8 + n));
        w.run(w.prng.int(40));
        const old_state = w.state;
        const new_state: VsrState = { ...w.state, view: w.state.view + 1, log_view: w.state.view + 1, view_headers: w.op > 0 ? w.suffix() : [] };
        w.writeState(new_state);
        expect(w.fs.dirtyCount()).toBe(0); // the flush writes nothing but the superblock
        w.fs.armCrash(n);
        expect(() => w.flush([])).toThrow(SimulatedCrash);
        const recovered = w.reopen();
        if (Bun.deepEquals(recovered.state, new_state)) outcomes.new += 1;
        else {
          expect(recovered.state).toEqual(old_state);
          outcomes.old += 1;
        }
        checkRecovery(w, recovered);
      }
    }
    expect(outcomes.old).toBeGreaterThan(0);
    expect(outcomes.new).toBeGreaterThan(0);
  });

  test("BUG: a state recovered after an interrupted superblock write survives the next interrupted write", () => {
    // recover() reads a superblock whose copies 2-3 were torn by the first crash and does not
    // rewrite them; the next write starts with copies 0-1 again, so a second crash can leave no
    // copy holding the state recovery returned: the replica goes back to an older view (which it
    // may already have promised to leave) or, with no valid copy, wipes its data directory.
    const failures: string[] = [];
    for (let seed = 1; seed <= 300; seed++) {
      const first = 5 + (seed % 2); // copies 0-1 durable, copies 2-3 being written
      const second = 2 + ((seed >> 1) % 2); // copies 0-1 being written
      const w = new World(new Prng(seed));
      w.run(20);
      w.writeState({ ...w.state, view: 1, log_view: 1, view_headers: w.suffix() });
      w.fs.armCrash(first);
      expect(() => w.flush([])).toThrow(SimulatedCrash);
      const recovered = w.reopen().state!;
      w.state = recovered;
      w.writeState({ ...recovered, view: 2, log_view: 2, view_headers: w.suffix().slice(2) });
      w.fs.armCrash(second);
      expect(() => w.flush([])).toThrow(SimulatedCrash);
      const again = w.reopen().state;
      if (again === null) failures.push(`seed ${seed}: recovered view ${recovered.view}, then no superblock (data directory wiped: ${segmentFiles(w.fs).length} segments left)`);
      else if (again.view < recovered.view) failures.push(`seed ${seed}: recovered view ${recovered.view}, then view ${again.view}`);
    }
    expect(failures).toEqual([]);
  });
});

describe("FileStorage: checkpoints", () => {
  test("a published checkpoint is recovered with its store, clients and values", () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const w = new World(new Prng(seed));
      w.run(interval * w.prng.range(1, 8) + w.prng.int(interval));
      expect(w.checkpoint.op).toBeGreaterThan(0);
      w.fs.crash(w.prng);
      const recovered = w.reopen();
      expect(recovered.state!.checkpoint).toEqual(w.checkpoint);
      checkRecovery(w, recovered);
    }
  });

  test("a checkpoint written but not yet published does not replace the published one", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const w = new World(new Prng(seed));
      w.run(interval * 2 + 3);
      const published = w.checkpoint;
      w.publish = false;
      w.run(interval * 3 + 2);
      expect(w.snapshots.has(interval * 3)).toBe(true);
      expect(w.fs.exists(checkpointPath(interval * 3))).toBe(true);
      w.fs.crash(w.prng);
      const recovered = w.reopen();
      expect(recovered.state!.checkpoint).toEqual(published);
      checkRecovery(w, recovered);
      // The unpublished file is garbage after recovery.
      expect(w.fs.exists(checkpointPath(interval * 3))).toBe(false);
      expect(w.fs.exists(checkpointPath(interval * 2))).toBe(true);
    }
  });

  test("segments and checkpoint files nothing needs are deleted; everything needed is kept", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const w = new World(new Prng(seed), options(), 6);
      const published: number[] = [0];
      let checked = 0;
      while (w.op < 400) {
        const before = w.checkpoint.op;
        w.step(w.prng.range(1, 4));
        if (w.checkpoint.op === before) continue;
        published.push(w.checkpoint.op);
        const retained = published.slice(-3);
        // The last three checkpoints stay (peers may sync from them), with the files their state
        // is built from (a base and deltas); nothing else, and nothing newer than the last.
        const files = w.fs.readdir("checkpoint");
        for (const op of retained.filter((op) => op > 0)) expect(files).toContain(checkpointPath(op).slice("checkpoint/".length));
        for (const name of files) expect(Number(name.slice(0, 16))).toBeLessThanOrEqual(retained[retained.length - 1]!);
        expect(files.length).toBeLessThanOrEqual(3 + 32);
        // Needed: segments holding values of a retained checkpoint, or prepares after the oldest
        // of them or within a journal window below the newest (they serve peers' repairs), or the
        // one being appended to. Nothing else survives the publish.
        const horizon = Math.max(0, Math.min(retained[0]!, retained[retained.length - 1]! - w.opts.journal_slot_count));
        const needed = new Set<number>([w.segment_of.get(w.op)!]);
        for (const op of retained) for (const s of w.snapshots.get(op)!.segments) needed.add(s);
        for (let op = horizon + 1; op <= w.op; op++) needed.add(w.segment_of.get(op)!);
        expect(new Set(segmentFiles(w.fs))).toEqual(needed);
        checked += 1;
      }
      expect(checked).toBeGreaterThan(10);
      // Disk use stays bounded although far more was written.
      const written = new Set(w.segment_of.values()).size;
      expect(segmentFiles(w.fs).length).toBeLessThan(written / 2);
      // And after all this, the live state is intact.
      expectValues(w.storage, w.store, w.values);
      w.fs.crash(w.prng);
      checkRecovery(w, w.reopen());
    }
  });

  test("BUG: recovery reports no prepare as intact that it cannot read", () => {
    // recover() keeps journal entries up to journal_slot_count ops below the checkpoint (so
    // lagging peers can repair from them) and reports them intact, then its collectGarbage (with
    // only the current checkpoint retained) deletes the segments holding them.
    const failures: string[] = [];
    for (let seed = 1; seed <= 10; seed++) {
      const w = new World(new Prng(seed));
      w.run(150);
      w.fs.crash(w.prng);
      const recovered = w.reopen();
      const unreadable = recovered.journal.filter((e) => !e.faulty && w.storage.readPrepare(e.header.op, e.header.checksum) === null).map((e) => e.header.op);
      if (unreadable.length > 0) failures.push(`seed ${seed}: checkpoint ${recovered.state!.checkpoint.op}, intact but unreadable ops ${unreadable.sort((a, b) => a - b).join(",")}`);
    }
    expect(failures).toEqual([]);
  });
});

describe("FileStorage: values", () => {
  test("readValue returns null for a corrupted value and the value otherwise", () => {
    let corrupted = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const w = new World(new Prng(seed), options(), 12, 3000);
      w.run(30);
      // A value with a whole sector inside it.
      const candidates = [...w.store.all()].filter(([, e]) => Math.ceil(e.offset / SECTOR_SIZE) * SECTOR_SIZE + SECTOR_SIZE <= e.offset + e.size);
      if (candidates.length === 0) continue;
      const [key, entry] = w.prng.pick(candidates);
      w.fs.corruptSector(segmentPath(entry.segment), Math.ceil(entry.offset / SECTOR_SIZE));
      corrupted += 1;
      expect(w.storage.readValue(entry)).toBeNull();
      for (const [other, e] of w.store.all()) {
        if (other === key) continue;
        const overlaps = e.segment === entry.segment && e.offset < (Math.ceil(entry.offset / SECTOR_SIZE) + 1) * SECTOR_SIZE && e.offset + e.size > Math.ceil(entry.offset / SECTOR_SIZE) * SECTOR_SIZE;
        if (!overlaps) expect(w.storage.readValue(e)).toEqual(w.values.get(other)!);
      }
      // Also after a restart.
      w.fs.crash(w.prng);
      const recovered = w.reopen();
      expect(recovered.state).not.toBeNull();
      expect(w.storage.readValue(entry)).toBeNull();
    }
    expect(corrupted).toBeGreaterThan(30);
  });

  test("readValue returns null for an unreadable sector, a missing segment or a wrong checksum", () => {
    const w = new World(new Prng(5), options(), 4, 2000);
    w.run(10);
    const [key, entry] = [...w.store.all()].find(([, e]) => e.size > 0)!;
    expect(w.storage.readValue(entry)).toEqual(w.values.get(key)!);
    expect(w.storage.readValue({ ...entry, checksum: entry.checksum ^ 1n })).toBeNull();
    expect(w.storage.readValue({ ...entry, segment: 9999 })).toBeNull();
    expect(w.storage.readValue({ ...entry, offset: entry.offset + 1 })).toBeNull();
    w.fs.setReadErrorSector(segmentPath(entry.segment), Math.floor(entry.offset / SECTOR_SIZE));
    expect(w.storage.readValue(entry)).toBeNull();
  });
});

describe("FileStorage: state sync", () => {
  function newReplica(seed: number): { fs: SimFs; storage: FileStorage } {
    const fs = new SimFs(new Prng(seed));
    const storage = new FileStorage(fs, options({ replica: 1 }));
    expect(storage.recover(clients_max).state).toBeNull();
    return { fs, storage };
  }

  function chunks(source: FileStorage, id: CheckpointId, size_max: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let position: number | null = 0;
    while (position !== null) {
      const chunk = source.readSyncChunk(id, position, size_max);
      expect(chunk).not.toBeNull();
      out.push(chunk!.bytes);
      expect(chunk!.next === null || chunk!.next > position).toBe(true);
      position = chunk!.next;
    }
    return out;
  }

  test("streaming a checkpoint reproduces its store, clients and values on another replica", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const w = new World(new Prng(seed));
      w.run(interval * w.prng.range(3, 8) + w.prng.int(interval));
      // Any retained checkpoint: the newest or one a lagging peer still names.
      const retained = [...w.snapshots.keys()].filter((op) => op > 0).slice(-3);
      const snapshot = w.snapshots.get(w.prng.pick(retained))!;
      const size_max = w.prng.pick([1, 200, 4096, 256 * 1024]);
      const stream = chunks(w.storage, snapshot.id, size_max);
      if (size_max === 1) expect(stream.length).toBe(1 + snapshot.sessions.length + snapshot.store.length);
      const b = newReplica(seed + 1000);
      b.storage.syncBegin(snapshot.id);
      for (const chunk of stream) expect(b.storage.syncApply(chunk)).toBe(true);
      const received = b.storage.syncFinish(clients_max)!;
      expect(received).not.toBeNull();
      expect(stateDigest(received.store, received.clients)).toBe(snapshot.id.digest);
      expect(received.checkpoint).toEqual({ id: snapshot.id, anchor: snapshot.anchor, previous: snapshot.previous });
      expect(received.store.revision).toBe(snapshot.revision);
      expect(received.clients.entries()).toEqual(snapshot.sessions);
      const logical = (entries: [string, ObjectEntry][]) => entries.map(([k, e]) => [k, e.version, e.timestamp, e.size, e.checksum]);
      expect(logical([...received.store.all()])).toEqual(logical(snapshot.store));
      expectValues(b.storage, received.store, snapshot.values);
      // The replica then writes the checkpoint and publishes it; it survives a crash.
      b.storage.writeCheckpoint(received.checkpoint, received.store, received.clients);
      const state: VsrState = { incarnation: 7, view: 0, log_view: 0, commit_max: snapshot.id.op, view_headers: [], checkpoint: snapshot.id };
      b.storage.writeState(state);
      b.storage.flush();
      b.fs.crash(new Prng(seed));
      const storage = new FileStorage(b.fs, options({ replica: 1 }));
      const recovered = storage.recover(clients_max);
      expect(recovered.state).toEqual(state);
      expect(stateDigest(recovered.store, recovered.clients)).toBe(snapshot.id.digest);
      expectValues(storage, recovered.store, snapshot.values);
      // And it can serve the same checkpoint to the next peer.
      const c = newReplica(seed + 2000);
      c.storage.syncBegin(snapshot.id);
      for (const chunk of chunks(storage, snapshot.id, 4096)) expect(c.storage.syncApply(chunk)).toBe(true);
      const again = c.storage.syncFinish(clients_max)!;
      expect(stateDigest(again.store, again.clients)).toBe(snapshot.id.digest);
    }
  });

  test("chunks stay within size_max plus one record, so a large value travels alone", () => {
    for (let seed = 1; seed <= 10; seed++) {
      const w = new World(new Prng(seed), options(), 12, 3000);
      w.run(interval * 2);
      const snapshot = w.snapshots.get(w.checkpoint.op)!;
      const total = 1 + snapshot.sessions.length + snapshot.store.length;
      for (const size_max of [1, 500, 2000, 8192]) {
        let position: number | null = 0;
        let records = 0;
        while (position !== null) {
          const chunk: SyncChunk = w.storage.readSyncChunk(w.checkpoint, position, size_max)!;
          const count = (chunk.next ?? total) - position;
          expect(count).toBeGreaterThanOrEqual(1);
          // An anchor or session record is at most 200 bytes; an object is checked before it is added.
          if (count > 1) expect(chunk.bytes.length).toBeLessThanOrEqual(size_max + 200);
          records += count;
          position = chunk.next;
        }
        expect(records).toBe(total);
      }
    }
  });

  test("only retained checkpoints are served, from valid positions", () => {
    const w = new World(new Prng(7));
    w.run(interval * 6);
    const current = w.checkpoint;
    expect(w.storage.readSyncChunk(current, 0, 4096)).not.toBeNull();
    expect(w.storage.readSyncChunk({ ...current, digest: current.digest ^ 1n }, 0, 4096)).toBeNull();
    expect(w.storage.readSyncChunk({ ...current, checksum: current.checksum ^ 1n }, 0, 4096)).toBeNull();
    expect(w.storage.readSyncChunk(w.snapshots.get(interval)!.id, 0, 4096)).toBeNull(); // long gone
    expect(w.storage.readSyncChunk(w.snapshots.get(0)!.id, 0, 4096)).toBeNull();
    const snapshot = w.snapshots.get(current.op)!;
    const total = 1 + snapshot.sessions.length + snapshot.store.length;
    expect(w.storage.readSyncChunk(current, total - 1, 4096)?.next).toBeNull();
    for (const position of [-1, total, 0.5, Number.NaN]) expect(w.storage.readSyncChunk(current, position, 4096)).toBeNull();
  });

  // FileStorage keeps three checkpoints because a prepare names one up to two intervals behind it
  // (lib/vsr/checkpoint.ts), and a lagging peer can sync only to a checkpoint a committed prepare
  // names. recover() restores only the superblock's checkpoint and its collectGarbage deletes the
  // other two files, so after a cluster-wide power loss no replica can serve the checkpoint the
  // head names until the cluster commits one or two more intervals.
  test("a restarted replica still serves the checkpoints it retained before the restart", () => {
    const w = new World(new Prng(10));
    w.run(interval * 5 + 3);
    const retained = [...w.snapshots.values()].map((s) => s.id).slice(-3);
    for (const id of retained) expect(w.storage.readSyncChunk(id, 0, 4096)).not.toBeNull();
    w.fs.crash(w.prng);
    w.reopen();
    for (const id of retained) expect({ op: id.op, served: w.storage.readSyncChunk(id, 0, 4096) !== null }).toEqual({ op: id.op, served: true });
  });

  test("a source whose value is damaged refuses to serve it", () => {
    const w = new World(new Prng(8), options(), 4, 3000);
    w.run(interval * 2);
    const [, entry] = [...w.store.all()].find(([, e]) => e.size >= 2 * SECTOR_SIZE)!;
    w.fs.corruptSector(segmentPath(entry.segment), Math.ceil(entry.offset / SECTOR_SIZE));
    let position: number | null = 0;
    let refused = false;
    while (position !== null) {
      const chunk = w.storage.readSyncChunk(w.checkpoint, position, 1);
      if (chunk === null) {
        refused = true;
        break;
      }
      position = chunk.next;
    }
    expect(refused).toBe(true);
  });

  test("a chunk damaged in its structure or values is refused by syncApply", () => {
    let refused = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const w = new World(new Prng(seed), options(), 5, 60);
      w.run(interval * 2);
      const stream = chunks(w.storage, w.checkpoint, 1);
      // One record per chunk: [anchor, sessions..., objects...].
      for (let index = 0; index < stream.length; index++) {
        const chunk = stream[index]!;
        const object = index > w.clients.size;
        // Damage to the record type, the anchor header, a value, or the chunk's length.
        const positions = [0];
        if (index === 0) for (let i = 8; i < 8 + header_size; i += 7) positions.push(i);
        if (object) {
          const value_start = 40 + Math.ceil(new DataView(chunk.buffer, chunk.byteOffset).getUint16(0 + 8, true) / 8) * 8 + 8;
          for (let i = value_start; i < chunk.length - 8; i += 5) positions.push(i);
        }
        for (const position of positions) {
          const damaged = chunk.slice();
          damaged[position]! ^= 0x5a;
          const b = newReplica(seed * 100 + index);
          b.storage.syncBegin(w.checkpoint);
          for (let j = 0; j < index; j++) expect(b.storage.syncApply(stream[j]!)).toBe(true);
          expect(b.storage.syncApply(damaged)).toBe(false);
          // Once refused, the sync stays failed until it begins again.
          expect(b.storage.syncApply(stream[index]!)).toBe(false);
          expect(b.storage.syncFinish(clients_max)).toBeNull();
          refused += 1;
        }
        for (const cut of [1, 8]) {
          const b = newReplica(seed);
          b.storage.syncBegin(w.checkpoint);
          for (let j = 0; j < index; j++) b.storage.syncApply(stream[j]!);
          expect(b.storage.syncApply(chunk.subarray(0, chunk.length - cut))).toBe(false);
        }
      }
    }
    expect(refused).toBeGreaterThan(100);
  });

  // Not every field of the stream is covered by a check: syncApply verifies structure, the anchor
  // header and value checksums, and the replica then checks the state digest, the anchor and
  // previous.op (lib/vsr/replica.ts finishSync). An object's timestamp is in neither the digest
  // (lib/store/object_store.ts entryHash) nor any checksum, and neither are previous.digest and
  // previous.checksum, so a chunk damaged there installs a different state than the source's.
  // Sync chunks travel in checksummed messages, so this needs damage outside the wire.

  test("an incomplete stream does not finish", () => {
    const w = new World(new Prng(9));
    w.run(interval * 2);
    const stream = chunks(w.storage, w.checkpoint, 1);
    const b = newReplica(9);
    b.storage.syncBegin(w.checkpoint);
    for (const chunk of stream.slice(1)) expect(b.storage.syncApply(chunk)).toBe(true);
    expect(b.storage.syncFinish(clients_max)).toBeNull(); // no anchor
    expect(b.storage.syncApply(stream[0]!)).toBe(false); // no sync in progress
    // syncBegin discards a partial sync.
    b.storage.syncBegin(w.checkpoint);
    b.storage.syncApply(stream[0]!);
    b.storage.syncBegin(w.checkpoint);
    for (const chunk of stream) expect(b.storage.syncApply(chunk)).toBe(true);
    const received = b.storage.syncFinish(clients_max)!;
    expect(stateDigest(received.store, received.clients)).toBe(w.checkpoint.digest);
  });
});
