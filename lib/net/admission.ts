/**
 * Which accepted connections a replica keeps (docs/DESIGN.md §7). Without limits, a program that opens a
 * few thousand TCP connections and sends nothing fills every connection slot, and the replica
 * refuses clients and reconnecting replicas alike for as long as it holds them.
 *
 * A connection is "unidentified" until its first whole frame arrives; that frame makes it a
 * replica's ("peer": sender index below the replica count) or a client's (sender 255). ToastyFS has
 * no handshake, and every client and replica sends a frame as soon as it connects, so:
 *
 * - A new connection is never refused: it may be a replica's. To make room, the oldest
 *   unidentified connection from the same address goes (at most unidentified_per_address_max wait
 *   per address), else the oldest unidentified one overall. One address that opens connections
 *   and leaves them idle only ever pushes out its own, and a connection that sends its frame at
 *   once is pushed out only by thousands of newer ones arriving first.
 * - An unidentified connection that has not completed a frame within first_frame_timeout_ms is
 *   closed (a stuck or slow sender holds nothing for long).
 * - Clients are limited in all and per address; a client frame on a connection beyond those
 *   limits closes it. Replicas' connections do not count against them: a flood of clients can
 *   never take the replicas' slots. They are limited per replica index instead, where a newer
 *   connection replaces the least recently active one (a replica that reconnected while its old
 *   connection lingers half-open).
 * - A client connection that completed no frame for client_idle_timeout_ms is closed; the client
 *   dials again when it next has a request.
 *
 * etcd and most servers bound connections only in total; ZooKeeper limits per address
 * (maxClientCnxns, 60). ToastyFS limits per address too, high enough for benchmarks that run
 * hundreds of clients from one host, and counts loopback like any other address.
 *
 * Pure bookkeeping over the transport's connections (no sockets, no clock of its own), so it can be
 * tested alone; the transport closes what it is told to.
 */
import { assert } from "../util/assert.ts";
import { sender_client } from "../constants.ts";

/** An accepted connection must complete its first frame within this (a replica or client sends
 * one within milliseconds of connecting; 10 s, like MySQL's connect_timeout). */
export const first_frame_timeout_ms = 10_000;
/** A client connection that completed no frame for this long is closed (far beyond any client
 * timeout: a client waiting for an answer retries long before). */
export const client_idle_timeout_ms = 5 * 60_000;
/** Connections waiting for their first frame, in all and from one address. */
export const unidentified_connections_max = 1024;
export const unidentified_per_address_max = 256;
/** Client connections, in all and from one address (loopback included: a benchmark's hundreds of
 * clients on one host fit). */
export const client_connections_max = 4096;
export const client_connections_per_address_max = 1024;
/** Connections one replica index may hold at once (one live one, and old ones lingering). Until
 * connections are authenticated anything can claim an index, and the least recently active is
 * replaced: room for a burst of such claimants keeps a real replica's busy connection in place. */
export const peer_connections_per_replica_max = 16;

export type ConnectionRole = "unidentified" | "client" | "peer";

/** What Admission needs to know of a connection (the transport's Connection has these). */
export interface Admittee {
  /** The other end's address without the port. */
  readonly remote_host: string;
  /** When it was accepted. */
  readonly opened_at_ms: number;
  /** When its last whole frame arrived; opened_at_ms until one does. */
  last_frame_ms: number;
  role: ConnectionRole;
  /** A peer's replica index (from its first frame); -1 otherwise. */
  claimed_replica: number;
}

export interface AdmissionLimits {
  first_frame_timeout_ms: number;
  client_idle_timeout_ms: number;
  unidentified_connections_max: number;
  unidentified_per_address_max: number;
  client_connections_max: number;
  client_connections_per_address_max: number;
  peer_connections_per_replica_max: number;
}

export const admission_limits_default: Readonly<AdmissionLimits> = {
  first_frame_timeout_ms,
  client_idle_timeout_ms,
  unidentified_connections_max,
  unidentified_per_address_max,
  client_connections_max,
  client_connections_per_address_max,
  peer_connections_per_replica_max,
};

/** Which limit made room or refused: the per-address one or the total. */
export type LimitScope = "address" | "total";

export type Identified<T> = { admitted: true; replaced: T | null } | { admitted: false; scope: LimitScope };

export class Admission<T extends Admittee> {
  readonly limits: Readonly<AdmissionLimits>;
  /** In accept order, so the oldest is first and expiry scans stop at the first young one. */
  private readonly unidentified = new Set<T>();
  private readonly unidentified_by_host = new Map<string, Set<T>>();
  private readonly clients = new Set<T>();
  private readonly clients_by_host = new Map<string, number>();
  private readonly peers = new Map<number, Set<T>>();

  constructor(limits: Partial<AdmissionLimits> = {}) {
    this.limits = { ...admission_limits_default, ...limits };
    for (const [name, value] of Object.entries(this.limits))
      assert(Number.isInteger(value) && value > 0, `Admission: ${name} must be a positive integer, got ${value}`);
  }

