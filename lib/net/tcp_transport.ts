/**
 * The Bun TCP transport under a real replica (lib/node) and the TypeScript client (docs/DESIGN.md §2, §4,
 * §7, §9). It moves validated messages; it knows nothing of VSR beyond two header fields:
 *
 * - Replica to replica: replica i sends to j over the connection i dialed to j, and receives on the
 *   connections others dialed to it. So each direction of each pair has its own connection and its
 *   own backpressure, and neither side has to agree on who dials whom.
 * - Replica to client: a client dials a replica and sends requests; the replica learns from each
 *   `request` header (`client`) which connection to answer on. sendToClient uses the connection
 *   that client last sent a request on.
 * - A client (self === null) uses the same class without listening: sendToReplica(i, m) dials
 *   replica i, and replies come back on that connection.
 *
 * Robustness (docs/DESIGN.md §7): every incoming byte goes through a FrameReader. Any invalid frame is
 * counted, logged at most once per remote host per minute, and closes that connection only; the
 * transport keeps serving everything else. Connects are lazy, time out on our own timer (Bun has
 * no connect timeout) and back off exponentially with jitter. A dialed connection that carried a
 * message and then heard nothing at all from its replica for peer_silence_timeout_ms is closed and
 * redialed: that is how a half-open connection (peer powered off, partition) is noticed, because
 * Bun's socket.timeout() is too coarse to use (about 4 s granularity, and it only notifies). TCP keepalive backs this up for
 * accepted connections. Accepted connections are admitted by lib/net/admission.ts: idle ones that
 * never send a frame cannot lock clients or replicas out, clients are limited per address and in
 * all, and replicas' connections are kept apart from clients'. Sends never block and never buffer
 * without bound: above the write bound, messages are dropped and counted (VSR retries).
 *
 * With a secret (options.secret, docs/PROTOCOL.md §6), every connection starts with the handshake of
 * lib/net/auth/handshake.ts before any frame, every frame carries a tag, and an accepted connection
 * may only carry frames of the role it authenticated as (a client's requests, or replica i's
 * messages). A failure closes the connection, is counted (auth_failures_<reason>) and logged once a
 * minute per host; a dialer that learns why (a refusal) tells its owner (onAuthenticationFailed).
 *
 * With TLS files (options.tls, docs/PROTOCOL.md §6.8, lib/net/tls.ts), every connection is mutual
 * TLS, and nothing is read or written on it until Bun's handshake callback says the peer's
 * certificate verified; then the secret's handshake (if any) runs inside TLS.
 *
 * A frame whose only fault is another cluster id (a client or replica given another address list)
 * gets one wrong_cluster reply before its connection closes (lib/net/cluster_mismatch.ts); a
 * replica that receives such a reply says in its log why its peer refused it.
 *
 * Exceptions thrown by handlers.onMessage are not network errors: the connection they came in on is
 * closed and the exception is rethrown from a microtask rather than swallowed here. That alone
 * does not stop a Bun process whose main module is still awaiting (it prints the error and runs
 * on), so a replica node catches its replica's exceptions itself and exits (lib/node/replica_node.ts).
 */
import { assert } from "../util/assert.ts";
import { sender_client } from "../constants.ts";
import { formatAddress, type Address } from "./address.ts";
import { Command, isClientCommand, type Header, type Message } from "./codec.ts";
import { Backoff, reconnect_backoff_max_ms, reconnect_backoff_min_ms } from "./backoff.ts";
import { Admission, type AdmissionLimits, type LimitScope } from "./admission.ts";
import { Connection, type ConnectionInfo, type Direction, type SocketData, type TransportSocket } from "./connection.ts";
import { FrameError, FrameReader, hex64 } from "./frame_reader.ts";
import { answersClusterMismatch, clusterMismatchOf, clusterMismatchReply } from "./cluster_mismatch.ts";
import { FrameWriter, write_buffer_size_max } from "./frame_writer.ts";
import { LogLimiter } from "./log_limiter.ts";
import type { SocketHandler, TCPSocketConnectOptions } from "bun";
import { randomBytes } from "node:crypto";
import { readU32 } from "../util/bytes.ts";
import type { AuthKeys } from "./auth/secret.ts";
import { tlsHandshakeFailure, tlsMismatch, tlsSocketOptions, type TlsFiles } from "./tls.ts";
import { FrameOpener, FrameSealer } from "./auth/frame_tag.ts";
import {
  Acceptor,
  AuthRole,
  Dialer,
  RefusalCode,
  handshake_magic,
  handshake_version_gmac,
  nonce_size,
  refusal,
  refusalMessage,
  refusal_magic,
  refusal_size,
  type AuthFailure,
} from "./auth/handshake.ts";

/**
 * Messages that answer another and call for nothing back. Sending one does not start the
 * half-open clock: two backups exchange nothing in normal operation, so the pong a backup sends
 * another while the cluster forms, or the headers it serves in a repair, would otherwise be
 * "waiting for an answer" forever and close a healthy connection 3 s later.
 */
const answers_expect_nothing: ReadonlySet<number> = new Set([
  Command.pong,
  Command.headers,
  Command.sync_chunk,
  Command.value,
  Command.block,
  Command.reply,
  Command.status,
  Command.snapshot_chunk,
]);

/** Whether sending this message starts the half-open clock. A prepare another replica made
 * (repair forwarding a copy to a replica that is catching up) calls for nothing back either: the
 * restarted replica it goes to may have nothing to say to this backup for good, and its
 * connection was closed 3 s later as half-open (a primary's own prepares, and its heartbeats,
 * still start the clock). */
function expectsAnswer(message: Message, self: number | null): boolean {
  const h = message.header;
  if (answers_expect_nothing.has(h.command)) return false;
  return !(h.command === Command.prepare && h.replica !== self);
}

export type { ConnectionInfo } from "./connection.ts";
export type { Address } from "./address.ts";

/** A connect attempt that has not completed by then is abandoned and counts as a failure. */
export const connect_timeout_ms = 2000;
/** Failed connects are logged at info until the replica has left a message unanswered this long
 * (or, if it is heard from on its own connection, until this many attempts failed in a row); then
 * a warning. The replicas of a starting cluster refuse each other for a few milliseconds. */
export const connect_failures_warn_ms = 2000;
export const connect_failures_warn = 5;
/** A dialed connection whose replica has sent nothing for this long, while a message to it went
 * unanswered, is presumed half-open: it is closed and redialed. VSR answers every heartbeat within
 * ~100 ms, so 3 s of silence is far outside normal operation. */
export const peer_silence_timeout_ms = 3000;
/** How often the transport checks for silent peers and retries stalled writers. */
export const transport_tick_ms = 100;
/** A connection that stayed open this long proves the peer healthy: the next reconnect starts
 * again from reconnect_backoff_min_ms. One that dies sooner keeps backing off (a peer that
 * accepts and immediately closes must not be redialed 20 times a second). */
