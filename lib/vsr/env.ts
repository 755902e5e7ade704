/**
 * What a replica and its parts (lib/vsr/*.ts) share with the world: the effects port (Env), the
 * simulator's observation hooks, the status names, and who leads a view. In its own file so a part
 * can name them without importing replica.ts (which imports the parts).
 */
import type { Message } from "../net/codec.ts";
import type { Prng } from "../util/prng.ts";
import type { DoViewChange } from "./view_change.ts";

export type Status = "blank" | "recovering" | "normal" | "view_change";

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Env {
  sendToReplica(replica: number, message: Message): void;
  sendToClient(client: bigint, message: Message): void;
  random: Prng;
  log(level: LogLevel, text: string): void;
}

/** Observations for the simulator's invariant checks; production leaves it unset. */
export interface ReplicaObserver {
  /** An op executed: its prepare (the header's checksum identifies it). */
  executed(replica: number, prepare: Message): void;
  /** A client request executed (or was found to be a duplicate) at op. */
  request(replica: number, client: bigint, request: number, op: number, duplicate: boolean): void;
  /** The replica acts as primary of view (first time it sends a prepare or start_view in it). */
  primary(replica: number, view: number): void;
  /** The replica offers its log for view (a do_view_change sent, or kept by the new primary). */
  doViewChange(replica: number, view: number, dvc: DoViewChange): void;
  /** A well-formed message that no honest replica sends (forged, or a bug): dropped. The
   * checksum of the message, when one message is to blame. */
  violation(replica: number, text: string, checksum: bigint | null): void;
}

/** The primary of a view: views rotate through the replicas in index order. */
export function primaryIndex(view: number, replica_count: number): number {
  return view % replica_count;
}

/** A replica's counters, for status and metrics. */
export interface ReplicaStats {
  view_changes: number;
  requests_rejected: number;
  /** Of those, refused because the primary's queue was full (busy), and because this replica is
   * not the primary (not_primary): a large request refused is its whole body sent for nothing. */
  requests_busy: number;
  requests_not_primary: number;
  repairs_requested: number;
  syncs: number;
  messages_dropped: number;
  /** Well-formed messages no honest replica sends (forged frames, or a bug), dropped. */
  protocol_violations: number;
  bytes_compacted: number;
  /** Values read back and verified by the scrubber, and complete passes over the namespace. */
  values_scrubbed: number;
  scrub_passes: number;
}

export function newReplicaStats(): ReplicaStats {
  return {
    view_changes: 0,
    requests_rejected: 0,
    requests_busy: 0,
    requests_not_primary: 0,
    repairs_requested: 0,
    syncs: 0,
    messages_dropped: 0,
    protocol_violations: 0,
    bytes_compacted: 0,
    values_scrubbed: 0,
    scrub_passes: 0,
  };
}

/** Where a replica stands, for status displays and the simulator. */
export interface ReplicaSummary {
  status: Status;
  view: number;
  log_view: number;
  op: number;
  commit_min: number;
  commit_max: number;
  /** The op of the durable checkpoint. */
  checkpoint: number;
  /** Whether it acts as primary (isActingPrimary). */
  primary: boolean;
}

/** Where a replica stands (Replica.describe): its own fields, but the checkpoint's op and whether
 * it acts as primary. */
export function summarize(
  replica: Omit<ReplicaSummary, "checkpoint" | "primary"> & { readonly checkpoint: { readonly op: number }; isActingPrimary(): boolean },
): ReplicaSummary {
  const { status, view, log_view, op, commit_min, commit_max } = replica;
  return { status, view, log_view, op, commit_min, commit_max, checkpoint: replica.checkpoint.op, primary: replica.isActingPrimary() };
}
