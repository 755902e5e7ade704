/**
 * The gateway's HTTP/1.1 server on Bun.listen (docs/S3.md §1). node:http in Bun is a compatibility
 * layer: on this machine a trivial node:http server spent 18–20 µs of CPU per 4 KiB GET and 28 µs
 * per 4 KiB PUT, one on Bun.listen 11 µs for either (bench/RESULTS.md). Bun.serve is not an
 * option: it resolves "." and ".." in the request target before a handler sees it, and SigV4 signs
 * the raw path.
 *
 * One request at a time per connection; a pipelined request waits in the connection's buffer
 * until the response before it is out. Request heads are limited (http_head.ts); bodies stream
 * through a pull-based ReadableStream that pauses the socket while body_buffer_bytes_max bytes
 * wait to be read, so a slow consumer slows the client and never buffers a 5 GiB part.
 * `Expect: 100-continue` is answered when the handler first reads the body (a request refused
 * before that never has its body sent). A response head and a small body leave in one write.
 * Timeouts: a head must arrive within headers_timeout_ms of its first byte, and a connection that
 * neither sends nor takes bytes for idle_timeout_ms is closed. Bad input is a 400, 431, 413 or 501
 * and a closed connection, never a crash.
 */
import { STATUS_CODES } from "node:http";
import type { Socket, TCPSocketListener } from "bun";
import { BodyDecoder } from "./http_body.ts";
import { HttpError, type RequestHead, header_bytes_max, headEnd, parseHead } from "./http_head.ts";

/** Body bytes received and not yet read by the handler before the socket is paused. */
export const body_buffer_bytes_max = 1024 * 1024;
/** Response bodies up to this size leave in the same write as the head (one copy; larger ones
 * are written after it, uncopied). */
export const coalesce_body_bytes_max = 64 * 1024;
/** How often timeouts are checked: they fire up to this late. */
const sweep_interval_ms = 1000;
/** The interim answer to Expect: 100-continue (written, never changed, so one buffer serves all). */
const continue_response = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n", "latin1");

export interface HttpServerOptions {
  hostname: string;
  port: number;
  /** Serves one request: reads exchange.body as it likes and answers with exchange.send. */
  handler: (exchange: HttpExchange) => Promise<void>;
  /** The document answering a request refused before any handler saw it. */
  refusal: (status: number, message: string) => { content_type: string; body: string };
  /** A request body (after chunked framing) may be this long; beyond it the body stream fails. */
  body_bytes_max: number;
  connections_max: number;
  idle_timeout_ms: number;
  headers_timeout_ms: number;
  log?: (text: string) => void;
}

export interface Sent {
  bytes: number;
  /** Why the body stopped before its end (the source failed, or the client went away); null if whole. */
  failure: unknown;
}

export interface HttpServer {
  port: number;
  /** Connections open now. */
  connections(): number;
  /** Stops accepting and closes connections between requests. */
  stopAccepting(): void;
  /** Closes every connection, mid-request or not. */
  closeAll(): void;
}

type Sock = Socket<Connection>;

/** One request on a connection, as the handler sees it. */
export class HttpExchange {
  /** null when the request has no body. */
  readonly body: ReadableStream<Uint8Array> | null;
  headers_sent = false;

  constructor(
    private readonly connection: Connection,
    readonly head: RequestHead,
    private readonly queue: BodyQueue | null,
  ) {
    this.body = queue === null ? null : queue.stream();
  }

  get method(): string {
    return this.head.method;
  }
  get target(): string {
    return this.head.target;
  }
  get headers(): Headers {
    return this.head.headers;
  }
  /** The whole body has arrived (or there is none): the connection can carry another request. */
  get body_complete(): boolean {
    return this.queue === null || this.queue.ended;
  }

  /** Closes the connection at once (a response cut short). */
  destroy(): void {
    this.connection.close();
  }

