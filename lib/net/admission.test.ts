import { describe, expect, test } from "bun:test";
import { sender_client } from "../constants.ts";
import { Admission, type Admittee, type ConnectionRole } from "./admission.ts";

class Fake implements Admittee {
  last_frame_ms: number;
  role: ConnectionRole = "unidentified";
  claimed_replica = -1;
  constructor(
    readonly name: string,
    readonly remote_host: string,
    readonly opened_at_ms: number,
  ) {
    this.last_frame_ms = opened_at_ms;
  }
}

const limits = {
  unidentified_connections_max: 6,
  unidentified_per_address_max: 3,
  client_connections_max: 4,
  client_connections_per_address_max: 2,
  peer_connections_per_replica_max: 2,
  first_frame_timeout_ms: 1000,
  client_idle_timeout_ms: 5000,
};

describe("Admission", () => {
  test("one address's idle connections only push out its own, oldest first", () => {
    const a = new Admission<Fake>(limits);
    const flood = Array.from({ length: 3 }, (_, i) => new Fake(`flood${i}`, "10.0.0.9", i));
    for (const c of flood) expect(a.accept(c)).toBeNull();
    const other = new Fake("other", "10.0.0.1", 10);
    expect(a.accept(other)).toBeNull();
    const more = new Fake("flood3", "10.0.0.9", 11);
    expect(a.accept(more)).toEqual({ evicted: flood[0]!, scope: "address", waiting: 3 });
    expect(a.fromHost("10.0.0.9")).toEqual({ unidentified: 3, clients: 0 });
    expect(a.fromHost("10.0.0.1")).toEqual({ unidentified: 1, clients: 0 });
  });

  test("when every address is within its share, the oldest waiting connection overall makes room", () => {
    const a = new Admission<Fake>(limits);
    const hosts = ["h1", "h2", "h3"];
    const conns = Array.from({ length: 6 }, (_, i) => new Fake(`c${i}`, hosts[i % 3]!, i));
    for (const c of conns) expect(a.accept(c)).toBeNull();
    const late = new Fake("late", "h4", 100);
    expect(a.accept(late)).toEqual({ evicted: conns[0]!, scope: "total", waiting: 6 });
    expect(a.counts).toEqual({ unidentified: 6, clients: 0, peers: 0 });
  });

  test("clients are limited per address and in all; replicas are not counted against them", () => {
    const a = new Admission<Fake>(limits);
    const admit = (c: Fake, sender: number) => {
      a.accept(c);
      return a.identify(c, sender, 3);
    };
    expect(admit(new Fake("a1", "A", 0), sender_client)).toEqual({ admitted: true, replaced: null });
    expect(admit(new Fake("a2", "A", 1), sender_client)).toEqual({ admitted: true, replaced: null });
    expect(admit(new Fake("a3", "A", 2), sender_client)).toEqual({ admitted: false, scope: "address" });
    expect(admit(new Fake("b1", "B", 3), sender_client)).toEqual({ admitted: true, replaced: null });
    expect(admit(new Fake("c1", "C", 4), sender_client)).toEqual({ admitted: true, replaced: null });
    expect(admit(new Fake("d1", "D", 5), sender_client)).toEqual({ admitted: false, scope: "total" });
    // Every client slot is taken, and a replica from a client's address still gets in.
    const peer = new Fake("replica1", "A", 6);
    expect(admit(peer, 1)).toEqual({ admitted: true, replaced: null });
    expect(peer.role).toBe("peer");
    expect(a.counts).toEqual({ unidentified: 0, clients: 4, peers: 1 });
  });

  test("a replica's newer connection replaces its least recently active one beyond the limit", () => {
    const a = new Admission<Fake>(limits);
    const first = new Fake("first", "R", 0);
    const second = new Fake("second", "R", 1);
    a.accept(first);
    a.identify(first, 2, 3);
    a.accept(second);
    a.identify(second, 2, 3);
    first.last_frame_ms = 50; // the first is the active one; the second went quiet
    const third = new Fake("third", "R", 60);
    a.accept(third);
    expect(a.identify(third, 2, 3)).toEqual({ admitted: true, replaced: second });
    expect(a.counts.peers).toBe(2);
  });

  test("overdue first frames, oldest first, and idle clients are reported; remove is idempotent", () => {
    const a = new Admission<Fake>(limits);
    const old = new Fake("old", "A", 0);
    const young = new Fake("young", "B", 900);
    const client = new Fake("client", "C", 0);
    a.accept(old);
    a.accept(young);
    a.accept(client);
    a.identify(client, sender_client, 3);
    expect(a.firstFrameOverdue(999)).toEqual([]);
    expect(a.firstFrameOverdue(1000)).toEqual([old]);
    expect(a.firstFrameOverdue(1900)).toEqual([old, young]);
    client.last_frame_ms = 1000;
    expect(a.idleClients(5999)).toEqual([]);
    expect(a.idleClients(6000)).toEqual([client]);
    a.remove(client);
    a.remove(client);
    a.remove(old);
    expect(a.counts).toEqual({ unidentified: 1, clients: 0, peers: 0 });
    expect(a.fromHost("C")).toEqual({ unidentified: 0, clients: 0 });
  });

  test("limits must be positive integers", () => {
    expect(() => new Admission<Fake>({ client_connections_max: 0 })).toThrow(/client_connections_max must be a positive integer/);
  });
});
