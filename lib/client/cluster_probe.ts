/**
 * Asks every replica about itself (toastyfs status, docs/PROTOCOL.md §3.14), and for a replica that
 * does not answer records what the connection did, because that is the diagnosis: refused (nothing
 * listens), accepted and then closed on the request (it refuses this cluster's messages), accepted
 * and silent (paused or hung), or no connection at all (host down or packets dropped).
 */
import { randomBytes } from "node:crypto";
import { Command, finalize, Header } from "../net/codec.ts";
import { TcpTransport } from "../net/tcp_transport.ts";
import type { AuthKeys } from "../net/auth/secret.ts";
import type { TlsFiles } from "../net/tls.ts";
import { formatAddress, membership, type Address } from "../net/address.ts";
import { sender_client } from "../constants.ts";
import { decodeStatus, type ReplicaStatus } from "../net/status_codec.ts";
import { Result } from "../store/operations.ts";

export interface ReplicaProbe {
  /** The replica's address (membership order: probes[i] is replica i). */
  address: string;
  /** Its answer; null if none came within the timeout. */
  status: ReplicaStatus | null;
  /** The TCP connection to it opened (it was accepted). */
  connected: boolean;
  /** Why the connection failed or closed before an answer ("connect failed: ECONNREFUSED ...",
   * "closed by the peer"); null if it did neither. */
  failure: string | null;
  /** The answer did not decode as a status document. */
  malformed: boolean;
  /** It answered wrong_cluster: it belongs to a cluster with another address list (its id). */
  other_cluster: bigint | null;
}

/** A replica that does not answer within timeout_ms gets status null and what its connection did. */
export async function probeCluster(
  addresses: Address[],
  timeout_ms = 1000,
  secret: AuthKeys | null = null,
  tls: TlsFiles | null = null,
): Promise<ReplicaProbe[]> {
  const m = membership(addresses);
  const id = randomBytes(8).readBigUInt64LE(0);
  const probes: ReplicaProbe[] = m.replicas.map((a) => ({
    address: formatAddress(a),
    status: null,
    connected: false,
    failure: null,
    malformed: false,
    other_cluster: null,
  }));
  const answered = probes.map(() => false);
  let remaining = m.replicas.length;
  let done: () => void = () => {};
  const all = new Promise<void>((resolve) => (done = resolve));
  const transport = new TcpTransport(
    { cluster: m.cluster, self: null, peers: m.replicas, secret, tls, log: () => {} },
    {
      onMessage: (message, connection) => {
        const h = message.header;
        if (
          h.command === Command.reply &&
          h.result === Result.wrong_cluster &&
          h.client === id &&
          connection.peer !== null &&
          message.body.length === 8
        ) {
          probes[connection.peer]!.other_cluster = new DataView(message.body.buffer, message.body.byteOffset, 8).getBigUint64(0, true);
          return;
        }
        if (h.command !== Command.status || h.client !== id || h.replica >= probes.length || answered[h.replica]) return;
        answered[h.replica] = true;
        const status = decodeStatus(message.body);
        probes[h.replica]!.status = status;
        probes[h.replica]!.malformed = status === null;
        remaining -= 1;
        if (remaining === 0) done();
      },
      onConnectionOpen: (connection) => {
        if (connection.peer !== null) probes[connection.peer]!.connected = true;
      },
      onAuthenticationFailed: (connection, detail) => {
        const p = connection.peer === null ? undefined : probes[connection.peer];
        if (p !== undefined && p.failure === null) p.failure = detail;
      },
      onConnectionClose: (connection, reason) => {
        // The first failure is the telling one; our own close at the end comes after the answers.
        const p = connection.peer === null ? undefined : probes[connection.peer];
        if (p !== undefined && !answered[connection.peer!] && p.failure === null) p.failure = reason;
      },
    },
  );
  await transport.start();
  for (let i = 0; i < m.replicas.length; i++) {
    const h = new Header();
    h.command = Command.request_status;
    h.cluster = m.cluster;
    h.replica = sender_client;
    h.client = id;
    transport.sendToReplica(i, finalize(h));
  }
  // The timer is cleared once everyone answered, so it does not keep a short-lived process alive.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([all, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeout_ms)))]);
  clearTimeout(timer);
  // What is recorded stays as it was at the deadline.
  const result = probes.map((p) => ({ ...p }));
  await transport.close();
  return result;
}
