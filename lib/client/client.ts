/**
 * The TypeScript client library (docs/DESIGN.md §4, docs/PROTOCOL.md §3): finds the primary, registers a
 * session before its first write (reads need none), numbers requests, retries a request with the
 * same number on timeouts and view changes (the replicas' client table makes that at-most-once),
 * and fails with a clear error when no majority answers in time. One request is outstanding per
 * client at a time; calls are queued. Use several clients for concurrency. Those rules live in
 * session.ts (the simulator runs them too); this class carries out its decisions over TCP.
 */
import { randomBytes } from "node:crypto";
import { checksum } from "../util/checksum.ts";
import { ClientSession, resultError } from "./session.ts";
import type { Message } from "../net/codec.ts";
import { TcpTransport, type ConnectionInfo } from "../net/tcp_transport.ts";
import { formatAddress, membership, type Address, type Membership } from "../net/address.ts";
import { key_size_max, value_size_max_default } from "../constants.ts";
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
  type ListEntry,
  type ObjectInfo,
} from "../store/operations.ts";
import { ClientError } from "./errors.ts";
import type { ReplicaStatus } from "../net/status_codec.ts";
import { probeCluster } from "./cluster_probe.ts";

export { ClientError } from "./errors.ts";

export interface ClientOptions {
  /** The cluster's replica addresses (all of them, in any order). */
  addresses: Address[];
  /** The caller's part of the client id; 64 random bits are mixed in (docs/DESIGN.md §4). */
  client_id?: bigint;
  /** An attempt with no reply is retried on the next replica after this long. */
  attempt_timeout_ms?: number;
  /** An operation that no replica completes within this long fails with no_quorum. */
  operation_timeout_ms?: number;
  log?: (level: "debug" | "info" | "warn" | "error", text: string) => void;
}

export interface PutOptions {
  if_version?: number;
  if_absent?: boolean;
}

export interface GetResult extends ObjectInfo {
  value: Uint8Array;
}

export const attempt_timeout_ms_default = 1000;
export const operation_timeout_ms_default = 15_000;
/** Extra patience per byte of request or reply on one attempt (large values take a while). */
const attempt_ms_per_mib = 100;
const busy_backoff_ms = 50;

/** A key's bytes, or a string taken as its UTF-8 encoding. */
type Key = Uint8Array | string;

interface Received {
  message: Message;
  /** The replica whose connection brought it (a wrong_cluster reply does not name its sender). */
  from: number | null;
}

const encoder = new TextEncoder();

function keyBytes(key: Key): Uint8Array {
  return typeof key === "string" ? encoder.encode(key) : key;
}

export class Client {
  readonly id: bigint;
  readonly membership: Membership;
  private readonly transport: TcpTransport;
  /** The client protocol itself (numbering, session, target, retries); this class does the I/O. */
  private readonly core: ClientSession;
  private waiter: ((received: Received | null) => void) | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private started: Promise<void> | null = null;
  private closed = false;
  /** A connection to the current target closed: retry at once instead of waiting. */
  private nudge: (() => void) | null = null;

