import { describe, expect, test } from "bun:test";
import { Formation, ProbeAnswer, type Pong } from "./formation.ts";

const nonce = 0x1234n;

/** A pong to this round's nonce; by default a blank peer with candidate 100. */
function pong(replica: number, fields: Partial<Pong> = {}): Pong {
  return {
    replica,
    nonce,
    answer: ProbeAnswer.blank,
    view: 0,
    log_view: 0,
    op: 0,
    commit: 0,
    durable_view: 0,
    incarnation: 100,
    ...fields,
  };
}

/** A formatted peer that holds data (not pristine) at durable view `view`. */
function busy(replica: number, incarnation: number, view: number): Pong {
  return pong(replica, { answer: ProbeAnswer.formed, view, log_view: view, op: 5, commit: 4, durable_view: view, incarnation });
}

function blank(replica: number, replica_count: number, candidate: number): Formation {
  const formation = new Formation(replica, replica_count);
  formation.candidate(candidate);
  formation.round(nonce);
  return formation;
}

describe("a blank cluster", () => {
  test("formats once every peer answered blank, in the lowest candidate heard", () => {
    const formation = blank(0, 3, 50);
    expect(formation.pong(pong(1, { incarnation: 30 }), "blank")).toEqual({ kind: "wait" });
    expect(formation.phase).toBe("blank");
    expect(formation.pong(pong(2, { incarnation: 40 }), "blank")).toEqual({ kind: "format", incarnation: 30 });
    expect(formation.phase).toBe("formatted");
    expect(formation.incarnation).toBe(30);
  });

  test("its own candidate counts when it is the lowest", () => {
    const formation = blank(0, 3, 7);
    formation.pong(pong(1, { incarnation: 30 }), "blank");
    expect(formation.pong(pong(2, { incarnation: 40 }), "blank")).toEqual({ kind: "format", incarnation: 7 });
  });

  test("a pristine formatted peer's incarnation wins over lower candidates", () => {
    const formation = blank(0, 3, 5);
    formation.pong(pong(1, { incarnation: 3 }), "blank");
    expect(formation.pong(pong(2, { answer: ProbeAnswer.formatted, incarnation: 60 }), "blank")).toEqual({
      kind: "format",
      incarnation: 60,
    });
  });

  test("answers of an older round, and a missing peer, keep it waiting", () => {
    const formation = blank(0, 3, 50);
    expect(formation.pong(pong(1, { nonce: nonce + 1n }), "blank")).toEqual({ kind: "wait" });
    expect(formation.pong(pong(2), "blank")).toEqual({ kind: "wait" });
    expect(formation.decide()).toEqual({ kind: "wait" });
    // Answers accumulate across rounds: the one heard in the last round still counts.
    formation.round(nonce + 1n);
    expect(formation.pong(pong(1, { nonce: nonce + 1n }), "blank")).toEqual({ kind: "format", incarnation: 50 });
  });

  test("formats alone when it is the only replica", () => {
    const formation = blank(0, 1, 9);
    expect(formation.decide()).toEqual({ kind: "format", incarnation: 9 });
  });

  test("once formatted, forms when every peer is formatted in its incarnation and its own format is durable", () => {
    const formation = blank(0, 3, 50);
    formation.pong(pong(1, { incarnation: 60 }), "blank");
    formation.pong(pong(2, { incarnation: 70 }), "blank");
    expect(formation.answer("normal", -1)).toBe(ProbeAnswer.blank); // not durable yet
    formation.round(nonce);
    expect(formation.pong(pong(1, { answer: ProbeAnswer.formatted, incarnation: 50 }), "normal")).toEqual({ kind: "wait" });
    // Every peer formatted, but its own superblock is not durable: a crash would make it blank.
    expect(formation.pong(pong(2, { answer: ProbeAnswer.formatted, incarnation: 50 }), "normal")).toEqual({ kind: "wait" });
    formation.durable(50);
    expect(formation.answer("normal", 0)).toBe(ProbeAnswer.formatted);
    expect(formation.pong(pong(2, { answer: ProbeAnswer.formatted, incarnation: 50 }), "normal")).toEqual({ kind: "form" });
    formation.form();
    expect(formation.formed).toBe(true);
    expect(formation.answer("normal", 0)).toBe(ProbeAnswer.formed);
    expect(formation.pong(pong(1, { answer: ProbeAnswer.formed, incarnation: 50 }), "normal")).toEqual({ kind: "wait" });
  });

  test("a formatted peer whose disk was replaced stops counting", () => {
    const formation = blank(0, 3, 50);
    formation.pong(pong(1), "blank");
    formation.pong(pong(2), "blank");
    formation.durable(50);
    expect(formation.pong(pong(1, { answer: ProbeAnswer.formatted, incarnation: 50 }), "normal")).toEqual({ kind: "wait" });
    expect(formation.pong(pong(1), "normal")).toEqual({ kind: "wait" });
    // Replica 1 is no longer counted: replica 2 alone does not form the cluster.
    expect(formation.pong(pong(2, { answer: ProbeAnswer.formatted, incarnation: 50 }), "normal")).toEqual({ kind: "wait" });
    expect(formation.pong(pong(1, { answer: ProbeAnswer.formatted, incarnation: 50 }), "normal")).toEqual({ kind: "form" });
  });

  test("replicas that formatted with different incarnations converge on the lowest", () => {
    const formation = blank(0, 3, 50);
    formation.pong(pong(1, { incarnation: 60 }), "blank");
    formation.pong(pong(2, { incarnation: 70 }), "blank");
    formation.durable(50);
    // A higher one is not taken, and that peer is not counted.
    expect(formation.pong(pong(1, { answer: ProbeAnswer.formatted, incarnation: 80 }), "normal")).toEqual({ kind: "wait" });
    expect(formation.pong(pong(2, { answer: ProbeAnswer.formatted, incarnation: 20 }), "normal")).toEqual({
      kind: "adopt",
      peer: 2,
      peer_formed: false,
      previous: 50,
      incarnation: 20,
      form: false,
    });
    expect(formation.incarnation).toBe(20);
    expect(formation.answer("normal", 0)).toBe(ProbeAnswer.blank); // 20 is not durable yet
    formation.durable(20);
    expect(formation.pong(pong(1, { answer: ProbeAnswer.formatted, incarnation: 20 }), "normal")).toEqual({ kind: "form" });
  });

  test("outside normal status a formatted replica takes no other incarnation", () => {
    const formation = new Formation(1, 3);
    formation.restart(50);
    formation.round(nonce);
    expect(formation.pong(pong(0, { answer: ProbeAnswer.formatted, incarnation: 20 }), "view_change")).toEqual({ kind: "wait" });
    expect(formation.incarnation).toBe(50);
  });
});

