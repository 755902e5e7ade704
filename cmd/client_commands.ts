/**
 * Client commands: put, get, delete, ls, stat, status, abort-upload. Exit codes: 0 ok, 1 the operation failed
 * (not found, condition failed, no quorum: the message says which), 2 a usage problem (unknown
 * option, missing argument, bad address, a key over 1088 bytes, an input file that cannot be read).
 *
 * A key (or prefix, or file name) is the argument's exact bytes (raw_argv.ts), or with --escaped
 * the bytes its escapes stand for (lib/util/escape.ts); keys are always printed escaped.
 */
import type { CAC, Command } from "cac";
import * as fs from "node:fs";
import { Client, ClientError, parseRange, type BlockSource, type LargePutOptions } from "../lib/client/client.ts";
import { bodySource } from "../lib/client/body_source.ts";
import { parseAddressList, AddressError, membership, type Address } from "../lib/net/address.ts";
import { key_size_max } from "../lib/constants.ts";
import { escapeBytes, EscapeError, unescapeBytes } from "../lib/util/escape.ts";
import { OperationError, UsageError, optionArg, optionString, parseIntArg, positionalArg } from "./cli_util.ts";
import type { RawArg } from "./raw_argv.ts";
import { formatListEntry, formatStat } from "./format.ts";
import { renderStatus } from "./status_report.ts";
import { probeCluster } from "../lib/client/cluster_probe.ts";
import type { AuthKeys } from "../lib/net/auth/secret.ts";
import { secretFrom, secret_file_help } from "./secret.ts";
import type { TlsFiles } from "../lib/net/tls.ts";
import { tlsFrom, tlsOptions } from "./tls_options.ts";
import { Progress, progress_size_min } from "./progress.ts";
import { openInputFile, streamToFile, streamToStdout } from "./transfer.ts";
import { checkMetadata, formatHeader, metaOption } from "./object_options.ts";

export const dev_cluster = "127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083";
/** CLI commands give up sooner than the library default: a person is waiting. */
export const cli_timeout_s_default = 10;
/** How long `status` waits for each replica's answer. */
export const status_timeout_ms = 1000;

export interface ClusterSettings {
  addresses: Address[];
  /** Where the addresses came from, for error messages. */
  source: string;
  operation_timeout_ms: number;
  /** The cluster's keys (--secret-file, TOASTYFS_SECRET_FILE), or null: no authentication. */
  secret: AuthKeys | null;
  /** Mutual TLS files (--tls-cert, --tls-key, --tls-ca), or null: plain TCP. */
  tls: TlsFiles | null;
}

/** --cluster, else $TOASTYFS_CLUSTER, else the dev cluster. */
export function clusterFrom(option: unknown): { addresses: Address[]; source: string } {
  const given = optionString("--cluster", option);
  const env = process.env.TOASTYFS_CLUSTER;
  const [text, source] =
    given !== undefined
      ? [given, "--cluster"]
      : env !== undefined && env.trim() !== ""
        ? [env, "TOASTYFS_CLUSTER"]
        : [dev_cluster, "the dev cluster (no --cluster or TOASTYFS_CLUSTER)"];
  try {
    const addresses = parseAddressList(text);
    membership(addresses); // at least one, at most replicas_max, no duplicates
    return { addresses, source };
  } catch (error) {
    if (error instanceof AddressError)
      throw new UsageError(`${source === "--cluster" || source === "TOASTYFS_CLUSTER" ? `${source}: ` : ""}${error.message}`);
    throw error;
  }
}

export function timeoutFrom(option: unknown): number {
  const text = optionString("--timeout", option);
  if (text === undefined) return cli_timeout_s_default * 1000;
  const seconds = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(seconds > 0) || seconds > 3600)
    throw new UsageError(`--timeout must be a number of seconds between 0 and 3600, got "${text}"`);
  return Math.round(seconds * 1000);
}

export function settingsFrom(options: Record<string, unknown>): ClusterSettings {
  return {
    ...clusterFrom(options.cluster),
    operation_timeout_ms: timeoutFrom(options.timeout),
    secret: secretFrom(options.secretFile),
    tls: tlsFrom(options),
  };
}

