/**
 * Running the `toastyfs` command line in tests: the compiled executable when ./build.sh has made
 * it, else `bun cmd/toastyfs.ts`. Every run has a deadline (a hung command fails its test instead
 * of hanging the suite).
 */
import { expect } from "bun:test";
import * as net from "node:net";
import { toastyfsCommand } from "./cluster.ts";

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  stdout_bytes: Uint8Array;
  elapsed_ms: number;
  timed_out: boolean;
}

export interface RunOptions {
  stdin?: string | Uint8Array | "ignore";
  env?: Record<string, string | undefined>;
  cwd?: string;
  timeout_ms?: number;
}

/** Runs toastyfs with args; stdin is empty (/dev/null) unless given. */
export function toastyfs(args: string[], options: RunOptions = {}): Promise<RunResult> {
  return runCommand([...toastyfsCommand(), ...args], options);
}

/** Runs a command with a deadline, capturing its output; stdin is empty unless given. */
export async function runCommand(command: string[], options: RunOptions = {}): Promise<RunResult> {
  const started = performance.now();
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...options.env })) if (v !== undefined) env[k] = v;
  const stdin =
    options.stdin === undefined || options.stdin === "ignore"
      ? "ignore"
      : typeof options.stdin === "string"
        ? new TextEncoder().encode(options.stdin)
        : options.stdin;
  const child = Bun.spawn(command, {
    stdin,
    stdout: "pipe",
    stderr: "pipe",
    env,
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  let timed_out = false;
  const timer = setTimeout(() => {
    timed_out = true;
    child.kill("SIGKILL");
  }, options.timeout_ms ?? 30_000);
  const [stdout_bytes, stderr] = await Promise.all([new Response(child.stdout).bytes(), new Response(child.stderr).text()]);
  const code = await child.exited;
  clearTimeout(timer);
  return {
    code: timed_out ? null : code,
    stdout: new TextDecoder().decode(stdout_bytes),
    stdout_bytes,
    stderr,
    elapsed_ms: performance.now() - started,
    timed_out,
  };
}

/** Exactly one line on stderr, `error: ...`, no stack trace, and the exit code. */
export function expectOneError(result: RunResult, code: number, pattern?: RegExp): void {
  const context = `stderr was: ${JSON.stringify(result.stderr)}`;
  expect(result.timed_out, context).toBe(false);
  const lines = result.stderr.split("\n").filter((l) => l !== "");
  expect(lines.length, context).toBe(1);
  expect(lines[0]!, context).toMatch(/^error: \S/);
  expect(result.stderr, context).not.toMatch(/\n\s+at |\bat .*\.ts:\d+|Error:|CACError/);
  if (pattern) expect(lines[0]!, context).toMatch(pattern);
  expect(result.code, context).toBe(code);
}

/** Ports base..base+count-1 and, with offset, base+offset..: all free right now. */
export async function freeConsecutivePorts(count: number, offset = 0): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if (offset > 0) ports.push(...ports.map((p) => p + offset));
    const free = await Promise.all(ports.map(portFree));
    if (free.every(Boolean)) return base;
  }
  throw new Error("no free consecutive ports");
}

export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}
