/**
 * The command line as bytes. Bun (like Node) hands a program its arguments as strings decoded from
 * UTF-8, with every invalid byte replaced by U+FFFD: `put $'k\xff'` and `put $'k\xfe'` would both
 * arrive as "k\uFFFD" and overwrite each other. On Linux /proc/self/cmdline holds the exact bytes,
 * NUL-separated, both under `bun cmd/toastyfs.ts` and in the compiled executable (whose cmdline
 * has one entry fewer in front than process.argv: the executable, where argv has "bun" and the
 * embedded script). The user's arguments are the last argv.length - 2 entries of it; they are
 * used only if each decodes to exactly the string Bun gave, else the strings are all there is.
 *
 * The option parser (cac, over mri) only sees strings, and mri also turns option values that look
 * like numbers into numbers ("" becomes 0, "007" becomes 7, "1e3" becomes 1000). So arguments are
 * handed to it as markers where that could happen, and put back after parsing:
 * - every argument after the first `--` (never an option, so `put -- -dash FILE` works);
 * - every argument that is not an option or a command name (values and positionals);
 * - the value part of `--name=value`.
 * A marker holds a NUL byte, which no real argument can contain, so it can never collide with one.
 *
 * cac also tells mri its boolean options by their camelCase names, so mri does not know that
 * `--if-absent` is one and takes the next argument as its value (`put --if-absent KEY FILE` lost
 * KEY). Such flags are handed over in camelCase (`--ifAbsent`), which both agree on.
 */
import * as fs from "node:fs";

/** One argument: its exact bytes (when known), and the string Bun gave for it. */
export interface RawArg {
  bytes: Uint8Array;
  text: string;
  /** False when the bytes could not be read and the text was not valid UTF-8 (it holds U+FFFD):
   * then bytes is only the text's UTF-8 encoding, not what was typed. */
  exact: boolean;
}

const utf8 = new TextDecoder();
const strict_utf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

function isUtf8(bytes: Uint8Array): boolean {
  try {
    strict_utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** The user's arguments (what follows the program in argv) as bytes, from the cmdline file's
 * contents when they agree with argv, else from argv's strings. */
export function userArgs(argv: readonly string[], cmdline: Uint8Array | null): RawArg[] {
  const texts = argv.slice(2);
  if (cmdline !== null && cmdline.length > 0) {
    const entries: Uint8Array[] = [];
    let start = 0;
    for (let i = 0; i < cmdline.length; i++) {
      if (cmdline[i] !== 0) continue;
      entries.push(cmdline.subarray(start, i));
      start = i + 1;
    }
    if (start < cmdline.length) entries.push(cmdline.subarray(start)); // no final NUL
    if (entries.length >= texts.length) {
      const tail = entries.slice(entries.length - texts.length);
      if (tail.every((bytes, i) => utf8.decode(bytes) === texts[i]))
        return tail.map((bytes, i) => ({ bytes: bytes.slice(), text: texts[i]!, exact: true }));
    }
  }
  return texts.map((text) => ({ bytes: encoder.encode(text), text, exact: !text.includes("\uFFFD") }));
}

/** This process's arguments as bytes (see the module comment). */
export function processArgs(): RawArg[] {
  let cmdline: Uint8Array | null = null;
  try {
    cmdline = fs.readFileSync("/proc/self/cmdline");
  } catch {
    // Not Linux, or /proc is not mounted: argv's strings are all there is.
  }
  return userArgs(process.argv, cmdline);
}

const marker_pattern = /\u0000(\d+)\u0000/g;
const marker_exact = /^\u0000(\d+)\u0000$/;

/** The arguments as the option parser gets them, and the way back from its results. */
export class MarkedArgs {
  /** What to give the parser in place of the user's arguments. */
  readonly parser_args: string[] = [];
  /** The arguments before the first `--` (the ones that may be options). */
  readonly before_double_dash: RawArg[];
  private readonly values: RawArg[] = [];

  /** command_names: words that are commands (kept as text so the parser can match them);
   * dashed_flags: long boolean options with a dash in their name, without the leading `--`. */
  constructor(
    readonly args: readonly RawArg[],
    command_names: ReadonlySet<string>,
    private readonly dashed_flags: ReadonlySet<string> = new Set(),
  ) {
    const double_dash = args.findIndex((a) => a.text === "--" && a.exact);
    this.before_double_dash = double_dash < 0 ? [...args] : args.slice(0, double_dash);
    args.forEach((arg, i) => {
      if (i === double_dash) return;
      const options_allowed = double_dash < 0 || i < double_dash;
      this.parser_args.push(options_allowed ? this.forParser(arg, command_names) : this.mark(arg));
    });
  }

  private mark(arg: RawArg): string {
    this.values.push(arg);
    return `\u0000${this.values.length - 1}\u0000`;
  }

  private forParser(arg: RawArg, command_names: ReadonlySet<string>): string {
    const valid = arg.exact && isUtf8(arg.bytes);
    if (arg.text.startsWith("-") && arg.text !== "-") {
      const equals = arg.bytes.indexOf(0x3d);
      if (arg.text.startsWith("--") && equals > 2) {
        const name = arg.bytes.subarray(0, equals + 1);
        const value = arg.bytes.subarray(equals + 1);
        const value_valid = arg.exact && isUtf8(value);
        return utf8.decode(name) + this.mark({ bytes: value, text: utf8.decode(value), exact: arg.exact || value_valid });
      }
      if (arg.text.startsWith("--") && this.dashed_flags.has(arg.text.slice(2))) return `--${camelCase(arg.text.slice(2))}`;
      return arg.text; // an option (or a mistake the parser reports)
    }
    if (valid && command_names.has(arg.text)) return arg.text;
    return this.mark(arg);
  }

  /** The argument a parser value stands for, if it is one marker. */
  argOf(value: unknown): RawArg | undefined {
    if (typeof value !== "string") return undefined;
    const m = marker_exact.exec(value);
    return m === null ? undefined : this.values[Number(m[1])];
  }

  /** A parser value with markers replaced by the text they stand for (arrays element by element). */
  unmark(value: unknown): unknown {
    if (Array.isArray(value)) return value.map((v) => this.unmark(v));
    if (typeof value !== "string") return value;
    return value.replace(marker_pattern, (_, n: string) => this.values[Number(n)]?.text ?? "");
  }
}

/** "if-absent" -> "ifAbsent", as cac names options. */
export function camelCase(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** "ifAbsent" -> "if-absent", for messages about options the parser got in camelCase. */
export function kebabCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
