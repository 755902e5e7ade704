/**
 * The simulator's invariants (docs/DESIGN.md §6), checked after every step against ground truth the
 * simulator keeps, never against what replicas claim about themselves. The first violation is
 * recorded with the step it happened at; the simulator stops there.
 */
import type { Message } from "../lib/net/codec.ts";
import { Command } from "../lib/net/codec.ts";
import { decodeBatch } from "../lib/vsr/batch.ts";
import { Operation } from "../lib/store/operations.ts";
import { decodeWriteBlock } from "../lib/store/large_bodies.ts";
import { slotName } from "./upload_plan.ts";
import { presence_absent, type DoViewChange } from "../lib/vsr/view_change.ts";
import type { Upload } from "../lib/store/uploads.ts";
import type { ReclaimView } from "../lib/storage/checkpoint_store.ts";
import type { Config } from "../lib/constants.ts";

/** A request's place in the canonical history: its op, then its index in that op's batch. */
const batch_positions = 1 << 16;
function position(op: number, index: number): number {
  return op * batch_positions + index;
}
function opOf(at: number): number {
  return Math.floor(at / batch_positions);
}

/** What one replica held when the cluster went idle (the reclaim phase began). */
export interface IdleSnapshot {
  /** Its commit number then. */
  op: number;
  /** Segments that nothing live referenced then (deadSegments), and their bytes. */
  dead: ReadonlyMap<number, number>;
  /** Nudge ops had run since the last client's request: a primary's nudge remembers what earlier
   * nudges could not lower, so then nothing obliges it to nudge again. */
  nudged: boolean;
  /** It acted as primary. */
  primary: boolean;
}

/** What one replica holds once the cluster has stood idle past the abandon age (see reclaimed). */
export interface ReclaimFacts {
  replica: number;
  /** It acts as primary, as it did when the cluster went idle: its idle nudge is the one that ran. */
  primary: boolean;
  /** Its commit number now. */
  op: number;
  uploads: readonly Upload[];
  /** Segments its live store references (values and blocks). */
  live_segments: ReadonlySet<number>;
  storage: ReclaimView;
  /** Every upload untouched since at or before this (log time, ms) must be expired by now. */
  expired_by_ms: number;
  idle: IdleSnapshot;
  config: Pick<Config, "reclaim_nudge_bytes_min" | "journal_slot_count" | "checkpoint_interval_ops">;
}

/** Segments that hold nothing live and that garbage collection may delete once nothing else needs
 * them: not the active segment (still appended to), not a state sync's. */
function dead(segment: ReclaimView["segments"][number], live: ReadonlySet<number>): boolean {
  return !segment.active && !segment.busy && !live.has(segment.id);
}

/** Segments that nothing live references, id -> bytes. */
export function deadSegments(view: ReclaimView, live: ReadonlySet<number>): Map<number, number> {
  return new Map(view.segments.filter((s) => dead(s, live)).map((s) => [s.id, s.bytes]));
}

export class StateChecker {
  /** The one canonical history: op -> checksum of the prepare executed at it. */
  private readonly canonical = new Map<number, bigint>();
  /** Requests each canonical op holds ("client:request"), with their place in its batch. */
  private readonly canonical_requests = new Map<number, Map<string, number>>();
  /** Ground truth for large objects: per block slot ("upload:part:attempt:index"), the first
   * canonical op that wrote it with each checksum. */
  private readonly slot_writes = new Map<string, Map<bigint, number>>();
  /** First execution of each request: client -> request -> op. */
  private readonly executions = new Map<bigint, Map<number, number>>();
  private readonly primaries = new Map<number, number>();
  /** Per replica: prepares its disk holds durably, op -> checksums (tracked at each flush). */
  private readonly durable: Map<number, Set<bigint>>[];
  /** Per replica: the highest view of any promise it sent since its disk was last wiped. */
  private readonly promised_view: number[];
  /** Ghost state, per replica: every prepare_ok it sent since its disk was last wiped, by the view
   * it was sent in, op -> checksum. A replica must remember each of them for as long as it can
   * offer a log of that view in a view change. */
  private readonly acks: Map<number, Map<number, bigint>>[];
  commit_max = 0;
  /** Ops of the idle nudge (a prepare of one empty housekeeping entry) executed since the last op
   * that held a client's request. */
  nudge_ops_since_client = 0;
  /** The highest op of a write whose reply a client has received. */
  private acked_op_max = 0;
  /** Ghost state for reads: per replica, "client:request" of a read that arrived there -> the
   * highest acknowledged write op at its (first) arrival. */
  private readonly read_floor: Map<string, number>[];
  violation: string | null = null;

