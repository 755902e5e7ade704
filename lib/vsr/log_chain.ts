/**
 * The shape of a replica's log: which of its entries the hash chain vouches for, the window the
 * journal holds above the last executed op, and the suffix log_view vouches for (docs/DESIGN.md
 * §3–§4, RULE: the hash chain decides which entries to trust). The functions work on a Journal
 * and plain numbers, so restart (journal_load.ts) uses them before a replica has any state; the
 * LogChain part applies them to a running replica and owns the persisted suffix.
 *
 * Calls between parts, through the host: a canonical header at or below the commit can name a
 * checkpoint to fetch (host.state_sync.targetFrom); a finished sync is installed by the replica,
 * which then re-applies the suffix and trims here (installSynced).
 */
import { assert } from "../util/assert.ts";
import type { Header, Message } from "../net/codec.ts";
import { view_headers_max } from "../constants.ts";
import type { Journal } from "./journal.ts";
import { readHeaders } from "./messages.ts";
import { primaryIndex } from "./env.ts";

/** The numbers a hash-chain check reads: the head, what was executed (and the checksum of its
 * prepare), and what is known committed (with the checksum the primary sent for it, if any). */
export interface ChainNumbers {
  readonly op: number;
  readonly commit_min: number;
  readonly commit_min_checksum: bigint;
  readonly commit_max: number;
  readonly commit_max_checksum: bigint | null;
}

/** The highest op up to which this replica's log is verified: every op from commit_min+1 up to
 * it is present and chains to an anchor known to be canonical (the head of the current view's
 * log, or the commit checksum the primary sent). */
export function verifiedUpTo(journal: Journal, at: ChainNumbers): number {
  assert(at.commit_min <= at.op, () => `executed ${at.commit_min} above the head op ${at.op}`);
  const limit = Math.min(at.commit_max, at.op);
  // Walk down from the head (canonical in normal status), then check the link to commit_min.
  let anchor_ok = false;
  let child: Header | null = null;
  let top = at.op;
  if (at.commit_max_checksum !== null && at.commit_max < at.op) {
    const h = journal.header(at.commit_max);
    if (h !== null && h.checksum === at.commit_max_checksum) top = at.commit_max;
  }
  for (let op = top; op > at.commit_min; op--) {
    const h = journal.header(op);
    if (h === null || (child !== null && child.parent !== h.checksum)) return at.commit_min;
    child = h;
  }
  anchor_ok = child === null || child.parent === at.commit_min_checksum;
  if (!anchor_ok) return at.commit_min;
  let up_to = at.commit_min;
  for (let op = at.commit_min + 1; op <= limit; op++) {
    const h = journal.header(op)!;
    if (!journal.hasPrepare(op, h.checksum)) break;
    up_to = op;
  }
  assert(
    up_to >= at.commit_min && up_to <= Math.max(at.commit_min, limit),
    () => `verified up to ${up_to} outside ${at.commit_min}..${limit}`,
  );
  return up_to;
}

/** Removes entries that do not chain to the entry above them (left over from an older view),
 * walking down from the head, so repair fetches the canonical ones. */
export function trimUnchained(journal: Journal, op: number, commit_min: number): void {
  assert(op >= commit_min, () => `head op ${op} below what it executed (${commit_min})`);
  let child = journal.header(op);
  for (let o = op - 1; o > commit_min && o > op - journal.slot_count; o--) {
    const h = journal.header(o);
    if (child !== null && h !== null && h.checksum !== child.parent) {
      journal.remove(o);
      child = null;
      continue;
    }
    child = h;
  }
}

/** Puts the suffix headers that fall inside the journal window into the journal. */
export function applyViewHeaders(journal: Journal, view_headers: readonly Header[], op: number, commit_min: number): void {
  assert(op >= commit_min, () => `head op ${op} below what it executed (${commit_min})`);
  for (const h of view_headers) {
    if (h.op > commit_min && h.op <= commit_min + journal.slot_count && h.op <= op) journal.setHeader(h);
  }
}

