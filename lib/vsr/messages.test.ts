import { describe, expect, test } from "bun:test";
import { Command, Header, command_max, decode, encode, finalize, type Message } from "../net/codec.ts";
import { key_size_max, sender_client } from "../constants.ts";
import { AssertionError } from "../util/assert.ts";
import { Prng } from "../util/prng.ts";
import { keyToBytes } from "../store/keys.ts";
import { Operation, Result, encodeU64 } from "../store/operations.ts";
import { simulate } from "../../sim/simulator.ts";
import {
  PeerState,
  buildCommit,
  buildCommitOk,
  buildDoViewChange,
  buildHeaders,
  buildPing,
  buildPong,
  buildPrepare,
  buildPrepareOk,
  buildReply,
  buildRequest,
  buildRequestHeaders,
  buildRequestPrepare,
  buildRequestStartView,
  buildRequestStatus,
  buildRequestSync,
  buildBlock,
  buildRequestBlock,
  buildRequestValue,
  buildStartView,
  buildStartViewChange,
  buildStatus,
  buildSyncChunk,
  buildRequestSnapshot,
  buildSnapshotChunk,
  buildValue,
  decodeDoViewChangeBody,
  decodeHeaders,
  encodeDoViewChangeBody,
  encodeHeaders,
  readCommit,
  readCommitOk,
  readDoViewChange,
  readEnvelope,
  readHeaders,
  readPing,
  readPong,
  readPrepare,
  readPrepareOk,
  readReply,
  readRequest,
  readRequestHeaders,
  readRequestPrepare,
  readRequestStartView,
  readRequestStatus,
  readRequestSync,
  readBlock,
  readRequestBlock,
  readRequestValue,
  readStartView,
  readStartViewChange,
  readStatus,
  readSyncChunk,
  readRequestSnapshot,
  readSnapshotChunk,
  readValue,
  type Envelope,
} from "./messages.ts";
import { presence_absent, presence_faulty, presence_present } from "./view_change.ts";

const cluster = 0x1234_5678_9abc_def0n;
const from: Envelope = { cluster, replica: 2, replica_count: 5, view: 7, incarnation: 0xdead_beef };

/** A prepare header as it sits in a header list (§4.6). */
function prepareHeader(op: number, parent: bigint): Header {
  const h = new Header();
  h.command = Command.prepare;
  h.cluster = cluster;
  h.replica = 1;
  h.replica_count = 5;
  h.view = 6;
  h.op = op;
  h.parent = parent;
  h.timestamp = 1_700_000_000_000 + op;
  return finalize(h, new Uint8Array([op & 0xff])).header;
}

function suffix(first: number, last: number): Header[] {
  const out: Header[] = [];
  let parent = 0x77n;
  for (let op = first; op <= last; op++) {
    const h = prepareHeader(op, parent);
    out.push(h);
    parent = h.checksum;
  }
  return out;
}

/** Through the wire and back: what a receiver's onMessage sees. */
function wire(message: Message): Message {
  const decoded = decode(encode(message), cluster);
  if (!decoded.ok) throw new Error(`does not decode: ${decoded.detail}`);
  return decoded.message;
}

function ok<T>(read: T | string): T {
  if (typeof read === "string") throw new Error(read);
  return read;
}

/** The bytes of a message built the way the send sites built it before messages.ts existed
 * (makeHeader, then fields). */
function legacy(command: Command, fill: (h: Header) => void, body?: Uint8Array): Uint8Array {
  const h = new Header();
  h.command = command;
  h.cluster = from.cluster;
  h.replica = from.replica;
  h.replica_count = from.replica_count;
  h.view = from.view;
  h.incarnation = from.incarnation;
  fill(h);
  return encode(finalize(h, body));
}

const checkpoint = { op: 256, digest: 0xbb33_02e8_a960_8868n, checksum: 0x0102_0304_0506_0708n };

