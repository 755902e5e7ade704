import { describe, expect, test } from "bun:test";
import { Prng } from "../util/prng.ts";
import { Command, type Header, type Message } from "../net/codec.ts";
import { defaultConfig } from "../constants.ts";
import { Formation } from "./formation.ts";
import { FormationDriver, randomIncarnation, type FormationDriverHost } from "./formation_driver.ts";
import { encodeBatch } from "./batch.ts";
import { rootPrepare } from "./root.ts";
import { prepareChain } from "./test_support.ts";
import type { Env, LogLevel, Status } from "./env.ts";
import { PeerState, buildCommit, buildPing, buildPong, buildPrepare, buildStartView, readPong, type Envelope } from "./messages.ts";

const cluster = 1n;

/** Replica 0 of a cluster of `replica_count`, recording what the driver sends and asks for. */
class FakeHost implements FormationDriverHost {
  readonly replica = 0;
  readonly config: ReturnType<typeof defaultConfig>;
  readonly formation: Formation;
  readonly root: Header;
  readonly sent: { to: number; message: Message }[] = [];
  readonly logs: { level: LogLevel; text: string }[] = [];
  readonly asked: string[] = [];
  readonly env: Env;
  status: Status = "blank";
  view = 0;
  log_view = 0;
  view_durable = -1;
  op = 0;
  commit_max = 0;
  ticks = 0;
  driver!: FormationDriver;
  /** False: a superblock write is queued but not yet durable (writeState returns before it is). */
  writes_durable = true;

  constructor(replica_count = 3, seed = 7) {
    this.config = defaultConfig(replica_count, cluster);
    this.formation = new Formation(this.replica, replica_count);
    this.root = rootPrepare(cluster, replica_count);
    this.env = {
      sendToReplica: (to, message) => this.sent.push({ to, message }),
      sendToClient: () => {
        throw new Error("formation never answers a client");
      },
      random: new Prng(seed),
      log: (level, text) => this.logs.push({ level, text }),
    };
  }

  get f(): number {
    return Math.floor((this.config.replica_count - 1) / 2);
  }
  get incarnation(): number {
    return this.formation.incarnation;
  }
  envelope(view: number): Envelope {
    return { cluster, replica: this.replica, replica_count: this.config.replica_count, view, incarnation: this.incarnation };
  }
  sendToOthers(message: Message): void {
    for (let r = 1; r < this.config.replica_count; r++) this.sent.push({ to: r, message });
  }
  drop(_message: Message, why: string): void {
    this.asked.push(`drop: ${why}`);
  }
  writeState(): void {
    this.asked.push("writeState");
    if (!this.writes_durable) return;
    this.view_durable = this.view;
    this.formation.durable(this.incarnation);
  }
  format(): void {
    // As Replica.format: normal, its superblock durable, then it keeps probing until formed.
    this.asked.push("format");
    this.status = "normal";
    this.writeState();
    this.driver.sendProbe();
  }
  form(): void {
    this.asked.push("form");
    this.formation.form();
    this.driver.stop();
  }
  enterRecovering(view: number, checkpoint_floor: number): void {
    this.asked.push(`recover ${view} ${checkpoint_floor}`);
    this.status = "recovering";
    this.view = view;
  }

  pings(): Message[] {
    return this.sent.filter((s) => s.message.header.command === Command.ping).map((s) => s.message);
  }
}

function setup(replica_count = 3): { host: FakeHost; driver: FormationDriver } {
  const host = new FakeHost(replica_count);
  host.driver = new FormationDriver(host);
  return { host, driver: host.driver };
}

function peer(replica: number, incarnation: number, view = 0): Envelope {
  return { cluster, replica, replica_count: 3, view, incarnation };
}

/** Peer `replica`'s pong to this host's latest ping. */
function pongTo(host: FakeHost, replica: number, incarnation: number, state: number, fields: { view?: number; op?: number } = {}): Message {
  const view = fields.view ?? 0;
  const op = fields.op ?? 0;
  const nonce = host.pings().at(-1)!.header.context;
  return buildPong(peer(replica, incarnation, view), { nonce, state, op, commit_max: op, log_view: view, durable_view: view });
}

