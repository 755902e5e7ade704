/**
 * The status document one replica reports about itself (toastyfs status, the admin shell,
 * metrics). Self-describing CBOR: it is off the hot path and its fields will grow. It lives in
 * lib/net because both ends share it: the replica node encodes it, the client decodes it, and the
 * client must not depend on the node.
 */
import { Encoder } from "cbor-x";

export interface ReplicaStatus {
  replica: number;
  address: string;
  status: string;
  primary: boolean;
  view: number;
  log_view: number;
  op: number;
  commit_min: number;
  commit_max: number;
  checkpoint: number;
  disk_bytes: number;
  objects: number;
  object_bytes: number;
  uptime_ms: number;
  /** Why writes are refused, if they are (disk full, storage error). */
  problem: string | null;
  counters: Record<string, number>;
  /** How long it has been in `status` (a view change that moves on to the next view is still one
   * view change); null from a replica too old to report it. */
  status_ms: number | null;
  /** Its view when it entered `status`: a view change stuck for long shows views moving on. */
  status_view: number | null;
  /** What it knows of each other replica; null from a replica too old to report it. */
  peers: PeerStatus[] | null;
  /** Its most recent warning or error log line, and how long ago it was logged. */
  last_warning: { text: string; ms_ago: number } | null;
  /** The cluster incarnation its data directory belongs to (docs/PROTOCOL.md §4.1; a blank
   * replica's candidate); null from a replica too old to report it. */
  incarnation: number | null;
}

/** One replica's view of another (toastyfs status explains a stuck cluster with it). */
export interface PeerStatus {
  replica: number;
  address: string;
  /** ms since the last message from it; null if none since this replica started. */
  heard_ms: number | null;
  /** Its connection to that replica is established now. */
  connected: boolean;
  /** Why that connection last failed or closed (null while it has not since it last opened). */
  error: string | null;
}

const encoder = new Encoder({ useRecords: false, tagUint8Array: false });

export function encodeStatus(status: ReplicaStatus): Uint8Array {
  return encoder.encode(status);
}

/** Decodes and validates the shape (a peer's bytes are untrusted); null if malformed. */
export function decodeStatus(bytes: Uint8Array): ReplicaStatus | null {
  let value: unknown;
  try {
    value = encoder.decode(bytes);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const v = value as Record<string, unknown>;
  const numbers = [
    "replica",
    "view",
    "log_view",
    "op",
    "commit_min",
    "commit_max",
    "checkpoint",
    "disk_bytes",
    "objects",
    "object_bytes",
    "uptime_ms",
  ];
  for (const key of numbers) if (typeof v[key] !== "number") return null;
  if (typeof v.address !== "string" || typeof v.status !== "string" || typeof v.primary !== "boolean") return null;
  if (v.problem !== null && typeof v.problem !== "string") return null;
  if (typeof v.counters !== "object" || v.counters === null) return null;
  // Added later: absent from an older replica (null), but never of another type.
  for (const key of ["status_ms", "status_view", "incarnation"]) {
    if (v[key] === undefined) v[key] = null;
    else if (typeof v[key] !== "number") return null;
  }
  if (v.peers === undefined) v.peers = null;
  else if (v.peers !== null && !(Array.isArray(v.peers) && v.peers.every(isPeerStatus))) return null;
  if (v.last_warning === undefined) v.last_warning = null;
  else if (v.last_warning !== null && !isWarning(v.last_warning)) return null;
  return v as unknown as ReplicaStatus;
}

function isPeerStatus(value: unknown): value is PeerStatus {
  if (typeof value !== "object" || value === null) return false;
  const p = value as Record<string, unknown>;
  return (
    typeof p.replica === "number" &&
    typeof p.address === "string" &&
    (p.heard_ms === null || typeof p.heard_ms === "number") &&
    typeof p.connected === "boolean" &&
    (p.error === null || typeof p.error === "string")
  );
}

function isWarning(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const w = value as Record<string, unknown>;
  return typeof w.text === "string" && typeof w.ms_ago === "number";
}
