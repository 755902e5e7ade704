import { describe, expect, test } from "bun:test";
import { Command, Header, finalize, type Message } from "../net/codec.ts";
import { ObjectStore } from "../store/object_store.ts";
import { ClientTable } from "./client_table.ts";
import { DurableState } from "./durable_state.ts";
import { Journal } from "./journal.ts";
import {
  buildRequestSnapshot,
  buildRequestSync,
  buildSyncChunk,
  readRequestSync,
  readSnapshotChunk,
  type Envelope,
  type RequestSnapshot,
} from "./messages.ts";
import { Result } from "../store/operations.ts";
import { snapshot_stream_idle_ticks } from "../constants.ts";
import { rootPrepare, stateDigest } from "./root.ts";
import { sync_backoff_ticks, sync_retry_ticks_max, sync_retry_ticks_min } from "./state_sync.ts";
import { StateSync, type StateSyncHost, type SyncReceived } from "./state_sync_driver.ts";
import type { CheckpointId, CheckpointMeta, SyncChunk } from "./storage.ts";
import type { Status } from "./env.ts";
import { commitKnown, prepareChain } from "./test_support.ts";
import { FileStorage } from "../storage/file_storage.ts";
import { Prng } from "../util/prng.ts";
import { SimFs } from "../../sim/sim_fs.ts";
import { World, clients_max as world_clients_max, options as worldOptions, segmentFiles } from "../../tests/support/storage_world.ts";

const interval = 8;

function noSpace(): Error {
  return Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
}

/** A namespace with one object and one session: its digest is not the empty state's. */
function state(): { store: ObjectStore; clients: ClientTable } {
  const store = new ObjectStore();
  store.set("k", { version: 1, timestamp: 5, size: 3, checksum: 77n, segment: 1, offset: 0 });
  store.revision = 1;
  const clients = new ClientTable(4);
  clients.register(9n, 3, 1, { op: 3, timestamp: 30, operation: 1, result: 0, body: new Uint8Array(0) });
  return { store, clients };
}

/** The storage calls the part makes, recorded; a sync stream is whatever syncFinish is told to return. */
class FakeStorage {
  readonly checkpoints: CheckpointMeta[] = [];
  readonly begun: CheckpointId[] = [];
  readonly applied: Uint8Array[] = [];
  full = false;
  parses = true;
  finished: SyncReceived | null = null;
  served: SyncChunk | null = null;

  writeCheckpoint(checkpoint: CheckpointMeta): void {
    if (this.full) throw noSpace();
    this.checkpoints.push(checkpoint);
  }
  /** The sources readSyncChunk was asked to serve from (0: peers; 1, 2: snapshot streams). */
  readonly sources: number[] = [];
  /** Whether retains() says yes; null: whenever a chunk is served. */
  retained: boolean | null = null;
  readSyncChunk(_id: CheckpointId, _position: number, _size_max: number, source = 0): SyncChunk | null {
    this.sources.push(source);
    return this.served;
  }
  retains(): boolean {
    return this.retained ?? this.served !== null;
  }
  /** Transfers dropped for good (syncAbort). */
  aborted = 0;
  syncAbort(): void {
    this.aborted += 1;
  }
  syncBegin(id: CheckpointId): void {
    this.begun.push(id);
    this.applied.length = 0;
  }
  syncApply(bytes: Uint8Array): boolean {
    if (this.full) throw noSpace();
    if (!this.parses) return false;
    this.applied.push(bytes);
    return true;
  }
  syncFinish(): SyncReceived | null {
    return this.finished;
  }
}

/** Replica 1 of 3, a backup of view 0 unless a test moves it: the members StateSync reads. Its
 * storage is a FakeStorage unless a test gives it a real one. */
