/**
 * Turns a TCP byte stream into whole, validated messages (docs/PROTOCOL.md §1.5, docs/DESIGN.md §7).
 *
 * Messages are self-delimiting: the 128-byte header carries the total size. A size field is only
 * trusted after the magic, the protocol version and the header checksum have been verified, and a
 * size outside [header_size, frame_size_max] is rejected before a single body byte is buffered, so
 * a corrupt or hostile peer can make this reader hold at most one maximum-size frame.
 *
 * Usage (pull, so a handler that throws never leaves the reader half-updated):
 *
 *   reader.push(chunk);
 *   for (let m = reader.next(); m !== null; m = reader.next()) handle(m);   // next() throws FrameError
 *
 * Buffering: frames that lie wholly inside the pushed chunk are decoded straight from it (no copy
 * beyond the body copy `decode` makes). A frame cut by a chunk boundary is copied into a buffer
 * that holds at most one partial frame, always starting at offset 0: there is nothing to compact.
 * Small frames share one retained buffer (and `decode` copies their body out of it). A frame larger
 * than that buffer gets one of its own, which the decoded message then owns: its body is a view
 * into it, with no second copy. Bun delivers at most 512 KiB per read, so every large message
 * (a 1 MiB prepare or reply) takes this path, and the copy it saves was, with the allocation
 * behind it, a visible part of a backup's CPU per 1 MiB put.
 */
import { assert } from "../util/assert.ts";
import { allocUninitialized, readU16, readU32, readU64Big } from "../util/bytes.ts";
import { checksum } from "../util/checksum.ts";
import { header_size, message_size_max, protocol_version, sender_client, wire_magic } from "../constants.ts";
import { Offset, command_max, decode, decodeHeader, type DecodeError, type Header, type Message } from "./codec.ts";
import { tag_size, type FrameOpener } from "./auth/frame_tag.ts";

/** The retained partial-frame buffer: frames up to this size are assembled in it. Larger ones get
 * a buffer of their own (owned by the message afterwards), so an idle connection that once carried
 * a 16 MiB value pins nothing. */
export const reader_buffer_size_initial = 64 * 1024;

/** Why a frame was rejected. The same codes as the codec's DecodeError, minus "short" (a whole
 * frame is never shorter than its header), plus "tag": on an authenticated connection, a frame
 * whose tag does not verify (docs/PROTOCOL.md §6.3). */
export type FrameErrorCode = Exclude<DecodeError, "short"> | "tag";

/** A frame failed validation. The connection it came from can no longer be trusted to be in sync
 * (a bad size field means the next frame boundary is unknown), so the caller closes it. */
export class FrameError extends Error {
  override name = "FrameError";
  constructor(
    readonly code: FrameErrorCode,
    message: string,
    /** code "cluster" only: the rejected frame's header (its checksum verified, so the sender
     * really wrote it), for the one answer a replica gives such a sender (cluster_mismatch.ts).
     * Null when a field of it is out of range. */
    readonly foreign: Header | null = null,
  ) {
    super(message);
  }
}

export interface FrameReaderOptions {
  /** The expected cluster id; null accepts any (tools that inspect captured bytes). */
  cluster: bigint | null;
  /** Frames larger than this are rejected from their header alone. At most message_size_max. */
  frame_size_max?: number;
  /** If set, a sender replica index must be below it (or be sender_client). */
  replica_count?: number;
}

export class FrameReader {
  private readonly cluster: bigint | null;
  // The expected cluster id split into u32 halves, so checking it needs no bigint per frame.
  private readonly cluster_lo: number;
  private readonly cluster_hi: number;
  private readonly frame_size_max: number;
  private readonly replica_count: number | null;

