/**
 * Drives cluster formation (docs/PROTOCOL.md §4.1 Incarnation, §4.4 ping and pong): it sends the
 * probes and answers them, feeds the answers to Formation (formation.ts, which decides), and asks
 * the replica for the role change a decision names (format, form, recover). It also refuses
 * messages of another cluster incarnation. It owns the probe timer and the warnings it rate-limits;
 * the Formation itself stays the replica's (restart and the superblock read it too).
 */
import { assert } from "../util/assert.ts";
import type { Prng } from "../util/prng.ts";
import { hex32 } from "../util/hex.ts";
import { LogLimiter } from "../net/log_limiter.ts";
import { Command, type Header, type Message } from "../net/codec.ts";
import type { Config } from "../constants.ts";
import type { Formation, FormationDecision } from "./formation.ts";
import { Timeout } from "./timeout.ts";
import { decodeBatch } from "./batch.ts";
import type { Env, Status } from "./env.ts";
import { buildPing, buildPong, decodeHeaders, readPing, readPong, suffixValid, type Envelope } from "./messages.ts";

/** What of the replica formation reads, and the role changes it asks for. */
export interface FormationDriverHost {
  readonly replica: number;
  readonly config: Pick<Config, "cluster" | "replica_count" | "probe_ticks" | "tick_ms">;
  readonly env: Pick<Env, "sendToReplica" | "random" | "log">;
  readonly formation: Formation;
  readonly status: Status;
  readonly view: number;
  readonly log_view: number;
  readonly view_durable: number;
  readonly op: number;
  readonly commit_max: number;
  readonly f: number;
  readonly incarnation: number;
  readonly ticks: number;
  /** The root prepare: op 1 chains to its checksum. */
  readonly root: Header;
  envelope(view: number): Envelope;
  sendToOthers(message: Message): void;
  drop(message: Message, why: string): void;
  /** Persists the current state (an adopted incarnation). */
  writeState(): void;
  /** Every replica is blank: become a formatted, normal replica of a new cluster. */
  format(): void;
  /** The cluster formed: start normal operation (and stop probing). */
  form(): void;
  /** This disk was lost: recover from peers at view. */
  enterRecovering(view: number, checkpoint_floor: number): void;
}

export class FormationDriver {
  /** Warnings that would repeat with every message or probe (a peer of another incarnation, a
   * blank replica that cannot tell which incarnation to join): once a minute per subject, timed
   * in ticks. */
  private readonly warnings = new LogLimiter();
  /** Probes run while blank, and while formatted until the cluster formed. */
  private readonly timeout_probe: Timeout;

  constructor(private readonly host: FormationDriverHost) {
    assert(host.config.probe_ticks >= 1, () => `probe_ticks ${host.config.probe_ticks}`);
    this.timeout_probe = new Timeout("probe", host.config.probe_ticks);
  }

  /** Whether probes are still being sent. */
  get probing(): boolean {
    return this.timeout_probe.running;
  }

  /** Opened with no data directory: choose a candidate incarnation and probe. */
  openBlank(): void {
    assert(this.host.status === "blank", () => `replica ${this.host.replica}: opened blank in status ${this.host.status}`);
    this.host.formation.candidate(randomIncarnation(this.host.env.random));
    this.start();
  }

  /** Starts probing, with a first probe now. */
  start(): void {
    assert(!this.host.formation.formed, () => `replica ${this.host.replica}: probing a formed cluster`);
    this.timeout_probe.start();
    this.sendProbe();
  }

  /** The cluster formed: no more probes. (A replica that recovers a lost disk stops them where
   * it decides to, in follow.) */
  stop(): void {
    assert(this.host.formation.formed, () => `replica ${this.host.replica}: probes stopped before the cluster formed`);
    this.timeout_probe.stop();
  }

  tick(): void {
    assert(!this.probing || !this.host.formation.formed, () => `replica ${this.host.replica}: the probe timer runs once formed`);
    if (this.timeout_probe.tick()) this.sendProbe();
  }

  /** Whether a message shows the cluster formed (so every replica formatted): only what a forged
   * frame cannot fake by chance counts, the first prepare (it chains to the root) or a start_view
   * whose headers verify. A forged commit or view-change vote once formed a replica whose peers
   * were still blank, and the cluster never formed. Otherwise the probes tell (onPong). */
  provesFormed(message: Message): boolean {
    const h = message.header;
    assert(h.cluster === this.host.config.cluster, "a message of another cluster reached formation");
    if (h.command === Command.prepare) return h.op === 1 && h.parent === this.host.root.checksum && decodeBatch(message.body) !== null;
    if (h.command === Command.start_view) {
      const headers = decodeHeaders(message.body, this.host.config.cluster);
      return headers !== null && suffixValid(headers, h.op);
    }
    return false;
  }

  sendProbe(): void {
    if (this.host.status !== "blank" && this.host.formation.formed) {
      this.timeout_probe.stop();
      return;
    }
    // Blank is never formed (only formation takes a replica out of blank): so still unformed here.
    assert(!this.host.formation.formed, () => `replica ${this.host.replica}: probing a formed cluster`);
    this.host.formation.round(this.host.env.random.u64());
    this.host.sendToOthers(buildPing(this.host.envelope(this.host.view), { nonce: this.host.formation.nonce }));
    this.follow(this.host.formation.decide());
  }

