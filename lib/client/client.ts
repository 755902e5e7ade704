/**
 * The TypeScript client library (docs/DESIGN.md §4, docs/PROTOCOL.md §3): finds the primary, registers a
 * session before its first write (reads need none), numbers requests, retries a request with the
 * same number on timeouts and view changes (the replicas' client table makes that at-most-once),
 * and fails with a clear error when no majority answers in time. One request is outstanding per
 * client id at a time; calls are queued. Use several clients for concurrency. Those rules live in
 * session.ts (the simulator runs them too); channel.ts carries out its decisions over TCP.
 *
 * Objects of any size (docs/LARGE_OBJECTS.md §11.1): put streams a body larger than a block as an
 * upload (large_put.ts) and getStream reads one version in order (large_get.ts), both with a few
 * lanes: extra client ids, each its own channel, that keep blocks or reads in flight at once.
 */
import { randomBytes } from "node:crypto";
import { checksum } from "../util/checksum.ts";
import { ClientSession } from "./session.ts";
import type { Message } from "../net/codec.ts";
import type { AuthKeys } from "../net/auth/secret.ts";
import type { TlsFiles } from "../net/tls.ts";
import { TcpTransport, type ConnectionInfo } from "../net/tcp_transport.ts";
import { formatAddress, membership, type Address, type Membership } from "../net/address.ts";
import { block_size_max_ceiling_bytes, client_lanes_default, gc_received_bytes_step, key_size_max } from "../constants.ts";
import {
  Condition,
  Operation,
  decodeListReply,
  decodeU64,
  encodeKeyRequest,
  encodeListRequest,
  object_info_size,
  readObjectInfo,
  type ListEntry,
  type ObjectInfo,
} from "../store/operations.ts";
import { encodeAbortUpload, type ObjectHeader } from "../store/large_bodies.ts";
import { ClientError } from "./errors.ts";
import type { ReplicaStatus } from "../net/status_codec.ts";
import { probeCluster } from "./cluster_probe.ts";
import { Channel, type ChannelIo } from "./channel.ts";
import type { BlockSource, Body } from "./body_source.ts";
import {
  Upload,
  conditionOf,
  metadataOf,
  putBody,
  putSource,
  type Conditions,
  type LargePutOptions,
  type ObjectOptions,
  type PutCalls,
  type PutResult,
} from "./large_put.ts";
import { getStream, head, type GetOptions, type GetStream } from "./large_get.ts";

export { ClientError } from "./errors.ts";
export { FileSource, type BlockSource, type Body } from "./body_source.ts";
export type { LargePutOptions, PutResult } from "./large_put.ts";
export { Upload } from "./large_put.ts";
export { formatRange, parseRange, type ByteRange, type GetOptions, type GetStream } from "./large_get.ts";

/** Lanes a client may ask for: each holds up to one block (4 MiB) or one read in flight. */
const client_lanes_max = 64;

export interface ClientOptions {
  /** The cluster's replica addresses (all of them, in any order). */
  addresses: Address[];
  /** Where to dial each replica, in replica index order, when not at its address (a cluster run
   * under other addresses' identity: toastyfs snapshot restore). Default: the addresses. */
  dial?: Address[];
  /** The caller's part of the client id; 64 random bits are mixed in (docs/DESIGN.md §4). */
  client_id?: bigint;
  /** An attempt with no reply is retried on the next replica after this long. */
  attempt_timeout_ms?: number;
  /** An operation that no replica completes within this long fails with no_quorum. */
  operation_timeout_ms?: number;
  log?: (level: "debug" | "info" | "warn" | "error", text: string) => void;
  /** Extra client ids for blocks and reads in flight at once (default client_lanes_default). */
  lanes?: number;
  /** The cluster's keys, when it has a secret (docs/PROTOCOL.md §6): readSecretFile of the secret
   * or of a client key file (lib/net/auth/secret.ts). A missing, extra or wrong one fails every
   * operation with authentication_failed. */
  secret?: AuthKeys | null;
  /** Mutual TLS to every replica (docs/PROTOCOL.md §6.8): readTlsFiles of this client's
   * certificate, key and the cluster's CA. A replica that refuses the certificate, or that
   * requires TLS of a client without it, fails every operation with authentication_failed. */
  tls?: TlsFiles | null;
}

