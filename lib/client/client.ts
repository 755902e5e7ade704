/**
 * The TypeScript client library (DESIGN §4, docs/PROTOCOL.md §3): finds the primary, registers a
 * session before its first write (reads need none), numbers requests, retries a request with the
 * same number on timeouts and view changes (the replicas' client table makes that at-most-once),
 * and fails with a clear error when no majority answers in time. One request is outstanding per
 * client at a time; calls are queued. Use several clients for concurrency.
 */
import { randomBytes } from "node:crypto";
import { checksum } from "../util/checksum.ts";
import { Command, finalize, Header, type Message } from "../net/codec.ts";
import { TcpTransport, type ConnectionInfo } from "../net/tcp_transport.ts";
import { formatAddress, membership, type Address, type Membership } from "../net/address.ts";
import { key_size_max, sender_client, value_size_max_default } from "../constants.ts";
import {
  Condition,
  Operation,
  Result,
  decodeListReply,
  decodeU64,
  encodeKeyRequest,
  encodeListRequest,
  isWrite,
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
  /** The caller's part of the client id; 64 random bits are mixed in (DESIGN §4). */
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

interface Pending {
  request: number;
  operation: Operation;
  resolve(message: Message): void;
}

const encoder = new TextEncoder();

function keyBytes(key: Key): Uint8Array {
  return typeof key === "string" ? encoder.encode(key) : key;
}

export class Client {
  readonly id: bigint;
  readonly membership: Membership;
  private readonly transport: TcpTransport;
  private session = 0;
  private request_number = 0;
  private target: number;
  private pending: Pending | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private started: Promise<void> | null = null;
  private closed = false;
  private readonly attempt_timeout_ms: number;
  private readonly operation_timeout_ms: number;
  /** A connection to the current target closed: retry at once instead of waiting. */
  private nudge: (() => void) | null = null;
  /** The replica (index) whose connection brought the reply awaitReply last resolved with. */
  private replied_from: number | null = null;

  constructor(readonly options: ClientOptions) {
    this.membership = membership(options.addresses);
    const random = randomBytes(8).readBigUInt64LE(0);
    this.id = (options.client_id ?? 0n) ^ random;
    this.attempt_timeout_ms = options.attempt_timeout_ms ?? attempt_timeout_ms_default;
    this.operation_timeout_ms = options.operation_timeout_ms ?? operation_timeout_ms_default;
    this.target = Number(random % BigInt(this.membership.replicas.length));
    this.transport = new TcpTransport(
      { cluster: this.membership.cluster, self: null, peers: this.membership.replicas, log: options.log ?? (() => {}) },
      {
        onMessage: (message, connection) => this.onMessage(message, connection),
        onConnectionClose: (connection: ConnectionInfo) => {
          if (connection.peer === this.target) this.nudge?.();
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
    if (options.if_absent === true && options.if_version !== undefined) throw new ClientError("bad_request", "put: if_absent and if_version cannot be combined (a put has one condition)");
    const condition = options.if_absent ? Condition.if_absent : options.if_version !== undefined ? Condition.if_version : Condition.none;
    const kb = this.checkKey(key);
    if (value.length > value_size_max_default) throw new ClientError("value_too_large", `value of ${value.length} bytes is over the limit of ${value_size_max_default} bytes`);
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
    if (prefix_bytes.length > key_size_max) throw new ClientError("key_invalid", `prefix of ${prefix_bytes.length} bytes: keys, and so prefixes, are at most ${key_size_max} bytes`);
    if (after_bytes.length > key_size_max) throw new ClientError("key_invalid", `after key of ${after_bytes.length} bytes: keys are at most ${key_size_max} bytes`);
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
    if (kb.length < 1 || kb.length > key_size_max) throw new ClientError("key_invalid", `key of ${kb.length} bytes: keys are 1 to ${key_size_max} bytes`);
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

  private async execute(operation: Operation, body: Uint8Array): Promise<Message> {
    if (this.closed) throw new ClientError("closed", "the client is closed");
    await this.start();
    const deadline = Date.now() + this.operation_timeout_ms;
    // Lazily, before the first write only: a register is a replicated, fsynced op, and the table
    // keeps clients_max sessions, so a session per reader would evict long-lived writers.
    if (this.session === 0 && isWrite(operation) && operation !== Operation.register) await this.register(deadline);
    const reply = await this.send(operation, body, deadline);
    const result = reply.header.result as Result;
    if (result === Result.evicted) {
      this.session = 0;
      throw new ClientError("evicted", "the cluster evicted this client's session (too many clients): the write may or may not have happened; check and retry");
    }
    return this.check(reply);
  }

  private async register(deadline: number): Promise<void> {
    const reply = await this.send(Operation.register, new Uint8Array(0), deadline);
    if (reply.header.result !== Result.ok) throw new ClientError("protocol", `register failed with result ${reply.header.result}`);
    this.session = reply.header.session;
  }

  private check(reply: Message): Message {
    const result = reply.header.result as Result;
    const limit = decodeU64(reply.body);
    switch (result) {
      case Result.ok:
        return reply;
      case Result.not_found:
        throw new ClientError("not_found", "not found");
      case Result.condition_failed:
        throw new ClientError("condition_failed", `condition failed: the current version is ${limit ?? "unknown"}${limit === 0 ? " (absent)" : ""}`);
      case Result.key_invalid:
        throw new ClientError("key_invalid", `key rejected: keys are 1 to ${limit ?? key_size_max} bytes`);
      case Result.value_too_large:
        throw new ClientError("value_too_large", `value rejected: the cluster's limit is ${limit ?? "?"} bytes`);
      default:
        throw new ClientError("bad_request", `request rejected with result ${Result[result] ?? result}`);
    }
  }

  /** Sends one request and retries it, with the same request number, until a final answer or the
   * deadline. Follows not_primary hints, backs off on busy, moves on on timeouts and closes. */
  private async send(operation: Operation, body: Uint8Array, deadline: number): Promise<Message> {
    this.request_number += 1;
    const request = this.request_number;
    const h = new Header();
    h.command = Command.request;
    h.cluster = this.membership.cluster;
    h.replica = sender_client;
    h.client = this.id;
    h.session = this.session;
    h.request = request;
    h.operation = operation;
    const message = finalize(h, body);
    const attempt_ms = this.attempt_timeout_ms + Math.ceil((body.length / 2 ** 20) * attempt_ms_per_mib);
    let redirected = false;
    let attempts = 0;
    /** Replicas that answered wrong_cluster: not part of the cluster these addresses describe. */
    const foreign = new Set<number>();
    while (!this.closed) {
      const now = Date.now();
      if (now >= deadline) {
        const n = this.membership.replicas.length;
        throw new ClientError(
          "no_quorum",
          `no replica completed the request within ${this.operation_timeout_ms} ms after ${attempts} attempts: is a majority (${Math.floor(n / 2) + 1} of ${n}) of ${this.membership.replicas.map(formatAddress).join(",")} running and reachable?${foreign.size > 0 ? ` Also, ${this.describeForeign(foreign)}` : ""}`,
        );
      }
      attempts += 1;
      this.transport.sendToReplica(this.target, message);
      const reply = await this.awaitReply(request, operation, Math.min(attempt_ms, deadline - now));
      if (reply === null) {
        // Timed out or the connection closed: the next replica (a hint from a not_primary is tried once).
        if (!redirected) this.target = (this.target + 1) % this.membership.replicas.length;
        redirected = false;
        continue;
      }
      const result = reply.header.result as Result;
      if (result === Result.wrong_cluster) {
        // Its frames carry another cluster id. If every replica says so, the address list is wrong;
        // if only some do, those addresses lead to another cluster, and the others may still serve.
        const n = this.membership.replicas.length;
        foreign.add(this.replied_from ?? this.target);
        if (foreign.size === n) throw new ClientError("wrong_cluster", this.describeForeign(foreign));
        while (foreign.has(this.target)) this.target = (this.target + 1) % n;
        redirected = true;
        continue;
      }
      if (result === Result.not_primary) {
        const n = this.membership.replicas.length;
        const hinted = reply.header.view % n;
        this.target = hinted === reply.header.replica ? (reply.header.replica + 1) % n : hinted;
        redirected = true;
        await sleepMs(attempts > n ? busy_backoff_ms : 0);
        continue;
      }
      if (result === Result.no_space) {
        // The primary's disk is full; it hands over to a replica with space. Try the next one.
        this.target = (reply.header.replica + 1) % this.membership.replicas.length;
        redirected = true;
        await sleepMs(busy_backoff_ms * Math.min(attempts, 10));
        continue;
      }
      if (result === Result.busy || result === Result.unavailable) {
        redirected = true;
        await sleepMs(busy_backoff_ms * Math.min(attempts, 10));
        continue;
      }
      this.target = reply.header.replica;
      return reply;
    }
    throw new ClientError("closed", "the client is closed");
  }

  private describeForeign(foreign: ReadonlySet<number>): string {
    const addresses = [...foreign].sort((a, b) => a - b).map((i) => formatAddress(this.membership.replicas[i]!));
    const hint = "pass the same --cluster addresses as the replicas, in any order";
    if (addresses.length === 1) return `replica ${addresses[0]} belongs to another cluster (its address list differs from yours: ${hint})`;
    return `replicas ${addresses.join(", ")} belong to another cluster (their address list differs from yours: ${hint})`;
  }

  private awaitReply(request: number, operation: Operation, timeout_ms: number): Promise<Message | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(null), timeout_ms);
      const finish = (message: Message | null): void => {
        clearTimeout(timer);
        this.pending = null;
        this.nudge = null;
        resolve(message);
      };
      this.pending = { request, operation, resolve: finish };
      this.nudge = () => finish(null);
    });
  }

  private onMessage(message: Message, connection: ConnectionInfo): void {
    const h = message.header;
    const p = this.pending;
    if (h.command !== Command.reply || h.client !== this.id || p === null || h.request !== p.request) return;
    if (h.operation !== p.operation) {
      this.options.log?.("error", `reply to request ${h.request} is for operation ${h.operation}, not ${p.operation}: ignored`);
      return;
    }
    this.replied_from = connection.peer;
    p.resolve(message);
  }
}

function sleepMs(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}

/** Asks every replica about itself (toastyfs status); a replica that does not answer within
 * timeout_ms is reported as null (probeCluster also says what its connection did). */
export async function clusterStatus(addresses: Address[], timeout_ms = 1000): Promise<(ReplicaStatus | null)[]> {
  return (await probeCluster(addresses, timeout_ms)).map((p) => p.status);
}
