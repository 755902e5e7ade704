/**
 * The random workload of toastyfs_random_client: M concurrent clients issue random puts
 * (conditional too), gets, deletes, stats and lists on a small key space so that they collide, and
 * every operation is recorded (history_recorder.ts) for the linearizability check. The operation
 * mix is the simulator's (sim/client.ts), so the two find the same kinds of bugs.
 *
 * Determinism: every choice comes from a seeded Prng, one stream per client forked from the seed
 * in client order, and a plan never depends on replies or timing. So a seed fixes each client's
 * sequence of planned operations (kind, key, condition kind, value tag and size; printed as a
 * digest). What replies fill in (the version an if_version names, whether an if_version falls back
 * to if_absent because the client has seen no version of the key yet) and the interleaving of the
 * clients are up to the cluster, as is timing.
 *
 * Keys carry a per-run random prefix, so runs against the same cluster never read each other's
 * values (the checker would take a value it never saw written for a bug).
 */
import type { AuthKeys } from "../net/auth/secret.ts";
import type { TlsFiles } from "../net/tls.ts";
import { randomBytes } from "node:crypto";
import { Prng } from "../util/prng.ts";
import { checksum } from "../util/checksum.ts";
import type { Address } from "../net/address.ts";
import type { HistoryInput, HistoryOutput } from "./history.ts";
import { Client, operation_timeout_ms_default } from "../client/client.ts";
import { HistoryRecorder, mapClientError, outcomes, type Outcome, type PendingCall } from "./history_recorder.ts";

export type PutCondition = "none" | "if_version" | "if_absent";

export type PlannedOperation =
  | { kind: "put"; key: number; tag: string; condition: PutCondition; filler: number }
  | { kind: "get"; key: number }
  | { kind: "delete"; key: number; conditional: boolean }
  | { kind: "stat"; key: number }
  | { kind: "list"; prefix: string; after: string; limit: number };

export type OperationKind = PlannedOperation["kind"];
export const operation_kinds: readonly OperationKind[] = ["put", "get", "delete", "stat", "list"];

/** Largest filler after a value's tag; 2% of puts are 4–12 KiB instead. */
export const value_filler_max = 64;

export function logicalKey(key: number): string {
  return `k${key}`;
}

/**
 * One client's operations, drawn from its own stream. Every plan takes the same draws whatever
 * happened before, so the sequence depends only on (seed, client).
 */
export class OperationPlanner {
  private readonly prng: Prng;
  private counter = 0;

  constructor(
    prng: Prng,
    readonly client: number,
    readonly keys: number,
  ) {
    this.prng = prng;
  }

  /** The planners of clients 0..count-1 for a seed; client i's plan does not depend on count. */
  static forSeed(seed: number, count: number, keys: number): OperationPlanner[] {
    const root = new Prng(seed);
    return Array.from({ length: count }, (_, i) => new OperationPlanner(root.fork(), i, keys));
  }

  next(): PlannedOperation {
    const p = this.prng;
    const key = p.int(this.keys);
    const roll = p.int(100);
    // Drawn whether used or not, so later plans do not depend on this one's branch.
    const chance = p.float();
    const extra = p.u32();
    if (roll < 45) {
      this.counter += 1;
      const tag = `c${this.client}.${this.counter}`;
      const condition: PutCondition = roll < 30 ? "none" : chance < 0.8 ? "if_version" : "if_absent";
      const big = (extra & 0xff) < 5; // about 2%
      const filler = big ? 4096 + ((extra >>> 8) % 8192) : (extra >>> 8) % (value_filler_max + 1);
      return { kind: "put", key, tag, condition, filler };
    }
    if (roll < 70) return { kind: "get", key };
    if (roll < 80) return { kind: "delete", key, conditional: chance < 0.3 };
    if (roll < 88) return { kind: "stat", key };
    const prefix = ["", "k", logicalKey(extra % this.keys)][(extra >>> 16) % 3]!;
    const after = chance < 0.5 ? "" : logicalKey((extra >>> 8) % this.keys);
    const limit = 1 + ((extra >>> 24) % (this.keys + 1));
    return { kind: "list", prefix, after, limit };
  }
}

