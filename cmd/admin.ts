/**
 * `toastyfs admin`: the admin shell. Three front ends over the same commands (admin_commands.ts):
 *
 * - stdin and stdout both terminals: the interactive shell (@clack/prompts, admin_tty.ts);
 * - otherwise a line mode: one command per line, `#` comments, results on stdout, errors on stderr,
 *   exit 1 if any command failed. clack is never used here: with piped stdin it hangs at EOF;
 * - `-c "cmd"`: one command, exit 0, 1 (it failed) or 2 (usage).
 */
import { OperationError, UsageError, oneLine, optionArg, optionString } from "./cli_util.ts";
import { settingsFrom } from "./client_commands.ts";
import { AdminSession, FailureWithOutput } from "./admin_commands.ts";
import { interactive } from "./admin_tty.ts";
import { splitLines } from "./lines.ts";
import { value_size_max_default, key_size_max } from "../lib/constants.ts";

/** A command line in the line mode holds at most a key and a value, with room for quoting. */
export const admin_line_bytes_max = value_size_max_default + 4 * key_size_max + 1024;

export async function admin(options: Record<string, unknown>): Promise<void> {
  const settings = settingsFrom(options);
  const command = optionString("--command", options.command);
  const session = new AdminSession(settings);
  let code: number;
  if (command !== undefined) {
    // The command's exact bytes: a key in it need not be UTF-8.
    code = isQuit(command) ? 0 : await runOne(session, optionArg("command")?.bytes ?? command, null);
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
async function runOne(session: AdminSession, line: Uint8Array | string, line_number: number | null): Promise<number> {
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

/** One command per line from stdin until EOF (or quit); never prompts, never waits past EOF.
 * Lines are bytes (a key typed raw need not be UTF-8); a line over the limit is an error of its
 * own and the next line still runs. */
async function lineMode(session: AdminSession): Promise<number> {
  let failures = 0;
  for await (const line of splitLines(process.stdin, admin_line_bytes_max)) {
    if (line.too_long) {
      console.error(
        `error: line ${line.number}: longer than ${admin_line_bytes_max} bytes (a value is at most 16 MiB; put a larger one from a file with @FILE); skipped`,
      );
      failures += 1;
      continue;
    }
    const bytes = trimAscii(line.bytes);
    if (bytes.length === 0 || bytes[0] === 0x23 /* # */) continue;
    if (isQuit(Buffer.from(bytes).toString("latin1"))) break;
    if ((await runOne(session, bytes, line.number)) !== 0) failures += 1;
  }
  return failures > 0 ? 1 : 0;
}

function trimAscii(bytes: Uint8Array): Uint8Array {
  let start = 0;
  let end = bytes.length;
  const space = (b: number) => b === 0x20 || (b >= 0x09 && b <= 0x0d);
  while (start < end && space(bytes[start]!)) start++;
  while (end > start && space(bytes[end - 1]!)) end--;
  return bytes.subarray(start, end);
}
