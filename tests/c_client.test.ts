/**
 * The C client library (clients/c) as real processes: built with make, its unit tests (codec
 * vectors, argument validation) and a test program run against a real 3-replica cluster, natively
 * and under valgrind; a put stream that survives kill -9 of the primary; fake replicas (Bun TCP
 * servers) that answer with garbage, truncated frames and bad checksums; and the README example:
 * the block of clients/c/README.md that builds it, run verbatim in a fresh copy of the tree next to
 * `toastyfs dev` on 127.0.0.1:8081-8083 (tests/support/dev_ports.ts). And the same client against a
 * cluster with a secret (docs/PROTOCOL.md §6, issue 16): secret file, client key file,
 * TOASTYFS_SECRET_FILE, refusals, and tags flipped either way.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Command, encode, finalize, Header, type Message } from "../lib/net/codec.ts";
import { FrameReader } from "../lib/net/frame_reader.ts";
import { membership, parseAddress } from "../lib/net/address.ts";
import { checksum } from "../lib/util/checksum.ts";
import { newSecret, readSecretFile, writeClientKeyFile, writeSecretFile } from "../lib/net/auth/secret.ts";
import { Acceptor } from "../lib/net/auth/handshake.ts";
import { FrameOpener, FrameSealer, tag_size } from "../lib/net/auth/frame_tag.ts";
import { Operation, Result, decodeKeyRequest, encodeGetReply, encodeListReply, encodeU64 } from "../lib/store/operations.ts";
import { repo, TestCluster, waitFor } from "./support/cluster.ts";
import { copyCTree, readmeBlock } from "./support/c_docs.ts";
import { runWithDevCluster } from "./support/dev_ports.ts";
import { build_dir, c_dir, run, valgrind, valgrind_args, type Run } from "./support/c_run.ts";

/** Runs a program under valgrind and asserts it exited 0 with no memory errors and no leaks. */
async function runValgrind(cmd: string[], timeout_ms = 60_000): Promise<Run> {
  if (valgrind === null) {
    console.warn(`valgrind is not installed: running ${path.basename(cmd[0]!)} without it (no memory check)`);
    const native = await run(cmd, { timeout_ms });
    expect(native.code, `${native.stdout}\n${native.stderr}`).toBe(0);
    return native;
  }
  const result = await run([valgrind, ...valgrind_args, ...cmd], { timeout_ms });
  const context = `${cmd.join(" ")}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
  expect(result.code, context).toBe(0);
  expect(result.stderr, context).toContain("ERROR SUMMARY: 0 errors from 0 contexts");
  expect(result.stderr, context).toContain("All heap blocks were freed -- no leaks are possible");
  return result;
}

function summary(r: Run): string {
  const line = r.stderr.split("\n").find((l) => l.includes("ERROR SUMMARY"));
  return line ? line.replace(/^==\d+== /, "") : "";
}

beforeAll(async () => {
  const made = await run(["make", "-C", c_dir, "all", "tests"], { cwd: repo, timeout_ms: 120_000 });
  if (made.code !== 0) throw new Error(`make failed:\n${made.stdout}\n${made.stderr}`);
}, 120_000);

describe("C client: build and unit tests", () => {
  test("make produces the static and shared library; install copies them with the header", async () => {
    expect(fs.existsSync(path.join(c_dir, "libtoasty.a"))).toBe(true);
    expect(fs.existsSync(path.join(c_dir, "libtoasty.so"))).toBe(true);
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-c-install-"));
    try {
      const installed = await run(["make", "-C", c_dir, "install", `PREFIX=${prefix}`], { cwd: repo });
      expect(installed.code, installed.stderr).toBe(0);
      for (const f of ["lib/libtoasty.a", "lib/libtoasty.so", "include/toastyfs.h"]) expect(fs.existsSync(path.join(prefix, f))).toBe(true);
      // The shared library exports the API and nothing else.
      const nm = await run(["nm", "-D", "--defined-only", path.join(prefix, "lib/libtoasty.so")]);
      const symbols = nm.stdout
        .split("\n")
        .filter((l) => / T /.test(l))
        .map((l) => l.split(" ").pop());
      expect(symbols.length).toBeGreaterThan(5);
      for (const s of symbols) expect(s).toStartWith("toastyfs_");
    } finally {
      fs.rmSync(prefix, { recursive: true, force: true });
    }
  });

  test("unit tests (checksum and codec vectors of PROTOCOL.md, addresses, argument validation) pass under valgrind", async () => {
    const r = await runValgrind([path.join(build_dir, "unit_test")]);
    expect(r.stdout).toContain(", 0 failed");
    console.log(`unit_test: ${r.stdout.trim()}; valgrind: ${summary(r)}`);
  });

  test("xxHash64 agrees with Bun.hash.xxHash64 on every length 0..300 and on 1 MiB + 13", async () => {
    const data = new Uint8Array(1024 * 1024 + 13);
    crypto.getRandomValues(data.subarray(0, 65536));
    for (let i = 65536; i < data.length; i++) data[i] = (i * 131 + (i >> 8)) & 0xff;
    const proc = Bun.spawn([path.join(build_dir, "unit_test"), "xxh64-prefixes"], { stdin: data, stdout: "pipe" });
    const lines = (await new Response(proc.stdout).text()).trim().split("\n");
    expect(await proc.exited).toBe(0);
    expect(lines.length).toBe(302);
    for (let len = 0; len <= 300; len++)
      expect(lines[len], `length ${len}`).toBe(checksum(data.subarray(0, len)).toString(16).padStart(16, "0"));
    expect(lines[301]).toBe(checksum(data).toString(16).padStart(16, "0"));
  });
});

describe("C client against a real 3-replica cluster", () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start(3);
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  test("round trips of 0 B, 1 B, 1 MiB and 16 MiB values, not found, conditions, list, bad inputs", async () => {
    const r = await run([path.join(build_dir, "client_test"), "roundtrip", cluster.cluster_arg]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain("roundtrip: ok");
    console.log(r.stdout.trim());
  }, 60_000);

  test("the same round trips under valgrind: no memory errors, no leaks", async () => {
    const r = await runValgrind([path.join(build_dir, "client_test"), "roundtrip", cluster.cluster_arg]);
    expect(r.stdout).toContain("roundtrip: ok");
    console.log(`valgrind client_test roundtrip: ${summary(r)}`);
  }, 60_000);

  test("given a subset of the addresses, an operation fails at once with TOASTYFS_WRONG_CLUSTER naming the replica (valgrind clean)", async () => {
    const subset = cluster.replicas
      .slice(0, 2)
      .map((r) => r.address)
      .join(",");
    const r = await runValgrind([path.join(build_dir, "client_test"), "wrong-cluster", subset], 45_000);
    expect(r.stdout).toContain("wrong-cluster: ok");
    console.log(r.stdout.trim());
  }, 60_000);

  test("a stream of puts survives kill -9 of the primary: every put succeeds and reads back", async () => {
    const proc = Bun.spawn([path.join(build_dir, "client_test"), "failover", cluster.cluster_arg], {
      cwd: c_dir,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    let out = "";
    let progress = 0;
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of proc.stdout) {
        out += decoder.decode(chunk);
        const matches = [...out.matchAll(/^progress (\d+)/gm)];
        if (matches.length > 0) progress = Number(matches[matches.length - 1]![1]);
      }
    })();
    try {
      await waitFor("20 puts before the kill", () => progress >= 20 || proc.exitCode !== null, 20_000, 10);
      const primary = await cluster.primary();
      const at_kill = progress;
      cluster.kill(primary); // SIGKILL while puts are streaming: one is in flight
      const killed_at = Date.now();
      await waitFor("20 more puts after the kill", () => progress >= at_kill + 20 || proc.exitCode !== null, 25_000, 10);
      console.log(
        `failover: puts resumed; ${progress - at_kill} puts in ${Date.now() - killed_at} ms after kill -9 of replica ${primary.index}`,
      );
      proc.stdin.write("stop\n");
      await proc.stdin.end();
      const code = await proc.exited;
      await reading;
      const stderr = await new Response(proc.stderr).text();
      expect(code, `${out}\n${stderr}`).toBe(0);
      expect(out).toContain("all read back: yes");
      // The put in flight at the kill (or the first after it) waited out the view change: the
      // library retried it until the new primary answered.
      const slowest = Number(/slowest put ([\d.]+) s/.exec(out)?.[1] ?? "0");
      expect(slowest).toBeGreaterThan(0.2);
      console.log(out.split("\n").find((l) => l.startsWith("failover:")));
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    }
  }, 60_000);
});

// --- Fake replicas

type FakeMode =
  | "good" // answers correctly from an in-memory store
  | "garbage" // random bytes
  | "truncated" // the first 64 bytes of a valid reply, then closes
  | "bad_header_checksum"
  | "bad_body_checksum" // checksum_body wrong, header checksum valid
  | "oversize" // a valid header claiming a 4 GiB frame
  | "wrong_cluster"
  | "malformed_reply" // a valid frame whose body does not fit the operation
  | "stall_huge" // a valid header announcing a 16 MiB body that never comes
  | "not_primary_self" // not_primary naming itself
  | "busy_then_good" // busy to the first send of every request, then good
  | "register_only" // registers clients, then never answers
  | "malformed_after_register" // registers clients, then answers ok with a body that fits no operation
  | "silent"
  | "close";

interface FakeState {
  reader: FrameReader;
}

class FakeCluster {
  readonly servers: { stop(closeActiveConnections?: boolean): void; port: number }[] = [];
  modes: FakeMode[] = [];
  cluster = 0n;
  addresses: string[] = [];
  private store = new Map<string, { version: number; value: Uint8Array }>();
  private revision = 0;
  /** Sessions by client id, as the replicated client table keeps them; op numbers count registers. */
  private sessions = new Map<bigint, number>();
  private ops = 0;
  private busy_answered = new Set<string>();
  /** Answer the first put with evicted (and forget the session, as an eviction does). */
  private evict_next_put = false;

  static async start(modes: FakeMode[], options: { evict_first_put?: boolean } = {}): Promise<FakeCluster> {
    const fake = new FakeCluster();
    fake.evict_next_put = options.evict_first_put ?? false;
    for (let i = 0; i < modes.length; i++) {
      const index_of_server = i;
      const server = Bun.listen<FakeState>({
        hostname: "127.0.0.1",
        port: 0,
        socket: {
          open: (socket) => {
            socket.data = { reader: new FrameReader({ cluster: fake.cluster }) };
          },
          data: (socket, chunk) => fake.onData(index_of_server, socket, chunk),
          error: () => {},
          close: () => {},
        },
      });
      fake.servers.push(server);
    }
    // Replica indexes follow the sorted address strings, exactly as the client derives them.
    const texts = fake.servers.map((s) => `127.0.0.1:${s.port}`);
    const m = membership(texts.map(parseAddress));
    fake.cluster = m.cluster;
    fake.addresses = m.replicas.map((a) => `${a.host}:${a.port}`);
    // modes[k] is the mode of the replica with index k.
    const by_server: FakeMode[] = [];
    texts.forEach((t, server) => (by_server[server] = modes[fake.addresses.indexOf(t)]!));
    fake.modes = by_server;
    fake.index_of = texts.map((t) => fake.addresses.indexOf(t));
    return fake;
  }

  private index_of: number[] = [];

  get arg(): string {
    return this.addresses.join(",");
  }

  stop(): void {
    for (const s of this.servers) s.stop(true);
  }

  private onData(server: number, socket: { data: FakeState; write(b: Uint8Array): number; end(): void }, chunk: Uint8Array): void {
    const mode = this.modes[server]!;
    const index = this.index_of[server]!;
    if (mode === "silent") return;
    if (mode === "close") return socket.end();
    if (mode === "garbage") {
      const junk = new Uint8Array(300);
      crypto.getRandomValues(junk);
      socket.write(junk);
      return;
    }
    let message: Message | null;
    try {
      socket.data.reader.push(chunk);
      while ((message = socket.data.reader.next()) !== null) {
        if (message.header.command !== Command.request) continue;
        const bytes = this.answer(index, mode, message);
        if (bytes === null) continue;
        if (mode === "truncated") {
          socket.write(bytes.subarray(0, 64));
          socket.end();
          return;
        }
        socket.write(bytes);
      }
    } catch {
      socket.end();
    }
  }

  private answer(index: number, mode: FakeMode, request: Message): Uint8Array | null {
    const h = new Header();
    h.command = Command.reply;
    h.cluster = mode === "wrong_cluster" ? this.cluster ^ 1n : this.cluster;
    h.replica = index;
    h.replica_count = this.addresses.length;
    h.view = index;
    h.client = request.header.client;
    h.request = request.header.request;
    h.operation = request.header.operation;
    h.session = request.header.session;
    h.timestamp = Date.now();
    if (mode === "not_primary_self") {
      h.result = Result.not_primary;
      return encode(finalize(h));
    }
    let body: Uint8Array = new Uint8Array(0);
    if (mode === "malformed_reply" || (mode === "malformed_after_register" && request.header.operation !== Operation.register)) {
      h.result = Result.ok;
      return encode(finalize(h, new Uint8Array([1, 2, 3])));
    }
    if (mode === "register_only" && request.header.operation !== Operation.register) return null;
    if (mode === "malformed_after_register" && request.header.operation === Operation.register) {
      h.session = 1;
      h.op = 1;
      return encode(finalize(h));
    }
    if (mode === "busy_then_good") {
      const id = `${request.header.client}/${request.header.request}`;
      if (!this.busy_answered.has(id)) {
        this.busy_answered.add(id);
        h.result = Result.busy;
        return encode(finalize(h));
      }
    }
    switch (request.header.operation as Operation) {
      case Operation.register:
        this.ops += 1;
        h.session = this.ops;
        h.op = this.ops;
        this.sessions.set(request.header.client, this.ops);
        break;
      case Operation.put: {
        const k = decodeKeyRequest(request.body, true);
        if (k === null) return null;
        if (this.sessions.get(request.header.client) !== request.header.session || this.evict_next_put) {
          this.evict_next_put = false;
          this.sessions.delete(request.header.client);
          h.result = Result.evicted;
          break;
        }
        this.revision += 1;
        this.store.set(Buffer.from(k.key).toString("hex"), { version: this.revision, value: k.value.slice() });
        body = encodeU64(this.revision);
        break;
      }
      case Operation.get: {
        const k = decodeKeyRequest(request.body, false);
        const entry = k === null ? undefined : this.store.get(Buffer.from(k.key).toString("hex"));
        if (entry === undefined) h.result = Result.not_found;
        else
          body = encodeGetReply(
            { version: entry.version, timestamp: h.timestamp, size: entry.value.length, checksum: checksum(entry.value) },
            entry.value,
          );
        break;
      }
      case Operation.list:
        body = encodeListReply([], false);
        break;
      default:
        h.result = Result.not_found;
    }
    const bytes = encode(finalize(h, body));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const reseal = () => view.setBigUint64(0, checksum(bytes.subarray(8, 128)), true);
    switch (mode) {
      case "bad_header_checksum":
        bytes[100] = (bytes[100] ?? 0) ^ 0xff;
        break;
      case "bad_body_checksum":
        view.setBigUint64(8, view.getBigUint64(8, true) ^ 0x5555n, true);
        reseal();
        break;
      case "oversize":
        view.setUint32(92, 0xffffff00, true);
        reseal();
        break;
      case "stall_huge":
        view.setUint32(92, 128 + 16 * 1024 * 1024, true);
        reseal();
        return bytes.subarray(0, 128);
    }
    return bytes;
  }
}

describe("C client against a 3-replica cluster with a secret (issue 16)", () => {
  let cluster: TestCluster;
  let dir: string;
  let secret_file: string;
  let client_file: string;
  let wrong_file: string;
  const program = () => path.join(build_dir, "auth_client_test");

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "toastyfs-c-auth-"));
    secret_file = path.join(dir, "secret");
    client_file = path.join(dir, "client.key");
    wrong_file = path.join(dir, "wrong");
    writeSecretFile(secret_file, newSecret());
    writeSecretFile(wrong_file, newSecret());
    writeClientKeyFile(client_file, readSecretFile(secret_file));
    // Through proxies (tests/support/proxy.ts), so a test can flip a byte in flight.
    cluster = await TestCluster.start(3, { secret_file, proxy: true });
  }, 60_000);

  async function tagFailures(): Promise<number> {
    const statuses = await cluster.status(2000);
    return statuses.reduce((sum, s) => sum + (s?.counters["auth_failures_tag"] ?? 0), 0);
  }

  afterAll(async () => {
    await cluster?.destroy();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  test("put/get/list/delete (small and a 5 MiB upload) with the secret file, a client key file and TOASTYFS_SECRET_FILE, valgrind clean", async () => {
    for (const [mode, file] of [
      ["roundtrip", secret_file],
      ["roundtrip", client_file],
      ["env", secret_file],
    ] as const) {
      const r = await runValgrind([program(), mode, cluster.cluster_arg, file], 120_000);
      expect(r.stdout, `${mode} ${file}`).toContain(", 0 failed");
      console.log(`auth_client_test ${mode} ${path.basename(file)}: ${r.stdout.trim()}; valgrind: ${summary(r)}`);
    }
  }, 300_000);

  test("no secret or a wrong one: TOASTYFS_AUTH_FAILED at once, nothing written, valgrind clean", async () => {
    const none = await runValgrind([program(), "refused", cluster.cluster_arg, "none"], 60_000);
    expect(none.stdout).toContain("authentication failed: ");
    expect(none.stdout).toContain("the replica requires a secret");
    const wrong = await runValgrind([program(), "refused", cluster.cluster_arg, wrong_file], 60_000);
    expect(wrong.stdout).toContain("authentication failed: ");
    expect(wrong.stdout).toContain("does not hold our secret");
    const absent = await run([program(), "absent", cluster.cluster_arg, secret_file]);
    expect(absent.code, `${absent.stdout}\n${absent.stderr}`).toBe(0);
    console.log(`no secret: ${none.stdout.trim()}\nwrong secret: ${wrong.stdout.trim()}`);
  }, 180_000);

  test("a byte of the C client's tag flipped in flight: the replica closes that connection, the client goes on over a fresh one", async () => {
    const before = await tagFailures();
    // The first client connection to each replica: HELLO (48) and PROOF (40), then the register
    // request (128 bytes, empty body) and its 16-byte tag: flip a byte of that tag.
    for (let i = 0; i < 3; i++) cluster.network!.flipClientByte(i, 48 + 40 + 128 + 5);
    const r = await run([program(), "roundtrip", cluster.cluster_arg, secret_file]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(await tagFailures()).toBeGreaterThan(before);
  }, 60_000);

  test("a reply whose tag does not verify is never taken: the connection closes and the put fails with TOASTYFS_PROTOCOL (valgrind clean)", async () => {
    // A one-replica fake that authenticates for real (lib/net/auth), checks the client's tags, and
    // tags its register reply right and every later reply wrong.
    const keys = readSecretFile(secret_file);
    let client_tags_bad = 0;
    let replies_tagged_wrong = 0;
    type Conn = { acceptor: Acceptor; opener: FrameOpener | null; sealer: FrameSealer | null; pending: Uint8Array };
    let cluster_id = 0n;
    const server = Bun.listen<Conn>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: (socket) => {
          const nonce = crypto.getRandomValues(new Uint8Array(32));
          socket.data = {
            acceptor: new Acceptor({ keys, index: 0, cluster: cluster_id, replica_count: 1, nonce }),
            opener: null,
            sealer: null,
            pending: new Uint8Array(0),
          };
        },
        data: (socket, received) => {
          const c = socket.data;
          let chunk: Uint8Array = received;
          if (c.opener === null) {
            const step = c.acceptor.receive(chunk);
            if (step.output !== null) socket.write(step.output);
            if (step.status === "failed") return void socket.end();
            if (step.status === "pending") return;
            c.opener = new FrameOpener(step.keys.receive);
            c.sealer = new FrameSealer(step.keys.send);
            chunk = step.rest;
          }
          c.pending = Buffer.concat([c.pending, chunk]);
          for (;;) {
            if (c.pending.length < 128) return;
            const size = new DataView(c.pending.buffer, c.pending.byteOffset).getUint32(92, true);
            if (c.pending.length < size + tag_size) return;
            const frame = c.pending.slice(0, size);
            const tag = c.pending.slice(size, size + tag_size);
            c.pending = c.pending.slice(size + tag_size);
            if (!c.opener.open(frame, tag)) {
              client_tags_bad += 1;
              return void socket.end();
            }
            const reader = new FrameReader({ cluster: cluster_id });
            reader.push(frame);
            const request = reader.next()!;
            const h = new Header();
            h.command = Command.reply;
            h.cluster = cluster_id;
            h.replica = 0;
            h.replica_count = 1;
            h.client = request.header.client;
            h.request = request.header.request;
            h.operation = request.header.operation;
            h.session = request.header.operation === Operation.register ? 1 : request.header.session;
            h.op = 1;
            h.timestamp = Date.now();
            const body = request.header.operation === Operation.put ? encodeU64(1) : new Uint8Array(0);
            const reply = encode(finalize(h, body));
            const reply_tag = c.sealer!.seal(reply);
            if (request.header.operation !== Operation.register) {
              reply_tag[3]! ^= 0x40;
              replies_tagged_wrong += 1;
            }
            socket.write(Buffer.concat([reply, reply_tag]));
          }
        },
        error: () => {},
        close: () => {},
      },
    });
    try {
      const address = `127.0.0.1:${server.port}`;
      cluster_id = membership([parseAddress(address)]).cluster;
      const r = await runValgrind([program(), "bad-tag", address, secret_file], 60_000);
      expect(r.stdout).toContain("a frame whose tag does not verify");
      expect(client_tags_bad).toBe(0);
      expect(replies_tagged_wrong).toBe(2);
    } finally {
      server.stop(true);
    }
  }, 90_000);

  test("a secret against a cluster without one: TOASTYFS_AUTH_FAILED saying the replica has none", async () => {
    const plain = await TestCluster.start(3);
    try {
      const r = await run([program(), "refused", plain.cluster_arg, secret_file]);
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout).toContain("the replica has no secret configured");
    } finally {
      await plain.destroy();
    }
  }, 90_000);
});

describe("C client against fake replicas that misbehave", () => {
  const failing: FakeMode[][] = [
    ["garbage", "bad_body_checksum", "oversize"],
    ["truncated", "wrong_cluster", "bad_header_checksum"],
    ["malformed_reply", "stall_huge", "not_primary_self"],
    ["silent", "close", "garbage"],
    ["register_only", "register_only", "register_only"],
    ["malformed_after_register", "malformed_after_register", "malformed_after_register"],
  ];

  test("garbage, truncated frames, bad checksums, bad sizes, stalls: every operation fails cleanly (valgrind clean)", async () => {
    const fakes = await Promise.all(failing.map((modes) => FakeCluster.start(modes)));
    try {
      const started = Date.now();
      const runs = await Promise.all(fakes.map((f) => runValgrind([path.join(build_dir, "client_test"), "fake-error", f.arg], 45_000)));
      runs.forEach((r, i) => {
        expect(r.stdout, failing[i]!.join(",")).toContain("fake-error: ok");
        // Registering works there, so the put is sent and then times out: its outcome is unknown.
        if (failing[i]![0] === "register_only")
          expect(r.stdout).toContain("put: -8 (no quorum: no majority of replicas answered in time) unknown=1");
        // Registered, then every reply is malformed: put, get and list each give up with a protocol error.
        if (failing[i]![0] === "malformed_after_register") {
          expect(r.stdout).toContain("put: -9 (protocol error: replicas sent malformed messages) unknown=1");
          expect(r.stdout).toContain("get: -9");
          expect(r.stdout).toContain("list: -9");
        }
        const codes = [...r.stdout.matchAll(/^(\w+): (-?\d+)/gm)].map((m) => `${m[1]} ${m[2]}`);
        console.log(`fake replicas [${failing[i]!.join(", ")}]: ${codes.join(", ")}; valgrind: ${summary(r)}`);
      });
      console.log(`fake-error runs took ${Date.now() - started} ms`);
    } finally {
      for (const f of fakes) f.stop();
    }
  }, 60_000);

  test("a cluster where two replicas misbehave and one is good: the operation completes on the good one", async () => {
    const fakes = await Promise.all([
      FakeCluster.start(["not_primary_self", "garbage", "good"]),
      FakeCluster.start(["truncated", "good", "bad_body_checksum"]),
      FakeCluster.start(["busy_then_good", "busy_then_good", "busy_then_good"]),
    ]);
    try {
      const runs = await Promise.all(fakes.map((f) => runValgrind([path.join(build_dir, "client_test"), "fake-recover", f.arg], 45_000)));
      for (const r of runs) expect(r.stdout).toContain("fake-recover: ok");
    } finally {
      for (const f of fakes) f.stop();
    }
  }, 60_000);

  test("evicted: the write reports an unknown outcome, and the next one registers a new session and succeeds", async () => {
    const fake = await FakeCluster.start(["good", "good", "good"], { evict_first_put: true });
    try {
      const r = await runValgrind([path.join(build_dir, "client_test"), "fake-evict", fake.arg], 45_000);
      expect(r.stdout).toContain("fake-evict: ok");
    } finally {
      fake.stop();
    }
  }, 60_000);
});

// --- The README example: the documented commands, run as documented

describe("C client README example", () => {
  test("the program listed in clients/c/README.md is clients/c/example_client.c", () => {
    const markdown = fs.readFileSync(path.join(c_dir, "README.md"), "utf8");
    const listings = [...markdown.matchAll(/^```c\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
    expect(listings).toEqual([fs.readFileSync(path.join(c_dir, "example_client.c"), "utf8")]);
  });

  test("the build-tree block of clients/c/README.md, run from the root of a fresh copy with `toastyfs dev` up, builds the example and it stores hello = world", async () => {
    const block = readmeBlock("example_client.c", "clients/c/libtoasty.a");
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-c-example-"));
    try {
      copyCTree(root);
      // The documented block verbatim, then the example it built once more under valgrind.
      const scripts = [block, ...(valgrind === null ? [] : [`${valgrind} ${valgrind_args.join(" ")} ./example`])];
      const outcome = await runWithDevCluster({ scripts, cwd: root, read_key: "hello" });
      if ("skipped" in outcome) {
        console.warn(`SKIPPED the README example: ${outcome.skipped}`);
        return;
      }
      const [documented, checked] = outcome.runs;
      const context = `${block}\n--- stdout\n${documented?.stdout}\n--- stderr\n${documented?.stderr}\n--- toastyfs dev\n${outcome.dev_log}`;
      expect(documented?.code, context).toBe(0);
      expect(documented!.stdout, context).toContain("Done.\n");
      if (checked !== undefined) {
        expect(checked.code, checked.stderr).toBe(0);
        expect(checked.stderr).toContain("All heap blocks were freed -- no leaks are possible");
      }
      expect(outcome.value).toBe("world");
      // Each run of the example was one put to a new cluster, and versions count the writes, as the
      // READMEs say (1 for the first); they are not op numbers (each run registered first).
      expect(outcome.version).toBe(outcome.runs.length);
      expect(outcome.op).toBeGreaterThan(outcome.runs.length);
      console.log(
        `README example (${outcome.isolated ? "own network namespace" : "host network"}): ${block.trim().split("\n").join(" ; ")}`,
      );
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  }, 240_000);
});
