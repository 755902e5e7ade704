/**
 * Crash test: a 3-replica cluster under concurrent writes, kill -9 of every replica at a random
 * moment, restart, and every acknowledged put must read back with its exact bytes; repeated for
 * many rounds with different timings, on the same cluster, so data from every earlier round is
 * checked again after each crash. Some rounds also delete one replica's data directory or flip one
 * byte of a live value in a replica's journal segment before the restart.
 *
 *   bun scripts/crash_rounds.ts [--rounds N] [--seed S] [--variants plain,wipe,flip] [--keep]
 *
 * Uses ./toastyfs when ./build.sh has made it, else runs cmd/toastyfs.ts with bun. Exits 0 when
 * every round passed; otherwise prints the problems and the replicas' logs, keeps the cluster's
 * directory, and exits 1. The same --seed replays the same random choices (timings, victims;
 * the processes themselves are not deterministic).
 */
import { parseArgs } from "node:util";
import { Prng } from "../lib/util/prng.ts";
import { TestCluster, describeStatuses } from "../tests/support/cluster.ts";
import { logTails } from "../tests/support/harness.ts";
import { Ledger } from "../tests/support/workload.ts";
import { crashRound, describeRound, writeColdKeys, type CrashVariant } from "../tests/support/crash.ts";

const usage = "usage: bun scripts/crash_rounds.ts [--rounds N] [--seed S] [--variants plain,wipe,flip] [--keep]";

function fail(message: string): never {
  console.error(`error: ${message}\n${usage}`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      rounds: { type: "string", default: "20" },
      seed: { type: "string" },
      variants: { type: "string", default: "plain,wipe,flip" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  }).values;
} catch (error) {
  fail((error as Error).message);
}
if (args.help) {
  console.log(usage);
  process.exit(0);
}
if (!/^\d+$/.test(args.rounds) || Number(args.rounds) < 1) fail(`--rounds must be a positive whole number, got "${args.rounds}"`);
if (args.seed !== undefined && !/^\d+$/.test(args.seed)) fail(`--seed must be a whole number, got "${args.seed}"`);
const rounds = Number(args.rounds);
const seed = args.seed !== undefined ? Number(args.seed) : Math.floor(Math.random() * 2 ** 32);
const variants = args.variants.split(",").map((v) => v.trim());
for (const v of variants) if (v !== "plain" && v !== "wipe" && v !== "flip") fail(`unknown variant "${v}" (plain, wipe, flip)`);

/** Every fifth round damages a data directory (wipe, then flip, alternating), when enabled. */
function variantFor(round: number): CrashVariant {
  const damaging = variants.filter((v) => v !== "plain") as CrashVariant[];
  if (damaging.length > 0 && (round % 5 === 0 || !variants.includes("plain"))) return damaging[Math.floor(round / 5) % damaging.length]!;
  return "plain";
}

const prng = new Prng(seed);
console.log(`crash test: ${rounds} rounds, variants ${variants.join(",")}, seed ${seed} (--seed ${seed} replays the same choices)`);
const started = performance.now();
const cluster = await TestCluster.start(3);
const ledger = new Ledger();
let failed = false;
try {
  await writeColdKeys(cluster, ledger, 100);
  for (let round = 1; round <= rounds; round++) {
    const variant = variantFor(round);
    const result = await crashRound(cluster, ledger, prng, round, {
      variant,
      flip_target: prng.chance(0.5) ? "primary" : "random",
      read_through_victim: variant !== "plain",
      log: console.log,
    });
    console.log(describeRound(round, result));
    for (const line of result.victim_log) console.log(`    replica ${result.victim}: ${line}`);
    if (result.problems.length > 0) {
      failed = true;
      console.error(`round ${round} FAILED:\n  ${result.problems.join("\n  ")}`);
      break;
    }
  }
} catch (error) {
  failed = true;
  console.error(`crash test FAILED: ${(error as Error).stack ?? error}`);
}
const elapsed_s = ((performance.now() - started) / 1000).toFixed(1);
if (failed) {
  console.error(`status:\n${describeStatuses(await cluster.status())}`);
  console.error(logTails(cluster, 120));
  console.error(`cluster directory kept at ${cluster.dir}`);
  await cluster.destroy(true);
  console.error(`crash test failed after ${elapsed_s} s (seed ${seed})`);
  process.exit(1);
}
console.log(
  `crash test passed: ${rounds} rounds in ${elapsed_s} s; ${ledger.size} keys, ${ledger.acknowledged_puts} acknowledged puts all read back exactly; ${ledger.unknown_puts} puts cut off by crashes`,
);
await cluster.destroy(args.keep);
if (args.keep) console.log(`cluster directory kept at ${cluster.dir}`);
process.exit(0);
