/**
 * Reads a consistent point-in-time snapshot of a cluster (toastyfs snapshot save, docs/PROTOCOL.md
 * §3.16): the records of one checkpoint, the state after one committed op C, streamed from any
 * replica that retains it.
 *
 * "Everything acknowledged before the save started" is in it: the reader first commits a no-op of
 * its own and takes that op as T (a write acknowledged before it was committed before it, so its op
 * is below T), then wants a checkpoint C ≥ T. Under load checkpoints come every
 * checkpoint_interval_ops by themselves; on an idle cluster the reader advances the log with more
 * no-ops, at most an interval of them, up to the next multiple of the interval. A no-op is a
 * write_block to an upload id no cluster hands out (2^53 − 1): it is prepared and committed, and
 * its execution answers upload_not_found and changes nothing, not even the client table (a
 * write_block needs no session), so the state digest is that of the state before it. Then it polls
 * the replicas' status until one reports a durable checkpoint ≥ T, and streams it, preferring a
 * backup. If that checkpoint stops being retained mid-stream, it starts over from the newest (still
 * ≥ T); a replica that does not answer, is busy or cannot read a value is replaced by another that
 * retains the same checkpoint (every replica's stream of a checkpoint is the same, record for
 * record).
 */
import { randomBytes } from "node:crypto";
import { Command, Header, finalize, type Message } from "../net/codec.ts";
import { TcpTransport } from "../net/tcp_transport.ts";
import type { AuthKeys } from "../net/auth/secret.ts";
import type { TlsFiles } from "../net/tls.ts";
import { formatAddress, membership, type Address, type Membership } from "../net/address.ts";
import { decodeStatus, type ReplicaStatus } from "../net/status_codec.ts";
import { defaultConfig, sender_client, snapshot_chunk_size_max_bytes } from "../constants.ts";
import { Operation, Result } from "../store/operations.ts";
import { encodeWriteBlock } from "../store/large_bodies.ts";
import { checksum } from "../util/checksum.ts";
import { ClientSession } from "./session.ts";
import { Channel } from "./channel.ts";
import { ClientError } from "./errors.ts";

/** The upload id of a no-op write_block: upload ids count up from 1, one per create_upload, and
 * never get near 2^53 − 1. */
export const snapshot_noop_upload_id = Number.MAX_SAFE_INTEGER;

/** A checkpoint as the replicas name it (docs/PROTOCOL.md §4.7). */
export interface SnapshotCheckpoint {
  op: number;
  digest: bigint;
  checksum: bigint;
}

/** Where the records go: begin (again, when the stream starts over), then each chunk in order
 * (the next is asked for once chunk returns, or its promise resolves). */
export interface SnapshotSink {
  begin(checkpoint: SnapshotCheckpoint, replica_count: number): void;
  chunk(position: number, records: Uint8Array): void | Promise<void>;
}

export interface SnapshotReaderOptions {
  addresses: Address[];
  secret?: AuthKeys | null;
  /** Mutual TLS files (docs/PROTOCOL.md §6.8), or null: plain TCP. */
  tls?: TlsFiles | null;
  /** A chunk not answered within this long is asked of another replica (the first request of a
   * stream makes the replica load the checkpoint). */
  attempt_timeout_ms?: number;
  /** How long the reader waits for a replica to report a checkpoint at or after its start. */
  wait_timeout_ms?: number;
  /** Bytes a chunk may carry (1..snapshot_chunk_size_max_bytes). */
  chunk_size_max?: number;
  /** What the reader is doing, for a person watching (progress lines). */
  note?: (text: string) => void;
}

export interface SnapshotRead {
  checkpoint: SnapshotCheckpoint;
  /** The op of the reader's first no-op: everything acknowledged before the save started is below it. */
  start_op: number;
  /** No-ops committed to reach a checkpoint. */
  noops: number;
  /** Times the stream started over (its checkpoint was no longer retained). */
  restarts: number;
}