  /** Holds the one frame that a chunk boundary cut, from offset 0 to `buffered`, if it fits. */
  private readonly buffer = new Uint8Array(reader_buffer_size_initial);
  /** The frame being assembled when it is larger than `buffer` (its first `buffered` bytes);
   * handed to the decoded message when complete. Grows to the frame size as bytes arrive. */
  private large: Uint8Array | null = null;
  private buffered = 0;
  /** Size of the frame being assembled, its tag included, known once its header validated; 0 before. */
  private frame_size = 0;
  /** On an authenticated connection (authenticate()), the check of each frame's tag, and the
   * tag's size (the bytes that follow every frame); null and 0 before. */
  private opener: FrameOpener | null = null;
  private trailer = 0;

  /** The chunk being consumed by next(), and the read position in it. */
  private chunk: Uint8Array | null = null;
  private chunk_offset = 0;

  /** Once a frame fails, every later call fails the same way: the stream is out of sync. */
  private failed: FrameError | null = null;

  constructor(options: FrameReaderOptions) {
    const frame_size_max = options.frame_size_max ?? message_size_max;
    assert(Number.isInteger(frame_size_max), `frame_size_max must be an integer, got ${frame_size_max}`);
    assert(
      frame_size_max >= header_size && frame_size_max <= message_size_max,
      () => `frame_size_max ${frame_size_max} is outside [${header_size}, ${message_size_max}]`,
    );
    if (options.replica_count !== undefined) {
      assert(
        Number.isInteger(options.replica_count) && options.replica_count > 0 && options.replica_count < sender_client,
        `bad replica_count ${options.replica_count}`,
      );
    }
    this.cluster = options.cluster;
    this.cluster_lo = options.cluster === null ? 0 : Number(options.cluster & 0xffffffffn);
    this.cluster_hi = options.cluster === null ? 0 : Number((options.cluster >> 32n) & 0xffffffffn);
    this.frame_size_max = frame_size_max;
    this.replica_count = options.replica_count ?? null;
  }

  /** Bytes held for an incomplete frame (for tests and memory accounting). */
  get buffered_bytes(): number {
    return this.buffered;
  }

  /** The error that stopped this reader, if any. */
  get error(): FrameError | null {
    return this.failed;
  }

  /** Capacity of the retained partial-frame buffer (a large frame's own buffer not included: it
   * goes with the message). */
  get buffer_capacity(): number {
    return this.buffer.length;
  }

  /** Capacity of the buffer of the large frame being assembled (0 if none): at most four times
   * what has arrived of it, or twice the retained buffer's size. */
  get large_frame_capacity(): number {
    return this.large?.length ?? 0;
  }

  /** From now on every frame is followed by a tag that `opener` must accept (docs/PROTOCOL.md §6.3).
   * Called once, after the handshake, before any frame arrived. */
  authenticate(opener: FrameOpener): void {
    assert(
      this.opener === null && this.buffered === 0 && this.chunk === null && this.failed === null,
      "FrameReader.authenticate: not at the start of the stream",
    );
    this.opener = opener;
    this.trailer = tag_size;
  }

  /** Hands the reader the next chunk of the stream. Call next() until it returns null before
   * pushing again. The chunk is not retained after next() returns null. */
  push(chunk: Uint8Array): void {
    if (this.failed !== null) throw this.failed;
    assert(this.chunk === null, "FrameReader.push: the previous chunk was not fully consumed by next()");
    if (chunk.length > 0) {
      this.chunk = chunk;
      this.chunk_offset = 0;
    }
  }

  /** The next whole, validated message, or null if more bytes are needed. Throws FrameError. */
  next(): Message | null {
    if (this.failed !== null) throw this.failed;
    try {
      return this.advance();
    } catch (error) {
      if (error instanceof FrameError) {
        this.failed = error;
        this.chunk = null;
      }
      throw error;
    }
  }

