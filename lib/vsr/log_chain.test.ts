import { describe, expect, test } from "bun:test";
import { AssertionError } from "../util/assert.ts";
import type { Header, Message } from "../net/codec.ts";
import { Journal } from "./journal.ts";
import { LogChain, applyViewHeaders, trimUnchained, verifiedUpTo, type LogChainHost } from "./log_chain.ts";
import { buildHeaders, type Envelope } from "./messages.ts";
import { commitKnown, prepareChain } from "./test_support.ts";

const slots = 16;
const log = prepareChain(12, { view: 1 });
/** Another view's ops 5..8, chained to op 4 of the log but not to its op 9. */
const fork = prepareChain(8, { view: 1, from: 5, parent: log[3]!.checksum, salt: 7 });
const at = (op: number): Header => log[op - 1]!;

/** A journal holding the header of every op in `ops` (written, so the prepare is readable). */
function journalWith(headers: Header[], written = true): Journal {
  const journal = new Journal(slots);
  for (const h of headers) {
    if (written) journal.recovered(h, true);
    else journal.setHeader(h);
  }
  return journal;
}

class FakeHost implements LogChainHost {
  readonly replica = 1;
  view = 1;
  readonly config = { replica_count: 3 };
  op = 0;
  commit_min = 0;
  commit_min_checksum = 0n;
  commit_max = 0;
  commit_max_checksum: bigint | null = null;
  commit_hint = 0;
  journal_max = 100;
  readonly sync_targets: number[] = [];
  readonly dropped: string[] = [];
  constructor(readonly journal: Journal) {}
  opJournalMax(): number {
    return this.journal_max;
  }
  commitKnown(): number {
    return commitKnown(this);
  }
  readonly state_sync = {
    targetFrom: (h: Header): void => {
      this.sync_targets.push(h.op);
    },
  };
  drop(_message: Message, why: string): void {
    this.dropped.push(why);
  }
}

/** A host whose log holds ops 1..op of `log`, executed up to commit_min. */
function hostAt(op: number, commit_min: number, headers: Header[] = log.slice(0, op)): FakeHost {
  const host = new FakeHost(journalWith(headers));
  host.op = op;
  host.commit_min = commit_min;
  host.commit_min_checksum = commit_min === 0 ? 0n : at(commit_min).checksum;
  host.commit_max = commit_min;
  return host;
}

function headersFrom(replica: number, view: number, canonical: boolean, headers: Header[]): Message {
  const from: Envelope = { cluster: 1n, replica, replica_count: 3, view, incarnation: 1 };
  return buildHeaders(from, { op: headers[headers.length - 1]!.op, commit_max: 0, canonical, headers });
}

describe("verifiedUpTo", () => {
  test("every op up to the commit, present and chained to what was executed", () => {
    const journal = journalWith(log.slice(0, 8));
    const numbers = { op: 8, commit_min: 2, commit_min_checksum: at(2).checksum, commit_max: 6, commit_max_checksum: null };
    expect(verifiedUpTo(journal, numbers)).toBe(6);
  });

  test("stops below an op whose prepare is missing", () => {
    const journal = journalWith(log.slice(0, 8));
    journal.remove(5);
    journal.setHeader(at(5)); // the header known, the prepare not
    const numbers = { op: 8, commit_min: 2, commit_min_checksum: at(2).checksum, commit_max: 8, commit_max_checksum: null };
    expect(verifiedUpTo(journal, numbers)).toBe(4);
  });

  test("a break in the chain below the head verifies nothing", () => {
    const journal = journalWith([...log.slice(0, 4), fork[0]!, ...log.slice(5, 8)]);
    const numbers = { op: 8, commit_min: 2, commit_min_checksum: at(2).checksum, commit_max: 8, commit_max_checksum: null };
    expect(verifiedUpTo(journal, numbers)).toBe(2);
  });

  test("the primary's commit checksum anchors the walk below an unchained head", () => {
    // Op 8 is another view's, unchained to op 7: the walk starts at commit_max, whose checksum the primary sent.
    const journal = journalWith([...log.slice(0, 7), fork[3]!]);
    const numbers = { op: 8, commit_min: 2, commit_min_checksum: at(2).checksum, commit_max: 6, commit_max_checksum: at(6).checksum };
    expect(verifiedUpTo(journal, numbers)).toBe(6);
    expect(verifiedUpTo(journal, { ...numbers, commit_max_checksum: null })).toBe(2);
  });

  test("a log that does not chain to what was executed verifies nothing", () => {
    const journal = journalWith(log.slice(0, 6));
    const numbers = { op: 6, commit_min: 2, commit_min_checksum: 99n, commit_max: 6, commit_max_checksum: null };
    expect(verifiedUpTo(journal, numbers)).toBe(2);
  });
});

