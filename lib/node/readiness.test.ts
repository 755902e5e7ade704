import { describe, expect, test } from "bun:test";
import { readiness, readinessText, type ReadinessSnapshot } from "./readiness.ts";
import { ready_commit_lag_ops_max, ready_primary_silence_ms } from "../constants.ts";

/** Replica 2 of 3, a backup in view 7 (whose primary is replica 1), healthy. */
const backup: ReadinessSnapshot = {
  replica: 2,
  replica_count: 3,
  status: "normal",
  view: 7,
  acting_primary: false,
  syncing: false,
  primary_heard_ms: 40,
  backups_heard_ms: [35, 40],
  commit_min: 120,
  commit_known: 122,
};

/** Replica 1 of 3, the primary of view 7, healthy. */
const primary: ReadinessSnapshot = { ...backup, replica: 1, acting_primary: true, primary_heard_ms: null, backups_heard_ms: [20, 30] };

function reason(s: Partial<ReadinessSnapshot>, base = backup): string | null {
  return readiness({ ...base, ...s }).reason;
}

describe("readiness", () => {
  test("a backup in normal status that hears its primary and is caught up is ready", () => {
    const r = readiness(backup);
    expect(r.ready).toBe(true);
    expect(r.reason).toBeNull();
    expect(r.checks.every((c) => c.ok)).toBe(true);
  });

  test("a primary leading its view and hearing a quorum is ready, whatever it heard from a primary", () => {
    expect(readiness(primary).ready).toBe(true);
    expect(reason({ backups_heard_ms: [20, null] }, primary)).toBeNull();
  });

  test("each status other than normal is its own reason", () => {
    expect(reason({ status: "view_change" })).toBe("view change in progress (view 7)");
    expect(reason({ status: "recovering" })).toBe("recovering");
    expect(reason({ status: "recovering", syncing: true })).toBe("recovering (state sync)");
    expect(reason({ status: "blank" })).toBe("blank: not yet formatted or joined to the cluster");
    expect(reason({ status: "down" })).toBe("down: the data directory is not open (starting, or reopening after a storage error)");
  });

  test("the new primary is still changing views until it leads (start_view sent)", () => {
    expect(reason({ acting_primary: false }, primary)).toBe("view change in progress (view 7)");
  });

  test("a normal replica transferring a checkpoint is not ready", () => {
    expect(reason({ syncing: true })).toBe("state sync");
  });

  test("a backup is not ready once its primary has been silent longer than the bound, or unheard in this view", () => {
    expect(reason({ primary_heard_ms: ready_primary_silence_ms })).toBeNull();
    expect(reason({ primary_heard_ms: 2345 })).toBe("no word from primary 1 for 2.3 s");
    expect(reason({ primary_heard_ms: null })).toBe("no word from primary 1 in view 7");
  });

  test("a primary that hears fewer backups than a quorum needs is not ready (cut off, it keeps its status)", () => {
    expect(reason({ backups_heard_ms: [null, ready_primary_silence_ms + 1] }, primary)).toBe(
      "primary, heard from 0 of 2 backups within 0.25 s (a quorum needs 1)",
    );
    const five = { ...primary, replica_count: 5, view: 6, backups_heard_ms: [10, 5000, null, 20] };
    expect(readiness(five).ready).toBe(true);
    expect(readiness({ ...five, backups_heard_ms: [10, 5000, null, null] }).reason).toBe(
      "primary, heard from 1 of 4 backups within 0.25 s (a quorum needs 2)",
    );
    // One replica is its own quorum.
    expect(readiness({ ...primary, replica: 0, view: 0, replica_count: 1, backups_heard_ms: [] }).ready).toBe(true);
  });

  test("a replica more than the bound behind the highest commit it has heard of is not ready", () => {
    expect(reason({ commit_min: 100, commit_known: 100 + ready_commit_lag_ops_max })).toBeNull();
    expect(reason({ commit_min: 120, commit_known: 9000 })).toBe("behind: commit 120 of 9,000 known");
  });

  test("the first failing check is the reason; every check is still evaluated", () => {
    const r = readiness({ ...backup, status: "view_change", primary_heard_ms: null, commit_known: 9000 });
    expect(r.reason).toBe("view change in progress (view 7)");
    expect(r.checks.map((c) => `${c.name} ${c.ok}`)).toEqual(["status false", "primary false", "commit false"]);
  });

  test("the limits can be given", () => {
    const slow = { ...backup, primary_heard_ms: 2345 };
    expect(readiness(slow, { primary_silence_ms: 3000, commit_lag_ops_max: 2 }).ready).toBe(true);
    expect(readiness(slow, { primary_silence_ms: 3000, commit_lag_ops_max: 1 }).reason).toBe("behind: commit 120 of 122 known");
  });
});

describe("readinessText", () => {
  test("first line ready or not ready with the reason; verbose adds one line per check", () => {
    expect(readinessText(readiness(backup), false)).toBe("ready\n");
    const r = readiness({ ...backup, primary_heard_ms: 2345 });
    expect(readinessText(r, false)).toBe("not ready: no word from primary 1 for 2.3 s\n");
    expect(readinessText(r, true).split("\n")).toEqual([
      "not ready: no word from primary 1 for 2.3 s",
      "ok   status: normal in view 7",
      "FAIL primary: no word from primary 1 for 2.3 s",
      "ok   commit: commit 120 of 122 known",
      "",
    ]);
  });
});