describe("a restart", () => {
  test("of a formed cluster: Replica forms it from the disk; probes are over", () => {
    const formation = new Formation(1, 3);
    formation.restart(77);
    expect(formation.restarted).toBe(true);
    expect(formation.phase).toBe("formatted");
    expect(formation.answer("view_change", 3)).toBe(ProbeAnswer.formatted);
    formation.form();
    expect(formation.incarnation).toBe(77);
    expect(formation.answer("normal", 3)).toBe(ProbeAnswer.formed);
    expect(formation.answer("recovering", 3)).toBe(ProbeAnswer.recovering);
    expect(() => formation.round(nonce)).toThrow("probing a formed cluster");
    expect(() => formation.form()).toThrow("forming from phase formed");
  });

  test("before anything was prepared: a formed peer proves the cluster formed", () => {
    const formation = new Formation(1, 3);
    formation.restart(77);
    formation.round(nonce);
    expect(formation.pong(pong(0, { answer: ProbeAnswer.formed, incarnation: 77 }), "normal")).toEqual({ kind: "form" });
  });

  test("a formed peer's incarnation is taken even when higher, and forms only once durable", () => {
    const formation = new Formation(1, 3);
    formation.restart(30);
    formation.round(nonce);
    expect(formation.pong(pong(2, { answer: ProbeAnswer.recovering, incarnation: 90 }), "normal")).toEqual({
      kind: "adopt",
      peer: 2,
      peer_formed: true,
      previous: 30,
      incarnation: 90,
      form: false,
    });
    formation.durable(90);
    expect(formation.pong(pong(2, { answer: ProbeAnswer.recovering, incarnation: 90 }), "normal")).toEqual({ kind: "form" });
  });

  test("a restarted replica was never blank, and cannot restart twice", () => {
    const formation = new Formation(0, 3);
    formation.restart(5);
    expect(() => formation.answer("blank", 0)).toThrow("status blank in formation phase formatted");
    expect(() => formation.restart(5)).toThrow("restarted twice");
    expect(() => formation.candidate(5)).toThrow("already chose one");
  });
});