class FakeHost<S extends StateSyncHost["storage"] = FakeStorage> implements StateSyncHost {
  readonly replica = 1;
  readonly config = { replica_count: 3, checkpoint_interval_ops: interval, clients_max: 4, tick_ms: 10 };
  readonly sent: { to: number; message: Message }[] = [];
  readonly answered: { client: bigint; message: Message }[] = [];
  readonly logs: string[] = [];
  readonly levels: string[] = [];
  readonly env = {
    sendToReplica: (to: number, message: Message): void => {
      this.sent.push({ to, message });
    },
    sendToClient: (client: bigint, message: Message): void => {
      this.answered.push({ client, message });
    },
    log: (level: string, text: string): void => {
      this.levels.push(level);
      this.logs.push(text);
    },
  };
  readonly journal = new Journal(64);
  readonly durable: DurableState;
  readonly stats = { syncs: 0 };
  readonly calls: string[] = [];
  readonly installed: { target: CheckpointId; received: SyncReceived }[] = [];
  status: Status = "normal";
  view = 0;
  op = 0;
  commit_min = 0;
  commit_max = 0;
  commit_hint = 0;
  commit_min_checksum: bigint;
  commit_min_header: Header;
  store = new ObjectStore();
  clients = new ClientTable(4);
  no_space = false;
  ticks = 0;

  constructor(readonly storage: S) {
    const root = rootPrepare(1n, 3);
    this.commit_min_checksum = root.checksum;
    this.commit_min_header = root;
    this.durable = new DurableState(this.replica, interval, {
      op: 0,
      digest: stateDigest(this.store, this.clients),
      checksum: root.checksum,
    });
  }

  envelope(view: number): Envelope {
    return { cluster: 1n, replica: this.replica, replica_count: 3, view, incarnation: 7 };
  }
  diskFull(): void {
    this.calls.push("diskFull");
    this.no_space = true;
  }
  writeState(): void {
    this.calls.push("writeState");
  }
  executeCommitted(): void {
    this.calls.push("executeCommitted");
  }
  isPrimary(): boolean {
    return this.view % 3 === this.replica;
  }
  commitKnown(): number {
    return commitKnown(this);
  }
  readonly repairer = {
    requestHeaders: (op_min: number, op_max: number): void => {
      this.calls.push(`requestHeaders ${op_min}..${op_max}`);
    },
  };
  installSynced(target: CheckpointId, received: SyncReceived): void {
    this.installed.push({ target, received });
    this.commit_min = target.op;
  }

  /** The log lines about failed sync attempts, with their levels. */
  failures(): { level: string; text: string }[] {
    return this.logs.flatMap((text, i) => (text.includes("state sync of checkpoint") ? [{ level: this.levels[i]!, text }] : []));
  }

  /** Executed up to op `to` of a chain: the anchor a checkpoint there records. */
  executedTo(to: number): void {
    const header = prepareChain(to).at(-1)!;
    this.commit_min = to;
    this.commit_max = Math.max(this.commit_max, to);
    this.op = Math.max(this.op, to);
    this.commit_min_checksum = header.checksum;
    this.commit_min_header = header;
  }
}

/** A committed prepare at op 25 naming the checkpoint at 16 (checkpointFor lags by K+1..2K), or
 * at another op naming another. */
function naming(target: CheckpointId, op = 25): Header {
  const h = new Header();
  h.op = op;
  h.checkpoint_op = target.op;
  h.checkpoint_digest = target.digest;
  h.context = target.checksum;
  return h;
}

/** A backup far behind (executed nothing, head and commit at 25), its target the checkpoint at 16
 * holding state(), and what storage assembles from the stream. */
function behind(): { host: FakeHost; sync: StateSync; target: CheckpointId; received: SyncReceived } {
  const host = new FakeHost(new FakeStorage());
  host.op = 25;
  host.commit_max = 25;
  const sync = new StateSync(host);
  const { store, clients } = state();
  const anchor = prepareChain(16).at(-1)!;
  const target: CheckpointId = { op: 16, digest: stateDigest(store, clients), checksum: anchor.checksum };
  const previous: CheckpointId = { op: 8, digest: 1n, checksum: 2n };
  return { host, sync, target, received: { store, clients, checkpoint: { id: target, anchor, previous } } };
}

function chunk(host: FakeHost, from: number, target: CheckpointId, position: number, next: number | null): Message {
  const envelope = { ...host.envelope(host.view), replica: from };
  return buildSyncChunk(envelope, { checkpoint: target, position, next, body: new Uint8Array([position & 0xff]) });
}

