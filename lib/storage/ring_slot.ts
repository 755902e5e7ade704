/**
 * Which copy of a header-ring slot recovery trusts, and what it writes back to each copy, as a
 * decision table (docs/STORAGE.md §5). Every slot holds its record twice; at recovery each copy
 * reads as one of:
 *
 *   valid       decodes, checksum and slot right
 *   blank       all zeros: never written
 *   torn        readable but does not decode (a torn or misdirected write, bit rot, or a record
 *               written as damaged earlier)
 *   unreadable  the read failed, and damage is persisted (the production rule)
 *   forgotten   the read failed, under the simulator's broken variant that forgets damage
 *               (FileStorage.persistsDamage returns false)
 *
 * With both copies valid, the one with the higher write sequence is newer (equal: copy A). The
 * slot is damaged when any copy is torn or unreadable: the damaged copy may have held a record
 * newer than the valid one (the write to the other copy lost), so which op the slot held last is
 * unknown. The valid copy's record is still used.
 *
 * Write-back repairs a copy a write missed (and, after a failed fsync, rewrites a record the kernel
 * may hold only in a page it marked clean) but never over damage beside a valid copy: the damage
 * must read back the same at the next open.
 */
import { assert } from "../util/assert.ts";

export const copy_states = ["valid", "blank", "torn", "unreadable", "forgotten"] as const;
export type CopyState = (typeof copy_states)[number];
/** Which copy is newer; "-" unless both copies are valid. */
export type Newer = "a" | "b" | "-";

/** What is written back to one copy: the trusted record, the copy's own bytes, the damaged
 * record (ring_record.ts), or zeros. */
export type WriteBack = "trusted" | "own" | "damaged_record" | "blank";

export interface SlotCase {
  label: string;
  /** The inputs this row matches: a copy state per copy, and which copy is newer. */
  a: readonly CopyState[];
  b: readonly CopyState[];
  newer: readonly Newer[];
  /** The copy whose record is used, or null: the slot holds no known record. */
  trust: "a" | "b" | null;
  damaged: boolean;
  write_a: WriteBack;
  write_b: WriteBack;
}

const lost: readonly CopyState[] = ["blank", "forgotten"];
const one = (newer: Newer): readonly Newer[] => [newer];

