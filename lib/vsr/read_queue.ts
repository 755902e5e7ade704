/**
 * Linearizable reads at the primary without a log entry (docs/PROTOCOL.md, reads). A read that
 * arrives when the primary's log reaches `read_op` may be answered once
 *
 *   1. the primary has executed up to `read_op` (every write acknowledged before the read arrived
 *      is in the state it reads), and
 *   2. a heartbeat round sent after the read arrived has been answered by f backups still in this
 *      view (so no newer view, and no newer write, could have existed when the read was served).
 *
 * This part owns the heartbeat rounds (number, nonce, which round each backup last answered) and
 * the bounded FIFO of waiting reads. It sends nothing: the replica asks it which reads are ready
 * and whether a new round is due, and does the sending.
 */
import { assert } from "../util/assert.ts";

/** Heartbeat rounds whose nonce the primary remembers: a commit_ok for an older round confirms
 * nothing (reads wait for a newer round anyway). */
export const heartbeat_nonce_rounds = 64;

export interface ReadWaiter<M> {
  message: M;
  /** The primary's op when the read arrived: it is served once commit_min reaches it. */
  read_op: number;
  /** The heartbeat round that must be confirmed (sent after this read arrived). */
  round: number;
}

export class ReadQueue<M> {
  /** The latest heartbeat round this primary sent (0: none yet in this view). */
  round = 0;
  /** The latest round each replica answered with the right nonce (own slot unused). */
  private readonly acks: number[];
  /** The nonce of each recent round, at round % heartbeat_nonce_rounds. */
  private readonly nonces = new Array<bigint>(heartbeat_nonce_rounds).fill(0n);
  /** Waiting reads in arrival order; rounds and read_ops never decrease along it. */
  private waiters: ReadWaiter<M>[] = [];

  constructor(
    private readonly replica_count: number,
    private readonly replica: number,
    /** Backups that must confirm a round: f of them, with the primary, make a quorum. */
    private readonly f: number,
    private readonly queue_max: number,
  ) {
    assert(replica >= 0 && replica < replica_count, `replica ${replica} out of range for ${replica_count}`);
    assert(f >= 0 && 2 * f < replica_count, `f=${f} is not a minority of ${replica_count}`);
    assert(queue_max >= 1, "the read queue needs room for one read");
    this.acks = new Array<number>(replica_count).fill(0);
  }

  get length(): number {
    return this.waiters.length;
  }

  /** A new view as primary: rounds start over, no backup has answered one yet. */
  resetRounds(): void {
    this.acks.fill(0);
    this.round = 0;
  }

  /** Leaving the primary role: waiting reads are dropped (their clients retry the new primary). */
  dropWaiters(): void {
    this.waiters = [];
  }

  /** Starts the next heartbeat round with a fresh random nonce; returns its number. */
  startRound(nonce: bigint): number {
    this.round += 1;
    this.nonces[this.round % heartbeat_nonce_rounds] = nonce;
    // The round just started must be answerable by its own nonce, or no read would ever confirm.
    assert(this.answers(this.round, nonce), () => `round ${this.round} does not answer its own nonce`);
    return this.round;
  }

  /** Whether a commit_ok's (round, nonce) answers a round this primary sent recently: a forged or
   * replayed commit_ok cannot confirm a round (and so a read) the backup never answered. */
  answers(round: number, nonce: bigint): boolean {
    const recent = round <= this.round && round > this.round - heartbeat_nonce_rounds;
    return recent && nonce === this.nonces[round % heartbeat_nonce_rounds];
  }

  /** Records a verified answer; returns whether it confirmed a newer round for that backup. */
  ack(from: number, round: number): boolean {
    if (!(from >= 0 && from < this.replica_count)) assert(false, `ack from replica ${from}`); // no message built per ack
    assert(round <= this.round, () => `ack of round ${round}, which was never sent (latest ${this.round})`);
    if (round <= this.acks[from]!) return false;
    this.acks[from] = round;
    return true;
  }

  /** Queues a read arriving now; false when the queue is full (the client is told busy). */
  enqueue(message: M, read_op: number, round: number): boolean {
    if (this.waiters.length >= this.queue_max) return false;
    const last = this.waiters[this.waiters.length - 1];
    assert(last === undefined || (last.round <= round && last.read_op <= read_op), "reads queue in arrival order");
    this.waiters.push({ message, read_op, round });
    assert(this.waiters.length <= this.queue_max, () => `read queue of ${this.waiters.length} over ${this.queue_max}`);
    return true;
  }

  confirmed(round: number): boolean {
    if (this.f === 0) return true;
    let confirmed = 0;
    for (let r = 0; r < this.replica_count; r++) {
      if (r !== this.replica && this.acks[r]! >= round) confirmed += 1;
    }
    return confirmed >= this.f;
  }

  /** Removes and returns, in arrival order, the reads both conditions now allow. */
  takeReady(commit_min: number): ReadWaiter<M>[] {
    let ready = 0;
    for (const waiter of this.waiters) {
      if (waiter.read_op > commit_min || !this.confirmed(waiter.round)) break;
      ready += 1;
    }
    const taken = ready === 0 ? [] : this.waiters.splice(0, ready);
    // Linearizability: a read is answered only once its op has executed here.
    assert(
      taken.every((w) => w.read_op <= commit_min),
      () => `read answered before commit ${commit_min} reached its op`,
    );
    return taken;
  }

  /** Acks never name a round not yet sent; waiters stay in arrival order within the bound. Called
   * from Leader.invariants(). */
  invariants(): void {
    assert(
      this.round >= 0 && this.acks.every((a) => a >= 0 && a <= this.round),
      () => `read queue: acks ${this.acks.join(",")} beyond round ${this.round}`,
    );
    assert(this.waiters.length <= this.queue_max, () => `read queue of ${this.waiters.length} over ${this.queue_max}`);
    for (let i = 1; i < this.waiters.length; i++) {
      assert(
        this.waiters[i - 1]!.round <= this.waiters[i]!.round && this.waiters[i - 1]!.read_op <= this.waiters[i]!.read_op,
        () => `read queue: waiter ${i} out of arrival order`,
      );
    }
  }

  /** Reads wait for a round not yet sent, and the current one is confirmed: send the next now
   * (rounds are shared, so reads arriving while one is in flight wait for the next). */
  roundDue(): boolean {
    return this.waiters.some((w) => w.round > this.round) && this.confirmed(this.round);
  }
}
