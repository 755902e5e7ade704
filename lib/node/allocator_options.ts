/**
 * Allocator settings a replica runs with, applied by re-executing the process once at startup.
 *
 * Bun allocates through mimalloc, which hands memory freed by the garbage collector back to the
 * system (MADV_DONTNEED) 100 ms after it is freed. A replica moving 1 MiB values allocates a fresh
 * frame-sized buffer per message received (lib/net/frame_reader.ts: the message owns it) and per
 * prepare, and frees them a few hundred milliseconds later, after that delay: so every page of
 * every large buffer was faulted in and zeroed again. Measured on the 2-core VM of
 * bench/RESULTS.md ("1 MiB puts and gets: CPU per op"): 250-400 page faults per 1 MiB put on each
 * replica, and a fresh 1 MiB touched costs about 0.6 ms there against 0.03 ms for a warm one. With
 * a longer delay the memory is reused while warm: 10-35 faults per put. The price is memory:
 * memory freed stays with the process for up to the delay after a burst.
 *
 * mimalloc reads its options from the environment once, when the process starts, so setting
 * process.env later has no effect: the process re-executes itself (process.execve keeps its pid,
 * which the data directory's lock, supervisors and kill -9 tests rely on) with the option set. An
 * operator's own MIMALLOC_PURGE_DELAY is kept as given.
 */

/** Milliseconds mimalloc keeps freed memory before returning it to the system (its default: 100). */
export const allocator_purge_delay_ms = 10_000;

const purge_delay_variable = "MIMALLOC_PURGE_DELAY";

/**
 * The command line and environment to re-execute this process with, or null if the allocator is
 * already configured (or the runtime cannot re-execute). Pure, for tests; `argv` and `exec_argv`
 * are process.argv and process.execArgv.
 */
export function allocatorReexec(
  exec_path: string,
  argv: readonly string[],
  exec_argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): { args: string[]; env: Record<string, string> } | null {
  if (env[purge_delay_variable] !== undefined) return null;
  // A compiled executable's argv[1] is the entry point inside it ("/$bunfs/root/..."), which it
  // inserts itself on every start; from source, argv[1] is the script bun must run.
  const script = argv[1];
  if (script === undefined) return null;
  const rest = script.startsWith("/$bunfs/") ? argv.slice(2) : argv.slice(1);
  const next: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) if (value !== undefined) next[name] = value;
  next[purge_delay_variable] = String(allocator_purge_delay_ms);
  return { args: [exec_path, ...exec_argv, ...rest], env: next };
}

/** Re-executes the process with the allocator options set, unless they are set already. Call
 * first thing, before any file, socket or lock is opened. Does not return when it re-executes. */
export function applyAllocatorOptions(): void {
  const execve = (process as { execve?: (file: string, args: string[], env: Record<string, string>) => never }).execve;
  if (typeof execve !== "function") return;
  const plan = allocatorReexec(process.execPath, process.argv, process.execArgv, process.env);
  if (plan === null) return;
  try {
    execve.call(process, process.execPath, plan.args, plan.env);
  } catch {
    // The executable could not be run again (removed or replaced on disk meanwhile): the option
    // only saves CPU, so run without it rather than not at all.
  }
}
