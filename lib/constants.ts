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
/** An S3 bucket name (63), "/" and an S3 key (1,024): the gateway stores object K of bucket B
 * under "B/K" (docs/S3.md §2). */
export const key_size_max = 1088;
/** The default and the hard ceiling for a value; a cluster may configure a lower maximum. */
export const value_size_max_default = 16 * 1024 * 1024;
/** A request body holds the operation's fixed fields, the key and the value. */
export const request_overhead_max = 64 + key_size_max;
/** The largest message on the wire: a prepare carrying one maximum-size put, or a reply with one
 * value. Frames above this are rejected before they are buffered. */
export const message_size_max = header_size + 64 + request_overhead_max + value_size_max_default;
/** The most key + content type + user metadata + value bytes one put_object may carry. Its object
 * record in the state-sync stream (docs/STORAGE.md §8: 8 + 40 + 32 bytes of fields, three paddings
 * to 8, 101 bytes at most) must fit in one sync_chunk message, and a request that fills a message
 * would not: without this bound such an object could never be synced to a lagging replica or saved
 * by a snapshot. */
export const put_object_payload_max_bytes = message_size_max - header_size - 128;
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

/*
 * Readiness (/readyz on the metrics listener, lib/node/readiness.ts). With the default timing a
 * primary sends a heartbeat every 50 ms (heartbeat_ticks x tick_ms) and a backup that hears
 * nothing from it starts a view change after 300 ms +-10% (view_change_timeout_ticks), so at most
 * 330 ms.
 */
/** A backup is not ready once its primary has been silent this long, and a primary once it has
 * not heard from enough backups for a quorum within it. Five heartbeat intervals, so a late
 * heartbeat or two (a slow fsync) do not flap it; below the shortest election timeout (270 ms), so
 * a backup whose primary died says so ("no word from primary 1 for 0.25 s") before its view change
 * starts. It also catches what the election timer cannot: a primary cut off from its backups keeps
 * its status, and only this tells that it can no longer commit. */
export const ready_primary_silence_ms = 250;
/** A replica is not ready while its executed commit is further than this many ops behind the
 * highest commit number it has heard of. A healthy backup trails by the prepares in flight
 * (pipeline_prepare_max, 8) and what commits before the next prepare or heartbeat tells it; 64 is
 * eight pipelines, while a replica repairing a gap or heading for state sync (a checkpoint interval,
 * 256 ops, behind) is well past it. */
export const ready_commit_lag_ops_max = 64;

/*
 * Large objects (docs/LARGE_OBJECTS.md §2, issue 14). Defined for the operation bodies of
 * lib/store/large_bodies.ts and the primary's checks (docs/PROTOCOL.md §3.15). The simulator
 * keeps the production values until it drives large objects (§13 step 8).
 */
/** The hard ceiling of Config.block_size_max, in bytes: a write_block of this size plus its 32
 * bytes of fields and the key fits in message_size_max with room to spare. */
export const block_size_max_ceiling_bytes = 4 * 1024 * 1024;
/** The floor of Config.block_size_max, in bytes (the simulator draws 16..512). Below it the block
 * map of a read_size_max read would no longer fit in one reply (lib/store/large_bodies.ts
 * read_reply_size_max). */
export const block_size_min_bytes = 16;
/** The largest `length` of a read, in bytes. */
export const read_size_max_bytes = 4 * 1024 * 1024;
/** The largest object, in bytes: 5 TiB, S3's limit (below 2^53, so sizes stay exact numbers). */
export const object_size_max_bytes = 5 * 1024 * 1024 * 1024 * 1024;
/** Part numbers of an upload are 1..upload_parts_max (S3's range). */
export const upload_parts_max = 10_000;
/** Block indexes within a part are 0..part_blocks_max-1. */
export const part_blocks_max = 1024 * 1024;
/** Bytes of an object's content type. */
export const content_type_size_max_bytes = 255;
/** Bytes of an object's encoded user metadata (S3's user-metadata limit is 2 KB). */
export const object_meta_size_max_bytes = 2048;
/** Bytes of one user-metadata name. */
export const meta_name_size_max_bytes = 128;
/** Uploads one housekeeping entry may expire. */
export const expire_per_op_max = 64;
/** How often the primary considers a housekeeping entry (100 ticks of 10 ms: 1 s). */
export const housekeeping_interval_ticks = 100;
/** Blocks or reads a TypeScript client keeps in flight. */
export const client_lanes_default = 4;
/** The ceiling of Config.uploads_open_max: open uploads are replicated state held in memory by
 * every replica. */
export const uploads_open_max_ceiling = 65_536;
/** The ceiling of Config.upload_abandon_ms and of a housekeeping entry's age: 2^40 ms (~35 years)
 * keeps `touched + age` far below 2^53 for any timestamp. */
export const upload_abandon_ms_ceiling = 2 ** 40;

// Snapshots (docs/PROTOCOL.md §3.16, request_snapshot and snapshot_chunk).
/** Largest `size_max` a snapshot client may ask for: a chunk is at most that, or one record (one
 * value or block) alone. */
export const snapshot_chunk_size_max_bytes = 4 * 1024 * 1024;
/** Checkpoints a replica serves to snapshot clients at once: each one served holds a decoded copy of
 * that checkpoint's index in memory (about as much as the replica's own), so a request for a third
 * is answered busy while two are in use. */
export const snapshot_streams_max = 2;
/** A snapshot stream nobody asked for a chunk for this long (30 s at 10 ms ticks) is abandoned: its
 * place may go to another checkpoint. */
