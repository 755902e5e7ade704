/**
 * Simulator speed (docs/DESIGN.md §9: target 1 M simulated events per second per core): runs a fixed set
 * of seeds, one after another on one core, and prints for each cluster size the events per second
 * by the wall clock and per second of the main thread's CPU time, and seeds per CPU-minute.
 *
 *   bun bench/simulator.ts [--seeds N] [--from S] [--replicas 3,5]
 *
 * The events are the simulator's steps (message deliveries, ticks, flushes, client wake-ups and
 * fault checks), each followed by the checks that run after every step.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { simulate } from "../sim/simulator.ts";

const { values } = parseArgs({
  options: {
    seeds: { type: "string", default: "20" },
    from: { type: "string", default: "5000" },
    replicas: { type: "string", default: "3,5" },
  },
  strict: true,
});
const seeds = Number(values.seeds);
const from = Number(values.from);
const counts = values.replicas.split(",").map(Number);
if (
  !Number.isSafeInteger(seeds) ||
  seeds < 1 ||
  !Number.isSafeInteger(from) ||
  from < 0 ||
  counts.some((r) => !Number.isSafeInteger(r) || r < 1 || r > 15)
) {
  console.error("error: --seeds and --from must be whole numbers (seeds >= 1), --replicas a list of 1..15");
  process.exit(2);
}

/**
 * Seconds the main (JavaScript) thread has spent on a CPU (Linux schedstat). On a shared machine the
 * wall-clock rate drops whenever another process holds the core; the main thread's CPU time does
 * not (cache and memory contention remain). Process CPU time would add Bun's garbage collector and
 * JIT threads, which run beside the main thread and move with the load. NaN where unavailable.
 */
function mainThreadCpuSeconds(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").split(" ")[0]) / 1e9;
  } catch {
    return NaN;
  }
}

// One warm-up seed so the JIT has compiled the hot paths before anything is timed.
simulate({ seed: from + seeds, replicas: counts[0]!, clients: counts[0]! + 1, ticks: 3000 });
for (const replicas of counts) {
  let steps = 0;
  let failed = 0;
  const started = performance.now();
  const cpu_started = mainThreadCpuSeconds();
  for (let seed = from; seed < from + seeds; seed++) {
    const result = simulate({ seed, replicas, clients: replicas + 1, ticks: 3000 });
    steps += result.step;
    if (!result.ok) failed += 1;
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu_seconds = mainThreadCpuSeconds() - cpu_started;
  console.log(
    `${replicas} replicas: seeds ${from}..${from + seeds - 1}, ${steps.toLocaleString("en-US")} events in ${seconds.toFixed(2)} s ` +
      `(main thread on CPU ${cpu_seconds.toFixed(2)} s): ${Math.round(steps / seconds).toLocaleString("en-US")} events/s, ` +
      `${Math.round(steps / cpu_seconds).toLocaleString("en-US")} events/CPU-s, ${Math.round((60 * seeds) / cpu_seconds)} seeds/CPU-min` +
      `${failed > 0 ? ` (${failed} seed(s) failed)` : ""}`,
  );
}
