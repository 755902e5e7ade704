import { describe, expect, test } from "bun:test";
import { diagnose, formatDuration, view_change_settle_ms } from "./cluster_diagnosis.ts";
import type { ReplicaProbe } from "./cluster_probe.ts";
import type { PeerStatus, ReplicaStatus } from "../net/status_codec.ts";

const addresses = ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"];

function status(replica: number, fields: Partial<ReplicaStatus> = {}): ReplicaStatus {
  const peers: PeerStatus[] = addresses.flatMap((address, i) =>
    i === replica ? [] : [{ replica: i, address, heard_ms: 50, connected: true, error: null }],
  );
  return {
    replica,
    address: addresses[replica]!,
    status: "normal",
    primary: replica === 0,
    view: 0,
    log_view: 0,
    op: 10,
    commit_min: 10,
    commit_max: 10,
    checkpoint: 0,
    disk_bytes: 0,
    objects: 0,
    object_bytes: 0,
    uptime_ms: 60_000,
    problem: null,
    counters: {},
    status_ms: 60_000,
    status_view: 0,
    peers,
    last_warning: null,
    incarnation: 7,
    ...fields,
  };
}

function answered(s: ReplicaStatus): ReplicaProbe {
  return { address: s.address, status: s, connected: true, failure: null, malformed: false, other_cluster: null };
}

function silent(replica: number, connected: boolean, failure: string | null): ReplicaProbe {
  return { address: addresses[replica]!, status: null, connected, failure, malformed: false, other_cluster: null };
}

const refused = "connect failed: ECONNREFUSED (Failed to connect)";

