/**
 * The first look at a message that passed the frame checks (lib/net/codec.ts): is it for this
 * cluster, from a replica of it, of this incarnation, in a view an honest replica can reach? Pure,
 * so every rule has a unit test; the replica acts on the verdict (drop, refuse the incarnation, or
 * count a protocol violation).
 */
import { assert } from "../util/assert.ts";
import { Command, type Header } from "../net/codec.ts";
import type { Config } from "../constants.ts";

/** The highest view a message may name: one this close to 2^32 is forged, since the next view would
 * wrap to 0 on the wire and wedge the cluster (4 billion view changes do not happen). */
export const view_max = 0xffff_ffff - 0x10_0000;

export type Admission =
  | { kind: "admit" }
  /** Not for this replica, or not from a replica of this cluster: dropped quietly. */
  | { kind: "drop"; why: string }
  /** A replica whose data directory belongs to another cluster incarnation. */
  | { kind: "other_incarnation" }
  /** Well-formed, but no honest replica sends it. */
  | { kind: "violation"; what: string };

// Every message gets one of these two verdicts: shared, so the hot path allocates nothing for them.
const admitted: Admission = Object.freeze({ kind: "admit" });
const other_incarnation: Admission = Object.freeze({ kind: "other_incarnation" });

/** h arrived at replica `replica` of the cluster `config` describes, whose incarnation it holds is
 * `incarnation` (a blank replica's candidate). */
export function admit(h: Header, config: Pick<Config, "cluster" | "replica_count">, replica: number, incarnation: number): Admission {
  assert(replica >= 0 && replica < config.replica_count, () => `receiver ${replica} of ${config.replica_count} replicas`);
  if (h.cluster !== config.cluster) return { kind: "drop", why: "cluster mismatch" };
  // Requests come from clients: the replica fields of their header name no sender.
  if (h.command === Command.request || h.command === Command.request_snapshot) return admitted;
  if (h.replica >= config.replica_count || h.replica_count !== config.replica_count) {
    return {
      kind: "drop",
      why: `sender ${h.replica} with replica_count ${h.replica_count} does not match this cluster of ${config.replica_count}`,
    };
  }
  // A primary's prepare can come back to it relayed by a backup (repair).
  if (h.replica === replica && h.command !== Command.prepare) return { kind: "drop", why: "message from self" };
  // Probes carry the incarnation being decided: formation compares them itself.
  if (h.incarnation !== incarnation && h.command !== Command.ping && h.command !== Command.pong) return other_incarnation;
  if (h.view > view_max) return { kind: "violation", what: `view ${h.view} above ${view_max}` };
  return admitted;
}
