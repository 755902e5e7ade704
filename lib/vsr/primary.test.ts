import { describe, expect, test } from "bun:test";
import { Command, Header, type Message } from "../net/codec.ts";
import { defaultConfig, type Config } from "../constants.ts";
import { Operation } from "../store/operations.ts";
import { ObjectStore } from "../store/object_store.ts";
import { batchEntrySize, batch_header_size, decodeBatch } from "./batch.ts";
import { decodeHousekeeping } from "../store/large_bodies.ts";
import { Prng } from "../util/prng.ts";
import { DurableState } from "./durable_state.ts";
import type { Env, ReplicaObserver, Status } from "./env.ts";
import { Journal } from "./journal.ts";
import { flushNow } from "./test_support.ts";
import { Leader } from "./leader.ts";
import { buildCommitOk, buildPrepareOk, readCommit, readPrepare, type Envelope } from "./messages.ts";
import { Primary, type PrimaryHost } from "./primary.ts";
import { rootPrepare } from "./root.ts";
import type { CheckpointId } from "./storage.ts";
import { Timeout } from "./timeout.ts";

// Replica 0 leads view 0 of a 3-replica cluster (quorum 2) with a small journal: 64 slots, a
// checkpoint every 16 ops, at most 4 prepares in flight.
const config: Config = {
  ...defaultConfig(3, 1n),
  journal_slot_count: 64,
  checkpoint_interval_ops: 16,
  pipeline_prepare_max: 4,
};

interface Sent {
  to: number;
  message: Message;
}

/** The replica as the primary sees it: real journal, durable state, leader and timers; sends,
 * the disk and execution recorded. */
class FakeHost implements PrimaryHost {
  readonly config: Config;
  readonly replica = 0;
  readonly sent: Sent[] = [];
  readonly logs: string[] = [];
  readonly env: Env;
  /** Prepares written, by checksum (what storage reads back). */
  readonly disk = new Map<bigint, Message>();
  /** What storage reports as dead bytes pinned by retention (the nudge's figure). */
  pinned = 0;
  readonly storage = {
    readPrepare: (op: number, checksum: bigint) => this.disk.get(checksum) ?? null,
    pinnedDeadBytes: () => this.pinned,
  };
  readonly journal: Journal;
  readonly durable: DurableState;
  /** Tests that hold a flush in flight set this. */
  flush_in_flight = false;
  readonly flushes = { inFlight: (): boolean => this.flush_in_flight };
  readonly primaries: number[] = [];
  readonly observer: ReplicaObserver;
  status: Status = "normal";
  view = 0;
  log_view_durable = 0;
  formed = true;
  no_space = false;
  disk_full = false;
  ticks = 0;
  realtime = 1_000;
  leader: Leader | null;
  op = 0;
  commit_min = 0;
  commit_min_checksum: bigint;
  commit_max = 0;
  commit_max_checksum: bigint | null = null;
  readonly timeout_prepare = new Timeout("prepare", 20);
  readonly timeout_heartbeat = new Timeout("heartbeat", 10);
  /** commit_max at each executeCommitted call. */
  readonly executions: number[] = [];
  readonly store = new ObjectStore();
  readonly state_sync = { syncing: false };

  constructor(over: Partial<Config> = {}) {
    this.config = { ...config, ...over };
    const c = this.config;
    this.env = {
      sendToReplica: (to, message) => this.sent.push({ to, message }),
      sendToClient: () => {
        throw new Error("the primary's normal operation sends nothing to clients");
      },
      random: new Prng(7),
      log: (_level, text) => this.logs.push(text),
    };
    this.observer = {
      executed: () => {},
      request: () => {},
      primary: (_replica, view) => this.primaries.push(view),
      doViewChange: () => {},
      violation: () => {},
    };
    this.journal = new Journal(c.journal_slot_count);
    const root = rootPrepare(c.cluster, c.replica_count);
    this.journal.setHeader(root);
    this.commit_min_checksum = root.checksum;
    this.durable = new DurableState(0, c.checkpoint_interval_ops, { op: 0, digest: 0n, checksum: root.checksum });
    this.leader = FakeHost.newLeader(c);
  }

