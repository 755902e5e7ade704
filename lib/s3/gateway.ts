/**
 * The S3 gateway's HTTP server (docs/S3.md): its own HTTP/1.1 server on Bun.listen (http_server.ts
 * says why not node:http or Bun.serve);
 * per request a request id, then route →
 * authenticate → verified body (for operations that carry one) → handler → response. Every thrown
 * S3Error or ClientError becomes S3's XML error document; anything else is a bug, logged with its
 * stack and answered InternalError. No request can stop the process.
 *
 * Limits, all named below: the request head, the request target, the body, requests in flight
 * (beyond it 503 SlowDown), connections, and an idle timeout for clients that stop sending or
 * reading. Bodies stream through with backpressure; none is held whole.
 */
import { randomBytes } from "node:crypto";
import type { Client } from "../client/client.ts";
import { ClientError } from "../client/errors.ts";
import { formatAddress, type Address } from "../net/address.ts";
import { assert } from "../util/assert.ts";
import type { Authenticated } from "./auth_result.ts";
import { bucket_handlers } from "./buckets.ts";
import { s3ErrorOf } from "./client_errors.ts";
import type { Credentials } from "./credentials.ts";
import { delete_objects_handlers } from "./delete_objects.ts";
import { errorResponse } from "./error_response.ts";
import { GatewayMetrics, startMetricsServer } from "./gateway_metrics.ts";
import { splitTarget } from "./gateway_http.ts";
import { header_bytes_max } from "./http_head.ts";
import { type HttpExchange, startHttpServer } from "./http_server.ts";
import { listing_handlers } from "./listing.ts";
import { multipart_handlers } from "./multipart.ts";
import { object_handlers } from "./objects.ts";
import { verifiedBody } from "./payload.ts";
import type { S3Context, S3Handler, S3Request } from "./request.ts";
import { route, type S3Operation } from "./router.ts";
import { S3Error } from "./s3_error.ts";
import { authenticate } from "./sigv4.ts";
import { errorXml } from "./xml.ts";

/** A request's head (request line and headers) may be this long; a longer one is answered 400
 * InvalidRequest and the connection closed (http_head.ts). */
export { header_bytes_max };
/** The request target (path and query). An S3 key is at most 1,024 bytes (3,072 percent-encoded);
 * presigned queries add about 1 KiB. */
export const request_target_bytes_max = 8 * 1024;
/** The largest body: a 5 GiB PutObject or UploadPart, plus aws-chunked framing (about 87 bytes
 * per chunk of at least 8 KiB: 1.1 %). */
export const request_body_bytes_max = 5 * 1024 * 1024 * 1024 + (5 * 1024 * 1024 * 1024) / 64;
/** Requests served at once; more are answered 503 SlowDown at once (SDKs back off and retry). Each
 * in-flight put may hold about 5 blocks of 4 MiB (the block being read, one per client lane). */
export const requests_in_flight_max = 64;
/** Open connections at once; more are refused by the listener. */
export const connections_max = 1024;
/** A connection that neither sends nor reads for this long is closed: a client that stops sending
 * its body or stops reading the response, or an idle keep-alive connection. */
export const idle_timeout_ms = 60_000;
/** On stop, requests in flight get this long to finish before their connections are closed. */
export const stop_grace_ms = 10_000;
const stop_poll_ms = 20;
/** A request's head must arrive within this long of its first byte. */
export const headers_timeout_ms = 20_000;

/** Operations whose handler checks Content-MD5 itself, with the MD5 it computes anyway. */
const operations_checking_content_md5 = new Set<S3Operation>(["UploadPart"]);

/** Operations whose request carries a body the handler reads. */
const operations_with_body = new Set<S3Operation>(["PutObject", "UploadPart", "CreateBucket", "DeleteObjects", "CompleteMultipartUpload"]);

const handlers: ReadonlyMap<S3Operation, S3Handler> = new Map([
  ...bucket_handlers,
  ...object_handlers,
  ...listing_handlers,
  ...multipart_handlers,
  ...delete_objects_handlers,
]);

export type GatewayLog = (level: "debug" | "info" | "warn" | "error", text: string) => void;

export interface GatewayOptions {
  listen: Address;
  /** One client, or several: each request goes to the one with the fewest requests in flight (a
   * client has one request outstanding per client id, so concurrency needs several). */
  client: Client | readonly Client[];
  credentials: Credentials;
  region: string;
  /** Virtual-hosted-style requests (bucket.DOMAIN) when set. */
  domain: string | null;
  log: GatewayLog;
  now?: () => number;
  /** Serve /metrics and /health here. */
  metrics?: Address | null;
  /** Whether log takes debug lines (default true): when not, the per-request line is not even built. */
  log_debug?: boolean;
  /** Handlers that replace the built-in ones for their operations (tests: a handler with a bug). */
  handlers?: ReadonlyMap<S3Operation, S3Handler>;
}

