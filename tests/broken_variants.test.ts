/**
 * The simulator is only as good as the bugs it catches (DESIGN §6). Each test breaks one rule of
 * the protocol in a subclass of the real replica and asserts the simulation catches it within 500
 * seeds; the seed that caught it is printed for the record.
 */
import { describe, expect, test } from "bun:test";
import { Replica, type DoViewChange } from "../lib/vsr/replica.ts";
import type { Message } from "../lib/net/codec.ts";
import { Operation } from "../lib/store/operations.ts";
import { executeRead } from "../lib/store/execute.ts";
import { simulate, type ReplicaClass, type SimOptions } from "../sim/simulator.ts";
import { FileStorage } from "../lib/storage/file_storage.ts";
import type { Recovered } from "../lib/vsr/storage.ts";

const seeds_max = 500;
const timeout_ms = 600_000;

type Variant = Pick<SimOptions, "replica_class" | "storage_class">;

function firstCaught(variant: Variant, first_seed: number): { seed: number; violation: string } | null {
  for (let seed = first_seed; seed < first_seed + seeds_max; seed++) {
    const result = simulate({ seed, replicas: 3, clients: 4, ticks: 1000, ...variant });
    if (!result.ok) return { seed, violation: result.violation ?? "" };
  }
  return null;
}

function expectCaught(name: string, replica_class: ReplicaClass | Variant, first_seed: number): void {
  const caught = firstCaught(typeof replica_class === "function" ? { replica_class } : replica_class, first_seed);
  if (caught === null) throw new Error(`${name}: not caught within ${seeds_max} seeds`);
  console.log(`${name}: caught after ${caught.seed - first_seed + 1} seed(s) (seed ${caught.seed}): ${caught.violation.split("\n")[0]}`);
  expect(caught.violation.length).toBeGreaterThan(0);
}

/** Commits with f acknowledgements (the primary alone in a 3-replica cluster). */
class QuorumOfF extends Replica {
  protected override replicationQuorum(): number {
    return this.f;
  }
}

/** A backup acknowledges a prepare as soon as it is written, before it is durable. */
class AckBeforeDurable extends Replica {
  protected override prepareOkReady(op: number, checksum: bigint): boolean {
    return this.journal.hasPrepare(op, checksum);
  }
}

/** A new primary takes the shortest log offered in the view change instead of the longest. */
class ShorterLog extends Replica {
  protected override chooseLog(dvcs: DoViewChange[]): DoViewChange {
    return dvcs.reduce((best, dvc) => (dvc.op < best.op ? dvc : best));
  }
}

/** Subtler: the shortest log that still reaches every commit number reported, so the replica's
 * own assertion does not fire and only the simulator's checkers can notice the lost ops. */
class ShorterLogAboveCommit extends Replica {
  protected override chooseLog(dvcs: DoViewChange[]): DoViewChange {
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
      const result = executeRead(this.store, h.operation, message.body, (_key, entry) => this.storage.readValue(entry));
      this.sendReply(h.client, h.request, h.session, h.operation, result.result, result.body, 0, 0);
      return;
    }
    super.onRequest(message);
  }
}

/** A replica sends do_view_change before the view it promises is durable (it writes it after). */
class ViewAfterDoViewChange extends Replica {
  protected override promiseNeedsDurableView(): boolean {
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

/** A replica that never scrubs: values damaged at rest stay damaged until a client reads them,
 * so redundancy silently decays (the liveness phase requires every copy intact). */
class NoScrub extends Replica {
  protected override scrub(): void {}
}

describe("broken replicas are caught", () => {
  test("a commit quorum of f", () => expectCaught("commit quorum of f", QuorumOfF, 100), timeout_ms);
  test("a backup acknowledging before its write is durable", () => expectCaught("ack before durable", AckBeforeDurable, 200), timeout_ms);
  test("a new primary choosing a shorter log", () => expectCaught("shorter log chosen", ShorterLog, 300), timeout_ms);
  test("a new primary choosing a shorter log that covers the commit number", () => expectCaught("shorter log above commit", ShorterLogAboveCommit, 350), timeout_ms);
  test("a read served by a backup", () => expectCaught("read served by a backup", ReadFromBackup, 400), timeout_ms);

  test("a replica writing its view after sending do_view_change", () => expectCaught("view persisted after do_view_change", ViewAfterDoViewChange, 500), timeout_ms);
  test("storage treating a damaged acknowledged prepare as blank", () => expectCaught("damaged slot treated as blank", { storage_class: DamagedAsBlank }, 600), timeout_ms);
  test("a replica that never scrubs its values", () => expectCaught("no scrubbing", NoScrub, 700), timeout_ms);

  test("the correct replica passes the same seeds", () => {
    for (const first of [100, 200]) {
      for (let seed = first; seed < first + 10; seed++) {
        const result = simulate({ seed, replicas: 3, clients: 4, ticks: 1000 });
        expect(result.violation).toBeNull();
      }
    }
  }, timeout_ms);
});
