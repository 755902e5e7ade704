/**
 * Data directories written by an older commit open with the current code and hold the same
 * objects: the on-disk format (and so the restructuring of issue 13) must not have changed under
 * them. The fixture (tests/fixtures/old_data_6ee49ef, made by scripts/make_old_data_fixture.ts)
 * is three replicas' directories with a checkpoint and a journal suffix after it; here they are
 * unpacked, started as real processes from this tree, and every object is read back.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "../lib/client/client.ts";
import { packSparse, unpackSparse } from "./support/sparse_archive.ts";
import {
  addresses,
  archive_path,
  expected_path,
  logs,
  startReplicas,
  stopReplicas,
  waitConverged,
  type ExpectedContents,
  type FixtureReplica,
} from "./support/old_data.ts";
import { repo } from "./support/cluster.ts";

const expected = JSON.parse(fs.readFileSync(expected_path, "utf8")) as ExpectedContents;
const bytes = (hex: string) => new Uint8Array(Buffer.from(hex, "hex"));

let root = "";
let replicas: FixtureReplica[] = [];
let client: Client;
let failed = false;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-old-data-test-"));
  unpackSparse(fs.readFileSync(archive_path), path.join(root, "data"));
  replicas = startReplicas(repo, path.join(root, "data"), root);
  client = new Client({ addresses, operation_timeout_ms: 20_000 });
}, 30_000);

afterAll(async () => {
  await client?.close();
  if (failed) console.error(`${logs(replicas)}\ndirectory kept at ${root}`);
  await stopReplicas(replicas);
  if (!failed) fs.rmSync(root, { recursive: true, force: true });
});

async function guarded(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (error) {
    failed = true;
    throw error;
  }
}

describe(`data directories written by ${expected.commit}`, () => {
  test("the fixture has what it claims: a checkpoint, a suffix after it, the kinds of objects", () => {
    expect(expected.checkpoint).toBeGreaterThan(0);
    expect(expected.commit_max).toBeGreaterThan(expected.checkpoint);
    const keys = expected.objects.map((o) => o.key_hex);
    expect(keys).toContain("00ff10807f2f");
    expect(expected.objects.some((o) => o.value_hex === "")).toBe(true);
    expect(expected.deleted_hex.length).toBeGreaterThan(0);
  });

  test(
    "the replicas open them, recover the state and agree, without formatting anew",
    () =>
      guarded(async () => {
        const statuses = await waitConverged(60_000, expected.commit_max);
        for (const s of statuses) {
          expect(s.checkpoint).toBeGreaterThanOrEqual(expected.checkpoint);
          expect(s.commit_max).toBeGreaterThanOrEqual(expected.commit_max);
          expect(s.objects).toBe(expected.objects.length);
        }
        for (const r of replicas) expect(fs.readFileSync(r.log_path, "utf8")).not.toMatch(/formatting/i);
      }),
    90_000,
  );

  test(
    "every object reads back with its bytes and version; deleted keys are absent",
    () =>
      guarded(async () => {
        for (const o of expected.objects) {
          const got = await client.get(bytes(o.key_hex));
          expect({ key: o.key_hex, value: Buffer.from(got.value).toString("hex"), version: got.version }).toEqual({
            key: o.key_hex,
            value: o.value_hex,
            version: o.version,
          });
        }
        for (const key of expected.deleted_hex) await expect(client.get(bytes(key))).rejects.toMatchObject({ code: "not_found" });
        const listed: string[] = [];
        for await (const entry of client.listAll()) listed.push(Buffer.from(entry.key).toString("hex"));
        expect(listed.sort()).toEqual(expected.objects.map((o) => o.key_hex).sort());
      }),
    60_000,
  );

  test(
    "a new write succeeds and reads back",
    () =>
      guarded(async () => {
        const value = new TextEncoder().encode("written by the current code");
        const { version } = await client.put("new-after-upgrade", value);
        expect(version).toBeGreaterThan(Math.max(...expected.objects.map((o) => o.version)));
        const got = await client.get("new-after-upgrade");
        expect(new TextDecoder().decode(got.value)).toBe("written by the current code");
        await client.put("overwritten", value);
        expect(new TextDecoder().decode((await client.get("overwritten")).value)).toBe("written by the current code");
      }),
    60_000,
  );
});

describe("the sparse archive the fixture is packed in", () => {
  test("restores every file with its size and bytes, holes included, and skips what it is told to", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-sparse-"));
    try {
      const source = path.join(dir, "source");
      fs.mkdirSync(path.join(source, "journal"), { recursive: true });
      const segment = new Uint8Array(3 * 4096 + 100);
      segment.set([1, 2, 3], 10);
      segment.set([9], 2 * 4096 + 5);
      segment[segment.length - 1] = 7;
      fs.writeFileSync(path.join(source, "journal/segment"), segment);
      fs.writeFileSync(path.join(source, "empty"), new Uint8Array(0));
      fs.writeFileSync(path.join(source, "LOCK"), "123\n");
      const archive = packSparse(source, (relative) => relative === "LOCK");
      const target = path.join(dir, "target");
      fs.mkdirSync(target);
      expect(unpackSparse(archive, target).sort()).toEqual(["empty", "journal/segment"]);
      expect(new Uint8Array(fs.readFileSync(path.join(target, "journal/segment")))).toEqual(segment);
      expect(fs.statSync(path.join(target, "empty")).size).toBe(0);
      expect(fs.existsSync(path.join(target, "LOCK"))).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