  constructor(readonly replica_count: number) {
    this.durable = Array.from({ length: replica_count }, () => new Map());
    this.promised_view = new Array<number>(replica_count).fill(-1);
    this.acks = Array.from({ length: replica_count }, () => new Map());
    this.read_floor = Array.from({ length: replica_count }, () => new Map());
  }

  get quorum(): number {
    return Math.floor(this.replica_count / 2) + 1;
  }

  private fail(message: string): void {
    if (this.violation === null) this.violation = message;
  }

  /** A replica received a message no honest replica sends: in the simulator every peer is honest
   * (the network corrupts nothing that passes a checksum), so it is a bug. */
  protocolViolation(replica: number, text: string, checksum: bigint | null): void {
    this.protocol_violations += 1;
    if (checksum === null || !this.forged.has(checksum))
      this.fail(
        `replica ${replica} received a message no honest peer sends${checksum === null ? "" : ` (not one the simulator forged)`}: ${text}`,
      );
  }

  /** Checksums of the messages the simulator forged: a violation must name one of them. */
  readonly forged = new Set<bigint>();
  protocol_violations = 0;

  executed(replica: number, prepare: Message): void {
    const h = prepare.header;
    const known = this.canonical.get(h.op);
    if (known === undefined) {
      const parent = this.canonical.get(h.op - 1);
      if (parent !== undefined && parent !== h.parent)
        this.fail(`replica ${replica} executed op ${h.op} whose parent is not the canonical op ${h.op - 1}`);
      this.canonical.set(h.op, h.checksum);
      const requests = new Map<string, number>();
      const entries = decodeBatch(prepare.body) ?? [];
      entries.forEach((e, index) => {
        const key = `${e.client}:${e.request}`;
        if (!requests.has(key)) requests.set(key, index); // a duplicate later in the batch is answered from the first
        if (e.operation === Operation.write_block) this.slotWritten(position(h.op, index), e.body);
      });
      if (entries.some((e) => e.client !== 0n)) this.nudge_ops_since_client = 0;
      else if (entries.length === 1 && entries[0]!.operation === Operation.housekeeping && entries[0]!.body.length === 0)
        this.nudge_ops_since_client += 1;
      this.canonical_requests.set(h.op, requests);
      if (h.op > this.commit_max) this.commit_max = h.op;
    } else if (known !== h.checksum) {
      this.fail(
        `replica ${replica} executed op ${h.op} with checksum ${h.checksum.toString(16)}, but op ${h.op} was executed as ${known.toString(16)} before: two histories`,
      );
    }
  }

  private slotWritten(at: number, body: Uint8Array): void {
    const b = decodeWriteBlock(body);
    if (b === null) return this.fail(`op ${opOf(at)} holds a malformed write_block`);
    const slot = slotName(b.upload_id, b.part_number, b.attempt, b.block_index);
    let writes = this.slot_writes.get(slot);
    if (writes === undefined) this.slot_writes.set(slot, (writes = new Map()));
    if (!writes.has(b.checksum)) writes.set(b.checksum, at);
  }

  /**
   * A write_block was answered ok, from op (0: at arrival, from the primary's executed state). Only
   * a committed op that wrote that slot with those bytes earns it: an answer from anything else (a
   * block still in a pipeline, say) would let a complete name a block a view change can lose.
   */
  blockAcked(slot: string, block_checksum: bigint, op: number): void {
    const at = this.slot_writes.get(slot)?.get(block_checksum);
    const written = at === undefined ? undefined : opOf(at);
    if (written === undefined || (op > 0 && written > op))
      this.fail(
        `block ${slot} (${block_checksum.toString(16)}) was acknowledged from op ${op}, but no executed op wrote it${written === undefined ? "" : ` before op ${written}`}`,
      );
  }