describe("StateSync checkpoints", () => {
  test("takes the checkpoint at commit_min with the state's digest and its anchor", () => {
    const host = new FakeHost(new FakeStorage());
    const sync = new StateSync(host);
    host.executedTo(8);
    expect(sync.checkpointMissing()).toBe(true);
    expect(sync.takeCheckpoint()).toBe(true);
    const written = host.storage.checkpoints[0]!;
    expect(written.id).toEqual({ op: 8, digest: stateDigest(host.store, host.clients), checksum: host.commit_min_checksum });
    expect(written.anchor).toBe(host.commit_min_header);
    expect(written.previous.op).toBe(0);
    expect(host.calls).toEqual(["writeState"]);
    expect(sync.checkpointMissing()).toBe(false);
  });

  test("a full disk leaves the checkpoint missing; it is taken again once there is space", () => {
    const host = new FakeHost(new FakeStorage());
    const sync = new StateSync(host);
    host.executedTo(8);
    host.storage.full = true;
    expect(sync.takeCheckpoint()).toBe(false);
    expect(host.calls).toEqual(["diskFull"]);
    expect(sync.checkpointMissing()).toBe(true);
    // Not while the disk is still full.
    sync.retryCheckpoint();
    expect(host.storage.checkpoints).toHaveLength(0);
    host.storage.full = false;
    host.no_space = false;
    sync.retryCheckpoint();
    expect(host.storage.checkpoints).toHaveLength(1);
    expect(host.calls).toEqual(["diskFull", "writeState", "executeCommitted"]);
    expect(sync.checkpointMissing()).toBe(false);
  });
});

