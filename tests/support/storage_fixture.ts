/**
 * Storage tests that drive FileStorage directly (no replica): a freshly formatted data directory,
 * and prepares that chain onto it.
 */
import { expect } from "bun:test";
import { FileStorage, type StorageOptions } from "../../lib/storage/file_storage.ts";
import type { FileSystem } from "../../lib/storage/fs.ts";
import { Command, Header, finalize, type Message } from "../../lib/net/codec.ts";
import { encodeBatch } from "../../lib/vsr/batch.ts";
import { ObjectStore } from "../../lib/store/object_store.ts";
import { ClientTable } from "../../lib/vsr/client_table.ts";
import { rootPrepare, stateDigest } from "../../lib/vsr/root.ts";
import type { VsrState } from "../../lib/vsr/storage.ts";
import { Operation } from "../../lib/store/operations.ts";

/** Formats an empty directory as a replica would (view 0, the root checkpoint) and flushes it. */
export function formatStorage(
  fs: FileSystem,
  options: StorageOptions,
  clients_max: number,
): { storage: FileStorage; state: VsrState; root: Header } {
  const storage = new FileStorage(fs, options);
  expect(storage.recover(clients_max).state).toBeNull();
  const root = rootPrepare(options.cluster, options.replica_count);
  const digest = stateDigest(new ObjectStore(), new ClientTable(clients_max));
  const state: VsrState = {
    incarnation: 7,
    view: 0,
    log_view: 0,
    commit_max: 0,
    view_headers: [],
    checkpoint: { op: 0, digest, checksum: root.checksum },
  };
  storage.writeState(state);
  storage.flush();
  return { storage, state, root };
}

/** A prepare of one register request at `op`, chained onto `parent`. */
export function registerPrepare(options: StorageOptions, op: number, parent: bigint, view = 0): Message {
  const h = new Header();
  h.command = Command.prepare;
  h.cluster = options.cluster;
  h.replica_count = options.replica_count;
  h.op = op;
  h.parent = parent;
  h.view = view;
  h.timestamp = op * 1000;
  h.request = 1;
  return finalize(h, encodeBatch([{ client: 0xc11en, session: 0, request: op, operation: Operation.register, body: new Uint8Array(0) }]));
}
