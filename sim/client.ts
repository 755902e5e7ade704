/**
 * A simulated client: registers, then issues random puts (conditional too), gets, deletes, stats
 * and lists on a small key space so clients collide, one at a time, retrying each until it is
 * answered. Some puts are large (docs/LARGE_OBJECTS.md §12.1): an upload whose blocks its lanes
 * (extra client ids that never register) send in any order, completed, aborted or abandoned; some
 * gets read an object in ranges pinned to the version the first range returned. Records every
 * operation for the linearizability check (lib/check/history.ts).
 */
import type { Prng } from "../lib/util/prng.ts";
import { assert } from "../lib/util/assert.ts";
import { checksum } from "../lib/util/checksum.ts";
import { ClientSession, type Step } from "../lib/client/session.ts";
import type { ClientErrorCode } from "../lib/client/errors.ts";
import { encode, type Message } from "../lib/net/codec.ts";
import {
  Condition,
  Operation,
  Result,
  decodeListReply,
  decodeU64,
  encodeKeyRequest,
  encodeListRequest,
  object_info_size,
  readObjectInfo,
} from "../lib/store/operations.ts";
import { keyToBytes } from "../lib/store/keys.ts";
import {
  decodeCompleteUploadReply,
  decodeCreateUploadReply,
  decodeReadReply,
  encodeAbortUpload,
  encodeReadRequest,
} from "../lib/store/large_bodies.ts";
import type { HistoryInput, HistoryOperation, HistoryOutput } from "../lib/check/history.ts";
import { UploadPlan, slotName, type PlannedBlock } from "./upload_plan.ts";
import { objectBytes, tagOf } from "./object_bytes.ts";

export interface ClientOptions {
  keys: number;
  /** Largest filler appended to a value after its tag. */
  value_filler_max: number;
  /** Wait before retrying an unanswered request, µs. */
  request_timeout_us: number;
  /** Think time between operations, µs (mean). */
  think_mean_us: number;
}

interface Pending {
  input: HistoryInput | null; // null: a list, recorded per key it covered
  call: number;
  operation: Operation;
  /** list: the prefix and after it covered. */
  list?: { prefix: string; after: string };
}

/** A large put in progress: one history operation from create_upload's call to complete_upload's
 * answer. fate: what the workload does with it once some blocks are in. */
interface Upload {
  plan: UploadPlan;
  input: HistoryInput;
  call: number;
  fate: "complete" | "abort" | "abandon";
  /** Complete while blocks are still missing, once (the replica must answer upload_incomplete). */
  early: boolean;
  /** Whether every block was acknowledged when the complete in flight was sent. */
  complete_after_acks: boolean;
}

/** A get by ranges: the first read names version 0, the rest the version it returned. */
interface Reading {
  input: HistoryInput;
  call: number;
  key: Uint8Array;
  version: number;
  size: number;
  chunks: Uint8Array[];
  received: number;
  /** The length the read in flight asked for. */
  asked: number;
}

/** An extra client id that sends blocks (write_block needs no session, so it never registers). */
interface Lane {
  session: ClientSession;
  block: PlannedBlock | null;
}

export interface ClientHooks {
  send(client: number, replica: number, bytes: Uint8Array): void;
  /** A write was answered from op: the checker verifies the op holds this request and was durable
   * on f+1 replicas. */
  writeReplied(client: bigint, request: number, op: number): void;
  /** A write_block was answered ok, from op (0: at once, from the primary's executed state): a
   * committed op must have written that slot with that checksum. */
  blockAcked(slot: string, checksum: bigint, op: number): void;
  /** A complete_upload installed these blocks at op: each must have been written by a committed op
   * below it. */
  manifestInstalled(slots: [string, bigint][], op: number, client: bigint, request: number): void;
  violation(message: string): void;
  record(operation: HistoryOperation): void;
}

const decoder = new TextDecoder();

