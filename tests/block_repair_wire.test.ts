/**
 * request_block (22) and block (23) reach the value keeper through a replica and the wire
 * (docs/PROTOCOL.md §4.4): frames with those commands pass the frame checks, a request for a
 * block the receiver does not hold goes unanswered, an answer nobody asked for is ignored, and a
 * malformed one is dropped; none is a protocol violation or trips an assertion.
 */
import { expect, test } from "bun:test";
import { Command, Header, encode, finalize } from "../lib/net/codec.ts";
import { Result } from "../lib/store/operations.ts";
import { TestClient, TestCluster } from "../sim/test_cluster.ts";

test("block repair messages are dispatched: unheld blocks are not served, unwanted ones ignored, malformed ones dropped", () => {
  const cluster = new TestCluster(3);
  cluster.startAll();
  cluster.until(() => cluster.primary() !== null, 5000, "a primary");
  const client = new TestClient(cluster, 0xb10cn);
  client.register();
  expect(client.put("k", "v").header.result).toBe(Result.ok);
  cluster.tick(20);
  const primary = cluster.primary()!;
  const p = primary.replica;
  const b = [0, 1, 2].find((i) => i !== p)!;
  const frame = (command: Command, op: number, body = new Uint8Array(0)): Uint8Array => {
    const h = new Header();
    h.command = command;
    h.cluster = cluster.config.cluster;
    h.replica = b;
    h.replica_count = cluster.replica_count;
    h.incarnation = primary.incarnation;
    h.view = primary.describe().view;
    h.op = op;
    h.context = 0x5eedn;
    return encode(finalize(h, body));
  };
  const dropped = primary.stats.messages_dropped;
  const sent = cluster.sent.length;
  for (const bytes of [frame(Command.request_block, 1), frame(Command.block, 1, new Uint8Array([1, 2, 3]))]) {
    cluster.queue.push({ from: b, to: p, bytes });
    cluster.deliver();
  }
  expect(cluster.sent.slice(sent).filter(({ message }) => message.header.command === Command.block)).toEqual([]);
  expect(primary.stats.messages_dropped).toBe(dropped);
  cluster.queue.push({ from: b, to: p, bytes: frame(Command.block, 0, new Uint8Array([1])) });
  cluster.deliver();
  expect(primary.stats.messages_dropped).toBe(dropped + 1);
  for (const r of cluster.replicas) if (r !== null) expect(r.stats.protocol_violations).toBe(0);
  expect(client.put("k", "w").header.result).toBe(Result.ok);
});