  /** A leader's state for a new term of replica 0, starting with everything up to commit executed. */
  static newLeader(c: Config, ticks = 0, commit = 0): Leader {
    return new Leader(
      {
        replica_count: c.replica_count,
        replica: 0,
        f: 1,
        quorum: 2,
        request_queue_max: c.request_queue_max,
        request_queue_bytes_max: 64 * 1024 * 1024,
        read_queue_max: c.read_queue_max,
        pipeline_prepare_max: c.pipeline_prepare_max,
        batch_requests_max: c.batch_requests_max,
        batch_size_max: c.batch_size_max,
        heartbeat_ticks: c.heartbeat_ticks,
        view_change_timeout_ticks: c.view_change_timeout_ticks,
      },
      [],
      ticks,
      commit,
      commit,
    );
  }

  /** The newest durable checkpoint, when a test takes checkpoints itself (takeCheckpoints). */
  checkpoint_taken: CheckpointId | null = null;
  get checkpoint(): CheckpointId {
    return this.checkpoint_taken ?? this.durable.checkpoint;
  }
  /** Takes every checkpoint up to what executed, as a replica would (ids made up). */
  takeCheckpoints(): void {
    const interval = this.config.checkpoint_interval_ops;
    for (let op = interval; op <= this.commit_min; op += interval) {
      if (this.checkpoint.op >= op) continue;
      const id = { op, digest: BigInt(op), checksum: BigInt(op) };
      this.durable.remember(id);
      this.checkpoint_taken = id;
    }
  }
  isPrimary(): boolean {
    return this.view % this.config.replica_count === this.replica;
  }
  isActingPrimary(): boolean {
    return this.status === "normal" && this.isPrimary();
  }
  envelope(view: number): Envelope {
    return envelopeOf(this.replica, view);
  }
  sendToOthers(message: Message): void {
    for (let r = 1; r < this.config.replica_count; r++) this.env.sendToReplica(r, message);
  }
  journalPrepare(message: Message): boolean {
    if (this.disk_full) return false;
    this.journal.wrote(message.header);
    this.disk.set(message.header.checksum, message);
    return true;
  }
  executeCommitted(): void {
    this.executions.push(this.commit_max);
    this.commit_min = this.commit_max;
    this.commit_min_checksum = this.journal.header(this.commit_max)!.checksum;
  }
  replicationQuorum(): number {
    return 2;
  }
  opPrepareOkMax(): number {
    return this.checkpoint.op + this.config.journal_slot_count;
  }

  /** Queues write requests from clients 1..count with the leader. */
  queue(count: number, first_client = 1, operation = Operation.put): void {
    for (let i = 0; i < count; i++) {
      const h = new Header();
      h.command = Command.request;
      h.client = BigInt(first_client + i);
      h.session = 1;
      h.request = 1;
      h.operation = operation;
      expect(this.leader!.queueRequest({ header: h, body: new Uint8Array(8) })).toBe("queued");
    }
  }

  takeSent(): Sent[] {
    return this.sent.splice(0);
  }
}

function envelopeOf(replica: number, view: number): Envelope {
  return { cluster: config.cluster, replica, replica_count: config.replica_count, view, incarnation: 0 };
}

function prepareOk(from: number, prepare: Message, checksum = prepare.header.checksum): Message {
  const h = prepare.header;
  return buildPrepareOk(envelopeOf(from, h.view), { op: h.op, checksum, parent: h.parent, commit_max: 0 });
}

/** Seconds of ticks (from tick 100): housekeeping each tick, committing what the primary
 * sent and taking checkpoints as a replica would. */
function secondsOf(host: FakeHost, primary: Primary): (seconds?: number) => void {
  let tick = 100;
  return (seconds = 1) => {
    for (let i = 0; i < 100 * seconds; i++) {
      host.ticks = tick++;
      primary.housekeeping();
      commitSent(
        host,
        primary,
        host.takeSent().filter((s) => s.to === 1),
      );
      host.takeCheckpoints();
    }
  };
}

/** Commits the prepares sent to replica 1: the primary's copies durable, and replica 1's acks. */
function commitSent(host: FakeHost, primary: Primary, prepares: Sent[]): void {
  primary.onDurable(flushNow(host.journal));
  for (const { message } of prepares) primary.onPrepareOk(prepareOk(1, message));
}