  /** The complete_upload of client's request at op made an object of these blocks: each must
   * have been written by an executed request ordered before it (an op below, or earlier in the same
   * batch, which commits with it), so the object is visible only once its blocks are durable on a
   * quorum (docs/LARGE_OBJECTS.md §6). */
  manifestInstalled(slots: [string, bigint][], op: number, client: bigint, request: number): void {
    const index = this.canonical_requests.get(op)?.get(`${client}:${request}`);
    if (index === undefined)
      return this.fail(`client ${client.toString(16)} was told its upload completed at op ${op}, which does not hold it`);
    const complete = position(op, index);
    for (const [slot, block_checksum] of slots) {
      const written = this.slot_writes.get(slot)?.get(block_checksum);
      if (written === undefined || written >= complete)
        return this.fail(
          `the object completed at op ${op} names block ${slot} (${block_checksum.toString(16)}), which ${written === undefined ? "no executed op wrote" : `op ${opOf(written)} wrote only after it`}`,
        );
    }
  }

  request(replica: number, client: bigint, request: number, op: number, duplicate: boolean): void {
    if (duplicate) return;
    // By client, then request: a string key per execution (a bigint formatted) cost more than the rest.
    let requests = this.executions.get(client);
    if (requests === undefined) this.executions.set(client, (requests = new Map()));
    const first = requests.get(request);
    if (first === undefined) requests.set(request, op);
    else if (first !== op)
      this.fail(
        `replica ${replica} executed request ${request} of client ${client.toString(16)} at op ${op}, but it was executed at op ${first} already`,
      );
  }

  primary(replica: number, view: number): void {
    const existing = this.primaries.get(view);
    if (existing === undefined) this.primaries.set(view, replica);
    else if (existing !== replica) this.fail(`replicas ${existing} and ${replica} both acted as primary of view ${view}`);
  }

  /** A replica sent a message: promises must be in a durable view. A prepare it created in an
   * earlier view and now forwards for repair is not a new promise. */
  sent(replica: number, message: Message, view_durable: number, view: number): void {
    const h = message.header;
    const promise =
      h.command === Command.prepare_ok ||
      h.command === Command.commit_ok ||
      h.command === Command.do_view_change ||
      h.command === Command.start_view ||
      ((h.command === Command.prepare || h.command === Command.commit) && h.replica === replica && h.view === view);
    if (!promise) return;
    if (h.command === Command.prepare_ok) {
      let acked = this.acks[replica]!.get(h.view);
      if (acked === undefined) this.acks[replica]!.set(h.view, (acked = new Map()));
      const before = acked.get(h.op);
      if (before !== undefined && before !== h.context)
        this.fail(`replica ${replica} acknowledged two different prepares for op ${h.op} in view ${h.view}`);
      acked.set(h.op, h.context);
    }
    if (view_durable < h.view)
      this.fail(`replica ${replica} sent ${Command[h.command]} in view ${h.view} with only view ${view_durable} durable`);
    if (h.view > this.promised_view[replica]!) this.promised_view[replica] = h.view;
  }

  /** A replica restarted with this durable view (its disk not wiped; -1: it found no superblock,
   * which is only legal if it never promised anything). */
  restarted(replica: number, view_durable: number): void {
    if (view_durable < this.promised_view[replica]!)
      this.fail(`replica ${replica} restarted in view ${view_durable} but had promised view ${this.promised_view[replica]}`);
  }

  /**
   * A replica reopened its data directory in log_view, having executed up to commit_min: it must
   * still know every op it acknowledged in that view above what it executed (as held, or as
   * damaged), whether or not a view change ever asks it. A restart that forgets one is caught here,
   * at the restart.
   */
  reopened(replica: number, log_view: number, commit_min: number, knows: (op: number, checksum: bigint) => boolean): void {
    const acked = this.acks[replica]!.get(log_view);
    if (acked === undefined) return;
    for (const [op, checksum] of acked) {
      if (op > commit_min && !knows(op, checksum)) {
        this.fail(
          `replica ${replica} acknowledged op ${op} (${checksum.toString(16)}) in view ${log_view}, and reopened in log_view ${log_view} without it (executed up to ${commit_min}): a promise outlived its memory`,
        );
        return;
      }
    }
  }

