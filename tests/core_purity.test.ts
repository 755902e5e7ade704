/**
 * The deterministic core (lib/vsr, lib/store, lib/storage) does no I/O of its own, reads no clock,
 * draws no unseeded randomness and never awaits (docs/DESIGN.md §3): the simulator replays a seed exactly
 * only if that holds. The simulator would notice a violation only by luck (a seed that happens to
 * diverge), so this scans the source for the ways it could be broken.
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  importSpecifiers,
  layeringViolations,
  lib_file_lines_max,
  long_files_allowed,
  longFiles,
  type SourceFile,
} from "./support/layering.ts";

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
    for (const file of [
      "lib/vsr/replica.ts",
      "lib/store/object_store.ts",
      "lib/storage/file_storage.ts",
      "lib/net/codec.ts",
      "lib/util/checksum.ts",
    ]) {
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

/** Every .ts file under dir (tests included), with its repository-relative path and text. */
function allSources(dir: string): SourceFile[] {
  const out: SourceFile[] = [];
  for (const entry of fs.readdirSync(path.join(repo, dir), { withFileTypes: true })) {
    const relative = `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...allSources(relative));
    else if (entry.name.endsWith(".ts")) out.push({ path: relative, source: fs.readFileSync(path.join(repo, relative), "utf8") });
  }
  return out;
}

describe("what lib may import (tests/support/layering.ts)", () => {
  test("the repository obeys every rule", () => {
    const files = allSources("lib");
    expect(files.map((f) => f.path)).toContain("lib/vsr/replica.ts");
    expect(layeringViolations(files)).toEqual([]);
  });

  test("imports are found in every form, and not in comments", () => {
    const source = [
      "import { a,",
      '  b } from "./multi.ts";',
      'import type { T } from "../types.ts";',
      'export { c } from "./reexport.ts";',
      'export * from "./star.ts";',
      'import "./side_effect.ts";',
      'const m = await import("./dynamic.ts");',
      '// import { x } from "./commented.ts";',
      '/* import { y } from "./block_commented.ts"; */',
      'export const s = "not an import";',
    ].join("\n");
    expect(importSpecifiers(source)).toEqual([
      "./multi.ts",
      "../types.ts",
      "./reexport.ts",
      "./star.ts",
      "./side_effect.ts",
      "./dynamic.ts",
    ]);
  });

  // The new purity rules fail when violated: each made-up file below breaks one.
  const violations: [string, SourceFile][] = [
    ["lib imports sim", { path: "lib/client/x.ts", source: 'import { Simulator } from "../../sim/simulator.ts";' }],
    ["lib imports tests", { path: "lib/store/x.ts", source: 'import { TestCluster } from "../../tests/support/cluster.ts";' }],
    ["lib imports bench", { path: "lib/net/x.ts", source: 'export { measure } from "../../bench/measure.ts";' }],
    ["lib imports cmd", { path: "lib/node/x.ts", source: 'const m = await import("../../cmd/format.ts");' }],
    ["lib imports scripts", { path: "lib/check/x.ts", source: 'import "../../scripts/sweep.ts";' }],
    ["lib/vsr imports lib/storage", { path: "lib/vsr/x.ts", source: 'import { FsError } from "../storage/fs.ts";' }],
    ["lib/vsr imports lib/node", { path: "lib/vsr/deep/x.ts", source: 'import type { Logger } from "../../node/log.ts";' }],
    ["lib/client imports lib/node", { path: "lib/client/x.ts", source: 'import type {\n  ReplicaStatus,\n} from "../node/status.ts";' }],
    ["a lib/vsr part imports the replica", { path: "lib/vsr/x.ts", source: 'import type { Replica } from "./replica.ts";' }],
    ["a lib/vsr part's test imports the replica", { path: "lib/vsr/x.test.ts", source: 'import { Replica } from "./replica";' }],
    [
      "a lib/client test imports lib/node",
      { path: "lib/client/x.test.ts", source: 'import { ReplicaNode } from "../node/replica_node.ts";' },
    ],
  ];
  for (const [rule, file] of violations) {
    test(`the rule "${rule}" reports a file that breaks it`, () => {
      const problems = layeringViolations([file]);
      expect(problems.length).toBe(1);
      expect(problems[0]!.startsWith(`${file.path}: imports `)).toBe(true);
    });
  }

  test("allowed imports are not reported", () => {
    const allowed: SourceFile[] = [
      { path: "lib/vsr/x.ts", source: 'import type { Storage } from "./storage.ts";\nimport { Header } from "../net/codec.ts";' },
      // Unit tests beside the protocol use the simulator's harness and real storage.
      {
        path: "lib/vsr/x.test.ts",
        source: 'import { TestCluster } from "../../sim/test_cluster.ts";\nimport { FsError } from "../storage/fs.ts";',
      },
      {
        path: "lib/client/x.ts",
        source: 'import type { ReplicaStatus } from "../net/status_codec.ts";\nimport { randomBytes } from "node:crypto";',
      },
      { path: "lib/check/x.ts", source: 'import { Client } from "../client/client.ts";' },
      // The replica's own test, and the replica importing its parts; a part named like the replica.
      { path: "lib/vsr/replica.test.ts", source: 'import { Replica } from "./replica.ts";' },
      { path: "lib/vsr/replica.ts", source: 'import { Primary, type PrimaryHost } from "./primary.ts";' },
      { path: "lib/vsr/x.ts", source: 'import { y } from "./replica_state.ts";' },
      // Outside lib/vsr the Replica is driven directly.
      { path: "lib/node/x.ts", source: 'import { Replica } from "../vsr/replica.ts";' },
      // Outside lib the rules do not apply.
      { path: "sim/x.ts", source: 'import { Replica } from "../lib/vsr/replica.ts";\nimport "../tests/support/cluster.ts";' },
      { path: "lib/node/x.ts", source: 'import { FileStorage } from "../storage/file_storage.ts";' },
      // A path that only starts with a forbidden folder's name.
      { path: "lib/client/x.ts", source: 'import { y } from "../nodes/y.ts";' },
    ];
    expect(layeringViolations(allowed)).toEqual([]);
  });
});

describe(`no production file in lib above ${lib_file_lines_max} lines`, () => {
  test("the repository obeys it, with no file allowed over", () => {
    expect(longFiles(allSources("lib"), long_files_allowed)).toEqual([]);
    expect([...long_files_allowed.keys()]).toEqual([]);
  });

  test("the rule reports a file one line over, and not one at the limit, a test, or a file outside lib", () => {
    const lines = (n: number) => "x;\n".repeat(n);
    expect(
      longFiles([
        { path: "lib/vsr/long.ts", source: lines(lib_file_lines_max + 1) },
        { path: "lib/vsr/at_limit.ts", source: lines(lib_file_lines_max) },
        { path: "lib/vsr/long.test.ts", source: lines(3 * lib_file_lines_max) },
        { path: "sim/long.ts", source: lines(3 * lib_file_lines_max) },
      ]),
    ).toEqual([`lib/vsr/long.ts: ${lib_file_lines_max + 1} lines (at most ${lib_file_lines_max})`]);
  });

  test("a file with a ceiling is reported only past its ceiling", () => {
    const lines = (n: number) => "x;\n".repeat(n);
    const allowed = new Map([["lib/vsr/big.ts", 2000]]);
    expect(longFiles([{ path: "lib/vsr/big.ts", source: lines(2000) }], allowed)).toEqual([]);
    expect(longFiles([{ path: "lib/vsr/big.ts", source: lines(2001) }], allowed)).toEqual(["lib/vsr/big.ts: 2001 lines (at most 2000)"]);
  });
});
