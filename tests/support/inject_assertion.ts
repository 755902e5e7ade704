/**
 * Preloaded into a replica process (`bun --preload tests/support/inject_assertion.ts
 * cmd/toastyfs.ts serve ...`) to make its replica fail an assertion, as a bug would, where
 * TOASTYFS_TEST_INJECT_ASSERTION says: "tick" (the 20th tick, from the node's timer) or "request"
 * (the first client request, from the transport's data callback). Everything else is the real
 * executable's code.
 */
import { Replica } from "../../lib/vsr/replica.ts";
import { AssertionError } from "../../lib/util/assert.ts";
import { Command } from "../../lib/net/codec.ts";

const where = process.env.TOASTYFS_TEST_INJECT_ASSERTION;
const message = "injected for a test: the chosen log (op 5) is shorter than what is committed (1000000)";

if (where === "tick") {
  const tick = Replica.prototype.tick;
  let ticks = 0;
  Replica.prototype.tick = function (this: Replica, realtime: number): void {
    if (++ticks === 20) throw new AssertionError(message);
    tick.call(this, realtime);
  };
} else if (where === "request") {
  const onMessage = Replica.prototype.onMessage;
  Replica.prototype.onMessage = function (this: Replica, m): void {
    if (m.header.command === Command.request) throw new AssertionError(message);
    onMessage.call(this, m);
  };
} else {
  throw new Error(`TOASTYFS_TEST_INJECT_ASSERTION must be "tick" or "request", got ${where}`);
}