export const connection_stable_ms = 1000;
/** How often client connections are checked for the idle timeout (lib/net/admission.ts). */
export const idle_check_interval_ms = 1000;
/** Client ids one connection may claim for reply routing; beyond it the oldest is forgotten. */
export const clients_per_connection_max = 1024;
/** TCP keepalive idle time (Bun then probes every 1 s, 10 times): reaps dead accepted connections. */
export const keepalive_idle_ms = 10_000;
/** close() waits this long for sockets to finish a graceful close before terminating them. */
export const close_grace_ms = 500;

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface TransportOptions {
  cluster: bigint;
  /** This replica's index in peers, or null for a client. */
  self: number | null;
  /** Replicas listen (port 0 picks a free port, see `port`); clients don't. */
  listen?: Address;
  /** Replica addresses by index (for a client: the cluster). */
  peers: readonly Address[];
  /** Frames above this are rejected from their header. Default message_size_max. */
  frame_size_max?: number;
  /** Per-connection bound on queued outgoing bytes. Default write_buffer_size_max. */
  write_buffer_size_max?: number;
  /** Coalesce each connection's writes over the whole event-loop turn rather than per callback
   * (FrameWriter per_turn); the owner may send them earlier with flushWrites(). */
  flush_per_turn?: boolean;
  /** Opens a TCP connection; Bun.connect unless a test injects a slow or failing one. */
  dial?: (options: TCPSocketConnectOptions<SocketData>) => Promise<TransportSocket>;
  /** Overrides for the timing constants above (tests use short ones). */
  connect_timeout_ms?: number;
  peer_silence_timeout_ms?: number;
  reconnect_backoff_min_ms?: number;
  reconnect_backoff_max_ms?: number;
  /** Overrides for the connection limits of lib/net/admission.ts (tests use small ones). */
  admission?: Partial<AdmissionLimits>;
  /** The cluster's keys (docs/PROTOCOL.md §6): every connection is authenticated. A replica needs
   * the full secret; a client may hold the client key only. Null or absent: no authentication. */
  secret?: AuthKeys | null;
  /** Mutual TLS on every connection (docs/PROTOCOL.md §6.8), with these files (lib/net/tls.ts
   * readTlsFiles). Null or absent: plain TCP. */
  tls?: TlsFiles | null;
  log(level: LogLevel, text: string): void;
}

export interface TransportHandlers {
  /** One decoded, checksum-verified message. Called synchronously from the socket's data event. */
  onMessage(message: Message, connection: ConnectionInfo): void;
  onConnectionOpen?(connection: ConnectionInfo): void;
  /** A connection closed, or (outgoing) a connect attempt failed; anything queued on it was
   * dropped. A client uses this to retry on another replica at once (docs/DESIGN.md §9). */
  onConnectionClose?(connection: ConnectionInfo, reason: string): void;
  /** A connection this node dialed failed authentication (wrong or missing secret on either side,
   * §6.4); `detail` says which, for the user. onConnectionClose follows. */
  onAuthenticationFailed?(connection: ConnectionInfo, detail: string): void;
}

/** Why a connection failed authentication, as counted: the handshake's reasons, plus a bad frame
 * tag, a frame outside the authenticated role, and a handshake sent to a replica without a secret. */
export type AuthFailureReason = AuthFailure | "tag" | "role" | "no_secret" | "tls";
const auth_failure_reasons: readonly AuthFailureReason[] = [
  "plain_frame",
  "refused",
  "malformed",
  "version",
  "wrong_cluster",
  "bad_sender",
  "bad_mac",
  "tag",
  "role",
  "no_secret",
  "tls",
];
type AuthFailureCounters = { [reason in AuthFailureReason as `auth_failures_${reason}`]: number };

export interface TransportStats {
  /** Valid messages received. */
  frames_in: number;
  bytes_in: number;
  /** Messages accepted into a write buffer (see bytes_dropped_disconnected for those lost later). */
  frames_out: number;
  /** Invalid frames; each closed its connection. */
  frames_dropped_invalid: number;
  /** Of those, frames of another cluster answered with wrong_cluster (one per connection). */
  cluster_mismatch_replies: number;
  /** Connections the peer closed in the middle of a frame (the partial frame is dropped). */
  frames_truncated: number;
  /** Messages dropped because their connection's write buffer was at its bound. */
  messages_dropped_backpressure: number;
  /** sendToClient calls with no connection known for that client. */
  messages_dropped_no_route: number;
  /** Queued bytes discarded because their connection closed or failed to connect. */
  bytes_dropped_disconnected: number;
  connections_accepted: number;
  /** Client connections closed at their first frame because the client limits (in all or per
   * address, lib/net/admission.ts) were reached. */
  connections_rejected: number;
  /** Accepted connections that had sent no complete frame, closed to make room for a new one. */
  connections_evicted_unidentified: number;
  /** Accepted connections closed for not completing a frame within first_frame_timeout_ms. */
  connections_closed_first_frame_timeout: number;
  /** Client connections closed after client_idle_timeout_ms without a frame. */
  connections_closed_idle: number;
  /** A replica's older connections closed when a newer one exceeded its per-replica limit. */
  connections_peer_replaced: number;
  /** Connect attempts, and how they ended. */
  connects: number;
  connects_succeeded: number;
  connect_failures: number;
  connect_timeouts: number;
  /** Dialed connections closed because their replica went silent (presumed half-open). */
  connections_closed_silent: number;
}

/** The transport's counters: TransportStats and the authentication failures by reason. */
export type TransportCounters = TransportStats & AuthFailureCounters;

export class TransportError extends Error {
  override name = "TransportError";
  constructor(
    readonly code: "listen",
    message: string,
  ) {
    super(message);
  }
}

type Timer = ReturnType<typeof setTimeout>;

/** Per replica: the dialed connection (at most one, open or connecting) and its retry state. */
class Peer {
  connection: Connection | null = null;
  connect_timer: Timer | null = null;
  retry_timer: Timer | null = null;
  /** Earliest time the next connect attempt may start (backoff after a failure or close). */
  next_attempt_ms = 0;
  /** When a message to this replica that calls for an answer (see answers_expect_nothing) was
   * first queued with no word from it since; null once any message from it arrives. Drives the
   * half-open check. */
  unanswered_since_ms: number | null = null;
  last_received_ms: number | null = null;
  /** Consecutive failed connect attempts, for logging. */
  failures = 0;
  /** Set when this replica answered wrong_cluster: it belongs to another cluster (its cluster id,
   * or null if it did not say). Quiets the reconnect log lines until it is heard from properly. */
  foreign_cluster: bigint | null | undefined = undefined;

