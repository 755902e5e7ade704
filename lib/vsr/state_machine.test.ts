import { describe, expect, test } from "bun:test";
import { Command, Header, type Message } from "../net/codec.ts";
import { defaultConfig } from "../constants.ts";
import { ObjectStore, type ObjectEntry } from "../store/object_store.ts";
import type { Block, Upload } from "../store/uploads.ts";
import {
  decodeCreateUploadReply,
  decodeReadReply,
  encodeAbortUpload,
  encodeCompleteUpload,
  encodeCreateUpload,
  encodeHousekeeping,
  encodeReadRequest,
  encodeWriteBlock,
  partChecksum,
} from "../store/large_bodies.ts";
import { checksum } from "../util/checksum.ts";
import { Operation, Result, decodeU64, encodeKeyRequest } from "../store/operations.ts";
import { Journal } from "./journal.ts";
import { ClientTable } from "./client_table.ts";
import { Leader } from "./leader.ts";
import { encodeBatch } from "./batch.ts";
import { buildPrepare, buildRequest, readReply, type ClientReply, type Envelope } from "./messages.ts";
import type { Env, ReplicaObserver, Status } from "./env.ts";
import { StateMachine, executedStateHolds, readFromStore, type StateMachineHost } from "./state_machine.ts";
import { executedManifestBlocks, type ExecuteResult, type ManifestBlocksFound, type Readers } from "../store/execute.ts";
import type { UploadPart, WriteBlockRequest } from "../store/large_bodies.ts";
import { rootPrepare } from "./root.ts";
import { Prng } from "../util/prng.ts";

const config = { ...defaultConfig(3, 7n), value_size_max: 64, block_size_max: 32, checkpoint_interval_ops: 16 };
const root = rootPrepare(config.cluster, config.replica_count);
const enc = new TextEncoder();

/** Replica 0 of three, primary of view 1, with the hooks recorded instead of sent. */
class FakeHost implements StateMachineHost {
  readonly config = config;
  readonly replica = 0;
  readonly sent_errors: { client: bigint; view: number; result: Result; body: Uint8Array }[] = [];
  readonly replies: ClientReply[] = [];
  readonly logs: string[] = [];
  readonly env: Env = {
    sendToReplica: () => {
      throw new Error("the state machine sends nothing to replicas");
    },
    sendToClient: (client, message) => {
      const r = readReply(message);
      this.sent_errors.push({ client, view: message.header.view, result: r.result, body: r.body });
    },
    random: new Prng(1),
    log: (_level, text) => this.logs.push(text),
  };
  /** Prepares on disk by op (a missing one reads as damaged). */
  readonly on_disk = new Map<number, Message>();
  readonly storage = {
    prepareBodyLocation: (op: number) => ({ segment: 1, offset: op * 1000 }),
    readPrepare: (op: number, checksum: bigint): Message | null => {
      const m = this.on_disk.get(op);
      return m !== undefined && m.header.checksum === checksum ? m : null;
    },
  };
  readonly journal = new Journal(64);
  readonly recent_prepares = { take: (): Message | null => null };
  start_view_pending = false;
  /** How far the log is verified (LogChain.verifiedUpTo). */
  verified_up_to = 0;
  readonly chain = { verifiedUpTo: (): number => this.verified_up_to };
  readonly checkpoints: number[] = [];
  readonly state_sync = {
    syncing: false,
    checkpointMissing: (): boolean => false,
    takeCheckpoint: (): boolean => {
      this.checkpoints.push(this.commit_min);
      return true;
    },
  };
  readonly stats = { requests_rejected: 0, requests_busy: 0, requests_not_primary: 0 };
  readonly requests: { client: bigint; request: number; op: number; duplicate: boolean }[] = [];
  readonly observer: ReplicaObserver = {
    executed: () => {},
    request: (_replica, client, request, op, duplicate) => this.requests.push({ client, request, op, duplicate }),
    primary: () => {},
    doViewChange: () => {},
    violation: () => {},
  };
  status: Status = "normal";
  view = 1;
  log_view = 1;
  log_view_durable = 1;
  op = 0;
  commit_min = 0;
  commit_max = 0;
  commit_min_checksum = root.checksum;
  commit_min_header: Header = root;
  realtime = 5000;
  leader: Leader | null = new Leader(
    {
      replica_count: 3,
      replica: 0,
      f: 1,
      quorum: 2,
      request_queue_max: 4,
      request_queue_bytes_max: 64 * 1024 * 1024,
      read_queue_max: 4,
      pipeline_prepare_max: 4,
      batch_requests_max: 4,
      batch_size_max: 1 << 16,
      heartbeat_ticks: 10,
      view_change_timeout_ticks: 50,
    },
    [],
    0,
    0,
    0,
  );
  formed = true;
  no_space = false;
  store = new ObjectStore();
  clients = new ClientTable(2);
  /** What a value read from disk returns (null: damaged). */
  stored = new Map<string, Uint8Array>();
  commits_sent = 0;

