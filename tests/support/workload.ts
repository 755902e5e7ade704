/**
 * Client workloads for the real-process fault tests: concurrent writers that keep a ledger of
 * every acknowledged put (and verify it reads back exactly), history clients that record what they
 * were told in the lib/check/history.ts format for lib/check/linearizability.ts, and a raw probe that sends a
 * get to one chosen replica only (to catch a deposed primary serving a stale read).
 */
import { randomBytes } from "node:crypto";
import { Client, ClientError } from "../../lib/client/client.ts";
import { Command, finalize, Header, type Message } from "../../lib/net/codec.ts";
import { TcpTransport } from "../../lib/net/tcp_transport.ts";
import { membership, type Address } from "../../lib/net/address.ts";
import { sender_client } from "../../lib/constants.ts";
import { Operation, Result, encodeKeyRequest, object_info_size, readObjectInfo } from "../../lib/store/operations.ts";
import { checksum } from "../../lib/util/checksum.ts";
import { Prng } from "../../lib/util/prng.ts";
import type { History, HistoryInput, HistoryOperation, HistoryOutput } from "../../lib/check/history.ts";
import { checkLinearizable, formatHistory } from "../../lib/check/linearizability.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Errors after which a write may or may not have happened: its outcome stays unknown. */
const outcome_unknown: ReadonlySet<string> = new Set(["no_quorum", "closed", "evicted"]);

export function isOutcomeUnknown(error: unknown): boolean {
  return error instanceof ClientError && outcome_unknown.has(error.code);
}

/** A value that names its put: "tag|" then filler bytes derived from the tag, `size` bytes in all. */
export function valueFor(tag: string, size: number): Uint8Array {
  const head = encoder.encode(`${tag}|`);
  const value = new Uint8Array(Math.max(size, head.length));
  value.set(head, 0);
  let x = Number(checksum(head) & 0xffffffffn) | 1;
  for (let i = head.length; i < value.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    value[i] = x & 0xff;
  }
  return value;
}

/** The tag of a value made by valueFor (the bytes before the first "|"). */
export function tagOf(value: Uint8Array): string {
  const text = decoder.decode(value.subarray(0, Math.min(value.length, 64)));
  const bar = text.indexOf("|");
  return bar < 0 ? text : text.slice(0, bar);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return (
    a.length === b.length &&
    Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0
  );
}

interface Acked {
  version: number;
  value: Uint8Array;
}

/**
 * Every acknowledged put, by key: the newest acknowledged version and its exact bytes, and every
 * put whose outcome is unknown (it may have happened). After a fault, each key must read back with
 * its newest acknowledged version and exactly those bytes, or with a newer version whose bytes are
 * those of a put that was outstanding (never a lower version, never absent).
 */
export class Ledger {
  private readonly acked = new Map<string, Acked>();
  private readonly unknown = new Map<string, Uint8Array[]>();
  acknowledged_puts = 0;
  unknown_puts = 0;

  ack(key: string, version: number, value: Uint8Array): void {
    this.acknowledged_puts += 1;
    const current = this.acked.get(key);
    if (current === undefined || version > current.version) this.acked.set(key, { version, value });
    else if (version === current.version && !sameBytes(value, current.value)) {
      throw new Error(`ledger: two different acknowledged values with version ${version} for key ${key}`);
    }
  }

  maybe(key: string, value: Uint8Array): void {
    this.unknown_puts += 1;
    let list = this.unknown.get(key);
    if (list === undefined) this.unknown.set(key, (list = []));
    list.push(value);
  }

  /** Whether a put of key ever had an unknown outcome: its newest acknowledged value may then
   * have been overwritten by that put (so it may not be the live copy). */
  hasUnknown(key: string): boolean {
    return this.unknown.has(key);
  }

  /** The bytes of the newest acknowledged version of key, or null. */
  ackedValue(key: string): Uint8Array | null {
    return this.acked.get(key)?.value ?? null;
  }

  /** The newest acknowledged version of key, or null. */
  ackedVersion(key: string): number | null {
    return this.acked.get(key)?.version ?? null;
  }

  get keys(): string[] {
    return [...this.acked.keys()];
  }

  get size(): number {
    return this.acked.size;
  }

