/**
 * The old-data-directory fixture (tests/fixtures/old_data_6ee49ef): what scripts/make_old_data_fixture.ts
 * wrote and tests/old_data_directory.test.ts reads back. Both start the same three replicas.
 *
 * The cluster's identity is a checksum of its sorted addresses (lib/net/address.ts membership), so
 * the addresses are part of the fixture: the replicas must be started on exactly these. They sit on
 * loopback addresses other than 127.0.0.1, where the other tests' free ports live, so a run of this
 * test does not collide with them.
 */
import { spawn, type Subprocess } from "bun";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseAddress, type Address } from "../../lib/net/address.ts";
import { clusterStatus } from "../../lib/client/client.ts";
import type { ReplicaStatus } from "../../lib/net/status_codec.ts";
import { waitFor } from "./cluster.ts";

export const fixture_dir = path.resolve(import.meta.dir, "../fixtures/old_data_6ee49ef");
export const archive_path = path.join(fixture_dir, "replicas.tfsparse.gz");
export const expected_path = path.join(fixture_dir, "expected.json");

export const fixture_addresses = ["127.0.0.31:7431", "127.0.0.32:7432", "127.0.0.33:7433"];

/** The data directory of each replica inside the unpacked tree. */
export function replicaDir(root: string, index: number): string {
  return path.join(root, `replica-${index}`);
}

/** What the fixture holds, as the generator recorded it: keys and values in hex. */
export interface ExpectedContents {
  /** The commit of ToastyFS that wrote the directories. */
  commit: string;
  made_at: string;
  objects: { key_hex: string; value_hex: string; version: number; note: string }[];
  deleted_hex: string[];
  /** Each replica's status when it was stopped. */
  checkpoint: number;
  commit_max: number;
}

export interface FixtureReplica {
  address: string;
  process: Subprocess;
  log_path: string;
}

export const addresses: Address[] = fixture_addresses.map(parseAddress);

/** Starts one `bun cmd/toastyfs.ts` per replica from the source tree `source` (the data under
 * `root`, logs beside it). The source is run directly rather than a built ./toastyfs, which may
 * be older than the code under test. */
export function startReplicas(source: string, root: string, log_dir: string): FixtureReplica[] {
  const bun = path.join(source, "node_modules/.bin/bun");
  return fixture_addresses.map((address, index) => {
    const peers = fixture_addresses.filter((a) => a !== address).flatMap((a) => ["--peer", a]);
    const log_path = path.join(log_dir, `replica-${index}.log`);
    const log = fs.openSync(log_path, "a");
    const process = spawn([bun, path.join(source, "cmd/toastyfs.ts"), "--addr", address, ...peers, "--data", replicaDir(root, index)], {
      stdout: log,
      stderr: log,
      stdin: "ignore",
    });
    fs.closeSync(log);
    return { address, process, log_path };
  });
}

/** SIGTERM (a clean stop: the replica finishes its flush and closes its files) and waits. */
export async function stopReplicas(replicas: FixtureReplica[]): Promise<void> {
  for (const r of replicas) r.process.kill("SIGTERM");
  await Promise.all(replicas.map((r) => r.process.exited));
}

/** Every replica answers in normal status, one primary, all at the same fully executed commit. */
/** Waits until one primary leads and every replica has executed the same ops, at least
 * `commit_min` of them: right after a restart the persisted commit number may lag the log (the ops
 * committed after the last superblock write are committed again by the new view's primary), and
 * the replicas agree on the lower number for a moment first. */
export async function waitConverged(timeout_ms = 30_000, commit_min = 0): Promise<ReplicaStatus[]> {
  return waitFor(
    `the fixture replicas to converge at commit ${commit_min} or above`,
    async () => {
      const statuses = await clusterStatus(addresses, 500);
      if (statuses.some((s) => s === null)) return null;
      const s = statuses as ReplicaStatus[];
      if (s.filter((x) => x.primary).length !== 1) return null;
      const first = s[0]!;
      const agree =
        first.commit_max >= commit_min &&
        s.every(
          (x) =>
            x.status === "normal" &&
            x.view === first.view &&
            x.commit_min === first.commit_max &&
            x.commit_max === first.commit_max &&
            x.objects === first.objects,
        );
      return agree ? s : null;
    },
    timeout_ms,
    100,
  );
}

export function logs(replicas: FixtureReplica[]): string {
  return replicas
    .map(
      (r) => `--- ${r.address}\n${fs.existsSync(r.log_path) ? fs.readFileSync(r.log_path, "utf8").split("\n").slice(-40).join("\n") : ""}`,
    )
    .join("\n");
}
