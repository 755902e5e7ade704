/**
 * The gateway driven by @aws-sdk/client-s3 as users run it: default checksum settings (so stream
 * bodies go out as STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32 trailer), path style, under Bun,
 * against a real 3-replica cluster. Plus lib-storage's parallel multipart Upload, presigned URLs
 * fetched with plain HTTP, and a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body signed chunk by chunk.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import { Readable } from "node:stream";
import {
  AwsSdk,
  S3Gateway,
  expectSdkError,
  md5Hex,
  sha256Hex,
  signRaw,
  startS3Gateway,
  type S3Api,
  type SdkOutput,
} from "./support/s3_gateway.ts";

let gateway: S3Gateway;
let sdk: AwsSdk;
let s3: S3Api;

beforeAll(async () => {
  [sdk, gateway] = await Promise.all([AwsSdk.load(), startS3Gateway()]);
  s3 = sdk.client(gateway);
}, 180_000);

afterAll(async () => {
  s3?.destroy();
  await gateway?.stop();
});

const MiB = 1024 * 1024;

async function bodyBytes(output: SdkOutput): Promise<Uint8Array> {
  const body = output.Body as { transformToByteArray(): Promise<Uint8Array> };
  return body.transformToByteArray();
}

async function getBytes(bucket: string, key: string, extra: Record<string, unknown> = {}): Promise<Uint8Array> {
  return bodyBytes(await s3.call("GetObject", { Bucket: bucket, Key: key, ...extra }));
}

async function getText(bucket: string, key: string): Promise<string> {
  return new TextDecoder().decode(await getBytes(bucket, key));
}

async function createBucket(bucket: string): Promise<void> {
  await s3.call("CreateBucket", { Bucket: bucket });
}

/** Runs fn over items with at most `limit` in flight. */
async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

/** The S3 ETag of a multipart object: MD5 of the parts' binary MD5s, then -N. */
function multipartEtag(parts: Uint8Array[]): string {
  const md5s = Buffer.concat(parts.map((p) => crypto.createHash("md5").update(p).digest()));
  return `"${md5Hex(md5s)}-${parts.length}"`;
}

describe("buckets", () => {
  test("CreateBucket, HeadBucket, ListBuckets, GetBucketLocation; DeleteBucket refuses a non-empty bucket", async () => {
    const bucket = "sdk-buckets";
    await createBucket(bucket);
    const head = await s3.call("HeadBucket", { Bucket: bucket });
    expect(head.$metadata.httpStatusCode).toBe(200);
    const list = await s3.call("ListBuckets", {});
    expect((list.Buckets as { Name: string; CreationDate: Date }[]).map((b) => b.Name)).toContain(bucket);
    const location = await s3.call("GetBucketLocation", { Bucket: bucket });
    // us-east-1 is the one region S3 reports as an empty LocationConstraint.
    expect([undefined, "", null, gateway.region]).toContain(location.LocationConstraint as string | undefined);

    await s3.call("PutObject", { Bucket: bucket, Key: "keep", Body: "x" });
    await expectSdkError(s3.call("DeleteBucket", { Bucket: bucket }), "BucketNotEmpty", 409);
    await s3.call("DeleteObject", { Bucket: bucket, Key: "keep" });
    const deleted = await s3.call("DeleteBucket", { Bucket: bucket });
    expect(deleted.$metadata.httpStatusCode).toBe(204);
    // A HEAD answer has no body, so the SDK names a 404 "NotFound".
    await expectSdkError(s3.call("HeadBucket", { Bucket: bucket }), "NotFound", 404);
    const after = await s3.call("ListBuckets", {});
    expect(((after.Buckets ?? []) as { Name: string }[]).map((b) => b.Name)).not.toContain(bucket);
    await expectSdkError(s3.call("PutObject", { Bucket: bucket, Key: "k", Body: "x" }), "NoSuchBucket", 404);
  }, 60_000);
});