describe("every command: round trip through the wire, and the same bytes as the send sites before messages.ts existed", () => {
  test("ping", () => {
    const m = buildPing(from, { nonce: 0xfeed_f00d_1234_5678n });
    expect(readPing(wire(m))).toEqual({ nonce: 0xfeed_f00d_1234_5678n });
    expect(readEnvelope(wire(m))).toEqual(from);
    expect(encode(m)).toEqual(legacy(Command.ping, (h) => (h.context = 0xfeed_f00d_1234_5678n)));
  });

  test("pong", () => {
    const pong = { nonce: 99n, state: PeerState.formed, log_view: 6, op: 1000, commit_max: 990, durable_view: 7 };
    const m = buildPong(from, pong);
    expect(readPong(wire(m))).toEqual(pong);
    expect(encode(m)).toEqual(
      legacy(Command.pong, (h) => {
        h.context = 99n;
        h.operation = 3;
        h.op = 1000;
        h.commit = 990;
        h.log_view = 6;
        h.checkpoint_op = 7;
      }),
    );
  });

  test("request (from a client: replica 255, no replica_count, no incarnation)", () => {
    const request = { client: 0xc1n, session: 17, request: 42, operation: Operation.put, view: 3, body: new Uint8Array([1, 2, 3]) };
    const m = buildRequest(cluster, request);
    expect(readRequest(wire(m))).toEqual(request);
    // As sim/client.ts and lib/client/client.ts build it.
    const h = new Header();
    h.command = Command.request;
    h.cluster = cluster;
    h.replica = sender_client;
    h.client = 0xc1n;
    h.session = 17;
    h.request = 42;
    h.operation = Operation.put;
    h.view = 3;
    expect(encode(m)).toEqual(encode(finalize(h, new Uint8Array([1, 2, 3]))));
  });

  test("prepare", () => {
    const prepare = {
      op: 513,
      parent: 0xaan,
      commit_max: 510,
      timestamp: 1_700_000_000_123,
      checkpoint,
      requests: 2,
      body: new Uint8Array(40).fill(9),
    };
    const m = buildPrepare(from, prepare);
    expect(readPrepare(wire(m))).toEqual(prepare);
    expect(encode(m)).toEqual(
      legacy(
        Command.prepare,
        (h) => {
          h.op = 513;
          h.commit = 510;
          h.parent = 0xaan;
          h.timestamp = 1_700_000_000_123;
          h.checkpoint_op = checkpoint.op;
          h.checkpoint_digest = checkpoint.digest;
          h.context = checkpoint.checksum;
          h.request = 2;
        },
        new Uint8Array(40).fill(9),
      ),
    );
  });

  test("prepare_ok", () => {
    const ack = { op: 12, checksum: 0x1111n, parent: 0x2222n, commit_max: 10 };
    const m = buildPrepareOk(from, ack);
    expect(readPrepareOk(wire(m))).toEqual(ack);
    expect(encode(m)).toEqual(
      legacy(Command.prepare_ok, (h) => {
        h.op = 12;
        h.context = 0x1111n;
        h.parent = 0x2222n;
        h.commit = 10;
      }),
    );
  });

  test("reply (sendReply, and replyError with its view hint and the limit in the body)", () => {
    const reply = {
      client: 0xc1n,
      request: 5,
      session: 3,
      operation: Operation.put,
      result: Result.ok,
      body: encodeU64(4),
      op: 20,
      commit: 19,
      timestamp: 1_700_000_000_999,
    };
    const m = buildReply(from, reply);
    expect(readReply(wire(m))).toEqual(reply);
    expect(encode(m)).toEqual(
      legacy(
        Command.reply,
        (h) => {
          h.client = 0xc1n;
          h.request = 5;
          h.session = 3;
          h.operation = Operation.put;
          h.result = Result.ok;
          h.op = 20;
          h.commit = 19;
          h.timestamp = 1_700_000_000_999;
        },
        encodeU64(4),
      ),
    );
    const error = buildReply(
      { ...from, view: 4 },
      {
        client: 0xc1n,
        request: 5,
        session: 3,
        operation: Operation.put,
        result: Result.not_primary,
        body: new Uint8Array(0),
        op: 0,
        commit: 19,
        timestamp: 0,
      },
    );
    expect(encode(error)).toEqual(
      legacy(Command.reply, (h) => {
        h.view = 4;
        h.client = 0xc1n;
        h.request = 5;
        h.session = 3;
        h.operation = Operation.put;
        h.result = Result.not_primary;
        h.commit = 19;
      }),
    );
  });

  test("commit", () => {
    const commit = { commit_max: 300, commit_checksum: 0x3333n, round: 8, nonce: 0x4444_5555_6666_7777n, op: 303, checkpoint };
    const m = buildCommit(from, commit);
    expect(readCommit(wire(m))).toEqual(commit);
    expect(encode(m)).toEqual(
      legacy(Command.commit, (h) => {
        h.client = 0x4444_5555_6666_7777n;
        h.commit = 300;
        h.context = 0x3333n;
        h.session = 8;
        h.checkpoint_op = checkpoint.op;
        h.checkpoint_digest = checkpoint.digest;
        h.parent = checkpoint.checksum;
        h.op = 303;
      }),
    );
  });

  test("commit_ok", () => {
    const ack = { round: 8, nonce: 0x4444n, commit_max: 299 };
    const m = buildCommitOk(from, ack);
    expect(readCommitOk(wire(m))).toEqual(ack);
    expect(encode(m)).toEqual(
      legacy(Command.commit_ok, (h) => {
        h.session = 8;
        h.client = 0x4444n;
        h.commit = 299;
      }),
    );
  });

  test("start_view_change", () => {
    const m = buildStartViewChange(from, { durable_view: 6 });
    expect(readStartViewChange(wire(m))).toEqual({ durable_view: 6 });
    expect(encode(m)).toEqual(legacy(Command.start_view_change, (h) => (h.context = 6n)));
  });

  test("do_view_change", () => {
    const headers = suffix(10, 14);
    const presence = new Uint8Array([presence_present, presence_present, presence_absent, presence_faulty, presence_present]);
    const dvc = { log_view: 5, op: 14, commit: 11, headers, presence, faulty_ops: [13, 15, 900] };
    const m = buildDoViewChange(from, dvc);
    const read = ok(readDoViewChange(wire(m)));
    expect(read).toEqual({ ...dvc, checksum: m.header.checksum });
    expect(encode(m)).toEqual(
      legacy(
        Command.do_view_change,
        (h) => {
          h.log_view = 5;
          h.op = 14;
          h.commit = 11;
          h.request = 5;
        },
        encodeDoViewChangeBody(dvc),
      ),
    );
  });

  test("start_view", () => {
    const headers = suffix(30, 33);
    const sv = { op: 33, commit_max: 31, checkpoint_op: 0, nonce: 0x99n, headers };
    const m = buildStartView(from, sv);
    expect(ok(readStartView(wire(m)))).toEqual(sv);
    expect(encode(m)).toEqual(
      legacy(
        Command.start_view,
        (h) => {
          h.op = 33;
          h.commit = 31;
          h.checkpoint_op = 0;
          h.context = 0x99n;
        },
        encodeHeaders(headers),
      ),
    );
  });

  test("request_start_view (its view is the one wanted, not the sender's)", () => {
    const m = buildRequestStartView(from, { view: 9, nonce: 0x55n | 1n });
    expect(readRequestStartView(wire(m))).toEqual({ view: 9, nonce: 0x55n });
    expect(wire(m).header.view).toBe(9);
    expect(encode(m)).toEqual(
      legacy(Command.request_start_view, (h) => {
        h.view = 9;
        h.context = 0x55n;
      }),
    );
  });

  test("request_headers", () => {
    const m = buildRequestHeaders(from, { op_min: 40, op_max: 103 });
    expect(readRequestHeaders(wire(m))).toEqual({ op_min: 40, op_max: 103 });
    expect(encode(m)).toEqual(
      legacy(Command.request_headers, (h) => {
        h.commit = 40;
        h.op = 103;
      }),
    );
  });

  test("headers", () => {
    const headers = suffix(40, 44);
    for (const canonical of [true, false]) {
      const reply = { op: 50, commit_max: 44, canonical, headers };
      const m = buildHeaders(from, reply);
      expect(ok(readHeaders(wire(m)))).toEqual(reply);
      expect(encode(m)).toEqual(
        legacy(
          Command.headers,
          (h) => {
            h.op = 50;
            h.commit = 44;
            h.operation = canonical ? 1 : 0;
          },
          encodeHeaders(headers),
        ),
      );
    }
  });

  test("request_prepare", () => {
    const m = buildRequestPrepare(from, { op: 77, checksum: 0xabcn });
    expect(readRequestPrepare(wire(m))).toEqual({ op: 77, checksum: 0xabcn });
    expect(encode(m)).toEqual(
      legacy(Command.request_prepare, (h) => {
        h.op = 77;
        h.context = 0xabcn;
      }),
    );
  });

  test("request_sync", () => {
    const m = buildRequestSync(from, { checkpoint, position: 12 });
    expect(readRequestSync(wire(m))).toEqual({ checkpoint, position: 12 });
    expect(encode(m)).toEqual(
      legacy(Command.request_sync, (h) => {
        h.op = checkpoint.op;
        h.checkpoint_digest = checkpoint.digest;
        h.context = checkpoint.checksum;
        h.commit = 12;
      }),
    );
  });

  test("sync_chunk, middle and last", () => {
    for (const next of [13, null]) {
      const chunk = { checkpoint, position: 12, next, body: new Uint8Array(64).fill(3) };
      const m = buildSyncChunk(from, chunk);
      expect(readSyncChunk(wire(m))).toEqual(chunk);
      expect(encode(m)).toEqual(
        legacy(
          Command.sync_chunk,
          (h) => {
            h.op = checkpoint.op;
            h.checkpoint_digest = checkpoint.digest;
            h.context = checkpoint.checksum;
            h.commit = 12;
            h.timestamp = next ?? 0;
            h.result = next === null ? 1 : 0;
          },
          new Uint8Array(64).fill(3),
        ),
      );
    }
  });

  test("request_status (as lib/client/cluster_probe.ts builds it)", () => {
    const m = buildRequestStatus(cluster, { client: 0x5n, request: 0 });
    expect(readRequestStatus(wire(m))).toEqual({ client: 0x5n, request: 0 });
    const h = new Header();
    h.command = Command.request_status;
    h.cluster = cluster;
    h.replica = sender_client;
    h.client = 0x5n;
    expect(encode(m)).toEqual(encode(finalize(h)));
  });

  test("status (as lib/node/replica_node.ts builds it: no incarnation)", () => {
    const doc = new Uint8Array([0xa0]);
    const m = buildStatus({ ...from, incarnation: 0 }, { client: 0x5n, request: 3, body: doc });
    expect(readStatus(wire(m))).toEqual({ client: 0x5n, request: 3, body: doc });
    const h = new Header();
    h.command = Command.status;
    h.cluster = cluster;
    h.replica = from.replica;
    h.replica_count = from.replica_count;
    h.client = 0x5n;
    h.request = 3;
    h.view = from.view;
    expect(encode(m)).toEqual(encode(finalize(h, doc)));
  });

  test("request_value", () => {
    const key = "k\u00ff\u0000z";
    const m = buildRequestValue(from, { version: 4, checksum: 0xcafen, key });
    expect(ok(readRequestValue(wire(m)))).toEqual({ version: 4, checksum: 0xcafen, key });
    expect(encode(m)).toEqual(
      legacy(
        Command.request_value,
        (h) => {
          h.op = 4;
          h.context = 0xcafen;
        },
        keyToBytes(key),
      ),
    );
  });

  test("value", () => {
    const key = "x".repeat(300); // a key size above 255: both bytes of the u16
    const value = new Uint8Array([5, 6, 7]);
    const m = buildValue(from, { version: 4, checksum: 0xcafen, key, value });
    expect(ok(readValue(wire(m)))).toEqual({ version: 4, checksum: 0xcafen, key, value });
    // onRequestValue's body: u16 key size, the key bytes as received, the value.
    const key_bytes = keyToBytes(key);
    const body = new Uint8Array(2 + key_bytes.length + value.length);
    body[0] = key_bytes.length & 0xff;
    body[1] = key_bytes.length >>> 8;
    body.set(key_bytes, 2);
    body.set(value, 2 + key_bytes.length);
    expect(encode(m)).toEqual(
      legacy(
        Command.value,
        (h) => {
          h.op = 4;
          h.context = 0xcafen;
        },
        body,
      ),
    );
  });

  test("request_block: op = block id, context = its checksum, no body", () => {
    const m = buildRequestBlock(from, { id: 2 ** 40 + 3, checksum: 0xfeedfacecafebeefn });
    expect(ok(readRequestBlock(wire(m)))).toEqual({ id: 2 ** 40 + 3, checksum: 0xfeedfacecafebeefn });
    expect(m.body.length).toBe(0);
    expect(encode(m)).toEqual(
      legacy(Command.request_block, (h) => {
        h.op = 2 ** 40 + 3;
        h.context = 0xfeedfacecafebeefn;
      }),
    );
  });

  test("block: the same op and context, the body is the block's bytes", () => {
    const data = new Uint8Array([1, 2, 3, 4, 5]);
    const m = buildBlock(from, { id: 7, checksum: 0xcafen, data });
    expect(ok(readBlock(wire(m)))).toEqual({ id: 7, checksum: 0xcafen, data });
    expect(encode(m)).toEqual(
      legacy(
        Command.block,
        (h) => {
          h.op = 7;
          h.context = 0xcafen;
        },
        data,
      ),
    );
  });
});