describe("FormationDriver", () => {
  test("a blank replica probes every peer, formats once all answer blank, and keeps probing until formed", () => {
    const { host, driver } = setup();
    driver.openBlank();
    const candidate = host.incarnation;
    expect(candidate).toBeGreaterThan(0);
    expect(driver.probing).toBe(true);
    expect(host.sent.map((s) => s.to)).toEqual([1, 2]);
    driver.onPong(pongTo(host, 1, 30, PeerState.blank));
    expect(host.asked).toEqual([]);
    driver.onPong(pongTo(host, 2, 20, PeerState.blank));
    expect(host.asked).toEqual(["format", "writeState"]);
    // The lowest candidate heard wins, its own included.
    expect(host.incarnation).toBe(Math.min(20, candidate));
    expect(host.formation.phase).toBe("formatted");
    // Formatted: a pong of each peer formatted in the same incarnation forms the cluster.
    driver.onPong(pongTo(host, 1, host.incarnation, PeerState.formatted));
    driver.onPong(pongTo(host, 2, host.incarnation, PeerState.formatted));
    expect(host.asked.at(-1)).toBe("form");
    expect(driver.probing).toBe(false);
    driver.invariants();
  });

  test("a formatted replica adopts a peer's lower incarnation and persists it, forming only once that incarnation is durable", () => {
    const { host, driver } = setup();
    driver.openBlank();
    driver.onPong(pongTo(host, 1, 0x40, PeerState.blank));
    driver.onPong(pongTo(host, 2, 0x50, PeerState.blank));
    expect(host.asked).toEqual(["format", "writeState"]);
    expect(host.incarnation).toBe(0x40);
    // Peer 1 formatted at the same time from other answers, with a lower incarnation: adopted and
    // persisted, but not formed (the superblock holds 0x40 still when the decision is made).
    driver.onPong(pongTo(host, 1, 0x30, PeerState.formatted));
    expect(host.logs.at(-1)!.text).toBe("replica 0: replica 1 formatted with cluster incarnation 00000030, ours is 00000040: adopting it");
    expect(host.asked).toEqual(["format", "writeState", "writeState"]);
    expect(host.incarnation).toBe(0x30);
    expect(host.formation.phase).toBe("formatted");
    expect(driver.probing).toBe(true);
    // Both peers formatted in 0x30, now durable here: formed (a plain form, nothing adopted).
    driver.onPong(pongTo(host, 2, 0x30, PeerState.formatted));
    expect(host.asked).toEqual(["format", "writeState", "writeState", "form"]);
    expect(driver.probing).toBe(false);
    driver.invariants();
  });

  test("adopting the incarnation a formed peer proves, already durable here, forms the cluster at once", () => {
    const { host, driver } = setup();
    driver.openBlank();
    driver.onPong(pongTo(host, 1, 0x40, PeerState.blank));
    driver.onPong(pongTo(host, 2, 0x50, PeerState.blank));
    expect(host.incarnation).toBe(0x40);
    // A lower incarnation adopted, its superblock write not durable yet: 0x40 stays durable.
    host.writes_durable = false;
    driver.onPong(pongTo(host, 1, 0x30, PeerState.formatted));
    expect(host.incarnation).toBe(0x30);
    expect(host.asked.at(-1)).toBe("writeState");
    // Peer 2 belongs to a cluster formed in 0x40, the incarnation this superblock holds: adopted and formed.
    driver.onPong(pongTo(host, 2, 0x40, PeerState.formed, { view: 2, op: 5 }));
    expect(host.logs.at(-1)!.text).toBe(
      "replica 0: replica 2 belongs to a formed cluster with cluster incarnation 00000040, ours is 00000030: adopting it",
    );
    expect(host.asked).toEqual(["format", "writeState", "writeState", "writeState", "form"]);
    expect(host.incarnation).toBe(0x40);
    expect(host.formation.phase).toBe("formed");
    expect(driver.probing).toBe(false);
    driver.invariants();
  });

  test("the probe timer sends a fresh nonce every probe_ticks, and a stale pong counts for nothing", () => {
    const { host, driver } = setup();
    driver.openBlank();
    const stale = pongTo(host, 1, 30, PeerState.blank);
    for (let t = 1; t < host.config.probe_ticks; t++) driver.tick();
    expect(host.pings().length).toBe(2);
    driver.tick();
    expect(host.pings().length).toBe(4);
    expect(host.pings()[2]!.header.context).not.toBe(host.pings()[0]!.header.context);
    driver.onPong(stale);
    driver.onPong(pongTo(host, 2, 20, PeerState.blank));
    expect(host.asked).toEqual([]);
  });

  test("a blank replica whose peers hold data recovers at their durable view and stops probing", () => {
    const { host, driver } = setup();
    driver.openBlank();
    // f+1 peers must answer: one alone could be a directory of an earlier cluster.
    driver.onPong(pongTo(host, 1, 77, PeerState.formed, { view: 4, op: 9 }));
    expect(host.asked).toEqual([]);
    driver.onPong(pongTo(host, 2, 77, PeerState.formatted, { view: 3, op: 9 }));
    expect(host.asked).toEqual(["recover 4 0"]);
    expect(host.incarnation).toBe(77);
    expect(driver.probing).toBe(false);
    expect(host.logs.at(-1)!.level).toBe("warn");
    driver.invariants();
  });

  test("peers that disagree on the incarnation are reported once a minute, not with every pong", () => {
    const { host, driver } = setup(5);
    driver.openBlank();
    const formedPong = (replica: number, incarnation: number): Message =>
      buildPong(
        { cluster, replica, replica_count: 5, view: 3, incarnation },
        { nonce: host.pings().at(-1)!.header.context, state: PeerState.formed, op: 9, commit_max: 9, log_view: 3, durable_view: 3 },
      );
    driver.onPong(formedPong(1, 11));
    driver.onPong(formedPong(2, 22));
    driver.onPong(formedPong(3, 33));
    const errors = () => host.logs.filter((l) => l.level === "error");
    expect(errors().length).toBe(1);
    expect(errors()[0]!.text).toContain("do not agree");
    host.ticks += 60_000 / host.config.tick_ms;
    driver.onPong(formedPong(4, 44));
    expect(errors().length).toBe(2);
    expect(host.status).toBe("blank");
  });

  test("a ping is answered with its nonce and what this replica's disk holds", () => {
    const { host, driver } = setup();
    driver.openBlank();
    driver.onPing(buildPing(peer(2, 5), { nonce: 0xabcn }));
    const answer = host.sent.at(-1)!;
    expect(answer.to).toBe(2);
    expect(answer.message.header.command).toBe(Command.pong);
    expect(readPong(answer.message)).toEqual({ nonce: 0xabcn, state: PeerState.blank, log_view: 0, op: 0, commit_max: 0, durable_view: 0 });
  });

  test("a peer of another incarnation is dropped, and the warning repeats only once a minute per peer", () => {
    const { host, driver } = setup();
    host.formation.restart(9);
    host.status = "normal";
    const stranger = buildPing(peer(1, 10), { nonce: 1n });
    driver.otherIncarnation(stranger);
    driver.otherIncarnation(stranger);
    driver.otherIncarnation(buildPing(peer(2, 10), { nonce: 1n }));
    expect(host.asked.filter((a) => a.startsWith("drop")).length).toBe(3);
    expect(host.logs.filter((l) => l.level === "error").length).toBe(2);
  });

  test("a blank replica drops other incarnations without a warning: it has none yet", () => {
    const { host, driver } = setup();
    driver.openBlank();
    driver.otherIncarnation(buildPing(peer(1, host.incarnation + 1), { nonce: 1n }));
    expect(host.asked.length).toBe(1);
    expect(host.logs.length).toBe(0);
  });

  test("only the first prepare chained to the root or a verifiable start_view proves the cluster formed", () => {
    const { host, driver } = setup();
    host.formation.restart(9);
    const checkpoint = { op: 0, digest: 0n, checksum: host.root.checksum };
    const body = encodeBatch([{ client: 1n, session: 1, request: 1, operation: 1, body: new Uint8Array(8) }]);
    const prepare = (op: number, parent: bigint) =>
      buildPrepare(peer(1, 9), { op, parent, commit_max: 0, timestamp: 1, checkpoint, requests: 1, body });
    expect(driver.provesFormed(prepare(1, host.root.checksum))).toBe(true);
    expect(driver.provesFormed(prepare(1, 5n))).toBe(false);
    expect(driver.provesFormed(prepare(2, host.root.checksum))).toBe(false);
    const headers = prepareChain(3);
    const start_view = buildStartView(peer(1, 9, 1), { op: 3, commit_max: 2, checkpoint_op: 0, nonce: 0n, headers });
    expect(driver.provesFormed(start_view)).toBe(true);
    const truncated = { header: start_view.header, body: start_view.body.subarray(0, 10) };
    expect(driver.provesFormed(truncated)).toBe(false);
    const commit = buildCommit(peer(1, 9, 1), { round: 1, nonce: 1n, op: 5, commit_max: 5, commit_checksum: 1n, checkpoint });
    expect(driver.provesFormed(commit)).toBe(false);
  });

  test("probing a formed cluster breaks the invariant", () => {
    const { host, driver } = setup();
    host.formation.restart(9);
    driver.start();
    host.formation.form();
    expect(() => driver.invariants()).toThrow(/still probing a formed cluster/);
    driver.stop();
    driver.invariants();
  });

  test("a candidate incarnation is a nonzero u32", () => {
    const random = new Prng(1);
    for (let i = 0; i < 1000; i++) {
      const incarnation = randomIncarnation(random);
      expect(incarnation).toBeGreaterThan(0);
      expect(incarnation).toBeLessThanOrEqual(0xffff_ffff);
    }
  });
});
