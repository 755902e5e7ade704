/**
 * Calling lib/s3 handlers directly against a real cluster, without the HTTP gateway: hand-made
 * S3Requests (the body an async generator, as the gateway's payload decoder gives it), a context
 * per Client (several Clients stand for several gateway processes), and the response's XML parsed.
 */
import { Client } from "../../lib/client/client.ts";
import { bucketRecordKey } from "../../lib/s3/names.ts";
import type { S3Context, S3Handler, S3Request } from "../../lib/s3/request.ts";
import { S3Error } from "../../lib/s3/s3_error.ts";
import { parseXml, type XmlElement } from "../../lib/s3/xml.ts";
import type { TestCluster } from "./cluster.ts";
import { handlerContext, s3Request as handlerRequest } from "./s3_handlers.ts";

export function gatewayContext(cluster: TestCluster): S3Context {
  return handlerContext(new Client({ addresses: cluster.addresses }));
}

/** A bucket as CreateBucket leaves it: its record (the value is not read by these handlers). */
export async function makeBucket(context: S3Context, bucket: string): Promise<void> {
  await context.client.put(bucketRecordKey(bucket), new Uint8Array([0xa0]));
}

/** The bytes in chunks of `chunk` bytes, as a request body arrives. */
export async function* chunked(bytes: Uint8Array, chunk = 65_536): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += chunk) yield bytes.slice(i, i + chunk);
}

export interface RequestParts {
  method?: string;
  bucket: string;
  key?: string | null;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
}

export function s3Request(r: RequestParts): S3Request {
  const body = typeof r.body === "string" ? new TextEncoder().encode(r.body) : (r.body ?? new Uint8Array(0));
  return handlerRequest({
    method: r.method ?? "GET",
    bucket: r.bucket,
    key: r.key ?? null,
    query: new URLSearchParams(r.query ?? {}).toString(),
    ...(r.headers === undefined ? {} : { headers: r.headers }),
    access_key: "test-key",
    body: chunked(body),
    size: body.length,
  });
}

/** The handler's answer: the response, or the S3Error it threw. */
export async function call(handler: S3Handler | undefined, context: S3Context, r: RequestParts): Promise<Response | S3Error> {
  if (handler === undefined) throw new Error("no handler for that operation");
  try {
    return await handler(s3Request(r), context);
  } catch (e) {
    if (e instanceof S3Error) return e;
    throw e;
  }
}

/** The response, failing the test with the S3 error if there was one. */
export async function ok(result: Response | S3Error | Promise<Response | S3Error>): Promise<Response> {
  const r = await result;
  if (r instanceof S3Error) throw new Error(`expected success, got ${r.code}: ${r.message}`);
  return r;
}

/** The S3 error code, failing the test if the call succeeded. */
export async function errorCode(result: Response | S3Error | Promise<Response | S3Error>): Promise<string> {
  const r = await result;
  if (!(r instanceof S3Error)) throw new Error(`expected an error, got HTTP ${r.status}: ${await r.text()}`);
  return r.code;
}

export async function xmlOf(response: Response): Promise<XmlElement> {
  return parseXml(await response.text());
}

export function child(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}

export function textOf(el: XmlElement, name: string): string | undefined {
  return child(el, name)?.text;
}

export function childrenNamed(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}

export function randomBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i += 65_536) crypto.getRandomValues(out.subarray(i, Math.min(size, i + 65_536)));
  return out;
}

export function md5Hex(bytes: Uint8Array): string {
  return new Bun.CryptoHasher("md5").update(bytes).digest("hex");
}