/** Chunks that fail in a row (every replica tried about twice) before the save gives up. */
const failures_in_a_row_max_per_replica = 2;
/** Times the stream may start over before the save gives up (checkpoints are retained for three
 * intervals, so each start over means the stream was slower than two intervals of writes). */
const restarts_max = 5;
const backoff_ms = 50;
const status_timeout_ms = 1000;
const status_poll_ms = 100;

export async function readSnapshot(options: SnapshotReaderOptions, sink: SnapshotSink): Promise<SnapshotRead> {
  const reader = new SnapshotReader(options);
  try {
    return await reader.read(sink);
  } finally {
    await reader.close();
  }
}

class SnapshotReader {
  private readonly m: Membership;
  private readonly transport: TcpTransport;
  private readonly noops: Channel;
  /** The client id of this reader's status and snapshot requests (the no-ops have their own). */
  private readonly id = randomBytes(8).readBigUInt64LE(0) | 1n;
  private request_number = 0;
  private inbox: { message: Message; from: number | null }[] = [];
  private wake: (() => void) | null = null;
  private readonly auth_failed = new Map<number, string>();
  /** Replicas whose connection closed since the last request to them: no answer is coming. */
  private readonly lost = new Set<number>();
  private noop_op = 0;
  private started: Promise<void> | null = null;
  private closed = false;

  constructor(readonly options: SnapshotReaderOptions) {
    this.m = membership(options.addresses);
    const n = this.m.replicas.length;
    const noop_id = randomBytes(8).readBigUInt64LE(0) | 1n;
    const core = new ClientSession({
      client_id: noop_id,
      cluster: this.m.cluster,
      replica_count: n,
      first_target: Number(noop_id % BigInt(n)),
      attempt_timeout: 1000,
      backoff: backoff_ms,
      operation_timeout: options.wait_timeout_ms ?? 60_000,
      unit: "ms",
      names: this.m.replicas.map(formatAddress),
    });
    this.noops = new Channel(core, {
      start: () => this.start(),
      send: (replica, message) => this.transport.sendToReplica(replica, message),
      closed: () => this.closed,
      log: (_level, text) => options.note?.(text),
      moved: () => {},
    });
    this.transport = new TcpTransport(
      {
        cluster: this.m.cluster,
        self: null,
        peers: this.m.replicas,
        secret: options.secret ?? null,
        tls: options.tls ?? null,
        log: () => {},
      },
      {
        onMessage: (message, connection) => this.onMessage(message, connection.peer),
        onAuthenticationFailed: (connection, detail) => {
          if (connection.peer === null) return;
          this.auth_failed.set(connection.peer, detail);
          this.noops.authFailed(connection.peer, detail);
          this.wake?.();
        },
        onConnectionClose: (connection) => {
          if (connection.peer === this.noops.core.target) this.noops.nudge();
          if (connection.peer !== null) this.lost.add(connection.peer);
          this.wake?.();
        },
      },
    );
  }

  private start(): Promise<void> {
    this.started ??= this.transport.start();
    return this.started;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.noops.nudge();
    await this.transport.close();
  }

  private onMessage(message: Message, from: number | null): void {
    const h = message.header;
    if (h.client === this.noops.id) {
      // The no-op's answer is an error to the channel; its op is what the reader wants.
      if (h.command === Command.reply && h.request === this.noops.core.request_number && h.result === Result.upload_not_found)
        this.noop_op = h.op;
      this.noops.deliver({ message, from });
      return;
    }
    if (h.client !== this.id) return;
    this.inbox.push({ message, from });
    this.wake?.();
  }

