/**
 * A typed message per command. The wire has one 128-byte header layout whose fields mean different
 * things per command (docs/PROTOCOL.md §2.1, §3.2, §3.5, §3.14, §4.3); this file is the one place
 * that says which, so the replica reads `commit.round` instead of `header.session`. Per command:
 * an interface of named fields, `buildX(from, fields)` (through codec's finalize, so the bytes are
 * exactly what a hand-filled Header gives: the C client and existing data directories depend on
 * them) and `readX(message)`. Readers that must check a body return the record or a string, the
 * reason the message is malformed; the others cannot fail. Fields that are not the command's own
 * (view, replica, incarnation, checksum) stay on message.header; readEnvelope names them.
 *
 * Readers do not judge numbers (a forged view or commit is the replica's to weigh): they only name
 * the fields, so adopting them changes no decision.
 */
import { assert } from "../util/assert.ts";
import { Command, Header, decodeHeader, finalize, writeHeader, type Message } from "../net/codec.ts";
import { faulty_ops_max, header_size, key_size_max, sender_client, snapshot_chunk_size_max_bytes, view_headers_max } from "../constants.ts";
import { keyFromBytes, keyToBytes } from "../store/keys.ts";
import type { Result } from "../store/operations.ts";
import type { CheckpointId } from "./storage.ts";
import { presence_faulty, type DoViewChange } from "./view_change.ts";

/** The fields every replica message carries (docs/PROTOCOL.md §4.2): who sends, in which cluster
 * and view. `view` is the sender's current view unless a command says otherwise (a not_primary
 * reply from a replica changing views names its log_view, §3.5). */
export interface Envelope {
  cluster: bigint;
  replica: number;
  replica_count: number;
  view: number;
  incarnation: number;
}

function start(command: Command, from: Envelope): Header {
  assert(from.replica < from.replica_count, () => `sender ${from.replica} of a cluster of ${from.replica_count}`);
  const h = new Header();
  h.command = command;
  h.cluster = from.cluster;
  h.replica = from.replica;
  h.replica_count = from.replica_count;
  h.view = from.view;
  h.incarnation = from.incarnation;
  return h;
}

/** A client's header: it has no replica index, so `replica` = 255 and replica_count = incarnation = 0 (§3.2). */
function startClient(command: Command, cluster: bigint): Header {
  // DataView wraps a u64 silently: a cluster id outside it would address another cluster.
  assert(cluster >= 0n && cluster < 1n << 64n, () => `cluster ${cluster} is no u64`);
  const h = new Header();
  h.command = command;
  h.cluster = cluster;
  h.replica = sender_client;
  return h;
}

export function readEnvelope(message: Message): Envelope {
  const h = message.header;
  return { cluster: h.cluster, replica: h.replica, replica_count: h.replica_count, view: h.view, incarnation: h.incarnation };
}

// ---------------------------------------------------------------------------------------------
// ping (1), pong (2): formation probes (§4.4)

export interface Ping {
  /** Fresh per probe round: a pong counts only if it echoes the current one. */
  nonce: bigint;
}

export function buildPing(from: Envelope, ping: Ping): Message {
  assert(ping.nonce >= 0n && ping.nonce < 1n << 64n, "ping nonce is no u64: the echo would never match");
  const h = start(Command.ping, from);
  h.context = ping.nonce;
  return finalize(h);
}

export function readPing(message: Message): Ping {
  return { nonce: message.header.context };
}

/** A pong's `operation`: what the sender's disk holds. */
export const PeerState = { blank: 0, formatted: 1, recovering: 2, formed: 3 } as const;

export interface Pong {
  nonce: bigint;
  /** PeerState; read as sent (a forged value above 3 is judged by the receiver, as today). */
  state: number;
  log_view: number;
  op: number;
  commit_max: number;
  /** The view its superblock holds (0 if none): the floor a replica that lost its disk adopts. */
  durable_view: number;
}

export function buildPong(from: Envelope, pong: Pong): Message {
  assert(pong.state >= PeerState.blank && pong.state <= PeerState.formed, () => `pong with state ${pong.state}`);
  // A replica's log view never passes its view, nor does what it has made durable.
  assert(
    pong.log_view <= from.view && pong.durable_view <= from.view,
    () => `pong in view ${from.view} with log_view ${pong.log_view}, durable view ${pong.durable_view}`,
  );
  const h = start(Command.pong, from);
  h.context = pong.nonce;
  h.operation = pong.state;
  h.log_view = pong.log_view;
  h.op = pong.op;
  h.commit = pong.commit_max;
  h.checkpoint_op = pong.durable_view;
  return finalize(h);
}

export function readPong(message: Message): Pong {
  const h = message.header;
  return { nonce: h.context, state: h.operation, log_view: h.log_view, op: h.op, commit_max: h.commit, durable_view: h.checkpoint_op };
}

