/**
 * The simulator is only as good as the bugs it catches (docs/DESIGN.md §6). Each test breaks one rule of
 * the protocol in a subclass of the real replica and asserts the simulation catches it within 500
 * seeds; the seed that caught it is printed for the record.
 */
import { describe, expect, test } from "bun:test";
import { Replica } from "../lib/vsr/replica.ts";
import { FlushEvents } from "../lib/vsr/flush_events.ts";
import type { DoViewChange, SuffixDecision } from "../lib/vsr/view_change.ts";
import type { Header, Message } from "../lib/net/codec.ts";
import { Operation } from "../lib/store/operations.ts";
import type { ObjectEntry } from "../lib/store/object_store.ts";
import { executeRead, type ExecuteResult, type ManifestBlocksFound, type Readers } from "../lib/store/execute.ts";
import {
  decodeReadRequest,
  decodeWriteBlock,
  encodeReadRequest,
  type UploadPart,
  type WriteBlockRequest,
} from "../lib/store/large_bodies.ts";
import { slotKey, type Block, type Upload } from "../lib/store/uploads.ts";
import { decodeBatch } from "../lib/vsr/batch.ts";
import { simulate, type ReplicaClass, type SimOptions } from "../sim/simulator.ts";
import { FileStorage } from "../lib/storage/file_storage.ts";
import type { Recovered } from "../lib/vsr/storage.ts";

const seeds_max = 500;
const timeout_ms = 600_000;

type Variant = Pick<SimOptions, "replica_class" | "storage_class">;

function firstCaught(variant: Variant, first_seed: number, replicas: number): { seed: number; violation: string } | null {
  for (let seed = first_seed; seed < first_seed + seeds_max; seed++) {
    const result = simulate({ seed, replicas, clients: replicas + 1, ticks: 1000, ...variant });
    if (!result.ok) return { seed, violation: result.violation ?? "" };
  }
  return null;
}

function expectCaught(name: string, replica_class: ReplicaClass | Variant, first_seed: number, replicas = 3): void {
  const caught = firstCaught(typeof replica_class === "function" ? { replica_class } : replica_class, first_seed, replicas);
  if (caught === null) throw new Error(`${name}: not caught within ${seeds_max} seeds`);
  console.log(
    `${name}: caught after ${caught.seed - first_seed + 1} seed(s) (seed ${caught.seed}, ${replicas} replicas): ${caught.violation.split("\n")[0]}`,
  );
  expect(caught.violation.length).toBeGreaterThan(0);
}

/** Commits with f acknowledgements (the primary alone in a 3-replica cluster). */
class QuorumOfF extends Replica {
  override replicationQuorum(): number {
    return this.f;
  }
}

/** A backup acknowledges a prepare as soon as it is written, before it is durable. */
class AckBeforeDurable extends Replica {
  protected override prepareOkReady(op: number, checksum: bigint): boolean {
    return this.journal.hasPrepare(op, checksum);
  }
}

/** Acts on a flush's group when the flush begins, before its asynchronous fdatasyncs returned
 * (docs/STORAGE.md §10.9): acknowledgements, the new view, replies. */
class AckAtFlushBegin extends Replica {
  override readonly flushes = new (class extends FlushEvents {
    override begin(): readonly number[] {
      const files = super.begin();
      this.completed();
      return files;
    }
  })(this, () => this.onDurable());
}

/** A new primary takes the shortest log offered in the view change instead of the longest. */
class ShorterLog extends Replica {
  override chooseLog(dvcs: DoViewChange[]): DoViewChange {
    return dvcs.reduce((best, dvc) => (dvc.op < best.op ? dvc : best));
  }
}

/** Subtler: the shortest log that still reaches every commit number reported, so the replica's
 * own assertion does not fire and only the simulator's checkers can notice the lost ops. */
class ShorterLogAboveCommit extends Replica {
  override chooseLog(dvcs: DoViewChange[]): DoViewChange {
    const commit = Math.max(...dvcs.map((d) => d.commit));
    const covering = dvcs.filter((d) => d.op >= commit);
    return covering.reduce((best, dvc) => (dvc.op < best.op ? dvc : best));
  }
}

/** A backup answers reads from its own state. */
class ReadFromBackup extends Replica {
  protected override onRequest(message: Message): void {
    const h = message.header;
    const read = h.operation === Operation.get || h.operation === Operation.stat || h.operation === Operation.list;
    if (read && this.status === "normal" && !this.isPrimary()) {
      const readers = {
        value: (_key: string, entry: ObjectEntry) => this.storage.readValue(entry),
        block: () => null,
        value_size_max: 1 << 24,
      };
      const result = executeRead(this.store, h.operation, message.body, readers);
      this.sendReply({
        client: h.client,
        request: h.request,
        session: h.session,
        operation: h.operation,
        result: result.result,
        body: result.body,
        op: 0,
        timestamp: 0,
      });
      return;
    }
    super.onRequest(message);
  }
}

/** A replica sends do_view_change before the view it promises is durable (it writes it after). */
class ViewAfterDoViewChange extends Replica {
  override promiseNeedsDurableView(): boolean {
    return false;
  }
}