describe("PutObject and GetObject", () => {
  const bucket = "sdk-objects";
  beforeAll(() => createBucket(bucket), 30_000);

  test("a string, a Buffer and a stream body each read back byte for byte; the ETag is the MD5", async () => {
    const sent = s3.recordRequests();
    const text = "hello, gateway\n";
    const put_text = await s3.call("PutObject", { Bucket: bucket, Key: "text", Body: text, ContentType: "text/plain" });
    expect(put_text.ETag).toBe(`"${md5Hex(text)}"`);
    expect(await getText(bucket, "text")).toBe(text);

    const binary = crypto.randomBytes(300_000);
    const put_buffer = await s3.call("PutObject", { Bucket: bucket, Key: "buffer", Body: binary });
    expect(put_buffer.ETag).toBe(`"${md5Hex(binary)}"`);
    expect(Buffer.compare(Buffer.from(await getBytes(bucket, "buffer")), binary)).toBe(0);

    // A stream is what users with files hand the SDK: it goes out aws-chunked with a CRC32 trailer.
    const streamed = crypto.randomBytes(3 * MiB + 17);
    const chunks = Array.from({ length: Math.ceil(streamed.length / 65536) }, (_, i) => streamed.subarray(i * 65536, (i + 1) * 65536));
    const put_stream = await s3.call("PutObject", {
      Bucket: bucket,
      Key: "stream",
      Body: Readable.from(chunks),
      ContentLength: streamed.length,
    });
    expect(put_stream.ETag).toBe(`"${md5Hex(streamed)}"`);
    expect(Buffer.compare(Buffer.from(await getBytes(bucket, "stream")), streamed)).toBe(0);

    const stream_put = sent.find((r) => r.method === "PUT" && r.path.endsWith("/stream"))!;
    expect(stream_put.headers["x-amz-content-sha256"]).toBe("STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    expect(stream_put.headers["x-amz-trailer"]).toBe("x-amz-checksum-crc32");
    expect(stream_put.headers["content-encoding"]).toContain("aws-chunked");
    expect(stream_put.headers["x-amz-decoded-content-length"]).toBe(String(streamed.length));
  }, 60_000);

  test("the SDK signs a Buffer body's payload over plain HTTP (hex SHA-256) and adds a CRC32 header", async () => {
    const sent = s3.recordRequests();
    const body = Buffer.from("signed payload body");
    await s3.call("PutObject", { Bucket: bucket, Key: "signed-payload", Body: body });
    const put = sent.find((r) => r.method === "PUT" && r.path.endsWith("/signed-payload"))!;
    expect(put.headers["x-amz-content-sha256"]).toBe(sha256Hex(body));
    expect(put.headers["x-amz-checksum-crc32"]).toBeDefined();
    expect(await getText(bucket, "signed-payload")).toBe("signed payload body");
  }, 30_000);

  test("every checksum the SDK offers (CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256) is accepted as a stream's trailer and as a Buffer's header", async () => {
    const sent = s3.recordRequests();
    for (const algorithm of ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]) {
      const data = crypto.randomBytes(70_000);
      const header = `x-amz-checksum-${algorithm.toLowerCase()}`;
      const streamed = await s3.call("PutObject", {
        Bucket: bucket,
        Key: `sum-${algorithm}-stream`,
        Body: Readable.from([data.subarray(0, 30_000), data.subarray(30_000)]),
        ContentLength: data.length,
        ChecksumAlgorithm: algorithm,
      });
      expect(streamed.ETag).toBe(`"${md5Hex(data)}"`);
      const trailer_put = sent.at(-1)!;
      expect(trailer_put.headers["x-amz-content-sha256"]).toBe("STREAMING-UNSIGNED-PAYLOAD-TRAILER");
      expect(trailer_put.headers["x-amz-trailer"]).toBe(header);
      await s3.call("PutObject", { Bucket: bucket, Key: `sum-${algorithm}-buffer`, Body: data, ChecksumAlgorithm: algorithm });
      expect(sent.at(-1)!.headers[header]).toBeDefined();
      for (const key of [`sum-${algorithm}-stream`, `sum-${algorithm}-buffer`])
        expect(Buffer.compare(Buffer.from(await getBytes(bucket, key)), data)).toBe(0);
    }
  }, 60_000);

  test("a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body, every chunk signed, is stored; one bad chunk signature stores nothing", async () => {
    const data = crypto.randomBytes(200_000);
    const good = await streamingSignedPut(bucket, "chunk-signed", data, 64 * 1024, false);
    expect(good.status).toBe(200);
    expect(good.headers.get("etag")).toBe(`"${md5Hex(data)}"`);
    expect(Buffer.compare(Buffer.from(await getBytes(bucket, "chunk-signed")), data)).toBe(0);

    const bad = await streamingSignedPut(bucket, "chunk-forged", data, 64 * 1024, true);
    expect(bad.status).toBe(403);
    expect(await bad.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
    await expectSdkError(s3.call("HeadObject", { Bucket: bucket, Key: "chunk-forged" }), "NotFound", 404);
  }, 60_000);

  test("Range reads answer 206 with Content-Range", async () => {
    const data = crypto.randomBytes(10_000);
    await s3.call("PutObject", { Bucket: bucket, Key: "ranged", Body: data });
    const middle = await s3.call("GetObject", { Bucket: bucket, Key: "ranged", Range: "bytes=100-1099" });
    expect(middle.$metadata.httpStatusCode).toBe(206);
    expect(middle.ContentRange).toBe("bytes 100-1099/10000");
    expect(middle.ContentLength).toBe(1000);
    expect(Buffer.compare(Buffer.from(await bodyBytes(middle)), data.subarray(100, 1100))).toBe(0);
    const tail = await s3.call("GetObject", { Bucket: bucket, Key: "ranged", Range: "bytes=-10" });
    expect(Buffer.compare(Buffer.from(await bodyBytes(tail)), data.subarray(9990))).toBe(0);
    const from = await s3.call("GetObject", { Bucket: bucket, Key: "ranged", Range: "bytes=9000-" });
    expect(from.ContentRange).toBe("bytes 9000-9999/10000");
    await expectSdkError(s3.call("GetObject", { Bucket: bucket, Key: "ranged", Range: "bytes=10000-10005" }), "InvalidRange", 416);
  }, 30_000);

  test("HeadObject returns the ContentType, user Metadata, size and ETag that PutObject set", async () => {
    const body = '{"a":1}';
    await s3.call("PutObject", {
      Bucket: bucket,
      Key: "meta.json",
      Body: body,
      ContentType: "application/json",
      Metadata: { owner: "alice", "build-id": "42" },
    });
    const head = await s3.call("HeadObject", { Bucket: bucket, Key: "meta.json" });
    expect(head.ContentType).toBe("application/json");
    expect(head.Metadata).toEqual({ owner: "alice", "build-id": "42" });
    expect(head.ContentLength).toBe(body.length);
    expect(head.ETag).toBe(`"${md5Hex(body)}"`);
    expect(head.LastModified).toBeInstanceOf(Date);
    const get = await s3.call("GetObject", { Bucket: bucket, Key: "meta.json" });
    expect(get.Metadata).toEqual({ owner: "alice", "build-id": "42" });
    await bodyBytes(get);
    await expectSdkError(s3.call("GetObject", { Bucket: bucket, Key: "absent" }), "NoSuchKey", 404);
  }, 30_000);

  test("CopyObject keeps the metadata with COPY and replaces it with REPLACE", async () => {
    await s3.call("PutObject", {
      Bucket: bucket,
      Key: "source",
      Body: "copy me",
      ContentType: "text/x-source",
      Metadata: { color: "red" },
    });
    const copied = await s3.call("CopyObject", { Bucket: bucket, Key: "copy-1", CopySource: `${bucket}/source` });
    expect((copied.CopyObjectResult as { ETag: string }).ETag).toBe(`"${md5Hex("copy me")}"`);
    const head1 = await s3.call("HeadObject", { Bucket: bucket, Key: "copy-1" });
    expect(head1.Metadata).toEqual({ color: "red" });
    expect(head1.ContentType).toBe("text/x-source");
    expect(await getText(bucket, "copy-1")).toBe("copy me");

    await s3.call("CopyObject", {
      Bucket: bucket,
      Key: "copy-2",
      CopySource: `${bucket}/source`,
      MetadataDirective: "REPLACE",
      ContentType: "text/x-replaced",
      Metadata: { color: "blue" },
    });
    const head2 = await s3.call("HeadObject", { Bucket: bucket, Key: "copy-2" });
    expect(head2.Metadata).toEqual({ color: "blue" });
    expect(head2.ContentType).toBe("text/x-replaced");
    expect(await getText(bucket, "copy-2")).toBe("copy me");
    await expectSdkError(s3.call("CopyObject", { Bucket: bucket, Key: "copy-3", CopySource: `${bucket}/absent` }), "NoSuchKey", 404);
  }, 30_000);

  test("DeleteObject and DeleteObjects remove keys; deleting an absent key succeeds", async () => {
    for (const k of ["d1", "d2", "d3", "d4"]) await s3.call("PutObject", { Bucket: bucket, Key: k, Body: k });
    const one = await s3.call("DeleteObject", { Bucket: bucket, Key: "d1" });
    expect(one.$metadata.httpStatusCode).toBe(204);
    await expectSdkError(s3.call("GetObject", { Bucket: bucket, Key: "d1" }), "NoSuchKey", 404);
    expect((await s3.call("DeleteObject", { Bucket: bucket, Key: "d1" })).$metadata.httpStatusCode).toBe(204);
    const many = await s3.call("DeleteObjects", {
      Bucket: bucket,
      Delete: { Objects: [{ Key: "d2" }, { Key: "d3" }, { Key: "never-was" }] },
    });
    const deleted = (many.Deleted as { Key: string }[]).map((d) => d.Key).sort();
    expect(deleted).toEqual(["d2", "d3", "never-was"]);
    expect(many.Errors ?? []).toEqual([]);
    const left = await s3.call("ListObjectsV2", { Bucket: bucket, Prefix: "d" });
    expect((left.Contents as { Key: string }[]).map((c) => c.Key)).toEqual(["d4"]);
  }, 30_000);
});

describe("ListObjectsV2", () => {
  const bucket = "sdk-list";
  // 300 keys: 3 folders of 90 and 30 at the top.
  const keys = [
    ...["a", "b", "c"].flatMap((folder) => Array.from({ length: 90 }, (_, i) => `${folder}/${String(i).padStart(3, "0")}`)),
    ...Array.from({ length: 30 }, (_, i) => `top-${String(i).padStart(2, "0")}`),
  ].sort();

  beforeAll(async () => {
    await createBucket(bucket);
    await inParallel(keys, 16, (key) => s3.call("PutObject", { Bucket: bucket, Key: key, Body: key }));
  }, 120_000);

  test("pages of MaxKeys with continuation tokens return every key once, in order", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await s3.call("ListObjectsV2", { Bucket: bucket, MaxKeys: 70, ...(token ? { ContinuationToken: token } : {}) });
      const contents = page.Contents as { Key: string; Size: number; ETag: string }[];
      expect(contents.length).toBeLessThanOrEqual(70);
      expect(page.KeyCount).toBe(contents.length);
      seen.push(...contents.map((c) => c.Key));
      token = page.IsTruncated ? (page.NextContinuationToken as string) : undefined;
      pages++;
    } while (token !== undefined);
    expect(pages).toBe(5);
    expect(seen).toEqual(keys);
  }, 60_000);

  test("a prefix and the / delimiter give the folder's keys, or the folders as CommonPrefixes", async () => {
    const folder = await s3.call("ListObjectsV2", { Bucket: bucket, Prefix: "b/" });
    expect((folder.Contents as { Key: string }[]).map((c) => c.Key)).toEqual(keys.filter((k) => k.startsWith("b/")));
    const top = await s3.call("ListObjectsV2", { Bucket: bucket, Delimiter: "/" });
    expect((top.CommonPrefixes as { Prefix: string }[]).map((p) => p.Prefix)).toEqual(["a/", "b/", "c/"]);
    expect((top.Contents as { Key: string }[]).map((c) => c.Key)).toEqual(keys.filter((k) => k.startsWith("top-")));
    const after = await s3.call("ListObjectsV2", { Bucket: bucket, StartAfter: "c/088" });
    expect((after.Contents as { Key: string }[]).map((c) => c.Key)).toEqual(keys.filter((k) => k > "c/088"));
  }, 30_000);

  test("a delimiter with MaxKeys pages over CommonPrefixes too", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.call("ListObjectsV2", {
        Bucket: bucket,
        Delimiter: "/",
        MaxKeys: 2,
        ...(token ? { ContinuationToken: token } : {}),
      });
      seen.push(...((page.CommonPrefixes ?? []) as { Prefix: string }[]).map((p) => p.Prefix));
      seen.push(...((page.Contents ?? []) as { Key: string }[]).map((c) => c.Key));
      token = page.IsTruncated ? (page.NextContinuationToken as string) : undefined;
    } while (token !== undefined);
    expect(seen.sort()).toEqual(["a/", "b/", "c/", ...keys.filter((k) => k.startsWith("top-"))].sort());
  }, 30_000);
});

