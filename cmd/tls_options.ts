/**
 * --tls-cert, --tls-key and --tls-ca (docs/PROTOCOL.md §6.8) for every command that serves or
 * dials a cluster: all three or none, each file read and checked here, at start.
 */
import type { Command } from "cac";
import { TlsConfigError, readTlsFiles, type TlsFiles } from "../lib/net/tls.ts";
import { UsageError, optionString } from "./cli_util.ts";

/** Adds the three options, with the same help everywhere. */
export function tlsOptions(command: Command): Command {
  return command
    .option("--tls-cert <file>", "Mutual TLS: this process's certificate (PEM), issued by the cluster's CA (with --tls-key, --tls-ca)")
    .option("--tls-key <file>", "Mutual TLS: the certificate's private key (PEM, unencrypted)")
    .option("--tls-ca <file>", "Mutual TLS: the cluster's CA certificate (PEM): peers must present a certificate it issued");
}

/** The TLS files, or null (plain TCP) when none of the three options is given. */
export function tlsFrom(options: { tlsCert?: unknown; tlsKey?: unknown; tlsCa?: unknown }): TlsFiles | null {
  const cert = optionString("--tls-cert", options.tlsCert);
  const key = optionString("--tls-key", options.tlsKey);
  const ca = optionString("--tls-ca", options.tlsCa);
  const given = [cert, key, ca].filter((f) => f !== undefined).length;
  if (given === 0) return null;
  if (cert === undefined || key === undefined || ca === undefined) {
    const missing = [
      cert === undefined ? "--tls-cert" : null,
      key === undefined ? "--tls-key" : null,
      ca === undefined ? "--tls-ca" : null,
    ];
    throw new UsageError(
      `TLS needs --tls-cert, --tls-key and --tls-ca together: ${missing.filter((m) => m !== null).join(" and ")} missing`,
    );
  }
  try {
    return readTlsFiles(cert, key, ca);
  } catch (error) {
    if (error instanceof TlsConfigError) throw new UsageError(error.message);
    throw error;
  }
}
