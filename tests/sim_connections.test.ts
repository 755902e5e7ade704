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
      const results = run([1, 2, 3, 5]);
      expect(results.every((r) => r.client_refusals > 0)).toBe(true);
      expect(results.reduce((sum, r) => sum + r.client_reconnects, 0)).toBeGreaterThan(0);
      expect(results.reduce((sum, r) => sum + r.client_polls, 0)).toBeGreaterThan(0);
    },
    timeout_ms,
  );

  test(
    "with network faults only (partitions, isolated primaries, clogs), no client is ever refused and none polls",
    () => {
      const results = run([1, 2, 3], { crashes: false, storage: false });
      expect(results.some((r) => r.faults > 0)).toBe(true); // the network faults still ran
      for (const r of results) expect([r.client_refusals, r.client_reconnects, r.client_polls]).toEqual([0, 0, 0]);
    },
    timeout_ms,
  );
});
