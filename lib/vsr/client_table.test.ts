import { describe, expect, test } from "bun:test";
import { ClientTable, stored_reply_body_max, type ClientSession, type StoredReply } from "./client_table.ts";
import { AssertionError } from "../util/assert.ts";
import { Prng } from "../util/prng.ts";

function reply(op: number, body: Uint8Array = new Uint8Array(0), result = 0): StoredReply {
  return { op, timestamp: op * 10, operation: 2, result, body };
}

/** Sessions as checkpoints see them: sorted by client id, deep copies. */
function snapshot(table: ClientTable): [bigint, ClientSession][] {
  return table.entries().map(([c, s]) => [c, { ...s, reply: { ...s.reply, body: s.reply.body.slice() } }]);
}

describe("ClientTable", () => {
  test("register creates a session at the register op; record replaces the last request and reply", () => {
    const table = new ClientTable(4);
    expect(table.register(7n, 10, 1, reply(10))).toBeNull();
    expect(table.get(7n)).toEqual({ session: 10, request: 1, reply: reply(10), commit_op: 10 });
    table.record(7n, 12, 2, reply(12, new Uint8Array([1, 2, 3])));
    expect(table.get(7n)).toEqual({ session: 10, request: 2, reply: reply(12, new Uint8Array([1, 2, 3])), commit_op: 12 });
    expect(table.size).toBe(1);
    expect(table.get(8n)).toBeUndefined();
  });

  test("re-registering an existing client replaces its session without evicting anyone", () => {
    const table = new ClientTable(2);
    table.register(1n, 1, 1, reply(1));
    table.register(2n, 2, 1, reply(2));
    expect(table.register(1n, 3, 5, reply(3))).toBeNull();
    expect(table.size).toBe(2);
    expect(table.get(1n)!.session).toBe(3);
    expect(table.get(2n)!.session).toBe(2);
  });

  test("a full table evicts the least recently committed session", () => {
    const table = new ClientTable(3);
    table.register(1n, 1, 1, reply(1));
    table.register(2n, 2, 1, reply(2));
    table.register(3n, 3, 1, reply(3));
    table.record(1n, 4, 2, reply(4)); // client 1 is now the most recent
    expect(table.register(4n, 5, 1, reply(5))).toBe(2n);
    expect(table.get(2n)).toBeUndefined();
    expect(table.register(5n, 6, 1, reply(6))).toBe(3n);
    expect(table.register(6n, 7, 1, reply(7))).toBe(1n);
    expect(table.size).toBe(3);
    expect(table.entries().map(([c]) => c)).toEqual([4n, 5n, 6n]);
  });

  test("ties in commit op break by client id, not insertion order, and digests agree", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const prng = new Prng(seed);
      const ids = Array.from({ length: 6 }, () => prng.u64());
      const build = (order: bigint[]): ClientTable => {
        const table = new ClientTable(6);
        // Registered at the same op (one batch) in the given order; then recorded in one batch.
        for (const id of order) table.register(id, 100, 1, reply(100));
        for (const id of order) if (id !== ids[0]) table.record(id, 101, 2, reply(101, new Uint8Array([Number(id & 0xffn)])));
        return table;
      };
      const a = build([...ids]);
      const b = build(prng.shuffle([...ids]));
      expect(b.digest()).toBe(a.digest());
      // ids[0] is the only one left at op 100: evicted first in both.
      expect(a.register(1n, 102, 1, reply(102))).toBe(ids[0]!);
      expect(b.register(1n, 102, 1, reply(102))).toBe(ids[0]!);
      // The rest tie at op 101: the smallest id goes first, in both.
      const rest = ids.slice(1).sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
      for (let i = 0; i < rest.length; i++) {
        const evicted_a = a.register(BigInt(2 + i), 103 + i, 1, reply(103 + i));
        const evicted_b = b.register(BigInt(2 + i), 103 + i, 1, reply(103 + i));
        expect(evicted_a).toBe(rest[i]!);
        expect(evicted_b).toBe(rest[i]!);
        expect(b.digest()).toBe(a.digest());
      }
    }
  });

  test("a table restored from entries evicts like the original", () => {
    const prng = new Prng(9);
    for (let round = 0; round < 20; round++) {
      const original = new ClientTable(8);
      let op = 0;
      for (let i = 0; i < 40; i++) {
        op += prng.int(2); // ops repeat: several requests executed in one batch
        const client = BigInt(prng.range(1, 12));
        const session = original.get(client);
        if (session === undefined || prng.chance(0.1)) original.register(client, op, 1, reply(op));
        else original.record(client, op, session.request + 1, reply(op, new Uint8Array(prng.int(stored_reply_body_max + 1))));
      }
      const entries = snapshot(original);
      const restored = new ClientTable(8);
      for (const [client, session] of prng.shuffle([...entries])) restored.restore(client, session);
      expect(restored.digest()).toBe(original.digest());
      expect(restored.size).toBe(original.size);
      expect(restored.entries()).toEqual(original.entries());
      for (let i = 0; i < 10; i++) {
        op += 1;
        const client = BigInt(100 + i);
        expect(restored.register(client, op, 1, reply(op))).toBe(original.register(client, op, 1, reply(op)));
        expect(restored.digest()).toBe(original.digest());
      }
    }
  });

  test("the digest covers every field of a session and the stored reply", () => {
    const base = (): ClientTable => {
      const t = new ClientTable(4);
      t.restore(5n, {
        session: 1,
        request: 2,
        commit_op: 3,
        reply: { op: 3, timestamp: 4, operation: 2, result: 0, body: new Uint8Array([9]) },
      });
      return t;
    };
    const digest = base().digest();
    const variants: ClientSession[] = [
      { session: 9, request: 2, commit_op: 3, reply: { op: 3, timestamp: 4, operation: 2, result: 0, body: new Uint8Array([9]) } },
      { session: 1, request: 9, commit_op: 3, reply: { op: 3, timestamp: 4, operation: 2, result: 0, body: new Uint8Array([9]) } },
      { session: 1, request: 2, commit_op: 9, reply: { op: 3, timestamp: 4, operation: 2, result: 0, body: new Uint8Array([9]) } },
      { session: 1, request: 2, commit_op: 3, reply: { op: 9, timestamp: 4, operation: 2, result: 0, body: new Uint8Array([9]) } },
      { session: 1, request: 2, commit_op: 3, reply: { op: 3, timestamp: 9, operation: 2, result: 0, body: new Uint8Array([9]) } },
      { session: 1, request: 2, commit_op: 3, reply: { op: 3, timestamp: 4, operation: 4, result: 0, body: new Uint8Array([9]) } },
      { session: 1, request: 2, commit_op: 3, reply: { op: 3, timestamp: 4, operation: 2, result: 2, body: new Uint8Array([9]) } },
      { session: 1, request: 2, commit_op: 3, reply: { op: 3, timestamp: 4, operation: 2, result: 0, body: new Uint8Array([8]) } },
      { session: 1, request: 2, commit_op: 3, reply: { op: 3, timestamp: 4, operation: 2, result: 0, body: new Uint8Array([9, 0]) } },
    ];
    const seen = new Set([digest]);
    for (const variant of variants) {
      const t = new ClientTable(4);
      t.restore(5n, variant);
      seen.add(t.digest());
    }
    const other_client = new ClientTable(4);
    other_client.restore(6n, base().get(5n)!);
    seen.add(other_client.digest());
    expect(seen.size).toBe(variants.length + 2);
    expect(new ClientTable(1).digest()).toBe(0n);
  });

  test("stored replies are bounded; requests must advance", () => {
    const table = new ClientTable(2);
    table.register(1n, 1, 1, reply(1));
    table.record(1n, 2, 2, reply(2, new Uint8Array(stored_reply_body_max)));
    expect(() => table.record(1n, 3, 3, reply(3, new Uint8Array(stored_reply_body_max + 1)))).toThrow(AssertionError);
    expect(() => table.record(1n, 3, 2, reply(3))).toThrow(AssertionError);
    expect(() => table.record(2n, 3, 1, reply(3))).toThrow(AssertionError);
    // Failed records left the session as it was.
    expect(table.get(1n)!.request).toBe(2);
    expect(table.get(1n)!.reply.body.length).toBe(stored_reply_body_max);
  });

  test("restore refuses duplicates and more sessions than clients_max", () => {
    const table = new ClientTable(2);
    const session: ClientSession = { session: 1, request: 1, commit_op: 1, reply: reply(1) };
    table.restore(1n, session);
    expect(() => table.restore(1n, session)).toThrow(AssertionError);
    table.restore(2n, session);
    expect(() => table.restore(3n, session)).toThrow(AssertionError);
    expect(() => new ClientTable(0)).toThrow(AssertionError);
  });

  test("a session's commit op never moves back; the running digest matches the sessions", () => {
    const table = new ClientTable(2);
    table.register(1n, 5, 1, reply(5));
    expect(() => table.record(1n, 4, 2, reply(4))).toThrow(AssertionError);
    table.record(1n, 6, 2, reply(6));
    table.register(2n, 7, 1, reply(7));
    table.register(3n, 8, 1, reply(8));
    table.invariants();
  });
});
