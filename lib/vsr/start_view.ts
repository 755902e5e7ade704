/**
 * The end of a view change (docs/PROTOCOL.md, view change and start_view): the new primary chooses
 * the view's log from a quorum of do_view_change, waits for it to be durable and complete, then
 * sends start_view and leads; a backup or a recovering replica installs a start_view, or asks for
 * one (request_start_view). The choice is returned as a decision (decide, check) that this part
 * then carries out through its host, the Replica, which owns the fields it changes and makes the
 * role changes (awaitStartView, enterNormalPrimary, adoptView, enterNormalBackup); the hooks the
 * broken variants override (chooseLog, decideSuffix) stay there too.
 *
 * Calls between parts, through the host: the log is installed, trimmed and offered by log_chain.ts
 * (host.chain), the new pipeline resent and committed by primary.ts (host.primary), the primary's
 * checkpoint handed to state_sync_driver.ts (host.state_sync); view_change_votes.ts calls back
 * into this part (maybeStartView, sendStartView) through its own host.
 */
import { assert } from "../util/assert.ts";
import { Command, type Header, type Message } from "../net/codec.ts";
import type { Config } from "../constants.ts";
import type { Leader, PipelineEntry } from "./leader.ts";
import type { Recovering } from "./recovery.ts";
import type { Timeout } from "./timeout.ts";
import type { CheckpointId } from "./storage.ts";
import { primaryIndex, type Env, type Status } from "./env.ts";
import { assertSuffixHeld, type DoViewChange, type SuffixDecision, type ViewChanging } from "./view_change.ts";
import { buildRequestStartView, buildStartView, readRequestStartView, readStartView, type Envelope, type StartView } from "./messages.ts";

/** The members of Replica that installing a view reads, sets or calls. */
export interface ViewInstallHost {
  readonly replica: number;
  readonly config: Config;
  readonly quorum: number;
  readonly env: Env;
  readonly journal: {
    header(op: number): Header | null;
    hasDurable(op: number, checksum: bigint): boolean;
    setHeader(header: Header): void;
  };
  readonly status: Status;
  readonly view: number;
  readonly log_view: number;
  readonly view_durable: number;
  /** The view of the superblock write in flight, if higher (docs/STORAGE.md §10.9). */
  readonly view_flushing: number;
  readonly log_view_durable: number;
  readonly op: number;
  readonly commit_min: number;
  readonly commit_min_checksum: bigint;
  commit_max: number;
  commit_max_checksum: bigint | null;
  commit_hint: number;
  acks_after_start_view: number | null;
  readonly start_view_pending: boolean;
  readonly view_change: ViewChanging | null;
  readonly leader: Leader | null;
  readonly recovering: Recovering | null;
  readonly formed: boolean;
  readonly checkpoint: CheckpointId;
  readonly timeout_normal: Timeout;
  isPrimary(): boolean;
  isActingPrimary(): boolean;
  envelope(view: number): Envelope;
  sendToOthers(message: Message): void;
  drop(message: Message, why: string): void;
  violation(from: number, command: Command, what: string, checksum: bigint | null): void;
  chooseLog(dvcs: DoViewChange[]): DoViewChange;
  decideSuffix(best: DoViewChange, dvcs: DoViewChange[], commit: number): SuffixDecision;
  opPrepareOkMax(): number;
  /** The log's shape (log_chain.ts): the chosen or received suffix installed, entries that do not
   * chain trimmed, the suffix a start_view vouches for. */
  readonly chain: { installLog(headers: Header[], op: number): void; trimUnchained(): void; suffixHeaders(): Header[] };
  writeState(): void;
  /** The role changes this part asks for (replica.ts): the chosen log awaiting start_view, leading
   * once it is durable, a received view adopted, a backup of it. */
  awaitStartView(): void;
  enterNormalPrimary(pipeline: PipelineEntry[]): void;
  adoptView(view: number): void;
  enterNormalBackup(): void;
  /** The primary's normal operation (primary.ts): resend what the new pipeline holds, commit what it may. */
  readonly primary: { onPrepareTimeout(): void; commitPipeline(): void };
  repair(): void;
  /** Checkpoints and state sync (state_sync_driver.ts): the installed view's primary names its
   * checkpoint, and a replica far behind it fetches that checkpoint. */
  readonly state_sync: { primaryCheckpointIs(op: number): void; maybeStart(): void };
  maybeFinishRecovering(): void;
  executeCommitted(): void;
}

/** A do_view_change whose vote is not counted: it contradicts the log the quorum chose. */
export interface Liar {
  from: number;
  what: string;
  checksum: bigint | null;
}

