/**
 * Every limit in one place, with units in the names. Fixed protocol limits are constants; the
 * tunables that differ between production and the simulator (which uses small journals and
 * frequent checkpoints so every seed wraps, checkpoints and syncs) live in Config.
 */

/** Wire format: magic "TFS1" little-endian, and the protocol version. */
export const wire_magic = 0x31534654;
export const protocol_version = 1;
/** Every message starts with a fixed header of this size (docs/PROTOCOL.md). */
export const header_size = 128;

export const key_size_min = 1;
export const key_size_max = 1024;
/** The default and the hard ceiling for a value; a cluster may configure a lower maximum. */
export const value_size_max_default = 16 * 1024 * 1024;
/** A request body holds the operation's fixed fields, the key and the value. */
export const request_overhead_max = 64 + key_size_max;
/** The largest message on the wire: a prepare carrying one maximum-size put, or a reply with one
 * value. Frames above this are rejected before they are buffered. */
export const message_size_max = header_size + 64 + request_overhead_max + value_size_max_default;
/** Replicas are numbered 0..replica_count-1 in a u8; clients use this sender id. */
export const replicas_max = 15;
export const sender_client = 255;
/** At most this many log-suffix headers travel in do_view_change/start_view and the superblock. */
export const view_headers_max = 64;
/** The largest journal a replica may be configured with (slots); a do_view_change names at most
 * this many damaged ops. */
export const journal_slot_count_max = 65536;
export const faulty_ops_max = journal_slot_count_max;
/** A list returns at most this many keys per request. */
export const list_limit_max = 1000;
/** A list reply stays below this size, whatever the limit asked. */
export const list_reply_size_max = 1024 * 1024;

/** A replica node asks for a garbage collection after this much input (lib/node/replica_node.ts
 * collectGarbage): what arrives becomes garbage within a few turns, and this bounds how much of it
 * waits for the collector. */
export const gc_received_bytes_step = 64 * 1024 * 1024;

export interface Config {
  /** Identifies the cluster; every message and data directory carries it. */
  cluster: bigint;
  replica_count: number;
  /** Prepares in flight at once at the primary (docs/DESIGN.md §4: 4–8). */
  pipeline_prepare_max: number;
  /** Requests the primary queues while the pipeline is full; more are dropped (clients retry). */
  request_queue_max: number;
  /** Bytes of requests batched into one prepare. */
  batch_size_max: number;
  /** Requests batched into one prepare. */
  batch_requests_max: number;
  /** Linearizable reads waiting at the primary for their heartbeat round. */
  read_queue_max: number;
  /** The journal holds at most this many ops beyond the checkpoint. */
  journal_slot_count: number;
  /** A checkpoint every this many ops; must divide into the journal with room for a pipeline. */
  checkpoint_interval_ops: number;
  /** Journal segment files are preallocated to this size; values stay in them (docs/DESIGN.md §5). */
  segment_size_bytes: number;
  /** Client sessions kept in the (replicated) client table; least recently committed is evicted. */
  clients_max: number;
  value_size_max: number;
  /** Ticks are driven by a real or virtual clock every tick_ms. */
  tick_ms: number;
  /** The primary sends a commit heartbeat this often when idle. */
  heartbeat_ticks: number;
  /** A backup that hears nothing from its primary for this long starts a view change (±10%). */
  view_change_timeout_ticks: number;
  /** A stalled view change moves on to the next view after this long. */
  view_change_retry_ticks: number;
  /** Unacknowledged prepares are resent this often. */
  prepare_retry_ticks: number;
  /** Missing or damaged prepares are requested from peers this often. */
  repair_ticks: number;
  /** A blank replica probes its peers this often while deciding whether to format. */
  probe_ticks: number;
}

export function defaultConfig(replica_count: number, cluster: bigint): Config {
  return {
    cluster,
    replica_count,
    pipeline_prepare_max: 8,
    request_queue_max: 1024,
    batch_size_max: 1024 * 1024,
    batch_requests_max: 256,
    read_queue_max: 4096,
    journal_slot_count: 1024,
    checkpoint_interval_ops: 256,
    segment_size_bytes: 64 * 1024 * 1024,
    clients_max: 256,
    value_size_max: value_size_max_default,
    tick_ms: 10,
    heartbeat_ticks: 10,
    view_change_timeout_ticks: 60,
    view_change_retry_ticks: 60,
    prepare_retry_ticks: 20,
    repair_ticks: 5,
    probe_ticks: 10,
  };
}
