/**
 * toastyfs snapshot save | verify | restore (docs/STORAGE.md §17, docs/PROTOCOL.md §3.16): a
 * point-in-time copy of every object, as one checkpoint of the cluster, into one file; its check;
 * and a new cluster's data directories built from it. Parsing and printing; the work is in
 * lib/client/snapshot_reader.ts, lib/node/snapshot_file.ts and lib/node/snapshot_restore.ts.
 */
import type { CAC } from "cac";
import * as fs from "node:fs";
import * as path from "node:path";
import { ClientError } from "../lib/client/client.ts";
import { readSnapshot, type SnapshotCheckpoint } from "../lib/client/snapshot_reader.ts";
import { AddressError, membership, parseAddress, parseAddressList, type Address } from "../lib/net/address.ts";
import { dataDirFor } from "../lib/node/replica_node.ts";
import { SnapshotFileError, SnapshotLoader, SnapshotWriter, readSnapshotFile } from "../lib/node/snapshot_file.ts";
import { RestoreError, describeMembers, restoreSnapshot } from "../lib/node/snapshot_restore.ts";
import { OperationError, UsageError, optionString } from "./cli_util.ts";
import { clusterFrom, describeClientError, timeoutFrom } from "./client_commands.ts";
import { secretFrom, secret_file_help } from "./secret.ts";
import { tlsFrom, tlsOptions } from "./tls_options.ts";
import { formatBytes } from "./format.ts";

const help = "Snapshots: save FILE (every object as of one committed op), verify FILE, restore FILE --addr A --peer B ... (a new cluster)";

const usage = `snapshot save FILE [--cluster A,B,C] [--secret-file F] [--tls-cert C --tls-key K --tls-ca CA] [--timeout S] [--quiet]
      Streams a consistent point-in-time snapshot from a replica into FILE: every object, with its
      metadata and bytes, as of one checkpoint taken after every write acknowledged before the save
      started (an idle cluster is moved to its next checkpoint with at most 256 no-ops that change
      nothing). Open uploads are left out. Written to FILE.tmp, synced, then renamed.
  $ toastyfs snapshot verify FILE
      Checks the header, every record, every value and block against its checksum, the trailer's
      counts and SHA-256, and that the state rebuilt from the records has the checkpoint's digest.
      Prints op, objects, bytes and digest; exits 1 naming the record and offset of any damage.
  $ toastyfs snapshot restore FILE --addr A --peer B --peer C [--data DIR ...] [--quiet]
      Verifies FILE, then builds the data directories of a NEW cluster (its own cluster id, new
      versions and timestamps) holding exactly the snapshot's objects; then run
      toastyfs serve --addr A --peer B --peer C on each member. Refuses a non-empty directory, and
      never binds A, B or C (it runs the new cluster on free loopback ports meanwhile).`;

export function registerSnapshotCommands(cli: CAC): void {
  tlsOptions(cli.command("snapshot <action> <file>", help))
    .usage(usage)
    .option("--cluster <host:port,...>", "save: the cluster's replicas (default: $TOASTYFS_CLUSTER, else the dev cluster)")
    .option("--secret-file <file>", `save: ${secret_file_help}`)
    .option(
      "--timeout <seconds>",
      "save: give up when the cluster commits nothing, or no replica has a checkpoint to save, for this long (default: 60)",
    )
    .option("--quiet", "save, restore: no progress on stderr, only the summary line")
    .option("--addr <host:port>", "restore: a member of the new cluster (with --peer for each other member)")
    .option("--peer <host:port>", "restore: another member of the new cluster (repeat)", { type: [String] })
    .option("--data <dir>", "restore: data directory of --addr, then of each --peer in order (default: ./toastyfs-data/<host>_<port>)", {
      type: [String],
    })
    .example("toastyfs snapshot save backup.tfs --cluster 10.0.0.1:8081,10.0.0.2:8081,10.0.0.3:8081 --secret-file secret")
    .example("toastyfs snapshot verify backup.tfs")
    .example("toastyfs snapshot restore backup.tfs --addr 10.0.1.1:8081 --peer 10.0.1.2:8081 --peer 10.0.1.3:8081")
    .action(async (action: string, file: string, options: Record<string, unknown>) => {
      if (action === "save") return save(file, options);
      if (action === "verify") return verify(file);
      if (action === "restore") return restore(file, options);
      throw new UsageError(`toastyfs snapshot: unknown action "${action}" (save, verify or restore)`);
    });
}

/** How long save waits for the cluster (a no-op committed, a checkpoint to save) by default. */
const save_timeout_ms_default = 60_000;

function hex(n: bigint): string {
  return n.toString(16).padStart(16, "0");
}

function progressLine(quiet: boolean): (text: string) => void {
  return (text) => {
    if (!quiet) process.stderr.write(`${text}\n`);
  };
}

