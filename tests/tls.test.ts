/**
 * Mutual TLS (docs/PROTOCOL.md §6.8, issue 16): a real 3-replica cluster whose every connection,
 * replica to replica and client to replica, is TLS with certificates from a CA made here with the
 * openssl CLI. Objects and admin commands work with a certificate from the CA; a client with no
 * certificate, one from another CA, or plain TCP fails with authentication_failed (saying TLS) and
 * changes nothing; TLS and a secret together; a replica whose key file is missing or unreadable
 * fails at start with a message naming the file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Client, ClientError } from "../lib/client/client.ts";
import { newSecret, readSecretFile, writeSecretFile, type AuthKeys } from "../lib/net/auth/secret.ts";
import { readTlsFiles, type TlsFiles } from "../lib/net/tls.ts";
import { TestCluster, freePorts } from "./support/cluster.ts";
import { toastyfs, type RunResult } from "./support/cli.ts";
import { TestCa, tlsArgs, type CertFiles } from "./support/tls_certs.ts";

let ca: TestCa;
let other: TestCa;
let replica: CertFiles;
let client: CertFiles;
let client_tls: TlsFiles;
let cluster: TestCluster;

beforeAll(async () => {
  ca = TestCa.create();
  other = TestCa.create("other", ca.dir);
  replica = ca.issue("replica");
  client = ca.issue("client", { san: "DNS:client.example" });
  client_tls = readTlsFiles(client.cert, client.key, client.ca);
  cluster = await TestCluster.start(3, { tls: replica });
}, 60_000);

afterAll(async () => {
  await cluster?.destroy();
  ca?.remove();
});

const text = (s: string) => new TextEncoder().encode(s);

async function withClient<T>(options: { tls?: TlsFiles | null; secret?: AuthKeys | null }, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ addresses: cluster.addresses, operation_timeout_ms: 20_000, ...options });
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

async function keysIn(target: TestCluster, options: { tls?: TlsFiles | null; secret?: AuthKeys | null }): Promise<string[]> {
  const c = new Client({ addresses: target.addresses, operation_timeout_ms: 20_000, ...options });
  try {
    return (await c.list("")).entries.map((e) => new TextDecoder().decode(e.key));
  } finally {
    await c.close();
  }
}

async function tlsFailures(target: TestCluster): Promise<number> {
  const statuses = await target.status(2000);
  return statuses.reduce((sum, s) => sum + (s?.counters.auth_failures_tls ?? 0), 0);
}

/** The operation fails with authentication_failed, whose message says TLS, well before its timeout. */
async function expectTlsRefusal(options: { tls?: TlsFiles | null }, pattern: RegExp): Promise<void> {
  const started = performance.now();
  const error = await withClient(options, (c) => c.put("intruder", text("x"))).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ClientError);
  expect((error as ClientError).code).toBe("authentication_failed");
  expect((error as ClientError).message).toMatch(/TLS/);
  expect((error as ClientError).message).toMatch(pattern);
  expect(performance.now() - started).toBeLessThan(10_000);
}

