/**
 * The data directory as a whole: created if missing, checked writable, and locked so that two
 * replica processes never share one (a second process would corrupt the journal).
 *
 * The lock is flock(2) on the file LOCK, held for the life of the process: the kernel releases it
 * when the process dies, however it dies, so a replica killed with kill -9 can be restarted at
 * once, even while its parent has not reaped it (a zombie's pid still looks alive). LOCK also
 * holds the owner's pid, for the message that refuses a second process. It is never deleted: a
 * process that opened LOCK just before another deleted it would lock a file nobody else sees.
 *
 * Without glibc (flock unavailable) the pid in LOCK is the lock, as before: created exclusively,
 * taken over when its pid is gone or a zombie, removed at a clean stop.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { StartupError } from "./startup_error.ts";
import { flockAvailable, tryLockExclusive } from "./flock.ts";

const lock_name = "LOCK";

export class DataDirectory {
  private constructor(
    readonly dir: string,
    private readonly lock_path: string,
    /** The open LOCK file whose flock this process holds; null with the pid-file fallback. */
    private lock_fd: number | null,
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
    return flockAvailable() ? DataDirectory.flock(dir, lock_path) : DataDirectory.pidFile(dir, lock_path);
  }

  private static flock(dir: string, lock_path: string): DataDirectory {
    let fd: number;
    try {
      fd = fs.openSync(lock_path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    } catch (error) {
      throw new StartupError(`cannot lock data directory ${dir}: ${(error as Error).message}`);
    }
    const result = tryLockExclusive(fd);
    if (result !== "locked") {
      const owner = result === "held" ? readOwner(lock_path) : null;
      fs.closeSync(fd);
      if (result === "held") throw inUse(dir, owner);
      throw new StartupError(
        `cannot lock data directory ${dir}: flock failed with errno ${result.errno} (a file system without locks, such as some NFS mounts, cannot hold a data directory)`,
      );
    }
    try {
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, `${process.pid}\n`, 0);
    } catch (error) {
      fs.closeSync(fd);
      throw new StartupError(`cannot write the lock file ${lock_path}: ${(error as Error).message}`);
    }
    return new DataDirectory(dir, lock_path, fd);
  }

  private static pidFile(dir: string, lock_path: string): DataDirectory {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = fs.openSync(lock_path, "wx", 0o644);
        fs.writeSync(fd, `${process.pid}\n`);
        fs.closeSync(fd);
        return new DataDirectory(dir, lock_path, null);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST")
          throw new StartupError(`cannot lock data directory ${dir}: ${(error as Error).message}`);
      }
      const owner = readOwner(lock_path);
      if (owner !== null && owner !== process.pid && running(owner)) throw inUse(dir, owner);
      fs.rmSync(lock_path, { force: true }); // left by a process that is gone
    }
    throw new StartupError(`cannot lock data directory ${dir}`);
  }

  release(): void {
    if (this.lock_fd !== null) {
      fs.closeSync(this.lock_fd); // releases the flock; LOCK stays (see the file comment)
      this.lock_fd = null;
      return;
    }
    if (readOwner(this.lock_path) === process.pid) fs.rmSync(this.lock_path, { force: true });
  }
}

function inUse(dir: string, owner: number | null): StartupError {
  return new StartupError(
    `data directory ${dir} is in use by ${owner === null ? "another process" : `process ${owner}`}; each replica needs its own --data directory`,
  );
}

function readOwner(lock_path: string): number | null {
  try {
    const owner = Number(fs.readFileSync(lock_path, "utf8").trim());
    return Number.isInteger(owner) && owner > 0 ? owner : null;
  } catch {
    return null;
  }
}

/** Alive and not a zombie (a killed process its parent has not reaped yet holds nothing). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return true; // no /proc: trust kill(0)
  }
}