describe("keys", () => {
  const bucket = "sdk-keys";
  beforeAll(() => createBucket(bucket), 30_000);

  test("keys with spaces, unicode, + % ? # and 1,024 bytes round-trip and list exactly", async () => {
    const keys = [
      "with space",
      "dir with space/file name.txt",
      "ünïcødé/日本語/😀",
      "plus+sign",
      "percent%20literal",
      "question?mark",
      "hash#fragment",
      "amp&eq=semi;colon",
      "tilde~star*quote'paren()",
      "a".repeat(1024),
      "é".repeat(512),
    ];
    for (const key of keys) {
      await s3.call("PutObject", { Bucket: bucket, Key: key, Body: `value of ${key}` });
      expect(await getText(bucket, key)).toBe(`value of ${key}`);
      const head = await s3.call("HeadObject", { Bucket: bucket, Key: key });
      expect(head.ContentLength).toBe(new TextEncoder().encode(`value of ${key}`).length);
    }
    const list = await s3.call("ListObjectsV2", { Bucket: bucket });
    expect((list.Contents as { Key: string }[]).map((c) => c.Key).sort()).toEqual([...keys].sort());
    await expectSdkError(s3.call("PutObject", { Bucket: bucket, Key: "b".repeat(1025), Body: "x" }), "KeyTooLongError", 400);
  }, 60_000);
});

