import { describe, expect, test } from "bun:test";
import { Command, type Header, type Message } from "../net/codec.ts";
import { defaultConfig, type Config } from "../constants.ts";
import { Prng } from "../util/prng.ts";
import { Journal } from "./journal.ts";
import type { Leader, PipelineEntry } from "./leader.ts";
import { Recovering } from "./recovery.ts";
import { Timeout } from "./timeout.ts";
import type { CheckpointId } from "./storage.ts";
import type { Env, LogLevel, ReplicaObserver, Status } from "./env.ts";
import {
  chooseLog,
  decideSuffix,
  newViewChange,
  presence_present,
  type DoViewChange,
  type SuffixDecision,
  type ViewChanging,
} from "./view_change.ts";
import { buildRequestStartView, buildStartView, readRequestStartView, readStartView, type Envelope } from "./messages.ts";
import { prepareChain } from "./test_support.ts";
import { ViewInstall, type ViewInstallHost } from "./start_view.ts";

/** Replica 0 of a 3-replica cluster (quorum 2): it leads views 0, 3, 6. */
class FakeHost implements ViewInstallHost {
  readonly replica: number;
  readonly config: Config = { ...defaultConfig(3, 1n), journal_slot_count: 64 };
  readonly quorum = 2;
  readonly sent: { to: number | "others"; message: Message }[] = [];
  readonly logs: { level: LogLevel; text: string }[] = [];
  /** The calls into the host that this part makes, in order. */
  readonly calls: string[] = [];
  readonly violations: string[] = [];
  readonly env: Env = {
    sendToReplica: (to, message) => this.sent.push({ to, message }),
    sendToClient: () => {
      throw new Error("no client messages here");
    },
    random: new Prng(7),
    log: (level, text) => this.logs.push({ level, text }),
  };
  readonly journal = new Journal(64);
  observer: ReplicaObserver | null = null;
  status: Status = "view_change";
  view = 3;
  log_view = 1;
  view_durable = 3;
  view_flushing = -1;
  log_view_durable = 1;
  op = 0;
  commit_min = 0;
  commit_min_checksum = 0n;
  commit_max = 0;
  commit_max_checksum: bigint | null = 5n;
  commit_hint = 0;
  primary_checkpoint_op = 0;
  acks_after_start_view: number | null = null;
  start_view_pending = false;
  view_change: ViewChanging | null;
  svc_higher = new Map<number, Set<number>>();
  view_change_stalled = true;
  readonly votes = {
    viewEstablished: (): void => {
      this.view_change_stalled = false;
    },
    forgetHigherViews: (): void => {
      this.svc_higher = new Map();
    },
  };
  leader: Leader | null = null;
  recovering: Recovering | null = null;
  formed = true;
  checkpoint: CheckpointId = { op: 0, digest: 0n, checksum: 0n };
  readonly timeout_normal = new Timeout("normal", 10);
  readonly timeout_heartbeat = new Timeout("heartbeat", 10);
  readonly timeout_prepare = new Timeout("prepare", 10);
  readonly timeout_view_change = new Timeout("view_change", 10);
  readonly timeout_view_change_resend = new Timeout("view_change_resend", 10);
  pipeline: PipelineEntry[] | null = null;

  constructor(replica = 0) {
    this.replica = replica;
    this.view_change = newViewChange(replica);
  }