/** Whether a list of headers is ascending by op, as a suffix must be. */
function ascending(headers: readonly Header[]): boolean {
  // A plain loop: Replica.invariants() calls this after every simulator step.
  for (let i = 1; i < headers.length; i++) if (headers[i]!.op <= headers[i - 1]!.op) return false;
  return true;
}

/** What a LogChain reads of its replica, and the head op it moves. */
export interface LogChainHost extends ChainNumbers {
  readonly replica: number;
  readonly view: number;
  readonly config: { readonly replica_count: number };
  readonly journal: Journal;
  op: number;
  /** The highest op the journal may be written at (a prepare above it would destroy one needed). */
  opJournalMax(): number;
  /** The highest commit number this replica has heard of (believed only to choose a sync target). */
  commitKnown(): number;
  /** Checkpoints and state sync (state_sync_driver.ts): a committed header names a checkpoint to fetch. */
  readonly state_sync: { targetFrom(h: Header): void };
  drop(message: Message, why: string): void;
}

export class LogChain {
  /**
   * The log suffix log_view vouches for, as last installed or persisted. The journal window
   * (journal_slot_count ops above the last executed op) holds it normally; a replica far behind
   * its view's log cannot hold its head until it state-syncs, and then this is its log.
   * A copy of the caller's array (no one else holds it), replaced whole (vouched, installLog) and
   * never changed in place (readonly; not frozen: JSC iterates a frozen array about ten times
   * slower).
   */
  private view_headers: readonly Header[] = [];
  /** The suffix invariants() last checked in full: the same array cannot have changed since. */
  private view_headers_checked: readonly Header[] | null = null;

  constructor(private readonly host: LogChainHost) {}

  verifiedUpTo(): number {
    return verifiedUpTo(this.host.journal, this.host);
  }

  trimUnchained(): void {
    trimUnchained(this.host.journal, this.host.op, this.host.commit_min);
  }

  applyViewHeaders(): void {
    applyViewHeaders(this.host.journal, this.view_headers, this.host.op, this.host.commit_min);
  }

  /** The suffix just persisted (or read back at open) is the one log_view vouches for. */
  vouched(headers: Header[]): void {
    assert(ascending(headers), () => `replica ${this.host.replica}: a persisted suffix whose headers are not ascending`);
    this.view_headers = [...headers];
  }

  /** The top of the log (up to view_headers_max headers ending at op), for do_view_change,
   * start_view and the superblock. */
  suffixHeaders(): Header[] {
    const { journal, op } = this.host;
    if (journal.header(op) !== null) {
      const headers = journal.range(op - view_headers_max + 1, op);
      assert(
        headers.length > 0 && headers[headers.length - 1]!.op === op,
        () => `replica ${this.host.replica}: its log suffix does not end at its head op ${op}`,
      );
      return headers;
    }
    const persisted = this.view_headers.filter((h) => h.op <= op);
    assert(
      persisted.length > 0 && persisted[persisted.length - 1]!.op === op,
      () => `replica ${this.host.replica}: no header for its head op ${op}`,
    );
    return persisted;
  }

  /** Replaces this replica's log above its executed ops with the given suffix (ascending). */
  installLog(headers: Header[], op: number): void {
    const host = this.host;
    assert(ascending(headers), () => `replica ${host.replica}: installing a log whose headers are not ascending`);
    assert(
      headers.length === 0 || headers[headers.length - 1]!.op <= op,
      () => `replica ${host.replica}: installing headers above the new head op ${op}`,
    );
    for (let o = Math.max(op, host.op); o > op && o > host.commit_min; o--) host.journal.remove(o);
    this.view_headers = [...headers];
    for (const h of headers) {
      if (h.op === host.commit_min) {
        assert(
          h.checksum === host.commit_min_checksum,
          () => `replica ${host.replica}: the new log diverges at op ${h.op}, which this replica executed`,
        );
      }
    }
    host.op = Math.max(op, host.commit_min);
    this.applyViewHeaders();
    this.trimUnchained();
    assert(
      host.op >= host.commit_min && host.commit_min <= host.commit_max,
      () => `replica ${host.replica}: installed head op ${host.op} below what it executed (${host.commit_min})`,
    );
    const executed = host.journal.header(host.commit_min);
    assert(
      executed === null || executed.checksum === host.commit_min_checksum,
      () => `replica ${host.replica}: the installed log replaced the op it executed last`,
    );
  }

