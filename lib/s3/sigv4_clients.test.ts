/**
 * authenticate() against what real signers send: Bun's built-in S3 client and the aws CLI
 * (botocore) talk to a capturing HTTP server here, and every request they make must be accepted
 * as captured, refused with another secret, and (presigned) refused once altered or expired.
 *
 * The capturing server is node:http, not Bun.serve: Bun.serve's req.url removes "." and ".."
 * segments (also "%2e%2e") before the handler sees them, so a key like "a/../b" would arrive as
 * "b" and its signature could not match. node:http's req.url is the request target as sent. The
 * first test pins that fact, which the gateway depends on.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import type { Authenticated } from "./auth_result.ts";
import { Credentials } from "./credentials.ts";
import { S3Error } from "./s3_error.ts";
import { authenticate, type SignedRequest } from "./sigv4.ts";
import { formatAmzDate, parseAmzDate } from "./sigv4_canonical.ts";

const access_key = "toasty-test-key";
const secret = "s3cr3t/with+odd=chars~";
const credentials = new Credentials(new Map([[access_key, secret]]));
const wrong_credentials = new Credentials(new Map([[access_key, "another-secret"]]));

interface Captured extends SignedRequest {
  url: string;
  body: Buffer;
}

/** An HTTP server that records each request as received (raw target, all headers, body) and answers 200. */
class CapturingServer {
  readonly requests: Captured[] = [];
  readonly #server: http.Server;
  port = 0;

  constructor() {
    this.#server = http.createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const url = req.url ?? "";
      const question = url.indexOf("?");
      const headers = new Headers();
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
      this.requests.push({
        method: req.method ?? "",
        url,
        raw_path: question < 0 ? url : url.slice(0, question),
        raw_query: question < 0 ? "" : url.slice(question + 1),
        headers,
        body: Buffer.concat(chunks),
      });
      const list = url.includes("list-type=2");
      res.writeHead(200, { "content-type": "application/xml" });
      res.end(
        list
          ? '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated></ListBucketResult>'
          : "",
      );
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.port = (this.#server.address() as { port: number }).port;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The requests captured since `from`. */
  since(from: number): Captured[] {
    return this.requests.slice(from);
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function refusalCode(request: SignedRequest, creds: Credentials, now_ms: number): string {
  try {
    authenticate(request, creds, now_ms);
  } catch (e) {
    if (e instanceof S3Error) return `${e.code}: ${e.message}`;
    throw e;
  }
  return "accepted";
}

/** Every request is accepted with the right secret and refused (SignatureDoesNotMatch) with a wrong one. */
function expectAllAuthenticate(requests: Captured[], now_ms: number): Authenticated[] {
  expect(requests.length).toBeGreaterThan(0);
  return requests.map((request) => {
    let result: Authenticated;
    try {
      result = authenticate(request, credentials, now_ms);
    } catch (e) {
      throw new Error(
        `${request.method} ${request.url} refused: ${String(e)}\n${[...request.headers].map(([k, v]) => `${k}: ${v}`).join("\n")}`,
      );
    }
    expect(result.access_key).toBe(access_key);
    expect(refusalCode(request, wrong_credentials, now_ms)).toStartWith("SignatureDoesNotMatch:");
    return result;
  });
}

let server: CapturingServer;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-sigv4-"));

beforeAll(async () => {
  server = new CapturingServer();
  await server.start();
});

afterAll(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test("Bun.serve's req.url drops dot segments; node:http's keeps the request target as sent", async () => {
  const bun_server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => new Response(new URL(req.url).pathname) });
  try {
    const raw = async (port: number, target: string): Promise<string> => {
      const { promise, resolve } = Promise.withResolvers<string>();
      let text = "";
      await Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          open: (socket) => void socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
          data: (_socket, data) => void (text += data.toString()),
          close: () => resolve(text),
        },
      });
      return promise;
    };
    expect(await raw(bun_server.port!, "/bkt/a/../b")).toEndWith("\r\n/bkt/b");
    expect(await raw(bun_server.port!, "/bkt/a/%2e%2e/b")).toEndWith("\r\n/bkt/b");
    const from = server.requests.length;
    await raw(server.port, "/bkt/a/../b/%2e%2e/./c?x=a+b");
    expect(server.since(from).map((r) => r.url)).toEqual(["/bkt/a/../b/%2e%2e/./c?x=a+b"]);
  } finally {
    await bun_server.stop(true);
  }
});

