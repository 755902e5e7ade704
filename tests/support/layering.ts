/**
 * Which folder may import which, checked over source text: a pure function of (path, source)
 * pairs, so tests/core_purity.test.ts can run it on the repository and on made-up violations.
 * Paths are relative to the repository root with "/" separators.
 *
 * The rules, and why:
 * - Production code in lib never imports sim/, tests/, bench/, cmd/ or scripts/: lib is what
 *   ships, those are tools around it. Unit tests beside lib modules may use the simulator's
 *   harness (sim/test_cluster.ts, sim/sim_fs.ts); they do not ship.
 * - lib/vsr's production code never imports lib/storage or lib/node: the protocol reaches storage
 *   only through its Storage port (lib/vsr/storage.ts) and knows nothing of processes.
 * - lib/client never imports lib/node: a client library must not pull in the server.
 * - No file in lib/vsr imports lib/vsr/replica.ts but replica.ts and replica.test.ts: a part sees
 *   the replica only through the host interface it declares, which its test fakes (docs/DESIGN.md
 *   §2.1). Code outside lib/vsr (the node, the simulator) drives the Replica itself.
 * - No production file in lib is longer than lib_file_lines_max: one concept per file, and a
 *   reader can hold a file in mind (issue 13).
 */
import * as path from "node:path";

export interface SourceFile {
  path: string;
  source: string;
}

/** The source without comments, so prose that mentions an import is not one. */
function withoutComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}

const static_import = /\b(?:import|export)\s+(?:type\s+)?(?:[^"';]*?\s+from\s+)?["']([^"']+)["']/g;
const dynamic_import = /\b(?:import|require)\s*\(\s*["']([^"']+)["']\s*\)/g;

/** Every module specifier the file imports or re-exports, statically or dynamically. */
export function importSpecifiers(source: string): string[] {
  const code = withoutComments(source);
  return [...code.matchAll(static_import), ...code.matchAll(dynamic_import)].map((m) => m[1]!);
}

/** The repository path a relative specifier names from `file`; null for a package ("node:fs"). */
export function resolveImport(file: string, specifier: string): string | null {
  if (!specifier.startsWith(".")) return null;
  return path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
}

const isTest = (file: string) => file.endsWith(".test.ts");
const under = (file: string, dir: string) => file.startsWith(`${dir}/`);

interface ImportRule {
  /** Whether the rule applies to the importing file. */
  applies(file: string): boolean;
  forbidden: string[];
  why: string;
}

const import_rules: ImportRule[] = [
  {
    applies: (f) => under(f, "lib") && !isTest(f),
    forbidden: ["sim", "tests", "bench", "cmd", "scripts"],
    why: "lib ships; the simulator, tests, benchmarks, executables and scripts do not",
  },
  {
    applies: (f) => under(f, "lib/vsr") && !isTest(f),
    forbidden: ["lib/storage", "lib/node"],
    why: "the protocol reaches storage only through its Storage port",
  },
  { applies: (f) => under(f, "lib/client"), forbidden: ["lib/node"], why: "the client library must not depend on the server" },
  {
    applies: (f) => under(f, "lib/vsr") && f !== "lib/vsr/replica.ts" && f !== "lib/vsr/replica.test.ts",
    // With and without the extension (Bun resolves both).
    forbidden: ["lib/vsr/replica.ts", "lib/vsr/replica"],
    why: "a part sees the replica only through its host interface",
  },
];

/** One line per violation: "file: imports target (why)". Empty when every rule holds. */
export function layeringViolations(files: Iterable<SourceFile>): string[] {
  const problems: string[] = [];
  for (const { path: file, source } of files) {
    const rules = import_rules.filter((r) => r.applies(file));
    if (rules.length === 0) continue;
    for (const specifier of importSpecifiers(source)) {
      const target = resolveImport(file, specifier);
      if (target === null) continue;
      for (const rule of rules) {
        const dir = rule.forbidden.find((d) => target === d || under(target, d));
        if (dir !== undefined) problems.push(`${file}: imports ${target} (${rule.why})`);
      }
    }
  }
  return problems;
}

export const lib_file_lines_max = 1200;

/**
 * Files allowed over the limit, each with a ceiling it may not grow past: a ratchet for a file that
 * has to be split over several commits. Empty: lib/vsr/replica.ts, the last one (2,757 lines at the
 * start of issue 13), is under the limit since its parts moved out. A file that grows past the limit
 * is split, not added here.
 */
export const long_files_allowed = new Map<string, number>();

/** Production files in lib longer than their limit, one line each: "file: N lines". */
export function longFiles(files: Iterable<SourceFile>, allowed: ReadonlyMap<string, number> = new Map()): string[] {
  const problems: string[] = [];
  for (const { path: file, source } of files) {
    if (!under(file, "lib") || isTest(file)) continue;
    const lines = source.split("\n").length - (source.endsWith("\n") ? 1 : 0);
    const limit = allowed.get(file) ?? lib_file_lines_max;
    if (lines > limit) problems.push(`${file}: ${lines} lines (at most ${limit})`);
  }
  return problems;
}
