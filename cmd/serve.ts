/** `toastyfs serve` (the default command): runs one replica until SIGTERM/SIGINT. */
import { parseAddress, parseAddressList, AddressError, formatAddress } from "../lib/net/address.ts";
import { ReplicaNode, StartupError, dataDirFor } from "../lib/node/replica_node.ts";
import { Logger, isLogLevel, type LogFormat } from "../lib/node/log.ts";
import { TransportError } from "../lib/net/tcp_transport.ts";
import { ForeignDataError } from "../lib/storage/file_storage.ts";
import { FsError } from "../lib/storage/fs.ts";
import { ActivityLog, check_interval_ms } from "../lib/node/activity_log.ts";
import { MetricsError, MetricsServer, RequestMetrics } from "../lib/node/metrics.ts";
import { UsageError, addressOption, largeObjectOptions, optionString } from "./cli_util.ts";
import { secretFrom } from "./secret.ts";
import { tlsFrom } from "./tls_options.ts";
import { applyAllocatorOptions } from "../lib/node/allocator_options.ts";

export interface ServeOptions {
  addr?: unknown;
  listen?: unknown;
  peer?: unknown;
  data?: unknown;
  logLevel?: unknown;
  logFormat?: unknown;
  metrics?: unknown;
  blockSizeMax?: unknown;
  uploadAbandonAge?: unknown;
  scrubRate?: unknown;
  secretFile?: unknown;
  insecure?: unknown;
  tlsCert?: unknown;
  tlsKey?: unknown;
  tlsCa?: unknown;
}

/** Whether host names this machine's loopback interface only (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export function loggerFrom(options: { logLevel?: unknown; logFormat?: unknown }): Logger {
  const level = String(options.logLevel ?? "info");
  if (!isLogLevel(level)) throw new UsageError(`--log-level must be debug, info, warn or error, got "${level}"`);
  const format = String(options.logFormat ?? "text");
  if (format !== "text" && format !== "json") throw new UsageError(`--log-format must be text or json, got "${format}"`);
  return new Logger(level, format as LogFormat);
}

export async function serve(options: ServeOptions): Promise<void> {
  if (options.addr === undefined || options.addr === true)
    throw new UsageError(
      "--addr host:port is required to run a replica (for a local cluster: toastyfs dev; every command: toastyfs --help)",
    );
  // Before anything is opened: may re-execute the process (lib/node/allocator_options.ts).
  applyAllocatorOptions();
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
  const listen = addressOption("--listen", options.listen) ?? undefined;
  const data_dir = optionString("--data", options.data) ?? dataDirFor(self);
  const large = largeObjectOptions(options);
  const metrics_address = addressOption("--metrics", options.metrics);
  // Without a secret or TLS, anyone who reaches the port can delete every object or corrupt the
  // cluster (docs/PROTOCOL.md §6): only loopback, or an explicit --insecure, runs that way. Mutual
  // TLS alone counts as secured: only holders of a certificate from the cluster's CA get in (§6.8).
  const secret = secretFrom(options.secretFile);
  const tls = tlsFrom(options);
  const bound = listen ?? self;
  if (secret === null && tls === null && !isLoopbackHost(bound.host)) {
    if (options.insecure !== true) {
      throw new UsageError(
        `refusing to listen on ${formatAddress(bound)} without a secret: anyone who can reach it could read, change or delete every object. Create one (toastyfs secret new FILE), give it to every replica and client (--secret-file FILE), or use mutual TLS (--tls-cert, --tls-key, --tls-ca), or pass --insecure on a network you trust`,
      );
    }
    logger.log(
      "warn",
      `--insecure: listening on ${formatAddress(bound)} without a secret: anyone who can reach this port can read, change or delete every object and disrupt the cluster`,
    );
  }
  const requests = metrics_address === null ? undefined : new RequestMetrics();
  let node: ReplicaNode;
  try {
    node = new ReplicaNode({
      self,
      addresses: [self, ...peers],
      data_dir,
      logger,
      config: large.config,
      secret,
      tls,
      ...(listen ? { listen } : {}),
      ...(requests ? { requests } : {}),
    });
  } catch (error) {
    if (error instanceof AddressError) throw new UsageError(error.message);
    throw error;
  }
  // Metrics bind first: a port in use fails before the data directory is touched.
  let metrics: MetricsServer | null = null;
  if (metrics_address !== null && requests !== undefined) {
    metrics = new MetricsServer(metrics_address, { status: () => node.status(), readiness: () => node.readiness(), data_dir }, requests);
    try {
      metrics.start();
    } catch (error) {
      if (!(error instanceof MetricsError)) throw error;
      console.error(`error: ${formatAddress(self)}: ${error.message}`);
      process.exit(1);
    }
  }
  try {
    await node.start();
  } catch (error) {
    if (error instanceof TransportError || error instanceof StartupError || error instanceof ForeignDataError || error instanceof FsError) {
      await metrics?.stop();
      console.error(`error: ${formatAddress(self)}: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  if (metrics_address !== null)
    logger.child(`replica=${node.index}`).log("info", `metrics on http://${formatAddress(metrics_address)}/metrics`);
  const activity = new ActivityLog(logger.child(`replica=${node.index}`));
  const activity_timer = setInterval(() => activity.check(node.status()), check_interval_ms);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    clearInterval(activity_timer);
    logger.child(`replica=${node.index}`).log("info", `${signal}: stopping`);
    void Promise.all([node.stop(), metrics?.stop()]).then(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // Runs until a signal arrives.
  await new Promise<never>(() => {});
}
