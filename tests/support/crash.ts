/**
 * Whole-cluster crash rounds, shared by tests/crash_restart.test.ts, tests/cluster_faults.test.ts
 * and scripts/crash_rounds.ts: concurrent writers, kill -9 of every replica at a random moment,
 * optionally a damaged data directory (wiped, or one byte of a journal segment flipped), restart,
 * and every acknowledged put must read back exactly (tests/support/workload.ts Ledger).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Prng } from "../../lib/util/prng.ts";
import { TestCluster, describeStatuses, waitFor, type ReplicaProcess } from "./cluster.ts";
import { Client } from "../../lib/client/client.ts";
import { Ledger, WriteLoad, valueFor } from "./workload.ts";

/** Keys written once before the first round (writeColdKeys). */
const cold_prefix = "cold/";

export type CrashVariant = "plain" | "wipe" | "flip";

export interface CrashRoundOptions {
  variant: CrashVariant;
  writers?: number;
  /** Keys per writer (writers overwrite their own keys at random). */
  keys?: number;
  /** The crash comes at a random moment between these, after the round's first acknowledgment. */
  load_ms_min?: number;
  load_ms_max?: number;
  /** flip: damage the replica that was primary (the one that serves reads after the restart), or
   * one at random. */
  flip_target?: "primary" | "random";
  /** After recovery, make the damaged replica primary and read everything back through it. */
  read_through_victim?: boolean;
  log?: (line: string) => void;
}

export interface CrashRoundResult {
  variant: CrashVariant;
  /** Load before the crash, from the round's first acknowledgment. */
  load_ms: number;
  acked: number;
  unknown: number;
  /** From the restart to a healthy cluster (every replica normal, one primary). */
  recovery_ms: number;
  /** From the restart to every replica agreeing (repair and state sync done). */
  converged_ms: number;
  victim: number | null;
  damage: string | null;
  /** Lines of the victim's log since the restart that mention damage or repair. */
  victim_log: string[];
  problems: string[];
}

/** One crash round on a running cluster; the ledger carries over from earlier rounds. */
export async function crashRound(
  cluster: TestCluster,
  ledger: Ledger,
  prng: Prng,
  round: number,
  options: CrashRoundOptions,
): Promise<CrashRoundResult> {
  const log = options.log ?? (() => {});
  const acked_before = ledger.acknowledged_puts;
  const unknown_before = ledger.unknown_puts;
  const load = new WriteLoad(cluster.addresses, ledger, prng.fork(), { keys: options.keys ?? 40, prefix: "c" }).start(
    options.writers ?? 4,
    round,
  );
  const first = await waitFor("the round's first acknowledged put", () => (load.acks.length > 0 ? load.acks[0]! : null), 30_000, 5);
  const load_ms = prng.range(options.load_ms_min ?? 100, options.load_ms_max ?? 1500);
  // The random moment of the crash is the point of the test, not a stand-in for a condition.
  await Bun.sleep(Math.max(0, first.acked_ms + load_ms - performance.now()));
  const before = await cluster.status();
  await cluster.crashAll();
  await load.stop({ abandon: true });
  const problems = [...load.errors];

  let victim: ReplicaProcess | null = null;
  let damage: string | null = null;
  if (options.variant === "wipe") {
    victim = prng.pick(cluster.replicas);
    fs.rmSync(victim.data_dir, { recursive: true, force: true });
    damage = `deleted the data directory of replica ${victim.index}`;
  } else if (options.variant === "flip") {
    const primary = before.find((s) => s?.primary)?.replica;
    victim = options.flip_target === "random" || primary === undefined ? prng.pick(cluster.replicas) : cluster.replicas[primary]!;
    const checkpoint = before[victim.index]?.checkpoint ?? 0;
    damage = `replica ${victim.index}: ${flipJournalByte(victim.data_dir, ledger, prng, checkpoint)}`;
  }
  if (damage !== null) log(`  round ${round}: ${damage}`);

  const log_offset = victim !== null && fs.existsSync(victim.log_path) ? fs.statSync(victim.log_path).size : 0;
  const restarted_at = performance.now();
  for (const r of cluster.replicas) cluster.spawn(r);
  await cluster.waitHealthy(30_000);
  const recovery_ms = Math.round(performance.now() - restarted_at);
  problems.push(...(await ledger.verify(cluster.addresses)));
  await cluster.waitConverged(45_000);
  const converged_ms = Math.round(performance.now() - restarted_at);
  if (victim !== null && options.read_through_victim && problems.length === 0) {
    await makePrimary(cluster, victim, log);
    problems.push(...(await ledger.verify(cluster.addresses)).map((p) => `read through replica ${victim.index}: ${p}`));
  }
  return {
    variant: options.variant,
    load_ms,
    acked: ledger.acknowledged_puts - acked_before,
    unknown: ledger.unknown_puts - unknown_before,
    recovery_ms,
    converged_ms,
    victim: victim?.index ?? null,
    damage,
    victim_log:
      victim === null
        ? []
        : cluster
            .logs(victim)
            .slice(log_offset)
            .split("\n")
            .filter((line) => /damaged|repair|recover|sync|format/i.test(line)),
    problems,
  };
}

