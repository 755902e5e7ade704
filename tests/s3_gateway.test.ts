/**
 * The S3 gateway as a process (`toastyfs s3`) in front of a real 3-replica cluster, driven with
 * Bun's built-in S3 client and with hand-signed requests where Bun's client cannot express the
 * case: conditional writes, bucket operations, bad input. Checks the wire: status codes, XML
 * error documents with request ids, headers, cut responses, metrics and health.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as net from "node:net";
import type { Subprocess } from "bun";
import { Client } from "../lib/client/client.ts";
import { TestCluster, freePorts, toastyfsCommand, waitFor } from "./support/cluster.ts";
import { signHeaders, signedFetch, type S3Key } from "./support/s3_sign.ts";

const key: S3Key = { access_key: "gateway-test", secret: "gateway-test-secret", region: "us-east-1" };
let cluster: TestCluster;
let native: Client;
let gateway: Subprocess<"ignore", "pipe", "pipe">;
let endpoint: string;
let metrics: string;
let output = "";
const bucket = "gw-test";

function s3(): Bun.S3Client {
  return new Bun.S3Client({ endpoint, accessKeyId: key.access_key, secretAccessKey: key.secret, bucket, region: key.region });
}

function call(p: Parameters<typeof signedFetch>[2]): Promise<Response> {
  return signedFetch(endpoint, key, p);
}

function md5Hex(bytes: Uint8Array | string): string {
  return new Bun.CryptoHasher("md5").update(bytes).digest("hex");
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
}

/** Sends raw bytes on a new connection; resolves with everything received until the gateway closes
 * it (or after wait_ms). */
function rawExchange(port: number, chunks: string[], close_after_send: boolean, wait_ms = 10_000): Promise<string> {
  return new Promise((resolve) => {
    let received = "";
    const socket = net.connect(port, "127.0.0.1", () => {
      for (const c of chunks) socket.write(c);
      if (close_after_send) socket.end();
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(received);
    }, wait_ms);
    socket.on("data", (d) => (received += d.toString("latin1")));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(received);
    });
    socket.on("error", () => undefined);
  });
}

