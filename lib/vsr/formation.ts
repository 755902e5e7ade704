/**
 * Cluster formation (docs/PROTOCOL.md §4.1 Incarnation, §4.4 ping and pong): whether this replica
 * formats a new cluster, recovers a lost disk, or waits, and which cluster incarnation it ends up
 * in. It owns the probe state and the incarnation and only decides; FormationDriver
 * (formation_driver.ts) sends the pings and pongs, and Replica writes the superblock and changes
 * its status as a decision says.
 *
 * Phases, one way only: blank (no data directory: probing whether to format or recover) →
 * formatted (a superblock exists, or is being written, but not every replica is known to have
 * one; nothing is prepared meanwhile, so the replica stays pristine and a peer whose formatting
 * was delayed still sees a blank cluster instead of mistaking itself for a lost disk) → formed.
 * A replica recovering a lost disk goes from blank straight to formed.
 */
import { assert } from "../util/assert.ts";

/** A replica's answer to a probe: the pong's `operation` (docs/PROTOCOL.md §4.4). */
export enum ProbeAnswer {
  blank = 0,
  formatted = 1,
  /** A lost disk, catching up: the cluster formed. */
  recovering = 2,
  formed = 3,
}

/** The statuses of a Replica (its Status in lib/vsr/env.ts), as far as its probe answers depend on them. */
export type ProbeStatus = "blank" | "recovering" | "normal" | "view_change";

export type FormationPhase = "blank" | "formatted" | "formed";

/** The fields of a pong that formation reads (from the wire: `answer` may be any byte). */
export interface Pong {
  replica: number;
  /** The ping's nonce it echoes (the header's context). */
  nonce: bigint;
  answer: number;
  view: number;
  log_view: number;
  op: number;
  commit: number;
  /** The view its superblock holds (the header's checkpoint_op). */
  durable_view: number;
  incarnation: number;
}

export type FormationDecision =
  /** Nothing to do yet. */
  | { kind: "wait" }
  /** Every peer is blank or pristine: format a new cluster (the incarnation is taken already). */
  | { kind: "format"; incarnation: number }
  /** This disk was lost: recover from peers in this incarnation (taken already), at this view. */
  | { kind: "recover"; incarnation: number; view: number }
  /** Blank, the cluster has data, and no incarnation has f+1 formatted peers: wait, and warn. */
  | { kind: "disagree"; heard: { replica: number; incarnation: number }[] }
  /** Formatted, not formed: a peer's incarnation was taken (persist it), and form if `form`. */
  | { kind: "adopt"; peer: number; peer_formed: boolean; previous: number; incarnation: number; form: boolean }
  /** Every replica is formatted in this incarnation, or a peer proved the cluster formed. */
  | { kind: "form" };

interface BlankReply {
  formatted: boolean;
  /** Formatted, view 0, nothing prepared: formatting may still be what the cluster is doing. */
  pristine: boolean;
  view: number;
  incarnation: number;
}

const wait: FormationDecision = { kind: "wait" };

export class Formation {
  private phase_: FormationPhase = "blank";
  /**
   * The cluster incarnation: while blank, this replica's candidate; while formatted, it may still
   * fall to a lower one a peer formatted with (they converge on the lowest); once formed it never
   * changes.
   */
  private incarnation_ = 0;
  /** The incarnation the superblock holds (-1 while blank or not yet written). */
  private incarnation_durable = -1;
  /** Opened from a data directory (not formatted in this run): it may have lost unsynced state. */
  private restarted_ = false;
  /** The current probe round's nonce: only pongs echoing it count, so replays do not. */
  private nonce_ = 0n;
  /** Blank: the latest answer of each peer, across rounds (see round()). */
  private readonly replies = new Map<number, BlankReply>();
  /** Formatted: the peers heard formatted in this replica's incarnation. */
  private readonly formatted_peers = new Set<number>();
  private readonly f: number;

  constructor(
    readonly replica: number,
    readonly replica_count: number,
  ) {
    assert(replica_count >= 1 && replica >= 0 && replica < replica_count, `replica ${replica} out of range for ${replica_count} replicas`);
    this.f = Math.floor((replica_count - 1) / 2);
  }

  get phase(): FormationPhase {
    return this.phase_;
  }

  get formed(): boolean {
    return this.phase_ === "formed";
  }

  get incarnation(): number {
    return this.incarnation_;
  }

  get restarted(): boolean {
    return this.restarted_;
  }