describe("a lost disk", () => {
  test("recovers in the incarnation f+1 formatted peers agree on, at the highest durable view they report", () => {
    const formation = blank(0, 5, 3);
    expect(formation.pong(busy(1, 42, 6), "blank")).toEqual({ kind: "wait" }); // one answer: f+1 = 3 needed
    expect(formation.pong(busy(2, 42, 7), "blank")).toEqual({ kind: "wait" });
    // A lone directory of an earlier cluster, at a higher view, is not followed.
    expect(formation.pong(busy(3, 11, 50), "blank")).toEqual({
      kind: "disagree",
      heard: [
        { replica: 1, incarnation: 42 },
        { replica: 2, incarnation: 42 },
        { replica: 3, incarnation: 11 },
      ],
    });
    expect(formation.pong(busy(4, 42, 5), "blank")).toEqual({ kind: "recover", incarnation: 42, view: 7 });
    expect(formation.incarnation).toBe(42);
    expect(formation.formed).toBe(true);
    expect(formation.restarted).toBe(false);
    expect(formation.answer("recovering", -1)).toBe(ProbeAnswer.recovering);
  });

  test("a blank peer counts as an answer but not as a vote", () => {
    const formation = blank(0, 3, 3);
    expect(formation.pong(busy(1, 42, 2), "blank")).toEqual({ kind: "wait" });
    expect(formation.pong(pong(2), "blank")).toEqual({ kind: "disagree", heard: [{ replica: 1, incarnation: 42 }] });
  });

  test("disagreeing peers keep it waiting until f+1 agree", () => {
    const formation = blank(0, 3, 3);
    formation.pong(busy(1, 42, 2), "blank");
    expect(formation.pong(busy(2, 43, 2), "blank")).toEqual({
      kind: "disagree",
      heard: [
        { replica: 1, incarnation: 42 },
        { replica: 2, incarnation: 43 },
      ],
    });
    expect(formation.phase).toBe("blank");
    expect(formation.incarnation).toBe(3);
    // The latest answer per peer counts: replica 2 was given the cluster's directory back.
    expect(formation.pong(busy(2, 42, 4), "blank")).toEqual({ kind: "recover", incarnation: 42, view: 4 });
  });

  test("a pristine peer among the answers is not data: the cluster is still forming", () => {
    const formation = blank(0, 3, 3);
    formation.pong(pong(1, { answer: ProbeAnswer.formatted, incarnation: 42 }), "blank");
    expect(formation.pong(pong(2), "blank")).toEqual({ kind: "format", incarnation: 42 });
  });

  test("a formatted peer that changed views but holds nothing is still pristine: the blank ones format and join it", () => {
    // Replica 2 formatted alone (its peers crashed before formatting) and timed out into view 16;
    // it cannot form without them, and they must not wait for f+1 formatted peers that never come.
    const formation = blank(0, 3, 3);
    formation.pong(pong(1), "blank");
    const lone = pong(2, { answer: ProbeAnswer.formatted, view: 16, durable_view: 4, incarnation: 42 });
    expect(formation.pong(lone, "blank")).toEqual({ kind: "format", incarnation: 42 });
    // A peer with anything in its log is data: this disk was lost.
    const other = blank(0, 3, 3);
    other.pong(pong(1), "blank");
    expect(other.pong(pong(2, { answer: ProbeAnswer.formatted, view: 16, op: 1, incarnation: 42 }), "blank").kind).toBe("disagree");
  });
});