describe("readers reject what the replica drops as malformed", () => {
  const bare = (command: Command, fill: (h: Header) => void, body?: Uint8Array): Message => {
    const h = new Header();
    h.command = command;
    h.cluster = cluster;
    fill(h);
    return finalize(h, body);
  };

  test("start_view and do_view_change: headers that are not a suffix ending at op", () => {
    const headers = suffix(5, 8);
    expect(readStartView(bare(Command.start_view, (h) => (h.op = 9), encodeHeaders(headers)))).toBe("malformed start_view headers");
    expect(readStartView(bare(Command.start_view, (h) => (h.op = 0), new Uint8Array(0)))).toBe("malformed start_view headers");
    expect(readStartView(bare(Command.start_view, (h) => (h.op = 8), encodeHeaders([headers[1]!, headers[0]!, headers[3]!])))).toBe(
      "malformed start_view headers",
    );
    const body = encodeDoViewChangeBody({ headers, presence: new Uint8Array(4).fill(presence_present), faulty_ops: [] });
    expect(readDoViewChange(bare(Command.do_view_change, (h) => ((h.op = 7), (h.request = 4)), body))).toBe(
      "malformed do_view_change headers",
    );
    expect(typeof readDoViewChange(bare(Command.do_view_change, (h) => ((h.op = 8), (h.request = 4)), body))).toBe("object");
    expect(readDoViewChange(bare(Command.do_view_change, (h) => ((h.op = 8), (h.request = 3)), body))).toBe(
      "malformed do_view_change headers",
    );
  });

  test("headers: a damaged, foreign or non-prepare header", () => {
    const bytes = encodeHeaders(suffix(5, 6));
    bytes[130] = bytes[130]! ^ 1;
    expect(readHeaders(bare(Command.headers, () => {}, bytes))).toBe("malformed headers");
    expect(readHeaders(bare(Command.headers, () => {}, new Uint8Array(100)))).toBe("malformed headers");
    const foreign = bare(Command.headers, (h) => (h.cluster = 1n), encodeHeaders(suffix(5, 6)));
    expect(readHeaders(foreign)).toBe("malformed headers");
    expect(
      decodeHeaders(encodeHeaders([finalize(Object.assign(new Header(), { cluster, command: Command.commit })).header]), cluster),
    ).toBeNull();
  });

  test("do_view_change body: presence above faulty, reserved word, faulty ops not ascending", () => {
    const headers = suffix(1, 2);
    const good = encodeDoViewChangeBody({ headers, presence: new Uint8Array([1, 2]), faulty_ops: [3, 4] });
    expect(decodeDoViewChangeBody(good, 2, cluster)).not.toBeNull();
    const presence = good.slice();
    presence[256] = 3;
    expect(decodeDoViewChangeBody(presence, 2, cluster)).toBeNull();
    const reserved = good.slice();
    reserved[256 + 8 + 4] = 1;
    expect(decodeDoViewChangeBody(reserved, 2, cluster)).toBeNull();
    expect(
      decodeDoViewChangeBody(encodeDoViewChangeBody({ headers, presence: new Uint8Array([1, 1]), faulty_ops: [4, 4] }), 2, cluster),
    ).toBeNull();
    expect(decodeDoViewChangeBody(good.subarray(0, good.length - 8), 2, cluster)).toBeNull();
  });

  test("request_value: a key of 0 or more than key_size_max bytes; value: a short body", () => {
    expect(readRequestValue(bare(Command.request_value, () => {}, new Uint8Array(0)))).toBe("malformed request_value key");
    expect(readRequestValue(bare(Command.request_value, () => {}, new Uint8Array(key_size_max + 1)))).toBe("malformed request_value key");
    expect(typeof readRequestValue(bare(Command.request_value, () => {}, new Uint8Array(key_size_max)))).toBe("object");
    expect(readValue(bare(Command.value, () => {}, new Uint8Array([0, 0, 9])))).toBe("malformed value");
    expect(readValue(bare(Command.value, () => {}, new Uint8Array([3, 0, 9, 9])))).toBe("malformed value");
    expect(readValue(bare(Command.value, () => {}, new Uint8Array([1])))).toBe("malformed value");
    expect(ok(readValue(bare(Command.value, () => {}, new Uint8Array([1, 0, 65]))))).toMatchObject({ key: "A", value: new Uint8Array(0) });
  });

  test("request_block: block id 0 or a body; block: block id 0 or no data", () => {
    const id = (op: number) => (h: Header) => {
      h.op = op;
    };
    expect(readRequestBlock(bare(Command.request_block, id(0)))).toBe("malformed request_block");
    expect(readRequestBlock(bare(Command.request_block, id(1), new Uint8Array(1)))).toBe("malformed request_block");
    expect(ok(readRequestBlock(bare(Command.request_block, id(1))))).toEqual({ id: 1, checksum: 0n });
    expect(readBlock(bare(Command.block, id(0), new Uint8Array(1)))).toBe("malformed block");
    expect(readBlock(bare(Command.block, id(1)))).toBe("malformed block");
    expect(ok(readBlock(bare(Command.block, id(1), new Uint8Array([9]))))).toEqual({ id: 1, checksum: 0n, data: new Uint8Array([9]) });
  });

  test("sync_chunk: any nonzero result is the last chunk, as onSyncChunk reads it", () => {
    expect(readSyncChunk(bare(Command.sync_chunk, (h) => ((h.result = 2), (h.timestamp = 5)))).next).toBeNull();
    expect(readSyncChunk(bare(Command.sync_chunk, (h) => (h.timestamp = 0))).next).toBe(0);
  });
});

