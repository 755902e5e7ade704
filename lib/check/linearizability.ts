/**
 * Per-key linearizability checker for client histories (lib/check/history.ts).
 *
 * A history of a key-value store is linearizable iff each key's sub-history is (P-compositionality,
 * Horn & Kroening), so the history is partitioned by key and every partition is checked on its own
 * with the Wing–Gong/Lowe (WGL) depth-first search, as Porcupine does: operations are lifted out of
 * a doubly-linked list of call/return entries in some order that respects real time, and a cache of
 * (linearized set, model state) configurations already explored prunes the search.
 *
 * Operations without a reply (ret === null) return at +infinity: they may take effect at any point
 * after their call, or never. They get no return entry, so they never force a backtrack, and the
 * search succeeds once every *completed* operation is linearized. Because "never" is always an
 * option for them, the cache prunes by dominance rather than equality: a configuration is skipped
 * if one already entered had the same completed operations, the same state (or one differing only
 * by a lower version floor), and open operations left over that can do whatever this one's can
 * (a subset of its open operations used, up to stronger stand-ins): that one has every
 * continuation this one has. Without that, k open writes would cost up to 2^k configurations. See
 * KeySearch.enterCache for why this is sound. Two more reductions keep unanswered writes cheap:
 * open writes with identical inputs (after giving the values nobody read one placeholder) are used
 * in call order only (earlierTwins), and an open write that overwrites the open write just before
 * it is not tried there (overwritesOpenPredecessor).
 *
 * Many concurrent clients on few keys (32+ clients, ~10 operations in flight per key) need more:
 * plain WGL tries concurrent operations in every order. Versions come from a counter that only
 * grows, and that orders most of the search:
 * - deadlines (deadlineOf): a completed operation that reports version w (or names it in
 *   if_version) can only take effect while the key's version floor is at most w, and floors never
 *   decrease; a configuration in which some pending completed operation missed its deadline is
 *   dead. So completed writes are applied in version order, and a write is never tried before a
 *   read of the version it replaces;
 * - forced choices (phase 0, KeySearch.run): a completed operation that leaves the state exactly as
 *   it is (a read that agrees with it, a not_found, a condition_failed) is linearized at once, and
 *   its configuration is never revisited for alternatives;
 * - a version has one value: states that contradict what completed gets read are dead
 *   (KeySearch.contradictsReads);
 * - prechecks (findImpossibility): necessary conditions checked in O(n log n) before the search,
 *   which otherwise finds such violations only after exhausting every linearization of what comes
 *   before them (a read of an older version than one reported before it was called, two puts
 *   conditional on the same version both succeeding, a value or version nobody wrote).
 *
 * Deterministic: keys are checked in sorted order; no randomness, no clock.
 */
import type { History, HistoryInput, HistoryOperation, HistoryOutput } from "./history.ts";
import { assert, unreachable } from "../util/assert.ts";

export interface LinearizabilityResult {
  /** False only when some key is definitely not linearizable. */
  ok: boolean;
  /** Keys whose sub-history was searched (on failure: up to and including the failing key). */
  keys_checked: number;
  /**
   * Set (with ok: true) when the search of some key ran out of its step budget before reaching a
   * verdict: the history may or may not be linearizable. ok stays true so that a budget never turns
   * into a false alarm; callers report unknown as a warning. key and reason name the first such key.
   * A definite failure on any other key still wins (ok: false, unknown unset).
   */
  unknown?: boolean;
  /** When !ok (or unknown): the key. */
  key?: string;
  /** When !ok (or unknown): why, with the longest partial linearization found. */
  reason?: string;
  /** When !ok: the failing key's sub-history, sorted by call. */
  operations?: HistoryOperation[];
  /** Search steps over all keys checked (candidates tried plus backtracks; a key whose
   * prechecks found a violation counts none). */
  steps?: number;
}

/** Per-key step budget: far beyond what the usual history needs (a few steps per operation). */
export const default_step_budget = 5_000_000;

export interface CheckOptions {
  /** Per-key step budget of the search (default_step_budget). */
  step_budget?: number;
  /**
   * Whether to run findImpossibility before each key's search (default true). It never changes a
   * verdict, only how fast some violations are found; false leaves every verdict to the search
   * (tests use it to exercise the search on violations the prechecks would catch).
   */
  prechecks?: boolean;
}

export function checkLinearizable(history: History, options?: CheckOptions): LinearizabilityResult {
  const budget = options?.step_budget ?? default_step_budget;
  const prechecks = options?.prechecks ?? true;
  assert(Number.isSafeInteger(budget) && budget > 0, `step_budget must be a positive integer, got ${budget}`);
  for (const op of history) validateOperation(op);

  const partitions = partitionByKey(history);
  const keys = [...partitions.keys()].sort();
  let steps = 0;
  let first_unknown: { key: string; reason: string } | null = null;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const operations = partitions.get(key)!;
    const impossible = prechecks ? findImpossibility(operations) : null;
    const outcome: KeyOutcome =
      impossible !== null ? { verdict: "fail", steps: 0, reason: impossible } : new KeySearch(operations, budget).run();
    steps += outcome.steps;
    if (outcome.verdict === "fail") {
      return { ok: false, keys_checked: i + 1, key, reason: `key ${JSON.stringify(key)}: ${outcome.reason}`, operations, steps };
    }
    if (outcome.verdict === "unknown" && first_unknown === null) {
      first_unknown = { key, reason: `checker budget exceeded on key ${JSON.stringify(key)}: ${outcome.reason}` };
    }
  }
  if (first_unknown !== null) {
    return { ok: true, unknown: true, keys_checked: keys.length, key: first_unknown.key, reason: first_unknown.reason, steps };
  }
  return { ok: true, keys_checked: keys.length, steps };
}

