/** Command-line plumbing shared by the three executables (cac's own errors are stack traces or nothing; the
 * arguments as bytes: raw_argv.ts). */
import type { CAC, Command } from "cac";
import { MarkedArgs, kebabCase, processArgs, userArgs, type RawArg } from "./raw_argv.ts";
import { escapeBytes } from "../lib/util/escape.ts";
import { AddressError, parseAddress, type Address } from "../lib/net/address.ts";
import {
  block_size_max_ceiling_bytes,
  block_size_min_bytes,
  defaultConfig,
  scrub_bytes_per_tick_max,
  scrub_bytes_per_tick_min,
  upload_abandon_ms_ceiling,
} from "../lib/constants.ts";

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

/** The large-object settings a replica takes from its command line (LARGE_OBJECTS.md §2): every
 * replica of a cluster must be given the same ones. Absent options keep the defaults. */
export function largeObjectOptions(options: { blockSizeMax?: unknown; uploadAbandonAge?: unknown; scrubRate?: unknown }): {
  config: { block_size_max?: number; upload_abandon_ms?: number; scrub_bytes_per_tick?: number };
  args: string[];
} {
  const config: { block_size_max?: number; upload_abandon_ms?: number; scrub_bytes_per_tick?: number } = {};
  const args: string[] = [];
  if (options.blockSizeMax !== undefined) {
    config.block_size_max = parseIntArg("--block-size-max", options.blockSizeMax, block_size_min_bytes, block_size_max_ceiling_bytes);
    args.push("--block-size-max", String(config.block_size_max));
  }
  if (options.uploadAbandonAge !== undefined) {
    const seconds = parseIntArg("--upload-abandon-age", options.uploadAbandonAge, 1, Math.floor(upload_abandon_ms_ceiling / 1000));
    config.upload_abandon_ms = seconds * 1000;
    args.push("--upload-abandon-age", String(seconds));
  }
  if (options.scrubRate !== undefined) {
    // MB/s at the replica's 10 ms tick: bytes per tick = MB/s × 10^6 / 100.
    const ticks_per_second = 1000 / defaultConfig(1, 0n).tick_ms;
    const min = Math.ceil((scrub_bytes_per_tick_min * ticks_per_second) / 1e6);
    const max = Math.floor((scrub_bytes_per_tick_max * ticks_per_second) / 1e6);
    const rate = parseIntArg("--scrub-rate", options.scrubRate, min, max);
    config.scrub_bytes_per_tick = Math.round((rate * 1e6) / ticks_per_second);
    args.push("--scrub-rate", String(rate));
  }
  return { config, args };
}

/** An option given as `--name` with no value arrives as `true`; an absent one as undefined. */
export function optionString(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (value === true || value === false) throw new UsageError(`${name} needs a value`);
  if (Array.isArray(value)) {
    if (value.length > 1) throw new UsageError(`${name} given ${value.length} times; give it once`);
    return optionString(name, value[0]);
  }
  const text = String(value);
  if (text === "") throw new UsageError(`${name} is empty: give it a value`);
  return text;
}

/** An option that is a host:port, or null when absent; a bad one is a UsageError naming the option. */
export function addressOption(name: string, value: unknown): Address | null {
  const text = optionString(name, value);
  if (text === undefined) return null;
  try {
    return parseAddress(text);
  } catch (error) {
    if (error instanceof AddressError) throw new UsageError(`${name}: ${error.message}`);
    throw error;
  }
}

/** The first line of a message, without control characters: errors are always one line. */
export function oneLine(text: string): string {
  const first = text.split(/\r?\n/).find((line) => line.trim() !== "") ?? text;
  return first.replace(/[\x00-\x1f\x7f]/g, " ").trim();
}

/** The arguments of the command being run, as bytes (set by runCli before the action runs). */
interface CommandLine {
  positional: RawArg[];
  options: Map<string, RawArg>;
}

let current: CommandLine | null = null;

/** The matched command's i-th positional argument as typed; `text` is what the action received,
 * used when no command line was parsed (an action called directly). */
export function positionalArg(i: number, text: string): RawArg {
  return current?.positional[i] ?? { bytes: new TextEncoder().encode(text), text, exact: true };
}

/** An option's value as typed (camelCase name, as cac gives it: "output"), if it was given once
 * with a value. */
export function optionArg(name: string): RawArg | undefined {
  return current?.options.get(name);
}

/** `--no-x` options say "(default: true)" in cac's help, which reads as if x were off by default. */
export function helpWithoutNegatedDefaults(sections: { title?: string; body: string }[]): { title?: string; body: string }[] {
  return sections.map((s) => ({ ...s, body: s.body.replace(/^(\s*--no-\S.*?) \(default: true\)/gm, "$1") }));
}

/** Where an unknown option came from among the arguments, and how to pass it as an argument. */
function unknownOptionHint(cli: CAC, option: string, args: readonly RawArg[], full: string): { name: string; within: string; how: string } {
  const letter = /^-[^-]$/.test(option) ? option.slice(1) : null;
  const arg =
    args.find((a) => a.text === option || a.text.startsWith(`${option}=`)) ??
    (letter === null ? undefined : args.find((a) => /^-[^-]/.test(a.text) && a.text.includes(letter)));
  if (arg === undefined) return { name: option, within: "", how: "" };
  const shown = escapeBytes(arg.bytes);
  const takes_arguments = (cli.matchedCommand?.args.length ?? 0) > 0;
  return {
    name: arg.text === option ? shown : option,
    within: arg.text === option ? "" : ` (in "${shown}")`,
    how: takes_arguments ? `; if "${shown}" is meant as an argument (a key, a file), put -- before it: ${full} -- ${shown}` : "",
  };
}

