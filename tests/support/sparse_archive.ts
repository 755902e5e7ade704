/**
 * A gzipped archive of a directory tree that keeps only the non-zero 4 KiB blocks of each file.
 * A replica preallocates 64 MiB journal segments that are almost all zeros; a plain tar of them
 * would still be large after compression, this stays a few kilobytes per segment. Unpacking
 * restores every file at its full size (the zero blocks as holes), so the replica sees the same
 * bytes at the same offsets as on the disk the archive was made from.
 *
 * Layout before gzip: "TFSPARSE1\n", a u32 (little-endian) byte length of a JSON manifest
 * (`{ files: [{ path, size, extents: [[offset, length], ...] }] }`, paths relative with "/"),
 * then the bytes of every extent in manifest order.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";

const magic = "TFSPARSE1\n";
const block_size = 4096;

interface ArchivedFile {
  path: string;
  size: number;
  extents: [number, number][];
}

function walk(root: string, relative: string, out: string[]): void {
  for (const entry of fs.readdirSync(path.join(root, relative), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const child = relative === "" ? entry.name : `${relative}/${entry.name}`;
    if (entry.isDirectory()) walk(root, child, out);
    else if (entry.isFile()) out.push(child);
    else throw new Error(`${child}: only regular files and directories can be archived`);
  }
}

/** Packs every regular file under root, except those `skip` names (relative paths). */
export function packSparse(root: string, skip: (relative: string) => boolean = () => false): Uint8Array {
  const files: ArchivedFile[] = [];
  const chunks: Uint8Array[] = [];
  const paths: string[] = [];
  walk(root, "", paths);
  for (const relative of paths) {
    if (skip(relative)) continue;
    const bytes = fs.readFileSync(path.join(root, relative));
    const extents: [number, number][] = [];
    for (let offset = 0; offset < bytes.length; offset += block_size) {
      const block = bytes.subarray(offset, Math.min(offset + block_size, bytes.length));
      if (block.every((b) => b === 0)) continue;
      const last = extents[extents.length - 1];
      if (last !== undefined && last[0] + last[1] === offset) last[1] += block.length;
      else extents.push([offset, block.length]);
    }
    for (const [offset, length] of extents) chunks.push(bytes.subarray(offset, offset + length));
    files.push({ path: relative, size: bytes.length, extents });
  }
  const manifest = new TextEncoder().encode(JSON.stringify({ files }));
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, manifest.length, true);
  return gzipSync(Buffer.concat([new TextEncoder().encode(magic), length, manifest, ...chunks]), { level: 9 });
}

/** Recreates the archived files under root (which must exist); returns their relative paths. */
export function unpackSparse(archive: Uint8Array, root: string): string[] {
  const raw = new Uint8Array(gunzipSync(archive));
  const head = new TextDecoder().decode(raw.subarray(0, magic.length));
  if (head !== magic) throw new Error("not a sparse archive");
  const manifest_length = new DataView(raw.buffer, raw.byteOffset + magic.length, 4).getUint32(0, true);
  let at = magic.length + 4;
  const { files } = JSON.parse(new TextDecoder().decode(raw.subarray(at, at + manifest_length))) as { files: ArchivedFile[] };
  at += manifest_length;
  for (const file of files) {
    if (file.path.split("/").some((part) => part === ".." || part === "")) throw new Error(`bad path in archive: ${file.path}`);
    const target = path.join(root, ...file.path.split("/"));
    fs.mkdirSync(path.dirname(target), { recursive: true });
    const fd = fs.openSync(target, "w");
    try {
      fs.ftruncateSync(fd, file.size);
      for (const [offset, length] of file.extents) {
        fs.writeSync(fd, raw.subarray(at, at + length), 0, length, offset);
        at += length;
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  if (at !== raw.length) throw new Error(`sparse archive has ${raw.length - at} trailing bytes`);
  return files.map((f) => f.path);
}