  constructor(readonly options: ClientOptions) {
    this.membership = membership(options.addresses);
    const random = randomBytes(8).readBigUInt64LE(0);
    this.id = (options.client_id ?? 0n) ^ random;
    this.core = new ClientSession({
      client_id: this.id,
      cluster: this.membership.cluster,
      replica_count: this.membership.replicas.length,
      first_target: Number(random % BigInt(this.membership.replicas.length)),
      attempt_timeout: options.attempt_timeout_ms ?? attempt_timeout_ms_default,
      attempt_timeout_per_mib: attempt_ms_per_mib,
      backoff: busy_backoff_ms,
      operation_timeout: options.operation_timeout_ms ?? operation_timeout_ms_default,
      unit: "ms",
      names: this.membership.replicas.map(formatAddress),
    });
    this.transport = new TcpTransport(
      { cluster: this.membership.cluster, self: null, peers: this.membership.replicas, log: options.log ?? (() => {}) },
      {
        onMessage: (message, connection) => this.onMessage(message, connection),
        onConnectionClose: (connection: ConnectionInfo) => {
          if (connection.peer === this.core.target) this.nudge?.();
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
    this.nudge?.();
    await this.transport.close();
  }

  // --- Operations

  async put(key: Key, value: Uint8Array, options: PutOptions = {}): Promise<{ version: number }> {
    // One condition per write: silently dropping either would write what the caller ruled out.
    if (options.if_absent === true && options.if_version !== undefined)
      throw new ClientError("bad_request", "put: if_absent and if_version cannot be combined (a put has one condition)");
    const condition = options.if_absent ? Condition.if_absent : options.if_version !== undefined ? Condition.if_version : Condition.none;
    const kb = this.checkKey(key);
    if (value.length > value_size_max_default)
      throw new ClientError("value_too_large", `value of ${value.length} bytes is over the limit of ${value_size_max_default} bytes`);
    const reply = await this.write(Operation.put, encodeKeyRequest(kb, value, condition, options.if_version ?? 0));
    return { version: this.u64(reply) };
  }

  async delete(key: Key, options: { if_version?: number } = {}): Promise<{ version: number }> {
    const kb = this.checkKey(key);
    const condition = options.if_version !== undefined ? Condition.if_version : Condition.none;
    const reply = await this.write(Operation.delete, encodeKeyRequest(kb, null, condition, options.if_version ?? 0));
    return { version: this.u64(reply) };
  }

  async get(key: Key): Promise<GetResult> {
    const reply = await this.call(Operation.get, encodeKeyRequest(this.checkKey(key), null));
    const info = readObjectInfo(reply.body, 0);
    const value = reply.body.subarray(object_info_size);
    if (info === null || value.length !== info.size) throw new ClientError("protocol", "malformed get reply");
    // End to end: the value must be the one the replicas checksummed when it was written.
    if (checksum(value) !== info.checksum) throw new ClientError("protocol", "get reply value does not match its checksum");
    return { ...info, value };
  }

  async stat(key: Key): Promise<ObjectInfo> {
    const reply = await this.call(Operation.stat, encodeKeyRequest(this.checkKey(key), null));
    const info = readObjectInfo(reply.body, 0);
    if (info === null) throw new ClientError("protocol", "malformed stat reply");
    return info;
  }

  async list(prefix: Key = "", options: { after?: Key; limit?: number } = {}): Promise<{ entries: ListEntry[]; truncated: boolean }> {
    const limit = options.limit ?? 1000;
    const prefix_bytes = keyBytes(prefix);
    const after_bytes = keyBytes(options.after ?? "");
    // Checked here so the caller learns the limit, not just that the cluster said bad_request.
    if (prefix_bytes.length > key_size_max)
      throw new ClientError(
        "key_invalid",
        `prefix of ${prefix_bytes.length} bytes: keys, and so prefixes, are at most ${key_size_max} bytes`,
      );
    if (after_bytes.length > key_size_max)
      throw new ClientError("key_invalid", `after key of ${after_bytes.length} bytes: keys are at most ${key_size_max} bytes`);
    const reply = await this.call(Operation.list, encodeListRequest(prefix_bytes, after_bytes, limit));
    const list = decodeListReply(reply.body);
    if (list === null) throw new ClientError("protocol", "malformed list reply");
    return list;
  }

  /** Every key with the prefix, following `truncated` page by page. */
  async *listAll(prefix: Key = ""): AsyncGenerator<ListEntry> {
    let after: Uint8Array = new Uint8Array(0);
    for (;;) {
      const page = await this.list(prefix, { after, limit: 1000 });
      for (const entry of page.entries) yield entry;
      if (!page.truncated || page.entries.length === 0) return;
      after = page.entries[page.entries.length - 1]!.key;
    }
  }

  private checkKey(key: Key): Uint8Array {
    const kb = keyBytes(key);
    if (kb.length < 1 || kb.length > key_size_max)
      throw new ClientError("key_invalid", `key of ${kb.length} bytes: keys are 1 to ${key_size_max} bytes`);
    return kb;
  }

  private u64(reply: Message): number {
    const n = decodeU64(reply.body);
    if (n === null) throw new ClientError("protocol", "malformed reply");
    return n;
  }

  // --- Requests

  private async write(operation: Operation, body: Uint8Array): Promise<Message> {
    return this.call(operation, body);
  }

  /** Queues the operation behind any outstanding one (one request per client at a time). */
  private call(operation: Operation, body: Uint8Array): Promise<Message> {
    const run = this.chain.then(() => this.execute(operation, body));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Carries out what the session core decides until it has an answer: sends, and waits for a
   * reply, the core's wake_at, or the target's connection closing (retry at once then). */
  private async execute(operation: Operation, body: Uint8Array): Promise<Message> {
    if (this.closed) throw new ClientError("closed", "the client is closed");
    await this.start();
    if (this.closed) throw new ClientError("closed", "the client is closed");
    let step = this.core.start(operation, body, Date.now());
    for (;;) {
      switch (step.kind) {
        case "send":
          this.transport.sendToReplica(step.replica, step.message);
          break;
        case "done":
          if (step.reply.header.result !== Result.ok) throw resultError(step.reply);
          return step.reply;
        case "failed":
          throw step.error;
        case "ignored":
          if (step.problem !== null) this.options.log?.("error", `${step.problem}: ignored`);
          break;
        case "wait":
          break;
      }
      const event = await this.awaitReply(this.core.wake_at - Date.now());
      if (this.closed) {
        this.core.abandon();
        throw new ClientError("closed", "the client is closed");
      }
      step = event === null ? this.core.expire(Date.now()) : this.core.onReply(event.message, event.from, Date.now());
    }
  }

  /** The next message from a replica, or null when timeout_ms passes or the target's connection
   * closes first. */
  private awaitReply(timeout_ms: number): Promise<Received | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(null), Math.max(0, timeout_ms));
      const finish = (received: Received | null): void => {
        clearTimeout(timer);
        this.waiter = null;
        this.nudge = null;
        resolve(received);
      };
      this.waiter = finish;
      this.nudge = () => finish(null);
    });
  }

  private onMessage(message: Message, connection: ConnectionInfo): void {
    this.waiter?.({ message, from: connection.peer });
  }
}

/** Asks every replica about itself (toastyfs status); a replica that does not answer within
 * timeout_ms is reported as null (probeCluster also says what its connection did). */
export async function clusterStatus(addresses: Address[], timeout_ms = 1000): Promise<(ReplicaStatus | null)[]> {
  return (await probeCluster(addresses, timeout_ms)).map((p) => p.status);
}
