/**
 * A request body's framing removed as bytes arrive (RFC 9112 §6 and §7.1): a Content-Length body
 * or a chunked one (sizes, extensions, trailer fields skipped). Push-based: the connection feeds
 * it what the socket delivered and gets back the body's bytes, how much it consumed (what follows
 * is the next request) and whether the body has ended. Bad framing is an HttpError.
 */
import { assert } from "../util/assert.ts";
import { type BodyFraming, HttpError, header_bytes_max } from "./http_head.ts";

/** A chunk-size line (the size in hex and any extensions) may be this long. */
export const chunk_line_bytes_max = 4096;

type State = "size" | "data" | "data_end" | "trailers" | "done";

export interface Decoded {
  /** The body bytes in what was pushed: views into it, not copies. */
  pieces: Uint8Array[];
  /** Bytes of the pushed buffer that belong to this body; the rest is the next request. */
  consumed: number;
  done: boolean;
}

export class BodyDecoder {
  private state: State;
  /** Bytes of body (length framing) or of the current chunk still to come. */
  private remaining: number;
  private readonly chunked: boolean;
  /** The current size or trailer line, as far as it has arrived. */
  private line = "";
  private trailer_bytes = 0;

  constructor(framing: BodyFraming) {
    this.chunked = framing.kind === "chunked";
    this.remaining = framing.kind === "length" ? framing.length : 0;
    this.state = framing.kind === "chunked" ? "size" : framing.length === 0 ? "done" : "data";
  }

  get done(): boolean {
    return this.state === "done";
  }

  push(buf: Uint8Array): Decoded {
    const pieces: Uint8Array[] = [];
    let i = 0;
    while (i < buf.length && this.state !== "done") {
      if (this.state === "data") {
        const n = Math.min(this.remaining, buf.length - i);
        pieces.push(buf.subarray(i, i + n));
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = this.chunked ? "data_end" : "done";
        continue;
      }
      // A line: a chunk size, the CRLF after a chunk's data, or a trailer field.
      const lf = buf.indexOf(0x0a, i);
      const end = lf < 0 ? buf.length : lf + 1;
      this.line += Buffer.from(buf.buffer, buf.byteOffset + i, end - i).toString("latin1");
      i = end;
      const limit = this.state === "trailers" ? header_bytes_max - this.trailer_bytes : chunk_line_bytes_max;
      if (this.line.length > limit) throw new HttpError(400, `a chunked body's line is over ${limit} bytes`);
      if (lf < 0) break;
      if (!this.line.endsWith("\r\n")) throw new HttpError(400, "a chunked body's line does not end in CRLF");
      const line = this.line.slice(0, -2);
      this.line = "";
      this.lineDone(line);
    }
    return { pieces, consumed: i, done: this.state === "done" };
  }

  private lineDone(line: string): void {
    switch (this.state) {
      case "size": {
        const m = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
        if (m === null) throw new HttpError(400, `not a chunk size: ${JSON.stringify(line.slice(0, 40))}`);
        this.remaining = parseInt(m[1]!, 16);
        this.state = this.remaining === 0 ? "trailers" : "data";
        return;
      }
      case "data_end":
        if (line !== "") throw new HttpError(400, "a chunk's data is longer than its size");
        this.state = "size";
        return;
      case "trailers":
        this.trailer_bytes += line.length + 2;
        if (line === "") this.state = "done";
        return;
      default:
        assert(false, `BodyDecoder: a line in state ${this.state}`);
    }
  }
}
