/**
 * The C client when the primary dies (docs/PROTOCOL.md §3.9, clients/c/route.c): a replica whose
 * connection could not be made is marked down for two attempt timeouts, a backup's not_primary
 * naming a down primary is not followed, and the live replicas are polled every B (50 ms) instead.
 *
 * - Against a real 3-replica cluster: kill -9 of the primary (by the C program itself, between two
 *   puts, so the time is exact), then the next put, by the same client and by a new one, and with
 *   the dead primary's port a black hole (connects get no answer, as when its host went away).
 * - Against fake replicas, the case the rule is for in this client: a primary whose connects get no
 *   answer and a view change that outlasts an attempt timeout. Each visit to the dead primary costs
 *   an attempt timeout (1 s, growing to 2 s), so a client that follows the backups' hints there
 *   finishes about 3 s after the first reply instead of within a poll of the view change's end.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Command, encode, finalize, Header, type Message } from "../lib/net/codec.ts";
import { FrameReader } from "../lib/net/frame_reader.ts";
import { membership, parseAddress } from "../lib/net/address.ts";
import { Operation, Result, encodeU64 } from "../lib/store/operations.ts";
import { freePorts, repo, TestCluster } from "./support/cluster.ts";
import { build_dir, c_dir, run } from "./support/c_run.ts";
import * as path from "node:path";

const program = () => path.join(build_dir, "client_test");

beforeAll(async () => {
  const made = await run(["make", "-C", c_dir, "all", "tests"], { cwd: repo, timeout_ms: 120_000 });
  if (made.code !== 0) throw new Error(`make failed:\n${made.stdout}\n${made.stderr}`);
}, 120_000);

describe("C client: the first put after kill -9 of the primary (3 replicas of ./toastyfs)", () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start(3);
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  // The view change takes ~0.35 s here (bench/RESULTS.md, "Client failover"), and a connect that
  // gets no answer costs one attempt timeout (1 s) on top, once: ~0.36 s and ~1.2 s, the slowest
  // seen 1.44 s and 1.49 s (one slow view change on a loaded 2-core machine). The bounds leave room
  // for that; the test below is the one a client that follows hints to a dead primary fails.
  for (const [who, hole, bound_ms] of [
    ["same", false, 2000],
    ["fresh", false, 2000],
    ["same", true, 3000],
  ] as const) {
    test(`${who === "same" ? "the same client" : "a new client"}${hole ? ", the dead primary's port a black hole" : ""}: within ${bound_ms} ms`, async () => {
      await cluster.waitConverged();
      const primary = await cluster.primary();
      const proc = primary.process!;
      const r = await run([program(), "resume", cluster.cluster_arg, String(proc.pid), who, ...(hole ? [String(primary.port)] : [])]);
      await proc.exited;
      primary.process = null;
      try {
        expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
        const took = Number(/took (\d+) ms/.exec(r.stdout)?.[1]);
        console.log(r.stdout.trim());
        expect(took).toBeLessThan(bound_ms);
      } finally {
        cluster.restart(primary);
      }
    }, 60_000);
  }
});

/**
 * Two replicas that are changing views after their primary's host went away: until `view_change_ms`
 * after the first request reaches either, both answer not_primary naming the lost primary (their
 * log_view, §3.5); then the next replica is primary and the other one names it. The lost primary's
 * address is a black hole that the C program makes (client_test hole-put).
 */
class ViewChangeFake {
  readonly servers: { stop(closeActiveConnections?: boolean): void; port: number }[] = [];
  cluster = 0n;
  addresses: string[] = [];
  hole = 0;
  /** When the first request reached a live replica, and when the put was answered ok. */
  first_request_at = Infinity;
  put_ok_at = Infinity;
  /** Requests received by each replica index. */
  readonly received = [0, 0, 0];
  private index_of: number[] = [];

  constructor(readonly view_change_ms: number) {}