export function describeRound(round: number, r: CrashRoundResult): string {
  return `round ${round} (${r.variant}${r.victim !== null ? `, replica ${r.victim}` : ""}): crashed after ${r.load_ms} ms of load; ${r.acked} puts acknowledged, ${r.unknown} cut off; healthy ${r.recovery_ms} ms after the restart, converged after ${r.converged_ms} ms${r.problems.length > 0 ? `; ${r.problems.length} PROBLEMS` : ""}`;
}

/**
 * Makes `target` the primary by crashing whichever replica is primary (and restarting it once the
 * others have taken over) until it is. Each view change moves the primary to the next replica, so
 * this takes at most replica_count - 1 failovers.
 */
export async function makePrimary(cluster: TestCluster, target: ReplicaProcess, log: (line: string) => void = () => {}): Promise<void> {
  for (let attempt = 0; attempt < 2 * cluster.replicas.length; attempt++) {
    const statuses = await cluster.waitConverged(45_000);
    const primary = statuses.find((s) => s.primary)!;
    if (primary.replica === target.index) return;
    const r = cluster.replicas[primary.replica]!;
    log(`  making replica ${target.index} primary: crashing primary ${r.index} (view ${primary.view})`);
    await cluster.crash(r);
    await waitFor(
      "a new primary",
      async () => (await cluster.status()).some((s) => s !== null && s.primary && s.view > primary.view),
      30_000,
    );
    cluster.spawn(r);
  }
  throw new Error(`replica ${target.index} did not become primary:\n${describeStatuses(await cluster.status())}`);
}

interface Candidate {
  file: string;
  /** Written before the first round (writeColdKeys), so below every later checkpoint. */
  cold: boolean;
  offset: number;
  what: string;
}

/**
 * Flips (inverts) one byte of one journal segment file of a stopped replica: in the middle of a
 * value that is still live (the newest acknowledged version of its key, so a read must touch it):
 * half the time a cold one (written before the first round, so below the checkpoint: a restart
 * does not replay its prepare, and only a read or the scrubber finds the damage), otherwise any
 * (one above the checkpoint is found when its prepare is replayed). If there is none, in the
 * middle of the written part of the largest segment. (Versions are a revision counter, not op
 * numbers, so a version cannot be compared with the checkpoint op.) A live value is found by its bytes (the ledger knows them), whether it sits
 * in the prepare that wrote it or was copied since (repair, state sync, compaction); only values
 * with exactly one copy in this replica's segments qualify, so the flip hits the copy in use.
 * Returns what it damaged.
 */
/** Flips one byte of a live value held once in data_dir's journal segments (a recent or a cold one),
 * else, unless only_live, of the middle of the largest segment; null when only_live finds no such value. */