export const snapshot_stream_idle_ticks = 3000;

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
  /** The largest write_block data, in bytes (docs/LARGE_OBJECTS.md §2): block_size_min_bytes up to
   * block_size_max_ceiling_bytes and value_size_max (a value of one block may always be put inline).
   * Checked on arrival only: execution must not depend on it. */
  block_size_max: number;
  /** Open uploads in the cluster (replicated state); beyond it create_upload is too_many_uploads.
   * Read at execution: every replica of a cluster must be configured alike. */
  uploads_open_max: number;
  /** An upload untouched this long in log time is aborted by a housekeeping entry the
   * primary proposes; execution uses the age the entry carries. */
  upload_abandon_ms: number;
  /** Bytes of requests queued at the primary; beyond it a request is busy (one request
   * is always let in). */
  request_queue_bytes_max: number;
  /** Dead bytes pinned by retention that make an idle primary prepare no-op entries (the nudge,
   * docs/LARGE_OBJECTS.md §8). Below one segment, so that one dead segment is freed too. */
  reclaim_nudge_bytes_min: number;
  /** Bytes of values and blocks the scrubber reads and verifies per tick (64 KiB: about 6.5 MB/s
   * at a 10 ms tick, so 1 TiB takes two days a pass); scrub_bytes_per_tick_min..max. */
  scrub_bytes_per_tick: number;
  /** Bytes of get replies the primary keeps to answer repeated gets of the same version without
   * reading the disk (lib/store/read_cache.ts); 0 turns the cache off. Node-local: it changes no
   * reply, only where the bytes come from. */
  read_cache_bytes_max: number;
}

export const scrub_bytes_per_tick_min = 4096;
export const scrub_bytes_per_tick_max = 64 * 1024 * 1024;

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
    // A backup notices a dead primary after 300 ms: six heartbeats it did not hear. Heartbeats no
    // longer wait behind fdatasync (it runs off the event loop, STORAGE.md §10.9), so a busy
    // primary still sends them on time; etcd's defaults are a 100 ms heartbeat and 1 s election.
    heartbeat_ticks: 5,
    view_change_timeout_ticks: 30,
    view_change_retry_ticks: 30,
    prepare_retry_ticks: 20,
    repair_ticks: 5,
    probe_ticks: 10,
    block_size_max: block_size_max_ceiling_bytes,
    uploads_open_max: 1024,
    upload_abandon_ms: 24 * 60 * 60 * 1000,
    request_queue_bytes_max: 64 * 1024 * 1024,
    reclaim_nudge_bytes_min: 16 * 1024 * 1024,
    scrub_bytes_per_tick: 64 * 1024,
    // Off by default, and so in the simulator, whose traces follow every disk read; a replica node
    // turns it on (read_cache_bytes_default).
    read_cache_bytes_max: 0,
  };
}

/** A replica node runs a flush's fdatasyncs on the event loop when its group gathered at most this
 * many requests and prepares (a lone client), on the thread pool otherwise (lib/node/replica_node.ts). */
export const flush_inline_arrivals_max = 1;

/** The read cache of a replica node (Config.read_cache_bytes_max): 32 MiB, a small share of a
 * replica's memory, holds a working set of a few dozen 1 MiB values or about 25,000 of 1 KiB. */
export const read_cache_bytes_default = 32 * 1024 * 1024;

/**
 * Why a configuration's large-object limits are out of range, or null if they are in range. The
 * replica asserts it at startup with the rest of its Config checks.
 */
export function largeObjectConfigProblem(config: Config): string | null {
  const whole = (n: number, min: number, max: number): boolean => Number.isSafeInteger(n) && n >= min && n <= max;
  const block_ceiling = Math.min(block_size_max_ceiling_bytes, config.value_size_max);
  if (!whole(config.block_size_max, block_size_min_bytes, block_ceiling)) {
    return `block_size_max must be ${block_size_min_bytes}..${block_ceiling} bytes (at most value_size_max), got ${config.block_size_max}`;
  }
  if (!whole(config.uploads_open_max, 1, uploads_open_max_ceiling)) {
    return `uploads_open_max must be 1..${uploads_open_max_ceiling}, got ${config.uploads_open_max}`;
  }
  if (!whole(config.upload_abandon_ms, 1, upload_abandon_ms_ceiling)) {
    return `upload_abandon_ms must be 1..${upload_abandon_ms_ceiling}, got ${config.upload_abandon_ms}`;
  }
  // One write_block of the largest size (its 32 bytes of fields included) must always fit the
  // queue, or a primary would answer it busy forever.
  if (!whole(config.request_queue_bytes_max, config.block_size_max + 32, Number.MAX_SAFE_INTEGER)) {
    return `request_queue_bytes_max must be at least block_size_max + 32 = ${config.block_size_max + 32} bytes, got ${config.request_queue_bytes_max}`;
  }
  if (!whole(config.reclaim_nudge_bytes_min, 1, Number.MAX_SAFE_INTEGER)) {
    return `reclaim_nudge_bytes_min must be a positive number of bytes, got ${config.reclaim_nudge_bytes_min}`;
  }
  if (!whole(config.scrub_bytes_per_tick, scrub_bytes_per_tick_min, scrub_bytes_per_tick_max)) {
    return `scrub_bytes_per_tick must be ${scrub_bytes_per_tick_min}..${scrub_bytes_per_tick_max} bytes, got ${config.scrub_bytes_per_tick}`;
  }
  if (!whole(config.read_cache_bytes_max, 0, Number.MAX_SAFE_INTEGER)) {
    return `read_cache_bytes_max must be a whole number of bytes (0: no cache), got ${config.read_cache_bytes_max}`;
  }
  return null;
}