  isPrimary(): boolean {
    return this.leader !== null;
  }
  envelope(view: number): Envelope {
    return { cluster: config.cluster, replica: 0, replica_count: 3, view, incarnation: 9 };
  }
  readRound(): number {
    return this.leader!.reads.round + 1;
  }
  sendReply(reply: ClientReply): void {
    this.replies.push(reply);
  }
  blockHeld(request: WriteBlockRequest): boolean {
    return executedStateHolds(this.store, request);
  }
  manifestBlocksReady(upload: Upload, parts: readonly UploadPart[]): ManifestBlocksFound {
    return executedManifestBlocks(this.store, upload, parts);
  }
  executeReadRequest(operation: Operation, body: Uint8Array, readers: Readers): ExecuteResult {
    return readFromStore(this.store, operation, body, readers);
  }
  readonly primary = {
    sendCommit: (leader: Leader): void => {
      this.commits_sent += 1;
      leader.reads.startRound(BigInt(this.commits_sent));
    },
  };
  /** What a block read from disk returns, by checksum (absent: damaged). */
  blocks = new Map<bigint, Uint8Array>();
  readonly values = {
    readValue: (key: string, _entry: ObjectEntry): Uint8Array | null => this.stored.get(key) ?? null,
    readBlock: (block: Block): Uint8Array | null => this.blocks.get(block.checksum) ?? null,
  };
}

function request(client: bigint, session: number, number: number, operation: Operation, body: Uint8Array = new Uint8Array(0)): Message {
  return buildRequest(config.cluster, { client, session, request: number, operation, view: 1, body });
}

/** The prepare of op after host.commit_min ordering these requests, chained to what it executed. */
function prepare(host: FakeHost, requests: Message[]): Message {
  const op = host.commit_min + 1;
  host.op = Math.max(host.op, op);
  host.commit_max = Math.max(host.commit_max, op);
  const body = encodeBatch(requests.map((m) => ({ ...m.header, body: m.body })));
  return buildPrepare(host.envelope(1), {
    op,
    parent: host.commit_min_checksum,
    commit_max: op - 1,
    timestamp: 100 + op,
    checkpoint: { op: 0, digest: 0n, checksum: root.checksum },
    requests: requests.length,
    body,
  });
}