  async read(sink: SnapshotSink): Promise<SnapshotRead> {
    await this.start();
    const start_op = await this.noop();
    const interval = defaultConfig(1, 0n).checkpoint_interval_ops;
    const wanted = Math.ceil(start_op / interval) * interval;
    let head = start_op;
    let noops = 1;
    // Under load other writes move the log too: only what is still missing is sent.
    while (head < wanted) {
      if (noops % 32 === 0) this.options.note?.(`advancing the log to a checkpoint: op ${head} of ${wanted}`);
      head = Math.max(head, await this.noop());
      noops += 1;
    }
    let restarts = 0;
    for (;;) {
      const checkpoint = await this.stream(start_op, sink);
      if (checkpoint !== null) return { checkpoint, start_op, noops, restarts };
      restarts += 1;
      if (restarts > restarts_max)
        throw new ClientError(
          "no_quorum",
          `the checkpoint being saved stopped being retained ${restarts} times: the cluster writes faster than the save reads`,
        );
      this.options.note?.("the checkpoint being saved is no longer retained: starting over from the newest");
    }
  }

  /** Commits one no-op; its op. */
  private async noop(): Promise<number> {
    this.noop_op = 0;
    const data = new Uint8Array(1);
    const body = encodeWriteBlock({
      upload_id: snapshot_noop_upload_id,
      part_number: 1,
      block_index: 0,
      attempt: 1n,
      checksum: checksum(data),
      data,
    });
    try {
      await this.noops.call(Operation.write_block, body);
    } catch (error) {
      if (!(error instanceof ClientError) || error.code !== "upload_not_found") throw error;
    }
    if (this.noop_op === 0) throw new ClientError("protocol", "the cluster answered a no-op without committing it");
    return this.noop_op;
  }

  /** Streams a checkpoint ≥ start_op into sink; null if it stopped being retained (start over). */
  private async stream(start_op: number, sink: SnapshotSink): Promise<SnapshotCheckpoint | null> {
    const n = this.m.replicas.length;
    const order = await this.readyReplicas(start_op);
    let pinned: SnapshotCheckpoint | null = null;
    let position = 0;
    let turn = 0;
    let failures = 0;
    /** Replicas that said they do not retain the checkpoint (a lagging one may never have taken it). */
    const lacking = new Set<number>();
    for (;;) {
      const replica = order[turn % order.length]!;
      const reply = await this.requestChunk(replica, pinned, position);
      const result = reply === null ? null : (reply.header.result as Result);
      if (result === Result.ok) {
        const h = reply!.header;
        const served = { op: h.op, digest: h.checkpoint_digest, checksum: h.context };
        if (pinned === null) {
          if (served.op < start_op) return null; // the status was newer than what it serves now
          pinned = served;
          sink.begin(pinned, h.replica_count);
        } else if (served.op !== pinned.op || served.digest !== pinned.digest || served.checksum !== pinned.checksum) {
          throw new ClientError("protocol", `replica ${replica} answered for checkpoint ${served.op}, not ${pinned.op}`);
        }
        await sink.chunk(position, reply!.body);
        failures = 0;
        lacking.clear();
        if (h.timestamp === 0) return pinned;
        position = h.timestamp;
        continue;
      }
      // Not retained there: another replica may still have it; none has: start over.
      if (result === Result.not_found) lacking.add(replica);
      if (lacking.size === n) return null;
      if (result === Result.bad_request) throw new ClientError("protocol", `replica ${replica} refused a snapshot request as malformed`);
      // No answer, busy, unavailable, another cluster: the same part from the next replica.
      failures += 1;
      turn += 1;
      if (this.auth_failed.size === n) throw new ClientError("authentication_failed", [...new Set(this.auth_failed.values())].join("; "));
      if (failures > failures_in_a_row_max_per_replica * n)
        throw new ClientError(
          "no_quorum",
          `no replica served record ${position} of checkpoint ${pinned?.op ?? "(newest)"} after ${failures} attempts`,
        );
      await Bun.sleep(backoff_ms * Math.min(failures, 10));
    }
  }

