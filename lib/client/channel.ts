/**
 * One client id's requests over a shared transport: the ClientSession (session.ts) decides what to
 * send, when to retry and what the answer is; this class carries out its decisions. One request is
 * outstanding per client id (PROTOCOL.md §3.1); calls are queued. A Client has a main channel and,
 * for large objects, lanes: extra channels with their own ids, numbers and retries, so that several
 * blocks or reads are in flight at once (LARGE_OBJECTS.md §11.1).
 */
import type { Message } from "../net/codec.ts";
import { Operation, Result } from "../store/operations.ts";
import { assert } from "../util/assert.ts";
import { ClientError } from "./errors.ts";
import { ClientSession, resultError, type Step } from "./session.ts";

const wait_step: Step = { kind: "wait" };

/** What a large put or get needs of a channel: the ok reply's body, or a ClientError. */
export interface Caller {
  call(operation: Operation, body: Uint8Array): Promise<Uint8Array>;
  /** Replies of busy (the primary's queue full) it has had and retried, if it counts them. */
  readonly busy_replies?: number;
}

export interface Received {
  message: Message;
  /** The replica whose connection brought it (a wrong_cluster reply does not name its sender). */
  from: number | null;
}

export interface ChannelIo {
  /** Connects (once); resolved before the first send. */
  start(): Promise<void>;
  send(replica: number, message: Message): void;
  closed(): boolean;
  log(level: "error", text: string): void;
  /** A request ended with a reply: the bytes of both bodies. */
  moved(bytes: number): void;
}

export class Channel implements Caller {
  private waiter: ((received: Received | null) => void) | null = null;
  /** Authentication failures reported since the last wait, for the session (bounded: one per
   * replica, the latest). */
  private readonly auth_failures = new Map<number, string>();
  /** Replicas found unreachable since the last wait, for the session (bounded: one per replica). */
  private readonly unreachable_replicas = new Set<number>();
  private chain: Promise<unknown> = Promise.resolve();
  busy_replies = 0;

  constructor(
    readonly core: ClientSession,
    private readonly io: ChannelIo,
  ) {}

  get id(): bigint {
    return this.core.options.client_id;
  }

  /** The ok reply's body; any other answer is thrown as a ClientError. */
  async call(operation: Operation, body: Uint8Array): Promise<Uint8Array> {
    return (await this.request(operation, body)).body;
  }

  /** Queues the operation behind any outstanding one (one request per client id at a time). The
   * reply is ok, not_found or condition_failed; the last two are thrown. */
  request(operation: Operation, body: Uint8Array): Promise<Message> {
    const run = this.chain.then(() => this.execute(operation, body));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** A reply for this channel's client id. */
  deliver(received: Received): void {
    this.waiter?.(received);
  }

  /** The connection to replica `from` failed authentication: the session hears of it at once. */
  authFailed(from: number, detail: string): void {
    if (this.waiter === null) return; // no request outstanding: nothing to tell
    this.auth_failures.set(from, detail);
    this.waiter(null);
  }

  /** A connection to replica `from` could not be made (refused, or timed out before it opened).
   * While a request runs, the session hears of it at once (it moves on if that was its target);
   * otherwise it only notes it, for the next request. */
  unreachable(from: number): void {
    if (!this.core.pending) {
      const step = this.core.onUnreachable(from, Date.now());
      assert(step.kind === "wait", "a session with no request pending was asked to send");
      return;
    }
    // Reported while the request runs (a connect can fail within the send): handled at its next
    // wait, which this ends at once (awaitReply).
    this.unreachable_replicas.add(from);
    this.waiter?.(null);
  }

  /** A connection to replica `from` opened: the session stops skipping it. */
  reachable(from: number): void {
    this.core.onReachable(from);
  }

  /** Ends the current wait at once: the target's connection closed, or the client is closing. */
  nudge(): void {
    this.waiter?.(null);
  }

  /** Carries out what the session core decides until it has an answer: sends, and waits for a
   * reply, the core's wake_at, or a nudge (retry at once then). */
  private async execute(operation: Operation, body: Uint8Array): Promise<Message> {
    if (this.io.closed()) throw new ClientError("closed", "the client is closed");
    await this.io.start();
    if (this.io.closed()) throw new ClientError("closed", "the client is closed");
    let step = this.core.start(operation, body, Date.now());
    for (;;) {
      switch (step.kind) {
        case "send":
          this.io.send(step.replica, step.message);
          break;
        case "done":
          this.io.moved(body.length + step.reply.body.length);
          if (step.reply.header.result !== Result.ok) throw resultError(step.reply);
          return step.reply;
        case "failed":
          throw step.error;
        case "ignored":
          if (step.problem !== null) this.io.log("error", `${step.problem}: ignored`);
          break;
        case "wait":
          break;
      }
      const event = await this.awaitReply(this.core.wake_at - Date.now());
      if (this.io.closed()) {
        this.core.abandon();
        throw new ClientError("closed", "the client is closed");
      }
      if (event !== null && event.message.header.result === Result.busy) this.busy_replies += 1;
      if (event === null && this.auth_failures.size > 0) {
        step = wait_step;
        for (const [from, detail] of this.auth_failures) {
          if (step.kind === "wait") step = this.core.onAuthFailure(from, detail, Date.now());
        }
        this.auth_failures.clear();
        continue;
      }
      if (event === null && this.unreachable_replicas.size > 0) {
        // The target last: the others are marked first, so its retry skips them too.
        const target = this.core.target;
        for (const from of this.unreachable_replicas) if (from !== target) this.core.onUnreachable(from, Date.now());
        step = this.unreachable_replicas.has(target) ? this.core.onUnreachable(target, Date.now()) : wait_step;
        this.unreachable_replicas.clear();
        continue;
      }
      step = event === null ? this.core.expire(Date.now()) : this.core.onReply(event.message, event.from, Date.now());
    }
  }

  /** The next message for this client id, or null when timeout_ms passes or a nudge comes first. */
  private awaitReply(timeout_ms: number): Promise<Received | null> {
    return new Promise((resolve) => {
      if (this.unreachable_replicas.size > 0) return resolve(null);
      const timer = setTimeout(() => finish(null), Math.max(0, timeout_ms));
      const finish = (received: Received | null): void => {
        clearTimeout(timer);
        this.waiter = null;
        resolve(received);
      };
      this.waiter = finish;
    });
  }
}
