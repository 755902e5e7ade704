/**
 * The admin shell's commands, shared by its three front ends: the interactive shell (a terminal),
 * the line mode (stdin from a pipe or file: one command per line) and `-c "cmd"`. A command
 * returns the lines it prints on stdout and throws UsageError (a wrong command line) or
 * OperationError (the operation failed) with a one-line message.
 */
import * as fs from "node:fs";
import { Client, ClientError, type LargePutOptions } from "../lib/client/client.ts";
import { formatAddress, parseAddress, AddressError } from "../lib/net/address.ts";
import type { ReplicaStatus } from "../lib/net/status_codec.ts";
import { value_size_max_default } from "../lib/constants.ts";
import { EscapeError, parseEscapeAt } from "../lib/util/escape.ts";
import { OperationError, UsageError } from "./cli_util.ts";
import { checkKey, checkPrefix, status_timeout_ms, type ClusterSettings } from "./client_commands.ts";
import { openInputFile } from "./transfer.ts";
import { describeValue, formatListEntry, formatReplicaDetails, formatStat, keyText } from "./format.ts";
import { renderStatus, type StatusReport } from "./status_report.ts";
import { probeCluster, type ReplicaProbe } from "../lib/client/cluster_probe.ts";

export interface AdminCommand {
  name: string;
  usage: string;
  description: string;
}

export const admin_commands: AdminCommand[] = [
  { name: "status", usage: "status", description: "one line per replica and a verdict (healthy, degraded, no quorum)" },
  { name: "replica", usage: "replica ADDRESS|INDEX", description: "everything one replica reports about itself, counters included" },
  { name: "ls", usage: "ls [-l] [PREFIX]", description: "list keys (with -l: size, version, time)" },
  { name: "get", usage: "get KEY", description: "print a value (text as is, binary as a hex dump)" },
  { name: "stat", usage: "stat KEY", description: "version, size, time and checksum of an object" },
  {
    name: "put",
    usage: "put [--if-absent|--if-version V] KEY TEXT|@FILE",
    description: 'store the rest of the line (or a file of any size, streamed) under KEY; put KEY "" stores an empty value',
  },
  { name: "delete", usage: "delete [--if-version V] KEY", description: "delete an object" },
  { name: "help", usage: "help", description: "this list" },
  { name: "quit", usage: "quit", description: "leave the shell (also exit, or end of input)" },
];

export function helpLines(): string[] {
  const width = Math.max(...admin_commands.map((c) => c.usage.length));
  return [
    "commands:",
    ...admin_commands.map((c) => `  ${c.usage.padEnd(width)}  ${c.description}`),
    'keys and text with spaces can be quoted: get "my key"; lines starting with # are comments',
    "escapes in keys (outside single quotes): \\xHH for any byte, \\n, \\r, \\t, \\\\, \\\", \\' (as ls prints them)",
    'a key starting with - goes after -- or in quotes: get -- -key, get "-key"',
  ];
}

/** A word of a command line, and where the raw text after it starts. */
interface Token {
  bytes: Uint8Array;
  end: number;
  /** Any part of it was quoted: never an option, and a quoted @ is not a file. */
  quoted: boolean;
}

const backslash = 0x5c;
const single_quote = 0x27;
const double_quote = 0x22;
const at_sign = 0x40;
const utf8 = new TextDecoder();
const encoder = new TextEncoder();

function isSpace(b: number): boolean {
  return b === 0x20 || (b >= 0x09 && b <= 0x0d);
}

/** Splits a line like a shell would for plain words: whitespace separates; '...' quotes literally;
 * "..." quotes with escapes; outside quotes, escapes too (lib/util/escape.ts: \xHH, \n, \\, ...).
 * Works on bytes, so a word may hold any byte, typed raw or as an escape. */
export function tokenize(line: Uint8Array): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const escape = (): number => {
    try {
      const { byte, next } = parseEscapeAt(line, i);
      i = next;
      return byte;
    } catch (error) {
      if (error instanceof EscapeError) throw new UsageError(error.message);
      throw error;
    }
  };
  while (i < line.length) {
    while (i < line.length && isSpace(line[i]!)) i++;
    if (i >= line.length) break;
    const word: number[] = [];
    let quoted = false;
    while (i < line.length && !isSpace(line[i]!)) {
      const c = line[i]!;
      if (c === single_quote || c === double_quote) {
        quoted = true;
        i++;
        while (i < line.length && line[i] !== c) {
          if (c === double_quote && line[i] === backslash) word.push(escape());
          else word.push(line[i++]!);
        }
        if (i >= line.length) throw new UsageError(`unterminated ${c === double_quote ? "double" : "single"} quote`);
        i++;
      } else if (c === backslash) {
        word.push(escape());
      } else {
        word.push(c);
        i++;
      }
    }
    tokens.push({ bytes: Uint8Array.from(word), end: i, quoted });
  }
  return tokens;
}

function trimSpace(bytes: Uint8Array): Uint8Array {
  let start = 0;
  let end = bytes.length;
  while (start < end && isSpace(bytes[start]!)) start++;
  while (end > start && isSpace(bytes[end - 1]!)) end--;
  return bytes.subarray(start, end);
}

