/**
 * For unit tests of the gateway's handlers: a real cluster (one replica: the handlers' logic, not
 * replication, is under test), a client and an S3Context, and S3Requests made by hand as the
 * gateway would make them after routing, authentication and body verification.
 */
import { Client } from "../../lib/client/client.ts";
import type { S3Context, S3Request } from "../../lib/s3/request.ts";
import { TestCluster } from "./cluster.ts";

export interface HandlerWorld {
  cluster: TestCluster;
  client: Client;
  context: S3Context;
  logs: string[];
  close(): Promise<void>;
}

/** What the gateway gives its handlers, around one client: region us-east-1, the wall clock. */
export function handlerContext(client: Client, log: S3Context["log"] = () => {}): S3Context {
  return { client, region: "us-east-1", now: () => Date.now(), log };
}

export async function handlerWorld(replicas = 1): Promise<HandlerWorld> {
  const cluster = await TestCluster.start(replicas);
  const client = new Client({ addresses: cluster.addresses });
  const logs: string[] = [];
  const context = handlerContext(client, (level, text) => logs.push(`${level} ${text}`));
  return {
    cluster,
    client,
    context,
    logs,
    async close() {
      await client.close();
      await cluster.destroy();
    },
  };
}

let next_id = 0;

export interface RequestParts {
  method: string;
  bucket?: string | null;
  key?: string | null;
  query?: string;
  headers?: Record<string, string>;
  /** The verified body; its size is taken from it unless `size` says otherwise. */
  body?: Uint8Array | string | AsyncIterable<Uint8Array>;
  size?: number | null;
  /** The access key that signed it (default AKTEST). */
  access_key?: string;
}

export function s3Request(p: RequestParts): S3Request {
  const bytes = typeof p.body === "string" ? new TextEncoder().encode(p.body) : p.body;
  const body: AsyncIterable<Uint8Array> =
    bytes === undefined
      ? (async function* () {})()
      : bytes instanceof Uint8Array
        ? (async function* () {
            yield bytes;
          })()
        : bytes;
  const size = p.size !== undefined ? p.size : bytes instanceof Uint8Array ? bytes.length : bytes === undefined ? 0 : null;
  next_id += 1;
  return {
    id: `TEST${String(next_id).padStart(12, "0")}`,
    method: p.method,
    bucket: p.bucket ?? null,
    key: p.key ?? null,
    query: new URLSearchParams(p.query ?? ""),
    headers: new Headers(p.headers ?? {}),
    access_key: p.access_key ?? "AKTEST",
    body,
    size,
  };
}
