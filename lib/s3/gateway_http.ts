/**
 * The request target as the gateway routes and signs it. The server (http_server.ts) hands it
 * over exactly as sent: Bun.serve would not (Bun 1.4.5 resolves "." and ".." segments, and %2e
 * spellings, and turns "\" into "/" before a handler sees the URL, so a key like "a/../b" would
 * arrive as "b" and fail its signature).
 */

/** The raw path and query of a request target, split at the first "?". */
export function splitTarget(target: string): { path: string; query: string } {
  const question = target.indexOf("?");
  return question < 0 ? { path: target, query: "" } : { path: target.slice(0, question), query: target.slice(question + 1) };
}