  isPrimary(): boolean {
    return this.view % this.config.replica_count === this.replica;
  }
  isActingPrimary(): boolean {
    return this.status === "normal" && this.isPrimary() && !this.start_view_pending;
  }
  envelope(view: number): Envelope {
    return { cluster: 1n, replica: this.replica, replica_count: 3, view, incarnation: 1 };
  }
  sendToOthers(message: Message): void {
    this.sent.push({ to: "others", message });
  }
  drop(_message: Message, why: string): void {
    this.calls.push(`drop ${why}`);
  }
  violation(from: number, _command: Command, what: string): void {
    this.violations.push(`${from}: ${what}`);
  }
  chooseLog(dvcs: DoViewChange[]): DoViewChange {
    return chooseLog(dvcs);
  }
  decideSuffix(best: DoViewChange, dvcs: DoViewChange[], commit: number): SuffixDecision {
    return decideSuffix(best, dvcs, commit, this.quorum, this.commit_min);
  }
  opPrepareOkMax(): number {
    return this.commit_min + this.config.journal_slot_count;
  }
  readonly chain = {
    installLog: (headers: Header[], op: number): void => {
      this.calls.push(`installLog ${op}`);
      for (const h of headers) if (h.op > this.commit_min) this.journal.setHeader(h);
      this.op = Math.max(op, this.commit_min);
    },
    trimUnchained: (): void => {
      this.calls.push("trimUnchained");
    },
    suffixHeaders: (): Header[] => this.journal.range(Math.max(1, this.op - 7), this.op),
  };
  writeState(): void {
    this.calls.push("writeState");
  }
  awaitStartView(): void {
    this.log_view = this.view;
    this.start_view_pending = true;
  }
  enterNormalPrimary(pipeline: PipelineEntry[]): void {
    this.calls.push("lead");
    this.start_view_pending = false;
    this.status = "normal";
    this.view_change = null;
    this.votes.viewEstablished();
    this.pipeline = pipeline;
    this.leader = {} as Leader;
    this.timeout_heartbeat.start();
    this.timeout_prepare.start();
  }
  adoptView(view: number): void {
    this.view = view;
    this.log_view = view;
    this.view_change = null;
    this.votes.forgetHigherViews();
    this.leader = null;
    this.start_view_pending = false;
  }
  enterNormalBackup(): void {
    this.calls.push("enterNormalBackup");
    this.status = "normal";
  }
  readonly primary = {
    onPrepareTimeout: (): void => {
      this.calls.push("onPrepareTimeout");
    },
    commitPipeline: (): void => {
      this.calls.push("commitPipeline");
    },
  };
  repair(): void {
    this.calls.push("repair");
  }
  readonly state_sync = {
    primaryCheckpointIs: (op: number): void => {
      this.primary_checkpoint_op = op;
    },
    maybeStart: (): void => {
      this.calls.push("state_sync.maybeStart");
    },
  };
  maybeFinishRecovering(): void {
    this.calls.push("maybeFinishRecovering");
  }
  executeCommitted(): void {
    this.calls.push("executeCommitted");
  }
}

/** A do_view_change offering `headers` (all held durably) in log_view, committed up to commit. */
function dvc(headers: Header[], log_view: number, commit: number, faulty_ops: number[] = []): DoViewChange {
  const op = headers.length === 0 ? 0 : headers[headers.length - 1]!.op;
  return { log_view, op, commit, headers, presence: new Uint8Array(headers.length).fill(presence_present), faulty_ops, checksum: 99n };
}

/** The host's log holds the headers of ops 1..op. */
function holdLog(host: FakeHost, op: number): void {
  for (const h of prepareChain(op, { view: 3 })) host.journal.setHeader(h);
  host.op = op;
}

function startView(from: number, view: number, headers: Header[], commit: number, nonce = 0n): Message {
  const envelope: Envelope = { cluster: 1n, replica: from, replica_count: 3, view, incarnation: 1 };
  const op = headers[headers.length - 1]!.op;
  return buildStartView(envelope, { op, commit_max: commit, checkpoint_op: 0, nonce, headers });
}

describe("the new primary choosing the view's log", () => {
  test("waits for its own do_view_change and a quorum", () => {
    const host = new FakeHost();
    const part = new ViewInstall(host);
    const log = prepareChain(4, { view: 1 });
    host.view_change!.dvc_from.set(1, dvc(log, 1, 2));
    expect(part.decide()).toEqual({ kind: "not_yet" });
    host.view_change!.dvc_from.set(0, dvc(log.slice(0, 3), 1, 2));
    host.view_change!.dvc_from.delete(1);
    expect(part.decide()).toEqual({ kind: "not_yet" });
    part.maybeStartView();
    expect(host.calls).toEqual([]);
  });

  test("installs the log with the highest (log_view, op) and persists it before start_view", () => {
    const host = new FakeHost();
    const part = new ViewInstall(host);
    const old = prepareChain(5, { view: 1 });
    const newer = prepareChain(4, { view: 2, salt: 1 });
    host.view_change!.dvc_from.set(0, dvc(old, 1, 2));
    host.view_change!.dvc_from.set(2, dvc(newer, 2, 3));
    const decision = part.decide();
    expect(decision.kind).toBe("install");
    if (decision.kind !== "install") return;
    expect(decision.best.log_view).toBe(2);
    expect(decision.commit).toBe(3);
    part.maybeStartView();
    expect(host.calls).toEqual(["installLog 4", "writeState"]);
    expect(host.op).toBe(4);
    expect(host.commit_max).toBe(3);
    expect(host.commit_max_checksum).toBeNull();
    expect(host.log_view).toBe(3);
    expect(host.start_view_pending).toBe(true);
    // Chosen once: a later do_view_change changes nothing.
    expect(part.decide()).toEqual({ kind: "not_yet" });
    expect(host.sent).toEqual([]);
  });

  test("a commit number above the chosen log is a lie: that vote is dropped", () => {
    const host = new FakeHost();
    const part = new ViewInstall(host);
    const log = prepareChain(4, { view: 1 });
    host.view_change!.dvc_from.set(0, dvc(log, 1, 2));
    host.view_change!.dvc_from.set(1, dvc(log.slice(0, 2), 1, 9));
    const decision = part.decide();
    expect(decision).toEqual({ kind: "liars", liars: [{ from: 1, what: "commit 9 above the chosen log's op 4", checksum: 99n }] });
    part.maybeStartView();
    expect(host.violations).toEqual(["1: commit 9 above the chosen log's op 4"]);
    expect([...host.view_change!.dvc_from.keys()]).toEqual([0]);
    expect(host.start_view_pending).toBe(false);
  });

  test("a committed op above the chosen log, damaged where the quorum holds it, waits for another replica", () => {
    const host = new FakeHost();
    const part = new ViewInstall(host);
    const log = prepareChain(4, { view: 1 });
    host.view_change!.dvc_from.set(0, dvc(log, 1, 2));
    host.view_change!.dvc_from.set(1, dvc(log.slice(0, 2), 1, 5, [5]));
    expect(part.decide()).toEqual({ kind: "not_yet" });
  });

  test("an uncommitted op nobody holds intact waits, and says so once every replica was heard", () => {
    const host = new FakeHost();
    const part = new ViewInstall(host);
    const log = prepareChain(4, { view: 1 });
    const faulty = (d: DoViewChange): DoViewChange => ({ ...d, presence: new Uint8Array(d.headers.length).fill(2) });
    host.view_change!.dvc_from.set(0, faulty(dvc(log, 1, 2)));
    host.view_change!.dvc_from.set(1, faulty(dvc(log, 1, 2)));
    host.view_change!.dvc_from.set(2, faulty(dvc(log, 1, 2)));
    expect(part.decide()).toEqual({ kind: "wait" });
    part.maybeStartView();
    expect(host.logs.map((l) => l.level)).toEqual(["warn"]);
    expect(host.start_view_pending).toBe(false);
  });
});

