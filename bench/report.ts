/** Text for the benchmarks' reports (bench/run.ts, bench/large.ts): numbers, tables, the machine line. */
import * as os from "node:os";
import { spawnSync } from "bun";

export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return "-";
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A Markdown table, columns padded to their widest cell. */
export function table(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

export function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
}

/** When, the load, the CPUs, memory, kernel and the file system the data goes to. */
export function machine(): string {
  const disk = spawnSync(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", os.tmpdir()]).stdout.toString().trim();
  const mem = `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`;
  return `${new Date().toISOString()}; load average ${loadAverage()}; ${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), ${mem}; ${spawnSync(["uname", "-a"]).stdout.toString().trim()}; data on ${disk || "?"} (${os.tmpdir()})`;
}
