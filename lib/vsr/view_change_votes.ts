/**
 * The votes of a view change, up to do_view_change (docs/PROTOCOL.md, view change): the
 * start_view_change votes to leave a view, the do_view_change each replica builds once from
 * durable state and sends to the new primary, and the new primary's collection of them.
 *
 * It owns the votes a replica in normal status counts for higher views and the log-noise flag of
 * a stalled view change; the view change itself (ViewChanging, view_change.ts) stays the
 * replica's role object, null exactly outside status view_change. Leaving a view is a role change
 * the replica makes (startViewChange); what to do with a quorum of do_view_change messages is the
 * start_view code's (maybeStartView). This part decides when to ask for either.
 *
 * Calls between parts: this one asks start_view.ts (host.view_install) to choose the log or resend
 * start_view, and start_view.ts asks this one (host.votes) to forget its votes once a view is
 * established. Neither imports the other; the replica passes itself to both.
 */
import { assert } from "../util/assert.ts";
import type { Command, Header, Message } from "../net/codec.ts";
import { primaryIndex, type Env, type ReplicaObserver, type Status } from "./env.ts";
import type { Journal } from "./journal.ts";
import { buildDoViewChange, buildStartViewChange, readDoViewChange, readStartViewChange, type Envelope } from "./messages.ts";
import { presence_absent, presence_faulty, presence_present, type DoViewChange, type ViewChanging } from "./view_change.ts";

/** What the votes read of the replica, and the replica's actions they ask for. */
export interface ViewChangeVotesHost {
  readonly replica: number;
  readonly f: number;
  readonly quorum: number;
  readonly config: { readonly replica_count: number };
  readonly env: Pick<Env, "log" | "sendToReplica">;
  readonly status: Status;
  readonly view: number;
  readonly log_view: number;
  readonly op: number;
  readonly commit_min: number;
  readonly commit_max: number;
  readonly view_durable: number;
  /** The superblock write in flight, if any (the view it makes durable). */
  readonly durable: { readonly in_flight: { readonly view: number } | null };
  /** Writes queued, and a flush in flight (docs/STORAGE.md §10.9): a do_view_change waits for both. */
  readonly storage: { pending(): boolean; flushing(): boolean };
  readonly journal: Pick<Journal, "hasDurable" | "isFaulty" | "isDamaged">;
  readonly observer: Pick<ReplicaObserver, "doViewChange"> | null;
  /** The role object of a view change: non-null exactly while status is view_change. */
  readonly view_change: ViewChanging | null;
  envelope(view: number): Envelope;
  sendToOthers(message: Message): void;
  isPrimary(): boolean;
  /** The role change: leaves the current view for `view`. */
  startViewChange(view: number): void;
  writeState(): void;
  promiseNeedsDurableView(): boolean;
  /** The log's shape (log_chain.ts): the top of the log a do_view_change offers. */
  readonly chain: { suffixHeaders(): Header[] };
  damagedOps(): number[];
  /** The new view's log and start_view (start_view.ts): the new primary's next step once it holds
   * do_view_change messages, and start_view resent to a replica that missed it. */
  readonly view_install: { maybeStartView(): void; sendStartView(to: number): void };
  drop(message: Message, why: string): void;
  violation(from: number, command: Command, what: string, checksum: bigint | null): void;
}

export class ViewChangeVotes {
  /** Normal status: start_view_change votes for higher views, per view (f+1 move this replica). */
  private svc_higher = new Map<number, Set<number>>();
  /** A view change has stalled since this replica was last in normal status (log noise only). */
  private view_change_stalled = false;

  constructor(private readonly host: ViewChangeVotesHost) {
    assert(host.quorum >= host.f + 1, () => `replica ${host.replica}: quorum ${host.quorum} below f+1 (${host.f + 1})`);
  }

  /** The votes for higher views belong to the view they were counted in: a new view drops them. */
  forgetHigherViews(): void {
    assert(this.host.status !== "blank", () => `replica ${this.host.replica}: a blank replica entering view ${this.host.view}`);
    this.svc_higher = new Map();
  }

  /** The replica is in normal status again: the next stall is news worth logging at info. */
  viewEstablished(): void {
    assert(this.host.status === "normal", () => `replica ${this.host.replica}: view ${this.host.view} established in ${this.host.status}`);
    this.view_change_stalled = false;
  }

  /** start_view_change carries the sender's durable view (context): a replica that has made a
   * view durable can never come back below it. */
  makeStartViewChange(): Message {
    const host = this.host;
    assert(host.view_durable <= host.view, () => `replica ${host.replica}: durable view ${host.view_durable} above view ${host.view}`);
    return buildStartViewChange(host.envelope(host.view), { durable_view: Math.max(0, host.view_durable) });
  }

