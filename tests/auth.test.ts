/**
 * A real 3-replica cluster with a secret (docs/PROTOCOL.md §6, issue 16): everything works with
 * the secret or a client key; without it, with a wrong one, the request fails with
 * authentication_failed at once and nothing changes; a connection authenticated as a client
 * cannot make a replica accept a prepare; a byte flipped in flight closes that connection and the
 * client carries on over a fresh one. Clients and replicas all dial through a proxy (--listen).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import type { Socket } from "bun";
import { Client } from "../lib/client/client.ts";
import { membership } from "../lib/net/address.ts";
import { Command, Header, encode, finalize } from "../lib/net/codec.ts";
import { FrameSealer } from "../lib/net/auth/frame_tag.ts";
import { AuthRole, Dialer } from "../lib/net/auth/handshake.ts";
import {
  clientOnly,
  deriveKeys,
  newSecret,
  readSecretFile,
  writeClientKeyFile,
  writeSecretFile,
  type AuthKeys,
} from "../lib/net/auth/secret.ts";
import { concat } from "../lib/util/bytes.ts";
import { sender_client } from "../lib/constants.ts";
import { TestCluster } from "./support/cluster.ts";
import { toastyfs } from "./support/cli.ts";
import { waitFor } from "../lib/net/test_support.ts";
import { Credentials } from "../lib/s3/credentials.ts";
import { startGateway } from "../lib/s3/gateway.ts";
import { signedFetch, type S3Key } from "./support/s3_sign.ts";

let cluster: TestCluster;
let keys: AuthKeys;
let secret_file: string;
let client_file: string;
let wrong_file: string;

beforeAll(async () => {
  const dir = fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "toastyfs-auth-"));
  secret_file = path.join(dir, "secret");
  client_file = path.join(dir, "client.key");
  wrong_file = path.join(dir, "wrong");
  writeSecretFile(secret_file, newSecret());
  writeSecretFile(wrong_file, newSecret());
  keys = readSecretFile(secret_file);
  writeClientKeyFile(client_file, keys);
  cluster = await TestCluster.start(3, { proxy: true, secret_file });
}, 60_000);

afterAll(async () => {
  await cluster?.destroy();
});

const text = (s: string) => new TextEncoder().encode(s);

async function withClient<T>(secret: AuthKeys | null, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ addresses: cluster.addresses, operation_timeout_ms: 20_000, secret });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

async function keysInCluster(): Promise<string[]> {
  return withClient(keys, async (client) => (await client.list("")).entries.map((e) => new TextDecoder().decode(e.key)));
}

async function counter(name: string): Promise<number> {
  const statuses = await cluster.status(2000);
  return statuses.reduce((sum, s) => sum + (s?.counters[name] ?? 0), 0);
}

describe("a cluster with a secret", () => {
  test("put, get, list and delete work with the secret, and with a client key", async () => {
    await withClient(keys, async (client) => {
      await client.put("auth/a", text("one"));
      expect(new TextDecoder().decode((await client.get("auth/a")).value)).toBe("one");
    });
    await withClient(clientOnly(keys), async (client) => {
      await client.put("auth/b", text("two"));
      await client.put("auth/gone", text("x"));
      await client.delete("auth/gone");
      expect((await client.list("auth/")).entries.map((e) => new TextDecoder().decode(e.key))).toEqual(["auth/a", "auth/b"]);
    });
  }, 60_000);

  test("without a secret, or with a wrong one: authentication_failed at once, and nothing changes", async () => {
    const before = await keysInCluster();
    for (const secret of [null, deriveKeys(new Uint8Array(32).fill(9))]) {
      const started = performance.now();
      await withClient(secret, async (client) => {
        await expect(client.put("auth/intruder", text("x"))).rejects.toMatchObject({ code: "authentication_failed" });
        await expect(client.delete("auth/a")).rejects.toMatchObject({ code: "authentication_failed" });
      });
      expect(performance.now() - started).toBeLessThan(10_000); // not the 20 s operation timeout
    }
    expect(await keysInCluster()).toEqual(before);
  }, 60_000);

  test("the CLI: TOASTYFS_SECRET_FILE or --secret-file works; none or a wrong one says authentication failed", async () => {
    const cluster_arg = cluster.cluster_arg;
    const ok = await toastyfs(["put", "auth/cli", "-", "--cluster", cluster_arg], {
      stdin: "cli",
      env: { TOASTYFS_SECRET_FILE: secret_file },
    });
    expect(ok.code).toBe(0);
    const got = await toastyfs(["get", "auth/cli", "--cluster", cluster_arg, "--secret-file", client_file]);
    expect([got.code, got.stdout]).toEqual([0, "cli"]);
    const admin = await toastyfs(["admin", "--cluster", cluster_arg, "--secret-file", secret_file], {
      stdin: "get auth/cli\n",
      timeout_ms: 20_000,
    });
    expect(admin.code).toBe(0);
    expect(admin.stdout).toContain("cli");
    const status = await toastyfs(["status", "--cluster", cluster_arg, "--secret-file", secret_file]);
    expect(status.code).toBe(0);

    const none = await toastyfs(["get", "auth/cli", "--cluster", cluster_arg], { env: { TOASTYFS_SECRET_FILE: "" } });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("authentication failed: the replica requires a secret (--secret-file or TOASTYFS_SECRET_FILE)");
    const wrong = await toastyfs(["get", "auth/cli", "--cluster", cluster_arg, "--secret-file", wrong_file]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("authentication failed");
    expect(wrong.stderr).not.toContain("no replica completed");
  }, 90_000);

  test("a connection authenticated as a client cannot make a replica accept a prepare", async () => {
    const before = await keysInCluster();
    const statuses = await cluster.status(2000);
    const target = statuses.findIndex((s) => s?.primary === false);
    expect(target).toBeGreaterThanOrEqual(0);
    const op_before = statuses[target]!.op;
    const m = membership(cluster.addresses);
    const dialer = new Dialer({
      keys: clientOnly(keys),
      role: AuthRole.client,
      index: sender_client,
      cluster: m.cluster,
      replica_count: 3,
      expected_acceptor: target,
      nonce: new Uint8Array(randomBytes(32)),
    });
    let closed = false;
    let sealer: FrameSealer | null = null;
    const socket: Socket<undefined> = await Bun.connect({
      hostname: "127.0.0.1",
      port: cluster.replicas[target]!.port,
      socket: {
        data(s, chunk) {
          const step = dialer.receive(chunk);
          if (step.status !== "done") return;
          s.write(step.output!);
          sealer = new FrameSealer(step.keys.send);
        },
        close() {
          closed = true;
        },
      },
    });
    socket.write(dialer.start());
    await waitFor("authenticated as a client", () => sealer !== null);
    // A prepare that claims to come from the primary, op far ahead: a backup that accepted it
    // would journal it.
    const h = new Header();
    h.command = Command.prepare;
    h.cluster = m.cluster;
    h.replica = (target + 1) % 3;
    h.op = op_before + 1;
    h.view = statuses[target]!.view;
    const frame = encode(finalize(h, text("forged")));
    socket.write(concat([frame, sealer!.seal(frame)]));
    await waitFor("the replica closes the connection", () => closed, 10_000);
    const after = await cluster.status(2000);
    expect(after[target]!.counters.auth_failures_role).toBe(1);
    expect(after[target]!.op).toBe(op_before);
    expect(await keysInCluster()).toEqual(before);
  }, 60_000);

  test("a byte flipped in flight closes that connection; the client goes on over fresh ones", async () => {
    const tags_before = await counter("auth_failures_tag");
    // The first client connection to each replica: HELLO (48) and PROOF (40), then the register
    // request (128 bytes, empty body) and its 16-byte tag: flip a byte of that tag.
    for (let i = 0; i < 3; i++) cluster.network!.flipClientByte(i, 48 + 40 + 128 + 5);
    await withClient(keys, async (client) => {
      await client.put("auth/flipped", text("survived"));
      expect(new TextDecoder().decode((await client.get("auth/flipped")).value)).toBe("survived");
    });
    expect(await counter("auth_failures_tag")).toBeGreaterThan(tags_before);
  }, 60_000);
});

describe("the S3 gateway in front of a cluster with a secret", () => {
  test("a gateway holding only a client key stores and serves objects; its /health sees the quorum", async () => {
    const s3_key: S3Key = { access_key: "auth-s3", secret: "auth-s3-secret", region: "us-east-1" };
    const client_keys = readSecretFile(client_file);
    const client = new Client({ addresses: cluster.addresses, operation_timeout_ms: 20_000, secret: client_keys });
    const gateway = await startGateway({
      listen: { host: "127.0.0.1", port: 0 },
      client,
      credentials: new Credentials(new Map([[s3_key.access_key, s3_key.secret]])),
      region: "us-east-1",
      domain: null,
      log: () => {},
      metrics: { host: "127.0.0.1", port: 0 },
    });
    try {
      expect((await signedFetch(gateway.url, s3_key, { method: "PUT", path: "/secured" })).status).toBe(200);
      const put = await signedFetch(gateway.url, s3_key, { method: "PUT", path: "/secured/k", body: text("behind a secret") });
      expect(put.status).toBe(200);
      const get = await signedFetch(gateway.url, s3_key, { method: "GET", path: "/secured/k" });
      expect(await get.text()).toBe("behind a secret");
      expect(await keysInCluster()).toContain("secured/k");
      const health = await fetch(`${gateway.metrics_url}/health`);
      expect([health.status, await health.text()]).toEqual([200, expect.stringMatching(/^ok: 3 of 3 replicas answer/)]);
    } finally {
      await gateway.stop();
      await client.close();
    }
  }, 60_000);
});
