/** Real replica processes: object round trips, and failover after kill -9 of the primary. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Client, ClientError } from "../lib/client/client.ts";
import { TestCluster } from "./support/cluster.ts";

let cluster: TestCluster;
let client: Client;

beforeAll(async () => {
  cluster = await TestCluster.start(3);
  client = new Client({ addresses: cluster.addresses, operation_timeout_ms: 20_000 });
}, 60_000);

afterAll(async () => {
  await client?.close();
  await cluster?.destroy();
});

const text = (s: string) => new TextEncoder().encode(s);

describe("object operations against a real cluster", () => {
  test("put, get, stat, list, delete, conditional put", async () => {
    const v1 = await client.put("a/1", text("one"));
    const v2 = await client.put("a/2", text("two"));
    expect(v2.version).toBeGreaterThan(v1.version);
    const got = await client.get("a/1");
    expect(new TextDecoder().decode(got.value)).toBe("one");
    expect(got.version).toBe(v1.version);
    expect((await client.stat("a/2")).size).toBe(3);
    const list = await client.list("a/");
    expect(list.entries.map((e) => new TextDecoder().decode(e.key))).toEqual(["a/1", "a/2"]);
    await expect(client.put("a/1", text("x"), { if_absent: true })).rejects.toMatchObject({ code: "condition_failed" });
    await expect(client.put("a/1", text("x"), { if_version: v1.version + 1000 })).rejects.toMatchObject({ code: "condition_failed" });
    await expect(client.put("a/1", text("x"), { if_absent: true, if_version: v1.version })).rejects.toMatchObject({ code: "bad_request" });
    const v3 = await client.put("a/1", text("uno"), { if_version: v1.version });
    expect(v3.version).toBeGreaterThan(v2.version);
    await client.delete("a/1");
    await expect(client.get("a/1")).rejects.toMatchObject({ code: "not_found" });
    await expect(client.delete("a/1")).rejects.toBeInstanceOf(ClientError);
  }, 30_000);

  test("empty, 1-byte and 1 MiB values round-trip exactly", async () => {
    for (const size of [0, 1, 1024 * 1024]) {
      const value = new Uint8Array(size);
      for (let i = 0; i < size; i++) value[i] = (i * 7 + size) & 0xff;
      await client.put(`size/${size}`, value);
      const got = await client.get(`size/${size}`);
      expect(got.value.length).toBe(size);
      expect(Buffer.compare(Buffer.from(got.value), Buffer.from(value))).toBe(0);
    }
  }, 30_000);

  test("kill -9 of the primary: writes succeed again, nothing acknowledged is lost", async () => {
    const acknowledged = new Map<string, string>();
    for (let i = 0; i < 20; i++) {
      await client.put(`before/${i}`, text(`value ${i}`));
      acknowledged.set(`before/${i}`, `value ${i}`);
    }
    const primary = await cluster.primary();
    cluster.kill(primary);
    const killed_at = Date.now();
    await client.put("after/0", text("first write after the kill"));
    const failover_ms = Date.now() - killed_at;
    console.log(`failover: first write after kill -9 of the primary succeeded in ${failover_ms} ms`);
    expect(failover_ms).toBeLessThan(15_000);
    for (const [key, value] of acknowledged) expect(new TextDecoder().decode((await client.get(key)).value)).toBe(value);
    cluster.restart(primary);
    await cluster.waitHealthy();
  }, 60_000);
});
