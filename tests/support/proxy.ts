/**
 * A TCP proxy network for partition tests: one forwarding proxy in front of each replica, able to
 * cut replica-to-replica traffic while clients keep reaching every replica, the old primary
 * included.
 *
 * Why a proxy per replica, and how it tells peers from clients:
 *
 * - Membership comes from the sorted address list (lib/net/address.ts), and replicas and clients
 *   must use the same list, so the listed address of replica i is its proxy's port L_i; the replica
 *   itself listens on another port R_i (tests/support/cluster.ts arranges that), and the proxy
 *   forwards every connection it accepts on L_i to R_i. Replicas dial each other at L_j and clients
 *   dial L_j too: every byte between any two parties crosses a proxy.
 * - The transport never mixes senders on one connection (docs/PROTOCOL.md §1.1): replica i sends to
 *   j only over the connection i dialed to j, and a client's connection carries only its requests
 *   (sender 255). So the `replica` byte (offset 115) of the first header on a connection names the
 *   sender for the whole connection, and the proxy of replica j knows the connection is i → j.
 * - A cut pair {i, j} blackholes every connection i → j and j → i: bytes arriving in either
 *   direction are discarded, existing connections and new ones alike (the sender sees a silent
 *   peer, as in a real partition, and its half-open detection has to notice). Client connections
 *   are never cut. Healing destroys the connections that lost bytes (their streams are broken,
 *   as a TCP connection that timed out during the partition would be), so the replicas redial.
 *
 * The proxy does not parse anything beyond that one byte and the magic; it does not validate
 * checksums (a connection whose first bytes are not a header is treated as a client's). On a
 * cluster with a secret a connection starts with the handshake's HELLO (docs/PROTOCOL.md §6.2),
 * whose bytes 6 and 7 name the sender's role and index instead.
 *
 * flipClientByte() arms a fault for authentication tests: one byte of the next client connection's
 * stream toward a replica is flipped in flight.
 */
import * as net from "node:net";
import { header_size, sender_client, wire_magic } from "../../lib/constants.ts";
import { AuthRole, handshake_magic } from "../../lib/net/auth/handshake.ts";

const offset_magic = 88;
const offset_replica = 115;

interface ProxiedConnection {
  /** Sender replica index, sender_client, or null until the first header arrived. */
  sender: number | null;
  readonly dest: number;
  readonly downstream: net.Socket;
  readonly upstream: net.Socket;
  /** Bytes received from downstream before the sender is known. */
  pending: Buffer[];
  pending_bytes: number;
  /** Set once the partition discarded any byte of this connection. */
  lost_bytes: boolean;
  /** Offset in the stream toward the replica of a byte to flip (flipClientByte), and bytes forwarded so far that way. */
  flip_at: number | null;
  forwarded: number;
  closed: boolean;
}

export interface ProxyStats {
  connections: number;
  /** Connections classified as replica → replica. */
  peer_connections: number;
  client_connections: number;
  /** Bytes discarded by cuts. */
  bytes_dropped: number;
  /** Connections destroyed at heal() because the cut had broken their stream. */
  connections_reset: number;
}

export class ProxyNetwork {
  readonly stats: ProxyStats = { connections: 0, peer_connections: 0, client_connections: 0, bytes_dropped: 0, connections_reset: 0 };
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<ProxiedConnection>();
  /** Cut unordered pairs, as "min,max". */
  private readonly cut_pairs = new Set<string>();
  /** Replica index -> stream offset to flip in its next client connection. */
  private readonly flips = new Map<number, number>();

  private constructor(
    readonly host: string,
    /** listen_ports[i]: the listed address of replica i (what everyone dials). */
    readonly listen_ports: readonly number[],
    /** target_ports[i]: where replica i really listens. */
    readonly target_ports: readonly number[],
  ) {}

  /** Starts one proxy per replica: listen_ports[i] → target_ports[i] on host. */
  static async start(host: string, listen_ports: readonly number[], target_ports: readonly number[]): Promise<ProxyNetwork> {
    if (listen_ports.length !== target_ports.length) throw new Error("ProxyNetwork: one target per listen port");
    const network = new ProxyNetwork(host, listen_ports, target_ports);
    for (let i = 0; i < listen_ports.length; i++) network.servers.push(await network.listen(i));
    return network;
  }

