/**
 * A small cluster for the replica's unit tests: real replicas over real FileStorage on simulated
 * disks, with messages queued and delivered (encoded and decoded, as on the wire) only when a test
 * says so, and a filter that can drop any of them. Each replica's writes are flushed after every
 * event it handles. Much smaller than the simulator: a test scripts one scenario step by step.
 */
import { defaultConfig, sender_client, type Config } from "../lib/constants.ts";
import { Command, Header, decode, encode, finalize, type Message } from "../lib/net/codec.ts";
import { FileStorage } from "../lib/storage/file_storage.ts";
import { Operation, Result, encodeKeyRequest } from "../lib/store/operations.ts";
import { keyToBytes } from "../lib/store/keys.ts";
import { Prng } from "../lib/util/prng.ts";
import { SimFs } from "./sim_fs.ts";
import { Replica } from "../lib/vsr/replica.ts";
import type { Env } from "../lib/vsr/env.ts";
import type { Storage } from "../lib/vsr/storage.ts";

export interface Envelope {
  from: number;
  to: number;
  bytes: Uint8Array;
}

export type ReplicaFactory = (config: Config, index: number, storage: Storage, env: Env) => Replica;

export class TestCluster {
  readonly config: Config;
  readonly disks: SimFs[] = [];
  readonly replicas: (Replica | null)[] = [];
  readonly storages: (Storage | null)[] = [];
  /** Messages in flight, oldest first. */
  queue: Envelope[] = [];
  /** Replies to clients, by client id. */
  readonly replies = new Map<bigint, Message[]>();
  /** Every message a replica sent (decoded), for assertions. */
  readonly sent: { from: number; to: number; message: Message }[] = [];
  /** Every log line of every replica, with the time (for a failing test to print). */
  readonly logs: string[] = [];
  /** Return false to drop a message as it is sent. */
  filter: (from: number, to: number, message: Message) => boolean = () => true;
  readonly prng: Prng;
  now = 0;

  constructor(
    readonly replica_count: number,
    tune: (config: Config) => void = () => {},
    readonly make: ReplicaFactory = (config, index, storage, env) => new Replica(config, index, storage, env),
    readonly wrap: (storage: Storage, index: number) => Storage = (storage) => storage,
    seed = 42,
  ) {
    this.prng = new Prng(seed);
    this.config = defaultConfig(replica_count, 0x7e57c1a5n);
    this.config.journal_slot_count = 16;
    this.config.checkpoint_interval_ops = 4;
    this.config.pipeline_prepare_max = 2;
    this.config.segment_size_bytes = 8192;
    tune(this.config);
    for (let i = 0; i < replica_count; i++) {
      this.disks.push(new SimFs(this.prng.fork()));
      this.replicas.push(null);
      this.storages.push(null);
    }
  }

  start(index: number): Replica {
    const storage = this.wrap(
      new FileStorage(this.disks[index]!, {
        cluster: this.config.cluster,
        replica: index,
        replica_count: this.replica_count,
        journal_slot_count: this.config.journal_slot_count,
        segment_size_bytes: this.config.segment_size_bytes,
      }),
      index,
    );
    const env: Env = {
      sendToReplica: (to, message) => this.send(index, to, message),
      sendToClient: (client, message) => {
        const decoded = decode(encode(message), this.config.cluster);
        if (!decoded.ok) throw new Error("a replica sent a client a message that does not decode");
        let list = this.replies.get(client);
        if (list === undefined) this.replies.set(client, (list = []));
        list.push(decoded.message);
      },
      random: this.prng.fork(),
      log: (level, text) => this.logs.push(`${this.now} ${level} ${text}`),
    };
    const replica = this.make(this.config, index, storage, env);
    this.replicas[index] = replica;
    this.storages[index] = storage;
    replica.open(this.now);
    this.settle(index);
    return replica;
  }

  startAll(): void {
    for (let i = 0; i < this.replica_count; i++) this.start(i);
  }

  /** Power loss of one replica: unsynced writes lost or torn, messages to it dropped. */
  crash(index: number): void {
    this.storages[index]?.close();
    this.disks[index]!.crash(this.prng);
    this.replicas[index] = null;
    this.storages[index] = null;
    this.queue = this.queue.filter((e) => e.to !== index);
  }

