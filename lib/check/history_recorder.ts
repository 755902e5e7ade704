/**
 * Records a client history against a real cluster (toastyfs_random_client) in the format the
 * simulator records and checks (lib/check/history.ts), and checks it with the same checker
 * (lib/check/linearizability.ts).
 *
 * Time is real: performance.now(), in milliseconds since the recorder was made, kept to the
 * microsecond. A call time is rounded down and a return time up, so rounding only ever widens an
 * operation's interval: that can hide a violation shorter than a microsecond, never invent one.
 *
 * How a client call's ending maps into the history (the same mapping as sim/client.ts):
 * - a reply (ok, not_found, condition_failed) is an output;
 * - no_quorum (no replica completed it in time), evicted (the session was dropped while it was
 *   outstanding) and closed leave it OPEN (ret null): it may or may not have taken effect, at any
 *   time after its call;
 * - any other error (a malformed reply, a value that fails its checksum, a request the cluster
 *   rejected as invalid) is a bug: the operation is left open and the error is reported.
 */
import type { History, HistoryInput, HistoryOperation, HistoryOutput } from "./history.ts";
import { checkLinearizable, formatHistory } from "./linearizability.ts";
import { ClientError } from "../client/errors.ts";

/** How one operation ended, for the counts a run prints. */
export type Outcome = "ok" | "not_found" | "condition_failed" | "open" | "error";
export const outcomes: readonly Outcome[] = ["ok", "not_found", "condition_failed", "open", "error"];

/** What a failed client call means for the history. */
export type ErrorMapping =
  | { outcome: "not_found" | "condition_failed"; output: HistoryOutput }
  | { outcome: "open"; output: null }
  | { outcome: "error"; output: null; message: string };

export function mapClientError(error: unknown): ErrorMapping {
  if (error instanceof ClientError) {
    switch (error.code) {
      case "not_found":
        return { outcome: "not_found", output: { status: "not_found" } };
      case "condition_failed":
        return { outcome: "condition_failed", output: { status: "condition_failed" } };
      case "no_quorum":
      case "evicted":
      case "closed":
        return { outcome: "open", output: null };
      case "key_invalid":
      case "value_too_large":
      case "bad_request":
      case "protocol":
        return { outcome: "error", output: null, message: `${error.code}: ${error.message}` };
    }
  }
  return { outcome: "error", output: null, message: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
}

/** A call that has been issued and not yet recorded. */
export interface PendingCall {
  readonly client: number;
  readonly call: number;
}

export class HistoryRecorder {
  private readonly origin_ms: number;
  readonly history: History = [];

  constructor(private readonly clock: () => number = () => performance.now()) {
    this.origin_ms = clock();
  }

  /** Milliseconds since the recorder was made. */
  now(): number {
    return this.clock() - this.origin_ms;
  }

  /** Take the call time: just before the request is handed to the client library. */
  begin(client: number): PendingCall {
    return { client, call: Math.floor(this.now() * 1000) / 1000 };
  }

  /** Record an operation that ended (output null: open). Take this right after the reply. */
  finish(pending: PendingCall, input: HistoryInput, output: HistoryOutput | null): void {
    this.record(pending, input, output, output === null ? null : this.returnTime(pending));
  }

  /** The return time for pending, now (never before its call). */
  returnTime(pending: PendingCall): number {
    return Math.max(pending.call, Math.ceil(this.now() * 1000) / 1000);
  }

  /** Record with an explicit return time (several observations of one list share it). */
  record(pending: PendingCall, input: HistoryInput, output: HistoryOutput | null, ret: number | null): void {
    const operation: HistoryOperation = { client: pending.client, input, call: pending.call, ret: output === null ? null : ret, output };
    this.history.push(operation);
  }
}

// ---------------------------------------------------------------------------------------------
// Checking

export interface HistoryVerdict {
  /** "linearizable", "violation", or "unknown" (the checker's step budget ran out on some key:
   * reported as a warning, never as a failure). */
  verdict: "linearizable" | "violation" | "unknown";
  /** One line: the verdict and what was checked. */
  summary: string;
  /** On a violation: the reason and the offending key's sub-history, one operation a line. */
  details: string;
  keys_checked: number;
  steps: number;
  check_ms: number;
}

export function checkHistory(history: History, options?: { step_budget?: number }): HistoryVerdict {
  const started = performance.now();
  const result = checkLinearizable(history, options);
  const check_ms = performance.now() - started;
  const steps = result.steps ?? 0;
  const keys = new Set(history.map((op) => op.input.key)).size;
  const checked = `${history.length} operations on ${keys} keys, ${steps} search steps, ${check_ms.toFixed(0)} ms`;
  if (!result.ok) {
    const operations = result.operations ?? [];
    return {
      verdict: "violation",
      summary: `verdict: NOT linearizable: key ${JSON.stringify(result.key)} (${checked})`,
      details: `${result.reason ?? ""}\nhistory of key ${JSON.stringify(result.key)} (${operations.length} operations, times in ms):\n${formatHistory(operations)}`,
      keys_checked: result.keys_checked,
      steps,
      check_ms,
    };
  }
  if (result.unknown) {
    return {
      verdict: "unknown",
      summary: `verdict: unknown: ${result.reason ?? ""} (${checked})`,
      details: "",
      keys_checked: result.keys_checked,
      steps,
      check_ms,
    };
  }
  return {
    verdict: "linearizable",
    summary: `verdict: linearizable (${checked})`,
    details: "",
    keys_checked: result.keys_checked,
    steps,
    check_ms,
  };
}

// ---------------------------------------------------------------------------------------------
// Saved histories (--history-out / --check-history)

export const history_file_format = "toastyfs-history-1";

export interface HistoryFile {
  format: typeof history_file_format;
  /** How the history was made, for a person reading the file (seed, clients, ...). */
  about: Record<string, string | number>;
  history: History;
}

export class HistoryFileError extends Error {
  override name = "HistoryFileError";
}

export function encodeHistoryFile(history: History, about: Record<string, string | number>): string {
  const file: HistoryFile = { format: history_file_format, about, history };
  return JSON.stringify(file);
}

/** Parses and validates a saved history (untrusted input: every field is checked). */
export function decodeHistoryFile(text: string): HistoryFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new HistoryFileError(`not JSON: ${(error as Error).message}`);
  }
  if (!isRecord(value) || value.format !== history_file_format)
    throw new HistoryFileError(`not a history file (expected "format": "${history_file_format}")`);
  if (!Array.isArray(value.history)) throw new HistoryFileError(`"history" must be an array`);
  const about: Record<string, string | number> = {};
  if (isRecord(value.about)) {
    for (const [k, v] of Object.entries(value.about)) if (typeof v === "string" || typeof v === "number") about[k] = v;
  }
  const history = value.history.map((op: unknown, i: number) => decodeOperation(op, i));
  return { format: history_file_format, about, history };
}