describe("requests on arrival", () => {
  test("a backup refuses with not_primary, naming the view it last knew a primary of while changing views", () => {
    const host = new FakeHost();
    host.leader = null;
    host.status = "view_change";
    host.view = 3;
    const sm = new StateMachine(host);
    expect(sm.onRequest(request(1n, 0, 1, Operation.register))).toBe(false);
    expect(host.sent_errors).toEqual([{ client: 1n, view: 1, result: Result.not_primary, body: new Uint8Array(0) }]);
    expect(host.stats).toEqual({ requests_rejected: 1, requests_busy: 0, requests_not_primary: 1 });
  });

  test("an invalid request is refused with the limit it broke", () => {
    const host = new FakeHost();
    const sm = new StateMachine(host);
    const put = request(1n, 1, 2, Operation.put, encodeKeyRequest(enc.encode("k"), new Uint8Array(65)));
    expect(sm.onRequest(put)).toBe(false);
    expect(host.sent_errors[0]!.result).toBe(Result.value_too_large);
    expect(decodeU64(host.sent_errors[0]!.body)).toBe(64);
  });

  test("writes wait for formation and space; a session unknown to the table is evicted", () => {
    const host = new FakeHost();
    const sm = new StateMachine(host);
    host.formed = false;
    expect(sm.onRequest(request(1n, 0, 1, Operation.register))).toBe(false);
    host.formed = true;
    host.no_space = true;
    expect(sm.onRequest(request(1n, 5, 2, Operation.put, encodeKeyRequest(enc.encode("k"), enc.encode("v"))))).toBe(false);
    host.no_space = false;
    expect(sm.onRequest(request(1n, 5, 2, Operation.put, encodeKeyRequest(enc.encode("k"), enc.encode("v"))))).toBe(false);
    expect(host.sent_errors.map((e) => e.result)).toEqual([Result.busy, Result.no_space, Result.evicted]);
    expect(host.stats).toEqual({ requests_rejected: 3, requests_busy: 1, requests_not_primary: 0 });
  });

  test("a full disk still takes the writes that free space, and the register a client needs to send them", () => {
    const host = new FakeHost();
    const sm = new StateMachine(host);
    sm.execute(prepare(host, [request(1n, 0, 1, Operation.register)]));
    host.no_space = true;
    expect(sm.onRequest(request(2n, 0, 1, Operation.register))).toBe(true);
    expect(sm.onRequest(request(1n, 1, 2, Operation.delete, encodeKeyRequest(enc.encode("k"), new Uint8Array(0))))).toBe(true);
    expect(sm.onRequest(request(3n, 1, 2, Operation.abort_upload, encodeAbortUpload(1)))).toBe(false);
    expect(host.sent_errors.map((e) => e.result)).toEqual([Result.evicted]); // client 3 has no session: not refused for space
    expect(sm.onRequest(request(1n, 1, 3, Operation.put, encodeKeyRequest(enc.encode("k"), enc.encode("v"))))).toBe(false);
    expect(host.sent_errors.map((e) => e.result)).toEqual([Result.evicted, Result.no_space]);
  });

  test("a new write asks the primary to prepare; its retry in flight waits for the one queued", () => {
    const host = new FakeHost();
    const sm = new StateMachine(host);
    expect(sm.onRequest(request(1n, 0, 1, Operation.register))).toBe(true);
    expect(sm.onRequest(request(1n, 0, 1, Operation.register))).toBe(false);
    expect(host.sent_errors).toEqual([]);
    expect(host.leader!.queued).toBe(1);
  });
});

describe("committed batches", () => {
  test("execute at most once per session, advance commit_min, and the primary answers each client", () => {
    const host = new FakeHost();
    const sm = new StateMachine(host);
    const p1 = prepare(host, [request(1n, 0, 1, Operation.register)]);
    sm.execute(p1);
    expect(host.commit_min).toBe(1);
    expect(host.commit_min_checksum).toBe(p1.header.checksum);
    expect(host.clients.get(1n)?.session).toBe(1);
    // The new session is the register's op.
    expect(host.replies.map((r) => [r.result, r.session, r.op])).toEqual([[Result.ok, 1, 1]]);

    const put = request(1n, 1, 2, Operation.put, encodeKeyRequest(enc.encode("k"), enc.encode("value")));
    const stale = request(2n, 3, 1, Operation.put, encodeKeyRequest(enc.encode("j"), enc.encode("x")));
    sm.execute(prepare(host, [put, stale]));
    // Ordered again across a view change: not applied twice, answered from the table.
    sm.execute(prepare(host, [put]));
    expect(host.commit_min).toBe(3);
    expect(host.store.get("k")?.version).toBe(1);
    expect(host.store.get("j")).toBeUndefined();
    expect(host.replies.slice(1).map((r) => [r.client, r.result, r.op])).toEqual([
      [1n, Result.ok, 2],
      [2n, Result.evicted, 2],
      [1n, Result.ok, 2],
    ]);
    expect(host.requests.map((r) => [r.request, r.op, r.duplicate])).toEqual([
      [2, 2, false],
      [2, 3, true],
    ]);
    // A retry of the executed request on arrival gets the stored reply, not a second execution.
    expect(sm.onRequest(put)).toBe(false);
    expect(host.replies.at(-1)).toMatchObject({ client: 1n, request: 2, result: Result.ok, op: 2 });
  });

  test("a backup executes without replying", () => {
    const host = new FakeHost();
    host.leader = null;
    const sm = new StateMachine(host);
    sm.execute(prepare(host, [request(1n, 0, 1, Operation.register)]));
    expect(host.commit_min).toBe(1);
    expect(host.clients.size).toBe(1);
    expect(host.replies).toEqual([]);
  });

  test("refuses a prepare that does not chain to the op executed last", () => {
    const host = new FakeHost();
    const sm = new StateMachine(host);
    const p = prepare(host, [request(1n, 0, 1, Operation.register)]);
    host.commit_min_checksum = 1n;
    expect(() => sm.execute(p)).toThrow("does not chain");
  });

  test("the pipeline's copy of a prepare is found by op and checksum", () => {
    const host = new FakeHost();
    const sm = new StateMachine(host);
    const p = prepare(host, [request(1n, 0, 1, Operation.register)]);
    host.leader!.prepared(1, p.header.checksum, p);
    expect(sm.pipelineMessage(1, p.header.checksum)).toBe(p);
    expect(sm.pipelineMessage(1, 5n)).toBeNull();
  });
});

