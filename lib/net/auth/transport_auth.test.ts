/**
 * TcpTransport with a secret (docs/PROTOCOL.md §6) over real sockets on 127.0.0.1: authenticated
 * replicas and clients talk; a missing, extra or wrong secret fails with the reason on both sides;
 * a client's connection cannot carry replica messages; a frame with a bad tag closes its connection.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { randomBytes as cryptoRandomBytes } from "node:crypto";
import { sender_client } from "../../constants.ts";
import { Command, encode, type Message } from "../codec.ts";
import { TcpTransport, type Address, type ConnectionInfo, type TransportOptions } from "../tcp_transport.ts";
import { concat, freePorts, makeMessage, test_cluster, waitFor } from "../test_support.ts";
import { FrameSealer } from "./frame_tag.ts";
import { AuthRole, Dialer } from "./handshake.ts";
import { clientOnly, deriveKeys, type AuthKeys } from "./secret.ts";

const host = "127.0.0.1";
const keys = deriveKeys(new Uint8Array(32).fill(3));
const wrong_keys = deriveKeys(new Uint8Array(32).fill(4));

interface Node {
  transport: TcpTransport;
  received: { message: Message; info: ConnectionInfo }[];
  logs: string[];
  auth_failures: string[];
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function node(options: Omit<TransportOptions, "cluster" | "log">): Promise<Node> {
  const n: Node = { transport: null as unknown as TcpTransport, received: [], logs: [], auth_failures: [] };
  n.transport = new TcpTransport(
    { cluster: test_cluster, ...options, log: (level, text) => n.logs.push(`${level}: ${text}`) },
    {
      onMessage: (message, info) => n.received.push({ message, info }),
      onAuthenticationFailed: (_info, detail) => n.auth_failures.push(detail),
    },
  );
  cleanup.push(() => n.transport.close());
  await n.transport.start();
  return n;
}

function clientRequest(): Message {
  return makeMessage({ command: Command.request, replica: sender_client, client: 77n, request: 1 }, new Uint8Array([1, 2, 3]));
}

/** Two replicas of a 2-replica cluster (0 listens, 1 listens) and the peer list. */
async function replicas(secret0: AuthKeys | null, secret1: AuthKeys | null = secret0): Promise<{ peers: Address[]; r0: Node; r1: Node }> {
  const ports = freePorts(2);
  const peers = ports.map((port) => ({ host, port }));
  const r0 = await node({ self: 0, listen: peers[0]!, peers, secret: secret0 });
  const r1 = await node({ self: 1, listen: peers[1]!, peers, secret: secret1 });
  return { peers, r0, r1 };
}

