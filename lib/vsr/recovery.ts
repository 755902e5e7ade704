/**
 * The recovering role: a replica that lost its disk, or whose checkpoint file is damaged, catches
 * up from its peers without acknowledging anything (docs/PROTOCOL.md §4.4, start_view and
 * request_start_view). It exists exactly while the replica's status is "recovering": the Replica
 * sends, installs and persists; this part remembers which start_view answers it asked for and
 * decides when it may rejoin.
 */
import { assert } from "../util/assert.ts";
import type { Config } from "../constants.ts";
import type { Header } from "../net/codec.ts";
import type { CheckpointId } from "./storage.ts";

/** Recent request_start_view nonces a recovering replica accepts answers to. */
export const recovery_nonces_max = 8;

/** Why a recovering replica may not rejoin yet, in the order they are checked, or "ready". */
export type RecoveryStep =
  /** A checkpoint transfer is under way: what it executes is not known yet. */
  | "syncing"
  /** No start_view of this view installed: nothing a primary vouched for to catch up to. */
  | "no_start_view"
  /** The primary's checkpoint is more than an interval ahead: repair alone cannot get there. */
  | "checkpoint_behind"
  /** A prepare up to the installed start_view's op is missing or unverified. */
  | "missing_prepares"
  /** Its checkpoint is older than the one its superblock named: persisting now would name it. */
  | "below_checkpoint_floor"
  /** The view, log_view or the synced checkpoint is not durable: the Replica persists its state. */
  | "not_durable"
  /** Writes are still queued, or a flush is in flight (docs/STORAGE.md §10.9): a prepare it
   * holds may not be durable yet. */
  | "io_pending"
  | "ready";

/** What maybeFinishRecovering looks at; the costly or overridable parts are asked lazily, in the
 * order the checks run, so nothing is asked that an earlier check made moot. */
export interface RecoveryFacts {
  syncing: boolean;
  view: number;
  commit_min: number;
  checkpoint_interval_ops: number;
  /** The checkpoint op the primary announced last. */
  primary_checkpoint_op: number;
  /** Whether the journal holds op's header and its verified prepare. */
  hasPrepare(op: number): boolean;
  /** The op of the checkpoint it will persist (the pending one, else the durable one). */
  checkpoint_op: number;
  view_durable: number;
  log_view_durable: number;
  /** Whether a checkpoint it synced or took still has to be made durable (RULE: a recovering
   * replica persists its synced checkpoint before it rejoins). */
  checkpointToPersist(): boolean;
  ioPending(): boolean;
}

/** The members of Replica the facts are read from. */
export interface RecoveryHost {
  readonly view: number;
  readonly commit_min: number;
  readonly config: Pick<Config, "checkpoint_interval_ops">;
  readonly state_sync: { readonly syncing: boolean; readonly primary_checkpoint_op: number };
  readonly journal: { header(op: number): Header | null; hasPrepare(op: number, checksum: bigint): boolean };
  readonly durable: { readonly pending: CheckpointId | null };
  readonly checkpoint: CheckpointId;
  readonly view_durable: number;
  readonly log_view_durable: number;
  /** RULE: a recovering replica persists its synced checkpoint before it rejoins (a hook the
   * simulator's broken variants override). */
  recoveryPersists(): boolean;
  /** Writes queued, and a flush in flight: "that log" is persisted only once both are done. */
  readonly storage: { pending(): boolean; flushing(): boolean };
}

/** What step() decides on, as the replica stands now. */
export function recoveryFacts(r: RecoveryHost): RecoveryFacts {
  const facts: RecoveryFacts = {
    syncing: r.state_sync.syncing,
    view: r.view,
    commit_min: r.commit_min,
    checkpoint_interval_ops: r.config.checkpoint_interval_ops,
    primary_checkpoint_op: r.state_sync.primary_checkpoint_op,
    hasPrepare: (op) => {
      const h = r.journal.header(op);
      return h !== null && r.journal.hasPrepare(op, h.checksum);
    },
    checkpoint_op: (r.durable.pending ?? r.checkpoint).op,
    view_durable: r.view_durable,
    log_view_durable: r.log_view_durable,
    checkpointToPersist: () => r.durable.pending !== null && r.recoveryPersists(),
    ioPending: () => r.storage.pending() || r.storage.flushing(),
  };
  return facts;
}

export class Recovering {
  /** The op a recovering replica must have repaired up to before it may acknowledge anything. */
  op = 0;
  /** The view of the start_view it installed (-1: none yet). Only a start_view from a primary
   * gives it a log to vouch for; its own adopted view does not. */
  view = -1;
  /** The nonces of its last request_start_view messages, oldest first. */
  private readonly nonces: bigint[] = [];

  /**
   * checkpoint_floor: a replica whose checkpoint file was damaged must not persist a superblock
   * naming an older checkpoint than the damaged one (0 for a lost disk).
   */
  constructor(
    readonly checkpoint_floor: number,
    private readonly nonces_max = recovery_nonces_max,
  ) {
    assert(checkpoint_floor >= 0, () => `checkpoint floor ${checkpoint_floor}`);
    assert(nonces_max >= 1, "room for at least one nonce");
  }

  /** A request_start_view went out with this nonce; the oldest is forgotten past nonces_max, so
   * the ring stays bounded however long the replica waits. */
  asked(nonce: bigint): void {
    assert(nonce !== 0n, "a recovering replica's nonce is never 0 (0 is a start_view that answers no request)");
    this.nonces.push(nonce);
    if (this.nonces.length > this.nonces_max) this.nonces.shift();
    assert(
      this.nonces.length <= this.nonces_max && this.answers(nonce),
      () => `recovering: ${this.nonces.length} nonces kept, latest not answerable`,
    );
  }

  /** RULE (recovery): it installs only a start_view answering one of its own recent requests, so
   * the log it installs is the primary's as it is now, not a delayed or replayed prefix of it. */
  answers(nonce: bigint): boolean {
    return nonce !== 0n && this.nonces.includes(nonce);
  }

  /** It installed a start_view of view v whose log ends at op. */
  installed(view: number, op: number): void {
    this.view = view;
    this.op = op;
  }

  /** RULE (lost disk): it rejoins only once it has a checkpoint and every prepare up to the op of
   * the start_view it installed, and has persisted the view, that log and the checkpoint (a
   * restart must reload every op it will acknowledge). */
  step(facts: RecoveryFacts): RecoveryStep {
    if (facts.syncing) return "syncing";
    if (this.view !== facts.view) return "no_start_view";
    if (facts.primary_checkpoint_op > facts.commit_min + facts.checkpoint_interval_ops) return "checkpoint_behind";
    for (let op = facts.commit_min + 1; op <= this.op; op++) {
      if (!facts.hasPrepare(op)) return "missing_prepares";
    }
    if (facts.checkpoint_op < this.checkpoint_floor) return "below_checkpoint_floor";
    if (facts.view_durable !== facts.view || facts.log_view_durable !== facts.view || facts.checkpointToPersist()) return "not_durable";
    if (facts.ioPending()) return "io_pending";
    return "ready";
  }
}