// ---------------------------------------------------------------------------------------------
// request (3), reply (6): the client protocol (§3)

export interface Request {
  client: bigint;
  /** 0 for register (§3.2). */
  session: number;
  request: number;
  operation: number;
  /** The highest view the client has seen: a hint, replicas ignore it. */
  view: number;
  body: Uint8Array;
}

export function buildRequest(cluster: bigint, request: Request): Message {
  // request is a u32 and operation a u8 on the wire: a wider value would be truncated to another request.
  assert(
    Number.isInteger(request.request) &&
      request.request >= 0 &&
      request.request <= 0xffffffff &&
      Number.isInteger(request.operation) &&
      request.operation >= 0 &&
      request.operation <= 0xff,
    () => `request ${request.request} operation ${request.operation} out of range`,
  );
  const h = startClient(Command.request, cluster);
  h.client = request.client;
  h.session = request.session;
  h.request = request.request;
  h.operation = request.operation;
  h.view = request.view;
  return finalize(h, request.body);
}

export function readRequest(message: Message): Request {
  const h = message.header;
  return { client: h.client, session: h.session, request: h.request, operation: h.operation, view: h.view, body: message.body };
}

/** A client request as a prepare's batch orders it (lib/vsr/batch.ts): no view hint. */
export type OrderedRequest = Omit<Request, "view">;

/** Which request a reply answers, and the session it names. */
export type ReplyTo = Pick<ClientReply, "client" | "request" | "session">;

/** A replica's answer to one client request (§3.5): what execution decides, and what the client
 * table stores and resends to a retry. */
export interface ClientReply {
  client: bigint;
  request: number;
  /** Register `ok`: the new session (= op); otherwise the request's session, echoed. */
  session: number;
  operation: number;
  result: Result;
  body: Uint8Array;
  /** The op that executed a write; 0 for reads and errors found on arrival. */
  op: number;
  /** That op's timestamp; 0 for errors found on arrival. */
  timestamp: number;
}

/** reply (6): the answer and the replier's commit number (informational). */
export interface Reply extends ClientReply {
  commit: number;
}

export function buildReply(from: Envelope, reply: Reply): Message {
  assert(
    Number.isInteger(reply.request) &&
      reply.request >= 0 &&
      reply.request <= 0xffffffff &&
      Number.isInteger(reply.operation) &&
      reply.operation >= 0 &&
      reply.operation <= 0xff,
    () => `reply to request ${reply.request} operation ${reply.operation} out of range`,
  );
  const h = start(Command.reply, from);
  h.client = reply.client;
  h.request = reply.request;
  h.session = reply.session;
  h.operation = reply.operation;
  h.result = reply.result;
  h.op = reply.op;
  h.commit = reply.commit;
  h.timestamp = reply.timestamp;
  return finalize(h, reply.body);
}

export function readReply(message: Message): Reply {
  const h = message.header;
  return {
    client: h.client,
    request: h.request,
    session: h.session,
    operation: h.operation,
    result: h.result,
    body: message.body,
    op: h.op,
    commit: h.commit,
    timestamp: h.timestamp,
  };
}

// ---------------------------------------------------------------------------------------------
// prepare (4), prepare_ok (5): normal operation (§4.4, §4.5)

export interface Prepare {
  op: number;
  /** Checksum of the prepare at op − 1: the hash chain. */
  parent: bigint;
  /** The primary's commit_max when it prepared: a claim the backup checks against its log. */
  commit_max: number;
  /** ms since the epoch, strictly increasing along the chain. */
  timestamp: number;
  /** The checkpoint this op names, checkpointFor(op): op, digest, and the anchor's checksum. */
  checkpoint: CheckpointId;
  /** Requests in the batch. */
  requests: number;
  /** The batch (lib/vsr/batch.ts). */
  body: Uint8Array;
}

/** `from` is the primary that creates it: relayed and repaired prepares travel unchanged. */
export function buildPrepare(from: Envelope, prepare: Prepare): Message {
  assert(prepare.op > 0 && prepare.requests > 0, () => `prepare of op ${prepare.op} with ${prepare.requests} requests`);
  // The named checkpoint lags op (lib/vsr/checkpoint.ts) and op is not committed before it is prepared.
  assert(
    prepare.checkpoint.op < prepare.op && prepare.commit_max < prepare.op,
    () => `prepare of op ${prepare.op} names checkpoint ${prepare.checkpoint.op}, commit ${prepare.commit_max}`,
  );
  const h = start(Command.prepare, from);
  h.op = prepare.op;
  h.parent = prepare.parent;
  h.commit = prepare.commit_max;
  h.timestamp = prepare.timestamp;
  h.checkpoint_op = prepare.checkpoint.op;
  h.checkpoint_digest = prepare.checkpoint.digest;
  h.context = prepare.checkpoint.checksum;
  h.request = prepare.requests;
  return finalize(h, prepare.body);
}

