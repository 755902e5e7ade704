/**
 * toastyfs snapshot restore (docs/STORAGE.md §17.3): builds the data directories of a new cluster
 * holding exactly a snapshot's objects, so that `toastyfs serve` with the same addresses then just
 * works on each of them.
 *
 * It does not write a data directory by hand: it runs the new cluster itself, in this process, the
 * real ReplicaNode over each directory, and writes every object through the TypeScript client (a
 * large one through the large put path), so the directories are whatever a cluster writes. Each
 * replica runs under its real address (which decides the cluster id and its replica index,
 * lib/net/address.ts) but listens on, and is dialed at, a free loopback port: the real addresses
 * are never bound, and may belong to other machines. Versions and timestamps are the new
 * cluster's; bytes, content type, user metadata and MD5 are the snapshot's (but an inline object
 * with an MD5 and no other metadata is put without it: the client has no request for that). Open
 * uploads and client sessions are not restored.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { assert } from "../util/assert.ts";
import { Client, type BlockSource, type LargePutOptions } from "../client/client.ts";
import { formatAddress, indexOf, membership, type Address } from "../net/address.ts";
import { decodeUserMeta } from "../store/large_bodies.ts";
import { keyToBytes } from "../store/keys.ts";
import type { ObjectEntry, ObjectStore } from "../store/object_store.ts";
import { Logger } from "./log.ts";
import { ReplicaNode } from "./replica_node.ts";
import { readSnapshotFile, readStored, type SnapshotFile } from "./snapshot_file.ts";

export interface RestoreOptions {
  file: string;
  /** The new cluster's members, and the data directory each gets (the same order). */
  addresses: Address[];
  data_dirs: string[];
  /** Progress lines for a person watching (objects and bytes written). */
  note?: (text: string) => void;
}

export interface RestoreResult {
  snapshot: SnapshotFile;
  cluster: bigint;
  objects: number;
  bytes: number;
  /** Per member (options order): its replica index in the new cluster. */
  indexes: number[];
}

/** A restore that could not be done (a non-empty directory, a damaged file, a failed write). */
export class RestoreError extends Error {
  override name = "RestoreError";
}

/** Objects written at once (each writer is a client of its own). */
const writers = 8;
/** How long the new cluster may take to take a write, and to catch every replica up. */
const restore_timeout_ms = 60_000;

export async function restoreSnapshot(options: RestoreOptions): Promise<RestoreResult> {
  assert(options.addresses.length === options.data_dirs.length, "restore: one data directory per member");
  const snapshot = readSnapshotFile(options.file); // the file is checked whole before anything is written
  const m = membership(options.addresses);
  const indexes = options.addresses.map((a) => indexOf(m, a));
  const dirs: string[] = new Array<string>(m.replicas.length);
  options.data_dirs.forEach((dir, i) => (dirs[indexes[i]!] = dir));
  if (new Set(dirs.map((d) => path.resolve(d))).size !== dirs.length)
    throw new RestoreError(`two members were given the same data directory (${options.data_dirs.join(", ")}): each needs its own`);
  for (const dir of dirs) {
    if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0)
      throw new RestoreError(
        `refusing to restore into ${dir}: it is not empty (a restore builds a new cluster's directories from nothing)`,
      );
  }
  const created = dirs.filter((dir) => !fs.existsSync(dir));
  const dial = freeLoopbackPorts(m.replicas.length).map((port): Address => ({ host: "127.0.0.1", port }));
  const logger = new Logger("error");
  const nodes: ReplicaNode[] = [];
  let client: Client | null = null;
  try {
    for (let i = 0; i < m.replicas.length; i++) {
      const node = new ReplicaNode({ self: m.replicas[i]!, listen: dial[i]!, dial, addresses: m.replicas, data_dir: dirs[i]!, logger });
      await node.start();
      nodes.push(node);
    }
    const { objects, bytes } = await writeObjects(options.file, snapshot, m.replicas, dial, options.note);
    client = new Client({ addresses: m.replicas, dial, operation_timeout_ms: restore_timeout_ms });
    let listed = 0;
    for await (const _entry of client.listAll()) listed += 1;
    if (listed !== snapshot.state.store.count)
      throw new RestoreError(`the new cluster lists ${listed} objects, the snapshot holds ${snapshot.state.store.count}`);
    await caughtUp(nodes);
    return { snapshot, cluster: m.cluster, objects, bytes, indexes };
  } catch (error) {
    await Promise.all(nodes.map((n) => n.stop()));
    nodes.length = 0;
    for (const dir of dirs) {
      // Only what this restore wrote: the directories were empty or absent.
      if (created.includes(dir)) fs.rmSync(dir, { recursive: true, force: true });
      else if (fs.existsSync(dir))
        for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
    }
    throw error;
  } finally {
    await client?.close();
    await Promise.all(nodes.map((n) => n.stop()));
  }
}

