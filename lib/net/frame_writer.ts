/**
 * Per-connection coalescing writer (docs/DESIGN.md §9: coalesced socket writes, one write per connection
 * per turn; no per-message allocation on the hot path).
 *
 * send() encodes the message straight into one growable buffer and schedules a flush: by default
 * right after the current callback (queueMicrotask), so every message produced while handling one
 * batch of input leaves in one write() syscall; with `per_turn`, at the end of the event-loop turn
 * (setImmediate), so messages produced by all the callbacks of one turn leave together (a replica
 * node, whose primary makes a prepare in each of several callbacks of a turn, see TcpTransport
 * flushWrites). Bun sockets do not buffer: write()
 * accepts what the kernel takes and returns that count (short or 0 under backpressure, -1 when
 * closed); the rest waits here for the socket's `drain` event, which must call flush().
 *
 * A large body (a 1 MiB value in a prepare or a get reply) is never copied into the buffer once
 * the writer is attached: its header is encoded into the buffer and the body is written from the
 * message itself right after the buffered bytes (one more write() call, one 1 MiB copy fewer per
 * message and connection). Bodies are immutable once finalized, so the reference may be held
 * until the kernel has taken the whole body, also across a blocked socket and behind later
 * messages. That matters most when it is blocked: a primary whose backups read slower than it
 * prepares is blocked toward them most of the time, and copying each prepare into a grown buffer
 * was about a tenth of its CPU per 1 MiB put (bench/RESULTS.md, "1 MiB puts and gets: CPU per op").
 *
 * On an authenticated connection (`tagged`, docs/PROTOCOL.md §6.3) every frame is followed by a
 * 16-byte tag that depends on the connection's session key and the frame's sequence number on it.
 * Messages queued before the connection is authenticated (a dialer's first request, sent before
 * its handshake is over) get a gap of that size behind them, filled in order by attach().
 *
 * The buffer is bounded. VSR tolerates message loss (everything is retried), unbounded buffering
 * toward a peer that stopped reading is a memory leak, so above the bound new messages are dropped
 * and counted, and send() returns false.
 */
import { assert } from "../util/assert.ts";
import { header_size, message_size_max } from "../constants.ts";
import { readU32 } from "../util/bytes.ts";
import { Offset, encodeInto, writeHeader, type Message } from "./codec.ts";
import { tag_size, type FrameSealer } from "./auth/frame_tag.ts";

/** Bytes queued per connection beyond which new messages are dropped: 64 MiB of backlog plus room
 * for one maximum-size message, so a writer below 64 MiB can always take any message. */
export const write_buffer_size_max = 64 * 1024 * 1024 + message_size_max;
/** The write buffer starts at this size and doubles as needed. */
export const write_buffer_size_initial = 64 * 1024;
/** Once fully flushed, a buffer grown beyond this is released (a burst of large values or a slow
 * peer should not pin tens of MiB per connection forever). */
export const write_buffer_size_retain_max = 4 * 1024 * 1024;

/** Bodies at least this large are written from the message instead of being copied (see above). */
export const external_body_size_min = 64 * 1024;

/** Where bytes go: a Bun socket satisfies it. Returns bytes accepted (maybe fewer, or 0), -1 if closed. */
export interface ByteSink {
  write(data: Uint8Array, byte_offset: number, byte_length: number): number;
}

export interface FrameWriterOptions {
  /** Queued bytes above which messages are dropped. Default write_buffer_size_max. */
  buffered_bytes_max?: number;
  /** Flush at the end of the event-loop turn instead of after the current callback. */
  per_turn?: boolean;
  /** Every frame is followed by a tag: attach() must be given a FrameSealer. */
  tagged?: boolean;
}

export class FrameWriter {
  readonly buffered_bytes_max: number;
  /** Messages accepted by send(). */
  messages_queued = 0;
  /** Messages dropped because the buffer was at its bound. */
  messages_dropped = 0;
  /** Calls to sink.write (one per flush: the measure of coalescing). */
  writes = 0;
  /** Bytes the sink accepted. */
  bytes_written = 0;
  /** Bytes discarded by detach() (queued for a connection that closed). */
  bytes_discarded = 0;