/** What the new primary makes of the do_view_change messages it holds (decide). */
export type StartViewDecision =
  /** Not its view to start yet: no quorum, its own vote missing, the log already chosen, or a
   * committed op above the chosen log is damaged where this quorum holds it (only a replica not
   * heard from yet can supply it). */
  | { kind: "not_yet" }
  /** The chosen log is below a commit number: these votes are forged (or buggy) and dropped. */
  | { kind: "liars"; liars: Liar[] }
  /** An uncommitted op of the chosen log can be neither kept nor cut yet (decideSuffix). */
  | { kind: "wait" }
  /** Install `suffix` (cut at its head) as the view's log, committed up to `commit`. */
  | { kind: "install"; best: DoViewChange; commit: number; suffix: { head: number; headers: Header[] } };

/** What a backup or recovering replica makes of a start_view (check). */
export type StartViewCheck =
  { kind: "ignore" } | { kind: "drop"; why: string } | { kind: "violation"; what: string } | { kind: "install"; sv: StartView };

export class ViewInstall {
  constructor(private readonly host: ViewInstallHost) {
    assert(host.replica >= 0 && host.replica < host.config.replica_count, () => `view install for replica ${host.replica}`);
  }

  /** With do_view_change from a quorum (this replica's own included), the new primary takes the
   * log with the highest (log_view, op): that log holds every committed op. */
  decide(): StartViewDecision {
    const r = this.host;
    const vc = r.view_change;
    if (vc === null || r.start_view_pending || !vc.dvc_from.has(r.replica)) return { kind: "not_yet" };
    if (vc.dvc_from.size < r.quorum) return { kind: "not_yet" };
    let commit = r.commit_max;
    for (const dvc of vc.dvc_from.values()) commit = Math.max(commit, dvc.commit);
    const dvcs = [...vc.dvc_from.values()];
    const best = r.chooseLog(dvcs);
    assert(dvcs.includes(best), () => `replica ${r.replica}: the chosen log is none of the do_view_change messages`);
    if (best.op < commit && dvcs.some((dvc) => dvc.faulty_ops.some((op) => op > best.op && op <= commit))) {
      // A committed op above the chosen log is damaged where this quorum holds it: only a
      // replica not heard from yet can supply it.
      return { kind: "not_yet" };
    }
    if (best.op < commit) {
      // Committed ops are in every later view's log, so among honest senders the chosen log is
      // never below a commit number: one of them is forged (or buggy), and its vote is not
      // counted. If this replica's own number is above it, the chosen log is the lie; otherwise
      // the senders claiming more than it holds are.
      const own = vc.dvc_from.get(r.replica)!;
      const liars: Liar[] = [];
      for (const [from, dvc] of vc.dvc_from) {
        const liar = own.commit > best.op ? dvc === best : dvc.commit > best.op;
        if (!liar) continue;
        assert(from !== r.replica, () => `replica ${r.replica}: its own log (op ${dvc.op}) is below what it committed (${dvc.commit})`);
        liars.push({
          from,
          what:
            dvc === best
              ? `a log ending at op ${best.op} (log_view ${best.log_view}) below this replica's commit ${own.commit}`
              : `commit ${dvc.commit} above the chosen log's op ${best.op}`,
          checksum: dvc.checksum ?? null,
        });
      }
      return { kind: "liars", liars };
    }
    assert(
      best.op >= r.commit_min,
      () => `replica ${r.replica}: the chosen log (op ${best.op}) is shorter than what it executed (${r.commit_min})`,
    );
    const decision = r.decideSuffix(best, dvcs, commit);
    if (decision === "wait") return { kind: "wait" };
    assertSuffixHeld(best, dvcs, commit, decision, r.quorum, () => `replica ${r.replica}: view ${r.view}`);
    return { kind: "install", best, commit, suffix: decision };
  }

