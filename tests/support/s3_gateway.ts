/**
 * The S3 gateway in tests: a real 3-replica cluster (tests/support/cluster.ts) and a `toastyfs s3`
 * process on a free loopback port with test keys; clients for it: the AWS SDK (installed into a
 * cache outside the repo by npm_cache.ts, so its types are not visible here: the facade below
 * types what the tests use) and raw HTTP/1.1 over a socket, signed with the SDK's own SigV4 signer,
 * for requests a library would never send (bad paths, truncated bodies, skewed clocks).
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { TestCluster, freePorts, toastyfsCommand, waitFor } from "./cluster.ts";
import { aws_sdk_specs, npmPackages } from "./npm_cache.ts";

export const test_access_key = "TOASTYTESTACCESSKEY1";
export const test_secret_key = "toasty/test+secret/key/0123456789abcdefghij";
export const test_region = "us-east-1";

export class S3Gateway {
  constructor(
    readonly cluster: TestCluster,
    readonly port: number,
    readonly process: Subprocess,
    readonly log_path: string,
    readonly region: string,
    /** Whether stop() also destroys the cluster (false for a second gateway on a shared one). */
    private readonly owns_cluster: boolean,
  ) {}

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  get endpoint(): string {
    return `http://${this.host}`;
  }

  readonly access_key = test_access_key;
  readonly secret_key = test_secret_key;

  running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  logs(): string {
    return fs.existsSync(this.log_path) ? fs.readFileSync(this.log_path, "utf8") : "";
  }

  /** Log lines of bugs (error level) and of 5xx answers other than NotImplemented: none is the
   * gateway handling everything a test sent, bad input included, as an S3 error of the client's. */
  serverErrors(): string[] {
    return this.logs()
      .split("\n")
      .filter(
        (line) => / s3 error /.test(line) || (/ s3 (debug|info|warn) \S+ \S+ 5\d\d /.test(line) && !/ 501 NotImplemented /.test(line)),
      );
  }

  /** Kills the gateway, then the cluster (and its directory) when it started it. */
  async stop(): Promise<void> {
    if (this.running()) {
      this.process.kill("SIGKILL");
      await this.process.exited;
    }
    if (this.owns_cluster) await this.cluster.destroy();
  }
}

export interface GatewayOptions {
  region?: string;
  /** More `toastyfs s3` options (e.g. --domain). */
  extra_args?: string[];
  /** Serve this cluster (another gateway's) instead of starting one; stop() leaves it running. */
  cluster?: TestCluster;
}

/** A 3-replica cluster (or the one given) and a gateway in front of it, answering HTTP. */
export async function startS3Gateway(options: GatewayOptions = {}): Promise<S3Gateway> {
  const owns_cluster = options.cluster === undefined;
  const cluster = options.cluster ?? (await TestCluster.start(3));
  try {
    const [port] = await freePorts(1);
    const region = options.region ?? test_region;
    const log_path = path.join(cluster.dir, `s3-gateway-${port}.log`);
    const log = fs.openSync(log_path, "a");
    const flags: [string, string][] = [
      ["--listen", `127.0.0.1:${port}`],
      ["--cluster", cluster.cluster_arg],
      ["--region", region],
      ["--log-level", "debug"],
    ];
    const command = [...toastyfsCommand(), "s3", ...flags.flat(), ...(options.extra_args ?? [])];
    const child = Bun.spawn(command, {
      stdout: log,
      stderr: log,
      stdin: "ignore",
      env: { ...process.env, TOASTYFS_S3_ACCESS_KEY: test_access_key, TOASTYFS_S3_SECRET_KEY: test_secret_key },
    });
    fs.closeSync(log);
    const gateway = new S3Gateway(cluster, port!, child, log_path, region, owns_cluster);
    await waitFor(
      "the S3 gateway to answer HTTP",
      async () => {
        if (!gateway.running()) throw new Error(`the gateway exited (${command.join(" ")}):\n${gateway.logs()}`);
        // Any HTTP answer (an unsigned request is refused) means it is serving.
        const response = await fetch(`${gateway.endpoint}/`, { signal: AbortSignal.timeout(1000) });
        await response.arrayBuffer();
        return true;
      },
      30_000,
      100,
    ).catch((error) => {
      child.kill("SIGKILL");
      throw new Error(`${(error as Error).message}\ngateway log:\n${gateway.logs()}`);
    });
    return gateway;
  } catch (error) {
    if (owns_cluster) await cluster.destroy();
    throw error;
  }
}

// --- The AWS SDK, loaded at run time -------------------------------------------------------

/** What an SDK command returns: the output shape plus $metadata. */
export type SdkOutput = Record<string, unknown> & { $metadata: { httpStatusCode?: number } };

