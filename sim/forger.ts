/**
 * Forged replica messages: well-formed (valid checksums, the right cluster id and incarnation, a
 * sender index in range), with random commands, views near the current one, and random ops,
 * commit numbers, checkpoints, nonces and bodies. What a buggy or hostile host on the replicas'
 * network could send before connections are authenticated (issue 16). A replica can tell them
 * from real ones only by what its own log confirms (docs/PROTOCOL.md §4.4, commit numbers): the
 * simulator sends them in some seeds, tests/fuzz_forged.test.ts to real processes.
 *
 * Bodies are random, as a fuzzer's are: a do_view_change or start_view built from real prepare
 * headers would be a vote or a new view from a replica that never sent it, which breaks quorum
 * intersection itself; only authenticating the sender (issue 16) stops that, and the simulator
 * found exactly that when it tried (a forged vote let a view drop a committed op). Block repair
 * frames (request_block, block) are the exception: half of them are well-formed and name a real
 * block of the receiver, since they claim nothing about the log and only a block's checksum
 * decides what a replica takes from them.
 */
import { Command, Header, encode, finalize } from "../lib/net/codec.ts";
import type { Prng } from "../lib/util/prng.ts";

/** Every command a replica sends to another. */
export const replica_commands = [
  Command.ping,
  Command.pong,
  Command.prepare,
  Command.prepare_ok,
  Command.commit,
  Command.commit_ok,
  Command.start_view_change,
  Command.do_view_change,
  Command.start_view,
  Command.request_start_view,
  Command.request_headers,
  Command.headers,
  Command.request_prepare,
  Command.request_sync,
  Command.sync_chunk,
  Command.request_value,
  Command.value,
  Command.request_block,
  Command.block,
];

/** A live block of the receiver's: a forged repair frame may name it (its id and checksum). */
export interface ForgedBlock {
  id: number;
  checksum: bigint;
  size: number;
}

/** What a forger knows of the cluster: its identity and roughly where it is. */
export interface ForgeTarget {
  cluster: bigint;
  replica_count: number;
  incarnation: number;
  view: number;
  /** The cluster's commit number lately, so some forged numbers land near the real ones. */
  op: number;
  /** The receiver's block counter and live blocks, so some forged block repair frames name a real
   * block or one about to be written (absent: ids near 1). */
  blocks?: { counter: number; live: readonly ForgedBlock[] };
}

/** A number near `around` (sometimes far above it, sometimes 0). */
function nearby(prng: Prng, around: number): number {
  const roll = prng.int(4);
  if (roll === 0) return prng.int(1_000_000);
  if (roll === 1) return 0;
  return Math.max(0, around + prng.int(64) - 32);
}

/** A forged message to `receiver`, as if from another replica. */
export function forgedReplicaMessage(prng: Prng, target: ForgeTarget, receiver: number, timestamp_ms: number): Uint8Array {
  const h = new Header();
  h.command = prng.pick(replica_commands);
  h.cluster = target.cluster;
  h.incarnation = target.incarnation;
  h.replica = (receiver + 1 + prng.int(target.replica_count - 1)) % target.replica_count;
  h.replica_count = target.replica_count;
  h.view = Math.max(0, target.view + prng.pick([-1, 0, 0, 0, 1, 2]));
  h.log_view = prng.chance(0.5) ? h.view : prng.int(h.view + 1);
  h.op = nearby(prng, target.op);
  h.commit = prng.chance(0.5) ? nearby(prng, target.op) : prng.int(h.op + 1);
  h.checkpoint_op = prng.chance(0.5) ? 0 : nearby(prng, target.op);
  h.checkpoint_digest = prng.u64();
  h.context = prng.u64();
  h.parent = prng.u64();
  h.client = prng.u64();
  h.session = prng.int(1000);
  h.request = prng.int(4);
  h.operation = prng.int(3);
  h.timestamp = timestamp_ms;
  let body = randomBytes(prng, prng.chance(0.5) ? 0 : prng.int(513));
  if ((h.command === Command.request_block || h.command === Command.block) && prng.chance(0.5)) body = blockRepair(prng, h, target);
  return encode(finalize(h, body));
}

function randomBytes(prng: Prng, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = prng.int(256);
  return bytes;
}

/**
 * A well-formed request_block or block (docs/PROTOCOL.md §4.4: `op` the block id, `context` its
 * checksum; a request's body empty, a block's its bytes): often a live block of the receiver with
 * its real checksum, so a request is answered with real bytes to a replica that never asked, and a
 * block claims to repair a real block with bytes of its size that are not its own. Sets h's fields;
 * returns the body.
 */
function blockRepair(prng: Prng, h: Header, target: ForgeTarget): Uint8Array {
  const live = target.blocks?.live ?? [];
  const real = live.length > 0 && prng.chance(0.6) ? prng.pick(live) : null;
  h.op = real?.id ?? 1 + prng.int((target.blocks?.counter ?? 0) + 8);
  h.context = real !== null && prng.chance(0.8) ? real.checksum : prng.u64();
  if (h.command === Command.request_block) return new Uint8Array(0);
  return randomBytes(prng, real !== null && prng.chance(0.5) ? real.size : 1 + prng.int(512));
}
