/**
 * The journal window: a replica that restarts from a checkpoint at op C reloads the ops
 * (C, C + slot_count], one per journal slot. These helpers name which op of that window a slot
 * stands for, so a damaged slot (whose record cannot say) is pinned to the one op it may have held.
 */
import { assert } from "../util/assert.ts";

/** The op of the window after checkpoint_op that maps to this slot. */
export function windowOp(checkpoint_op: number, slot: number, slot_count: number): number {
  assert(slot >= 0 && slot < slot_count, () => `slot ${slot} out of range for ${slot_count} slots`);
  assert(Number.isSafeInteger(checkpoint_op) && checkpoint_op >= 0, () => `checkpoint op ${checkpoint_op}`);
  const first = checkpoint_op + 1;
  const op = first + ((((slot - first) % slot_count) + slot_count) % slot_count);
  assert(
    op > checkpoint_op && op <= checkpoint_op + slot_count && op % slot_count === slot,
    () => `window op ${op} for slot ${slot} after checkpoint ${checkpoint_op}`,
  );
  return op;
}

/** A short description of a sorted list of ops for log lines: "5, 7..9". */
export function describeOps(ops: number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < ops.length && parts.length < 8) {
    let j = i;
    while (j + 1 < ops.length && ops[j + 1] === ops[j]! + 1) j += 1;
    parts.push(i === j ? `${ops[i]}` : `${ops[i]}..${ops[j]}`);
    i = j + 1;
  }
  if (i < ops.length) parts.push(`and ${ops.length - i} more`);
  return parts.join(", ");
}
