import { describe, expect, test } from "bun:test";
import type { Header } from "../net/codec.ts";
import { prepareChain } from "./test_support.ts";
import { Journal } from "./journal.ts";
import { planRepair } from "./repair_plan.ts";

const chain = (n: number): Header[] => prepareChain(n);

describe("planRepair", () => {
  const log = chain(12);

  test("a complete log asks for nothing", () => {
    const journal = new Journal(16);
    for (const h of log) journal.wrote(h);
    expect(planRepair(journal, 0, 12, 32, 64)).toEqual({ prepares: [], headers: null });
  });

  test("known headers without their prepare are fetched lowest first, at most the bound", () => {
    const journal = new Journal(16);
    for (const h of log) journal.setHeader(h);
    const plan = planRepair(journal, 2, 12, 3, 64);
    expect(plan.prepares).toEqual([3, 4, 5].map((op) => ({ op, checksum: log[op - 1]!.checksum })));
    expect(plan.headers).toBeNull();
  });

  test("a run of unknown headers: the headers from its top down, and the prepare the op above names", () => {
    const journal = new Journal(16);
    for (const h of log) if (h.op < 5 || h.op > 8) journal.wrote(h);
    const plan = planRepair(journal, 0, 12, 32, 64);
    // Only op 8 is identified (by op 9's parent); 5..7 are not known yet.
    expect(plan.prepares).toEqual([{ op: 8, checksum: log[7]!.checksum }]);
    expect(plan.headers).toEqual({ op_min: 1, op_max: 9 }); // up to headers_max below the top of the run;
  });

  test("a long run asks for at most headers_max headers, the top of the run first", () => {
    const journal = new Journal(16);
    journal.wrote(log[0]!);
    journal.wrote(log[11]!);
    expect(planRepair(journal, 1, 12, 32, 4).headers).toEqual({ op_min: 8, op_max: 12 });
  });

  test("planning beyond the journal window is a bug", () => {
    expect(() => planRepair(new Journal(8), 0, 9, 32, 64)).toThrow(/beyond the journal window/);
  });
});
