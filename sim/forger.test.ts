import { describe, expect, test } from "bun:test";
import { Command, decode, type Message } from "../lib/net/codec.ts";
import { readBlock, readRequestBlock } from "../lib/vsr/messages.ts";
import { Prng } from "../lib/util/prng.ts";
import { forgedReplicaMessage, replica_commands, type ForgeTarget } from "./forger.ts";

const live = [
  { id: 3, checksum: 0x1234_5678_9abc_def0n, size: 40 },
  { id: 9, checksum: 0x0fed_cba9_8765_4321n, size: 200 },
];
const target: ForgeTarget = { cluster: 7n, replica_count: 3, incarnation: 5, view: 4, op: 100, blocks: { counter: 12, live } };

/** Forged frames to replica 0 until `count` block repair frames are collected; each must decode. */
function forgedRepairs(count: number, t: ForgeTarget): Message[] {
  const prng = new Prng(42);
  const out: Message[] = [];
  while (out.length < count) {
    const decoded = decode(forgedReplicaMessage(prng, t, 0, 1_000), t.cluster);
    if (!decoded.ok) throw new Error(`a forged frame does not decode: ${decoded.detail}`);
    const command = decoded.message.header.command;
    if (command === Command.request_block || command === Command.block) out.push(decoded.message);
  }
  return out;
}

/** The live block a frame names by id and checksum, if any. */
const named = (m: Message) => live.find((b) => b.id === m.header.op && b.checksum === m.header.context);

describe("forged block repair frames (request_block 22, block 23)", () => {
  test("are among the forged commands", () => {
    expect(replica_commands).toContain(Command.request_block);
    expect(replica_commands).toContain(Command.block);
  });

  test("are sometimes well-formed and name a live block with its checksum, sometimes random", () => {
    const frames = forgedRepairs(400, target);
    const requests = frames.filter((m) => m.header.command === Command.request_block);
    const blocks = frames.filter((m) => m.header.command === Command.block);
    // A well-formed request names a real block (its holder sends its bytes to a replica that never
    // asked); a malformed one is ignored.
    expect(requests.some((m) => named(m) !== undefined && typeof readRequestBlock(m) !== "string")).toBe(true);
    expect(requests.some((m) => typeof readRequestBlock(m) === "string")).toBe(true);
    // A block naming a real one carries bytes of its size that are not its bytes.
    expect(blocks.some((m) => typeof readBlock(m) !== "string" && m.body.length === named(m)?.size)).toBe(true);
    expect(blocks.some((m) => typeof readBlock(m) !== "string" && named(m) === undefined)).toBe(true);
    // Ids not taken from a live block are often near the block counter (12).
    expect(frames.some((m) => named(m) === undefined && m.header.op >= 1 && m.header.op <= 20)).toBe(true);
  });

  test("without block knowledge, well-formed requests name small ids", () => {
    const { blocks: _, ...bare } = target;
    const requests = forgedRepairs(200, bare).filter((m) => m.header.command === Command.request_block);
    expect(requests.some((m) => typeof readRequestBlock(m) !== "string" && m.header.op <= 8)).toBe(true);
  });
});
