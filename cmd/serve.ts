/** `toastyfs serve` (the default command): runs one replica until SIGTERM/SIGINT. */
import { parseAddress, parseAddressList, AddressError, formatAddress } from "../lib/net/address.ts";
import { ReplicaNode, StartupError, dataDirFor } from "../lib/node/replica_node.ts";
import { Logger, isLogLevel, type LogFormat } from "../lib/node/log.ts";
import { TransportError } from "../lib/net/tcp_transport.ts";
import { ForeignDataError } from "../lib/storage/file_storage.ts";
import { FsError } from "../lib/storage/fs.ts";
import { UsageError } from "./cli_util.ts";

export interface ServeOptions {
  addr?: unknown;
  peer?: unknown;
  data?: unknown;
  logLevel?: unknown;
  logFormat?: unknown;
}

export function loggerFrom(options: { logLevel?: unknown; logFormat?: unknown }): Logger {
  const level = String(options.logLevel ?? "info");
  if (!isLogLevel(level)) throw new UsageError(`--log-level must be debug, info, warn or error, got "${level}"`);
  const format = String(options.logFormat ?? "text");
  if (format !== "text" && format !== "json") throw new UsageError(`--log-format must be text or json, got "${format}"`);
  return new Logger(level, format as LogFormat);
}

export async function serve(options: ServeOptions): Promise<void> {
  if (options.addr === undefined || options.addr === true) throw new UsageError("--addr host:port is required (this replica's address)");
  const logger = loggerFrom(options);
  let self, peers;
  try {
    self = parseAddress(String(options.addr));
    const raw = options.peer === undefined ? [] : Array.isArray(options.peer) ? options.peer.map(String) : [String(options.peer)];
    peers = parseAddressList(raw);
  } catch (error) {
    if (error instanceof AddressError) throw new UsageError(error.message);
    throw error;
  }
  const data_dir = options.data === undefined ? dataDirFor(self) : String(options.data);
  let node: ReplicaNode;
  try {
    node = new ReplicaNode({ self, addresses: [self, ...peers], data_dir, logger });
  } catch (error) {
    if (error instanceof AddressError) throw new UsageError(error.message);
    throw error;
  }
  try {
    await node.start();
  } catch (error) {
    if (error instanceof TransportError || error instanceof StartupError || error instanceof ForeignDataError || error instanceof FsError) {
      console.error(`error: ${formatAddress(self)}: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.log("info", `${signal}: stopping replica ${node.index}`);
    void node.stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // Runs until a signal arrives.
  await new Promise<never>(() => {});
}
