/**
 * The status document one replica reports about itself (toastyfs status, the admin shell,
 * metrics). Self-describing CBOR: it is off the hot path and its fields will grow.
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
  const numbers = ["replica", "view", "log_view", "op", "commit_min", "commit_max", "checkpoint", "disk_bytes", "objects", "object_bytes", "uptime_ms"];
  for (const key of numbers) if (typeof v[key] !== "number") return null;
  if (typeof v.address !== "string" || typeof v.status !== "string" || typeof v.primary !== "boolean") return null;
  if (v.problem !== null && typeof v.problem !== "string") return null;
  if (typeof v.counters !== "object" || v.counters === null) return null;
  return v as unknown as ReplicaStatus;
}
