/**
 * Invariant checks that stay on in production. A broken invariant stops the process (or the
 * simulator, at the step where it broke) instead of corrupting data further.
 */
export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) {
    throw new AssertionError(typeof message === "function" ? message() : message);
  }
}

export function unreachable(value: never, what: string): never {
  throw new AssertionError(`unreachable: unexpected ${what}: ${String(value)}`);
}
