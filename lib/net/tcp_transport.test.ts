/**
 * TcpTransport over real sockets on 127.0.0.1. Conditions are awaited with waitFor (polling with a
 * timeout); the only other waits are single event-loop turns, to let coalesced writes go out.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { header_size, sender_client } from "../constants.ts";
import { Prng } from "../util/prng.ts";
import { Result } from "../store/operations.ts";
import { Command, Offset, encode, type Message } from "./codec.ts";
import { clusterMismatchOf } from "./cluster_mismatch.ts";
import { FrameReader } from "./frame_reader.ts";
import { TcpTransport, TransportError, type Address, type ConnectionInfo, type TransportOptions } from "./tcp_transport.ts";
import { concat, freePorts, makeMessage, randomBytes, randomMessage, sameBytes, test_cluster, waitFor, withU32 } from "./test_support.ts";

const host = "127.0.0.1";
const addr = (port: number): Address => ({ host, port });
const turn = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

interface Received {
  message: Message;
  info: ConnectionInfo;
}

interface Node {
  transport: TcpTransport;
  received: Received[];
  logs: string[];
  closes: { info: ConnectionInfo; reason: string }[];
}

type NodeOptions = Omit<TransportOptions, "cluster" | "log"> & Partial<Pick<TransportOptions, "cluster">>;

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A transport that records what it receives and logs; `on` may answer. */
function makeNode(options: NodeOptions, on?: (node: Node, message: Message, info: ConnectionInfo) => void): Node {
  const received: Received[] = [];
  const logs: string[] = [];
  const closes: Node["closes"] = [];
  const transport = new TcpTransport(
    { cluster: options.cluster ?? test_cluster, ...options, log: (level, text) => logs.push(`${level}: ${text}`) },
    {
      onMessage: (message, info) => {
        received.push({ message, info });
        on?.(node, message, info);
      },
      onConnectionClose: (info, reason) => closes.push({ info, reason }),
    },
  );
  const node: Node = { transport, received, logs, closes };
  cleanup.push(() => transport.close());
  return node;
}

async function startNode(options: NodeOptions, on?: (node: Node, message: Message, info: ConnectionInfo) => void): Promise<Node> {
  const node = makeNode(options, on);
  await node.transport.start();
  return node;
}

/** A bare socket, to feed a listener bytes no transport would send. */
interface Raw {
  socket: Socket<undefined>;
  closed: boolean;
}

async function rawConnect(port: number): Promise<Raw> {
  const state = { closed: false };
  const socket = await Bun.connect({ hostname: host, port, socket: { data() {}, close: () => void (state.closed = true) } });
  const raw: Raw = {
    socket,
    get closed() {
      return state.closed;
    },
  };
  cleanup.push(() => socket.terminate());
  return raw;
}

/** A bare listener standing in for a replica: it can stop reading, and it never answers. */
interface RawServer {
  port: number;
  sockets: Socket<undefined>[];
  bytes: number;
}

function rawListen(options: { paused: boolean }): RawServer {
  const server: RawServer = { port: 0, sockets: [], bytes: 0 };
  const listener = Bun.listen({
    hostname: host,
    port: 0,
    socket: {
      binaryType: "uint8array",
      open(socket) {
        server.sockets.push(socket);
        if (options.paused) socket.pause();
      },
      data(_socket, data) {
        server.bytes += data.length;
      },
    },
  });
  server.port = listener.port;
  cleanup.push(() => listener.stop(true));
  return server;
}

function ping(replica: number, op: number, body?: Uint8Array): Message {
  return makeMessage({ command: Command.ping, replica, op }, body);
}