  /** Whether a prepare is one this replica is missing: its header is known (from a start_view,
   * or as the parent of a known header) but the prepare itself is not on disk. */
  wanted(h: Header): boolean {
    const { journal, op, commit_min } = this.host;
    if (h.op > op || h.op <= commit_min || h.op > this.host.opJournalMax()) return false;
    const known = journal.header(h.op);
    if (known !== null && known.checksum === h.checksum) return !journal.hasPrepare(h.op, h.checksum);
    const child = journal.header(h.op + 1);
    assert(child === null || child.op === h.op + 1, () => `replica ${this.host.replica}: journal op ${h.op + 1} holds op ${child!.op}`);
    return child !== null && child.parent === h.checksum;
  }

  /** Takes the headers a peer sent: canonical ones from the primary of this view, and from anyone
   * else only those that chain to a header held. False if the message was dropped. */
  acceptHeaders(message: Message): boolean {
    const host = this.host;
    const h = message.header;
    const received = readHeaders(message);
    if (typeof received === "string") {
      host.drop(message, received);
      return false;
    }
    const headers = received.headers;
    const journal = host.journal;
    const canonical = received.canonical && h.view === host.view && h.replica === primaryIndex(host.view, host.config.replica_count);
    if (canonical) {
      for (const header of headers) {
        if (header.op <= host.commitKnown()) host.state_sync.targetFrom(header);
        if (header.op <= host.commit_min || header.op > host.commit_min + journal.slot_count) continue;
        if (header.op > host.op) {
          for (let op = host.op + 1; op < header.op; op++) journal.remove(op);
          host.op = header.op;
        }
        journal.setHeader(header);
      }
      this.trimUnchained();
    } else {
      // From anyone else, a header is trusted only where it chains to one this replica holds.
      for (let i = headers.length - 1; i >= 0; i--) {
        const header = headers[i]!;
        if (header.op <= host.commit_min || header.op >= host.op) continue;
        const child = journal.header(header.op + 1);
        if (child !== null && child.parent === header.checksum) journal.setHeader(header);
      }
    }
    assert(host.op >= host.commit_min, () => `replica ${host.replica}: head op ${host.op} below what it executed after headers`);
    return true;
  }

  /** The persisted suffix is a suffix: ascending, and no longer than a message carries. Replica
   * invariants() run after every simulator step, and the pass over up to view_headers_max headers
   * was about a twentieth of the simulator's time: a suffix is never changed in place, only
   * replaced whole, so each one is checked in full once, at the first check after it is installed. */
  invariants(): void {
    if (this.view_headers === this.view_headers_checked) return;
    this.suffixInvariants();
    this.view_headers_checked = this.view_headers;
  }

  /** invariants() without remembering what it checked: the whole pass, every time (tests). */
  suffixInvariants(): void {
    const ok_order = ascending(this.view_headers);
    if (ok_order && this.view_headers.length <= view_headers_max) return; // the message closures only on failure
    assert(ok_order, () => `replica ${this.host.replica}: view headers not ascending`);
    assert(
      this.view_headers.length <= view_headers_max,
      () => `replica ${this.host.replica}: ${this.view_headers.length} view headers (at most ${view_headers_max})`,
    );
  }
}