export function readPrepare(message: Message): Prepare {
  const h = message.header;
  return {
    op: h.op,
    parent: h.parent,
    commit_max: h.commit,
    timestamp: h.timestamp,
    checkpoint: { op: h.checkpoint_op, digest: h.checkpoint_digest, checksum: h.context },
    requests: h.request,
    body: message.body,
  };
}

export interface PrepareOk {
  op: number;
  /** Checksum of the prepare acknowledged: an ack counts only for that exact prepare. */
  checksum: bigint;
  /** That prepare's parent. */
  parent: bigint;
  /** The sender's commit_max (the primary ignores it). */
  commit_max: number;
}

export function buildPrepareOk(from: Envelope, ok: PrepareOk): Message {
  // The hash chain makes a prepare's parent another prepare's checksum: equal ones mean swapped fields.
  assert(ok.checksum !== ok.parent, () => `prepare_ok for op ${ok.op} names its parent as the prepare acknowledged`);
  const h = start(Command.prepare_ok, from);
  h.op = ok.op;
  h.context = ok.checksum;
  h.parent = ok.parent;
  h.commit = ok.commit_max;
  return finalize(h);
}

export function readPrepareOk(message: Message): PrepareOk {
  const h = message.header;
  return { op: h.op, checksum: h.context, parent: h.parent, commit_max: h.commit };
}

// ---------------------------------------------------------------------------------------------
// commit (7), commit_ok (8): the heartbeat (§4.4)

export interface Commit {
  commit_max: number;
  /** Checksum of the primary's prepare at commit_max (0 if unknown): a backup takes the number
   * only if its own log holds that prepare. */
  commit_checksum: bigint;
  /** The heartbeat round, 1, 2, 3, … in each view. */
  round: number;
  /** The round's random nonce: a commit_ok confirms the round only by echoing it. */
  nonce: bigint;
  /** The primary's head. */
  op: number;
  /** The primary's durable checkpoint (op, digest, anchor checksum). */
  checkpoint: CheckpointId;
}

export function buildCommit(from: Envelope, commit: Commit): Message {
  assert(commit.round > 0, "heartbeat rounds start at 1");
  // The primary holds every op it has committed, and checkpoints only committed state.
  assert(
    commit.checkpoint.op <= commit.commit_max && commit.commit_max <= commit.op,
    () => `commit of ${commit.commit_max} with head ${commit.op}, checkpoint ${commit.checkpoint.op}`,
  );
  const h = start(Command.commit, from);
  h.commit = commit.commit_max;
  h.context = commit.commit_checksum;
  h.session = commit.round;
  h.client = commit.nonce;
  h.op = commit.op;
  h.checkpoint_op = commit.checkpoint.op;
  h.checkpoint_digest = commit.checkpoint.digest;
  h.parent = commit.checkpoint.checksum;
  return finalize(h);
}

export function readCommit(message: Message): Commit {
  const h = message.header;
  return {
    commit_max: h.commit,
    commit_checksum: h.context,
    round: h.session,
    nonce: h.client,
    op: h.op,
    checkpoint: { op: h.checkpoint_op, digest: h.checkpoint_digest, checksum: h.parent },
  };
}

export interface CommitOk {
  round: number;
  nonce: bigint;
  /** The sender's commit_max (the primary ignores it). */
  commit_max: number;
}

export function buildCommitOk(from: Envelope, ok: CommitOk): Message {
  assert(ok.nonce >= 0n && ok.nonce < 1n << 64n, "commit_ok nonce is no u64: the echo would never match");
  const h = start(Command.commit_ok, from);
  h.session = ok.round;
  h.client = ok.nonce;
  h.commit = ok.commit_max;
  return finalize(h);
}

export function readCommitOk(message: Message): CommitOk {
  const h = message.header;
  return { round: h.session, nonce: h.client, commit_max: h.commit };
}

// ---------------------------------------------------------------------------------------------
// start_view_change (9), do_view_change (10), start_view (11), request_start_view (12) (§4.4)

/** The view the sender moves to is the envelope's view. */
export interface StartViewChange {
  /** The view its superblock holds (0 if none): it can never come back below it. */
  durable_view: number;
}

export function buildStartViewChange(from: Envelope, svc: StartViewChange): Message {
  // The sender moves to from.view; its superblock cannot already hold a higher view.
  assert(
    Number.isSafeInteger(svc.durable_view) && svc.durable_view >= 0 && svc.durable_view <= from.view,
    () => `start_view_change to view ${from.view} with durable view ${svc.durable_view}`,
  );
  const h = start(Command.start_view_change, from);
  h.context = BigInt(svc.durable_view);
  return finalize(h);
}

