/**
 * The data directory lock (lib/node/data_directory.ts) with real processes: a replica killed with
 * kill -9 gives its directory up at once, even while its parent has not reaped it (a zombie keeps
 * its pid alive, so a pid-file check took it for a running replica), and a second live replica on
 * the same directory is refused with the owner's pid.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { clusterStatus } from "../lib/client/client.ts";
import { parseAddress } from "../lib/net/address.ts";
import { toastyfsCommand, waitFor } from "./support/cluster.ts";
import { toastyfs, expectOneError } from "./support/cli.ts";
import { freePorts } from "./support/ports.ts";

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0).reverse()) f();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-lock-"));
  cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A one-replica cluster answers status once its replica runs. */
async function answers(address: string): Promise<boolean> {
  const [status] = await clusterStatus([parseAddress(address)], 300);
  return status !== null && status !== undefined;
}

/** The state letter of /proc/<pid>/stat (R, S, Z, ...), or null once the pid is gone. */
function processState(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return null;
  }
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

describe("data directory lock", () => {
  test("a replica killed with SIGKILL and left a zombie (not reaped) does not hold its directory", async () => {
    const dir = tempDir();
    const data = path.join(dir, "data");
    const [port] = await freePorts(1);
    const address = `127.0.0.1:${port}`;
    const serve = [...toastyfsCommand(), "serve", "--addr", address, "--data", data].map(quote).join(" ");
    // The replica's parent is `sleep` (bash execs it after starting the replica in the
    // background), which never waits for its children: once killed, the replica stays a zombie.
    const parent = Bun.spawn(["bash", "-c", `${serve} >${quote(path.join(dir, "first.log"))} 2>&1 & echo $!; exec sleep 600`], {
      stdout: "pipe",
      stderr: "inherit",
    });
    cleanup.push(() => parent.kill("SIGKILL"));
    const reader = parent.stdout.getReader();
    const first = await reader.read();
    reader.releaseLock();
    const pid = Number(new TextDecoder().decode(first.value).trim());
    expect(Number.isInteger(pid) && pid > 0).toBe(true);
    cleanup.push(() => {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    });
    await waitFor("the first replica to serve", () => answers(address), 20_000);

    process.kill(pid, "SIGKILL");
    await waitFor("the killed replica to be a zombie", () => processState(pid) === "Z", 10_000, 10);

    const second = Bun.spawn([...toastyfsCommand(), "serve", "--addr", address, "--data", data], { stdout: "pipe", stderr: "pipe" });
    cleanup.push(() => second.kill("SIGKILL"));
    const started = await Promise.race([
      waitFor("the restarted replica to serve", () => answers(address), 20_000).then(() => "serving"),
      second.exited.then(async (code) => `exited with code ${code}: ${await new Response(second.stderr).text()}`),
    ]);
    expect(started).toBe("serving");
    expect(processState(pid)).toBe("Z"); // still unreaped: the lock went with the process, not its pid
  }, 60_000);

  test("a second live replica on the same directory is refused, naming the owner's pid", async () => {
    const dir = tempDir();
    const data = path.join(dir, "data");
    const [port, other] = await freePorts(2);
    const address = `127.0.0.1:${port}`;
    const first = Bun.spawn([...toastyfsCommand(), "serve", "--addr", address, "--data", data], { stdout: "ignore", stderr: "ignore" });
    cleanup.push(() => first.kill("SIGKILL"));
    await waitFor("the first replica to serve", () => answers(address), 20_000);

    const result = await toastyfs(["serve", "--addr", `127.0.0.1:${other}`, "--data", data], { timeout_ms: 20_000 });
    expectOneError(result, 1, new RegExp(`data directory .* is in use by process ${first.pid}\\b.*own --data directory`));
    // The refused process touched nothing: the owner still serves.
    expect(await answers(address)).toBe(true);
  }, 60_000);
});