/** What a put stores: bytes typed, or a file streamed (any size: a block per lane in memory). */
export type PutValue = { bytes: Uint8Array } | { file: Uint8Array | string };

/** The value of a put: the rest of the line after the key, as typed; one quoted word unquoted
 * (escapes read); a file with an unquoted @FILE. Empty only when asked for with "". */
function putValue(line: Uint8Array, tokens: Token[], index: number): PutValue {
  const rest = tokens.slice(index);
  const key = tokens[index - 1]!;
  const shown = keyText(key.bytes);
  if (rest.length === 0) {
    if (!key.quoted && key.bytes[0] === at_sign && key.bytes.length > 1) {
      const file = keyText(key.bytes.subarray(1));
      throw new UsageError(
        `no value for ${shown}: to store the file ${file}, give a key first: put KEY @${file}; to store an empty value under the key "${shown}": put "${shown}" ""`,
      );
    }
    throw new UsageError(`no value for ${shown}: give TEXT or @FILE after the key; for an empty value: put ${shown} ""`);
  }
  const first = rest[0]!;
  if (rest.length === 1 && !first.quoted && first.bytes[0] === at_sign && first.bytes.length > 1) return { file: first.bytes.subarray(1) };
  const value = rest.length === 1 && first.quoted ? first.bytes : trimSpace(line.subarray(key.end)).slice();
  if (value.length > value_size_max_default) throw new UsageError(`the value is ${value.length} bytes: the largest is 16 MiB`);
  return { bytes: value };
}

/** Options before the arguments: words starting with - up to the first other word or `--`.
 * `flags` maps each option to whether it takes a value. A quoted word is never an option. */
function parseOptions(
  tokens: Token[],
  flags: ReadonlyMap<string, boolean>,
  usage: string,
): { options: Map<string, string | true>; rest: Token[] } {
  const options = new Map<string, string | true>();
  let i = 0;
  while (i < tokens.length) {
    const t = tokens[i]!;
    const text = utf8.decode(t.bytes);
    if (t.quoted || !text.startsWith("-") || text === "-") break;
    i++;
    if (text === "--") break;
    const takes_value = flags.get(text);
    if (takes_value === undefined) {
      const command = usage.split(" ")[0];
      throw new UsageError(
        `unknown option ${keyText(t.bytes)}: usage: ${usage}; a key starting with - goes after --: ${command} -- ${keyText(t.bytes)}`,
      );
    }
    if (takes_value) {
      const value = tokens[i];
      if (value === undefined) throw new UsageError(`${text} needs a value: usage: ${usage}`);
      options.set(text, utf8.decode(value.bytes));
      i++;
    } else {
      options.set(text, true);
    }
  }
  return { options, rest: tokens.slice(i) };
}

const no_options: ReadonlyMap<string, boolean> = new Map();

/** A command that failed after producing output (status of a cluster that does not serve): the
 * lines go to stdout, the message to stderr. */
export class FailureWithOutput extends OperationError {
  constructor(
    message: string,
    readonly lines: string[],
  ) {
    super(message);
  }
}

export class AdminSession {
  private client: Client | null = null;

  constructor(readonly settings: ClusterSettings) {}

  private get c(): Client {
    this.client ??= new Client({
      addresses: this.settings.addresses,
      operation_timeout_ms: this.settings.operation_timeout_ms,
      secret: this.settings.secret,
      tls: this.settings.tls,
    });
    return this.client;
  }

  async close(): Promise<void> {
    await this.client?.close();
    this.client = null;
  }

  /** Runs one operation, turning client errors into one-line OperationErrors naming it. */
  async op<T>(what: string, fn: (client: Client) => Promise<T>): Promise<T> {
    try {
      return await fn(this.c);
    } catch (error) {
      if (error instanceof ClientError) {
        if (error.code === "key_invalid" || error.code === "value_too_large") throw new UsageError(`${what}: ${error.message}`);
        throw new OperationError(`${what}: ${error.message}`);
      }
      throw error;
    }
  }

  /** Stores bytes, or streams a file through an upload (a file is checked when opened: a usage
   * error if it cannot be read). */
  async put(key: Uint8Array, value: PutValue, options: LargePutOptions): Promise<{ version: number; size: number }> {
    const what = `put ${keyText(key)}`;
    if ("bytes" in value) {
      const { version } = await this.op(what, (client) => client.put(key, value.bytes, options));
      return { version, size: value.bytes.length };
    }
    const input = openInputFile(value.file);
    try {
      const { version, size } = await this.op(what, (client) => client.putSource(key, input.source, options));
      return { version, size };
    } finally {
      fs.closeSync(input.fd);
    }
  }

  async probes(): Promise<ReplicaProbe[]> {
    return probeCluster(this.settings.addresses, status_timeout_ms, this.settings.secret, this.settings.tls);
  }

  async statuses(): Promise<(ReplicaStatus | null)[]> {
    return (await this.probes()).map((p) => p.status);
  }

  async statusReport(): Promise<StatusReport> {
    return renderStatus(await this.probes(), status_timeout_ms);
  }

