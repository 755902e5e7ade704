/**
 * Lines of bytes from a stream, for the admin shell's line mode. readline decodes UTF-8 and would
 * replace a raw non-UTF-8 byte of a key with U+FFFD; this keeps the bytes. What it holds is
 * bounded: a line longer than max_bytes is dropped as it arrives and reported as too long.
 */
import { concat } from "../lib/util/bytes.ts";

export interface Line {
  /** 1-based. */
  number: number;
  /** Without the newline; empty when too_long. */
  bytes: Uint8Array;
  too_long: boolean;
}

const newline = 0x0a;

export async function* splitLines(stream: AsyncIterable<Uint8Array>, max_bytes: number): AsyncGenerator<Line> {
  let parts: Uint8Array[] = [];
  let pending = 0;
  let too_long = false;
  let number = 0;
  const take = (): Line => {
    number += 1;
    const line = { number, bytes: too_long ? new Uint8Array(0) : concat(parts), too_long };
    parts = [];
    pending = 0;
    too_long = false;
    return line;
  };
  const add = (part: Uint8Array): void => {
    if (too_long) return;
    pending += part.length;
    if (pending > max_bytes) {
      too_long = true;
      parts = [];
      return;
    }
    if (part.length > 0) parts.push(part.slice());
  };
  for await (const chunk of stream) {
    let start = 0;
    for (let i = chunk.indexOf(newline); i >= 0; i = chunk.indexOf(newline, start)) {
      add(chunk.subarray(start, i));
      yield take();
      start = i + 1;
    }
    add(chunk.subarray(start));
  }
  if (pending > 0 || too_long) yield take();
}