describe("the execution loop", () => {
  /** Journals a chain of prepares above what host executed, each registering a new client. */
  function committedChain(host: FakeHost, count: number): Message[] {
    const prepares: Message[] = [];
    let parent = host.commit_min_checksum;
    for (let i = 1; i <= count; i++) {
      const op = host.commit_min + i;
      const body = encodeBatch([{ ...request(BigInt(op), 0, 1, Operation.register).header, body: new Uint8Array(0) }]);
      const m = buildPrepare(host.envelope(1), {
        op,
        parent,
        commit_max: op - 1,
        timestamp: 100 + op,
        checkpoint: { op: 0, digest: 0n, checksum: root.checksum },
        requests: 1,
        body,
      });
      parent = m.header.checksum;
      host.journal.wrote(m.header);
      host.on_disk.set(op, m);
      prepares.push(m);
    }
    host.op = host.commit_min + count;
    host.commit_max = host.op;
    return prepares;
  }

  test("executes committed ops in order up to the verified log, with a checkpoint at each interval", () => {
    const host = new FakeHost();
    host.leader = null; // a backup: executes, replies to nobody
    const sm = new StateMachine(host);
    committedChain(host, 20);
    host.verified_up_to = 18;
    sm.executeCommitted();
    expect(host.commit_min).toBe(18);
    expect(host.clients.get(18n)?.session).toBe(18);
    expect(host.checkpoints).toEqual([16]);
    expect(host.replies).toEqual([]);
  });

  test("stops at a prepare damaged on disk, marks it for repair, and says so", () => {
    const host = new FakeHost();
    host.leader = null;
    const sm = new StateMachine(host);
    committedChain(host, 5);
    host.on_disk.delete(3);
    host.verified_up_to = 5;
    sm.executeCommitted();
    expect(host.commit_min).toBe(2);
    expect(host.journal.hasPrepare(3, host.journal.header(3)!.checksum)).toBe(false);
    expect(host.logs.some((l) => l.includes("prepare op 3 is damaged on disk"))).toBe(true);
  });

  test("executes nothing during a state sync, while a start_view is pending, or outside normal and recovering", () => {
    for (const block of ["sync", "pending", "status"] as const) {
      const host = new FakeHost();
      host.leader = null;
      const sm = new StateMachine(host);
      committedChain(host, 3);
      host.verified_up_to = 3;
      if (block === "sync") host.state_sync.syncing = true;
      if (block === "pending") host.start_view_pending = true;
      if (block === "status") host.status = "view_change";
      sm.executeCommitted();
      expect(host.commit_min).toBe(0);
    }
  });
});

