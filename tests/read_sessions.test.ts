/**
 * Reads cost no session (docs/PROTOCOL.md §3.1, §3.10). Registering is a replicated, fsynced op,
 * and the cluster keeps at most clients_max sessions, evicting the least recently committed one
 * when a new client registers. If every reader registered, clients_max one-shot reads (CLI runs,
 * short-lived clients) would evict a long-lived writer, whose next put would then fail with
 * "evicted, outcome unknown". So clients register lazily, before their first write only.
 *
 * A real 3-replica cluster; a long-lived TS client and a long-lived C client each write once; then
 * more than clients_max reads by fresh TS clients, fresh C clients, fresh CLI runs and an admin
 * shell; then both long-lived clients write again, and must succeed. No read may commit an op.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as path from "node:path";
import { Client } from "../lib/client/client.ts";
import { defaultConfig } from "../lib/constants.ts";
import { repo, TestCluster, waitFor } from "./support/cluster.ts";
import { toastyfs } from "./support/cli.ts";

const clients_max = defaultConfig(3, 0n).clients_max;
const c_dir = path.join(repo, "clients/c");
const client_test = path.join(c_dir, "build/client_test");
/** Fresh TS readers in flight at once (each is a TCP connection and a read). */
const reader_parallelism = 16;
const c_readers = 30;

let cluster: TestCluster;

beforeAll(async () => {
  const made = Bun.spawnSync(["make", "-C", c_dir, "all", "tests"], { stdout: "pipe", stderr: "pipe" });
  if (made.exitCode !== 0) throw new Error(`make failed:\n${made.stdout}\n${made.stderr}`);
  cluster = await TestCluster.start(3);
}, 120_000);

afterAll(async () => {
  await cluster?.destroy();
});

/** The newest committed op any replica reports: registering moves it, reading must not. */
async function committed(): Promise<number> {
  const statuses = await cluster.status(1000);
  return Math.max(...statuses.map((s) => s?.commit_max ?? 0));
}

/** One read by a client that exists only for it. */
async function freshRead(i: number): Promise<void> {
  const client = new Client({ addresses: cluster.addresses });
  try {
    if (i % 3 === 0) expect(new TextDecoder().decode((await client.get("long/ts")).value)).toBe("one");
    else if (i % 3 === 1) expect((await client.stat("long/ts")).size).toBe(3);
    else expect((await client.list("long/")).entries.length).toBeGreaterThanOrEqual(1);
  } finally {
    await client.close();
  }
}

describe("reads need no session", () => {
  test(`more than clients_max (${clients_max}) reads by fresh clients, CLI runs and the admin shell commit nothing and evict no writer`, async () => {
    const writer = new Client({ addresses: cluster.addresses });
    const c_writer = Bun.spawn([client_test, "long-lived", cluster.cluster_arg], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    try {
      await writer.put("long/ts", new TextEncoder().encode("one"));
      let c_out = "";
      const c_reading = (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of c_writer.stdout) c_out += decoder.decode(chunk);
      })();
      await waitFor("the C client's first put", () => /^wrote \d+$/m.test(c_out) || c_writer.exitCode !== null, 20_000);
      expect(c_out, "the C client exited before its first put completed").toMatch(/^wrote \d+$/m);
      const before = await committed();

      // Fresh TS clients: clients_max + 10 of them.
      const ts_readers = clients_max + 10;
      for (let start = 0; start < ts_readers; start += reader_parallelism) {
        const batch = Array.from({ length: Math.min(reader_parallelism, ts_readers - start) }, (_, k) => freshRead(start + k));
        await Promise.all(batch);
      }
      // Fresh C clients.
      const c_reads = Bun.spawnSync([client_test, "reads", cluster.cluster_arg, String(c_readers), "long/c"], {
        stdout: "pipe",
        stderr: "pipe",
        timeout: 60_000,
      });
      expect(c_reads.exitCode, `${c_reads.stdout}\n${c_reads.stderr}`).toBe(0);
      expect(c_reads.stdout.toString()).toContain(`reads: ${c_readers} by fresh clients, ok`);
      // Fresh CLI runs and one admin shell.
      const cli = (args: string[], stdin?: string) =>
        toastyfs([...args, "--cluster", cluster.cluster_arg], stdin === undefined ? {} : { stdin });
      for (const args of [
        ["get", "long/ts"],
        ["stat", "long/ts"],
        ["ls", "long/"],
      ]) {
        const r = await cli(args);
        expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
      }
      const admin = await cli(["admin"], "get long/ts\nstat long/c\nls long/\n");
      expect(admin.code, admin.stderr).toBe(0);
      expect(admin.stdout).toContain("long/c");

      const after_reads = await committed();

      // The long-lived writers still have their sessions.
      c_writer.stdin.write("go\n");
      await c_writer.stdin.end();
      const code = await c_writer.exited;
      await c_reading;
      const c_stderr = await new Response(c_writer.stderr).text();
      console.log(`C long-lived client: ${c_out.trim().split("\n").join("; ")}`);
      const ts_put = await writer.put("long/ts", new TextEncoder().encode("two")).then(
        ({ version }) => `ok, version ${version}`,
        (error: Error) => `failed: ${error.message}`,
      );
      console.log(`TS long-lived client: second put ${ts_put}`);
      expect(ts_put).toStartWith("ok");
      expect(code, `${c_out}\n${c_stderr}`).toBe(0);
      expect(c_out).toContain("second put: 0 ");
      expect(c_out).toContain("long-lived: ok");

      // Not one op was committed for all those reads: no session was registered.
      expect(after_reads).toBe(before);
      console.log(
        `${ts_readers} TS, ${c_readers} C, 3 CLI and 1 admin reader(s): committed op stayed at ${before}; both long-lived writers wrote again`,
      );
    } finally {
      if (c_writer.exitCode === null) c_writer.kill("SIGKILL");
      await writer.close();
    }
  }, 180_000);

  test("a client that only reads and then writes registers at its first write, and the write succeeds", async () => {
    const client = new Client({ addresses: cluster.addresses });
    try {
      const before = await committed();
      await client.list("");
      expect(await committed()).toBe(before);
      const { version } = await client.put("lazy/first-write", new TextEncoder().encode("x"));
      // One op for the register, one for the put.
      expect(await committed()).toBe(before + 2);
      expect(version).toBeGreaterThan(0);
      expect(new TextDecoder().decode((await client.get("lazy/first-write")).value)).toBe("x");
    } finally {
      await client.close();
    }
  }, 30_000);
});