  /** Checks what a get returned for key against the ledger: null if fine, else the problem. */
  check(key: string, got: { version: number; value: Uint8Array } | null): string | null {
    const want = this.acked.get(key);
    if (want === undefined) return null;
    const expect = `version ${want.version} (${tagOf(want.value)}, ${want.value.length} bytes)`;
    if (got === null) return `key ${key}: not found, but ${expect} was acknowledged`;
    if (got.version < want.version)
      return `key ${key}: read version ${got.version} (${tagOf(got.value)}), older than the acknowledged ${expect}`;
    if (got.version === want.version) {
      return sameBytes(got.value, want.value)
        ? null
        : `key ${key}: version ${got.version} reads back as ${tagOf(got.value)} (${got.value.length} bytes), not the acknowledged ${tagOf(want.value)} (${want.value.length} bytes)`;
    }
    const candidates = this.unknown.get(key) ?? [];
    if (candidates.some((c) => sameBytes(c, got.value))) return null;
    return `key ${key}: read version ${got.version} (${tagOf(got.value)}, ${got.value.length} bytes), newer than the acknowledged ${expect} but not the bytes of any outstanding put`;
  }

  /** Reads every key back (several clients in parallel) and returns the problems found. */
  async verify(addresses: Address[], options: { parallel?: number; operation_timeout_ms?: number } = {}): Promise<string[]> {
    const keys = this.keys;
    const problems: string[] = [];
    const parallel = Math.min(options.parallel ?? 8, Math.max(1, keys.length));
    let next = 0;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        const client = new Client({ addresses, operation_timeout_ms: options.operation_timeout_ms ?? 20_000 });
        try {
          while (next < keys.length) {
            const key = keys[next++]!;
            let got: { version: number; value: Uint8Array } | null = null;
            try {
              const reply = await client.get(key);
              got = { version: reply.version, value: reply.value };
            } catch (error) {
              if (!(error instanceof ClientError && error.code === "not_found")) {
                problems.push(`key ${key}: get failed: ${(error as Error).message}`);
                continue;
              }
            }
            const problem = this.check(key, got);
            if (problem !== null) problems.push(problem);
          }
        } finally {
          await client.close();
        }
      }),
    );
    return problems;
  }
}

export interface WriterOptions {
  /** Keys this writer overwrites: `${prefix}${writer}/${0..keys-1}`. */
  keys: number;
  prefix?: string;
  /** Most values are 16..2048 bytes; this fraction is 32..256 KiB. */
  large_fraction?: number;
  operation_timeout_ms?: number;
}

export interface Ack {
  writer: number;
  issued_ms: number;
  acked_ms: number;
}

/**
 * Concurrent writers, one Client each, putting values to their own keys until stopped. Every
 * acknowledged put goes into the ledger, every put with an unknown outcome too; any other error is
 * collected in `errors` (a test fails on it).
 */
export class WriteLoad {
  readonly acks: Ack[] = [];
  readonly errors: string[] = [];
  private stopped = false;
  private readonly clients: Client[] = [];
  private readonly running: Promise<void>[] = [];
  private counter = 0;

  constructor(
    private readonly addresses: Address[],
    private readonly ledger: Ledger,
    private readonly prng: Prng,
    private readonly options: WriterOptions,
  ) {}

  start(writers: number, round = 0): this {
    for (let w = 0; w < writers; w++) {
      const client = new Client({ addresses: this.addresses, operation_timeout_ms: this.options.operation_timeout_ms ?? 20_000 });
      this.clients.push(client);
      this.running.push(this.run(client, w, round, this.prng.fork()));
    }
    return this;
  }

  private async run(client: Client, w: number, round: number, prng: Prng): Promise<void> {
    const large = this.options.large_fraction ?? 0.02;
    while (!this.stopped) {
      const key = `${this.options.prefix ?? "w"}${w}/${prng.int(this.options.keys)}`;
      const tag = `r${round}.w${w}.${++this.counter}`;
      const size = prng.chance(large) ? prng.range(32 * 1024, 256 * 1024) : prng.range(16, 2048);
      const value = valueFor(tag, size);
      const issued_ms = performance.now();
      try {
        const { version } = await client.put(key, value);
        this.ledger.ack(key, version, value);
        this.acks.push({ writer: w, issued_ms, acked_ms: performance.now() });
      } catch (error) {
        if (isOutcomeUnknown(error)) this.ledger.maybe(key, value);
        else this.errors.push(`writer ${w}: put ${key}: ${(error as Error).message}`);
      }
    }
  }

  acksAfter(t_ms: number): number {
    return this.acks.reduce((n, a) => (a.acked_ms > t_ms ? n + 1 : n), 0);
  }

  /** The first acknowledgment of a put issued after t_ms, or null. */
  firstAckIssuedAfter(t_ms: number): Ack | null {
    let best: Ack | null = null;
    for (const a of this.acks) if (a.issued_ms >= t_ms && (best === null || a.acked_ms < best.acked_ms)) best = a;
    return best;
  }

