/**
 * The client protocol without I/O (docs/PROTOCOL.md §3.8, §3.9): request numbering, lazy session
 * registration, the choice of replica, not_primary hints, retries with the same request number,
 * backoff, reply matching and eviction. Both the TCP client (client.ts) and the simulated client
 * (sim/client.ts) drive it, so the simulator runs the retry logic users run.
 *
 * It reads no clock: every entry point takes `now` in the caller's unit (ms for TCP, µs in the
 * simulator), and the options' durations are in that unit. It sends nothing: it returns a Step
 * saying what to send to which replica, or what the operation's answer is, and `wake_at` says
 * when to call expire() if no reply comes first. One operation at a time (§3.1).
 *
 * The caller may also say that a replica could not be reached at all (onUnreachable: its
 * connection was refused, or timed out before it opened): that replica is most likely down, so
 * sends skip it for a while and a backup that still names it as primary (its view change has not
 * finished) is not followed there but asked again, with the other live replicas, after a short
 * pause. The simulator says so when a client sends to a replica that is not running (sim/client_links.ts).
 */
import { Command, Header, finalize, type Message } from "../net/codec.ts";
import { key_size_max, sender_client } from "../constants.ts";
import { Operation, Result, decodeU64, needsSession } from "../store/operations.ts";
import { decodeUploadIncomplete } from "../store/large_bodies.ts";
import { assert } from "../util/assert.ts";
import { ClientError } from "./errors.ts";

export interface SessionOptions {
  client_id: bigint;
  cluster: bigint;
  replica_count: number;
  /** Where the first request goes; the caller draws it at random so clients spread their first
   * attempts over the replicas. */
  first_target: number;
  /** An attempt with no reply is retried on the next replica after this long; once every replica
   * has been tried, each attempt waits longer, up to four times this (a partition may be long). */
  attempt_timeout: number;
  /** Extra patience per MiB of request body on one attempt (large values take a while). */
  attempt_timeout_per_mib?: number;
  /** The pause before retrying after busy, unavailable or no_space (times the attempts so far, up
   * to ten times), and after not_primary from a replica changing views, or naming a primary this
   * client could not reach, or once every replica has been tried (hammering a view change only
   * slows it down). */
  backoff: number;
  /** An operation no replica completes within this long fails with no_quorum. Infinity: retry
   * until answered (the simulator, whose liveness check bounds it instead). */
  operation_timeout: number;
  /** The unit of the durations, for error messages. */
  unit?: string;
  /** The replicas' names (addresses) in index order, for error messages. */
  names?: readonly string[];
}

/** What the caller does next. After send, wait, and ignored, it waits for a reply or wake_at. */
export type Step =
  /** Send message to replica. */
  | { kind: "send"; replica: number; message: Message }
  /** Nothing to send now: a retry is due at wake_at. */
  | { kind: "wait" }
  /** The message is not an answer to the pending request; problem says why if it should never
   * happen (a reply for another client or another operation), null for a late duplicate. */
  | { kind: "ignored"; problem: string | null }
  /** The operation's answer: ok, not_found or condition_failed (resultError names the last two). */
  | { kind: "done"; reply: Message }
  /** The operation ended without an answer, or with an error the caller must not retry. */
  | { kind: "failed"; error: ClientError };

/** A request on the wire: the caller's operation, or the register that must precede it. */
interface Request {
  readonly request: number;
  readonly operation: Operation;
  readonly body: Uint8Array;
  readonly attempt_timeout: number;
  /** Sends so far, the first included. */
  sends: number;
  /** Of those, the ones made after a pause because a backup named a primary that is down: they
   * were answered and paced, so they neither lengthen the attempt timeout nor count as hints
   * going round in circles. */
  polls: number;
  /** The target was set from a reply: the next retry goes there instead of to the next replica. */
  redirected: boolean;
  /** Replicas that answered wrong_cluster: they serve another cluster (§3.7). */
  readonly foreign: Set<number>;
  /** Replicas whose connection failed authentication, with why (docs/PROTOCOL.md §6.4). */
  readonly auth_failed: Map<number, string>;
  /** The last message built, reused while the view hint it carries is current. */
  message: Message | null;
}