/** A digest of planned operations, to show that a seed replays the same plan. */
export class PlanDigest {
  private readonly encoder = new TextEncoder();
  private state = 0n;

  add(client: number, index: number, plan: PlannedOperation): void {
    // Order-independent across clients (they interleave), order-dependent within one (index).
    this.state ^= checksum(this.encoder.encode(`${client}/${index}/${JSON.stringify(plan)}`));
  }

  get hex(): string {
    return this.state.toString(16).padStart(16, "0");
  }
}

export interface RandomWorkloadOptions {
  addresses: Address[];
  seed: number;
  clients: number;
  /** Total operations over all clients (a list counts once): client i of m does
   * floor(ops / m) of them, plus one if i < ops % m, so a seed fixes every client's plan. */
  ops: number;
  keys: number;
  /** Start no new operation after this long. */
  duration_ms?: number;
  /** A client operation that no replica completes within this long is left open. */
  operation_timeout_ms?: number;
  /** Stop (stalled) when no operation has been answered for this long. Default: 3 operation
   * timeouts, so a lost quorum ends the run instead of timing out every planned operation. */
  stall_ms?: number;
  /** Checked before each new operation: true stops the run (in-flight operations finish). */
  shouldStop?: () => boolean;
  /** Called about once a second while the run goes on. */
  onProgress?: (progress: WorkloadProgress) => void;
  /** The cluster's keys, if it has a secret (docs/PROTOCOL.md §6). */
  secret?: AuthKeys | null;
  /** Mutual TLS files, if the cluster requires TLS (docs/PROTOCOL.md §6.8). */
  tls?: TlsFiles | null;
}

export interface WorkloadProgress {
  elapsed_ms: number;
  completed: number;
  open: number;
  errors: number;
}

export interface WorkloadResult {
  recorder: HistoryRecorder;
  /** counts[kind][outcome] */
  counts: Map<OperationKind, Map<Outcome, number>>;
  /** Operations issued (each list once). */
  issued: number;
  /** Operations that got a reply (ok, not_found, condition_failed). */
  completed: number;
  elapsed_ms: number;
  plan_digest: string;
  key_prefix: string;
  /** Unexpected errors (bugs): the first few messages. */
  errors: string[];
  error_count: number;
  /** The run stopped because nothing was answered for stall_ms. */
  stalled: boolean;
}

const errors_kept_max = 20;
const progress_interval_ms = 1000;