  /** A connection was just accepted. Returns the connection to close to make room for it (already
   * forgotten here), or null. */
  accept(connection: T): { evicted: T; scope: LimitScope; waiting: number } | null {
    assert(connection.role === "unidentified" && !this.unidentified.has(connection), "Admission.accept: not a new connection");
    let result: { evicted: T; scope: LimitScope; waiting: number } | null = null;
    const same_host = this.unidentified_by_host.get(connection.remote_host);
    if (same_host !== undefined && same_host.size >= this.limits.unidentified_per_address_max) {
      result = { evicted: first(same_host), scope: "address", waiting: same_host.size };
    } else if (this.unidentified.size >= this.limits.unidentified_connections_max) {
      result = { evicted: first(this.unidentified), scope: "total", waiting: this.unidentified.size };
    }
    if (result !== null) this.remove(result.evicted);
    this.unidentified.add(connection);
    let mine = this.unidentified_by_host.get(connection.remote_host);
    if (mine === undefined) this.unidentified_by_host.set(connection.remote_host, (mine = new Set()));
    mine.add(connection);
    return result;
  }

  /** The connection's first whole frame arrived, from `sender` (the header's replica field). Not
   * admitted: close it. A replaced peer connection (forgotten here) is to be closed too. */
  identify(connection: T, sender: number, replica_count: number): Identified<T> {
    assert(connection.role === "unidentified", "Admission.identify: already identified");
    assert(
      sender === sender_client || (sender >= 0 && sender < replica_count),
      () => `Admission.identify: sender ${sender} was not validated`,
    );
    this.forgetUnidentified(connection);
    if (sender === sender_client) {
      const from_host = this.clients_by_host.get(connection.remote_host) ?? 0;
      if (from_host >= this.limits.client_connections_per_address_max) return { admitted: false, scope: "address" };
      if (this.clients.size >= this.limits.client_connections_max) return { admitted: false, scope: "total" };
      connection.role = "client";
      this.clients.add(connection);
      this.clients_by_host.set(connection.remote_host, from_host + 1);
      return { admitted: true, replaced: null };
    }
    connection.role = "peer";
    connection.claimed_replica = sender;
    let same = this.peers.get(sender);
    if (same === undefined) this.peers.set(sender, (same = new Set()));
    let replaced: T | null = null;
    if (same.size >= this.limits.peer_connections_per_replica_max) {
      for (const other of same) if (replaced === null || other.last_frame_ms < replaced.last_frame_ms) replaced = other;
      this.remove(replaced!);
    }
    same.add(connection);
    return { admitted: true, replaced };
  }

  /** The connection closed (or is being closed): forget it. Idempotent. */
  remove(connection: T): void {
    switch (connection.role) {
      case "unidentified":
        this.forgetUnidentified(connection);
        return;
      case "client": {
        if (!this.clients.delete(connection)) return;
        const left = (this.clients_by_host.get(connection.remote_host) ?? 1) - 1;
        if (left > 0) this.clients_by_host.set(connection.remote_host, left);
        else this.clients_by_host.delete(connection.remote_host);
        return;
      }
      case "peer": {
        const same = this.peers.get(connection.claimed_replica);
        if (same === undefined || !same.delete(connection)) return;
        if (same.size === 0) this.peers.delete(connection.claimed_replica);
        return;
      }
    }
  }

  /** Unidentified connections older than first_frame_timeout_ms, oldest first (still held: the
   * caller closes them, which removes them). */
  firstFrameOverdue(now_ms: number): T[] {
    const overdue: T[] = [];
    for (const connection of this.unidentified) {
      if (now_ms - connection.opened_at_ms < this.limits.first_frame_timeout_ms) break;
      overdue.push(connection);
    }
    return overdue;
  }

  /** Client connections that completed no frame for client_idle_timeout_ms. */
  idleClients(now_ms: number): T[] {
    const idle: T[] = [];
    for (const connection of this.clients) {
      if (now_ms - connection.last_frame_ms >= this.limits.client_idle_timeout_ms) idle.push(connection);
    }
    return idle;
  }

  get counts(): { unidentified: number; clients: number; peers: number } {
    let peers = 0;
    for (const same of this.peers.values()) peers += same.size;
    return { unidentified: this.unidentified.size, clients: this.clients.size, peers };
  }

  /** Connections held from one address (unidentified and clients; replicas are not limited so). */
  fromHost(host: string): { unidentified: number; clients: number } {
    return { unidentified: this.unidentified_by_host.get(host)?.size ?? 0, clients: this.clients_by_host.get(host) ?? 0 };
  }

  private forgetUnidentified(connection: T): void {
    if (!this.unidentified.delete(connection)) return;
    const mine = this.unidentified_by_host.get(connection.remote_host);
    mine?.delete(connection);
    if (mine !== undefined && mine.size === 0) this.unidentified_by_host.delete(connection.remote_host);
  }
}

function first<T>(set: Set<T>): T {
  const next = set.values().next();
  assert(!next.done, "Admission: empty set");
  return next.value;
}
