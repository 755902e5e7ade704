/**
 * The bytes of a simulated object: "tag|" and then filler that depends on the tag and the offset,
 * so the whole of a value read back (whole, or assembled from ranges) names the one put that wrote
 * it, and a value mixed from two puts, or damaged, does not match its own tag.
 */
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function objectBytes(tag: string, size: number): Uint8Array {
  const head = encoder.encode(tag + "|");
  const out = new Uint8Array(size);
  out.set(head.subarray(0, Math.min(head.length, size)));
  let h = 7;
  for (let i = 0; i < tag.length; i++) h = (h * 31 + tag.charCodeAt(i)) & 0xffff;
  for (let i = head.length; i < size; i++) out[i] = (i * 131 + h) & 0xff;
  return out;
}

/** The tag of an object's bytes, or null if they are not exactly what that tag's put wrote. */
export function tagOf(bytes: Uint8Array): string | null {
  const bar = bytes.subarray(0, 40).indexOf(0x7c);
  if (bar <= 0) return null;
  const tag = decoder.decode(bytes.subarray(0, bar));
  const expected = objectBytes(tag, bytes.length);
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== expected[i]) return null;
  return tag;
}
