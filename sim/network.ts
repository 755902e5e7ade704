/**
 * The simulated network (docs/DESIGN.md §6): delivers encoded bytes (never shared objects, so codec bugs
 * and aliasing show up) with a latency distribution, loss, duplication, reordering, replay of old
 * packets, corruption, clogged links, and symmetric or asymmetric partitions that change over time.
 * Nodes 0..replicas-1 are replicas; the rest are clients.
 */
import type { Prng } from "../lib/util/prng.ts";

export interface NetworkOptions {
  /** Minimum one-way delay, µs. */
  delay_min_us: number;
  /** Mean of the exponential part of the delay, µs. */
  delay_mean_us: number;
  loss_probability: number;
  duplicate_probability: number;
  /** Per send, the chance an old packet is delivered again. */
  replay_probability: number;
  /** Per send, the chance one byte of the packet is flipped (the receiver must drop it). */
  corrupt_probability: number;
}

export interface Packet {
  from: number;
  to: number;
  bytes: Uint8Array;
}

/** Replays come half from the last packets sent, half from a uniform sample of the whole run
 * (reservoir sampling), so messages of long-gone views come back too. */
const replay_recent_size = 256;
const replay_reservoir_size = 1024;

export class Network {
  /** blocked[from * nodes + to]: the link drops everything. */
  private readonly blocked: Uint8Array;
  /** Extra delay per link (µs), for clogging. */
  private readonly clog_us: Float64Array;
  private readonly replay: Packet[] = [];
  private replay_next = 0;
  private readonly reservoir: Packet[] = [];
  private reservoir_seen = 0;
  /** Nodes cut off by isolate(): kept apart from the random partitions, which heal() undoes. */
  private readonly isolated = new Map<number, { clients: boolean }>();
  readonly stats = { sent: 0, lost: 0, duplicated: 0, replayed: 0, corrupted: 0, blocked: 0 };

  constructor(
    readonly nodes: number,
    readonly replicas: number,
    public options: NetworkOptions,
    private readonly prng: Prng,
    private readonly schedule: (delay_us: number, packet: Packet) => void,
  ) {
    this.blocked = new Uint8Array(nodes * nodes);
    this.clog_us = new Float64Array(nodes * nodes);
  }

  send(from: number, to: number, bytes: Uint8Array): void {
    this.stats.sent += 1;
    if (this.blocked[from * this.nodes + to] || (this.isolated.size > 0 && this.cut(from, to))) {
      this.stats.blocked += 1;
      return;
    }
    const o = this.options;
    if (this.prng.chance(o.loss_probability)) {
      this.stats.lost += 1;
      return;
    }
    let payload = bytes;
    if (o.corrupt_probability > 0 && this.prng.chance(o.corrupt_probability)) {
      payload = bytes.slice();
      payload[this.prng.int(payload.length)]! ^= 1 << this.prng.int(8);
      this.stats.corrupted += 1;
    }
    const packet = { from, to, bytes: payload };
    this.schedule(this.delay(from, to), packet);
    if (this.prng.chance(o.duplicate_probability)) {
      this.stats.duplicated += 1;
      this.schedule(this.delay(from, to), packet);
    }
    if (o.replay_probability > 0) this.remember(packet);
    if (this.replay.length > 0 && this.prng.chance(o.replay_probability)) {
      const pool = this.reservoir.length > 0 && this.prng.chance(0.5) ? this.reservoir : this.replay;
      const old = pool[this.prng.int(pool.length)]!;
      if (!this.blocked[old.from * this.nodes + old.to]) {
        this.stats.replayed += 1;
        this.schedule(this.delay(old.from, old.to), old);
      }
    }
  }

  private remember(packet: Packet): void {
    if (this.replay.length < replay_recent_size) this.replay.push(packet);
    else {
      this.replay[this.replay_next] = packet;
      this.replay_next = (this.replay_next + 1) % replay_recent_size;
    }
    this.reservoir_seen += 1;
    if (this.reservoir.length < replay_reservoir_size) this.reservoir.push(packet);
    else {
      const j = this.prng.int(this.reservoir_seen);
      if (j < replay_reservoir_size) this.reservoir[j] = packet;
    }
  }

  private delay(from: number, to: number): number {
    const o = this.options;
    return o.delay_min_us + this.prng.exponential(o.delay_mean_us) + this.clog_us[from * this.nodes + to]!;
  }

  block(from: number, to: number, blocked: boolean): void {
    this.blocked[from * this.nodes + to] = blocked ? 1 : 0;
  }

  /** Whether the link drops everything: a partition, or an isolate() cut. */
  isBlocked(from: number, to: number): boolean {
    return this.blocked[from * this.nodes + to] === 1 || (this.isolated.size > 0 && this.cut(from, to));
  }

  clog(from: number, to: number, extra_us: number): void {
    this.clog_us[from * this.nodes + to] = extra_us;
  }

  /** Removes every partition and clog. */
  heal(): void {
    this.blocked.fill(0);
    this.clog_us.fill(0);
  }

  /** Partitions replicas: a random side vs the rest, symmetric or one-way. Clients keep their
   * links except to replicas on the cut side, sometimes. Returns a description for the fault log. */
  partition(): string {
    this.heal();
    const r = this.replicas;
    const side = new Set<number>();
    const size = 1 + this.prng.int(Math.max(1, Math.floor(r / 2)));
    const order = this.prng.shuffle([...Array(r).keys()]);
    for (let i = 0; i < size; i++) side.add(order[i]!);
    const mode = this.prng.int(3); // 0 symmetric, 1 side cannot send, 2 side cannot receive
    for (let a = 0; a < r; a++) {
      for (let b = 0; b < r; b++) {
        if (side.has(a) === side.has(b)) continue;
        if (mode === 0 || (mode === 1 && side.has(a)) || (mode === 2 && side.has(b))) this.block(a, b, true);
      }
    }
    if (this.prng.chance(0.3)) {
      for (let c = r; c < this.nodes; c++) {
        for (const s of side) {
          this.block(c, s, true);
          this.block(s, c, true);
        }
      }
    }
    const modes = ["symmetric", "one-way out", "one-way in"];
    return `partition ${modes[mode]} {${[...side].sort().join(",")}}`;
  }

  /** Cuts one replica off from every other replica (and, if `clients`, from every client) until
   * unisolate(): random partitions and heal() leave this cut alone. */
  isolate(replica: number, clients: boolean): void {
    this.isolated.set(replica, { clients });
  }

  unisolate(replica: number): void {
    this.isolated.delete(replica);
  }

  private cut(from: number, to: number): boolean {
    for (const [replica, { clients }] of this.isolated) {
      const other = from === replica ? to : to === replica ? from : -1;
      if (other !== -1 && other !== replica && (other < this.replicas || clients)) return true;
    }
    return false;
  }

  /** Clogs one random link between replicas (a slow path) by a large delay. */
  clogRandom(extra_us: number): string {
    const a = this.prng.int(this.replicas);
    let b = this.prng.int(this.replicas - 1);
    if (b >= a) b += 1;
    this.clog(a, b, extra_us);
    return `clog ${a}->${b} +${Math.round(extra_us / 1000)}ms`;
  }
}
