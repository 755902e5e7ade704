/**
 * The verdict of `toastyfs status`: from what each replica reports about itself (and what the
 * connection to a silent one did), the cause a person can act on. A cluster that has had no
 * primary for minutes is not "settling": it says for how long, which replicas cannot be reached
 * and why, which replicas hear nothing from which peers, and what the replicas report as wrong.
 */
import type { ReplicaProbe } from "./cluster_probe.ts";
import type { ReplicaStatus } from "../net/status_codec.ts";
import { hex32 } from "../util/hex.ts";

/** A view change normally ends within a second or two; one running longer than this is stuck,
 * and status says why instead of "settling". */
export const view_change_settle_ms = 5_000;
/** A peer that a replica expects to hear from (the primary from its backups, everyone during a
 * view change, where messages go out several times a second) and has not for this long is cut off. */
export const peer_silent_ms = 3_000;
/** Older warnings from a replica's log are not shown: they are history, not the current cause. */
export const warning_recent_ms = 60_000;

export interface Diagnosis {
  verdict: string;
  /** A majority answers and one of them is primary: the cluster serves reads and writes. */
  serving: boolean;
  /** Lines explaining the verdict: why each silent replica is silent, problems, cut-off peers,
   * recent warnings. */
  notes: string[];
}

/** Why a replica gave no status, in a few words (for the verdict) and in full (for a note). */
export function unreachableReason(probe: ReplicaProbe, timeout_ms: number): { short: string; long: string } {
  const failure = probe.failure;
  if (probe.other_cluster !== null) {
    return {
      short: "of another cluster",
      long: `answered that it belongs to another cluster (id ${probe.other_cluster.toString(16).padStart(16, "0")}): its address list (--addr/--peer) differs from this command's --cluster; give every replica and client the same set of addresses, in any order`,
    };
  }
  if (probe.malformed)
    return {
      short: "answers garbage",
      long: "answered with a status document that does not decode (a different version of toastyfs, or not toastyfs at all)",
    };
  if (!probe.connected && failure !== null) {
    if (/ECONNREFUSED/.test(failure))
      return {
        short: "not running",
        long: "nothing listens there (connection refused): the replica is not running, or listens on another address",
      };
    if (/ENOTFOUND|EAI_|getaddrinfo/i.test(failure)) return { short: "unknown host", long: `the host name does not resolve (${failure})` };
    if (/EHOSTUNREACH|ENETUNREACH/.test(failure)) return { short: "no route", long: `no route to the host (${failure})` };
    return { short: "cannot connect", long: `cannot connect: ${failure}` };
  }
  if (probe.connected && failure !== null) {
    return {
      short: "closes connections unanswered",
      long: `accepted the connection, then closed it on the status request (${failure}): it refuses this command's messages, so it most likely runs with a different address list (--addr/--peer) than this command's --cluster, or belongs to another cluster (or it has no connection slots left)`,
    };
  }
  if (probe.connected)
    return {
      short: "paused or hung",
      long: `accepted the connection but did not answer within ${timeout_ms} ms: the process is paused (SIGSTOP), hung, or overloaded`,
    };
  return { short: "unreachable", long: `no TCP connection within ${timeout_ms} ms: the host is down, or a firewall drops the packets` };
}

/** "850 ms", "4.2 s", "45 s", "2 min 13 s", "1 h 5 min". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(s - minutes * 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** The first clause of a problem ("disk full", "journal damaged (ops 5-7)"), for the verdict. */
function problemHeadline(problem: string): string {
  const colon = problem.indexOf(":");
  return colon > 0 ? problem.slice(0, colon) : problem;
}

function refusesWrites(s: ReplicaStatus): boolean {
  return s.problem !== null && (s.problem.startsWith("disk full") || s.problem.startsWith("storage error"));
}

function roleText(s: ReplicaStatus): string {
  if (s.primary) return "primary";
  if (s.status === "normal") return "backup";
  return s.status.replace("_", " ");
}