  /** Acts on decide(): drops the liars' votes, waits, or installs the chosen log and persists it
   * (start_view waits for that write: maybeFinishStartView). */
  maybeStartView(): void {
    const r = this.host;
    const decision = this.decide();
    if (decision.kind === "not_yet") return;
    const vc = r.view_change!;
    if (decision.kind === "liars") {
      assert(decision.liars.length > 0, () => `replica ${r.replica}: a log below its commit number, and nobody lied`);
      for (const liar of decision.liars) {
        r.violation(liar.from, Command.do_view_change, liar.what, liar.checksum);
        vc.dvc_from.delete(liar.from);
      }
      return;
    }
    if (decision.kind === "wait") {
      if (vc.dvc_from.size === r.config.replica_count) {
        r.env.log(
          "warn",
          `replica ${r.replica}: view ${r.view}: an uncommitted op of the chosen log is neither held intact by any replica nor known never to have committed (every copy is damaged): waiting for a replica to repair it`,
        );
      }
      return;
    }
    const { best, commit, suffix } = decision;
    if (suffix.head < best.op) {
      r.env.log(
        "info",
        `replica ${r.replica}: a quorum never had op ${suffix.head + 1} of the chosen log: it was not committed; discarding ops ${suffix.head + 1}..${best.op}`,
      );
    }
    r.chain.installLog(suffix.headers, suffix.head);
    r.commit_max = Math.max(commit, r.commit_min);
    r.commit_max_checksum = null;
    assert(
      r.op >= r.commit_max && r.commit_max >= r.commit_min,
      () => `replica ${r.replica}: starting view ${r.view} with op ${r.op}, commit ${r.commit_max}, executed ${r.commit_min}`,
    );
    r.awaitStartView();
    r.env.log("info", `replica ${r.replica}: starting view ${r.view} as primary with op ${r.op}, commit ${r.commit_max}`);
    r.writeState();
  }

  /** RULE (persist before you promise): start_view goes out once log_view and its suffix are
   * durable. */
  maybeFinishStartView(): void {
    const r = this.host;
    if (!r.start_view_pending || r.log_view_durable !== r.view || r.view_durable !== r.view) return;
    // The pipeline needs every header of the uncommitted suffix; repair fetches missing ones.
    for (let op = r.commit_max + 1; op <= r.op; op++) {
      if (r.journal.header(op) === null) return;
    }
    const pipeline: PipelineEntry[] = [];
    for (let op = r.commit_max + 1; op <= r.op; op++) {
      const h = r.journal.header(op)!;
      const oks = new Set<number>();
      if (op <= r.opPrepareOkMax() && r.journal.hasDurable(op, h.checksum)) oks.add(r.replica);
      pipeline.push({ op, checksum: h.checksum, message: null, oks });
    }
    r.enterNormalPrimary(pipeline);
    assert(
      r.leader !== null && r.view_change === null && r.log_view === r.view,
      () => `replica ${r.replica}: leading view ${r.view} without a leader's state, or still changing views (log_view ${r.log_view})`,
    );
    assert(
      r.op === r.commit_max + pipeline.length,
      () =>
        `replica ${r.replica}: leading view ${r.view} with op ${r.op} but ${pipeline.length} ops in flight above commit ${r.commit_max}`,
    );
    this.sendStartView(null);
    r.primary.onPrepareTimeout();
    r.repair();
    r.primary.commitPipeline();
  }

  sendStartView(to: number | null, nonce = 0n): void {
    const r = this.host;
    // A start_view vouches for this view's log: only once the view and the log are durable, and
    // only in a formed cluster (a forged request_start_view once got one out of a replica whose
    // format was not yet durable).
    if (!r.formed || r.view_durable !== r.view || r.log_view_durable !== r.view) return;
    assert(
      r.isPrimary() && r.log_view === r.view,
      () => `replica ${r.replica}: a start_view for view ${r.view} from a replica that is not its primary (log_view ${r.log_view})`,
    );
    const message = buildStartView(r.envelope(r.view), {
      op: r.op,
      commit_max: r.commit_max,
      checkpoint_op: r.checkpoint.op,
      nonce,
      headers: r.chain.suffixHeaders(),
    });
    if (to === null) r.sendToOthers(message);
    else r.env.sendToReplica(to, message);
  }

  /** Whether a backup or recovering replica installs this start_view (onStartView acts on it). */
  check(message: Message): StartViewCheck {
    const r = this.host;
    const h = message.header;
    assert(h.command === Command.start_view, () => `replica ${r.replica}: checking a ${Command[h.command]} as a start_view`);
    if (r.status === "blank" || (h.view < r.view && !this.mayJoinView(h.view))) return { kind: "ignore" };
    if (h.replica !== primaryIndex(h.view, r.config.replica_count)) return { kind: "ignore" };
    if (h.view === r.view && r.status === "normal") return { kind: "ignore" };
    const sv = readStartView(message);
    if (typeof sv === "string") return { kind: "drop", why: sv };
    if (r.status === "recovering" && h.view < r.view) return { kind: "ignore" };
    // RULE (recovery): a replica that lost its state installs only a start_view answering its own
    // request, so its log is the primary's as it is now. A start_view sent earlier (delayed,
    // replayed) is a prefix of that view's log, and a replica that acknowledged ops of that view
    // before it lost them would install a log without them, then offer it in a view change.
    if (r.recovering !== null && !r.recovering.answers(sv.nonce)) return { kind: "ignore" };
    if (h.op < r.commit_min) return { kind: "ignore" }; // a stale start_view: the view's log holds every committed op
    // Every later view's log holds what this replica executed: a log that names another prepare
    // at its last executed op is none an honest primary sends.
    const at_commit = sv.headers.find((x) => x.op === r.commit_min);
    if (at_commit !== undefined && at_commit.checksum !== r.commit_min_checksum) {
      return { kind: "violation", what: `a log with another prepare at op ${r.commit_min}, which this replica executed` };
    }
    return { kind: "install", sv };
  }