export interface GetResult extends ObjectInfo {
  value: Uint8Array;
}

export const attempt_timeout_ms_default = 1000;
export const operation_timeout_ms_default = 15_000;
/** Extra patience per MiB of request on one attempt, times the client's lanes: a block waits in
 * the primary's queue behind the others this client (and others) keep in flight, and an attempt
 * that times out there resends the whole block (4 lanes × 4 MiB: 1 s + 3.2 s). At 100 ms per MiB
 * without the lanes, 8 clients of 4 lanes resent blocks by the hundred (bench/RESULTS.md). */
const attempt_ms_per_mib = 200;
const busy_backoff_ms = 50;

/** A key's bytes, or a string taken as its UTF-8 encoding. */
type Key = Uint8Array | string;

const encoder = new TextEncoder();

function keyBytes(key: Key): Uint8Array {
  return typeof key === "string" ? encoder.encode(key) : key;
}

/** Bytes of bodies moved by every Client of this process since the last collection, by kind (see
 * collectGarbage). Process-wide: the garbage is the process's, not one client's. */
const moved_since_collection = { streamed: 0, whole: 0 };

/**
 * Collects garbage after every gc_received_bytes_step of bodies sent or received. A streamed put
 * or get turns every block into garbage (the request body, the reply) and the collector lets it
 * pile up far beyond the few blocks alive at once; as in the replica (ReplicaNode.collectGarbage),
 * this bounds the pile. Synchronous for streams: measured once on a 1.5 GiB put in 4 MiB blocks,
 * the CLI's peak RSS was 174 MB with it, 201-214 MB with Bun.gc(false) or none (the target is
 * < 200 MB). Whole values (get, put of one block, on the main channel) only hint (Bun.gc(false)):
 * a synchronous collection hands the freed memory back to the system, so every page of the next
 * replies' fresh buffers faults again. 8 clients getting 1 MiB values spent 1.2-1.45 ms of CPU per
 * get with it (260-280 page faults per get) against 0.75-0.92 ms (90-140) with the hint or none,
 * at a peak RSS of 142-155 MB against 235-276 MB (bench/RESULTS.md, "Read path"); whoever
 * holds many whole values holds them anyway, and a stream still collects.
 */
function collectGarbage(bytes: number, streamed: boolean): void {
  const kind = streamed ? "streamed" : "whole";
  moved_since_collection[kind] += bytes;
  if (moved_since_collection[kind] < gc_received_bytes_step) return;
  moved_since_collection[kind] = 0;
  Bun.gc(streamed);
}

export class Client {
  readonly id: bigint;
  readonly membership: Membership;
  private readonly transport: TcpTransport;
  /** This client's own requests (register, puts, gets, create and complete of uploads). */
  private readonly main: Channel;
  /** Extra client ids for blocks and reads in flight at once (created on first use). */
  private readonly lanes: Channel[] = [];
  private readonly lane_count: number;
  /** Channels by client id, to route replies. */
  private readonly channels = new Map<bigint, Channel>();
  /** The lanes' side of the process (blocks of streamed puts and gets): collected synchronously. */
  private readonly io: ChannelIo;
  /** The main channel's (whole values, metadata): left to the collector, with a hint. */
  private readonly main_io: ChannelIo;
  private started: Promise<void> | null = null;
  /** Ids of this client's connections that opened and have not closed (at most one per replica):
   * one that closes without having opened was refused or timed out. */
  private readonly opened = new Set<number>();
  private closed = false;
  /** The cluster's block_size_max, once a create_upload reply has said it. */
  private block_size_max: number | null = null;

