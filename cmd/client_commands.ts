/** Client commands: put, get, delete, ls, stat, status. */
import type { CAC } from "cac";
import * as fs from "node:fs";
import { Client, ClientError, clusterStatus } from "../lib/client/client.ts";
import { parseAddressList, AddressError, formatAddress, type Address } from "../lib/net/address.ts";
import { UsageError } from "./cli_util.ts";

export const dev_cluster = "127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083";

export function clusterFrom(option: unknown): Address[] {
  const text = option !== undefined && option !== true ? String(option) : process.env.TOASTYFS_CLUSTER ?? dev_cluster;
  try {
    return parseAddressList(text);
  } catch (error) {
    if (error instanceof AddressError) throw new UsageError(error.message);
    throw error;
  }
}

async function withClient<T>(options: Record<string, unknown>, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ addresses: clusterFrom(options.cluster) });
  try {
    return await fn(client);
  } catch (error) {
    if (error instanceof ClientError) {
      console.error(`error: ${error.message}`);
      process.exit(1);
    }
    throw error;
  } finally {
    await client.close();
  }
}

export function registerClientCommands(cli: CAC): void {
  cli
    .command("put <key> [file]", "Store a file (or stdin with - or no file) under key; prints the new version")
    .option("--cluster <addrs>", "host:port,... (default: $TOASTYFS_CLUSTER or the dev cluster)")
    .option("--if-version <v>", "Only if the current version is v")
    .option("--if-absent", "Only if the key does not exist")
    .action(async (key: string, file: string | undefined, options: Record<string, unknown>) => {
      const value = file === undefined || file === "-" ? new Uint8Array(await Bun.stdin.arrayBuffer()) : readFile(file);
      const put_options: { if_version?: number; if_absent?: boolean } = {};
      if (options.ifVersion !== undefined) put_options.if_version = parseVersion(options.ifVersion);
      if (options.ifAbsent === true) put_options.if_absent = true;
      const result = await withClient(options, (client) => client.put(key, value, put_options));
      console.log(result.version);
    });

  cli
    .command("get <key>", "Print an object's value (raw bytes) to stdout")
    .option("--cluster <addrs>", "host:port,...")
    .option("-o, --output <file>", "Write the value to a file instead")
    .action(async (key: string, options: Record<string, unknown>) => {
      const result = await withClient(options, (client) => client.get(key));
      if (options.output !== undefined) fs.writeFileSync(String(options.output), result.value);
      else process.stdout.write(result.value);
    });

  cli
    .command("delete <key>", "Delete an object")
    .option("--cluster <addrs>", "host:port,...")
    .option("--if-version <v>", "Only if the current version is v")
    .action(async (key: string, options: Record<string, unknown>) => {
      const del: { if_version?: number } = {};
      if (options.ifVersion !== undefined) del.if_version = parseVersion(options.ifVersion);
      await withClient(options, (client) => client.delete(key, del));
    });

  cli
    .command("stat <key>", "Print an object's version, size, time and checksum")
    .option("--cluster <addrs>", "host:port,...")
    .action(async (key: string, options: Record<string, unknown>) => {
      const info = await withClient(options, (client) => client.stat(key));
      console.log(`version ${info.version}\nsize ${info.size}\ntime ${new Date(info.timestamp).toISOString()}\nchecksum ${info.checksum.toString(16).padStart(16, "0")}`);
    });

  cli
    .command("ls [prefix]", "List keys (one per line)")
    .option("--cluster <addrs>", "host:port,...")
    .option("-l, --long", "Also print size, version and time")
    .action(async (prefix: string | undefined, options: Record<string, unknown>) => {
      await withClient(options, async (client) => {
        const decoder = new TextDecoder();
        for await (const entry of client.listAll(prefix ?? "")) {
          const key = decoder.decode(entry.key);
          if (options.long === true) console.log(`${String(entry.size).padStart(12)} ${String(entry.version).padStart(8)} ${new Date(entry.timestamp).toISOString()} ${key}`);
          else console.log(key);
        }
      });
    });

  cli
    .command("status", "One line per replica: address, reachable, role, view, op, commit, checkpoint, lag")
    .option("--cluster <addrs>", "host:port,...")
    .action(async (options: Record<string, unknown>) => {
      const addresses = clusterFrom(options.cluster);
      const statuses = await clusterStatus(addresses);
      const commit = Math.max(0, ...statuses.map((s) => s?.commit_max ?? 0));
      const sorted = [...addresses].map(formatAddress).sort();
      let up = 0;
      for (let i = 0; i < statuses.length; i++) {
        const s = statuses[i];
        if (s === null || s === undefined) {
          console.log(`${sorted[i]!.padEnd(22)} down`);
          continue;
        }
        up += 1;
        const role = s.primary ? "primary" : s.status === "normal" ? "backup" : s.status;
        console.log(
          `${s.address.padEnd(22)} up   ${role.padEnd(11)} view ${s.view} op ${s.op} commit ${s.commit_min} checkpoint ${s.checkpoint} lag ${commit - s.commit_min} disk ${s.disk_bytes}${s.problem ? ` problem: ${s.problem}` : ""}`,
        );
      }
      const quorum = Math.floor(addresses.length / 2) + 1;
      const verdict = up === addresses.length ? "healthy" : up >= quorum ? `degraded: ${addresses.length - up} replica(s) down` : `no quorum: only ${up} of ${addresses.length} replicas answer (${quorum} needed)`;
      console.log(verdict);
      if (up < quorum) process.exitCode = 1;
    });
}

function readFile(file: string): Uint8Array {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw new UsageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (error as Error).message}`);
  }
}

function parseVersion(value: unknown): number {
  const text = String(value);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`--if-version must be a version number, got "${text}"`);
  return Number(text);
}