export class SimClient {
  readonly id: bigint;
  /** The client protocol (registering before the first write, retries, hints, backoff): the
   * production client's core, so the simulator exercises what users run. This class draws the
   * workload, sends what the core decides and records the history. */
  private readonly session: ClientSession;
  private pending: Pending | null = null;
  private counter = 0;
  /** Cold keys this client has written (cold/c<index>.<n>). */
  private cold = 0;
  /** Last version this client saw per key (for conditional puts). */
  private readonly versions = new Map<string, number>();
  /** When to act next (µs): start an operation or retry the pending one. */
  wake_at = 0;
  /** Cleared in the liveness phase: finish the pending operation, start no new one. */
  active = true;
  /** An idle phase of the workload: no new operation starts before this time (µs). */
  idle_until = 0;
  completed = 0;
  /** How often the connection rules of docs/PROTOCOL.md §3.9 came into play: refusals reported to
   * the sessions (onUnreachable), connections opened after one (onReachable), and retries paced
   * because a backup named a primary this client could not reach (the poll path). */
  readonly connections = { unreachable: 0, reachable: 0, polls: 0 };
  private readonly lanes: Lane[] = [];
  private upload: Upload | null = null;
  private reading: Reading | null = null;

  constructor(
    readonly index: number,
    readonly node: number,
    readonly replica_count: number,
    readonly cluster: bigint,
    private readonly prng: Prng,
    private readonly options: ClientOptions,
    private readonly hooks: ClientHooks,
  ) {
    // 64 random bits mixed into the id, as the client libraries do (docs/DESIGN.md §4).
    this.id = (prng.u64() & ~0xffn) | BigInt(index & 0xff);
    const timeout = options.request_timeout_us;
    // backoff: the pause the simulated client used after not_primary before the core was shared.
    this.session = new ClientSession({
      client_id: this.id,
      cluster,
      replica_count,
      first_target: prng.int(replica_count),
      attempt_timeout: timeout,
      backoff: timeout / 8,
      operation_timeout: Infinity,
      unit: "µs",
    });
    const lanes = 1 + prng.int(3);
    for (let l = 0; l < lanes; l++) {
      const id = (prng.u64() & ~0xffn) | BigInt(index & 0xff);
      this.lanes.push({
        session: new ClientSession({ ...this.session.options, client_id: id, first_target: prng.int(replica_count) }),
        block: null,
      });
    }
  }

  /** Every client id this client sends from (replies to each come here). */
  get ids(): bigint[] {
    return [this.id, ...this.lanes.map((l) => l.session.options.client_id)];
  }

  get idle(): boolean {
    return this.pending === null && this.upload === null && this.reading === null;
  }

  /** When to call wake next: the client's own time, or a lane's retry. */
  get next_wake(): number {
    let at = this.wake_at;
    for (const lane of this.lanes) if (lane.block !== null && lane.session.wake_at < at) at = lane.session.wake_at;
    return at;
  }

  wake(now: number): void {
    for (const lane of this.lanes)
      if (lane.block !== null && now >= lane.session.wake_at) this.applyLane(lane, lane.session.expire(now), now);
    if (now < this.wake_at) return;
    if (this.pending !== null) return this.apply(this.session.expire(now), now);
    if (this.upload !== null) return this.driveUpload(now);
    if (!this.active) {
      this.wake_at = Infinity;
      return;
    }
    if (now < this.idle_until) {
      this.wake_at = this.idle_until;
      return;
    }
    this.startOperation(now);
  }

  private begin(now: number, input: HistoryInput | null, operation: Operation, body: Uint8Array, list?: Pending["list"]): void {
    assert(this.pending === null, "one operation at a time on the client's session");
    this.pending = { input, call: now, operation, ...(list ? { list } : {}) };
    this.apply(this.session.start(operation, body, now), now);
  }