  constructor(readonly options: ClientOptions) {
    this.membership = membership(options.addresses);
    this.lane_count = options.lanes ?? client_lanes_default;
    if (!Number.isInteger(this.lane_count) || this.lane_count < 1 || this.lane_count > client_lanes_max)
      throw new ClientError("bad_request", `lanes must be 1 to ${client_lanes_max}, got ${this.lane_count}`);
    this.io = {
      start: () => this.start(),
      send: (replica, message) => this.transport.sendToReplica(replica, message),
      closed: () => this.closed,
      log: (level, text) => options.log?.(level, text),
      moved: (bytes) => collectGarbage(bytes, true),
    };
    this.main_io = { ...this.io, moved: (bytes) => collectGarbage(bytes, false) };
    const random = randomBytes(8).readBigUInt64LE(0);
    this.id = (options.client_id ?? 0n) ^ random;
    this.main = this.channel(this.id, Number(random % BigInt(this.membership.replicas.length)), this.main_io);
    this.transport = new TcpTransport(
      {
        cluster: this.membership.cluster,
        self: null,
        peers: options.dial ?? this.membership.replicas,
        secret: options.secret ?? null,
        tls: options.tls ?? null,
        log: options.log ?? (() => {}),
      },
      {
        onMessage: (message, connection) => this.onMessage(message, connection),
        onAuthenticationFailed: (connection: ConnectionInfo, detail: string) => {
          if (connection.peer === null) return;
          for (const c of this.channels.values()) c.authFailed(connection.peer, detail);
        },
        onConnectionOpen: (connection: ConnectionInfo) => {
          if (connection.peer === null) return;
          this.opened.add(connection.id);
          for (const c of this.channels.values()) c.reachable(connection.peer);
        },
        onConnectionClose: (connection: ConnectionInfo) => {
          const peer = connection.peer;
          if (peer === null) return;
          if (!this.opened.delete(connection.id)) {
            // It never opened: the replica is most likely down. Every channel skips it for a
            // while, and one waiting on it moves on at once (session.ts onUnreachable).
            for (const c of this.channels.values()) c.unreachable(peer);
            return;
          }
          // Retry at once instead of waiting out the attempt.
          for (const c of this.channels.values()) if (peer === c.core.target) c.nudge();
        },
      },
    );
  }

  private channel(id: bigint, first_target: number, io = this.io): Channel {
    const core = new ClientSession({
      client_id: id,
      cluster: this.membership.cluster,
      replica_count: this.membership.replicas.length,
      first_target,
      attempt_timeout: this.options.attempt_timeout_ms ?? attempt_timeout_ms_default,
      attempt_timeout_per_mib: attempt_ms_per_mib * this.lane_count,
      backoff: busy_backoff_ms,
      operation_timeout: this.options.operation_timeout_ms ?? operation_timeout_ms_default,
      unit: "ms",
      names: this.membership.replicas.map(formatAddress),
    });
    const channel = new Channel(core, io);
    this.channels.set(id, channel);
    return channel;
  }

  /** The lanes, created on first use with fresh random ids; they start at the main channel's
   * target, the replica that last answered it (most likely the primary). They never register:
   * write_block and read need no session (LARGE_OBJECTS.md §11.1). */
  private laneChannels(): Channel[] {
    while (this.lanes.length < this.lane_count) {
      let id: bigint;
      do id = randomBytes(8).readBigUInt64LE(0);
      while (id === 0n || this.channels.has(id));
      this.lanes.push(this.channel(id, this.main.core.target));
    }
    return this.lanes;
  }

