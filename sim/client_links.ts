/**
 * A simulated client's connections to the replicas, as much of them as the TCP client can observe
 * (lib/net/tcp_transport.ts, lib/client/client.ts): a connect to a replica that is not running is
 * refused, which its sessions hear as onUnreachable; one to a running replica opens, which they
 * hear as onReachable. The simulator decides what is running and draws the delays; this keeps
 * what the transport keeps per replica: whether an attempt is under way (at most one, so refusals
 * are bounded by replicas per client), and the reconnect backoff after a refusal (50 ms doubling
 * to 1 s, jittered, as lib/net/backoff.ts), which paces a client whose every replica is down.
 *
 * A link remembers only whether its last attempt was refused: a session marks a replica down only
 * when told it is unreachable, so an open that follows no refusal would tell it nothing.
 */
import { Backoff, reconnect_backoff_max_ms, reconnect_backoff_min_ms } from "../lib/net/backoff.ts";
import { assert } from "../lib/util/assert.ts";

const us_per_ms = 1000;

interface Link {
  /** A connect is under way: its outcome comes as one event. */
  attempt: boolean;
  /** The last attempt was refused and no connection has opened since. */
  refused: boolean;
  /** The earliest time the next attempt may start, µs (the backoff after a refusal). */
  next_attempt_us: number;
  readonly backoff: Backoff;
}

export class ClientLinks {
  private readonly links: Link[] = [];

  /** random: a uniform draw in [0, 1) from the simulator's PRNG, for the backoff's jitter. */
  constructor(replicas: number, random: () => number) {
    for (let r = 0; r < replicas; r++) {
      const backoff = new Backoff(reconnect_backoff_min_ms * us_per_ms, reconnect_backoff_max_ms * us_per_ms, random);
      this.links.push({ attempt: false, refused: false, next_attempt_us: 0, backoff });
    }
  }

  /** A message for a replica that is not running: no connection can carry it, so the transport
   * connects. Returns when that attempt starts (now, or once the backoff after the last refusal
   * has passed), or null if one is already under way (its outcome stands for this message too). */
  connect(replica: number, now: number): number | null {
    const link = this.link(replica);
    if (link.attempt) return null;
    link.attempt = true;
    return Math.max(now, link.next_attempt_us);
  }

  /** The attempt was refused at `now`: the next one waits out the backoff. */
  refused(replica: number, now: number): void {
    const link = this.link(replica);
    assert(link.attempt, () => `replica ${replica} refused a connect that was not attempted`);
    link.attempt = false;
    link.refused = true;
    link.next_attempt_us = now + link.backoff.next();
  }

  /** The attempt ended without a refusal (the replica started meanwhile, or a partition swallowed
   * it: silence, which the session's attempt timeout covers). */
  unanswered(replica: number): void {
    const link = this.link(replica);
    assert(link.attempt, () => `no connect to replica ${replica} was under way`);
    link.attempt = false;
  }

  /** A message from this client reached running replica `replica`: a connection to it opened.
   * True if that is news to the sessions (its last attempt had been refused). */
  accepted(replica: number): boolean {
    const link = this.link(replica);
    if (!link.refused) return false;
    link.refused = false;
    link.backoff.reset();
    link.next_attempt_us = 0;
    return true;
  }

  private link(replica: number): Link {
    const link = this.links[replica];
    assert(link !== undefined, () => `no replica ${replica} (${this.links.length} replicas)`);
    return link;
  }
}
