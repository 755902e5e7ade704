/**
 * A minimal etcd v3 KV client for the benchmark: unary gRPC (Put, Range) over node:http2 with the
 * few protobuf fields it needs encoded by hand, so etcd is measured on its native API (no JSON
 * gateway translating inside the server, no base64) and the bench needs no dependency.
 *
 * Range is linearizable (serializable = false, etcd's default). One HTTP/2 connection per client,
 * as ToastyFS's client has one connection per replica it talks to. On any error the client moves
 * to the next endpoint and retries until its operation deadline.
 */
import * as http2 from "node:http2";
import { concat } from "../lib/util/bytes.ts";

const encoder = new TextEncoder();

/** Status and leadership come from the JSON gateway (off the measured path). */
export interface EtcdMemberStatus {
  member_id: string;
  leader: string;
  raft_index: number;
}

export async function etcdStatus(endpoint: string, timeout_ms = 1000): Promise<EtcdMemberStatus | null> {
  try {
    const response = await fetch(`http://${endpoint}/v3/maintenance/status`, {
      method: "POST",
      body: "{}",
      signal: AbortSignal.timeout(timeout_ms),
    });
    if (!response.ok) return null;
    const body = (await response.json()) as { header?: { member_id?: string }; leader?: string; raftIndex?: string };
    if (body.header?.member_id === undefined || body.leader === undefined) return null;
    return { member_id: body.header.member_id, leader: body.leader, raft_index: Number(body.raftIndex ?? 0) };
  } catch {
    return null;
  }
}

export class EtcdClient {
  private session: http2.ClientHttp2Session | null = null;
  private endpoint: number;
  errors = 0;

  constructor(
    private readonly endpoints: string[],
    first_endpoint: number,
    private readonly attempt_timeout_ms = 3000,
    private readonly operation_timeout_ms = 30_000,
  ) {
    this.endpoint = first_endpoint % endpoints.length;
  }

  async put(key: string, value: Uint8Array): Promise<void> {
    await this.unary("/etcdserverpb.KV/Put", concat([field(1, encoder.encode(key)), field(2, value)]));
  }

  /** The value's bytes; throws if the key is absent. */
  async get(key: string): Promise<Uint8Array> {
    const reply = await this.unary("/etcdserverpb.KV/Range", field(1, encoder.encode(key)));
    const value = rangeValue(reply);
    if (value === null) throw new Error(`etcd: ${key} not found`);
    return value;
  }

  close(): void {
    this.session?.close();
    this.session = null;
  }

  private async unary(path: string, message: Uint8Array): Promise<Uint8Array> {
    const deadline = performance.now() + this.operation_timeout_ms;
    const framed = grpcFrame(message);
    for (;;) {
      try {
        return await this.attempt(path, framed);
      } catch (error) {
        this.errors += 1;
        if (performance.now() >= deadline) throw error;
        this.session?.destroy();
        this.session = null;
        this.endpoint = (this.endpoint + 1) % this.endpoints.length;
        await Bun.sleep(10); // back off a little: a refused connection fails at once
      }
    }
  }

  private connect(): http2.ClientHttp2Session {
    const current = this.session;
    if (current !== null && !current.closed && !current.destroyed) return current;
    const session = http2.connect(`http://${this.endpoints[this.endpoint]}`);
    session.on("error", () => {}); // surfaces through the request
    session.on("close", () => {
      if (this.session === session) this.session = null;
    });
    this.session = session;
    return session;
  }

  private attempt(path: string, framed: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      let request: http2.ClientHttp2Stream;
      try {
        request = this.connect().request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
      } catch (error) {
        reject(error);
        return;
      }
      const chunks: Buffer[] = [];
      let grpc_status: string | undefined;
      let grpc_message: string | undefined;
      const timer = setTimeout(() => {
        request.close(http2.constants.NGHTTP2_CANCEL);
        reject(new Error(`etcd: no answer within ${this.attempt_timeout_ms} ms`));
      }, this.attempt_timeout_ms);
      const headers = (h: http2.IncomingHttpHeaders): void => {
        if (h["grpc-status"] !== undefined) grpc_status = String(h["grpc-status"]);
        if (h["grpc-message"] !== undefined) grpc_message = String(h["grpc-message"]);
      };
      request.on("response", headers);
      request.on("trailers", headers);
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      request.on("close", () => {
        clearTimeout(timer);
        if (grpc_status !== "0") {
          reject(new Error(`etcd: grpc status ${grpc_status ?? "missing"}${grpc_message ? `: ${decodeURIComponent(grpc_message)}` : ""}`));
          return;
        }
        const body = Buffer.concat(chunks);
        if (body.length < 5) return reject(new Error("etcd: short gRPC reply"));
        const length = body.readUInt32BE(1);
        if (body.length < 5 + length) return reject(new Error("etcd: truncated gRPC reply"));
        resolve(new Uint8Array(body.buffer, body.byteOffset + 5, length));
      });
      request.end(framed);
    });
  }
}

// --- gRPC framing and the few protobuf fields used

function grpcFrame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A length-delimited field (wire type 2). */
function field(number: number, bytes: Uint8Array): Uint8Array {
  const head = [(number << 3) | 2, ...varint(bytes.length)];
  const out = new Uint8Array(head.length + bytes.length);
  out.set(head, 0);
  out.set(bytes, head.length);
  return out;
}

/** Calls fn for each field of a message: its number and, for wire type 2, its bytes. */
function forEachField(message: Uint8Array, fn: (number: number, bytes: Uint8Array | null) => void): void {
  let at = 0;
  const readVarint = (): number => {
    let result = 0;
    let scale = 1;
    for (;;) {
      if (at >= message.length) throw new Error("etcd: truncated protobuf");
      const b = message[at++]!;
      result += (b & 127) * scale;
      if (b < 128) return result;
      scale *= 128;
    }
  };
  while (at < message.length) {
    const tag = readVarint();
    const wire = tag & 7;
    const number = Math.floor(tag / 8);
    if (wire === 0) {
      readVarint();
      fn(number, null);
    } else if (wire === 2) {
      const length = readVarint();
      fn(number, message.subarray(at, at + length));
      at += length;
    } else if (wire === 1) {
      at += 8;
    } else if (wire === 5) {
      at += 4;
    } else {
      throw new Error(`etcd: unsupported protobuf wire type ${wire}`);
    }
  }
}

/** RangeResponse.kvs[0].value (kvs = field 2, KeyValue.value = field 5), or null when absent. */
function rangeValue(reply: Uint8Array): Uint8Array | null {
  let value: Uint8Array | null = null;
  forEachField(reply, (number, bytes) => {
    if (number !== 2 || bytes === null || value !== null) return;
    value = new Uint8Array(0);
    forEachField(bytes, (n, b) => {
      if (n === 5 && b !== null) value = b;
    });
  });
  return value;
}
