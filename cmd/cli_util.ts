/** Command-line plumbing shared by the three executables (notes/bun.md §8: cac's pitfalls). */
import type { CAC } from "cac";

/** A usage problem: one line on stderr, exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export function parseIntArg(name: string, value: unknown, min: number, max: number): number {
  const text = String(value);
  if (!/^\d+$/.test(text)) throw new UsageError(`${name} must be a whole number, got "${text}"`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${name} must be between ${min} and ${max}, got ${text}`);
  return n;
}

/** Parses and runs; unknown commands and options, missing arguments and UsageErrors print one
 * line and exit 2; any other error prints one line and exits 1 (never a stack trace). */
export async function runCli(cli: CAC, argv: string[]): Promise<void> {
  cli.addEventListener("command:*", () => {
    console.error(`error: unknown command "${cli.args.join(" ")}" (see --help)`);
    process.exit(2);
  });
  try {
    cli.parse(argv, { run: false });
    await cli.runMatchedCommand();
  } catch (error) {
    const e = error as Error;
    const usage = e.name === "CACError" || e instanceof UsageError;
    console.error(`error: ${e.message}`);
    process.exit(usage ? 2 : 1);
  }
}