/**
 * Necessary conditions for a key's sub-history, checked in O(n log n) before the search: the
 * reason the history cannot be linearized, or null if these checks pass. They only speed up
 * failures the search would find anyway (it may take long to: it must first exhaust every way of
 * linearizing what comes before), so they never change a verdict, only the reason given.
 *
 * 1. A version is produced once: by a completed put that reports it, or by an open put whose
 *    version a later reply reveals; and it has one value. A state with version w is left only by a
 *    write, and every write makes a new version, above the floor: so the value a key has while its
 *    version is w is the same whenever it is observed. Two completed puts reporting w, or two
 *    values reported for w, cannot both be right.
 * 2. What a completed operation observes must have been written by an operation that could take
 *    effect before it (called no later than it returned): a value and version read by a get (a
 *    completed put of both, or an open put of the value); a version reported by a list, a delete,
 *    or named by a successful if_version (a completed put of it, or any open put).
 * 3. Versions only grow along a linearization (the floor). A successful put needs the floor at
 *    most its deadline (deadlineOf) and leaves it at its version: two puts whose ranges
 *    (deadline, version] overlap each need to come before the other (two puts conditional on the
 *    same version, say).
 * 4. Likewise, an operation q that returned before an operation r was called leaves the floor at
 *    least at the version q reports, and r cannot take effect once the floor exceeds r's deadline.
 */
function findImpossibility(ops: HistoryOperation[]): string | null {
  const producer = new Map<number, HistoryOperation>();
  const value_seen = new Map<number, HistoryOperation>();
  const open_puts = new Map<string, number>();
  let first_open_put = Infinity;
  for (const op of ops) {
    if (op.input.kind !== "put") continue;
    if (op.output === null) {
      open_puts.set(op.input.value, Math.min(op.call, open_puts.get(op.input.value) ?? Infinity));
      first_open_put = Math.min(first_open_put, op.call);
    } else if (op.output.status === "ok") {
      const other = producer.get(op.output.version);
      if (other !== undefined)
        return `two completed puts report version ${op.output.version}:\n    ${formatOperation(other)}\n    ${formatOperation(op)}`;
      producer.set(op.output.version, op);
    }
  }
  const valueAt = (op: HistoryOperation): string | undefined => {
    if (op.output?.status !== "ok") return undefined;
    if (op.input.kind === "put") return op.input.value;
    return op.input.kind === "get" ? op.output.value : undefined;
  };
  for (const op of ops) {
    if (op.output?.status !== "ok" || op.input.kind !== "get") continue;
    const w = op.output.version;
    const first = value_seen.get(w) ?? producer.get(w);
    if (first !== undefined && valueAt(first) !== op.output.value) {
      return `version ${w} is reported with two values:\n    ${formatOperation(first)}\n    ${formatOperation(op)}`;
    }
    if (first === undefined) value_seen.set(w, op);
  }
  for (const op of ops) {
    if (op.output?.status !== "ok" || op.ret === null) continue;
    const ret = op.ret;
    let version: number | undefined;
    if (op.input.kind === "put") version = op.input.if_version;
    else version = op.output.version;
    if (version === undefined) continue;
    // A completed put that reports the version is its only producer; else an open put must be.
    const made = producer.get(version);
    const available =
      made !== undefined ? made.call : op.input.kind === "get" ? (open_puts.get(op.output.value!) ?? Infinity) : first_open_put;
    if (available <= ret) continue;
    const what = op.input.kind === "get" ? "this value with this version" : `version ${version}`;
    return `${formatOperation(op)}: no put that could take effect before it returned wrote ${what}`;
  }
  const writes = ops
    .filter((op) => op.output?.status === "ok" && op.input.kind === "put")
    .map((op) => ({ op, from: deadlineOf(op.input, op.output), to: (op.output as { version: number }).version }))
    .sort((a, b) => a.from - b.from);
  let widest: { op: HistoryOperation; to: number } | null = null;
  for (const write of writes) {
    if (widest !== null && write.from < widest.to) {
      return (
        "two successful puts each need the other to come after them: each needs the key's version at most what it " +
        `replaced and leaves it higher than that (versions only grow):` +
        `\n    ${formatOperation(widest.op)}\n    ${formatOperation(write.op)}`
      );
    }
    if (widest === null || write.to > widest.to) widest = write;
  }
  const completed = ops.filter((op) => op.ret !== null);
  const by_return = [...completed].sort((a, b) => a.ret! - b.ret!);
  const constrained = completed.filter((op) => deadlineOf(op.input, op.output) !== Infinity).sort((a, b) => a.call - b.call);
  let next = 0;
  let highest: HistoryOperation | null = null;
  let highest_floor = -Infinity;
  for (const op of constrained) {
    while (next < by_return.length && by_return[next]!.ret! < op.call) {
      const q = by_return[next++]!;
      if (q.output!.status === "ok" && q.output!.version > highest_floor) {
        highest_floor = q.output!.version;
        highest = q;
      }
    }
    const deadline = deadlineOf(op.input, op.output);
    if (highest !== null && highest_floor > deadline) {
      return (
        `${formatOperation(op)} can only take effect while the key's version is at most ${deadline}, ` +
        `but it was called after this operation had returned, leaving the version at least ${highest_floor} ` +
        `(versions only grow):\n    ${formatOperation(highest)}`
      );
    }
  }
  return null;
}

/** Human-readable history, one line per operation: client, [call..ret], input -> output. */
export function formatHistory(ops: HistoryOperation[]): string {
  return ops.map(formatOperation).join("\n");
}

export function formatOperation(op: HistoryOperation): string {
  const ret = op.ret === null ? "inf)" : `${op.ret}]`;
  return `client ${op.client} [${op.call}..${ret} ${formatInput(op.input)} -> ${formatOutput(op.output)}`;
}

function formatInput(input: HistoryInput): string {
  const key = JSON.stringify(input.key);
  switch (input.kind) {
    case "put": {
      const conditions = [
        input.if_version !== undefined ? ` if_version=${input.if_version}` : "",
        input.if_absent ? " if_absent" : "",
      ].join("");
      return `put ${key}=${JSON.stringify(input.value)}${conditions}`;
    }
    case "get":
      return `get ${key}`;
    case "delete":
      return `delete ${key}${input.if_version !== undefined ? ` if_version=${input.if_version}` : ""}`;
    case "exists":
      return `exists ${key} (list)`;
    default:
      return unreachable(input, "history input kind");
  }
}