  private advance(): Message | null {
    const chunk = this.chunk;
    if (chunk === null) return null;
    if (this.buffered === 0) {
      // Fast path: a whole frame inside the chunk is decoded in place.
      const available = chunk.length - this.chunk_offset;
      if (available >= header_size) {
        const size = this.checkHeader(chunk, this.chunk_offset);
        if (available >= size + this.trailer) {
          const frame = chunk.subarray(this.chunk_offset, this.chunk_offset + size);
          const tag = chunk.subarray(this.chunk_offset + size, this.chunk_offset + size + this.trailer);
          this.consumed(size + this.trailer);
          this.checkTag(frame, tag);
          return this.decodeFrame(frame);
        }
      }
    }
    return this.assemble();
  }

  /** Copies from the chunk into the buffer, only as much as the current frame needs. */
  private assemble(): Message | null {
    for (;;) {
      const wanted = this.frame_size === 0 ? header_size : this.frame_size;
      const chunk = this.chunk;
      if (chunk !== null) {
        const take = Math.min(wanted - this.buffered, chunk.length - this.chunk_offset);
        assert(take >= 0, "FrameReader: buffered past the frame");
        const target = this.frame_size > this.buffer.length ? this.reserveLarge(this.buffered + take) : this.buffer;
        target.set(chunk.subarray(this.chunk_offset, this.chunk_offset + take), this.buffered);
        this.buffered += take;
        this.consumed(take);
      }
      if (this.buffered < wanted) {
        assert(this.chunk === null, "FrameReader: partial frame with bytes left in the chunk");
        return null;
      }
      if (this.frame_size === 0) {
        this.frame_size = this.checkHeader(this.buffer, 0) + this.trailer;
        continue; // a header-only frame (size == header_size) completes on the next pass
      }
      const total = this.frame_size;
      const size = total - this.trailer;
      const large = this.large;
      // A large frame's buffer is exactly its size (and tag) by now and goes with the message (no
      // body copy); a small frame's body is copied out of the retained buffer by decode.
      assert(
        (large === null) === total <= this.buffer.length && (large === null || large.length === total),
        "FrameReader: large frame buffer out of step",
      );
      const whole = large ?? this.buffer;
      this.checkTag(whole.subarray(0, size), whole.subarray(size, total));
      const message = this.decodeFrame(whole.subarray(0, size), large !== null);
      this.large = null;
      this.buffered = 0;
      this.frame_size = 0;
      return message;
    }
  }

  private consumed(count: number): void {
    this.chunk_offset += count;
    const chunk = this.chunk;
    assert(chunk !== null && this.chunk_offset <= chunk.length, "FrameReader: consumed past the chunk");
    if (this.chunk_offset === chunk.length) {
      this.chunk = null;
      this.chunk_offset = 0;
    }
  }

  /**
   * The large frame's buffer, grown to hold at least `size` bytes: straight to the frame size once a
   * quarter of the frame is here (a 1 MiB frame arrives in two or three reads of up to 512 KiB, and
   * gets one buffer, never regrown and copied), else to twice what has arrived. So a peer that
   * announces a 16 MiB frame and sends little of it costs no more than a few times what it sent
   * (docs/DESIGN.md §7). The last growth makes it exactly the frame size, which decode requires.
   */
  private reserveLarge(size: number): Uint8Array {
    assert(size <= this.frame_size && this.frame_size > this.buffer.length, "FrameReader: reserveLarge beyond the validated frame");
    const current = this.large;
    if (current !== null && size <= current.length) return current;
    const capacity = 4 * size >= this.frame_size ? this.frame_size : Math.min(this.frame_size, Math.max(2 * size, 2 * this.buffer.length));
    // Every byte up to the frame size is written before the message is decoded.
    const next = allocUninitialized(capacity);
    // The header (and anything before this growth) moves over: from the retained buffer the first
    // time, then from the previous large buffer.
    next.set((current ?? this.buffer).subarray(0, this.buffered));
    this.large = next;
    return next;
  }