/** The error an SDK command throws for an S3 error document: name is the S3 code. */
export interface SdkError extends Error {
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { statusCode?: number; headers?: Record<string, string> };
}

interface SdkClient {
  send(command: object): Promise<SdkOutput>;
  destroy(): void;
  middlewareStack: { add(middleware: Function, options: Record<string, unknown>): void };
}

type Module = Record<string, unknown>;
type Constructor<T = object> = new (...args: unknown[]) => T;

function member<T>(module: Module, name: string): T {
  const value = module[name];
  if (value === undefined) throw new Error(`the SDK has no export ${name}`);
  return value as T;
}

/** The pinned SDK packages: client-s3, lib-storage, s3-request-presigner and smithy's SigV4. */
export class AwsSdk {
  private constructor(
    readonly dir: string,
    readonly s3: Module,
    readonly storage: Module,
    readonly presigner: Module,
    readonly sigv4: Module,
  ) {}

  static async load(): Promise<AwsSdk> {
    const dir = await npmPackages(aws_sdk_specs);
    const from = (name: string) => import(path.join(dir, "node_modules", name)) as Promise<Module>;
    return new AwsSdk(
      dir,
      await from("@aws-sdk/client-s3"),
      await from("@aws-sdk/lib-storage"),
      await from("@aws-sdk/s3-request-presigner"),
      await from("@smithy/signature-v4"),
    );
  }

  /** An S3 client for the gateway: path style, the SDK's defaults otherwise (checksums included). */
  client(gateway: S3Gateway, config: Record<string, unknown> = {}): S3Api {
    const S3Client = member<Constructor<SdkClient>>(this.s3, "S3Client");
    const client = new S3Client({
      endpoint: gateway.endpoint,
      region: gateway.region,
      forcePathStyle: true,
      credentials: { accessKeyId: gateway.access_key, secretAccessKey: gateway.secret_key },
      // The SDK retries 5xx and throttling; a test wants to see the first answer.
      maxAttempts: 1,
      ...config,
    });
    return new S3Api(this, client);
  }

  /** Smithy's SigV4 signer with the gateway's keys (or others), for hand-made requests. */
  signer(gateway: S3Gateway, keys: { access_key?: string; secret_key?: string } = {}): Signer {
    const SignatureV4 = member<Constructor<Signer>>(this.sigv4, "SignatureV4");
    return new SignatureV4({
      credentials: { accessKeyId: keys.access_key ?? gateway.access_key, secretAccessKey: keys.secret_key ?? gateway.secret_key },
      region: gateway.region,
      service: "s3",
      sha256: NodeSha256,
      // The path is sent exactly as given (already encoded); S3 does not encode it twice.
      uriEscapePath: false,
      applyChecksum: false,
    });
  }
}

let recorders = 0;

/** One client: `call("PutObject", {...})` runs PutObjectCommand. */
export class S3Api {
  constructor(
    readonly sdk: AwsSdk,
    readonly client: SdkClient,
  ) {}

  call(operation: string, input: Record<string, unknown>): Promise<SdkOutput> {
    const Command = member<Constructor>(this.sdk.s3, `${operation}Command`);
    return this.client.send(new Command(input));
  }

  /** lib-storage's Upload (multipart above partSize, parts in parallel). */
  upload(params: Record<string, unknown>, options: { partSize: number; queueSize: number }): Promise<SdkOutput> {
    const Upload = member<Constructor<{ done(): Promise<SdkOutput> }>>(this.sdk.storage, "Upload");
    return new Upload({ client: this.client, params, ...options }).done();
  }

  /** A presigned URL for the operation (s3-request-presigner). */
  presign(operation: string, input: Record<string, unknown>, expires_s: number): Promise<string> {
    const Command = member<Constructor>(this.sdk.s3, `${operation}Command`);
    const getSignedUrl = member<(client: SdkClient, command: object, options: object) => Promise<string>>(
      this.sdk.presigner,
      "getSignedUrl",
    );
    return getSignedUrl(this.client, new Command(input), { expiresIn: expires_s });
  }

  /** Every request this client sends, as the gateway received it (method, headers), after signing. */
  recordRequests(): SentRequest[] {
    const sent: SentRequest[] = [];
    this.client.middlewareStack.add(
      (next: (args: { request: SentRequest }) => Promise<unknown>) => async (args: { request: SentRequest }) => {
        sent.push({
          method: args.request.method,
          path: args.request.path,
          query: { ...args.request.query },
          headers: { ...args.request.headers },
        });
        return next(args);
      },
      { step: "finalizeRequest", priority: "low", name: `toastyfsRecordRequests${++recorders}` },
    );
    return sent;
  }

  destroy(): void {
    this.client.destroy();
  }
}

export interface SentRequest {
  method: string;
  path: string;
  query: Record<string, string | string[] | null>;
  headers: Record<string, string>;
}