  /** Carries out the session's decision. */
  private apply(step: Step, now: number): void {
    switch (step.kind) {
      case "send":
        this.hooks.send(this.node, step.replica, encode(step.message));
        this.wake_at = this.session.wake_at;
        return;
      case "wait":
        this.wake_at = this.session.wake_at;
        return;
      case "ignored":
        if (step.problem !== null) this.hooks.violation(`client ${this.index}: ${step.problem}`);
        return;
      case "done":
        return this.answered(step.reply, now);
      case "failed": {
        const p = this.pending!;
        const large = largeResult(step.error.code);
        if (large !== null && p.operation === Operation.read) return this.readAnswered(large, null, now);
        if (large !== null && this.upload !== null) return this.uploadAnswered(large, null, now);
        if (step.error.code !== "evicted")
          return this.hooks.violation(`client ${this.index}: ${Operation[p.operation]} failed: ${step.error.message}`);
        // The session is gone; a write may or may not have happened before that: leave it open.
        // (A large put's create or abort changes no object: it is simply dropped.)
        const upload = this.upload;
        if (upload !== null) {
          this.dropUpload();
          if (p.operation === Operation.complete_upload)
            this.hooks.record({ client: this.index, input: upload.input, call: upload.call, ret: null, output: null });
        } else if (p.input !== null && p.input.kind !== "get" && p.input.kind !== "exists") this.finish(now, null);
        this.pending = null;
        this.wake_at = now;
        return;
      }
    }
  }

  private startOperation(now: number): void {
    if (this.prng.chance(0.06)) return this.startUpload(now);
    if (this.prng.chance(0.1)) return this.startReading(now);
    if (this.prng.chance(0.08)) {
      // A cold key, written once and read back later: its value stays live in an old segment while
      // the hot keys churn around it, so segments end up mostly dead and get compacted.
      this.cold += 1;
      const key = `cold/c${this.index}.${this.cold}`;
      if (this.cold > 1 && this.prng.chance(0.5)) {
        const old = `cold/c${this.index}.${1 + this.prng.int(this.cold - 1)}`;
        this.cold -= 1;
        return this.begin(now, { kind: "get", key: old }, Operation.get, encodeKeyRequest(keyToBytes(old), null));
      }
      return this.put(now, key, keyToBytes(key), Condition.none, 0);
    }
    const key = `k${this.prng.int(this.options.keys)}`;
    const kb = keyToBytes(key);
    const roll = this.prng.int(100);
    if (roll < 30) return this.put(now, key, kb, Condition.none, 0);
    if (roll < 45) {
      const known = this.versions.get(key);
      if (known !== undefined && known > 0 && this.prng.chance(0.8)) return this.put(now, key, kb, Condition.if_version, known);
      return this.put(now, key, kb, Condition.if_absent, 0);
    }
    if (roll < 70) return this.begin(now, { kind: "get", key }, Operation.get, encodeKeyRequest(kb, null));
    if (roll < 80) {
      const known = this.versions.get(key);
      if (known !== undefined && this.prng.chance(0.3)) {
        return this.begin(
          now,
          { kind: "delete", key, if_version: known },
          Operation.delete,
          encodeKeyRequest(kb, null, Condition.if_version, known),
        );
      }
      return this.begin(now, { kind: "delete", key }, Operation.delete, encodeKeyRequest(kb, null));
    }
    if (roll < 88) return this.begin(now, { kind: "exists", key }, Operation.stat, encodeKeyRequest(kb, null));
    const prefix = this.prng.pick(["", "k", `k${this.prng.int(this.options.keys)}`]);
    const after = this.prng.chance(0.5) ? "" : `k${this.prng.int(this.options.keys)}`;
    const limit = 1 + this.prng.int(this.options.keys + 1);
    this.begin(now, null, Operation.list, encodeListRequest(keyToBytes(prefix), keyToBytes(after), limit), { prefix, after });
  }

  private put(now: number, key: string, kb: Uint8Array, condition: Condition, if_version: number): void {
    this.counter += 1;
    const tag = `c${this.index}.${this.counter}`;
    const big = this.prng.chance(0.02);
    const filler = big ? 4096 + this.prng.int(8192) : this.prng.int(this.options.value_filler_max + 1);
    const value = objectBytes(tag, tag.length + 1 + filler);
    const input: HistoryInput = { kind: "put", key, value: tag };
    if (condition === Condition.if_version) input.if_version = if_version;
    if (condition === Condition.if_absent) input.if_absent = true;
    this.begin(now, input, Operation.put, encodeKeyRequest(kb, value, condition, if_version));
  }

  // --- Large puts (docs/LARGE_OBJECTS.md §12.1)