/** The table. Rows for copy B mirror those for copy A. */
export const slot_cases: readonly SlotCase[] = [
  {
    label: "both_valid_a_newer",
    a: ["valid"],
    b: ["valid"],
    newer: one("a"),
    trust: "a",
    damaged: false,
    write_a: "trusted",
    write_b: "trusted",
  },
  {
    label: "both_valid_b_newer",
    a: ["valid"],
    b: ["valid"],
    newer: one("b"),
    trust: "b",
    damaged: false,
    write_a: "trusted",
    write_b: "trusted",
  },
  {
    label: "a_valid_b_blank_repair",
    a: ["valid"],
    b: ["blank"],
    newer: one("-"),
    trust: "a",
    damaged: false,
    write_a: "trusted",
    write_b: "trusted",
  },
  {
    label: "b_valid_a_blank_repair",
    a: ["blank"],
    b: ["valid"],
    newer: one("-"),
    trust: "b",
    damaged: false,
    write_a: "trusted",
    write_b: "trusted",
  },
  {
    label: "a_valid_b_forgotten",
    a: ["valid"],
    b: ["forgotten"],
    newer: one("-"),
    trust: "a",
    damaged: false,
    write_a: "trusted",
    write_b: "blank",
  },
  {
    label: "b_valid_a_forgotten",
    a: ["forgotten"],
    b: ["valid"],
    newer: one("-"),
    trust: "b",
    damaged: false,
    write_a: "blank",
    write_b: "trusted",
  },
  { label: "a_valid_b_torn", a: ["valid"], b: ["torn"], newer: one("-"), trust: "a", damaged: true, write_a: "trusted", write_b: "own" },
  { label: "b_valid_a_torn", a: ["torn"], b: ["valid"], newer: one("-"), trust: "b", damaged: true, write_a: "own", write_b: "trusted" },
  {
    label: "a_valid_b_unreadable",
    a: ["valid"],
    b: ["unreadable"],
    newer: one("-"),
    trust: "a",
    damaged: true,
    write_a: "trusted",
    write_b: "damaged_record",
  },
  {
    label: "b_valid_a_unreadable",
    a: ["unreadable"],
    b: ["valid"],
    newer: one("-"),
    trust: "b",
    damaged: true,
    write_a: "damaged_record",
    write_b: "trusted",
  },
  { label: "never_written", a: lost, b: lost, newer: one("-"), trust: null, damaged: false, write_a: "blank", write_b: "blank" },
  { label: "both_torn", a: ["torn"], b: ["torn"], newer: one("-"), trust: null, damaged: true, write_a: "own", write_b: "own" },
  {
    label: "both_unreadable",
    a: ["unreadable"],
    b: ["unreadable"],
    newer: one("-"),
    trust: null,
    damaged: true,
    write_a: "damaged_record",
    write_b: "damaged_record",
  },
  {
    label: "a_torn_b_unreadable",
    a: ["torn"],
    b: ["unreadable"],
    newer: one("-"),
    trust: null,
    damaged: true,
    write_a: "own",
    write_b: "damaged_record",
  },
  {
    label: "b_torn_a_unreadable",
    a: ["unreadable"],
    b: ["torn"],
    newer: one("-"),
    trust: null,
    damaged: true,
    write_a: "damaged_record",
    write_b: "own",
  },
  // A blank copy beside damage is marked damaged too, so the next open sees no "never written".
  {
    label: "a_blank_b_torn",
    a: ["blank"],
    b: ["torn"],
    newer: one("-"),
    trust: null,
    damaged: true,
    write_a: "damaged_record",
    write_b: "own",
  },
  {
    label: "b_blank_a_torn",
    a: ["torn"],
    b: ["blank"],
    newer: one("-"),
    trust: null,
    damaged: true,
    write_a: "own",
    write_b: "damaged_record",
  },
  {
    label: "a_blank_b_unreadable",
    a: ["blank"],
    b: ["unreadable"],
    newer: one("-"),
    trust: null,
    damaged: true,
    write_a: "damaged_record",
    write_b: "damaged_record",
  },
  {
    label: "b_blank_a_unreadable",
    a: ["unreadable"],
    b: ["blank"],
    newer: one("-"),
    trust: null,
    damaged: true,
    write_a: "damaged_record",
    write_b: "damaged_record",
  },
  // Under the variant that forgets damage, an unreadable copy is written back as zeros.
  {
    label: "a_forgotten_b_torn",
    a: ["forgotten"],
    b: ["torn"],
    newer: one("-"),
    trust: null,
    damaged: true,
    write_a: "blank",
    write_b: "own",
  },
  {
    label: "b_forgotten_a_torn",
    a: ["torn"],
    b: ["forgotten"],
    newer: one("-"),
    trust: null,
    damaged: true,
    write_a: "own",
    write_b: "blank",
  },
];

/** Which copy is newer, as the table takes it. */
export function newerCopy(a: CopyState, b: CopyState, sequence_a: number, sequence_b: number): Newer {
  assert(Number.isSafeInteger(sequence_a) && Number.isSafeInteger(sequence_b), "newerCopy: sequences");
  if (a !== "valid" || b !== "valid") return "-";
  return sequence_b > sequence_a ? "b" : "a";
}

/** Whether the inputs can occur: "newer" only between two valid copies, and a ring either persists
 * damage (unreadable) or forgets it (forgotten), never both. */
export function legalInputs(a: CopyState, b: CopyState, newer: Newer): boolean {
  return (
    (newer === "-") === (a !== "valid" || b !== "valid") &&
    !(a === "unreadable" && b === "forgotten") &&
    !(a === "forgotten" && b === "unreadable")
  );
}

/** The rows that match: exactly one for every legal input (ring_slot.test.ts proves it). */
export function matchingCases(a: CopyState, b: CopyState, newer: Newer): SlotCase[] {
  assert(legalInputs(a, b, newer), () => `ring slot: copies ${a}/${b} with newer ${newer} cannot occur`);
  return slot_cases.filter((c) => c.a.includes(a) && c.b.includes(b) && c.newer.includes(newer));
}

export function classifySlot(a: CopyState, b: CopyState, newer: Newer): SlotCase {
  const cases = matchingCases(a, b, newer);
  assert(cases.length === 1, () => `ring slot: ${cases.length} cases match ${a}/${b}/${newer}`);
  const row = cases[0]!;
  assert(row.trust === null || (row.trust === "a" ? a : b) === "valid", () => `ring slot: ${row.label} trusts a copy that is not valid`);
  return row;
}
