/**
 * Runs many simulation seeds on every core and reports each failure with the one command that
 * replays it (docs/DESIGN.md §6). The CI range is a smoke test; this is the evidence.
 *
 *   bun scripts/sweep.ts --seeds N [--replicas 1,3,5,7] [--jobs J] [--from S] [--clients C] [--ticks T]
 *
 * --seeds N runs N seeds per replica count, from --from S (default: a fresh random start, printed
 * first, so every sweep covers new ground). --jobs defaults to the number of cores. Progress goes
 * to stderr every few seconds; each failure is printed as it is found (the reproduce command and
 * the first line of the violation), and the sweep goes on. Exits 1 if any seed failed, 2 on bad
 * arguments.
 */
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import type { SweepJob, SweepOutcome } from "./sweep_worker.ts";

const usage = "usage: bun scripts/sweep.ts --seeds N [--replicas 1,3,5,7] [--jobs J] [--from S] [--clients C] [--ticks T]";
const progress_interval_ms = 5000;

function die(message: string): never {
  console.error(`error: ${message}\n${usage}`);
  process.exit(2);
}

function wholeNumber(name: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) die(`${name} must be a whole number, got "${text}"`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min || n > max) die(`${name} must be between ${min} and ${max}, got ${text}`);
  return n;
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      seeds: { type: "string" },
      replicas: { type: "string", default: "3" },
      jobs: { type: "string", default: String(availableParallelism()) },
      from: { type: "string" },
      clients: { type: "string", default: "4" },
      ticks: { type: "string", default: "3000" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (error) {
  die(error instanceof Error ? error.message : String(error));
}
if (values.help) {
  console.log(usage);
  process.exit(0);
}
if (values.seeds === undefined) die("--seeds is required");
const seeds = wholeNumber("--seeds", values.seeds, 1, 100_000_000);
const jobs = wholeNumber("--jobs", values.jobs, 1, 256);
const clients = wholeNumber("--clients", values.clients, 1, 64);
const ticks = wholeNumber("--ticks", values.ticks, 1, 10_000_000);
const replica_counts = values.replicas.split(",").map((r) => wholeNumber("--replicas", r.trim(), 1, 15));
const from =
  values.from !== undefined ? wholeNumber("--from", values.from, 0, Number.MAX_SAFE_INTEGER - seeds) : Math.floor(Math.random() * 2 ** 40);

console.log(
  `sweep: seeds ${from}..${from + seeds - 1} with ${replica_counts.join(", ")} replicas, ${clients} clients, ${ticks} ticks, ${jobs} jobs`,
);

const queue: SweepJob[] = [];
for (const replicas of replica_counts) {
  for (let seed = from; seed < from + seeds; seed++) queue.push({ seed, replicas, clients, ticks });
}
const total = queue.length;
const per_count = new Map<number, { done: number; failed: number; steps: number; ms: number }>(
  replica_counts.map((r) => [r, { done: 0, failed: 0, steps: 0, ms: 0 }]),
);
const failures: SweepOutcome[] = [];
/** Seeds that exercised each kind of event, over the whole sweep (a sweep is evidence only for
 * what its seeds did). */
const coverage = { faults: 0, view_changes: 0, client_refusals: 0, client_polls: 0 };
let done = 0;
const started = performance.now();

function reproduce(o: SweepJob): string {
  return `./toastyfs_simulation --seed ${o.seed} --replicas ${o.replicas} --clients ${o.clients} --ticks ${o.ticks}`;
}

function report(final: boolean): void {
  const seconds = (performance.now() - started) / 1000;
  const parts = [...per_count].map(
    ([r, c]) =>
      `${r} replicas ${c.done}/${seeds} (${c.failed} failed, ${Math.round(c.steps / Math.max(c.ms / 1000, 1e-9) / 1000)} k events/s/core)`,
  );
  (final ? console.log : console.error)(`${final ? "done" : "progress"} ${done}/${total} in ${seconds.toFixed(0)} s: ${parts.join("; ")}`);
}

const timer = setInterval(() => report(false), progress_interval_ms);

await new Promise<void>((resolve) => {
  let running = 0;
  const next = (worker: Worker): void => {
    const job = queue.shift();
    if (job === undefined) {
      worker.terminate();
      running -= 1;
      if (running === 0) resolve();
      return;
    }
    worker.postMessage(job);
  };
  for (let j = 0; j < Math.min(jobs, total); j++) {
    const worker = new Worker(new URL("./sweep_worker.ts", import.meta.url).href);
    running += 1;
    worker.onmessage = (event: MessageEvent<SweepOutcome>) => {
      const o = event.data;
      done += 1;
      const c = per_count.get(o.replicas)!;
      c.done += 1;
      c.steps += o.steps;
      c.ms += o.ms;
      for (const kind of Object.keys(coverage) as (keyof typeof coverage)[]) if (o[kind] > 0) coverage[kind] += 1;
      if (!o.ok) {
        c.failed += 1;
        failures.push(o);
        console.log(
          `FAILED seed ${o.seed} (${o.replicas} replicas): ${(o.violation ?? "").split("\n")[0]}\n  reproduce: ${reproduce(o)} --verbose`,
        );
      }
      next(worker);
    };
    worker.onerror = (event) => {
      console.error(`error: a sweep worker crashed: ${event.message}`);
      process.exit(1);
    };
    next(worker);
  }
});
clearInterval(timer);
report(true);
console.log(
  `seeds with faults ${coverage.faults}, with view changes ${coverage.view_changes}, with refused client connects ${coverage.client_refusals}, with paced polls ${coverage.client_polls} (of ${total})`,
);
console.log(`${total - failures.length} passed, ${failures.length} failed`);
for (const f of failures) console.log(`  ${reproduce(f)}`);
process.exit(failures.length > 0 ? 1 : 0);