describe("Primary", () => {
  test("batches queued requests into a prepare, sends it, journals it, and commits it on a quorum of durable copies", () => {
    const host = new FakeHost();
    const primary = new Primary(host);
    host.queue(2);
    primary.prepareQueued();
    expect(host.op).toBe(1);
    const sent = host.takeSent();
    expect(sent.map((s) => s.to)).toEqual([1, 2]);
    const prepare = sent[0]!.message;
    expect(readPrepare(prepare).requests).toBe(2);
    expect(prepare.header.parent).toBe(host.journal.header(0)!.checksum);
    expect(prepare.header.timestamp).toBe(host.realtime);
    expect(host.journal.hasPrepare(1, prepare.header.checksum)).toBe(true);
    expect(host.timeout_prepare.running).toBe(true);
    expect(host.primaries).toEqual([0]);

    // Its own durable copy is one of two.
    primary.onDurable(flushNow(host.journal));
    expect(host.commit_max).toBe(0);
    // An ack naming another prepare of op 1 counts for nothing.
    primary.onPrepareOk(prepareOk(1, prepare, 12345n));
    expect(host.commit_max).toBe(0);
    // An ack from another view neither.
    primary.onPrepareOk(buildPrepareOk(envelopeOf(1, 1), { op: 1, checksum: prepare.header.checksum, parent: 0n, commit_max: 0 }));
    expect(host.commit_max).toBe(0);
    primary.onPrepareOk(prepareOk(1, prepare));
    expect(host.commit_max).toBe(1);
    expect(host.commit_max_checksum).toBe(prepare.header.checksum);
    expect(host.executions[host.executions.length - 1]).toBe(1);
    expect(host.leader!.pipeline.length).toBe(0);
    expect(host.timeout_prepare.running).toBe(false);
  });

  test("while its flush is in flight, requests wait and become one prepare when it completes; half a batch is cut at once", () => {
    const host = new FakeHost({ batch_size_max: 4096 });
    const primary = new Primary(host);
    host.queue(1);
    primary.prepareQueued();
    expect(host.op).toBe(1);
    host.takeSent();
    // The flush of op 1 begins: three requests arrive one by one and are held, not three prepares.
    host.flush_in_flight = true;
    for (let client = 2; client <= 4; client++) {
      host.queue(1, client);
      primary.prepareQueued();
    }
    expect(host.op).toBe(1);
    expect(host.takeSent()).toEqual([]);
    // The flush completed: the three leave as one prepare.
    host.flush_in_flight = false;
    primary.onDurable(flushNow(host.journal));
    expect(host.op).toBe(2);
    expect(readPrepare(host.takeSent()[0]!.message).requests).toBe(3);
    // In flight again: a queue holding half a batch's bytes is not held (8-byte bodies: 256 of them
    // are 2,048 of the 4,096 bytes).
    host.flush_in_flight = true;
    host.queue(255, 100);
    primary.prepareQueued();
    expect(host.op).toBe(2);
    host.queue(1, 400);
    primary.prepareQueued();
    // A full batch leaves; the rest, under half a batch, waits for the flush.
    expect(host.op).toBe(3);
    expect(readPrepare(host.takeSent()[0]!.message).requests).toBe(Math.floor((4096 - batch_header_size) / batchEntrySize(8)));
  });

  test("proposes housekeeping once a second while an upload is older than upload_abandon_ms by its clock", () => {
    const host = new FakeHost({ upload_abandon_ms: 5_000 });
    const primary = new Primary(host);
    host.store.large.createUpload("k", 1_000, null, { content_type: "", user_meta: new Uint8Array(0) }, 4);
    host.ticks = 100;
    host.realtime = 5_999; // touched at 1,000: not yet 5,000 ms old
    primary.housekeeping();
    expect(host.op).toBe(0);
    host.realtime = 6_000;
    host.ticks = 150; // not a housekeeping tick
    primary.housekeeping();
    expect(host.op).toBe(0);
    host.state_sync.syncing = true;
    host.ticks = 200;
    primary.housekeeping();
    expect(host.op).toBe(0);
    host.state_sync.syncing = false;
    primary.housekeeping();
    expect(host.op).toBe(1);
    const batch = decodeBatch(readPrepare(host.takeSent()[0]!.message).body)!;
    expect(batch.map((e) => [e.client, e.session, e.request, e.operation])).toEqual([[0n, 0, 0, Operation.housekeeping]]);
    expect(decodeHousekeeping(batch[0]!.body)).toEqual({ abandon_age_ms: 5_000 });
  });

  test("an idle primary with dead segments pinned by retention prepares no-ops until they are freed", () => {
    const host = new FakeHost({ reclaim_nudge_bytes_min: 1_000 });
    const primary = new Primary(host);
    host.pinned = 5_000;
    host.ticks = 100;
    primary.housekeeping(); // the first look: idleness is a second without a new op
    expect(host.op).toBe(0);
    host.ticks = 200;
    primary.housekeeping();
    // As many no-ops as the pipeline takes, each alone in its prepare, with an empty body.
    expect(host.op).toBe(config.pipeline_prepare_max);
    const prepares = host.takeSent().filter((s) => s.to === 1);
    expect(prepares.length).toBe(config.pipeline_prepare_max);
    for (const { message } of prepares) {
      const batch = decodeBatch(readPrepare(message).body)!;
      expect(batch.map((e) => [e.client, e.operation, e.body.length])).toEqual([[0n, Operation.housekeeping, 0]]);
    }
    expect(host.logs.some((l) => l.includes("5000 bytes of segments that nothing live references"))).toBe(true);
    // Committed: the next tick fills the pipeline again.
    commitSent(host, primary, prepares);
    expect(host.commit_max).toBe(config.pipeline_prepare_max);
    host.ticks = 201;
    primary.housekeeping();
    expect(host.op).toBe(2 * config.pipeline_prepare_max);
    // Below the threshold it goes on: it frees everything it can, not just down to the threshold.
    const commitAll = () =>
      commitSent(
        host,
        primary,
        host.takeSent().filter((s) => s.to === 1),
      );
    commitAll();
    host.pinned = 999;
    host.ticks = 300;
    primary.housekeeping();
    expect(host.op).toBe(3 * config.pipeline_prepare_max);
    // Nothing dead is left: at the next look the nudge stops.
    commitAll();
    host.pinned = 0;
    host.ticks = 400;
    primary.housekeeping();
    commitAll();
    const op = host.op;
    host.ticks = 401;
    primary.housekeeping();
    expect(host.op).toBe(op);
  });

  test("a nudge is bounded, and what two in a row could not lower starts no third", () => {
    const host = new FakeHost({ reclaim_nudge_bytes_min: 1_000 });
    const primary = new Primary(host);
    const bound = config.journal_slot_count + 3 * config.checkpoint_interval_ops;
    host.pinned = 5_000; // never freed: what every nudge leaves (its own prepares' segments, say)
    const second = secondsOf(host, primary);
    second(2); // the first look; then idle: the nudge runs to its bound within the second
    expect(host.op).toBe(bound);
    // What it left may have died during it (compaction it triggered): one more nudge.
    second(2); // the first: ops went in that second, not idle yet
    expect(host.op).toBe(2 * bound);
    // It ended with no fewer dead bytes than the one before: no third.
    second(3);
    expect(host.op).toBe(2 * bound);
    // More dead bytes: a new nudge. It runs out of ops having lowered them: it may go again.
    host.pinned = 6_000;
    second();
    expect(host.op).toBe(3 * bound);
    host.pinned = 3_000;
    second(2);
    expect(host.op).toBe(4 * bound);
    second(3);
    expect(host.op).toBe(4 * bound);
  });

  test("segments a nudge's compaction emptied are freed by the next nudge, however many bytes they are", () => {
    const host = new FakeHost({ reclaim_nudge_bytes_min: 1_000 });
    const primary = new Primary(host);
    const bound = config.journal_slot_count + 3 * config.checkpoint_interval_ops;
    host.pinned = 2_000;
    const second = secondsOf(host, primary);
    second(2);
    expect(host.op).toBe(bound);
    // The horizon it moved let compaction copy the live values out of sparse segments: they are
    // dead now, more bytes than the nudge began with, and retained checkpoints still list them.
    host.pinned = 8_000;
    second(2);
    expect(host.op).toBe(2 * bound);
    // That nudge moved retention past them: freed, and nothing more to do.
    host.pinned = 0;
    second(3);
    expect(host.op).toBe(2 * bound);
  });

  test("a new term forgets what the replica's nudges could not lower when it last led", () => {
    const host = new FakeHost({ reclaim_nudge_bytes_min: 1_000 });
    const primary = new Primary(host);
    const bound = config.journal_slot_count + 3 * config.checkpoint_interval_ops;
    host.pinned = 5_000;
    const second = secondsOf(host, primary);
    second(6); // two nudges that could not lower it, then none
    expect(host.op).toBe(2 * bound);
    // It stops leading; clients delete under another primary, whose requests it never prepares;
    // it leads again over an idle cluster with fewer dead bytes than its nudges had left.
    host.leader = null;
    second();
    host.leader = FakeHost.newLeader(host.config, host.ticks, host.commit_max);
    host.pinned = 4_000;
    second(2);
    expect(host.op).toBe(3 * bound);
  });

  test("the nudge waits for an idle second and yields to a client's request", () => {
    const host = new FakeHost({ reclaim_nudge_bytes_min: 1_000 });
    const primary = new Primary(host);
    host.pinned = 5_000;
    host.ticks = 100;
    primary.housekeeping();
    host.queue(1); // a write in the second: not idle
    primary.prepareQueued();
    host.ticks = 200;
    primary.housekeeping();
    expect(host.op).toBe(1);
    commitSent(
      host,
      primary,
      host.takeSent().filter((s) => s.to === 1),
    );
    host.ticks = 300;
    primary.housekeeping(); // idle since tick 200: nudging
    expect(host.op).toBe(1 + config.pipeline_prepare_max);
    // A client's request waits behind the full pipeline: the nudge stops, the request goes next.
    host.queue(1, 2);
    commitSent(
      host,
      primary,
      host.takeSent().filter((s) => s.to === 1),
    );
    expect(host.op).toBe(2 + config.pipeline_prepare_max);
    host.ticks = 301;
    primary.housekeeping();
    expect(host.op).toBe(2 + config.pipeline_prepare_max);
  });

  test("the primary's own copy counts only once durable", () => {
    const host = new FakeHost();
    const primary = new Primary(host);
    host.queue(1);
    primary.prepareQueued();
    const prepare = host.takeSent()[0]!.message;
    primary.onPrepareOk(prepareOk(1, prepare));
    expect(host.commit_max).toBe(0);
    primary.onDurable(flushNow(host.journal));
    expect(host.commit_max).toBe(1);
  });

  test("fills the pipeline to its bound and prepares more as ops commit", () => {
    const host = new FakeHost({ batch_requests_max: 1 });
    const primary = new Primary(host);
    host.queue(6);
    primary.prepareQueued();
    expect(host.op).toBe(4);
    expect(host.leader!.queued).toBe(2);
    const prepares = host.takeSent().filter((s) => s.to === 1);
    primary.onDurable(flushNow(host.journal));
    // Op 2's ack alone commits nothing: op 1 goes first.
    primary.onPrepareOk(prepareOk(1, prepares[1]!.message));
    expect(host.commit_max).toBe(0);
    primary.onPrepareOk(prepareOk(1, prepares[0]!.message));
    expect(host.commit_max).toBe(2);
    expect(host.op).toBe(6);
    expect(host.leader!.queued).toBe(0);
    expect(host.leader!.pipeline.map((e) => e.op)).toEqual([3, 4, 5, 6]);
  });

  test("prepares nothing until the log view is durable, the cluster formed and the disk has room", () => {
    const host = new FakeHost();
    const primary = new Primary(host);
    host.queue(1);
    host.log_view_durable = -1;
    primary.prepareQueued();
    host.log_view_durable = 0;
    host.formed = false;
    primary.prepareQueued();
    host.formed = true;
    host.no_space = true; // and the put frees no space
    primary.prepareQueued();
    expect(host.op).toBe(0);
    expect(host.sent.length).toBe(0);
    host.no_space = false;
    primary.prepareQueued();
    expect(host.op).toBe(1);
  });

  test("with a full disk it prepares only the writes that free space, past the others queued before them", () => {
    const host = new FakeHost();
    const primary = new Primary(host);
    host.no_space = true;
    host.queue(2, 1); // puts, queued before the disk filled
    host.queue(1, 3, Operation.delete);
    host.queue(1, 4, Operation.put);
    host.queue(1, 5, Operation.abort_upload);
    primary.prepareQueued();
    expect(host.op).toBe(1);
    const batch = decodeBatch(readPrepare(host.takeSent()[0]!.message).body)!;
    expect(batch.map((e) => [e.client, e.operation])).toEqual([
      [3n, Operation.delete],
      [5n, Operation.abort_upload],
    ]);
    // Room again: the puts go, in their order.
    host.no_space = false;
    primary.prepareQueued();
    const rest = decodeBatch(readPrepare(host.takeSent()[0]!.message).body)!;
    expect(rest.map((e) => e.client)).toEqual([1n, 2n, 4n]);
  });

  test("a prepare its own disk could not take stays in its log as a header", () => {
    const host = new FakeHost();
    const primary = new Primary(host);
    host.queue(1);
    host.disk_full = true;
    primary.prepareQueued();
    expect(host.op).toBe(1);
    const checksum = host.takeSent()[0]!.message.header.checksum;
    expect(host.journal.header(1)?.checksum).toBe(checksum);
    expect(host.journal.hasPrepare(1, checksum)).toBe(false);
  });

  test("prepares name the checkpoint two intervals back, and go no further than one interval short of overwriting the durable checkpoint", () => {
    const host = new FakeHost({ batch_requests_max: 1 });
    const primary = new Primary(host);
    expect(primary.opPrepareMax()).toBe(64 - 16);
    expect(primary.checkpointIdFor(1)?.op).toBe(0);
    expect(primary.checkpointIdFor(32)?.op).toBe(0);
    // Op 33 names the checkpoint at 16, not yet taken.
    expect(primary.checkpointIdFor(33)).toBeNull();

    // More requests than the journal may take: each prepare commits as soon as it is sent.
    host.queue(60);
    const commitAll = (): void => {
      primary.prepareQueued();
      for (let sent = host.takeSent(); sent.length > 0; sent = host.takeSent()) {
        primary.onDurable(flushNow(host.journal));
        for (const s of sent) if (s.to === 1) primary.onPrepareOk(prepareOk(1, s.message));
      }
    };
    commitAll();
    // It stops before op 33, whose checkpoint it does not know yet, with requests still queued.
    expect(host.op).toBe(32);
    expect(host.commit_max).toBe(32);
    expect(host.leader!.queued).toBe(28);
    host.durable.remember({ op: 16, digest: 5n, checksum: 6n });
    expect(primary.checkpointIdFor(33)).toEqual({ op: 16, digest: 5n, checksum: 6n });
    // Op 49 names the checkpoint at 32, known too: what stops it now is opPrepareMax alone.
    host.durable.remember({ op: 32, digest: 7n, checksum: 8n });
    expect(primary.checkpointIdFor(49)).toEqual({ op: 32, digest: 7n, checksum: 8n });
    commitAll();
    expect(host.op).toBe(primary.opPrepareMax());
    expect(host.commit_max).toBe(48);
    expect(host.leader!.queued).toBe(12);
    // Nothing moves it further while the durable checkpoint stays at 0.
    commitAll();
    expect(host.op).toBe(48);
  });

  test("resends each prepare in flight to the replicas that have not acknowledged it, read back if not kept", () => {
    const host = new FakeHost();
    const primary = new Primary(host);
    host.queue(1);
    primary.prepareQueued();
    const prepare = host.takeSent()[0]!.message;
    primary.onPrepareOk(prepareOk(1, prepare));
    primary.onPrepareTimeout();
    expect(host.takeSent().map((s) => [s.to, s.message.header.checksum])).toEqual([[2, prepare.header.checksum]]);
    host.leader!.entry(1)!.message = null;
    primary.onPrepareTimeout();
    expect(host.takeSent().map((s) => s.message)).toEqual([prepare]);
    // Neither kept nor readable: repair fetches it, nothing is sent.
    host.disk.clear();
    primary.onPrepareTimeout();
    expect(host.sent.length).toBe(0);
    // Not leading: the timer stops.
    host.leader = null;
    host.timeout_prepare.start();
    primary.onPrepareTimeout();
    expect(host.timeout_prepare.running).toBe(false);
  });

  test("a heartbeat starts a round that commit_oks confirm, echoing its nonce", () => {
    const host = new FakeHost();
    const primary = new Primary(host);
    host.timeout_heartbeat.start();
    expect(primary.onHeartbeatTimeout()).toBe("done");
    const sent = host.takeSent();
    expect(sent.map((s) => s.to)).toEqual([1, 2]);
    const commit = readCommit(sent[0]!.message);
    expect(commit.round).toBe(1);
    expect(commit.commit_max).toBe(0);
    expect(commit.commit_checksum).toBe(host.commit_min_checksum);
    const forged = buildCommitOk(envelopeOf(1, 0), { round: 1, nonce: commit.nonce ^ 1n, commit_max: 0 });
    expect(primary.onCommitOk(forged)).toBe(false);
    const ok = buildCommitOk(envelopeOf(1, 0), { round: 1, nonce: commit.nonce, commit_max: 0 });
    expect(primary.onCommitOk(ok)).toBe(true);
    // The same answer again confirms nothing new.
    expect(primary.onCommitOk(ok)).toBe(false);
  });

  test("abdicates when no quorum has answered within the view change timeout", () => {
    const host = new FakeHost();
    const primary = new Primary(host);
    host.ticks = config.view_change_timeout_ticks + 1;
    expect(primary.onHeartbeatTimeout()).toBe("abdicate");
    expect(host.sent.length).toBe(0);
    expect(host.logs.some((l) => l.includes("heard from no quorum"))).toBe(true);
  });

  test("abdicates when stuck with work pending, though a quorum answers its heartbeats", () => {
    const host = new FakeHost();
    const primary = new Primary(host);
    host.queue(1);
    primary.prepareQueued();
    host.takeSent();
    // Op 1 stays in flight: no backup acknowledges it, but replica 1 answers every heartbeat.
    const outcomes: string[] = [];
    for (let round = 0; round < 10 && outcomes.at(-1) !== "abdicate"; round++) {
      host.ticks += config.heartbeat_ticks;
      outcomes.push(primary.onHeartbeatTimeout());
      const commits = host.takeSent().filter((s) => s.to === 1);
      if (commits.length === 0) continue;
      const { round: r, nonce } = readCommit(commits[0]!.message);
      primary.onCommitOk(buildCommitOk(envelopeOf(1, 0), { round: r, nonce, commit_max: 0 }));
    }
    // Heartbeats while the stall is shorter than the view change timeout, then abdication.
    const rounds = Math.floor(config.view_change_timeout_ticks / config.heartbeat_ticks) + 1;
    expect(outcomes).toEqual([...Array<string>(rounds - 1).fill("done"), "abdicate"]);
    expect(host.commit_max).toBe(0);
    const stalled = rounds * config.heartbeat_ticks;
    expect(host.logs.at(-1)).toContain(`has made no progress past op 0 (commit 0, 1 prepares in flight) for ${stalled} ticks`);
    expect(host.logs.some((l) => l.includes("heard from no quorum"))).toBe(false);
  });

  test("sends no heartbeat before its log view is durable, and stops the timer when not leading", () => {
    const host = new FakeHost();
    const primary = new Primary(host);
    host.log_view_durable = -1;
    expect(primary.onHeartbeatTimeout()).toBe("done");
    expect(host.sent.length).toBe(0);
    host.leader = null;
    host.timeout_heartbeat.start();
    expect(primary.onHeartbeatTimeout()).toBe("done");
    expect(host.timeout_heartbeat.running).toBe(false);
    expect(primary.onCommitOk(buildCommitOk(envelopeOf(1, 0), { round: 1, nonce: 1n, commit_max: 0 }))).toBe(false);
  });
});
