/** Blocks at rest (docs/LARGE_OBJECTS.md §9.4): read, scrubbed, repaired by id and compacted by
 * the value keeper, over states built by executeLargeWrite (value_keeper_fixture.ts). */
import { describe, expect, test } from "bun:test";
import { ValueKeeper, compaction_bytes_per_round, compaction_interval_ticks, type ValueKeeperHost } from "./value_keeper.ts";
import { value_repairs_max } from "./value_repair.ts";
import { buildBlock, buildRequestBlock, readBlock, readRequestBlock, type Envelope } from "./messages.ts";
import { BlockDisk, RecordingHost, blockBytes } from "./value_keeper_fixture.ts";
import { Command } from "../net/codec.ts";
import type { Block } from "../store/uploads.ts";

class BlockHost extends RecordingHost implements ValueKeeperHost {
  constructor(
    readonly storage: BlockDisk = new BlockDisk(),
    replica = 0,
  ) {
    super(replica, 11);
  }
  get store(): BlockDisk["store"] {
    return this.storage.store;
  }
  block(id: number): Block {
    return this.store.large.block(id)!;
  }
}

/** Two replicas' disks with the same logical state: a chunked object "big" of three blocks, and
 * an open upload of one block. */
function twin(): { host: BlockHost; peer: BlockHost; blocks: readonly number[]; pending: number } {
  const build = (): BlockDisk => {
    const disk = new BlockDisk();
    disk.upload(
      "big",
      [1, 2, 3].map((s) => blockBytes(100, s)),
    );
    disk.openUpload("open", [blockBytes(50, 4)]);
    return disk;
  };
  const host = new BlockHost(build(), 0);
  const peer = new BlockHost(build(), 2);
  const blocks = host.store.get("big")!.chunks!.blocks;
  const pending = [...host.store.large.upload(host.store.large.allUploads()[0]!.id)!.slots.values()][0]!;
  return { host, peer, blocks, pending };
}

/** Delivers what `from` sent to `to` (and only that), as the network would. */
function deliver(from: BlockHost, to: BlockHost, keeper: ValueKeeper): void {
  for (const { to: index, message } of from.sent.splice(0)) {
    expect(index).toBe(to.replica);
    if (message.header.command === Command.request_block) keeper.onRequestBlock(message);
    else if (message.header.command === Command.block) keeper.onBlock(message);
    else throw new Error(`unexpected ${Command[message.header.command]}`);
  }
}

const from_peer: Envelope = { cluster: 1n, replica: 2, replica_count: 3, view: 1, incarnation: 5 };