/** The u64 on the wire as a number, as the replica reads it today: a forged value above 2^53 only
 * loses precision, and no real view comes near it (views are u32). */
export function readStartViewChange(message: Message): StartViewChange {
  return { durable_view: Number(message.header.context) };
}

/** do_view_change: the sender's log for the new view (the envelope's view); the record is
 * lib/vsr/view_change.ts's DoViewChange, which the new primary's decisions take. */
export function buildDoViewChange(from: Envelope, dvc: DoViewChange): Message {
  // The receiver drops anything else as malformed or as a protocol violation: only a bug sends it.
  assert(
    dvc.presence.length === dvc.headers.length && suffixValid(dvc.headers, dvc.op),
    () => `do_view_change of ${dvc.headers.length} headers is no suffix ending at op ${dvc.op}`,
  );
  assert(dvc.log_view < from.view, () => `do_view_change for view ${from.view} from log_view ${dvc.log_view}`);
  const h = start(Command.do_view_change, from);
  h.log_view = dvc.log_view;
  h.op = dvc.op;
  h.commit = dvc.commit;
  h.request = dvc.headers.length;
  return finalize(h, encodeDoViewChangeBody(dvc));
}

/** The sender's numbers as sent (the receiver bounds commit by op, and judges log_view against the
 * view, a protocol violation rather than a malformed body). Headers are decoded against the
 * message's own cluster: onMessage has already dropped any other cluster's. */
export function readDoViewChange(message: Message): DoViewChange | string {
  const h = message.header;
  const body = decodeDoViewChangeBody(message.body, h.request, h.cluster);
  if (body === null || !suffixValid(body.headers, h.op)) return "malformed do_view_change headers";
  // Past the checks above, any input: one presence byte per header, the suffix ending at the op named.
  assert(
    body.presence.length === body.headers.length && body.headers[body.headers.length - 1]!.op === h.op,
    "do_view_change read back unlike its checks",
  );
  return {
    log_view: h.log_view,
    op: h.op,
    commit: h.commit,
    headers: body.headers,
    presence: body.presence,
    faulty_ops: body.faulty_ops,
    checksum: h.checksum,
  };
}

/** start_view: the new primary's log suffix for the envelope's view. */
export interface StartView {
  op: number;
  commit_max: number;
  /** The primary's durable checkpoint op. */
  checkpoint_op: number;
  /** The request_start_view nonce it answers (0 when broadcast). */
  nonce: bigint;
  /** Up to view_headers_max headers ending at op. */
  headers: Header[];
}

export function buildStartView(from: Envelope, sv: StartView): Message {
  assert(suffixValid(sv.headers, sv.op), () => `start_view of ${sv.headers.length} headers is no suffix ending at op ${sv.op}`);
  // A replica's log reaches at least its checkpoint (a synced replica's head starts there).
  assert(sv.checkpoint_op <= sv.op, () => `start_view ending at op ${sv.op} below its checkpoint ${sv.checkpoint_op}`);
  const h = start(Command.start_view, from);
  h.op = sv.op;
  h.commit = sv.commit_max;
  h.checkpoint_op = sv.checkpoint_op;
  h.context = sv.nonce;
  return finalize(h, encodeHeaders(sv.headers));
}

export function readStartView(message: Message): StartView | string {
  const h = message.header;
  const headers = decodeHeaders(message.body, h.cluster);
  if (headers === null || !suffixValid(headers, h.op)) return "malformed start_view headers";
  assert(
    headers.length >= 1 && headers.length <= view_headers_max && headers[headers.length - 1]!.op === h.op,
    "start_view read back unlike its checks",
  );
  return { op: h.op, commit_max: h.commit, checkpoint_op: h.checkpoint_op, nonce: h.context, headers };
}

export interface RequestStartView {
  /** The view whose start_view is wanted (sent on the wire in place of the sender's view). */
  view: number;
  /** A fresh nonce from a recovering sender (else 0): it installs only an answer echoing one. */
  nonce: bigint;
}

export function buildRequestStartView(from: Envelope, rsv: RequestStartView): Message {
  assert(rsv.nonce >= 0n && rsv.nonce < 1n << 64n, "request_start_view nonce is no u64: the answer would never match");
  const h = start(Command.request_start_view, from);
  h.view = rsv.view;
  h.context = rsv.nonce;
  return finalize(h);
}

export function readRequestStartView(message: Message): RequestStartView {
  return { view: message.header.view, nonce: message.header.context };
}

// ---------------------------------------------------------------------------------------------
// request_headers (13), headers (14), request_prepare (15): repair (§4.4)

export interface RequestHeaders {
  op_min: number;
  op_max: number;
}

