/**
 * Checkpoint version 3 (docs/STORAGE.md §7): chunked objects, metadata, open uploads with their
 * pending blocks, and the counters survive a base and a chain of deltas; damage gives null.
 */
import { describe, expect, test } from "bun:test";
import { applyChain, baseContents, decodeCheckpoint, deltaRecords, encodeCheckpoint, type CheckpointContents } from "./checkpoint_file.ts";
import { ObjectStore } from "../store/object_store.ts";
import { ClientTable } from "../vsr/client_table.ts";
import { Command, Header, finalize } from "../net/codec.ts";
import { stateDigest } from "../vsr/root.ts";
import type { CheckpointMeta } from "../vsr/storage.ts";
import { checksum } from "../util/checksum.ts";
import { Prng } from "../util/prng.ts";
import { LargeDisk, stateOf } from "../../tests/support/large_state.ts";

const clients_max = 4;

function meta(op: number, store: ObjectStore, clients: ClientTable, previous: CheckpointMeta | null): CheckpointMeta {
  const anchor = new Header();
  anchor.command = Command.prepare;
  anchor.op = op;
  finalize(anchor, new Uint8Array(8));
  const id = { op, digest: stateDigest(store, clients), checksum: anchor.checksum };
  return { id, anchor, previous: previous?.id ?? id };
}

function deltaContents(checkpoint: CheckpointMeta, parent: CheckpointMeta, base_op: number, store: ObjectStore, clients: ClientTable) {
  const contents: CheckpointContents = {
    checkpoint,
    link: { kind: "delta", parent_op: parent.id.op, base_op },
    revision: store.revision,
    segments: store.segments(),
    sessions: clients.entries(),
    records: deltaRecords(store, store.takeChanges()),
  };
  return contents;
}

/** The loaded state must be the live one: digest, every entry, upload, block and location. */
function expectLoaded(files: Uint8Array[], store: ObjectStore, clients: ClientTable, at: CheckpointMeta): void {
  const chain = files.map((bytes) => decodeCheckpoint(bytes, clients_max));
  expect(chain.every((c) => c !== null)).toBe(true);
  const state = applyChain(
    chain.map((c) => c!),
    clients_max,
  );
  expect(state).not.toBeNull();
  state!.store.invariants();
  expect(stateDigest(state!.store, state!.clients)).toBe(at.id.digest);
  expect(stateOf(state!.store)).toEqual(stateOf(store));
  expect(chain[chain.length - 1]!.segments).toEqual(store.segments());
}

