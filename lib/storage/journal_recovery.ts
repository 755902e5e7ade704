/**
 * Recovery of the journal (docs/STORAGE.md §11): from the header ring's trusted records and a scan
 * of the segments, every durable prepare of the window after the checkpoint, which are faulty
 * (recorded, prepare damaged: repair from peers), and which slots stay damaged.
 */
import { assert } from "../util/assert.ts";
import { windowOp } from "../vsr/window.ts";
import { vouchedMax, type RecoveredPrepare, type VsrState } from "../vsr/storage.ts";
import type { Fd, FileSystem } from "./fs.ts";
import type { HeaderRing } from "./header_ring.ts";
import type { PrepareLocation } from "./ring_record.ts";
import type { SegmentFiles } from "./segments.ts";
import { findUnrecorded } from "./segment_scan.ts";

export interface JournalRecoveryContext {
  fs: FileSystem;
  cluster: bigint;
  ring: HeaderRing;
  segments: SegmentFiles;
  datasync: (fd: Fd) => void;
  /** The sequence of the durable superblock, which restored records carry. */
  superblock_sequence: number;
  /** The rules a broken variant may switch off (FileStorage.persistsDamage, restoresRecords). */
  persists_damage: boolean;
  restores_records: boolean;
}

export interface RecoveredJournal {
  journal: RecoveredPrepare[];
  damaged_slots: number[];
  /** Every intact copy by op, for reads after recovery. */
  prepares: Map<number, PrepareLocation[]>;
}

/**
 * Reads the header ring and finds every durable prepare of the window after the checkpoint,
 * (C, C + slots]. A record names where its prepare is; but a record write can be lost or land
 * elsewhere (a misdirected write) and leave an older record looking current, and a record can be
 * torn or unreadable. Segments are synced before the ring, so every prepare whose record was
 * being written is durable: the regions of recent segments that no record accounts for are
 * scanned for prepare headers (segment_scan.ts). Every copy found is reported, several per op if
 * there are (the replica picks the one its log vouches for, lib/vsr/journal_load.ts restartLog).
 *
 * A slot whose record does not decode is damaged: restored from the segments when exactly one
 * prepare for its op exists and the scan saw nothing that might be another (TigerBeetle's
 * "fix"), else reported, and kept damaged on disk. If part of the segments could not be read, a
 * lost record cannot be ruled out: every op of the window with no copy found is damaged too.
 */
