/**
 * Per-connection coalescing writer (DESIGN §9: "coalesced socket writes, one write per connection
 * per turn; no per-message allocation on the hot path").
 *
 * send() encodes the message straight into one growable buffer and schedules a flush for the end of
 * the current event-loop turn (queueMicrotask), so every message produced while handling one batch
 * of input leaves in one write() syscall. Bun sockets do not buffer (notes/bun.md §4): write()
 * accepts what the kernel takes and returns that count (short or 0 under backpressure, -1 when
 * closed); the rest waits here for the socket's `drain` event, which must call flush().
 *
 * The buffer is bounded. VSR tolerates message loss (everything is retried), unbounded buffering
 * toward a peer that stopped reading is a memory leak, so above the bound new messages are dropped
 * and counted, and send() returns false.
 */
import { assert } from "../util/assert.ts";
import { header_size, message_size_max } from "../constants.ts";
import { encodeInto, type Message } from "./codec.ts";

/** Bytes queued per connection beyond which new messages are dropped: 64 MiB of backlog plus room
 * for one maximum-size message, so a writer below 64 MiB can always take any message. */
export const write_buffer_size_max = 64 * 1024 * 1024 + message_size_max;
/** The write buffer starts at this size and doubles as needed. */
export const write_buffer_size_initial = 64 * 1024;
/** Once fully flushed, a buffer grown beyond this is released (a burst of large values or a slow
 * peer should not pin tens of MiB per connection forever). */
export const write_buffer_size_retain_max = 4 * 1024 * 1024;

/** Where bytes go: a Bun socket satisfies it. Returns bytes accepted (maybe fewer, or 0), -1 if closed. */
export interface ByteSink {
  write(data: Uint8Array, byte_offset: number, byte_length: number): number;
}

export interface FrameWriterOptions {
  /** Queued bytes above which messages are dropped. Default write_buffer_size_max. */
  buffered_bytes_max?: number;
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
  /** Unwritten bytes are buffer[start..end). */
  private start = 0;
  private end = 0;
  private flush_scheduled = false;
  /** The last write was short: the kernel buffer is full, so wait for drain instead of retrying
   * every turn. flush() still writes when called (from drain, or a periodic safety net). */
  private blocked = false;
  // Bound once, so scheduling a flush allocates nothing.
  private readonly flush_microtask = (): void => {
    this.flush_scheduled = false;
    if (!this.blocked) this.flush();
  };

  constructor(options: FrameWriterOptions = {}) {
    this.buffered_bytes_max = options.buffered_bytes_max ?? write_buffer_size_max;
    assert(Number.isInteger(this.buffered_bytes_max) && this.buffered_bytes_max >= header_size, `buffered_bytes_max must be an integer >= ${header_size}, got ${this.buffered_bytes_max}`);
  }

  /** Bytes queued and not yet accepted by the sink. */
  get buffered_bytes(): number {
    return this.end - this.start;
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

  /** Starts writing to a (newly opened) connection; anything queued before goes out first. */
  attach(sink: ByteSink): void {
    assert(this.sink === null, "FrameWriter.attach: already attached");
    this.sink = sink;
    this.blocked = false;
    if (this.end > this.start) this.schedule();
  }

  /** The connection closed: forgets the sink and discards what was queued (a frame cut halfway
   * cannot be resumed on another connection). Returns the bytes discarded. */
  detach(): number {
    const discarded = this.end - this.start;
    this.bytes_discarded += discarded;
    this.sink = null;
    this.blocked = false;
    this.start = 0;
    this.end = 0;
    this.shrink();
    return discarded;
  }

  /** Queues a finalized message. False if it was dropped because the buffer is at its bound. */
  send(message: Message): boolean {
    const size = message.header.size;
    assert(size === header_size + message.body.length && size <= message_size_max, "FrameWriter.send: message not finalized");
    if (this.end - this.start + size > this.buffered_bytes_max) {
      this.messages_dropped += 1;
      return false;
    }
    this.reserve(size);
    const written = encodeInto(message, this.buffer, this.end);
    assert(written === size, "FrameWriter.send: encodeInto wrote an unexpected size");
    this.end += size;
    this.messages_queued += 1;
    if (!this.blocked) this.schedule();
    return true;
  }

  /** Writes as much as the sink accepts. Call from the socket's drain handler. */
  flush(): void {
    const sink = this.sink;
    if (sink === null || this.end === this.start) {
      this.blocked = false;
      return;
    }
    const pending = this.end - this.start;
    const accepted = sink.write(this.buffer, this.start, pending);
    this.writes += 1;
    if (accepted < 0) return; // closed: the close handler detaches us
    assert(accepted <= pending, () => `sink accepted ${accepted} of ${pending} bytes`);
    this.bytes_written += accepted;
    this.start += accepted;
    this.blocked = this.start < this.end;
    if (!this.blocked) {
      this.start = 0;
      this.end = 0;
      this.shrink();
    }
  }

  private schedule(): void {
    if (this.flush_scheduled || this.sink === null) return;
    this.flush_scheduled = true;
    queueMicrotask(this.flush_microtask);
  }

  /** Makes room for `size` more bytes at `end`: compacts when that suffices, else grows. */
  private reserve(size: number): void {
    if (this.end + size <= this.buffer.length) return;
    const live = this.end - this.start;
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