interface PendingOperation {
  readonly operation: Operation;
  readonly body: Uint8Array;
  readonly deadline: number;
}

const wait: Step = { kind: "wait" };
const duplicate: Step = { kind: "ignored", problem: null };
const mib = 2 ** 20;
/** A replica that could not be reached is skipped for this many attempt timeouts, unless heard from
 * sooner: long enough to outlast a view change that replaces it, short enough that a replica that
 * came back (and is not heard from, or named primary of a later view) is tried again. */
const down_attempt_timeouts = 2;
const u32_max = 2 ** 32 - 1;

export class ClientSession {
  /** The session from the last register reply; 0: none (before the first write, after eviction). */
  session = 0;
  /** The last request number used (§3.1: per client id, strictly increasing, retries reuse it). */
  request_number = 0;
  /** Where the next send goes. */
  target: number;
  /** The highest view seen in any reply, sent as a hint in every request (§3.2). */
  view_hint = 0;
  /** When to call expire() unless a reply comes first; Infinity while no operation is pending. */
  wake_at = Infinity;
  private operation: PendingOperation | null = null;
  private current: Request | null = null;
  private readonly n: number;
  /** Whether any reply to this client has arrived (view_hint means something). */
  private heard = false;
  /** Replicas that could not be reached (onUnreachable), with when, and the highest view this
   * client knew of it as primary (null: none yet; the first reply naming it primary sets it). A
   * reply naming it primary of a later view means it was elected since: it is up. At most n. */
  private readonly down = new Map<number, { since: number; view: number | null }>();

  constructor(readonly options: SessionOptions) {
    this.n = options.replica_count;
    assert(Number.isInteger(this.n) && this.n >= 1 && this.n <= 255, () => `replica_count ${this.n} is not 1..255`);
    assert(
      Number.isInteger(options.first_target) && options.first_target >= 0 && options.first_target < this.n,
      () => `first_target ${options.first_target} is not a replica index below ${this.n}`,
    );
    assert(options.attempt_timeout > 0 && options.backoff >= 0 && options.operation_timeout > 0, "session timeouts must be positive");
    this.target = options.first_target;
  }

  get pending(): boolean {
    return this.operation !== null;
  }

  /** Starts an operation. A write with no session registers first (§3.8); reads need none, so a
   * client that only reads never takes a slot in the cluster's client table. Nor does write_block
   * (idempotent, not recorded): the lanes of a large put never register (LARGE_OBJECTS.md §11.1). */
  start(operation: Operation, body: Uint8Array, now: number): Step {
    assert(this.operation === null, "one operation at a time per client");
    this.operation = { operation, body, deadline: now + this.options.operation_timeout };
    if (this.session === 0 && needsSession(operation)) return this.begin(Operation.register, new Uint8Array(0), now);
    return this.begin(operation, body, now);
  }

  /** The attempt is over with no answer (wake_at passed, or the connection to the target closed):
   * retry, or fail once the operation's time is up. */
  expire(now: number): Step {
    if (this.current === null) return wait;
    return this.resend(now);
  }

  /** Replica `replica` could not be reached: its connection was refused or timed out before it
   * opened. Sends skip it for a while (down_attempt_timeouts); if it was the target of the pending
   * request, the next live replica is tried at once. */
  onUnreachable(replica: number, now: number): Step {
    assert(Number.isInteger(replica) && replica >= 0 && replica < this.n, () => `onUnreachable: no replica ${replica}`);
    // The view it was primary of as far as this client knows (a client that has heard no reply
    // knows none: view_hint 0 is only its starting value).
    const known = this.heard && this.view_hint % this.n === replica ? this.view_hint : null;
    const before = this.down.get(replica)?.view ?? null;
    this.down.set(replica, { since: now, view: before === null ? known : Math.max(before, known ?? before) });
    if (this.current === null || replica !== this.target) return wait;
    this.current.redirected = false;
    return this.resend(now);
  }

  /** A connection to replica `replica` opened: it is up again. */
  onReachable(replica: number): void {
    this.down.delete(replica);
  }