/** Runs the promise, expecting the SDK to throw the S3 error `code` with HTTP `status`. */
export async function expectSdkError(promise: Promise<unknown>, code: string, status: number): Promise<SdkError> {
  let error: SdkError | null = null;
  try {
    await promise;
  } catch (e) {
    error = e as SdkError;
  }
  if (error === null) throw new Error(`expected ${code} (${status}), the call succeeded`);
  const got_status = error.$metadata?.httpStatusCode ?? error.$response?.statusCode;
  if (error.name !== code || got_status !== status)
    throw new Error(`expected ${code} (${status}), got ${error.name} (${got_status}): ${error.message}`);
  return error;
}

// --- SigV4 signing by hand --------------------------------------------------------------------

/** The part of smithy's SignatureV4 the tests use. */
export interface Signer {
  sign(
    request: HttpRequestLike,
    options?: { signingDate?: Date; signingRegion?: string; unsignableHeaders?: Set<string> },
  ): Promise<HttpRequestLike>;
  sign(string_to_sign: string, options?: { signingDate?: Date }): Promise<string>;
  presign(
    request: HttpRequestLike,
    options: { expiresIn: number; signingDate?: Date; unsignableHeaders?: Set<string>; unhoistableHeaders?: Set<string> },
  ): Promise<HttpRequestLike>;
}

export interface HttpRequestLike {
  method: string;
  protocol: string;
  hostname: string;
  port: number;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body?: unknown;
}

/** SHA-256 (and HMAC-SHA256 when given a secret) in smithy's Checksum shape, from node:crypto. */
class NodeSha256 {
  private hash: crypto.Hash | crypto.Hmac;
  constructor(private readonly secret?: string | Uint8Array) {
    this.hash = this.fresh();
  }
  private fresh(): crypto.Hash | crypto.Hmac {
    return this.secret === undefined ? crypto.createHash("sha256") : crypto.createHmac("sha256", this.secret);
  }
  update(data: string | Uint8Array): void {
    this.hash.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
  reset(): void {
    this.hash = this.fresh();
  }
}

export function sha256Hex(data: string | Uint8Array): string {
  return crypto.createHash("sha256").update(data).digest("hex");
}

export function md5Base64(data: string | Uint8Array): string {
  return crypto.createHash("md5").update(data).digest("base64");
}

export function md5Hex(data: string | Uint8Array): string {
  return crypto.createHash("md5").update(data).digest("hex");
}

/** S3's encoding of a key in a path: every byte but A-Z a-z 0-9 - _ . ~ and "/" percent-encoded. */
export function encodeKey(key: string): string {
  return key
    .split("/")
    .map((segment) => encodeRfc3986(segment))
    .join("/");
}

export function encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export interface RawRequest {
  method: string;
  /** The request target exactly as sent, already encoded (path plus any "?query"). */
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

export interface SignOptions {
  /** The clock the signature claims (default: now). */
  date?: Date;
  /** x-amz-content-sha256 (default: the body's SHA-256). */
  payload_hash?: string;
  access_key?: string;
  secret_key?: string;
}

/** The request with SigV4 headers added (Authorization, x-amz-date, x-amz-content-sha256, host). */
export async function signRaw(sdk: AwsSdk, gateway: S3Gateway, request: RawRequest, options: SignOptions = {}): Promise<RawRequest> {
  const body = request.body ?? "";
  const headers: Record<string, string> = {
    host: gateway.host,
    "x-amz-content-sha256": options.payload_hash ?? sha256Hex(body),
    ...lowercaseKeys(request.headers ?? {}),
  };
  const keys: { access_key?: string; secret_key?: string } = {};
  if (options.access_key !== undefined) keys.access_key = options.access_key;
  if (options.secret_key !== undefined) keys.secret_key = options.secret_key;
  const signed = await sdk.signer(gateway, keys).sign(
    {
      method: request.method,
      protocol: "http:",
      hostname: "127.0.0.1",
      port: gateway.port,
      path: request.path,
      query: request.query ?? {},
      headers,
      body,
    },
    // Content-Length is framing: a test that lies about it must still be signed right.
    { signingDate: options.date ?? new Date(), unsignableHeaders: new Set(["content-length"]) },
  );
  return { ...request, headers: signed.headers };
}

function lowercaseKeys(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

/** The query part of a target: keys and values RFC 3986 encoded, sorted like SigV4 wants. */
export function queryString(query: Record<string, string>): string {
  const pairs = Object.entries(query).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return pairs.map(([k, v]) => (v === "" ? encodeRfc3986(k) : `${encodeRfc3986(k)}=${encodeRfc3986(v)}`)).join("&");
}

export interface RawResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
  text: string;
}

const raw_timeout_ms = 20_000;

/**
 * Sends one HTTP/1.1 request byte for byte over a fresh socket (Connection: close) and reads the
 * answer to the end. Content-Length is the body's unless the request sets one (a lie, on purpose).
 * body_bytes_sent: send only that much of the body, then end our side of the connection (a client
 * that died mid-upload; the headers still announce the whole body).
 * Resolves null when the gateway closes the connection without an answer.
 */
export async function rawHttp(
  gateway: S3Gateway,
  request: RawRequest,
  options: { body_bytes_sent?: number } = {},
): Promise<RawResponse | null> {
  const body = typeof request.body === "string" ? new TextEncoder().encode(request.body) : (request.body ?? new Uint8Array(0));
  const headers = lowercaseKeys(request.headers ?? {});
  if (headers["content-length"] === undefined && headers["transfer-encoding"] === undefined)
    headers["content-length"] = String(body.length);
  headers["connection"] = "close";
  if (headers["host"] === undefined) headers["host"] = gateway.host;
  const target = request.query && Object.keys(request.query).length > 0 ? `${request.path}?${queryString(request.query)}` : request.path;
  const head = `${request.method} ${target} HTTP/1.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;
  const sent_body = options.body_bytes_sent === undefined ? body : body.subarray(0, options.body_bytes_sent);
  const bytes = Buffer.concat([Buffer.from(head, "latin1"), Buffer.from(sent_body)]);
  const received = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(gateway.port, "127.0.0.1");
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to ${request.method} ${target} in ${raw_timeout_ms} ms`));
    }, raw_timeout_ms);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", () => {
      // A reset after the answer (or instead of one) ends the exchange like a close.
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.write(bytes);
    if (options.body_bytes_sent !== undefined) socket.end();
  });
  if (received.length === 0) return null;
  return parseResponse(received, request.method === "HEAD");
}

