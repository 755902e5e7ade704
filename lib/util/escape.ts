/**
 * Bytes shown to a person, and typed back. Keys are any bytes, so a key printed raw could move the
 * cursor, recolour the terminal, split one `ls` line into two, or turn two different keys into the
 * same U+FFFD-filled text. Printed keys are escaped; the same escapes typed back give the same bytes.
 *
 * Printing (escapeBytes):
 * - `\\` for a backslash, `\n`, `\r`, `\t` for newline, carriage return, tab;
 * - `\xHH` (two lowercase hex digits) for every other byte that is a control character (0x00-0x1f,
 *   0x7f), that is not part of valid UTF-8, or that belongs to a character a terminal does not
 *   show as itself (Unicode categories C and Z: C1 controls, bidi overrides, zero-width and other
 *   format characters, line separators, spaces other than 0x20), and for a space at the start or
 *   end of the key (so it survives `read` in a shell and can be seen);
 * - every other byte as itself (printable ASCII and printable UTF-8 such as `é`).
 *
 * Reading (unescapeBytes, parseEscapeAt): the same escapes, plus `\"` and `\'` for quotes. Any other
 * backslash sequence is an error rather than a guess, so a typo never reaches the wrong key. The
 * printed form is also valid inside bash's `$'...'` quoting when it holds no `'`.
 */

export class EscapeError extends Error {
  override name = "EscapeError";
}

const backslash = 0x5c;
const space = 0x20;
/** Characters a terminal does not show as themselves: control, format, unassigned, private use,
 * surrogate (C*), and separators (Z*: spaces other than 0x20, line and paragraph separators). */
const invisible = /[\p{C}\p{Z}]/u;
export const escapes_accepted = "\\\\, \\n, \\r, \\t, \\xHH, \\\" and \\'";

function hex(byte: number): string {
  return `\\x${byte.toString(16).padStart(2, "0")}`;
}

/** Length of the valid UTF-8 sequence starting at i (shortest form, no surrogates, at most
 * U+10FFFF), or 0 if the bytes there are not one. */
function utf8Length(b: Uint8Array, i: number): number {
  const lead = b[i]!;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < b.length && b[i + k]! >= lo && b[i + k]! <= hi;
  if (lead >= 0xc2 && lead <= 0xdf) return cont(1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    const lo = lead === 0xe0 ? 0xa0 : 0x80;
    const hi = lead === 0xed ? 0x9f : 0xbf;
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const lo = lead === 0xf0 ? 0x90 : 0x80;
    const hi = lead === 0xf4 ? 0x8f : 0xbf;
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

const utf8 = new TextDecoder();

/** The bytes as one line of text a terminal shows faithfully; see the module comment. */
export function escapeBytes(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b < 0x80) {
      if (b === backslash) out += "\\\\";
      else if (b === 0x0a) out += "\\n";
      else if (b === 0x0d) out += "\\r";
      else if (b === 0x09) out += "\\t";
      else if (b < 0x20 || b === 0x7f) out += hex(b);
      else if (b === space && (i === 0 || i === bytes.length - 1)) out += hex(b);
      else out += String.fromCharCode(b);
      i += 1;
      continue;
    }
    const n = utf8Length(bytes, i);
    if (n === 0) {
      out += hex(b);
      i += 1;
      continue;
    }
    const sequence = bytes.subarray(i, i + n);
    const character = utf8.decode(sequence);
    if (invisible.test(character)) for (const byte of sequence) out += hex(byte);
    else out += character;
    i += n;
  }
  return out;
}

function hexValue(byte: number | undefined): number {
  if (byte === undefined) return -1;
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  return -1;
}

/** One escape: input[i] is the backslash. Returns the byte it stands for and where the text
 * after it starts; throws EscapeError naming the escape if it is not one of the accepted. */
export function parseEscapeAt(input: Uint8Array, i: number): { byte: number; next: number } {
  const c = input[i + 1];
  switch (c) {
    case backslash:
      return { byte: backslash, next: i + 2 };
    case 0x6e: // n
      return { byte: 0x0a, next: i + 2 };
    case 0x72: // r
      return { byte: 0x0d, next: i + 2 };
    case 0x74: // t
      return { byte: 0x09, next: i + 2 };
    case 0x22: // "
    case 0x27: // '
      return { byte: c, next: i + 2 };
    case 0x78: {
      // x
      const high = hexValue(input[i + 2]);
      const low = hexValue(input[i + 3]);
      if (high < 0 || low < 0)
        throw new EscapeError(
          `\\x needs two hex digits (\\x00 to \\xff), got "${escapeBytes(input.subarray(i, Math.min(input.length, i + 4)))}"`,
        );
      return { byte: high * 16 + low, next: i + 4 };
    }
    case undefined:
      throw new EscapeError(`a backslash at the end: write \\\\ for a backslash (escapes are ${escapes_accepted})`);
    default:
      throw new EscapeError(
        `unknown escape \\${escapeBytes(input.subarray(i + 1, i + 1 + Math.max(1, utf8Length(input, i + 1))))}: write \\\\ for a backslash (escapes are ${escapes_accepted})`,
      );
  }
}

/** Text with escapes to the bytes it stands for; bytes that are not part of an escape stay as
 * they are (a string is taken as UTF-8). */
export function unescapeBytes(input: Uint8Array | string): Uint8Array {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  if (!bytes.includes(backslash)) return bytes;
  const out = new Uint8Array(bytes.length);
  let n = 0;
  let i = 0;
  while (i < bytes.length) {
    if (bytes[i] === backslash) {
      const { byte, next } = parseEscapeAt(bytes, i);
      out[n++] = byte;
      i = next;
    } else {
      out[n++] = bytes[i++]!;
    }
  }
  return out.slice(0, n);
}
