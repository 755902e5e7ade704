/**
 * Builds a store from recorded state (a checkpoint chain, a state sync): counters, then uploads,
 * then blocks (pending ones fill their uploads' slots), then object versions (which claim their
 * blocks). Records come from a disk or a peer, so anything that does not fit (a block of an upload
 * that is not there, a block two versions claim, a block nobody owns) makes the whole state null:
 * the caller treats its source as damaged, never a half-loaded state.
 */
import { assert } from "../util/assert.ts";
import { ObjectStore, type ObjectEntry } from "../store/object_store.ts";
import type { Block, Upload } from "../store/uploads.ts";

export interface RecordedState {
  /** Each key once. */
  objects: Iterable<[string, ObjectEntry]>;
  uploads: Iterable<Upload>;
  blocks: Iterable<Block>;
  upload_counter: number;
  block_counter: number;
}

export function restoreStore(state: RecordedState): ObjectStore | null {
  const store = new ObjectStore();
  const large = store.large;
  if (!large.restoreCounters(state.upload_counter, state.block_counter)) return null;
  for (const upload of state.uploads) if (!large.restoreUpload(upload)) return null;
  for (const block of state.blocks) if (!large.restoreBlock(block)) return null;
  for (const [key, entry] of state.objects) if (!store.restoreEntry(key, entry)) return null;
  if (!store.restoreDone()) return null; // and the loaded state is the recorded one: nothing changed since
  assert(store.large.upload_counter === state.upload_counter && store.large.block_counter === state.block_counter, "restore: counters");
  return store;
}