describe("trimUnchained and applyViewHeaders", () => {
  test("entries that do not chain to the one above are removed, walking down from the head", () => {
    const journal = journalWith([...log.slice(0, 4), fork[0]!, fork[1]!, ...log.slice(6, 8)]);
    trimUnchained(journal, 8, 2);
    expect(journal.header(8)?.checksum).toBe(at(8).checksum);
    expect(journal.header(7)?.checksum).toBe(at(7).checksum);
    expect(journal.header(6)).toBeNull(); // fork's op 6 does not chain to op 7
    // Below a gap nothing is known to be canonical: fork's op 5 stays until a header above it is known.
    expect(journal.header(5)?.checksum).toBe(fork[0]!.checksum);
    expect(journal.header(3)?.checksum).toBe(at(3).checksum);
  });

  test("nothing at or below what was executed is removed", () => {
    const other = prepareChain(2, { view: 1, salt: 3 })[1]!; // another op 2, unchained to op 3
    const journal = journalWith([at(1), other, at(3)]);
    trimUnchained(journal, 3, 2);
    expect(journal.header(2)?.checksum).toBe(other.checksum);
  });

  test("a head below what was executed is a bug", () => {
    expect(() => trimUnchained(new Journal(slots), 1, 2)).toThrow(AssertionError);
  });

  test("only suffix headers inside the window and at or below the head go into the journal", () => {
    const long = prepareChain(40, { view: 2 });
    const journal = new Journal(slots);
    applyViewHeaders(journal, long, 30, 10);
    expect(journal.header(10)).toBeNull(); // executed
    expect(journal.header(11)?.checksum).toBe(long[10]!.checksum);
    expect(journal.header(26)?.checksum).toBe(long[25]!.checksum); // 10 + slots
    expect(journal.header(27)).toBeNull(); // beyond the window
  });
});