function formatOutput(output: HistoryOutput | null): string {
  if (output === null) return "(no reply)";
  if (output.status !== "ok") return output.status;
  const value = output.value !== undefined ? ` value=${JSON.stringify(output.value)}` : "";
  return `ok version=${output.version}${value}`;
}

function formatState(state: KeyState): string {
  if (!state.exists) return `absent, next version > ${state.floor}`;
  const version = state.version === null ? `unknown (> ${state.floor})` : String(state.version);
  return `value=${JSON.stringify(state.value)} version=${version}`;
}

function validateOperation(op: HistoryOperation): void {
  assert(Number.isFinite(op.call), () => `history: call time must be finite: ${formatOperation(op)}`);
  assert((op.ret === null) === (op.output === null), () => `history: output must be null iff ret is: ${formatOperation(op)}`);
  assert(op.ret === null || op.ret >= op.call, () => `history: ret before call: ${formatOperation(op)}`);
}

/** The key's operations sorted by call (ties: earlier return first, then history order). */
function partitionByKey(history: History): Map<string, HistoryOperation[]> {
  const partitions = new Map<string, HistoryOperation[]>();
  for (const op of history) {
    let list = partitions.get(op.input.key);
    if (list === undefined) partitions.set(op.input.key, (list = []));
    list.push(op);
  }
  for (const list of partitions.values()) {
    // Array.prototype.sort is stable, so equal (call, ret) keep history order.
    list.sort((a, b) => a.call - b.call || (a.ret ?? Infinity) - (b.ret ?? Infinity));
  }
  return partitions;
}

// ---------------------------------------------------------------------------------------------
// The sequential model of one key.

/**
 * What is known about a key at a point of a linearization. Versions come from one revision counter
 * shared by all keys, so a key's versions strictly increase but skip values. An open write makes
 * the version unknown (version: null) until a later read reveals it.
 */
export interface KeyState {
  readonly exists: boolean;
  /** The value tag while exists, else null. */
  readonly value: string | null;
  /** The current version when known; null when absent or unknown. */
  readonly version: number | null;
  /** Every version the key can have from now on, and its current one when unknown, is > floor. */
  readonly floor: number;
}

export const initial_key_state: KeyState = { exists: false, value: null, version: null, floor: 0 };

/** "unknown": the condition is if_version x and the current version is unknown but could be x. */
type ConditionTruth = "holds" | "fails" | "unknown";

function evaluateCondition(state: KeyState, if_version: number | undefined, if_absent: boolean | undefined): ConditionTruth {
  if (if_absent && state.exists) return "fails";
  if (if_version === undefined) return "holds";
  if (!state.exists) return "fails";
  if (state.version !== null) return state.version === if_version ? "holds" : "fails";
  return if_version > state.floor ? "unknown" : "fails";
}

/** The current version implied by a condition that held: known, or x when if_version x held. */
function versionIfHeld(state: KeyState, truth: ConditionTruth, if_version: number | undefined): number | null {
  if (truth === "unknown") {
    assert(if_version !== undefined, "an unknown condition must be an if_version");
    return if_version;
  }
  return state.version;
}

/** Whether a reply reporting version w is consistent with the current version. */
function versionMatches(state: KeyState, w: number): boolean {
  return state.version === null ? w > state.floor : w === state.version;
}

/** After a read that saw version w: the version is now known. */
function bindVersion(state: KeyState, w: number): KeyState {
  if (state.version === w) return state;
  return { exists: state.exists, value: state.value, version: w, floor: Math.max(state.floor, w) };
}

/**
 * The state after applying `input` with reply `output` (null: no reply) in `state`, or null if the
 * pair cannot happen there. For an open operation this is the state if it took effect; the
 * alternative, that it never did, is the checker's business (it may leave it out). Open reads have
 * no effect, so null: there is nothing to linearize.
 */
export function stepModel(state: KeyState, input: HistoryInput, output: HistoryOutput | null): KeyState | null {
  switch (input.kind) {
    case "put":
      return output === null ? stepOpenPut(state, input) : stepPut(state, input, output);
    case "get":
      return output === null ? null : stepRead(state, output, input.kind);
    case "exists":
      return output === null ? null : stepRead(state, output, input.kind);
    case "delete":
      return output === null ? stepOpenDelete(state, input) : stepDelete(state, input, output);
    default:
      return unreachable(input, "history input kind");
  }
}

type PutInput = Extract<HistoryInput, { kind: "put" }>;
type DeleteInput = Extract<HistoryInput, { kind: "delete" }>;

function stepPut(state: KeyState, input: PutInput, output: HistoryOutput): KeyState | null {
  const truth = evaluateCondition(state, input.if_version, input.if_absent);
  const conditional = input.if_version !== undefined || input.if_absent === true;
  switch (output.status) {
    case "ok": {
      if (truth === "fails") return null;
      // The new version exceeds the one replaced (bound to x by an unknown if_version) and floor.
      const replaced = versionIfHeld(state, truth, input.if_version);
      const w = output.version;
      if (!(w > state.floor) || (replaced !== null && !(w > replaced))) return null;
      return { exists: true, value: input.value, version: w, floor: w };
    }
    case "condition_failed":
      return conditional && truth !== "holds" ? state : null;
    case "not_found":
      return null;
    default:
      return unreachable(output, "put output status");
  }
}

/** An unanswered put that took effect: its value is known, its version is not (beyond > floor). */
function stepOpenPut(state: KeyState, input: PutInput): KeyState | null {
  const truth = evaluateCondition(state, input.if_version, input.if_absent);
  if (truth === "fails") return null;
  const replaced = versionIfHeld(state, truth, input.if_version);
  return { exists: true, value: input.value, version: null, floor: Math.max(state.floor, replaced ?? state.floor) };
}

function stepRead(state: KeyState, output: HistoryOutput, kind: "get" | "exists"): KeyState | null {
  switch (output.status) {
    case "ok":
      if (!state.exists || !versionMatches(state, output.version)) return null;
      // A list reports presence and version only; a get also returns the value.
      if (kind === "get" && output.value !== state.value) return null;
      return bindVersion(state, output.version);
    case "not_found":
      return state.exists ? null : state;
    case "condition_failed":
      return null;
    default:
      return unreachable(output, "read output status");
  }
}

