/**
 * A simulated client: registers, then issues random puts (conditional too), gets, deletes, stats
 * and lists on a small key space so clients collide, one at a time, retrying each until it is
 * answered. Records every operation for the linearizability check (lib/check/history.ts).
 */
import type { Prng } from "../lib/util/prng.ts";
import { checksum } from "../lib/util/checksum.ts";
import { ClientSession, type Step } from "../lib/client/session.ts";
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
import type { HistoryInput, HistoryOperation, HistoryOutput } from "../lib/check/history.ts";

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

export interface ClientHooks {
  send(client: number, replica: number, bytes: Uint8Array): void;
  /** A write was answered from op: the checker verifies the op holds this request and was durable
   * on f+1 replicas. */
  writeReplied(client: bigint, request: number, op: number): void;
  violation(message: string): void;
  record(operation: HistoryOperation): void;
}

const encoder = new TextEncoder();
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
  }

  get idle(): boolean {
    return this.pending === null;
  }

  wake(now: number): void {
    if (now < this.wake_at) return;
    if (this.pending !== null) return this.apply(this.session.expire(now), now);
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
        if (step.error.code !== "evicted")
          return this.hooks.violation(`client ${this.index}: ${Operation[p.operation]} failed: ${step.error.message}`);
        // The session is gone; a write may or may not have happened before that: leave it open.
        if (p.input !== null && p.input.kind !== "get" && p.input.kind !== "exists") this.finish(now, null);
        this.pending = null;
        this.wake_at = now;
        return;
      }
    }
  }

  private startOperation(now: number): void {
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
    const value = new Uint8Array(tag.length + 1 + filler);
    value.set(encoder.encode(tag + "|"), 0);
    for (let i = tag.length + 1; i < value.length; i++) value[i] = (i * 31 + this.counter) & 0xff;
    const input: HistoryInput = { kind: "put", key, value: tag };
    if (condition === Condition.if_version) input.if_version = if_version;
    if (condition === Condition.if_absent) input.if_absent = true;
    this.begin(now, input, Operation.put, encodeKeyRequest(kb, value, condition, if_version));
  }

  onMessage(message: Message, from: number, now: number): void {
    this.apply(this.session.onReply(message, from, now), now);
  }

  private answered(message: Message, now: number): void {
    const h = message.header;
    const p = this.pending!;
    if (h.op > 0) this.hooks.writeReplied(this.id, h.request, h.op);
    if (p.operation === Operation.list) return this.listAnswered(message, now);
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
        const text = decoder.decode(value.subarray(0, Math.min(value.length, 32)));
        output = { status: "ok", version: info.version, value: text.slice(0, text.indexOf("|")) };
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
    this.session.abandon();
    if (p === null || p.input === null) return;
    this.hooks.record({ client: this.index, input: p.input, call: p.call, ret: null, output: null });
    this.pending = null;
  }
}