/** Rewrites cac's own errors as a person would say them, naming the command and where help is. */
function explainCacError(cli: CAC, message: string, args: readonly RawArg[]): string {
  const name = cli.name;
  const command = cli.matchedCommand;
  const full = command === undefined || command.name === "" ? name : `${name} ${command.name}`;
  const help = `see ${full} --help`;
  let m: RegExpExecArray | null;
  if ((m = /^Unknown option `(.+)`$/.exec(message)) !== null) {
    const option = kebabCase(m[1]!);
    const { name: shown, within, how } = unknownOptionHint(cli, option, args, full);
    return `unknown option ${shown}${within} for ${full} (${help})${how}`;
  }
  if (/^missing required args/.test(message)) return `missing argument: usage: ${name} ${command?.rawName ?? ""} (${help})`;
  if ((m = /^option `(.+)` value is missing$/.exec(message)) !== null) return `option ${m[1]} needs a value (${help})`;
  if ((m = /^Unused args: (.+)$/.exec(message)) !== null) {
    const extra = m[1]!.replace(/`/g, '"');
    return `too many arguments for ${full}: ${extra} (usage: ${name} ${command?.rawName ?? ""})`;
  }
  return `${message} (${help})`;
}

/** Long boolean options with a dash in their name (if-absent), of every command. */
function dashedFlags(cli: CAC): Set<string> {
  const flags = new Set<string>();
  for (const c of [cli.globalCommand, ...cli.commands]) {
    for (const o of c.options) {
      if (!o.isBoolean || o.negated) continue;
      for (const part of o.rawName.split(",")) {
        const name = part.trim();
        if (name.startsWith("--") && name.slice(2).includes("-")) flags.add(name.slice(2));
      }
    }
  }
  return flags;
}

function commandNames(cli: CAC): Set<string> {
  const names = new Set<string>();
  for (const c of cli.commands) {
    if (c.name !== "") names.add(c.name);
    for (const alias of c.aliasNames) names.add(alias);
  }
  return names;
}

/** Parses the arguments (markers in place of values, raw_argv.ts), then puts the values back as
 * text into cac's results and keeps their bytes for positionalArg and optionArg. */
function parse(cli: CAC, args: readonly RawArg[]): MarkedArgs {
  const marked = new MarkedArgs(args, commandNames(cli), dashedFlags(cli));
  // Help and version are handled below, after unknown options are checked: `put -dash` is -d -a
  // -s -h to the parser, and must be an error rather than help and exit 0.
  cli.showHelpOnExit = false;
  cli.showVersionOnExit = false;
  cli.parse(["toastyfs", cli.name, ...marked.parser_args], { run: false });
  const positional = cli.args.map((a) => marked.argOf(a) ?? { bytes: new TextEncoder().encode(a), text: a, exact: true });
  const options = new Map<string, RawArg>();
  for (const [key, value] of Object.entries(cli.options)) {
    const arg = marked.argOf(value);
    if (arg !== undefined) options.set(key, arg);
    cli.options[key] = marked.unmark(value);
  }
  cli.args = cli.args.map((a) => marked.unmark(a) as string);
  current = { positional, options };
  return marked;
}

function versionLine(cli: CAC): string {
  return `${cli.name} ${cli.globalCommand.versionNumber ?? "(unknown version)"} (bun ${Bun.version}, ${process.platform}-${process.arch})`;
}

/** Parses and runs. Unknown commands and options, missing arguments and UsageErrors print one
 * line and exit 2; OperationErrors and any other error print one line and exit 1. Never a stack
 * trace. Given process.argv, the arguments' exact bytes are read (raw_argv.ts). */
export async function runCli(cli: CAC, argv: readonly string[]): Promise<void> {
  const args = argv === process.argv ? processArgs() : userArgs(argv, null);
  let before_double_dash: readonly RawArg[] = args;
  try {
    before_double_dash = parse(cli, args).before_double_dash;
    const command: Command | undefined = cli.matchedCommand;
    // With a default command registered, cac sends `toastyfs frobnicate` to it as an argument.
    if (command !== undefined && command.name === "" && command.args.length === 0 && cli.args.length > 0) {
      const names = cli.commands.map((c) => c.name).filter((n) => n !== "");
      const list = names.length > 0 ? `: the commands are ${names.join(", ")}` : "";
      throw new UsageError(`unknown command "${cli.args[0]}"${list} (see ${cli.name} --help)`);
    }
    if (cli.options.help === true || cli.options.version === true) {
      command?.checkUnknownOptions();
      if (cli.options.help === true) cli.outputHelp();
      else console.log(versionLine(cli));
      return;
    }
    await cli.runMatchedCommand();
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    const usage = e.name === "CACError" || e instanceof UsageError;
    const message = e.name === "CACError" ? explainCacError(cli, e.message, before_double_dash) : e.message;
    console.error(`error: ${oneLine(message)}`);
    process.exit(usage ? 2 : 1);
  }
}