describe("conditional writes", () => {
  const bucket = "sdk-conditional";
  beforeAll(() => createBucket(bucket), 30_000);

  test("IfNoneMatch * creates once: the second put is PreconditionFailed and the first value stays", async () => {
    await s3.call("PutObject", { Bucket: bucket, Key: "once", Body: "first", IfNoneMatch: "*" });
    await expectSdkError(
      s3.call("PutObject", { Bucket: bucket, Key: "once", Body: "second", IfNoneMatch: "*" }),
      "PreconditionFailed",
      412,
    );
    expect(await getText(bucket, "once")).toBe("first");
  }, 30_000);

  test("IfMatch replaces only the version with that ETag", async () => {
    const v1 = await s3.call("PutObject", { Bucket: bucket, Key: "cas", Body: "v1" });
    const v2 = await s3.call("PutObject", { Bucket: bucket, Key: "cas", Body: "v2", IfMatch: v1.ETag as string });
    expect(v2.ETag).toBe(`"${md5Hex("v2")}"`);
    // v1's ETag no longer names the current version.
    await expectSdkError(
      s3.call("PutObject", { Bucket: bucket, Key: "cas", Body: "v3", IfMatch: v1.ETag as string }),
      "PreconditionFailed",
      412,
    );
    expect(await getText(bucket, "cas")).toBe("v2");
    await expectSdkError(s3.call("PutObject", { Bucket: bucket, Key: "no-such", Body: "x", IfMatch: v1.ETag as string }), "NoSuchKey", 404);
  }, 30_000);

  test("10 concurrent IfNoneMatch * puts of one key: exactly one succeeds, and its body is what is stored", async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => s3.call("PutObject", { Bucket: bucket, Key: "race", Body: `writer ${i}`, IfNoneMatch: "*" })),
    );
    const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
    expect(winners.length).toBe(1);
    for (const r of results) {
      if (r.status === "rejected") {
        const error = r.reason as Error & { $metadata?: { httpStatusCode?: number } };
        // S3 answers a lost race 412, or 409 ConditionalRequestConflict when it overlapped.
        expect(["PreconditionFailed", "ConditionalRequestConflict"]).toContain(error.name);
      }
    }
    expect(await getText(bucket, "race")).toBe(`writer ${winners[0]}`);
  }, 60_000);

  test("10 concurrent IfMatch puts naming the same version: exactly one replaces it", async () => {
    const base = await s3.call("PutObject", { Bucket: bucket, Key: "cas-race", Body: "base" });
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        s3.call("PutObject", { Bucket: bucket, Key: "cas-race", Body: `replacer ${i}`, IfMatch: base.ETag as string }),
      ),
    );
    const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
    expect(winners.length).toBe(1);
    for (const r of results)
      if (r.status === "rejected") expect(["PreconditionFailed", "ConditionalRequestConflict"]).toContain((r.reason as Error).name);
    expect(await getText(bucket, "cas-race")).toBe(`replacer ${winners[0]}`);
  }, 60_000);
});

