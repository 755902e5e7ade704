/**
 * Random superblock records for the superblock tests (lib/storage/superblock.test.ts and
 * superblock_codec.test.ts).
 */
import { Command, Header, finalize } from "../../lib/net/codec.ts";
import { view_headers_max } from "../../lib/constants.ts";
import type { SuperblockRecord } from "../../lib/storage/superblock_codec.ts";
import type { Prng } from "../../lib/util/prng.ts";

export function viewHeaders(prng: Prng, count: number): Header[] {
  const headers: Header[] = [];
  let parent = prng.u64();
  const base = prng.int(1000);
  for (let i = 0; i < count; i++) {
    const h = new Header();
    h.command = Command.prepare;
    h.cluster = 0xabcn;
    h.op = base + i;
    h.parent = parent;
    h.view = prng.int(10);
    h.timestamp = prng.u32();
    h.checksum_body = prng.u64();
    finalize(h, new Uint8Array(prng.int(16)));
    parent = h.checksum;
    headers.push(h);
  }
  return headers;
}

export function superblockRecord(prng: Prng, sequence: number, headers = prng.int(view_headers_max + 1)): SuperblockRecord {
  return {
    sequence,
    identity: { cluster: prng.u64(), replica: prng.int(15), replica_count: prng.range(1, 15) },
    state: {
      incarnation: prng.u32(),
      view: prng.u32(),
      log_view: prng.u32(),
      commit_max: prng.u32() * 2 ** 20,
      checkpoint: { op: prng.u32() * 2 ** 10, digest: prng.u64(), checksum: prng.u64() },
      view_headers: viewHeaders(prng, headers),
    },
  };
}
