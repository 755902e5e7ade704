/**
 * toastyfs_simulation: runs the whole cluster, servers and clients, deterministically in one
 * process from a seed, with faults injected and invariants checked after every step.
 * stdout is a pure function of the arguments (the same seed prints the same output); timing goes
 * to stderr.
 */
import { cac } from "cac";
import { simulate, type SimResult } from "../sim/simulator.ts";
import { parseIntArg, runCli, UsageError } from "./cli_util.ts";
import { toastyfs_version } from "./version.ts";

const cli = cac("toastyfs_simulation");
cli
  .command("", "Run the deterministic simulation")
  .option("--seed <n>", "First seed (default: random, printed first)")
  .option("--seeds <k>", "Run K consecutive seeds from --seed", { default: 1 })
  .option("--replicas <n>", "Replicas in the cluster (1-15)", { default: 3 })
  .option("--clients <m>", "Simulated clients (1-64)", { default: 4 })
  .option("--ticks <t>", "Length of the fault phase in 10 ms ticks", { default: 3000 })
  .option("--verbose", "Print a trace of the run")
  .example("toastyfs_simulation --seed 1000 --seeds 100")
  .action((options: Record<string, unknown>) => {
    const seed_given = options.seed !== undefined;
    const seed = seed_given ? parseIntArg("--seed", options.seed, 0, Number.MAX_SAFE_INTEGER) : Math.floor(Math.random() * 2 ** 32);
    const seeds = parseIntArg("--seeds", options.seeds, 1, 1_000_000);
    const replicas = parseIntArg("--replicas", options.replicas, 1, 15);
    const clients = parseIntArg("--clients", options.clients, 1, 64);
    const ticks = parseIntArg("--ticks", options.ticks, 1, 10_000_000);
    const verbose = options.verbose === true;
    if (!seed_given) console.log(`seed ${seed}`);
    const started = performance.now();
    let steps = 0;
    for (let s = seed; s < seed + seeds; s++) {
      const t0 = performance.now();
      const result = simulate({ seed: s, replicas, clients, ticks, verbose });
      const seconds = (performance.now() - t0) / 1000;
      steps += result.step;
      console.log(summary(result));
      console.error(`  seed ${s}: ${Math.round(result.step / Math.max(seconds, 1e-9)).toLocaleString("en-US")} simulated events/s`);
      if (!result.ok) {
        console.log(`VIOLATION at step ${result.step} (t=${result.time_ms}ms): ${result.violation}`);
        const flags = [`--seed ${s}`, `--replicas ${replicas}`, `--clients ${clients}`, `--ticks ${ticks}`].join(" ");
        console.log(`reproduce: ./toastyfs_simulation ${flags} --verbose`);
        process.exitCode = 1;
        return;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    console.error(
      `${seeds} seed(s) passed in ${seconds.toFixed(1)}s, ${Math.round(steps / seconds).toLocaleString("en-US")} simulated events/s`,
    );
  });

function summary(r: SimResult): string {
  return (
    `seed ${r.seed}: ${r.ok ? "ok" : "FAILED"} steps=${r.step} time=${r.time_ms}ms ops_committed=${r.ops_committed} ` +
    `requests=${r.requests_completed} view_changes=${r.view_changes} faults=${r.faults} history=${r.history_size}` +
    (r.check_unknown ? " (linearizability check budget exceeded on some key)" : "")
  );
}

cli.help();
cli.version(toastyfs_version);
await runCli(cli, process.argv);
export { UsageError };
