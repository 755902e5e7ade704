/**
 * Helpers for the lib/vsr unit tests: hash-chained prepare headers to build logs from, and what
 * the fake hosts share of Replica.
 */
import { assert } from "../util/assert.ts";
import { Command, Header, finalize } from "../net/codec.ts";

/** Prepare headers for ops from..to of `view`, each naming the one before as its parent (the first
 * names `parent`); `salt` (in the timestamp) makes a different chain of the same ops. */
export function prepareChain(to: number, options: { view?: number; parent?: bigint; from?: number; salt?: number } = {}): Header[] {
  const from = options.from ?? 1;
  assert(from >= 1 && to >= from - 1, () => `a chain from op ${from} to op ${to}`);
  const headers: Header[] = [];
  let parent = options.parent ?? 0n;
  for (let op = from; op <= to; op++) {
    const h = new Header();
    h.command = Command.prepare;
    h.cluster = 1n;
    h.op = op;
    h.view = options.view ?? 1;
    h.parent = parent;
    h.timestamp = options.salt ?? 0;
    const header = finalize(h).header;
    headers.push(header);
    parent = header.checksum;
  }
  return headers;
}

/** Replica.commitKnown for the fake hosts: the highest commit number heard of, verified
 * (commit_max) or not (commit_hint), which repair and state sync aim at. */
export function commitKnown(numbers: { readonly commit_max: number; readonly commit_hint: number }): number {
  return Math.max(numbers.commit_max, numbers.commit_hint);
}

/** A whole flush of a Journal or DurableState in a unit test: begin, then completed at once. */
export function flushNow<T>(part: { flushBegin(): void; flushed(): T }): T {
  part.flushBegin();
  return part.flushed();
}