async function save(file: string, options: Record<string, unknown>): Promise<void> {
  const { addresses } = clusterFrom(options.cluster);
  const secret = secretFrom(options.secretFile);
  const wait_timeout_ms = options.timeout === undefined ? save_timeout_ms_default : timeoutFrom(options.timeout);
  const note = progressLine(options.quiet === true);
  const cluster = membership(addresses).cluster;
  const started = performance.now();
  const tmp = `${file}.tmp`;
  let writer: SnapshotWriter;
  try {
    writer = new SnapshotWriter(tmp);
  } catch (error) {
    throw new OperationError(`cannot write ${tmp}: ${(error as Error).message}`);
  }
  let loader: SnapshotLoader | null = null;
  let noted_ms = 0;
  try {
    const read = await readSnapshot(
      { addresses, secret, tls: tlsFrom(options), note, wait_timeout_ms },
      {
        begin: (checkpoint: SnapshotCheckpoint, replica_count: number) => {
          writer.begin({ cluster, replica_count, checkpoint, created_ms: Date.now() });
          loader = new SnapshotLoader(checkpoint);
          note(`saving checkpoint ${checkpoint.op} (digest ${hex(checkpoint.digest)})`);
        },
        chunk: (position: number, records: Uint8Array) => {
          const offset = writer.records_offset;
          writer.frame(position, records);
          // Checked as it arrives, with the replica's own receiver: a file is never finished with
          // records that do not verify.
          const problem = loader!.frame(position, records, offset);
          if (problem !== null) throw new OperationError(`the cluster sent a snapshot that does not verify: ${problem}`);
          if (performance.now() - noted_ms >= 1000) {
            noted_ms = performance.now();
            note(`${formatBytes(writer.bytes_written)}, ${loader!.objects} objects`);
          }
        },
      },
    );
    const state = (loader as SnapshotLoader | null)?.finish() ?? "no records arrived";
    if (typeof state === "string") throw new OperationError(`the cluster sent a snapshot that does not verify: ${state}`);
    writer.finish({ records: state.records, objects: state.store.count, object_bytes: state.store.bytes });
    fs.renameSync(tmp, file);
    fsyncDir(path.dirname(path.resolve(file)));
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(
      `saved ${file}: checkpoint op ${read.checkpoint.op} (every write acknowledged before op ${read.start_op}), ${state.store.count} objects, ` +
        `${formatBytes(state.store.bytes)} of objects, ${formatBytes(fs.statSync(file).size)} file, digest ${hex(read.checkpoint.digest)}, ` +
        `${read.noops} no-op${read.noops === 1 ? "" : "s"}, ${seconds} s`,
    );
  } catch (error) {
    writer.close();
    fs.rmSync(tmp, { force: true });
    if (error instanceof ClientError) throw new OperationError(describeClientError("snapshot save", error));
    throw error;
  }
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function verify(file: string): void {
  try {
    const { header, state, size } = readSnapshotFile(file);
    console.log(
      `${file}: ok: checkpoint op ${header.checkpoint.op} of cluster ${hex(header.cluster)} (${header.replica_count} replicas), ` +
        `${state.store.count} objects, ${formatBytes(state.store.bytes)} of objects (${state.store.bytes} bytes), ${state.records} records, ` +
        `${formatBytes(size)} file, digest ${hex(header.checkpoint.digest)}, saved ${new Date(header.created_ms).toISOString()}`,
    );
  } catch (error) {
    if (error instanceof SnapshotFileError) throw new OperationError(`${file} is damaged: ${error.message}`);
    if ((error as NodeJS.ErrnoException).code !== undefined) throw new OperationError(`cannot read ${file}: ${(error as Error).message}`);
    throw error;
  }
}

async function restore(file: string, options: Record<string, unknown>): Promise<void> {
  const addr = optionString("--addr", options.addr);
  if (addr === undefined) throw new UsageError("snapshot restore needs --addr (and --peer for each other member of the new cluster)");
  let addresses: Address[];
  try {
    const peers = options.peer === undefined ? [] : (Array.isArray(options.peer) ? options.peer : [options.peer]).map(String);
    addresses = [parseAddress(addr), ...parseAddressList(peers)];
    membership(addresses);
  } catch (error) {
    if (error instanceof AddressError) throw new UsageError(error.message);
    throw error;
  }
  const given = options.data === undefined ? [] : (Array.isArray(options.data) ? options.data : [options.data]).map(String);
  if (given.length > addresses.length)
    throw new UsageError(`${given.length} --data directories for ${addresses.length} members (--addr, then each --peer)`);
  const data_dirs = addresses.map((a, i) => given[i] ?? dataDirFor(a));
  const note = progressLine(options.quiet === true);
  const started = performance.now();
  try {
    const result = await restoreSnapshot({ file, addresses, data_dirs, note });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(
      `restored ${result.objects} objects (${formatBytes(result.bytes)}) of checkpoint op ${result.snapshot.header.checkpoint.op} into a new cluster ${hex(result.cluster)}: ` +
        `${describeMembers(addresses, result.indexes)}; data in ${data_dirs.join(", ")}; ${seconds} s. ` +
        `Start each member with: toastyfs serve --addr <its address> --peer <each other> --data <its directory>`,
    );
  } catch (error) {
    if (error instanceof SnapshotFileError) throw new OperationError(`${file} is damaged, nothing restored: ${error.message}`);
    if (error instanceof RestoreError) throw new OperationError(error.message);
    if (error instanceof ClientError) throw new OperationError(describeClientError("snapshot restore", error));
    if ((error as NodeJS.ErrnoException).code !== undefined) throw new OperationError(`snapshot restore: ${(error as Error).message}`);
    throw error;
  }
}
