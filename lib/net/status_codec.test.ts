import { expect, test } from "bun:test";
import { Encoder } from "cbor-x";
import { decodeStatus, encodeStatus, type ReplicaStatus } from "./status_codec.ts";

const status: ReplicaStatus = {
  replica: 1,
  address: "127.0.0.1:8082",
  status: "view_change",
  primary: false,
  view: 7,
  log_view: 3,
  op: 40,
  commit_min: 39,
  commit_max: 40,
  checkpoint: 0,
  disk_bytes: 1024,
  objects: 2,
  object_bytes: 10,
  uptime_ms: 5000,
  problem: null,
  counters: { view_changes: 2 },
  status_ms: 12_000,
  status_view: 4,
  peers: [
    {
      replica: 0,
      address: "127.0.0.1:8081",
      heard_ms: 11_900,
      connected: false,
      error: "connect failed: ECONNREFUSED (Failed to connect)",
    },
    { replica: 2, address: "127.0.0.1:8083", heard_ms: null, connected: true, error: null },
  ],
  last_warning: { text: "replica 0 at 127.0.0.1:8081 is still unreachable", ms_ago: 900 },
  incarnation: 0x1234abcd,
};

const raw = new Encoder({ useRecords: false, tagUint8Array: false });

test("a status document round-trips, peers and last warning included", () => {
  expect(decodeStatus(encodeStatus(status))).toEqual(status);
});

test("a document from a replica without the later fields decodes, with them null", () => {
  const { status_ms, status_view, peers, last_warning, incarnation, ...old } = status;
  void [status_ms, status_view, peers, last_warning, incarnation];
  expect(decodeStatus(raw.encode(old))).toEqual({
    ...old,
    status_ms: null,
    status_view: null,
    peers: null,
    last_warning: null,
    incarnation: null,
  });
});

test("a later field of the wrong type makes the document malformed", () => {
  expect(decodeStatus(raw.encode({ ...status, status_ms: "12 s" }))).toBeNull();
  expect(
    decodeStatus(raw.encode({ ...status, peers: [{ replica: 0, address: "x", heard_ms: "never", connected: false, error: null }] })),
  ).toBeNull();
  expect(decodeStatus(raw.encode({ ...status, peers: {} }))).toBeNull();
  expect(decodeStatus(raw.encode({ ...status, last_warning: "text" }))).toBeNull();
});
