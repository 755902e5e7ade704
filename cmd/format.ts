/** How the CLI and the admin shell print things: sizes, object info, list entries, cluster status. */
import { formatAddress, type Address } from "../lib/net/address.ts";
import type { ReplicaStatus } from "../lib/node/status.ts";
import type { ListEntry, ObjectInfo } from "../lib/store/operations.ts";
import { escapeBytes } from "../lib/util/escape.ts";

const decoder = new TextDecoder();

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

export function formatTime(timestamp_ms: number): string {
  return new Date(timestamp_ms).toISOString();
}

/** A key as printed everywhere: one line, escaped where a terminal would not show it faithfully
 * (lib/util/escape.ts), so that it can be typed back. */
export function keyText(key: Uint8Array): string {
  return escapeBytes(key);
}

export function formatStat(key: Uint8Array, info: ObjectInfo): string[] {
  return [
    `key       ${keyText(key)}`,
    `version   ${info.version}`,
    `size      ${info.size} (${formatBytes(info.size)})`,
    `time      ${formatTime(info.timestamp)}`,
    `checksum  ${info.checksum.toString(16).padStart(16, "0")}`,
  ];
}

export function formatListEntry(entry: ListEntry, long: boolean): string {
  const key = keyText(entry.key);
  if (!long) return key;
  return `${String(entry.size).padStart(10)}  ${String(entry.version).padStart(8)}  ${formatTime(entry.timestamp)}  ${key}`;
}

/** True if the bytes are UTF-8 text a terminal can show (no control characters but tab/newline). */
export function isPrintable(value: Uint8Array): boolean {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(value);
  } catch {
    return false;
  }
  return !/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text);
}

/** A value for a person to read: the text itself, or a hex dump of its start. */
export function describeValue(value: Uint8Array, preview_bytes = 256): string[] {
  if (isPrintable(value)) return decoder.decode(value).replace(/\n$/, "").split("\n");
  const lines = [`(${value.length} bytes of binary data; first ${Math.min(preview_bytes, value.length)} shown)`];
  for (let offset = 0; offset < Math.min(preview_bytes, value.length); offset += 16) {
    const row = value.subarray(offset, Math.min(offset + 16, value.length));
    const hex = [...row].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${offset.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines;
}

export type Role = "primary" | "backup" | "recovering" | "view_change" | "blank" | "down";

export function roleOf(status: ReplicaStatus | null): Role {
  if (status === null) return "down";
  if (status.primary) return "primary";
  if (status.status === "normal") return "backup";
  if (status.status === "recovering" || status.status === "view_change" || status.status === "blank") return status.status;
  return "down";
}

export interface StatusReport {
  /** A header line, then one line per replica. */
  lines: string[];
  verdict: string;
  /** A majority answers and one of them is primary: the cluster serves reads and writes. */
  serving: boolean;
}

/** The `toastyfs status` table. statuses[i] belongs to the i-th address in sorted order (the
 * membership order clusterStatus answers in). */
export function renderStatus(addresses: Address[], statuses: (ReplicaStatus | null)[]): StatusReport {
  const names = addresses.map(formatAddress).sort();
  const n = names.length;
  const quorum = Math.floor(n / 2) + 1;
  const commit_max = Math.max(0, ...statuses.map((s) => s?.commit_max ?? 0));
  const rows: string[][] = [["ADDRESS", "REACHABLE", "ROLE", "VIEW", "OP", "COMMIT", "CHECKPOINT", "LAG", "DISK"]];
  const problems: string[] = [];
  const unwell: string[] = [];
  let up = 0;
  let primary: string | null = null;
  for (let i = 0; i < n; i++) {
    const s = statuses[i] ?? null;
    const role = roleOf(s);
    if (s === null) {
      rows.push([names[i]!, "no", role, "-", "-", "-", "-", "-", "-"]);
      unwell.push(`${names[i]} down`);
      continue;
    }
    up += 1;
    if (s.primary) primary = s.address;
    if (role !== "primary" && role !== "backup") unwell.push(`${s.address} ${role.replace("_", " ")}`);
    if (s.problem !== null) {
      problems.push(`${s.address}: ${s.problem}`);
      unwell.push(`${s.address} has a problem`);
    }
    const lag = Math.max(0, commit_max - s.commit_min);
    rows.push([s.address, "yes", role, String(s.view), String(s.op), String(s.commit_min), String(s.checkpoint), String(lag), formatBytes(s.disk_bytes)]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]! + 2))).join("").trimEnd());
  for (const p of problems) lines.push(`  problem: ${p}`);
  let verdict: string;
  let serving = false;
  if (up < quorum) {
    verdict = `no quorum: only ${up} of ${n} replicas answer and ${quorum} are needed; the cluster serves no reads or writes until a majority runs (start: ${names.filter((_, i) => (statuses[i] ?? null) === null).join(", ")})`;
  } else if (primary === null) {
    verdict = `degraded: no primary right now (a view change or the first formatting is in progress; it normally settles within a second or two)${unwell.length > 0 ? `; ${unwell.join(", ")}` : ""}`;
  } else if (unwell.length > 0) {
    serving = true;
    const spare = up - quorum;
    verdict = `degraded: ${unwell.join(", ")}; still serving (primary ${primary}), ${spare === 0 ? "but one more failure stops it" : `tolerates ${spare} more failure${spare === 1 ? "" : "s"}`}`;
  } else {
    serving = true;
    verdict = `healthy: ${up} of ${n} replicas up, primary ${primary}`;
  }
  return { lines, verdict, serving };
}

/** Every field of one replica's status document, for the admin shell's replica details. */
export function formatReplicaDetails(address: string, status: ReplicaStatus | null): string[] {
  if (status === null) return [`${address}: down (no answer within the status timeout)`];
  const lines = [
    `address      ${status.address} (replica ${status.replica})`,
    `role         ${roleOf(status)} (status ${status.status})`,
    `view         ${status.view} (log view ${status.log_view})`,
    `op           ${status.op}`,
    `commit       ${status.commit_min} executed, ${status.commit_max} known committed`,
    `checkpoint   ${status.checkpoint}`,
    `objects      ${status.objects} (${formatBytes(status.object_bytes)})`,
    `disk         ${formatBytes(status.disk_bytes)}`,
    `uptime       ${(status.uptime_ms / 1000).toFixed(0)} s`,
    `problem      ${status.problem ?? "none"}`,
    "counters",
  ];
  const names = Object.keys(status.counters).sort();
  const width = Math.max(0, ...names.map((k) => k.length));
  for (const name of names) lines.push(`  ${name.padEnd(width)}  ${status.counters[name]}`);
  return lines;
}