describe("linearizable reads", () => {
  test("a read waits for commit and a round sent after it arrived, confirmed by a backup", () => {
    const host = new FakeHost();
    const sm = new StateMachine(host);
    sm.execute(prepare(host, [request(1n, 0, 1, Operation.register)]));
    sm.execute(prepare(host, [request(1n, 1, 2, Operation.put, encodeKeyRequest(enc.encode("k"), enc.encode("v")))]));
    host.stored.set("k", enc.encode("v"));
    host.replies.length = 0;
    const get = request(1n, 1, 3, Operation.get, encodeKeyRequest(enc.encode("k"), null));
    expect(sm.onRequest(get)).toBe(false);
    // Queued, and the round it waits for was started at once.
    expect(host.replies).toEqual([]);
    expect(host.commits_sent).toBe(1);
    expect(host.leader!.reads.ack(1, host.leader!.reads.round)).toBe(true);
    sm.serveReads();
    expect(host.replies.map((r) => [r.request, r.result, r.op, r.timestamp])).toEqual([[3, Result.ok, 0, 5000]]);
  });

  test("a read is busy while the view is not durable", () => {
    const host = new FakeHost();
    host.log_view_durable = 0;
    const sm = new StateMachine(host);
    expect(sm.onRequest(request(1n, 1, 3, Operation.get, encodeKeyRequest(enc.encode("k"), null)))).toBe(false);
    expect(host.sent_errors.map((e) => e.result)).toEqual([Result.busy]);
    expect(host.commits_sent).toBe(0);
  });
});

test("an error reply travels in the replica's envelope as a reply", () => {
  const host = new FakeHost();
  host.leader = null;
  const captured: Message[] = [];
  (host as { env: Env }).env = { ...host.env, sendToClient: (_client, m) => captured.push(m) };
  new StateMachine(host).onRequest(request(4n, 0, 1, Operation.register));
  expect(captured.map((m) => [m.header.command, m.header.client, m.header.view, m.header.incarnation])).toEqual([
    [Command.reply, 4n, 1, 9],
  ]);
});

