/**
 * One worker of scripts/sweep.ts: runs the seeds it is sent, one message back per seed. A worker
 * thread, so a sweep uses every core while each simulation stays single-threaded and deterministic.
 */
import { simulate } from "../sim/simulator.ts";

export interface SweepJob {
  seed: number;
  replicas: number;
  clients: number;
  ticks: number;
}

export interface SweepOutcome extends SweepJob {
  ok: boolean;
  violation: string | null;
  steps: number;
  ms: number;
  /** What the seed exercised (SimResult): faults injected, view changes, and clients' refused
   * connects and paced polls (docs/PROTOCOL.md §3.9). */
  faults: number;
  view_changes: number;
  client_refusals: number;
  client_polls: number;
}

declare const self: Worker;

self.onmessage = (event: MessageEvent<SweepJob>) => {
  const job = event.data;
  const started = performance.now();
  let outcome: SweepOutcome;
  try {
    const result = simulate({ seed: job.seed, replicas: job.replicas, clients: job.clients, ticks: job.ticks });
    outcome = {
      ...job,
      ok: result.ok,
      violation: result.violation,
      steps: result.step,
      ms: performance.now() - started,
      faults: result.faults,
      view_changes: result.view_changes,
      client_refusals: result.client_refusals,
      client_polls: result.client_polls,
    };
  } catch (error) {
    // The simulator reports violations as results; anything thrown is a bug in it, and a failure.
    outcome = {
      ...job,
      ok: false,
      violation: `simulator threw: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
      steps: 0,
      ms: performance.now() - started,
      faults: 0,
      view_changes: 0,
      client_refusals: 0,
      client_polls: 0,
    };
  }
  self.postMessage(outcome);
};
