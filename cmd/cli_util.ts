/** Command-line plumbing shared by the three executables (notes/bun.md §8: cac's pitfalls). */
import type { CAC } from "cac";

/** A usage problem (bad argument, option, address, key or input file): one line on stderr, exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** An operation that ran and failed (not found, condition failed, no quorum, a file that cannot be
 * written): one line on stderr, exit 1. */
export class OperationError extends Error {
  override name = "OperationError";
}

export function parseIntArg(name: string, value: unknown, min: number, max: number): number {
  const text = String(value);
  if (!/^\d+$/.test(text)) throw new UsageError(`${name} must be a whole number, got "${text}"`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${name} must be between ${min} and ${max}, got ${text}`);
  return n;
}

/** An option given as `--name` with no value arrives as `true`; an absent one as undefined. */
export function optionString(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (value === true || value === false) throw new UsageError(`${name} needs a value`);
  if (Array.isArray(value)) {
    if (value.length > 1) throw new UsageError(`${name} given ${value.length} times; give it once`);
    return optionString(name, value[0]);
  }
  return String(value);
}

/** The first line of a message, without control characters: errors are always one line. */
export function oneLine(text: string): string {
  const first = text.split(/\r?\n/).find((line) => line.trim() !== "") ?? text;
  return first.replace(/[\x00-\x1f\x7f]/g, " ").trim();
}

/** Rewrites cac's own errors as a person would say them, naming the command and where help is. */
function explainCacError(cli: CAC, message: string): string {
  const name = cli.name;
  const command = cli.matchedCommand;
  const full = command === undefined || command.name === "" ? name : `${name} ${command.name}`;
  const help = `see ${full} --help`;
  let m: RegExpExecArray | null;
  if ((m = /^Unknown option `(.+)`$/.exec(message)) !== null) return `unknown option ${m[1]} for ${full} (${help})`;
  if (/^missing required args/.test(message)) return `missing argument: usage: ${name} ${command?.rawName ?? ""} (${help})`;
  if ((m = /^option `(.+)` value is missing$/.exec(message)) !== null) return `option ${m[1]} needs a value (${help})`;
  if ((m = /^Unused args: (.+)$/.exec(message)) !== null) {
    const extra = m[1]!.replace(/`/g, '"');
    return `too many arguments for ${full}: ${extra} (usage: ${name} ${command?.rawName ?? ""})`;
  }
  return `${message} (${help})`;
}

/** Parses and runs. Unknown commands and options, missing arguments and UsageErrors print one
 * line and exit 2; OperationErrors and any other error print one line and exit 1. Never a stack
 * trace. */
export async function runCli(cli: CAC, argv: string[]): Promise<void> {
  try {
    cli.parse(argv, { run: false });
    const command = cli.matchedCommand;
    // With a default command registered, cac sends `toastyfs frobnicate` to it as an argument.
    if (command !== undefined && command.name === "" && command.args.length === 0 && cli.args.length > 0) {
      const names = cli.commands.map((c) => c.name).filter((n) => n !== "");
      const list = names.length > 0 ? `: the commands are ${names.join(", ")}` : "";
      throw new UsageError(`unknown command "${cli.args[0]}"${list} (see ${cli.name} --help)`);
    }
    await cli.runMatchedCommand();
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    const usage = e.name === "CACError" || e instanceof UsageError;
    const message = e.name === "CACError" ? explainCacError(cli, e.message) : e.message;
    console.error(`error: ${oneLine(message)}`);
    process.exit(usage ? 2 : 1);
  }
}