/** Keys are 1 to key_size_max (1088) bytes. */
export function checkKey(key: Uint8Array): Uint8Array {
  if (key.length < 1 || key.length > key_size_max)
    throw new UsageError(`the key is ${key.length} bytes: keys are 1 to ${key_size_max} bytes`);
  return key;
}

/** A prefix is 0 to key_size_max (1088) bytes. */
export function checkPrefix(prefix: Uint8Array): Uint8Array {
  if (prefix.length > key_size_max) throw new UsageError(`the prefix is ${prefix.length} bytes: keys are at most ${key_size_max} bytes`);
  return prefix;
}

/** The bytes of a command-line argument, with escapes read when `escaped`. */
export function argumentBytes(arg: RawArg, what: string, escaped: boolean): Uint8Array {
  if (!arg.exact) {
    throw new UsageError(
      `the ${what} "${arg.text}" is not valid UTF-8 and its exact bytes cannot be read here (no /proc/self/cmdline): give it with --escaped, as \\xHH escapes`,
    );
  }
  if (!escaped) return arg.bytes;
  try {
    return unescapeBytes(arg.bytes);
  } catch (error) {
    if (error instanceof EscapeError) throw new UsageError(`the ${what} "${escapeBytes(arg.bytes)}": ${error.message}`);
    throw error;
  }
}

/** The key in positional argument `index` (its text as cac gave it: `text`). */
function keyArgument(index: number, text: string, options: Record<string, unknown>): Uint8Array {
  return checkKey(argumentBytes(positionalArg(index, text), "key", options.escaped === true));
}

/** A file name as the file system takes it: the exact bytes (a name need not be UTF-8). */
export function fileArgument(arg: RawArg): Buffer {
  return Buffer.from(argumentBytes(arg, "file name", false));
}

/** One line saying what failed; `what` names the operation and key ("get hello"). A put that
 * failed after create_upload says what became of its upload. */
export function describeClientError(what: string, error: ClientError): string {
  const id = error.upload_id;
  if (id === null) return `${what}: ${error.message}`;
  const upload = error.upload_aborted
    ? `upload ${id} was aborted`
    : `upload ${id} is still open: toastyfs abort-upload ${id} frees its space (else it expires)`;
  return `${what}: ${error.message}; ${upload}`;
}

export async function withClient<T>(settings: ClusterSettings, what: string, fn: (client: Client) => Promise<T>): Promise<T> {
  let client: Client;
  try {
    client = new Client({
      addresses: settings.addresses,
      operation_timeout_ms: settings.operation_timeout_ms,
      secret: settings.secret,
      tls: settings.tls,
    });
  } catch (error) {
    if (error instanceof AddressError) throw new UsageError(error.message);
    throw error;
  }
  try {
    return await fn(client);
  } catch (error) {
    if (error instanceof ClientError) {
      if (error.code === "key_invalid" || error.code === "value_too_large") throw new UsageError(describeClientError(what, error));
      throw new OperationError(describeClientError(what, error));
    }
    throw error;
  } finally {
    await client.close();
  }
}

function keyOptions(command: Command): Command {
  return command.option("--escaped", "Read \\xHH, \\n, \\t, \\r and \\\\ in the key as the bytes they stand for (the form ls prints)");
}

function clusterOptions(command: Command): Command {
  return tlsOptions(command)
    .option("--cluster <host:port,...>", "The cluster's replicas (default: $TOASTYFS_CLUSTER, else the dev cluster 127.0.0.1:8081-8083)")
    .option("--timeout <seconds>", `Give up after this long without an answer from a majority (default: ${cli_timeout_s_default})`)
    .option("--secret-file <file>", secret_file_help);
}

export function parseVersion(value: unknown): number {
  const text = optionString("--if-version", value) ?? "";
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)))
    throw new UsageError(`--if-version must be a version number (as printed by put or stat), got "${text}"`);
  return Number(text);
}