  private sink: ByteSink | null = null;
  private buffer = new Uint8Array(write_buffer_size_initial);
  /** Unwritten bytes are buffer[start..end), with each of `externals` inserted at its `at`. */
  private start = 0;
  private end = 0;
  /** Large bodies written from their messages (see above), in stream order: each goes right after
   * buffer[..at), which ends with its header. The first may be partly written (then it is the
   * rest of its body). */
  private externals: { at: number; body: Uint8Array }[] = [];
  private external_bytes = 0;
  private flush_scheduled = false;
  /** The last write was short: the kernel buffer is full, so wait for drain instead of retrying
   * every turn. flush() still writes when called (from drain, or a periodic safety net). */
  private blocked = false;
  // Bound once, so scheduling a flush allocates nothing.
  private readonly flush_scheduled_callback = (): void => {
    this.flush_scheduled = false;
    if (!this.blocked) this.flush();
  };

  private readonly per_turn: boolean;
  /** Bytes after each frame: tag_size when tagged, else 0. */
  private readonly trailer: number;
  /** Tags what is sent while attached (tagged writers only). */
  private sealer: FrameSealer | null = null;

  constructor(options: FrameWriterOptions = {}) {
    this.per_turn = options.per_turn ?? false;
    this.trailer = options.tagged === true ? tag_size : 0;
    this.buffered_bytes_max = options.buffered_bytes_max ?? write_buffer_size_max;
    assert(
      Number.isInteger(this.buffered_bytes_max) && this.buffered_bytes_max >= header_size,
      `buffered_bytes_max must be an integer >= ${header_size}, got ${this.buffered_bytes_max}`,
    );
  }

  /** Bytes queued and not yet accepted by the sink. */
  get buffered_bytes(): number {
    return this.end - this.start + this.external_bytes;
  }

  /** Capacity of the buffer (for memory accounting and tests). */
  get buffer_capacity(): number {
    return this.buffer.length;
  }

  /** True while the sink refused bytes and drain has not yet been seen. */
  get is_blocked(): boolean {
    return this.blocked;
  }

  get attached(): boolean {
    return this.sink !== null;
  }

  /** Starts writing to a (newly opened, and for a tagged writer authenticated) connection; anything
   * queued before goes out first, tagged by `sealer` in order. */
  attach(sink: ByteSink, sealer: FrameSealer | null = null): void {
    assert(this.sink === null, "FrameWriter.attach: already attached");
    assert((sealer !== null) === this.trailer > 0, "FrameWriter.attach: a tagged writer needs a sealer, an untagged one none");
    this.sink = sink;
    this.sealer = sealer;
    if (sealer !== null) this.sealQueued(sealer);
    this.blocked = false;
    if (this.end > this.start) this.schedule();
  }

  /** The connection closed: forgets the sink and discards what was queued (a frame cut halfway
   * cannot be resumed on another connection). Returns the bytes discarded. */
  detach(): number {
    const discarded = this.buffered_bytes;
    this.bytes_discarded += discarded;
    this.sink = null;
    this.sealer = null;
    this.blocked = false;
    this.start = 0;
    this.end = 0;
    this.externals = [];
    this.external_bytes = 0;
    this.shrink();
    return discarded;
  }

  /** Queues a finalized message. False if it was dropped because the buffer is at its bound. */
  send(message: Message): boolean {
    const size = message.header.size;
    assert(size === header_size + message.body.length && size <= message_size_max, "FrameWriter.send: message not finalized");
    if (this.buffered_bytes + size + this.trailer > this.buffered_bytes_max) {
      this.messages_dropped += 1;
      return false;
    }
    if (message.body.length >= external_body_size_min && this.sink !== null) {
      this.reserve(header_size + this.trailer);
      const header_at = this.end;
      writeHeader(message.header, this.buffer, this.end);
      this.end += header_size;
      this.externals.push({ at: this.end, body: message.body });
      this.external_bytes += message.body.length;
      // The tag goes in the buffer right after the header: in the stream, after the body.
      if (this.sealer !== null) {
        this.sealer.sealInto([this.buffer.subarray(header_at, header_at + header_size), message.body], this.buffer, this.end);
        this.end += this.trailer;
      }
    } else {
      this.reserve(size + this.trailer);
      const written = encodeInto(message, this.buffer, this.end);
      assert(written === size, "FrameWriter.send: encodeInto wrote an unexpected size");
      // Unattached, a tagged writer leaves the tag's room (attach fills it); attached, it seals now.
      if (this.sealer !== null) this.sealer.sealInto([this.buffer.subarray(this.end, this.end + size)], this.buffer, this.end + size);
      this.end += size + this.trailer;
    }
    this.messages_queued += 1;
    if (!this.blocked) this.schedule();
    return true;
  }