/** Rebuilds a message from what its reader names: equal bytes prove the reader names every field
 * the sender set, and the builder sets nothing else. */
function rebuild(m: Message): Message {
  const env = readEnvelope(m);
  switch (m.header.command as Command) {
    case Command.ping:
      return buildPing(env, readPing(m));
    case Command.pong:
      return buildPong(env, readPong(m));
    case Command.request:
      return buildRequest(env.cluster, readRequest(m));
    case Command.prepare:
      return buildPrepare(env, readPrepare(m));
    case Command.prepare_ok:
      return buildPrepareOk(env, readPrepareOk(m));
    case Command.reply:
      return buildReply(env, readReply(m));
    case Command.commit:
      return buildCommit(env, readCommit(m));
    case Command.commit_ok:
      return buildCommitOk(env, readCommitOk(m));
    case Command.start_view_change:
      return buildStartViewChange(env, readStartViewChange(m));
    case Command.do_view_change:
      return buildDoViewChange(env, ok(readDoViewChange(m)));
    case Command.start_view:
      return buildStartView(env, ok(readStartView(m)));
    case Command.request_start_view:
      return buildRequestStartView(env, readRequestStartView(m));
    case Command.request_headers:
      return buildRequestHeaders(env, readRequestHeaders(m));
    case Command.headers:
      return buildHeaders(env, ok(readHeaders(m)));
    case Command.request_prepare:
      return buildRequestPrepare(env, readRequestPrepare(m));
    case Command.request_sync:
      return buildRequestSync(env, readRequestSync(m));
    case Command.sync_chunk:
      return buildSyncChunk(env, readSyncChunk(m));
    case Command.request_status:
      return buildRequestStatus(env.cluster, readRequestStatus(m));
    case Command.status:
      return buildStatus(env, readStatus(m));
    case Command.request_value:
      return buildRequestValue(env, ok(readRequestValue(m)));
    case Command.value:
      return buildValue(env, ok(readValue(m)));
    case Command.request_block:
      return buildRequestBlock(env, ok(readRequestBlock(m)));
    case Command.block:
      return buildBlock(env, ok(readBlock(m)));
    case Command.request_snapshot:
      return buildRequestSnapshot(env.cluster, ok(readRequestSnapshot(m)));
    case Command.snapshot_chunk:
      return buildSnapshotChunk(env, readSnapshotChunk(m));
  }
}