  constructor(
    readonly index: number,
    readonly address: Address,
    readonly writer: FrameWriter,
    readonly backoff: Backoff,
  ) {}

  get remote(): string {
    return formatAddress(this.address);
  }
}

export class TcpTransport {
  readonly stats: Readonly<TransportCounters>;
  private readonly counters: TransportCounters = {
    frames_in: 0,
    bytes_in: 0,
    frames_out: 0,
    frames_dropped_invalid: 0,
    cluster_mismatch_replies: 0,
    frames_truncated: 0,
    messages_dropped_backpressure: 0,
    messages_dropped_no_route: 0,
    bytes_dropped_disconnected: 0,
    connections_accepted: 0,
    connections_rejected: 0,
    connections_evicted_unidentified: 0,
    connections_closed_first_frame_timeout: 0,
    connections_closed_idle: 0,
    connections_peer_replaced: 0,
    connects: 0,
    connects_succeeded: 0,
    connect_failures: 0,
    connect_timeouts: 0,
    connections_closed_silent: 0,
    ...(Object.fromEntries(auth_failure_reasons.map((reason) => [`auth_failures_${reason}`, 0])) as AuthFailureCounters),
  };

  private readonly peers: Peer[];
  private readonly incoming = new Set<Connection>();
  private readonly admission: Admission<Connection>;
  /** When idle client connections were last looked for (every idle_check_interval_ms). */
  private idle_checked_ms = 0;
  /** Client id -> the connection its last request came in on. */
  private readonly routes = new Map<bigint, Connection>();
  /** Writers that were sent something since the last flushWrites (flush_per_turn only). */
  private readonly unflushed = new Set<FrameWriter>();
  private readonly log_limiter = new LogLimiter();
  private readonly connect_timeout_ms: number;
  private readonly peer_silence_timeout_ms: number;
  private readonly write_buffer_size_max: number;
  private readonly secret: AuthKeys | null;
  private readonly tls: TlsFiles | null;
  private readonly dial: (options: TCPSocketConnectOptions<SocketData>) => Promise<TransportSocket>;
  private listener: { stop(close_active?: boolean): void; readonly port: number } | null = null;
  private tick_timer: ReturnType<typeof setInterval> | null = null;
  private started = false;
  private closed = false;
  private connection_id_next = 1;
  private closing: Promise<void> | null = null;
  /** Resolves close() once every socket reported closed. */
  private on_all_closed: (() => void) | null = null;

  private readonly incoming_handlers: SocketHandler<SocketData>;
  private readonly outgoing_handlers: SocketHandler<SocketData>;

  constructor(
    private readonly options: TransportOptions,
    private readonly handlers: TransportHandlers,
  ) {
    const peer_count = options.peers.length;
    assert(peer_count > 0, "TcpTransport: peers must list at least one replica");
    assert(
      options.self === null || (Number.isInteger(options.self) && options.self >= 0 && options.self < peer_count),
      () => `TcpTransport: self ${options.self} is not an index into ${peer_count} peers`,
    );
    assert(options.self === null || options.listen !== undefined, "TcpTransport: a replica must listen");
    this.connect_timeout_ms = options.connect_timeout_ms ?? connect_timeout_ms;
    this.peer_silence_timeout_ms = options.peer_silence_timeout_ms ?? peer_silence_timeout_ms;
    this.write_buffer_size_max = options.write_buffer_size_max ?? write_buffer_size_max;
    this.secret = options.secret ?? null;
    this.tls = options.tls ?? null;
    assert(
      this.secret === null || options.self === null || this.secret.replica !== null,
      "TcpTransport: a replica needs the full secret, not a client key",
    );
    this.dial = options.dial ?? ((dial_options) => Bun.connect<SocketData>(dial_options));
    this.admission = new Admission(options.admission);
    assert(this.connect_timeout_ms > 0 && this.peer_silence_timeout_ms > 0, "TcpTransport: timeouts must be positive");
    const backoff_min = options.reconnect_backoff_min_ms ?? reconnect_backoff_min_ms;
    const backoff_max = options.reconnect_backoff_max_ms ?? reconnect_backoff_max_ms;
    this.peers = options.peers.map((address, index) => {
      assert(
        Number.isInteger(address.port) && address.port >= 0 && address.port < 65536,
        () => `TcpTransport: bad port for replica ${index}: ${address.port}`,
      );
      return new Peer(index, address, this.newWriter(), new Backoff(backoff_min, backoff_max));
    });
    this.stats = this.counters;

    // Bun calls these with socket.data set to our Connection (undefined for an accepted socket
    // before open). Chunks are Uint8Array because of binaryType.
    const common = {
      binaryType: "uint8array" as const,
      data: (socket: TransportSocket, chunk: Uint8Array) => {
        if (socket.data !== undefined) this.onData(socket.data, chunk);
      },
      drain: (socket: TransportSocket) => {
        if (socket.data !== undefined && !socket.data.closed) socket.data.writer.flush();
      },
      close: (socket: TransportSocket, error?: Error) => {
        const connection = socket.data;
        if (connection === undefined) return;
        this.onClosed(connection, connection.closing_reason ?? (error === undefined ? "closed by the peer" : describeError(error)));
      },
      error: (socket: TransportSocket, error: Error) => this.onHandlerError(socket, error),
      handshake: (socket: TransportSocket, success: boolean, error: Error | null) => this.onTlsHandshake(socket, success, error),
    };
    this.incoming_handlers = { ...common, open: (socket: TransportSocket) => this.onAccepted(socket) };
    this.outgoing_handlers = { ...common, open: (socket: TransportSocket) => this.onConnected(socket) };
  }

  /** Listens (a replica) and starts the periodic checks. Rejects with a TransportError that says
   * what to do when the address cannot be bound (port in use, no such local address, ...). */
  async start(): Promise<void> {
    assert(!this.started, "TcpTransport.start called twice");
    this.started = true;
    const listen = this.options.listen;
    if (listen !== undefined) {
      try {
        const tls = this.tls === null ? {} : { tls: tlsSocketOptions(this.tls, "listen") };
        this.listener = Bun.listen<SocketData>({ hostname: listen.host, port: listen.port, socket: this.incoming_handlers, ...tls });
      } catch (error) {
        this.closed = true;
        throw new TransportError("listen", `cannot listen on ${formatAddress(listen)}: ${listenAdvice(error)}`);
      }
      // debug: a replica node logs its own "listening on" line, with the cluster and data directory.
      this.options.log("debug", `listening on ${formatAddress({ host: listen.host, port: this.listener.port })}`);
    }
    this.tick_timer = setInterval(() => this.tick(), transport_tick_ms);
    this.tick_timer.unref(); // the listener and open sockets keep the process alive, not this
  }

