import { describe, expect, test } from "bun:test";
import type { Header } from "../net/codec.ts";
import { prepareChain } from "./test_support.ts";
import { Journal } from "./journal.ts";
import { loadJournal, restartLog } from "./journal_load.ts";
import type { Recovered, RecoveredPrepare, VsrState } from "./storage.ts";
import { ObjectStore } from "../store/object_store.ts";
import { ClientTable } from "./client_table.ts";
import { stateDigest } from "./root.ts";

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

describe("restarting from what storage recovered", () => {
  const log = chain(12, 1);
  const anchor = log[3]!; // checkpoint at op 4

  function recovered(
    entries: RecoveredPrepare[],
    options: { commit_max?: number; view_headers?: Header[]; damaged_slots?: number[] } = {},
  ): Recovered {
    const store = new ObjectStore();
    const clients = new ClientTable(4);
    const s = state(anchor, 1, options.view_headers ?? []);
    s.commit_max = options.commit_max ?? anchor.op;
    s.checkpoint.digest = stateDigest(store, clients);
    const id = s.checkpoint;
    return {
      state: s,
      journal: entries,
      damaged_slots: options.damaged_slots ?? [],
      checkpoint: { id, anchor, previous: { op: 0, digest: 0n, checksum: 0n } },
      store,
      clients,
    };
  }

  function restart(r: Recovered): { journal: Journal; op: number; commit_max: number; damaged: number[] } {
    const journal = new Journal(slots);
    return { journal, ...restartLog(journal, r, r.checkpoint!) };
  }

  test("the head is the highest op loaded, and the commit number never above it", () => {
    const r = restart(recovered(log.slice(0, 9).map(intact), { commit_max: 11 }));
    expect(r.op).toBe(9);
    expect(r.commit_max).toBe(9); // a commit number above the log would execute ops no quorum may hold
    expect(r.journal.header(4)?.checksum).toBe(anchor.checksum);
    expect(r.damaged).toEqual([]);
  });

  test("a commit number below the checkpoint is raised to it", () => {
    const r = restart(recovered(log.slice(4, 6).map(intact), { commit_max: 2 }));
    expect(r.commit_max).toBe(4);
    expect(r.op).toBe(6);
  });

  test("the persisted suffix may reach past the window: the head is its last op", () => {
    const long = chain(30, 1, anchor.checksum, 5); // ops 5..30, past the window 5..20
    const r = restart(recovered([], { view_headers: long.slice(20) })); // ops 25..30 vouched
    expect(r.op).toBe(30);
    expect(r.journal.header(20)).toBeNull(); // not vouched, not on disk
    expect(r.journal.header(30)).toBeNull(); // beyond the window: only in the suffix
  });

  test("vouched headers inside the window go into the journal, to be repaired; a copy the log does not name stays out", () => {
    const stale6 = chain(6, 0, log[4]!.checksum, 6)[0]!; // op 6 of view 0, above the vouched suffix
    const r = restart(recovered([intact(log[4]!), intact(stale6)], { view_headers: log.slice(6, 8) })); // ops 7..8 vouched
    expect(r.op).toBe(8);
    expect(r.journal.header(7)?.checksum).toBe(log[6]!.checksum);
    expect(r.journal.header(8)?.checksum).toBe(log[7]!.checksum);
    expect(r.journal.hasPrepare(8, log[7]!.checksum)).toBe(false); // a header without its prepare: repaired
    expect(r.journal.header(6)).toBeNull(); // the stale copy is not the parent of vouched op 7
    expect(r.journal.header(5)?.checksum).toBe(log[4]!.checksum);
  });

  test("damaged slots are marked at the op of the window that maps to them, and reported", () => {
    const r = restart(recovered(log.slice(4, 6).map(intact), { damaged_slots: [7 % slots, 3 % slots] }));
    expect(r.damaged).toEqual([7, 19]); // slot 3 is op 19 of the window 5..20
    expect(r.journal.isDamaged(7)).toBe(true);
    expect(r.op).toBe(6);
  });

  test("a checkpoint whose state does not match its digest is a bug", () => {
    const r = recovered([]);
    r.state!.checkpoint.digest += 1n;
    expect(() => restartLog(new Journal(slots), r, r.checkpoint!)).toThrow(/digest/);
  });
});