describe("ValueKeeper and blocks", () => {
  test("readBlock returns a block's verified bytes; a damaged block reads as null and is asked of a peer by id once", () => {
    const { host, blocks } = twin();
    const keeper = new ValueKeeper(host);
    const block = host.block(blocks[1]!);
    expect(keeper.readBlock(block)).toEqual(blockBytes(100, 2));
    host.storage.damage(block);
    expect(keeper.readBlock(block)).toBeNull();
    expect(keeper.readBlock(block)).toBeNull();
    expect(keeper.repairing).toBe(1);
    expect(host.sent.length).toBe(1);
    const { to, message } = host.sent[0]!;
    expect(to === 1 || to === 2).toBe(true);
    expect(message.header.command).toBe(Command.request_block);
    expect(readRequestBlock(message)).toEqual({ id: block.id, checksum: block.checksum });
  });

  test("the scrubber finds a damaged block of an object, a peer answers, and the repaired copy is written and relocated", () => {
    const { host, peer, blocks } = twin();
    const keeper = new ValueKeeper(host);
    const peer_keeper = new ValueKeeper(peer);
    const damaged = host.block(blocks[2]!);
    host.storage.damage(damaged);
    for (let tick = 0; host.stats.scrub_passes === 0; tick++) keeper.scrub(tick, true);
    // Every block was read: three of the object and one of the upload.
    expect(host.stats.values_scrubbed).toBe(4);
    expect(keeper.repairing).toBe(1);
    const request = host.sent[0]!.message;
    host.sent[0]!.to = peer.replica; // whichever peer it picked: the twin answers
    deliver(host, peer, peer_keeper);
    expect(readBlock(peer.sent[0]!.message)).toEqual({ id: damaged.id, checksum: damaged.checksum, data: blockBytes(100, 3) });
    peer.sent[0]!.to = host.replica;
    deliver(peer, host, keeper);
    expect(readRequestBlock(request)).toEqual({ id: damaged.id, checksum: damaged.checksum });
    expect(keeper.repairing).toBe(0);
    const moved = host.block(damaged.id);
    expect(moved.segment).not.toBe(damaged.segment);
    expect(keeper.readBlock(moved)).toEqual(blockBytes(100, 3));
    expect(host.dropped).toEqual([]);
    host.store.invariants();
  });

  test("a pending block damaged at rest is found and repaired too", () => {
    const { host, peer, pending } = twin();
    const keeper = new ValueKeeper(host);
    host.storage.damage(host.block(pending));
    for (let tick = 0; host.stats.scrub_passes === 0; tick++) keeper.scrub(tick, true);
    expect(readRequestBlock(host.sent[0]!.message)).toEqual({ id: pending, checksum: host.block(pending).checksum });
    new ValueKeeper(peer).onRequestBlock(host.sent[0]!.message);
    keeper.onBlock(peer.sent[0]!.message);
    expect(keeper.repairing).toBe(0);
    expect(keeper.readBlock(host.block(pending))).toEqual(blockBytes(50, 4));
  });

  test("a block reply with wrong bytes is dropped and the repair stays outstanding", () => {
    const { host, blocks } = twin();
    const keeper = new ValueKeeper(host);
    const block = host.block(blocks[0]!);
    const other = host.block(blocks[1]!);
    host.storage.damage(block);
    keeper.readBlock(block);
    const wrong = blockBytes(100, 1);
    wrong[50] = wrong[50]! ^ 1;
    keeper.onBlock(buildBlock(from_peer, { id: block.id, checksum: block.checksum, data: wrong }));
    keeper.onBlock(buildBlock(from_peer, { id: block.id, checksum: block.checksum, data: blockBytes(99, 1) }));
    expect(host.dropped).toEqual(["repaired block does not match its checksum", "repaired block does not match its checksum"]);
    expect(keeper.repairing).toBe(1);
    expect(host.block(block.id)).toBe(block);
    // Bytes nobody asked for (another block, another checksum) are ignored, not dropped.
    keeper.onBlock(buildBlock(from_peer, { id: other.id, checksum: other.checksum, data: blockBytes(100, 2) }));
    keeper.onBlock(buildBlock(from_peer, { id: block.id, checksum: block.checksum ^ 1n, data: wrong }));
    expect(host.dropped.length).toBe(2);
    expect(host.block(other.id)).toBe(other);
    expect(keeper.repairing).toBe(1);
  });

  test("a peer that does not hold the block, holds another checksum, or whose copy is damaged does not answer", () => {
    const { host, peer, blocks } = twin();
    const keeper = new ValueKeeper(peer);
    const block = host.block(blocks[0]!);
    keeper.onRequestBlock(buildRequestBlock(host.envelope(1), { id: 999, checksum: block.checksum }));
    keeper.onRequestBlock(buildRequestBlock(host.envelope(1), { id: block.id, checksum: block.checksum ^ 1n }));
    expect(peer.sent).toEqual([]);
    keeper.onRequestBlock(buildRequestBlock(host.envelope(1), { id: block.id, checksum: block.checksum }));
    expect(peer.sent.length).toBe(1);
    expect(peer.sent[0]!.to).toBe(0);
    peer.storage.damage(peer.block(block.id));
    keeper.onRequestBlock(buildRequestBlock(host.envelope(1), { id: block.id, checksum: block.checksum }));
    expect(peer.sent.length).toBe(1);
    // A blank replica has no state to serve from.
    peer.status = "blank";
    keeper.onRequestBlock(buildRequestBlock(host.envelope(1), { id: blocks[1]!, checksum: peer.block(blocks[1]!).checksum }));
    expect(peer.sent.length).toBe(1);
  });

  test("a repaired block that finds the disk full goes to no_space and stays wanted; one that died meanwhile is forgotten", () => {
    const { host, blocks } = twin();
    const keeper = new ValueKeeper(host);
    const block = host.block(blocks[0]!);
    host.storage.damage(block);
    keeper.readBlock(block);
    host.storage.full = true;
    keeper.onBlock(buildBlock(from_peer, { id: block.id, checksum: block.checksum, data: blockBytes(100, 1) }));
    expect(host.full_errors.length).toBe(1);
    expect(keeper.repairing).toBe(1);
    host.sent.length = 0;
    keeper.repairValues();
    expect(host.sent.map(({ message }) => readRequestBlock(message))).toEqual([{ id: block.id, checksum: block.checksum }]);
    host.storage.full = false;
    host.storage.delete("big");
    host.sent.length = 0;
    keeper.repairValues();
    expect(host.sent).toEqual([]);
    expect(keeper.repairing).toBe(0);
  });

  test("value and block repairs share value_repairs_max", () => {
    const disk = new BlockDisk();
    disk.upload(
      "many",
      Array.from({ length: value_repairs_max + 1 }, (_, i) => blockBytes(8, i)),
    );
    const host = new BlockHost(disk);
    const keeper = new ValueKeeper(host);
    for (const id of disk.store.get("many")!.chunks!.blocks) {
      disk.damage(host.block(id));
      keeper.readBlock(host.block(id));
    }
    expect(keeper.repairing).toBe(value_repairs_max);
    expect(host.sent.length).toBe(value_repairs_max);
    keeper.invariants();
  });

  test("compaction moves the blocks out of a mostly-dead segment, and the store's invariants hold after", () => {
    const disk = new BlockDisk();
    // Three objects' blocks share segment 500; two of the objects are deleted, so it is mostly dead.
    disk.upload(
      "a",
      [1, 2].map((s) => blockBytes(40, s)),
      500,
    );
    disk.upload(
      "b",
      [3, 4].map((s) => blockBytes(40, s)),
      500,
    );
    disk.upload(
      "c",
      [5, 6, 7].map((s) => blockBytes(40, s)),
      500,
    );
    disk.openUpload("open", [blockBytes(40, 8)], 500);
    disk.delete("a");
    disk.delete("c");
    const host = new BlockHost(disk);
    const keeper = new ValueKeeper(host);
    expect(disk.store.blocksIn(500).length).toBe(3);
    disk.candidate = 500;
    keeper.compact(compaction_interval_ticks, false);
    keeper.compact(compaction_interval_ticks + 1, true);
    expect(disk.store.blocksIn(500).length).toBe(3);
    keeper.compact(compaction_interval_ticks, true);
    expect(disk.store.blocksIn(500)).toEqual([]);
    expect(disk.store.liveBytesIn(500)).toBe(0);
    expect(host.stats.bytes_compacted).toBe(120);
    disk.store.invariants();
    // The bytes moved with them: every live block reads back intact from its new segment.
    const b = disk.store.get("b")!.chunks!.blocks;
    expect(keeper.readBlock(host.block(b[0]!))).toEqual(blockBytes(40, 3));
    expect(keeper.readBlock(host.block(b[1]!))).toEqual(blockBytes(40, 4));
  });

  test("compaction never copies a damaged block forward: it is repaired from a peer instead", () => {
    const disk = new BlockDisk();
    disk.upload(
      "a",
      [1, 2].map((s) => blockBytes(40, s)),
      500,
    );
    const host = new BlockHost(disk);
    const keeper = new ValueKeeper(host);
    const [first, second] = disk.store.get("a")!.chunks!.blocks;
    disk.damage(host.block(first!));
    disk.candidate = 500;
    keeper.compact(0, true);
    expect(disk.store.blocksIn(500)).toEqual([first]);
    expect(host.block(second!).segment).not.toBe(500);
    expect(keeper.repairing).toBe(1);
    expect(readRequestBlock(host.sent[0]!.message)).toEqual({ id: first, checksum: host.block(first!).checksum });
    expect(host.stats.bytes_compacted).toBe(40);
  });

  test("the compaction budget lets one block above compaction_bytes_per_round move, and stops after it", () => {
    const disk = new BlockDisk();
    const size = compaction_bytes_per_round + compaction_bytes_per_round / 2; // 1.5 MiB
    disk.upload("big", [blockBytes(size, 1), blockBytes(size, 2)], 500);
    const host = new BlockHost(disk);
    const keeper = new ValueKeeper(host);
    disk.candidate = 500;
    keeper.compact(0, true);
    expect(disk.store.blocksIn(500).length).toBe(1);
    expect(host.stats.bytes_compacted).toBe(size);
    keeper.compact(compaction_interval_ticks, true);
    expect(disk.store.blocksIn(500)).toEqual([]);
    disk.store.invariants();
    // A disk that is full stops compaction and goes to no_space.
    disk.upload("more", [blockBytes(100, 4)], 600);
    disk.candidate = 600;
    disk.full = true;
    keeper.compact(2 * compaction_interval_ticks, true);
    expect(disk.store.blocksIn(600).length).toBe(1);
    expect(host.full_errors.length).toBe(1);
  });
});
