import { expect, test } from "bun:test";
import { ActivityLog } from "./activity_log.ts";
import { Logger } from "./log.ts";
import type { ReplicaStatus } from "../net/status_codec.ts";

function status(repairs: number): ReplicaStatus {
  return {
    replica: 0,
    address: "127.0.0.1:8081",
    status: "normal",
    primary: false,
    view: 1,
    log_view: 1,
    op: 1,
    commit_min: 1,
    commit_max: 1,
    checkpoint: 0,
    disk_bytes: 0,
    objects: 0,
    object_bytes: 0,
    uptime_ms: 0,
    problem: null,
    counters: { repairs_requested: repairs },
    status_ms: 0,
    status_view: 1,
    peers: [],
    last_warning: null,
    incarnation: 7,
  };
}

test("repair is logged once when it starts and once when it is done", () => {
  const lines: string[] = [];
  const log = new ActivityLog(new Logger("info", "text", "", (line) => lines.push(line)));
  log.check(status(0), 0);
  log.check(status(5), 5000);
  log.check(status(9), 10_000);
  log.check(status(9), 15_000);
  log.check(status(9), 20_000);
  expect(lines.length).toBe(2);
  expect(lines[0]).toContain("repairing: fetching missing or damaged prepares from peers");
  expect(lines[1]).toContain("repair done: 9 prepare requests over about 10 s");
  log.check(status(12), 25_000);
  expect(lines.length).toBe(3);
  expect(lines[2]).toContain("repairing");
});
