import { describe, expect, test } from "bun:test";
import { Command, Header } from "../net/codec.ts";
import { Operation, Result } from "../store/operations.ts";
import { MetricsServer, RequestMetrics, renderMetrics, requests_tracked_max } from "./metrics.ts";
import type { ReadinessSnapshot } from "./readiness.ts";
import type { ReplicaStatus } from "../net/status_codec.ts";

function header(command: Command, client: bigint, request: number, operation: Operation, result = Result.ok): Header {
  const h = new Header();
  h.command = command;
  h.client = client;
  h.request = request;
  h.operation = operation;
  h.result = result;
  return h;
}

const status: ReplicaStatus = {
  replica: 1,
  address: "127.0.0.1:8082",
  status: "normal",
  primary: true,
  view: 3,
  log_view: 3,
  op: 40,
  commit_min: 39,
  commit_max: 40,
  checkpoint: 0,
  disk_bytes: 1024,
  objects: 2,
  object_bytes: 10,
  uptime_ms: 5000,
  problem: null,
  counters: {
    view_changes: 2,
    frames_dropped_invalid: 4,
    frames_truncated: 1,
    repairs_requested: 7,
    read_cache_hits: 9,
    read_cache_bytes: 5000,
  },
  status_ms: 4000,
  status_view: 3,
  peers: [],
  last_warning: null,
  incarnation: 7,
};

describe("RequestMetrics", () => {
  test("times a request from its first arrival to its reply, by operation; counts by result", () => {
    let now = 1000;
    const m = new RequestMetrics(() => now);
    m.requestArrived(header(Command.request, 5n, 1, Operation.put));
    now += 3;
    m.requestArrived(header(Command.request, 5n, 1, Operation.put)); // a retry keeps the first arrival
    now += 4;
    m.replySent(header(Command.reply, 5n, 1, Operation.put));
    m.requestArrived(header(Command.request, 6n, 1, Operation.get));
    m.replySent(header(Command.reply, 6n, 1, Operation.get, Result.not_found));
    expect(m.in_flight).toBe(0);
    const text = renderMetrics(status, m, "/nonexistent", true);
    expect(text).toContain('toastyfs_requests_total{operation="put",result="ok"} 1');
    expect(text).toContain('toastyfs_requests_total{operation="get",result="not_found"} 1');
    expect(text).toContain('toastyfs_request_duration_seconds_bucket{operation="put",le="0.005"} 0');
    expect(text).toContain('toastyfs_request_duration_seconds_bucket{operation="put",le="0.01"} 1');
    expect(text).toContain('toastyfs_request_duration_seconds_sum{operation="put"} 0.007');
    expect(text).toContain('toastyfs_request_duration_seconds_count{operation="put"} 1');
  });

  test("never remembers more than requests_tracked_max unanswered requests", () => {
    const m = new RequestMetrics(() => 0);
    for (let i = 0; i < requests_tracked_max + 10; i++) m.requestArrived(header(Command.request, 1n, i + 1, Operation.get));
    expect(m.in_flight).toBe(requests_tracked_max);
  });
});

describe("renderMetrics", () => {
  test("exposes status, view changes and dropped frames in the text format", () => {
    const text = renderMetrics(status, new RequestMetrics(), "/nonexistent", false);
    expect(text).toContain("toastyfs_ready 0\n");
    expect(text).toContain("toastyfs_view 3\n");
    expect(text).toContain("toastyfs_commit_executed 39\n");
    expect(text).toContain("toastyfs_journal_ops 40\n");
    expect(text).toContain("toastyfs_view_changes_total 2\n");
    expect(text).toContain('toastyfs_frames_dropped_total{reason="invalid"} 4');
    expect(text).toContain('toastyfs_frames_dropped_total{reason="truncated"} 1');
    expect(text).toContain("toastyfs_repairs_requested_total 7\n");
    // The read cache: hits are a count, its bytes a level.
    expect(text).toContain("toastyfs_read_cache_hits_total 9\n");
    expect(text).toContain("# TYPE toastyfs_read_cache_bytes gauge");
    expect(text).toContain("toastyfs_read_cache_bytes 5000\n");
    expect(text).toContain('toastyfs_replica_status{status="normal"} 1');
    // Every sample line belongs to a family declared with # TYPE.
    const families = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    for (const line of text.split("\n").filter((l) => l !== "" && !l.startsWith("#"))) {
      const name = line.split(/[{ ]/)[0]!.replace(/_(bucket|sum|count)$/, "");
      expect(families.has(name) || families.has(line.split(/[{ ]/)[0]!)).toBe(true);
    }
  });
});

describe("MetricsServer health endpoints", () => {
  const healthy: ReadinessSnapshot = {
    replica: 1,
    replica_count: 3,
    status: "normal",
    view: 3,
    acting_primary: false,
    syncing: false,
    primary_heard_ms: 50,
    backups_heard_ms: [50, 60],
    commit_min: 40,
    commit_known: 40,
  };

  test("/livez is ok; /readyz and toastyfs_ready follow the replica's readiness; ?verbose lists the checks", async () => {
    let snapshot = healthy;
    const server = new MetricsServer(
      { host: "127.0.0.1", port: 0 },
      { status: () => status, readiness: () => snapshot, data_dir: "/nonexistent" },
      new RequestMetrics(),
    );
    server.start();
    try {
      const get = async (path: string) => {
        const response = await fetch(`http://127.0.0.1:${server.port}${path}`);
        return { code: response.status, body: await response.text() };
      };
      expect(await get("/livez")).toEqual({ code: 200, body: "ok\n" });
      expect(await get("/readyz")).toEqual({ code: 200, body: "ready\n" });
      expect(await get("/metrics")).toMatchObject({ body: expect.stringContaining("toastyfs_ready 1\n") });
      snapshot = { ...healthy, status: "view_change", view: 5, primary_heard_ms: null };
      expect(await get("/readyz")).toEqual({ code: 503, body: "not ready: view change in progress (view 5)\n" });
      const verbose = await get("/readyz?verbose");
      expect(verbose.code).toBe(503);
      expect(verbose.body.split("\n")).toEqual([
        "not ready: view change in progress (view 5)",
        "FAIL status: view change in progress (view 5)",
        "FAIL primary: no word from primary 2 in view 5",
        "ok   commit: commit 40 of 40 known",
        "",
      ]);
      expect(await get("/metrics")).toMatchObject({ body: expect.stringContaining("toastyfs_ready 0\n") });
      expect(await get("/livez")).toEqual({ code: 200, body: "ok\n" });
      expect((await get("/nope")).code).toBe(404);
    } finally {
      await server.stop();
    }
  });
});
