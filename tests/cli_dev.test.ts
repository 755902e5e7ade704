/**
 * `toastyfs dev`: starts a local cluster, serves a put and a get, serves metrics, reports a replica
 * that dies, stops cleanly on SIGINT (exit 0), and a restart reuses the data directory.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { freePorts, toastyfsCommand, waitFor } from "./support/cluster.ts";
import { freeConsecutivePorts, portFree, toastyfs } from "./support/cli.ts";

interface Dev {
  process: Subprocess<"ignore", "pipe", "pipe">;
  stdout: string;
  stderr: string;
}

let cwd: string;
let base: number;
let s3_port: number;
const running: Dev[] = [];

function startDev(): Dev {
  const child = Bun.spawn([...toastyfsCommand(), "dev", "--base-port", String(base), "--s3-port", String(s3_port)], {
    cwd,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const dev: Dev = { process: child, stdout: "", stderr: "" };
  const collect = async (stream: ReadableStream<Uint8Array>, field: "stdout" | "stderr") => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) dev[field] += decoder.decode(chunk, { stream: true });
  };
  void collect(child.stdout, "stdout");
  void collect(child.stderr, "stderr");
  running.push(dev);
  return dev;
}

async function stopDev(dev: Dev, signal: NodeJS.Signals): Promise<number> {
  dev.process.kill(signal);
  const code = await Promise.race([dev.process.exited, Bun.sleep(20_000).then(() => "timeout" as const)]);
  if (code === "timeout") throw new Error(`toastyfs dev did not exit within 20 s of ${signal}; stderr:\n${dev.stderr}`);
  return code;
}

function cluster(): string {
  return [0, 1, 2].map((i) => `127.0.0.1:${base + i}`).join(",");
}

/** Child process ids of pid (the replicas). */
async function childrenOf(pid: number): Promise<number[]> {
  const ps = Bun.spawn(["ps", "-o", "pid=", "--ppid", String(pid)], { stdout: "pipe" });
  const text = await new Response(ps.stdout).text();
  await ps.exited;
  return text
    .split("\n")
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
}

beforeAll(async () => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-dev-"));
  base = await freeConsecutivePorts(3, 100);
  [s3_port] = await freePorts(1);
});

afterAll(async () => {
  for (const dev of running) {
    if (dev.process.exitCode === null) {
      for (const pid of await childrenOf(dev.process.pid)) process.kill(pid, "SIGKILL");
      dev.process.kill("SIGKILL");
    }
  }
  fs.rmSync(cwd, { recursive: true, force: true });
});

