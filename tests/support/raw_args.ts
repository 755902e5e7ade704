/**
 * Running `toastyfs` with arguments that are arbitrary bytes. Bun.spawn takes strings and encodes
 * them as UTF-8, so a byte like 0xff cannot reach a child that way; bash's $'\xHH' quoting can,
 * and the script that carries it is plain ASCII.
 */
import { toastyfsCommand } from "./cluster.ts";
import { runCommand, type RunOptions, type RunResult } from "./cli.ts";

export type RawArg = string | Uint8Array;

/** bash ANSI-C quoting of any bytes (except NUL, which no argument can hold). */
export function bashQuote(arg: RawArg): string {
  const bytes = typeof arg === "string" ? new TextEncoder().encode(arg) : arg;
  if (bytes.includes(0)) throw new Error("an argument cannot contain a NUL byte");
  return `$'${[...bytes].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("")}'`;
}

/** Bytes from text with \xHH escapes, for writing test keys readably: raw("k\\xff"). */
export function raw(text: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "\\" && text[i + 1] === "x") {
      out.push(parseInt(text.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      out.push(...new TextEncoder().encode(text[i]!));
    }
  }
  return new Uint8Array(out);
}

/** Runs toastyfs with these exact argument bytes; stdin is empty unless given. */
export function toastyfsRaw(args: RawArg[], options: RunOptions = {}): Promise<RunResult> {
  const script = `exec "$@" ${args.map(bashQuote).join(" ")}`;
  return runCommand(["bash", "-c", script, "bash", ...toastyfsCommand()], options);
}