  /** Writes as much as the sink accepts. Call from the socket's drain handler. */
  flush(): void {
    const sink = this.sink;
    if (sink === null || this.buffered_bytes === 0) {
      this.blocked = false;
      return;
    }
    // The buffer up to each large body, then the body; then the rest of the buffer.
    while (this.externals.length > 0) {
      const next = this.externals[0]!;
      if (next.at > this.start && !this.write(sink, this.buffer, this.start, next.at - this.start)) return;
      if (!this.write(sink, next.body, 0, next.body.length)) return;
    }
    if (this.end > this.start && !this.write(sink, this.buffer, this.start, this.end - this.start)) return;
    this.blocked = false;
    this.start = 0;
    this.end = 0;
    this.shrink();
  }

  /**
   * One sink.write of bytes[offset..+length): the buffer from `start`, or the first external
   * body. Consumes what was accepted and returns true if that was everything. Otherwise the writer
   * is blocked (the rest waits where it is, in the buffer or the external body, for drain), or the
   * sink is closed (then nothing changes: the close handler detaches and counts what is discarded).
   */
  private write(sink: ByteSink, bytes: Uint8Array, offset: number, length: number): boolean {
    const accepted = sink.write(bytes, offset, length);
    this.writes += 1;
    if (accepted < 0) return false;
    assert(accepted <= length, () => `sink accepted ${accepted} of ${length} bytes`);
    this.bytes_written += accepted;
    if (bytes === this.buffer) {
      this.start += accepted;
    } else {
      const first = this.externals[0]!;
      assert(first.body === bytes && offset === 0, "FrameWriter.write: not the first external body");
      this.external_bytes -= accepted;
      if (accepted === length) this.externals.shift();
      else first.body = bytes.subarray(accepted);
    }
    if (accepted === length) return true;
    this.blocked = true;
    return false;
  }

  /** Fills the tag after each frame queued while unattached (all in the buffer, back to back). */
  private sealQueued(sealer: FrameSealer): void {
    assert(this.externals.length === 0, "FrameWriter: external bodies queued while unattached");
    let position = this.start;
    while (position < this.end) {
      const size = readU32(this.buffer, position + Offset.size);
      assert(position + size + this.trailer <= this.end, "FrameWriter.sealQueued: frames out of step");
      sealer.sealInto([this.buffer.subarray(position, position + size)], this.buffer, position + size);
      position += size + this.trailer;
    }
  }

  private schedule(): void {
    if (this.flush_scheduled || this.sink === null) return;
    this.flush_scheduled = true;
    if (this.per_turn) setImmediate(this.flush_scheduled_callback);
    else queueMicrotask(this.flush_scheduled_callback);
  }

  /** Makes room for `size` more bytes at `end`: compacts when that suffices, else grows. External
   * bodies' positions move with the bytes. */
  private reserve(size: number): void {
    if (this.end + size <= this.buffer.length) return;
    const live = this.end - this.start;
    for (const external of this.externals) external.at -= this.start;
    if (live + size <= this.buffer.length) {
      this.buffer.copyWithin(0, this.start, this.end);
    } else {
      let capacity = this.buffer.length * 2;
      while (capacity < live + size) capacity *= 2;
      // Never beyond the bound: send() already checked live + size <= buffered_bytes_max.
      const next = new Uint8Array(Math.min(capacity, Math.max(this.buffered_bytes_max, write_buffer_size_initial)));
      next.set(this.buffer.subarray(this.start, this.end));
      this.buffer = next;
    }
    this.start = 0;
    this.end = live;
  }

  private shrink(): void {
    assert(this.start === 0 && this.end === 0, "FrameWriter.shrink: buffer not empty");
    if (this.buffer.length > write_buffer_size_retain_max) this.buffer = new Uint8Array(write_buffer_size_initial);
  }
}