/** Signs and sends: the usual way a conformance test talks to the gateway. */
export async function s3Raw(
  sdk: AwsSdk,
  gateway: S3Gateway,
  request: RawRequest,
  options: SignOptions & { body_bytes_sent?: number } = {},
): Promise<RawResponse> {
  const signed = await signRaw(sdk, gateway, request, options);
  const send: { body_bytes_sent?: number } = {};
  if (options.body_bytes_sent !== undefined) send.body_bytes_sent = options.body_bytes_sent;
  const response = await rawHttp(gateway, signed, send);
  if (response === null) throw new Error(`the gateway closed the connection without answering ${request.method} ${request.path}`);
  return response;
}

function parseResponse(data: Buffer, head_only: boolean): RawResponse {
  const end = data.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`an HTTP answer without the end of its header: ${JSON.stringify(data.toString("latin1").slice(0, 200))}`);
  const lines = data.subarray(0, end).toString("latin1").split("\r\n");
  const status_match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!);
  if (status_match === null) throw new Error(`not an HTTP status line: ${JSON.stringify(lines[0])}`);
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  let body: Uint8Array = data.subarray(end + 4);
  if (head_only) body = new Uint8Array(0);
  else if ((headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) body = dechunk(body);
  else if (headers.get("content-length") !== null) body = body.subarray(0, Number(headers.get("content-length")));
  return { status: Number(status_match[1]), headers, body, text: new TextDecoder().decode(body) };
}

function dechunk(data: Uint8Array): Uint8Array {
  const out: Uint8Array[] = [];
  const buffer = Buffer.from(data);
  let at = 0;
  for (;;) {
    const line_end = buffer.indexOf("\r\n", at);
    if (line_end < 0) break;
    const size = parseInt(buffer.subarray(at, line_end).toString("latin1"), 16);
    if (!(size > 0)) break;
    out.push(buffer.subarray(line_end + 2, line_end + 2 + size));
    at = line_end + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** The text of each <tag> in an XML document, in order (the tests' documents are small and flat
 * enough that a regular expression reads them). */
export function xmlValues(xml: string, tag: string): string[] {
  const out: string[] = [];
  for (const m of xml.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))) out.push(unescapeXml(m[1]!));
  return out;
}

export function xmlValue(xml: string, tag: string): string | null {
  return xmlValues(xml, tag)[0] ?? null;
}

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCodePoint(Number(n)))
    .replace(/&#x([0-9a-fA-F]+);/g, (_, n: string) => String.fromCodePoint(parseInt(n, 16)))
    .replace(/&amp;/g, "&");
}

/** Throws unless the answer is the S3 error document for `code` with HTTP `status`. */
export function expectRawError(response: RawResponse, code: string, status: number): void {
  const got = xmlValue(response.text, "Code");
  if (response.status !== status || got !== code)
    throw new Error(`expected ${code} (${status}), got ${got} (${response.status}): ${response.text.slice(0, 500)}`);
}
