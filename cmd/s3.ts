/**
 * `toastyfs s3`: the S3 gateway (docs/S3.md), a stateless HTTP process in front of a cluster. Parsing
 * and printing only; the gateway is lib/s3/gateway.ts. `toastyfs dev` runs one in its own process
 * through runGateway.
 */
import { Client } from "../lib/client/client.ts";
import { formatAddress, type Address } from "../lib/net/address.ts";
import type { Logger } from "../lib/node/log.ts";
import { Credentials } from "../lib/s3/credentials.ts";
import { startGateway, type Gateway } from "../lib/s3/gateway.ts";
import { OperationError, UsageError, addressOption, optionString } from "./cli_util.ts";
import { clusterFrom } from "./client_commands.ts";
import { loggerFrom } from "./serve.ts";
import { secretFrom } from "./secret.ts";
import type { AuthKeys } from "../lib/net/auth/secret.ts";
import type { TlsFiles } from "../lib/net/tls.ts";
import { tlsFrom } from "./tls_options.ts";

/** Clients (cluster sessions) a gateway spreads its requests over: one client has one request
 * outstanding at a time, so this is how many cluster operations a gateway keeps in flight. */
export const gateway_clients_default = 16;
export const region_default = "us-east-1";
const credentials_help =
  "set TOASTYFS_S3_ACCESS_KEY and TOASTYFS_S3_SECRET_KEY, or give --credentials FILE (one 'ACCESS_KEY_ID SECRET' per line)";

export interface S3Options {
  listen?: unknown;
  cluster?: unknown;
  region?: unknown;
  domain?: unknown;
  credentials?: unknown;
  metrics?: unknown;
  logLevel?: unknown;
  logFormat?: unknown;
  secretFile?: unknown;
  tlsCert?: unknown;
  tlsKey?: unknown;
  tlsCa?: unknown;
}

export function regionFrom(value: unknown): string {
  const region = optionString("--region", value) ?? region_default;
  if (!/^[a-z0-9-]{1,64}$/.test(region))
    throw new UsageError(`--region must be 1 to 64 of a-z, 0-9 and -, like us-east-1; got "${region}"`);
  return region;
}

export function credentialsFrom(env: Record<string, string | undefined>, file: string | null): Credentials {
  let credentials: Credentials;
  try {
    credentials = Credentials.load(env, file);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (credentials.size === 0) throw new UsageError(`no S3 access keys: ${credentials_help}`);
  return credentials;
}

export interface RunGatewayOptions {
  listen: Address;
  addresses: Address[];
  credentials: Credentials;
  region: string;
  domain: string | null;
  metrics: Address | null;
  logger: Logger;
  clients?: number;
  /** The cluster's keys (--secret-file), or null: no authentication. */
  secret?: AuthKeys | null;
  /** Mutual TLS to the replicas (--tls-cert, --tls-key, --tls-ca), or null: plain TCP. */
  tls?: TlsFiles | null;
}

/** Starts a gateway with its own clients; stop() closes both. A port in use is an OperationError. */
export async function runGateway(o: RunGatewayOptions): Promise<Gateway> {
  const log = o.logger.child("s3");
  const clients = Array.from(
    { length: o.clients ?? gateway_clients_default },
    () =>
      new Client({
        addresses: o.addresses,
        secret: o.secret ?? null,
        tls: o.tls ?? null,
        // Only trouble: 16 clients each saying "connected to replica N" would bury the gateway's lines.
        log: (level, text) => {
          if (level === "warn" || level === "error") log.log(level, text);
        },
      }),
  );
  let gateway: Gateway;
  try {
    gateway = await startGateway({
      listen: o.listen,
      client: clients,
      credentials: o.credentials,
      region: o.region,
      domain: o.domain,
      log: (level, text) => log.log(level, text),
      log_debug: log.enabled("debug"),
      metrics: o.metrics,
    });
  } catch (error) {
    await Promise.all(clients.map((c) => c.close()));
    throw new OperationError((error as Error).message);
  }
  return {
    ...gateway,
    async stop() {
      await gateway.stop();
      await Promise.all(clients.map((c) => c.close()));
    },
  };
}

export async function s3(options: S3Options): Promise<void> {
  const listen = addressOption("--listen", options.listen);
  if (listen === null) throw new UsageError("--listen host:port is required (the address the S3 endpoint serves on, like 127.0.0.1:9000)");
  const { addresses, source } = clusterFrom(options.cluster);
  const region = regionFrom(options.region);
  const domain = optionString("--domain", options.domain) ?? null;
  const credentials = credentialsFrom(process.env, optionString("--credentials", options.credentials) ?? null);
  const metrics = addressOption("--metrics", options.metrics);
  const logger = loggerFrom(options);
  const secret = secretFrom(options.secretFile);
  const tls = tlsFrom(options);
  const gateway = await runGateway({ listen, addresses, credentials, region, domain, metrics, logger, secret, tls });
  const lines = [
    `toastyfs s3: serving S3 at ${gateway.url} (region ${region}${domain === null ? "" : `, virtual-hosted buckets under ${domain}`})`,
    `  cluster   ${addresses.map(formatAddress).join(",")} (${source})`,
    `  keys      ${credentials.size} access key${credentials.size === 1 ? "" : "s"}`,
    ...(gateway.metrics_url === null ? [] : [`  metrics   ${gateway.metrics_url}/metrics  ${gateway.metrics_url}/health`]),
    `  try       aws --endpoint-url ${gateway.url} s3 ls`,
  ];
  console.log(lines.join("\n"));
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.child("s3").log("info", `${signal}: stopping`);
    void gateway.stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  await new Promise<never>(() => {});
}
