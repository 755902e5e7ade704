/**
 * Opens many TCP connections that never send a byte (or only part of a header), as a careless or
 * hostile program would, for the connection-limit tests. Connects in batches so the listen
 * backlog does not overflow, and keeps every socket open until close().
 */
import * as net from "node:net";

export interface IdleFlood {
  /** Connections that opened (the replica may have closed some since). */
  readonly opened: number;
  /** Of those, the ones the other end has closed. */
  readonly closed_by_peer: number;
  /** Attempts that never opened (refused, reset). */
  readonly failed: number;
  close(): void;
}

const batch_size = 256;

export async function openIdleConnections(
  port: number,
  count: number,
  options: { local_address?: string; partial_header_every?: number } = {},
): Promise<IdleFlood> {
  const sockets: net.Socket[] = [];
  const state = { opened: 0, closed_by_peer: 0, failed: 0 };
  let closing = false;
  for (let start = 0; start < count; start += batch_size) {
    const batch = Math.min(batch_size, count - start);
    await Promise.all(
      Array.from(
        { length: batch },
        (_, i) =>
          new Promise<void>((resolve) => {
            const n = start + i;
            const socket = net.connect({
              host: "127.0.0.1",
              port,
              ...(options.local_address ? { localAddress: options.local_address } : {}),
            });
            sockets.push(socket);
            let connected = false;
            socket.on("error", () => {});
            socket.on("data", () => {});
            socket.on("connect", () => {
              connected = true;
              state.opened += 1;
              // Some send a few bytes of a header and stop (a slow or stuck sender).
              if (options.partial_header_every !== undefined && n % options.partial_header_every === 0) socket.write(new Uint8Array(10));
              resolve();
            });
            socket.on("close", () => {
              if (!connected) {
                state.failed += 1;
                resolve();
              } else if (!closing) {
                state.closed_by_peer += 1;
              }
            });
          }),
      ),
    );
  }
  return {
    get opened() {
      return state.opened;
    },
    get closed_by_peer() {
      return state.closed_by_peer;
    },
    get failed() {
      return state.failed;
    },
    close() {
      closing = true;
      for (const socket of sockets) socket.destroy();
    },
  };
}