describe("the new primary finishing the view", () => {
  function chosen(): { host: FakeHost; part: ViewInstall } {
    const host = new FakeHost();
    const part = new ViewInstall(host);
    const log = prepareChain(4, { view: 1 });
    host.view_change!.dvc_from.set(0, dvc(log, 1, 2));
    host.view_change!.dvc_from.set(1, dvc(log, 1, 2));
    part.maybeStartView();
    host.calls.length = 0;
    return { host, part };
  }

  test("leads only once log_view is durable, with the uncommitted suffix as its pipeline", () => {
    const { host, part } = chosen();
    part.maybeFinishStartView();
    expect(host.calls).toEqual([]);
    host.log_view_durable = 3;
    part.maybeFinishStartView();
    expect(host.calls).toEqual(["lead", "onPrepareTimeout", "repair", "commitPipeline"]);
    expect(host.status).toBe("normal");
    expect(host.view_change).toBeNull();
    expect(host.view_change_stalled).toBe(false);
    expect(host.pipeline!.map((e) => e.op)).toEqual([3, 4]);
    // Only headers are held, no durable prepare: nothing acknowledged by itself yet.
    expect(host.pipeline!.every((e) => e.oks.size === 0)).toBe(true);
    expect(host.timeout_heartbeat.running && host.timeout_prepare.running).toBe(true);
    expect(host.sent.map((s) => s.to)).toEqual(["others"]);
    const sv = readStartView(host.sent[0]!.message);
    expect(typeof sv).not.toBe("string");
    if (typeof sv === "string") return;
    expect([sv.op, sv.commit_max, sv.nonce]).toEqual([4, 2, 0n]);
  });

  test("waits for every header of the suffix", () => {
    const { host, part } = chosen();
    host.log_view_durable = 3;
    host.journal.remove(3);
    part.maybeFinishStartView();
    expect(host.calls).toEqual([]);
    expect(host.start_view_pending).toBe(true);
  });

  test("no start_view from a cluster not formed, or before the view is durable", () => {
    const host = new FakeHost();
    const part = new ViewInstall(host);
    holdLog(host, 4);
    host.status = "normal";
    host.log_view = 3;
    host.log_view_durable = 3;
    host.formed = false;
    part.sendStartView(1);
    host.formed = true;
    host.view_durable = 2;
    part.sendStartView(1);
    expect(host.sent).toEqual([]);
    host.view_durable = 3;
    part.sendStartView(1, 7n);
    expect(host.sent.map((s) => s.to)).toEqual([1]);
  });

  test("answers request_start_view only as the acting primary, echoing the nonce", () => {
    const host = new FakeHost();
    const part = new ViewInstall(host);
    holdLog(host, 4);
    host.log_view = 3;
    host.log_view_durable = 3;
    const request = buildRequestStartView({ cluster: 1n, replica: 2, replica_count: 3, view: 3, incarnation: 1 }, { view: 3, nonce: 11n });
    part.onRequestStartView(request);
    expect(host.sent).toEqual([]);
    host.status = "normal";
    part.onRequestStartView(request);
    expect(host.sent.map((s) => s.to)).toEqual([2]);
    const sv = readStartView(host.sent[0]!.message);
    expect(typeof sv !== "string" && sv.nonce).toBe(11n);
  });
});