  replica(index: number): Replica {
    const r = this.replicas[index];
    if (r === null || r === undefined) throw new Error(`replica ${index} is down`);
    return r;
  }

  private send(from: number, to: number, message: Message): void {
    const decoded = decode(encode(message), this.config.cluster);
    if (!decoded.ok) throw new Error(`replica ${from} sent a message that does not decode`);
    this.sent.push({ from, to, message: decoded.message });
    if (!this.filter(from, to, decoded.message)) return;
    this.queue.push({ from, to, bytes: encode(message) });
  }

  /** Flushes a replica's queued writes (repeatedly: acting on durability may queue more). */
  settle(index: number): void {
    const replica = this.replicas[index];
    for (let i = 0; i < 10 && replica !== null && replica !== undefined && replica.flushes.needed(); i++) replica.flushes.now();
    replica?.invariants();
  }

  /** Delivers queued messages (and those they cause) until none are left or `max` were handled. */
  deliver(max = 100_000): number {
    let handled = 0;
    while (this.queue.length > 0 && handled < max) {
      const envelope = this.queue.shift()!;
      handled += 1;
      const replica = this.replicas[envelope.to];
      if (replica === null || replica === undefined) continue;
      const decoded = decode(envelope.bytes, this.config.cluster);
      if (!decoded.ok) throw new Error("a queued message does not decode");
      replica.onMessage(decoded.message);
      this.settle(envelope.to);
    }
    return handled;
  }

  /** Advances every running replica by `ticks` ticks, delivering messages after each. */
  tick(ticks = 1): void {
    for (let t = 0; t < ticks; t++) {
      this.now += this.config.tick_ms;
      for (let i = 0; i < this.replica_count; i++) {
        const replica = this.replicas[i];
        if (replica === null || replica === undefined) continue;
        replica.tick(this.now);
        this.settle(i);
      }
      this.deliver();
    }
  }

  /** Ticks until `done` holds, or fails after `ticks_max` ticks. */
  until(done: () => boolean, ticks_max = 5000, what = "the condition"): void {
    for (let t = 0; t < ticks_max; t++) {
      if (done()) return;
      this.tick();
    }
    throw new Error(`${what} did not hold within ${ticks_max} ticks`);
  }

  primary(): Replica | null {
    return this.replicas.find((r) => r?.describe().primary === true) ?? null;
  }

  /** A client request to `to` (the client's id, session and request number are the caller's). */
  request(to: number, client: bigint, session: number, request: number, operation: Operation, body: Uint8Array): void {
    const h = new Header();
    h.command = Command.request;
    h.cluster = this.config.cluster;
    h.replica = sender_client;
    h.client = client;
    h.session = session;
    h.request = request;
    h.operation = operation;
    this.queue.push({ from: sender_client, to, bytes: encode(finalize(h, body)) });
    this.deliver();
  }

  lastReply(client: bigint): Message | null {
    const list = this.replies.get(client);
    return list === undefined || list.length === 0 ? null : list[list.length - 1]!;
  }
}

/** A client that registers and then puts, one request at a time, through the primary. */
export class TestClient {
  session = 0;
  request = 0;

  constructor(
    readonly cluster: TestCluster,
    readonly id: bigint,
  ) {}

  /** Sends a request to the primary and ticks until it is answered; returns the reply. */
  call(operation: Operation, body: Uint8Array, ticks_max = 3000): Message {
    this.request += 1;
    const request = this.request;
    for (let t = 0; t < ticks_max; t++) {
      const reply = this.cluster.replies
        .get(this.id)
        ?.find((m) => m.header.request === request && m.header.result !== Result.not_primary && m.header.result !== Result.busy);
      if (reply !== undefined) return reply;
      if (t % 50 === 0) {
        const primary = this.cluster.replicas.findIndex((r) => r?.describe().primary === true);
        if (primary !== -1) this.cluster.request(primary, this.id, this.session, request, operation, body);
      }
      this.cluster.tick();
    }
    throw new Error(`request ${request} of client ${this.id} was not answered within ${ticks_max} ticks`);
  }

  register(): void {
    const reply = this.call(Operation.register, new Uint8Array(0));
    this.session = reply.header.session;
  }

  put(key: string, value: string): Message {
    return this.call(Operation.put, encodeKeyRequest(keyToBytes(key), new TextEncoder().encode(value)));
  }
}
