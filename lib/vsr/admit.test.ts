import { describe, expect, test } from "bun:test";
import { Command, Header } from "../net/codec.ts";
import { admit, view_max } from "./admit.ts";

const config = { cluster: 7n, replica_count: 3 };

function header(fields: Partial<Pick<Header, "cluster" | "command" | "replica" | "replica_count" | "incarnation" | "view">>): Header {
  const h = new Header();
  Object.assign(h, { cluster: 7n, command: Command.commit, replica: 0, replica_count: 3, incarnation: 42, view: 5 }, fields);
  return h;
}

describe("admit", () => {
  test("a message of this cluster, from a peer, of this incarnation and a reachable view", () => {
    expect(admit(header({}), config, 1, 42)).toEqual({ kind: "admit" });
    expect(admit(header({ view: view_max }), config, 1, 42)).toEqual({ kind: "admit" });
  });

  test("another cluster is dropped, requests included", () => {
    expect(admit(header({ cluster: 8n }), config, 1, 42)).toEqual({ kind: "drop", why: "cluster mismatch" });
    expect(admit(header({ cluster: 8n, command: Command.request }), config, 1, 42).kind).toBe("drop");
  });

  test("a client request is admitted whatever its replica fields say", () => {
    const h = header({ command: Command.request, replica: 9, replica_count: 0, incarnation: 0, view: 0xffff_ffff });
    expect(admit(h, config, 1, 42)).toEqual({ kind: "admit" });
  });

  test("a sender outside the cluster, or counting another size, is dropped", () => {
    const outside = admit(header({ replica: 3 }), config, 1, 42);
    expect(outside).toEqual({ kind: "drop", why: "sender 3 with replica_count 3 does not match this cluster of 3" });
    expect(admit(header({ replica_count: 5 }), config, 1, 42).kind).toBe("drop");
  });

  test("its own messages are dropped, except a prepare relayed back", () => {
    expect(admit(header({ replica: 1 }), config, 1, 42)).toEqual({ kind: "drop", why: "message from self" });
    expect(admit(header({ replica: 1, command: Command.prepare }), config, 1, 42)).toEqual({ kind: "admit" });
  });

  test("another incarnation is refused, except in the probes that decide it", () => {
    expect(admit(header({ incarnation: 41 }), config, 1, 42)).toEqual({ kind: "other_incarnation" });
    expect(admit(header({ incarnation: 41, command: Command.ping }), config, 1, 42)).toEqual({ kind: "admit" });
    expect(admit(header({ incarnation: 41, command: Command.pong }), config, 1, 42)).toEqual({ kind: "admit" });
  });

  test("a view near 2^32 is a protocol violation", () => {
    expect(admit(header({ view: view_max + 1 }), config, 1, 42)).toEqual({
      kind: "violation",
      what: `view ${view_max + 1} above ${view_max}`,
    });
  });

  test("a receiver outside its own cluster is a bug", () => {
    expect(() => admit(header({}), config, 3, 42)).toThrow("receiver 3 of 3 replicas");
  });
});
