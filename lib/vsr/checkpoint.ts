/**
 * Which checkpoint a prepare names. Every prepare at op n carries the id (op, digest, anchor
 * checksum) of the checkpoint at checkpointFor(n), a pure function of n: every correct replica's
 * checkpoint there has the same digest, so a committed prepare is the proof a syncing replica
 * checks a received checkpoint against (DESIGN §4, state sync). The named checkpoint lags n by
 * between K+1 and 2K ops (K = checkpoint_interval_ops), so a primary has always taken it before it
 * prepares n (its pipeline is shorter than K), and replicas keep three checkpoints so that one
 * caught up with the cluster can serve it.
 */
export function checkpointFor(op: number, interval_ops: number): number {
  return Math.max(0, Math.floor((op - 1 - interval_ops) / interval_ops) * interval_ops);
}