  /**
   * Writes a Response: status and headers, then the body. A body whose length the handler
   * declared (Content-Length) is streamed with backpressure; any other (an XML document, small and
   * bounded by its handler) is read whole first so it carries its Content-Length. A source that
   * fails before its first chunk throws (nothing is sent yet: the caller answers an error); one
   * that fails later closes the connection: the client sees a short body.
   */
  async send(response: Response, head_only: boolean): Promise<Sent> {
    const c = this.connection;
    const headers = response.headers;
    const status = response.status;
    const bodiless = status < 200 || status === 204 || status === 304;
    if (head_only || response.body === null || bodiless) {
      void response.body?.cancel().catch(() => undefined);
      if (!headers.has("content-length") && !bodiless && !head_only) headers.set("content-length", "0");
      this.writeHead(status, headers, null);
      return { bytes: 0, failure: null };
    }
    const declared_text = headers.get("content-length");
    if (declared_text === null) {
      const bytes = await response.bytes();
      headers.set("content-length", String(bytes.byteLength));
      this.writeHead(status, headers, bytes);
      return { bytes: bytes.byteLength, failure: null };
    }
    // The first chunk is read before the status goes out: a source that fails at once is still an
    // error response, and a body that is one chunk (a small object) leaves with its head.
    const reader = response.body.getReader();
    const first = await reader.read();
    const declared = Number(declared_text);
    if (first.done || first.value.byteLength === declared) {
      const bytes = first.done ? new Uint8Array(0) : first.value;
      this.writeHead(status, headers, bytes);
      if (!first.done) void reader.read().catch(() => undefined);
      return { bytes: bytes.byteLength, failure: null };
    }
    this.writeHead(status, headers, null);
    let bytes = 0;
    let chunk: Awaited<ReturnType<typeof reader.read>> = first;
    while (!chunk.done) {
      bytes += chunk.value.byteLength;
      if (!c.write(chunk.value) && !(await c.flushed())) {
        void reader.cancel().catch(() => undefined);
        return { bytes, failure: new Error("the client closed the connection") };
      }
      try {
        chunk = await reader.read();
      } catch (error) {
        c.close();
        return { bytes, failure: error };
      }
    }
    return { bytes, failure: null };
  }

