/**
 * `toastyfs dev`: a whole local cluster in one process tree, the quick start. Each replica is a
 * child process running this same executable (`toastyfs serve`), with its data in one directory
 * per replica under ./toastyfs-dev/ (not ./toastyfs-data/, where `toastyfs serve` keeps its data by
 * default: a replica served by hand on dev's addresses must not pick up a dev cluster's directory,
 * which is another cluster's history). It waits until the cluster serves, prints the addresses and a
 * few commands to try, forwards every replica's output with a prefix, reports a replica that dies,
 * and on Ctrl-C or SIGTERM stops every replica cleanly (SIGTERM, wait) and exits 0.
 */
import { isLoopbackHost } from "./serve.ts";
import { secretFrom } from "./secret.ts";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { clusterStatus } from "../lib/client/client.ts";
import { formatAddress, type Address } from "../lib/net/address.ts";
import { Logger, isLogLevel } from "../lib/node/log.ts";
import { dataDirFor } from "../lib/node/replica_node.ts";
import { replicas_max } from "../lib/constants.ts";
import { OperationError, UsageError, largeObjectOptions, optionString, parseIntArg } from "./cli_util.ts";
import { dev_cluster } from "./client_commands.ts";
import { Credentials } from "../lib/s3/credentials.ts";
import type { Gateway } from "../lib/s3/gateway.ts";
import { region_default, runGateway } from "./s3.ts";

/** The cluster must serve within this long of starting (formatting takes well under a second). */
const startup_timeout_ms = 30_000;
/** Replicas get this long to stop after SIGTERM before they are killed. */
const stop_timeout_ms = 10_000;
/** Metrics listen on the replica's port plus this. */
export const metrics_port_offset = 100;
export const s3_port_default = 9000;
/** The S3 keys of a dev cluster when TOASTYFS_S3_ACCESS_KEY / TOASTYFS_S3_SECRET_KEY are unset:
 * fixed and printed, so they protect nothing; for a development machine only. */
export const dev_s3_access_key = "toastyfs-dev";
export const dev_s3_secret_key = "toastyfs-dev-secret";

export interface DevOptions {
  replicas?: unknown;
  basePort?: unknown;
  data?: unknown;
  host?: unknown;
  metrics?: unknown;
  logLevel?: unknown;
  blockSizeMax?: unknown;
  uploadAbandonAge?: unknown;
  scrubRate?: unknown;
  secretFile?: unknown;
  s3?: unknown;
  /** cac leaves "s3-port" as it is (no camelCase after a digit). */
  "s3-port"?: unknown;
}