describe("multipart", () => {
  const bucket = "sdk-multipart";
  beforeAll(() => createBucket(bucket), 30_000);

  test("lib-storage Upload of 40 MiB in 5 MiB parts, 4 at a time: ETag -8, bytes equal", async () => {
    const data = crypto.randomBytes(40 * MiB);
    const sent = s3.recordRequests();
    const done = await s3.upload(
      { Bucket: bucket, Key: "big", Body: data, ContentType: "application/x-big" },
      { partSize: 5 * MiB, queueSize: 4 },
    );
    const parts = Array.from({ length: 8 }, (_, i) => data.subarray(i * 5 * MiB, (i + 1) * 5 * MiB));
    expect(done.ETag).toBe(multipartEtag(parts));
    const part_numbers = sent
      .filter((r) => r.method === "PUT" && r.query["partNumber"] !== undefined)
      .map((r) => Number(r.query["partNumber"]));
    expect(part_numbers.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const head = await s3.call("HeadObject", { Bucket: bucket, Key: "big" });
    expect(head.ContentLength).toBe(data.length);
    expect(head.ContentType).toBe("application/x-big");
    const back = await getBytes(bucket, "big");
    expect(sha256Hex(back)).toBe(sha256Hex(data));
    const uploads = await s3.call("ListMultipartUploads", { Bucket: bucket });
    expect(uploads.Uploads ?? []).toEqual([]);

    // A range across the boundary of parts 1 and 2 reads both.
    const from = 5 * MiB - 100;
    const across = await getBytes(bucket, "big", { Range: `bytes=${from}-${from + 199}` });
    expect(Buffer.compare(Buffer.from(across), data.subarray(from, from + 200))).toBe(0);
    // A copy is a single object again: its ETag is the content's MD5.
    const copy = await s3.call("CopyObject", { Bucket: bucket, Key: "big-copy", CopySource: `${bucket}/big` });
    expect((copy.CopyObjectResult as { ETag: string }).ETag).toBe(`"${md5Hex(data)}"`);
    expect(sha256Hex(await getBytes(bucket, "big-copy"))).toBe(sha256Hex(data));
  }, 120_000);

  test("two uploads completing onto one new key with IfNoneMatch *: exactly one wins, and its bytes are the object", async () => {
    const ids: string[] = [];
    const etags: unknown[] = [];
    for (const i of [0, 1]) {
      const id = (await s3.call("CreateMultipartUpload", { Bucket: bucket, Key: "contested" })).UploadId as string;
      ids.push(id);
      etags.push(
        (await s3.call("UploadPart", { Bucket: bucket, Key: "contested", UploadId: id, PartNumber: 1, Body: `upload ${i}` })).ETag,
      );
    }
    const results = await Promise.allSettled(
      ids.map((id, i) =>
        s3.call("CompleteMultipartUpload", {
          Bucket: bucket,
          Key: "contested",
          UploadId: id,
          IfNoneMatch: "*",
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: etags[i] }] },
        }),
      ),
    );
    const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
    expect(winners.length).toBe(1);
    const loser = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(["PreconditionFailed", "ConditionalRequestConflict"]).toContain((loser.reason as Error).name);
    expect(await getText(bucket, "contested")).toBe(`upload ${winners[0]}`);
  }, 60_000);

  test("by hand: parts out of order, ListParts, ListMultipartUploads, Complete; Abort forgets an upload", async () => {
    const created = await s3.call("CreateMultipartUpload", { Bucket: bucket, Key: "manual", Metadata: { kind: "manual" } });
    const upload_id = created.UploadId as string;
    expect(upload_id.length).toBeGreaterThan(0);
    const part1 = crypto.randomBytes(5 * MiB);
    const part2 = crypto.randomBytes(123_456);
    const r2 = await s3.call("UploadPart", { Bucket: bucket, Key: "manual", UploadId: upload_id, PartNumber: 2, Body: part2 });
    const r1 = await s3.call("UploadPart", { Bucket: bucket, Key: "manual", UploadId: upload_id, PartNumber: 1, Body: part1 });
    expect(r1.ETag).toBe(`"${md5Hex(part1)}"`);
    expect(r2.ETag).toBe(`"${md5Hex(part2)}"`);

    const listed = await s3.call("ListParts", { Bucket: bucket, Key: "manual", UploadId: upload_id });
    const parts = listed.Parts as { PartNumber: number; ETag: string; Size: number }[];
    expect(parts.map((p) => [p.PartNumber, p.ETag, p.Size])).toEqual([
      [1, r1.ETag as string, part1.length],
      [2, r2.ETag as string, part2.length],
    ]);
    const uploads = await s3.call("ListMultipartUploads", { Bucket: bucket });
    expect((uploads.Uploads as { Key: string; UploadId: string }[]).map((u) => [u.Key, u.UploadId])).toContainEqual(["manual", upload_id]);

    const completed = await s3.call("CompleteMultipartUpload", {
      Bucket: bucket,
      Key: "manual",
      UploadId: upload_id,
      MultipartUpload: {
        Parts: [
          { PartNumber: 1, ETag: r1.ETag },
          { PartNumber: 2, ETag: r2.ETag },
        ],
      },
    });
    expect(completed.ETag).toBe(multipartEtag([part1, part2]));
    const back = await s3.call("GetObject", { Bucket: bucket, Key: "manual" });
    expect(back.Metadata).toEqual({ kind: "manual" });
    expect(sha256Hex(await bodyBytes(back))).toBe(sha256Hex(Buffer.concat([part1, part2])));

    const doomed = (await s3.call("CreateMultipartUpload", { Bucket: bucket, Key: "doomed" })).UploadId as string;
    await s3.call("UploadPart", { Bucket: bucket, Key: "doomed", UploadId: doomed, PartNumber: 1, Body: "small" });
    const aborted = await s3.call("AbortMultipartUpload", { Bucket: bucket, Key: "doomed", UploadId: doomed });
    expect(aborted.$metadata.httpStatusCode).toBe(204);
    const after = await s3.call("ListMultipartUploads", { Bucket: bucket });
    expect(((after.Uploads ?? []) as { UploadId: string }[]).map((u) => u.UploadId)).not.toContain(doomed);
    await expectSdkError(
      s3.call("UploadPart", { Bucket: bucket, Key: "doomed", UploadId: doomed, PartNumber: 2, Body: "x" }),
      "NoSuchUpload",
      404,
    );
    await expectSdkError(s3.call("HeadObject", { Bucket: bucket, Key: "doomed" }), "NotFound", 404);
  }, 60_000);
});