  /** Drops the pending operation (the caller gave up on it: closed, or the run ended). */
  abandon(): void {
    this.operation = null;
    this.current = null;
    this.wake_at = Infinity;
  }

  /** A message from a replica; from is the index of the replica whose connection brought it, when
   * known (a wrong_cluster reply does not name its sender). */
  onReply(message: Message, from: number | null, now: number): Step {
    const h = message.header;
    if (h.command !== Command.reply) return { kind: "ignored", problem: `received ${Command[h.command] ?? h.command}, not a reply` };
    if (h.client !== this.options.client_id) return { kind: "ignored", problem: `received a reply for client ${h.client.toString(16)}` };
    const r = this.current;
    if (r === null || h.request !== r.request) return duplicate;
    if (h.operation !== r.operation)
      return { kind: "ignored", problem: `reply to request ${h.request} is for operation ${h.operation}, the request was ${r.operation}` };
    this.view_hint = Math.max(this.view_hint, h.view);
    this.heard = true;
    if (from !== null) this.down.delete(from);
    const result = h.result as Result;
    switch (result) {
      case Result.not_primary: {
        const hinted = h.view % this.n;
        if (hinted === h.replica) {
          // A replier that names itself is changing views (or recovering): the next replica is
          // the better guess, after a pause, since it is most likely in the same view change and
          // retrying at once only loads a cluster that is busy electing. (Retrying at once here
          // also made the simulator's view changes shorter and rarer to overlap: it caught the
          // "longest log first" broken replica on 1 seed in 1000 instead of 4.)
          this.redirect((h.replica + 1) % this.n);
          return this.retryAfter(this.options.backoff, now);
        }
        const down = this.down.get(hinted);
        if (down !== undefined && this.isDown(hinted, now)) {
          if (down.view === null || h.view <= down.view) {
            // It names a primary this client could not reach, in a view no later than the one it
            // was down in: the view change that replaces it has not finished (a replica changing
            // views names the last primary it knew). Ask the live replicas again after a pause,
            // starting with the one after the replier, rather than the dead one (whose connects
            // the transport backs off, up to a second) or the replier at once.
            down.view = Math.max(down.view ?? h.view, h.view);
            this.target = h.replica;
            r.polls += 1;
            return this.retryAfter(this.options.backoff, now);
          }
          this.down.delete(hinted); // primary of a later view: elected since, so up again
        }
        // A backup in normal status names its primary: go there at once, unless every replica has
        // been tried (the hints go round in circles: pause).
        this.redirect(hinted);
        return this.retryAfter(Math.max(0, r.sends - r.polls) > this.n ? this.options.backoff : 0, now);
      }
      case Result.no_space:
        // That primary's disk is full and it abdicates: a replica with space will lead.
        this.redirect((h.replica + 1) % this.n);
        return this.retryAfter(this.options.backoff * Math.min(r.sends, 10), now);
      case Result.busy:
      case Result.unavailable:
        this.redirect(this.target);
        return this.retryAfter(this.options.backoff * Math.min(r.sends, 10), now);
      case Result.wrong_cluster: {
        // If every replica says so, the address list is wrong; if only some do, those addresses
        // lead to another cluster and the others may still serve.
        r.foreign.add(from ?? this.target);
        if (r.foreign.size === this.n) return this.fail(new ClientError("wrong_cluster", this.describeForeign(r.foreign)));
        let next = this.target;
        while (r.foreign.has(next)) next = (next + 1) % this.n;
        this.redirect(next);
        return this.retryAfter(0, now);
      }
      default:
        return this.final(message, now);
    }
  }

  /** The connection to replica `from` failed authentication (a missing, extra or wrong secret,
   * docs/PROTOCOL.md §6.4): that replica cannot serve this client, the next one is tried at once.
   * Once every replica has failed so, the operation fails with authentication_failed: no amount of
   * waiting fixes a secret. */
  onAuthFailure(from: number, detail: string, now: number): Step {
    const r = this.current;
    if (r === null) return wait;
    r.auth_failed.set(from, detail);
    if (r.auth_failed.size === this.n) {
      const reasons = [...new Set(r.auth_failed.values())].join("; ");
      return this.fail(new ClientError("authentication_failed", `${reasons} (every replica: ${this.names().join(",")})`));
    }
    if (from !== this.target) return wait;
    let next = this.target;
    while (r.auth_failed.has(next)) next = (next + 1) % this.n;
    this.redirect(next);
    return this.retryAfter(0, now);
  }