test("every message the replicas send in simulated runs is rebuilt byte for byte from its typed record", () => {
  const seen = new Map<string, number>();
  for (const [seed, replicas] of [
    [3, 3],
    [9, 3],
    [4, 5],
  ] as const) {
    simulate({
      seed,
      replicas,
      clients: 4,
      ticks: 1500,
      trace: (_from, _to, message) => {
        const name = Command[message.header.command]!;
        seen.set(name, (seen.get(name) ?? 0) + 1);
        const again = rebuild(message);
        if (again.header.checksum !== message.header.checksum) expect(encode(again)).toEqual(encode(message));
        expect(again.body).toEqual(message.body);
      },
    });
  }
  console.log([...seen].map(([name, count]) => `${name} ${count}`).join(", "));
  // The commands of a run with faults: formation, normal operation, view changes and repair.
  for (const name of [
    "ping",
    "pong",
    "prepare",
    "prepare_ok",
    "reply",
    "commit",
    "commit_ok",
    "start_view_change",
    "do_view_change",
    "start_view",
    "request_start_view",
    "request_headers",
    "headers",
    "request_prepare",
  ]) {
    expect(seen.get(name) ?? 0).toBeGreaterThan(0);
  }
}, 120_000);

test("random field values survive every builder and reader", () => {
  const prng = new Prng(13);
  for (let i = 0; i < 200; i++) {
    const replica_count = 1 + prng.int(15);
    const env: Envelope = { cluster, replica: prng.int(replica_count), replica_count, view: prng.u32(), incarnation: prng.u32() };
    const n = () => prng.int(2 ** 31) * 2 ** 21 + prng.int(2 ** 21);
    const id = { op: n(), digest: prng.u64(), checksum: prng.u64() };
    const records: [Message, unknown, unknown][] = [];
    // Builders refuse what no honest replica sends, so the numbers keep the rules they check.
    const pong = {
      nonce: prng.u64(),
      state: prng.int(4),
      log_view: prng.int(env.view + 1),
      op: n(),
      commit_max: n(),
      durable_view: prng.int(env.view + 1),
    };
    records.push([buildPong(env, pong), readPong, pong]);
    const commit = { commit_max: id.op + n(), commit_checksum: prng.u64(), round: 1 + n(), nonce: prng.u64(), op: 0, checkpoint: id };
    commit.op = commit.commit_max + prng.int(100);
    records.push([buildCommit(env, commit), readCommit, commit]);
    const prepare_op = id.op + 1 + n();
    const prepare = {
      op: prepare_op,
      parent: prng.u64(),
      commit_max: prepare_op - 1 - prng.int(Math.min(prepare_op, 2 ** 32)),
      timestamp: n(),
      checkpoint: id,
      requests: 1 + prng.int(2 ** 31),
      body: new Uint8Array(prng.int(20)),
    };
    records.push([buildPrepare(env, prepare), readPrepare, prepare]);
    const position = n();
    const chunk = {
      checkpoint: id,
      position,
      next: prng.chance(0.5) ? null : position + 1 + prng.int(1000),
      body: new Uint8Array(1 + prng.int(8)),
    };
    records.push([buildSyncChunk(env, chunk), readSyncChunk, chunk]);
    const reply = {
      client: prng.u64(),
      request: prng.u32(),
      session: n(),
      operation: prng.int(256),
      result: prng.int(256),
      body: new Uint8Array(prng.int(9)),
      op: n(),
      commit: n(),
      timestamp: n(),
    };
    records.push([buildReply(env, reply), readReply, reply]);
    for (const [message, read, record] of records) {
      const received = decode(encode(message), null);
      expect(received.ok).toBe(true);
      if (received.ok) {
        expect((read as (m: Message) => unknown)(received.message)).toEqual(record);
        expect(readEnvelope(received.message)).toEqual(env);
      }
    }
  }
});

