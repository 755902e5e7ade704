/**
 * The new primary's decisions in a view change, as pure functions of the do_view_change messages
 * it holds (docs/PROTOCOL.md, view change): which log to take (the one with the highest
 * (log_view, op), which holds every committed op) and where that log's uncommitted suffix ends.
 * The replica gathers the messages, asks, and installs what is decided.
 */
import { assert } from "../util/assert.ts";
import type { Header, Message } from "../net/codec.ts";

export interface DoViewChange {
  log_view: number;
  op: number;
  commit: number;
  headers: Header[];
  /** Per header: whether the sender holds that prepare durably (present), holds only the
   * header (absent: it never had the prepare, so it may vote to discard it), or had it and found
   * it damaged (faulty: it must not vote to discard what it may have acknowledged). */
  presence: Uint8Array;
  /** Ops whose journal slot the sender found damaged (its record unreadable, so which prepare it
   * held is unknown), ascending: it may have acknowledged them, so it does not vote them away,
   * whether or not a header for them is in its list. */
  faulty_ops: number[];
  /** The checksum of the message it came in (absent for this replica's own). */
  checksum?: bigint;
}

/** What a new primary makes of the chosen log (decideSuffix): its new head and headers (gaps
 * filled where a sender holds the op intact), or wait for more do_view_change messages. */
export type SuffixDecision = { head: number; headers: Header[] } | "wait";

export const presence_absent = 0;
export const presence_present = 1;
export const presence_faulty = 2;

/**
 * Decides the uncommitted part of the chosen log, op by op from the lowest (TigerBeetle's
 * quorum_headers), and returns the op to cut the log at, null to keep all of it, or "wait":
 * - an op a quorum of senders never held (a nack quorum, as in Protocol-Aware Recovery) did not
 *   commit (had it, f+1 replicas would hold it durably and one of them would be in this quorum):
 *   the log is cut there, else an op whose only copy is on a replica that stays down would block
 *   the view forever. Faulty copies never count as "never held";
 * - an op some sender holds intact is kept: the new primary can repair it from there;
 * - otherwise it may have committed with its copies on replicas not heard from yet (or damaged):
 *   keeping it would install a head nobody can repair, cutting it could lose a committed op, so
 *   the new primary waits for more do_view_change messages.
 * The op just above the chosen log is judged too when a sender of the same log_view reports it
 * faulty: a damaged record may have cut that sender's head short of an op it acknowledged (ops
 * commit in order, so if that one did not commit, none above it did).
 */
export function decideSuffix(best: DoViewChange, dvcs: DoViewChange[], commit: number, quorum: number, commit_min: number): SuffixDecision {
  assert(dvcs.includes(best), "the chosen log is one of the do_view_change messages");
  assert(dvcs.length >= quorum, () => `deciding a view's log from ${dvcs.length} do_view_change messages, below a quorum of ${quorum}`);
  const above = best.op + 1;
  if (dvcs.some((dvc) => dvc.log_view === best.log_view && dvc.faulty_ops.includes(above))) {
    // Senders of older log views never acknowledged it in a view where it could commit.
    const nacks = dvcs.filter((dvc) => dvc.log_view < best.log_view || !dvc.faulty_ops.includes(above)).length;
    if (nacks < quorum) return "wait";
  }
  const log = new Map<number, Header>();
  for (const h of best.headers) log.set(h.op, h);
  const decided = (head: number): SuffixDecision => ({
    head,
    headers: [...log.values()].filter((h) => h.op <= head).sort((a, b) => a.op - b.op),
  });
  if (best.headers.length === 0) return decided(best.op);
  // A gap in the chosen log: a copy another sender of the same log_view holds intact and that
  // chains to the chosen log here fills it (within one view, logs agree).
  const fill = (op: number): Header | null => {
    const below = log.get(op - 1);
    const child = log.get(op + 1);
    for (const dvc of dvcs) {
      if (dvc.log_view !== best.log_view) continue;
      const j = dvc.headers.findIndex((h) => h.op === op && (child?.parent === h.checksum || below?.checksum === h.parent));
      if (j !== -1 && dvc.presence[j] === presence_present) {
        log.set(op, dvc.headers[j]!);
        return dvc.headers[j]!;
      }
    }
    return null;
  };
  // Gaps at or below the commit are filled first, from the lowest: a chosen log that a restarted
  // replica left with a run of gaps up to past the commit (only its newest prepare arrived) is
  // otherwise never chained to the copies above the commit that other senders hold intact, and
  // every new primary waits on it forever.
  for (let op = best.headers[0]!.op; op <= Math.min(commit, best.op); op++) {
    if (!log.has(op)) fill(op);
  }
  // Only ops inside the chosen log's suffix window are judged (below it nothing is known).
  for (let op = Math.max(commit + 1, best.headers[0]!.op); op <= best.op; op++) {
    const header = log.get(op) ?? fill(op);
    // Still a gap: the op is identified by its child's parent.
    const expected = header?.checksum ?? log.get(op + 1)?.parent ?? null;
    let nacks = 0;
    let present = false;
    for (const dvc of dvcs) {
      if (dvc.faulty_ops.includes(op)) continue;
      const j = dvc.headers.findIndex((h) => h.op === op);
      if (j === -1) {
        // No header here: it held no prepare at this op if its log covers the op.
        if (dvc.op < op || (dvc.headers.length > 0 && dvc.headers[0]!.op < op)) nacks += 1;
      } else if (dvc.presence[j] === presence_absent || (expected !== null && dvc.headers[j]!.checksum !== expected)) {
        // It holds another prepare at this op (or only the header): it never held this one.
        nacks += 1;
      } else if (dvc.presence[j] === presence_present && dvc.headers[j]!.checksum === expected) {
        present = true;
      }
    }
    if (nacks >= quorum) {
      // The new head must be a header this replica can name.
      const below = op - 1;
      if (below > commit_min && !log.has(below)) return "wait";
      return decided(below);
    }
    if (!present) return "wait";
  }
  return decided(best.op);
}