  /**
   * Validates the header at bytes[offset..+128) and returns the frame size. The order matters:
   * magic and protocol first (the clearest errors for a stranger or an old version), then the
   * header checksum, and only then the fields it covers: size, cluster, command, sender.
   */
  private checkHeader(bytes: Uint8Array, offset: number): number {
    const magic = readU32(bytes, offset + Offset.magic);
    if (magic !== wire_magic) {
      throw new FrameError(
        "magic",
        `bad magic 0x${magic.toString(16).padStart(8, "0")} (expected 0x${wire_magic.toString(16)}): the peer does not speak the ToastyFS protocol, or the stream is corrupt`,
      );
    }
    const protocol = readU16(bytes, offset + Offset.protocol);
    if (protocol !== protocol_version) {
      throw new FrameError(
        "protocol",
        `the peer speaks protocol version ${protocol}, this node speaks ${protocol_version}: run the same ToastyFS version on every replica and client`,
      );
    }
    const expected = readU64Big(bytes, offset + Offset.checksum);
    if (checksum(bytes.subarray(offset + 8, offset + header_size)) !== expected) {
      throw new FrameError(
        "checksum_header",
        "header checksum mismatch: the frame was corrupted in transit, or the peer is not a ToastyFS node",
      );
    }
    const size = readU32(bytes, offset + Offset.size);
    if (size < header_size || size > this.frame_size_max) {
      throw new FrameError(
        "size",
        `frame size ${size} is outside [${header_size}, ${this.frame_size_max}] bytes: the peer sent a message larger than this node accepts`,
      );
    }
    if (this.cluster !== null) {
      const lo = readU32(bytes, offset + Offset.cluster);
      const hi = readU32(bytes, offset + Offset.cluster + 4);
      if (lo !== this.cluster_lo || hi !== this.cluster_hi) throw this.clusterError(bytes, offset);
    }
    const command = bytes[offset + Offset.command]!;
    if (command < 1 || command > command_max) {
      throw new FrameError("command", `unknown command ${command}: the peer runs a different ToastyFS version`);
    }
    const replica = bytes[offset + Offset.replica]!;
    if (this.replica_count !== null && replica >= this.replica_count && replica !== sender_client) {
      throw new FrameError(
        "replica",
        `sender replica index ${replica} is not below the replica count ${this.replica_count} (nor a client, ${sender_client}): the peer was configured with a different set of replicas`,
      );
    }
    return size;
  }

  private clusterError(bytes: Uint8Array, offset: number): FrameError {
    const theirs = readU64Big(bytes, offset + Offset.cluster);
    const ours = this.cluster ?? 0n;
    return new FrameError(
      "cluster",
      `message for cluster ${hex64(theirs)}, but this node belongs to cluster ${hex64(ours)}: the peer belongs to another cluster ` +
        `(replicas started with different --addr/--peer sets form different clusters; start every replica and client with the same set of addresses)`,
      decodeHeader(bytes, offset),
    );
  }

  /** On an authenticated connection: the frame's tag, before anything of its body is trusted. */
  private checkTag(frame: Uint8Array, tag: Uint8Array): void {
    const opener = this.opener;
    if (opener === null) return;
    if (!opener.open(frame, tag)) {
      throw new FrameError(
        "tag",
        "frame tag mismatch: the frame was altered, replayed, reordered or forged in transit (or the peer's session key differs)",
      );
    }
  }

  /** Runs the full codec validation (body checksum, field ranges) on one whole frame. owned: the
   * frame is a buffer of its own that the message may keep (see decode). */
  private decodeFrame(frame: Uint8Array, owned = false): Message {
    const result = decode(frame, this.cluster, owned);
    if (result.ok) return result.message;
    if (result.error === "cluster") throw this.clusterError(frame, 0);
    // checkHeader already verified the frame is at least a header, so "short" cannot happen.
    assert(result.error !== "short", "FrameReader: decode saw a short frame");
    const hint = result.error === "checksum_body" ? ": the frame was corrupted in transit" : "";
    throw new FrameError(result.error, `${result.detail}${hint}`);
  }
}

export function hex64(value: bigint): string {
  return `0x${value.toString(16).padStart(16, "0")}`;
}