export function registerClientCommands(cli: CAC): void {
  keyOptions(
    clusterOptions(cli.command("put <key> [file]", "Store a file (or stdin: - or no file) of any size under key; prints the new version")),
  )
    .option("--if-version <v>", "Only if the object's current version is v (compare-and-set)")
    .option("--if-absent", "Only if the key does not exist yet")
    .option("--content-type <type>", "Store this content type with the object (printable ASCII, at most 255 bytes)")
    .option("--meta <name=value>", "Store user metadata (repeat for more; names of a-z, 0-9 and -)")
    .example("echo hi | toastyfs put hello -")
    .example("toastyfs put photos/cat.jpg cat.jpg --if-absent --content-type image/jpeg --meta owner=ann")
    .example("toastyfs put -- -key-with-a-dash file")
    .example("toastyfs put --escaped 'bin/k\\xff' file")
    .action(async (key: string, file: string | undefined, options: Record<string, unknown>) => {
      const k = keyArgument(0, key, options);
      const shown = escapeBytes(k);
      const settings = settingsFrom(options);
      const put_options: LargePutOptions = {};
      if (options.ifVersion !== undefined) put_options.if_version = parseVersion(options.ifVersion);
      if (options.ifAbsent === true) put_options.if_absent = true;
      if (put_options.if_version !== undefined && put_options.if_absent) throw new UsageError("give --if-version or --if-absent, not both");
      const content_type = optionString("--content-type", options.contentType);
      if (content_type !== undefined) put_options.content_type = content_type;
      const meta = metaOption(options.meta);
      if (meta !== undefined) put_options.meta = meta;
      checkMetadata(put_options);
      let input: { fd: number; source: BlockSource } | null = null;
      if (file !== undefined && file !== "-") input = openInputFile(fileArgument(positionalArg(1, file)));
      else if (process.stdin.isTTY)
        process.stderr.write("reading the value from the terminal: end it with Ctrl-D (or give a file: toastyfs put KEY FILE)\n");
      const source = input?.source ?? bodySource(Bun.stdin.stream(), null, "stdin");
      const progress = Progress.forSize(source.size);
      progress.phase(`put ${shown}`, source.size);
      // Ctrl-C aborts the upload before exiting, so that it does not hold space until it expires.
      const interrupt = new AbortController();
      const onSigint = (): void => interrupt.abort();
      process.on("SIGINT", onSigint);
      let version: number;
      try {
        const run = (client: Client) =>
          client.putSource(k, source, { ...put_options, signal: interrupt.signal, onProgress: (n) => progress.advance(n) });
        version = (await withClient(settings, `put ${shown}`, run)).version;
      } finally {
        process.off("SIGINT", onSigint);
        progress.finish();
        if (input !== null) fs.closeSync(input.fd);
      }
      console.log(version);
    });

  keyOptions(clusterOptions(cli.command("get <key>", "Write an object's bytes to stdout, or to a file with -o; streamed, of any size")))
    .option("-o, --output <file>", "Write to this file (through FILE.toastyfs-PID.tmp, renamed when complete) instead of stdout")
    .option("--range <range>", "Only bytes START-END (inclusive, from 0), START- (to the end) or -N (the last N: write --range=-N)")
    .example("toastyfs get hello")
    .example("toastyfs get photos/cat.jpg -o cat.jpg")
    .example("toastyfs get logs/big --range=-4096")
    .action(async (key: string, options: Record<string, unknown>) => {
      const k = keyArgument(0, key, options);
      const shown = escapeBytes(k);
      const settings = settingsFrom(options);
      const output = optionString("--output", options.output);
      const output_arg = optionArg("output");
      const range_text = optionString("--range", options.range);
      const range = range_text === undefined ? undefined : parseRange(range_text);
      if (range === null)
        throw new UsageError(`--range must be START-END, START- or -N (byte positions from 0, inclusive), got "${range_text}"`);
      const target = output === undefined || output === "-" ? null : output_arg === undefined ? output : fileArgument(output_arg);
      const interrupt = new AbortController();
      const onSigint = (): void => interrupt.abort();
      process.on("SIGINT", onSigint);
      const progress = Progress.forSize(null);
      try {
        await withClient(settings, `get ${shown}`, async (client) => {
          progress.phase(`get ${shown}: waiting for the cluster`);
          const got = await client.getStream(k, { ...(range === undefined ? {} : { range }), onProgress: (n) => progress.advance(n) });
          if (got.length >= progress_size_min) progress.phase(`get ${shown}`, got.length);
          else progress.finish();
          if (target === null) await streamToStdout(got.body, interrupt.signal);
          else await streamToFile(got.body, target, interrupt.signal);
        });
      } finally {
        process.off("SIGINT", onSigint);
        progress.finish();
      }
    });

  cli
    .command("abort-upload <id>", "Abort an upload a failed put left open (put prints its id), freeing its space at once")
    .option("--cluster <host:port,...>", "The cluster's replicas (default: $TOASTYFS_CLUSTER, else the dev cluster 127.0.0.1:8081-8083)")
    .option("--timeout <seconds>", `Give up after this long without an answer from a majority (default: ${cli_timeout_s_default})`)
    .action(async (id: string, options: Record<string, unknown>) => {
      const upload_id = parseIntArg("the upload id", id, 1, Number.MAX_SAFE_INTEGER);
      const settings = settingsFrom(options);
      await withClient(settings, `abort-upload ${upload_id}`, (client) => client.abortUpload(upload_id));
    });

  keyOptions(clusterOptions(cli.command("delete <key>", "Delete an object")))
    .alias("rm")
    .option("--if-version <v>", "Only if the object's current version is v")
    .action(async (key: string, options: Record<string, unknown>) => {
      const k = keyArgument(0, key, options);
      const settings = settingsFrom(options);
      const del: { if_version?: number } = {};
      if (options.ifVersion !== undefined) del.if_version = parseVersion(options.ifVersion);
      await withClient(settings, `delete ${escapeBytes(k)}`, (client) => client.delete(k, del));
    });

  keyOptions(
    clusterOptions(
      cli.command("stat <key>", "Print an object's version, size, time and checksum; its kind, blocks, MD5, content type and metadata"),
    ),
  ).action(async (key: string, options: Record<string, unknown>) => {
    const k = keyArgument(0, key, options);
    const settings = settingsFrom(options);
    const header = await withClient(settings, `stat ${escapeBytes(k)}`, (client) => client.head(k));
    console.log([...formatStat(k, header), ...formatHeader(header)].join("\n"));
  });

  keyOptions(
    clusterOptions(
      cli.command("ls [prefix]", "List keys, one per line, in byte order (escaped: \\xHH for bytes that are not printable UTF-8)"),
    ),
  )
    .option("-l, --long", "Also print size (bytes), version, checksum and time: SIZE VERSION CHECKSUM TIME KEY")
    .action(async (prefix: string | undefined, options: Record<string, unknown>) => {
      const settings = settingsFrom(options);
      const p =
        prefix === undefined ? new Uint8Array(0) : checkPrefix(argumentBytes(positionalArg(0, prefix), "prefix", options.escaped === true));
      const long = options.long === true;
      await withClient(settings, `ls ${escapeBytes(p)}`.trimEnd(), async (client) => {
        for await (const entry of client.listAll(p)) console.log(formatListEntry(entry, long));
      });
    });

  tlsOptions(
    cli.command("status", "One line per replica (address, reachable, role, view, op, commit, checkpoint, lag, disk) and a verdict"),
  )
    .option("--cluster <host:port,...>", "The cluster's replicas (default: $TOASTYFS_CLUSTER, else the dev cluster)")
    .option("--secret-file <file>", secret_file_help)
    .action(async (options: Record<string, unknown>) => {
      const { addresses } = clusterFrom(options.cluster);
      const probes = await probeCluster(addresses, status_timeout_ms, secretFrom(options.secretFile), tlsFrom(options));
      const report = renderStatus(probes, status_timeout_ms);
      console.log([...report.lines, report.verdict].join("\n"));
      if (!report.serving) process.exitCode = 1;
    });
}
