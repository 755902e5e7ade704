import { describe, expect, test } from "bun:test";
import { Prng } from "../lib/util/prng.ts";
import { decode, type Message } from "../lib/net/codec.ts";
import { Operation, Result } from "../lib/store/operations.ts";
import { encodeCreateUploadReply } from "../lib/store/large_bodies.ts";
import { replyTo } from "../lib/client/test_support.ts";
import { SimClient } from "./client.ts";

const cluster = 0x5eedn;
const timeout_us = 400_000;

/** A client of a 3-replica cluster whose sends are recorded, not delivered. */
function harness(seed: number): { client: SimClient; sent: { replica: number; message: Message }[]; problems: string[] } {
  const sent: { replica: number; message: Message }[] = [];
  const problems: string[] = [];
  const client = new SimClient(
    0,
    3,
    3,
    cluster,
    new Prng(seed),
    { keys: 3, value_filler_max: 8, request_timeout_us: timeout_us, think_mean_us: 1000 },
    {
      send: (_from, replica, bytes) => {
        const decoded = decode(bytes.slice(), cluster);
        if (!decoded.ok) throw new Error("the client sent an undecodable message");
        sent.push({ replica, message: decoded.message });
      },
      writeReplied: () => {},
      blockAcked: () => {},
      manifestInstalled: () => {},
      violation: (message) => problems.push(message),
      record: () => {},
    },
  );
  return { client, sent, problems };
}

/** Where each of seeds 1..30 sends its first request at 5 ms, after `before` ran at time 0. */
function firstTargets(before: (client: SimClient) => void): number[] {
  const targets: number[] = [];
  for (let seed = 1; seed <= 30; seed++) {
    const { client, sent } = harness(seed);
    client.wake_at = 5000;
    before(client);
    expect(sent).toEqual([]);
    expect(client.wake_at).toBe(5000); // the think time stands
    client.wake(5000);
    targets.push(sent[0]!.replica);
  }
  return targets;
}

describe("SimClient: replicas found unreachable (docs/PROTOCOL.md §3.9)", () => {
  test("a refused connect to the target sends the pending request to the next replica at once, same request number", () => {
    const { client, sent, problems } = harness(7);
    client.wake(0);
    expect(sent.length).toBe(1);
    const first = sent[0]!;
    client.onUnreachable(first.replica, 1000);
    expect(sent.length).toBe(2);
    expect(sent[1]!.replica).toBe((first.replica + 1) % 3);
    expect(sent[1]!.message.header.request).toBe(first.message.header.request);
    expect(client.wake_at).toBe(1000 + timeout_us); // a fresh attempt timeout there
    // Another replica refusing changes nothing for this request (it waits where it is).
    client.onUnreachable((first.replica + 2) % 3, 2000);
    expect(sent.length).toBe(2);
    expect(client.connections.unreachable).toBe(2);
    expect(problems).toEqual([]);
  });

  test("a refusal while idle is kept for the next request, and a connection opening since undoes it", () => {
    const plain = firstTargets(() => {});
    expect(plain).toContain(1); // some seeds start at replica 1
    const down = firstTargets((client) => client.onUnreachable(1, 0));
    expect(down).not.toContain(1);
    expect(down.filter((t, i) => t !== plain[i]).length).toBe(plain.filter((t) => t === 1).length); // only those moved
    const back = firstTargets((client) => {
      client.onUnreachable(1, 0);
      client.onReachable(1);
    });
    expect(back).toEqual(plain);
  });

  test("a lane waiting on the refused replica moves on at once; lanes waiting elsewhere stay", () => {
    // A seed whose first operation is a large put: register, create_upload, then blocks on lanes.
    for (let seed = 1; seed < 500; seed++) {
      const { client, sent, problems } = harness(seed);
      client.wake(0);
      const first = sent[0]!.message;
      if (first.header.operation !== Operation.register) continue;
      client.onMessage(replyTo(first, { replica: sent[0]!.replica, result: Result.ok, session: 9 }), sent[0]!.replica, 10);
      const create = sent[1]!;
      if (create.message.header.operation !== Operation.create_upload) continue;
      const body = encodeCreateUploadReply({ upload_id: 1, block_size_max: 16, object_size_max: 1 << 20 });
      client.onMessage(replyTo(create.message, { replica: create.replica, result: Result.ok, op: 2 }, body), create.replica, 20);
      client.wake(20);
      const blocks = sent.slice(2);
      expect(blocks.length).toBeGreaterThan(0);
      expect(blocks.every((b) => b.message.header.operation === Operation.write_block)).toBe(true);
      const refused = blocks[0]!.replica;
      const waiting = blocks.filter((b) => b.replica === refused).length;
      client.onUnreachable(refused, 30);
      const moved = sent.slice(2 + blocks.length);
      expect(moved.length).toBe(waiting);
      expect(moved.every((b) => b.replica !== refused && b.message.header.operation === Operation.write_block)).toBe(true);
      expect(moved.map((b) => b.message.header.client)).toEqual(
        blocks.filter((b) => b.replica === refused).map((b) => b.message.header.client),
      );
      expect(problems).toEqual([]);
      return;
    }
    throw new Error("no seed below 500 starts with a large put");
  });
});