describe("LogChain", () => {
  test("installLog replaces the log above what was executed and trims what does not chain", () => {
    const host = hostAt(8, 2, [...log.slice(0, 4), fork[0]!, fork[1]!, fork[2]!, fork[3]!]);
    const chain = new LogChain(host);
    chain.installLog(log.slice(4, 6), 6);
    expect(host.op).toBe(6);
    expect(host.journal.header(8)).toBeNull();
    expect(host.journal.header(7)).toBeNull();
    expect(host.journal.header(6)?.checksum).toBe(at(6).checksum);
    expect(host.journal.header(5)?.checksum).toBe(at(5).checksum);
    expect(chain.suffixHeaders().map((h) => h.op)).toEqual([1, 2, 3, 4, 5, 6]);
    chain.invariants();
  });

  test("installLog refuses a log that diverges at the op it executed", () => {
    const host = hostAt(4, 4);
    const chain = new LogChain(host);
    expect(() => chain.installLog([fork[0]!], 5)).not.toThrow(); // op 5 is above what was executed
    const other = prepareChain(4, { view: 1, salt: 3 });
    expect(() => chain.installLog(other.slice(3), 4)).toThrow(/diverges/);
  });

  test("installLog refuses headers out of order or above the head", () => {
    const chain = new LogChain(hostAt(2, 2));
    expect(() => chain.installLog([at(4), at(3)], 4)).toThrow(/ascending/);
    expect(() => chain.installLog([at(3), at(4)], 3)).toThrow(/above the new head/);
  });

  test("the suffix of a replica far behind is the persisted one, not its window", () => {
    const long = prepareChain(40, { view: 2 });
    const host = hostAt(2, 2);
    const chain = new LogChain(host);
    chain.installLog(long.slice(29, 40), 40); // ops 30..40, beyond the window above op 2
    expect(host.op).toBe(40);
    expect(host.journal.header(40)).toBeNull();
    expect(chain.suffixHeaders().map((h) => h.op)).toEqual(long.slice(29, 40).map((h) => h.op));
    chain.vouched(long.slice(29, 35));
    expect(() => chain.suffixHeaders()).toThrow(/no header for its head/);
  });

  test("invariants() checks each installed suffix once, as the full pass does, and the caller cannot change it in between", () => {
    const long = prepareChain(80, { view: 2 });
    const host = hostAt(2, 2);
    const chain = new LogChain(host);
    const given = long.slice(29, 40);
    chain.installLog(given, 40);
    chain.invariants();
    chain.suffixInvariants();
    // The caller's array is not the suffix: changing it changes nothing the chain holds.
    given.reverse();
    expect(chain.suffixHeaders().map((h) => h.op)).toEqual(long.slice(29, 40).map((h) => h.op));
    chain.invariants();
    chain.suffixInvariants();
    // Persisted state may carry more than a message does: both checks refuse it, the remembered one
    // at the first check after it is installed, and again every time.
    chain.vouched(long.slice(0, 65));
    expect(() => chain.invariants()).toThrow(/65 view headers/);
    expect(() => chain.invariants()).toThrow(/65 view headers/);
    expect(() => chain.suffixInvariants()).toThrow(/65 view headers/);
    chain.vouched(long.slice(1, 65));
    chain.invariants();
    chain.suffixInvariants();
  });

  test("wanted: a prepare whose header is held without it, or the parent of a held header", () => {
    const host = hostAt(8, 2);
    host.journal.remove(6);
    host.journal.remove(5);
    host.journal.setHeader(at(5)); // the header known, the prepare not
    const chain = new LogChain(host);
    expect(chain.wanted(at(5))).toBe(true);
    expect(chain.wanted(at(6))).toBe(true); // the parent of op 7
    expect(chain.wanted(fork[1]!)).toBe(false); // op 6 of another chain
    expect(chain.wanted(at(3))).toBe(false); // held
    expect(chain.wanted(at(2))).toBe(false); // executed
    expect(chain.wanted(at(9))).toBe(false); // above the head
    host.journal_max = 5;
    expect(chain.wanted(at(6))).toBe(false); // beyond what the journal may hold
  });

  test("canonical headers from this view's primary extend the head and name sync targets", () => {
    const host = hostAt(4, 2);
    host.commit_hint = 6;
    const chain = new LogChain(host);
    // View 1's primary is replica 1 of 3.
    expect(chain.acceptHeaders(headersFrom(1, 1, true, log.slice(4, 8)))).toBe(true);
    expect(host.op).toBe(8);
    for (let op = 5; op <= 8; op++) expect(host.journal.header(op)?.checksum).toBe(at(op).checksum);
    expect(host.sync_targets).toEqual([5, 6]);
  });

  test("canonical headers replace a stale entry that no longer chains", () => {
    const host = hostAt(6, 2, [...log.slice(0, 4), fork[0]!, fork[1]!]);
    const chain = new LogChain(host);
    expect(chain.acceptHeaders(headersFrom(1, 1, true, log.slice(6, 8)))).toBe(true);
    expect(host.op).toBe(8);
    expect(host.journal.header(6)).toBeNull(); // fork's op 6 does not chain to op 7
  });

  test("from anyone else a header is taken only where it chains to one held, never above the head", () => {
    const host = hostAt(8, 2);
    host.journal.remove(6);
    host.journal.remove(5);
    const chain = new LogChain(host);
    // Replica 2 is not view 1's primary: not canonical whatever it says.
    expect(chain.acceptHeaders(headersFrom(2, 1, true, [fork[0]!]))).toBe(true);
    expect(host.journal.header(5)).toBeNull(); // op 6 is unknown: nothing to chain to
    const above = prepareChain(9, { from: 9, salt: 5 })[0]!;
    // Walked from the top: op 6 chains to op 7, then op 5 to the op 6 just taken.
    expect(chain.acceptHeaders(headersFrom(2, 1, true, [at(5), at(6), above]))).toBe(true);
    expect(host.journal.header(6)?.checksum).toBe(at(6).checksum);
    expect(host.journal.header(5)?.checksum).toBe(at(5).checksum);
    expect(host.journal.header(9)).toBeNull();
    expect(host.op).toBe(8);
    expect(host.sync_targets).toEqual([]);
  });

  test("a malformed headers message is dropped", () => {
    const host = hostAt(4, 2);
    const message = headersFrom(1, 1, true, log.slice(4, 6));
    const chain = new LogChain(host);
    expect(chain.acceptHeaders({ header: message.header, body: message.body.subarray(1) })).toBe(false);
    expect(host.dropped.length).toBe(1);
    expect(host.op).toBe(4);
  });
});