  /** A reply that ends the request: the operation's answer, or the register before it. */
  private final(reply: Message, now: number): Step {
    const h = reply.header;
    const r = this.current!;
    // The replier executed it, so it is the primary: the next request goes there first.
    if (h.replica < this.n) this.target = h.replica;
    const result = h.result as Result;
    if (result === Result.evicted) {
      // The write may have executed before the session went: its outcome is unknown (§3.7).
      this.session = 0;
      return this.fail(
        new ClientError(
          "evicted",
          "the cluster evicted this client's session (too many clients): the write may or may not have happened; check and retry",
        ),
      );
    }
    if (r.operation === Operation.register) {
      if (result !== Result.ok) return this.fail(new ClientError("protocol", `register failed with result ${Result[result] ?? result}`));
      if (h.session === 0) return this.fail(new ClientError("protocol", "register reply carries no session"));
      this.session = h.session;
      const op = this.operation!;
      if (op.operation !== Operation.register) return this.begin(op.operation, op.body, now);
    }
    if (result === Result.ok || result === Result.not_found || result === Result.condition_failed) {
      this.end();
      return { kind: "done", reply };
    }
    return this.fail(resultError(reply));
  }

  private begin(operation: Operation, body: Uint8Array, now: number): Step {
    // §3.1: before the number would wrap, a client must take a new id; none runs that long.
    assert(this.request_number < u32_max, "request number would wrap: use a new client id");
    this.request_number += 1;
    const per_mib = this.options.attempt_timeout_per_mib ?? 0;
    const attempt_timeout = this.options.attempt_timeout + Math.ceil((body.length / mib) * per_mib);
    this.current = {
      request: this.request_number,
      operation,
      body,
      attempt_timeout,
      sends: 0,
      polls: 0,
      redirected: false,
      foreign: new Set(),
      auth_failed: new Map(),
      message: null,
    };
    // Not to a replica just found unreachable (the lanes start where the main channel last went).
    if (this.isDown(this.target, now)) this.target = this.nextUp(this.target, now);
    return this.transmit(now);
  }

  private redirect(target: number): void {
    this.target = target;
    this.current!.redirected = true;
  }

  private retryAfter(delay: number, now: number): Step {
    if (delay <= 0) return this.resend(now);
    this.wake_at = Math.min(now + delay, this.operation!.deadline);
    return wait;
  }

  private resend(now: number): Step {
    const r = this.current!;
    const op = this.operation!;
    if (now >= op.deadline) {
      const n = this.n;
      return this.fail(
        new ClientError(
          "no_quorum",
          `no replica completed the request within ${this.options.operation_timeout} ${this.options.unit ?? "ms"} after ${r.sends} attempts: is a majority (${Math.floor(n / 2) + 1} of ${n}) of ${this.names().join(",")} running and reachable?${r.foreign.size > 0 ? ` Also, ${this.describeForeign(r.foreign)}` : ""}${r.auth_failed.size > 0 ? ` Also, authentication failed at ${[...r.auth_failed.keys()].map((i) => this.names()[i]!).join(", ")}: ${[...new Set(r.auth_failed.values())].join("; ")}` : ""}`,
        ),
      );
    }
    // Retry once where a reply pointed; otherwise that replica had its chance: the next one (that
    // is not known to be down).
    if (r.redirected && !this.isDown(this.target, now)) r.redirected = false;
    else {
      r.redirected = false;
      this.target = this.nextUp(this.target, now);
    }
    return this.transmit(now);
  }

  /** Whether replica i could not be reached lately (a mark expires after down_attempt_timeouts). */
  private isDown(i: number, now: number): boolean {
    const down = this.down.get(i);
    if (down === undefined) return false;
    if (now - down.since < this.options.attempt_timeout * down_attempt_timeouts) return true;
    this.down.delete(i);
    return false;
  }