function stepDelete(state: KeyState, input: DeleteInput, output: HistoryOutput): KeyState | null {
  // A delete of an absent key reports not_found whatever its condition.
  if (!state.exists) return output.status === "not_found" ? state : null;
  const truth = evaluateCondition(state, input.if_version, undefined);
  switch (output.status) {
    case "ok": {
      if (truth === "fails") return null;
      // The reply carries the version deleted: the current one (x itself if an unknown if_version held).
      const w = output.version;
      const matches = truth === "unknown" ? w === input.if_version : versionMatches(state, w);
      return matches ? deletedState(state, w) : null;
    }
    case "condition_failed":
      return input.if_version !== undefined && truth !== "holds" ? state : null;
    case "not_found":
      return null;
    default:
      return unreachable(output, "delete output status");
  }
}

function stepOpenDelete(state: KeyState, input: DeleteInput): KeyState | null {
  // Deleting an absent key changes nothing: the same as never linearizing it.
  if (!state.exists) return null;
  const truth = evaluateCondition(state, input.if_version, undefined);
  if (truth === "fails") return null;
  const deleted = versionIfHeld(state, truth, input.if_version);
  return deletedState(state, deleted ?? state.floor);
}

function deletedState(state: KeyState, deleted_version: number): KeyState {
  return { exists: false, value: null, version: null, floor: Math.max(state.floor, deleted_version) };
}

/**
 * The largest floor at which a completed operation can still take effect; Infinity if none. A
 * successful put of version w needs floor < w, and an if_version x needs the version to be x,
 * so floor <= x (a known version equals the floor; an unknown one exceeds it). A read or delete that
 * reports version w needs it current: floor <= w. Floors never decrease along a linearization
 * (every step keeps max(floor, ...)), so once the floor exceeds the deadline of a completed
 * operation not yet linearized, no continuation linearizes it: the configuration is dead.
 * Replies other than ok (not_found, condition_failed) can fit again later: no deadline.
 */
function deadlineOf(input: HistoryInput, output: HistoryOutput | null): number {
  if (output === null || output.status !== "ok") return Infinity;
  const w = output.version;
  switch (input.kind) {
    case "put":
      return input.if_version !== undefined ? Math.min(w - 1, input.if_version) : w - 1;
    case "delete":
      return input.if_version !== undefined ? Math.min(w, input.if_version) : w;
    case "get":
    case "exists":
      return w;
    default:
      return unreachable(input, "history input kind");
  }
}

/**
 * Everything about a state but its floor, injectively (the value goes last). Two states of one
 * shape differ only in floor, and the lower floor dominates: every check is "> floor" and every
 * step keeps floors ordered (max(floor, ...)), so whatever the higher floor allows, the lower does.
 * When the version is known the floor equals it, so then the shape says everything.
 */
function shapeKey(state: KeyState): string {
  if (!state.exists) return "a";
  return `e${state.version ?? "?"}:${state.value}`;
}

/** Whether state a allows every continuation that state b allows. */
function dominates(a: KeyState, b: KeyState): boolean {
  return a.floor <= b.floor && shapeKey(a) === shapeKey(b);
}

// ---------------------------------------------------------------------------------------------
// The WGL search over one key.

type KeyOutcome = { verdict: "ok"; steps: number } | { verdict: "fail" | "unknown"; steps: number; reason: string };

/** A configuration entered by the search: its linearized set and floor (its shape is the cache key). */
interface CacheNode {
  readonly closed: Uint32Array;
  readonly open: Uint32Array;
  readonly floor: number;
}

/** A lifted operation: enough to undo it and to resume the scan after it. */
interface Frame {
  entry: number;
  phase: Phase;
  state_before: KeyState;
  /** KeySearch.low before this operation was linearized. */
  low_before: number;
}

/**
 * Candidates of a configuration are the call entries before the first return entry, tried in four
 * passes. Phase 0: completed operations that leave the state exactly as it is (a read that agrees
 * with it, a not_found or condition_failed that fits); the first one that fits is a forced choice
 * (KeySearch.run says why nothing else need be tried). Phase 1: the other completed operations.
 * Phases 2 and 3: open ones, so an open write is applied only when nothing else fits, which keeps
 * the search near-linear on the usual histories. Phase 2 has the open operations that some other
 * one can stand in for (a conditional one, KeySearch.stronger), phase 3 those that stand in for
 * them (an unconditional put of a value nobody read, an unconditional delete): trying the weaker
 * one first lets the cache prune the stronger one used in its place (KeySearch.enterCache).
 */
type Phase = 0 | 1 | 2 | 3;

/** What tryLinearize did: entered the configuration, rejected the candidate, or found that the
 * current configuration fails (a forced candidate's configuration was pruned). */
enum Try {
  entered,
  rejected,
  configuration_fails,
}

const head = 0;
const end = -1;

/**
 * Why a "fail" verdict means the key's sub-history has no linearization, although the search
 * prunes. A continuation of a configuration is an order of the remaining operations that respects
 * real time and the model and contains every remaining completed operation. The search reports
 * failure only after giving up on every configuration it entered, the root included. Suppose the
 * root had a continuation anyway. Among the configurations entered, take G with a continuation σ
 * that is shortest, and among those with one of that length, G the shallowest. Rewrite σ so that
 * open twins are used in call order (earlierTwins): same length, same states. Its first operation
 * a is a candidate of G. Either G made a forced choice r instead (run: G+r has a continuation
 * shorter than σ), or G tried a (G+a has σ without a). Say the child C so obtained, with a
 * continuation shorter than σ, was not entered and given up on (that would contradict the choice
 * of G). Then it was rejected by:
 * - the model, a missed deadline (missesDeadline) or a state no linearization can pass through
 *   (contradictsReads): impossible, since C has a continuation;
 * - the twin rule: impossible, σ uses twins in call order and G's linearized twins are a prefix;
 * - overwritesOpenPredecessor (a open, and G = P+p with p open): P has the continuation a·σ[1:]
 *   (a fits P's state with a result dominating a's in σ; dropping p frees real time), as long as σ,
 *   and P is shallower than G, entered, given up: a contradiction. (If p is a's twin, the rewrite
 *   uses p for a, and G itself has the continuation σ[1:].)
 * - the cache: an entered configuration D dominates C (enterCache), so D has a continuation as
 *   short as C's, shorter than σ: a contradiction again.
 * So there was no continuation, and no linearization.
 */