test("a builder for every command", () => {
  // rebuild's switch is exhaustive over Command (a new command fails to typecheck there); this
  // guards the numbering it relies on.
  expect(command_max).toBe(Command.snapshot_chunk);
});

test("builders refuse what no honest replica sends", () => {
  const headers = suffix(1, 3);
  expect(() => buildStartView(from, { op: 4, commit_max: 0, checkpoint_op: 0, nonce: 0n, headers })).toThrow(AssertionError);
  expect(() =>
    buildDoViewChange(from, { log_view: from.view, op: 3, commit: 0, headers, presence: new Uint8Array(3), faulty_ops: [] }),
  ).toThrow(AssertionError);
  expect(() => buildDoViewChange(from, { log_view: 1, op: 3, commit: 0, headers, presence: new Uint8Array(2), faulty_ops: [] })).toThrow(
    AssertionError,
  );
  // A start_view below its own checkpoint, a prepare naming a checkpoint or commit at or past its
  // op, a commit past the primary's head, an empty chunk that is not the last.
  expect(() => buildStartView(from, { op: 3, commit_max: 0, checkpoint_op: 4, nonce: 0n, headers })).toThrow(AssertionError);
  const id = { op: 8, digest: 1n, checksum: 2n };
  expect(() =>
    buildPrepare(from, { op: 8, parent: 0n, commit_max: 0, timestamp: 1, checkpoint: id, requests: 1, body: new Uint8Array(8) }),
  ).toThrow(AssertionError);
  expect(() =>
    buildPrepare(from, { op: 9, parent: 0n, commit_max: 9, timestamp: 1, checkpoint: id, requests: 1, body: new Uint8Array(8) }),
  ).toThrow(AssertionError);
  expect(() => buildCommit(from, { commit_max: 10, commit_checksum: 0n, round: 1, nonce: 0n, op: 9, checkpoint: id })).toThrow(
    AssertionError,
  );
  expect(() => buildSyncChunk(from, { checkpoint: id, position: 0, next: 1, body: new Uint8Array(0) })).toThrow(AssertionError);
  expect(() => buildHeaders(from, { op: 3, commit_max: 0, canonical: true, headers: [] })).toThrow(AssertionError);
  expect(() => buildSyncChunk(from, { checkpoint, position: 5, next: 5, body: new Uint8Array(0) })).toThrow(AssertionError);
  expect(() => buildRequestValue(from, { version: 1, checksum: 0n, key: "" })).toThrow(AssertionError);
  expect(() => buildRequestBlock(from, { id: 0, checksum: 0n })).toThrow(AssertionError);
  expect(() => buildBlock(from, { id: 1, checksum: 0n, data: new Uint8Array(0) })).toThrow(AssertionError);
  expect(() => buildRequestHeaders(from, { op_min: 5, op_max: 4 })).toThrow(AssertionError);
});