  private startUpload(now: number): void {
    this.counter += 1;
    const tag = `c${this.index}.${this.counter}`;
    const key = `k${this.prng.int(this.options.keys)}`;
    const input: HistoryInput = { kind: "put", key, value: tag };
    const known = this.versions.get(key);
    let condition = Condition.none;
    if (this.prng.chance(0.2)) {
      condition = known !== undefined && known > 0 && this.prng.chance(0.8) ? Condition.if_version : Condition.if_absent;
      if (condition === Condition.if_version) input.if_version = known!;
      else input.if_absent = true;
    }
    const plan = new UploadPlan(this.prng, keyToBytes(key), tag, condition, input.if_version ?? 0);
    const roll = this.prng.int(100);
    const fate = roll < 6 ? "abort" : roll < 12 ? "abandon" : "complete";
    this.upload = { plan, input, call: now, fate, early: this.prng.chance(0.15), complete_after_acks: false };
    this.begin(now, null, Operation.create_upload, plan.createBody());
  }

  /** The blocks phase: keep every lane busy with a block; then complete, abort or walk away. */
  private driveUpload(now: number): void {
    const upload = this.upload!;
    const plan = upload.plan;
    assert(this.pending === null && plan.upload_id > 0, "blocks are sent once the upload exists, between session operations");
    const acked = plan.blocks.some((b) => b.acked);
    if (acked && upload.fate === "abandon" && this.active) {
      // The client walks away: the upload stays open until the cluster expires it.
      this.dropUpload();
      this.wake_at = now + this.prng.exponential(this.options.think_mean_us);
      return;
    }
    if (acked && upload.fate === "abort") return this.begin(now, null, Operation.abort_upload, encodeAbortUpload(plan.upload_id));
    if (acked && upload.early && plan.waiting > 0) {
      upload.early = false;
      return this.complete(upload, now);
    }
    for (const lane of this.lanes) {
      if (lane.block !== null) continue;
      const block = plan.next();
      if (block === null) break;
      lane.block = block;
      this.applyLane(lane, lane.session.start(Operation.write_block, plan.blockBody(block), now), now);
      if (this.upload !== upload) return; // an answer ended it
    }
    if (plan.allAcked && this.lanes.every((l) => l.block === null)) return this.complete(upload, now);
    this.wake_at = Infinity; // a lane's answer drives the next step
  }

  private complete(upload: Upload, now: number): void {
    upload.complete_after_acks = upload.plan.allAcked;
    this.begin(now, null, Operation.complete_upload, upload.plan.completeBody());
  }

  private applyLane(lane: Lane, step: Step, now: number): void {
    switch (step.kind) {
      case "send":
        this.hooks.send(this.node, step.replica, encode(step.message));
        return;
      case "wait":
        return;
      case "ignored":
        if (step.problem !== null) this.hooks.violation(`client ${this.index} lane: ${step.problem}`);
        return;
      case "failed":
        if (step.error.code !== "upload_not_found")
          return this.hooks.violation(`client ${this.index}: write_block failed: ${step.error.message}`);
        return this.laneAnswered(lane, Result.upload_not_found, null, now);
      case "done":
        return this.laneAnswered(lane, step.reply.header.result, step.reply, now);
    }
  }

  private laneAnswered(lane: Lane, result: Result, reply: Message | null, now: number): void {
    const block = lane.block!;
    lane.block = null;
    const upload = this.upload;
    if (upload === null) return; // an upload given up while this block was in flight
    if (result === Result.upload_not_found) {
      // Closed by the complete or abort in flight (its answer decides), or expired by the cluster
      // (a long partition outlasted the abandon age): then the put had no effect.
      if (this.pending !== null) return;
      this.dropUpload();
      this.wake_at = now;
      return;
    }
    if (result !== Result.ok || reply === null) return this.hooks.violation(`client ${this.index}: write_block answered ${Result[result]}`);
    const h = reply.header;
    if (h.op > 0) this.hooks.writeReplied(h.client, h.request, h.op);
    this.hooks.blockAcked(slotName(upload.plan.upload_id, block.part, block.attempt, block.index), block.checksum, h.op);
    block.acked = true;
    if (this.pending === null) this.wake_at = now;
  }

