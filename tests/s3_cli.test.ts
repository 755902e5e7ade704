/**
 * The gateway driven by the aws CLI, as people script it: `aws s3` (mb, cp, ls, sync, rm, rb) and
 * `aws s3api` calls, including a 100 MiB file the CLI uploads in 8 MiB parts, against a real
 * 3-replica cluster. The CLI runs with a throwaway HOME and config so no user configuration leaks
 * in. Skipped, saying so, where `aws` is not installed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runCommand, type RunResult } from "./support/cli.ts";
import { sha256File, writeRandomFile } from "./support/random_file.ts";
import { S3Gateway, startS3Gateway } from "./support/s3_gateway.ts";

const aws_binary = Bun.which("aws");
if (aws_binary === null) console.warn("s3_cli.test.ts: skipped, the aws CLI is not installed (pip install awscli)");

let gateway: S3Gateway;
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  if (aws_binary === null) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-s3-cli-"));
  gateway = await startS3Gateway();
  const home = path.join(dir, "home");
  fs.mkdirSync(home);
  const config = path.join(home, "config");
  // Path-style addressing: the endpoint is an IP address, and bucket.127.0.0.1 means nothing.
  fs.writeFileSync(config, `[default]\nregion = ${gateway.region}\ns3 =\n    addressing_style = path\n`);
  env = {
    HOME: home,
    AWS_CONFIG_FILE: config,
    AWS_SHARED_CREDENTIALS_FILE: path.join(home, "credentials"),
    AWS_ACCESS_KEY_ID: gateway.access_key,
    AWS_SECRET_ACCESS_KEY: gateway.secret_key,
    AWS_DEFAULT_REGION: gateway.region,
    AWS_PAGER: "",
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_MAX_ATTEMPTS: "1",
  };
}, 120_000);

afterAll(async () => {
  await gateway?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** aws --endpoint-url GATEWAY ARGS; fails the test with the CLI's stderr unless it exits 0. */
async function aws(
  args: string[],
  options: { timeout_ms?: number; cwd?: string; allow_failure?: boolean; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const result = await runCommand([aws_binary!, "--endpoint-url", gateway.endpoint, ...args], {
    env: { ...env, ...options.env },
    timeout_ms: options.timeout_ms ?? 60_000,
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  if (!options.allow_failure && result.code !== 0)
    throw new Error(
      `aws ${args.join(" ")} exited ${result.code}${result.timed_out ? " (timed out)" : ""}:\n${result.stderr}\n${result.stdout}`,
    );
  return result;
}

async function awsJson(args: string[]): Promise<Record<string, unknown>> {
  const result = await aws([...args, "--output", "json"]);
  return result.stdout.trim() === "" ? {} : (JSON.parse(result.stdout) as Record<string, unknown>);
}

/** Files dated an hour back: sync compares a file's mtime with LastModified, which S3 lists to the
 * second, so a file written in the same second as its upload would look newer than its copy. */
function writeTree(root: string, files: Record<string, string>): void {
  const an_hour_ago = new Date(Date.now() - 3600_000);
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), content);
    fs.utimesSync(path.join(root, name), an_hour_ago, an_hour_ago);
  }
}

