/**
 * toastyfs_random_client against a real 3-replica cluster: the history stays linearizable while a
 * replica is killed (kill -9) and restarted in the middle of the run; and the checking path really
 * fails on a history that is not linearizable (a hand-made one, and a recorded one with one read
 * doctored), with exit 1 and the offending key's history.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn } from "bun";
import { TestCluster, repo, waitFor, type ReplicaProcess } from "./support/cluster.ts";
import { OperationPlanner } from "../lib/check/random_workload.ts";
import { decodeHistoryFile, encodeHistoryFile } from "../lib/check/history_recorder.ts";
import type { History } from "../lib/check/history.ts";

const binary = path.join(repo, "toastyfs_random_client");
const bun = path.join(repo, "node_modules/.bin/bun");

/** The compiled executable when ./build.sh has made it since the sources last changed, else the
 * source (a stale binary would test old code). */
function randomClientCommand(): string[] {
  return fs.existsSync(binary) && fs.statSync(binary).mtimeMs >= newestSource() ? [binary] : [bun, path.join(repo, "cmd/random_client.ts")];
}

function newestSource(): number {
  let newest = 0;
  for (const top of ["cmd", "lib", "sim"]) {
    for (const file of fs.readdirSync(path.join(repo, top), { recursive: true, encoding: "utf8" })) {
      if (file.endsWith(".ts")) newest = Math.max(newest, fs.statSync(path.join(repo, top, file)).mtimeMs);
    }
  }
  return newest;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-random-client-"));
let cluster: TestCluster | null = null;

afterAll(async () => {
  await cluster?.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function runChecker(args: string[]): Promise<Run> {
  const proc = spawn([...randomClientCommand(), ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

async function commitMax(c: TestCluster): Promise<number> {
  const statuses = await c.status();
  return Math.max(0, ...statuses.map((s) => s?.commit_max ?? 0));
}

/** Waits until the cluster's commit point has moved `ops` past `from` (the workload is making progress). */
async function waitProgress(c: TestCluster, from: number, ops: number, what: string): Promise<number> {
  return waitFor(
    what,
    async () => {
      const commit = await commitMax(c);
      return commit >= from + ops ? commit : null;
    },
    20_000,
  );
}

describe("toastyfs_random_client", () => {
  test("a random workload stays linearizable while a replica is killed (kill -9) and restarted", async () => {
    cluster = await TestCluster.start(3);
    const c = cluster;
    const history_file = path.join(dir, "history.json");
    const proc = spawn(
      [
        ...randomClientCommand(),
        "--cluster",
        c.cluster_arg,
        "--seed",
        "11",
        "--clients",
        "8",
        "--keys",
        "5",
        "--ops",
        "10000000",
        "--duration",
        "40",
        "--history-out",
        history_file,
      ],
      { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
    );
    const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    try {
      const start = await waitProgress(c, await commitMax(c), 300, "the workload to start");

      // kill -9 the primary mid-run: the rest must fail over and keep committing.
      const victim: ReplicaProcess = await c.primary();
      const victim_process = victim.process;
      c.kill(victim, "SIGKILL");
      await victim_process?.exited;
      const survivors = await waitProgress(c, start, 500, "writes to succeed again after kill -9 of the primary");
      const statuses = await c.status();
      expect(statuses[victim.index]).toBeNull();

      // Restart it: it rejoins, catches up, and the workload goes on with all three.
      c.restart(victim);
      await c.waitHealthy();
      const caught_up = await waitFor(
        "the restarted replica to catch up",
        async () => {
          const s = await c.status();
          const mine = s[victim.index];
          return mine !== null && mine !== undefined && mine.commit_min >= survivors ? mine.commit_min : null;
        },
        20_000,
      );
      await waitProgress(c, caught_up, 300, "progress after the restart");
    } finally {
      proc.kill("SIGTERM"); // the client stops issuing, finishes what is in flight, and checks
    }
    const code = await proc.exited;
    const [stdout, stderr] = await output;
    console.log(
      code === 0
        ? stdout
            .split("\n")
            .filter((l) => !l.startsWith("history saved"))
            .join("\n")
        : `${stdout}\n${stderr}`,
    );
    expect(stdout).toContain("verdict: linearizable");
    expect(stdout).toMatch(/^ok\s+\d+/m);
    expect(stdout).toMatch(/^error\s+0\s+0\s+0\s+0\s+0\s+0$/m);
    expect(code).toBe(0);
    const answered = Number(/(\d+) answered ops\/s/.exec(stdout)?.[1] ?? "0");
    expect(answered).toBeGreaterThan(0);

    // The saved history checks the same way on its own...
    const saved = await runChecker(["--check-history", history_file]);
    expect(saved.stdout).toContain("verdict: linearizable");
    expect(saved.code).toBe(0);

    // ...and with one get doctored to return a value nobody wrote, the same path fails.
    const file = decodeHistoryFile(fs.readFileSync(history_file, "utf8"));
    const get = file.history.find((op) => op.input.kind === "get" && op.output?.status === "ok" && op.output.value !== undefined);
    expect(get).toBeDefined();
    if (get?.output?.status === "ok") get.output.value = "doctored";
    const doctored_file = path.join(dir, "doctored.json");
    fs.writeFileSync(doctored_file, encodeHistoryFile(file.history, file.about));
    const doctored = await runChecker(["--check-history", doctored_file]);
    expect(doctored.code).toBe(1);
    expect(doctored.stdout).toContain("verdict: NOT linearizable");
    expect(doctored.stdout).toContain(`key ${JSON.stringify(get!.input.key)}`);
    expect(doctored.stdout).toContain(`value="doctored"`);
  }, 90_000);

  test("a hand-made history that is not linearizable fails the check with exit 1 and the key's history", async () => {
    // A put completes, then a read that starts after it sees nothing: a stale read.
    const history: History = [
      { client: 0, input: { kind: "put", key: "k0", value: "c0.1" }, call: 0, ret: 1, output: { status: "ok", version: 5 } },
      { client: 1, input: { kind: "get", key: "k1" }, call: 0, ret: 1, output: { status: "not_found" } },
      { client: 1, input: { kind: "get", key: "k0" }, call: 2, ret: 3, output: { status: "not_found" } },
      { client: 2, input: { kind: "put", key: "k0", value: "c2.1" }, call: 2.5, ret: null, output: null },
    ];
    const file = path.join(dir, "stale_read.json");
    fs.writeFileSync(file, encodeHistoryFile(history, { made: "by hand" }));
    const run = await runChecker(["--check-history", file]);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(`verdict: NOT linearizable: key "k0"`);
    expect(run.stdout).toContain(`client 0 [0..1] put "k0"="c0.1" -> ok version=5`);
    expect(run.stdout).toContain(`client 1 [2..3] get "k0" -> not_found`);
    expect(run.stdout).toContain(`client 2 [2.5..inf) put "k0"="c2.1" -> (no reply)`);

    // The same history with the read moved before the put is linearizable.
    history[2]!.call = 0.5;
    history[2]!.ret = 0.8;
    fs.writeFileSync(file, encodeHistoryFile(history, {}));
    const fine = await runChecker(["--check-history", file]);
    expect(fine.stdout).toContain("verdict: linearizable");
    expect(fine.code).toBe(0);
  }, 30_000);

  test("bad arguments and unreadable history files exit 2 with one line", async () => {
    for (const args of [["--clients", "0"], ["--seed", "x"], ["--frobnicate"], ["--check-history", path.join(dir, "missing.json")]]) {
      const run = await runChecker(args);
      expect(run.code).toBe(2);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
      expect(run.stderr).toStartWith("error: ");
    }
    const not_history = path.join(dir, "not_history.json");
    fs.writeFileSync(not_history, JSON.stringify({ format: "toastyfs-history-1", history: [{ client: 0 }] }));
    const run = await runChecker(["--check-history", not_history]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("history[0]");
  }, 30_000);

  test("a seed fixes every client's planned operations", () => {
    const plans = (seed: number, clients: number) =>
      OperationPlanner.forSeed(seed, clients, 5).map((p) => Array.from({ length: 300 }, () => p.next()));
    const a = plans(7, 4);
    expect(plans(7, 4)).toEqual(a);
    // Client i's plan does not depend on how many clients there are.
    expect(plans(7, 2)).toEqual(a.slice(0, 2));
    expect(plans(8, 4)).not.toEqual(a);
    const kinds = new Set(a.flat().map((p) => p.kind));
    expect([...kinds].sort()).toEqual(["delete", "get", "list", "put", "stat"]);
  });
});