export function buildRequestHeaders(from: Envelope, rh: RequestHeaders): Message {
  assert(rh.op_min <= rh.op_max, () => `request_headers for ops ${rh.op_min}..${rh.op_max}`);
  const h = start(Command.request_headers, from);
  h.commit = rh.op_min;
  h.op = rh.op_max;
  return finalize(h);
}

export function readRequestHeaders(message: Message): RequestHeaders {
  return { op_min: message.header.commit, op_max: message.header.op };
}

export interface Headers {
  /** The sender's head. */
  op: number;
  commit_max: number;
  /** Sent by the primary of its view in normal status: the headers are canonical. */
  canonical: boolean;
  headers: Header[];
}

export function buildHeaders(from: Envelope, headers: Headers): Message {
  assert(
    headers.headers.length > 0 && headers.headers.length <= view_headers_max,
    () => `headers message with ${headers.headers.length} headers`,
  );
  // The receiver drops the whole message if any header is not one of this cluster's prepares.
  assert(
    headers.headers.every((x) => x.command === Command.prepare && x.cluster === from.cluster),
    "headers message carries a header that is not one of this cluster's prepares",
  );
  const h = start(Command.headers, from);
  h.op = headers.op;
  h.commit = headers.commit_max;
  h.operation = headers.canonical ? 1 : 0;
  return finalize(h, encodeHeaders(headers.headers));
}

export function readHeaders(message: Message): Headers | string {
  const h = message.header;
  const headers = decodeHeaders(message.body, h.cluster);
  if (headers === null) return "malformed headers";
  assert(headers.length <= view_headers_max && headers.every((x) => x.cluster === h.cluster), "headers read back unlike their checks");
  return { op: h.op, commit_max: h.commit, canonical: h.operation === 1, headers };
}

export interface RequestPrepare {
  op: number;
  /** Checksum of the prepare wanted: only that exact prepare is sent back. */
  checksum: bigint;
}

export function buildRequestPrepare(from: Envelope, rp: RequestPrepare): Message {
  assert(rp.checksum >= 0n && rp.checksum < 1n << 64n, "request_prepare checksum is no u64");
  const h = start(Command.request_prepare, from);
  h.op = rp.op;
  h.context = rp.checksum;
  return finalize(h);
}

export function readRequestPrepare(message: Message): RequestPrepare {
  return { op: message.header.op, checksum: message.header.context };
}

// ---------------------------------------------------------------------------------------------
// request_sync (16), sync_chunk (17): state sync (§4.4, §4.8)

export interface RequestSync {
  checkpoint: CheckpointId;
  /** The record to start from. */
  position: number;
}

export function buildRequestSync(from: Envelope, rs: RequestSync): Message {
  // A transfer never targets the root checkpoint (every replica holds it): lib/vsr/state_sync.ts.
  assert(
    rs.checkpoint.op > 0 && Number.isSafeInteger(rs.position) && rs.position >= 0,
    () => `request_sync for checkpoint ${rs.checkpoint.op} at ${rs.position}`,
  );
  const h = start(Command.request_sync, from);
  h.op = rs.checkpoint.op;
  h.checkpoint_digest = rs.checkpoint.digest;
  h.context = rs.checkpoint.checksum;
  h.commit = rs.position;
  return finalize(h);
}

export function readRequestSync(message: Message): RequestSync {
  const h = message.header;
  return { checkpoint: { op: h.op, digest: h.checkpoint_digest, checksum: h.context }, position: h.commit };
}

export interface SyncChunk {
  checkpoint: CheckpointId;
  /** The position served (the request's). */
  position: number;
  /** The position to ask for next; null on the last chunk. */
  next: number | null;
  /** Sync records (§4.8). */
  body: Uint8Array;
}

export function buildSyncChunk(from: Envelope, chunk: SyncChunk): Message {
  assert(chunk.next === null || chunk.next > chunk.position, () => `sync chunk at ${chunk.position} names ${chunk.next} next`);
  // An empty chunk that is not the last would have the receiver ask for the same position forever.
  assert(chunk.next === null || chunk.body.length > 0, () => `empty sync chunk at ${chunk.position} is not the last`);
  const h = start(Command.sync_chunk, from);
  h.op = chunk.checkpoint.op;
  h.checkpoint_digest = chunk.checkpoint.digest;
  h.context = chunk.checkpoint.checksum;
  h.commit = chunk.position;
  h.timestamp = chunk.next ?? 0;
  h.result = chunk.next === null ? 1 : 0;
  return finalize(h, chunk.body);
}

/** Any nonzero `result` is the last chunk, as the receiver reads it today. */
export function readSyncChunk(message: Message): SyncChunk {
  const h = message.header;
  return {
    checkpoint: { op: h.op, digest: h.checkpoint_digest, checksum: h.context },
    position: h.commit,
    next: h.result === 0 ? h.timestamp : null,
    body: message.body,
  };
}