  /** Stops issuing; outstanding puts are abandoned (closing the clients makes them end as unknown). */
  async stop(options: { abandon?: boolean } = {}): Promise<void> {
    this.stopped = true;
    if (options.abandon) await Promise.all(this.clients.map((c) => c.close()));
    await Promise.all(this.running);
    await Promise.all(this.clients.map((c) => c.close()));
  }
}

/**
 * Clients that put and get a few shared keys and record a history (lib/check/history.ts): a put's value
 * is recorded by its tag; a get that returned records the tag it read. An operation that failed
 * with an unknown outcome stays open (ret null), and that client is replaced by a fresh one under
 * a new history client number, so every history client has at most one open operation.
 */
export class HistoryLoad {
  readonly history: History = [];
  readonly errors: string[] = [];
  readonly t0 = performance.now();
  private stopped = false;
  private readonly running: Promise<void>[] = [];
  private readonly open_clients = new Set<Client>();
  private next_client = 0;
  private readonly final_reads = new Map<string, HistoryOperation>();
  completed = 0;
  /** How long the last linearizability check took. */
  check_ms = 0;

  constructor(
    private readonly addresses: Address[],
    private readonly prng: Prng,
    private readonly options: { keys: number; operation_timeout_ms?: number },
  ) {}

  now(): number {
    return performance.now() - this.t0;
  }

  start(clients: number): this {
    for (let i = 0; i < clients; i++) this.running.push(this.run(this.prng.fork()));
    return this;
  }

  keyName(k: number): string {
    return `h/${k}`;
  }

  private newClient(): { client: Client; index: number } {
    const client = new Client({ addresses: this.addresses, operation_timeout_ms: this.options.operation_timeout_ms ?? 10_000 });
    this.open_clients.add(client);
    return { client, index: this.next_client++ };
  }

  private async run(prng: Prng): Promise<void> {
    let { client, index } = this.newClient();
    let counter = 0;
    const versions = new Map<string, number>();
    while (!this.stopped) {
      const key = this.keyName(prng.int(this.options.keys));
      const roll = prng.int(100);
      let input: HistoryInput;
      let value: Uint8Array | null = null;
      if (roll < 45) {
        const tag = `c${index}.${++counter}`;
        value = valueFor(tag, prng.range(8, 512));
        input = { kind: "put", key, value: tag };
        const known = versions.get(key);
        if (roll < 8 && known !== undefined) input.if_version = known;
        else if (roll < 10) input.if_absent = true;
      } else {
        input = { kind: "get", key };
      }
      const call = this.now();
      const output = await this.perform(client, input, value);
      if (output === "unknown") {
        this.history.push({ client: index, input, call, ret: null, output: null });
        this.open_clients.delete(client);
        void client.close();
        ({ client, index } = this.newClient());
        continue;
      }
      if (output === null) continue; // a failure already reported in errors
      this.history.push({ client: index, input, call, ret: this.now(), output });
      this.completed += 1;
      if (output.status === "ok") versions.set(key, output.version);
    }
    this.open_clients.delete(client);
    await client.close();
  }

  private async perform(client: Client, input: HistoryInput, value: Uint8Array | null): Promise<HistoryOutput | "unknown" | null> {
    try {
      if (input.kind === "put") {
        const options = input.if_version !== undefined ? { if_version: input.if_version } : input.if_absent ? { if_absent: true } : {};
        const { version } = await client.put(input.key, value!, options);
        return { status: "ok", version };
      }
      const got = await client.get(input.key);
      return { status: "ok", version: got.version, value: tagOf(got.value) };
    } catch (error) {
      if (error instanceof ClientError && error.code === "not_found") return { status: "not_found" };
      if (error instanceof ClientError && error.code === "condition_failed") return { status: "condition_failed" };
      if (isOutcomeUnknown(error)) return "unknown";
      this.errors.push(`${input.kind} ${input.key}: ${(error as Error).message}`);
      return null;
    }
  }