describe("StateSync transfers", () => {
  test("a backup behind asks the primary for the committed header that names its target", () => {
    const { host, sync } = behind();
    sync.maybeStart();
    expect(host.calls).toEqual(["requestHeaders 25..25"]);
    expect(sync.syncing).toBe(false);
  });

  test("nothing to fetch when the head names no checkpoint above what was executed", () => {
    const host = new FakeHost(new FakeStorage());
    host.op = 10;
    host.commit_max = 10;
    const sync = new StateSync(host);
    sync.maybeStart();
    expect(host.calls).toEqual([]);
  });

  test("a primary behind takes the target from its own header at commit_max", () => {
    const { host, sync, target } = behind();
    host.view = 1;
    host.journal.setHeader(naming(target));
    sync.maybeStart();
    expect(sync.syncing).toBe(true);
    // It never asks itself: the next peer after it.
    expect(host.sent.map((s) => s.to)).toEqual([2]);
  });

  test("fetches the checkpoint chunk by chunk and hands what verified to the replica", () => {
    const { host, sync, target, received } = behind();
    sync.targetFrom(naming(target));
    expect(sync.syncing).toBe(true);
    expect(host.stats.syncs).toBe(1);
    expect(host.storage.begun).toEqual([target]);
    expect(host.sent).toHaveLength(1);
    expect(host.sent[0]!.to).toBe(0);
    expect(readRequestSync(host.sent[0]!.message)).toEqual({ checkpoint: target, position: 0 });

    // A chunk of another position is not the one asked for.
    sync.onSyncChunk(chunk(host, 0, target, 5, 9));
    expect(host.storage.applied).toHaveLength(0);
    sync.onSyncChunk(chunk(host, 0, target, 0, 100));
    expect(readRequestSync(host.sent[1]!.message)).toEqual({ checkpoint: target, position: 100 });
    host.storage.finished = received;
    sync.onSyncChunk(chunk(host, 0, target, 100, null));
    expect(host.storage.applied).toHaveLength(2);
    expect(host.storage.checkpoints).toEqual([received.checkpoint]);
    expect(host.installed).toEqual([{ target, received }]);
    expect(sync.syncing).toBe(false);
    sync.invariants();
  });

  test("a stream that does not verify is released at once and fetched again from the next peer after a backoff", () => {
    const { host, sync, target, received } = behind();
    sync.targetFrom(naming(target));
    host.storage.finished = { ...received, store: new ObjectStore() };
    host.ticks = 3;
    sync.onSyncChunk(chunk(host, 0, target, 0, null));
    expect(host.installed).toHaveLength(0);
    // Storage began again right away: the rejected state's bytes are discarded (FileStorage), not
    // held through the wait.
    expect(host.storage.begun).toEqual([target, target]);
    expect(host.sent.map((s) => s.to)).toEqual([0]);
    expect(sync.syncing).toBe(true);
    expect(host.failures()).toEqual([
      {
        level: "error",
        text:
          "replica 1: state sync of checkpoint 16 failed on attempt 1: replica 0 sent a state that does not match its digest; " +
          `retrying with replica 2 in ${sync_retry_ticks_min * 10} ms (attempt 2)`,
      },
    ]);
    // The same stream delivered late is not taken for the next attempt.
    sync.onSyncChunk(chunk(host, 0, target, 0, null));
    expect(host.storage.applied).toHaveLength(0); // (syncBegin emptied it)
    expect(host.failures()).toHaveLength(1);
    host.ticks = 3 + sync_retry_ticks_min - 1;
    expect(sync.repairTick()).toBe(true);
    expect(host.sent).toHaveLength(1);
    host.ticks += 1;
    expect(sync.repairTick()).toBe(true);
    expect(host.sent.map((s) => s.to)).toEqual([0, 2]);
    expect(readRequestSync(host.sent[1]!.message)).toEqual({ checkpoint: target, position: 0 });
  });

  test("a chunk that does not parse restarts the stream from the next peer after a backoff", () => {
    const { host, sync, target } = behind();
    sync.targetFrom(naming(target));
    host.storage.parses = false;
    sync.onSyncChunk(chunk(host, 0, target, 0, 100));
    expect(host.storage.begun).toEqual([target, target]);
    expect(sync.syncing).toBe(true);
    expect(host.failures().map((f) => f.level)).toEqual(["warn"]);
    expect(host.failures()[0]!.text).toContain("replica 0 sent a chunk that does not parse; retrying with replica 2 in 100 ms (attempt 2)");
    host.ticks = sync_retry_ticks_min;
    sync.repairTick();
    expect(host.sent.map((s) => s.to)).toEqual([0, 2]);
    expect(readRequestSync(host.sent[1]!.message).position).toBe(0);
  });

  test("a stream that never verifies is fetched at most once per backoff, doubling up to its cap, one log line per attempt", () => {
    const { host, sync, target, received } = behind();
    host.storage.finished = { ...received, store: new ObjectStore() };
    sync.targetFrom(naming(target));
    // Peers answer every request at once with a whole (bad) stream; repair ticks every 5 ticks.
    const requested_at: number[] = [];
    const horizon = 20_000;
    for (; host.ticks < horizon; host.ticks++) {
      if (host.ticks % 5 === 0) sync.repairTick();
      sync.invariants();
      while (requested_at.length < host.sent.length) {
        const { to, message } = host.sent[requested_at.length]!;
        requested_at.push(host.ticks);
        expect(readRequestSync(message).position).toBe(0);
        sync.onSyncChunk(chunk(host, to, target, 0, null));
      }
    }
    expect(sync.syncing).toBe(true);
    // Attempt n + 1 starts at the first repair tick after the n-th wait: 10, 20, 40, ... ticks, at
    // most 500, never sooner.
    const gaps = requested_at.slice(1).map((at, i) => at - requested_at[i]!);
    gaps.forEach((gap, i) => {
      const wait = Math.min(sync_retry_ticks_min * 2 ** i, sync_retry_ticks_max);
      expect(gap).toBeGreaterThanOrEqual(wait);
      expect(gap).toBeLessThan(wait + 5);
    });
    // Bounded: about horizon / cap attempts, not one per round trip.
    expect(requested_at.length).toBeLessThan(horizon / sync_retry_ticks_max + 10);
    expect(requested_at.length).toBeGreaterThan(horizon / (sync_retry_ticks_max + 5));
    // Peers are asked in turn, never itself; the storage began once per attempt and the next.
    expect(new Set(host.sent.map((s) => s.to))).toEqual(new Set([0, 2]));
    expect(host.storage.begun).toHaveLength(requested_at.length + 1);
    // One line per failed attempt; the first and every tenth loud, the rest at debug.
    const failures = host.failures();
    expect(host.logs).toHaveLength(failures.length + 1); // and the line that began the sync
    expect(failures).toHaveLength(requested_at.length);
    failures.forEach((f, i) => expect(f.text).toContain(`failed on attempt ${i + 1}:`));
    const loud = failures.flatMap((f, i) => (f.level === "debug" ? [] : [i + 1]));
    expect(loud).toEqual(Array.from({ length: 1 + Math.floor(requested_at.length / 10) }, (_, k) => Math.max(1, k * 10)));
    expect(host.logs.at(-1)).toContain(`in ${sync_retry_ticks_max * 10} ms`);
  });

  test("a transfer begun while failed attempts' backoff lasts waits it out too (a view change cancelled the failing one)", () => {
    const { host, sync, target, received } = behind();
    host.view = 1; // replica 1's view: maybeStart takes the target from its own log
    host.journal.setHeader(naming(target));
    host.storage.finished = { ...received, store: new ObjectStore() };
    sync.maybeStart();
    sync.onSyncChunk(chunk(host, 2, target, 0, null));
    host.status = "view_change";
    sync.cancel();
    expect(host.storage.aborted).toBe(1);
    host.status = "normal";
    sync.maybeStart();
    expect(sync.syncing).toBe(true);
    expect(host.storage.begun).toHaveLength(3);
    expect(host.sent).toHaveLength(1); // not asked before the backoff ends
    host.ticks = sync_retry_ticks_min;
    sync.repairTick();
    expect(host.sent).toHaveLength(2);
  });

  test("a sync that succeeds resets the backoff: the next failure waits the shortest time again", () => {
    const { host, sync, target, received } = behind();
    const bad = { ...received, store: new ObjectStore() };
    host.storage.finished = bad;
    sync.targetFrom(naming(target));
    for (let attempt = 1; attempt <= 4; attempt++) {
      sync.onSyncChunk(chunk(host, host.sent.at(-1)!.to, target, 0, null));
      host.ticks += sync_retry_ticks_min * 2 ** (attempt - 1);
      sync.repairTick();
    }
    expect(host.logs.at(-1)).toContain(`in ${8 * sync_retry_ticks_min * 10} ms (attempt 5)`);
    host.storage.finished = received;
    sync.onSyncChunk(chunk(host, host.sent.at(-1)!.to, target, 0, null));
    expect(host.installed).toHaveLength(1);
    expect(sync.syncing).toBe(false);
    // Later, behind again: the checkpoint at 32 named by op 41.
    host.op = host.commit_max = 41;
    const next: CheckpointId = { op: 32, digest: 9n, checksum: 10n };
    host.storage.finished = bad;
    sync.targetFrom(naming(next, 41));
    expect(readRequestSync(host.sent.at(-1)!.message).checkpoint).toEqual(next); // asked at once
    sync.onSyncChunk(chunk(host, host.sent.at(-1)!.to, next, 0, null));
    expect(host.logs.at(-1)).toContain(`failed on attempt 1:`);
    expect(host.logs.at(-1)).toContain(`in ${sync_retry_ticks_min * 10} ms (attempt 2)`);
    expect(host.levels.at(-1)).toBe("error");
  });

  test("a full disk drops the transfer, and what it received with it", () => {
    const { host, sync, target } = behind();
    sync.targetFrom(naming(target));
    host.storage.full = true;
    sync.onSyncChunk(chunk(host, 0, target, 0, 100));
    expect(host.calls).toEqual(["diskFull"]);
    expect(sync.syncing).toBe(false);
    // Its segments may be what fills the disk: deleted now, not when a next sync begins.
    expect(host.storage.aborted).toBe(1);
    // Not started again while the disk is full.
    sync.maybeStart();
    expect(host.calls).toEqual(["diskFull"]);
  });

  test("a stalled transfer asks the next peer, then gives up and backs off", () => {
    const { host, sync, target } = behind();
    expect(sync.repairTick()).toBe(false);
    sync.targetFrom(naming(target));
    expect(sync.repairTick()).toBe(true);
    expect(host.sent).toHaveLength(1);
    expect(sync.repairTick()).toBe(true);
    expect(host.sent.map((s) => s.to)).toEqual([0, 2]);
    for (let tick = 0; tick < 10 && sync.syncing; tick++) sync.repairTick();
    expect(sync.syncing).toBe(false);
    expect(host.logs.at(-1)).toContain("no peer serves checkpoint 16");
    // The same target waits out the backoff.
    sync.targetFrom(naming(target));
    expect(sync.syncing).toBe(false);
    host.ticks = sync_backoff_ticks;
    sync.targetFrom(naming(target));
    expect(sync.syncing).toBe(true);
  });

  test("a stalled transfer moves to the primary's newer announced checkpoint", () => {
    const { host, sync, target } = behind();
    const newer: CheckpointId = { op: 24, digest: 5n, checksum: 6n };
    sync.primaryAnnounced(0, newer);
    sync.targetFrom(naming(target));
    while (host.storage.begun.length === 1) sync.repairTick();
    expect(host.storage.begun).toEqual([target, newer]);
    expect(sync.syncing).toBe(true);
    expect(host.stats.syncs).toBe(2);
  });

  test("a view change cancels the transfer: a late chunk of it is ignored, and the next maybeStart begins afresh", () => {
    const { host, sync, target, received } = behind();
    // A primary behind (view 1 is replica 1's), so maybeStart takes its target from its own log.
    host.view = 1;
    host.journal.setHeader(naming(target));
    sync.maybeStart();
    expect(host.storage.begun).toEqual([target]);
    host.status = "view_change"; // as Replica.startViewChange sets it before it cancels
    sync.cancel();
    // The last chunk of the cancelled transfer arrives late: nothing is applied, nothing installed.
    host.storage.finished = received;
    sync.onSyncChunk(chunk(host, 2, target, 0, null));
    expect(host.storage.applied).toHaveLength(0);
    expect(host.storage.checkpoints).toHaveLength(0);
    expect(host.installed).toHaveLength(0);
    expect(sync.repairTick()).toBe(false);
    // The new view is established, and this replica is still behind: a fresh transfer, storage
    // begun again and the stream asked from position 0.
    host.status = "normal";
    sync.maybeStart();
    expect(sync.syncing).toBe(true);
    expect(host.stats.syncs).toBe(2);
    expect(host.storage.begun).toEqual([target, target]);
    expect(host.sent).toHaveLength(2);
    expect(readRequestSync(host.sent[1]!.message)).toEqual({ checkpoint: target, position: 0 });
  });

  test("only a view change cancels a transfer", () => {
    const { sync } = behind();
    expect(() => sync.cancel()).toThrow("only a view change cancels one");
  });

  test("serves a peer the chunk storage holds, and nothing for a checkpoint it does not", () => {
    const { host, sync, target } = behind();
    const request = buildRequestSync({ ...host.envelope(0), replica: 2 }, { checkpoint: target, position: 0 });
    sync.onRequestSync(request);
    expect(host.sent).toHaveLength(0);
    host.storage.served = { bytes: new Uint8Array([1, 2, 3]), next: 3 };
    sync.onRequestSync(request);
    expect(host.sent).toHaveLength(1);
    expect(host.sent[0]!.to).toBe(2);
    expect(host.sent[0]!.message.body).toEqual(new Uint8Array([1, 2, 3]));
  });

  test("remembers the latest checkpoint op the primary reported", () => {
    const { sync } = behind();
    sync.primaryCheckpointIs(32);
    sync.primaryCheckpointIs(16);
    expect(sync.primary_checkpoint_op).toBe(16);
    sync.invariants();
  });
});

