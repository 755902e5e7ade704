/**
 * The deterministic core (lib/vsr, lib/store, lib/storage) does no I/O of its own, reads no clock,
 * draws no unseeded randomness and never awaits (DESIGN §3): the simulator replays a seed exactly
 * only if that holds. The simulator would notice a violation only by luck (a seed that happens to
 * diverge), so this scans the source for the ways it could be broken.
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";

const repo = path.resolve(import.meta.dir, "..");
const core_dirs = ["lib/vsr", "lib/store", "lib/storage"];

/** What the core must not use, and why. Matched on code with comments and strings removed. */
const forbidden: [RegExp, string][] = [
  [/\bMath\.random\b/, "unseeded randomness (use the Env's seeded PRNG)"],
  [/\bDate\.now\b|\bnew Date\b|\bperformance\.now\b|\bprocess\.hrtime\b/, "a clock (time comes in through tick(realtime))"],
  [/\bawait\b|\basync\b|\.then\(/, "asynchrony (the core is synchronous)"],
  [/\bsetTimeout\b|\bsetInterval\b|\bsetImmediate\b|\bqueueMicrotask\b/, "timers (timeouts are counted in ticks)"],
  [/\bconsole\./, "direct output (log through the Env)"],
  [/\bprocess\./, "the process environment"],
  [/\bBun\.(?!hash)/, "Bun runtime APIs (I/O goes through the Storage and FileSystem interfaces)"],
];

/** Only relative imports and type-only imports of "bun" are allowed: no node:fs, node:net, ... */
const import_pattern = /^\s*import\s+(type\s+)?[^"']*["']([^"']+)["']/gm;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(repo, dir), { withFileTypes: true })) {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(relative));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts")) out.push(relative);
  }
  return out;
}

/** The core's files and every file they import, transitively (lib/net/codec.ts, lib/util, ...):
 * what the core runs must obey the same rules, wherever it lives. */
function coreClosure(): string[] {
  const seen = new Set<string>();
  const queue = core_dirs.flatMap(sourceFiles);
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = fs.readFileSync(path.join(repo, file), "utf8");
    for (const match of text.matchAll(import_pattern)) {
      const specifier = match[2]!;
      if (specifier.startsWith(".")) queue.push(path.relative(repo, path.resolve(repo, path.dirname(file), specifier)));
    }
  }
  return [...seen].sort();
}

/** The code without comments and string or template literal contents (so prose may say "await"). */
function codeOnly(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/\/\/.*$/gm, "")
    .replace(/`(?:\\[\s\S]|[^`\\])*`/g, "``")
    .replace(/"(?:\\.|[^"\\\n])*"/g, '""')
    .replace(/'(?:\\.|[^'\\\n])*'/g, "''");
}

describe("the deterministic core", () => {
  const files = coreClosure();

  test("the files checked include the replica, the store, the storage and what they import", () => {
    for (const file of ["lib/vsr/replica.ts", "lib/store/object_store.ts", "lib/storage/file_storage.ts", "lib/net/codec.ts", "lib/util/checksum.ts"]) {
      expect(files).toContain(file);
    }
    // The transport is not part of it.
    expect(files).not.toContain("lib/net/tcp_transport.ts");
  });

  test("uses no clock, randomness, timers, asynchrony or runtime I/O", () => {
    const problems: string[] = [];
    for (const file of files) {
      const code = codeOnly(fs.readFileSync(path.join(repo, file), "utf8"));
      const lines = code.split("\n");
      lines.forEach((line, i) => {
        for (const [pattern, why] of forbidden) {
          if (pattern.test(line)) problems.push(`${file}:${i + 1}: ${why}: ${line.trim()}`);
        }
      });
    }
    expect(problems).toEqual([]);
  });

  test("imports only its own modules", () => {
    const problems: string[] = [];
    for (const file of files) {
      const text = fs.readFileSync(path.join(repo, file), "utf8");
      for (const match of text.matchAll(import_pattern)) {
        const specifier = match[2]!;
        if (!specifier.startsWith(".")) problems.push(`${file}: imports ${specifier}`);
      }
    }
    expect(problems).toEqual([]);
  });

  test("the scan itself finds what it forbids", () => {
    // Guards against a pattern or the comment stripping silently matching nothing.
    const sample = codeOnly('const t = Date.now(); // Math.random\nconst s = "await";\nawait x;');
    const hits = sample.split("\n").flatMap((line) => forbidden.filter(([p]) => p.test(line)).map(([, why]) => why));
    expect(hits).toEqual(["a clock (time comes in through tick(realtime))", "asynchrony (the core is synchronous)"]);
  });
});
