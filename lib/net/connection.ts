/**
 * One TCP connection as the transport sees it: the socket, a FrameReader for what arrives and a
 * FrameWriter for what leaves. Outgoing connections (this node dialed a replica) share their
 * peer's long-lived writer, so messages sent while the connection is being established wait in it;
 * incoming connections (accepted from a client or a peer) own theirs.
 */
import type { Socket } from "bun";
import type { Admittee, ConnectionRole } from "./admission.ts";
import type { FrameReader } from "./frame_reader.ts";
import type { FrameWriter } from "./frame_writer.ts";
import type { Acceptor, Dialer } from "./auth/handshake.ts";

export type Direction = "incoming" | "outgoing";

/** What a message handler learns about the connection a message arrived on. */
export interface ConnectionInfo {
  /** Unique within one transport, increasing. */
  readonly id: number;
  /** incoming: accepted by this node's listener; outgoing: dialed by this node. */
  readonly direction: Direction;
  /** "host:port" (or "[v6]:port") of the other end. */
  readonly remote: string;
  /** For an outgoing connection, the replica index it was dialed to; null for incoming ones. */
  readonly peer: number | null;
}

/** Bun hands this back as socket.data in every callback. Undefined for an accepted socket until
 * its open callback runs. */
export type SocketData = Connection | undefined;
export type TransportSocket = Socket<SocketData>;

export class Connection implements Admittee {
  /** Set when the socket opens; null while an outgoing connect is in progress. */
  socket: TransportSocket | null = null;
  opened_at_ms = 0;
  /** Incoming only (lib/net/admission.ts): when its last whole frame arrived, what its first frame
   * made it, and a peer's replica index. */
  last_frame_ms = 0;
  role: ConnectionRole = "unidentified";
  claimed_replica = -1;
  /** Closed, failed or abandoned: ignore any further callback for it. */
  closed = false;
  /** Why this node is closing it, for the close log line (null: the peer closed it). */
  closing_reason: string | null = null;
  /** While the authentication handshake runs (docs/PROTOCOL.md §6.2): it sees every byte until it
   * is over. Null without a secret, and once the connection is authenticated. */
  handshake: Dialer | Acceptor | null = null;
  /** Incoming, with a secret: what the handshake proved the peer to be, sender_client or a
   * replica index (§6.5: the only sender its frames may name); null before, or without a secret. */
  authenticated_as: number | null = null;
  /** With TLS: the socket is open but the peer's certificate is not yet verified; nothing is read
   * or written until it is (docs/PROTOCOL.md §6.8). */
  tls_pending = false;
  /** Without TLS: whether the stream's first bytes were looked at for TLS records (a replica that
   * requires TLS, or a dialer that expects it). */
  tls_checked = false;
  /** Without a secret: whether the stream's first bytes were looked at for a stray handshake or
   * a refusal (§6.4). */
  first_bytes_seen = false;
  /** Incoming only: clients whose replies are routed here (learned from their requests), oldest
   * first, so the transport can evict when a connection claims too many. */
  readonly clients = new Set<bigint>();

  constructor(
    readonly info: ConnectionInfo,
    /** The other end's host, without the port: the key for rate-limited logging. */
    readonly remote_host: string,
    readonly reader: FrameReader,
    readonly writer: FrameWriter,
  ) {}

  get established(): boolean {
    return this.socket !== null && !this.closed;
  }
}
