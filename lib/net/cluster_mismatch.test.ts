import { describe, expect, test } from "bun:test";
import { header_size, sender_client } from "../constants.ts";
import { Result } from "../store/operations.ts";
import { Command, Header, encode, finalize } from "./codec.ts";
import { answersClusterMismatch, clusterMismatchOf, clusterMismatchReply } from "./cluster_mismatch.ts";
import { FrameReader } from "./frame_reader.ts";

const theirs = 0x1111_2222_3333_4444n;
const ours = 0xaaaa_bbbb_cccc_ddddn;

function header(fields: Partial<Header>): Header {
  const h = Object.assign(new Header(), { cluster: theirs, replica: sender_client, command: Command.request }, fields);
  return finalize(h).header;
}

describe("cluster mismatch answers", () => {
  test("only a client's request or status request, or a replica's message, is answered", () => {
    expect(answersClusterMismatch(header({}))).toBe(true);
    expect(answersClusterMismatch(header({ command: Command.request_status }))).toBe(true);
    expect(answersClusterMismatch(header({ command: Command.prepare }))).toBe(false); // a client does not send prepares
    expect(answersClusterMismatch(header({ command: Command.prepare, replica: 2 }))).toBe(true);
    expect(answersClusterMismatch(header({ command: Command.ping, replica: 15 }))).toBe(false);
  });

  test("the answer passes the sender's own frame checks, matches its request, and names our cluster", () => {
    const request = header({ client: 77n, request: 5, operation: 2, session: 9 });
    const reply = clusterMismatchReply(request, ours);
    const bytes = encode(reply);
    expect(bytes.length).toBe(header_size + 8);
    const reader = new FrameReader({ cluster: theirs, replica_count: 1 });
    reader.push(bytes);
    const decoded = reader.next()!;
    expect(decoded.header.command).toBe(Command.reply);
    expect(decoded.header.result).toBe(Result.wrong_cluster);
    expect([decoded.header.client, decoded.header.request, decoded.header.operation, decoded.header.session]).toEqual([77n, 5, 2, 9]);
    expect(clusterMismatchOf(decoded)).toBe(ours);
  });

  test("other replies are not mistaken for one; a malformed body still means another cluster", () => {
    const ok = finalize(Object.assign(new Header(), { command: Command.reply, result: Result.ok }));
    expect(clusterMismatchOf(ok)).toBeUndefined();
    const short = finalize(Object.assign(new Header(), { command: Command.reply, result: Result.wrong_cluster }), new Uint8Array(3));
    expect(clusterMismatchOf(short)).toBeNull();
  });
});
