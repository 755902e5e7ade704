/**
 * The simulated clients hear what the TCP client hears about connections (docs/PROTOCOL.md §3.9):
 * a replica that is not running refuses them (onUnreachable), one that runs again accepts them
 * (onReachable), so the sweeps exercise the client's down-replica rules, the poll path included.
 */
import { describe, expect, test } from "bun:test";
import { simulate, type SimResult } from "../sim/simulator.ts";

const timeout_ms = 120_000;

function run(seeds: number[], faults?: Parameters<typeof simulate>[0]["faults"]): SimResult[] {
  return seeds.map((seed) => {
    const result = simulate({ seed, replicas: 3, clients: 4, ticks: 3000, ...(faults ? { faults } : {}) });
    expect(result.violation).toBeNull();
    return result;
  });
}

describe("simulated clients and crashed replicas", () => {
  test(
    "with crashes, clients are refused by down replicas, reconnect when they return, and poll while a backup names a down primary",
    () => {
      const results = run([1, 2, 3, 4]);
      // Most seeds crash some replica while clients need it (93 of seeds 1..100 did).
      expect(results.filter((r) => r.client_refusals > 0).length).toBeGreaterThanOrEqual(2);
      expect(results.reduce((sum, r) => sum + r.client_reconnects, 0)).toBeGreaterThan(0);
      expect(results.reduce((sum, r) => sum + r.client_polls, 0)).toBeGreaterThan(0);
    },
    timeout_ms,
  );

  test(
    "with network faults only (partitions, isolated primaries, clogs), no client is refused until the liveness phase keeps replicas down",
    () => {
      let refused_in_fault_phase = 0;
      let refused_after = 0;
      let network_faults = 0;
      for (const seed of [1, 2, 3, 4]) {
        let liveness = false;
        const result = simulate({
          seed,
          replicas: 3,
          clients: 4,
          ticks: 3000,
          faults: { crashes: false, storage: false },
          verbose: true,
          log: (line) => {
            if (line.includes("liveness: network healed")) liveness = true;
            if (/fault: (partition|isolate|clog)/.test(line)) network_faults += 1;
            if (line.includes("refused the connection")) {
              if (liveness) refused_after += 1;
              else refused_in_fault_phase += 1;
            }
          },
        });
        expect(result.violation).toBeNull();
      }
      expect(network_faults).toBeGreaterThan(0);
      expect(refused_in_fault_phase).toBe(0);
      // The liveness phase keeps up to f replicas down: those refuse (the count shows the log is read).
      expect(refused_after).toBeGreaterThan(0);
    },
    timeout_ms,
  );
});