  /** The bound port (useful after listening on port 0); null for a client. */
  get port(): number | null {
    return this.listener?.port ?? null;
  }

  /**
   * Queues a message to replica `index` over this node's own connection to it, dialing it if
   * needed (after the backoff delay, if the last attempt failed). False if the message was dropped
   * (write bound reached, or the transport is closed). True means queued, not delivered: it is
   * dropped if the connection fails first.
   */
  sendToReplica(index: number, message: Message): boolean {
    assert(this.started, "TcpTransport.sendToReplica before start()");
    assert(
      Number.isInteger(index) && index >= 0 && index < this.peers.length,
      () => `sendToReplica: no replica ${index} (${this.peers.length} peers)`,
    );
    assert(index !== this.options.self, "sendToReplica: a replica never sends to itself");
    if (this.closed) return false;
    const peer = this.peers[index]!;
    if (!this.queue(peer.writer, message, peer.remote)) return false;
    const now = nowMs();
    if (peer.unanswered_since_ms === null && expectsAnswer(message, this.options.self)) peer.unanswered_since_ms = now;
    if (peer.connection === null && peer.retry_timer === null) {
      const wait_ms = peer.next_attempt_ms - now;
      if (wait_ms <= 0) this.connect(peer);
      else peer.retry_timer = setTimeout(() => this.retry(peer), wait_ms);
    }
    return true;
  }

  /** Queues a reply on the connection `client` last sent a request on. False if there is none
   * (the client will retry, possibly elsewhere) or its write buffer is full. */
  sendToClient(client: bigint, message: Message): boolean {
    assert(this.started, "TcpTransport.sendToClient before start()");
    assert(this.options.self !== null, "sendToClient: only a replica answers clients");
    if (this.closed) return false;
    const connection = this.routes.get(client);
    if (connection === undefined || connection.closed) {
      this.counters.messages_dropped_no_route += 1;
      return false;
    }
    return this.queue(connection.writer, message, connection.info.remote);
  }

  /** Stops accepting, flushes what it can, closes every connection gracefully, and terminates any
   * that have not closed within close_grace_ms. Messages queued after this are dropped. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.closed = true;
    if (this.tick_timer !== null) clearInterval(this.tick_timer);
    this.tick_timer = null;
    this.listener?.stop(false);
    this.listener = null;
    const open: Connection[] = [...this.incoming];
    for (const peer of this.peers) {
      if (peer.connect_timer !== null) clearTimeout(peer.connect_timer);
      if (peer.retry_timer !== null) clearTimeout(peer.retry_timer);
      peer.connect_timer = null;
      peer.retry_timer = null;
      const connection = peer.connection;
      if (connection === null) continue;
      if (connection.socket === null) {
        connection.closed = true; // a connect in progress: onConnected will terminate it
        peer.connection = null;
      } else {
        open.push(connection);
      }
    }
    if (open.length === 0) return;
    const all_closed = new Promise<void>((resolve) => (this.on_all_closed = resolve));
    for (const connection of open) {
      connection.closing_reason = "this node closed its transport";
      connection.writer.flush();
      connection.socket?.end();
    }
    let grace: Timer | null = null;
    const timed_out = new Promise<void>((resolve) => (grace = setTimeout(resolve, close_grace_ms)));
    await Promise.race([all_closed, timed_out]);
    if (grace !== null) clearTimeout(grace);
    for (const connection of open) {
      if (!connection.closed) connection.socket?.terminate(); // close callback runs synchronously
    }
    this.on_all_closed = null;
  }

  /** Accepted connections currently open. */
  get incoming_connections(): number {
    return this.incoming.size;
  }

  /** Whether this node's own connection to replica `index` is established. */
  isConnected(index: number): boolean {
    return this.peers[index]?.connection?.established ?? false;
  }

  /** Outgoing bytes queued across all connections (bounded by write_buffer_size_max each). */
  bufferedBytes(): number {
    let total = 0;
    for (const peer of this.peers) total += peer.writer.buffered_bytes;
    for (const connection of this.incoming) total += connection.writer.buffered_bytes;
    return total;
  }

  /** Milliseconds since anything arrived from replica `index`, or null if nothing ever did. */
  silenceMs(index: number): number | null {
    const last = this.peers[index]?.last_received_ms ?? null;
    return last === null ? null : nowMs() - last;
  }

  // --- connections -------------------------------------------------------------------------

  private newReader(): FrameReader {
    return new FrameReader({
      cluster: this.options.cluster,
      frame_size_max: this.options.frame_size_max,
      replica_count: this.peers.length,
    });
  }

  private newWriter(): FrameWriter {
    return new FrameWriter({
      buffered_bytes_max: this.write_buffer_size_max,
      per_turn: this.options.flush_per_turn === true,
      tagged: this.secret !== null,
    });
  }

  /** Writes now what every connection has queued (each writer would otherwise do it at the end of
   * the turn). A replica node calls it before a flush blocks the event loop in fdatasync, so what
   * the turn produced (prepares above all) is on its way first, and after it. */
  flushWrites(): void {
    for (const writer of this.unflushed) {
      if (writer.attached && !writer.is_blocked) writer.flush();
    }
    this.unflushed.clear();
  }

  private newInfo(direction: Direction, remote: string, peer: number | null): ConnectionInfo {
    return { id: this.connection_id_next++, direction, remote, peer };
  }

  private connect(peer: Peer): void {
    assert(
      !this.closed && peer.connection === null && peer.retry_timer === null && peer.connect_timer === null,
      "connect: peer already connecting",
    );
    const connection = new Connection(this.newInfo("outgoing", peer.remote, peer.index), peer.address.host, this.newReader(), peer.writer);
    peer.connection = connection;
    this.counters.connects += 1;
    peer.connect_timer = setTimeout(() => {
      peer.connect_timer = null;
      if (peer.connection !== connection || connection.socket !== null) return;
      this.counters.connect_timeouts += 1;
      this.connectFailed(peer, connection, `no answer within ${this.connect_timeout_ms} ms`);
    }, this.connect_timeout_ms);
    const failed = (error: unknown): void => {
      if (peer.connection === connection && connection.socket === null) this.connectFailed(peer, connection, describeError(error));
    };
    try {
      const tls = this.tls === null ? {} : { tls: tlsSocketOptions(this.tls, "dial") };
      this.dial({ hostname: peer.address.host, port: peer.address.port, data: connection, socket: this.outgoing_handlers, ...tls }).then(
        undefined,
        failed,
      );
    } catch (error) {
      failed(error);
    }
  }

  private retry(peer: Peer): void {
    peer.retry_timer = null;
    if (this.closed || peer.connection !== null) return;
    this.connect(peer);
  }

