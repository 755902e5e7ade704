/** Helpers for the client's unit tests (session.test.ts, channel.test.ts). */
import { Command, Header, finalize, type Message } from "../net/codec.ts";

/** A reply to request `to` (its cluster, client, request number, operation and session), with
 * `fields` set on top. */
export function replyTo(to: Message, fields: Partial<Header>, body: Uint8Array = new Uint8Array(0)): Message {
  const h = new Header();
  h.command = Command.reply;
  h.cluster = to.header.cluster;
  h.client = to.header.client;
  h.request = to.header.request;
  h.operation = to.header.operation;
  h.session = to.header.session;
  h.replica_count = 3;
  Object.assign(h, fields);
  return finalize(h, body);
}
