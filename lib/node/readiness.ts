/**
 * Whether a replica is ready (/readyz on the metrics listener): a pure decision over a snapshot the
 * node takes (ReplicaNode.readiness()), so every reason can be tested without a cluster.
 *
 * Ready means all three checks pass:
 * - status: normal, leading its view if it is the view's primary, and not state-syncing;
 * - primary: a backup has heard from the primary of its view within ready_primary_silence_ms; a
 *   primary has heard from enough backups for a quorum within it (a primary cut off from its
 *   backups keeps its status, and only this tells it cannot commit);
 * - commit: its executed commit is within ready_commit_lag_ops_max of the highest commit it has
 *   heard of.
 */
import { ready_commit_lag_ops_max, ready_primary_silence_ms } from "../constants.ts";
import { primaryIndex } from "../vsr/env.ts";

export interface ReadinessSnapshot {
  /** This replica's index. */
  replica: number;
  replica_count: number;
  /** normal, view_change, recovering, blank, or down (no replica open: starting or reopening). */
  status: string;
  view: number;
  /** Primary of `view` and leading it (its start_view sent): Replica.describe().primary. */
  acting_primary: boolean;
  /** A checkpoint transfer from a peer is under way. */
  syncing: boolean;
  /** ms since the last message from the primary of `view`; null if none arrived in this view. */
  primary_heard_ms: number | null;
  /** ms since the last message from each other replica (any kind); null if none since the start. */
  backups_heard_ms: (number | null)[];
  /** The highest op executed. */
  commit_min: number;
  /** The highest commit number heard of, verified or not (Replica.commitKnown()). */
  commit_known: number;
}

export interface ReadinessLimits {
  primary_silence_ms: number;
  commit_lag_ops_max: number;
}

export const default_readiness_limits: ReadinessLimits = {
  primary_silence_ms: ready_primary_silence_ms,
  commit_lag_ops_max: ready_commit_lag_ops_max,
};

export interface ReadinessCheck {
  name: "status" | "primary" | "commit";
  ok: boolean;
  /** What was found, in a few words: the reason when it failed. */
  detail: string;
}

export interface Readiness {
  ready: boolean;
  /** The first failed check's detail; null when ready. */
  reason: string | null;
  checks: ReadinessCheck[];
}

/** 250 ms as "0.25 s", 2345 as "2.3 s": hundredths below a second, where the limit lives. */
function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(ms < 1000 ? 2 : 1))} s`;
}

function count(n: number): string {
  return n.toLocaleString("en-US");
}

function statusCheck(s: ReadinessSnapshot): ReadinessCheck {
  const fail = (detail: string): ReadinessCheck => ({ name: "status", ok: false, detail });
  switch (s.status) {
    case "normal":
      break;
    case "view_change":
      return fail(`view change in progress (view ${s.view})`);
    case "recovering":
      return fail(s.syncing ? "recovering (state sync)" : "recovering");
    case "blank":
      return fail("blank: not yet formatted or joined to the cluster");
    case "down":
      return fail("down: the data directory is not open (starting, or reopening after a storage error)");
    default:
      return fail(`status ${s.status}`);
  }
  // The view's primary between choosing the log and sending start_view is still changing views.
  if (primaryIndex(s.view, s.replica_count) === s.replica && !s.acting_primary) return fail(`view change in progress (view ${s.view})`);
  if (s.syncing) return fail("state sync");
  return { name: "status", ok: true, detail: `normal in view ${s.view}${s.acting_primary ? " as primary" : ""}` };
}

function primaryCheck(s: ReadinessSnapshot, limits: ReadinessLimits): ReadinessCheck {
  const primary = primaryIndex(s.view, s.replica_count);
  if (primary !== s.replica) {
    const heard = s.primary_heard_ms;
    if (heard === null) return { name: "primary", ok: false, detail: `no word from primary ${primary} in view ${s.view}` };
    if (heard > limits.primary_silence_ms)
      return { name: "primary", ok: false, detail: `no word from primary ${primary} for ${seconds(heard)}` };
    return { name: "primary", ok: true, detail: `heard from primary ${primary} ${heard} ms ago` };
  }
  // A quorum is this replica and f backups.
  const needed = Math.floor((s.replica_count - 1) / 2);
  const backups = s.backups_heard_ms.length;
  const heard = s.backups_heard_ms.filter((ms) => ms !== null && ms <= limits.primary_silence_ms).length;
  const detail = `primary, heard from ${heard} of ${backups} backups within ${seconds(limits.primary_silence_ms)} (a quorum needs ${needed})`;
  return { name: "primary", ok: heard >= needed, detail };
}

function commitCheck(s: ReadinessSnapshot, limits: ReadinessLimits): ReadinessCheck {
  const lag = s.commit_known - s.commit_min;
  if (lag > limits.commit_lag_ops_max)
    return { name: "commit", ok: false, detail: `behind: commit ${count(s.commit_min)} of ${count(s.commit_known)} known` };
  return { name: "commit", ok: true, detail: `commit ${count(s.commit_min)} of ${count(s.commit_known)} known` };
}

export function readiness(s: ReadinessSnapshot, limits: ReadinessLimits = default_readiness_limits): Readiness {
  const checks = [statusCheck(s), primaryCheck(s, limits), commitCheck(s, limits)];
  const failed = checks.find((c) => !c.ok);
  return { ready: failed === undefined, reason: failed?.detail ?? null, checks };
}

/** The /readyz body: "ready" or "not ready: REASON", then with verbose one line per check. */
export function readinessText(r: Readiness, verbose: boolean): string {
  const lines = [r.ready ? "ready" : `not ready: ${r.reason}`];
  if (verbose) for (const c of r.checks) lines.push(`${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
  return lines.join("\n") + "\n";
}