describe.skipIf(aws_binary === null)("aws s3", () => {
  test("mb, cp, ls, sync of a nested tree (twice: the second copies nothing), rm --recursive, rb", async () => {
    await aws(["s3", "mb", "s3://cli-tree"]);
    expect((await aws(["s3", "ls"])).stdout).toContain("cli-tree");

    const one = path.join(dir, "one.txt");
    fs.writeFileSync(one, "one file\n");
    await aws(["s3", "cp", one, "s3://cli-tree/single/one.txt"]);
    const back = path.join(dir, "one-back.txt");
    await aws(["s3", "cp", "s3://cli-tree/single/one.txt", back]);
    expect(fs.readFileSync(back, "utf8")).toBe("one file\n");

    const tree = path.join(dir, "tree");
    const files: Record<string, string> = {
      "README.md": "# readme\n",
      "src/main.ts": "console.log(1)\n",
      "src/lib/util.ts": "export {}\n",
      "src/lib/deep/deeper/leaf.txt": "leaf\n",
      "assets/image with space.bin": "\u0000\u0001\u0002binary",
      "assets/ünïcode.txt": "unicode name\n",
      "empty.txt": "",
    };
    writeTree(tree, files);
    const first = await aws(["s3", "sync", "--no-progress", tree, "s3://cli-tree/site/"]);
    expect(first.stdout.split(/[\r\n]+/).filter((l) => l.startsWith("upload:")).length).toBe(Object.keys(files).length);
    const second = await aws(["s3", "sync", "--no-progress", tree, "s3://cli-tree/site/"]);
    expect(second.stdout.trim()).toBe("");

    const ls = await aws(["s3", "ls", "--recursive", "s3://cli-tree/site/"]);
    const listed = ls.stdout
      .trim()
      .split("\n")
      .map((line) => line.replace(/^\S+\s+\S+\s+\d+\s+/, ""))
      .sort();
    expect(listed).toEqual(
      Object.keys(files)
        .map((f) => `site/${f}`)
        .sort(),
    );
    const folders = await aws(["s3", "ls", "s3://cli-tree/site/"]);
    expect(folders.stdout).toMatch(/PRE src\//);
    expect(folders.stdout).toMatch(/PRE assets\//);

    // And back down: the tree comes back byte for byte.
    const down = path.join(dir, "tree-down");
    await aws(["s3", "sync", "s3://cli-tree/site/", down]);
    for (const [name, content] of Object.entries(files)) expect(fs.readFileSync(path.join(down, name), "utf8")).toBe(content);

    // A changed file is the only one the next sync sends.
    fs.writeFileSync(path.join(tree, "src/main.ts"), "console.log(2) // longer now\n");
    const third = await aws(["s3", "sync", "--no-progress", tree, "s3://cli-tree/site/"]);
    expect(third.stdout.trim().split(/[\r\n]+/).length).toBe(1);
    expect(third.stdout).toContain("site/src/main.ts");

    const rb_full = await aws(["s3", "rb", "s3://cli-tree"], { allow_failure: true });
    expect(rb_full.code).not.toBe(0);
    expect(rb_full.stderr).toContain("BucketNotEmpty");
    await aws(["s3", "rm", "--recursive", "s3://cli-tree/"]);
    expect((await aws(["s3", "ls", "--recursive", "s3://cli-tree/"], { allow_failure: true })).stdout.trim()).toBe("");
    await aws(["s3", "rb", "s3://cli-tree"]);
    expect((await aws(["s3", "ls"])).stdout).not.toContain("cli-tree");
  }, 120_000);

  test("cp of a 100 MiB file goes up in 8 MiB parts and comes back with the same sha256", async () => {
    await aws(["s3", "mb", "s3://cli-large"]);
    const source = writeRandomFile(path.join(dir, "large.bin"), 100 * 1024 * 1024);
    await aws(["s3", "cp", source.path, "s3://cli-large/large.bin"], { timeout_ms: 120_000 });
    const head = await awsJson(["s3api", "head-object", "--bucket", "cli-large", "--key", "large.bin"]);
    expect(head.ContentLength).toBe(source.size);
    // 100 MiB in the CLI's default 8 MiB chunks: 13 parts.
    expect(head.ETag).toMatch(/^"[0-9a-f]{32}-13"$/);
    const back = path.join(dir, "large-back.bin");
    await aws(["s3", "cp", "s3://cli-large/large.bin", back], { timeout_ms: 120_000 });
    expect(await sha256File(back)).toBe(source.sha256);
    fs.rmSync(back);
    fs.rmSync(source.path);
  }, 180_000);
});

describe.skipIf(aws_binary === null)("aws s3 presign", () => {
  test("a SigV4 presigned URL (signature_version s3v4) is fetched with plain HTTP; CLI v1's default SigV2 URL is refused, naming SigV4", async () => {
    await aws(["s3", "mb", "s3://cli-presign"]);
    const file = path.join(dir, "presign.txt");
    fs.writeFileSync(file, "shared by URL\n");
    await aws(["s3", "cp", file, "s3://cli-presign/shared.txt"]);
    // aws CLI v1 presigns with SigV2 unless the profile says s3v4.
    const v4_config = path.join(dir, "home", "config-s3v4");
    fs.writeFileSync(v4_config, `${fs.readFileSync(env.AWS_CONFIG_FILE!, "utf8")}    signature_version = s3v4\n`);
    const v4 = (
      await aws(["s3", "presign", "s3://cli-presign/shared.txt", "--expires-in", "300"], { env: { AWS_CONFIG_FILE: v4_config } })
    ).stdout.trim();
    expect(v4).toContain("X-Amz-Algorithm=AWS4-HMAC-SHA256");
    const got = await fetch(v4);
    expect(got.status).toBe(200);
    expect(await got.text()).toBe("shared by URL\n");

    const v2 = (await aws(["s3", "presign", "s3://cli-presign/shared.txt", "--expires-in", "300"])).stdout.trim();
    expect(v2).toContain("AWSAccessKeyId=");
    const refused = await fetch(v2);
    const body = await refused.text();
    expect(refused.status).toBe(400);
    expect(body).toContain("<Code>InvalidRequest</Code>");
    expect(body).toContain("AWS4-HMAC-SHA256");
  }, 60_000);
});

describe.skipIf(aws_binary === null)("aws s3api", () => {
  test("put-object, head-object, get-object, list-objects-v2, delete-objects", async () => {
    await aws(["s3api", "create-bucket", "--bucket", "cli-api"]);
    const body = path.join(dir, "api-body.json");
    fs.writeFileSync(body, '{"hello":"world"}');
    const put = await awsJson([
      "s3api",
      "put-object",
      "--bucket",
      "cli-api",
      "--key",
      "docs/hello.json",
      "--body",
      body,
      "--content-type",
      "application/json",
      "--metadata",
      "origin=cli,step=1",
    ]);
    expect(put.ETag).toBe('"fbc24bcc7a1794758fc1327fcfebdaf6"');
    const head = await awsJson(["s3api", "head-object", "--bucket", "cli-api", "--key", "docs/hello.json"]);
    expect(head.ContentType).toBe("application/json");
    expect(head.Metadata).toEqual({ origin: "cli", step: "1" });
    expect(head.ContentLength).toBe(17);
    const out = path.join(dir, "api-out.json");
    const get = await awsJson(["s3api", "get-object", "--bucket", "cli-api", "--key", "docs/hello.json", out]);
    expect(get.ETag).toBe(put.ETag);
    expect(fs.readFileSync(out, "utf8")).toBe('{"hello":"world"}');

    for (const k of ["docs/a", "docs/b", "other/c"]) await aws(["s3api", "put-object", "--bucket", "cli-api", "--key", k, "--body", body]);
    const list = await awsJson(["s3api", "list-objects-v2", "--bucket", "cli-api", "--prefix", "docs/"]);
    expect((list.Contents as { Key: string }[]).map((c) => c.Key)).toEqual(["docs/a", "docs/b", "docs/hello.json"]);
    const folders = await awsJson(["s3api", "list-objects-v2", "--bucket", "cli-api", "--delimiter", "/"]);
    expect((folders.CommonPrefixes as { Prefix: string }[]).map((p) => p.Prefix)).toEqual(["docs/", "other/"]);

    const deleted = await awsJson([
      "s3api",
      "delete-objects",
      "--bucket",
      "cli-api",
      "--delete",
      JSON.stringify({ Objects: [{ Key: "docs/a" }, { Key: "docs/b" }, { Key: "other/c" }] }),
    ]);
    expect((deleted.Deleted as { Key: string }[]).map((d) => d.Key).sort()).toEqual(["docs/a", "docs/b", "other/c"]);
    const left = await awsJson(["s3api", "list-objects-v2", "--bucket", "cli-api"]);
    expect((left.Contents as { Key: string }[]).map((c) => c.Key)).toEqual(["docs/hello.json"]);
    const missing = await aws(["s3api", "head-object", "--bucket", "cli-api", "--key", "docs/a"], { allow_failure: true });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain("404");
  }, 120_000);

  test("create-multipart-upload, upload-part, list-parts, list-multipart-uploads, complete; abort", async () => {
    await aws(["s3api", "create-bucket", "--bucket", "cli-mpu"]);
    const created = await awsJson(["s3api", "create-multipart-upload", "--bucket", "cli-mpu", "--key", "joined.bin"]);
    const upload_id = created.UploadId as string;
    const part1 = writeRandomFile(path.join(dir, "part1.bin"), 5 * 1024 * 1024);
    const part2 = writeRandomFile(path.join(dir, "part2.bin"), 1000);
    const base = ["--bucket", "cli-mpu", "--key", "joined.bin", "--upload-id", upload_id];
    const e2 = (await awsJson(["s3api", "upload-part", ...base, "--part-number", "2", "--body", part2.path])).ETag as string;
    const e1 = (await awsJson(["s3api", "upload-part", ...base, "--part-number", "1", "--body", part1.path])).ETag as string;
    const parts = await awsJson(["s3api", "list-parts", ...base]);
    expect((parts.Parts as { PartNumber: number; Size: number; ETag: string }[]).map((p) => [p.PartNumber, p.Size, p.ETag])).toEqual([
      [1, part1.size, e1],
      [2, part2.size, e2],
    ]);
    const uploads = await awsJson(["s3api", "list-multipart-uploads", "--bucket", "cli-mpu"]);
    expect((uploads.Uploads as { UploadId: string }[]).map((u) => u.UploadId)).toEqual([upload_id]);
    const complete = await awsJson([
      "s3api",
      "complete-multipart-upload",
      ...base,
      "--multipart-upload",
      JSON.stringify({
        Parts: [
          { PartNumber: 1, ETag: e1 },
          { PartNumber: 2, ETag: e2 },
        ],
      }),
    ]);
    expect(complete.ETag).toMatch(/^"[0-9a-f]{32}-2"$/);
    const joined = path.join(dir, "joined.bin");
    await awsJson(["s3api", "get-object", "--bucket", "cli-mpu", "--key", "joined.bin", joined]);
    expect(fs.statSync(joined).size).toBe(part1.size + part2.size);
    const expected = Buffer.concat([fs.readFileSync(part1.path), fs.readFileSync(part2.path)]);
    expect(Buffer.compare(fs.readFileSync(joined), expected)).toBe(0);

    const doomed = (await awsJson(["s3api", "create-multipart-upload", "--bucket", "cli-mpu", "--key", "doomed"])).UploadId as string;
    await aws(["s3api", "abort-multipart-upload", "--bucket", "cli-mpu", "--key", "doomed", "--upload-id", doomed]);
    const after = await awsJson(["s3api", "list-multipart-uploads", "--bucket", "cli-mpu"]);
    expect(after.Uploads ?? []).toEqual([]);
  }, 120_000);
});

describe.skipIf(aws_binary === null)("the gateway after all of the above", () => {
  test("it is still up, logged no bug and answered no 5xx", () => {
    expect(gateway.running()).toBe(true);
    expect(gateway.serverErrors()).toEqual([]);
  });
});