// ---------------------------------------------------------------------------------------------
// request_snapshot (24), snapshot_chunk (25): a client reads a retained checkpoint (§3.16)

/** Body of request_snapshot: `u32 size_max`, `u32` reserved. */
export const request_snapshot_body_size = 8;

export interface RequestSnapshot {
  client: bigint;
  request: number;
  /** The checkpoint wanted; op 0 (digest and checksum 0): the replica's newest durable one. */
  checkpoint: CheckpointId;
  /** The record to start from (0 with op 0: a stream starts at its anchor). */
  position: number;
  /** Records stop before they would pass this many bytes (one record always goes). */
  size_max: number;
}

export function buildRequestSnapshot(cluster: bigint, rs: RequestSnapshot): Message {
  assert(readableRequestSnapshot(rs) === null, () => `request_snapshot: ${readableRequestSnapshot(rs)}`);
  const h = startClient(Command.request_snapshot, cluster);
  h.client = rs.client;
  h.request = rs.request;
  h.op = rs.checkpoint.op;
  h.checkpoint_digest = rs.checkpoint.digest;
  h.context = rs.checkpoint.checksum;
  h.commit = rs.position;
  const body = new Uint8Array(request_snapshot_body_size);
  new DataView(body.buffer).setUint32(0, rs.size_max, true);
  return finalize(h, body);
}

/** The request, or why it is malformed (answered bad_request). */
export function readRequestSnapshot(message: Message): RequestSnapshot | string {
  const h = message.header;
  const body = message.body;
  if (body.length !== request_snapshot_body_size) return `a body of ${body.length} bytes, not ${request_snapshot_body_size}`;
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  if (view.getUint32(4, true) !== 0) return "reserved bytes not zero";
  const rs: RequestSnapshot = {
    client: h.client,
    request: h.request,
    checkpoint: { op: h.op, digest: h.checkpoint_digest, checksum: h.context },
    position: h.commit,
    size_max: view.getUint32(0, true),
  };
  return readableRequestSnapshot(rs) ?? rs;
}

function readableRequestSnapshot(rs: RequestSnapshot): string | null {
  if (!Number.isInteger(rs.size_max) || rs.size_max < 1 || rs.size_max > snapshot_chunk_size_max_bytes)
    return `size_max ${rs.size_max} is not 1..${snapshot_chunk_size_max_bytes}`;
  if (!Number.isSafeInteger(rs.position) || rs.position < 0) return `position ${rs.position}`;
  if (rs.checkpoint.op === 0 && (rs.position !== 0 || rs.checkpoint.digest !== 0n || rs.checkpoint.checksum !== 0n))
    return "the newest checkpoint (op 0) is asked for from position 0, without a digest or checksum";
  return null;
}

export interface SnapshotChunk {
  client: bigint;
  request: number;
  /** ok; not_found: that checkpoint is not retained (any more, or yet); busy: the replica serves
   * snapshot_streams_max other checkpoints; unavailable: it cannot read that part here;
   * bad_request. Only ok carries records. */
  result: Result;
  /** The checkpoint served (with ok: the newest one when op 0 was asked). */
  checkpoint: CheckpointId;
  /** The position served (the request's). */
  position: number;
  /** The position to ask for next; null on the last chunk. */
  next: number | null;
  /** Records of the state-sync stream (§4.8). */
  body: Uint8Array;
}

export function buildSnapshotChunk(from: Envelope, chunk: SnapshotChunk): Message {
  assert(chunk.next === null || chunk.next > chunk.position, () => `snapshot chunk at ${chunk.position} names ${chunk.next} next`);
  assert(chunk.result === 0 || chunk.body.length === 0, () => `snapshot answer ${chunk.result} with records`);
  const h = start(Command.snapshot_chunk, from);
  h.client = chunk.client;
  h.request = chunk.request;
  h.result = chunk.result;
  h.op = chunk.checkpoint.op;
  h.checkpoint_digest = chunk.checkpoint.digest;
  h.context = chunk.checkpoint.checksum;
  h.commit = chunk.position;
  h.timestamp = chunk.next ?? 0;
  return finalize(h, chunk.body);
}

/** A `timestamp` of 0 is the last chunk (no record follows the anchor at position 0). */
export function readSnapshotChunk(message: Message): SnapshotChunk {
  const h = message.header;
  return {
    client: h.client,
    request: h.request,
    result: h.result as Result,
    checkpoint: { op: h.op, digest: h.checkpoint_digest, checksum: h.context },
    position: h.commit,
    next: h.timestamp === 0 ? null : h.timestamp,
    body: message.body,
  };
}

// ---------------------------------------------------------------------------------------------
// request_status (18), status (19): answered by the node, outside VSR (§3.14)

