/**
 * The TypeScript is formatted by Prettier with the repository's .prettierrc.json (a width of 140
 * columns). An unformatted change fails here, naming the files to run
 * `node_modules/.bin/prettier --write FILE` on.
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const repo = path.resolve(import.meta.dir, "..");
const prettier = path.join(repo, "node_modules", ".bin", "prettier");

function run(args: string[], cwd: string): { code: number; out: string } {
  const result = Bun.spawnSync([prettier, ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  return { code: result.exitCode, out: `${result.stdout.toString()}${result.stderr.toString()}` };
}

describe("formatting", () => {
  test("every TypeScript file in the repository is formatted", () => {
    const { code, out } = run(["--list-different", "."], repo);
    expect(out.trim() === "" ? "" : `not formatted (run node_modules/.bin/prettier --write on them):\n${out}`).toBe("");
    expect(code).toBe(0);
  }, 300_000);

  test("the check notices an unformatted file, with the repository's settings", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-format-"));
    try {
      fs.copyFileSync(path.join(repo, ".prettierrc.json"), path.join(dir, ".prettierrc.json"));
      fs.writeFileSync(path.join(dir, "bad.ts"), "const  x = {a:1,\n b:2}\n");
      fs.writeFileSync(path.join(dir, "good.ts"), "const x = { a: 1, b: 2 };\n");
      const { code, out } = run(["--list-different", "bad.ts", "good.ts"], dir);
      expect(code).not.toBe(0);
      expect(out.trim()).toBe("bad.ts");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
