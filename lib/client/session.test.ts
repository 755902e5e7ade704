import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { decode, encode, type Message } from "../net/codec.ts";
import { Condition, Operation, Result, encodeKeyRequest, encodeU64 } from "../store/operations.ts";
import { ClientSession, resultError, type SessionOptions, type Step } from "./session.ts";
import { replyTo } from "./test_support.ts";

const cluster = 0x0123456789abcdefn;
const client_id = 0xfedcba9876543210n;
const encoder = new TextEncoder();

function session(options: Partial<SessionOptions> = {}): ClientSession {
  return new ClientSession({
    client_id,
    cluster,
    replica_count: 3,
    first_target: 0,
    attempt_timeout: 1000,
    backoff: 50,
    operation_timeout: 15_000,
    ...options,
  });
}

function hex(text: string): Uint8Array {
  const bytes = text
    .trim()
    .split("\n")
    .flatMap((line) => line.trim().split(/\s+/).slice(1))
    .map((b) => parseInt(b, 16));
  return Uint8Array.from(bytes);
}

/** A reply to the session's pending request (request and operation taken from what it sent). */
const reply = replyTo;

function sent(step: Step): { replica: number; message: Message } {
  if (step.kind !== "send") throw new Error(`expected a send, got ${JSON.stringify(step.kind)}`);
  return step;
}

const get_hello = encodeKeyRequest(encoder.encode("hello"), null);

