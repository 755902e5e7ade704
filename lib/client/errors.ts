/** Errors a client operation can end with; each carries a code a program can switch on and a
 * message a person can act on. */
export type ClientErrorCode =
  | "not_found"
  | "condition_failed"
  | "key_invalid"
  | "value_too_large"
  | "bad_request"
  /** The session was evicted while a write was outstanding: it may or may not have happened. */
  | "evicted"
  /** No replica answered in time: fewer than a majority are up and reachable. */
  | "no_quorum"
  /** Every replica answered that it belongs to another cluster: the client's address list
   * differs from the replicas' (docs/PROTOCOL.md §3.7 wrong_cluster). */
  | "wrong_cluster"
  /** A reply that does not parse: a bug or a corrupted peer. */
  | "protocol"
  | "closed";

export class ClientError extends Error {
  override name = "ClientError";
  constructor(
    readonly code: ClientErrorCode,
    message: string,
  ) {
    super(message);
  }
}