beforeAll(async () => {
  cluster = await TestCluster.start(3);
  native = new Client({ addresses: cluster.addresses });
  const [port, metrics_port] = await freePorts(2);
  endpoint = `http://127.0.0.1:${port}`;
  metrics = `http://127.0.0.1:${metrics_port}`;
  gateway = Bun.spawn(
    [
      ...toastyfsCommand(),
      "s3",
      "--listen",
      `127.0.0.1:${port}`,
      "--cluster",
      cluster.cluster_arg,
      "--metrics",
      `127.0.0.1:${metrics_port}`,
      "--log-level",
      "debug",
    ],
    {
      env: { ...process.env, TOASTYFS_S3_ACCESS_KEY: key.access_key, TOASTYFS_S3_SECRET_KEY: key.secret },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  void collect(gateway.stdout);
  void collect(gateway.stderr);
  await waitFor("the gateway to serve", () => output.includes("serving S3 at"), 30_000);
  const created = await call({ method: "PUT", path: `/${bucket}` });
  expect(created.status).toBe(200);
}, 90_000);

afterAll(async () => {
  gateway?.kill("SIGTERM");
  await gateway?.exited;
  await native?.close();
  await cluster?.destroy();
});

describe("toastyfs s3 with Bun's S3 client", () => {
  test("startup prints the endpoint; no keys at all refuses to start, saying how to give one", async () => {
    expect(output).toContain(`serving S3 at ${endpoint}`);
    const env = { ...process.env };
    delete env.TOASTYFS_S3_ACCESS_KEY;
    delete env.TOASTYFS_S3_SECRET_KEY;
    const [port] = await freePorts(1);
    const r = Bun.spawnSync([...toastyfsCommand(), "s3", "--listen", `127.0.0.1:${port}`, "--cluster", cluster.cluster_arg], { env });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toMatch(
      /^error: no S3 access keys: set TOASTYFS_S3_ACCESS_KEY and TOASTYFS_S3_SECRET_KEY, or give --credentials FILE/,
    );
  }, 30_000);

  test("write, read, stat, list, presign and delete", async () => {
    const client = s3();
    await client.write("docs/hello.txt", "hello, gateway", { type: "text/plain" });
    expect(await client.file("docs/hello.txt").text()).toBe("hello, gateway");
    const stat = await client.file("docs/hello.txt").stat();
    expect(stat.size).toBe(14);
    expect(stat.etag).toBe(`"${md5Hex("hello, gateway")}"`);
    expect(stat.type).toStartWith("text/plain");
    // The object is the native key "bucket/key", readable with the native client.
    expect(new TextDecoder().decode((await native.get(`${bucket}/docs/hello.txt`)).value)).toBe("hello, gateway");
    await client.write("docs/other.txt", "x");
    const listed = await client.list({ prefix: "docs/" });
    expect((listed.contents ?? []).map((c) => c.key)).toEqual(["docs/hello.txt", "docs/other.txt"]);
    const url = client.file("docs/hello.txt").presign({ expiresIn: 60 });
    const presigned = await fetch(url);
    expect(presigned.status).toBe(200);
    expect(await presigned.text()).toBe("hello, gateway");
    await client.file("docs/hello.txt").delete();
    expect(await client.file("docs/hello.txt").exists()).toBe(false);
  }, 30_000);

  test("a 24 MiB object round-trips with its Content-Length; a range read is 206", async () => {
    const size = 24 * 1024 * 1024;
    const body = new Uint8Array(size);
    for (let i = 0; i < size; i++) body[i] = (i * 13 + (i >> 11)) & 0xff;
    await s3().write("big.bin", body);
    const r = await fetch(s3().file("big.bin").presign({ expiresIn: 60 }));
    expect(r.headers.get("content-length")).toBe(String(size));
    expect(Buffer.compare(new Uint8Array(await r.arrayBuffer()), body)).toBe(0);
    const ranged = await call({ method: "GET", path: `/${bucket}/big.bin`, headers: { range: "bytes=1000-1999" } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get("content-range")).toBe(`bytes 1000-1999/${size}`);
    expect(Buffer.compare(new Uint8Array(await ranged.arrayBuffer()), body.subarray(1000, 2000))).toBe(0);
  }, 60_000);

  test("keys with '..', '.', '%', '+' and spaces are stored as sent, never normalised", async () => {
    const client = s3();
    for (const k of ["a/../b", "a/./c", "p%q", "a+b c", "é/ü"]) {
      await client.write(k, `value of ${k}`);
      expect(await client.file(k).text()).toBe(`value of ${k}`);
      expect((await native.stat(`${bucket}/${k}`)).size).toBe(Buffer.byteLength(`value of ${k}`));
    }
    expect(await client.file("b").exists()).toBe(false);
  }, 30_000);
});

describe("conditional writes, hand-signed", () => {
  test("two concurrent If-None-Match: * puts: exactly one 200, one 412", async () => {
    const put = (body: string) => call({ method: "PUT", path: `/${bucket}/race`, headers: { "if-none-match": "*" }, body });
    const results = await Promise.all([put("first"), put("second")]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 412]);
    const loser = results.find((r) => r.status === 412)!;
    expect(await loser.text()).toContain("<Code>PreconditionFailed</Code>");
    const winner = results.find((r) => r.status === 200)!;
    const stored = await s3().file("race").text();
    expect(winner.headers.get("etag")).toBe(`"${md5Hex(stored)}"`);
  });

  test("If-Match with the old ETag after an overwrite is 412; with the current one it replaces", async () => {
    const first = await call({ method: "PUT", path: `/${bucket}/cas`, body: "v1" });
    const old_etag = first.headers.get("etag")!;
    expect(old_etag).toBe(`"${md5Hex("v1")}"`);
    expect((await call({ method: "PUT", path: `/${bucket}/cas`, body: "v2" })).status).toBe(200);
    const stale = await call({ method: "PUT", path: `/${bucket}/cas`, headers: { "if-match": old_etag }, body: "v3" });
    expect(stale.status).toBe(412);
    const fresh = await call({ method: "PUT", path: `/${bucket}/cas`, headers: { "if-match": `"${md5Hex("v2")}"` }, body: "v3" });
    expect(fresh.status).toBe(200);
    expect(await s3().file("cas").text()).toBe("v3");
  });
});

describe("errors and bad input", () => {
  test("every response has a request id; an error is S3's XML document naming it", async () => {
    const r = await call({ method: "GET", path: `/${bucket}/missing` });
    expect(r.status).toBe(404);
    const id = r.headers.get("x-amz-request-id")!;
    expect(id).toMatch(/^[0-9A-F]{16}$/);
    expect(r.headers.get("x-amz-id-2")).not.toBeNull();
    const xml = await r.text();
    expect(xml).toContain("<Code>NoSuchKey</Code>");
    expect(xml).toContain(`<RequestId>${id}</RequestId>`);
    const head = await call({ method: "HEAD", path: `/${bucket}/missing` });
    expect(head.status).toBe(404);
    expect(await head.text()).toBe("");
    const unsigned = await fetch(`${endpoint}/${bucket}/missing`);
    expect(unsigned.status).toBe(403);
    expect(await unsigned.text()).toContain("<Code>AccessDenied</Code>");
  });

  test("malformed XML on CreateBucket is MalformedXML; an unknown subresource is 501 NotImplemented", async () => {
    const bad = await call({ method: "PUT", path: "/gw-malformed", body: "<CreateBucketConfiguration><LocationConstraint>" });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain("<Code>MalformedXML</Code>");
    expect((await call({ method: "HEAD", path: "/gw-malformed" })).status).toBe(404);
    const acl = await call({ method: "GET", path: `/${bucket}`, query: "acl" });
    expect(acl.status).toBe(501);
    expect(await acl.text()).toContain("<Code>NotImplemented</Code>");
  });

  test("Content-MD5 that does not match is BadDigest and nothing is written", async () => {
    const r = await call({
      method: "PUT",
      path: `/${bucket}/digest`,
      headers: { "content-md5": Buffer.from(md5Hex("other"), "hex").toString("base64") },
      body: "payload",
    });
    expect(r.status).toBe(400);
    expect(await r.text()).toContain("<Code>BadDigest</Code>");
    expect((await call({ method: "HEAD", path: `/${bucket}/digest` })).status).toBe(404);
  });

  test("a NUL in a key, or a key over 1,024 bytes, is a clear 400", async () => {
    const nul = await call({ method: "PUT", path: `/${bucket}/a%00b`, body: "x" });
    expect(nul.status).toBe(400);
    const long = await call({ method: "PUT", path: `/${bucket}/${"k".repeat(1025)}`, body: "x" });
    expect(long.status).toBe(400);
    expect(await long.text()).toContain("<Code>KeyTooLongError</Code>");
  });

  test("a huge header is an error, not a crash; the gateway keeps serving", async () => {
    const port = Number(new URL(endpoint).port);
    const reply = await rawExchange(
      port,
      [`GET /${bucket}/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${"a".repeat(64 * 1024)}\r\n\r\n`],
      false,
    );
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(reply).toContain("<Code>InvalidRequest</Code>");
    expect(await s3().file("cas").text()).toBe("v3");
  });

  test("a truncated body makes nothing visible", async () => {
    const port = Number(new URL(endpoint).port);
    const path = `/${bucket}/truncated`;
    const headers = signHeaders(key, { method: "PUT", host: `127.0.0.1:${port}`, path, headers: { "content-length": "100000" } });
    const head = `PUT ${path} HTTP/1.1\r\n${Object.entries(headers)
      .map(([n, v]) => `${n}: ${v}\r\n`)
      .join("")}\r\n`;
    await rawExchange(port, [head, "z".repeat(1000)], true, 5000);
    await waitFor("the gateway to log the cut request", () => output.includes(`PUT ${path} `), 10_000);
    expect((await call({ method: "HEAD", path })).status).toBe(404);
    expect(await s3().file("cas").text()).toBe("v3");
  });

  test("an object replaced while it is read: the response is cut short, never a mix", async () => {
    const size = 48 * 1024 * 1024;
    const client = s3();
    await client.write("moving.bin", new Uint8Array(size).fill(1));
    const r = await fetch(client.file("moving.bin").presign({ expiresIn: 60 }));
    expect(r.status).toBe(200);
    const reader = r.body!.getReader();
    const first = await reader.read();
    let got = first.value?.byteLength ?? 0;
    await native.put(`${bucket}/moving.bin`, new Uint8Array(10).fill(2));
    let cut = false;
    try {
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        expect(chunk.value.every((b: number) => b === 1)).toBe(true);
        got += chunk.value.byteLength;
      }
    } catch {
      cut = true;
    }
    expect(cut).toBe(true);
    expect(got).toBeLessThan(size);
  }, 60_000);
});

describe("metrics and health", () => {
  test("/metrics counts requests by operation and status; /health says the cluster has a quorum", async () => {
    const text = await (await fetch(`${metrics}/metrics`)).text();
    expect(text).toMatch(/^toastyfs_s3_requests_total\{operation="PutObject",status="200"\} \d+$/m);
    expect(text).toMatch(/^toastyfs_s3_requests_total\{operation="CreateBucket",status="200"\} 1$/m);
    expect(text).toMatch(/^toastyfs_s3_request_duration_seconds_count\{operation="GetObject"\} \d+$/m);
    expect(text).toMatch(/^toastyfs_s3_received_bytes_total [1-9]\d*$/m);
    const health = await fetch(`${metrics}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toMatch(/^ok: 3 of 3 replicas answer/);
  });

  test("debug logging: one line per request with method, path, status, bytes, time and request id; no bugs logged", () => {
    expect(output).not.toContain("bug:");
    expect(output).toMatch(
      /debug PUT \/gw-test\/race (200|412)( PreconditionFailed)? in=\d+ out=\d+ [\d.]+ms id=[0-9A-F]{16} key=gateway-test op=PutObject/,
    );
  });
});