  /** The answer to create_upload, complete_upload or abort_upload. */
  private uploadAnswered(result: Result, message: Message | null, now: number): void {
    const upload = this.upload!;
    const plan = upload.plan;
    const operation = this.pending!.operation;
    this.pending = null;
    this.wake_at = now;
    if (operation === Operation.create_upload) {
      if (result === Result.condition_failed) return this.recordUpload(upload, now, { status: "condition_failed" });
      if (result === Result.too_many_uploads) return this.dropUpload();
      const reply = message === null ? null : decodeCreateUploadReply(message.body);
      if (result !== Result.ok || reply === null)
        return this.hooks.violation(`client ${this.index}: create_upload answered ${Result[result]}`);
      plan.cut(reply.upload_id, reply.block_size_max);
      return;
    }
    if (operation === Operation.abort_upload) {
      if (result !== Result.ok && result !== Result.upload_not_found)
        return this.hooks.violation(`client ${this.index}: abort_upload answered ${Result[result]}`);
      return this.dropUpload();
    }
    switch (result) {
      case Result.ok: {
        const reply = message === null ? null : decodeCompleteUploadReply(message.body);
        if (reply === null) return this.hooks.violation(`client ${this.index}: malformed complete_upload reply`);
        this.hooks.manifestInstalled(plan.slots(), message!.header.op, message!.header.client, message!.header.request);
        this.versions.set(upload.input.key, reply.version);
        return this.recordUpload(upload, now, { status: "ok", version: reply.version });
      }
      case Result.condition_failed:
        return this.recordUpload(upload, now, { status: "condition_failed" });
      case Result.upload_not_found:
        return this.dropUpload(); // expired before it completed: no effect
      case Result.upload_incomplete:
        // Sent early on purpose: send every block not yet acknowledged, then complete again.
        if (upload.complete_after_acks)
          return this.hooks.violation(
            `client ${this.index}: complete_upload answered upload_incomplete, sent after every block was acknowledged`,
          );
        for (const b of plan.blocks) if (!b.acked && this.lanes.every((l) => l.block !== b)) plan.again(b);
        return;
      default:
        return this.hooks.violation(`client ${this.index}: complete_upload answered ${Result[result]}`);
    }
  }

  private recordUpload(upload: Upload, now: number, output: HistoryOutput): void {
    this.hooks.record({ client: this.index, input: upload.input, call: upload.call, ret: now, output });
    this.completed += 1;
    this.dropUpload();
    this.wake_at = now + this.prng.exponential(this.options.think_mean_us);
  }

  /** Ends the large put: lanes stop retrying what they had in flight. */
  private dropUpload(): void {
    this.upload = null;
    for (const lane of this.lanes) {
      lane.session.abandon();
      lane.block = null;
    }
  }

  // --- Gets by ranges (docs/LARGE_OBJECTS.md §7)

  private startReading(now: number): void {
    const key = `k${this.prng.int(this.options.keys)}`;
    this.reading = { input: { kind: "get", key }, call: now, key: keyToBytes(key), version: 0, size: 0, chunks: [], received: 0, asked: 0 };
    this.nextRead(now);
  }

  private nextRead(now: number): void {
    const r = this.reading!;
    const length = 1 + this.prng.int(this.prng.chance(0.3) ? 4096 : 256);
    r.asked = length;
    const body = encodeReadRequest({
      key: r.key,
      version: r.version,
      offset: r.received,
      length,
      metadata: false,
      block_map: this.prng.chance(0.5),
    });
    this.begin(now, null, Operation.read, body);
  }

