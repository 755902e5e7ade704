import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as net from "node:net";
import { Client } from "../client/client.ts";
import { TestCluster, waitFor } from "../../tests/support/cluster.ts";
import { signHeaders, signedFetch, type S3Key } from "../../tests/support/s3_sign.ts";
import { Credentials } from "./credentials.ts";
import { requests_in_flight_max, startGateway, type Gateway } from "./gateway.ts";
import { splitTarget } from "./gateway_http.ts";
import { GatewayMetrics } from "./gateway_metrics.ts";
import type { S3Handler } from "./request.ts";
import type { S3Operation } from "./router.ts";

const key: S3Key = { access_key: "unit-key", secret: "unit-secret-key", region: "us-east-1" };
let cluster: TestCluster;
let client: Client;
let gateway: Gateway;
const logs: string[] = [];

// GetBucketLocation stands in for a handler with a bug.
const buggy: S3Handler = async () => {
  const nothing = null as unknown as { field: number };
  return new Response(String(nothing.field));
};

beforeAll(async () => {
  cluster = await TestCluster.start(1);
  client = new Client({ addresses: cluster.addresses });
  gateway = await startGateway({
    listen: { host: "127.0.0.1", port: 0 },
    client,
    credentials: new Credentials(new Map([[key.access_key, key.secret]])),
    region: "us-east-1",
    domain: "s3.test",
    log: (level, text) => logs.push(`${level} ${text}`),
    metrics: { host: "127.0.0.1", port: 0 },
    handlers: new Map<S3Operation, S3Handler>([["GetBucketLocation", buggy]]),
  });
  expect((await signedFetch(gateway.url, key, { method: "PUT", path: "/unit" })).status).toBe(200);
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await client?.close();
  await cluster?.destroy();
});

describe("the gateway", () => {
  test("a bug in a handler is InternalError, logged with its stack; the gateway keeps serving", async () => {
    const r = await signedFetch(gateway.url, key, { method: "GET", path: "/unit", query: "location" });
    expect(r.status).toBe(500);
    expect(await r.text()).toContain("<Code>InternalError</Code>");
    expect(logs.some((l) => l.startsWith("error ") && l.includes("bug:") && l.includes("TypeError") && l.includes("gateway.test.ts"))).toBe(
      true,
    );
    expect((await signedFetch(gateway.url, key, { method: "HEAD", path: "/unit" })).status).toBe(200);
  });

  test(`beyond ${requests_in_flight_max} requests in flight the next is 503 SlowDown at once; then it serves again`, async () => {
    const port = Number(new URL(gateway.url).port);
    const path = "/unit/held";
    // Requests whose bodies never come: each stays in flight until its connection closes.
    const sockets = await Promise.all(
      Array.from(
        { length: requests_in_flight_max },
        () =>
          new Promise<net.Socket>((resolve) => {
            const headers = signHeaders(key, { method: "PUT", host: `127.0.0.1:${port}`, path, headers: { "content-length": "10" } });
            const socket = net.connect(port, "127.0.0.1", () => {
              socket.write(
                `PUT ${path} HTTP/1.1\r\n${Object.entries(headers)
                  .map(([n, v]) => `${n}: ${v}\r\n`)
                  .join("")}\r\n`,
              );
              resolve(socket);
            });
            socket.on("error", () => undefined);
          }),
      ),
    );
    try {
      await waitFor("every held request to be in flight", () => gateway.metrics.in_flight === requests_in_flight_max, 10_000);
      const refused = await signedFetch(gateway.url, key, { method: "GET", path: "/unit/other" });
      expect(refused.status).toBe(503);
      expect(await refused.text()).toContain("<Code>SlowDown</Code>");
      expect(gateway.metrics.refused).toBeGreaterThanOrEqual(1);
    } finally {
      for (const s of sockets) s.destroy();
    }
    await waitFor("the held requests to end", () => gateway.metrics.in_flight === 0, 10_000);
    expect((await signedFetch(gateway.url, key, { method: "GET", path: "/unit/held" })).status).toBe(404);
  }, 30_000);

  test("with a domain, a Host of BUCKET.DOMAIN names the bucket (virtual-hosted style); path style still works", async () => {
    const port = new URL(gateway.url).port;
    const host = `unit.s3.test:${port}`;
    const headers = signHeaders(key, { method: "PUT", host, path: "/vh-key" });
    const put = await fetch(`${gateway.url}/vh-key`, { method: "PUT", headers, body: "virtual" });
    expect(put.status).toBe(200);
    const get = await signedFetch(gateway.url, key, { method: "GET", path: "/unit/vh-key" });
    expect(await get.text()).toBe("virtual");
  });

  test("the metrics endpoint serves /metrics and /health", async () => {
    const text = await (await fetch(`${gateway.metrics_url}/metrics`)).text();
    expect(text).toMatch(/^toastyfs_s3_requests_total\{operation="CreateBucket",status="200"\} 1$/m);
    expect(text).toMatch(/^toastyfs_s3_requests_total\{operation="GetBucketLocation",status="500"\} 1$/m);
    expect(text).toMatch(/^toastyfs_s3_requests_refused_total [1-9]\d*$/m);
    expect((await fetch(`${gateway.metrics_url}/health`)).status).toBe(200);
    expect((await fetch(`${gateway.metrics_url}/nothing`)).status).toBe(404);
  });
});

describe("pieces", () => {
  test("splitTarget keeps the path and query exactly as sent", () => {
    expect(splitTarget("/b/a/../c%2Fd?x=1&y=a+b?c")).toEqual({ path: "/b/a/../c%2Fd", query: "x=1&y=a+b?c" });
    expect(splitTarget("/")).toEqual({ path: "/", query: "" });
  });

  test("GatewayMetrics renders counts, sums and bytes in Prometheus text", () => {
    const m = new GatewayMetrics();
    m.observe("PutObject", 200, 0.5, 100, 0);
    m.observe("PutObject", 200, 0.25, 50, 0);
    m.observe("GetObject", 404, 0.1, 0, 200);
    const lines = m.render().split("\n");
    for (const line of [
      'toastyfs_s3_requests_total{operation="PutObject",status="200"} 2',
      'toastyfs_s3_requests_total{operation="GetObject",status="404"} 1',
      'toastyfs_s3_request_duration_seconds_sum{operation="PutObject"} 0.75',
      'toastyfs_s3_request_duration_seconds_count{operation="PutObject"} 2',
      "toastyfs_s3_received_bytes_total 150",
      "toastyfs_s3_sent_bytes_total 200",
    ])
      expect(lines).toContain(line);
  });
});