describe("transport with a secret", () => {
  test("replicas and a client authenticate and exchange frames; a client key is enough for a client", async () => {
    const { peers, r0, r1 } = await replicas(keys);
    r0.transport.sendToReplica(1, makeMessage({ command: Command.ping, replica: 0 }));
    r1.transport.sendToReplica(0, makeMessage({ command: Command.ping, replica: 1 }));
    await waitFor("pings both ways", () => r0.received.length === 1 && r1.received.length === 1);
    for (const client_keys of [keys, clientOnly(keys)]) {
      const client = await node({ self: null, peers, secret: client_keys });
      client.transport.sendToReplica(1, clientRequest());
      await waitFor("the request arrives", () => r1.received.some((r) => r.message.header.command === Command.request));
      r1.received.length = 0;
    }
    expect(Object.entries(r1.transport.stats).filter(([name, value]) => name.startsWith("auth_failures_") && value > 0)).toEqual([]);
  });

  test("a client without the secret is refused and told why", async () => {
    const { peers, r1 } = await replicas(keys);
    const client = await node({ self: null, peers });
    client.transport.sendToReplica(1, clientRequest());
    await waitFor("refusal", () => client.auth_failures.length > 0);
    expect(client.auth_failures[0]).toBe("authentication failed: the replica requires a secret (--secret-file or TOASTYFS_SECRET_FILE)");
    expect(r1.transport.stats.auth_failures_plain_frame).toBe(1);
    expect(r1.received).toEqual([]);
  });

  test("a client with a secret, to a replica without one, is told the replica has none", async () => {
    const { peers, r1 } = await replicas(null);
    const client = await node({ self: null, peers, secret: keys });
    client.transport.sendToReplica(1, clientRequest());
    await waitFor("refusal", () => client.auth_failures.length > 0);
    expect(client.auth_failures[0]).toContain("the replica has no secret configured");
    expect(r1.transport.stats.auth_failures_no_secret).toBe(1);
  });

  test("a wrong secret fails at the dialer, which never proves anything", async () => {
    const { peers, r1 } = await replicas(keys);
    const client = await node({ self: null, peers, secret: wrong_keys });
    client.transport.sendToReplica(1, clientRequest());
    await waitFor("failure", () => client.auth_failures.length > 0);
    expect(client.auth_failures[0]).toContain("does not hold our secret");
    expect(client.transport.stats.auth_failures_bad_mac).toBe(1);
    expect(r1.received).toEqual([]);
  });

  test("a replica with another secret cannot join: both sides count it, nothing is delivered", async () => {
    const { r0, r1 } = await replicas(keys, wrong_keys);
    r0.transport.sendToReplica(1, makeMessage({ command: Command.ping, replica: 0 }));
    await waitFor("the dialer fails", () => r0.transport.stats.auth_failures_bad_mac >= 1);
    expect(r1.received).toEqual([]);
    expect(r0.logs.some((line) => line.includes("does not hold our secret"))).toBe(true);
  });

  /** A raw socket that runs the handshake itself, then sends what a transport never would. */
  async function rawAuthenticated(
    port: number,
    role: AuthRole,
    index: number,
  ): Promise<{ send(frame: Uint8Array, tamper?: boolean): void; closed(): boolean }> {
    const dialer = new Dialer({
      keys,
      role,
      index,
      cluster: test_cluster,
      replica_count: 2,
      expected_acceptor: 1,
      nonce: new Uint8Array(cryptoRandomBytes(32)),
    });
    let closed = false;
    let sealer: FrameSealer | null = null;
    let socket: Socket<undefined> | null = null;
    const ready = new Promise<void>((resolve, reject) => {
      void Bun.connect({
        hostname: host,
        port,
        socket: {
          open(s) {
            socket = s;
            s.write(dialer.start());
          },
          data(s, chunk) {
            const step = dialer.receive(chunk);
            if (step.status === "failed") reject(new Error(step.detail));
            if (step.status !== "done") return;
            s.write(step.output!);
            sealer = new FrameSealer(step.keys.send);
            resolve();
          },
          close() {
            closed = true;
          },
        },
      });
    });
    await ready;
    cleanup.push(() => socket?.terminate());
    return {
      send(frame, tamper = false) {
        const tag = sealer!.seal(frame);
        const bytes = concat([frame, tag]);
        if (tamper) bytes[frame.length - 1]! ^= 1; // the last body byte: the header checks pass, the tag fails
        socket!.write(bytes);
      },
      closed: () => closed,
    };
  }

  test("a connection authenticated as a client cannot send replica messages", async () => {
    const { r1 } = await replicas(keys);
    const raw = await rawAuthenticated(r1.transport.port!, AuthRole.client, sender_client);
    raw.send(encode(makeMessage({ command: Command.prepare, replica: 0, op: 1 })));
    await waitFor("closed", () => raw.closed());
    expect(r1.transport.stats.auth_failures_role).toBe(1);
    expect(r1.received).toEqual([]);
    // And a client request on such a connection is delivered.
    const ok = await rawAuthenticated(r1.transport.port!, AuthRole.client, sender_client);
    ok.send(encode(clientRequest()));
    await waitFor("delivered", () => r1.received.length === 1);
  });

  test("replica 0's connection cannot send as replica 1's peer under another index", async () => {
    const { r1 } = await replicas(keys);
    const raw = await rawAuthenticated(r1.transport.port!, AuthRole.replica, 0);
    raw.send(encode(makeMessage({ command: Command.ping, replica: 0 })));
    await waitFor("delivered", () => r1.received.length === 1);
    raw.send(encode(makeMessage({ command: Command.request, replica: sender_client, client: 5n })));
    await waitFor("closed", () => raw.closed());
    expect(r1.transport.stats.auth_failures_role).toBe(1);
  });

  test("a frame whose tag does not verify closes the connection", async () => {
    const { r1 } = await replicas(keys);
    const raw = await rawAuthenticated(r1.transport.port!, AuthRole.client, sender_client);
    raw.send(encode(clientRequest()), true);
    await waitFor("closed", () => raw.closed());
    expect(r1.transport.stats.auth_failures_tag).toBe(1);
    expect(r1.received).toEqual([]);
  });
});