describe("large objects (LARGE_OBJECTS.md §5, §7)", () => {
  const no_meta = { content_type: "", user_meta: new Uint8Array(0) };

  /** A primary with client 1 registered (session 1) and an upload of key "big" open (id 1). */
  function withUpload(): { host: FakeHost; sm: StateMachine } {
    const host = new FakeHost();
    const sm = new StateMachine(host);
    sm.execute(prepare(host, [request(1n, 0, 1, Operation.register)]));
    const create = encodeCreateUpload({ key: enc.encode("big"), condition: 0, if_version: 0, declared_size: null, metadata: no_meta });
    sm.execute(prepare(host, [request(1n, 1, 2, Operation.create_upload, create)]));
    expect(decodeCreateUploadReply(host.replies.at(-1)!.body)?.upload_id).toBe(1);
    host.replies.length = 0;
    return { host, sm };
  }

  function block(lane: bigint, number: number, upload_id: number, index: number, data: Uint8Array): Message {
    const body = encodeWriteBlock({ upload_id, part_number: 1, block_index: index, attempt: 5n, checksum: checksum(data), data });
    return request(lane, 0, number, Operation.write_block, body);
  }

  test("client 0 is the primary's own: a request naming it is a bad request", () => {
    const host = new FakeHost();
    expect(new StateMachine(host).onRequest(request(0n, 0, 1, Operation.register))).toBe(false);
    expect(host.sent_errors.map((e) => e.result)).toEqual([Result.bad_request]);
  });

  test("write_block needs no session and is never recorded; a retry of a block the state holds is answered at once", () => {
    const { host, sm } = withUpload();
    const data = enc.encode("0123456789abcdef");
    const lane = block(77n, 1, 1, 0, data); // lane 77 never registered
    expect(sm.onRequest(lane)).toBe(true);
    expect(host.leader!.queued).toBe(1);
    sm.execute(prepare(host, [lane]));
    expect(host.replies.map((r) => [r.client, r.result, r.op])).toEqual([[77n, Result.ok, 3]]);
    expect(host.clients.get(77n)).toBeUndefined();
    expect(host.requests.map((r) => r.client)).toEqual([1n]); // the lane's block is no at-most-once request
    // The lane retries (its reply was lost): answered from the executed state, nothing prepared.
    expect(sm.onRequest(lane)).toBe(false);
    expect(host.replies.at(-1)).toMatchObject({ client: 77n, result: Result.ok, op: 0 });
    // Ordered twice (a retry across a view change): harmless, the slot already holds it.
    sm.execute(prepare(host, [lane]));
    expect(host.store.large.block_count).toBe(1);
  });

  test("a block for an upload the state closed is upload_not_found; one above the counter is prepared", () => {
    const { host, sm } = withUpload();
    const data = enc.encode("x");
    sm.execute(prepare(host, [request(1n, 1, 3, Operation.abort_upload, encodeAbortUpload(1))]));
    expect(host.store.large.upload_count).toBe(0);
    expect(sm.onRequest(block(77n, 1, 1, 0, data))).toBe(false);
    expect(host.sent_errors.map((e) => e.result)).toEqual([Result.upload_not_found]);
    // Upload 2 may be created by an op this primary has not executed: execution decides.
    expect(sm.onRequest(block(78n, 1, 2, 0, data))).toBe(true);
  });

  test("a block above block_size_max is refused naming block_size_max", () => {
    const { host, sm } = withUpload();
    const data = new Uint8Array(config.block_size_max + 1);
    expect(sm.onRequest(block(77n, 1, 1, 0, data))).toBe(false);
    expect(host.sent_errors.map((e) => [e.result, decodeU64(e.body)])).toEqual([[Result.value_too_large, config.block_size_max]]);
  });

  test("reads: version 0 waits for a round; a pinned version held is served at once; a replaced one is object_changed", () => {
    const { host, sm } = withUpload();
    const a = enc.encode("aaaaaaaaaaaaaaaa");
    const b = enc.encode("bbbbbbbb");
    host.blocks.set(checksum(a), a);
    host.blocks.set(checksum(b), b);
    sm.execute(prepare(host, [block(77n, 1, 1, 0, a), block(78n, 1, 1, 1, b)]));
    const part = { part_number: 1, block_count: 2, attempt: 5n, part_size: 24, part_checksum: partChecksum([checksum(a), checksum(b)]) };
    const complete = encodeCompleteUpload({ upload_id: 1, condition: 0, if_version: 0, declared_size: 24, md5: null, parts: [part] });
    sm.execute(prepare(host, [request(1n, 1, 3, Operation.complete_upload, complete)]));
    expect(host.replies.at(-1)).toMatchObject({ client: 1n, result: Result.ok });
    const version = host.store.get("big")!.version;
    host.replies.length = 0;

    const read = (v: number, offset: number, length: number): Message =>
      request(
        90n,
        0,
        1,
        Operation.read,
        encodeReadRequest({ key: enc.encode("big"), version: v, offset, length, metadata: false, block_map: true }),
      );
    expect(sm.onRequest(read(0, 10, 10))).toBe(false);
    expect(host.replies).toEqual([]); // waits for a read round
    expect(host.commits_sent).toBe(1);
    expect(sm.onRequest(read(version, 12, 100))).toBe(false);
    const pinned = decodeReadReply(host.replies[0]!.body)!;
    expect(new TextDecoder().decode(pinned.data)).toBe("aaaabbbbbbbb");
    expect(pinned.block_map!.map((e) => [e.start, e.size])).toEqual([
      [0, 16],
      [16, 8],
    ]);
    // Replaced: a read pinned to the old version waits for a round, then is told it changed.
    sm.execute(prepare(host, [request(1n, 1, 4, Operation.delete, encodeKeyRequest(enc.encode("big"), null))]));
    host.replies.length = 0;
    expect(sm.onRequest(read(version, 0, 4))).toBe(false);
    expect(host.replies).toEqual([]);
  });

  test("a housekeeping entry (client 0) expires old uploads on every replica, with no reply and no client-table record", () => {
    const { host, sm } = withUpload();
    host.leader = null; // a backup executes it alike
    const entry = {
      client: 0n,
      session: 0,
      request: 0,
      operation: Operation.housekeeping,
      body: encodeHousekeeping({ abandon_age_ms: 1 }),
    };
    const op = host.commit_min + 1;
    host.op = op;
    host.commit_max = op;
    const p = buildPrepare(host.envelope(1), {
      op,
      parent: host.commit_min_checksum,
      commit_max: op - 1,
      timestamp: 100_000,
      checkpoint: { op: 0, digest: 0n, checksum: root.checksum },
      requests: 1,
      body: encodeBatch([entry]),
    });
    sm.execute(p);
    expect(host.store.large.upload_count).toBe(0);
    expect(host.replies).toEqual([]);
    expect(host.clients.get(0n)).toBeUndefined();
  });
});