/**
 * RULE (a view keeps an uncommitted op only if some do_view_change holds a copy), checked apart
 * from decideSuffix so that a wrong decision stops the replica here: every op kept above the
 * commit is held intact by some sender, and an op just above the kept log that a sender of the
 * chosen log_view reports faulty is one a quorum says never committed.
 */
export function assertSuffixHeld(
  best: DoViewChange,
  dvcs: DoViewChange[],
  commit: number,
  decision: { head: number; headers: Header[] },
  quorum: number,
  who: () => string,
): void {
  const head = decision.head;
  for (const h of decision.headers) {
    if (h.op <= commit || h.op > head) continue;
    const held = dvcs.some((dvc) =>
      dvc.headers.some((x, i) => x.op === h.op && x.checksum === h.checksum && dvc.presence[i] === presence_present),
    );
    assert(held, () => `${who()} would keep op ${h.op}, which no do_view_change holds intact`);
  }
  const above = head + 1;
  if (head === best.op && dvcs.some((dvc) => dvc.log_view === best.log_view && dvc.faulty_ops.includes(above))) {
    const nacks = dvcs.filter((dvc) => dvc.log_view < best.log_view || !dvc.faulty_ops.includes(above)).length;
    assert(
      nacks >= quorum,
      () => `${who()} would end at op ${head} while op ${above} may have committed (reported faulty, ${nacks} nacks)`,
    );
  }
}

/** The log with the highest (log_view, op): it holds every committed op. */
export function chooseLog(dvcs: DoViewChange[]): DoViewChange {
  let best: DoViewChange | null = null;
  for (const dvc of dvcs) {
    if (best === null || dvc.log_view > best.log_view || (dvc.log_view === best.log_view && dvc.op > best.op)) best = dvc;
  }
  assert(best !== null, "no do_view_change to choose from");
  const chosen = best;
  // The chosen log is at least every other in (log_view, op): a lower one could miss a committed op.
  assert(
    dvcs.every((dvc) => dvc.log_view < chosen.log_view || (dvc.log_view === chosen.log_view && dvc.op <= chosen.op)),
    () => `chose log (${chosen.log_view}, ${chosen.op}) below another`,
  );
  return chosen;
}

/** A view change in progress: present exactly while status is view_change. */
export interface ViewChanging {
  /** Replicas known to want to leave the old view (start_view_change or do_view_change), this one
   * included. */
  svc_from: Set<number>;
  /** As the new view's primary: the do_view_change of each sender, this replica's own included. */
  dvc_from: Map<number, DoViewChange>;
  /** Whether this replica has built its do_view_change for this view (sent once, resent as is). */
  dvc_sent: boolean;
  /** The do_view_change sent to the new primary, resent as is: built from durable state when first
   * sent, it stays true, while one rebuilt later could count a prepare written since, not yet
   * durable, as never held. */
  dvc_message: Message | null;
}

export function newViewChange(replica: number): ViewChanging {
  return { svc_from: new Set([replica]), dvc_from: new Map(), dvc_sent: false, dvc_message: null };
}