describe("two gateways on one cluster", () => {
  test("a second gateway sees the first one's buckets, and a multipart upload started on one is finished on the other", async () => {
    const second = await startS3Gateway({ cluster: gateway.cluster });
    const other = sdk.client(second);
    try {
      await createBucket("sdk-two-gateways");
      expect((await other.call("HeadBucket", { Bucket: "sdk-two-gateways" })).$metadata.httpStatusCode).toBe(200);
      const id = (await s3.call("CreateMultipartUpload", { Bucket: "sdk-two-gateways", Key: "shared" })).UploadId as string;
      const part1 = crypto.randomBytes(5 * MiB);
      const part2 = crypto.randomBytes(1000);
      const e1 = (await other.call("UploadPart", { Bucket: "sdk-two-gateways", Key: "shared", UploadId: id, PartNumber: 1, Body: part1 }))
        .ETag;
      const e2 = (await s3.call("UploadPart", { Bucket: "sdk-two-gateways", Key: "shared", UploadId: id, PartNumber: 2, Body: part2 }))
        .ETag;
      const listed = await s3.call("ListParts", { Bucket: "sdk-two-gateways", Key: "shared", UploadId: id });
      expect((listed.Parts as { PartNumber: number }[]).map((p) => p.PartNumber)).toEqual([1, 2]);
      const done = await other.call("CompleteMultipartUpload", {
        Bucket: "sdk-two-gateways",
        Key: "shared",
        UploadId: id,
        MultipartUpload: {
          Parts: [
            { PartNumber: 1, ETag: e1 },
            { PartNumber: 2, ETag: e2 },
          ],
        },
      });
      expect(done.ETag).toBe(multipartEtag([part1, part2]));
      expect(sha256Hex(await getBytes("sdk-two-gateways", "shared"))).toBe(sha256Hex(Buffer.concat([part1, part2])));
    } finally {
      other.destroy();
      await second.stop();
    }
    // Stopping the second gateway left the cluster serving the first.
    expect((await s3.call("HeadBucket", { Bucket: "sdk-two-gateways" })).$metadata.httpStatusCode).toBe(200);
  }, 60_000);
});