  /** One request_snapshot; its answer, or null if none came in time. */
  private async requestChunk(replica: number, pinned: SnapshotCheckpoint | null, position: number): Promise<Message | null> {
    const request = this.send(replica, Command.request_snapshot, (h) => {
      h.op = pinned?.op ?? 0;
      h.checkpoint_digest = pinned?.digest ?? 0n;
      h.context = pinned?.checksum ?? 0n;
      h.commit = position;
    });
    const deadline = Date.now() + (this.options.attempt_timeout_ms ?? 10_000);
    for (;;) {
      const got = await this.next(deadline, replica);
      if (got === null) return null;
      const h = got.message.header;
      if (h.request !== request) continue; // a late answer to an earlier request
      if (h.command === Command.snapshot_chunk && h.replica === replica && h.commit === position) return got.message;
      if (h.command === Command.reply && h.result === Result.wrong_cluster) return null;
    }
  }

  /** Replicas whose durable checkpoint is at or after op, backups first; waits for one. */
  private async readyReplicas(op: number): Promise<number[]> {
    const deadline = Date.now() + (this.options.wait_timeout_ms ?? 60_000);
    for (;;) {
      const statuses = await this.statuses();
      const ready = statuses.flatMap((s, i) => (s !== null && s.checkpoint >= op ? [{ i, primary: s.primary }] : []));
      if (ready.length > 0) {
        ready.sort((a, b) => Number(a.primary) - Number(b.primary) || a.i - b.i);
        const rest = statuses.flatMap((_s, i) => (ready.some((r) => r.i === i) ? [] : [i]));
        return [...ready.map((r) => r.i), ...rest];
      }
      if (this.auth_failed.size === statuses.length)
        throw new ClientError("authentication_failed", [...new Set(this.auth_failed.values())].join("; "));
      if (Date.now() > deadline) {
        const answered = statuses.filter((s) => s !== null).length;
        throw new ClientError(
          "no_quorum",
          `no replica reported a checkpoint at or after op ${op} within ${this.options.wait_timeout_ms ?? 60_000} ms (${answered} of ${statuses.length} answered; newest: ${Math.max(0, ...statuses.map((s) => s?.checkpoint ?? 0))})`,
        );
      }
      await Bun.sleep(status_poll_ms);
    }
  }

  /** Every replica's status document, null where none came within status_timeout_ms. */
  private async statuses(): Promise<(ReplicaStatus | null)[]> {
    const n = this.m.replicas.length;
    const requests = this.m.replicas.map((_a, i) => this.send(i, Command.request_status, () => {}));
    const found: (ReplicaStatus | null)[] = this.m.replicas.map(() => null);
    const deadline = Date.now() + status_timeout_ms;
    let missing = n;
    while (missing > 0) {
      const got = await this.next(deadline, null);
      if (got === null) break;
      const h = got.message.header;
      const i = requests.indexOf(h.request);
      if (h.command !== Command.status || i < 0 || h.replica !== i || found[i] !== null) continue;
      found[i] = decodeStatus(got.message.body);
      if (found[i] !== null) missing -= 1;
    }
    return found;
  }

  private send(replica: number, command: Command, fill: (h: Header) => void): number {
    const h = new Header();
    h.command = command;
    h.cluster = this.m.cluster;
    h.replica = sender_client;
    h.client = this.id;
    h.request = ++this.request_number;
    fill(h);
    let body: Uint8Array | undefined;
    if (command === Command.request_snapshot) {
      body = new Uint8Array(8);
      new DataView(body.buffer).setUint32(0, this.options.chunk_size_max ?? snapshot_chunk_size_max_bytes, true);
    }
    this.lost.delete(replica);
    this.transport.sendToReplica(replica, finalize(h, body));
    return h.request;
  }

  /** The next message for this reader's id, or null at the deadline (or at once when the replica
   * waited on failed authentication or its connection closed: the caller moves on). */
  private async next(deadline: number, replica: number | null): Promise<{ message: Message; from: number | null } | null> {
    for (;;) {
      const first = this.inbox.shift();
      if (first !== undefined) return first;
      if (this.closed || Date.now() >= deadline) return null;
      if (replica !== null && (this.auth_failed.has(replica) || this.lost.has(replica))) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(finish, Math.max(0, deadline - Date.now()));
        function finish(): void {
          clearTimeout(timer);
          resolve();
        }
        this.wake = finish;
      });
      this.wake = null;
    }
  }
}