  get nonce(): bigint {
    return this.nonce_;
  }

  /** Opened blank, with a random nonzero candidate incarnation. */
  candidate(incarnation: number): void {
    assert(
      this.phase_ === "blank" && this.incarnation_ === 0 && !this.restarted_,
      "a candidate incarnation for a replica that already chose one",
    );
    assert(incarnation > 0 && incarnation <= 0xffff_ffff, () => `candidate incarnation ${incarnation} is not a nonzero u32`);
    this.incarnation_ = incarnation;
  }

  /** Opened from a data directory formatted in this incarnation: formatted, and formed once
   * Replica can tell from the disk (form()) or a peer tells it. */
  restart(incarnation: number): void {
    assert(this.phase_ === "blank" && this.incarnation_ === 0 && !this.restarted_, "restarted twice");
    // 0 is a directory formatted before incarnations existed; anything else is the u32 it was formatted with.
    assert(
      Number.isInteger(incarnation) && incarnation >= 0 && incarnation <= 0xffff_ffff,
      () => `restarted with incarnation ${incarnation}`,
    );
    this.phase_ = "formatted";
    this.incarnation_ = this.incarnation_durable = incarnation;
    this.restarted_ = true;
  }

  /** A superblock naming this incarnation is durable. */
  durable(incarnation: number): void {
    // A superblock can only hold an incarnation this replica chose or adopted: never the unset -1 or a non-u32.
    assert(Number.isInteger(incarnation) && incarnation >= 0 && incarnation <= 0xffff_ffff, () => `durable incarnation ${incarnation}`);
    this.incarnation_durable = incarnation;
  }

  /**
   * A new probe round. Answers accumulate across rounds (the latest per peer counts), since under
   * partitions no single round may hear everyone. Formatted is durable (a formatted replica is
   * blank again only if its disk is replaced), so a peer heard formatted stays counted. A peer
   * heard blank or pristine cannot have moved on to real state while this replica is blank:
   * forming needs this replica formatted too. (A fresh nonce per round still keeps replayed
   * answers out.)
   */
  round(nonce: bigint): void {
    assert(this.phase_ !== "formed", "probing a formed cluster");
    this.nonce_ = nonce;
  }

  /** The cluster formed: every replica is formatted, or a message or a peer proved it. */
  form(): void {
    assert(this.phase_ === "formatted", () => `forming from phase ${this.phase_}`);
    this.phase_ = "formed";
  }

  /**
   * What this replica answers a probe. Formatted only once the format is durable: a peer counts it
   * for good (pong), and a crash before then would bring this replica back blank. (Its
   * incarnation, in the header, counts as formatted only once durable, likewise.) Formed: the
   * cluster formed, which a replica that restarted before anything was prepared cannot tell from
   * its disk.
   */
  answer(status: ProbeStatus, view_durable: number): ProbeAnswer {
    this.checkStatus(status);
    const durable = view_durable >= 0 && this.incarnation_durable === this.incarnation_;
    if (status === "blank" || (status === "normal" && !durable)) return ProbeAnswer.blank;
    if (status === "recovering") return ProbeAnswer.recovering;
    return this.formed ? ProbeAnswer.formed : ProbeAnswer.formatted;
  }