export function recoverJournal(
  ctx: JournalRecoveryContext,
  checkpoint_op: number,
  restorable: (location: PrepareLocation) => boolean,
): RecoveredJournal {
  const { ring, segments } = ctx;
  const slot_count = ring.slot_count;
  assert(Number.isSafeInteger(checkpoint_op) && checkpoint_op >= 0, "recoverJournal: checkpoint op");
  const unreadable = new Set<number>();
  const contents = ring.recover(ring.read(unreadable), unreadable, ctx.persists_damage, ctx.datasync);
  const records = contents.records.map((r) => r.location);
  const damaged = contents.damaged;
  for (const r of records) segments.noteOp(r.segment, r.op);
  const window_min = checkpoint_op + 1;
  const window_max = checkpoint_op + slot_count;
  const found: RecoveredPrepare[] = [];
  const intact = new Map<number, PrepareLocation[]>();
  const faulty = new Map<number, PrepareLocation>();
  for (const location of records) {
    // Ops at or below the checkpoint are not replayed, but they still serve peers' repairs.
    if (location.op + slot_count <= checkpoint_op || location.op > window_max) continue;
    if (segments.headerAt(location)) addCandidate(intact, location);
    else faulty.set(location.op, location);
  }
  const scan = ctx.persists_damage
    ? findUnrecorded(ctx.fs, segments.segments, ctx.cluster, slot_count, records, window_min, window_max)
    : { found: [], suspects: new Set<number>(), clean: true };
  // A copy found by the scan is reported only if it is whole: its header may have reached the
  // disk in a write the crash cut short. But any copy with a valid header is another candidate
  // when deciding whether a damaged record can be restored from a unique copy.
  const headers_found = new Map<number, PrepareLocation[]>();
  for (const location of scan.found) {
    addCandidate(headers_found, location);
    if (segments.readPrepareAt(location, ctx.cluster) === null) continue;
    addCandidate(intact, location);
    assert(segments.segments.has(location.segment), "recoverJournal: scanned a segment that is not open");
    segments.noteOp(location.segment, location.op); // so collection keeps it
  }
  // A record whose prepare was not where it said may have found it elsewhere.
  for (const [op, location] of faulty) {
    if (intact.get(op)?.some((c) => c.checksum === location.checksum)) faulty.delete(op);
  }
  const restored: PrepareLocation[] = [];
  // A whole copy found by the scan whose slot has no record of its op (blank, or an older op's)
  // gets one: otherwise, once the checkpoint passes it, no later open would find it (the scan
  // looks only at the window after the checkpoint) and it could no longer serve a peer's repair.
  const recorded = new Map<number, number>(); // slot -> op of its valid record
  for (const r of records) recorded.set(r.op % slot_count, r.op);
  for (const [op, candidates] of intact) {
    const slot = op % slot_count;
    const at = recorded.get(slot);
    if (candidates.length !== 1 || damaged.has(slot) || (at !== undefined && at >= op)) continue;
    if ((headers_found.get(op) ?? []).some((c) => c.checksum !== candidates[0]!.checksum)) continue;
    restored.push(candidates[0]!);
  }
  for (const slot of damaged) {
    const op = windowOp(checkpoint_op, slot, slot_count);
    const candidates = intact.get(op) ?? [];
    const unique = candidates.length === 1 && (headers_found.get(op) ?? []).every((c) => c.checksum === candidates[0]!.checksum);
    if (scan.clean && !scan.suspects.has(op) && unique && restorable(candidates[0]!) && ctx.restores_records) restored.push(candidates[0]!);
  }
  if (restored.length > 0) {
    // The fix is persisted: the next open finds a valid record there.
    ring.write(
      restored.sort((a, b) => a.op - b.op),
      ctx.superblock_sequence,
    );
    ctx.datasync(ring.fd);
    for (const location of restored) {
      damaged.delete(location.op % slot_count);
      segments.noteOp(location.segment, location.op);
    }
  }
  // Damage means "which prepare this slot held is unknown"; the replica settles it where its log
  // picks a copy that is intact (lib/vsr/journal_load.ts, restartLog and loadJournal). A region the
  // scan could not read may hide the only copy of an op whose record was lost: every op of the
  // window without a copy is then damaged. A damaged header or body met by the scan only stops
  // restores: most are writes a crash cut short, never acknowledged, and counting them as damage
  // would stall view changes after any power loss. (A record lost from both ring copies whose
  // prepare is also damaged is three faults on one op, beyond what this detects.)
  if (!scan.clean) for (let op = window_min; op <= window_max; op++) if (!intact.has(op)) damaged.add(op % slot_count);
  for (const locations of intact.values()) for (const location of locations) found.push({ header: location.header, faulty: false });
  for (const location of faulty.values()) {
    assert(
      !(intact.get(location.op) ?? []).some((c) => c.checksum === location.checksum),
      "recoverJournal: a prepare both intact and faulty",
    );
    found.push({ header: location.header, faulty: true });
  }
  return { journal: found, damaged_slots: [...damaged].sort((a, b) => a - b), prepares: intact };
}

function addCandidate(candidates: Map<number, PrepareLocation[]>, location: PrepareLocation): void {
  let list = candidates.get(location.op);
  if (list === undefined) candidates.set(location.op, (list = []));
  if (!list.some((c) => c.checksum === location.checksum)) list.push(location);
  assert(list.length > 0, "addCandidate: empty list");
}

/**
 * Whether a copy found on disk may restore a damaged ring slot: only one the replica's log could
 * hold, by the rule it loads its journal with (lib/vsr/journal_load.ts loadJournal): within the suffix
 * the superblock vouches for, the vouched prepare; above it, a prepare of the log_view. The unique
 * intact copy of an op may be a stale one from an earlier view (this replica once prepared that op
 * as a primary that was then deposed) while the prepare the slot really held is damaged too:
 * restoring the stale one would make the slot look settled, and the op it acknowledged absent.
 */
export function restorable(state: VsrState): (location: PrepareLocation) => boolean {
  const vouched = new Map<number, bigint>();
  for (const h of state.view_headers) vouched.set(h.op, h.checksum);
  const vouched_max = vouchedMax(state);
  assert(vouched.size === state.view_headers.length, "restorable: view headers repeat an op");
  return (location) => {
    if (location.op > vouched_max) return location.header.view === state.log_view;
    const want = vouched.get(location.op);
    return want === undefined || want === location.checksum;
  };
}