  private readAnswered(result: Result, message: Message | null, now: number): void {
    const r = this.reading!;
    this.pending = null;
    if (result === Result.not_found && r.version === 0) {
      this.reading = null;
      return this.record(r.input, r.call, now, { status: "not_found" });
    }
    if (result === Result.object_changed && r.version !== 0) {
      // Replaced while it was read: this get returns nothing, so it is left out of the history.
      this.reading = null;
      this.wake_at = now;
      return;
    }
    const reply = result === Result.ok && message !== null ? decodeReadReply(message.body) : null;
    if (reply === null) return this.hooks.violation(`client ${this.index}: read of ${r.input.key} answered ${Result[result]}`);
    if (r.version === 0) {
      r.version = reply.header.version;
      r.size = reply.header.size;
    } else if (reply.header.version !== r.version || reply.header.size !== r.size) {
      return this.hooks.violation(
        `client ${this.index}: read of ${r.input.key} pinned to version ${r.version} returned version ${reply.header.version}`,
      );
    }
    if (r.received > r.size || reply.data.length !== Math.min(r.asked, r.size - r.received))
      return this.hooks.violation(
        `client ${this.index}: read of ${r.input.key} at ${r.received} returned ${reply.data.length} bytes of ${r.size}`,
      );
    r.chunks.push(reply.data.slice());
    r.received += reply.data.length;
    if (r.received < r.size) return this.nextRead(now);
    const bytes = new Uint8Array(r.size);
    let at = 0;
    for (const c of r.chunks) {
      bytes.set(c, at);
      at += c.length;
    }
    const tag = tagOf(bytes);
    if (tag === null)
      return this.hooks.violation(`client ${this.index}: ranges read of ${r.input.key} at version ${r.version} are not one put's bytes`);
    this.reading = null;
    this.versions.set(r.input.key, r.version);
    this.record(r.input, r.call, now, { status: "ok", version: r.version, value: tag });
  }

  private record(input: HistoryInput, call: number, now: number, output: HistoryOutput): void {
    this.hooks.record({ client: this.index, input, call, ret: now, output });
    this.completed += 1;
    this.wake_at = now + this.prng.exponential(this.options.think_mean_us);
  }

  onMessage(message: Message, from: number, now: number): void {
    const lane = this.lanes.find((l) => l.session.options.client_id === message.header.client);
    if (lane !== undefined) return this.applyLane(lane, this.reply(lane.session, message, from, now), now);
    this.apply(this.reply(this.session, message, from, now), now);
  }

  /** The session's step for a reply, counting the poll path (its count is private to the session:
   * a not_primary naming another replica leaves the target on the replier, with a pause, only
   * there; following the hint moves the target to the named primary). */
  private reply(session: ClientSession, message: Message, from: number, now: number): Step {
    const step = session.onReply(message, from, now);
    const h = message.header;
    if (
      step.kind === "wait" &&
      h.result === Result.not_primary &&
      h.view % this.replica_count !== h.replica &&
      session.target === h.replica
    )
      this.connections.polls += 1;
    return step;
  }

  /** A connect to replica `replica` was refused (it is not running): every session hears it, as
   * every channel of the TCP client does (lib/client/client.ts), and one waiting on that replica
   * moves on at once; the others skip it for a while. */
  onUnreachable(replica: number, now: number): void {
    this.connections.unreachable += 1;
    // A session with nothing pending only notes it (for its next request); its step is to wait,
    // which must not replace the client's own wake time (think time, an idle phase).
    if (this.session.pending) this.apply(this.session.onUnreachable(replica, now), now);
    else assert(this.session.onUnreachable(replica, now).kind === "wait", "an idle session was asked to send");
    for (const lane of this.lanes) {
      if (lane.session.pending) this.applyLane(lane, lane.session.onUnreachable(replica, now), now);
      else assert(lane.session.onUnreachable(replica, now).kind === "wait", "an idle lane was asked to send");
    }
  }

  /** A connection to replica `replica` opened after a refusal: no session skips it any longer. */
  onReachable(replica: number): void {
    this.connections.reachable += 1;
    this.session.onReachable(replica);
    for (const lane of this.lanes) lane.session.onReachable(replica);
  }

