/** The `toastyfs status` report (also the admin shell's): one line per replica, the lines that
 * explain what is wrong, and a verdict (lib/client/cluster_diagnosis.ts). */
import type { ReplicaProbe } from "../lib/client/cluster_probe.ts";
import { diagnose } from "../lib/client/cluster_diagnosis.ts";
import { formatBytes, roleOf } from "./format.ts";

export interface StatusReport {
  /** A header line, one line per replica, then the lines explaining the verdict. */
  lines: string[];
  verdict: string;
  /** A majority answers and one of them is primary: the cluster serves reads and writes. */
  serving: boolean;
}

/** probes[i] is replica i (membership order, as probeCluster answers). */
export function renderStatus(probes: ReplicaProbe[], timeout_ms: number): StatusReport {
  const commit_max = Math.max(0, ...probes.map((p) => p.status?.commit_max ?? 0));
  const rows: string[][] = [["ADDRESS", "REACHABLE", "ROLE", "VIEW", "OP", "COMMIT", "CHECKPOINT", "LAG", "DISK"]];
  for (const p of probes) {
    const s = p.status;
    if (s === null) {
      rows.push([p.address, "no", roleOf(null), "-", "-", "-", "-", "-", "-"]);
      continue;
    }
    const lag = Math.max(0, commit_max - s.commit_min);
    rows.push([
      s.address,
      "yes",
      roleOf(s),
      String(s.view),
      String(s.op),
      String(s.commit_min),
      String(s.checkpoint),
      String(lag),
      formatBytes(s.disk_bytes),
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((r) =>
    r
      .map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]! + 2)))
      .join("")
      .trimEnd(),
  );
  const diagnosis = diagnose(probes, timeout_ms);
  return { lines: [...lines, ...diagnosis.notes], verdict: diagnosis.verdict, serving: diagnosis.serving };
}
