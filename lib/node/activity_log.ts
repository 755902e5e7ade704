/**
 * Log lines for what the replica only counts: repair from peers, logged once when it starts and
 * once when it has been quiet for a check interval, instead of a line per fetched prepare.
 * `toastyfs serve` calls check() with the node's status every check_interval_ms. View changes,
 * recoveries, state syncs, a full disk (and its end), storage errors and invalid frames are logged
 * where they happen (lib/vsr, lib/node/replica_node.ts, lib/net).
 */
import type { Logger } from "./log.ts";
import type { ReplicaStatus } from "../net/status_codec.ts";

export const check_interval_ms = 5_000;

export class ActivityLog {
  private repairs_seen = -1;
  private repair_started_ms: number | null = null;
  private repairs_in_episode = 0;

  constructor(private readonly log: Logger) {}

  check(status: ReplicaStatus, now_ms: number = Date.now()): void {
    this.checkRepairs(status.counters.repairs_requested ?? 0, now_ms);
  }

  private checkRepairs(repairs: number, now_ms: number): void {
    if (this.repairs_seen < 0 || repairs < this.repairs_seen) {
      this.repairs_seen = repairs; // first look, or the replica was reopened: start counting now
      return;
    }
    const delta = repairs - this.repairs_seen;
    this.repairs_seen = repairs;
    if (delta > 0) {
      if (this.repair_started_ms === null) {
        this.repair_started_ms = now_ms;
        this.repairs_in_episode = 0;
        this.log.log(
          "info",
          "repairing: fetching missing or damaged prepares from peers (normal after a restart or lost messages; if it never stops, check this replica's disk and network)",
        );
      }
      this.repairs_in_episode += delta;
    } else if (this.repair_started_ms !== null) {
      const seconds = Math.round((now_ms - this.repair_started_ms) / 1000);
      this.log.log("info", `repair done: ${this.repairs_in_episode} prepare requests over about ${seconds} s`);
      this.repair_started_ms = null;
    }
  }
}