describe("a cluster with mutual TLS", () => {
  test("put, get, list and delete work with a certificate from the cluster's CA", async () => {
    await withClient({ tls: client_tls }, async (c) => {
      const put = await c.put("tls/a", text("over TLS"));
      expect(put.version).toBeGreaterThan(0);
      expect(new TextDecoder().decode((await c.get("tls/a")).value)).toBe("over TLS");
      await c.put("tls/b", text("second"));
      expect((await c.list("tls/")).entries.map((e) => new TextDecoder().decode(e.key))).toEqual(["tls/a", "tls/b"]);
      await c.delete("tls/b");
      expect((await c.list("tls/")).entries.length).toBe(1);
    });
  }, 60_000);

  test("the CLI and the admin shell work with --tls-cert, --tls-key and --tls-ca", async () => {
    const args = ["--cluster", cluster.cluster_arg, ...tlsArgs(client)];
    const status = await toastyfs(["status", ...args]);
    expect(status.stdout).toContain("primary");
    expect(status.code).toBe(0);
    const admin = await toastyfs(["admin", ...args], { stdin: "put tls/admin hello\nget tls/admin\n" });
    expect(admin.stdout).toContain("hello");
    expect(admin.code).toBe(0);
  }, 60_000);

  test("snapshot save works over TLS and the file verifies with the object in it; without a certificate it fails", async () => {
    await withClient({ tls: client_tls }, (c) => c.put("tls/snapshot", text("saved over TLS")));
    const file = path.join(ca.dir, "tls.snapshot");
    const args = ["--cluster", cluster.cluster_arg, "--quiet", "--timeout", "30"];
    const saved = await toastyfs(["snapshot", "save", file, ...args, ...tlsArgs(client)]);
    expect(saved.stderr).toBe("");
    expect(saved.code).toBe(0);
    const verified = await toastyfs(["snapshot", "verify", file]);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/[1-9]\d* objects?/);
    const refused = await toastyfs(["snapshot", "save", `${file}.plain`, ...args.slice(0, 3), "--timeout", "5"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/TLS/);
    expect(fs.existsSync(`${file}.plain`)).toBe(false);
  }, 60_000);

  test("a client without a certificate is refused: authentication_failed, and nothing changes", async () => {
    const before = await keysIn(cluster, { tls: client_tls });
    const failures = await tlsFailures(cluster);
    // TLS with no client certificate: the replica's CA check fails and it says so inside TLS.
    await expectTlsRefusal({ tls: { ...client_tls, cert: "", key: "" } }, /refused our certificate/);
    expect(await keysIn(cluster, { tls: client_tls })).toEqual(before);
    expect(await tlsFailures(cluster)).toBeGreaterThan(failures);
  }, 60_000);

  test("a client with a certificate from another CA is refused, and nothing changes", async () => {
    const intruder = other.issue("intruder");
    // The intruder trusts the cluster's CA (so it accepts the replicas) but its own certificate is
    // from another CA.
    const tls: TlsFiles = { ...readTlsFiles(intruder.cert, intruder.key, intruder.ca), ca: fs.readFileSync(ca.ca, "utf8") };
    const before = await keysIn(cluster, { tls: client_tls });
    await expectTlsRefusal({ tls }, /refused our certificate/);
    expect(await keysIn(cluster, { tls: client_tls })).toEqual(before);
  }, 60_000);

  test("a client that trusts another CA refuses the replicas", async () => {
    const intruder = other.issue("stranger");
    await expectTlsRefusal({ tls: readTlsFiles(intruder.cert, intruder.key, intruder.ca) }, /replica's certificate was not accepted/);
  }, 60_000);

  test("a plain TCP client is refused with authentication_failed, and nothing changes", async () => {
    const before = await keysIn(cluster, { tls: client_tls });
    await expectTlsRefusal({}, /requires TLS/);
    expect(await keysIn(cluster, { tls: client_tls })).toEqual(before);
    const plain = await toastyfs(["put", "tls/plain", "-", "--cluster", cluster.cluster_arg], { stdin: "x" });
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/requires TLS/);
  }, 60_000);
});

describe("TLS and a secret together", () => {
  let secured: TestCluster;
  let keys: AuthKeys;

  beforeAll(async () => {
    const secret_file = path.join(ca.dir, "secret");
    writeSecretFile(secret_file, newSecret());
    keys = readSecretFile(secret_file);
    secured = await TestCluster.start(3, { tls: replica, secret_file });
  }, 60_000);

  afterAll(async () => {
    await secured?.destroy();
  });

  test("objects work with both; a certificate without the secret, or the secret without TLS, fails", async () => {
    const c = new Client({ addresses: secured.addresses, operation_timeout_ms: 20_000, tls: client_tls, secret: keys });
    try {
      await c.put("both", text("tls and secret"));
      expect(new TextDecoder().decode((await c.get("both")).value)).toBe("tls and secret");
    } finally {
      await c.close();
    }
    for (const options of [{ tls: client_tls }, { secret: keys }]) {
      const bad = new Client({ addresses: secured.addresses, operation_timeout_ms: 20_000, ...options });
      const error = await bad.put("both", text("overwritten")).then(
        () => null,
        (e: unknown) => e,
      );
      await bad.close();
      expect((error as ClientError).code).toBe("authentication_failed");
    }
    expect(await keysIn(secured, { tls: client_tls, secret: keys })).toEqual(["both"]);
  }, 60_000);
});

describe("start-up checks", () => {
  async function serve(args: string[]): Promise<RunResult> {
    const [port] = await freePorts(1);
    const dir = fs.mkdtempSync(path.join(ca.dir, "data-"));
    return toastyfs(["serve", "--addr", `127.0.0.1:${port}`, "--data", dir, ...args], { timeout_ms: 20_000 });
  }

  test("a replica with a missing key file fails at start, naming the file", async () => {
    const missing = path.join(ca.dir, "missing.key");
    const result = await serve(["--tls-cert", replica.cert, "--tls-key", missing, "--tls-ca", replica.ca]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`cannot read the TLS key ${missing}: no such file`);
  });

  test("a replica whose key file holds no key fails at start, naming the file", async () => {
    const unreadable = path.join(ca.dir, "junk.key");
    fs.writeFileSync(unreadable, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", { mode: 0o600 });
    const result = await serve(["--tls-cert", replica.cert, "--tls-key", unreadable, "--tls-ca", replica.ca]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${unreadable}: the TLS key is not a PEM private key`);
  });

  test("the three options go together", async () => {
    const result = await serve(["--tls-cert", replica.cert]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("TLS needs --tls-cert, --tls-key and --tls-ca together: --tls-key and --tls-ca missing");
  });
});
