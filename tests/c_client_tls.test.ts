/**
 * The C client with mutual TLS (docs/PROTOCOL.md §6.8, issue 16), as real processes under valgrind:
 * a real 3-replica cluster whose every connection is TLS, with certificates from a CA made here
 * with the openssl CLI (tests/support/tls_certs.ts). Objects work with toastyfs_init_tls and with
 * TOASTYFS_TLS_*; a client without a certificate, with one from another CA, one that trusts another
 * CA, or a plain one fails with TOASTYFS_AUTH_FAILED saying TLS, at once, and changes nothing; a
 * replica certificate that does not name the address dialed is refused; TLS and a secret together.
 * And the library built without OpenSSL (TLS=no, or a probe that fails): make still works and
 * asking for TLS gives TOASTYFS_TLS_UNAVAILABLE.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { refusal, RefusalCode } from "../lib/net/auth/handshake.ts";
import { newSecret, writeSecretFile } from "../lib/net/auth/secret.ts";
import { readTlsFiles } from "../lib/net/tls.ts";
import { repo, TestCluster } from "./support/cluster.ts";
import { copyCTree } from "./support/c_docs.ts";
import { build_dir, c_dir, run, valgrind, valgrind_args, type Run } from "./support/c_run.ts";
import { TestCa, type CertFiles } from "./support/tls_certs.ts";

const program = path.join(build_dir, "auth_client_test");

/** Runs a program under valgrind (when installed) and asserts it exited 0 with no memory errors and
 * no leaks. */
