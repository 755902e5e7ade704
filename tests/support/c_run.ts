/**
 * Running the C client's programs from tests: where they are built, valgrind with the flags that
 * make a leak an error, and a spawn that collects the output with a kill timer.
 */
import * as path from "node:path";
import { repo } from "./cluster.ts";

export const c_dir = path.join(repo, "clients/c");
export const build_dir = path.join(c_dir, "build");
export const valgrind = Bun.which("valgrind");
export const valgrind_args = ["--leak-check=full", "--error-exitcode=1", "--errors-for-leak-kinds=definite,indirect,possible"];

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs cmd (in clients/c unless cwd says otherwise) to its exit, SIGKILLed after timeout_ms. */
export async function run(cmd: string[], options: { cwd?: string; stdin?: Uint8Array; timeout_ms?: number } = {}): Promise<Run> {
  const proc = Bun.spawn(cmd, { cwd: options.cwd ?? c_dir, stdout: "pipe", stderr: "pipe", stdin: options.stdin ?? "ignore" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeout_ms ?? 60_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** cmd under valgrind when it is installed, else cmd itself. */
export function underValgrind(cmd: string[]): string[] {
  return valgrind === null ? cmd : [valgrind, ...valgrind_args, ...cmd];
}