describe("checkpoint version 3", () => {
  test("a base round trips chunked objects, metadata, uploads with pending blocks, and the counters", () => {
    const seen = { chunked: 0, meta: 0, md5: 0, pending: 0 };
    for (let seed = 1; seed <= 20; seed++) {
      const d = new LargeDisk(new Prng(seed));
      d.run(60);
      const clients = new ClientTable(clients_max);
      const at = meta(64, d.store, clients, null);
      const bytes = encodeCheckpoint(baseContents(at, d.store, clients));
      expect(new DataView(bytes.buffer).getUint32(12, true)).toBe(3);
      expectLoaded([bytes], d.store, clients, at);
      // Deterministic: the loaded state encodes to the same bytes.
      const again = applyChain([decodeCheckpoint(bytes, clients_max)!], clients_max)!;
      expect(encodeCheckpoint(baseContents(at, again.store, again.clients))).toEqual(bytes);
      for (const [, e] of d.store.all()) {
        seen.chunked += e.chunks !== undefined ? 1 : 0;
        seen.meta += e.meta !== undefined ? 1 : 0;
        seen.md5 += e.meta?.md5 != null ? 1 : 0;
      }
      for (const u of d.store.large.allUploads()) seen.pending += u.slots.size;
    }
    // The states exercised what the format carries.
    expect(Object.values(seen).every((n) => n > 5)).toBe(true);
  });

  test("a base and deltas (block moves, touches, deaths, closed uploads) load to the live state at every step", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const d = new LargeDisk(new Prng(seed));
      const clients = new ClientTable(clients_max);
      d.run(30);
      let at = meta(16, d.store, clients, null);
      const files = [encodeCheckpoint(baseContents(at, d.store, clients))];
      d.store.takeChanges();
      for (let i = 1; i <= 6; i++) {
        d.run(d.prng.range(1, 25));
        const next = meta(16 * (i + 1), d.store, clients, at);
        files.push(encodeCheckpoint(deltaContents(next, at, 16, d.store, clients)));
        at = next;
        expectLoaded(files, d.store, clients, at);
      }
    }
  });

  test("a state that never had an upload, with inline objects without metadata, is written as version 2, as before", () => {
    const store = new ObjectStore();
    const clients = new ClientTable(clients_max);
    store.set("a", { version: 1, timestamp: 5, size: 3, checksum: 7n, segment: 2, offset: 8 });
    store.set("b", { version: 2, timestamp: 6, size: 0, checksum: 9n, segment: 3, offset: 0 });
    const version = (): number => {
      const at = meta(16, store, clients, null);
      const bytes = encodeCheckpoint(baseContents(at, store, clients));
      expectLoaded([bytes], store, clients, at);
      return new DataView(bytes.buffer).getUint32(12, true);
    };
    expect(version()).toBe(2);
    // Metadata needs version 3; so does any upload ever opened (the counters are state).
    store.set("c", {
      version: 3,
      timestamp: 7,
      size: 1,
      checksum: 1n,
      segment: 3,
      offset: 8,
      meta: { content_type: "x/y", user_meta: new Uint8Array(0), md5: null },
    });
    expect(version()).toBe(3);
    store.remove("c");
    expect(version()).toBe(2);
    store.large.removeUpload(store.large.createUpload("d", 8, null, { content_type: "", user_meta: new Uint8Array(0) }, 1));
    expect(version()).toBe(3);
  });

  test("damage in any field gives null, and bytes that pass the checksum never half-load", () => {
    const d = new LargeDisk(new Prng(11));
    d.run(60);
    const clients = new ClientTable(clients_max);
    const at = meta(64, d.store, clients, null);
    const bytes = encodeCheckpoint(baseContents(at, d.store, clients));
    const prng = new Prng(12);
    for (let i = 0; i < bytes.length; i++) {
      const damaged = bytes.slice();
      damaged[i]! ^= 1 << prng.int(8);
      expect(decodeCheckpoint(damaged, clients_max)).toBeNull();
    }
    // The same damage with the checksum made to match (a bug, or a crafted file): the decoder and
    // the chain loader refuse it or load a whole, consistent state, and never throw.
    let refused = 0;
    for (let i = 256; i < bytes.length; i++) {
      const damaged = bytes.slice();
      damaged[i]! ^= 1 << prng.int(8);
      new DataView(damaged.buffer).setBigUint64(0, checksum(damaged.subarray(8)), true);
      const contents = decodeCheckpoint(damaged, clients_max);
      const state = contents === null ? null : applyChain([contents], clients_max);
      if (state === null) refused += 1;
      else state.store.invariants();
    }
    expect(refused).toBeGreaterThan(0);
  });

  test("a chain whose records do not make a state gives null", () => {
    const d = new LargeDisk(new Prng(3));
    while (d.store.large.allUploads().every((u) => u.slots.size === 0) || [...d.store.all()].every(([, e]) => !e.chunks)) d.run(5);
    const clients = new ClientTable(clients_max);
    const at = meta(16, d.store, clients, null);
    const base = decodeCheckpoint(encodeCheckpoint(baseContents(at, d.store, clients)), clients_max)!;
    const next = meta(32, d.store, clients, at);
    const chunked = [...d.store.all()].find(([, e]) => e.chunks !== undefined)!;
    const pending = d.store.large.allUploads().find((u) => u.slots.size > 0)!;
    // A delta that removes a block a version still names, or an upload whose blocks remain.
    for (const records of [
      { objects: new Map(), uploads: new Map(), blocks: new Map([[chunked[1].chunks!.blocks[0]!, null]]) },
      { objects: new Map(), uploads: new Map([[pending.id, null]]), blocks: new Map() },
    ]) {
      const delta: CheckpointContents = {
        ...deltaContents(next, at, 16, d.store, clients),
        records: { ...records, upload_counter: d.store.large.upload_counter, block_counter: d.store.large.block_counter },
      };
      const decoded = decodeCheckpoint(encodeCheckpoint(delta), clients_max);
      expect(decoded).not.toBeNull();
      expect(applyChain([base, decoded!], clients_max)).toBeNull();
    }
  });
});
