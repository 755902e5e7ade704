/** The put options for object metadata (--content-type, --meta name=value) and how stat prints
 * what the object header adds to the object info (docs/LARGE_OBJECTS.md §11.2). */
import { ClientError } from "../lib/client/errors.ts";
import { metadataOf, type ObjectOptions } from "../lib/client/large_put.ts";
import { ObjectKind, decodeUserMeta, type ObjectHeader } from "../lib/store/large_bodies.ts";
import { escapeBytes } from "../lib/util/escape.ts";
import { UsageError } from "./cli_util.ts";

/** --meta given once (a string) or several times (an array): name=value pairs. */
export function metaOption(value: unknown): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  const items = Array.isArray(value) ? value : [value];
  const meta: Record<string, string> = {};
  for (const item of items) {
    if (item === true || item === false) throw new UsageError("--meta needs a value: --meta name=value");
    const text = String(item);
    const eq = text.indexOf("=");
    if (eq <= 0) throw new UsageError(`--meta must be name=value, got "${text}"`);
    const name = text.slice(0, eq);
    if (Object.hasOwn(meta, name)) throw new UsageError(`--meta ${name} given twice`);
    meta[name] = text.slice(eq + 1);
  }
  return meta;
}

/** Rejects bad metadata before anything is read or sent: a usage error naming the rule. */
export function checkMetadata(o: ObjectOptions): void {
  try {
    metadataOf(o);
  } catch (error) {
    if (error instanceof ClientError) throw new UsageError(error.message);
    throw error;
  }
}

/** The lines stat adds after the object info: kind and blocks, MD5, content type, metadata. */
export function formatHeader(h: ObjectHeader): string[] {
  const lines = [
    h.kind === ObjectKind.chunked
      ? `kind      chunked (${h.block_count} block${h.block_count === 1 ? "" : "s"}; the checksum is the manifest's)`
      : "kind      inline",
  ];
  if (h.md5 !== null) lines.push(`md5       ${Buffer.from(h.md5).toString("hex")}`);
  if (h.metadata !== null && h.metadata.content_type !== "") lines.push(`type      ${h.metadata.content_type}`);
  for (const e of (h.metadata === null ? null : decodeUserMeta(h.metadata.user_meta)) ?? [])
    lines.push(`meta      ${e.name}=${escapeBytes(e.value)}`);
  return lines;
}