  /** Records operations from elsewhere (probes, final reads) in the same history. */
  record(operation: HistoryOperation): void {
    this.history.push(operation);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.running);
  }

  /** After stop(): reads every key once more (recorded), so a lost write shows in the history. */
  async finalReads(): Promise<void> {
    const { client, index } = this.newClient();
    try {
      for (let k = 0; k < this.options.keys; k++) {
        const input: HistoryInput = { kind: "get", key: this.keyName(k) };
        const call = this.now();
        const output = await this.perform(client, input, null);
        if (output === "unknown" || output === null) {
          this.errors.push(`final read of ${input.key} failed`);
          continue;
        }
        const op: HistoryOperation = { client: index, input, call, ret: this.now(), output };
        this.history.push(op);
        this.final_reads.set(input.key, op);
      }
    } finally {
      this.open_clients.delete(client);
      await client.close();
    }
  }

  /** Problems: every acknowledged put must be visible in the final reads (its version or newer),
   * and the whole history must be linearizable. */
  check(): string[] {
    const problems = [...this.errors];
    const newest_acked = new Map<string, number>();
    for (const op of this.history) {
      if (op.input.kind === "put" && op.output?.status === "ok")
        newest_acked.set(op.input.key, Math.max(newest_acked.get(op.input.key) ?? 0, op.output.version));
    }
    for (const [key, version] of newest_acked) {
      const last = this.final_reads.get(key);
      const seen = last?.output?.status === "ok" ? last.output.version : 0;
      if (seen < version)
        problems.push(
          `key ${key}: the last read saw version ${seen}, but version ${version} was acknowledged: an acknowledged write was lost`,
        );
    }
    const started = performance.now();
    const result = checkLinearizable(this.history);
    this.check_ms = Math.round(performance.now() - started);
    if (!result.ok) {
      problems.push(`history not linearizable: ${result.reason}\n${formatHistory(result.operations ?? [])}`);
    } else if (result.unknown) {
      console.warn(`linearizability check inconclusive: ${result.reason}`);
    }
    return problems;
  }

  summary(): string {
    const open = this.history.filter((op) => op.ret === null).length;
    const puts = this.history.filter((op) => op.input.kind === "put" && op.output?.status === "ok").length;
    const gets = this.history.filter((op) => op.input.kind === "get" && op.ret !== null).length;
    return `${this.history.length} operations (${puts} acknowledged puts, ${gets} reads, ${open} with unknown outcome), checked in ${this.check_ms} ms`;
  }
}

/**
 * Sends gets to one replica only, over its own connection, and records every `ok` answer in the
 * history: a deposed primary that answers a read it should not (it has not confirmed with f other
 * replicas in its view that it still leads) shows up as a stale read. Anything else it answers
 * (not_primary, busy) or leaves unanswered records nothing (a read has no effect).
 */
export class ReadProbe {
  private readonly transport: TcpTransport;
  private readonly client = randomBytes(8).readBigUInt64LE(0);
  private request = 0;
  private readonly pending = new Map<number, { key: string; call: number }>();
  private started = false;
  /** Gets answered ok, and other answers, by result name. */
  readonly answers = new Map<string, number>();

  constructor(
    private readonly addresses: Address[],
    private readonly replica: number,
    private readonly load: HistoryLoad,
    private readonly history_client: number,
  ) {
    const m = membership(addresses);
    // A long silence timeout: gets queued at a paused replica must stay queued (not be discarded
    // with a redialed connection) so that it answers them the moment it wakes up.
    this.transport = new TcpTransport(
      { cluster: m.cluster, self: null, peers: m.replicas, peer_silence_timeout_ms: 120_000, log: () => {} },
      { onMessage: (message) => this.onMessage(message) },
    );
  }

  async send(key: string): Promise<void> {
    if (!this.started) {
      this.started = true;
      await this.transport.start();
    }
    const m = membership(this.addresses);
    const h = new Header();
    h.command = Command.request;
    h.cluster = m.cluster;
    h.replica = sender_client;
    h.client = this.client;
    h.request = ++this.request;
    h.operation = Operation.get;
    this.pending.set(h.request, { key, call: this.load.now() });
    this.transport.sendToReplica(this.replica, finalize(h, encodeKeyRequest(encoder.encode(key), null)));
  }

  private onMessage(message: Message): void {
    const h = message.header;
    const p = this.pending.get(h.request);
    if (h.command !== Command.reply || h.client !== this.client || p === undefined) return;
    this.pending.delete(h.request);
    const name = Result[h.result] ?? String(h.result);
    this.answers.set(name, (this.answers.get(name) ?? 0) + 1);
    let output: HistoryOutput | null = null;
    if (h.result === Result.ok) {
      const info = readObjectInfo(message.body, 0);
      const value = message.body.subarray(object_info_size);
      if (info === null || value.length !== info.size || checksum(value) !== info.checksum) {
        this.load.errors.push(`probe of replica ${this.replica}: malformed get reply for ${p.key}`);
        return;
      }
      output = { status: "ok", version: info.version, value: tagOf(value) };
    } else if (h.result === Result.not_found) {
      output = { status: "not_found" };
    }
    if (output !== null)
      this.load.record({ client: this.history_client, input: { kind: "get", key: p.key }, call: p.call, ret: this.load.now(), output });
  }

  async close(): Promise<void> {
    await this.transport.close();
  }
}