/** Every object of the snapshot, written by `writers` clients at once; objects and bytes written. */
async function writeObjects(
  file: string,
  snapshot: SnapshotFile,
  addresses: Address[],
  dial: Address[],
  note?: (text: string) => void,
): Promise<{ objects: number; bytes: number }> {
  const store = snapshot.state.store;
  const entries = [...store.all()];
  const fd = fs.openSync(file, "r");
  let next = 0;
  let objects = 0;
  let bytes = 0;
  let noted_ms = Date.now();
  const clients = Array.from(
    { length: Math.min(writers, Math.max(1, entries.length)) },
    () => new Client({ addresses, dial, operation_timeout_ms: restore_timeout_ms }),
  );
  try {
    await Promise.all(
      clients.map(async (client) => {
        while (next < entries.length) {
          const [key, entry] = entries[next++]!;
          await writeObject(client, fd, store, key, entry);
          objects += 1;
          bytes += entry.size;
          if (note !== undefined && Date.now() - noted_ms >= 1000) {
            noted_ms = Date.now();
            note(`restored ${objects} of ${entries.length} objects, ${bytes} bytes`);
          }
        }
      }),
    );
  } finally {
    fs.closeSync(fd);
    await Promise.all(clients.map((c) => c.close()));
  }
  return { objects, bytes };
}

async function writeObject(client: Client, fd: number, store: ObjectStore, key: string, entry: ObjectEntry): Promise<void> {
  const options: LargePutOptions = { md5: entry.meta?.md5 !== null && entry.meta?.md5 !== undefined };
  if (entry.meta !== undefined) {
    if (entry.meta.content_type !== "") options.content_type = entry.meta.content_type;
    const meta = decodeUserMeta(entry.meta.user_meta);
    if (meta === null) throw new RestoreError(`the metadata of an object in the snapshot does not decode`);
    if (meta.length > 0) options.meta = Object.fromEntries(meta.map((e) => [e.name, e.value]));
  }
  const key_bytes = keyToBytes(key);
  if (entry.chunks === undefined) {
    await client.put(key_bytes, readStored(fd, entry), options);
    return;
  }
  const blocks = entry.chunks.blocks.map((id) => store.large.block(id)!);
  await client.putSource(key_bytes, new BlocksSource(fd, blocks, entry.size), { ...options, size: entry.size });
}

/** A chunked object's bytes, read block by block from the snapshot file (each block checked). */
class BlocksSource implements BlockSource {
  private block = 0;
  private pending: Uint8Array = new Uint8Array(0);
  private read_bytes = 0;

  constructor(
    private readonly fd: number,
    private readonly blocks: { segment: number; offset: number; size: number; checksum: bigint }[],
    readonly size: number,
  ) {}

  next(max: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let have = 0;
    while (have < max && (this.pending.length > 0 || this.block < this.blocks.length)) {
      if (this.pending.length === 0) this.pending = readStored(this.fd, this.blocks[this.block++]!);
      const take = this.pending.subarray(0, max - have);
      parts.push(take);
      have += take.length;
      this.pending = this.pending.subarray(take.length);
    }
    this.read_bytes += have;
    return Promise.resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  }

  atEnd(): Promise<boolean> {
    return Promise.resolve(this.read_bytes === this.size && this.pending.length === 0 && this.block === this.blocks.length);
  }
}

/** Waits (bounded) until every replica executed what the primary did, so each directory holds
 * every object, not only a majority of them (each may go to another machine). */
async function caughtUp(nodes: ReplicaNode[]): Promise<void> {
  const deadline = Date.now() + restore_timeout_ms;
  for (;;) {
    const statuses = nodes.map((n) => n.status());
    const head = Math.max(...statuses.map((s) => s.commit_max));
    if (statuses.every((s) => s.status === "normal" && s.commit_min === head)) return;
    if (Date.now() > deadline) throw new RestoreError("the new cluster's replicas did not catch up with each other in time");
    await Bun.sleep(20);
  }
}

/** Ports the OS reports free right now (bind to 0, read, release). */
function freeLoopbackPorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () => Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }));
  const ports = listeners.map((l) => l.port);
  for (const l of listeners) l.stop(true);
  return ports;
}

export function describeMembers(addresses: Address[], indexes: number[]): string {
  return addresses.map((a, i) => `${formatAddress(a)} (replica ${indexes[i]})`).join(", ");
}
