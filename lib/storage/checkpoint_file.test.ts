import { describe, expect, test } from "bun:test";
import {
  applyChain,
  baseContents,
  checkpointPath,
  decodeCheckpoint,
  deltaBytesAtLeast,
  deltaRecords,
  encodeCheckpoint,
  type CheckpointContents,
} from "./checkpoint_file.ts";
import { ObjectStore } from "../store/object_store.ts";
import { ClientTable, stored_reply_body_max } from "../vsr/client_table.ts";
import { Command, Header, finalize } from "../net/codec.ts";
import { stateDigest } from "../vsr/root.ts";
import type { CheckpointMeta } from "../vsr/storage.ts";
import { key_size_max } from "../constants.ts";
import { Prng } from "../util/prng.ts";

function binaryKey(prng: Prng): string {
  let key = "";
  const length = prng.chance(0.05) ? key_size_max : prng.range(1, 40);
  for (let i = 0; i < length; i++) key += String.fromCharCode(prng.pick([0x00, 0xff, prng.int(256)]));
  return key;
}

function build(prng: Prng, objects: number, sessions: number): { meta: CheckpointMeta; store: ObjectStore; clients: ClientTable } {
  const store = new ObjectStore();
  let version = 0;
  while (store.count < objects) {
    version += prng.range(1, 3);
    store.set(binaryKey(prng), {
      version,
      timestamp: prng.u32() * 1000,
      size: prng.int(1 << 20),
      checksum: prng.u64(),
      segment: prng.range(1, 50),
      offset: prng.u32() * 4,
    });
  }
  store.revision = version + prng.int(5); // deletes advance the revision too
  const clients = new ClientTable(Math.max(1, sessions));
  for (let i = 0; i < sessions; i++) {
    const body = new Uint8Array(prng.int(stored_reply_body_max + 1)).map(() => prng.pick([0, 0xff, prng.int(256)]));
    clients.restore(prng.u64(), {
      session: prng.u32(),
      request: prng.u32(),
      commit_op: prng.u32(),
      reply: { op: prng.u32(), timestamp: prng.u32(), operation: prng.int(7), result: prng.int(11), body },
    });
  }
  const anchor = new Header();
  anchor.command = Command.prepare;
  anchor.op = prng.range(1, 1 << 30);
  anchor.cluster = prng.u64();
  anchor.parent = prng.u64();
  finalize(anchor, new Uint8Array(prng.int(64)));
  const meta: CheckpointMeta = {
    id: { op: anchor.op, digest: stateDigest(store, clients), checksum: anchor.checksum },
    anchor,
    previous: { op: Math.max(0, anchor.op - 64), digest: prng.u64(), checksum: prng.u64() },
  };
  return { meta, store, clients };
}

/** A base file of the whole state, as FileStorage writes the first checkpoint of a store. */
function encodeBase(meta: CheckpointMeta, store: ObjectStore, clients: ClientTable): Uint8Array {
  return encodeCheckpoint(baseContents(meta, store, clients));
}

/** Decodes one base file into the state it describes. */
function decodeBase(
  bytes: Uint8Array,
  clients_max: number,
): { checkpoint: CheckpointMeta; store: ObjectStore; clients: ClientTable } | null {
  const contents = decodeCheckpoint(bytes, clients_max);
  if (contents === null) return null;
  const state = applyChain([contents], clients_max);
  return state === null ? null : { checkpoint: contents.checkpoint, ...state };
}

