import { describe, expect, test } from "bun:test";
import type { Header } from "../net/codec.ts";
import { prepareChain } from "./test_support.ts";
import { Journal } from "./journal.ts";
import { loadJournal } from "./journal_load.ts";
import type { RecoveredPrepare, VsrState } from "./storage.ts";

const slots = 16;

/** A chain of prepare headers for ops from..n in `view`, chained from `parent`. */
const chain = (n: number, view: number, parent = 0n, from = 1): Header[] => prepareChain(n, { view, parent, from });

function state(anchor: Header, log_view: number, view_headers: Header[] = []): VsrState {
  return {
    incarnation: 1,
    view: log_view,
    log_view,
    commit_max: anchor.op,
    view_headers,
    checkpoint: { op: anchor.op, digest: 0n, checksum: anchor.checksum },
  };
}

function load(anchor: Header, log_view: number, entries: RecoveredPrepare[], view_headers: Header[] = []): Journal {
  const journal = new Journal(slots);
  journal.setHeader(anchor);
  const s = state(anchor, log_view, view_headers);
  const vh_max = view_headers.length > 0 ? view_headers[view_headers.length - 1]!.op : anchor.op;
  loadJournal(journal, entries, s, vh_max, anchor);
  return journal;
}

const intact = (header: Header): RecoveredPrepare => ({ header, faulty: false });

describe("loading the journal at open", () => {
  const log = chain(8, 1);
  const anchor = log[3]!; // checkpoint at op 4

  test("above the vouched suffix, one prepare of log_view per op is the log", () => {
    const journal = load(anchor, 1, log.map(intact));
    for (let op = 5; op <= 8; op++) expect(journal.header(op)?.checksum).toBe(log[op - 1]!.checksum);
  });

  test("a prepare of an older view above the vouched suffix is not this log's", () => {
    const stale = chain(6, 0, anchor.checksum, 5)[1]!; // op 6 of view 0
    const journal = load(anchor, 1, [intact(log[4]!), intact(stale)]);
    expect(journal.header(5)?.checksum).toBe(log[4]!.checksum);
    expect(journal.header(6)).toBeNull();
  });

  test("two prepares of log_view at one op: neither is trusted, the slot is damaged", () => {
    const other = chain(5, 1, 123n, 5)[0]!; // another op 5 of view 1 (a different parent)
    const journal = load(anchor, 1, [intact(log[4]!), intact(other)]);
    expect(journal.header(5)).toBeNull();
    expect(journal.isDamaged(5)).toBe(true);
  });

  test("within the vouched suffix the vouched copy wins, and the chain continues below it", () => {
    // The suffix log_view 2 vouches for: ops 5..6 of view 1's log. A copy of op 6 from view 0
    // is on disk too.
    const stale6 = chain(6, 0, log[4]!.checksum, 6)[0]!;
    const journal = load(anchor, 2, [intact(log[4]!), intact(stale6), intact(log[5]!)], [log[4]!, log[5]!]);
    expect(journal.header(6)?.checksum).toBe(log[5]!.checksum);
    expect(journal.header(5)?.checksum).toBe(log[4]!.checksum);
  });

  test("a faulty copy is loaded as faulty above the checkpoint (repaired, never voted away)", () => {
    const journal = load(anchor, 1, [intact(log[4]!), { header: log[5]!, faulty: true }]);
    expect(journal.header(6)?.checksum).toBe(log[5]!.checksum);
    expect(journal.hasPrepare(6, log[5]!.checksum)).toBe(false);
    expect(journal.isFaulty(6, log[5]!.checksum)).toBe(true);
  });

  test("executed ops below the checkpoint are kept while their slots last, if they chain", () => {
    const journal = load(anchor, 1, log.map(intact));
    for (let op = 1; op <= 3; op++) expect(journal.header(op)?.checksum).toBe(log[op - 1]!.checksum);
  });

  test("an anchor that is not the checkpoint's is a bug", () => {
    const journal = new Journal(slots);
    journal.setHeader(anchor);
    expect(() => loadJournal(journal, [], state(anchor, 1), 4, log[2]!)).toThrow(/anchor/);
  });
});