  async start(): Promise<number> {
    for (let i = 0; i < 2; i++) {
      const server_index = i;
      this.servers.push(
        Bun.listen<{ reader: FrameReader }>({
          hostname: "127.0.0.1",
          port: 0,
          socket: {
            open: (socket) => {
              socket.data = { reader: new FrameReader({ cluster: this.cluster }) };
            },
            data: (socket, chunk) => {
              try {
                socket.data.reader.push(chunk);
                let m: Message | null;
                while ((m = socket.data.reader.next()) !== null) {
                  if (m.header.command === Command.request) socket.write(this.answer(this.index_of[server_index]!, m));
                }
              } catch {
                socket.end();
              }
            },
            error: () => {},
            close: () => {},
          },
        }),
      );
    }
    const [hole_port] = await freePorts(1);
    const texts = [...this.servers.map((s) => `127.0.0.1:${s.port}`), `127.0.0.1:${hole_port}`];
    const m = membership(texts.map(parseAddress));
    this.cluster = m.cluster;
    this.addresses = m.replicas.map((a) => `${a.host}:${a.port}`);
    this.index_of = texts.map((t) => this.addresses.indexOf(t));
    this.hole = this.index_of[2]!;
    return hole_port!;
  }

  stop(): void {
    for (const s of this.servers) s.stop(true);
  }

  private answer(index: number, request: Message): Uint8Array {
    const now = performance.now();
    this.received[index]! += 1;
    if (this.first_request_at === Infinity) this.first_request_at = now;
    const lost_view = 3 + this.hole; // a view whose primary is the lost replica
    const new_view = lost_view + 1;
    const h = new Header();
    h.command = Command.reply;
    h.cluster = this.cluster;
    h.replica = index;
    h.replica_count = 3;
    h.client = request.header.client;
    h.request = request.header.request;
    h.operation = request.header.operation;
    h.session = request.header.session;
    let body: Uint8Array = new Uint8Array(0);
    if (now < this.first_request_at + this.view_change_ms) {
      h.view = lost_view;
      h.result = Result.not_primary;
    } else if (index !== new_view % 3) {
      h.view = new_view;
      h.result = Result.not_primary;
    } else {
      h.view = new_view;
      h.result = Result.ok;
      h.timestamp = Date.now();
      if (request.header.operation === Operation.register) {
        h.session = 1;
        h.op = 1;
      } else {
        h.op = 2;
        body = encodeU64(2);
        if (request.header.operation === Operation.put) this.put_ok_at = Math.min(this.put_ok_at, now);
      }
    }
    return encode(finalize(h, body));
  }
}

describe("C client: a primary whose host went away, and a view change longer than an attempt timeout", () => {
  test("the backups' hints are not followed back to it: the live replicas are polled, and the put succeeds within a poll of the view change's end", async () => {
    const view_change_ms = 1500;
    const fake = new ViewChangeFake(view_change_ms);
    const hole_port = await fake.start();
    try {
      const r = await run([program(), "hole-put", fake.addresses.join(","), String(hole_port)], { timeout_ms: 30_000 });
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
      const took = fake.put_ok_at - fake.first_request_at;
      const other = (fake.hole + 2) % 3; // the live replica that does not become primary
      console.log(
        `${r.stdout.trim()}; the put was answered ${took.toFixed(0)} ms after the first request reached a live replica (view change: ${view_change_ms} ms); requests per replica ${fake.received.join(",")} (replica ${fake.hole} is the black hole)`,
      );
      // Following the hints to the black hole costs 1 s, then 2 s (the attempt timeout grows once
      // every replica had an attempt): about 3 s. Polling ends within ~50 ms of the view change.
      expect(took).toBeLessThan(view_change_ms + 600);
      // Polled both live replicas while it lasted; one following the hints asks only the replica
      // after the dead one.
      expect(fake.received[other]!).toBeGreaterThanOrEqual(2);
    } finally {
      fake.stop();
    }
  }, 40_000);
});
