/**
 * toastyfs snapshot save / verify / restore against real replica processes (issue 16, "Backup"):
 * a snapshot taken while 16 clients write holds every object acknowledged before the save started,
 * byte for byte with its metadata, and no object half there; restored into a new 3-replica cluster
 * (other ports, so another cluster id) that is then started with plain `toastyfs serve`. Also: an
 * idle cluster's save holds the write made just before it; verify fails on a flipped byte and on a
 * truncated file; save works against a cluster with a secret, and fails without it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, type Subprocess } from "bun";
import { Client, clusterStatus } from "../lib/client/client.ts";
import { membership, parseAddress, type Address } from "../lib/net/address.ts";
import { newSecret, writeSecretFile } from "../lib/net/auth/secret.ts";
import { checksum } from "../lib/util/checksum.ts";
import { decodeUserMeta } from "../lib/store/large_bodies.ts";

import { readSnapshotFile, readStored } from "../lib/node/snapshot_file.ts";
import { readSnapshot } from "../lib/client/snapshot_reader.ts";
import { TestCluster, freePorts, toastyfsCommand, waitFor } from "./support/cluster.ts";
import { toastyfs } from "./support/cli.ts";

const writers = 16;
/** The source cluster's blocks are small, so that objects of a few tens of KiB are chunked. */
const block_size = 16 * 1024;

interface Version {
  value: Uint8Array;
  content_type: string | null;
  meta: Record<string, string> | null;
}

let dir: string;
let cluster: TestCluster;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(fs.realpathSync(os.tmpdir()), "toastyfs-snapshot-"));
  cluster = await TestCluster.start(3, { extra_args: ["--block-size-max", String(block_size)] });
}, 60_000);

