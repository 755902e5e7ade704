/**
 * toastyfs: the replica server (`toastyfs --addr ... --peer ...`, also `toastyfs serve`), plus the
 * client commands, the local dev cluster and the admin shell. Parsing and printing only; the work
 * is in lib/.
 */
import { cac } from "cac";
import { helpWithoutNegatedDefaults, runCli } from "./cli_util.ts";
import { serve } from "./serve.ts";
import { registerClientCommands } from "./client_commands.ts";
import { dev } from "./dev.ts";
import { admin } from "./admin.ts";
import { s3 } from "./s3.ts";
import { toastyfs_version } from "./version.ts";
import { registerSecretCommands, secret_file_help } from "./secret.ts";
import { registerSnapshotCommands } from "./snapshot.ts";
import { tlsOptions } from "./tls_options.ts";

const cli = cac("toastyfs");

function serveCommand(name: string, description: string) {
  return cli
    .command(name, description)
    .option("--addr <host:port>", "This replica's address, as peers and clients dial it (required)")
    .option("--listen <host:port>", "Address to bind, if not --addr (behind NAT, in a container, behind a proxy)")
    .option("--peer <host:port>", "Another replica's address (repeat for each peer)", { type: [String] })
    .option("--data <dir>", "Data directory (default: ./toastyfs-data/<host>_<port>)")
    .option("--metrics <host:port>", "Serve Prometheus metrics at http://<host:port>/metrics and health checks at /livez, /readyz")
    .option("--log-level <level>", "debug, info, warn or error", { default: "info" })
    .option("--log-format <format>", "text or json", { default: "text" })
    .option("--block-size-max <bytes>", "Largest block of a streamed object, 16..4194304 (default 4 MiB; the same on every replica)")
    .option("--upload-abandon-age <seconds>", "An upload untouched this long is aborted and its blocks reclaimed (default 86400)")
    .option("--scrub-rate <MB/s>", "How fast each replica re-reads and verifies stored values and blocks, 1..6710 (default 6)")
    .option(
      "--secret-file <file>",
      "The cluster's secret (toastyfs secret new): authenticate every connection (default: $TOASTYFS_SECRET_FILE)",
    )
    .option("--insecure", "Listen on a non-loopback address without a secret or TLS (anyone who reaches the port can change anything)")
    .option("--tls-cert <file>", "Mutual TLS on every connection: this replica's certificate (PEM), issued by --tls-ca, naming --addr")
    .option("--tls-key <file>", "Mutual TLS: the certificate's private key (PEM, unencrypted)")
    .option("--tls-ca <file>", "Mutual TLS: the cluster's CA (PEM): peers and clients must present a certificate it issued")
    .action((options: Record<string, unknown>) => serve(options));
}

serveCommand("", "Run one replica (the same as `toastyfs serve`)").example(
  "toastyfs --addr 127.0.0.1:8081 --peer 127.0.0.1:8082 --peer 127.0.0.1:8083",
);
serveCommand("serve", "Run one replica");

cli
  .command("dev", "Run a local cluster (3 replicas on 127.0.0.1:8081-8083, data in ./toastyfs-dev/) until Ctrl-C")
  .option("--replicas <n>", "Number of replicas (odd: 2f+1 tolerate f failures)", { default: 3 })
  .option("--base-port <port>", "Port of the first replica; the others follow", { default: 8081 })
  .option("--host <host>", "Address to listen on", { default: "127.0.0.1" })
  .option("--data <dir>", "Data directory (one subdirectory per replica)", { default: "toastyfs-dev" })
  .option("--no-metrics", "Serve no metrics (metrics are served by default, at http://<host>:<replica port + 100>/metrics)")
  .option("--log-level <level>", "debug, info, warn or error", { default: "info" })
  .option("--block-size-max <bytes>", "Largest block of a streamed object, 16..4194304 (default 4 MiB)")
  .option("--upload-abandon-age <seconds>", "An upload untouched this long is aborted and its blocks reclaimed (default 86400)")
  .option("--scrub-rate <MB/s>", "How fast each replica re-reads and verifies stored values and blocks, 1..6710 (default 6)")
  .option("--s3-port <port>", "Port of the S3 gateway dev also runs, on --host (default 9000)")
  .option("--no-s3", "Run no S3 gateway")
  .option("--secret-file <file>", "Give the replicas this secret (default: none; clients then need it too)")
  .example("toastyfs dev")
  .example("toastyfs dev --replicas 5 --base-port 9001 --data /tmp/toastyfs")
  .action((options: Record<string, unknown>) => dev(options));

registerClientCommands(cli);
registerSecretCommands(cli);
registerSnapshotCommands(cli);

tlsOptions(
  cli.command(
    "s3",
    "Run an S3 gateway in front of the cluster (keys: TOASTYFS_S3_ACCESS_KEY and TOASTYFS_S3_SECRET_KEY, or --credentials)",
  ),
)
  .option("--listen <host:port>", "Address the S3 endpoint serves on (required)")
  .option("--cluster <host:port,...>", "The cluster's replicas (default: $TOASTYFS_CLUSTER, else the dev cluster)")
  .option("--region <region>", "The region the gateway answers for (default: us-east-1)")
  .option("--domain <domain>", "Also accept virtual-hosted-style requests: BUCKET.<domain>")
  .option("--credentials <file>", "More access keys: one 'ACCESS_KEY_ID SECRET' per line")
  .option("--secret-file <file>", secret_file_help)
  .option("--metrics <host:port>", "Serve Prometheus metrics at http://<host:port>/metrics and a health check at /health")
  .option("--log-level <level>", "debug (one line per request), info, warn or error", { default: "info" })
  .option("--log-format <format>", "text or json", { default: "text" })
  .example("TOASTYFS_S3_ACCESS_KEY=admin TOASTYFS_S3_SECRET_KEY=change-me-please toastyfs s3 --listen 127.0.0.1:9000")
  .action((options: Record<string, unknown>) => s3(options));

tlsOptions(cli.command("admin", "Admin shell: interactive on a terminal; one command per line from a pipe"))
  .option("--cluster <host:port,...>", "The cluster's replicas (default: $TOASTYFS_CLUSTER, else the dev cluster)")
  .option("--timeout <seconds>", "Give up on an operation after this long (default: 10)")
  .option("--secret-file <file>", secret_file_help)
  .option("-c, --command <cmd>", "Run one command and exit (like a line on stdin)")
  .example("toastyfs admin")
  .example("printf 'status\\nls\\n' | toastyfs admin")
  .example('toastyfs admin -c "get hello"')
  .action((options: Record<string, unknown>) => admin(options));

cli.help(helpWithoutNegatedDefaults);
cli.version(toastyfs_version);
await runCli(cli, process.argv);