describe("diagnose", () => {
  test("a healthy cluster: the verdict names the primary, no notes", () => {
    const d = diagnose([answered(status(0)), answered(status(1)), answered(status(2))], 1000);
    expect(d).toEqual({ verdict: "healthy: 3 of 3 replicas up, primary 127.0.0.1:8081", serving: true, notes: [] });
  });

  test("a replica with an earlier cluster's data directory is named, and the cluster is degraded, not healthy", () => {
    const d = diagnose([answered(status(0)), answered(status(1)), answered(status(2, { incarnation: 9, op: 300, commit_max: 300 }))], 1000);
    expect(d.serving).toBe(true);
    expect(d.verdict).toBe(
      "degraded: 127.0.0.1:8083 of another cluster; still serving (primary 127.0.0.1:8081), but one more failure stops it",
    );
    expect(d.notes.join("\n")).toContain(
      "other cluster: 127.0.0.1:8083 has the data directory of cluster incarnation 00000009, the others 00000007",
    );
  });

  test("each silent replica gets the reason its connection gave", () => {
    const d = diagnose(
      [silent(0, false, refused), silent(1, true, null), silent(2, true, "ECONNRESET (ECONNRESET: connection reset by peer, read)")],
      1000,
    );
    expect(d.serving).toBe(false);
    expect(d.verdict).toBe(
      "no quorum: only 0 of 3 replicas answer and 2 are needed; the cluster serves no reads or writes until a majority runs and reaches each other (not answering: 127.0.0.1:8081 not running, 127.0.0.1:8082 paused or hung, 127.0.0.1:8083 closes connections unanswered)",
    );
    expect(d.notes[0]).toBe(
      "  down: 127.0.0.1:8081: nothing listens there (connection refused): the replica is not running, or listens on another address",
    );
    expect(d.notes[1]).toBe(
      "  down: 127.0.0.1:8082: accepted the connection but did not answer within 1000 ms: the process is paused (SIGSTOP), hung, or overloaded",
    );
    expect(d.notes[2]).toMatch(
      /^ {2}down: 127\.0\.0\.1:8083: accepted the connection, then closed it on the status request \(ECONNRESET .*\): it refuses this command's messages, so it most likely runs with a different address list/,
    );
    const none = diagnose([silent(0, false, null), answered(status(1)), answered(status(2))], 1000);
    expect(none.notes[0]).toBe(
      "  down: 127.0.0.1:8081: no TCP connection within 1000 ms: the host is down, or a firewall drops the packets",
    );
  });

  test("no quorum says how long the answering replica has been without a primary", () => {
    const d = diagnose(
      [
        silent(0, false, refused),
        silent(1, false, refused),
        answered(status(2, { status: "view_change", view: 14, status_ms: 125_000, status_view: 1 })),
      ],
      1000,
    );
    expect(d.verdict).toStartWith("no quorum: only 1 of 3 replicas answer and 2 are needed; no primary for 2 min 5 s;");
  });

  test("the first seconds of a view change settle; after view_change_settle_ms it is stuck, with its views and the cut-off peers", () => {
    const changing = (ms: number) =>
      [0, 1, 2].map((i) =>
        answered(
          status(i, {
            status: "view_change",
            primary: false,
            view: 40 + i,
            status_ms: ms,
            status_view: 3,
            peers: addresses.flatMap((address, j) =>
              j === i ? [] : [{ replica: j, address, heard_ms: ms, connected: false, error: "closed by the peer" }],
            ),
          }),
        ),
      );
    const early = diagnose(changing(1200), 1000);
    expect(early.serving).toBe(false);
    expect(early.verdict).toStartWith(
      "degraded: no primary right now (a view change is in progress, for 1.2 s; it normally settles within a second or two)",
    );

    const late = diagnose(changing(view_change_settle_ms + 40_000), 1000);
    expect(late.verdict).not.toContain("settles");
    expect(late.verdict).toBe(
      "stuck: no primary for 45 s, longer than a view change takes (5.0 s); view change not finishing: 127.0.0.1:8081 in view 40 (since view 3), 127.0.0.1:8082 in view 41 (since view 3), 127.0.0.1:8083 in view 42 (since view 3); the lines above say why",
    );
    expect(late.notes[0]).toBe(
      "  cut off: 127.0.0.1:8081 (view change) hears nothing from 127.0.0.1:8082 (for 45 s; its connection: closed by the peer), 127.0.0.1:8083 (for 45 s; its connection: closed by the peer), although that replica answers this command: check the network between the replicas, and that every replica was started with the same --addr/--peer set",
    );
    expect(late.notes.length).toBe(3);
  });

  test("a stuck view change nothing explains points at the logs; recent warnings are shown, old ones are not", () => {
    const probes = [0, 1, 2].map((i) =>
      answered(
        status(i, {
          status: "view_change",
          primary: false,
          view: 9,
          status_ms: 30_000,
          status_view: 9,
          last_warning: i === 0 ? { text: "journal write failed", ms_ago: 2000 } : i === 1 ? { text: "old news", ms_ago: 3_600_000 } : null,
        }),
      ),
    );
    const d = diagnose(probes, 1000);
    expect(d.notes).toEqual(["  logged: 127.0.0.1:8081, 2.0 s ago: journal write failed"]);
    expect(d.verdict).toEndWith("; the lines above say why");
    const quiet = diagnose(
      probes.map((p) => answered({ ...p.status!, last_warning: null })),
      1000,
    );
    expect(quiet.verdict).toEndWith("; nothing visible from here explains it: read the replicas' logs");
    expect(quiet.verdict).toContain("127.0.0.1:8081 in view 9, ");
  });

  test("a problem a replica reports is named in the verdict", () => {
    const full = "disk full: this replica refuses new writes until space is freed (reads are still served)";
    const d = diagnose([answered(status(0)), answered(status(1, { problem: full })), answered(status(2))], 1000);
    expect(d.serving).toBe(true);
    // It takes no writes: one more failure stops them.
    expect(d.verdict).toBe("degraded: 127.0.0.1:8082: disk full; still serving (primary 127.0.0.1:8081), but one more failure stops it");
    expect(d.notes).toEqual([`  problem: 127.0.0.1:8082: ${full}`]);
    const damaged = diagnose(
      [answered(status(0)), answered(status(1, { problem: "journal damaged (ops 5-7): repairing from peers" })), answered(status(2))],
      1000,
    );
    expect(damaged.verdict).toBe(
      "degraded: 127.0.0.1:8082: journal damaged (ops 5-7); still serving (primary 127.0.0.1:8081), tolerates 1 more failure",
    );
    const two = diagnose([answered(status(0)), answered(status(1, { problem: full })), silent(2, false, refused)], 1000);
    expect(two.serving).toBe(false);
    expect(two.verdict).toBe(
      "degraded: 127.0.0.1:8083 down (not running), 127.0.0.1:8082: disk full; reads are served (primary 127.0.0.1:8081) but writes cannot commit: only 1 of 3 replicas can take them and 2 are needed",
    );
  });

  test("backups that follow a primary this command cannot reach say so", () => {
    const d = diagnose([silent(0, true, "closed by the peer"), answered(status(1)), answered(status(2))], 1000);
    expect(d.serving).toBe(false);
    expect(d.verdict).toStartWith(
      "degraded: no primary answers: the backups follow 127.0.0.1:8081 (view 0), which does not answer this command (closes connections unanswered); it may still serve clients that can reach it",
    );
  });

  test("a new cluster waits for every replica before it formats", () => {
    const d = diagnose(
      [
        answered(status(0, { status: "blank", primary: false })),
        answered(status(1, { status: "blank", primary: false })),
        silent(2, false, refused),
      ],
      1000,
    );
    expect(d.verdict).toStartWith("not formed yet: a new cluster formats itself once all 3 replicas run; waiting for 127.0.0.1:8083");
  });

  test("a backup that hears nothing from its primary, which answers this command, is cut off from it", () => {
    const cut = status(2, {
      peers: [
        { replica: 0, address: addresses[0]!, heard_ms: 8000, connected: true, error: null },
        { replica: 1, address: addresses[1]!, heard_ms: 900_000, connected: true, error: null },
      ],
    });
    const d = diagnose([answered(status(0)), answered(status(1)), answered(cut)], 1000);
    // Backups do not talk to each other in normal operation: only the primary's silence counts.
    expect(d.notes).toEqual([
      "  cut off: 127.0.0.1:8083 (backup) hears nothing from 127.0.0.1:8081 (for 8.0 s), although that replica answers this command: check the network between the replicas, and that every replica was started with the same --addr/--peer set",
    ]);
  });
});

test("formatDuration", () => {
  expect([850, 4200, 45_000, 133_000, 3_900_000].map(formatDuration)).toEqual(["850 ms", "4.2 s", "45 s", "2 min 13 s", "1 h 5 min"]);
});