async function checked(cmd: string[], timeout_ms = 120_000, env: Record<string, string> = {}): Promise<Run> {
  const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const full = [...(vars.length > 0 ? ["env", ...vars] : []), ...(valgrind === null ? cmd : [valgrind, ...valgrind_args, ...cmd])];
  const r = await run(full, { timeout_ms });
  const context = `${cmd.join(" ")}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
  expect(r.code, context).toBe(0);
  if (valgrind !== null) {
    expect(r.stderr, context).toContain("ERROR SUMMARY: 0 errors from 0 contexts");
    expect(r.stderr, context).toContain("All heap blocks were freed -- no leaks are possible");
  } else {
    console.warn(`valgrind is not installed: ran ${path.basename(cmd[0]!)} without it (no memory check)`);
  }
  return r;
}

function summary(r: Run): string {
  const line = r.stderr.split("\n").find((l) => l.includes("ERROR SUMMARY"));
  return line ? line.replace(/^==\d+== /, "") : "(no valgrind)";
}

/** The TLS arguments of auth_client_test: CERT KEY CA ("none" for no client certificate). */
const tlsArgs = (files: { cert: string | null; key: string | null; ca: string }) => [files.cert ?? "none", files.key ?? "none", files.ca];

let ca: TestCa;
let other: TestCa;
let replica: CertFiles;
let client: CertFiles;

beforeAll(async () => {
  const made = await run(["make", "-C", c_dir, "all", "tests"], { cwd: repo, timeout_ms: 120_000 });
  if (made.code !== 0) throw new Error(`make failed:\n${made.stdout}\n${made.stderr}`);
  const available = await run([path.join(build_dir, "unit_test")]);
  if (!available.stdout.includes("TLS built in: yes"))
    throw new Error(`the C client was built without TLS on this machine (OpenSSL not found?):\n${available.stdout}`);
  ca = TestCa.create();
  other = TestCa.create("other", ca.dir);
  replica = ca.issue("replica");
  // A client's certificate need not name anything the replicas know.
  client = ca.issue("client", { san: "DNS:client.example" });
}, 120_000);

afterAll(() => {
  ca?.remove();
});

describe("C client against a 3-replica cluster with mutual TLS", () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start(3, { tls: replica });
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  async function tlsFailures(): Promise<number> {
    const statuses = await cluster.status(2000);
    return statuses.reduce((sum, s) => sum + (s?.counters.auth_failures_tls ?? 0), 0);
  }

  test("put/get/list/stat/delete (small, and a 5 MiB upload) with toastyfs_init_tls and with TOASTYFS_TLS_*, valgrind clean", async () => {
    for (const mode of ["roundtrip", "env"]) {
      const r = await checked([program, mode, cluster.cluster_arg, "none", ...tlsArgs(client)], 180_000);
      expect(r.stdout, mode).toContain(", 0 failed");
      console.log(`auth_client_test ${mode} over TLS: ${r.stdout.trim()}; valgrind: ${summary(r)}`);
    }
  }, 400_000);

  test("client_test's round trips (0 B to 16 MiB values, conditions, list, bad inputs) over TLS from TOASTYFS_TLS_* alone, valgrind clean", async () => {
    const env = { TOASTYFS_TLS_CERT: client.cert, TOASTYFS_TLS_KEY: client.key, TOASTYFS_TLS_CA: client.ca };
    const r = await checked([path.join(build_dir, "client_test"), "roundtrip", cluster.cluster_arg], 180_000, env);
    expect(r.stdout).toContain("roundtrip: ok");
    console.log(`client_test roundtrip over TLS: valgrind: ${summary(r)}`);
  }, 200_000);

  test("no certificate, one from another CA, a CA that did not issue the replicas', or plain TCP: TOASTYFS_AUTH_FAILED at once saying TLS, nothing written, valgrind clean", async () => {
    const failures = await tlsFailures();
    const intruder = other.issue("intruder");
    const cases: [string, string[], RegExp][] = [
      ["no certificate", tlsArgs({ cert: null, key: null, ca: ca.ca }), /TLS: the replica refused our certificate/],
      // Trusts the cluster's CA (so it accepts the replicas), but its own certificate is another CA's.
      ["a certificate from another CA", tlsArgs({ ...intruder, ca: ca.ca }), /TLS: the replica refused our certificate/],
      ["trusts another CA", tlsArgs(intruder), /TLS: the replica's certificate was not accepted \(.+\): it must be issued by the CA in /],
      ["plain TCP", [], /TLS: the replica requires TLS and answered our plain connection with a TLS alert/],
    ];
    for (const [what, args, message] of cases) {
      // `refused` checks each call fails with TOASTYFS_AUTH_FAILED in under 3 s and prints the put's message.
      const r = await checked([program, "refused", cluster.cluster_arg, "none", ...args]);
      expect(r.stdout, what).toMatch(/^put: authentication failed: 127\.0\.0\.1:\d+: /m);
      expect(r.stdout, what).toMatch(message);
      console.log(`${what}: ${r.stdout.trim().split("\n")[0]}; valgrind: ${summary(r)}`);
    }
    // The key the refused puts tried to write is not there (read with a good certificate).
    const absent = await run([program, "absent", cluster.cluster_arg, "none", ...tlsArgs(client)]);
    expect(absent.code, `${absent.stdout}\n${absent.stderr}`).toBe(0);
    // Each refusal the replicas saw (all but the client that refused them) was counted.
    expect(await tlsFailures()).toBeGreaterThanOrEqual(failures + 3);
  }, 300_000);

  test("toastyfs_init_tls refuses a key that is not the certificate's, naming both files; every call then fails", async () => {
    const r = await checked([program, "tls-files", cluster.cluster_arg, "none", client.cert, replica.key, ca.ca]);
    expect(r.stdout).toContain(`toastyfs_init_tls: TLS: ${replica.key} is not the private key of the certificate ${client.cert}`);
    expect(r.stdout).toContain(", 0 failed");
  }, 60_000);
});

/** A one-replica "cluster" with TLS whose certificate (from the cluster's CA) names san. It counts
 * the bytes that reach it through TLS and answers the first with the tls_certificate refusal, as
 * a replica does to a certificate it refuses: so a client that got that far passed the name check. */
function fakeTlsReplica(san: string): { port: number; received: () => number; stop: () => void } {
  const named = ca.issue(`named-${san.replace(/\W+/g, "_")}`, { san });
  const files = readTlsFiles(named.cert, named.key, named.ca);
  let received = 0;
  const server = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: files.cert, key: files.key, ca: files.ca, requestCert: true, rejectUnauthorized: false },
    socket: {
      data: (socket, chunk) => {
        received += chunk.length;
        socket.write(refusal(RefusalCode.tls_certificate));
        socket.end();
      },
      error: () => {},
      close: () => {},
    },
  });
  return { port: server.port, received: () => received, stop: () => server.stop(true) };
}

describe("C client: the replica's certificate must name the address dialed", () => {
  test("an IP or a DNS name the certificate does not name: refused in the handshake, nothing sent; a DNS name it names passes (valgrind clean)", async () => {
    const cases: [string, string, RegExp, boolean][] = [
      [
        "127.0.0.1",
        "DNS:elsewhere.example",
        /certificate was not accepted \(IP address mismatch\): .* and name 127\.0\.0\.1 \(subjectAltName\)/,
        false,
      ],
      [
        "localhost",
        "DNS:elsewhere.example",
        /certificate was not accepted \(hostname mismatch\): .* and name localhost \(subjectAltName\)/,
        false,
      ],
      ["localhost", "DNS:localhost", /TLS: the replica refused our certificate/, true],
    ];
    for (const [host, san, message, passes] of cases) {
      const fake = fakeTlsReplica(san);
      try {
        const r = await checked([program, "refused", `${host}:${fake.port}`, "none", ...tlsArgs(client)]);
        expect(r.stdout, `${host} against ${san}`).toMatch(message);
        if (passes) expect(fake.received(), `${host} against ${san}`).toBeGreaterThan(0);
        else expect(fake.received(), `${host} against ${san}`).toBe(0);
      } finally {
        fake.stop();
      }
    }
  }, 120_000);
});

describe("C client with TLS and a secret together", () => {
  let secured: TestCluster;
  let secret_file: string;

  beforeAll(async () => {
    secret_file = path.join(ca.dir, "secret");
    writeSecretFile(secret_file, newSecret());
    secured = await TestCluster.start(3, { tls: replica, secret_file });
  }, 60_000);

  afterAll(async () => {
    await secured?.destroy();
  });

  test("objects work with both (explicitly and from the environment), valgrind clean", async () => {
    for (const mode of ["roundtrip", "env"]) {
      const r = await checked([program, mode, secured.cluster_arg, secret_file, ...tlsArgs(client)], 180_000);
      expect(r.stdout, mode).toContain(", 0 failed");
      console.log(`auth_client_test ${mode} over TLS with the secret: ${r.stdout.trim()}; valgrind: ${summary(r)}`);
    }
  }, 400_000);

  test("the certificate without the secret, or the secret without TLS: TOASTYFS_AUTH_FAILED saying which, nothing written", async () => {
    const no_secret = await checked([program, "refused", secured.cluster_arg, "none", ...tlsArgs(client)]);
    expect(no_secret.stdout).toContain("the replica requires a secret");
    const no_tls = await checked([program, "refused", secured.cluster_arg, secret_file]);
    expect(no_tls.stdout).toContain("TLS: the replica requires TLS");
    const absent = await run([program, "absent", secured.cluster_arg, secret_file, ...tlsArgs(client)]);
    expect(absent.code, `${absent.stdout}\n${absent.stderr}`).toBe(0);
  }, 120_000);
});

describe("C client with TLS against a cluster without TLS", () => {
  test("TOASTYFS_AUTH_FAILED at once, saying the TLS handshake failed", async () => {
    const plain = await TestCluster.start(3);
    try {
      const r = await checked([program, "refused", plain.cluster_arg, "none", ...tlsArgs(client)]);
      expect(r.stdout).toMatch(/^put: authentication failed: 127\.0\.0\.1:\d+: TLS: .*does (the replica|it) run TLS/m);
      console.log(r.stdout.trim().split("\n")[0]);
    } finally {
      await plain.destroy();
    }
  }, 90_000);
});

describe("the C client built without OpenSSL", () => {
  let scratch: string;

  beforeAll(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-c-notls-"));
  });

  afterAll(() => {
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  async function makeIn(tree: string, args: string[]): Promise<Run> {
    return run(["make", ...args], { cwd: tree, timeout_ms: 180_000 });
  }

  test("TLS=no, and a probe that cannot link OpenSSL: make builds, the library needs no libssl, TLS gives TOASTYFS_TLS_UNAVAILABLE", async () => {
    for (const [name, args] of [
      ["TLS=no", ["TLS=no"]],
      ["no OpenSSL found", ["TLS_LIBS=-lno_such_openssl"]],
    ] as const) {
      const tree = path.join(scratch, name.replace(/\W+/g, "_"));
      copyCTree(tree);
      const c = path.join(tree, "clients/c");
      const made = await makeIn(tree, [...args]);
      expect(made.code, `${name}: ${made.stdout}\n${made.stderr}`).toBe(0);
      const needed = await run(["readelf", "-d", path.join(c, "libtoasty.so")]);
      expect(needed.stdout, name).not.toContain("libssl");
      expect((await run(["make", "-s", "link-flags", ...args], { cwd: c })).stdout.trim(), name).toBe("");
      const tests = await makeIn(c, ["build/unit_test", ...args]);
      expect(tests.code, `${name}: ${tests.stderr}`).toBe(0);
      // unit_test checks toastyfs_init_tls, TOASTYFS_TLS_* and every call give TOASTYFS_TLS_UNAVAILABLE.
      const unit = await checked([path.join(c, "build/unit_test")]);
      expect(unit.stdout, name).toContain("TLS built in: no");
      expect(unit.stdout, name).toContain(", 0 failed");
    }
    // TLS=yes insists.
    const tree = path.join(scratch, "TLS_yes");
    copyCTree(tree);
    const insisted = await makeIn(tree, ["TLS=yes", "TLS_LIBS=-lno_such_openssl"]);
    expect(insisted.code).not.toBe(0);
    expect(insisted.stderr).toContain("TLS=yes, but OpenSSL 1.1.0 or later was not found");
  }, 400_000);
});
