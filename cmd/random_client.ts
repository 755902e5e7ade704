/**
 * toastyfs_random_client: a random concurrent workload against a real cluster; records the
 * history and checks that it is linearizable (docs/DESIGN.md §6). Exit 0: linearizable (or the checker ran
 * out of budget: a warning); 1: a violation or an unexpected error; 2: bad arguments.
 *
 * Ctrl-C (SIGINT) or SIGTERM stops it early: no new operations, the ones in flight finish, and the
 * history so far is checked. A second signal exits at once (130).
 */
import { secretFrom, secret_file_help } from "./secret.ts";
import { tlsFrom, tlsOptions } from "./tls_options.ts";
import { cac } from "cac";
import * as fs from "node:fs";
import { runRandomWorkload, operation_kinds, type WorkloadResult } from "../lib/check/random_workload.ts";
import {
  checkHistory,
  decodeHistoryFile,
  encodeHistoryFile,
  HistoryFileError,
  outcomes,
  type HistoryVerdict,
} from "../lib/check/history_recorder.ts";
import { parseIntArg, runCli, UsageError } from "./cli_util.ts";
import { clusterFrom } from "./client_commands.ts";

const cli = cac("toastyfs_random_client");
tlsOptions(cli.command("", "Run a random concurrent workload against a cluster and check the history for linearizability"))
  .option("--cluster <addrs>", "host:port,... (default: $TOASTYFS_CLUSTER or the dev cluster)")
  .option("--seed <n>", "Seed for the operation choices (default: random, printed)")
  .option("--clients <m>", "Concurrent clients (1-200)", { default: 4 })
  .option("--ops <k>", "Operations in total over all clients", { default: 1000 })
  .option("--keys <k>", "Size of the key space (small, so clients collide)", { default: 5 })
  .option("--duration <s>", "Start no new operation after this many seconds")
  .option(
    "--timeout <ms>",
    "An operation no replica completes in this long is left open; the run stops when nothing is answered for 3 times this",
    { default: 10_000 },
  )
  .option("--secret-file <file>", secret_file_help)
  .option("--history-out <file>", "Save the recorded history (JSON) to a file")
  .option("--check-history <file>", "Run nothing: check a saved history file")
  .example("toastyfs_random_client --cluster 127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083 --seed 7 --clients 8 --ops 5000")
  .action(async (options: Record<string, unknown>) => {
    if (options.checkHistory !== undefined) return checkFile(String(options.checkHistory));
    const { addresses } = clusterFrom(options.cluster);
    const secret = secretFrom(options.secretFile);
    const tls = tlsFrom(options);
    const seed_given = options.seed !== undefined;
    const seed = seed_given ? parseIntArg("--seed", options.seed, 0, Number.MAX_SAFE_INTEGER) : Math.floor(Math.random() * 2 ** 32);
    const clients = parseIntArg("--clients", options.clients, 1, 200);
    const ops = parseIntArg("--ops", options.ops, 1, 100_000_000);
    const keys = parseIntArg("--keys", options.keys, 1, 1000);
    const timeout_ms = parseIntArg("--timeout", options.timeout, 100, 3_600_000);
    const duration_s = options.duration === undefined ? undefined : parseIntArg("--duration", options.duration, 1, 86_400);
    const history_out = options.historyOut === undefined ? null : String(options.historyOut);

    let stopping = false;
    const onSignal = (): void => {
      if (stopping) process.exit(130);
      stopping = true;
      console.error("stopping: no new operations; finishing the ones in flight, then checking (signal again to quit at once)");
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);

    console.log(
      `seed ${seed}: ${clients} clients, ${ops} operations, ${keys} keys${duration_s !== undefined ? `, at most ${duration_s} s` : ""}, cluster ${addresses.map((a) => `${a.host}:${a.port}`).join(",")}`,
    );
    const result = await runRandomWorkload({
      addresses,
      secret,
      tls,
      seed,
      clients,
      ops,
      keys,
      operation_timeout_ms: timeout_ms,
      ...(duration_s !== undefined ? { duration_ms: duration_s * 1000 } : {}),
      shouldStop: () => stopping,
      onProgress: (p) =>
        console.error(`progress: ${(p.elapsed_ms / 1000).toFixed(0)} s, ${p.completed} answered, ${p.open} open, ${p.errors} errors`),
    });
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    printRun(result);
    if (history_out !== null) {
      fs.writeFileSync(
        history_out,
        encodeHistoryFile(result.recorder.history, { seed, clients, ops, keys, key_prefix: result.key_prefix, plan: result.plan_digest }),
      );
      console.log(`history saved to ${history_out}`);
    }
    const verdict = checkHistory(result.recorder.history);
    printVerdict(verdict);
    if (result.error_count > 0) {
      console.log(`FAILED: ${result.error_count} operations ended with an unexpected error:`);
      for (const e of result.errors) console.log(`  ${e}`);
      process.exitCode = 1;
    }
    if (result.stalled || result.completed === 0) {
      console.log(
        `FAILED: ${result.completed === 0 ? "no operation was answered" : `no operation was answered for ${(3 * timeout_ms) / 1000} s, so the run stopped`}: is a majority of the cluster up and reachable?`,
      );
      process.exitCode = 1;
    }
    if (verdict.verdict === "violation") process.exitCode = 1;
  });

function checkFile(file: string): void {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    throw new UsageError(`cannot read ${file}: ${(error as Error).message}`);
  }
  let saved;
  try {
    saved = decodeHistoryFile(text);
  } catch (error) {
    if (error instanceof HistoryFileError) throw new UsageError(`${file}: ${error.message}`);
    throw error;
  }
  const about = Object.entries(saved.about)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  console.log(`${file}: ${saved.history.length} operations${about ? ` (${about})` : ""}`);
  const verdict = checkHistory(saved.history);
  printVerdict(verdict);
  if (verdict.verdict === "violation") process.exitCode = 1;
}

function printRun(r: WorkloadResult): void {
  const seconds = r.elapsed_ms / 1000;
  console.log(
    `${r.issued} operations in ${seconds.toFixed(1)} s: ${Math.round(r.completed / Math.max(seconds, 1e-3))} answered ops/s; plan ${r.plan_digest}; keys under ${r.key_prefix}`,
  );
  const width = 17;
  console.log(["outcome".padEnd(width), ...operation_kinds.map((k) => k.padStart(7)), "total".padStart(8)].join(""));
  for (const outcome of outcomes) {
    const row = operation_kinds.map((k) => r.counts.get(k)!.get(outcome)!);
    console.log(
      [outcome.padEnd(width), ...row.map((n) => String(n).padStart(7)), String(row.reduce((a, b) => a + b, 0)).padStart(8)].join(""),
    );
  }
}

function printVerdict(v: HistoryVerdict): void {
  console.log(v.summary);
  if (v.details !== "") console.log(v.details);
}

cli.help();
cli.version("0.1.0");
await runCli(cli, process.argv);
