/**
 * toastyfs: the replica server (`toastyfs --addr ... --peer ...`, also `toastyfs serve`), plus the
 * client commands, the local dev cluster and the admin shell. Parsing and printing only; the work
 * is in lib/.
 */
import { cac } from "cac";
import { runCli } from "./cli_util.ts";
import { serve } from "./serve.ts";
import { registerClientCommands } from "./client_commands.ts";

const cli = cac("toastyfs");

function serveCommand(name: string, description: string) {
  return cli
    .command(name, description)
    .option("--addr <host:port>", "This replica's address (required)")
    .option("--peer <host:port>", "Another replica's address (repeat for each peer)", { type: [String] })
    .option("--data <dir>", "Data directory (default: ./toastyfs-data/<host>_<port>)")
    .option("--log-level <level>", "debug, info, warn or error", { default: "info" })
    .option("--log-format <format>", "text or json", { default: "text" })
    .action((options: Record<string, unknown>) => serve(options));
}

serveCommand("", "Run one replica (the same as `toastyfs serve`)").example(
  "toastyfs --addr 127.0.0.1:8081 --peer 127.0.0.1:8082 --peer 127.0.0.1:8083",
);
serveCommand("serve", "Run one replica");
registerClientCommands(cli);

cli.help();
cli.version("0.1.0");
await runCli(cli, process.argv);
