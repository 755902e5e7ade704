import { describe, expect, test } from "bun:test";
import { Repairer, repair_requests_max, type RepairerHost } from "./repairer.ts";
import { Journal } from "./journal.ts";
import { commitKnown, prepareChain } from "./test_support.ts";
import {
  buildRequestHeaders,
  buildRequestPrepare,
  readHeaders,
  readRequestHeaders,
  readRequestPrepare,
  type Envelope,
} from "./messages.ts";
import type { Env, Status } from "./env.ts";
import { Command, type Header, type Message } from "../net/codec.ts";
import { defaultConfig, type Config } from "../constants.ts";
import { Prng } from "../util/prng.ts";
import { AssertionError } from "../util/assert.ts";

class FakeHost implements RepairerHost {
  readonly config: Config;
  readonly sent: { to: number; message: Message }[] = [];
  readonly env: Env = {
    sendToReplica: (to, message) => this.sent.push({ to, message }),
    sendToClient: () => {
      throw new Error("the repairer never answers a client");
    },
    random: new Prng(11),
    log: () => {},
  };
  /** What storage holds, by checksum (a prepare storage cannot read back is left out). */
  readonly stored = new Map<bigint, Message>();
  readonly storage = {
    readPrepare: (op: number, checksum: bigint): Message | null => {
      const prepare = this.stored.get(checksum);
      return prepare !== undefined && prepare.header.op === op ? prepare : null;
    },
  };
  readonly journal: Journal;
  status: Status = "normal";
  view = 1;
  op = 0;
  commit_min = 0;
  commit_max = 0;
  commit_hint = 0;
  acting_primary = false;
  readonly stats = { repairs_requested: 0 };

  constructor(
    readonly replica: number,
    replica_count = 3,
  ) {
    this.config = { ...defaultConfig(replica_count, 1n), journal_slot_count: 64 };
    this.journal = new Journal(this.config.journal_slot_count);
  }
  envelope(view: number): Envelope {
    return { cluster: 1n, replica: this.replica, replica_count: this.config.replica_count, view, incarnation: 5 };
  }
  isPrimary(): boolean {
    return this.view % this.config.replica_count === this.replica;
  }
  isActingPrimary(): boolean {
    return this.acting_primary;
  }
  commitKnown(): number {
    return commitKnown(this);
  }
  opJournalMax(): number {
    return this.commit_min + this.config.journal_slot_count;
  }
}

/** A prepare message for a header (its body is not looked at here). */
function prepareOf(header: Header): Message {
  return { header, body: new Uint8Array(0) };
}

const from = (replica: number): Envelope => ({ cluster: 1n, replica, replica_count: 3, view: 1, incarnation: 5 });

