/** The root of every cluster's hash chain, and the digest of a replica's logical state. */
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";
import { Command, Header, finalize } from "../net/codec.ts";
import type { ObjectStore } from "../store/object_store.ts";
import type { ClientTable } from "./client_table.ts";

/** The prepare at op 0: a fixed header every replica of a cluster derives identically, so the
 * hash chain has a common root. */
export function rootPrepare(cluster: bigint, replica_count: number): Header {
  const h = new Header();
  h.command = Command.prepare;
  h.cluster = cluster;
  h.replica_count = replica_count;
  const root = finalize(h).header;
  // Every replica of the cluster must derive the same root: nothing but cluster and size may shape it.
  assert(
    root.op === 0 &&
      root.view === 0 &&
      root.cluster === cluster &&
      root.replica_count === replica_count &&
      root.command === Command.prepare,
    "root prepare does not read back as built",
  );
  return root;
}

export function stateDigest(store: ObjectStore, clients: ClientTable): bigint {
  // The revision is hashed as a float64: a NaN or negative revision would hash but mean nothing.
  assert(Number.isSafeInteger(store.revision) && store.revision >= 0, () => `store revision ${store.revision}`);
  const large = store.large;
  const uploads_sum = large.digest();
  if (uploads_sum !== 0n || large.upload_counter !== 0 || large.block_counter !== 0) {
    // A state that ever had an upload (LARGE_OBJECTS.md §9.1): 48 bytes, counters included. A state
    // that never did keeps the 24-byte formula, so old data directories verify unchanged.
    const wide = new Uint8Array(48);
    const w = new DataView(wide.buffer);
    w.setBigUint64(0, store.digest(), true);
    w.setFloat64(8, store.revision, true);
    w.setBigUint64(16, clients.digest(), true);
    w.setBigUint64(24, uploads_sum, true);
    w.setFloat64(32, large.upload_counter, true);
    w.setFloat64(40, large.block_counter, true);
    return checksum(wide);
  }
  const bytes = new Uint8Array(24);
  const v = new DataView(bytes.buffer);
  v.setBigUint64(0, store.digest(), true);
  v.setFloat64(8, store.revision, true);
  v.setBigUint64(16, clients.digest(), true);
  return checksum(bytes);
}