describe("StateSync serving snapshot clients", () => {
  const newest = { op: 0, digest: 0n, checksum: 0n };
  function ask(fields: Partial<RequestSnapshot> = {}): Message {
    return buildRequestSnapshot(1n, { client: 5n, request: 9, checkpoint: newest, position: 0, size_max: 4096, ...fields });
  }
  function answer(host: FakeHost): { result: Result; op: number; next: number | null; body: number[] } {
    const m = host.answered.at(-1)!;
    expect(m.client).toBe(5n);
    expect(m.message.header.command).toBe(Command.snapshot_chunk);
    const c = readSnapshotChunk(m.message);
    expect(c.request).toBe(9);
    return { result: c.result, op: c.checkpoint.op, next: c.next, body: [...c.body] };
  }

  test("answers from the durable checkpoint, a retained one, or says why not", () => {
    const { host, sync, target } = behind();
    sync.onRequestSnapshot(ask());
    expect(answer(host)).toEqual({ result: Result.not_found, op: 0, next: null, body: [] }); // no checkpoint yet
    host.durable.restart(0, 0, target);
    sync.onRequestSnapshot(ask());
    expect(answer(host).result).toBe(Result.not_found); // not retained here
    host.storage.served = { bytes: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), next: 3 };
    sync.onRequestSnapshot(ask());
    expect(answer(host)).toEqual({ result: Result.ok, op: 16, next: 3, body: [1, 2, 3, 4, 5, 6, 7, 8] });
    host.storage.served = { bytes: new Uint8Array(8), next: 5 };
    sync.onRequestSnapshot(ask({ checkpoint: target, position: 3 }));
    expect(answer(host)).toMatchObject({ result: Result.ok, next: 5 });
    expect(host.storage.sources).toEqual([1, 1]); // one stream, never the peers' source
    host.storage.retained = true;
    host.storage.served = null;
    sync.onRequestSnapshot(ask({ checkpoint: target, position: 99 }));
    expect(answer(host).result).toBe(Result.unavailable); // past the end, or damaged here
    const malformed = ask();
    const bad = finalize(malformed.header, new Uint8Array(4));
    sync.onRequestSnapshot(bad);
    expect(answer(host).result).toBe(Result.bad_request);
    expect(host.sent).toHaveLength(0); // nothing to any replica
  });

  test("serves two checkpoints at once, each from its own source; a third waits until one ends or idles", () => {
    const { host, sync, target } = behind();
    const other = { ...target, op: 24, checksum: 5n };
    const third = { ...target, op: 32, checksum: 6n };
    host.storage.served = { bytes: new Uint8Array(8), next: 1 };
    sync.onRequestSnapshot(ask({ checkpoint: target }));
    sync.onRequestSnapshot(ask({ checkpoint: other }));
    expect(host.storage.sources).toEqual([1, 2]);
    sync.onRequestSnapshot(ask({ checkpoint: third }));
    expect(answer(host).result).toBe(Result.busy);
    host.storage.served = { bytes: new Uint8Array(8), next: null }; // the last chunk of target
    sync.onRequestSnapshot(ask({ checkpoint: target, position: 1 }));
    expect(answer(host)).toMatchObject({ result: Result.ok, next: null });
    host.storage.served = { bytes: new Uint8Array(8), next: 1 };
    sync.onRequestSnapshot(ask({ checkpoint: third }));
    expect(answer(host).result).toBe(Result.ok);
    expect(host.storage.sources).toEqual([1, 2, 1, 1]);
    sync.onRequestSnapshot(ask({ checkpoint: target }));
    expect(answer(host).result).toBe(Result.busy);
    host.ticks += snapshot_stream_idle_ticks;
    sync.onRequestSnapshot(ask({ checkpoint: target }));
    expect(answer(host).result).toBe(Result.ok);
  });
});

