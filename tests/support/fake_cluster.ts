/**
 * A cluster in one object for client unit tests: requests are executed at once by the replicas'
 * own code (lib/store execute.ts, large_bodies.ts validateLargeRequest) against an in-memory store
 * whose "disk" keeps each request body, so the client's large puts and gets are checked against
 * the real rules without a network. Each lane is a Caller that must never have two requests in
 * flight (a channel's rule); calls yield to the event loop first, so lanes really overlap.
 */
import { Command, Header, finalize } from "../../lib/net/codec.ts";
import { value_size_max_default } from "../../lib/constants.ts";
import { ObjectStore, type ObjectEntry } from "../../lib/store/object_store.ts";
import { Operation, Result } from "../../lib/store/operations.ts";
import { executeLargeRead, executeLargeWrite, executeRead, executeWrite, type ExecuteResult } from "../../lib/store/execute.ts";
import { validateLargeRequest } from "../../lib/store/large_bodies.ts";
import type { Block } from "../../lib/store/uploads.ts";
import type { Caller } from "../../lib/client/channel.ts";
import { resultError } from "../../lib/client/session.ts";
import { ClientError } from "../../lib/client/errors.ts";

const body_offset = 100;

export class FakeCluster {
  readonly store = new ObjectStore();
  private readonly segments = new Map<number, Uint8Array>();
  private next_segment = 1;
  private timestamp = 1000;
  /** Operations received, in order of arrival. */
  readonly received: { operation: Operation; body: Uint8Array }[] = [];
  in_flight = 0;
  max_in_flight = 0;
  /** Called on arrival; may throw (a failure of that request) or change the store. */
  before: ((operation: Operation, body: Uint8Array, index: number) => void) | null = null;
  /** Bytes of blocks as read back, for corrupting them. */
  corrupt_blocks = false;

  constructor(readonly block_size_max: number) {}

  callers(n: number): Caller[] {
    return Array.from({ length: n }, (_, i) => this.caller(`lane ${i}`));
  }

  caller(name = "main"): Caller {
    let busy = false;
    return {
      call: async (operation, body) => {
        if (busy) throw new Error(`${name} has two requests in flight`);
        busy = true;
        this.in_flight += 1;
        this.max_in_flight = Math.max(this.max_in_flight, this.in_flight);
        try {
          await new Promise((resolve) => setImmediate(resolve));
          this.received.push({ operation, body: body.slice(0, 64) });
          this.before?.(operation, body, this.received.length - 1);
          const r = this.execute(operation, body);
          if (r.result !== Result.ok) throw resultError(reply(r));
          return r.body;
        } finally {
          this.in_flight -= 1;
          busy = false;
        }
      },
    };
  }

  count(operation: Operation): number {
    return this.received.filter((r) => r.operation === operation).length;
  }

  /** Executes as a replica would: arrival checks, then execution at the next timestamp. */
  execute(operation: Operation, body: Uint8Array): ExecuteResult {
    if (operation >= Operation.create_upload) {
      const arrival = validateLargeRequest(operation, body, {
        block_size_max: this.block_size_max,
        value_size_max: value_size_max_default,
      });
      if (arrival !== Result.ok) return { result: arrival, body: new Uint8Array(0) };
    }
    if (operation === Operation.read) return executeLargeRead(this.store, body, { value: this.readValue, block: this.readBlock });
    if (operation === Operation.get || operation === Operation.stat || operation === Operation.list)
      return executeRead(this.store, operation, body, {
        value: this.readValue,
        block: this.readBlock,
        value_size_max: value_size_max_default,
      });
    const segment = this.next_segment++;
    const image = new Uint8Array(body_offset + body.length);
    image.set(body, body_offset);
    this.segments.set(segment, image);
    this.timestamp += 1;
    const location = { segment, offset: body_offset };
    if (operation === Operation.put || operation === Operation.delete)
      return executeWrite(this.store, this.timestamp, operation, body, location);
    return executeLargeWrite(
      this.store,
      { uploads_open_max: 8, block_size_max: this.block_size_max },
      this.timestamp,
      operation,
      body,
      location,
    );
  }

  private readonly readValue = (_key: string, entry: ObjectEntry): Uint8Array | null =>
    this.segments.get(entry.segment)?.slice(entry.offset, entry.offset + entry.size) ?? null;

  private readonly readBlock = (block: Block): Uint8Array | null => {
    const bytes = this.segments.get(block.segment)?.slice(block.offset, block.offset + block.size) ?? null;
    if (bytes !== null && this.corrupt_blocks) bytes[0] = bytes[0]! ^ 1;
    return bytes;
  };
}

function reply(r: ExecuteResult) {
  const h = new Header();
  h.command = Command.reply;
  h.result = r.result;
  return finalize(h, r.body);
}

/** Deterministic bytes that differ with the seed. */
export function testBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** The ClientError p fails with (anything else, or success, fails the test). */
export async function clientFailure(p: Promise<unknown>): Promise<ClientError> {
  try {
    await p;
  } catch (error) {
    if (error instanceof ClientError) return error;
    throw error;
  }
  throw new Error("expected a ClientError");
}