describe("ClientSession", () => {
  test("write_block and read go out at once without registering (a lane never takes a client-table slot)", () => {
    const s = session();
    const body = new Uint8Array(40);
    for (const operation of [Operation.write_block, Operation.read]) {
      const first = sent(s.start(operation, body, 0));
      expect({ operation: first.message.header.operation, session: first.message.header.session }).toEqual({ operation, session: 0 });
      const done = s.onReply(reply(first.message, { replica: 0, result: Result.ok }), 0, 1);
      expect(done.kind).toBe("done");
    }
    // A write that needs a session still registers first.
    expect(sent(s.start(Operation.create_upload, body, 2)).message.header.operation).toBe(Operation.register);
  });

  test("the large-object results fail with their own codes and the number they carry", () => {
    const s = session();
    const cases: [Result, string][] = [
      [Result.object_changed, "object_changed"],
      [Result.upload_not_found, "upload_not_found"],
      [Result.range_invalid, "range_invalid"],
      [Result.size_mismatch, "size_mismatch"],
      [Result.too_many_uploads, "too_many_uploads"],
    ];
    for (const [result, code] of cases) {
      const request = sent(s.start(Operation.read, get_hello, 0));
      const step = s.onReply(reply(request.message, { replica: 0, result }, encodeU64(77)), 0, 1);
      if (step.kind !== "failed") throw new Error(`expected failed, got ${step.kind}`);
      expect(step.error.code).toBe(code as never);
      if (result === Result.object_changed || result === Result.range_invalid) expect(step.error.detail).toBe(77);
    }
  });

  // docs/PROTOCOL.md §5.1–5.3: the bytes on the wire are the documented ones.
  test("a first write registers, then sends the write with the session: the bytes of the test vectors", () => {
    const s = session();
    const put = encodeKeyRequest(encoder.encode("hello"), encoder.encode("world"), Condition.none, 0);
    const register = sent(s.start(Operation.put, put, 0));
    expect(register.replica).toBe(0);
    expect(encode(register.message)).toEqual(
      hex(`
0000  ce 84 47 51 52 2d 59 25 99 e9 d8 51 37 db 46 ef
0010  ef cd ab 89 67 45 23 01 00 00 00 00 00 00 00 00
0020  10 32 54 76 98 ba dc fe 00 00 00 00 00 00 00 00
0030  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0040  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0050  00 00 00 00 00 00 00 00 54 46 53 31 80 00 00 00
0060  00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00
0070  01 00 03 ff 01 00 00 00 00 00 00 00 00 00 00 00`),
    );
    const register_reply = decode(
      hex(`
0000  3b 0b 98 55 82 24 90 fb 99 e9 d8 51 37 db 46 ef
0010  ef cd ab 89 67 45 23 01 00 00 00 00 00 00 00 00
0020  10 32 54 76 98 ba dc fe 00 00 00 00 00 00 00 00
0030  01 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00
0040  2c 69 e5 cf 8b 01 00 00 00 00 00 00 00 00 00 00
0050  00 00 00 00 00 00 00 00 54 46 53 31 80 00 00 00
0060  00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00
0070  01 00 06 00 01 00 03 00 01 00 00 00 00 00 00 00`),
      cluster,
    );
    if (!register_reply.ok) throw new Error(register_reply.detail);
    const write = sent(s.onReply(register_reply.message, 0, 10));
    expect(s.session).toBe(1);
    expect(write.replica).toBe(0);
    expect(encode(write.message)).toEqual(
      hex(`
0000  66 77 8e a2 92 9f 75 a9 a1 ab e9 36 77 63 bd e1
0010  ef cd ab 89 67 45 23 01 00 00 00 00 00 00 00 00
0020  10 32 54 76 98 ba dc fe 00 00 00 00 00 00 00 00
0030  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0040  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0050  00 00 00 00 00 00 00 00 54 46 53 31 9a 00 00 00
0060  00 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00
0070  01 00 03 ff 02 00 00 00 01 00 00 00 00 00 00 00
0080  05 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0090  68 65 6c 6c 6f 77 6f 72 6c 64`),
    );
    const done = s.onReply(reply(write.message, { op: 2, result: Result.ok }, encodeU64(1)), 0, 20);
    expect(done.kind).toBe("done");
    expect(s.pending).toBe(false);
    expect(s.wake_at).toBe(Infinity);
  });

  test("reads need no session: a read-only client never registers", () => {
    const s = session();
    const first = sent(s.start(Operation.get, get_hello, 0));
    expect(first.message.header.operation).toBe(Operation.get);
    expect(first.message.header.session).toBe(0);
    expect(first.message.header.request).toBe(1);
    expect(s.onReply(reply(first.message, { result: Result.not_found }), 0, 5).kind).toBe("done");
    expect(s.session).toBe(0);
  });

  test("an unanswered attempt moves to the next replica with the same request number, waiting longer once every replica was tried", () => {
    const s = session({ first_target: 1 });
    const first = sent(s.start(Operation.get, get_hello, 0));
    expect(first.replica).toBe(1);
    expect(s.wake_at).toBe(1000);
    const targets: number[] = [];
    const waits: number[] = [];
    let now = 0;
    for (let i = 0; i < 6; i++) {
      now = s.wake_at;
      const retry = sent(s.expire(now));
      expect(retry.message.header.request).toBe(1);
      targets.push(retry.replica);
      waits.push(s.wake_at - now);
    }
    expect(targets).toEqual([2, 0, 1, 2, 0, 1]);
    expect(waits).toEqual([1000, 1000, 2000, 2000, 2000, 3000]);
  });

  test("not_primary: the hinted primary at once; the next replica after a pause if the replier names itself; a pause once every replica was tried", () => {
    const s = session({ replica_count: 5 });
    const first = sent(s.start(Operation.get, get_hello, 0));
    // A backup of view 7 points at replica 2.
    const hinted = sent(s.onReply(reply(first.message, { replica: 0, view: 7, result: Result.not_primary }), 0, 1));
    expect(hinted.replica).toBe(2);
    expect(hinted.message.header.view).toBe(7); // the hint travels in later requests
    expect(s.view_hint).toBe(7);
    // Replica 2 is changing views and names itself (log_view 7): replica 3, after the backoff.
    expect(s.onReply(reply(first.message, { replica: 2, view: 7, result: Result.not_primary }), 2, 2)).toEqual({ kind: "wait" });
    expect(s.wake_at).toBe(52);
    const next = sent(s.expire(52));
    expect(next.replica).toBe(3);
    expect(sent(s.onReply(reply(first.message, { replica: 3, view: 9, result: Result.not_primary }), 3, 53)).replica).toBe(4);
    expect(sent(s.onReply(reply(first.message, { replica: 4, view: 10, result: Result.not_primary }), 4, 54)).replica).toBe(0);
    expect(sent(s.onReply(reply(first.message, { replica: 0, view: 11, result: Result.not_primary }), 0, 55)).replica).toBe(1);
    // Six sends, more than one per replica: even a hint from a backup in normal status waits now.
    expect(s.onReply(reply(first.message, { replica: 1, view: 12, result: Result.not_primary }), 1, 56)).toEqual({ kind: "wait" });
    expect(s.wake_at).toBe(106);
    // The redirect is retried once where it pointed, then the next replica.
    expect(sent(s.expire(106)).replica).toBe(2);
    expect(sent(s.expire(s.wake_at)).replica).toBe(3);
  });

  test("an unreachable target (connection refused): the next replica at once, and later retries skip it", () => {
    const s = session({ first_target: 0 });
    const first = sent(s.start(Operation.get, get_hello, 0));
    expect(first.replica).toBe(0);
    const next = sent(s.onUnreachable(0, 1));
    expect(next.replica).toBe(1);
    expect(next.message.header.request).toBe(1);
    expect(s.wake_at).toBe(1001); // replica 1 has a whole attempt to answer
    // Replica 1 never answers: the attempt times out, and the retry goes to 2, not to the dead 0.
    const targets = [sent(s.expire(1001)).replica, sent(s.expire(1500)).replica];
    expect(targets).toEqual([2, 1]);
    // Unreachable replicas that are not the target are only noted.
    expect(s.onUnreachable(2, 1600)).toEqual({ kind: "wait" });
  });

  test("a backup naming a primary this client could not reach is not followed there: the live replicas are asked again after the backoff", () => {
    const s = session({ first_target: 0 });
    // Registered with replica 0 as primary of view 3 (3 % 3 = 0).
    const register = sent(s.start(Operation.put, get_hello, 0));
    const put = sent(s.onReply(reply(register.message, { replica: 0, view: 3, result: Result.ok, session: 9 }), 0, 1));
    expect(put.replica).toBe(0);
    // Replica 0 is killed: its connection closes (a retry at once), and reconnecting is refused.
    expect(sent(s.expire(2)).replica).toBe(1);
    expect(s.onUnreachable(0, 3)).toEqual({ kind: "wait" });
    // Replica 1 has not finished its view change: it still names 0, of view 3. Pause, then ask 2.
    let now = 4;
    const polled: number[] = [];
    let replier = 1;
    for (let i = 0; i < 12; i++) {
      expect(s.onReply(reply(put.message, { replica: replier, view: 3, result: Result.not_primary }), replier, now)).toEqual({
        kind: "wait",
      });
      expect(s.wake_at).toBe(now + 50);
      now = s.wake_at;
      const poll = sent(s.expire(now));
      // Polls answered are not lost attempts: each still waits one attempt timeout, not four.
      expect(s.wake_at).toBe(now + 1000);
      polled.push((replier = poll.replica));
      now += 1;
    }
    expect(polled).toEqual([2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1]);
    // The view change finished: a backup of view 4 names replica 1, which is followed at once.
    expect(sent(s.onReply(reply(put.message, { replica: 2, view: 4, result: Result.not_primary }), 2, now)).replica).toBe(1);
    expect(s.onReply(reply(put.message, { replica: 1, view: 4, result: Result.ok }), 1, now + 1).kind).toBe("done");
  });

  test("a replica found unreachable is tried again once it is named primary of a later view, heard from, reconnected, or after two attempt timeouts", () => {
    // A fresh client (no reply yet) knows no view of replica 0: a backup naming it in any view is not followed.
    const s = session({ first_target: 0 });
    const first = sent(s.start(Operation.get, get_hello, 0));
    expect(sent(s.onUnreachable(0, 0)).replica).toBe(1);
    expect(s.onReply(reply(first.message, { replica: 1, view: 6, result: Result.not_primary }), 1, 1)).toEqual({ kind: "wait" });
    // Named primary of view 9, after it was down in view 6: elected since, so followed at once.
    expect(sent(s.expire(s.wake_at)).replica).toBe(2);
    expect(sent(s.onReply(reply(first.message, { replica: 2, view: 9, result: Result.not_primary }), 2, 60)).replica).toBe(0);
    // Refused again; a reply from it (on its connection) clears the mark as well.
    expect(sent(s.onUnreachable(0, 70)).replica).toBe(1);
    expect(s.onReply(reply(first.message, { replica: 0, view: 9, result: Result.ok }), 0, 71).kind).toBe("done");
    const second = sent(s.start(Operation.get, get_hello, 100));
    expect(second.replica).toBe(0);
    // Marked again, then reconnected: no longer skipped.
    expect(sent(s.onUnreachable(0, 101)).replica).toBe(1);
    s.onReachable(0);
    expect(sent(s.expire(s.wake_at)).replica).toBe(2);
    expect(sent(s.expire(s.wake_at)).replica).toBe(0);
    // Marked again: skipped until two attempt timeouts have passed.
    const at = s.wake_at;
    expect(sent(s.onUnreachable(0, at)).replica).toBe(1);
    expect(sent(s.expire(at + 1000)).replica).toBe(2);
    expect(sent(s.expire(at + 1999)).replica).toBe(1);
    expect(sent(s.expire(at + 2000)).replica).toBe(2);
    expect(sent(s.expire(at + 2001)).replica).toBe(0);
  });

  test("every replica unreachable: plain rotation (the transport's reconnect backoff paces it)", () => {
    const s = session({ first_target: 0 });
    sent(s.start(Operation.get, get_hello, 0));
    expect(s.onUnreachable(1, 0)).toEqual({ kind: "wait" });
    expect(s.onUnreachable(2, 0)).toEqual({ kind: "wait" });
    // Only replica 0 is left: the retry goes back to it.
    expect(sent(s.onUnreachable(0, 1)).replica).toBe(1);
  });

  test("busy and unavailable: the same replica after a growing pause; no_space: the next replica", () => {
    const s = session();
    const first = sent(s.start(Operation.get, get_hello, 0));
    expect(s.onReply(reply(first.message, { replica: 0, result: Result.busy }), 0, 10).kind).toBe("wait");
    expect(s.wake_at).toBe(60);
    expect(sent(s.expire(60)).replica).toBe(0);
    expect(s.onReply(reply(first.message, { replica: 0, result: Result.unavailable }), 0, 70).kind).toBe("wait");
    expect(s.wake_at).toBe(170);
    expect(sent(s.expire(170)).replica).toBe(0);
    expect(s.onReply(reply(first.message, { replica: 0, result: Result.no_space }), 0, 200).kind).toBe("wait");
    expect(s.wake_at).toBe(350);
    expect(sent(s.expire(350)).replica).toBe(1);
  });

  test("evicted: the write's outcome is unknown, and the next write registers again with new request numbers", () => {
    const s = session();
    const register = sent(s.start(Operation.delete, get_hello, 0));
    const write = sent(s.onReply(reply(register.message, { replica: 0, result: Result.ok, session: 4, op: 4 }), 0, 1));
    expect(write.message.header.session).toBe(4);
    const evicted = s.onReply(reply(write.message, { replica: 0, result: Result.evicted, op: 9 }), 0, 2);
    if (evicted.kind !== "failed") throw new Error("expected failed");
    expect(evicted.error.code).toBe("evicted");
    expect(s.session).toBe(0);
    const again = sent(s.start(Operation.delete, get_hello, 3));
    expect(again.message.header.operation).toBe(Operation.register);
    expect(again.message.header.request).toBe(3);
  });

  test("replies that do not answer the pending request are ignored, the impossible ones with a reason", () => {
    const s = session();
    const first = sent(s.start(Operation.get, get_hello, 0));
    const late = reply(first.message, { request: 0, result: Result.ok });
    expect(s.onReply(late, 0, 1)).toEqual({ kind: "ignored", problem: null });
    const other = reply(first.message, { client: 5n, result: Result.ok });
    expect(s.onReply(other, 0, 1)).toMatchObject({ kind: "ignored", problem: expect.stringContaining("for client 5") });
    const wrong_operation = reply(first.message, { operation: Operation.stat, result: Result.ok });
    expect(s.onReply(wrong_operation, 0, 1)).toMatchObject({ kind: "ignored", problem: expect.stringContaining("operation") });
    expect(s.pending).toBe(true);
  });

  test("errors the caller must not retry carry the cluster's limit", () => {
    const s = session();
    const first = sent(s.start(Operation.get, encodeKeyRequest(new Uint8Array(2000), null), 0));
    const failed = s.onReply(reply(first.message, { replica: 0, result: Result.key_invalid }, encodeU64(1024)), 0, 1);
    if (failed.kind !== "failed") throw new Error("expected failed");
    expect(failed.error.code).toBe("key_invalid");
    expect(failed.error.message).toContain("1024");
    expect(resultError(reply(first.message, { result: Result.condition_failed }, encodeU64(0))).message).toContain("(absent)");
  });

  test("wrong_cluster: skip those replicas; if every one says so, fail naming them", () => {
    const s = session({ names: ["a:1", "b:2", "c:3"] });
    const first = sent(s.start(Operation.get, get_hello, 0));
    // A wrong_cluster reply names no replica (replica 0): the connection it came on does.
    const step = sent(s.onReply(reply(first.message, { replica: 0, result: Result.wrong_cluster }), 0, 1));
    expect(step.replica).toBe(1);
    expect(sent(s.onReply(reply(first.message, { replica: 0, result: Result.wrong_cluster }), 1, 2)).replica).toBe(2);
    const failed = s.onReply(reply(first.message, { replica: 0, result: Result.wrong_cluster }), 2, 3);
    if (failed.kind !== "failed") throw new Error("expected failed");
    expect(failed.error.code).toBe("wrong_cluster");
    expect(failed.error.message).toContain("replicas a:1, b:2, c:3 belong to another cluster");
  });

  test("authentication failures: the next replica at once; every replica failed: authentication_failed, not no_quorum", () => {
    const s = session({ names: ["a:1", "b:2", "c:3"] });
    sent(s.start(Operation.get, get_hello, 0));
    expect(sent(s.onAuthFailure(0, "authentication failed: wrong secret", 1)).replica).toBe(1);
    // A failure at a replica that is not the current target is remembered, without a resend.
    expect(s.onAuthFailure(2, "authentication failed: wrong secret", 2).kind).toBe("wait");
    const failed = s.onAuthFailure(1, "authentication failed: wrong secret", 3);
    if (failed.kind !== "failed") throw new Error("expected failed");
    expect(failed.error.code).toBe("authentication_failed");
    expect(failed.error.message).toBe("authentication failed: wrong secret (every replica: a:1,b:2,c:3)");
    expect(s.pending).toBe(false);
    expect(s.onAuthFailure(0, "late", 4).kind).toBe("wait");
  });

  test("no answer within the operation timeout: no_quorum, naming the replicas", () => {
    const s = session({ operation_timeout: 2500, names: ["a:1", "b:2", "c:3"] });
    sent(s.start(Operation.get, get_hello, 0));
    sent(s.expire(s.wake_at));
    sent(s.expire(s.wake_at));
    expect(s.wake_at).toBe(2500); // the last attempt is cut short by the deadline
    const failed = s.expire(2500);
    if (failed.kind !== "failed") throw new Error("expected failed");
    expect(failed.error.code).toBe("no_quorum");
    expect(failed.error.message).toContain("within 2500 ms after 3 attempts");
    expect(failed.error.message).toContain("a:1,b:2,c:3");
    expect(s.pending).toBe(false);
  });

  test("a large body gets more time per attempt", () => {
    const s = session({ attempt_timeout_per_mib: 100 });
    sent(s.start(Operation.get, new Uint8Array(2 ** 21), 0));
    expect(s.wake_at).toBe(1200);
  });

  test("the session core reads no clock, sets no timer and never awaits", () => {
    const source = fs
      .readFileSync(path.join(import.meta.dir, "session.ts"), "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/\/\/.*$/gm, "");
    for (const forbidden of [/Date\.now/, /performance\.now/, /setTimeout/, /\bawait\b/, /Math\.random/, /node:/])
      expect(source).not.toMatch(forbidden);
  });
});