  /**
   * Normal status: counts one replica's vote to leave this view for `view`, and returns the view
   * to change to, or null to stay. `promised` is the sender's durable view.
   */
  voteHigher(from: number, view: number, promised: number): number | null {
    const host = this.host;
    assert(host.status === "normal" && view > host.view, () => `replica ${host.replica}: a vote for view ${view} in view ${host.view}`);
    if (host.isPrimary() && promised > host.view && promised <= view) {
      // The sender made a higher view durable (it sent do_view_change in it, after a quorum had
      // agreed to leave the view before), so it can never rejoin this one: without a view change
      // it would stay out for good. One view change to that view brings it back.
      host.env.log(
        "info",
        `replica ${host.replica}: replica ${from} has promised view ${promised} and cannot return to view ${host.view}: moving the cluster to view ${promised} so it can rejoin`,
      );
      return promised;
    }
    let votes = this.svc_higher.get(view);
    if (votes === undefined) {
      votes = new Set();
      this.svc_higher.set(view, votes);
    }
    votes.add(from);
    return votes.size >= host.f + 1 ? view : null;
  }

  onStartViewChange(message: Message): void {
    const host = this.host;
    const h = message.header;
    if (host.status === "blank" || host.status === "recovering" || h.view < host.view) return;
    if (host.status === "normal") {
      // RULE: a replica in normal status leaves its view only on its own timeout or when f+1
      // others want to; one replica that cannot hear the primary must not depose it.
      if (h.view <= host.view) return;
      const view = this.voteHigher(h.replica, h.view, readStartViewChange(message).durable_view);
      if (view !== null) host.startViewChange(view);
      return;
    }
    if (h.view > host.view) host.startViewChange(h.view);
    assert(
      host.view === h.view && host.view_change !== null,
      () => `replica ${host.replica}: counting a start_view_change for view ${h.view} while in view ${host.view} (${host.status})`,
    );
    host.view_change!.svc_from.add(h.replica);
    this.maybeSendDoViewChange();
  }

  /** Returns false when no view change is in progress: the resend timer stops. */
  onViewChangeResend(): boolean {
    const host = this.host;
    if (host.status !== "view_change") return false;
    host.sendToOthers(this.makeStartViewChange());
    // The same do_view_change again: built from durable state when first sent, it stays true, while
    // one rebuilt now could count a prepare written since, not yet durable, as never held.
    const dvc = host.view_change!.dvc_message;
    if (dvc !== null && !host.isPrimary()) host.env.sendToReplica(primaryIndex(host.view, host.config.replica_count), dvc);
    assert(dvc === null || host.view_change!.dvc_sent, () => `replica ${host.replica}: resending a do_view_change never sent`);
    return true;
  }

  /** A stalled view change moves on to the next view, but only once a quorum agreed to leave the
   * current one: a replica cut off alone keeps its view instead of racing ahead of the cluster.
   * Returns false when no view change is in progress: the timer stops. */
  onViewChangeTimeout(): boolean {
    const host = this.host;
    if (host.status !== "view_change") return false;
    if (host.view_change!.svc_from.size >= host.quorum) {
      // Once per episode at info (a partition stalls every ~600 ms while it lasts); then debug.
      host.env.log(
        this.view_change_stalled ? "debug" : "info",
        `replica ${host.replica}: view change to ${host.view} stalled: trying view ${host.view + 1}${this.view_change_stalled ? "" : " (further stalls until a view is established are logged at debug)"}`,
      );
      this.view_change_stalled = true;
      host.startViewChange(host.view + 1);
    }
    assert(host.view_change !== null, () => `replica ${host.replica}: left view ${host.view} without view change state`);
    return true;
  }

  /** RULE (persist before you promise): do_view_change is sent only once this view is durable,
   * and is built only from durable state: nothing is queued and no flush is in flight. A prepare
   * rewritten into a slot (repair of one found damaged, which it offers as faulty) is dirty until
   * its group completes, so offered in between it would read as never held, though this replica
   * may have acknowledged it (docs/STORAGE.md §10.9, sweep seed 622466772508). */
  maybeSendDoViewChange(): void {
    const host = this.host;
    const vc = host.view_change;
    if (vc === null || vc.dvc_sent || vc.svc_from.size < host.quorum) return;
    if (host.view_durable !== host.view) {
      if (host.durable.in_flight?.view !== host.view) host.writeState();
      if (host.promiseNeedsDurableView()) return;
    }
    if ((host.storage.pending() || host.storage.flushing()) && host.promiseNeedsDurableView()) return;
    // RULE (persist before you promise), asserted apart from the checks above.
    assert(
      host.view_durable === host.view || !host.promiseNeedsDurableView(),
      () => `replica ${host.replica}: do_view_change for view ${host.view} before the view is durable (${host.view_durable})`,
    );
    vc.dvc_sent = true;
    this.sendDoViewChange(vc);
  }

