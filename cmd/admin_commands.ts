/**
 * The admin shell's commands, shared by its three front ends: the interactive shell (a terminal),
 * the line mode (stdin from a pipe or file: one command per line) and `-c "cmd"`. A command
 * returns the lines it prints on stdout and throws UsageError (a wrong command line) or
 * OperationError (the operation failed) with a one-line message.
 */
import { Client, ClientError } from "../lib/client/client.ts";
import { formatAddress, parseAddress, AddressError } from "../lib/net/address.ts";
import type { ReplicaStatus } from "../lib/node/status.ts";
import { key_size_max, value_size_max_default } from "../lib/constants.ts";
import { OperationError, UsageError } from "./cli_util.ts";
import { checkKey, readInputFile, status_timeout_ms, type ClusterSettings } from "./client_commands.ts";
import { describeValue, formatListEntry, formatReplicaDetails, formatStat } from "./format.ts";
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
  { name: "put", usage: "put [--if-absent|--if-version V] KEY TEXT|@FILE", description: "store the rest of the line (or a file's contents) under KEY" },
  { name: "delete", usage: "delete [--if-version V] KEY", description: "delete an object" },
  { name: "help", usage: "help", description: "this list" },
  { name: "quit", usage: "quit", description: "leave the shell (also exit, or end of input)" },
];

export function helpLines(): string[] {
  const width = Math.max(...admin_commands.map((c) => c.usage.length));
  return [
    "commands:",
    ...admin_commands.map((c) => `  ${c.usage.padEnd(width)}  ${c.description}`),
    "keys and text with spaces can be quoted: get \"my key\"; lines starting with # are comments",
  ];
}

/** A word of a command line and where the raw text after it starts. */
interface Token {
  text: string;
  end: number;
}

/** Splits a line like a shell would for plain words: whitespace separates, '...' and "..." quote
 * (with \" and \\ inside double quotes). */
export function tokenize(line: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i]!)) i++;
    if (i >= line.length) break;
    let text = "";
    while (i < line.length && !/\s/.test(line[i]!)) {
      const c = line[i]!;
      if (c === "'" || c === '"') {
        const close = c;
        i++;
        while (i < line.length && line[i] !== close) {
          if (close === '"' && line[i] === "\\" && i + 1 < line.length) i++;
          text += line[i]!;
          i++;
        }
        if (i >= line.length) throw new UsageError(`unterminated ${close === '"' ? "double" : "single"} quote`);
        i++;
      } else {
        text += c;
        i++;
      }
    }
    tokens.push({ text, end: i });
  }
  return tokens;
}

/** The value of a put: the rest of the line after the key, as typed (one quoted word is
 * unquoted), or a file's contents with @FILE. */