afterAll(async () => {
  await cluster?.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The bytes writer w writes at step i: each version of each key is different and self-describing. */
function valueOf(w: number, i: number): Uint8Array {
  const size = i % 5 === 4 ? 40 * 1024 + ((w * 131 + i) % 4096) : 64 + ((w * 37 + i * 11) % 2000);
  const bytes = new Uint8Array(size);
  for (let j = 0; j < size; j++) bytes[j] = (w * 7 + i * 13 + j * 31) & 0xff;
  return bytes;
}

function versionOf(w: number, i: number): Version {
  const described = i % 2 === 1;
  return {
    value: valueOf(w, i),
    content_type: described ? `application/x-w${w}` : null,
    meta: described ? { seq: String(i), writer: String(w) } : null,
  };
}

describe("snapshot of a cluster under load", () => {
  test("saved while 16 clients write, restored into a new cluster: everything acknowledged before the save, nothing half there", async () => {
    /** Every version a writer sent (acknowledged or not), by key. */
    const attempted = new Map<string, Version[]>();
    /** Keys written once (never overwritten), acknowledged before the save started. */
    const acknowledged = new Map<string, Version>();
    let save_started = false;
    let stop = false;
    let acks = 0;
    const clients = Array.from({ length: writers }, () => new Client({ addresses: cluster.addresses, operation_timeout_ms: 30_000 }));
    // Each client learns the cluster's block size from an upload, so that its larger puts are chunked.
    await Promise.all(clients.map(async (c) => (await c.createUpload("warm-up")).abort()));
    const loops = clients.map(async (client, w) => {
      for (let i = 0; !stop; i++) {
        // Most keys are written once; every seventh write replaces one of four hot keys.
        const key = i % 7 === 6 ? `hot/${w % 4}` : `w${w}/k${i}`;
        const version = versionOf(w, i);
        attempted.set(key, [...(attempted.get(key) ?? []), version]);
        const before = !save_started;
        await client.put(key, version.value, {
          ...(version.content_type !== null ? { content_type: version.content_type } : {}),
          ...(version.meta !== null ? { meta: version.meta } : {}),
        });
        acks += 1;
        if (before && !save_started && !key.startsWith("hot/")) acknowledged.set(key, version);
      }
    });
    await waitFor("writes acknowledged", () => acks >= 300, 30_000, 10);
    const file = path.join(dir, "load.tfs");
    save_started = true;
    const saved = await toastyfs(["snapshot", "save", file, "--cluster", cluster.cluster_arg, "--quiet"], { timeout_ms: 60_000 });
    const acks_at_save_end = acks;
    stop = true;
    await Promise.all(loops);
    await Promise.all(clients.map((c) => c.close()));
    expect({ code: saved.code, stderr: saved.stderr }).toEqual({ code: 0, stderr: "" });
    expect(saved.stdout).toContain(`saved ${file}: checkpoint op`);
    console.log(`${acknowledged.size} objects acknowledged before the save, ${acks_at_save_end} acks by its end: ${saved.stdout.trim()}`);
    expect(acks_at_save_end).toBeGreaterThan(acknowledged.size); // it really ran while they wrote

    const verified = await toastyfs(["snapshot", "verify", file]);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain("ok: checkpoint op");
    const snapshot = readSnapshotFile(file);
    const chunked = [...snapshot.state.store.all()].filter(([, e]) => e.chunks !== undefined).length;
    expect(chunked).toBeGreaterThan(0); // large objects went through the block path

    // Restore into a new cluster on other ports, then start it as an operator would.
    const ports = await freePorts(3);
    const addresses: Address[] = ports.map((p) => parseAddress(`127.0.0.1:${p}`));
    const data = ports.map((p) => path.join(dir, `restored-${p}`));
    const restored = await toastyfs(
      [
        "snapshot",
        "restore",
        file,
        "--addr",
        `127.0.0.1:${ports[0]}`,
        "--peer",
        `127.0.0.1:${ports[1]}`,
        "--peer",
        `127.0.0.1:${ports[2]}`,
        ...data.flatMap((d) => ["--data", d]),
        "--quiet",
      ],
      { timeout_ms: 90_000 },
    );
    expect({ code: restored.code, stderr: restored.stderr }).toEqual({ code: 0, stderr: "" });
    expect(restored.stdout).toContain(`restored ${snapshot.state.store.count} objects`);
    const processes = serve(addresses, data);
    const client = new Client({ addresses, operation_timeout_ms: 30_000 });
    try {
      const statuses = await waitFor("the restored cluster to serve", async () => {
        const s = await clusterStatus(addresses, 500);
        return s.every((x) => x !== null && x.status === "normal") && s.some((x) => x?.primary) ? s : null;
      });
      const old_incarnation = (await cluster.status()).find((s) => s !== null)!.incarnation;
      expect(membership(addresses).cluster).not.toBe(membership(cluster.addresses).cluster);
      expect(statuses[0]!.incarnation).not.toBe(old_incarnation);

      for (const [key, version] of acknowledged) {
        const got = await client.get(key);
        expect({ key, same: Buffer.from(got.value).equals(Buffer.from(version.value)) }).toEqual({ key, same: true });
        const head = await client.head(key);
        const entries = head.metadata === null ? [] : (decodeUserMeta(head.metadata.user_meta) ?? []);
        const meta = entries.length === 0 ? null : Object.fromEntries(entries.map((m) => [m.name, new TextDecoder().decode(m.value)]));
        expect({ key, content_type: head.metadata?.content_type || null, meta }).toEqual({
          key,
          content_type: version.content_type,
          meta: version.meta,
        });
      }
      // Every object there is, byte for byte, a version some writer wrote (restored objects are
      // inline, so their checksum is the xxh64 of their bytes).
      let present = 0;
      for await (const entry of client.listAll()) {
        const key = new TextDecoder().decode(entry.key);
        if (key === "warm-up") continue;
        const versions = (attempted.get(key) ?? []).map((v) => checksum(v.value));
        expect({ key, written: versions.includes(entry.checksum) }).toEqual({ key, written: true });
        present += 1;
      }
      expect(present).toBe(snapshot.state.store.count);
    } finally {
      await client.close();
      for (const p of processes) p.kill("SIGKILL");
      await Promise.all(processes.map((p) => p.exited));
    }
  }, 120_000);
});

describe("a checkpoint that stops being retained mid-stream", () => {
  test("the save starts over from the newest checkpoint, still after its start", async () => {
    const begun: number[] = [];
    const client = new Client({ addresses: cluster.addresses });
    // Enough records for several chunks of 256 bytes.
    await Promise.all(Array.from({ length: 20 }, (_, i) => client.put(`stream/${i}`, new Uint8Array(200).fill(i))));
    let paused = false;
    const read = await readSnapshot(
      { addresses: cluster.addresses, chunk_size_max: 256 },
      {
        begin: (checkpoint) => void begun.push(checkpoint.op),
        chunk: async () => {
          if (paused) return;
          paused = true;
          // While this save waits, the cluster moves three checkpoints on: the one it reads is
          // no longer retained anywhere (STORAGE.md §10.5).
          const gone = begun[0]! + 3 * 256;
          await waitFor(
            "three more checkpoints",
            async () => {
              await Promise.all(Array.from({ length: 16 }, (_, i) => client.put(`churn/${i}`, new Uint8Array([i]))));
              const statuses = await cluster.status();
              return statuses.every((s) => s !== null && s.checkpoint >= gone);
            },
            60_000,
            0,
          );
        },
      },
    );
    await client.close();
    expect(read.restarts).toBe(1);
    expect(begun).toHaveLength(2);
    expect(begun[1]!).toBeGreaterThan(begun[0]!);
    expect(read.checkpoint.op).toBe(begun[1]!);
    expect(read.checkpoint.op).toBeGreaterThanOrEqual(read.start_op);
  }, 90_000);
});

describe("snapshot files", () => {
  test("an idle cluster's save holds the write made just before it", async () => {
    const client = new Client({ addresses: cluster.addresses });
    const value = new TextEncoder().encode(`last write ${Date.now()}`);
    await client.put("idle/last", value, { content_type: "text/plain" });
    await client.close();
    const file = path.join(dir, "idle.tfs");
    const saved = await toastyfs(["snapshot", "save", file, "--cluster", cluster.cluster_arg], { timeout_ms: 60_000 });
    expect(saved.code).toBe(0);
    const snapshot = readSnapshotFile(file);
    const entry = snapshot.state.store.get("idle/last");
    expect(entry?.meta?.content_type).toBe("text/plain");
    const fd = fs.openSync(file, "r");
    expect(Buffer.from(readStored(fd, entry!)).equals(Buffer.from(value))).toBe(true);
    fs.closeSync(fd);
    expect(fs.existsSync(`${file}.tmp`)).toBe(false);
  }, 60_000);

  test("verify fails, naming the record and what is wrong, on a flipped byte and on a truncated file", async () => {
    const file = path.join(dir, "idle.tfs");
    const bytes = fs.readFileSync(file);
    const snapshot = readSnapshotFile(file);
    const entry = snapshot.state.store.get("idle/last")!;
    const flipped = Buffer.from(bytes);
    flipped[entry.offset + 3]! ^= 0x10;
    fs.writeFileSync(path.join(dir, "flipped.tfs"), flipped);
    const bad = await toastyfs(["snapshot", "verify", path.join(dir, "flipped.tfs")]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/damaged: record \d+ at offset \d+: an object whose value does not match its checksum/);

    fs.writeFileSync(path.join(dir, "truncated.tfs"), bytes.subarray(0, bytes.length - 100));
    const cut = await toastyfs(["snapshot", "verify", path.join(dir, "truncated.tfs")]);
    expect(cut.code).toBe(1);
    expect(cut.stderr).toContain("truncated");

    // A byte no record checksum covers (a frame's padding-free header is covered by the SHA-256).
    const tail = Buffer.from(bytes);
    tail[tail.length - 80]! ^= 0x01;
    fs.writeFileSync(path.join(dir, "tail.tfs"), tail);
    const hashed = await toastyfs(["snapshot", "verify", path.join(dir, "tail.tfs")]);
    expect(hashed.code).toBe(1);
    expect(hashed.stderr).toContain("damaged");
  }, 30_000);

  test("a save that cannot reach the cluster fails within --timeout and leaves no file", async () => {
    const [port] = await freePorts(1);
    const file = path.join(dir, "unreachable.tfs");
    const result = await toastyfs(["snapshot", "save", file, "--cluster", `127.0.0.1:${port}`, "--timeout", "1"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("error: snapshot save: no replica completed the request");
    expect(fs.existsSync(file) || fs.existsSync(`${file}.tmp`)).toBe(false);
  }, 30_000);

  test("restore refuses a data directory that is not empty, and leaves it as it was", async () => {
    const ports = await freePorts(3);
    const busy = path.join(dir, "busy");
    fs.mkdirSync(busy, { recursive: true });
    fs.writeFileSync(path.join(busy, "keep"), "mine");
    const args = ["snapshot", "restore", path.join(dir, "idle.tfs"), "--addr", `127.0.0.1:${ports[0]}`];
    const result = await toastyfs([...args, "--peer", `127.0.0.1:${ports[1]}`, "--peer", `127.0.0.1:${ports[2]}`, "--data", busy]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`refusing to restore into ${busy}: it is not empty`);
    expect(fs.readdirSync(busy)).toEqual(["keep"]);
  }, 30_000);
});

describe("snapshot of a cluster with a secret", () => {
  test("save works with --secret-file and fails with an authentication error without it", async () => {
    const secret_file = path.join(dir, "secret");
    writeSecretFile(secret_file, newSecret());
    const secured = await TestCluster.start(3, { secret_file });
    try {
      const file = path.join(dir, "secured.tfs");
      const denied = await toastyfs(["snapshot", "save", file, "--cluster", secured.cluster_arg], { timeout_ms: 60_000 });
      expect(denied.code).toBe(1);
      expect(denied.stderr).toMatch(/authentication|secret/i);
      expect(fs.existsSync(file) || fs.existsSync(`${file}.tmp`)).toBe(false);
      const saved = await toastyfs(["snapshot", "save", file, "--cluster", secured.cluster_arg, "--secret-file", secret_file], {
        timeout_ms: 60_000,
      });
      expect({ code: saved.code, stderr: saved.stderr.split("\n").filter((l) => l.startsWith("error")) }).toEqual({ code: 0, stderr: [] });
      expect((await toastyfs(["snapshot", "verify", file])).code).toBe(0);
    } finally {
      await secured.destroy();
    }
  }, 60_000);
});

/** `toastyfs serve` for each member, on its data directory. */
function serve(addresses: Address[], data: string[]): Subprocess[] {
  const names = addresses.map((a) => `${a.host}:${a.port}`);
  return names.map((name, i) => {
    const peers = names.filter((p) => p !== name).flatMap((p) => ["--peer", p]);
    const log = fs.openSync(path.join(dir, `serve-${i}.log`), "a");
    const child = spawn([...toastyfsCommand(), "serve", "--addr", name, ...peers, "--data", data[i]!], {
      stdout: log,
      stderr: log,
      stdin: "ignore",
    });
    fs.closeSync(log);
    return child;
  });
}
