import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DataDirectory } from "./data_directory.ts";
import { StartupError } from "./startup_error.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-datadir-"));
  dirs.push(dir);
  return dir;
}

test("a locked directory is refused until its holder releases it; LOCK names the holder", () => {
  const dir = path.join(tempDir(), "replica");
  const first = DataDirectory.open(dir);
  expect(fs.readFileSync(path.join(dir, "LOCK"), "utf8")).toBe(`${process.pid}\n`);
  // flock conflicts between two open files even within one process.
  expect(() => DataDirectory.open(dir)).toThrow(StartupError);
  expect(() => DataDirectory.open(dir)).toThrow(
    `data directory ${dir} is in use by process ${process.pid}; each replica needs its own --data directory`,
  );
  first.release();
  const second = DataDirectory.open(dir);
  second.release();
});

test("a stale LOCK left by a process that is gone does not block (no pid is trusted)", () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, "LOCK"), "1\n"); // pid 1 is alive, but holds no lock on the file
  const directory = DataDirectory.open(dir);
  expect(fs.readFileSync(path.join(dir, "LOCK"), "utf8")).toBe(`${process.pid}\n`);
  directory.release();
});

test("a directory that cannot be created is one clear error", () => {
  const file = path.join(tempDir(), "file");
  fs.writeFileSync(file, "");
  expect(() => DataDirectory.open(path.join(file, "sub"))).toThrow(/cannot create data directory/);
});