  /** The replica addresses in membership (index) order. */
  get replicaNames(): string[] {
    return this.settings.addresses.map(formatAddress).sort();
  }

  async replicaDetails(which: string): Promise<string[]> {
    const names = this.replicaNames;
    let index = /^\d+$/.test(which) ? Number(which) : -1;
    if (index < 0) {
      let text = which;
      try {
        text = formatAddress(parseAddress(which));
      } catch (error) {
        if (!(error instanceof AddressError)) throw error;
      }
      index = names.indexOf(text);
    }
    if (index < 0 || index >= names.length)
      throw new UsageError(`no replica "${which}": give an index 0-${names.length - 1} or one of ${names.join(", ")}`);
    const probes = await this.probes();
    return formatReplicaDetails(probes[index]!, status_timeout_ms);
  }

  /** Parses and runs one command line (bytes, or text taken as UTF-8); returns what it prints.
   * Quit is the caller's business. */
  async run(input: Uint8Array | string): Promise<string[]> {
    const line = typeof input === "string" ? encoder.encode(input) : input;
    const tokens = tokenize(line);
    if (tokens.length === 0) return [];
    const command = utf8.decode(tokens[0]!.bytes);
    const words = tokens.slice(1);
    const args = words.map((t) => utf8.decode(t.bytes));
    /** The arguments after the options, exactly n of them. */
    const exactly = (n: number, list: Token[], usage: string): Token[] => {
      if (list.length < n) throw new UsageError(`missing argument: usage: ${usage}`);
      if (list.length > n) throw new UsageError(`too many arguments: usage: ${usage}`);
      return list;
    };
    switch (command) {
      case "help":
      case "?":
        return helpLines();
      case "status": {
        exactly(0, words, "status");
        const report = await this.statusReport();
        if (!report.serving) throw new FailureWithOutput(report.verdict, report.lines);
        return [...report.lines, report.verdict];
      }
      case "replica":
        exactly(1, words, "replica ADDRESS|INDEX");
        return this.replicaDetails(args[0]!);
      case "ls":
      case "list": {
        const usage = "ls [-l] [PREFIX]";
        const { options, rest } = parseOptions(
          words,
          new Map([
            ["-l", false],
            ["--long", false],
          ]),
          usage,
        );
        if (rest.length > 1) throw new UsageError(`too many arguments: usage: ${usage}`);
        const prefix = checkPrefix(rest[0]?.bytes ?? new Uint8Array(0));
        const long = options.size > 0;
        const lines: string[] = [];
        await this.op(`ls ${keyText(prefix)}`.trimEnd(), async (client) => {
          for await (const entry of client.listAll(prefix)) lines.push(formatListEntry(entry, long));
        });
        return lines;
      }
      case "get": {
        const usage = "get KEY";
        const [t] = exactly(1, parseOptions(words, no_options, usage).rest, usage);
        const key = checkKey(t!.bytes);
        const result = await this.op(`get ${keyText(key)}`, (client) => client.get(key));
        return describeValue(result.value);
      }
      case "stat": {
        const usage = "stat KEY";
        const [t] = exactly(1, parseOptions(words, no_options, usage).rest, usage);
        const key = checkKey(t!.bytes);
        return formatStat(key, await this.op(`stat ${keyText(key)}`, (client) => client.stat(key)));
      }
      case "put": {
        const usage = "put [--if-absent|--if-version V] KEY TEXT|@FILE";
        const { options, rest } = parseOptions(
          words,
          new Map([
            ["--if-absent", false],
            ["--if-version", true],
          ]),
          usage,
        );
        const put_options: { if_absent?: boolean; if_version?: number } = {};
        if (options.has("--if-absent")) put_options.if_absent = true;
        if (options.has("--if-version")) put_options.if_version = versionArg(options.get("--if-version") as string);
        if (put_options.if_absent && put_options.if_version !== undefined)
          throw new UsageError(`give --if-version or --if-absent, not both: usage: ${usage}`);
        if (rest.length === 0) throw new UsageError(`missing argument: usage: ${usage}`);
        const key = checkKey(rest[0]!.bytes);
        const { version, size } = await this.put(key, putValue(line, tokens, tokens.indexOf(rest[0]!) + 1), put_options);
        return [`${keyText(key)}: version ${version} (${size} bytes)`];
      }
      case "delete":
      case "rm": {
        const usage = "delete [--if-version V] KEY";
        const { options, rest } = parseOptions(words, new Map([["--if-version", true]]), usage);
        const delete_options: { if_version?: number } = {};
        if (options.has("--if-version")) delete_options.if_version = versionArg(options.get("--if-version") as string);
        const [t] = exactly(1, rest, usage);
        const key = checkKey(t!.bytes);
        await this.op(`delete ${keyText(key)}`, (client) => client.delete(key, delete_options));
        return [`${keyText(key)}: deleted`];
      }
      default:
        throw new UsageError(`unknown command "${keyText(tokens[0]!.bytes)}" (type help for the list)`);
    }
  }
}

function versionArg(text: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)))
    throw new UsageError(`--if-version needs a version number, got "${text}"`);
  return Number(text);
}