export interface RequestStatus {
  client: bigint;
  request: number;
}

export function buildRequestStatus(cluster: bigint, rs: RequestStatus): Message {
  assert(
    Number.isInteger(rs.request) && rs.request >= 0 && rs.request <= 0xffffffff,
    () => `request_status number ${rs.request} is no u32`,
  );
  const h = startClient(Command.request_status, cluster);
  h.client = rs.client;
  h.request = rs.request;
  return finalize(h);
}

export function readRequestStatus(message: Message): RequestStatus {
  return { client: message.header.client, request: message.header.request };
}

/** status (19), from the node (its envelope's incarnation is 0: status is not a replica message).
 * Not `Status`: that is the replica's status (lib/vsr/env.ts). */
export interface NodeStatus {
  client: bigint;
  request: number;
  /** The CBOR status document (lib/net/status_codec.ts). */
  body: Uint8Array;
}

export function buildStatus(from: Envelope, status: NodeStatus): Message {
  assert(
    Number.isInteger(status.request) && status.request >= 0 && status.request <= 0xffffffff,
    () => `status for request ${status.request}: no u32`,
  );
  const h = start(Command.status, from);
  h.client = status.client;
  h.request = status.request;
  return finalize(h, status.body);
}

export function readStatus(message: Message): NodeStatus {
  return { client: message.header.client, request: message.header.request, body: message.body };
}

// ---------------------------------------------------------------------------------------------
// request_value (20), value (21): repair of a value damaged on disk (§4.4)

export interface RequestValue {
  /** The object's version. */
  version: number;
  /** Its value's checksum. */
  checksum: bigint;
  key: string;
}

export function buildRequestValue(from: Envelope, rv: RequestValue): Message {
  assert(rv.key.length >= 1 && rv.key.length <= key_size_max, () => `request_value for a key of ${rv.key.length} bytes`);
  const h = start(Command.request_value, from);
  h.op = rv.version;
  h.context = rv.checksum;
  return finalize(h, keyToBytes(rv.key));
}

/** The replica ignores a malformed one silently (no drop is counted): a reason, not a violation. */
export function readRequestValue(message: Message): RequestValue | string {
  const h = message.header;
  if (message.body.length < 1 || message.body.length > key_size_max) return "malformed request_value key";
  return { version: h.op, checksum: h.context, key: keyFromBytes(message.body) };
}

export interface Value {
  version: number;
  checksum: bigint;
  key: string;
  value: Uint8Array;
}

/** Body: u16 key size, the key, then the value (the rest). */
export function buildValue(from: Envelope, value: Value): Message {
  assert(value.key.length >= 1 && value.key.length <= key_size_max, () => `value for a key of ${value.key.length} bytes`);
  const h = start(Command.value, from);
  h.op = value.version;
  h.context = value.checksum;
  const key = keyToBytes(value.key);
  // The key size is a u16 on the wire: the receiver splits key from value by it.
  assert(key.length >= 1 && key.length <= 0xffff, () => `value key of ${key.length} bytes`);
  const body = new Uint8Array(2 + key.length + value.value.length);
  body[0] = key.length & 0xff;
  body[1] = key.length >>> 8;
  body.set(key, 2);
  body.set(value.value, 2 + key.length);
  return finalize(h, body);
}

export function readValue(message: Message): Value | string {
  const h = message.header;
  const body = message.body;
  const key_size = body.length >= 2 ? body[0]! | (body[1]! << 8) : 0;
  if (key_size < 1 || body.length < 2 + key_size) return "malformed value";
  const value = body.subarray(2 + key_size);
  // Size prefix, key and value partition the body: nothing of it is dropped or read twice.
  assert(2 + key_size + value.length === body.length, "value body split unlike its key size");
  return { version: h.op, checksum: h.context, key: keyFromBytes(body.subarray(2, 2 + key_size)), value };
}

// ---------------------------------------------------------------------------------------------
// request_block (22), block (23): repair of a block damaged on disk (§4.4)

export interface RequestBlock {
  /** The block's id (never reused, so it names one block's bytes for good). */
  id: number;
  /** Its checksum. */
  checksum: bigint;
}

export function buildRequestBlock(from: Envelope, rb: RequestBlock): Message {
  assert(Number.isSafeInteger(rb.id) && rb.id >= 1, () => `request_block for block id ${rb.id}`);
  const h = start(Command.request_block, from);
  h.op = rb.id;
  h.context = rb.checksum;
  return finalize(h);
}

/** The replica ignores a malformed one silently, as a request_value. */
export function readRequestBlock(message: Message): RequestBlock | string {
  const h = message.header;
  if (h.op < 1 || message.body.length !== 0) return "malformed request_block";
  return { id: h.op, checksum: h.context };
}