  flushed(replica: number, prepares: [number, bigint][]): void {
    const durable = this.durable[replica]!;
    for (const [op, checksum] of prepares) {
      let set = durable.get(op);
      if (set === undefined) durable.set(op, (set = new Set()));
      set.add(checksum);
    }
  }

  /** A disk was replaced. What it held durably still counts for replies already earned (a reply
   * needs f+1 copies at commit time; losing one later is the fault model's business, not the
   * reply's), but its promises are gone with it. */
  wiped(replica: number): void {
    this.promised_view[replica] = -1;
    this.acks[replica]!.clear();
  }

  /**
   * A replica offers its log for a view change (sent, or kept by the new primary itself): it must
   * still hold every op it acknowledged in that log's view, or report it faulty; a log that
   * silently lacks one lets a quorum vote away an op that may have committed. Ops at or below the
   * commit number it offers are not judged by the view change (the new primary keeps every op up
   * to the highest commit offered), and ops below the offered suffix window cannot be checked.
   */
  doViewChange(replica: number, view: number, dvc: DoViewChange): void {
    const acked = this.acks[replica]!.get(dvc.log_view);
    if (acked === undefined) return;
    const window_min = dvc.headers.length > 0 ? dvc.headers[0]!.op : dvc.op + 1;
    for (const [op, checksum] of acked) {
      if (op <= dvc.commit || (op < window_min && op <= dvc.op)) continue;
      if (dvc.faulty_ops.includes(op)) continue;
      const i = dvc.headers.findIndex((h) => h.op === op);
      const held = i !== -1 && dvc.headers[i]!.checksum === checksum && dvc.presence[i] !== presence_absent;
      if (!held) {
        const offered =
          i === -1
            ? op > dvc.op
              ? `its log ends at op ${dvc.op}`
              : "no header for it"
            : dvc.headers[i]!.checksum !== checksum
              ? "a different prepare"
              : "it as never held (absent)";
        this.fail(
          `replica ${replica} acknowledged op ${op} (${checksum.toString(16)}) in view ${dvc.log_view}, but its do_view_change for view ${view} (log_view ${dvc.log_view}) offers ${offered}: a promise outlived its memory`,
        );
        return;
      }
    }
  }

  /** A client got a reply to a write from op: the op must hold that request, and f+1 disks must
   * have had the prepare durable. */
  /** A read request reached a replica. */
  readArrived(replica: number, client: bigint, request: number): void {
    const key = `${client}:${request}`;
    const floors = this.read_floor[replica]!;
    if (!floors.has(key)) floors.set(key, this.acked_op_max);
    if (floors.size > 4096) floors.delete(floors.keys().next().value!);
  }

  /**
   * A replica answered a read from the state it executed up to commit_min. Every write whose reply
   * some client had received before the read arrived must be in that state: a read answered by a
   * deposed primary (or confirmed by a round sent before it arrived) fails this at once, whether
   * or not the client takes that answer.
   */
  readServed(replica: number, client: bigint, request: number, commit_min: number): void {
    const floor = this.read_floor[replica]!.get(`${client}:${request}`);
    if (floor !== undefined && commit_min < floor) {
      this.fail(
        `replica ${replica} answered read ${request} of client ${client.toString(16)} from the state at op ${commit_min}, but the write at op ${floor} had been acknowledged to a client before the read arrived: a stale read`,
      );
    }
  }