/** Runs the workload and returns the recorded history; never throws for a client error. */
export async function runRandomWorkload(options: RandomWorkloadOptions): Promise<WorkloadResult> {
  const recorder = new HistoryRecorder();
  const key_prefix = `rc-${randomBytes(6).toString("hex")}/`;
  const digest = new PlanDigest();
  const counts = new Map<OperationKind, Map<Outcome, number>>(operation_kinds.map((kind) => [kind, new Map(outcomes.map((o) => [o, 0]))]));
  const state = { issued: 0, completed: 0, open: 0, errors: [] as string[], error_count: 0, last_answer_ms: 0, stalled: false };
  const count = (kind: OperationKind, outcome: Outcome): void => {
    const row = counts.get(kind)!;
    row.set(outcome, row.get(outcome)! + 1);
    if (outcome === "open") state.open += 1;
    else if (outcome === "error") state.error_count += 1;
    else {
      state.completed += 1;
      state.last_answer_ms = recorder.now();
    }
  };
  const error = (message: string): void => {
    if (state.errors.length < errors_kept_max) state.errors.push(message);
  };
  const deadline = options.duration_ms === undefined ? Infinity : recorder.now() + options.duration_ms;
  const stall_ms = options.stall_ms ?? 3 * (options.operation_timeout_ms ?? operation_timeout_ms_default);
  const stop = (): boolean => {
    const now = recorder.now();
    if (now - state.last_answer_ms > stall_ms) state.stalled = true;
    return state.stalled || now >= deadline || (options.shouldStop?.() ?? false);
  };

  const progress = options.onProgress
    ? setInterval(
        () => options.onProgress!({ elapsed_ms: recorder.now(), completed: state.completed, open: state.open, errors: state.error_count }),
        progress_interval_ms,
      )
    : null;
  const planners = OperationPlanner.forSeed(options.seed, options.clients, options.keys);
  const run = async (planner: OperationPlanner): Promise<void> => {
    const client = new Client({
      addresses: options.addresses,
      client_id: BigInt(planner.client),
      secret: options.secret ?? null,
      tls: options.tls ?? null,
      ...(options.operation_timeout_ms !== undefined ? { operation_timeout_ms: options.operation_timeout_ms } : {}),
    });
    const worker = new WorkloadClient(planner, client, recorder, key_prefix, options.keys, count, error);
    try {
      const quota = Math.floor(options.ops / options.clients) + (planner.client < options.ops % options.clients ? 1 : 0);
      for (let index = 0; index < quota && !stop(); index++) {
        state.issued += 1;
        const plan = planner.next();
        digest.add(planner.client, index, plan);
        await worker.execute(plan);
      }
    } finally {
      await client.close();
    }
  };
  try {
    await Promise.all(planners.map(run));
  } finally {
    if (progress !== null) clearInterval(progress);
  }
  return {
    recorder,
    counts,
    issued: state.issued,
    completed: state.completed,
    elapsed_ms: recorder.now(),
    plan_digest: digest.hex,
    key_prefix,
    errors: state.errors,
    error_count: state.error_count,
    stalled: state.stalled,
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One client: runs planned operations one at a time and records them. */
class WorkloadClient {
  /** The last version this client saw per key (for conditional puts and deletes). */
  private readonly versions = new Map<string, number>();

  constructor(
    private readonly planner: OperationPlanner,
    private readonly client: Client,
    private readonly recorder: HistoryRecorder,
    private readonly prefix: string,
    private readonly keys: number,
    private readonly count: (kind: OperationKind, outcome: Outcome) => void,
    private readonly error: (message: string) => void,
  ) {}

  async execute(plan: PlannedOperation): Promise<void> {
    if (plan.kind === "list") return this.list(plan);
    const key = logicalKey(plan.key);
    const full = this.prefix + key;
    let input: HistoryInput;
    let call: () => Promise<HistoryOutput>;
    switch (plan.kind) {
      case "put": {
        const known = this.versions.get(key);
        const value = makeValue(plan.tag, plan.filler);
        input = { kind: "put", key, value: plan.tag };
        const options: { if_version?: number; if_absent?: boolean } = {};
        if (plan.condition === "if_version" && known !== undefined) input.if_version = options.if_version = known;
        else if (plan.condition !== "none") input.if_absent = options.if_absent = true;
        call = async () => ({ status: "ok", version: (await this.client.put(full, value, options)).version });
        break;
      }
      case "get":
        input = { kind: "get", key };
        call = async () => {
          const got = await this.client.get(full);
          return { status: "ok", version: got.version, value: tagOf(got.value) };
        };
        break;
      case "delete": {
        const known = this.versions.get(key);
        input = { kind: "delete", key };
        const options: { if_version?: number } = {};
        if (plan.conditional && known !== undefined) input.if_version = options.if_version = known;
        call = async () => ({ status: "ok", version: (await this.client.delete(full, options)).version });
        break;
      }
      case "stat":
        input = { kind: "exists", key };
        call = async () => ({ status: "ok", version: (await this.client.stat(full)).version });
        break;
    }
    const pending = this.recorder.begin(this.planner.client);
    let output: HistoryOutput | null;
    let outcome: Outcome;
    try {
      output = await call();
      outcome = "ok";
    } catch (error) {
      const mapped = mapClientError(error);
      output = mapped.output;
      outcome = mapped.outcome;
      if (mapped.outcome === "error") this.error(`client ${this.planner.client}: ${plan.kind} ${full}: ${mapped.message}`);
    }
    this.recorder.finish(pending, input, output);
    this.count(plan.kind, outcome);
    if (output?.status === "ok") {
      if (input.kind === "delete") this.versions.delete(key);
      else this.versions.set(key, output.version);
    }
  }

  /** A list is recorded as one "exists" observation per key of the key space it covered. */
  private async list(plan: Extract<PlannedOperation, { kind: "list" }>): Promise<void> {
    const pending = this.recorder.begin(this.planner.client);
    let page: Awaited<ReturnType<Client["list"]>>;
    try {
      page = await this.client.list(this.prefix + plan.prefix, {
        after: plan.after === "" ? "" : this.prefix + plan.after,
        limit: plan.limit,
      });
    } catch (error) {
      // An unanswered list observed nothing: open reads are not recorded (the checker drops them).
      const mapped = mapClientError(error);
      if (mapped.outcome === "error")
        this.error(`client ${this.planner.client}: list ${this.prefix}${plan.prefix} after ${plan.after}: ${mapped.message}`);
      this.count("list", mapped.outcome);
      return;
    }
    const ret = this.recorder.returnTime(pending);
    const problem = this.recordList(pending, ret, plan, page);
    if (problem !== null) {
      this.error(`client ${this.planner.client}: list ${this.prefix}${plan.prefix} after ${plan.after}: ${problem}`);
      this.count("list", "error");
      return;
    }
    this.count("list", "ok");
  }

  private recordList(
    pending: PendingCall,
    ret: number,
    plan: Extract<PlannedOperation, { kind: "list" }>,
    page: Awaited<ReturnType<Client["list"]>>,
  ): string | null {
    if (page.entries.length > plan.limit) return `returned ${page.entries.length} entries, over the limit of ${plan.limit}`;
    const seen = new Map<string, number>();
    let last = "";
    for (const entry of page.entries) {
      const full = decoder.decode(entry.key);
      if (!full.startsWith(this.prefix + plan.prefix)) return `returned ${JSON.stringify(full)}, outside the prefix`;
      const key = full.slice(this.prefix.length);
      if ((plan.after !== "" && key <= plan.after) || key <= last)
        return `returned ${JSON.stringify(full)} out of order or at or before "after"`;
      seen.set(key, entry.version);
      last = key;
    }
    for (let k = 0; k < this.keys; k++) {
      const key = logicalKey(k);
      if (!key.startsWith(plan.prefix) || (plan.after !== "" && key <= plan.after) || (page.truncated && key > last)) continue;
      const version = seen.get(key);
      const output: HistoryOutput = version === undefined ? { status: "not_found" } : { status: "ok", version };
      this.recorder.record(pending, { kind: "exists", key }, output, ret);
    }
    return null;
  }
}

/** A value: its tag, "|", then filler bytes (the checker sees only the tag). */
export function makeValue(tag: string, filler: number): Uint8Array {
  const head = encoder.encode(`${tag}|`);
  const value = new Uint8Array(head.length + filler);
  value.set(head, 0);
  for (let i = head.length; i < value.length; i++) value[i] = (i * 31 + tag.length) & 0xff;
  return value;
}

/** The tag of a value written by makeValue; a value without one is reported as itself (quoted),
 * which the checker then flags, since no put wrote it. */
export function tagOf(value: Uint8Array): string {
  const head = decoder.decode(value.subarray(0, Math.min(value.length, 64)));
  const bar = head.indexOf("|");
  return bar < 0 ? `(untagged value of ${value.length} bytes)` : head.slice(0, bar);
}
