/**
 * Makes tests/fixtures/old_data_6ee49ef: the data directories of a 3-replica cluster, written by
 * the replica code of an older commit, that tests/old_data_directory.test.ts opens with the current
 * code. A restructuring must not change the bytes on disk (issue 13); this is the proof that a
 * directory written before it still opens after it.
 *
 * How the checked-in fixture was made (the replicas run from a pristine tree of that commit; this
 * script and the client that writes the objects run from the current tree, the client protocol
 * being unchanged):
 *
 *   git archive 6ee49ef | tar -x -C /tmp/toastyfs-6ee49ef
 *   ln -s "$PWD/node_modules" /tmp/toastyfs-6ee49ef/node_modules
 *   bun scripts/make_old_data_fixture.ts --source /tmp/toastyfs-6ee49ef --commit 6ee49ef
 *
 * The replicas run with the production configuration (the CLI has no knobs for it): 64 MiB
 * journal segments and a checkpoint every 256 ops. The objects: a UTF-8 key, a key of raw bytes
 * (0x00, 0xff, ...), an empty value, a value over several 4 KiB blocks, a key overwritten (once
 * before and once after the checkpoint), a key deleted after the checkpoint, and enough
 * sequential puts (one op each) for every replica to take a checkpoint, so the state is split
 * between a checkpoint and a journal suffix. The replicas are stopped with SIGTERM, then each data
 * directory (minus its LOCK file, which holds a pid) is packed with tests/support/sparse_archive.ts:
 * the segments are preallocated and mostly zeros.
 */
import { parseArgs } from "node:util";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client, clusterStatus } from "../lib/client/client.ts";
import { Prng } from "../lib/util/prng.ts";
import { packSparse } from "../tests/support/sparse_archive.ts";
import {
  addresses,
  archive_path,
  expected_path,
  fixture_dir,
  logs,
  startReplicas,
  stopReplicas,
  waitConverged,
  type ExpectedContents,
} from "../tests/support/old_data.ts";
import { waitFor } from "../tests/support/cluster.ts";

const usage = "usage: bun scripts/make_old_data_fixture.ts --source <tree of the commit> --commit <sha>";
const { values } = parseArgs({ options: { source: { type: "string" }, commit: { type: "string" } }, strict: true });
if (values.source === undefined || values.commit === undefined) {
  console.error(usage);
  process.exit(2);
}
const source = path.resolve(values.source);
const checkpoint_interval_ops = 256; // defaultConfig in lib/constants.ts

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const text = (s: string) => new TextEncoder().encode(s);

const root = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-old-data-"));
const log_dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-old-data-logs-"));
const replicas = startReplicas(source, root, log_dir);
const client = new Client({ addresses, operation_timeout_ms: 20_000 });
const objects = new Map<string, { key: Uint8Array; value: Uint8Array; version: number; note: string }>();

async function put(key: Uint8Array | string, value: Uint8Array, note: string): Promise<void> {
  const key_bytes = typeof key === "string" ? text(key) : key;
  const { version } = await client.put(key_bytes, value, {});
  objects.set(hex(key_bytes), { key: key_bytes, value, version, note });
}

try {
  await waitConverged();
  const prng = new Prng(0x6ee49ef);
  const random = new Uint8Array(3000).map(() => prng.int(256));
  const blocks = new Uint8Array(20_000).map((_, i) => (i * 31 + (i >> 8)) & 0xff);

  await put("docs/readme.txt", text("written by 6ee49ef\n"), "a UTF-8 key and value");
  await put(new Uint8Array([0x00, 0xff, 0x10, 0x80, 0x7f, 0x2f]), random, "a key of raw bytes, not UTF-8; an incompressible value");
  await put("empty", new Uint8Array(0), "an empty value");
  await put("blocks", blocks, "a value over several 4 KiB blocks");
  await put("overwritten", text("first value, replaced"), "overwritten twice");
  await put("overwritten", text("second value, before the checkpoint"), "overwritten twice");
  await put("deleted", text("deleted after the checkpoint"), "deleted");
  await put("deleted-early", text("deleted before the checkpoint"), "deleted");
  await client.delete("deleted-early");
  objects.delete(hex(text("deleted-early")));

  // One op per put: sequential, so the primary never batches two requests into one prepare.
  let filler = 0;
  while ((await clusterStatus(addresses, 500)).some((s) => s === null || s.checkpoint < checkpoint_interval_ops)) {
    if (filler > 4 * checkpoint_interval_ops) throw new Error("no checkpoint after many ops");
    await put(`filler/${filler % 8}`, text(`filler ${filler}`), "overwritten by filler puts");
    filler += 1;
  }

  await put("overwritten", text("third value, after the checkpoint"), "overwritten twice");
  await client.delete("deleted");
  objects.delete(hex(text("deleted")));
  await put("after-checkpoint", text("only in the journal suffix"), "written after the checkpoint");

  const statuses = await waitConverged();
  await waitFor("every replica's checkpoint", async () =>
    (await clusterStatus(addresses, 500)).every((s) => s !== null && s.checkpoint >= checkpoint_interval_ops),
  );
  await client.close();
  await stopReplicas(replicas);

  const expected: ExpectedContents = {
    commit: values.commit,
    made_at: new Date().toISOString(),
    objects: [...objects.values()].map((o) => ({ key_hex: hex(o.key), value_hex: hex(o.value), version: o.version, note: o.note })),
    deleted_hex: [hex(text("deleted")), hex(text("deleted-early"))],
    checkpoint: Math.min(...statuses.map((s) => s.checkpoint)),
    commit_max: statuses[0]!.commit_max,
  };
  fs.mkdirSync(fixture_dir, { recursive: true });
  fs.writeFileSync(
    archive_path,
    packSparse(root, (relative) => path.basename(relative) === "LOCK"),
  );
  fs.writeFileSync(expected_path, `${JSON.stringify(expected, null, 1)}\n`);
  console.log(
    `wrote ${archive_path} (${fs.statSync(archive_path).size} bytes) and ${expected_path}: ${expected.objects.length} objects, commit ${expected.commit_max}, checkpoint ${expected.checkpoint}, ${filler} filler puts`,
  );
  fs.rmSync(root, { recursive: true, force: true });
  fs.rmSync(log_dir, { recursive: true, force: true });
} catch (error) {
  console.error(`failed: ${(error as Error).stack}\n${logs(replicas)}\ndata kept at ${root}`);
  await client.close();
  for (const r of replicas) r.process.kill("SIGKILL");
  process.exit(1);
}