export function flipJournalByte(data_dir: string, ledger: Ledger, prng: Prng, checkpoint_op: number, only_live?: false): string;
export function flipJournalByte(data_dir: string, ledger: Ledger, prng: Prng, checkpoint_op: number, only_live: true): string | null;
export function flipJournalByte(data_dir: string, ledger: Ledger, prng: Prng, checkpoint_op: number, only_live = false): string | null {
  const journal = path.join(data_dir, "journal");
  const files = fs
    .readdirSync(journal)
    .filter((name) => name.endsWith(".seg"))
    .sort();
  if (files.length === 0) throw new Error(`no journal segment in ${journal}`);
  const segments = files.map((name) => ({ name, file: path.join(journal, name), bytes: writtenPart(path.join(journal, name)) }));
  const live: Candidate[] = [];
  for (const key of ledger.keys) {
    const value = ledger.ackedValue(key)!;
    // A put of the key cut off by a crash may have committed a newer value: then this one is dead.
    if (value.length < 16 || ledger.hasUnknown(key)) continue;
    const needle = Buffer.from(value.buffer, value.byteOffset, Math.min(value.length, 64));
    const found: { name: string; file: string; offset: number }[] = [];
    for (const segment of segments) {
      for (let at = segment.bytes.indexOf(needle); at >= 0 && found.length < 2; at = segment.bytes.indexOf(needle, at + 1)) {
        found.push({ name: segment.name, file: segment.file, offset: at });
      }
    }
    if (found.length !== 1) continue;
    const version = ledger.ackedVersion(key)!;
    const cold = key.startsWith(cold_prefix);
    const what = `the live value of ${key} (version ${version}, ${cold ? "cold" : "recent"}, ${value.length} bytes; checkpoint op ${checkpoint_op}) in ${found[0]!.name}`;
    live.push({ file: found[0]!.file, cold, offset: found[0]!.offset + Math.floor(value.length / 2), what });
  }
  const cold = live.filter((c) => c.cold);
  let target = cold.length > 0 && prng.chance(0.5) ? prng.pick(cold) : live.length > 0 ? prng.pick(live) : null;
  if (target === null && only_live) return null;
  if (target === null) {
    const largest = segments.reduce((a, b) => (b.bytes.length > a.bytes.length ? b : a));
    if (largest.bytes.length === 0) throw new Error(`the segments of ${journal} hold no data`);
    target = {
      file: largest.file,
      cold: false,
      offset: Math.floor(largest.bytes.length / 2),
      what: `the middle of the written part of ${largest.name} (no live value with a single copy found)`,
    };
  }
  const fd = fs.openSync(target.file, "r+");
  try {
    const byte = new Uint8Array(1);
    fs.readSync(fd, byte, 0, 1, target.offset);
    const flipped = new Uint8Array([byte[0]! ^ 0xff]);
    fs.writeSync(fd, flipped, 0, 1, target.offset);
    fs.fsyncSync(fd);
    return `flipped byte ${target.offset} (0x${byte[0]!.toString(16)} -> 0x${flipped[0]!.toString(16)}), ${target.what}`;
  } finally {
    fs.closeSync(fd);
  }
}

/** A segment file up to its last non-zero byte (segments are preallocated with zeros). */
function writtenPart(file: string): Buffer {
  const bytes = fs.readFileSync(file);
  let end = bytes.length;
  const block = 1 << 16;
  while (end > 0) {
    const start = Math.max(0, end - block);
    let last = -1;
    for (let i = end - 1; i >= start; i--) {
      if (bytes[i] !== 0) {
        last = i;
        break;
      }
    }
    if (last >= 0) return bytes.subarray(0, last + 1);
    end = start;
  }
  return bytes.subarray(0, 0);
}

/** Writes `count` keys once (never overwritten later): after a few rounds their values sit below
 * every replica's checkpoint, where only a read (or a state sync) touches them. */
export async function writeColdKeys(cluster: TestCluster, ledger: Ledger, count: number): Promise<void> {
  const client = new Client({ addresses: cluster.addresses, operation_timeout_ms: 20_000 });
  try {
    for (let i = 0; i < count; i++) {
      const key = `${cold_prefix}${i}`;
      const value = valueFor(`cold.${i}`, 64 + ((i * 977) % 8192));
      const { version } = await client.put(key, value);
      ledger.ack(key, version, value);
    }
  } finally {
    await client.close();
  }
}