/** Storage that reports an acknowledged prepare it finds damaged as never written (blank), and
 * hides damaged journal records, so the replica votes away ops it may have acknowledged. */
class DamagedAsBlank extends FileStorage {
  override recover(clients_max: number): Recovered {
    const recovered = super.recover(clients_max);
    return { ...recovered, journal: recovered.journal.filter((e) => !e.faulty), damaged_slots: [] };
  }
}

/** Item 1 of the safety issue (seed 297): acknowledgements bounded by what the replica has
 * executed, not by what a restart from its durable checkpoint reloads. */
class AckBeyondDurableCheckpoint extends Replica {
  override opPrepareOkMax(): number {
    return this.commit_min + this.config.journal_slot_count;
  }
}

/** Item 2: a damaged header-ring slot written back as zeros ("never written"), so the next open
 * takes an op it may have acknowledged for one it never held. */
class DamageForgotten extends FileStorage {
  protected override persistsDamage(): boolean {
    return false;
  }
}

/** Item 3: a recovering replica that rejoins before its synced checkpoint is durable. */
class RejoinBeforeCheckpointDurable extends Replica {
  override recoveryPersists(): boolean {
    return false;
  }
}

/** Item 5: any damaged journal slot makes the replica refuse to vote away any op of its window,
 * as if its whole journal were damaged; and a torn record is never restored from its prepare
 * (the first implementation: a torn record after a power loss cost a replica all its nacks). */
class TornRecordsKept extends FileStorage {
  protected override restoresRecords(): boolean {
    return false;
  }
}

class WholeJournalDamaged extends Replica {
  override damagedOps(): number[] {
    const damaged = super.damagedOps();
    if (damaged.length === 0) return damaged;
    return Array.from({ length: this.config.journal_slot_count }, (_, i) => this.commit_min + 1 + i);
  }
}

/** Item 6: a new primary keeps an uncommitted op nobody holds a copy of, instead of waiting for
 * more do_view_change messages. */
class HeadNobodyHolds extends Replica {
  override decideSuffix(best: DoViewChange, dvcs: DoViewChange[], commit: number): SuffixDecision {
    const decision = super.decideSuffix(best, dvcs, commit);
    return decision === "wait" ? { head: best.op, headers: best.headers } : decision;
  }
}

/** Missed by the simulator before the safety issue: a new primary that takes the longest log
 * before the highest log_view. */
class LongestLogFirst extends Replica {
  override chooseLog(dvcs: DoViewChange[]): DoViewChange {
    return dvcs.reduce((best, dvc) => (dvc.op > best.op || (dvc.op === best.op && dvc.log_view > best.log_view) ? dvc : best));
  }
}

/** Missed before: a backup that journals and acknowledges prepares of an older view. */
class OlderViewPrepares extends Replica {
  protected override fromPrimaryOfThisView(h: Header): boolean {
    return h.view <= this.view && h.replica === h.view % this.config.replica_count;
  }
}

/** Missed before: a linearizable read confirmed by a heartbeat round sent before it arrived. */
class ReadConfirmedByEarlierRound extends Replica {
  override readRound(): number {
    return Math.max(1, super.readRound() - 1);
  }
}

/** A replica that never scrubs: values damaged at rest stay damaged until a client reads them,
 * so redundancy silently decays (the liveness phase requires every copy intact). */
class NoScrub extends Replica {
  protected override scrub(): void {}
}

/** Issue 14: a write_block retry answered ok because the same block is in the primary's pipeline,
 * not in its executed state: a view change may drop that prepare after the client was told its
 * block is safe (caught by the checker's block acknowledgements, docs/LARGE_OBJECTS.md §12.2). */
class BlockDedupeFromPipeline extends Replica {
  override blockHeld(request: WriteBlockRequest): boolean {
    if (super.blockHeld(request)) return true;
    for (const entry of this.leader?.pipeline ?? []) {
      for (const e of entry.message === null ? [] : (decodeBatch(entry.message.body) ?? [])) {
        const b = e.operation === Operation.write_block ? decodeWriteBlock(e.body) : null;
        const same_slot = b !== null && b.upload_id === request.upload_id && b.part_number === request.part_number;
        if (same_slot && b.attempt === request.attempt && b.block_index === request.block_index && b.checksum === request.checksum)
          return true;
      }
    }
    return false;
  }
}

/** Issue 14: a read pinned to a version served from whatever version is current, so a get by
 * ranges that spans an overwrite returns bytes of two puts (docs/LARGE_OBJECTS.md §7). */
class PinnedReadNotChecked extends Replica {
  override executeReadRequest(operation: Operation, body: Uint8Array, readers: Readers): ExecuteResult {
    const request = operation === Operation.read ? decodeReadRequest(body) : null;
    if (request !== null && request.version !== 0)
      return super.executeReadRequest(operation, encodeReadRequest({ ...request, version: 0 }), readers);
    return super.executeReadRequest(operation, body, readers);
  }
}

