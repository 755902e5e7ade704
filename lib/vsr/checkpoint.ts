import { assert } from "../util/assert.ts";

/**
 * Which checkpoint a prepare names. Every prepare at op n carries the id (op, digest, anchor
 * checksum) of the checkpoint at checkpointFor(n), a pure function of n: every correct replica's
 * checkpoint there has the same digest, so a committed prepare is the proof a syncing replica
 * checks a received checkpoint against (docs/PROTOCOL.md §4.7, state sync). The named checkpoint lags n by
 * between K+1 and 2K ops (K = checkpoint_interval_ops), so a primary has always taken it before it
 * prepares n (its pipeline is shorter than K), and replicas keep three checkpoints so that one
 * caught up with the cluster can serve it.
 */
export function checkpointFor(op: number, interval_ops: number): number {
  assert(Number.isSafeInteger(interval_ops) && interval_ops >= 1, () => `checkpoint interval ${interval_ops}`);
  const named = Math.max(0, Math.floor((op - 1 - interval_ops) / interval_ops) * interval_ops);
  // op may come from a peer's header (state_sync compares against it), so only an op that is a
  // plausible log position is held to the lag rule; anything else is the caller's to reject.
  if (Number.isSafeInteger(op) && op >= 0 && op <= 2 ** 48) {
    assert(
      named % interval_ops === 0 && (named === 0 ? op <= 2 * interval_ops : op - named > interval_ops && op - named <= 2 * interval_ops),
      () => `checkpoint ${named} named by op ${op} (interval ${interval_ops})`,
    );
  }
  return named;
}
