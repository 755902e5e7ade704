/**
 * flock(2) through bun:ffi (Bun has no flock API). An advisory lock the kernel releases when the
 * process dies, however it dies: a process killed with kill -9 frees it at once, even while it
 * lingers as a zombie its parent has not reaped, which a pid check cannot tell from a live owner.
 *
 * glibc only (libc.so.6); where it cannot be loaded, `flockAvailable()` says so and the caller
 * falls back to something weaker.
 */
import { dlopen, FFIType, read } from "bun:ffi";

const LOCK_EX = 2;
const LOCK_NB = 4;
const EINTR = 4;
const EWOULDBLOCK = 11;

interface Libc {
  flock(fd: number, operation: number): number;
  errno(): number;
}

let libc: Libc | null | undefined;

function load(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    const lib = dlopen("libc.so.6", {
      flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
      __errno_location: { args: [], returns: FFIType.ptr },
    });
    libc = {
      flock: (fd, operation) => lib.symbols.flock(fd, operation),
      errno: () => {
        const location = lib.symbols.__errno_location();
        return location === null ? 0 : read.i32(location, 0);
      },
    };
  } catch {
    libc = null;
  }
  return libc;
}

/** Whether flock can be used here (glibc's libc.so.6 loads). */
export function flockAvailable(): boolean {
  return load() !== null;
}

export type FlockResult = "locked" | "held" | { errno: number };

/** Tries to take an exclusive lock on fd without waiting: "held" if another open file holds it. */
export function tryLockExclusive(fd: number): FlockResult {
  const c = load();
  if (c === null) return { errno: 0 };
  for (;;) {
    if (c.flock(fd, LOCK_EX | LOCK_NB) === 0) return "locked";
    const errno = c.errno();
    if (errno === EINTR) continue;
    return errno === EWOULDBLOCK ? "held" : { errno };
  }
}