  /** A pong arrived; status is the replica's. */
  pong(pong: Pong, status: ProbeStatus): FormationDecision {
    if (pong.nonce !== this.nonce_) return wait;
    this.checkStatus(status);
    assert(
      pong.replica !== this.replica && pong.replica >= 0 && pong.replica < this.replica_count,
      () => `pong from replica ${pong.replica}`,
    );
    if (this.phase_ === "blank") {
      // Pristine: formatted, not formed, nothing in its log. Its view may have moved (a formatted
      // replica whose peers crashed before formatting times out and starts view changes), but no
      // view of an unformed cluster holds anything: counting it as data left the blank replicas
      // waiting for f+1 formatted peers that would never come (sweep seed 831852234929).
      this.replies.set(pong.replica, {
        formatted: pong.answer !== ProbeAnswer.blank,
        pristine: pong.answer === ProbeAnswer.formatted && pong.log_view === 0 && pong.op === 0 && pong.commit === 0,
        view: pong.durable_view,
        incarnation: pong.incarnation,
      });
      // One answer per peer, never this replica's own: decide() counts them against replica_count - 1.
      assert(
        this.replies.size <= this.replica_count - 1 && !this.replies.has(this.replica),
        () => `replica ${this.replica}: ${this.replies.size} probe answers from ${this.replica_count - 1} peers`,
      );
      return this.decide();
    }
    if (this.phase_ === "formed") return wait;
    if (pong.answer === ProbeAnswer.blank) {
      this.formatted_peers.delete(pong.replica); // its disk was replaced since
      return wait;
    }
    // A peer of a formed cluster (formed, or recovering a lost disk) proves the cluster formed,
    // with its incarnation: this replica (pristine, nothing promised) takes both. A pong echoes
    // this round's nonce, so a forged one cannot.
    const peer_formed = pong.answer >= ProbeAnswer.recovering;
    let adopted: number | null = null;
    if (pong.incarnation !== this.incarnation_ && status === "normal" && (peer_formed || pong.incarnation < this.incarnation_)) {
      // Formatted at the same time from other probe answers (a candidate changed by a restart
      // in between): an unformed cluster holds nothing yet, so all settle on the lowest.
      adopted = this.incarnation_;
      this.incarnation_ = pong.incarnation;
      this.formatted_peers.clear();
    }
    if (pong.incarnation !== this.incarnation_) {
      this.formatted_peers.delete(pong.replica);
      return wait;
    }
    this.formatted_peers.add(pong.replica);
    const form = (peer_formed || this.formatted_peers.size === this.replica_count - 1) && this.incarnation_durable === this.incarnation_;
    if (adopted !== null)
      return { kind: "adopt", peer: pong.replica, peer_formed, previous: adopted, incarnation: this.incarnation_, form };
    return form ? { kind: "form" } : wait;
  }

  /**
   * RULE (formatting): a blank replica formats only when every other replica answered the probes
   * with a blank or a pristine (formatted, view 0, nothing prepared) disk. If any answered with
   * real state, this disk was lost: it adopts the highest durable view f+1 others report (any view
   * it promised before, a quorum made durable, and f+1 answers include one of them) and recovers
   * without acknowledging anything until caught up. Only while blank; otherwise it waits.
   */
  decide(): FormationDecision {
    if (this.phase_ !== "blank") return wait;
    const others = this.replica_count - 1;
    const replies = [...this.replies.values()];
    const lost = replies.some((r) => r.formatted && !r.pristine);
    if (!lost && replies.length === others) {
      // RULE (incarnation at formation): a formatted peer's if any (the lowest), else the lowest
      // candidate heard (its own included): replicas formatting from the same answers agree, and
      // those that did not converge on the lowest before the cluster forms (pong).
      const formatted = replies.filter((r) => r.formatted).map((r) => r.incarnation);
      this.incarnation_ = formatted.length > 0 ? Math.min(...formatted) : Math.min(this.incarnation_, ...replies.map((r) => r.incarnation));
      this.phase_ = "formatted";
      return { kind: "format", incarnation: this.incarnation_ };
    }
    if (!lost || replies.length < this.f + 1) return wait;
    // It joins the incarnation f+1 formatted peers agree on: a lone directory of an earlier
    // cluster on these addresses must not be the one it follows.
    const votes = new Map<number, number>();
    for (const r of replies) if (r.formatted) votes.set(r.incarnation, (votes.get(r.incarnation) ?? 0) + 1);
    const agreed = [...votes].find(([, count]) => count >= this.f + 1);
    if (agreed === undefined) {
      const heard = [...this.replies].filter(([, r]) => r.formatted).map(([replica, r]) => ({ replica, incarnation: r.incarnation }));
      return { kind: "disagree", heard };
    }
    this.incarnation_ = agreed[0];
    const view = Math.max(...replies.filter((r) => r.formatted && r.incarnation === this.incarnation_).map((r) => r.view));
    assert(view >= 0, () => `recovering at view ${view}`);
    this.phase_ = "formed";
    return { kind: "recover", incarnation: this.incarnation_, view };
  }

  /** Blank status is the blank phase, and a replica recovering has formed (only formation takes
   * it out of blank, straight to formed when recovering). */
  private checkStatus(status: ProbeStatus): void {
    assert(
      (status === "blank") === (this.phase_ === "blank"),
      () => `replica ${this.replica}: status ${status} in formation phase ${this.phase_}`,
    );
    assert(
      status !== "recovering" || this.phase_ === "formed",
      () => `replica ${this.replica}: recovering in formation phase ${this.phase_}`,
    );
  }
}
