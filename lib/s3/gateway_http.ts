/**
 * node:http on one side, the handlers' fetch-style Request pieces and Response on the other. The
 * gateway serves with node:http rather than Bun.serve for two measured reasons (Bun 1.4.5):
 * Bun.serve's req.url has its "." and ".." segments (and %2e spellings) resolved and "\" turned
 * into "/" before the handler sees it, so a key like "a/../b" would arrive as "b" and fail its
 * signature; node:http's req.url is the request target as sent. And Bun.serve drops a handler's
 * Content-Length on a streamed body (oven-sh/bun#10507), sending it chunked; node:http keeps it.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { S3Error } from "./s3_error.ts";

/** The request's headers, as sent (values are byte strings: one character per byte). */
export function headersOf(req: IncomingMessage): Headers {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    try {
      headers.append(raw[i]!, raw[i + 1]!);
    } catch {
      throw new S3Error("InvalidRequest", `header ${JSON.stringify(raw[i])} is not a valid HTTP header`);
    }
  }
  return headers;
}

/** The raw path and query of a request target, split at the first "?". */
export function splitTarget(target: string): { path: string; query: string } {
  const question = target.indexOf("?");
  return question < 0 ? { path: target, query: "" } : { path: target.slice(0, question), query: target.slice(question + 1) };
}

/**
 * The request body as a stream that reads from the socket only as it is pulled (so a slow
 * consumer slows the client, never buffers), errors if the connection fails before the end, and
 * refuses more than max_bytes.
 */
export function bodyStream(req: IncomingMessage, max_bytes: number): ReadableStream<Uint8Array> {
  const iterator = req[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let received = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = await iterator.next();
        if (next.done === true) {
          // node:http ends the stream of a request cut short too: only `complete` tells.
          if (!req.complete) controller.error(new Error("the connection closed before the body ended"));
          else controller.close();
          return;
        }
        received += next.value.byteLength;
        if (received > max_bytes) {
          controller.error(new S3Error("EntityTooLarge", `a request body is at most ${max_bytes} bytes`));
          return;
        }
        controller.enqueue(new Uint8Array(next.value.buffer, next.value.byteOffset, next.value.byteLength));
      },
      async cancel() {
        await iterator.return?.();
      },
    },
    { highWaterMark: 0 },
  );
}

function waitDrain(res: ServerResponse): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off("drain", drained);
      res.off("close", closed);
      resolve(ok);
    };
    const drained = () => done(true);
    const closed = () => done(false);
    res.on("drain", drained);
    res.on("close", closed);
  });
}

export interface Sent {
  bytes: number;
  /** Why the body stopped before its end (the source failed, or the client went away); null if whole. */
  failure: unknown;
}

/**
 * Writes a handler's Response: status and headers, then the body. A body whose length the handler
 * declared (Content-Length: an object) is streamed with backpressure; any other (an XML document,
 * small and bounded by its handler) is read whole first so it carries its Content-Length. A
 * source that fails before its first chunk throws (nothing is sent yet: the caller answers an
 * error); one that fails later destroys the connection: the client sees a short body.
 */
export async function send(res: ServerResponse, response: Response, head_only: boolean): Promise<Sent> {
  const headers: Record<string, string> = {};
  for (const [name, value] of response.headers) headers[name] = value;
  if (head_only || response.body === null) {
    void response.body?.cancel().catch(() => undefined);
    res.writeHead(response.status, headers);
    res.end();
    return { bytes: 0, failure: null };
  }
  if (headers["content-length"] === undefined) {
    const bytes = await response.bytes();
    headers["content-length"] = String(bytes.byteLength);
    res.writeHead(response.status, headers);
    res.end(bytes);
    return { bytes: bytes.byteLength, failure: null };
  }
  // The first chunk is read before the status goes out: a source that fails at once is still an
  // error response, and a body that is one chunk (a small object) leaves in one write.
  const reader = response.body.getReader();
  const first = await reader.read();
  const declared = Number(headers["content-length"]);
  if (first.done || first.value.byteLength === declared) {
    const bytes = first.done ? new Uint8Array(0) : first.value;
    res.writeHead(response.status, headers);
    res.end(bytes);
    if (!first.done) void reader.read().catch(() => undefined);
    return { bytes: bytes.byteLength, failure: null };
  }
  res.writeHead(response.status, headers);
  let bytes = 0;
  let chunk: Awaited<ReturnType<typeof reader.read>> = first;
  for (;;) {
    if (chunk.done) break;
    bytes += chunk.value.byteLength;
    if (res.destroyed || (!res.write(chunk.value) && !(await waitDrain(res)))) {
      void reader.cancel().catch(() => undefined);
      return { bytes, failure: new Error("the client closed the connection") };
    }
    try {
      chunk = await reader.read();
    } catch (error) {
      res.destroy();
      return { bytes, failure: error };
    }
  }
  res.end();
  return { bytes, failure: null };
}