function decodeOperation(value: unknown, index: number): HistoryOperation {
  const bad = (what: string): never => {
    throw new HistoryFileError(`history[${index}]: ${what}`);
  };
  if (!isRecord(value)) return bad("not an object");
  const { client, call, ret } = value;
  if (typeof client !== "number" || !Number.isSafeInteger(client)) return bad("client must be an integer");
  if (typeof call !== "number" || !Number.isFinite(call)) return bad("call must be a number");
  if (ret !== null && (typeof ret !== "number" || !Number.isFinite(ret) || ret < call)) return bad("ret must be null or a number >= call");
  const input = decodeInput(value.input, bad);
  const output = value.output === null ? null : decodeOutput(value.output, bad);
  if ((ret === null) !== (output === null)) return bad("output must be null exactly when ret is");
  return { client, input, call, ret, output };
}

function decodeInput(value: unknown, bad: (what: string) => never): HistoryInput {
  if (!isRecord(value) || typeof value.key !== "string") return bad("input must have a string key");
  const key = value.key;
  const if_version = optionalVersion(value.if_version, bad);
  switch (value.kind) {
    case "put": {
      if (typeof value.value !== "string") return bad("put input must have a string value");
      const input: HistoryInput = { kind: "put", key, value: value.value };
      if (if_version !== undefined) input.if_version = if_version;
      if (value.if_absent === true) input.if_absent = true;
      return input;
    }
    case "delete": {
      const input: HistoryInput = { kind: "delete", key };
      if (if_version !== undefined) input.if_version = if_version;
      return input;
    }
    case "get":
      return { kind: "get", key };
    case "exists":
      return { kind: "exists", key };
    default:
      return bad(`unknown input kind ${JSON.stringify(value.kind)}`);
  }
}

function decodeOutput(value: unknown, bad: (what: string) => never): HistoryOutput {
  if (!isRecord(value)) return bad("output must be an object or null");
  switch (value.status) {
    case "ok": {
      const version = value.version;
      if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 0) return bad("ok output must have a version");
      if (value.value !== undefined && typeof value.value !== "string") return bad("output value must be a string");
      return typeof value.value === "string" ? { status: "ok", version, value: value.value } : { status: "ok", version };
    }
    case "not_found":
      return { status: "not_found" };
    case "condition_failed":
      return { status: "condition_failed" };
    default:
      return bad(`unknown output status ${JSON.stringify(value.status)}`);
  }
}

function optionalVersion(value: unknown, bad: (what: string) => never): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) return bad("if_version must be a version number");
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
