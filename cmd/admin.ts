/**
 * `toastyfs admin`: the admin shell. Three front ends over the same commands (admin_commands.ts):
 *
 * - stdin and stdout both terminals: the interactive shell (@clack/prompts, admin_tty.ts);
 * - otherwise a line mode: one command per line, `#` comments, results on stdout, errors on stderr,
 *   exit 1 if any command failed. clack is never used here: with piped stdin it hangs at EOF
 *   (notes/bun.md §7);
 * - `-c "cmd"`: one command, exit 0, 1 (it failed) or 2 (usage).
 */
import * as readline from "node:readline";
import { OperationError, UsageError, oneLine, optionString } from "./cli_util.ts";
import { settingsFrom } from "./client_commands.ts";
import { AdminSession, FailureWithOutput } from "./admin_commands.ts";
import { interactive } from "./admin_tty.ts";

export async function admin(options: Record<string, unknown>): Promise<void> {
  const settings = settingsFrom(options);
  const command = optionString("--command", options.command);
  const session = new AdminSession(settings);
  let code: number;
  if (command !== undefined) {
    code = isQuit(command) ? 0 : await runOne(session, command, null);
  } else if (process.stdin.isTTY === true && process.stdout.isTTY === true) {
    code = await interactive(session);
  } else {
    code = await lineMode(session);
  }
  await session.close();
  process.exit(code);
}

function isQuit(line: string): boolean {
  const word = line.trim();
  return word === "quit" || word === "exit" || word === "q";
}

/** Runs one line; prints its output and any error. Returns 0, 1 (failed) or 2 (usage). */
async function runOne(session: AdminSession, line: string, line_number: number | null): Promise<number> {
  const where = line_number === null ? "" : `line ${line_number}: `;
  try {
    const lines = await session.run(line);
    if (lines.length > 0) console.log(lines.join("\n"));
    return 0;
  } catch (error) {
    if (error instanceof FailureWithOutput && error.lines.length > 0) console.log(error.lines.join("\n"));
    if (error instanceof UsageError || error instanceof OperationError) {
      console.error(`error: ${where}${oneLine(error.message)}`);
      return error instanceof UsageError ? 2 : 1;
    }
    console.error(`error: ${where}${oneLine(error instanceof Error ? error.message : String(error))}`);
    return 1;
  }
}

/** One command per line from stdin until EOF (or quit); never prompts, never waits past EOF. */
async function lineMode(session: AdminSession): Promise<number> {
  const rl = readline.createInterface({ input: process.stdin, terminal: false, crlfDelay: Infinity });
  let failures = 0;
  let line_number = 0;
  for await (const raw of rl) {
    line_number += 1;
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (isQuit(line)) break;
    if ((await runOne(session, line, line_number)) !== 0) failures += 1;
  }
  rl.close();
  return failures > 0 ? 1 : 0;
}