describe("Bun.S3Client", () => {
  /** Any region: the gateway accepts whatever region a client signs for. */
  const bunClient = (region: string | undefined) =>
    new Bun.S3Client({ endpoint: server.endpoint, accessKeyId: access_key, secretAccessKey: secret, bucket: "bkt", region });
  const keys = ["plain.txt", "a b", "a+b", "é", "x~y", "s*t", "p%q", "a/../b", "a/./b", "(')!", "q?x=1&y", "#h", "a//b", "dir/sub/k"];

  test("writes, reads, heads, deletes and a list with odd keys are all accepted as sent", async () => {
    const client = bunClient("eu-north-9");
    const from = server.requests.length;
    for (const key of keys) await client.file(key).write(`body of ${key}`);
    // Options that become x-amz-* headers: Bun signs them (the gateway refuses unsigned x-amz-* headers).
    await client.file("with-options", { acl: "public-read", storageClass: "STANDARD_IA", type: "text/plain" }).write("x");
    await client.file("a b").text();
    await client.file("a+b").exists();
    await client.delete("p%q");
    await client.list({ prefix: "a b+/é", startAfter: "x+y=z", maxKeys: 5 });
    const requests = server.since(from);
    expect(requests.length).toBe(keys.length + 5);
    const results = expectAllAuthenticate(requests, Date.now());
    // Bun signs UNSIGNED-PAYLOAD.
    for (const result of results) expect(result.payload).toEqual({ kind: "unsigned" });
    // The paths arrive as Bun encoded them, dot segments untouched.
    const paths = requests.map((r) => `${r.method} ${r.url}`);
    for (const expected of [
      "PUT /bkt/a%20b",
      "PUT /bkt/a%2Bb",
      "PUT /bkt/%C3%A9",
      "PUT /bkt/x~y",
      "PUT /bkt/s%2At",
      "PUT /bkt/p%25q",
      "PUT /bkt/a/../b",
      "PUT /bkt/a/./b",
      "PUT /bkt/%28%27%29%21",
      "PUT /bkt/q%3Fx%3D1%26y",
      "PUT /bkt/%23h",
      "PUT /bkt/a//b",
      "GET /bkt/a%20b",
      "HEAD /bkt/a%2Bb",
      "DELETE /bkt/p%25q",
    ])
      expect(paths).toContain(expected);
    const with_options = requests.find((r) => r.raw_path === "/bkt/with-options")!;
    expect(with_options.headers.get("x-amz-acl")).toBe("public-read");
    expect(with_options.headers.get("x-amz-storage-class")).toBe("STANDARD_IA");
    const list = requests[requests.length - 1];
    expect(list.raw_query).toContain("prefix=a%20b%2B%2F%C3%A9");
    expect(list.raw_query).toContain("start-after=x%2By%3Dz");
  });

  test("each request changed after signing is refused", async () => {
    const client = bunClient(undefined);
    const from = server.requests.length;
    await client.file("k").write("v");
    const [put] = server.since(from);
    const now = Date.now();
    expect(refusalCode({ ...put, method: "POST" }, credentials, now)).toStartWith("SignatureDoesNotMatch");
    expect(refusalCode({ ...put, raw_path: "/bkt/K" }, credentials, now)).toStartWith("SignatureDoesNotMatch");
    expect(refusalCode({ ...put, raw_query: "acl" }, credentials, now)).toStartWith("SignatureDoesNotMatch");
    const one_second_later = formatAmzDate(parseAmzDate(put.headers.get("x-amz-date")!)! + 1000);
    for (const [name, value] of [
      ["host", "127.0.0.1:1"],
      ["x-amz-date", one_second_later],
      ["x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
    ]) {
      const headers = new Headers(put.headers);
      headers.set(name, value);
      expect(refusalCode({ ...put, headers }, credentials, now)).toStartWith("SignatureDoesNotMatch");
    }
  });

  test("presigned URLs fetched over plain HTTP: accepted, refused when altered, refused after expiry", async () => {
    const client = bunClient("us-east-1");
    const signed_at = Date.now();
    const get_url = client.presign("dir/a b+é~*(').txt", { method: "GET", expiresIn: 60 });
    const put_url = client.presign("up/é x", { method: "PUT", expiresIn: 3600 });
    const from = server.requests.length;
    await fetch(get_url);
    await fetch(put_url, { method: "PUT", body: "uploaded through a presigned URL" });
    const [get, put] = server.since(from);
    expect(get.url).toBe(get_url.slice(server.endpoint.length));
    for (const result of expectAllAuthenticate([get, put], signed_at)) expect(result.payload).toEqual({ kind: "unsigned" });
    // Altered: another key, a longer expiry, an extra parameter, another method.
    expect(refusalCode({ ...get, raw_path: get.raw_path.replace("a%20b", "a%20c") }, credentials, signed_at)).toStartWith(
      "SignatureDoesNotMatch",
    );
    expect(
      refusalCode({ ...get, raw_query: get.raw_query.replace("X-Amz-Expires=60", "X-Amz-Expires=600") }, credentials, signed_at),
    ).toStartWith("SignatureDoesNotMatch");
    expect(refusalCode({ ...get, raw_query: `${get.raw_query}&versionId=7` }, credentials, signed_at)).toStartWith("SignatureDoesNotMatch");
    expect(refusalCode({ ...put, method: "DELETE" }, credentials, signed_at)).toStartWith("SignatureDoesNotMatch");
    // Expired: the GET after 60 s (X-Amz-Date is whole seconds, so allow for the rounding), the PUT after an hour.
    expect(refusalCode(get, credentials, signed_at + 62_000)).toBe("AccessDenied: Request has expired");
    expect(refusalCode(put, credentials, signed_at + 3_602_000)).toBe("AccessDenied: Request has expired");
    expect(refusalCode(put, credentials, signed_at + 3_000_000)).toBe("accepted");
  });
});

const aws = Bun.which("aws");
if (aws === null) console.warn("sigv4_clients.test.ts: the aws CLI is not on PATH: skipping its cases (CI has it)");

describe.skipIf(aws === null)("the aws CLI (botocore)", () => {
  /** Runs the aws CLI against the capturing server; its complaints about the empty replies do not matter. */
  async function runAws(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const config = path.join(dir, "aws-config");
    // CLI v1 presigns with SigV2 unless told otherwise; v2 ignores this.
    fs.writeFileSync(config, "[default]\ns3 =\n    signature_version = s3v4\n");
    const proc = Bun.spawn([aws!, "--endpoint-url", server.endpoint, ...args], {
      env: {
        PATH: process.env.PATH ?? "",
        HOME: dir,
        AWS_ACCESS_KEY_ID: access_key,
        AWS_SECRET_ACCESS_KEY: secret,
        AWS_DEFAULT_REGION: "ap-south-3",
        AWS_CONFIG_FILE: config,
        AWS_SHARED_CREDENTIALS_FILE: path.join(dir, "no-credentials"),
        AWS_EC2_METADATA_DISABLED: "true",
        AWS_MAX_ATTEMPTS: "1",
        AWS_PAGER: "",
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, stdout, stderr };
  }

  const body_file = path.join(dir, "body.txt");
  fs.writeFileSync(body_file, "hello from the aws CLI\n");

  test("s3api put/get/list/delete and s3 cp with odd keys, metadata and checksums are all accepted as sent", async () => {
    const from = server.requests.length;
    const started = Date.now();
    await runAws([
      "s3api",
      "put-object",
      "--bucket",
      "b",
      "--key",
      "k é+~*()!'",
      "--body",
      body_file,
      "--content-type",
      "text/plain",
      "--metadata",
      "owner=me",
    ]);
    await runAws(["s3api", "get-object", "--bucket", "b", "--key", "dir/../x y", path.join(dir, "out")]);
    await runAws([
      "s3api",
      "list-objects-v2",
      "--bucket",
      "b",
      "--prefix",
      "a b+/",
      "--start-after",
      "x=y&z",
      "--continuation-token",
      "ab+/==",
    ]);
    await runAws(["s3api", "delete-object", "--bucket", "b", "--key", "%41~"]);
    await runAws(["s3", "cp", body_file, "s3://b/cp é+~"]);
    const requests = server.since(from);
    const results = expectAllAuthenticate(requests, started);
    const by_target = new Map(requests.map((r, i) => [`${r.method} ${r.url}`, { request: r, result: results[i] }]));
    const put = by_target.get("PUT /b/k%20%C3%A9%2B~%2A%28%29%21%27");
    expect(put).toBeDefined();
    // botocore signs the body's SHA-256 over plain HTTP, and every x-amz-* header it sends.
    expect(put!.result.payload).toEqual({
      kind: "sha256",
      hex: new Bun.CryptoHasher("sha256").update(fs.readFileSync(body_file)).digest("hex"),
    });
    expect(put!.request.headers.get("x-amz-meta-owner")).toBe("me");
    expect(put!.request.headers.get("authorization")).toContain("x-amz-meta-owner");
    expect(by_target.has("GET /b/dir/../x%20y")).toBe(true);
    expect(by_target.has("DELETE /b/%2541~")).toBe(true);
    expect(by_target.has("PUT /b/cp%20%C3%A9%2B~")).toBe(true);
    const list = requests.find((r) => r.raw_query.includes("list-type=2"));
    expect(list?.raw_query).toContain("continuation-token=ab%2B%2F%3D%3D");
    expect(list?.raw_query).toContain("start-after=x%3Dy%26z");
  }, 60_000);

  test("aws s3 presign: the URL is accepted, refused when altered, refused after it expires", async () => {
    const signed_at = Date.now();
    const presign = await runAws(["s3", "presign", "s3://b/p é+~*()!", "--expires-in", "100"]);
    expect(presign.code).toBe(0);
    const url = presign.stdout.trim();
    expect(url).toContain("X-Amz-Algorithm=AWS4-HMAC-SHA256");
    const from = server.requests.length;
    await fetch(url);
    const [get] = server.since(from);
    expect(get.raw_path).toBe("/b/p%20%C3%A9%2B~%2A%28%29%21");
    expect(expectAllAuthenticate([get], signed_at)[0].payload).toEqual({ kind: "unsigned" });
    expect(refusalCode({ ...get, raw_path: "/b/p" }, credentials, signed_at)).toStartWith("SignatureDoesNotMatch");
    expect(
      refusalCode({ ...get, raw_query: get.raw_query.replace("X-Amz-Expires=100", "X-Amz-Expires=1000") }, credentials, signed_at),
    ).toStartWith("SignatureDoesNotMatch");
    expect(refusalCode(get, credentials, signed_at + 102_000)).toBe("AccessDenied: Request has expired");
  }, 60_000);
});