  private connectFailed(peer: Peer, connection: Connection, reason: string): void {
    assert(peer.connection === connection && connection.socket === null, "connectFailed: not the pending attempt");
    connection.closed = true; // if the socket opens after all, onConnected terminates it
    peer.connection = null;
    if (peer.connect_timer !== null) clearTimeout(peer.connect_timer);
    peer.connect_timer = null;
    this.counters.connect_failures += 1;
    this.counters.bytes_dropped_disconnected += peer.writer.detach();
    peer.failures += 1;
    const delay_ms = peer.backoff.next();
    peer.next_attempt_ms = nowMs() + delay_ms;
    // Replicas start milliseconds apart, so a first refusal is normal: info. A warning only once
    // failures persist, then at most once a minute per address.
    const now = nowMs();
    if (peer.failures === 1) {
      this.options.log(
        "info",
        `cannot connect to replica ${peer.index} at ${peer.remote} yet: ${reason} (normal while the cluster starts; retrying with backoff up to ${peer.backoff.max_ms} ms while there is something to send)`,
      );
    }
    const waited_ms = peer.unanswered_since_ms === null ? null : now - peer.unanswered_since_ms;
    const persistent = waited_ms === null ? peer.failures >= connect_failures_warn : waited_ms >= connect_failures_warn_ms;
    if (persistent && this.log_limiter.admit(`connect ${peer.remote}`, now) !== null) {
      const over = waited_ms === null ? "" : ` over ${(waited_ms / 1000).toFixed(1)} s`;
      this.options.log(
        "warn",
        `replica ${peer.index} at ${peer.remote} is still unreachable after ${peer.failures} attempts${over}: ${reason}: check that it is running, that ${peer.remote} is its --addr (or is forwarded to its --listen), and that no firewall is in the way (retrying with backoff up to ${peer.backoff.max_ms} ms)`,
      );
    }
    this.handlers.onConnectionClose?.(connection.info, `connect failed: ${reason}`);
  }

  private onConnected(socket: TransportSocket): void {
    const connection = socket.data;
    assert(connection !== undefined && connection.info.peer !== null, "onConnected: outgoing socket without its connection");
    const peer = this.peers[connection.info.peer]!;
    if (connection.closed || this.closed || peer.connection !== connection) {
      socket.terminate(); // the attempt was abandoned (timeout, close) before it opened
      return;
    }
    if (peer.connect_timer !== null) clearTimeout(peer.connect_timer);
    peer.connect_timer = null;
    this.counters.connects_succeeded += 1;
    this.opened(connection, socket);
    this.options.log(
      peer.foreign_cluster === undefined ? "info" : "debug",
      `connected to replica ${peer.index} at ${peer.remote}${peer.failures > 0 ? ` after ${peer.failures} failed attempts` : ""}`,
    );
    peer.failures = 0;
  }

  private onAccepted(socket: TransportSocket): void {
    if (this.closed) {
      socket.terminate();
      return;
    }
    const remote = formatAddress({ host: socket.remoteAddress, port: socket.remotePort });
    const connection = new Connection(this.newInfo("incoming", remote, null), socket.remoteAddress, this.newReader(), this.newWriter());
    socket.data = connection;
    connection.opened_at_ms = connection.last_frame_ms = nowMs();
    this.incoming.add(connection);
    this.counters.connections_accepted += 1;
    const room = this.admission.accept(connection);
    if (room !== null) {
      this.counters.connections_evicted_unidentified += 1;
      const limit =
        room.scope === "address"
          ? `${room.waiting} connections from ${room.evicted.remote_host} have not sent their first frame (limit ${this.admission.limits.unidentified_per_address_max} per address)`
          : `${room.waiting} connections in all have not sent their first frame (limit ${this.admission.limits.unidentified_connections_max})`;
      this.idleWarning(
        room.evicted,
        `closing connection ${room.evicted.info.remote}, which sent no complete frame in ${Math.round(nowMs() - room.evicted.opened_at_ms)} ms, to make room: ${limit}`,
      );
      this.terminate(room.evicted, "no frame yet; closed to make room for a new connection");
    }
    this.opened(connection, socket);
    this.options.log("debug", `accepted connection from ${connection.info.remote}`);
  }

  /** One line per address per minute for connections that stay idle, whatever closed them. */
  private idleWarning(connection: Connection, what: string): void {
    const host = connection.remote_host;
    const suppressed = this.log_limiter.admit(`idle ${host}`, nowMs());
    if (suppressed === null) return;
    const more = suppressed > 0 ? ` (${suppressed} more such connections from ${host} closed since the last line)` : "";
    this.options.log(
      "warn",
      `${what}. Something at ${host} is opening connections and leaving them idle (a client or replica sends a frame as soon as it connects); clients and replicas can still connect${more}`,
    );
  }

  /** The first whole frame on an accepted connection says whose it is (lib/net/admission.ts).
   * False: the connection was closed and the message must not be delivered. */
  private identify(connection: Connection, sender: number): boolean {
    const outcome = this.admission.identify(connection, sender, this.peers.length);
    if (!outcome.admitted) {
      this.counters.connections_rejected += 1;
      this.refusedClient(connection, outcome.scope);
      this.terminate(connection, "client connection limit reached");
      return false;
    }
    if (outcome.replaced !== null) {
      this.counters.connections_peer_replaced += 1;
      const replaced = outcome.replaced;
      if (this.log_limiter.admit(`replaced ${sender}`, nowMs()) !== null) {
        this.options.log(
          "info",
          `closing connection ${replaced.info.remote} from replica ${sender}: its newer connection ${connection.info.remote} makes ${this.admission.limits.peer_connections_per_replica_max + 1} (a replica that reconnected while old connections lingered, or something else claiming to be replica ${sender})`,
        );
      }
      this.terminate(replaced, `replaced by a newer connection from replica ${sender}`);
    }
    return true;
  }

  private refusedClient(connection: Connection, scope: LimitScope): void {
    const host = connection.remote_host;
    const suppressed = this.log_limiter.admit(`clients ${host}`, nowMs());
    if (suppressed === null) return;
    const limits = this.admission.limits;
    const open =
      scope === "address"
        ? `${this.admission.fromHost(host).clients} client connections from ${host} are open (limit ${limits.client_connections_per_address_max} per address)`
        : `${this.admission.counts.clients} client connections are open (limit ${limits.client_connections_max})`;
    const more = suppressed > 0 ? ` (${suppressed} more refused since the last line)` : "";
    this.options.log(
      "warn",
      `refusing client connection ${connection.info.remote}: ${open}; idle client connections are closed after ${limits.client_idle_timeout_ms / 1000} s without a request, or run fewer clients per host${more}`,
    );
  }

