/**
 * The interactive admin shell on a real terminal, driven through tmux: the menu appears, Status
 * shows every replica and refreshes, Get shows a value, Ctrl-C leaves with exit 0. Skipped when
 * tmux is not installed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TestCluster, toastyfsCommand, waitFor } from "./support/cluster.ts";
import { toastyfs } from "./support/cli.ts";
import { raw, toastyfsRaw } from "./support/raw_args.ts";

const tmux_available = Bun.which("tmux") !== null;
/** A private tmux server, so the test never touches anyone else's sessions. */
const socket = `toastyfs-test-${process.pid}`;
const session = "admin";

let cluster: TestCluster;

async function tmux(...args: string[]): Promise<string> {
  const child = Bun.spawn(["tmux", "-L", socket, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
  if ((await child.exited) !== 0) throw new Error(`tmux ${args.join(" ")}: ${err}`);
  return out;
}

const screen = () => tmux("capture-pane", "-p", "-t", session);
const keys = (...k: string[]) => tmux("send-keys", "-t", session, ...k);
const type = (text: string) => tmux("send-keys", "-t", session, "-l", text);

/** Waits until the screen matches; returns it. */
function waitScreen(what: string, pattern: RegExp, timeout_ms = 15_000): Promise<string> {
  return waitFor(
    what,
    async () => {
      const s = await screen();
      return pattern.test(s) ? s : null;
    },
    timeout_ms,
  ).catch(async (error) => {
    throw new Error(`${(error as Error).message}\nscreen:\n${await screen()}`);
  });
}

beforeAll(async () => {
  if (!tmux_available) return;
  cluster = await TestCluster.start(3);
  const put = await toastyfs(["put", "tty/greeting", "-", "--cluster", cluster.cluster_arg], { stdin: "hello from the terminal" });
  expect(put.code).toBe(0);
  // A key with a byte that is not UTF-8 and a newline, which a person types as escapes.
  const binary = await toastyfsRaw(["put", raw("tty/k\\xff\nz"), "-", "--cluster", cluster.cluster_arg], {
    stdin: "bytes typed as escapes",
  });
  expect(binary.code).toBe(0);
}, 60_000);

afterAll(async () => {
  if (!tmux_available) return;
  await tmux("kill-server").catch(() => "");
  await cluster?.destroy();
});

describe("admin shell on a terminal", () => {
  test.skipIf(!tmux_available)(
    "menu, status (refreshing), get, Ctrl-C quits with exit 0",
    async () => {
      const command = `${toastyfsCommand().join(" ")} admin --cluster ${cluster.cluster_arg}; echo EXITED rc=$?; sleep 60`;
      await tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "50", command);
      await waitScreen("the menu", /◆ {2}What now\?[\s\S]*● Status[\s\S]*Get an object[\s\S]*Quit/);

      // Status: every replica, a verdict, and it refreshes until a key is pressed.
      await keys("Enter");
      let s = await waitScreen("the status table", /healthy: 3 of 3 replicas up/);
      for (const r of cluster.replicas) expect(s).toMatch(new RegExp(`${r.address.replace(/\./g, "\\.")}\\s+yes\\s+(primary|backup)`));
      const first = /Status at ([^,]+),/.exec(s)![1];
      await waitScreen("a refresh of the status", new RegExp(`Status at (?!${first!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")},)`), 10_000);
      await keys("q");
      await waitScreen("the menu again", /◆ {2}What now\?/);

      // Get: third entry of the menu, type the key, see the value.
      await keys("Down", "Down", "Enter");
      await waitScreen("the key prompt", /◆ {2}Key to get\?/);
      await type("tty/greeting");
      await keys("Enter");
      s = await waitScreen("the value", /hello from the terminal/);
      expect(s).toMatch(/tty\/greeting · version \d+ · 23 B/);
      await waitScreen("the menu after the get", /◆ {2}What now\?[\s\S]*└\s*$/);

      // Get with escapes typed for the bytes of the key; the title shows the key escaped.
      await keys("Down", "Down", "Enter");
      await waitScreen("the key prompt again", /◆ {2}Key to get\?/);
      await type("tty/k\\xff\\nz");
      await keys("Enter");
      s = await waitScreen("the value of the binary key", /bytes typed as escapes/);
      expect(s).toContain("tty/k\\xff\\nz · version");
      await waitScreen("the menu after the second get", /◆ {2}What now\?[\s\S]*└\s*$/);

      // Ctrl-C in the menu leaves cleanly.
      await keys("C-c");
      s = await waitScreen("the shell to exit", /EXITED rc=\d+/);
      expect(s).toContain("bye");
      expect(s).toContain("EXITED rc=0");
    },
    60_000,
  );
});