describe("StateSync on a real storage", () => {
  test("a stream that never verifies holds at most one attempt's bytes: disk, files and descriptors do not grow per attempt", () => {
    // A peer's real checkpoint at 16 (the world checkpoints every 16 ops), with its values.
    const source = new World(new Prng(5));
    source.run(32);
    const served = source.snapshots.get(16)!.id;
    const fs = new SimFs(new Prng(6));
    const storage = new FileStorage(fs, worldOptions({ replica: 1 }));
    expect(storage.recover(world_clients_max).state).toBeNull();
    const host = new FakeHost(storage);
    host.op = host.commit_max = 25;
    const sync = new StateSync(host);
    // The committed prepare names a digest the served state does not have (peers that all serve a
    // damaged state, or a bug): no attempt can verify.
    const target: CheckpointId = { ...served, digest: served.digest ^ 1n };
    const idle = { bytes: fs.usedBytes(), files: segmentFiles(fs).length, fds: fs.openFdCount() };
    sync.targetFrom(naming(target));
    const peaks: number[] = [];
    const after: (typeof idle)[] = [];
    let answered = 0;
    while (after.length < 30) {
      host.ticks += 1;
      if (host.ticks % 5 === 0) sync.repairTick();
      for (; answered < host.sent.length; answered++) {
        const { to, message } = host.sent[answered]!;
        const position = readRequestSync(message).position;
        const served_chunk = source.storage.readSyncChunk(served, position, 2048)!;
        if (served_chunk.next === null) peaks.push(fs.usedBytes()); // every value but the last chunk's is written
        const envelope = { ...host.envelope(host.view), replica: to };
        sync.onSyncChunk(buildSyncChunk(envelope, { checkpoint: target, position, next: served_chunk.next, body: served_chunk.bytes }));
        if (served_chunk.next === null) after.push({ bytes: fs.usedBytes(), files: segmentFiles(fs).length, fds: fs.openFdCount() });
      }
    }
    expect(host.failures()).toHaveLength(30);
    expect(host.installed).toHaveLength(0);
    // Each attempt wrote the values it received into segments of its own...
    expect(peaks[0]!).toBeGreaterThan(idle.bytes + 4096);
    expect(new Set(peaks)).toEqual(new Set([peaks[0]!]));
    // ...and its failure released them before the next attempt began.
    for (const measured of after) expect(measured).toEqual(idle);
  });
});