describe("Repairer", () => {
  test("a complete log asks for nothing", () => {
    const host = new FakeHost(2);
    const log = prepareChain(10);
    for (const h of log) host.journal.wrote(h);
    host.op = 10;
    new Repairer(host).repair();
    expect(host.sent).toEqual([]);
  });

  test("a backup behind the commit it knows asks the primary for the headers up to it", () => {
    const host = new FakeHost(2);
    host.commit_hint = 30;
    new Repairer(host).repair();
    expect(host.sent.length).toBe(1);
    expect(host.sent[0]!.to).toBe(1);
    expect(host.sent[0]!.message.header.command).toBe(Command.request_headers);
    expect(readRequestHeaders(host.sent[0]!.message)).toEqual({ op_min: 1, op_max: 30 });
  });

  test("missing prepares are asked for lowest first, at most repair_requests_max per tick, of a peer", () => {
    const host = new FakeHost(2);
    const log = prepareChain(50);
    for (const h of log) host.journal.setHeader(h);
    host.op = 50;
    new Repairer(host).repair();
    expect(host.sent.length).toBe(repair_requests_max);
    expect(host.stats.repairs_requested).toBe(repair_requests_max);
    host.sent.forEach(({ to, message }, i) => {
      expect(to === 0 || to === 1).toBe(true);
      expect(readRequestPrepare(message)).toEqual({ op: i + 1, checksum: log[i]!.checksum });
    });
  });

  test("the primary never asks itself: it asks a random peer", () => {
    const host = new FakeHost(1);
    expect(host.isPrimary()).toBe(true);
    const repairer = new Repairer(host);
    const peers = new Set<number>();
    for (let i = 0; i < 50; i++) peers.add(repairer.repairPeer());
    expect([...peers].sort()).toEqual([0, 2]);
    repairer.requestHeaders(3, 5);
    expect(host.sent[0]!.to).not.toBe(1);
  });

  test("a lone replica asks nobody for headers, and an empty range is not asked for", () => {
    const alone = new FakeHost(0, 1);
    new Repairer(alone).requestHeaders(1, 5);
    const host = new FakeHost(2);
    new Repairer(host).requestHeaders(5, 4);
    expect([...alone.sent, ...host.sent]).toEqual([]);
    expect(() => new Repairer(host).requestHeaders(1, 1 + host.config.journal_slot_count + 1)).toThrow(AssertionError);
  });

  test("a requested prepare is served from storage by exact (op, checksum)", () => {
    const host = new FakeHost(0);
    const log = prepareChain(3);
    for (const h of log) host.stored.set(h.checksum, prepareOf(h));
    const repairer = new Repairer(host);
    repairer.onRequestPrepare(buildRequestPrepare(from(2), { op: 2, checksum: log[1]!.checksum }));
    repairer.onRequestPrepare(buildRequestPrepare(from(2), { op: 3, checksum: log[1]!.checksum }));
    expect(host.sent.length).toBe(1);
    expect(host.sent[0]!.to).toBe(2);
    expect(host.sent[0]!.message.header.checksum).toBe(log[1]!.checksum);
  });

  test("a requested prepare the journal holds but storage cannot read back is marked damaged, to be repaired too", () => {
    const host = new FakeHost(0);
    const log = prepareChain(3);
    for (const h of log) host.journal.wrote(h);
    new Repairer(host).onRequestPrepare(buildRequestPrepare(from(1), { op: 2, checksum: log[1]!.checksum }));
    expect(host.sent).toEqual([]);
    expect(host.journal.isFaulty(2, log[1]!.checksum)).toBe(true);
    expect(host.journal.hasPrepare(2, log[1]!.checksum)).toBe(false);
  });

  test("requested headers are answered from the journal, canonical only from the acting primary", () => {
    const host = new FakeHost(1);
    const log = prepareChain(8);
    for (const h of log) host.journal.wrote(h);
    host.op = 8;
    host.commit_max = 6;
    const repairer = new Repairer(host);
    repairer.onRequestHeaders(buildRequestHeaders(from(2), { op_min: 3, op_max: 20 }));
    host.acting_primary = true;
    repairer.onRequestHeaders(buildRequestHeaders(from(2), { op_min: 3, op_max: 5 }));
    const answers = host.sent.map(({ to, message }) => ({ to, headers: readHeaders(message) }));
    expect(answers.map(({ to }) => to)).toEqual([2, 2]);
    const [first, second] = answers.map(({ headers }) => {
      if (typeof headers === "string") throw new Error(headers);
      return headers;
    });
    expect(first!.headers.map((h) => h.op)).toEqual([3, 4, 5, 6, 7, 8]);
    expect(first!.canonical).toBe(false);
    expect(first!.op).toBe(8);
    expect(first!.commit_max).toBe(6);
    expect(second!.headers.map((h) => h.op)).toEqual([3, 4, 5]);
    expect(second!.canonical).toBe(true);
  });

  test("a blank replica answers no request for headers, and nothing beyond its head", () => {
    const host = new FakeHost(1);
    for (const h of prepareChain(4)) host.journal.wrote(h);
    host.op = 4;
    const repairer = new Repairer(host);
    repairer.onRequestHeaders(buildRequestHeaders(from(2), { op_min: 5, op_max: 9 }));
    host.status = "blank";
    repairer.onRequestHeaders(buildRequestHeaders(from(2), { op_min: 1, op_max: 4 }));
    expect(host.sent).toEqual([]);
  });
});
