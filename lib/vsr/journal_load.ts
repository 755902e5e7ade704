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
import type { RecoveredPrepare, VsrState } from "./storage.ts";

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