  onPing(message: Message): void {
    assert(message.header.command === Command.ping, "onPing with another command");
    const pong = buildPong(this.host.envelope(this.host.view), {
      nonce: readPing(message).nonce,
      state: this.host.formation.answer(this.host.status, this.host.view_durable),
      op: this.host.op,
      commit_max: this.host.commit_max,
      log_view: this.host.log_view,
      // The durable view: the floor a replica that lost its disk adopts (views being changed in
      // memory are not promises, and the cluster may settle below them).
      durable_view: Math.max(0, this.host.view_durable),
    });
    this.host.env.sendToReplica(message.header.replica, pong);
  }

  onPong(message: Message): void {
    const h = message.header;
    assert(h.command === Command.pong, "onPong with another command");
    const p = readPong(message);
    const pong = {
      replica: h.replica,
      nonce: p.nonce,
      answer: p.state,
      view: h.view,
      log_view: p.log_view,
      op: p.op,
      commit: p.commit_max,
      durable_view: p.durable_view,
      incarnation: h.incarnation,
    };
    this.follow(this.host.formation.pong(pong, this.host.status));
  }

  /** A peer of another cluster incarnation: its data directory belongs to another cluster that
   * had the same addresses. Dropped, and said once a minute per peer, with what to do. */
  otherIncarnation(message: Message): void {
    const h = message.header;
    const host = this.host;
    assert(h.incarnation !== host.incarnation, "a message of this replica's own incarnation refused");
    host.drop(message, `cluster incarnation ${hex32(h.incarnation)} is not ours (${hex32(host.incarnation)})`);
    if (host.status === "blank") return; // it has none yet: it adopts one when it recovers or formats
    if (this.warnings.admit(`incarnation of replica ${h.replica}`, host.ticks * host.config.tick_ms) === null) return;
    host.env.log(
      "error",
      `replica ${host.replica}: refusing replica ${h.replica}: its data directory belongs to cluster incarnation ${hex32(h.incarnation)}, this replica's to ${hex32(host.incarnation)} (a directory of an earlier cluster on the same addresses, or a different cluster): stop it and give it the right data directory, or an empty one to have it recover from the others`,
    );
  }

  /** A probe only runs before the cluster formed: a formed replica has stopped its timer. */
  invariants(): void {
    // Runs after every simulator step: the condition first, the message only on failure.
    if (this.probing && this.host.formation.formed)
      assert(false, `replica ${this.host.replica}: still probing a formed cluster (status ${this.host.status})`);
    assert(this.warnings.size <= this.warnings.keys_max, "the warning limiter grew past its bound");
  }

  /** Acts on what formation decided (RULE formatting and RULE incarnation at formation are
   * decided in formation.ts). */
  private follow(decision: FormationDecision): void {
    const host = this.host;
    // Formatting and recovering are decided only while blank, and leave blank at once.
    assert(
      (decision.kind !== "format" && decision.kind !== "recover") || host.status === "blank",
      () => `replica ${host.replica}: ${decision.kind} decided in status ${host.status}`,
    );
    switch (decision.kind) {
      case "wait":
        return;
      case "format":
        return host.format();
      case "form":
        return host.form();
      case "adopt":
        host.env.log(
          "info",
          `replica ${host.replica}: replica ${decision.peer} ${decision.peer_formed ? "belongs to a formed cluster" : "formatted"} with cluster incarnation ${hex32(decision.incarnation)}, ours is ${hex32(decision.previous)}: adopting it`,
        );
        host.writeState();
        if (decision.form) host.form();
        return;
      case "disagree":
        if (this.warnings.admit("no agreed incarnation", host.ticks * host.config.tick_ms) !== null) {
          const heard = decision.heard.map((r) => `replica ${r.replica}: ${hex32(r.incarnation)}`).join(", ");
          host.env.log(
            "error",
            `replica ${host.replica}: data directory is blank, and the formatted peers do not agree on a cluster incarnation (${heard}; ${host.f + 1} must agree): waiting; a peer's data directory is probably from another cluster on these addresses`,
          );
        }
        return;
      case "recover":
        host.env.log(
          "warn",
          `replica ${host.replica}: data directory is blank but the cluster has data: recovering from peers at view ${decision.view}; this replica acknowledges nothing until it has caught up`,
        );
        this.timeout_probe.stop();
        host.enterRecovering(decision.view, 0);
        assert(host.status === "recovering", () => `replica ${host.replica}: still ${host.status} after recovering began`);
        return;
    }
  }
}

/** A random nonzero u32: a blank replica's candidate cluster incarnation. */
export function randomIncarnation(random: Prng): number {
  const incarnation = 1 + random.int(0xffff_fffe);
  assert(incarnation >= 1 && incarnation <= 0xffff_ffff, () => `candidate incarnation ${incarnation}`);
  return incarnation;
}