  private opened(connection: Connection, socket: TransportSocket): void {
    connection.socket = socket;
    connection.opened_at_ms = nowMs();
    socket.setNoDelay(true); // coalescing is ours; Nagle would only add latency
    socket.setKeepAlive(true, keepalive_idle_ms);
    if (this.tls !== null) {
      connection.tls_pending = true; // onTlsHandshake goes on once the peer's certificate verified
      return;
    }
    this.authenticate(connection, socket);
  }

  /** Bun's TLS handshake finished: trust the connection only if the peer's certificate verified
   * against the CA (and, for a dialer, names the address dialed). */
  private onTlsHandshake(socket: TransportSocket, success: boolean, error: Error | null): void {
    const connection = socket.data;
    if (connection === undefined) return void socket.terminate();
    if (connection.closed || this.closed || !connection.tls_pending) return;
    connection.tls_pending = false;
    if (success && socket.authorized) return this.authenticate(connection, socket);
    const why = error?.message ?? socket.getAuthorizationError()?.message ?? "not authorized";
    const failure = tlsHandshakeFailure(connection.info.direction, success, why, this.tls?.ca_file ?? "", connection.remote_host);
    this.authFailed(connection, "tls", failure.detail, failure.refuse ? refusal(RefusalCode.tls_certificate) : null);
  }

  /** After TLS (if any): the secret's handshake, or straight to frames. */
  private authenticate(connection: Connection, socket: TransportSocket): void {
    const secret = this.secret;
    if (secret === null) {
      connection.writer.attach(socket);
      this.handlers.onConnectionOpen?.(connection.info);
      return;
    }
    // The writer waits for the handshake: what is queued meanwhile goes out tagged after it.
    const nonce = new Uint8Array(randomBytes(nonce_size));
    const self = this.options.self;
    if (connection.info.direction === "incoming") {
      assert(self !== null, "opened: a client accepted a connection");
      connection.handshake = new Acceptor({
        keys: secret,
        index: self,
        cluster: this.options.cluster,
        replica_count: this.peers.length,
        nonce,
      });
    } else {
      const dialer = new Dialer({
        keys: secret,
        role: self === null ? AuthRole.client : AuthRole.replica,
        index: self ?? sender_client,
        cluster: this.options.cluster,
        replica_count: this.peers.length,
        expected_acceptor: connection.info.peer,
        nonce,
        version: handshake_version_gmac, // AES-GCM tags: a fraction of HMAC's cost on large frames
      });
      connection.handshake = dialer;
      this.writeHandshake(connection, dialer.start());
    }
  }

  /** Writes a handshake message straight to the socket (before the writer is attached). Fixed and
   * under 100 bytes, on a connection that has sent nothing else: the kernel takes it whole. */
  private writeHandshake(connection: Connection, bytes: Uint8Array): boolean {
    const socket = connection.socket;
    assert(socket !== null, "writeHandshake: no socket");
    const written = socket.write(bytes);
    if (written === bytes.length) return true;
    this.terminate(connection, `handshake write failed (${written} of ${bytes.length} bytes taken)`);
    return false;
  }

  /** Feeds the handshake; once it is over, starts frames (and reads those that followed it). */
  private onHandshakeData(connection: Connection, handshake: Dialer | Acceptor, chunk: Uint8Array): void {
    const step = handshake.receive(chunk);
    if (step.status === "failed") return this.authFailed(connection, step.reason, step.detail, step.output);
    if (step.output !== null && !this.writeHandshake(connection, step.output)) return;
    if (step.status === "pending") return;
    connection.handshake = null;
    if (connection.info.direction === "incoming") {
      connection.authenticated_as = step.peer_role === AuthRole.client ? sender_client : step.peer_index;
    }
    connection.reader.authenticate(new FrameOpener(step.keys.receive, step.keys.version));
    connection.writer.attach(connection.socket!, new FrameSealer(step.keys.send, step.keys.version));
    this.handlers.onConnectionOpen?.(connection.info);
    if (step.rest.length > 0 && !connection.closed) this.readFrames(connection, step.rest);
  }

  /** Closes a connection that failed authentication, after the refusal if there is one; counts it,
   * logs it once a minute per host, and tells the owner of a dialed connection. */
  private authFailed(connection: Connection, reason: AuthFailureReason, detail: string, refusal_bytes: Uint8Array | null): void {
    this.counters[`auth_failures_${reason}`] += 1;
    const host = connection.remote_host;
    const incoming = connection.info.direction === "incoming";
    const suppressed = this.log_limiter.admit(`auth ${host}`, nowMs());
    if (suppressed !== null) {
      const more = suppressed > 0 ? ` (${suppressed} more authentication failures from ${host} since the last line)` : "";
      this.options.log(
        "warn",
        incoming
          ? `closing connection ${connection.info.remote}: authentication failed: the peer ${detail}${more}`
          : `connection to replica ${connection.info.peer} at ${connection.info.remote}: ${detail}${more}`,
      );
    }
    connection.closing_reason = `authentication failed (${reason})`;
    if (!incoming) this.handlers.onAuthenticationFailed?.(connection.info, detail);
    if (refusal_bytes !== null && connection.socket !== null) {
      connection.socket.write(refusal_bytes);
      connection.socket.end(); // after the refusal, not instead of it
    }
    this.terminate(connection, connection.closing_reason);
  }

  /** Without a secret, the first bytes of a stream: a handshake sent to this replica is refused
   * with no_secret, a refusal received from a replica with a secret is reported (§6.4). False:
   * the connection was closed. */
  private checkFirstBytes(connection: Connection, chunk: Uint8Array): boolean {
    connection.first_bytes_seen = true;
    if (chunk.length < 4) return true;
    const magic = readU32(chunk, 0);
    if (connection.info.direction === "incoming" && magic === handshake_magic) {
      this.authFailed(
        connection,
        "no_secret",
        "sent an authentication handshake, but this replica has no secret configured",
        refusal(RefusalCode.no_secret),
      );
      return false;
    }
    if (connection.info.direction === "outgoing" && magic === refusal_magic) {
      const code = chunk.length >= refusal_size ? chunk[5]! : 0;
      this.authFailed(connection, "refused", `authentication failed: ${refusalMessage(code)}`, null);
      return false;
    }
    return true;
  }

