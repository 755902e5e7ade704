import { afterEach, describe, expect, test } from "bun:test";
import { body_buffer_bytes_max, type HttpExchange, type HttpServer, type HttpServerOptions, startHttpServer } from "./http_server.ts";

const servers: HttpServer[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.closeAll();
});

function serve(handler: (exchange: HttpExchange) => Promise<void>, options: Partial<HttpServerOptions> = {}): HttpServer {
  const server = startHttpServer({
    hostname: "127.0.0.1",
    port: 0,
    handler,
    refusal: (status, message) => ({ content_type: "text/plain", body: `refused ${status}: ${message}` }),
    body_bytes_max: 64 * 1024 * 1024,
    connections_max: 16,
    idle_timeout_ms: 60_000,
    headers_timeout_ms: 60_000,
    ...options,
  });
  servers.push(server);
  return server;
}

/** A raw TCP client: what it received, whether the server closed it. */
interface Raw {
  text(): string;
  closed(): boolean;
  write(data: string | Uint8Array): number;
  until(what: string, condition: () => boolean, ms?: number): Promise<void>;
  end(): void;
}

async function raw(port: number): Promise<Raw> {
  let received = "";
  let closed = false;
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      binaryType: "uint8array",
      data(_s, data) {
        received += Buffer.from(data).toString("latin1");
      },
      close() {
        closed = true;
      },
    },
  });
  return {
    text: () => received,
    closed: () => closed,
    write: (data) => socket.write(data),
    async until(what, condition, ms = 5000) {
      const deadline = performance.now() + ms;
      while (!condition()) {
        if (performance.now() > deadline)
          throw new Error(`timed out waiting for ${what}; received ${JSON.stringify(received.slice(0, 300))}`);
        await Bun.sleep(5);
      }
    },
    end: () => socket.end(),
  };
}

function count(text: string, what: string): number {
  return text.split(what).length - 1;
}

/** Answers with the method, target and body it read. */
async function echo(exchange: HttpExchange): Promise<void> {
  const body = exchange.body === null ? "" : Buffer.from(await new Response(exchange.body).arrayBuffer()).toString("latin1");
  await exchange.send(new Response(`${exchange.method} ${exchange.target} [${body}]`), false);
}

