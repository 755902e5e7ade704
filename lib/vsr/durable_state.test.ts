import { describe, expect, test } from "bun:test";
import { Header } from "../net/codec.ts";
import { AssertionError } from "../util/assert.ts";
import { DurableState } from "./durable_state.ts";
import { flushNow } from "./test_support.ts";
import type { CheckpointId, VsrState } from "./storage.ts";

const K = 8;

function id(op: number): CheckpointId {
  return { op, digest: BigInt(op) * 7n + 1n, checksum: BigInt(op) * 11n + 3n };
}

function state(view: number, log_view: number, checkpoint: CheckpointId, incarnation = 5): VsrState {
  return { incarnation, view, log_view, commit_max: checkpoint.op, view_headers: [], checkpoint };
}

function fresh(): DurableState {
  return new DurableState(0, K, id(0));
}

describe("DurableState", () => {
  test("a fresh replica has nothing durable but the root checkpoint", () => {
    const d = fresh();
    expect(d.view).toBe(-1);
    expect(d.log_view).toBe(-1);
    expect(d.checkpoint.op).toBe(0);
    expect(d.pending).toBeNull();
    expect(d.in_flight).toBeNull();
    d.invariants(false);
  });

  test("a superblock becomes durable only when flushed, and says what became durable", () => {
    const d = fresh();
    d.record(state(1, 1, d.toWrite()));
    expect(d.view).toBe(-1);
    expect(d.in_flight?.view).toBe(1);
    const written = flushNow(d);
    expect(written?.incarnation).toBe(5);
    expect(d.view).toBe(1);
    expect(d.log_view).toBe(1);
    expect(d.in_flight).toBeNull();
    expect(flushNow(d)).toBeNull();
  });

  test("a write queued while a flush is in flight waits for the next one", () => {
    const d = fresh();
    d.record(state(1, 1, d.toWrite()));
    d.flushBegin();
    d.record(state(2, 2, d.toWrite()));
    expect(d.in_flight?.view).toBe(2);
    expect(d.flushed()?.view).toBe(1);
    expect(d.view).toBe(1);
    expect(d.in_flight?.view).toBe(2);
    d.invariants(false);
    expect(flushNow(d)?.view).toBe(2);
    expect(d.in_flight).toBeNull();
  });

  test("a later write replaces the queued one", () => {
    const d = fresh();
    d.record(state(1, 1, d.toWrite()));
    d.record(state(2, 1, d.toWrite()));
    flushNow(d);
    expect(d.view).toBe(2);
    expect(d.log_view).toBe(1);
  });

  test("the durable view never goes backwards", () => {
    const d = fresh();
    d.record(state(3, 3, d.toWrite()));
    flushNow(d);
    expect(() => d.record(state(2, 2, d.toWrite()))).toThrow(AssertionError);
    expect(() => d.record(state(3, 2, d.toWrite()))).toThrow(AssertionError);
  });

  test("a taken checkpoint is pending until a superblock naming it is durable", () => {
    const d = fresh();
    for (let op = K; op <= 2 * K; op += K) d.remember(id(op));
    const taken = id(2 * K);
    d.remember(taken);
    d.written_checkpoint(taken);
    expect(d.pending).toBe(taken);
    expect(d.toWrite()).toBe(taken);
    expect(d.checkpoint.op).toBe(0);
    d.invariants(false);
    d.record(state(1, 1, d.toWrite()));
    expect(d.pending).toBe(taken);
    flushNow(d);
    expect(d.checkpoint).toBe(taken);
    expect(d.pending).toBeNull();
  });

  test("a pending checkpoint must be above the durable one, except while recovering", () => {
    const d = fresh();
    d.restart(4, 4, id(3 * K));
    d.synced(id(K), id(0));
    expect(() => d.invariants(false)).toThrow(AssertionError);
    d.invariants(true);
    // writeState never names a checkpoint older than the durable one.
    expect(() => d.toWrite()).toThrow(AssertionError);
  });

  test("a checkpoint is taken only after its predecessor, and its id is known before its file is written", () => {
    const d = fresh();
    expect(() => d.taking(id(2 * K))).toThrow(AssertionError);
    const taken = id(K);
    expect(d.taking(taken).op).toBe(0);
    expect(d.pending).toBeNull();
    expect(d.idFor(2 * K + 1, null)).toBe(taken);
    d.written_checkpoint(taken);
    expect(d.pending).toBe(taken);
  });

  test("a checkpoint file written must have its id remembered", () => {
    const d = fresh();
    expect(() => d.written_checkpoint(id(K))).toThrow(AssertionError);
  });

  test("a prepare names the checkpoint this replica took, or the one its parent names", () => {
    const d = fresh();
    // Ops 1..2K name checkpoint 0; op 2K+1 names checkpoint K.
    expect(d.idFor(1, null)?.op).toBe(0);
    expect(d.idFor(2 * K, null)?.op).toBe(0);
    expect(d.idFor(2 * K + 1, null)).toBeNull();
    const parent = new Header();
    parent.op = 2 * K;
    parent.checkpoint_op = K;
    parent.checkpoint_digest = 99n;
    parent.context = 77n;
    expect(d.idFor(2 * K + 1, parent)).toEqual({ op: K, digest: 99n, checksum: 77n });
    parent.checkpoint_op = 0;
    expect(d.idFor(2 * K + 1, parent)).toBeNull();
    d.remember(id(K));
    expect(d.idFor(2 * K + 1, null)).toEqual(id(K));
  });

  test("checkpoint ids are kept for 4 intervals", () => {
    const d = fresh();
    for (let op = K; op <= 10 * K; op += K) d.remember(id(op));
    expect(d.previousOf(10 * K)?.op).toBe(9 * K);
    expect(d.previousOf(7 * K)?.op).toBe(6 * K);
    expect(d.previousOf(6 * K)).toBeUndefined();
    d.invariants(false);
  });

  test("a checkpoint is missing at an interval boundary past the newest written, and retried once its predecessor is known", () => {
    const d = fresh();
    expect(d.missing(0)).toBe(false);
    expect(d.missing(K - 1)).toBe(false);
    expect(d.missing(K)).toBe(true);
    expect(d.retryable(K)).toBe(true);
    expect(d.retryable(2 * K)).toBe(false);
    d.remember(id(K));
    d.written_checkpoint(d.previousOf(2 * K)!);
    expect(d.missing(K)).toBe(false);
    expect(d.missing(2 * K)).toBe(true);
    expect(d.retryable(2 * K)).toBe(true);
  });

  test("a restart loads what the superblock holds", () => {
    const d = fresh();
    d.restart(7, 6, id(2 * K));
    expect(d.view).toBe(7);
    expect(d.log_view).toBe(6);
    expect(d.checkpoint.op).toBe(2 * K);
    expect(d.idFor(3 * K + 1, null)?.op).toBe(2 * K);
    d.invariants(false);
    const lost = fresh();
    lost.restart(7, 6, null);
    expect(lost.view).toBe(7);
    expect(lost.checkpoint.op).toBe(0);
  });

  test("a sync remembers its target and predecessor and leaves the target pending", () => {
    const d = fresh();
    d.synced(id(5 * K), id(4 * K));
    expect(d.pending?.op).toBe(5 * K);
    expect(d.previousOf(5 * K)?.op).toBe(4 * K);
    expect(d.missing(5 * K)).toBe(false);
    d.invariants(false);
  });
});