describe("toastyfs dev", () => {
  test("starts, serves put/get and metrics, survives a dead replica, stops on SIGINT, and a restart keeps the data", async () => {
    const dev = startDev();
    await waitFor("toastyfs dev to serve", () => dev.stdout.includes("serving"), 40_000);
    expect(dev.stdout).toContain(`replicas  127.0.0.1:${base}  127.0.0.1:${base + 1}  127.0.0.1:${base + 2}`);
    expect(dev.stdout).toMatch(/put hello -/);
    expect(dev.stdout).toContain(`export TOASTYFS_CLUSTER=${cluster()}`);
    // Each replica's output is forwarded with a prefix naming its port.
    expect(dev.stderr).toMatch(new RegExp(`^\\[${base}\\] .*listening on`, "m"));

    // The S3 gateway answers at its endpoint with the development keys it printed.
    expect(dev.stdout).toContain(`s3        http://127.0.0.1:${s3_port}`);
    expect(dev.stdout).toContain("access key toastyfs-dev  secret toastyfs-dev-secret  (development only");
    const s3 = new Bun.S3Client({
      endpoint: `http://127.0.0.1:${s3_port}`,
      accessKeyId: "toastyfs-dev",
      secretAccessKey: "toastyfs-dev-secret",
      bucket: "no-such-bucket",
    });
    // Signed with the dev keys and verified: the answer is about the bucket, not the signature.
    await expect(s3.file("k").text()).rejects.toMatchObject({ code: "NoSuchBucket" });

    const put = await toastyfs(["put", "hello", "-", "--cluster", cluster()], { stdin: "hello from dev\n" });
    expect(put.stderr).toBe("");
    expect(put.code).toBe(0);
    const get = await toastyfs(["get", "hello", "--cluster", cluster()]);
    expect(get.stdout).toBe("hello from dev\n");

    // Metrics: on port + 100 of each replica; the primary counted and timed the put.
    const scrapes = await Promise.all([0, 1, 2].map(async (i) => (await fetch(`http://127.0.0.1:${base + 100 + i}/metrics`)).text()));
    for (const text of scrapes) {
      expect(text).toMatch(/^toastyfs_view \d+$/m);
      expect(text).toMatch(/^toastyfs_commit_executed \d+$/m);
      expect(text).toMatch(/^toastyfs_frames_dropped_total\{reason="invalid"\} 0$/m);
      expect(text).toMatch(/^toastyfs_data_directory_bytes\{part="journal"\} \d+$/m);
    }
    const primary = scrapes.find((t) => /^toastyfs_replica_primary 1$/m.test(t));
    expect(primary).toBeDefined();
    expect(primary).toMatch(/^toastyfs_requests_total\{operation="put",result="ok"\} 1$/m);
    expect(primary).toMatch(/^toastyfs_request_duration_seconds_count\{operation="put"\} 1$/m);
    // toastyfs get streams the object with read requests (docs/PROTOCOL.md §3.15). (The S3 GET
    // above read its missing object first, a read that found nothing: lib/s3/object_get.ts.)
    expect(primary).toMatch(/^toastyfs_requests_total\{operation="read",result="ok"\} 1$/m);
    expect(primary).toMatch(/^toastyfs_uploads_open 0$/m);

    // A replica that dies is reported; the other two keep serving.
    const children = await childrenOf(dev.process.pid);
    expect(children.length).toBe(3);
    process.kill(children[2]!, "SIGKILL");
    await waitFor(
      "dev to report the dead replica",
      () => /error: replica 127\.0\.0\.1:\d+ was killed by SIGKILL unexpectedly; the cluster keeps serving with 2 of 3/.test(dev.stderr),
      10_000,
    );
    expect((await toastyfs(["get", "hello", "--cluster", cluster()])).stdout).toBe("hello from dev\n");

    // SIGINT: every replica stops, dev exits 0, the ports are free again.
    expect(await stopDev(dev, "SIGINT")).toBe(0);
    expect(dev.stderr).toContain("all replicas stopped");
    for (const i of [0, 1, 2]) expect(await portFree(base + i)).toBe(true);
    expect(fs.existsSync(path.join(cwd, "toastyfs-dev", `127.0.0.1_${base}`, "superblock"))).toBe(true);

    // A restart in the same directory reuses the data: the value is still there.
    const again = startDev();
    await waitFor("the restarted toastyfs dev to serve", () => again.stdout.includes("serving"), 40_000);
    expect(again.stderr).toContain("reusing the data of every replica");
    const after = await toastyfs(["get", "hello", "--cluster", cluster()]);
    expect(after.stdout).toBe("hello from dev\n");
    expect(await stopDev(again, "SIGTERM")).toBe(0);
  }, 120_000);

  // Exit 1, as README's exit codes say: a busy port is not a mistake in the command line.
  test("a port in use: one error line, exit 1, nothing started", async () => {
    const blocker = Bun.listen({ hostname: "127.0.0.1", port: base + 1, socket: { data() {} } });
    try {
      const r = await toastyfs(["dev", "--base-port", String(base)], { cwd, timeout_ms: 20_000 });
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(
        `error: port 127.0.0.1:${base + 1} is in use: is another toastyfs dev (or replica) running? Stop it, or pick other ports with --base-port`,
      );
    } finally {
      blocker.stop(true);
    }
  }, 30_000);
});
