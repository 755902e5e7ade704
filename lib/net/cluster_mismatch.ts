/**
 * The one answer a replica gives a frame whose only fault is its cluster id (docs/PROTOCOL.md
 * §1.5, §3.7). The cluster id is a checksum of the sorted address list (lib/net/address.ts), so a
 * client given another list (localhost for 127.0.0.1, or a subset) or a replica started with
 * another --peer set sends frames every replica rejects. Closing the connection without a word
 * left the client saying "is a majority running?" and the other replica logging ECONNRESET
 * forever; this reply says what is wrong.
 *
 * The reply carries the sender's cluster id in its header, so the sender's own frame checks accept
 * it, and the replier's cluster id in its body. It echoes the rejected request's client, request,
 * operation and session, so a client matches it like any reply. It is sent at most once per
 * connection, which is then closed, only for a frame whose header passed every other check that
 * can be made without its body, and it is no larger than the smallest frame (128 bytes) plus 8:
 * nobody can use it to make a replica answer more than one small reply per connection.
 */
import { readU64Big } from "../util/bytes.ts";
import { replicas_max, sender_client } from "../constants.ts";
import { Command, command_max, finalize, Header, isClientCommand, type Message } from "./codec.ts";
import { Result } from "../store/operations.ts";

/** Body of the answer: the replier's cluster id. */
export const cluster_mismatch_body_size = 8;

/** Whether a rejected frame from another cluster is answered: a client's request (or status
 * request), or any message from a replica of another cluster. */
export function answersClusterMismatch(foreign: Header): boolean {
  if (foreign.command < 1 || foreign.command > command_max) return false;
  if (foreign.replica === sender_client) return isClientCommand(foreign.command);
  return foreign.replica < replicas_max;
}

/** The answer to `foreign` (a frame of another cluster) from a replica of cluster `ours`. */
export function clusterMismatchReply(foreign: Header, ours: bigint): Message {
  const h = new Header();
  h.command = Command.reply;
  h.cluster = foreign.cluster;
  // The replier has no index in the sender's cluster: 0 passes the sender's checks, and says
  // nothing (the sender knows which address it dialed).
  h.replica = 0;
  h.replica_count = 0;
  h.client = foreign.client;
  h.request = foreign.request;
  h.operation = foreign.operation;
  h.session = foreign.session;
  h.result = Result.wrong_cluster;
  const body = new Uint8Array(cluster_mismatch_body_size);
  new DataView(body.buffer).setBigUint64(0, ours, true);
  return finalize(h, body);
}

/** If `message` is such an answer: the replier's cluster id (null if the body is malformed, which
 * does not change what it means). Undefined if it is not one. */
export function clusterMismatchOf(message: Message): bigint | null | undefined {
  const h = message.header;
  if (h.command !== Command.reply || h.result !== Result.wrong_cluster) return undefined;
  if (message.body.length !== cluster_mismatch_body_size) return null;
  return readU64Big(message.body, 0);
}