class KeySearch {
  /** The operations to linearize (open reads dropped: they have no effect), in call order. */
  private readonly ops: HistoryOperation[];
  /** Per op: the input the model sees (canonicalInputs), and the value given to unread puts. */
  private readonly inputs: HistoryInput[];
  private readonly placeholder: string;
  /** Per open op: the previous open op with an identical input, which must be linearized first. */
  private readonly twin_before: Int32Array;
  /** Per op: whether it completed, and its bit in the closed or open bitset. */
  private readonly closed: Uint8Array;
  private readonly slot: Int32Array;
  private readonly closed_count: number;
  /** Entry lists: index 0 is the head sentinel; entries 1.. are calls and returns by time. */
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly entry_op: Int32Array;
  private readonly entry_is_call: Uint8Array;
  /** Call entry -> its return entry, or end for an open operation. */
  private readonly match: Int32Array;
  /** Per op: its deadline (deadlineOf); the completed ops with a finite one, by deadline. */
  private readonly deadline: Float64Array;
  private readonly by_deadline: Int32Array;
  /** What completed gets read: the value of a version, and the version of a value only one put
   * writes (contradictsReads). */
  private readonly value_of_version = new Map<number, string>();
  private readonly version_of_value = new Map<string, number>();
  /** Per op: whether its deadline is a version it needs current (not merely not yet exceeded). */
  private readonly exact: Uint8Array;
  /** Per op: the phase that tries it (0 stands for completed ops: phases 0 and 1). */
  private readonly pass: Uint8Array;
  /** Per open slot: its op. */
  private readonly open_op: Int32Array;
  /** Every op of by_deadline below this rank is linearized. */
  private low = 0;

  private readonly closed_bits: Uint32Array;
  private readonly open_bits: Uint32Array;
  /** Zobrist hash of closed_bits: two 32-bit halves, XOR-updated as bits flip. */
  private hash_lo = 0;
  private hash_hi = 0;
  private readonly cache = new Map<string, CacheNode[]>();

  private readonly stack: Frame[] = [];
  private state: KeyState = initial_key_state;
  private remaining: number;
  private steps = 0;

  /** The deepest partial linearization, by completed operations, for the failure report. */
  private best_closed = -1;
  private best_state: KeyState = initial_key_state;
  /** The path is copied lazily, at the next backtrack: copying it at every new best is quadratic. */
  private best_depth = 0;
  private best_saved = true;
  private best_path: number[] = [];

  constructor(
    operations: HistoryOperation[],
    private readonly budget: number,
  ) {
    this.ops = operations.filter((op) => !(op.output === null && (op.input.kind === "get" || op.input.kind === "exists")));
    const n = this.ops.length;
    this.closed = new Uint8Array(n);
    this.slot = new Int32Array(n);
    let closed_count = 0;
    let open_count = 0;
    for (let i = 0; i < n; i++) {
      const is_closed = this.ops[i]!.ret !== null;
      this.closed[i] = is_closed ? 1 : 0;
      this.slot[i] = is_closed ? closed_count++ : open_count++;
    }
    this.closed_count = closed_count;
    this.remaining = closed_count;
    ({ inputs: this.inputs, placeholder: this.placeholder } = canonicalInputs(this.ops));
    this.twin_before = earlierTwins(this.ops, this.inputs);
    this.closed_bits = new Uint32Array((closed_count + 31) >>> 5);
    this.open_bits = new Uint32Array((open_count + 31) >>> 5);

    const entries = n + closed_count;
    this.next = new Int32Array(entries + 1);
    this.prev = new Int32Array(entries + 1);
    this.entry_op = new Int32Array(entries + 1);
    this.entry_is_call = new Uint8Array(entries + 1);
    this.match = new Int32Array(entries + 1).fill(end);
    this.buildEntryList();
    this.pass = new Uint8Array(n);
    this.open_op = new Int32Array(open_count);
    for (let i = 0; i < n; i++) {
      if (this.closed[i] === 1) continue;
      this.open_op[this.slot[i]!] = i;
      this.pass[i] = this.isStrongOpen(i) ? 3 : 2;
    }
    const writers = new Map<string, number>();
    for (const op of this.ops) if (op.input.kind === "put") writers.set(op.input.value, (writers.get(op.input.value) ?? 0) + 1);
    for (const op of this.ops) {
      if (op.input.kind === "get" && op.output?.status === "ok" && op.output.value !== undefined) {
        this.value_of_version.set(op.output.version, op.output.value);
        if (writers.get(op.output.value) === 1) this.version_of_value.set(op.output.value, op.output.version);
      }
    }
    this.deadline = Float64Array.from(this.ops, (op) => deadlineOf(op.input, op.output));
    this.exact = Uint8Array.from(this.ops, (op, i) => {
      if (this.deadline[i] === Infinity) return 0;
      return op.input.kind !== "put" || (op.input.if_version !== undefined && op.input.if_version === this.deadline[i]) ? 1 : 0;
    });
    const with_deadline = [...this.ops.keys()].filter((i) => this.deadline[i] !== Infinity);
    this.by_deadline = Int32Array.from(with_deadline.sort((a, b) => this.deadline[a]! - this.deadline[b]! || a - b));
  }