describe("a backup installing a start_view", () => {
  test("installs the primary's log and becomes a backup of its view", () => {
    const host = new FakeHost(1);
    const part = new ViewInstall(host);
    host.svc_higher.set(4, new Set([2]));
    const log = prepareChain(6, { view: 3 });
    part.onStartView(startView(0, 3, log, 4));
    expect(host.calls).toEqual(["installLog 6", "enterNormalBackup", "writeState", "state_sync.maybeStart", "repair", "executeCommitted"]);
    expect([host.view, host.log_view, host.op, host.commit_max, host.commit_hint]).toEqual([3, 3, 6, 4, 4]);
    expect(host.view_change).toBeNull();
    expect(host.svc_higher.size).toBe(0);
    expect(host.acks_after_start_view).toBe(4);
  });

  test("ignores a start_view from a replica that is not the view's primary", () => {
    const host = new FakeHost(1);
    const part = new ViewInstall(host);
    const message = startView(2, 3, prepareChain(6, { view: 3 }), 4);
    expect(part.check(message)).toEqual({ kind: "ignore" });
  });

  test("refuses a log with another prepare at the op it executed", () => {
    const host = new FakeHost(1);
    const part = new ViewInstall(host);
    const executed = prepareChain(3, { view: 1 });
    host.commit_min = 3;
    host.commit_max = 3;
    host.op = 3;
    host.commit_min_checksum = executed[2]!.checksum;
    const message = startView(0, 3, prepareChain(6, { view: 3, salt: 5 }), 4);
    expect(part.check(message).kind).toBe("violation");
    part.onStartView(message);
    expect(host.violations.length).toBe(1);
    expect(host.calls).toEqual([]);
  });

  test("a start_view of its own log's view does not cut the ops it has acknowledged since", () => {
    const host = new FakeHost(1);
    const part = new ViewInstall(host);
    const log = prepareChain(8, { view: 3 });
    for (const h of log) host.journal.setHeader(h);
    host.log_view = 3;
    host.op = 8;
    part.onStartView(startView(0, 3, log.slice(0, 5), 2));
    expect(host.calls[0]).toBe("trimUnchained");
    expect(host.op).toBe(8);
  });
});

describe("a recovering replica", () => {
  test("asks with an odd nonce and installs only a start_view answering it", () => {
    const host = new FakeHost(1);
    const part = new ViewInstall(host);
    host.status = "recovering";
    host.view_change = null;
    host.recovering = new Recovering(0);
    part.requestStartView();
    expect(host.sent.length).toBe(1);
    expect(host.sent[0]!.to).toBe(0);
    const nonce = readRequestStartView(host.sent[0]!.message).nonce;
    expect(nonce & 1n).toBe(1n);
    const log = prepareChain(6, { view: 3 });
    expect(part.check(startView(0, 3, log, 4, nonce + 2n))).toEqual({ kind: "ignore" });
    part.onStartView(startView(0, 3, log, 4, nonce));
    expect(host.calls).toEqual(["installLog 6", "state_sync.maybeStart", "repair", "maybeFinishRecovering"]);
    expect(host.recovering.view).toBe(3);
    expect(host.recovering.op).toBe(6);
    expect(host.timeout_normal.running).toBe(true);
  });

  test("a replica that primaries the view asks nobody", () => {
    const host = new FakeHost(0);
    new ViewInstall(host).requestStartView(3);
    expect(host.sent).toEqual([]);
  });
});

describe("joining a lower view", () => {
  test("only while changing views, from view_durable and log_view up, below its own view", () => {
    const host = new FakeHost(1);
    const part = new ViewInstall(host);
    host.view = 5;
    host.view_durable = 3;
    host.log_view = 2;
    expect([2, 3, 4, 5].map((v) => part.mayJoinView(v))).toEqual([false, true, true, false]);
    // A superblock of view 5 on its way to the disk: view 4 could leave it above the view joined.
    host.view_flushing = 5;
    expect(part.mayJoinView(4)).toBe(false);
    host.view_flushing = 4;
    expect(part.mayJoinView(4)).toBe(true);
    host.view_flushing = -1;
    host.status = "normal";
    host.view_change = null;
    expect(part.mayJoinView(4)).toBe(false);
  });
});