  onStartView(message: Message): void {
    const r = this.host;
    const h = message.header;
    const check = this.check(message);
    if (check.kind === "ignore") return;
    if (check.kind === "drop") return r.drop(message, check.why);
    if (check.kind === "violation") return r.violation(h.replica, h.command, check.what, h.checksum);
    const headers = check.sv.headers;
    // A start_view of the view this replica's log is already in (resent, delayed or replayed) is a
    // prefix of that log, which only grows within its view: it must not cut the ops this replica
    // has acknowledged since.
    const same_log = r.log_view === h.view && r.op >= h.op && r.status !== "recovering";
    r.adoptView(h.view);
    if (same_log) {
      for (const header of headers) {
        if (header.op > r.commit_min && header.op <= r.commit_min + r.config.journal_slot_count) r.journal.setHeader(header);
      }
      r.chain.trimUnchained();
    } else {
      r.chain.installLog(headers, h.op);
    }
    // The new view's log is installed up to h.op: a commit number above it is none of its.
    r.commit_hint = h.commit;
    if (Math.min(h.commit, h.op) > r.commit_max) {
      r.commit_max = Math.min(h.commit, h.op);
      r.commit_max_checksum = null;
    }
    r.state_sync.primaryCheckpointIs(h.checkpoint_op);
    if (r.recovering !== null) {
      r.recovering.installed(h.view, h.op);
      r.timeout_normal.start();
      r.state_sync.maybeStart();
      r.repair();
      r.maybeFinishRecovering();
      return;
    }
    r.enterNormalBackup();
    assert(
      r.view === h.view && r.log_view === h.view,
      () => `replica ${r.replica}: installed view ${h.view} as view ${r.view}, log_view ${r.log_view}`,
    );
    assert(
      r.view_change === null && r.leader === null && r.status === "normal",
      () => `replica ${r.replica}: installed view ${h.view} but still holds view change or leader state`,
    );
    r.writeState();
    r.acks_after_start_view = h.commit;
    r.env.log("info", `replica ${r.replica}: installed view ${r.view} from primary ${h.replica}: op ${r.op}, commit ${r.commit_max}`);
    r.state_sync.maybeStart();
    r.repair();
    r.executeCommitted();
  }

  /**
   * Whether this replica, changing views, may join the lower view v that it learns is alive: it
   * left its old view on its own timeout or votes, but promised nothing beyond view_durable (no
   * do_view_change or start_view is sent before the view is durable), so joining any view from
   * view_durable on breaks no promise, and spares a cluster that never followed it from waiting
   * for a view change it does not need. A superblock write whose flush has begun counts as
   * durable here: it can no longer be taken back, and would leave the superblock's view above the
   * view joined (docs/STORAGE.md §10.9).
   */
  mayJoinView(v: number): boolean {
    const r = this.host;
    const may = r.status === "view_change" && v >= r.view_durable && v >= r.view_flushing && v >= r.log_view && v < r.view;
    assert(!may || r.view_change !== null, () => `replica ${r.replica}: changing views without view change state`);
    return may;
  }

  requestStartView(view?: number): void {
    const r = this.host;
    const v = view ?? r.view;
    const primary = primaryIndex(v, r.config.replica_count);
    if (primary === r.replica) return;
    let nonce = 0n;
    if (r.recovering !== null) {
      // Odd, so never 0: a start_view echoing 0 answers nobody's recovery.
      nonce = r.env.random.u64() | 1n;
      r.recovering.asked(nonce);
    }
    assert((nonce === 0n) === (r.recovering === null), () => `replica ${r.replica}: request_start_view nonce ${nonce} outside recovery`);
    r.env.sendToReplica(primary, buildRequestStartView(r.envelope(r.view), { view: v, nonce }));
  }

  onRequestStartView(message: Message): void {
    const r = this.host;
    const h = message.header;
    assert(h.replica !== r.replica, () => `replica ${r.replica}: a request_start_view from itself`);
    if (h.view === r.view && r.isActingPrimary()) this.sendStartView(h.replica, readRequestStartView(message).nonce);
  }
}