  private answered(message: Message, now: number): void {
    const h = message.header;
    const p = this.pending!;
    if (h.op > 0) this.hooks.writeReplied(this.id, h.request, h.op);
    if (p.operation === Operation.list) return this.listAnswered(message, now);
    if (p.operation === Operation.read) return this.readAnswered(h.result, message, now);
    if (p.operation === Operation.create_upload || p.operation === Operation.complete_upload || p.operation === Operation.abort_upload)
      return this.uploadAnswered(h.result, message, now);
    const input = p.input!;
    let output: HistoryOutput;
    if (h.result === Result.not_found) output = { status: "not_found" };
    else if (h.result === Result.condition_failed) output = { status: "condition_failed" };
    else if (p.operation === Operation.get || p.operation === Operation.stat) {
      const info = readObjectInfo(message.body, 0);
      if (info === null) return this.hooks.violation(`client ${this.index}: malformed ${Operation[p.operation]} reply`);
      if (p.operation === Operation.get) {
        const value = message.body.subarray(object_info_size);
        if (value.length !== info.size || checksum(value) !== info.checksum)
          return this.hooks.violation(`client ${this.index}: get ${input.key} returned a value that does not match its checksum`);
        const tag = tagOf(value);
        if (tag === null) return this.hooks.violation(`client ${this.index}: get ${input.key} returned bytes no put wrote`);
        output = { status: "ok", version: info.version, value: tag };
      } else {
        output = { status: "ok", version: info.version };
      }
    } else {
      const version = decodeU64(message.body);
      if (version === null) return this.hooks.violation(`client ${this.index}: malformed ${Operation[p.operation]} reply`);
      output = { status: "ok", version };
    }
    if (output.status === "ok" && input.kind !== "delete") this.versions.set(input.key, output.version);
    if (input.kind === "delete" && output.status === "ok") this.versions.delete(input.key);
    this.finish(now, output);
  }

  private listAnswered(message: Message, now: number): void {
    const p = this.pending!;
    const list = decodeListReply(message.body);
    if (list === null) return this.hooks.violation(`client ${this.index}: malformed list reply`);
    const { prefix, after } = p.list!;
    const seen = new Map<string, number>();
    let last = "";
    for (const e of list.entries) {
      const key = decoder.decode(e.key);
      if (!key.startsWith(prefix) || key <= after || key <= last)
        return this.hooks.violation(`client ${this.index}: list(${prefix}, ${after}) returned ${key} out of order or range`);
      seen.set(key, e.version);
      last = key;
    }
    // Every key of the key space the list covered is an observation of that key's presence.
    for (let k = 0; k < this.options.keys; k++) {
      const key = `k${k}`;
      if (!key.startsWith(prefix) || key <= after || (list.truncated && key > last)) continue;
      const version = seen.get(key);
      const output: HistoryOutput = version === undefined ? { status: "not_found" } : { status: "ok", version };
      this.hooks.record({ client: this.index, input: { kind: "exists", key }, call: p.call, ret: now, output });
    }
    this.completed += 1;
    this.pending = null;
    this.wake_at = now + this.prng.exponential(this.options.think_mean_us);
  }

  private finish(now: number, output: HistoryOutput | null): void {
    const p = this.pending!;
    this.hooks.record({ client: this.index, input: p.input!, call: p.call, ret: output === null ? null : now, output });
    if (output !== null) this.completed += 1;
    this.pending = null;
    this.wake_at = now + this.prng.exponential(this.options.think_mean_us);
  }

  /** At the end of the run, a still-pending operation stays open in the history. */
  abandon(): void {
    const p = this.pending;
    const upload = this.upload;
    this.session.abandon();
    this.dropUpload();
    this.reading = null;
    if (upload !== null && p !== null && p.operation === Operation.complete_upload) {
      this.hooks.record({ client: this.index, input: upload.input, call: upload.call, ret: null, output: null });
      this.pending = null;
      return;
    }
    if (p === null || p.input === null) return;
    this.hooks.record({ client: this.index, input: p.input, call: p.call, ret: null, output: null });
    this.pending = null;
  }
}

/** The result a large-object answer stood for, when the session core ended it as an error. */
function largeResult(code: ClientErrorCode): Result | null {
  switch (code) {
    case "object_changed":
      return Result.object_changed;
    case "upload_not_found":
      return Result.upload_not_found;
    case "range_invalid":
      return Result.range_invalid;
    case "upload_incomplete":
      return Result.upload_incomplete;
    case "size_mismatch":
      return Result.size_mismatch;
    case "too_many_uploads":
      return Result.too_many_uploads;
    default:
      return null;
  }
}