export function diagnose(probes: ReplicaProbe[], timeout_ms: number): Diagnosis {
  const n = probes.length;
  const quorum = Math.floor(n / 2) + 1;
  const notes: string[] = [];
  const answering = probes.filter((p): p is ReplicaProbe & { status: ReplicaStatus } => p.status !== null);
  const silent = probes.filter((p) => p.status === null);
  const up = answering.length;
  const primary = answering.find((p) => p.status.primary) ?? null;

  const reasons = new Map<string, { short: string; long: string }>();
  for (const p of silent) {
    const reason = unreachableReason(p, timeout_ms);
    reasons.set(p.address, reason);
    notes.push(`  down: ${p.address}: ${reason.long}`);
  }
  const unwell: string[] = silent.map((p) => `${p.address} down (${reasons.get(p.address)!.short})`);
  for (const p of answering) {
    const s = p.status;
    if (!s.primary && s.status !== "normal") unwell.push(`${p.address} ${roleText(s)}`);
    if (s.problem !== null) {
      notes.push(`  problem: ${p.address}: ${s.problem}`);
      unwell.push(`${p.address}: ${problemHeadline(s.problem)}`);
    }
  }

  // A replica whose data directory belongs to another cluster incarnation (an earlier cluster on
  // the same addresses): the others refuse it. The cluster's is the primary's, else the most common.
  const foreign = new Set<string>();
  const formatted = answering.filter((p) => p.status.incarnation !== null && p.status.status !== "blank");
  if (new Set(formatted.map((p) => p.status.incarnation)).size > 1) {
    const counts = new Map<number, number>();
    for (const p of formatted) counts.set(p.status.incarnation!, (counts.get(p.status.incarnation!) ?? 0) + 1);
    const ours = primary?.status.incarnation ?? [...counts].sort((a, b) => b[1] - a[1])[0]![0];
    for (const p of formatted) {
      if (p.status.incarnation === ours) continue;
      notes.push(
        `  other cluster: ${p.address} has the data directory of cluster incarnation ${hex32(p.status.incarnation!)}, the others ${hex32(ours)} (a directory of an earlier cluster on these addresses?): the others refuse it; stop it and give it its own directory, or an empty one to recover from the others`,
      );
      unwell.push(`${p.address} of another cluster`);
      foreign.add(p.address);
    }
  }

  // Replicas that answer this command but not each other: a network problem between replicas,
  // or replicas started with different address lists (each refuses the other's messages).
  for (const p of answering) {
    const s = p.status;
    const expects_all = s.primary || s.status === "view_change" || s.status === "recovering";
    const followed = s.status === "normal" && !s.primary ? s.view % n : -1;
    const cut: string[] = [];
    for (const peer of s.peers ?? []) {
      if (!expects_all && peer.replica !== followed) continue;
      if (probes[peer.replica]?.status === null || probes[peer.replica] === undefined) continue; // explained by its own line
      if (peer.heard_ms !== null && peer.heard_ms < peer_silent_ms) continue;
      if (s.status_ms !== null && s.status_ms < peer_silent_ms && peer.heard_ms === null) continue; // just started
      const heard = peer.heard_ms === null ? "never since it started" : `for ${formatDuration(peer.heard_ms)}`;
      cut.push(`${peer.address} (${heard}${peer.error === null ? "" : `; its connection: ${peer.error}`})`);
    }
    if (cut.length > 0)
      notes.push(
        `  cut off: ${p.address} (${roleText(s)}) hears nothing from ${cut.join(", ")}, although that replica answers this command: check the network between the replicas, and that every replica was started with the same --addr/--peer set`,
      );
  }

  let verdict: string;
  let serving = false;
  const no_primary_for = noPrimaryFor(answering.map((p) => p.status));
  const for_text = no_primary_for === null ? "" : ` for ${formatDuration(no_primary_for)}`;
  if (up < quorum) {
    const down = silent.map((p) => `${p.address} ${reasons.get(p.address)!.short}`).join(", ");
    verdict = `no quorum: only ${up} of ${n} replicas answer and ${quorum} are needed;${for_text === "" ? "" : ` no primary${for_text};`} the cluster serves no reads or writes until a majority runs and reaches each other (not answering: ${down})`;
  } else if (primary !== null) {
    // A replica whose disk is full, or that is reopening its data directory, acknowledges no write.
    const writable = answering.filter((p) => !refusesWrites(p.status) && !foreign.has(p.address)).length;
    serving = writable >= quorum;
    if (!serving) {
      verdict = `degraded: ${unwell.join(", ")}; reads are served (primary ${primary.address}) but writes cannot commit: only ${writable} of ${n} replicas can take them and ${quorum} are needed`;
    } else if (unwell.length > 0) {
      const spare = writable - quorum;
      verdict = `degraded: ${unwell.join(", ")}; still serving (primary ${primary.address}), ${spare === 0 ? "but one more failure stops it" : `tolerates ${spare} more failure${spare === 1 ? "" : "s"}`}`;
    } else {
      verdict = `healthy: ${up} of ${n} replicas up, primary ${primary.address}`;
    }
  } else {
    verdict = noPrimaryVerdict(
      probes,
      answering.map((p) => p.status),
      reasons,
      no_primary_for,
      unwell,
    );
  }
  if (!serving || unwell.length > 0) {
    for (const p of answering) {
      const w = p.status.last_warning;
      if (w !== null && w.ms_ago < warning_recent_ms) notes.push(`  logged: ${p.address}, ${formatDuration(w.ms_ago)} ago: ${w.text}`);
    }
  }
  if (verdict.startsWith("stuck:"))
    verdict += notes.length > 0 ? "; the lines above say why" : "; nothing visible from here explains it: read the replicas' logs";
  return { verdict, serving, notes };
}

