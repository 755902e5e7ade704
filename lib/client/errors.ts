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
  /** Every replica refused this client's authentication, or the client refused theirs: a missing,
   * extra or wrong secret (docs/PROTOCOL.md §6.4). Not an outage: retrying will not help. */
  | "authentication_failed"
  /** Every replica answered that it belongs to another cluster: the client's address list
   * differs from the replicas' (docs/PROTOCOL.md §3.7 wrong_cluster). */
  | "wrong_cluster"
  /** A reply that does not parse: a bug or a corrupted peer. */
  | "protocol"
  | "closed"
  // Large objects (docs/LARGE_OBJECTS.md §5.8, §10).
  /** The object was replaced (or deleted) while a streamed get read it. */
  | "object_changed"
  /** The upload is unknown, completed, aborted or expired. */
  | "upload_not_found"
  /** A range starts beyond the object's end. */
  | "range_invalid"
  /** A complete named a block the cluster does not have (a client bug: blocks are sent first). */
  | "upload_incomplete"
  /** The bytes sent differ from the size declared for the upload. */
  | "size_mismatch"
  /** The cluster's limit of open uploads is reached. */
  | "too_many_uploads"
  /** The source file shrank or grew while it was streamed. */
  | "source_changed"
  /** The caller cancelled the operation (an AbortSignal, Ctrl-C). */
  | "aborted"
  /** A read's bytes do not match the checksums the cluster stored: a bug or damage in transit. */
  | "checksum_mismatch";

export class ClientError extends Error {
  override name = "ClientError";
  /** A put that failed after create_upload: the upload's id, so that a person can abort it
   * (toastyfs abort-upload ID) if the client could not. */
  upload_id: number | null = null;
  /** Whether the client aborted that upload itself. */
  upload_aborted = false;
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    /** The number the cluster's reply carried, when it carried one: the current version
     * (condition_failed, object_changed), the object's size (range_invalid), a limit. */
    readonly detail: number | null = null,
  ) {
    super(message);
  }
}