  private onClosed(connection: Connection, reason: string): void {
    if (connection.closed) return;
    if (connection.socket === null) {
      // An outgoing socket that never opened: a failed connect, whichever callback reports it.
      const peer = this.peers[connection.info.peer!]!;
      if (peer.connection === connection) this.connectFailed(peer, connection, reason);
      return;
    }
    connection.closed = true;
    if (connection.reader.buffered_bytes > 0 && connection.reader.error === null) {
      this.counters.frames_truncated += 1;
      this.options.log(
        "debug",
        `connection ${connection.info.remote} closed in the middle of a frame (${connection.reader.buffered_bytes} bytes of it dropped)`,
      );
    }
    const discarded = connection.writer.detach();
    this.counters.bytes_dropped_disconnected += discarded;
    if (connection.info.direction === "incoming") {
      this.incoming.delete(connection);
      this.admission.remove(connection);
      this.unflushed.delete(connection.writer);
      for (const client of connection.clients) {
        if (this.routes.get(client) === connection) this.routes.delete(client);
      }
      connection.clients.clear();
      this.options.log("debug", `connection from ${connection.info.remote} closed: ${reason}`);
    } else {
      const peer = this.peers[connection.info.peer!]!;
      if (peer.connection === connection) {
        peer.connection = null;
        if (nowMs() - connection.opened_at_ms >= connection_stable_ms) peer.backoff.reset();
        peer.next_attempt_ms = nowMs() + peer.backoff.next();
      }
      const level = peer.foreign_cluster === undefined ? "info" : "debug"; // said once a minute in onForeignReply
      if (!this.closed)
        this.options.log(
          level,
          `connection to replica ${connection.info.peer} at ${connection.info.remote} closed: ${reason}${discarded > 0 ? ` (${discarded} queued bytes dropped)` : ""}`,
        );
    }
    this.handlers.onConnectionClose?.(connection.info, reason);
    if (this.on_all_closed !== null && this.allClosed()) this.on_all_closed();
  }

  private allClosed(): boolean {
    if (this.incoming.size > 0) return false;
    return this.peers.every((peer) => peer.connection === null || peer.connection.socket === null);
  }

  /** Closes a connection abruptly (RST): used for invalid input and dead peers, whose queued data
   * is worthless. The close callback runs synchronously and does the bookkeeping. */
  private terminate(connection: Connection, reason: string): void {
    if (connection.closed) return;
    connection.closing_reason = reason;
    if (connection.socket !== null) connection.socket.terminate();
    if (!connection.closed) this.onClosed(connection, reason); // in case Bun did not call close
  }

  // --- input -------------------------------------------------------------------------------

  private onData(connection: Connection, chunk: Uint8Array): void {
    if (connection.closed || this.closed) return;
    this.counters.bytes_in += chunk.length;
    if (connection.tls_pending) return this.terminate(connection, "data before the TLS handshake completed");
    if (!connection.tls_checked) {
      connection.tls_checked = true;
      const mismatch = this.tls === null ? tlsMismatch(connection.info.direction, chunk) : null;
      if (mismatch !== null) return this.authFailed(connection, "tls", mismatch, null);
    }
    const handshake = connection.handshake;
    if (handshake !== null) return this.onHandshakeData(connection, handshake, chunk);
    if (this.secret === null && !connection.first_bytes_seen && !this.checkFirstBytes(connection, chunk)) return;
    this.readFrames(connection, chunk);
  }

  private readFrames(connection: Connection, chunk: Uint8Array): void {
    const reader = connection.reader;
    const incoming = connection.info.direction === "incoming";
    try {
      reader.push(chunk);
      for (;;) {
        const message = reader.next();
        if (message === null) return;
        this.counters.frames_in += 1;
        if (incoming) {
          if (connection.authenticated_as !== null && !this.allowedSender(connection.authenticated_as, message.header)) {
            return this.authFailed(
              connection,
              "role",
              `authenticated as ${connection.authenticated_as === sender_client ? "a client" : `replica ${connection.authenticated_as}`} but sent ${Command[message.header.command] ?? message.header.command} as ${message.header.replica === sender_client ? "a client" : `replica ${message.header.replica}`}`,
              null,
            );
          }
          if (connection.role === "unidentified" && !this.identify(connection, message.header.replica)) return;
          connection.last_frame_ms = nowMs();
        } else if (this.options.self !== null) {
          const foreign = clusterMismatchOf(message);
          if (foreign !== undefined) return this.onForeignReply(connection, foreign);
        }
        this.noteReceived(connection, message);
        this.handlers.onMessage(message, connection.info);
        if (connection.closed || this.closed) return; // the handler closed it
      }
    } catch (error) {
      if (!(error instanceof FrameError)) throw error; // a handler's bug: see onHandlerError
      this.rejectFrame(connection, error);
    }
  }

  /** §6.5: a client's connection carries only its requests; replica i's only frames sent as i. */
  private allowedSender(authenticated_as: number, header: Header): boolean {
    if (authenticated_as !== sender_client) return header.replica === authenticated_as;
    return header.replica === sender_client && isClientCommand(header.command);
  }

  private rejectFrame(connection: Connection, error: FrameError): void {
    this.counters.frames_dropped_invalid += 1;
    if (error.code === "tag") this.counters.auth_failures_tag += 1;
    const foreign = error.foreign;
    if (foreign !== null && connection.info.direction === "incoming" && this.options.self !== null && answersClusterMismatch(foreign)) {
      return this.answerForeign(connection, foreign);
    }
    const host = connection.remote_host;
    const suppressed = this.log_limiter.admit(`invalid ${host}`, nowMs());
    if (suppressed !== null) {
      const more = suppressed > 0 ? ` (${suppressed} more invalid frames from ${host} were not logged in the last minute)` : "";
      this.options.log(
        "warn",
        `closing ${connection.info.direction} connection ${connection.info.remote}: invalid frame (${error.code}): ${error.message}${more}`,
      );
    }
    this.terminate(connection, `invalid frame (${error.code})`);
  }

  /** A frame of another cluster: say so once (the sender learns why), log it once a minute per
   * address, and close the connection after the answer has been written. */
  private answerForeign(connection: Connection, foreign: Header): void {
    this.counters.cluster_mismatch_replies += 1;
    const host = connection.remote_host;
    const suppressed = this.log_limiter.admit(`cluster ${host} ${foreign.replica === sender_client ? "client" : "replica"}`, nowMs());
    if (suppressed !== null) {
      const ours = hex64(this.options.cluster);
      const theirs = hex64(foreign.cluster);
      const more = suppressed > 0 ? ` (${suppressed} more such connections from ${host} since the last line)` : "";
      this.options.log(
        "warn",
        foreign.replica === sender_client
          ? `a client at ${connection.info.remote} sent requests for cluster ${theirs}, ours is ${ours}: its address list differs from the replicas' (localhost for 127.0.0.1, a missing or extra address); answered wrong_cluster and closed the connection. Give every client the same addresses as the replicas, in any order${more}`
          : `replica at ${connection.info.remote} (replica ${foreign.replica} of its cluster) sent frames of cluster ${theirs}, ours is ${ours}: its --addr/--peer list differs from ours; answered wrong_cluster and closed the connection. Start every replica with the same set of addresses, in any order${more}`,
      );
    }
    connection.closing_reason = "another cluster: answered wrong_cluster";
    if (connection.socket !== null && connection.writer.send(clusterMismatchReply(foreign, this.options.cluster))) {
      connection.writer.flush();
      connection.socket.end(); // after the answer, not instead of it (terminate would discard it)
    }
    this.terminate(connection, connection.closing_reason); // bookkeeping, if end() did not close it yet
  }