/** How long the answering replicas have been without a primary: null if one of them is still in
 * normal status (it follows a primary, or has just stopped hearing from it) or none can say. */
function noPrimaryFor(statuses: ReplicaStatus[]): number | null {
  if (statuses.length === 0 || statuses.some((s) => s.status === "normal" || s.status_ms === null)) return null;
  return Math.min(...statuses.map((s) => s.status_ms!));
}

function noPrimaryVerdict(
  probes: ReplicaProbe[],
  statuses: ReplicaStatus[],
  reasons: Map<string, { short: string }>,
  no_primary_for: number | null,
  unwell: string[],
): string {
  const n = probes.length;
  const tail = unwell.length > 0 ? `; ${unwell.join(", ")}` : "";
  // Backups following a primary that does not answer this command (it may still serve others).
  const following = statuses.filter((s) => s.status === "normal" && !s.primary);
  if (following.length > 0) {
    const view = Math.max(...following.map((s) => s.view));
    const p = probes[view % n]!;
    if (p.status === null) {
      return `degraded: no primary answers: the backups follow ${p.address} (view ${view}), which ${reasons.get(p.address)!.short === "not running" ? "is not running (a view change should start within a second)" : `does not answer this command (${reasons.get(p.address)!.short}); it may still serve clients that can reach it`}${tail}`;
    }
  }
  if (statuses.length > 0 && statuses.every((s) => s.status === "blank")) {
    const missing = probes.filter((p) => p.status === null).map((p) => p.address);
    if (missing.length > 0)
      return `not formed yet: a new cluster formats itself once all ${n} replicas run; waiting for ${missing.join(", ")}${tail}`;
    return `degraded: no primary right now (the first formatting is in progress; it normally settles within a second or two)${tail}`;
  }
  if (no_primary_for !== null && no_primary_for <= view_change_settle_ms) {
    return `degraded: no primary right now (a view change is in progress, for ${formatDuration(no_primary_for)}; it normally settles within a second or two)${tail}`;
  }
  if (no_primary_for === null) {
    // Some replica is in normal status without a primary answering: a view change is starting.
    return `degraded: no primary right now (the replicas are changing views; it normally settles within a second or two)${tail}`;
  }
  const changing = statuses
    .filter((s) => s.status === "view_change")
    .map(
      (s) => `${s.address} in view ${s.view}${s.status_view !== null && s.status_view !== s.view ? ` (since view ${s.status_view})` : ""}`,
    );
  const recovering = statuses.filter((s) => s.status === "recovering").map((s) => s.address);
  const parts = [
    changing.length > 0 ? `view change not finishing: ${changing.join(", ")}` : "",
    recovering.length > 0 ? `recovering, which needs a primary to catch up from: ${recovering.join(", ")}` : "",
  ].filter((x) => x !== "");
  const others = unwell.filter((u) => !/ (view change|recovering)$/.test(u));
  return `stuck: no primary for ${formatDuration(no_primary_for)}, longer than a view change takes (${formatDuration(view_change_settle_ms)}); ${[...parts, ...others].join("; ")}`;
}