export interface Gateway {
  url: string;
  metrics_url: string | null;
  metrics: GatewayMetrics;
  stop(): Promise<void>;
}

const empty_body: AsyncIterable<Uint8Array> = {
  async *[Symbol.asyncIterator]() {},
};

/** Request ids: a random prefix per gateway process and a counter, 16 hex digits as S3's. Unique
 * without a call into the random source per request (randomBytes cost about 2 µs a request, a
 * counter 0.1 µs); an id names a request, it guards nothing. */
const request_id_prefix = randomBytes(4).toString("hex").toUpperCase();
let request_count = 0;

function requestId(): string {
  request_count = (request_count + 1) % 2 ** 32;
  return request_id_prefix + request_count.toString(16).toUpperCase().padStart(8, "0");
}

/** Counts a body's bytes as they are read. */
async function* countedBody(body: AsyncIterable<Uint8Array>, count: (n: number) => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    count(chunk.byteLength);
    yield chunk;
  }
}

/** One request as the gateway tracks it, for its log line and metrics. */
interface Exchange {
  id: string;
  method: string;
  path: string;
  operation: string;
  access_key: string | null;
  bytes_in: number;
  started: number;
  error: S3Error | null;
}

function listenError(address: Address, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException).code;
  const why = code === "EADDRINUSE" ? "the port is in use" : code === "EADDRNOTAVAIL" ? "no such local address" : (error as Error).message;
  return new Error(`cannot listen on ${formatAddress(address)}: ${why}`);
}

