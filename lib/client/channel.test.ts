import { describe, expect, test } from "bun:test";
import type { Message } from "../net/codec.ts";
import { Operation, Result, encodeKeyRequest } from "../store/operations.ts";
import { Channel, type ChannelIo } from "./channel.ts";
import { ClientSession } from "./session.ts";
import { replyTo } from "./test_support.ts";

const cluster = 0x0123456789abcdefn;
const get_hello = encodeKeyRequest(new TextEncoder().encode("hello"), null);

function ok(to: Message, replica: number): Message {
  return replyTo(to, { replica, result: Result.ok });
}

/** A channel over a fake transport: replicas in `down` refuse connections (reported the way
 * TcpTransport can: synchronously, inside the send), the others answer ok at once. A long
 * attempt timeout, so a test that waits for it would time out instead of passing. */
function harness(down: Set<number>): { channel: Channel; sends: number[] } {
  const sends: number[] = [];
  const core = new ClientSession({
    client_id: 7n,
    cluster,
    replica_count: 3,
    first_target: 0,
    attempt_timeout: 60_000,
    backoff: 50,
    operation_timeout: 120_000,
  });
  const io: ChannelIo = {
    start: async () => {},
    send: (replica, message) => {
      sends.push(replica);
      if (down.has(replica)) channel.unreachable(replica);
      else queueMicrotask(() => channel.deliver({ message: ok(message, replica), from: replica }));
    },
    closed: () => false,
    log: () => {},
    moved: () => {},
  };
  const channel = new Channel(core, io);
  return { channel, sends };
}

describe("Channel", () => {
  test("a refused connection to the target moves the request on at once, even when reported inside the send", async () => {
    const { channel, sends } = harness(new Set([0]));
    await channel.call(Operation.get, get_hello);
    expect(sends).toEqual([0, 1]);
  });

  test("a replica reported unreachable while no request runs is skipped by the next one", async () => {
    const { channel, sends } = harness(new Set());
    channel.unreachable(0);
    await channel.call(Operation.get, get_hello);
    expect(sends).toEqual([1]);
  });
});