  private listen(dest: number): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      const server = net.createServer((socket) => this.accept(dest, socket));
      server.once("error", reject);
      server.listen(this.listen_ports[dest], this.host, () => resolve(server));
    });
  }

  private accept(dest: number, downstream: net.Socket): void {
    this.stats.connections += 1;
    downstream.setNoDelay(true);
    const upstream = net.connect({ host: this.host, port: this.target_ports[dest]! });
    upstream.setNoDelay(true);
    const c: ProxiedConnection = {
      sender: null,
      dest,
      downstream,
      upstream,
      pending: [],
      pending_bytes: 0,
      lost_bytes: false,
      flip_at: null,
      forwarded: 0,
      closed: false,
    };
    this.connections.add(c);
    const close = () => this.drop(c);
    downstream.on("error", close);
    upstream.on("error", close);
    downstream.on("close", close);
    upstream.on("close", close);
    downstream.on("data", (chunk: Buffer) => this.fromDownstream(c, chunk));
    upstream.on("data", (chunk: Buffer) => this.forward(c, chunk, upstream, downstream));
  }

  private fromDownstream(c: ProxiedConnection, chunk: Buffer): void {
    if (c.sender === null) {
      c.pending.push(chunk);
      c.pending_bytes += chunk.length;
      if (c.pending_bytes < 8) return;
      const head = Buffer.concat(c.pending);
      const hello = head.readUInt32LE(0) === handshake_magic;
      if (!hello && c.pending_bytes <= offset_replica) {
        c.pending = [head];
        return;
      }
      c.pending = [];
      c.pending_bytes = 0;
      // A connection that does not start with a header is treated as a client's (it never is a peer).
      const is_header = head.length >= header_size && head.readUInt32LE(offset_magic) === wire_magic;
      const sender = hello ? (head[6] === AuthRole.replica ? head[7]! : sender_client) : is_header ? head[offset_replica]! : sender_client;
      c.sender = sender < this.listen_ports.length ? sender : sender_client;
      if (c.sender === sender_client) this.stats.client_connections += 1;
      else this.stats.peer_connections += 1;
      if (c.sender === sender_client && this.flips.has(c.dest)) {
        c.flip_at = this.flips.get(c.dest)!;
        this.flips.delete(c.dest);
      }
      chunk = head;
    }
    this.forward(c, chunk, c.downstream, c.upstream);
  }

  /** Forwards chunk from → to unless the connection's pair is cut, with backpressure. */
  private forward(c: ProxiedConnection, chunk: Buffer, from: net.Socket, to: net.Socket): void {
    if (c.closed) return;
    if (c.sender !== null && c.sender !== sender_client && this.isCut(c.sender, c.dest)) {
      this.stats.bytes_dropped += chunk.length;
      c.lost_bytes = true;
      return;
    }
    if (from === c.downstream) {
      const at = c.flip_at;
      if (at !== null && at >= c.forwarded && at < c.forwarded + chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[at - c.forwarded]! ^= 0x01;
        c.flip_at = null;
      }
      c.forwarded += chunk.length;
    }
    if (!to.write(chunk)) {
      from.pause();
      to.once("drain", () => from.resume());
    }
  }

  private drop(c: ProxiedConnection): void {
    if (c.closed) return;
    c.closed = true;
    this.connections.delete(c);
    c.downstream.destroy();
    c.upstream.destroy();
  }

  /** Flips the byte at `offset` of the stream the next client connection to replica `dest` sends. */
  flipClientByte(dest: number, offset: number): void {
    this.flips.set(dest, offset);
  }

  isCut(a: number, b: number): boolean {
    return this.cut_pairs.has(pairKey(a, b));
  }

  /** Cuts replica a from replica b (both directions). */
  cut(a: number, b: number): void {
    if (a === b) throw new Error("ProxyNetwork.cut: a replica cannot be cut from itself");
    this.cut_pairs.add(pairKey(a, b));
  }

  /** Cuts `replica` from every other replica; clients still reach it. */
  isolate(replica: number): void {
    for (let other = 0; other < this.listen_ports.length; other++) if (other !== replica) this.cut(replica, other);
  }

  /** Restores every pair, and resets the connections the partition broke. */
  heal(): void {
    this.cut_pairs.clear();
    for (const c of [...this.connections]) {
      if (c.lost_bytes) {
        this.stats.connections_reset += 1;
        this.drop(c);
      }
    }
  }

  async close(): Promise<void> {
    for (const c of [...this.connections]) this.drop(c);
    await Promise.all(this.servers.map((s) => new Promise((resolve) => s.close(resolve))));
    this.servers.length = 0;
  }
}

function pairKey(a: number, b: number): string {
  return a < b ? `${a},${b}` : `${b},${a}`;
}