  /**
   * Calls and returns by time. At equal times calls come first: a call at the instant of another
   * operation's return is concurrent with it, not after it (only call > ret orders two operations).
   */
  private buildEntryList(): void {
    interface Entry {
      time: number;
      is_call: boolean;
      op: number;
    }
    const list: Entry[] = [];
    this.ops.forEach((op, i) => {
      list.push({ time: op.call, is_call: true, op: i });
      if (op.ret !== null) list.push({ time: op.ret, is_call: false, op: i });
    });
    list.sort((a, b) => a.time - b.time || Number(b.is_call) - Number(a.is_call) || a.op - b.op);

    const call_entry = new Int32Array(this.ops.length).fill(end);
    let previous = head;
    list.forEach((e, i) => {
      const index = i + 1;
      this.entry_op[index] = e.op;
      this.entry_is_call[index] = e.is_call ? 1 : 0;
      if (e.is_call) {
        call_entry[e.op] = index;
      } else {
        assert(call_entry[e.op] !== end, "a return entry must follow its call entry");
        this.match[call_entry[e.op]!] = index;
      }
      this.next[previous] = index;
      this.prev[index] = previous;
      previous = index;
    });
    this.next[previous] = end;
  }

  /**
   * The depth-first search. A forced choice (phase 0) is never backtracked into: when the subtree
   * under it fails, so does its configuration, without trying its other candidates. Sound: say
   * configuration G has state s, r is a candidate of G with stepModel(s, r) === s, and G has a
   * continuation σ (a real-time respecting, model-respecting order of the remaining operations that
   * contains every remaining completed one). Then r·(σ without r) is one too:
   * - real time: r is a candidate, so it was called before every remaining completed operation
   *   returned, and nothing needs to come before it; moving it earlier frees what came after it;
   * - the model: from s, r leaves s, then σ's operations before r see the states they saw in σ.
   *   Where σ had r, in some state t, r also left t as it was: a not_found or condition_failed
   *   reply never changes the state it fits; a read of version w is identity in s only if s has
   *   version w, so floor w, and t's floor is at least w (floors never decrease), so it fits t only
   *   if t's version is w too, known, and then leaves t as it is. So σ's later states are unchanged.
   * So G's child G+r has a continuation (one shorter than σ), and if G+r has none, neither has G.
   */
  run(): KeyOutcome {
    if (this.remaining === 0) return { verdict: "ok", steps: 0 };
    let entry = this.next[head]!;
    let phase: Phase = 0;
    /** The current configuration is known to fail: backtrack without trying its candidates. */
    let exhausted = false;
    for (;;) {
      const candidate: { entry: number; phase: Phase } | null = exhausted ? null : this.nextCandidate(entry, phase);
      if (++this.steps > this.budget) return { verdict: "unknown", steps: this.steps - 1, reason: this.describeBest() };
      if (candidate === null) {
        // Every candidate of this configuration failed: undo the last choice and try the next one.
        // A forced choice (phase 0) was the only one its configuration needed: that one failed too.
        this.saveBest();
        const frame = this.stack.pop();
        if (frame === undefined) return { verdict: "fail", steps: this.steps, reason: this.describeBest() };
        this.undo(frame);
        exhausted = frame.phase === 0;
        entry = this.next[frame.entry]!;
        phase = frame.phase;
        continue;
      }
      const outcome = this.tryLinearize(candidate.entry, candidate.phase);
      if (outcome === Try.entered) {
        if (this.remaining === 0) return { verdict: "ok", steps: this.steps };
        entry = this.next[head]!;
        phase = 0;
      } else {
        exhausted = outcome === Try.configuration_fails;
        entry = this.next[candidate.entry]!;
        phase = candidate.phase;
      }
    }
  }

  /**
   * The first call entry at or after `entry` whose operation the phase tries, stopping at the first
   * return entry (an operation that returned before a call must be linearized before it). At the
   * end of the candidates, the next phase restarts from the head. null once phase 3 is exhausted.
   */
  private nextCandidate(entry: number, phase: Phase): { entry: number; phase: Phase } | null {
    for (;;) {
      if (entry === end || this.entry_is_call[entry] === 0) {
        if (phase === 3) return null;
        phase = (phase + 1) as Phase;
        entry = this.next[head]!;
        continue;
      }
      const op = this.entry_op[entry]!;
      if (phase <= 1 ? this.closed[op] === 1 : this.pass[op] === phase) return { entry, phase };
      entry = this.next[entry]!;
    }
  }

  /** Linearize the operation of call entry `entry` next, if the model, the deadlines and the cache allow it. */
  private tryLinearize(entry: number, phase: Phase): Try {
    const op = this.entry_op[entry]!;
    const twin = this.twin_before[op]!;
    if (twin !== -1 && !this.isLinearized(twin)) return Try.rejected;
    const after = stepModel(this.state, this.inputs[op]!, this.ops[op]!.output);
    if (after === null) return Try.rejected;
    // Phase 0 takes only operations that leave the state as it is (stepModel returns it itself).
    if (phase === 0 && after !== this.state) return Try.rejected;
    if (this.contradictsReads(after)) return Try.rejected;
    const low = this.firstPendingDeadline(op);
    if (this.missesDeadline(op, low, after)) return Try.rejected;
    if (this.overwritesOpenPredecessor(op, after)) return Try.rejected;
    this.flip(op);
    if (!this.enterCache(after)) {
      this.flip(op);
      return phase === 0 ? Try.configuration_fails : Try.rejected;
    }
    this.stack.push({ entry, phase, state_before: this.state, low_before: this.low });
    this.state = after;
    this.low = low;
    this.lift(entry);
    if (this.closed[op] === 1) this.remaining--;
    this.recordProgress();
    return Try.entered;
  }

  /**
   * Whether no linearization passes through `state`, by what completed gets read. A version is made
   * once and keeps one value until the next write makes a new one (findImpossibility, 1): so a
   * state whose version some get read has that get's value; and a state holding a value only one
   * put writes, which a get read at version w, has version w, or an unknown one that can still
   * become w (floor below w).
   */
  private contradictsReads(state: KeyState): boolean {
    if (!state.exists) return false;
    if (state.version !== null) {
      const value = this.value_of_version.get(state.version);
      if (value !== undefined && value !== state.value) return true;
    }
    const version = this.version_of_value.get(state.value!);
    if (version === undefined) return false;
    return state.version !== null ? state.version !== version : state.floor >= version;
  }