  private start(): Promise<void> {
    this.started ??= this.transport.start();
    return this.started;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.channels.values()) c.nudge();
    await this.transport.close();
  }

  // --- Operations

  /**
   * Stores body under key: bytes, a Blob or Bun.file, a ReadableStream or an async iterable, of
   * any size up to the cluster's object limit. A body that fits in one block is one put (or
   * put_object with metadata); a larger one is streamed as an upload (large_put.ts).
   */
  put(key: Key, body: Body, options: LargePutOptions = {}): Promise<PutResult> {
    const kb = this.checkKey(key);
    return putBody(this.putCalls(), kb, body, options);
  }

  /** put for a source already opened: a file read with pread (body_source.ts FileSource). */
  putSource(key: Key, source: BlockSource, options: LargePutOptions = {}): Promise<PutResult> {
    const kb = this.checkKey(key);
    return putSource(this.putCalls(), kb, source, options);
  }

  /** Opens an upload for parts sent in any order (Upload.sendPart), then complete or abort. */
  createUpload(key: Key, options: Conditions & ObjectOptions & { size?: number } = {}): Promise<Upload> {
    const { condition, if_version } = conditionOf(options);
    return Upload.create(this.putCalls(), this.checkKey(key), {
      condition,
      if_version,
      declared_size: options.size ?? null,
      metadata: metadataOf(options),
    });
  }

  /** An upload opened earlier, by this client or another process: its id and the block_size_max
   * its create gave (Upload.block_size_max). Nothing is sent until a part, complete or abort. */
  openUpload(upload_id: number, block_size_max: number): Upload {
    if (!Number.isSafeInteger(upload_id) || upload_id < 1)
      throw new ClientError("bad_request", `an upload id is a positive whole number, got ${upload_id}`);
    if (!Number.isSafeInteger(block_size_max) || block_size_max < 1 || block_size_max > block_size_max_ceiling_bytes)
      throw new ClientError("bad_request", `block_size_max must be 1..${block_size_max_ceiling_bytes}, got ${block_size_max}`);
    return Upload.open(this.putCalls(), upload_id, block_size_max);
  }

  /** Aborts an upload a failed put left open (its id is in the error: ClientError.upload_id). */
  async abortUpload(upload_id: number): Promise<void> {
    if (!Number.isSafeInteger(upload_id) || upload_id < 1)
      throw new ClientError("bad_request", `an upload id is a positive whole number, got ${upload_id}`);
    await this.main.call(Operation.abort_upload, encodeAbortUpload(upload_id));
  }

  private putCalls(): PutCalls {
    return {
      main: this.main,
      lanes: this.laneChannels(),
      inline_max: this.block_size_max ?? block_size_max_ceiling_bytes,
      learned: (n) => (this.block_size_max = n),
    };
  }

  async delete(key: Key, options: { if_version?: number } = {}): Promise<{ version: number }> {
    const kb = this.checkKey(key);
    const condition = options.if_version !== undefined ? Condition.if_version : Condition.none;
    const reply = await this.main.call(Operation.delete, encodeKeyRequest(kb, null, condition, options.if_version ?? 0));
    return { version: this.u64(reply) };
  }

  /** The whole value in memory, with one get (objects up to value_size_max; getStream for any size). */
  async get(key: Key): Promise<GetResult> {
    const reply = await this.main.call(Operation.get, encodeKeyRequest(this.checkKey(key), null));
    const info = readObjectInfo(reply, 0);
    const value = reply.subarray(object_info_size);
    if (info === null || value.length !== info.size) throw new ClientError("protocol", "malformed get reply");
    // End to end: the value must be the one the replicas checksummed when it was written.
    if (checksum(value) !== info.checksum) throw new ClientError("protocol", "get reply value does not match its checksum");
    return { ...info, value };
  }

  /** The object's header and a stream of its bytes (or of a range), all of one version. */
  getStream(key: Key, options: GetOptions = {}): Promise<GetStream> {
    return getStream({ main: this.main, lanes: this.laneChannels() }, this.checkKey(key), options);
  }

  /** The object's header: kind, size, version, checksum, block count, MD5, content type, metadata. */
  head(key: Key): Promise<ObjectHeader> {
    return head(this.main, this.checkKey(key));
  }

  async stat(key: Key): Promise<ObjectInfo> {
    const reply = await this.main.call(Operation.stat, encodeKeyRequest(this.checkKey(key), null));
    const info = readObjectInfo(reply, 0);
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
    const reply = await this.main.call(Operation.list, encodeListRequest(prefix_bytes, after_bytes, limit));
    const list = decodeListReply(reply);
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

  private u64(body: Uint8Array): number {
    const n = decodeU64(body);
    if (n === null) throw new ClientError("protocol", "malformed reply");
    return n;
  }

  /** A reply goes to the channel of its client id; one for no channel of ours goes to the main
   * one, whose session reports it as misdirected. */
  private onMessage(message: Message, connection: ConnectionInfo): void {
    const channel = this.channels.get(message.header.client) ?? this.main;
    channel.deliver({ message, from: connection.peer });
  }
}

/** Asks every replica about itself (toastyfs status); a replica that does not answer within
 * timeout_ms is reported as null (probeCluster also says what its connection did). */
export async function clusterStatus(
  addresses: Address[],
  timeout_ms = 1000,
  secret: AuthKeys | null = null,
  tls: TlsFiles | null = null,
): Promise<(ReplicaStatus | null)[]> {
  return (await probeCluster(addresses, timeout_ms, secret, tls)).map((p) => p.status);
}