describe("TcpTransport", () => {
  test("two replicas exchange thousands of messages both ways, intact and in order", async () => {
    const [p0, p1] = freePorts(2);
    const peers = [addr(p0!), addr(p1!)];
    const nodes = [await startNode({ self: 0, listen: peers[0], peers }), await startNode({ self: 1, listen: peers[1], peers })];
    const prng = new Prng(7);
    const count = 3000;
    const sent: Message[][] = [[], []];
    for (let i = 0; i < count; i++) {
      for (const from of [0, 1]) {
        const size = i % 1000 === 999 ? 1024 * 1024 : prng.range(0, 4096);
        const m = makeMessage({ command: Command.prepare, replica: from, op: i }, randomBytes(prng, size));
        sent[from]!.push(m);
        expect(nodes[from]!.transport.sendToReplica(1 - from, m)).toBe(true);
      }
      if (i % 100 === 99) await turn(); // one coalesced write per connection per batch of 100
    }
    await waitFor("all messages delivered", () => nodes.every((n) => n.received.length === count), 10_000);
    for (const to of [0, 1]) {
      const node = nodes[to]!;
      const expected = sent[1 - to]!;
      for (let i = 0; i < count; i++) {
        const { message, info } = node.received[i]!;
        expect(message.header.op).toBe(i);
        expect(message.header.checksum).toBe(expected[i]!.header.checksum);
        expect(sameBytes(message.body, expected[i]!.body)).toBe(true);
        expect(info.direction).toBe("incoming"); // j's messages arrive on the connection j dialed
      }
      const stats = node.transport.stats;
      expect(stats.frames_in).toBe(count);
      expect(stats.frames_out).toBe(count);
      expect(stats.frames_dropped_invalid + stats.messages_dropped_backpressure + stats.bytes_dropped_disconnected).toBe(0);
      expect(stats.connects).toBe(1);
      expect(stats.connections_accepted).toBe(1);
    }
  });

  test("a peer that is not listening yet is connected to once it starts", async () => {
    const [p0, p1] = freePorts(2);
    const peers = [addr(p0!), addr(p1!)];
    const a = await startNode({ self: 0, listen: peers[0], peers, reconnect_backoff_max_ms: 200 });
    let op = 0;
    await waitFor("two failed connects", () => {
      a.transport.sendToReplica(1, ping(0, op++));
      return a.transport.stats.connect_failures >= 2;
    });
    expect(a.transport.isConnected(1)).toBe(false);
    // Logged once, not once per attempt.
    expect(a.logs.filter((l) => l.includes("cannot connect to replica 1")).length).toBe(1);
    expect(a.closes.some((c) => c.info.peer === 1 && c.reason.includes("ECONNREFUSED"))).toBe(true);

    const b = await startNode({ self: 1, listen: peers[1], peers });
    await waitFor("b receives from a", () => {
      a.transport.sendToReplica(1, ping(0, op++));
      return b.received.length > 0;
    });
    expect(a.transport.isConnected(1)).toBe(true);
    expect(a.transport.stats.connects_succeeded).toBe(1);
    expect(a.logs.some((l) => l.includes("connected to replica 1") && l.includes("failed attempts"))).toBe(true);
  });

  test("a connect that hangs times out on our own timer; a socket that opens after that is closed", async () => {
    const [p0, p1] = freePorts(2);
    const peers = [addr(p0!), addr(p1!)];
    const b = await startNode({ self: 1, listen: peers[1], peers });
    let dials = 0;
    const a = await startNode({
      self: 0,
      listen: peers[0],
      peers,
      connect_timeout_ms: 100,
      // The first dial answers only after 300 ms, as over a lossy network; later ones at once.
      dial: (options) => {
        dials += 1;
        if (dials > 1) return Bun.connect(options);
        return new Promise((resolve, reject) => setTimeout(() => Bun.connect(options).then(resolve, reject), 300));
      },
    });
    let op = 0;
    await waitFor("b receives from a", () => {
      a.transport.sendToReplica(1, ping(0, op++));
      return b.received.length > 0;
    });
    expect(a.transport.stats.connect_timeouts).toBe(1);
    expect(a.logs.some((l) => l.includes("no answer within 100 ms"))).toBe(true);
    // The late socket reached b, and a closed it: b ends with just the live connection.
    await waitFor(
      "the late socket is accepted and closed",
      () => b.transport.stats.connections_accepted === 2 && b.transport.incoming_connections === 1,
    );
    expect(a.transport.stats.connects_succeeded).toBe(1);
    expect(a.transport.isConnected(1)).toBe(true);
  });

  test("a peer that restarts on the same port is reconnected", async () => {
    const [p0, p1] = freePorts(2);
    const peers = [addr(p0!), addr(p1!)];
    const a = await startNode({ self: 0, listen: peers[0], peers });
    const b = await startNode({ self: 1, listen: peers[1], peers });
    a.transport.sendToReplica(1, ping(0, 1));
    await waitFor("b receives", () => b.received.length === 1);

    await b.transport.close();
    await waitFor("a notices the close", () => !a.transport.isConnected(1));
    const b2 = await startNode({ self: 1, listen: peers[1], peers });
    let op = 2;
    await waitFor("the restarted b receives from a", () => {
      a.transport.sendToReplica(1, ping(0, op++));
      return b2.received.length > 0;
    });
    expect(a.transport.stats.connects_succeeded).toBe(2);
    // And the other direction works from the new process.
    b2.transport.sendToReplica(0, ping(1, 1));
    await waitFor("a receives from the restarted b", () => a.received.length === 1);
  });

  test("invalid input closes only the offending connection, is counted, logged once, and the rest keeps working", async () => {
    const [pb, pa] = freePorts(2);
    const peers = [addr(pb!), addr(pa!)];
    // b echoes every ping from replica 1 back to it.
    const b = await startNode({ self: 0, listen: peers[0], peers }, (node, m) => {
      if (m.header.command === Command.ping && m.header.replica === 1)
        node.transport.sendToReplica(1, makeMessage({ command: Command.pong, replica: 0, op: m.header.op }));
    });
    const a = await startNode({ self: 1, listen: peers[1], peers });
    let op = 0;
    const roundTrip = async (): Promise<void> => {
      const want = ++op;
      a.transport.sendToReplica(0, ping(1, want));
      await waitFor(`echo ${want}`, () => a.received.some((r) => r.message.header.op === want));
    };
    await roundTrip();

    const prng = new Prng(3);
    const valid = encode(ping(1, 99, randomBytes(prng, 1000)));
    const flipped = valid.slice();
    flipped[header_size + 10]! ^= 0x04;
    const bad_inputs: [string, Uint8Array][] = [
      ["garbage", randomBytes(prng, 4096)],
      [
        "a truncated frame followed by the next frame",
        concat([valid.subarray(0, valid.length - 200), encode(ping(1, 100, randomBytes(prng, 500)))]),
      ],
      ["a flipped body bit", flipped],
      ["another cluster", encode(makeMessage({ cluster: 0xdeadn, replica: 1 }))],
      ["a 1 GiB size field", withU32(valid, Offset.size, 1 << 30).subarray(0, header_size)],
      ["a replica index beyond the cluster", encode(makeMessage({ replica: 7 }))],
    ];
    let invalid = 0;
    for (const [what, bytes] of bad_inputs) {
      const raw = await rawConnect(pb!);
      raw.socket.write(bytes);
      await waitFor(`b closes the connection that sent ${what}`, () => raw.closed);
      invalid += 1;
      expect(b.transport.stats.frames_dropped_invalid).toBe(invalid);
      await roundTrip(); // the well-behaved connection is unaffected
    }
    // A frame cut short by its sender closing is counted as truncated, not invalid.
    const raw = await rawConnect(pb!);
    raw.socket.write(valid.subarray(0, 500));
    raw.socket.end();
    await waitFor("b sees the truncated close", () => b.transport.stats.frames_truncated === 1);
    expect(b.transport.stats.frames_dropped_invalid).toBe(invalid);
    await waitFor("bad connections are gone", () => b.transport.incoming_connections === 1);
    await roundTrip();

    expect(a.transport.stats.connects).toBe(1); // a's connection was never disturbed
    const invalid_logs = b.logs.filter((l) => l.startsWith("warn:") && l.includes("invalid frame"));
    expect(invalid_logs.length).toBe(1); // all from 127.0.0.1: one line per host per minute
    expect(invalid_logs[0]).toContain("magic");
    expect(b.received.every((r) => r.message.header.replica === 1 || r.message.header.replica === sender_client)).toBe(true);
  });

  test("a peer that stops reading makes the sender drop and count, not buffer without bound", async () => {
    const [pa] = freePorts(1);
    const server = rawListen({ paused: true });
    const bound = 4 * 1024 * 1024;
    const a = await startNode({
      self: 0,
      listen: addr(pa!),
      peers: [addr(pa!), addr(server.port)],
      write_buffer_size_max: bound,
      peer_silence_timeout_ms: 60_000,
    });
    const prng = new Prng(5);
    const big = ping(0, 1, randomBytes(prng, 256 * 1024));
    const frame_size = big.header.size;
    let max_buffered = 0;
    const send = (count: number): void => {
      for (let i = 0; i < count; i++) a.transport.sendToReplica(1, big);
      max_buffered = Math.max(max_buffered, a.transport.bufferedBytes());
    };
    await waitFor("messages dropped", () => {
      send(8);
      return a.transport.stats.messages_dropped_backpressure > 0;
    });
    // Keep pushing well past the bound (another ~100 MiB): the queue stays bounded.
    for (let i = 0; i < 50; i++) {
      send(8);
      await turn();
    }
    expect(max_buffered).toBeLessThanOrEqual(bound);
    const dropped = a.transport.stats.messages_dropped_backpressure;
    expect(dropped).toBeGreaterThan(300);
    expect(a.logs.filter((l) => l.includes("dropping messages")).length).toBe(1);

    // The peer reads again: the backlog drains, every accepted message arrives, sends succeed.
    for (const s of server.sockets) s.resume();
    await waitFor(
      "the backlog drains",
      () => a.transport.bufferedBytes() === 0 && server.bytes === a.transport.stats.frames_out * frame_size,
    );
    expect(a.transport.sendToReplica(1, big)).toBe(true);
    expect(a.transport.stats.messages_dropped_backpressure).toBe(dropped);
    expect(a.transport.stats.connects).toBe(1);
  });

  test("sendToClient answers on the connection the client's request came from", async () => {
    const [pr] = freePorts(1);
    const peers = [addr(pr!)];
    const replica = await startNode({ self: 0, listen: peers[0], peers }, (node, m) => {
      if (m.header.command !== Command.request) return;
      const reply = makeMessage({ command: Command.reply, replica: 0, client: m.header.client, request: m.header.request });
      expect(node.transport.sendToClient(m.header.client, reply)).toBe(true);
    });
    const clients = [await startNode({ self: null, peers }), await startNode({ self: null, peers })];
    const ids = [101n, 202n];
    const request = (client: bigint, n: number): Message => makeMessage({ command: Command.request, client, request: n });
    for (let n = 1; n <= 50; n++) {
      for (const i of [0, 1]) clients[i]!.transport.sendToReplica(0, request(ids[i]!, n));
    }
    await waitFor("all replies", () => clients.every((c) => c.received.length === 50));
    for (const i of [0, 1]) {
      const received = clients[i]!.received;
      expect(received.map((r) => r.message.header.client)).toEqual(Array(50).fill(ids[i]));
      expect(received.map((r) => r.message.header.request)).toEqual(Array.from({ length: 50 }, (_, k) => k + 1));
      expect(received.every((r) => r.info.direction === "outgoing" && r.info.peer === 0)).toBe(true);
    }

    // Unknown client: no route.
    expect(replica.transport.sendToClient(303n, request(303n, 1))).toBe(false);
    expect(replica.transport.stats.messages_dropped_no_route).toBe(1);

    // The client 202 moves to a new connection: replies follow it.
    const moved = await startNode({ self: null, peers });
    moved.transport.sendToReplica(0, request(202n, 51));
    await waitFor("reply on the new connection", () => moved.received.length === 1);
    expect(clients[1]!.received.length).toBe(50);

    // A closed connection takes its routes with it.
    await clients[0]!.transport.close();
    await waitFor("the replica sees the close", () => replica.transport.incoming_connections === 2);
    expect(replica.transport.sendToClient(101n, request(101n, 1))).toBe(false);

    // And a client hears when the replica goes away (to retry elsewhere at once).
    await replica.transport.close();
    await waitFor("the client hears the close", () => moved.closes.some((c) => c.info.peer === 0));
  });

  test("a dialed connection whose replica never answers is presumed half-open and redialed", async () => {
    const [pa] = freePorts(1);
    const server = rawListen({ paused: false }); // reads everything, answers nothing
    const a = await startNode({ self: 0, listen: addr(pa!), peers: [addr(pa!), addr(server.port)], peer_silence_timeout_ms: 300 });
    let op = 0;
    await waitFor("a redials", () => {
      a.transport.sendToReplica(1, ping(0, op++));
      return server.sockets.length >= 2;
    });
    expect(a.transport.stats.connections_closed_silent).toBeGreaterThanOrEqual(1);
    expect(a.logs.some((l) => l.includes("half-open"))).toBe(true);
  });

  test("answers that call for nothing back (a pong) do not make a silent peer look half-open", async () => {
    // Two backups: one answers the other's probe with a pong, and then neither sends anything.
    const [pa] = freePorts(1);
    const server = rawListen({ paused: false }); // reads everything, answers nothing
    const a = await startNode({ self: 0, listen: addr(pa!), peers: [addr(pa!), addr(server.port)], peer_silence_timeout_ms: 200 });
    const started = performance.now();
    let op = 0;
    await waitFor("five silence timeouts of pongs", () => {
      a.transport.sendToReplica(1, makeMessage({ command: Command.pong, replica: 0, op: op++ }));
      return performance.now() - started > 1000;
    });
    expect(server.sockets.length).toBe(1);
    expect(a.transport.stats.connections_closed_silent).toBe(0);
    // A message that does call for an answer still starts the clock.
    a.transport.sendToReplica(1, ping(0, op++));
    await waitFor("presumed half-open after a ping", () => a.transport.stats.connections_closed_silent >= 1);
  });

  test("a prepare forwarded in a repair (another replica's) does not make a silent peer look half-open; its own does", async () => {
    // A backup serves a restarted replica the prepares it missed, which the primary made: that
    // replica may send this backup nothing back for good.
    const [pa] = freePorts(1);
    const server = rawListen({ paused: false }); // reads everything, answers nothing
    const a = await startNode({
      self: 0,
      listen: addr(pa!),
      peers: [addr(pa!), addr(server.port), addr(pa!)],
      peer_silence_timeout_ms: 200,
    });
    const started = performance.now();
    let op = 0;
    await waitFor("five silence timeouts of forwarded prepares", () => {
      a.transport.sendToReplica(1, makeMessage({ command: Command.prepare, replica: 2, op: op++ }));
      return performance.now() - started > 1000;
    });
    expect(a.transport.stats.connections_closed_silent).toBe(0);
    a.transport.sendToReplica(1, makeMessage({ command: Command.prepare, replica: 0, op: op++ }));
    await waitFor("presumed half-open after its own prepare", () => a.transport.stats.connections_closed_silent >= 1);
  });

  test("a peer that answers is never presumed half-open", async () => {
    const [p0, p1] = freePorts(2);
    const peers = [addr(p0!), addr(p1!)];
    const a = await startNode({ self: 0, listen: peers[0], peers, peer_silence_timeout_ms: 300 });
    await startNode({ self: 1, listen: peers[1], peers, peer_silence_timeout_ms: 300 }, (node, m) => {
      node.transport.sendToReplica(0, makeMessage({ command: Command.pong, replica: 1, op: m.header.op }));
    });
    const started = performance.now();
    let op = 0;
    await waitFor("a second of ping-pong", () => {
      a.transport.sendToReplica(1, ping(0, op++));
      return performance.now() - started > 1000;
    });
    await waitFor("the last pong", () => a.received.length === op);
    expect(a.transport.stats.connections_closed_silent).toBe(0);
    expect(a.transport.stats.connects).toBe(1);
  });

  test("start() rejects with a clear error when the port is taken", async () => {
    const [p] = freePorts(1);
    const peers = [addr(p!)];
    await startNode({ self: 0, listen: peers[0], peers });
    const second = makeNode({ self: 0, listen: peers[0], peers });
    const error = await second.transport.start().then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TransportError);
    expect((error as TransportError).code).toBe("listen");
    expect((error as TransportError).message).toContain("already in use");
  });

  test("a listener bound to port 0 reports its port; a random message mix round-trips", async () => {
    const peers = [addr(0)];
    const r = await startNode({ self: 0, listen: peers[0], peers });
    const port = r.transport.port;
    expect(port).toBeGreaterThan(0);
    const c = await startNode({ self: null, peers: [addr(port!)] });
    const prng = new Prng(17);
    const messages = Array.from({ length: 200 }, () => randomMessage(prng, prng.range(0, 20_000), 1));
    for (const m of messages) c.transport.sendToReplica(0, m);
    await waitFor("all delivered", () => r.received.length === messages.length);
    expect(r.received.map((x) => x.message.header.checksum)).toEqual(messages.map((m) => m.header.checksum));
  });

  // --- connection admission (lib/net/admission.ts) -----------------------------------------

  /** A replica (index 0 of `peer_count`) that answers every client request with a reply. */
  async function answeringReplica(
    port: number,
    peer_count: number,
    admission: TransportOptions["admission"],
  ): Promise<{ node: Node; peers: Address[] }> {
    const peers = [addr(port), ...freePorts(peer_count - 1).map(addr)];
    const node = await startNode({ self: 0, listen: peers[0], peers, admission }, (n, m) => {
      if (m.header.command === Command.request)
        n.transport.sendToClient(
          m.header.client,
          makeMessage({ command: Command.reply, replica: 0, client: m.header.client, request: m.header.request }),
        );
    });
    return { node, peers };
  }

  /** A client transport that sends one request and waits for its reply. */
  async function requestReply(peers: Address[], client: bigint): Promise<Node> {
    const c = await startNode({ self: null, peers });
    c.transport.sendToReplica(0, makeMessage({ command: Command.request, client, request: 1 }));
    await waitFor(`client ${client} gets its reply`, () => c.received.length === 1);
    return c;
  }

  test("connections that never send a frame cannot lock out a client from their own address, and time out", async () => {
    const [port] = freePorts(1);
    const { node: replica, peers } = await answeringReplica(port!, 1, {
      unidentified_per_address_max: 8,
      unidentified_connections_max: 16,
      first_frame_timeout_ms: 400,
    });
    const idle = await Promise.all(Array.from({ length: 40 }, () => rawConnect(port!)));
    idle[0]!.socket.write(new Uint8Array(20)); // part of a header, then nothing
    await waitFor("the replica made room", () => replica.transport.stats.connections_evicted_unidentified === 32);
    // Every one of those connections came from 127.0.0.1, like the client, whose own connection
    // pushes out one more.
    await requestReply(peers, 7n);
    expect(replica.transport.stats.connections_evicted_unidentified).toBe(33);
    // The 7 left close after the first-frame timeout.
    await waitFor("the idle connections are all closed", () => idle.every((r) => r.closed));
    expect(replica.transport.stats.connections_closed_first_frame_timeout).toBe(7);
    expect(replica.transport.incoming_connections).toBe(1);
    const warnings = replica.logs.filter((l) => l.includes("leaving them idle"));
    expect(warnings.length).toBe(1); // one line per address per minute for the whole flood
    expect(warnings[0]).toStartWith("warn: closing connection 127.0.0.1:");
    expect(warnings[0]).toContain("8 connections from 127.0.0.1 have not sent their first frame (limit 8 per address)");
  });

  test("clients beyond the limits are refused at their first frame; a replica never is", async () => {
    const [port] = freePorts(1);
    const { node: replica, peers } = await answeringReplica(port!, 2, { client_connections_per_address_max: 3, client_connections_max: 5 });
    for (let i = 1; i <= 3; i++) await requestReply(peers, BigInt(i));
    const fourth = await startNode({ self: null, peers });
    fourth.transport.sendToReplica(0, makeMessage({ command: Command.request, client: 4n, request: 1 }));
    await waitFor("the fourth client from 127.0.0.1 is refused", () => fourth.closes.length > 0);
    expect(fourth.received.length).toBe(0);
    expect(replica.transport.stats.connections_rejected).toBe(1);
    const refusals = replica.logs.filter((l) => l.includes("refusing client connection"));
    expect(refusals.length).toBe(1);
    expect(refusals[0]).toContain("3 client connections from 127.0.0.1 are open (limit 3 per address)");
    // Every client slot of this address is taken; the other replica, from the same address, still
    // gets in and is heard.
    const other = await startNode({ self: 1, listen: peers[1], peers });
    other.transport.sendToReplica(0, ping(1, 1));
    await waitFor("replica 0 hears replica 1", () =>
      replica.received.some((r) => r.message.header.command === Command.ping && r.message.header.replica === 1),
    );
    expect(replica.transport.stats.connections_rejected).toBe(1);
  });

  test("an idle client connection is closed after the idle timeout; an idle replica connection is not", async () => {
    const [port] = freePorts(1);
    const { node: replica, peers } = await answeringReplica(port!, 2, { client_idle_timeout_ms: 300 });
    const other = await startNode({ self: 1, listen: peers[1], peers });
    other.transport.sendToReplica(0, ping(1, 1));
    const client = await requestReply(peers, 9n);
    await waitFor("the idle client connection is closed", () => client.closes.length > 0, 5000);
    expect(replica.transport.stats.connections_closed_idle).toBe(1);
    expect(other.transport.isConnected(0)).toBe(true);
    expect(replica.transport.incoming_connections).toBe(1);
    // The client dials again when it next has a request.
    client.transport.sendToReplica(0, makeMessage({ command: Command.request, client: 9n, request: 2 }));
    await waitFor("the second reply", () => client.received.length === 2);
  });

  test("a replica's newer connections replace its least recently active one beyond the per-replica limit", async () => {
    const [port] = freePorts(1);
    const { node: replica } = await answeringReplica(port!, 2, { peer_connections_per_replica_max: 2 });
    const connections: Raw[] = [];
    for (let i = 0; i < 3; i++) {
      const raw = await rawConnect(port!);
      raw.socket.write(encode(ping(1, i)));
      connections.push(raw);
      await waitFor(`ping ${i} arrives`, () => replica.received.length === i + 1);
    }
    connections[1]!.socket.write(encode(ping(1, 10))); // the first is now the least recently active
    await waitFor("the first connection is replaced", () => connections[0]!.closed);
    expect(connections[1]!.closed || connections[2]!.closed).toBe(false);
    expect(replica.transport.stats.connections_peer_replaced).toBe(1);
  });

  // --- frames of another cluster (lib/net/cluster_mismatch.ts) -------------------------------

  /** A raw connection that records every byte it receives. */
  async function rawRecording(port: number): Promise<{ raw: Raw; bytes: () => Uint8Array }> {
    const chunks: Uint8Array[] = [];
    const state = { closed: false };
    const socket = await Bun.connect({
      hostname: host,
      port,
      socket: { binaryType: "uint8array", data: (_s, d) => void chunks.push(d), close: () => void (state.closed = true) },
    });
    cleanup.push(() => socket.terminate());
    const raw: Raw = {
      socket,
      get closed() {
        return state.closed;
      },
    };
    return { raw, bytes: () => concat(chunks) };
  }

  test("a client frame of another cluster gets one small wrong_cluster reply, however much follows, then the connection closes", async () => {
    const [port] = freePorts(1);
    const replica = await startNode({ self: 0, listen: addr(port!), peers: [addr(port!)] });
    const { raw, bytes } = await rawRecording(port!);
    const foreign = (request: number) => encode(makeMessage({ command: Command.request, cluster: 0xdeadn, client: 42n, request }));
    raw.socket.write(concat([foreign(1), foreign(2), foreign(3), randomBytes(new Prng(1), 1000)]));
    await waitFor("the replica closes the connection", () => raw.closed);
    const answer = bytes();
    expect(answer.length).toBe(header_size + 8);
    const reader = new FrameReader({ cluster: 0xdeadn });
    reader.push(answer);
    const reply = reader.next()!;
    expect([reply.header.command, reply.header.result, reply.header.client, reply.header.request]).toEqual([
      Command.reply,
      Result.wrong_cluster,
      42n,
      1,
    ]);
    expect(clusterMismatchOf(reply)).toBe(test_cluster);
    expect(replica.transport.stats.cluster_mismatch_replies).toBe(1);
    expect(replica.transport.stats.frames_dropped_invalid).toBe(1);
    expect(replica.received.length).toBe(0);
    expect(replica.logs.filter((l) => l.includes("sent requests for cluster 0x000000000000dead, ours is")).length).toBe(1);
  });

  test("a frame of another cluster that no client or replica would send is not answered", async () => {
    const [port] = freePorts(1);
    const replica = await startNode({ self: 0, listen: addr(port!), peers: [addr(port!)] });
    for (const fields of [
      { command: Command.prepare, replica: sender_client },
      { command: Command.reply, replica: sender_client },
      { command: Command.ping, replica: 200 },
    ]) {
      const { raw, bytes } = await rawRecording(port!);
      raw.socket.write(encode(makeMessage({ ...fields, cluster: 0xdeadn })));
      await waitFor("the replica closes the connection", () => raw.closed);
      expect(bytes().length).toBe(0);
    }
    expect(replica.transport.stats.cluster_mismatch_replies).toBe(0);
    expect(replica.transport.stats.frames_dropped_invalid).toBe(3);
  });

  test("a client of another cluster hears wrong_cluster as a reply to its request", async () => {
    const [port] = freePorts(1);
    await startNode({ self: 0, listen: addr(port!), peers: [addr(port!)] });
    const client = await startNode({ self: null, peers: [addr(port!)], cluster: 0xdeadn });
    client.transport.sendToReplica(0, makeMessage({ command: Command.request, cluster: 0xdeadn, client: 5n, request: 1 }));
    await waitFor("the reply", () => client.received.length === 1);
    expect(client.received[0]!.message.header.result).toBe(Result.wrong_cluster);
    expect(clusterMismatchOf(client.received[0]!.message)).toBe(test_cluster);
  });

  test("a replica of another cluster: both sides say why, once, and the refusal never reaches the replica", async () => {
    const [pa, pb] = freePorts(2);
    const peers = [addr(pa!), addr(pb!)];
    const a = await startNode({ self: 0, listen: peers[0], peers, cluster: 0xaaaan, reconnect_backoff_max_ms: 50 });
    const b = await startNode({ self: 1, listen: peers[1], peers, cluster: 0xbbbbn });
    let op = 0;
    await waitFor("a has been refused 10 times", () => {
      a.transport.sendToReplica(1, makeMessage({ command: Command.ping, replica: 0, op: op++, cluster: 0xaaaan }));
      return b.transport.stats.cluster_mismatch_replies >= 10;
    });
    expect(a.received.length).toBe(0);
    expect(b.received.length).toBe(0);
    const refused = a.logs.filter((l) => l.includes("refused our connection"));
    expect(refused).toEqual([
      `warn: replica 1 at 127.0.0.1:${pb} refused our connection: it belongs to cluster 0x000000000000bbbb, ours is 0x000000000000aaaa, because its --addr/--peer list differs from ours. Start every replica with the same set of addresses, in any order (retrying with backoff up to 50 ms)`,
    ]);
    expect(a.logs.filter((l) => l.startsWith("info:") && l.includes(`${pb}`)).length).toBeLessThanOrEqual(1);
    expect(
      b.logs.filter((l) =>
        l.includes("sent frames of cluster 0x000000000000aaaa, ours is 0x000000000000bbbb: its --addr/--peer list differs from ours"),
      ).length,
    ).toBe(1);
  });
});
