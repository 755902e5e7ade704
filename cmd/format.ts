/** How the CLI and the admin shell print things: sizes, object info, list entries, cluster status. */
import type { ReplicaStatus } from "../lib/net/status_codec.ts";
import type { ReplicaProbe } from "../lib/client/cluster_probe.ts";
import { formatDuration, unreachableReason } from "../lib/client/cluster_diagnosis.ts";
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
  const sum = entry.checksum.toString(16).padStart(16, "0");
  return `${String(entry.size).padStart(10)}  ${String(entry.version).padStart(8)}  ${sum}  ${formatTime(entry.timestamp)}  ${key}`;
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

/** Every field of one replica's status document, for the admin shell's replica details. */
export function formatReplicaDetails(probe: ReplicaProbe, timeout_ms: number): string[] {
  const status = probe.status;
  if (status === null) return [`${probe.address}: down: ${unreachableReason(probe, timeout_ms).long}`];
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
    ...(status.status_ms === null
      ? []
      : [
          `in status    ${formatDuration(status.status_ms)}${status.status_view !== null && status.status_view !== status.view ? ` (since view ${status.status_view})` : ""}`,
        ]),
    ...(status.last_warning === null
      ? []
      : [`warning      ${formatDuration(status.last_warning.ms_ago)} ago: ${status.last_warning.text}`]),
    ...(status.peers === null
      ? []
      : [
          "peers",
          ...status.peers.map(
            (p) =>
              `  ${p.address.padEnd(21)}  heard ${p.heard_ms === null ? "never" : `${formatDuration(p.heard_ms)} ago`}, ${p.connected ? "connected" : "not connected"}${p.error === null ? "" : ` (last error: ${p.error})`}`,
          ),
        ]),
    "counters",
  ];
  const names = Object.keys(status.counters).sort();
  const width = Math.max(0, ...names.map((k) => k.length));
  for (const name of names) lines.push(`  ${name.padEnd(width)}  ${status.counters[name]}`);
  return lines;
}