export interface BlockData extends RequestBlock {
  data: Uint8Array;
}

/** Body: the block's bytes, all of them (a block is never empty). */
export function buildBlock(from: Envelope, block: BlockData): Message {
  assert(Number.isSafeInteger(block.id) && block.id >= 1, () => `block reply for block id ${block.id}`);
  assert(block.data.length >= 1, () => `block reply for block ${block.id} without data`);
  const h = start(Command.block, from);
  h.op = block.id;
  h.context = block.checksum;
  return finalize(h, block.data);
}

export function readBlock(message: Message): BlockData | string {
  const h = message.header;
  if (h.op < 1 || message.body.length === 0) return "malformed block";
  return { id: h.op, checksum: h.context, data: message.body };
}

// ---------------------------------------------------------------------------------------------
// Header-list bodies (§4.6)

export function encodeHeaders(headers: Header[]): Uint8Array {
  assert(headers.length <= view_headers_max, () => `a list of ${headers.length} headers (at most ${view_headers_max})`);
  const body = new Uint8Array(headers.length * header_size);
  headers.forEach((h, i) => writeHeader(h, body, i * header_size));
  return body;
}

/** Decodes a list of prepare headers, verifying each one's checksum; null if any is bad. */
export function decodeHeaders(body: Uint8Array, cluster: bigint): Header[] | null {
  if (body.length % header_size !== 0 || body.length / header_size > view_headers_max) return null;
  const headers: Header[] = [];
  for (let offset = 0; offset < body.length; offset += header_size) {
    const h = decodeHeader(body, offset);
    if (h === null || h.command !== Command.prepare || h.cluster !== cluster || h.replica === sender_client) return null;
    headers.push(h);
  }
  assert(headers.length * header_size === body.length, "decoded header count does not cover the body");
  return headers;
}

/** do_view_change body: count headers (128 bytes each), then one presence byte per header,
 * zero-padded to a multiple of 8, then u32 faulty op count, u32 reserved, and the faulty ops as
 * u64, ascending (docs/PROTOCOL.md §4.6). */
export function encodeDoViewChangeBody(dvc: Pick<DoViewChange, "headers" | "presence" | "faulty_ops">): Uint8Array {
  const { headers, presence, faulty_ops } = dvc;
  assert(faulty_ops.length <= faulty_ops_max, () => `do_view_change with ${faulty_ops.length} faulty ops (at most ${faulty_ops_max})`);
  // decodeDoViewChangeBody rejects all of these: sending one is this replica's bug.
  assert(
    presence.length === headers.length && presence.every((p) => p <= presence_faulty),
    "do_view_change presence does not match its headers",
  );
  const presence_end = headers.length * header_size + ((presence.length + 7) & ~7);
  const body = new Uint8Array(presence_end + 8 + 8 * faulty_ops.length);
  body.set(encodeHeaders(headers), 0);
  body.set(presence, headers.length * header_size);
  const view = new DataView(body.buffer);
  view.setUint32(presence_end, faulty_ops.length, true);
  faulty_ops.forEach((op, i) => view.setBigUint64(presence_end + 8 + 8 * i, BigInt(op), true));
  return body;
}

export function decodeDoViewChangeBody(
  body: Uint8Array,
  count: number,
  cluster: bigint,
): { headers: Header[]; presence: Uint8Array; faulty_ops: number[] } | null {
  const headers_size = count * header_size;
  const presence_end = headers_size + ((count + 7) & ~7);
  if (count > view_headers_max || body.length < presence_end + 8) return null;
  const headers = decodeHeaders(body.subarray(0, headers_size), cluster);
  if (headers === null) return null;
  const presence = body.slice(headers_size, headers_size + count);
  if (presence.some((p) => p > presence_faulty)) return null;
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  const faulty_count = view.getUint32(presence_end, true);
  if (faulty_count > faulty_ops_max || view.getUint32(presence_end + 4, true) !== 0 || body.length !== presence_end + 8 + 8 * faulty_count)
    return null;
  const faulty_ops: number[] = [];
  for (let i = 0; i < faulty_count; i++) {
    const op = Number(view.getBigUint64(presence_end + 8 + 8 * i, true));
    if (!Number.isSafeInteger(op) || (i > 0 && op <= faulty_ops[i - 1]!)) return null;
    faulty_ops.push(op);
  }
  assert(headers.length === count && presence.length === count, "decoded do_view_change does not hold count headers");
  return { headers, presence, faulty_ops };
}

/** A log suffix: strictly ascending, ending at op. */
export function suffixValid(headers: Header[], op: number): boolean {
  if (headers.length === 0 || headers[headers.length - 1]!.op !== op) return false;
  for (let i = 1; i < headers.length; i++) {
    if (headers[i]!.op <= headers[i - 1]!.op) return false;
  }
  return true;
}