export async function startGateway(o: GatewayOptions): Promise<Gateway> {
  const clients: readonly Client[] = Array.isArray(o.client) ? (o.client as readonly Client[]) : [o.client as Client];
  assert(clients.length > 0, "startGateway needs at least one client");
  const busy = new Map<Client, number>(clients.map((c) => [c, 0]));
  const now = o.now ?? (() => Date.now());
  const metrics = new GatewayMetrics();
  const log = o.log;
  const debug = o.log_debug ?? true;
  const table: ReadonlyMap<S3Operation, S3Handler> = o.handlers === undefined ? handlers : new Map([...handlers, ...o.handlers]);

  const pickClient = (): Client => {
    let best = clients[0]!;
    for (const c of clients) if (busy.get(c)! < busy.get(best)!) best = c;
    return best;
  };

  const finish = (x: Exchange, status: number, bytes_out: number): void => {
    metrics.in_flight -= 1;
    const seconds = (performance.now() - x.started) / 1000;
    metrics.observe(x.operation, status, seconds, x.bytes_in, bytes_out);
    if (status < 500 && !debug) return;
    const code = x.error === null ? "" : ` ${x.error.code}`;
    const line = `${x.method} ${x.path} ${status}${code} in=${x.bytes_in} out=${bytes_out} ${(seconds * 1000).toFixed(1)}ms id=${x.id} key=${x.access_key ?? "-"} op=${x.operation}`;
    if (status >= 500) log("warn", `${line}${x.error === null ? "" : `: ${x.error.message}`}`);
    else log("debug", line);
  };

  /** Route, authenticate, decode the body, run the handler. */
  const dispatch = async (
    x: Exchange,
    exchange: HttpExchange,
    target: { path: string; query: string },
    client: Client,
  ): Promise<Response> => {
    const raw_target = exchange.target;
    if (raw_target.length > request_target_bytes_max)
      throw new S3Error("InvalidRequest", `the request target is ${raw_target.length} bytes: at most ${request_target_bytes_max}`);
    const headers = exchange.headers;
    // The headers tell CopyObject from PutObject (and refuse UploadPartCopy).
    const r = route(x.method, target.path, target.query, headers.get("host"), o.domain, headers);
    const operation = r.operation;
    x.operation = operation;
    const auth: Authenticated = authenticate(
      { method: x.method, raw_path: target.path, raw_query: target.query, headers },
      o.credentials,
      now(),
    );
    x.access_key = auth.access_key;
    const handler = table.get(operation);
    if (handler === undefined) throw new S3Error("NotImplemented", `${operation} is not supported`);
    let body = empty_body;
    let size: number | null = 0;
    if (operations_with_body.has(operation)) {
      const declared = Number(headers.get("content-length") ?? "0");
      if (declared > request_body_bytes_max)
        throw new S3Error("EntityTooLarge", `a request body is at most ${request_body_bytes_max} bytes, Content-Length says ${declared}`);
      const verified = verifiedBody(exchange.body, headers, auth.payload, {
        content_md5: !operations_checking_content_md5.has(operation),
      });
      body = countedBody(verified.body, (n) => (x.bytes_in += n));
      size = verified.size;
    }
    const request: S3Request = {
      id: x.id,
      method: x.method,
      bucket: r.bucket,
      key: r.key,
      query: new URLSearchParams(target.query),
      headers,
      access_key: auth.access_key,
      body,
      size,
    };
    const context: S3Context = { client, region: o.region, now, log };
    return handler(request, context);
  };

  const render = (x: Exchange, error: unknown): Response => {
    const known = error instanceof S3Error || error instanceof ClientError;
    const s3 = s3ErrorOf(error);
    x.error = s3;
    if (!known)
      log("error", `${x.method} ${x.path} id=${x.id}: bug: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return errorResponse(s3, x.path, x.id);
  };

  const respond = async (x: Exchange, exchange: HttpExchange, response: Response, first = true): Promise<void> => {
    response.headers.set("x-amz-request-id", x.id);
    response.headers.set("x-amz-id-2", Buffer.from(x.id).toString("base64"));
    // A request body the handler did not read (an error before it, or an operation without one)
    // would have to be drained for the connection to carry another request: the server closes
    // it instead (http_server.ts).
    let sent;
    try {
      sent = await exchange.send(response, x.method === "HEAD");
    } catch (error) {
      // The body failed before anything was sent (a bounded body read whole, or an object's first
      // chunk): answer the error instead.
      if (first && !exchange.headers_sent) return respond(x, exchange, render(x, error), false);
      exchange.destroy();
      finish(x, response.status, 0);
      return;
    }
    if (sent.failure !== null) {
      x.error = s3ErrorOf(sent.failure);
      log("warn", `${x.method} ${x.path} id=${x.id}: the response was cut after ${sent.bytes} bytes: ${x.error.message}`);
    }
    finish(x, response.status, sent.bytes);
  };

  const serve = async (exchange: HttpExchange): Promise<void> => {
    const target = splitTarget(exchange.target);
    const x: Exchange = {
      id: requestId(),
      method: exchange.method,
      path: target.path,
      operation: "unknown",
      access_key: null,
      bytes_in: 0,
      started: performance.now(),
      error: null,
    };
    metrics.in_flight += 1;
    if (metrics.in_flight > requests_in_flight_max) {
      metrics.refused += 1;
      return respond(
        x,
        exchange,
        render(x, new S3Error("SlowDown", `more than ${requests_in_flight_max} requests in flight: retry later`)),
      );
    }
    const client = pickClient();
    busy.set(client, busy.get(client)! + 1);
    let response: Response;
    try {
      response = await dispatch(x, exchange, target, client);
    } catch (error) {
      response = render(x, error);
    } finally {
      busy.set(client, busy.get(client)! - 1);
    }
    await respond(x, exchange, response);
  };

  let server;
  try {
    server = startHttpServer({
      hostname: o.listen.host,
      port: o.listen.port,
      handler: (exchange) =>
        serve(exchange).catch((error: unknown) => {
          log(
            "error",
            `bug: serving ${exchange.method} ${exchange.target}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
          );
          exchange.destroy();
        }),
      refusal: (status, message) => {
        // A head too large or not HTTP: answered, then the connection is closed.
        log("debug", `bad request from a client: ${status} ${message}`);
        return { content_type: "application/xml", body: errorXml(new S3Error("InvalidRequest", message), "/", requestId()) };
      },
      body_bytes_max: request_body_bytes_max,
      connections_max,
      idle_timeout_ms,
      headers_timeout_ms,
    });
  } catch (error) {
    throw listenError(o.listen, error);
  }
  const port = server.port;
  let metrics_server: { port: number; stop(): Promise<void> } | null = null;
  if (o.metrics !== undefined && o.metrics !== null) {
    try {
      metrics_server = startMetricsServer(
        o.metrics,
        metrics,
        clients[0]!.membership.replicas,
        clients[0]!.options.secret ?? null,
        clients[0]!.options.tls ?? null,
      );
    } catch (error) {
      server.closeAll();
      throw listenError(o.metrics, error);
    }
  }
  const host = o.listen.host.includes(":") ? `[${o.listen.host}]` : o.listen.host;
  return {
    url: `http://${host}:${port}`,
    metrics_url: metrics_server === null ? null : `http://${formatAddress({ host: o.metrics!.host, port: metrics_server.port })}`,
    metrics,
    /** Stops accepting, lets the requests in flight finish for up to stop_grace_ms, then closes every connection. */
    async stop() {
      server.stopAccepting();
      const deadline = performance.now() + stop_grace_ms;
      while (metrics.in_flight > 0 && performance.now() < deadline) await Bun.sleep(stop_poll_ms);
      server.closeAll();
      await metrics_server?.stop();
    },
  };
}
