/**
 * Repair of the log: missing or damaged prepares are fetched from peers by (op, checksum), and
 * missing headers by range (docs/PROTOCOL.md §4.4). This part decides what to ask for and whom
 * (repair_plan.ts chooses the ops), and answers peers' requests from this replica's journal and
 * storage. It holds no state of its own: what is missing is read off the journal on every repair
 * tick, so a lost request or answer is simply asked for again.
 */
import { assert } from "../util/assert.ts";
import type { Message } from "../net/codec.ts";
import { view_headers_max, type Config } from "../constants.ts";
import type { Journal } from "./journal.ts";
import type { Storage } from "./storage.ts";
import { planRepair } from "./repair_plan.ts";
import { buildHeaders, buildRequestHeaders, buildRequestPrepare, readRequestPrepare, type Envelope } from "./messages.ts";
import { primaryIndex, type Env, type Status } from "./env.ts";

/** Repair requests sent per repair tick (every 50 ms), so a far-behind replica catches up at
 * hundreds of prepares a second without flooding its peers. */
export const repair_requests_max = 32;

/** What the repairer reads of its replica, and the few effects it asks of it. */
export interface RepairerHost {
  readonly replica: number;
  readonly config: Pick<Config, "replica_count" | "journal_slot_count">;
  readonly env: Pick<Env, "sendToReplica" | "random">;
  readonly storage: Pick<Storage, "readPrepare">;
  readonly journal: Journal;
  readonly status: Status;
  readonly view: number;
  readonly op: number;
  readonly commit_min: number;
  readonly commit_max: number;
  readonly stats: { repairs_requested: number };
  envelope(view: number): Envelope;
  isPrimary(): boolean;
  isActingPrimary(): boolean;
  /** The highest commit number this replica knows of (its own, or the primary's hint). */
  commitKnown(): number;
  /** The highest op the journal window can hold. */
  opJournalMax(): number;
}

export class Repairer {
  constructor(private readonly host: RepairerHost) {
    assert(host.replica >= 0 && host.replica < host.config.replica_count, () => `repairer for replica ${host.replica}`);
  }

  /** One repair tick's requests: the headers up to the commit this replica knows of, then the
   * prepares and headers its journal is missing, at most repair_requests_max prepares. */
  repair(): void {
    const host = this.host;
    assert(host.status !== "blank", () => `replica ${host.replica}: repairing while blank`);
    if (!host.isPrimary() && host.commitKnown() > host.op) {
      this.requestHeaders(host.op + 1, Math.min(host.commitKnown(), host.commit_min + host.config.journal_slot_count));
    }
    const plan = planRepair(host.journal, host.commit_min, Math.min(host.op, host.opJournalMax()), repair_requests_max, view_headers_max);
    for (const { op, checksum } of plan.prepares) this.requestPrepare(op, checksum);
    if (plan.headers !== null) this.requestHeaders(plan.headers.op_min, plan.headers.op_max);
  }

  private requestPrepare(op: number, checksum_: bigint): void {
    const host = this.host;
    assert(op > host.commit_min, () => `replica ${host.replica}: repairing op ${op}, which it executed`);
    host.stats.repairs_requested += 1;
    host.env.sendToReplica(this.repairPeer(), buildRequestPrepare(host.envelope(host.view), { op, checksum: checksum_ }));
  }

  /** Backups ask the primary first and a random peer otherwise; the primary asks a random peer. */
  repairPeer(): number {
    const host = this.host;
    const primary = primaryIndex(host.view, host.config.replica_count);
    if (primary !== host.replica && host.env.random.chance(0.5)) return primary;
    let peer = host.env.random.int(host.config.replica_count - 1);
    if (peer >= host.replica) peer += 1;
    // (A lone replica has no peer: what it asks for goes nowhere, and only its own disk can help.)
    assert(
      host.config.replica_count === 1 || (peer !== host.replica && peer < host.config.replica_count),
      () => `replica ${host.replica}: repair peer ${peer}`,
    );
    return peer;
  }

  requestHeaders(op_min: number, op_max: number): void {
    const host = this.host;
    assert(
      op_min >= 0 && op_max - op_min <= host.config.journal_slot_count,
      () => `replica ${host.replica}: asking for headers ${op_min}..${op_max}`,
    );
    if (op_max < op_min || host.config.replica_count === 1) return;
    const request = buildRequestHeaders(host.envelope(host.view), { op_min, op_max });
    const primary = primaryIndex(host.view, host.config.replica_count);
    host.env.sendToReplica(primary !== host.replica ? primary : this.repairPeer(), request);
  }

  /** Serves any prepare storage holds with that exact (op, checksum), whether or not this
   * replica's log holds it (a copy of an executed op the log did not pick at open still serves a
   * peer that needs it): the requester verifies what it receives by its checksum. */
  onRequestPrepare(message: Message): void {
    const host = this.host;
    const h = message.header;
    assert(h.replica !== host.replica, () => `replica ${host.replica}: a request_prepare from itself`);
    const { op, checksum } = readRequestPrepare(message);
    const prepare = host.storage.readPrepare(op, checksum);
    if (prepare === null) {
      // Damaged since it was written: this replica repairs it too.
      if (host.journal.hasPrepare(op, checksum)) host.journal.damaged(host.journal.header(op)!);
      return;
    }
    host.env.sendToReplica(h.replica, prepare);
  }

  onRequestHeaders(message: Message): void {
    const host = this.host;
    const h = message.header;
    assert(h.replica !== host.replica, () => `replica ${host.replica}: a request_headers from itself`);
    if (host.status === "blank") return;
    const headers = host.journal.range(Math.max(h.commit, h.op - view_headers_max + 1), Math.min(h.op, host.op));
    if (headers.length === 0) return;
    // Never a header above this replica's head: a peer could take it for the log of this view.
    assert(headers[headers.length - 1]!.op <= host.op, () => `replica ${host.replica}: answering with headers above its head ${host.op}`);
    // These come from the primary of this view, in normal status: canonical.
    const canonical = host.isActingPrimary();
    host.env.sendToReplica(
      h.replica,
      buildHeaders(host.envelope(host.view), { op: host.op, commit_max: host.commit_max, canonical, headers }),
    );
  }
}
