/**
 * Rebuilds the journal's view of the log from what storage found on disk at open. Storage reports
 * every readable copy of every op (a lost or misdirected ring record hides which copy was
 * journaled last), so this decides which copy belongs to the log, by the rules of
 * docs/STORAGE.md (recovery): above the suffix log_view vouches for, only prepares of log_view
 * itself (one per op; two of one view are trusted neither); within the suffix, the vouched header;
 * below it, down the hash chain from there and from the checkpoint's anchor.
 */
import { assert } from "../util/assert.ts";
import type { Header } from "../net/codec.ts";
import type { Journal } from "./journal.ts";
import { vouchedMax, type CheckpointMeta, type Recovered, type RecoveredPrepare, type VsrState } from "./storage.ts";
import { stateDigest } from "./root.ts";
import { windowOp } from "./window.ts";
import { applyViewHeaders, trimUnchained } from "./log_chain.ts";

/**
 * Puts into the journal, per op, the prepare found on disk that belongs to this replica's log.
 * Storage may report several copies of an op (a record lost or misdirected hides which one was
 * journaled last), so the log decides: above the suffix log_view vouches for, only prepares of
 * log_view itself belong to the log (one per op); within the suffix, the vouched header; below
 * it, down the hash chain from there and from the checkpoint's anchor. Executed ops are kept
 * while their slots last, to serve peers' repairs.
 */
export function loadJournal(journal: Journal, entries: RecoveredPrepare[], state: VsrState, vh_max: number, anchor: Header): void {
  const slot_count = journal.slot_count;
  const commit_min = state.checkpoint.op;
  assert(
    anchor.op === commit_min && anchor.checksum === state.checkpoint.checksum,
    () => `loading the journal above checkpoint ${commit_min} with the anchor of op ${anchor.op}`,
  );
  assert(
    journal.header(commit_min)?.checksum === anchor.checksum,
    () => `the journal does not hold the checkpoint's anchor at op ${commit_min}`,
  );
  const top = commit_min + slot_count;
  const by_op = new Map<number, RecoveredPrepare[]>();
  for (const entry of entries) {
    const op = entry.header.op;
    if (op > top) continue;
    let list = by_op.get(op);
    if (list === undefined) by_op.set(op, (list = []));
    list.push(entry);
  }
  const chain_top = Math.max(Math.min(vh_max, top), commit_min);
  for (const [op, list] of by_op) {
    if (op <= chain_top) continue;
    const mine = list.filter((e) => e.header.view === state.log_view);
    if (mine.length === 1) journal.recovered(mine[0]!.header, !mine[0]!.faulty);
    else if (mine.length > 1) journal.markDamaged(op); // two prepares of one view: trust neither
  }
  const vouched = new Map<number, Header>();
  for (const h of state.view_headers) vouched.set(h.op, h);
  let expected: bigint | null = null;
  for (let op = chain_top; op >= 0 && op > commit_min - slot_count; op--) {
    const v = vouched.get(op);
    const want: bigint | null = op === commit_min ? anchor.checksum : (v?.checksum ?? expected);
    const list = by_op.get(op) ?? [];
    const chosen: RecoveredPrepare | null =
      want === null ? (list.length === 1 ? list[0]! : null) : (list.find((e) => e.header.checksum === want) ?? null);
    // An executed op shares its slot with the op a window later, which takes precedence.
    const slot_taken = op <= commit_min && journal.header(op + slot_count) !== null;
    if (chosen !== null && (op > commit_min || !chosen.faulty) && !slot_taken) {
      journal.recovered(chosen.header, !chosen.faulty);
      expected = chosen.header.parent;
    } else {
      // The chain goes on through a header known without its prepare: the checkpoint's anchor,
      // or one the log vouches for.
      expected = op === commit_min ? anchor.parent : (v?.parent ?? null);
    }
  }
}

/** The log a replica restarts with: its head op, the commit number it may keep, and the ops of
 * its window whose journal slot was found damaged (it says so: it will not vote them away). */
export interface Restart {
  op: number;
  commit_max: number;
  damaged: number[];
}

/**
 * Restarts from what storage recovered with an intact checkpoint: fills the journal (the
 * checkpoint's anchor, the damaged slots, the prepares of the log, the persisted suffix inside the
 * window, with entries that do not chain removed) and computes the head and commit number. The
 * replica takes its view, log_view and executed state from the superblock and checkpoint as they are.
 */
export function restartLog(journal: Journal, recovered: Recovered, checkpoint: CheckpointMeta): Restart {
  const state = recovered.state;
  assert(state !== null, "restarting from a blank data directory");
  const commit_min = state.checkpoint.op;
  assert(
    stateDigest(recovered.store, recovered.clients) === state.checkpoint.digest,
    () => `checkpoint at op ${state.checkpoint.op} does not match its digest`,
  );
  assert(
    checkpoint.anchor.op === state.checkpoint.op && checkpoint.anchor.checksum === state.checkpoint.checksum,
    "checkpoint anchor header does not match the checkpoint",
  );
  journal.setHeader(checkpoint.anchor);
  // RULE (damage is sticky): a slot whose record is unreadable held an op of the window this
  // replica may have acknowledged; it must not vote that op away until the slot is rewritten.
  for (const slot of recovered.damaged_slots) journal.markDamaged(windowOp(commit_min, slot, journal.slot_count));
  const damaged = recovered.damaged_slots.length > 0 ? journal.damagedOps(commit_min, commit_min + journal.slot_count) : [];
  const vh_max = vouchedMax(state);
  loadJournal(journal, recovered.journal, state, vh_max, checkpoint.anchor);
  let op = commit_min;
  for (let o = commit_min + 1; o <= commit_min + journal.slot_count; o++) {
    if (journal.header(o) !== null) op = o;
  }
  // Its log holds every op it learned committed; a number above it (written by a release that
  // took commit numbers from any frame) would execute ops no quorum may hold.
  const commit_max = Math.max(commit_min, Math.min(Math.max(state.commit_max, commit_min), op));
  // The persisted suffix may reach past the journal window (installed while far behind).
  op = Math.max(op, vh_max);
  applyViewHeaders(journal, state.view_headers, op, commit_min);
  // Entries below the head that do not chain are removed, so repair fetches the right ones.
  trimUnchained(journal, op, commit_min);
  assert(
    commit_min <= commit_max &&
      commit_max <= op &&
      (journal.header(commit_min)?.checksum ?? checkpoint.anchor.checksum) === checkpoint.anchor.checksum,
    () => `restarted with op ${op}, commit ${commit_max}, executed ${commit_min}`,
  );
  return { op, commit_max, damaged };
}