describe("the gateway's HTTP/1.1 server", () => {
  test("keep-alive: requests one after another on one connection, the target exactly as sent", async () => {
    const c = await raw(serve(echo).port);
    c.write("GET /b/a/../%2e%2E/k%2F?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    await c.until("the first response", () => c.text().includes("]"));
    expect(c.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(c.text()).toContain("content-length: 30\r\n");
    expect(c.text()).toContain("\r\n\r\nGET /b/a/../%2e%2E/k%2F?x=1 []");
    c.write("PUT /two HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    await c.until("the second response", () => c.text().includes("PUT /two [abc]"));
    expect(c.closed()).toBe(false);
  });

  test("pipelined requests are answered in order, one at a time", async () => {
    let running = 0;
    let most = 0;
    const server = serve(async (exchange) => {
      running++;
      most = Math.max(most, running);
      await Bun.sleep(exchange.target === "/1" ? 30 : 0);
      running--;
      await echo(exchange);
    });
    const c = await raw(server.port);
    c.write(
      "PUT /1 HTTP/1.1\r\nContent-Length: 1\r\n\r\naGET /2 HTTP/1.1\r\n\r\nPUT /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nc\r\n0\r\n\r\n",
    );
    await c.until("three responses", () => count(c.text(), "HTTP/1.1 200") === 3 && c.text().endsWith("]"));
    const bodies = [...c.text().matchAll(/(PUT|GET) \/\d \[\w*\]/g)].map((m) => m[0]);
    expect(bodies).toEqual(["PUT /1 [a]", "GET /2 []", "PUT /3 [c]"]);
    expect(most).toBe(1);
  });

  test("Expect: 100-continue is answered when the handler reads the body; a refusal before that closes the connection", async () => {
    const server = serve(async (exchange) => {
      if (exchange.target === "/refuse") {
        await exchange.send(new Response("no", { status: 403 }), false);
        return;
      }
      await echo(exchange);
    });
    const c = await raw(server.port);
    c.write("PUT /ok HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    await c.until("100 Continue", () => c.text().includes("HTTP/1.1 100 Continue\r\n\r\n"));
    c.write("body");
    await c.until("the response", () => c.text().includes("PUT /ok [body]"));
    const r = await raw(server.port);
    r.write("PUT /refuse HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    await r.until("the refusal and the close", () => r.closed());
    expect(r.text()).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
    expect(r.text()).toContain("connection: close\r\n");
    expect(r.text()).not.toContain("100 Continue");
  });

  test("Expect: 100-continue with an empty body gets 100 Continue before the response, and the connection serves the next request", async () => {
    const server = serve(echo);
    const c = await raw(server.port);
    c.write("PUT /empty HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n");
    await c.until("the response", () => c.text().includes("PUT /empty []"));
    expect(c.text()).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
    expect(count(c.text(), "100 Continue")).toBe(1);
    c.write("PUT /next HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
    await c.until("the next response", () => c.text().includes("PUT /next [x]"));
    expect(count(c.text(), "100 Continue")).toBe(1);
  });

  test("a handler that does not read pauses the socket: the client is held back, nothing is lost", async () => {
    const size = 48 * 1024 * 1024;
    let release = (): void => undefined;
    const released = new Promise<void>((r) => (release = r));
    let got = 0;
    // Every byte is checked after it waited in the queue: the queue keeps the socket's read
    // buffers as views, which is right only while Bun never reuses one.
    const byteAt = (offset: number): number => ((offset * 2654435761) >>> 24) & 0xff;
    let mismatches = 0;
    const server = serve(async (exchange) => {
      await released;
      for await (const piece of exchange.body!) {
        for (let i = 0; i < piece.byteLength; i += 61) if (piece[i] !== byteAt(got + i)) mismatches++;
        got += piece.byteLength;
      }
      await exchange.send(new Response(`got ${got} mismatches ${mismatches}`), false);
    });
    const c = await raw(server.port);
    c.write(`PUT /big HTTP/1.1\r\nContent-Length: ${size}\r\n\r\n`);
    const all = new Uint8Array(size);
    for (let i = 0; i < size; i++) all[i] = byteAt(i);
    const block = (from: number): Uint8Array => all.subarray(from, Math.min(size, from + 1024 * 1024));
    let sent = 0;
    // Write until the socket takes no more: with the handler not reading, well before the end.
    for (let stalls = 0; sent < size && stalls < 20;) {
      const piece = block(sent);
      const n = c.write(piece);
      sent += n;
      if (n < piece.length) {
        stalls++;
        await Bun.sleep(10);
      }
    }
    expect(sent).toBeLessThan(size / 2);
    expect(sent).toBeGreaterThan(body_buffer_bytes_max);
    release();
    await c.until(
      "the body to be read",
      () => {
        while (sent < size) {
          const n = c.write(block(sent));
          sent += n;
          if (n === 0) break;
        }
        return c.text().includes(`got ${size} mismatches 0`);
      },
      20_000,
    );
  }, 30_000);

  test("a body cut short by a closed connection fails the body stream", async () => {
    let failure: unknown = null;
    const done = Promise.withResolvers<void>();
    const server = serve(async (exchange) => {
      try {
        await new Response(exchange.body).arrayBuffer();
      } catch (e) {
        failure = e;
      }
      done.resolve();
    });
    const c = await raw(server.port);
    c.write("PUT /cut HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly this");
    await Bun.sleep(20);
    c.end();
    await done.promise;
    expect(String(failure)).toContain("closed before the body ended");
  });

  test("bad heads are refused with their status and the connection closed; the server keeps serving", async () => {
    const server = serve(echo);
    for (const [text, status] of [
      ["GARBAGE\r\n\r\n", 400],
      [`GET / HTTP/1.1\r\nX: ${"a".repeat(32 * 1024)}`, 400],
      [`GET / HTTP/1.1\r\n${"a: b\r\n".repeat(200)}\r\n`, 431],
      ["PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501],
      ["PUT / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ] as const) {
      const c = await raw(server.port);
      c.write(text);
      await c.until(`the refusal of ${JSON.stringify(text.slice(0, 30))}`, () => c.closed());
      expect(c.text()).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(c.text()).toContain(`refused ${status}:`);
    }
    const ok = await raw(server.port);
    ok.write("GET /still HTTP/1.1\r\n\r\n");
    await ok.until("a response", () => ok.text().includes("GET /still []"));
  });

  test("bad chunked framing fails the body and closes the connection", async () => {
    const server = serve(async (exchange) => {
      const error = await new Response(exchange.body).arrayBuffer().then(
        () => null,
        (e: unknown) => e,
      );
      await exchange.send(new Response(`body failed: ${String(error)}`, { status: 400 }), false);
    });
    const c = await raw(server.port);
    c.write("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    await c.until("the close", () => c.closed());
    expect(c.text()).toContain("body failed: Error: not a chunk size");
  });

  test("a connection idle too long, or a head that never ends, is closed", async () => {
    const server = serve(echo, { idle_timeout_ms: 200, headers_timeout_ms: 200 });
    const idle = await raw(server.port);
    const slow = await raw(server.port);
    slow.write("GET / HTTP/1.1\r\n");
    await idle.until("the idle connection to be closed", () => idle.closed(), 5000);
    await slow.until("the slow head to be closed", () => slow.closed(), 5000);
    expect(server.connections()).toBe(0);
  });

  test("a handler that takes longer than the idle timeout (waiting on the cluster, not the client) keeps its connection", async () => {
    const server = serve(
      async (exchange) => {
        await Bun.sleep(1500);
        await echo(exchange);
      },
      { idle_timeout_ms: 200 },
    );
    const c = await raw(server.port);
    c.write("PUT /slow HTTP/1.1\r\nContent-Length: 2\r\n\r\nok");
    await c.until("the response", () => c.text().includes("PUT /slow [ok]"), 5000);
  });

  test("beyond connections_max a new connection is closed at once", async () => {
    const server = serve(echo, { connections_max: 2 });
    const a = await raw(server.port);
    const b = await raw(server.port);
    await Bun.sleep(20);
    const c = await raw(server.port);
    await c.until("the extra connection to be closed", () => c.closed());
    expect(a.closed() || b.closed()).toBe(false);
  });

  test("HEAD and 204/304 carry no body; HTTP/1.0 closes after its response", async () => {
    const server = serve(async (exchange) => {
      const status = Number(exchange.target.slice(1));
      await exchange.send(new Response(null, { status, headers: { etag: '"e"' } }), exchange.method === "HEAD");
    });
    const c = await raw(server.port);
    c.write("GET /204 HTTP/1.1\r\n\r\nGET /304 HTTP/1.1\r\n\r\n");
    await c.until("two responses", () => count(c.text(), "\r\n\r\n") === 2);
    expect(c.text()).not.toContain("content-length");
    const old = await raw(server.port);
    old.write("GET /200 HTTP/1.0\r\n\r\n");
    await old.until("the close", () => old.closed());
    expect(old.text()).toContain("content-length: 0\r\n");
    expect(old.text()).toContain("connection: close\r\n");
  });
});