  private sendDoViewChange(vc: ViewChanging): void {
    const host = this.host;
    assert(
      host.status === "view_change" && host.view_change === vc && vc.dvc_sent,
      () => `replica ${host.replica}: a do_view_change outside its view change`,
    );
    assert(host.log_view < host.view, () => `replica ${host.replica}: do_view_change for view ${host.view} with log_view ${host.log_view}`);
    const primary = primaryIndex(host.view, host.config.replica_count);
    const headers = host.chain.suffixHeaders();
    const presence = new Uint8Array(headers.length);
    headers.forEach((header, i) => {
      presence[i] =
        host.journal.hasDurable(header.op, header.checksum) || header.op <= host.commit_min
          ? presence_present
          : host.journal.isFaulty(header.op, header.checksum)
            ? presence_faulty
            : presence_absent;
    });
    const faulty_ops = host.damagedOps();
    // RULE (damage is per slot): only the ops whose own slot is damaged are withheld from nacks.
    for (const op of faulty_ops)
      assert(host.journal.isDamaged(op), () => `replica ${host.replica}: reports op ${op} faulty, but its journal slot is not damaged`);
    const dvc: DoViewChange = { log_view: host.log_view, op: host.op, commit: host.commit_max, headers, presence, faulty_ops };
    host.observer?.doViewChange(host.replica, host.view, dvc);
    if (primary === host.replica) {
      vc.dvc_from.set(host.replica, dvc);
      host.view_install.maybeStartView();
      return;
    }
    vc.dvc_message = buildDoViewChange(host.envelope(host.view), dvc);
    host.env.sendToReplica(primary, vc.dvc_message);
  }

  onDoViewChange(message: Message): void {
    const host = this.host;
    const h = message.header;
    if (host.status === "blank" || host.status === "recovering" || h.view < host.view) return;
    if (primaryIndex(h.view, host.config.replica_count) !== host.replica) return;
    const body = readDoViewChange(message);
    if (typeof body === "string") return host.drop(message, body);
    // Its log was normal in an earlier view than the one it votes for.
    if (h.log_view >= h.view)
      return host.violation(h.replica, h.command, `log_view ${h.log_view} not below its view ${h.view}`, h.checksum);
    const { headers, presence, faulty_ops } = body;
    if (h.view === host.view && host.status === "normal") {
      // It missed the start_view: resend it.
      host.view_install.sendStartView(h.replica);
      return;
    }
    if (h.view > host.view) host.startViewChange(h.view);
    const vc = host.view_change;
    if (vc === null) return;
    assert(
      host.view === h.view && host.status === "view_change",
      () => `replica ${host.replica}: counting a do_view_change for view ${h.view} while in view ${host.view}`,
    );
    // A do_view_change implies its sender voted to leave the old view.
    vc.svc_from.add(h.replica);
    // A commit number above the sender's own head is none it could know (its log holds every op it
    // learned committed): believe it only up to there.
    assert(h.replica !== host.replica, "a do_view_change from itself arrives as a message");
    vc.dvc_from.set(h.replica, {
      log_view: h.log_view,
      op: h.op,
      commit: Math.min(h.commit, h.op),
      headers,
      presence,
      faulty_ops,
      checksum: h.checksum,
    });
    this.maybeSendDoViewChange();
    host.view_install.maybeStartView();
  }

  private higherVotesInvariants(broken: (what: string) => never): void {
    const host = this.host;
    for (const [view, votes] of this.svc_higher) {
      if (votes.size === 0 || votes.size > host.f) broken(`${votes.size} votes for view ${view} kept (f is ${host.f})`);
      for (const r of votes) if (r < 0 || r >= host.config.replica_count) broken(`a vote for view ${view} from replica ${r}`);
    }
  }

  /** What holds between events; `broken` reports a violation. */
  invariants(broken: (what: string) => never): void {
    const host = this.host;
    // Votes are counted only in normal status, and reaching f+1 leaves the view (which drops them).
    if (this.svc_higher.size > 0) {
      if (host.status === "view_change") broken("votes for higher views while changing views");
      this.higherVotesInvariants(broken);
    }
    const vc = host.view_change;
    if (vc === null) return;
    if (!vc.svc_from.has(host.replica)) broken("changing views without its own vote to leave");
    if (vc.dvc_message !== null && !vc.dvc_sent) broken("a do_view_change kept but never sent");
    if (vc.dvc_sent && vc.svc_from.size < host.quorum) broken(`a do_view_change sent on ${vc.svc_from.size} votes, below a quorum`);
    if (vc.dvc_from.size > 0 && primaryIndex(host.view, host.config.replica_count) !== host.replica)
      broken(`do_view_change messages held by replica ${host.replica}, not the primary of view ${host.view}`);
    for (const [from, dvc] of vc.dvc_from) {
      if (dvc.log_view >= host.view)
        broken(`the do_view_change of replica ${from} has log_view ${dvc.log_view}, not below view ${host.view}`);
    }
  }
}
