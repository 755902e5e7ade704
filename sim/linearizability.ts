/**
 * Per-key linearizability checker for client histories (sim/history.ts).
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
 * by a lower version floor), and a subset of its open operations linearized: that one has every
 * continuation this one has. Without that, k open writes would cost up to 2^k configurations. See
 * KeySearch.enterCache for why this is sound. Two more reductions keep unanswered writes cheap:
 * open writes with identical inputs (after giving the values nobody read one placeholder) are used
 * in call order only (earlierTwins), and an open write that overwrites the open write just before
 * it is not tried there (overwritesOpenPredecessor).
 *
 * Deterministic: keys are checked in sorted order; no randomness, no clock.
 */
import type { History, HistoryInput, HistoryOperation, HistoryOutput } from "./history.ts";
import { assert, unreachable } from "../lib/util/assert.ts";

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
  /** Search steps over all keys checked (candidates tried plus backtracks). */
  steps?: number;
}

/** Per-key step budget: far beyond what the usual history needs (a few steps per operation). */
export const default_step_budget = 5_000_000;

export function checkLinearizable(history: History, options?: { step_budget?: number }): LinearizabilityResult {
  const budget = options?.step_budget ?? default_step_budget;
  assert(Number.isSafeInteger(budget) && budget > 0, `step_budget must be a positive integer, got ${budget}`);
  for (const op of history) validateOperation(op);

  const partitions = partitionByKey(history);
  const keys = [...partitions.keys()].sort();
  let steps = 0;
  let first_unknown: { key: string; reason: string } | null = null;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const operations = partitions.get(key)!;
    const outcome = new KeySearch(operations, budget).run();
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

type KeyOutcome =
  | { verdict: "ok"; steps: number }
  | { verdict: "fail" | "unknown"; steps: number; reason: string };

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
}

/**
 * Candidates of a configuration are the call entries before the first return entry. Completed
 * operations are tried first (phase 0), open ones after (phase 1): an open write is then applied
 * only when nothing else fits, which keeps the search near-linear on the usual histories.
 */
type Phase = 0 | 1;

const head = 0;
const end = -1;

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

  run(): KeyOutcome {
    if (this.remaining === 0) return { verdict: "ok", steps: 0 };
    let entry = this.next[head]!;
    let phase: Phase = 0;
    for (;;) {
      const candidate = this.nextCandidate(entry, phase);
      if (++this.steps > this.budget) return { verdict: "unknown", steps: this.steps - 1, reason: this.describeBest() };
      if (candidate === null) {
        // Every candidate of this configuration failed: undo the last choice and try the next one.
        this.saveBest();
        const frame = this.stack.pop();
        if (frame === undefined) return { verdict: "fail", steps: this.steps, reason: this.describeBest() };
        this.undo(frame);
        entry = this.next[frame.entry]!;
        phase = frame.phase;
        continue;
      }
      if (this.tryLinearize(candidate.entry, candidate.phase)) {
        if (this.remaining === 0) return { verdict: "ok", steps: this.steps };
        entry = this.next[head]!;
        phase = 0;
      } else {
        entry = this.next[candidate.entry]!;
        phase = candidate.phase;
      }
    }
  }

  /**
   * The first call entry at or after `entry` whose operation the phase tries, stopping at the first
   * return entry (an operation that returned before a call must be linearized before it). Phase 0
   * then restarts from the head as phase 1. null once both phases are exhausted.
   */
  private nextCandidate(entry: number, phase: Phase): { entry: number; phase: Phase } | null {
    for (;;) {
      if (entry === end || this.entry_is_call[entry] === 0) {
        if (phase === 1) return null;
        phase = 1;
        entry = this.next[head]!;
        continue;
      }
      const wanted_closed = phase === 0 ? 1 : 0;
      if (this.closed[this.entry_op[entry]!] === wanted_closed) return { entry, phase };
      entry = this.next[entry]!;
    }
  }

  /** Linearize the operation of call entry `entry` next, if the model and the cache allow it. */
  private tryLinearize(entry: number, phase: Phase): boolean {
    const op = this.entry_op[entry]!;
    const twin = this.twin_before[op]!;
    if (twin !== -1 && !this.isLinearized(twin)) return false;
    const after = stepModel(this.state, this.inputs[op]!, this.ops[op]!.output);
    if (after === null) return false;
    if (this.overwritesOpenPredecessor(op, after)) return false;
    this.flip(op);
    if (!this.enterCache(after)) {
      this.flip(op);
      return false;
    }
    this.stack.push({ entry, phase, state_before: this.state });
    this.state = after;
    this.lift(entry);
    if (this.closed[op] === 1) this.remaining--;
    this.recordProgress();
    return true;
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
   * entered one dominates it: the same completed operations, a dominating state (shapeKey), and a
   * subset of its open operations linearized, so every continuation of this one is one of that one.
   *
   * Entered configurations are the ancestors on the stack and those whose subtree failed. Pruning
   * against either is sound: if a pruned configuration K had a successful continuation, so would
   * its dominator D, with one at most as long. Take, among the configurations the search entered
   * and gave up on, one G with the shortest successful continuation σ (if any). G's child on σ was
   * either entered and given up on (contradicting the choice of G), or pruned in favour of a
   * dominator, whose continuation is shorter than σ. That dominator is entered by the search (if it
   * was itself pruned, follow its dominator: under overwritesOpenPredecessor each hop is shallower,
   * so this ends), and the search gives up on every configuration it entered before reporting
   * failure: again a contradiction. So failure means there is no linearization.
   */
  private enterCache(after: KeyState): boolean {
    const key = `${this.hash_hi}:${this.hash_lo}:${shapeKey(after)}`;
    let bucket = this.cache.get(key);
    if (bucket === undefined) this.cache.set(key, (bucket = []));
    for (const node of bucket) {
      if (node.floor <= after.floor && equalWords(node.closed, this.closed_bits) && subsetWords(node.open, this.open_bits)) return false;
    }
    bucket.push({ closed: this.closed_bits.slice(), open: this.open_bits.slice(), floor: after.floor });
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
    const tail = this.best_path.slice(-5).map((i) => `\n    ${formatOperation(this.ops[i]!)}`).join("");
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

/** Whether the bits of a are all set in b. */
function subsetWords(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if ((a[i]! & ~b[i]!) !== 0) return false;
  return true;
}

/** A fixed pseudo-random 32-bit value per (bit, half): Zobrist hashing of the linearized set. */
function zobrist(slot: number, half: 0 | 1): number {
  let z = (Math.imul(slot, 0x9e3779b9) ^ (half === 0 ? 0x2545f491 : 0x6b43a9b5)) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}
