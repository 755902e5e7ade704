/**
 * What a replica asks its peers for to complete its log above what it executed (docs/PROTOCOL.md,
 * repair): prepares whose header it knows but whose body it lacks, lowest first (they unblock
 * execution), and for a run of unknown headers, the headers themselves, from the top of the lowest
 * run down (so each reply chains to a header already held). Pure: the replica sends.
 */
import { assert } from "../util/assert.ts";
import type { Journal } from "./journal.ts";

export interface RepairPlan {
  /** Prepares to request, by (op, checksum), in op order. */
  prepares: { op: number; checksum: bigint }[];
  /** Headers to request, [op_min, op_max] (op_max one above the run, so the reply chains). */
  headers: { op_min: number; op_max: number } | null;
}

export function planRepair(journal: Journal, commit_min: number, top: number, prepares_max: number, headers_max: number): RepairPlan {
  assert(prepares_max >= 1 && headers_max >= 1, "repair must be able to ask for something");
  assert(top <= commit_min + journal.slot_count, () => `repair up to op ${top}, beyond the journal window above ${commit_min}`);
  const prepares: { op: number; checksum: bigint }[] = [];
  let gap_top = -1;
  for (let op = commit_min + 1; op <= top; op++) {
    const h = journal.header(op);
    if (h === null) {
      // The prepare (which carries its header) may be gone everywhere while peers still hold the
      // header: ask for both.
      const above = journal.header(op + 1);
      if (above !== null && prepares.length < prepares_max) prepares.push({ op, checksum: above.parent });
      if (gap_top === -1) {
        let end = op;
        while (end < top && journal.header(end + 1) === null) end += 1;
        gap_top = end;
      }
    } else if (!journal.hasPrepare(op, h.checksum) && prepares.length < prepares_max) {
      prepares.push({ op, checksum: h.checksum });
    }
  }
  const headers = gap_top === -1 ? null : { op_min: Math.max(commit_min + 1, gap_top - headers_max + 1), op_max: gap_top + 1 };
  return { prepares, headers };
}
