/**
 * A client history: what every client asked, when, and what it was told. Recorded by the
 * simulator's clients (virtual time) and by toastyfs_random_client (real time), and checked for
 * linearizability per key by lib/check/linearizability.ts.
 *
 * Values are recorded by a short tag (for example "c3#17", unique per put) rather than their bytes,
 * so model states stay small.
 */
export type HistoryInput =
  | { kind: "put"; key: string; value: string; if_version?: number; if_absent?: boolean }
  | { kind: "get"; key: string }
  | { kind: "delete"; key: string; if_version?: number }
  /** A key's presence as seen by a list: derived from list results, one per key the list covered. */
  | { kind: "exists"; key: string };

export type HistoryOutput =
  /** put: version is the new version. get: value and version read. delete: version deleted.
   * exists: version of the key as listed. */
  { status: "ok"; version: number; value?: string } | { status: "not_found" } | { status: "condition_failed" };

export interface HistoryOperation {
  /** The client (process) that issued it; a client has one operation open at a time. */
  client: number;
  input: HistoryInput;
  /** Time the request was issued. */
  call: number;
  /** Time the reply arrived, or null if none did (timed out, crashed): it may or may not have
   * taken effect, at any time after call. */
  ret: number | null;
  /** null when ret is null. */
  output: HistoryOutput | null;
}

export type History = HistoryOperation[];