  /**
   * Whether, with `op` linearized and state `after`, some other completed operation not yet
   * linearized can no longer be (deadlineOf): the floor is past its deadline, or at it while the
   * operation needs exactly that version current and it is not.
   */
  private missesDeadline(op: number, low: number, after: KeyState): boolean {
    const order = this.by_deadline;
    if (low >= order.length) return false;
    const deadline = this.deadline[order[low]!]!;
    if (after.floor !== deadline) return after.floor > deadline;
    if (after.version === deadline) return false;
    for (let rank = low; rank < order.length && this.deadline[order[rank]!] === deadline; rank++) {
      const pending = order[rank]!;
      if (pending !== op && this.exact[pending] === 1 && !this.isLinearized(pending)) return true;
    }
    return false;
  }

  /**
   * The rank in by_deadline of the first completed operation with a deadline that is neither
   * linearized nor `op`. Every rank below low is linearized, and in a configuration the search
   * entered every linearized operation's deadline is at most the floor, every pending one's at
   * least the floor: so the scan passes over ties only.
   */
  private firstPendingDeadline(op: number): number {
    const order = this.by_deadline;
    let rank = this.low;
    while (rank < order.length) {
      const pending = order[rank]!;
      if (pending !== op && !this.isLinearized(pending)) break;
      rank++;
    }
    return rank;
  }

  /**
   * Whether open operation `op`, taken right after an open operation p, ends in a state that it
   * would reach (or dominate) without p: it overwrote p's effect. Then leaving p out dominates: the
   * parent configuration offers `op` as a candidate too (p removed no return entry), and that
   * sibling keeps p available. The parent tries the sibling, before or after p, so nothing is lost.
   * (If p is op's twin, the sibling is p's own configuration, an ancestor.) The cache cannot see
   * this, since the sibling may not have been entered yet; without it, k unanswered writes that
   * overwrite each other are tried in up to 2^k orders and subsets.
   */
  private overwritesOpenPredecessor(op: number, after: KeyState): boolean {
    if (this.closed[op] === 1) return false;
    const top = this.stack[this.stack.length - 1];
    if (top === undefined || this.closed[this.entry_op[top.entry]!] === 1) return false;
    const without = stepModel(top.state_before, this.inputs[op]!, null);
    return without !== null && dominates(without, after);
  }

  private isLinearized(op: number): boolean {
    const slot = this.slot[op]!;
    const bits = this.closed[op] === 1 ? this.closed_bits : this.open_bits;
    return (bits[slot >>> 5]! & (1 << (slot & 31))) !== 0;
  }

  private undo(frame: Frame): void {
    const op = this.entry_op[frame.entry]!;
    this.unlift(frame.entry);
    this.flip(op);
    if (this.closed[op] === 1) this.remaining++;
    this.state = frame.state_before;
    this.low = frame.low_before;
  }

  /** Toggle an operation's bit in the linearized set (and the hash, for completed ones). */
  private flip(op: number): void {
    const slot = this.slot[op]!;
    const bit = 1 << (slot & 31);
    if (this.closed[op] === 1) {
      this.closed_bits[slot >>> 5] ^= bit;
      this.hash_lo ^= zobrist(slot, 0);
      this.hash_hi ^= zobrist(slot, 1);
    } else {
      this.open_bits[slot >>> 5] ^= bit;
    }
  }

  /**
   * Record the current configuration (with state `after`) as entered; false, to prune it, if an
   * entered one D dominates it: the same completed operations, a dominating state (shapeKey, lower
   * floor), and open operations left over that can do whatever this one's can (openDominates). Then
   * every continuation of this configuration gives one of D, as long: an open operation x that D
   * has used but this one has not is replaced by its stand-in y, which D has not used. y was called
   * no later than x, and from every state x fits, y fits with a dominating result (stronger), so
   * the replaced continuation respects real time and the model. Entered configurations are the
   * ancestors on the stack and those whose subtree failed; see the note above KeySearch for why
   * pruning against them is sound.
   */
  private enterCache(after: KeyState): boolean {
    const key = `${this.hash_hi}:${this.hash_lo}:${shapeKey(after)}`;
    let bucket = this.cache.get(key);
    if (bucket === undefined) this.cache.set(key, (bucket = []));
    for (const node of bucket) {
      if (node.floor <= after.floor && equalWords(node.closed, this.closed_bits) && this.openDominates(node.open)) return false;
    }
    bucket.push({ closed: this.closed_bits.slice(), open: this.open_bits.slice(), floor: after.floor });
    return true;
  }

  /** An unconditional open put of a value nobody read, or an unconditional open delete. */
  private isStrongOpen(op: number): boolean {
    const input = this.inputs[op]!;
    if (input.kind === "put") return input.value === this.placeholder && input.if_version === undefined && !input.if_absent;
    return input.kind === "delete" && input.if_version === undefined;
  }

  /**
   * Whether open op y can stand in for open op x: y was called no later, and from every state in
   * which x fits, y fits with a dominating result. An unconditional put of the same value does:
   * where x's condition holds (the key absent, or its version x.if_version), it makes the same
   * state, or one with a lower floor (when x's if_version named an unknown version). Likewise an
   * unconditional delete for a conditional one; and identical inputs (twins).
   */
  private stronger(y: number, x: number): boolean {
    if (this.ops[y]!.call > this.ops[x]!.call) return false;
    const a = this.inputs[y]!;
    const b = this.inputs[x]!;
    if (a.kind === "put" && b.kind === "put") {
      if (a.value !== b.value) return false;
      if (a.if_version === undefined && !a.if_absent) return true;
      return a.if_version === b.if_version && (a.if_absent ?? false) === (b.if_absent ?? false);
    }
    if (a.kind === "delete" && b.kind === "delete") return a.if_version === undefined || a.if_version === b.if_version;
    return false;
  }

