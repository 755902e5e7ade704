/**
 * The data directory as a whole: created if missing, checked writable, and locked so that two
 * replica processes never share one (a second process would corrupt the journal). The lock is a
 * file holding the owner's pid; a lock left by a process that no longer runs (kill -9, power loss)
 * is taken over.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { StartupError } from "./startup_error.ts";

const lock_name = "LOCK";

export class DataDirectory {
  private constructor(
    readonly dir: string,
    private readonly lock_path: string,
  ) {}

  static open(dir: string): DataDirectory {
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (error) {
      throw new StartupError(`cannot create data directory ${dir}: ${(error as Error).message}`);
    }
    try {
      fs.accessSync(dir, fs.constants.W_OK | fs.constants.R_OK);
    } catch {
      throw new StartupError(`data directory ${dir} is not readable and writable by this user`);
    }
    const lock_path = path.join(dir, lock_name);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = fs.openSync(lock_path, "wx", 0o644);
        fs.writeSync(fd, `${process.pid}\n`);
        fs.closeSync(fd);
        return new DataDirectory(dir, lock_path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw new StartupError(`cannot lock data directory ${dir}: ${(error as Error).message}`);
      }
      const owner = Number(fs.readFileSync(lock_path, "utf8").trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
        throw new StartupError(`data directory ${dir} is in use by process ${owner}; each replica needs its own --data directory`);
      }
      fs.rmSync(lock_path, { force: true }); // left by a process that is gone
    }
    throw new StartupError(`cannot lock data directory ${dir}`);
  }

  release(): void {
    try {
      const owner = Number(fs.readFileSync(this.lock_path, "utf8").trim());
      if (owner === process.pid) fs.rmSync(this.lock_path, { force: true });
    } catch {
      // Already gone.
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