  /**
   * Invariant 3, reclaim (docs/LARGE_OBJECTS.md §12.2), on a replica of a cluster that stood idle,
   * healed, past upload_abandon_ms with the idle nudge on, until no op was committed for a while:
   * 1. no upload untouched since expired_by_ms is still open (housekeeping expired it);
   * 2. no segment is left that nothing live references, no retained checkpoint lists, whose
   *    prepares are all at or below the horizon, and that is neither the active segment nor a
   *    state sync's: garbage collection must have deleted it;
   * 3. a segment dead when the cluster went idle is gone once journal_slot_count + 3 ×
   *    checkpoint_interval_ops ops have been committed since: the horizon and checkpoint
   *    retention have moved past it;
   * 4. on the primary, if what is still kept of the segments dead when the cluster went idle adds
   *    up to at least reclaim_nudge_bytes_min (and no nudge had run since the last client's
   *    request), that is a violation: its idle nudge prepares no-ops until nothing dead is left or it has prepared that many
   *    (PROTOCOL.md §3.15.10). Segments that died during the idle phase are not judged: each
   *    nudge's compaction can leave one, and nudges stop when they cannot lower what is left.
   */
  reclaimed(facts: ReclaimFacts): void {
    const r = facts.replica;
    for (const u of facts.uploads) {
      if (u.touched <= facts.expired_by_ms)
        return this.fail(
          `reclaim: replica ${r} still holds upload ${u.id} (key ${JSON.stringify(u.key)}), untouched since ${u.touched} (log time), after the cluster stood idle past its abandon age`,
        );
    }
    const view = facts.storage;
    const c = facts.config;
    // Garbage collection runs when a checkpoint is published, and only then: at any other time a
    // segment written since the newest checkpoint (compaction's, a repair's) holds live values no
    // list protects. So a segment is judged collectable-but-kept only if it was dead already when
    // the cluster went idle and a checkpoint was taken since; one that died after the last one
    // (a backup's repaired values superseded, say) waits for the next, which an idle backup that
    // no nudge reaches may never take (the gap of §12.2).
    const checkpointed_since_idle =
      Math.floor(facts.op / c.checkpoint_interval_ops) > Math.floor(facts.idle.op / c.checkpoint_interval_ops);
    for (const s of view.segments) {
      if (!checkpointed_since_idle || !facts.idle.dead.has(s.id)) continue;
      if (dead(s, facts.live_segments) && s.max_op <= view.horizon && !view.checkpoint_segments.has(s.id))
        return this.fail(
          `reclaim: replica ${r} keeps segment ${s.id} (${s.bytes} bytes, prepares up to op ${s.max_op}), which nothing live and no retained checkpoint references, its prepares at or below the horizon ${view.horizon}`,
        );
    }
    const ops = facts.op - facts.idle.op;
    const left = view.segments.filter((s) => facts.idle.dead.has(s.id));
    if (left.length === 0) return;
    const listed = left.map((s) => `${s.id} (prepares up to op ${s.max_op})`).join(", ");
    if (ops >= c.journal_slot_count + 3 * c.checkpoint_interval_ops)
      return this.fail(
        `reclaim: replica ${r} still keeps segment(s) ${listed}, dead already at op ${facts.idle.op}, ${ops} ops later (horizon ${view.horizon}): retention must let go of them within journal_slot_count + 3 × checkpoint_interval_ops`,
      );
    // What is still kept of it is what the primary sees once idle: the ops that ended the
    // workload (housekeeping expiries, a checkpoint's collection) may have freed part of what was
    // dead at the snapshot, and a primary left with less than the threshold rightly does not nudge.
    let dead_bytes = 0;
    for (const s of left) dead_bytes += s.bytes;
    if (facts.primary && !facts.idle.nudged && dead_bytes >= c.reclaim_nudge_bytes_min)
      this.fail(
        `reclaim: the idle primary, replica ${r}, still keeps ${dead_bytes} bytes of segments dead since op ${facts.idle.op} (reclaim_nudge_bytes_min = ${c.reclaim_nudge_bytes_min}): ${listed}, after ${ops} more ops: its idle nudge should have freed them`,
      );
  }

  writeReplied(client: bigint, request: number, op: number): void {
    if (op > this.acked_op_max) this.acked_op_max = op;
    const checksum = this.canonical.get(op);
    if (checksum === undefined) return this.fail(`client ${client.toString(16)} got a reply from op ${op}, which no replica executed`);
    if (!this.canonical_requests.get(op)!.has(`${client}:${request}`))
      this.fail(`client ${client.toString(16)} got a reply for request ${request} from op ${op}, which does not hold it`);
    let copies = 0;
    for (const durable of this.durable) if (durable.get(op)?.has(checksum)) copies += 1;
    if (copies < this.quorum)
      this.fail(
        `client ${client.toString(16)} got a reply for op ${op}, durable on only ${copies} of the ${this.quorum} replicas a commit needs`,
      );
  }
}