  /**
   * Whether the open ops used by a cached configuration (node_open) but not by the current one can
   * each be matched to a distinct open op used by the current one but not by node, that stands in
   * for it (stronger): then every open op left to the current configuration is left to node's,
   * or a stand-in for it is. With nothing to match, node used a subset.
   */
  private openDominates(node_open: Uint32Array): boolean {
    const xs: number[] = [];
    const ys: number[] = [];
    for (let w = 0; w < node_open.length; w++) {
      let only_node = node_open[w]! & ~this.open_bits[w]!;
      let only_now = this.open_bits[w]! & ~node_open[w]!;
      while (only_node !== 0) {
        const bit = 31 - Math.clz32(only_node);
        xs.push(this.open_op[w * 32 + bit]!);
        only_node &= ~(1 << bit);
      }
      while (only_now !== 0) {
        const bit = 31 - Math.clz32(only_now);
        ys.push(this.open_op[w * 32 + bit]!);
        only_now &= ~(1 << bit);
      }
    }
    if (xs.length === 0) return true;
    if (ys.length < xs.length) return false;
    // Greedy, earliest-called x first (fewest choices): it may miss a matching (then nothing is
    // pruned), never invent one.
    xs.sort((a, b) => this.ops[a]!.call - this.ops[b]!.call);
    const taken = new Uint8Array(ys.length);
    for (const x of xs) {
      let best = -1;
      for (let j = 0; j < ys.length; j++) {
        if (taken[j] === 1 || !this.stronger(ys[j]!, x)) continue;
        if (best === -1 || this.ops[ys[j]!]!.call > this.ops[ys[best]!]!.call) best = j;
      }
      if (best === -1) return false;
      taken[best] = 1;
    }
    return true;
  }

  /** Remove a call entry and its return entry from the list (dancing links: undone in LIFO order). */
  private lift(entry: number): void {
    this.unlink(entry);
    const ret = this.match[entry]!;
    if (ret !== end) this.unlink(ret);
  }

  private unlift(entry: number): void {
    const ret = this.match[entry]!;
    if (ret !== end) this.relink(ret);
    this.relink(entry);
  }

  private unlink(entry: number): void {
    const before = this.prev[entry]!;
    const after = this.next[entry]!;
    this.next[before] = after;
    if (after !== end) this.prev[after] = before;
  }

  private relink(entry: number): void {
    const before = this.prev[entry]!;
    const after = this.next[entry]!;
    this.next[before] = entry;
    if (after !== end) this.prev[after] = entry;
  }

  private recordProgress(): void {
    const done = this.closed_count - this.remaining;
    if (done <= this.best_closed) return;
    this.best_closed = done;
    this.best_state = this.state;
    this.best_depth = this.stack.length;
    this.best_saved = false;
  }

  /** Until the first backtrack after a new best, the stack still starts with the best path. */
  private saveBest(): void {
    if (this.best_saved) return;
    this.best_path = this.stack.slice(0, this.best_depth).map((frame) => this.entry_op[frame.entry]!);
    this.best_saved = true;
  }

  /** The longest partial linearization and the completed operation it could not extend past. */
  private describeBest(): string {
    this.saveBest();
    const linearized = new Set(this.best_path);
    const done = Math.max(this.best_closed, 0);
    let blocker: HistoryOperation | null = null;
    for (let i = 0; i < this.ops.length; i++) {
      const op = this.ops[i]!;
      if (op.ret === null || linearized.has(i)) continue;
      if (blocker === null || op.ret < blocker.ret!) blocker = op;
    }
    const tail = this.best_path
      .slice(-5)
      .map((i) => `\n    ${formatOperation(this.ops[i]!)}`)
      .join("");
    const path = this.best_path.length === 0 ? " (none)" : `${this.best_path.length > 5 ? "\n    ..." : ""}${tail}`;
    const stuck = blocker === null ? "" : `\n  first completed operation left out (earliest return): ${formatOperation(blocker)}`;
    return (
      `at most ${done} of ${this.closed_count} completed operations linearize; the longest partial linearization ends with:${path}` +
      `\n  state after it: ${formatState(this.best_state).replace(JSON.stringify(this.placeholder), "(an unanswered put's, never read)")}${stuck}`
    );
  }
}

/**
 * Open puts whose value no completed get returned differ only in that value, which nothing can
 * observe: give them one placeholder value (one no get returned), so that equal ones become twins.
 */
function canonicalInputs(ops: HistoryOperation[]): { inputs: HistoryInput[]; placeholder: string } {
  const read = new Set<string>();
  for (const op of ops) {
    if (op.output?.status === "ok" && op.output.value !== undefined) read.add(op.output.value);
  }
  let placeholder = "\u0000unread";
  while (read.has(placeholder)) placeholder += "\u0000";
  const inputs = ops.map((op) =>
    op.output === null && op.input.kind === "put" && !read.has(op.input.value) ? { ...op.input, value: placeholder } : op.input,
  );
  return { inputs, placeholder };
}

/**
 * Open operations with identical inputs (twins) are interchangeable but for their call times, and
 * an earlier call only allows more placements. So if a linearization uses m of a set of twins, the
 * m earliest-called, in call order, in the same places, also work: the search only tries a twin
 * once its predecessor is linearized. Without this, every choice of which unanswered write explains
 * an observation multiplies the configurations. For each op: its predecessor twin, or -1.
 */
function earlierTwins(ops: HistoryOperation[], inputs: HistoryInput[]): Int32Array {
  const last = new Map<string, number>();
  const twin_before = new Int32Array(ops.length).fill(-1);
  for (let i = 0; i < ops.length; i++) {
    if (ops[i]!.ret !== null) continue;
    const key = twinKey(inputs[i]!);
    twin_before[i] = last.get(key) ?? -1;
    last.set(key, i);
  }
  return twin_before;
}

/** Equal for inputs that mean the same; the key field is the same within a partition. */
function twinKey(input: HistoryInput): string {
  switch (input.kind) {
    case "put":
      return `put:${input.if_version ?? ""}:${input.if_absent ? 1 : 0}:${input.value}`;
    case "delete":
      return `delete:${input.if_version ?? ""}`;
    case "get":
    case "exists":
      return input.kind;
    default:
      return unreachable(input, "history input kind");
  }
}

function equalWords(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A fixed pseudo-random 32-bit value per (bit, half): Zobrist hashing of the linearized set. */
function zobrist(slot: number, half: 0 | 1): number {
  let z = (Math.imul(slot, 0x9e3779b9) ^ (half === 0 ? 0x2545f491 : 0x6b43a9b5)) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}