describe("request_snapshot", () => {
  const asked = { client: 5n, request: 3, checkpoint: { op: 16, digest: 7n, checksum: 8n }, position: 4, size_max: 4096 };
  const withBody = (body: Uint8Array) => finalize(buildRequestSnapshot(1n, asked).header, body);
  test("reads back what was built", () => {
    expect(readRequestSnapshot(buildRequestSnapshot(1n, asked))).toEqual(asked);
  });
  test("a malformed request says why (the replica answers bad_request)", () => {
    expect(readRequestSnapshot(withBody(new Uint8Array(4)))).toBe("a body of 4 bytes, not 8");
    expect(readRequestSnapshot(withBody(new Uint8Array([0, 16, 0, 0, 1, 0, 0, 0])))).toBe("reserved bytes not zero");
    expect(readRequestSnapshot(withBody(new Uint8Array(8)))).toMatch(/^size_max 0 is not 1\.\.\d+$/);
    expect(readRequestSnapshot(withBody(new Uint8Array([0, 0, 0x41, 0, 0, 0, 0, 0])))).toMatch(/^size_max 4259840 is not/);
    const newest = buildRequestSnapshot(1n, { ...asked, checkpoint: { op: 0, digest: 0n, checksum: 0n }, position: 0 });
    newest.header.commit = 2;
    expect(readRequestSnapshot(finalize(newest.header, newest.body))).toContain("from position 0");
  });
});