  /** The replica this node dialed answered wrong_cluster: it belongs to another cluster. */
  private onForeignReply(connection: Connection, theirs: bigint | null): void {
    const peer = this.peers[connection.info.peer!]!;
    peer.foreign_cluster = theirs;
    const suppressed = this.log_limiter.admit(`foreign ${peer.remote}`, nowMs());
    if (suppressed !== null) {
      const more = suppressed > 0 ? ` (refused ${suppressed} more times since the last line)` : "";
      const cluster = theirs === null ? "another cluster" : `cluster ${hex64(theirs)}`;
      this.options.log(
        "warn",
        `replica ${peer.index} at ${peer.remote} refused our connection: it belongs to ${cluster}, ours is ${hex64(this.options.cluster)}, because its --addr/--peer list differs from ours. Start every replica with the same set of addresses, in any order (retrying with backoff up to ${peer.backoff.max_ms} ms)${more}`,
      );
    }
    this.terminate(connection, "refused: the replica belongs to another cluster");
  }

  /** Liveness bookkeeping and reply routing: the only header fields the transport reads. */
  private noteReceived(connection: Connection, message: Message): void {
    const header = message.header;
    const now = nowMs();
    if (connection.info.peer !== null) this.heardFrom(connection.info.peer, now);
    if (header.replica < this.peers.length && header.replica !== this.options.self && header.replica !== connection.info.peer) {
      this.heardFrom(header.replica, now);
    }
    // Only a client's own request (sender 255, docs/PROTOCOL.md §1.1) teaches where that client is.
    if (
      isClientCommand(header.command) &&
      header.replica === sender_client &&
      connection.info.direction === "incoming" &&
      this.options.self !== null
    ) {
      this.route(header.client, connection);
    }
  }

  private heardFrom(index: number, now: number): void {
    const peer = this.peers[index]!;
    peer.foreign_cluster = undefined;
    peer.last_received_ms = now;
    peer.unanswered_since_ms = null;
  }

  private route(client: bigint, connection: Connection): void {
    const existing = this.routes.get(client);
    if (existing === connection) return;
    if (existing !== undefined) existing.clients.delete(client);
    if (connection.clients.size >= clients_per_connection_max) {
      const oldest = connection.clients.values().next();
      assert(!oldest.done, "route: full client set is empty");
      connection.clients.delete(oldest.value);
      if (this.routes.get(oldest.value) === connection) this.routes.delete(oldest.value);
    }
    connection.clients.add(client);
    this.routes.set(client, connection);
  }

  private onHandlerError(socket: TransportSocket, error: Error): void {
    const connection = socket.data;
    this.options.log("error", `handler failed on connection ${connection?.info.remote ?? "?"}: ${error.stack ?? error.message}`);
    if (connection !== undefined) this.terminate(connection, `handler failed: ${error.message}`);
    else socket.terminate();
    queueMicrotask(() => {
      throw error;
    });
  }

  // --- output ------------------------------------------------------------------------------

  private queue(writer: FrameWriter, message: Message, remote: string): boolean {
    if (writer.send(message)) {
      this.counters.frames_out += 1;
      if (this.options.flush_per_turn === true) this.unflushed.add(writer);
      return true;
    }
    this.counters.messages_dropped_backpressure += 1;
    const suppressed = this.log_limiter.admit(`backpressure ${remote}`, nowMs());
    if (suppressed !== null) {
      this.options.log(
        "warn",
        `dropping messages to ${remote}: ${writer.buffered_bytes} bytes already queued (bound ${writer.buffered_bytes_max}); the peer is not reading fast enough${suppressed > 0 ? ` (${suppressed} more drops not logged)` : ""}`,
      );
    }
    return false;
  }

  // --- periodic checks ---------------------------------------------------------------------

  private tick(): void {
    if (this.closed) return;
    const now = nowMs();
    for (const peer of this.peers) {
      const connection = peer.connection;
      if (connection !== null && connection.established && peer.unanswered_since_ms !== null) {
        const since = Math.max(peer.unanswered_since_ms, connection.opened_at_ms);
        if (now - since > this.peer_silence_timeout_ms) {
          this.counters.connections_closed_silent += 1;
          this.options.log(
            "warn",
            `replica ${peer.index} at ${peer.remote} sent nothing for ${Math.round(now - since)} ms although messages to it are waiting for an answer: presuming the connection half-open (peer down or partitioned); closing and redialing`,
          );
          this.terminate(connection, "presumed half-open: no answer");
        }
      }
      // A safety net: a writer blocked on a drain event that never came would otherwise stall.
      if (peer.writer.is_blocked) peer.writer.flush();
    }
    for (const connection of this.incoming) {
      if (connection.writer.is_blocked) connection.writer.flush();
    }
    this.closeIdle(now);
  }

  private closeIdle(now: number): void {
    for (const connection of this.admission.firstFrameOverdue(now)) {
      this.counters.connections_closed_first_frame_timeout += 1;
      const partial = connection.reader.buffered_bytes > 0 ? ` (${connection.reader.buffered_bytes} bytes of one arrived)` : "";
      this.idleWarning(
        connection,
        `closing connection ${connection.info.remote}: no complete frame within ${this.admission.limits.first_frame_timeout_ms} ms of connecting${partial}`,
      );
      this.terminate(connection, "no complete frame in time");
    }
    if (now - this.idle_checked_ms < idle_check_interval_ms) return;
    this.idle_checked_ms = now;
    for (const connection of this.admission.idleClients(now)) {
      this.counters.connections_closed_idle += 1;
      this.options.log(
        "debug",
        `closing client connection ${connection.info.remote}: no request for ${Math.round((now - connection.last_frame_ms) / 1000)} s (the client dials again when it needs to)`,
      );
      this.terminate(connection, "idle client connection");
    }
  }
}

function nowMs(): number {
  return performance.now();
}

function errorCode(error: unknown): string | null {
  if (typeof error === "object" && error !== null && "code" in error && typeof error.code === "string") return error.code;
  return null;
}

function describeError(error: unknown): string {
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  return code === null ? message : `${code} (${message})`;
}

function listenAdvice(error: unknown): string {
  switch (errorCode(error)) {
    case "EADDRINUSE":
      return "the address is already in use: another ToastyFS replica or another program is listening on this port (stop it, or choose another --addr or --listen)";
    case "EACCES":
      return "permission denied (ports below 1024 need privileges; choose a higher port)";
    case "EADDRNOTAVAIL":
      return "this machine has no such address (check the host part of --addr, or of --listen if given)";
    default:
      return describeError(error);
  }
}