/** Issue 14: execution trusts a complete_upload's manifest (§5.4 step 2 skipped): it installs
 * whatever blocks the named slots hold when it runs, so an object can be published before blocks it
 * names are written, let alone durable on a quorum (caught by the checker's manifest invariant,
 * docs/LARGE_OBJECTS.md §12.2). */
class ManifestTrusted extends Replica {
  override manifestBlocksReady(upload: Upload, parts: readonly UploadPart[]): ManifestBlocksFound {
    const blocks: Block[] = [];
    for (const part of parts) {
      for (let index = 0; index < part.block_count; index++) {
        const id = upload.slots.get(slotKey(part.part_number, part.attempt, index));
        if (id !== undefined) blocks.push(this.store.large.block(id)!);
      }
    }
    return { blocks };
  }
}

/** Issue 14: storage that reports no dead bytes, so an idle primary never nudges: the segments
 * of deleted objects stay kept by checkpoint retention on an idle cluster (caught by the reclaim
 * invariant, docs/LARGE_OBJECTS.md §12.2 (3)). */
class NudgeNeverNeeded extends FileStorage {
  override pinnedDeadBytes(): number {
    return 0;
  }
}

describe("broken replicas are caught", () => {
  test("a commit quorum of f", () => expectCaught("commit quorum of f", QuorumOfF, 100), timeout_ms);
  test("a backup acknowledging before its write is durable", () => expectCaught("ack before durable", AckBeforeDurable, 200), timeout_ms);
  test(
    "a replica acting on a flush when it begins, before its asynchronous fdatasync returned",
    () => expectCaught("ack at flush begin", AckAtFlushBegin, 200),
    timeout_ms,
  );
  test("a new primary choosing a shorter log", () => expectCaught("shorter log chosen", ShorterLog, 300), timeout_ms);
  test(
    "a new primary choosing a shorter log that covers the commit number",
    () => expectCaught("shorter log above commit", ShorterLogAboveCommit, 350),
    timeout_ms,
  );
  test("a read served by a backup", () => expectCaught("read served by a backup", ReadFromBackup, 400), timeout_ms);

  test(
    "a replica writing its view after sending do_view_change",
    () => expectCaught("view persisted after do_view_change", ViewAfterDoViewChange, 500),
    timeout_ms,
  );
  test(
    "storage treating a damaged acknowledged prepare as blank",
    () => expectCaught("damaged slot treated as blank", { storage_class: DamagedAsBlank }, 600),
    timeout_ms,
  );
  test("a replica that never scrubs its values", () => expectCaught("no scrubbing", NoScrub, 700), timeout_ms);

  // The safety issue's items and the bugs the simulator used to miss.
  test(
    "acknowledging beyond what a restart reloads (item 1)",
    () => expectCaught("ack beyond durable checkpoint", AckBeyondDurableCheckpoint, 800),
    timeout_ms,
  );
  test(
    "damage forgotten at the next open (item 2)",
    () => expectCaught("damage forgotten", { storage_class: DamageForgotten }, 900),
    timeout_ms,
  );
  test(
    "rejoining before the synced checkpoint is durable (item 3)",
    () => expectCaught("rejoin before checkpoint durable", RejoinBeforeCheckpointDurable, 1000),
    timeout_ms,
  );
  test(
    "a damaged slot blocking every nack (item 5)",
    () => expectCaught("whole journal damaged", { replica_class: WholeJournalDamaged, storage_class: TornRecordsKept }, 1100),
    timeout_ms,
  );
  test("a view keeping an op nobody holds (item 6)", () => expectCaught("head nobody holds", HeadNobodyHolds, 1200), timeout_ms);
  test("the longest log chosen before the highest log_view", () => expectCaught("longest log first", LongestLogFirst, 1300), timeout_ms);
  test(
    "prepares of an older view journaled and acknowledged",
    () => expectCaught("older view prepares", OlderViewPrepares, 1400),
    timeout_ms,
  );
  test(
    "a read confirmed by a heartbeat round sent before it arrived",
    () => expectCaught("read confirmed by earlier round", ReadConfirmedByEarlierRound, 1500),
    timeout_ms,
  );

  test(
    "a block retry answered from the pipeline (issue 14)",
    () => expectCaught("block deduplicated from the pipeline", BlockDedupeFromPipeline, 1600),
    timeout_ms,
  );
  test(
    "a pinned read served from the current version (issue 14)",
    () => expectCaught("pinned read not checked", PinnedReadNotChecked, 1700),
    timeout_ms,
  );
  test(
    "an idle primary that never nudges (issue 14)",
    () => expectCaught("no idle nudge", { storage_class: NudgeNeverNeeded }, 1800),
    timeout_ms,
  );

  test(
    "a manifest trusted at execution, checked nowhere (issue 14)",
    () => expectCaught("manifest trusted", ManifestTrusted, 1900),
    timeout_ms,
  );

  test(
    "the correct replica passes the same seeds",
    () => {
      for (const first of [100, 200]) {
        for (let seed = first; seed < first + 10; seed++) {
          const result = simulate({ seed, replicas: 3, clients: 4, ticks: 1000 });
          expect(result.violation).toBeNull();
        }
      }
    },
    timeout_ms,
  );
});
