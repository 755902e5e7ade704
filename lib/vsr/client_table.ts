/**
 * The client table (docs/DESIGN.md §4, "sessions"): per client, its session, the number of its last
 * executed request and the reply to it. Part of the replicated state: it changes only when a
 * committed op executes, never when a request arrives, so every replica's table is identical at
 * every op. Bounded by clients_max; when full, registering evicts the session that committed least
 * recently, and that client's next request is answered `evicted`.
 */
import { assert } from "../util/assert.ts";
import { checksum } from "../util/checksum.ts";

export interface StoredReply {
  op: number;
  timestamp: number;
  operation: number;
  result: number;
  body: Uint8Array;
}

export interface ClientSession {
  /** The op number of the register op that created the session. */
  session: number;
  /** The last executed request number. */
  request: number;
  /** The reply to that request, resent when it is retried. */
  reply: StoredReply;
  /** Op of the last execution for this client: eviction order. */
  commit_op: number;
}

/** Stored replies are small (puts and deletes answer a version), so the table's memory is bounded. */
export const stored_reply_body_max = 64;

const u64_mask = (1n << 64n) - 1n;

export class ClientTable {
  private readonly sessions = new Map<bigint, ClientSession>();
  private digest_sum = 0n;

  constructor(readonly clients_max: number) {
    assert(clients_max >= 1, "clients_max must be at least 1");
  }

  get size(): number {
    return this.sessions.size;
  }

  get(client: bigint): ClientSession | undefined {
    return this.sessions.get(client);
  }

  /** Creates a session at op (the register op, whose request number it records, so a retried
   * register is recognised as a duplicate), evicting the least recently committed session if the
   * table is full. Returns the evicted client, if any. */
  register(client: bigint, op: number, request: number, reply: StoredReply): bigint | null {
    let evicted: bigint | null = null;
    const existing = this.sessions.get(client);
    if (existing !== undefined) {
      this.remove(client);
    } else if (this.sessions.size >= this.clients_max) {
      evicted = this.leastRecent();
      this.remove(evicted);
    }
    this.insert(client, { session: op, request, reply, commit_op: op });
    // A registering client never evicts itself, and the table stays within clients_max.
    assert(
      evicted !== client && this.sessions.size <= this.clients_max,
      () => `client table: register of ${client} left ${this.sessions.size} sessions, evicted ${evicted}`,
    );
    return evicted;
  }

  /** Records the execution of request `request` of client at op. */
  record(client: bigint, op: number, request: number, reply: StoredReply): void {
    const entry = this.sessions.get(client);
    assert(entry !== undefined, "client table: record for a client without a session");
    assert(request > entry.request, () => `client table: request ${request} not after ${entry.request}`);
    assert(reply.body.length <= stored_reply_body_max, "client table: stored reply too large");
    // Ops execute in order: a session's latest commit never moves back (eviction picks the oldest by it).
    assert(op >= entry.commit_op, () => `client table: client ${client} recorded at op ${op} after op ${entry.commit_op}`);
    this.remove(client);
    this.insert(client, { session: entry.session, request, reply, commit_op: op });
  }

  private leastRecent(): bigint {
    let oldest: bigint | null = null;
    let oldest_op = Infinity;
    // Ties (clients executed in the same batch) break by client id, never by Map order: a table
    // restored from a checkpoint iterates in another order than one built op by op.
    for (const [client, entry] of this.sessions) {
      if (entry.commit_op < oldest_op || (entry.commit_op === oldest_op && client < oldest!)) {
        oldest_op = entry.commit_op;
        oldest = client;
      }
    }
    assert(oldest !== null, "client table: eviction from an empty table");
    return oldest;
  }

  private insert(client: bigint, entry: ClientSession): void {
    // The digest adds one hash per session: inserting over a live entry would count it twice.
    assert(!this.sessions.has(client), () => `client table: ${client} inserted over its own session`);
    this.sessions.set(client, entry);
    this.digest_sum = (this.digest_sum + sessionHash(client, entry)) & u64_mask;
  }

  private remove(client: bigint): void {
    const entry = this.sessions.get(client);
    if (entry === undefined) return;
    this.digest_sum = (this.digest_sum - sessionHash(client, entry)) & u64_mask;
    this.sessions.delete(client);
  }

  digest(): bigint {
    return this.digest_sum;
  }

  /** The running digest is the sum of the sessions' hashes, and the table within its bound. O(n):
   * for tests and Replica.invariants(), not for every mutation. */
  invariants(): void {
    // Summed unmasked and reduced once: the same value mod 2^64, with half the BigInt operations.
    let sum = 0n;
    for (const [client, entry] of this.sessions) sum += sessionHash(client, entry);
    assert((sum & u64_mask) === this.digest_sum, "client table: running digest disagrees with its sessions");
    assert(this.sessions.size <= this.clients_max, () => `client table: ${this.sessions.size} sessions over ${this.clients_max}`);
  }

  /** Sessions in a deterministic order (by client id), for checkpoints. */
  entries(): [bigint, ClientSession][] {
    return [...this.sessions].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  /** Restores a session from a checkpoint. */
  restore(client: bigint, entry: ClientSession): void {
    assert(!this.sessions.has(client), "client table: duplicate session in checkpoint");
    assert(this.sessions.size < this.clients_max, "client table: checkpoint has more sessions than clients_max");
    assert(entry.reply.body.length <= stored_reply_body_max, "client table: checkpoint holds a stored reply too large");
    this.insert(client, entry);
  }
}

/** One fixed-size scratch buffer for session hashes: the body is at most stored_reply_body_max
 * bytes and its length is hashed too, so zero padding is unambiguous. */
const session_scratch = new Uint8Array(56 + stored_reply_body_max);
const session_view = new DataView(session_scratch.buffer);

function sessionHash(client: bigint, entry: ClientSession): bigint {
  // setUint8 wraps silently: an out-of-range operation or result would hash as another reply. (The
  // message is built only on failure: Replica.invariants() rehashes every session after most steps.)
  const reply = entry.reply;
  if (!(reply.operation >= 0 && reply.operation <= 0xff && reply.result >= 0 && reply.result <= 0xff))
    assert(false, `client ${client}: stored reply operation ${reply.operation} result ${reply.result}`);
  const v = session_view;
  v.setBigUint64(0, client, true);
  v.setFloat64(8, entry.session, true);
  v.setFloat64(16, entry.request, true);
  v.setFloat64(24, entry.commit_op, true);
  v.setFloat64(32, entry.reply.op, true);
  v.setFloat64(40, entry.reply.timestamp, true);
  v.setUint8(48, entry.reply.operation);
  v.setUint8(49, entry.reply.result);
  v.setUint16(50, entry.reply.body.length, true);
  session_scratch.fill(0, 56);
  session_scratch.set(entry.reply.body, 56);
  return checksum(session_scratch);
}