  private writeHead(status: number, headers: Headers, body: Uint8Array | null): void {
    this.headers_sent = true;
    const c = this.connection;
    // Another request may follow only if this one's body was read whole and both sides agree.
    if (!this.body_complete || !this.head.keep_alive || c.closing) headers.set("connection", "close");
    if ((headers.get("connection") ?? "").toLowerCase() === "close") c.closing = true;
    let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}\r\n`;
    for (const [name, value] of headers) text += `${name}: ${value}\r\n`;
    text += `date: ${httpNow()}\r\n\r\n`;
    if (body === null || body.byteLength === 0) {
      c.write(Buffer.from(text, "latin1"));
      return;
    }
    if (body.byteLength > coalesce_body_bytes_max) {
      c.write(Buffer.from(text, "latin1"));
      c.write(body);
      return;
    }
    const out = Buffer.allocUnsafe(text.length + body.byteLength);
    out.write(text, 0, "latin1");
    out.set(body, text.length);
    c.write(out);
  }
}

let date_second = -1;
let date_text = "";

/** The Date header, formatted once a second. */
function httpNow(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== date_second) {
    date_second = second;
    date_text = new Date(now).toUTCString();
  }
  return date_text;
}

/** A request body between the socket and the handler: pulled, bounded, paused when full. */
class BodyQueue {
  private readonly pieces: Uint8Array[] = [];
  private bytes = 0;
  private received = 0;
  ended = false;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  private continue_sent = false;

  constructor(
    private readonly connection: Connection,
    private readonly expect_continue: boolean,
    private readonly bytes_max: number,
  ) {}

  push(pieces: readonly Uint8Array[], ended: boolean): void {
    for (const piece of pieces) {
      if (piece.byteLength === 0) continue;
      this.received += piece.byteLength;
      if (this.received > this.bytes_max) {
        this.fail(new HttpError(413, `a request body is at most ${this.bytes_max} bytes`));
        return;
      }
      // Kept as views, not copied: Bun 1.4.5 gives each read a buffer of its own (checked: 194
      // reads of a 96 MiB stream kept to the end, with pauses, none reused or overwritten; the
      // backpressure test in http_server.test.ts checks the bytes too). A copy cost about 0.3 ms
      // of gateway CPU per MB uploaded.
      this.pieces.push(piece);
      this.bytes += piece.byteLength;
    }
    if (ended) this.ended = true;
    if (this.bytes > body_buffer_bytes_max) this.connection.pause();
    this.notify();
  }

  fail(error: Error): void {
    if (this.ended || this.failure !== null) return;
    this.failure = error;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          // A client that sent its body without waiting needs no 100 Continue.
          if (this.expect_continue && !this.continue_sent && !this.ended && this.received === 0) {
            this.continue_sent = true;
            this.connection.write(continue_response);
          }
          while (this.pieces.length === 0 && !this.ended && this.failure === null) await new Promise<void>((r) => (this.wake = r));
          const piece = this.pieces.shift();
          if (piece !== undefined) {
            this.bytes -= piece.byteLength;
            if (this.bytes <= body_buffer_bytes_max / 2) this.connection.resume();
            controller.enqueue(piece);
          } else if (this.failure !== null) controller.error(this.failure);
          else controller.close();
        },
        cancel: () => {
          this.pieces.length = 0;
          this.bytes = 0;
        },
      },
      { highWaterMark: 0 },
    );
  }
}

/** One TCP connection: its unparsed bytes, the request being served, its output queue. */
class Connection {
  /** Bytes received and not yet parsed (a partial head, or pipelined requests). */
  private buf = new Uint8Array(0);
  private buf_length = 0;
  private searched = 0;
  private decoder: BodyDecoder | null = null;
  private queue: BodyQueue | null = null;
  /** A request is being served. */
  busy = false;
  closing = false;
  closed = false;
  private paused = false;
  /** performance.now() of the last byte in or out. */
  last_activity = performance.now();
  /** When the head being received began; null between requests. */
  head_started: number | null = null;
  private readonly out: Uint8Array[] = [];
  private drained: Array<(ok: boolean) => void> = [];

  constructor(
    private readonly socket: Sock,
    private readonly server: Server,
  ) {}

  get idle(): boolean {
    return !this.busy && this.buf_length === 0;
  }

  pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.socket.resume();
  }

  /** True when written whole now; otherwise the rest waits for drain (flushed() says when). */
  write(bytes: Uint8Array): boolean {
    if (this.closed) return false;
    if (this.out.length > 0) {
      this.out.push(bytes);
      return false;
    }
    const n = this.socket.write(bytes);
    if (n > 0) this.last_activity = performance.now();
    if (n >= bytes.byteLength) return true;
    this.out.push(bytes.subarray(Math.max(n, 0)));
    return false;
  }

  /** Resolves when everything written has gone to the kernel (true) or the connection closed (false). */
  flushed(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.out.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => this.drained.push(resolve));
  }

  onDrain(): void {
    while (this.out.length > 0) {
      const bytes = this.out[0]!;
      const n = this.socket.write(bytes);
      if (n > 0) this.last_activity = performance.now();
      if (n < bytes.byteLength) {
        this.out[0] = bytes.subarray(Math.max(n, 0));
        return;
      }
      this.out.shift();
    }
    this.settleDrained(true);
    if (this.closing && !this.busy) this.socket.end();
  }

  private settleDrained(ok: boolean): void {
    const waiters = this.drained;
    this.drained = [];
    for (const w of waiters) w(ok);
  }

  /** hard: reset at once (a client that stopped reading cannot take a graceful close either). */
  close(hard = false): void {
    if (this.closed) return;
    this.closed = true;
    this.queue?.fail(new Error("the connection closed before the body ended"));
    this.settleDrained(false);
    if (hard) this.socket.terminate();
    else this.socket.end();
    this.server.forget(this);
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue?.fail(new Error("the connection closed before the body ended"));
    this.settleDrained(false);
    this.server.forget(this);
  }

  onData(data: Uint8Array): void {
    if (this.closed) return;
    this.last_activity = performance.now();
    // Refused, or answered with "connection: close": nothing more is read (nor kept).
    if (this.closing && !this.busy) return;
    if (this.decoder !== null && !this.decoder.done) {
      this.feedBody(data);
      return;
    }
    this.append(data);
    if (!this.busy) this.nextRequest();
    // Pipelined requests wait while one is served: bounded like a head.
    else if (this.buf_length > header_bytes_max) this.pause();
  }

  private append(data: Uint8Array): void {
    if (data.byteLength === 0) return;
    if (this.buf_length + data.byteLength > this.buf.byteLength) {
      const grown = new Uint8Array(Math.max(this.buf_length + data.byteLength, this.buf.byteLength * 2, 4096));
      grown.set(this.buf.subarray(0, this.buf_length));
      this.buf = grown;
    }
    this.buf.set(data, this.buf_length);
    this.buf_length += data.byteLength;
  }

  private feedBody(data: Uint8Array): void {
    let decoded;
    try {
      decoded = this.decoder!.push(data);
    } catch (error) {
      // Bad chunked framing: the body fails, and the connection cannot be read any further.
      this.queue?.fail(error as Error);
      this.closing = true;
      this.pause();
      return;
    }
    this.queue?.push(decoded.pieces, decoded.done);
    if (decoded.consumed < data.byteLength) this.append(data.subarray(decoded.consumed));
  }

  /** Parses and starts the next request in the buffer, if a whole head is there. */
  nextRequest(): void {
    if (this.closed || this.closing || this.busy || this.buf_length === 0) return;
    if (this.head_started === null) this.head_started = performance.now();
    const end = headEnd(this.buf, this.buf_length, this.searched);
    if (end < 0) {
      if (this.buf_length > header_bytes_max)
        return this.refuse(new HttpError(400, `the request line and headers are over ${header_bytes_max} bytes`));
      this.searched = this.buf_length;
      return;
    }
    let head: RequestHead;
    try {
      head = parseHead(this.buf, end);
    } catch (error) {
      if (error instanceof HttpError) return this.refuse(error);
      throw error;
    }
    const rest = this.buf.slice(end, this.buf_length);
    this.buf_length = 0;
    this.searched = 0;
    this.head_started = null;
    this.busy = true;
    this.decoder = new BodyDecoder(head.framing);
    // An empty body with Expect: 100-continue (aws s3 sync of an empty file) is answered with
    // 100 Continue before the response, as S3 does. RFC 9110 lets a server skip it, but botocore
    // then keeps that response's status for the connection's next request, whose response it
    // misreads and waits on until its read timeout (60 s): one upload of a parallel sync hung.
    if (head.expect_continue && this.decoder.done) this.write(continue_response);
    this.queue = this.decoder.done ? null : new BodyQueue(this, head.expect_continue, this.server.options.body_bytes_max);
    const exchange = new HttpExchange(this, head, this.queue);
    if (rest.byteLength > 0) {
      if (this.decoder.done) this.append(rest);
      else this.feedBody(rest);
    }
    this.server
      .serve(exchange)
      .catch(() => this.close())
      .finally(() => this.requestDone(exchange));
  }

  private requestDone(exchange: HttpExchange): void {
    this.busy = false;
    this.queue = null;
    if (!exchange.headers_sent) this.closing = true;
    if (this.closed) return;
    if (this.closing) {
      if (this.out.length === 0) this.socket.end();
      return;
    }
    this.decoder = null;
    // The next pipelined request waits until this response has gone out: a client that sends
    // requests and reads no responses holds one response here, not one per request.
    if (this.out.length === 0) return this.continueReading();
    this.busy = true;
    void this.flushed().then((ok) => {
      this.busy = false;
      if (ok) this.continueReading();
    });
  }

  private continueReading(): void {
    this.resume();
    this.nextRequest();
  }

  /** Waiting on the client: for its head, its body, or for it to take a response. A handler at
   * work on a request it has whole (waiting on the cluster) is not. */
  get waiting_on_client(): boolean {
    return !this.busy || this.queue?.ended === false || this.out.length > 0;
  }

  /** Answers a request refused before any handler saw it, then closes. */
  private refuse(error: HttpError): void {
    this.closing = true;
    this.buf_length = 0;
    this.server.options.log?.(`refused a request: ${error.status} ${error.message}`);
    const { content_type, body } = this.server.options.refusal(error.status, error.message);
    const text = `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? "Bad Request"}\r\ncontent-type: ${content_type}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\ndate: ${httpNow()}\r\n\r\n${body}`;
    this.write(Buffer.from(text, "utf8"));
    if (this.out.length === 0) this.socket.end();
  }
}

class Server implements HttpServer {
  port = 0;
  private listener: TCPSocketListener<Connection> | null = null;
  private readonly open = new Set<Connection>();
  private readonly sweeper: Timer;

  constructor(readonly options: HttpServerOptions) {
    this.sweeper = setInterval(() => this.sweep(), sweep_interval_ms);
    this.sweeper.unref();
  }

  start(): void {
    this.listener = Bun.listen<Connection>({
      hostname: this.options.hostname,
      port: this.options.port,
      socket: {
        binaryType: "uint8array",
        open: (socket) => {
          const c = new Connection(socket, this);
          socket.data = c;
          if (this.open.size >= this.options.connections_max) {
            c.close();
            return;
          }
          this.open.add(c);
        },
        data: (socket, data) => socket.data.onData(data),
        drain: (socket) => socket.data.onDrain(),
        close: (socket) => socket.data?.onClose(),
        error: (socket) => socket.data?.onClose(),
      },
    });
    this.port = this.listener.port;
  }

  serve(exchange: HttpExchange): Promise<void> {
    return this.options.handler(exchange);
  }

  forget(c: Connection): void {
    this.open.delete(c);
  }

  connections(): number {
    return this.open.size;
  }

  stopAccepting(): void {
    this.listener?.stop(false);
    this.listener = null;
    for (const c of [...this.open]) {
      c.closing = true;
      if (c.idle) c.close();
    }
  }

  closeAll(): void {
    clearInterval(this.sweeper);
    this.listener?.stop(true);
    this.listener = null;
    for (const c of [...this.open]) c.close(true);
  }

  private sweep(): void {
    const now = performance.now();
    for (const c of [...this.open]) {
      if (c.head_started !== null && !c.busy && now - c.head_started > this.options.headers_timeout_ms) c.close(true);
      else if (c.waiting_on_client && now - c.last_activity > this.options.idle_timeout_ms) c.close(true);
    }
  }
}

/** Listens; throws (EADDRINUSE and the like) when it cannot. */
export function startHttpServer(options: HttpServerOptions): HttpServer {
  const server = new Server(options);
  try {
    server.start();
  } catch (error) {
    server.closeAll();
    throw error;
  }
  return server;
}