describe("presigned URLs", () => {
  const bucket = "sdk-presigned";
  beforeAll(() => createBucket(bucket), 30_000);

  test("a presigned GET fetched with plain fetch returns the object; a presigned PUT stores one", async () => {
    await s3.call("PutObject", { Bucket: bucket, Key: "shared file.txt", Body: "presigned content" });
    const get_url = await s3.presign("GetObject", { Bucket: bucket, Key: "shared file.txt" }, 300);
    expect(get_url).toContain("X-Amz-Signature=");
    const got = await fetch(get_url);
    expect(got.status).toBe(200);
    expect(await got.text()).toBe("presigned content");

    const put_url = await s3.presign("PutObject", { Bucket: bucket, Key: "uploaded.txt" }, 300);
    const put = await fetch(put_url, { method: "PUT", body: "sent with a presigned URL" });
    expect(put.status).toBe(200);
    await put.arrayBuffer();
    expect(await getText(bucket, "uploaded.txt")).toBe("sent with a presigned URL");

    // The signature covers the key: the same query on another key is refused.
    const forged = get_url.replace("shared%20file.txt", "uploaded.txt");
    const refused = await fetch(forged);
    expect(refused.status).toBe(403);
    expect(await refused.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
  }, 30_000);
});

describe("authentication and unsupported operations", () => {
  test("a wrong secret is SignatureDoesNotMatch; an unknown access key is InvalidAccessKeyId", async () => {
    const wrong_secret = sdk.client(gateway, { credentials: { accessKeyId: gateway.access_key, secretAccessKey: "not-the-secret" } });
    await expectSdkError(wrong_secret.call("ListBuckets", {}), "SignatureDoesNotMatch", 403);
    wrong_secret.destroy();
    const unknown = sdk.client(gateway, { credentials: { accessKeyId: "AKIAUNKNOWNKEY000000", secretAccessKey: gateway.secret_key } });
    await expectSdkError(unknown.call("ListBuckets", {}), "InvalidAccessKeyId", 403);
    unknown.destroy();
  }, 30_000);

  test("GetBucketTagging is NotImplemented (501), and the gateway keeps serving", async () => {
    await createBucket("sdk-unsupported");
    await expectSdkError(s3.call("GetBucketTagging", { Bucket: "sdk-unsupported" }), "NotImplemented", 501);
    await expectSdkError(s3.call("GetBucketAcl", { Bucket: "sdk-unsupported" }), "NotImplemented", 501);
    expect((await s3.call("HeadBucket", { Bucket: "sdk-unsupported" })).$metadata.httpStatusCode).toBe(200);
  }, 30_000);
});

describe("the gateway after all of the above", () => {
  test("it is still up, logged no bug and answered no 5xx but NotImplemented", () => {
    expect(gateway.running()).toBe(true);
    expect(gateway.serverErrors()).toEqual([]);
  });
});

/**
 * PutObject with a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body, signed by hand: the seed signature
 * from smithy's signer over the headers, then each chunk's signature chained from the previous
 * one (AWS's chunk string to sign). forge: the second chunk carries a wrong signature.
 */
async function streamingSignedPut(bucket: string, key: string, data: Uint8Array, chunk_size: number, forge: boolean): Promise<Response> {
  const date = new Date();
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += chunk_size) chunks.push(data.subarray(at, at + chunk_size));
  chunks.push(new Uint8Array(0));
  const framing = (size: number) => `${size.toString(16)};chunk-signature=${"0".repeat(64)}\r\n`.length + size + 2;
  const encoded_length = chunks.reduce((sum, c) => sum + framing(c.length), 0);
  const signed = await signRaw(
    sdk,
    gateway,
    {
      method: "PUT",
      path: `/${bucket}/${key}`,
      headers: {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": String(data.length),
        "content-length": String(encoded_length),
      },
    },
    { date, payload_hash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" },
  );
  const authorization = signed.headers!["authorization"]!;
  const seed = /Signature=([0-9a-f]{64})/.exec(authorization)![1]!;
  const amz_date = signed.headers!["x-amz-date"]!;
  const scope = `${amz_date.slice(0, 8)}/${gateway.region}/s3/aws4_request`;
  const signer = sdk.signer(gateway);
  const parts: Uint8Array[] = [];
  let previous = seed;
  for (const [i, chunk] of chunks.entries()) {
    const to_sign = ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, sha256Hex(""), sha256Hex(chunk)].join("\n");
    let signature = await signer.sign(to_sign, { signingDate: date });
    previous = signature;
    if (forge && i === 1) signature = signature.replace(/^./, (c) => (c === "0" ? "1" : "0"));
    parts.push(
      new TextEncoder().encode(`${chunk.length.toString(16)};chunk-signature=${signature}\r\n`),
      chunk,
      new TextEncoder().encode("\r\n"),
    );
  }
  const body = Buffer.concat(parts);
  expect(body.length).toBe(encoded_length);
  const headers = { ...signed.headers! };
  delete headers["host"];
  return fetch(`${gateway.endpoint}/${bucket}/${key}`, { method: "PUT", headers, body });
}