describe("checkpoint file", () => {
  test("round trips stores with binary keys and client sessions", () => {
    const prng = new Prng(1);
    for (let round = 0; round < 30; round++) {
      const objects = round === 0 ? 0 : prng.int(300);
      const sessions = round === 1 ? 0 : prng.int(20);
      const { meta, store, clients } = build(prng, objects, sessions);
      const bytes = encodeBase(meta, store, clients);
      const decoded = decodeBase(bytes, Math.max(1, sessions));
      expect(decoded).not.toBeNull();
      const d = decoded!;
      expect(d.checkpoint).toEqual(meta);
      expect([...d.store.all()]).toEqual([...store.all()]);
      expect(d.store.revision).toBe(store.revision);
      expect(d.store.count).toBe(store.count);
      expect(d.store.bytes).toBe(store.bytes);
      expect(d.store.digest()).toBe(store.digest());
      expect(d.clients.entries()).toEqual(clients.entries());
      expect(d.clients.digest()).toBe(clients.digest());
      expect(stateDigest(d.store, d.clients)).toBe(meta.id.digest);
      // Deterministic: the same state encodes to the same bytes.
      expect(encodeBase(d.checkpoint, d.store, d.clients)).toEqual(bytes);
    }
  });

  test("every corrupted byte gives null", () => {
    const prng = new Prng(2);
    const { meta, store, clients } = build(prng, 12, 3);
    const bytes = encodeBase(meta, store, clients);
    for (let i = 0; i < bytes.length; i++) {
      const damaged = bytes.slice();
      damaged[i]! ^= 1 << prng.int(8);
      expect(decodeCheckpoint(damaged, 3)).toBeNull();
      damaged[i] = bytes[i]! ^ 0xff;
      expect(decodeCheckpoint(damaged, 3)).toBeNull();
    }
  });

  test("truncated or extended files give null", () => {
    const prng = new Prng(3);
    const { meta, store, clients } = build(prng, 5, 2);
    const bytes = encodeBase(meta, store, clients);
    for (let length = 0; length < bytes.length; length++) expect(decodeCheckpoint(bytes.subarray(0, length), 2)).toBeNull();
    for (const extra of [1, 8]) {
      const longer = new Uint8Array(bytes.length + extra);
      longer.set(bytes);
      expect(decodeCheckpoint(longer, 2)).toBeNull();
    }
    expect(decodeCheckpoint(new Uint8Array(bytes.length), 2)).toBeNull();
  });

  test("a checkpoint with more sessions than this replica's clients_max gives null", () => {
    const prng = new Prng(4);
    const { meta, store, clients } = build(prng, 3, 4);
    const bytes = encodeBase(meta, store, clients);
    expect(decodeCheckpoint(bytes, 4)).not.toBeNull();
    expect(decodeCheckpoint(bytes, 3)).toBeNull();
  });

  test("decodes from a view at an offset of a larger buffer", () => {
    const prng = new Prng(5);
    const { meta, store, clients } = build(prng, 7, 2);
    const bytes = encodeBase(meta, store, clients);
    const outer = new Uint8Array(bytes.length + 11);
    outer.set(bytes, 3);
    const decoded = decodeBase(outer.subarray(3, 3 + bytes.length), 2);
    expect(decoded?.store.digest()).toBe(store.digest());
  });

  test("a delta applied to its base gives the later state: sets, moves and removals", () => {
    const prng = new Prng(6);
    for (let round = 0; round < 20; round++) {
      const { meta, store, clients } = build(prng, prng.int(200), prng.int(5));
      const base = decodeCheckpoint(encodeBase(meta, store, clients), 5)!;
      store.takeChanges();
      const keys = [...store.all()].map(([k]) => k);
      let version = store.revision;
      for (let i = 0; i < 50; i++) {
        const roll = prng.int(3);
        if (roll === 0 || keys.length === 0) {
          store.set(binaryKey(prng), {
            version: ++version,
            timestamp: 1,
            size: prng.int(100),
            checksum: prng.u64(),
            segment: prng.range(1, 9),
            offset: prng.int(1000) * 8,
          });
        } else if (roll === 1) {
          store.remove(prng.pick(keys));
        } else {
          const key = prng.pick(keys);
          if (store.get(key) !== undefined) store.relocate(key, { segment: prng.range(60, 70), offset: prng.int(1000) * 8 });
        }
      }
      store.revision = version;
      const anchor = new Header();
      anchor.command = Command.prepare;
      anchor.op = meta.id.op + 16;
      finalize(anchor, new Uint8Array(8));
      const later: CheckpointMeta = {
        anchor,
        previous: meta.id,
        id: { op: anchor.op, digest: stateDigest(store, clients), checksum: anchor.checksum },
      };
      const delta: CheckpointContents = {
        checkpoint: later,
        link: { kind: "delta", parent_op: meta.id.op, base_op: meta.id.op },
        revision: store.revision,
        segments: store.segments(),
        sessions: clients.entries(),
        records: deltaRecords(store, store.takeChanges()),
      };
      const encoded = encodeCheckpoint(delta);
      expect(deltaBytesAtLeast(delta.records, delta.sessions.length)).toBeLessThanOrEqual(encoded.length);
      const decoded = decodeCheckpoint(encoded, 5);
      expect(decoded).not.toBeNull();
      expect(decoded!.link).toEqual(delta.link);
      const state = applyChain([base, decoded!], 5)!;
      expect([...state.store.all()]).toEqual([...store.all()]);
      expect(stateDigest(state.store, state.clients)).toBe(later.id.digest);
      expect(state.store.segments()).toEqual(store.segments());
      // A chain must start from a base.
      expect(applyChain([decoded!], 5)).toBeNull();
    }
  });

  test("paths sort by op", () => {
    expect(checkpointPath(64)).toBe("checkpoint/0000000000000064.ckpt");
    const ops = [1, 9, 10, 100, 2 ** 40];
    expect(ops.map(checkpointPath).sort()).toEqual(ops.map(checkpointPath));
  });
});