  /** The first replica after `from` not known to be down (`from` itself if it is the only one);
   * plain rotation if every replica is down (the transport's reconnect backoff paces that). */
  private nextUp(from: number, now: number): number {
    for (let k = 1; k <= this.n; k++) {
      const i = (from + k) % this.n;
      if (!this.isDown(i, now)) return i;
    }
    return (from + 1) % this.n;
  }

  private transmit(now: number): Step {
    const r = this.current!;
    if (r.message === null || r.message.header.view !== this.view_hint) r.message = this.build(r);
    const backoff = Math.min(4, 1 + Math.floor(Math.max(0, r.sends - r.polls) / this.n));
    r.sends += 1;
    this.wake_at = Math.min(now + r.attempt_timeout * backoff, this.operation!.deadline);
    return { kind: "send", replica: this.target, message: r.message };
  }

  private build(r: Request): Message {
    const h = new Header();
    h.command = Command.request;
    h.cluster = this.options.cluster;
    h.replica = sender_client;
    h.client = this.options.client_id;
    h.session = this.session;
    h.request = r.request;
    h.operation = r.operation;
    h.view = this.view_hint;
    return finalize(h, r.body);
  }

  private fail(error: ClientError): Step {
    this.end();
    return { kind: "failed", error };
  }

  private end(): void {
    this.operation = null;
    this.current = null;
    this.wake_at = Infinity;
  }

  private names(): readonly string[] {
    return this.options.names ?? Array.from({ length: this.n }, (_, i) => `replica ${i}`);
  }

  private describeForeign(foreign: ReadonlySet<number>): string {
    const names = [...foreign].sort((a, b) => a - b).map((i) => this.names()[i]!);
    const hint = "pass the same --cluster addresses as the replicas, in any order";
    if (names.length === 1) return `replica ${names[0]} belongs to another cluster (its address list differs from yours: ${hint})`;
    return `replicas ${names.join(", ")} belong to another cluster (their address list differs from yours: ${hint})`;
  }
}

/** The error a final reply other than ok stands for, with the limit the cluster reported. */
export function resultError(reply: Message): ClientError {
  const result = reply.header.result as Result;
  const limit = decodeU64(reply.body);
  switch (result) {
    case Result.not_found:
      return new ClientError("not_found", "not found");
    case Result.condition_failed:
      return new ClientError(
        "condition_failed",
        `condition failed: the current version is ${limit ?? "unknown"}${limit === 0 ? " (absent)" : ""}`,
        limit,
      );
    case Result.key_invalid:
      return new ClientError("key_invalid", `key rejected: keys are 1 to ${limit ?? key_size_max} bytes`);
    case Result.value_too_large:
      return new ClientError("value_too_large", `value rejected: the cluster's limit is ${limit ?? "?"} bytes`);
    case Result.object_changed:
      return new ClientError(
        "object_changed",
        `the object changed while it was read (now ${limit === 0 ? "deleted" : `version ${limit ?? "unknown"}`})`,
        limit,
      );
    case Result.upload_not_found:
      return new ClientError("upload_not_found", "upload not found: it was completed, aborted or expired (or never existed)");
    case Result.range_invalid:
      return new ClientError("range_invalid", `the range starts beyond the object's end (it is ${limit ?? "?"} bytes)`, limit);
    case Result.upload_incomplete: {
      const missing = decodeUploadIncomplete(reply.body);
      const where =
        missing === null
          ? ""
          : missing.block_index === null
            ? `: part ${missing.part_number}'s size or checksum differs (the cluster holds ${missing.stored_size} bytes of it)`
            : `: part ${missing.part_number} block ${missing.block_index} is missing or differs`;
      return new ClientError("upload_incomplete", `the upload is incomplete${where}`);
    }
    case Result.size_mismatch:
      return new ClientError("size_mismatch", `the upload holds ${limit ?? "?"} bytes, not the size declared for it`);
    case Result.too_many_uploads:
      return new ClientError(
        "too_many_uploads",
        `the cluster already has ${limit ?? "its limit of"} uploads open: complete or abort some (toastyfs abort-upload ID), or wait for abandoned ones to expire`,
      );
    default:
      return new ClientError("bad_request", `request rejected with result ${Result[result] ?? result}`);
  }
}