/** The dev gateway's keys: the environment's when set, else the fixed development keys. */
function devCredentials(): { credentials: Credentials; from_env: boolean } {
  const env = process.env;
  if (env.TOASTYFS_S3_ACCESS_KEY !== undefined || env.TOASTYFS_S3_SECRET_KEY !== undefined) {
    try {
      return { credentials: Credentials.load(env, null), from_env: true };
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  return { credentials: new Credentials(new Map([[dev_s3_access_key, dev_s3_secret_key]])), from_env: false };
}

interface Child {
  address: Address;
  name: string;
  prefix: string;
  args: string[];
  process: Subprocess<"ignore", "pipe", "pipe">;
  exited: boolean;
}

/** How to run this executable again: the compiled binary itself, or bun with this script. */
export function selfCommand(): string[] {
  const compiled = Bun.main.startsWith("/$bunfs/");
  return compiled ? [process.execPath] : [process.execPath, Bun.main];
}

/** What a person types to run toastyfs from the current directory. */
function displayCommand(): string {
  const compiled = Bun.main.startsWith("/$bunfs/");
  const file = compiled ? process.execPath : Bun.main;
  const relative = path.relative(process.cwd(), file);
  const shown = relative.startsWith("..") || path.isAbsolute(relative) ? file : `./${relative}`;
  return compiled ? shown : `bun ${shown}`;
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

const colors = [36, 33, 35, 32, 34, 31];

export async function dev(options: DevOptions): Promise<void> {
  const count = parseIntArg("--replicas", options.replicas ?? 3, 1, replicas_max);
  if (count % 2 === 0)
    throw new UsageError(
      `--replicas must be odd (1, 3, 5, ...): 2f+1 replicas tolerate f failed replicas, so ${count} tolerate no more than ${count - 1} would`,
    );
  const metrics = options.metrics !== false;
  const base_port = parseIntArg("--base-port", options.basePort ?? 8081, 1, 65535 - count + 1 - (metrics ? metrics_port_offset : 0));
  const host = optionString("--host", options.host) ?? "127.0.0.1";
  const data_root = optionString("--data", options.data) ?? "toastyfs-dev";
  const log_level = optionString("--log-level", options.logLevel) ?? "info";
  if (!isLogLevel(log_level)) throw new UsageError(`--log-level must be debug, info, warn or error, got "${log_level}"`);
  const large = largeObjectOptions(options);
  const s3 = options.s3 !== false;
  const s3_port = parseIntArg("--s3-port", options["s3-port"] ?? s3_port_default, 1, 65535);
  const s3_keys = s3 ? devCredentials() : null;
  const secret_file = optionString("--secret-file", options.secretFile);
  // A bad file fails here, once, not in every replica; the keys also let dev ask the replicas how they are.
  const secret = secret_file === undefined ? null : secretFrom(secret_file);

  const addresses: Address[] = Array.from({ length: count }, (_, i) => ({ host, port: base_port + i }));
  const names = addresses.map(formatAddress);
  // A busy port or an unusable data directory is not a mistake in the command line: exit 1, as
  // for `serve` (README, exit codes).
  for (const a of addresses) {
    if (!(await portFree(a.host, a.port)))
      throw new OperationError(
        `port ${formatAddress(a)} is in use: is another toastyfs dev (or replica) running? Stop it, or pick other ports with --base-port`,
      );
    if (metrics && !(await portFree(a.host, a.port + metrics_port_offset))) {
      throw new OperationError(
        `metrics port ${formatAddress({ host: a.host, port: a.port + metrics_port_offset })} is in use: pick other ports with --base-port, or use --no-metrics`,
      );
    }
  }
  if (s3 && !(await portFree(host, s3_port)))
    throw new OperationError(`S3 port ${formatAddress({ host, port: s3_port })} is in use: pick another with --s3-port, or use --no-s3`);
  const data_dirs = addresses.map((a) => path.join(data_root, path.basename(dataDirFor(a))));
  const reused = data_dirs.filter((d) => fs.existsSync(path.join(d, "superblock")));
  try {
    fs.mkdirSync(data_root, { recursive: true });
  } catch (error) {
    throw new OperationError(`cannot create data directory ${data_root}: ${(error as Error).message}`);
  }

  const tty = process.stderr.isTTY === true;
  const children: Child[] = addresses.map((address, i) => {
    const name = names[i]!;
    const label = `[${address.port}]`;
    const prefix = tty ? `\x1b[${colors[i % colors.length]}m${label}\x1b[0m ` : `${label} `;
    const args = [
      "serve",
      "--addr",
      name,
      ...names.filter((n) => n !== name).flatMap((n) => ["--peer", n]),
      "--data",
      data_dirs[i]!,
      "--log-level",
      log_level,
      ...large.args,
    ];
    if (metrics) args.push("--metrics", formatAddress({ host, port: address.port + metrics_port_offset }));
    if (secret_file !== undefined) args.push("--secret-file", secret_file);
    else if (!isLoopbackHost(host)) args.push("--insecure"); // dev is for trying things out: say so, don't refuse
    const child = Bun.spawn([...selfCommand(), ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const c: Child = { address, name, prefix, args, process: child, exited: false };
    void forward(child.stdout, prefix);
    void forward(child.stderr, prefix);
    return c;
  });

  let stopping = false;
  let started = false;
  let gateway: Gateway | null = null;
  const alive = () => children.filter((c) => !c.exited).length;
  const quorum = Math.floor(count / 2) + 1;

  const stopAll = async (signal: string): Promise<number> => {
    if (stopping) return 0;
    stopping = true;
    if (gateway !== null) {
      say(`${signal}: stopping the S3 gateway`);
      await gateway.stop();
    }
    say(`${signal}: stopping ${alive()} replica${alive() === 1 ? "" : "s"} (SIGTERM)...`);
    for (const c of children) if (!c.exited) c.process.kill("SIGTERM");
    const timer = setTimeout(() => {
      for (const c of children) {
        if (c.exited) continue;
        say(
          `replica ${c.name} did not stop within ${stop_timeout_ms / 1000} s: killing it (its data is safe: nothing unsynced was acknowledged)`,
        );
        c.process.kill("SIGKILL");
      }
    }, stop_timeout_ms);
    await Promise.all(children.map((c) => c.process.exited));
    clearTimeout(timer);
    const failed = children.filter((c) => c.process.exitCode !== 0 && c.process.exitCode !== null);
    say(
      failed.length === 0
        ? "all replicas stopped"
        : `stopped; ${failed.map((c) => `${c.name} exited with code ${c.process.exitCode}`).join(", ")}`,
    );
    return 0;
  };

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      say(`${signal} again: killing the replicas now`);
      for (const c of children) if (!c.exited) c.process.kill("SIGKILL");
      process.exit(1);
    }
    void stopAll(signal).then((code) => process.exit(code));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  for (const c of children) {
    void c.process.exited.then(async () => {
      c.exited = true;
      // Ctrl-C in a terminal reaches every process of the group at once: a replica may finish
      // stopping before our own handler ran. Give the signal a moment before calling it a crash.
      if (!stopping) await Bun.sleep(300);
      if (stopping) return;
      const how = c.process.signalCode !== null ? `was killed by ${c.process.signalCode}` : `exited with code ${c.process.exitCode}`;
      if (!started) {
        console.error(
          `error: replica ${c.name} ${how} while the cluster was starting (its output is above, prefixed ${c.prefix.trim()}); stopping the others`,
        );
        await stopAll("startup failed");
        process.exit(1);
      }
      const left = alive();
      const state =
        left >= quorum
          ? `the cluster keeps serving with ${left} of ${count} replicas (a majority, ${quorum}, is needed)`
          : `only ${left} of ${count} replicas are left: the cluster cannot serve until a majority (${quorum}) runs`;
      console.error(
        `error: replica ${c.name} ${how} unexpectedly; ${state}. To bring it back, run in another terminal: ${displayCommand()} ${c.args.join(" ")}`,
      );
      if (left === 0) {
        console.error("error: every replica has stopped; exiting");
        process.exit(1);
      }
    });
  }

  say(
    `starting ${count} replica${count === 1 ? "" : "s"} on ${names.join(", ")}; data in ${path.resolve(data_root)}${reused.length > 0 ? ` (reusing the data of ${reused.length === count ? "every replica" : reused.map((d) => path.basename(d)).join(", ")})` : ""}`,
  );
  const deadline = Date.now() + startup_timeout_ms;
  let primary: string | null = null;
  let view = 0;
  while (primary === null) {
    if (stopping) return new Promise<never>(() => {});
    if (Date.now() > deadline) {
      console.error(
        `error: the cluster did not elect a primary within ${startup_timeout_ms / 1000} s (see the replicas' output above); stopping`,
      );
      await stopAll("startup timed out");
      process.exit(1);
    }
    const statuses = await clusterStatus(addresses, 500, secret);
    const p = statuses.find((s) => s !== null && s.primary);
    if (p && statuses.every((s) => s !== null)) {
      primary = p.address;
      view = p.view;
    } else {
      await Bun.sleep(100);
    }
  }
  started = true;
  if (s3_keys !== null) {
    const logger = new Logger(log_level);
    try {
      gateway = await runGateway({
        listen: { host, port: s3_port },
        addresses,
        credentials: s3_keys.credentials,
        region: region_default,
        domain: null,
        metrics: null,
        logger,
        secret,
      });
    } catch (error) {
      console.error(`error: the S3 gateway did not start: ${(error as Error).message}; stopping`);
      await stopAll("startup failed");
      process.exit(1);
    }
  }
  const cmd = displayCommand();
  const s3_env =
    s3_keys === null || s3_keys.from_env
      ? ""
      : `AWS_ACCESS_KEY_ID=${dev_s3_access_key} AWS_SECRET_ACCESS_KEY=${dev_s3_secret_key} AWS_DEFAULT_REGION=${region_default} `;
  const cluster = names.join(",");
  const lines = [
    "",
    `toastyfs dev: ${count} replica${count === 1 ? "" : "s"} serving (primary ${primary}, view ${view}); tolerates ${Math.floor((count - 1) / 2)} failed replica${Math.floor((count - 1) / 2) === 1 ? "" : "s"}`,
    `  replicas  ${names.join("  ")}`,
    `  data      ${path.resolve(data_root)}/ (one directory per replica; reused on the next start)`,
    ...(metrics
      ? [
          `  metrics   ${addresses.map((a) => `http://${formatAddress({ host: a.host, port: a.port + metrics_port_offset })}/metrics`).join("  ")}`,
        ]
      : []),
    ...(gateway === null
      ? []
      : [
          `  s3        ${gateway.url}  (region ${region_default})`,
          s3_keys!.from_env
            ? "  s3 keys   from TOASTYFS_S3_ACCESS_KEY and TOASTYFS_S3_SECRET_KEY"
            : `  s3 keys   access key ${dev_s3_access_key}  secret ${dev_s3_secret_key}  (development only: fixed and public; set TOASTYFS_S3_ACCESS_KEY and TOASTYFS_S3_SECRET_KEY for your own)`,
        ]),
    "",
    "Try, in another terminal:",
    ...(cluster === dev_cluster ? [] : [`  export TOASTYFS_CLUSTER=${cluster}`]),
    ...(secret_file === undefined ? [] : [`  export TOASTYFS_SECRET_FILE=${path.resolve(secret_file)}`]),
    `  echo 'hello, world' | ${cmd} put hello -`,
    `  ${cmd} get hello`,
    `  ${cmd} ls --long`,
    `  ${cmd} status`,
    `  ${cmd} admin`,
    ...(gateway === null ? [] : [`  ${s3_env}aws --endpoint-url ${gateway.url} s3 mb s3://photos`]),
    "",
    "Ctrl-C stops the cluster.",
    "",
  ];
  console.log(lines.join("\n"));
  await new Promise<never>(() => {});
}

function say(text: string): void {
  console.error(`toastyfs dev: ${text}`);
}

/** Copies a child's output to our stderr line by line, each line prefixed. */
async function forward(stream: ReadableStream<Uint8Array>, prefix: string): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  try {
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        process.stderr.write(`${prefix}${pending.slice(0, newline)}\n`);
        pending = pending.slice(newline + 1);
      }
    }
  } catch {
    // The child's pipe broke: it is gone, and its exit is reported separately.
  }
  if (pending !== "") process.stderr.write(`${prefix}${pending}\n`);
}
