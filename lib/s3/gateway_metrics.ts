/**
 * The gateway's Prometheus metrics (`toastyfs s3 --metrics HOST:PORT`, /metrics): requests by
 * operation and status, bytes received and sent, and latency (sum and count) per operation, from
 * the request's arrival to the last byte of its response. /health answers 200 when a majority of
 * the cluster's replicas answer a status probe and one of them is primary, 503 otherwise.
 */
import { clusterStatus } from "../client/client.ts";
import type { AuthKeys } from "../net/auth/secret.ts";
import type { TlsFiles } from "../net/tls.ts";
import type { Address } from "../net/address.ts";

/** How long /health waits for each replica's status answer. */
export const health_probe_timeout_ms = 1000;

export class GatewayMetrics {
  /** "operation status" -> requests. */
  readonly requests = new Map<string, number>();
  /** operation -> [seconds summed, count]. */
  readonly latency = new Map<string, { sum_s: number; count: number }>();
  bytes_received = 0;
  bytes_sent = 0;
  in_flight = 0;
  /** Requests answered 503 SlowDown because in_flight was at its limit. */
  refused = 0;

  observe(operation: string, status: number, seconds: number, bytes_in: number, bytes_out: number): void {
    const key = `${operation} ${status}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    const l = this.latency.get(operation) ?? { sum_s: 0, count: 0 };
    l.sum_s += seconds;
    l.count += 1;
    this.latency.set(operation, l);
    this.bytes_received += bytes_in;
    this.bytes_sent += bytes_out;
  }

  /** The text exposition format. */
  render(): string {
    const lines: string[] = [];
    const family = (name: string, type: string, help: string): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    family("toastyfs_s3_requests_total", "counter", "S3 requests answered, by operation and HTTP status");
    for (const [key, n] of [...this.requests].sort()) {
      const [operation, status] = key.split(" ");
      lines.push(`toastyfs_s3_requests_total{operation="${operation}",status="${status}"} ${n}`);
    }
    family("toastyfs_s3_request_duration_seconds", "summary", "From a request's arrival to its response's last byte, by operation");
    for (const [operation, l] of [...this.latency].sort()) {
      lines.push(`toastyfs_s3_request_duration_seconds_sum{operation="${operation}"} ${l.sum_s}`);
      lines.push(`toastyfs_s3_request_duration_seconds_count{operation="${operation}"} ${l.count}`);
    }
    family("toastyfs_s3_received_bytes_total", "counter", "Request body bytes received (as decoded and verified)");
    lines.push(`toastyfs_s3_received_bytes_total ${this.bytes_received}`);
    family("toastyfs_s3_sent_bytes_total", "counter", "Response body bytes sent");
    lines.push(`toastyfs_s3_sent_bytes_total ${this.bytes_sent}`);
    family("toastyfs_s3_requests_in_flight", "gauge", "Requests being served now");
    lines.push(`toastyfs_s3_requests_in_flight ${this.in_flight}`);
    family("toastyfs_s3_requests_refused_total", "counter", "Requests answered SlowDown because too many were in flight");
    lines.push(`toastyfs_s3_requests_refused_total ${this.refused}`);
    return lines.join("\n") + "\n";
  }
}

/** Whether a majority of the replicas answer and one of them says it is primary. */
export async function clusterHealthy(
  addresses: Address[],
  secret: AuthKeys | null = null,
  tls: TlsFiles | null = null,
): Promise<{ healthy: boolean; text: string }> {
  const statuses = await clusterStatus(addresses, health_probe_timeout_ms, secret, tls);
  const answered = statuses.filter((s) => s !== null).length;
  const quorum = Math.floor(addresses.length / 2) + 1;
  const primary = statuses.some((s) => s !== null && s.primary);
  const healthy = answered >= quorum && primary;
  return {
    healthy,
    text: `${healthy ? "ok" : "unhealthy"}: ${answered} of ${addresses.length} replicas answer (a majority is ${quorum}), ${primary ? "a primary is known" : "no primary"}\n`,
  };
}

/** The metrics endpoint: /metrics and /health. */
export function startMetricsServer(
  address: Address,
  metrics: GatewayMetrics,
  cluster: Address[],
  secret: AuthKeys | null = null,
  tls: TlsFiles | null = null,
): { port: number; stop(): Promise<void> } {
  const server = Bun.serve({
    hostname: address.host,
    port: address.port,
    async fetch(request) {
      const path = new URL(request.url).pathname;
      if (path === "/metrics")
        return new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
      if (path === "/health") {
        const { healthy, text } = await clusterHealthy(cluster, secret, tls);
        return new Response(text, { status: healthy ? 200 : 503, headers: { "content-type": "text/plain" } });
      }
      return new Response("toastyfs S3 gateway: see /metrics and /health\n", { status: path === "/" ? 200 : 404 });
    },
  });
  return { port: server.port ?? address.port, stop: () => server.stop(true) };
}
