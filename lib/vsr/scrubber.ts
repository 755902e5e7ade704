/**
 * The scrubber's schedule: which values a replica reads back and verifies next. A value damaged at
 * rest (a latent sector error, a bit flip) is found only by reading it, so the replica walks its
 * namespace in key order, a few values per tick, and repairs what fails its checksum from a peer
 * while the other copies are still good, not first when a client reads it, possibly after another
 * replica lost its copy too (docs/STORAGE.md §10.8). The journal needs no scrubbing: prepares
 * leave it at the next checkpoint, and damaged ones are found by recovery and repair.
 *
 * This part only decides; the replica reads each key it is handed through its storage and queues a
 * damaged one for repair (value_repair.ts). The cursor lives in memory only: a restart starts a
 * new pass.
 */
import { assert } from "../util/assert.ts";

/** The scrubber reads and verifies this many values, or this many bytes, per tick (whichever
 * comes first): about 6 MB/s or 1,600 values/s at the real node's 10 ms tick, so 1 GiB of values
 * is verified every 3 minutes and 100,000 small ones every minute, a small share of a disk (and
 * of the CPU: each value is a pread and a checksum). */
export const scrub_values_per_tick = 16;
export const scrub_bytes_per_tick = 64 * 1024;
/** A new pass starts at most this often (10 s): a small namespace is not re-read 100 times a
 * second, which would be all cost (a pread and a checksum each) and no benefit. */
export const scrub_pass_interval_ticks_min = 1000;

export interface ScrubLimits {
  values_per_tick: number;
  bytes_per_tick: number;
  pass_interval_ticks_min: number;
}

export const scrub_limits: ScrubLimits = {
  values_per_tick: scrub_values_per_tick,
  bytes_per_tick: scrub_bytes_per_tick,
  pass_interval_ticks_min: scrub_pass_interval_ticks_min,
};

/** What the scrubber needs of the object index (the replica's ObjectStore). */
export interface ScrubIndex {
  readonly count: number;
  /** Up to limit keys after `after` in key order, and whether more follow. */
  list(prefix: string, after: string, limit: number): { keys: string[]; truncated: boolean };
  get(key: string): ScrubEntry | undefined;
  readonly large: ScrubBlocks;
}

export interface ScrubEntry {
  readonly size: number;
  readonly version: number;
  /** A chunked object: its bytes are its blocks, scrubbed one by one (docs/LARGE_OBJECTS.md §9.4). */
  readonly chunks?: { readonly blocks: readonly number[] };
}

/** What the scrubber needs of the block table (ObjectStore.large). */
export interface ScrubBlocks {
  readonly upload_count: number;
  block(id: number): { readonly size: number } | undefined;
  upload(id: number): { readonly slots: ReadonlyMap<string, number> } | undefined;
  /** Open uploads in id order. */
  allUploads(): readonly { readonly id: number }[];
}

/** What is queued for repair already: passed over without being read again, at no cost. */
export interface ScrubRepairing {
  value(key: string): boolean;
  block(id: number): boolean;
}

export interface ScrubStep {
  /** The inline values to read and verify now, by key, in key order. */
  readonly keys: readonly string[];
  /** The blocks to read and verify now, by id. */
  readonly blocks: readonly number[];
  /** Whether this step reached the end of the namespace (the next step starts a new pass). */
  readonly pass_completed: boolean;
}

/** Most ticks hand out nothing (between passes, or paying off a large value): no allocation. */
const idle: ScrubStep = Object.freeze({ keys: Object.freeze([]), blocks: Object.freeze([]), pass_completed: false });

/** What a walk step says: go on, stop for this tick (the byte budget is spent), or the pass is done. */
type Next = "more" | "stop" | "done";

/**
 * A pass visits the keys in key order (an inline value is one item; a chunked object is its
 * blocks, in object order), then the blocks of open uploads (uploads in id order, each one's
 * blocks in the order its slots were filled): every block live throughout a pass, and owned by
 * the same object or upload throughout it, is handed out once in it. A block whose upload is
 * completed during the pass moves to its object's key, perhaps behind the cursor: then it waits
 * for the next pass, as any key written behind the cursor does. What is
 * written behind the cursor waits for the next pass; what dies ahead of it is never handed out.
 * Everything is looked up afresh in the index passed on each tick, so a state sync that replaces
 * the store leaves a cursor that is merely out of date: it carries on after its key, and ids that
 * no longer exist are passed over.
 */
export class Scrubber {
  /** The key the scrubber handed out or skipped last ("" before the first of a pass). */
  private cursor = "";
  /** The chunked object at the cursor whose blocks are being handed out: its version and the
   * index of its next block; null between keys. */
  private chunk: { version: number; next: number } | null = null;
  /** After the keys: the ids of the uploads open then, the position in them, and an iterator
   * over the current upload's slots (live: a Map iterator sees slots filled after it started, and
   * never one deleted before it got there, so an upload of a million blocks costs no tick more
   * than a step per block). null while walking the keys. */
  private uploads: { ids: number[]; next: number; slots: Iterator<number> | null } | null = null;
  /** Bytes handed out beyond the rate so far: a 16 MiB value is paid off over the ticks after it. */
  private debt_bytes = 0;
  /** The tick from which the next pass may start. */
  private pass_next_tick = 0;

