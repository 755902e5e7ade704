/**
 * A replica that fails an assertion (a bug) stops (exit code 1), and restarted into the same failure
 * by a supervisor, it logs the full trace once, then one line with a count per restart. Before,
 * the process did not even stop: an uncaught exception in a timer or socket callback does not end
 * a Bun process whose main module is still awaiting (serve's), so it printed a full trace (two, on
 * the request path) at every repeat, 280 KB of log a minute in the field, and ran on. The assertion
 * is injected with a preload (tests/support/inject_assertion.ts) into the real `toastyfs serve`, in
 * the node's tick and in a client request's path through the transport.
 */
import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "../lib/client/client.ts";
import { parseAddress } from "../lib/net/address.ts";
import { repo } from "./support/cluster.ts";
import { freePorts } from "./support/ports.ts";

const bun = path.join(repo, "node_modules/.bin/bun");
const preload = path.join(repo, "tests/support/inject_assertion.ts");
const restarts = 8;

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs the replica until it exits (a supervisor's loop body); returns its exit code. */
async function runOnce(where: "tick" | "request", address: string, data: string, log_path: string): Promise<number | null> {
  const log = fs.openSync(log_path, "a");
  const child = Bun.spawn([bun, "--preload", preload, path.join(repo, "cmd/toastyfs.ts"), "serve", "--addr", address, "--data", data], {
    stdout: log,
    stderr: log,
    stdin: "ignore",
    env: { ...process.env, TOASTYFS_TEST_INJECT_ASSERTION: where },
  });
  fs.closeSync(log);
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  if (where === "request") {
    // A client request reaches the replica: the put fails (the replica stops), which is the point.
    const client = new Client({ addresses: [parseAddress(address)], operation_timeout_ms: 10_000 });
    await Promise.race([client.put("k", new Uint8Array([1])).catch(() => undefined), child.exited]);
    await client.close();
  }
  const code = await child.exited;
  clearTimeout(timer);
  return child.signalCode === null ? code : null;
}

for (const where of ["tick", "request"] as const) {
  test(`an assertion in the replica's ${where === "tick" ? "tick" : "request path"} at every restart: one trace, then one line per restart`, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-fatal-"));
    dirs.push(dir);
    const [port] = await freePorts(1);
    const address = `127.0.0.1:${port}`;
    const log_path = path.join(dir, "replica.log");
    const sizes: number[] = [];
    for (let i = 0; i < restarts; i++) {
      expect(await runOnce(where, address, path.join(dir, "data"), log_path)).toBe(1); // exits on its own, code 1
      sizes.push(fs.statSync(log_path).size);
    }
    const log = fs.readFileSync(log_path, "utf8");
    const growth = sizes.slice(1).map((size, i) => size - sizes[i]!);
    console.log(`${where}: log bytes after each run: ${sizes.join(", ")}`);
    const traces = log.split("\n").filter((l) => /^\s+at /.test(l)).length;
    const first_run = log.slice(0, sizes[0]);
    expect(first_run).toContain("stopping on an unexpected failure, a bug: please report it with this trace");
    expect(first_run).toContain("AssertionError: injected for a test");
    // Every stack frame in the whole log belongs to the first run's one trace.
    expect(traces).toBe(first_run.split("\n").filter((l) => /^\s+at /.test(l)).length);
    expect(traces).toBeGreaterThan(0);
    for (let n = 2; n <= restarts; n++) expect(log).toContain(`stopping on the same failure again (${n} times since `);
    expect(log).not.toContain("handler failed");
    for (const bytes of growth) expect(bytes).toBeLessThan(1500); // a restart's startup lines and one error line
  }, 120_000);
}