function putValue(line: string, tokens: Token[], index: number): Uint8Array {
  const rest = tokens.slice(index);
  if (rest.length === 0) return new Uint8Array(0);
  if (rest.length === 1 && rest[0]!.text.startsWith("@") && rest[0]!.text.length > 1) return readInputFile(rest[0]!.text.slice(1));
  const raw = line.slice(tokens[index - 1]!.end).trim();
  const text = rest.length === 1 && /^(['"]).*\1$/s.test(raw) ? rest[0]!.text : raw;
  const value = new TextEncoder().encode(text);
  if (value.length > value_size_max_default) throw new UsageError(`the value is ${value.length} bytes: the largest is 16 MiB`);
  return value;
}

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
    this.client ??= new Client({ addresses: this.settings.addresses, operation_timeout_ms: this.settings.operation_timeout_ms });
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

  async probes(): Promise<ReplicaProbe[]> {
    return probeCluster(this.settings.addresses, status_timeout_ms);
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
    if (index < 0 || index >= names.length) throw new UsageError(`no replica "${which}": give an index 0-${names.length - 1} or one of ${names.join(", ")}`);
    const probes = await this.probes();
    return formatReplicaDetails(probes[index]!, status_timeout_ms);
  }

  /** Parses and runs one command line; returns what it prints. Quit is the caller's business. */
  async run(line: string): Promise<string[]> {
    const tokens = tokenize(line);
    if (tokens.length === 0) return [];
    const [command, ...args] = tokens.map((t) => t.text);
    const need = (n: number, usage: string) => {
      if (args.length < n) throw new UsageError(`missing argument: usage: ${usage}`);
    };
    const atMost = (n: number, usage: string) => {
      if (args.length > n) throw new UsageError(`too many arguments: usage: ${usage}`);
    };
    switch (command) {
      case "help":
      case "?":
        return helpLines();
      case "status": {
        atMost(0, "status");
        const report = await this.statusReport();
        if (!report.serving) throw new FailureWithOutput(report.verdict, report.lines);
        return [...report.lines, report.verdict];
      }
      case "replica":
        need(1, "replica ADDRESS|INDEX");
        atMost(1, "replica ADDRESS|INDEX");
        return this.replicaDetails(args[0]!);
      case "ls":
      case "list": {
        const long = args[0] === "-l" || args[0] === "--long";
        const rest = long ? args.slice(1) : args;
        if (rest.length > 1) throw new UsageError("too many arguments: usage: ls [-l] [PREFIX]");
        const prefix = rest[0] ?? "";
        if (Buffer.byteLength(prefix) > key_size_max) throw new UsageError(`the prefix is ${Buffer.byteLength(prefix)} bytes: keys are at most ${key_size_max} bytes`);
        const lines: string[] = [];
        await this.op(`ls ${prefix}`.trimEnd(), async (client) => {
          for await (const entry of client.listAll(prefix)) lines.push(formatListEntry(entry, long));
        });
        return lines;
      }
      case "get": {
        need(1, "get KEY");
        atMost(1, "get KEY");
        const key = checkKey(args[0]);
        const result = await this.op(`get ${key}`, (client) => client.get(key));
        return describeValue(result.value);
      }
      case "stat": {
        need(1, "stat KEY");
        atMost(1, "stat KEY");
        const key = checkKey(args[0]);
        return formatStat(key, await this.op(`stat ${key}`, (client) => client.stat(key)));
      }
      case "put": {
        const usage = "put [--if-absent|--if-version V] KEY TEXT|@FILE";
        const options: { if_absent?: boolean; if_version?: number } = {};
        let i = 1;
        while (i < tokens.length && tokens[i]!.text.startsWith("--")) {
          const flag = tokens[i]!.text;
          if (flag === "--if-absent") options.if_absent = true;
          else if (flag === "--if-version") options.if_version = versionArg(tokens[++i]?.text);
          else throw new UsageError(`unknown option ${flag}: usage: ${usage}`);
          i++;
        }
        if (i >= tokens.length) throw new UsageError(`missing argument: usage: ${usage}`);
        const key = checkKey(tokens[i]!.text);
        const value = putValue(line, tokens, i + 1);
        const { version } = await this.op(`put ${key}`, (client) => client.put(key, value, options));
        return [`${key}: version ${version} (${value.length} bytes)`];
      }
      case "delete":
      case "rm": {
        const usage = "delete [--if-version V] KEY";
        const options: { if_version?: number } = {};
        let rest = args;
        if (rest[0] === "--if-version") {
          options.if_version = versionArg(rest[1]);
          rest = rest.slice(2);
        }
        if (rest.length !== 1) throw new UsageError(`${rest.length === 0 ? "missing argument" : "too many arguments"}: usage: ${usage}`);
        const key = checkKey(rest[0]);
        await this.op(`delete ${key}`, (client) => client.delete(key, options));
        return [`${key}: deleted`];
      }
      default:
        throw new UsageError(`unknown command "${command}" (type help for the list)`);
    }
  }
}

function versionArg(text: string | undefined): number {
  if (text === undefined || !/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`--if-version needs a version number, got ${text === undefined ? "nothing" : `"${text}"`}`);
  return Number(text);
}

/** Reads a put's value from a file for the interactive shell (same checks as the CLI). */
export function fileValue(file: string): Uint8Array {
  return readInputFile(file);
}