  constructor(private readonly limits: ScrubLimits = scrub_limits) {
    assert(
      limits.values_per_tick >= 1 && limits.bytes_per_tick >= 1 && limits.pass_interval_ticks_min >= 0,
      () => `scrub limits out of range: ${JSON.stringify(limits)}`,
    );
  }

  /**
   * Called once per tick, also on ticks the replica may not scrub (no space, a sync in progress,
   * not in normal status: `active` false), because the debt is paid off by time passing either
   * way. Values and blocks queued for repair (`repairing`) are passed over without being read
   * again, and cost nothing but a step. At most values_per_tick steps (a key, a block, an upload
   * entered) are taken per tick, so a tick's work is bounded however the state looks.
   */
  tick(now: number, active: boolean, index: ScrubIndex, repairing: ScrubRepairing): ScrubStep {
    this.debt_bytes = Math.max(0, this.debt_bytes - this.limits.bytes_per_tick);
    if (!active || (index.count === 0 && index.large.upload_count === 0)) return idle;
    if (this.cursor === "" && this.uploads === null) {
      if (now < this.pass_next_tick) return idle;
      this.pass_next_tick = now + this.limits.pass_interval_ticks_min;
    }
    const step: Walk = { keys: [], blocks: [], steps: 0 };
    for (;;) {
      const next = this.uploads === null ? this.walkKeys(index, repairing, step) : this.walkUploads(index, repairing, step);
      assert(step.steps <= this.limits.values_per_tick, () => `scrub: ${step.steps} steps in a tick`);
      if (next === "done") {
        this.cursor = "";
        this.chunk = null;
        this.uploads = null;
        return { keys: step.keys, blocks: step.blocks, pass_completed: true };
      }
      if (next === "stop" || step.steps === this.limits.values_per_tick) break;
    }
    if (step.keys.length === 0 && step.blocks.length === 0) return idle;
    return { keys: step.keys, blocks: step.blocks, pass_completed: false };
  }

  /** Hands out a block if it is still live and not under repair; the caller checked the budget. */
  private visitBlock(id: number, index: ScrubIndex, repairing: ScrubRepairing, step: Walk): void {
    step.steps += 1;
    const block = index.large.block(id);
    if (block === undefined || repairing.block(id)) return;
    step.blocks.push(id);
    this.debt_bytes += block.size;
  }

  /** A step through the keys, or a chunked object's blocks. */
  private walkKeys(index: ScrubIndex, repairing: ScrubRepairing, step: Walk): Next {
    if (this.chunk !== null) {
      const entry = index.get(this.cursor);
      // Overwritten or deleted since: that version's blocks are dead, and a new one waits for the next pass.
      if (entry?.chunks === undefined || entry.version !== this.chunk.version || this.chunk.next >= entry.chunks.blocks.length) {
        this.chunk = null;
        return "more";
      }
      if (this.debt_bytes >= this.limits.bytes_per_tick) return "stop";
      this.visitBlock(entry.chunks.blocks[this.chunk.next++]!, index, repairing, step);
      return "more";
    }
    const limit = this.limits.values_per_tick - step.steps;
    const { keys, truncated } = index.list("", this.cursor, limit);
    assert(keys.length <= limit, () => `scrub: the index listed ${keys.length} keys, asked for ${limit}`);
    for (const key of keys) {
      // A key not after the cursor would make a pass that never ends.
      assert(
        key > this.cursor,
        () => `scrub: the index listed ${JSON.stringify(key)} at or before the cursor ${JSON.stringify(this.cursor)}`,
      );
      if (this.debt_bytes >= this.limits.bytes_per_tick) return "stop";
      this.cursor = key;
      step.steps += 1;
      const entry = index.get(key);
      assert(entry !== undefined, () => `scrub: the index listed ${JSON.stringify(key)} but holds no entry for it`);
      if (entry.chunks !== undefined) {
        // Its blocks are the items, handed out by the next steps.
        this.chunk = { version: entry.version, next: 0 };
        return "more";
      }
      if (repairing.value(key)) continue;
      step.keys.push(key);
      this.debt_bytes += entry.size;
    }
    if (truncated) return "more";
    const uploads = index.large.allUploads();
    if (uploads.length === 0) return "done";
    this.uploads = { ids: uploads.map((u) => u.id), next: 0, slots: null };
    return "more";
  }

  /** A step through the open uploads' blocks. */
  private walkUploads(index: ScrubIndex, repairing: ScrubRepairing, step: Walk): Next {
    const walk = this.uploads!;
    if (walk.slots === null) {
      if (walk.next >= walk.ids.length) return "done";
      step.steps += 1;
      const upload = index.large.upload(walk.ids[walk.next]!);
      if (upload === undefined)
        walk.next += 1; // closed since (or gone with a state sync)
      else walk.slots = upload.slots.values();
      return "more";
    }
    if (this.debt_bytes >= this.limits.bytes_per_tick) return "stop";
    const slot = walk.slots.next();
    if (slot.done === true) {
      walk.slots = null;
      walk.next += 1;
      return "more";
    }
    // An upload closed (or replaced by a state sync) while its slots are walked leaves ids that
    // are no longer live: visitBlock passes over them.
    this.visitBlock(slot.value, index, repairing, step);
    return "more";
  }
}

/** What one tick has handed out so far, and the steps it took. */
interface Walk {
  keys: string[];
  blocks: number[];
  steps: number;
}
