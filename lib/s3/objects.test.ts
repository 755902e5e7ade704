import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { handlerWorld, s3Request, type HandlerWorld, type RequestParts } from "../../tests/support/s3_handlers.ts";
import { bucket_handlers } from "./buckets.ts";
import { object_handlers } from "./objects.ts";
import type { S3Operation } from "./router.ts";

let world: HandlerWorld;
const bucket = "objects";

beforeAll(async () => {
  world = await handlerWorld();
  await bucket_handlers.get("CreateBucket")!(s3Request({ method: "PUT", bucket }), world.context);
}, 60_000);

afterAll(async () => {
  await world?.close();
});

function call(operation: S3Operation, parts: Omit<RequestParts, "bucket"> & { bucket?: string }): Promise<Response> {
  return object_handlers.get(operation)!(s3Request({ bucket, ...parts }), world.context);
}

function put(key: string, body: Uint8Array | string, headers: Record<string, string> = {}): Promise<Response> {
  return call("PutObject", { method: "PUT", key, body, headers });
}

function md5Hex(bytes: Uint8Array | string): string {
  return new Bun.CryptoHasher("md5").update(bytes).digest("hex");
}

function pattern(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return out;
}

describe("PutObject and GetObject", () => {
  test("a put's ETag is the content's MD5; a get returns the bytes, type, metadata and validators", async () => {
    const r = await put("docs/a.txt", "hello, s3", { "content-type": "text/plain", "x-amz-meta-Color": "blue", "x-amz-meta-n": "1" });
    expect(r.status).toBe(200);
    expect(r.headers.get("etag")).toBe(`"${md5Hex("hello, s3")}"`);
    const get = await call("GetObject", { method: "GET", key: "docs/a.txt" });
    expect(get.status).toBe(200);
    expect(await get.text()).toBe("hello, s3");
    expect(get.headers.get("content-type")).toBe("text/plain");
    expect(get.headers.get("content-length")).toBe("9");
    expect(get.headers.get("etag")).toBe(r.headers.get("etag"));
    expect(get.headers.get("x-amz-meta-color")).toBe("blue");
    expect(get.headers.get("x-amz-meta-n")).toBe("1");
    expect(get.headers.get("accept-ranges")).toBe("bytes");
    const modified = Date.parse(get.headers.get("last-modified")!);
    expect(Math.abs(modified - Date.now())).toBeLessThan(60_000);
  });

  test("encryption, Object Lock, tags, grants and other ACLs or storage classes are NotImplemented, and nothing is stored", async () => {
    const refused: Record<string, string>[] = [
      { "x-amz-server-side-encryption": "AES256" },
      { "x-amz-server-side-encryption-customer-algorithm": "AES256" },
      { "x-amz-object-lock-mode": "GOVERNANCE" },
      { "x-amz-tagging": "a=b" },
      { "x-amz-grant-read": "id=x" },
      { "x-amz-acl": "public-read" },
      { "x-amz-storage-class": "GLACIER" },
    ];
    for (const headers of refused) await expect(put("refused", "x", headers)).rejects.toMatchObject({ code: "NotImplemented" });
    await expect(call("HeadObject", { method: "HEAD", key: "refused" })).rejects.toMatchObject({ code: "NoSuchKey" });
    expect((await put("accepted", "x", { "x-amz-acl": "private", "x-amz-storage-class": "STANDARD" })).status).toBe(200);
  });

  test("without a Content-Type the object reads as binary/octet-stream; metadata bytes round-trip", async () => {
    await put("plain", "x", { "x-amz-meta-raw": "caf\u00e9" });
    const head = await call("HeadObject", { method: "HEAD", key: "plain" });
    expect(head.headers.get("content-type")).toBe("binary/octet-stream");
    expect(head.headers.get("x-amz-meta-raw")).toBe("caf\u00e9");
    expect(head.headers.get("content-length")).toBe("1");
    expect(head.body).toBeNull();
  });

  test("bad metadata is refused, naming the header or the limit", async () => {
    await expect(put("m", "x", { "x-amz-meta-bad_name": "1" })).rejects.toMatchObject({
      code: "InvalidArgument",
      message: expect.stringContaining("x-amz-meta-bad_name"),
    });
    await expect(put("m", "x", { "x-amz-meta-toastyfs-s3-parts": "2" })).rejects.toMatchObject({ code: "InvalidArgument" });
    await expect(put("m", "x", { "x-amz-meta-big": "v".repeat(2045) })).rejects.toMatchObject({
      code: "MetadataTooLarge",
      message: expect.stringContaining("2048"),
    });
    await expect(put("m", "x", { "content-type": "t".repeat(300) })).rejects.toMatchObject({ code: "InvalidArgument" });
    await expect(call("HeadObject", { method: "HEAD", key: "m" })).rejects.toMatchObject({ code: "NoSuchKey" });
  });

  test("a body of unknown length needs aws-chunked; over 5 GiB is EntityTooLarge", async () => {
    await expect(call("PutObject", { method: "PUT", key: "n", body: "abc", size: null })).rejects.toMatchObject({
      code: "MissingContentLength",
      status: 411,
    });
    await expect(call("PutObject", { method: "PUT", key: "n", body: "abc", size: 6 * 1024 ** 3 })).rejects.toMatchObject({
      code: "EntityTooLarge",
    });
    const chunked = await call("PutObject", {
      method: "PUT",
      key: "n",
      body: "abc",
      size: null,
      headers: { "content-encoding": "aws-chunked" },
    });
    expect(chunked.status).toBe(200);
  });

  test("a body that fails while it is read (a bad digest, a cut connection) writes nothing, inline or as an upload", async () => {
    for (const size of [2000, 6 * 1024 * 1024]) {
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield pattern(size - 1000);
        throw Object.assign(new Error("BadDigest"), { name: "S3Error" });
      }
      await expect(call("PutObject", { method: "PUT", key: `torn-${size}`, body: failing(), size })).rejects.toThrow("BadDigest");
      await expect(call("HeadObject", { method: "HEAD", key: `torn-${size}` })).rejects.toMatchObject({ code: "NoSuchKey" });
    }
  }, 30_000);

  test("conditional writes: If-None-Match * creates only; If-Match replaces only that version", async () => {
    expect((await put("cas", "v1", { "if-none-match": "*" })).status).toBe(200);
    await expect(put("cas", "v2", { "if-none-match": "*" })).rejects.toMatchObject({ code: "PreconditionFailed", status: 412 });
    const etag1 = `"${md5Hex("v1")}"`;
    expect((await put("cas", "v2", { "if-match": etag1 })).status).toBe(200);
    await expect(put("cas", "v3", { "if-match": etag1 })).rejects.toMatchObject({ code: "PreconditionFailed" });
    expect(await (await call("GetObject", { method: "GET", key: "cas" })).text()).toBe("v2");
  });

  test("a missing bucket is NoSuchBucket for every object operation", async () => {
    for (const [operation, method] of [
      ["PutObject", "PUT"],
      ["GetObject", "GET"],
      ["HeadObject", "HEAD"],
      ["DeleteObject", "DELETE"],
    ] as const)
      await expect(call(operation, { method, bucket: "no-such-bucket", key: "k", body: "x" })).rejects.toMatchObject({
        code: "NoSuchBucket",
      });
  });

  test("a read goes to the object first, yet a miss still tells a missing bucket from a missing key, and a bad name is refused first", async () => {
    // GetObject and HeadObject read the object before the bucket (object_get.ts): the three
    // answers must be what a bucket-first order gives.
    for (const [operation, method] of [
      ["GetObject", "GET"],
      ["HeadObject", "HEAD"],
    ] as const) {
      await expect(call(operation, { method, key: "never-put" })).rejects.toMatchObject({ code: "NoSuchKey" });
      await expect(call(operation, { method, bucket: "no-such-bucket", key: "k", headers: { range: "bytes=5-9" } })).rejects.toMatchObject({
        code: "NoSuchBucket",
      });
      await expect(call(operation, { method, bucket: "Bad_Name", key: "k" })).rejects.toMatchObject({ code: "InvalidBucketName" });
    }
  });
});

describe("ranges and conditional reads", () => {
  const body = "0123456789";
  beforeAll(async () => {
    await put("r", body);
    await put("empty", "");
  });

  async function ranged(range: string, key = "r"): Promise<Response> {
    return call("GetObject", { method: "GET", key, headers: { range } });
  }

  test("bytes=A-B, A- and -N are 206 with Content-Range", async () => {
    for (const [range, text, content_range] of [
      ["bytes=2-5", "2345", "bytes 2-5/10"],
      ["bytes=7-", "789", "bytes 7-9/10"],
      ["bytes=-3", "789", "bytes 7-9/10"],
      ["bytes=8-100", "89", "bytes 8-9/10"],
      ["bytes=-100", body, "bytes 0-9/10"],
    ]) {
      const r = await ranged(range!);
      expect(r.status).toBe(206);
      expect(await r.text()).toBe(text!);
      expect(r.headers.get("content-range")).toBe(content_range!);
      expect(r.headers.get("content-length")).toBe(String(text!.length));
    }
  });

  test("a range outside the object is 416 InvalidRange with Content-Range: bytes */SIZE", async () => {
    for (const [range, key, size] of [
      ["bytes=10-20", "r", 10],
      ["bytes=-0", "r", 10],
      ["bytes=0-0", "empty", 0],
      ["bytes=-5", "empty", 0],
    ] as const) {
      const r = await ranged(range, key);
      expect(r.status).toBe(416);
      expect(r.headers.get("content-range")).toBe(`bytes */${size}`);
      expect(await r.text()).toContain("<Code>InvalidRange</Code>");
    }
  });

  test("several ranges, or a Range that does not parse, are ignored: the whole object, 200", async () => {
    for (const range of ["bytes=0-1,4-5", "bytes=5-2", "items=0-1", "bytes=abc"]) {
      const r = await ranged(range);
      expect(r.status).toBe(200);
      expect(await r.text()).toBe(body);
    }
  });

  test("HeadObject answers a range's headers without a body", async () => {
    const r = await call("HeadObject", { method: "HEAD", key: "r", headers: { range: "bytes=-4" } });
    expect(r.status).toBe(206);
    expect(r.headers.get("content-range")).toBe("bytes 6-9/10");
    expect(r.headers.get("content-length")).toBe("4");
  });

  test("If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since as RFC 9110 orders them", async () => {
    const etag = `"${md5Hex(body)}"`;
    const get = (headers: Record<string, string>) => call("GetObject", { method: "GET", key: "r", headers });
    const past = new Date(Date.now() - 3600_000).toUTCString();
    const future = new Date(Date.now() + 3600_000).toUTCString();
    expect((await get({ "if-match": etag })).status).toBe(200);
    await expect(get({ "if-match": '"0000"' })).rejects.toMatchObject({ code: "PreconditionFailed" });
    const not_modified = await get({ "if-none-match": etag });
    expect(not_modified.status).toBe(304);
    expect(not_modified.headers.get("etag")).toBe(etag);
    expect(not_modified.body).toBeNull();
    expect((await get({ "if-none-match": '"0000"' })).status).toBe(200);
    expect((await get({ "if-modified-since": future })).status).toBe(304);
    expect((await get({ "if-modified-since": past })).status).toBe(200);
    await expect(get({ "if-unmodified-since": past })).rejects.toMatchObject({ code: "PreconditionFailed" });
    // If-Match holds, so If-Unmodified-Since is not looked at; If-None-Match fails, so If-Modified-Since is not.
    expect((await get({ "if-match": etag, "if-unmodified-since": past })).status).toBe(200);
    expect((await get({ "if-none-match": '"0000"', "if-modified-since": future })).status).toBe(200);
    // A date that does not parse is ignored.
    expect((await get({ "if-modified-since": "yesterday" })).status).toBe(200);
    // Conditions are judged before the range.
    expect((await call("GetObject", { method: "GET", key: "r", headers: { "if-none-match": etag, range: "bytes=50-60" } })).status).toBe(
      304,
    );
    expect((await call("HeadObject", { method: "HEAD", key: "r", headers: { "if-none-match": etag } })).status).toBe(304);
  });

  test("response-* query parameters override the response headers", async () => {
    const r = await call("GetObject", {
      method: "GET",
      key: "r",
      query:
        "response-content-type=application/json&response-content-disposition=attachment%3B%20filename%3D%22r.json%22&response-cache-control=no-cache",
    });
    expect(r.headers.get("content-type")).toBe("application/json");
    expect(r.headers.get("content-disposition")).toBe('attachment; filename="r.json"');
    expect(r.headers.get("cache-control")).toBe("no-cache");
    await expect(call("GetObject", { method: "GET", key: "r", query: "response-content-type=a%0Ab" })).rejects.toMatchObject({
      code: "InvalidArgument",
    });
  });

  test("partNumber and versionId are NotImplemented rather than answered with other bytes", async () => {
    await expect(call("GetObject", { method: "GET", key: "r", query: "partNumber=1" })).rejects.toMatchObject({ code: "NotImplemented" });
    await expect(call("GetObject", { method: "GET", key: "r", query: "versionId=3" })).rejects.toMatchObject({ code: "NotImplemented" });
  });

  test("an object replaced while it streams ends the stream with an error, never with the new bytes", async () => {
    const size = 24 * 1024 * 1024;
    await put("moving", pattern(size, 1));
    const r = await call("GetObject", { method: "GET", key: "moving" });
    expect(r.status).toBe(200);
    const reader = r.body!.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    await put("moving", pattern(size, 2));
    let got = first.value!.byteLength;
    await expect(
      (async () => {
        for (;;) {
          const chunk = await reader.read();
          if (chunk.done) return;
          got += chunk.value.byteLength;
        }
      })(),
    ).rejects.toMatchObject({ code: "object_changed" });
    expect(got).toBeLessThan(size);
  }, 60_000);
});

describe("DeleteObject", () => {
  test("204 whether or not the key existed; If-Match makes it conditional", async () => {
    await put("d", "x");
    expect((await call("DeleteObject", { method: "DELETE", key: "d" })).status).toBe(204);
    await expect(call("HeadObject", { method: "HEAD", key: "d" })).rejects.toMatchObject({ code: "NoSuchKey" });
    expect((await call("DeleteObject", { method: "DELETE", key: "d" })).status).toBe(204);
    await put("d", "y");
    await expect(call("DeleteObject", { method: "DELETE", key: "d", headers: { "if-match": '"0000"' } })).rejects.toMatchObject({
      code: "PreconditionFailed",
    });
    expect((await call("DeleteObject", { method: "DELETE", key: "d", headers: { "if-match": `"${md5Hex("y")}"` } })).status).toBe(204);
  });
});

describe("CopyObject", () => {
  const copy = (key: string, headers: Record<string, string>) => call("CopyObject", { method: "PUT", key, headers });

  test("COPY keeps the source's type and metadata; the result has the ETag and LastModified", async () => {
    await put("src", "copied bytes", { "content-type": "text/x-src", "x-amz-meta-a": "1" });
    const r = await copy("dst", { "x-amz-copy-source": `/${bucket}/src` });
    const xml = await r.text();
    expect(xml).toContain("<CopyObjectResult");
    expect(xml).toContain(`<ETag>&quot;${md5Hex("copied bytes")}&quot;</ETag>`);
    expect(xml).toMatch(/<LastModified>\d{4}-\d\d-\d\dT[\d:.]+Z<\/LastModified>/);
    const get = await call("GetObject", { method: "GET", key: "dst" });
    expect(await get.text()).toBe("copied bytes");
    expect(get.headers.get("content-type")).toBe("text/x-src");
    expect(get.headers.get("x-amz-meta-a")).toBe("1");
  });

  test("REPLACE takes the request's metadata; copying onto itself needs REPLACE", async () => {
    await put("self", "same", { "x-amz-meta-a": "1" });
    await expect(copy("self", { "x-amz-copy-source": `${bucket}/self` })).rejects.toMatchObject({ code: "InvalidRequest" });
    const r = await copy("self", {
      "x-amz-copy-source": `${bucket}/self`,
      "x-amz-metadata-directive": "REPLACE",
      "x-amz-meta-b": "2",
      "content-type": "text/new",
    });
    expect(r.status).toBe(200);
    const head = await call("HeadObject", { method: "HEAD", key: "self" });
    expect(head.headers.get("x-amz-meta-a")).toBeNull();
    expect(head.headers.get("x-amz-meta-b")).toBe("2");
    expect(head.headers.get("content-type")).toBe("text/new");
    expect(await (await call("GetObject", { method: "GET", key: "self" })).text()).toBe("same");
  });

  test("percent-encoded sources, source conditions, missing sources and versionId", async () => {
    await put("with space/é", "enc");
    expect((await copy("enc-copy", { "x-amz-copy-source": `/${bucket}/with%20space/%C3%A9` })).status).toBe(200);
    expect(await (await call("GetObject", { method: "GET", key: "enc-copy" })).text()).toBe("enc");
    await expect(copy("c", { "x-amz-copy-source": `/${bucket}/enc-copy`, "x-amz-copy-source-if-match": '"0000"' })).rejects.toMatchObject({
      code: "PreconditionFailed",
    });
    await expect(
      copy("c", { "x-amz-copy-source": `/${bucket}/enc-copy`, "x-amz-copy-source-if-none-match": `"${md5Hex("enc")}"` }),
    ).rejects.toMatchObject({
      code: "PreconditionFailed",
    });
    await expect(copy("c", { "x-amz-copy-source": `/${bucket}/absent` })).rejects.toMatchObject({ code: "NoSuchKey" });
    await expect(copy("c", { "x-amz-copy-source": `/no-such-bucket/x` })).rejects.toMatchObject({ code: "NoSuchBucket" });
    await expect(copy("c", { "x-amz-copy-source": `/${bucket}/enc-copy?versionId=1` })).rejects.toMatchObject({ code: "NotImplemented" });
    await expect(copy("c", { "x-amz-copy-source": `/${bucket}` })).rejects.toMatchObject({ code: "InvalidArgument" });
    await expect(call("HeadObject", { method: "HEAD", key: "c" })).rejects.toMatchObject({ code: "NoSuchKey" });
  });

  test("a copy of a multi-block object streams the source into the destination", async () => {
    const big = pattern(10 * 1024 * 1024, 3);
    await put("big-src", big);
    const xml = await (await copy("big-dst", { "x-amz-copy-source": `/${bucket}/big-src` })).text();
    expect(xml).toContain(md5Hex(big));
    const back = new Uint8Array(await (await call("GetObject", { method: "GET", key: "big-dst" })).arrayBuffer());
    expect(Buffer.compare(back, big)).toBe(0);
  }, 30_000);

  test("destination conditions: If-None-Match * refuses to replace", async () => {
    await put("dst-exists", "old");
    await expect(copy("dst-exists", { "x-amz-copy-source": `/${bucket}/src`, "if-none-match": "*" })).rejects.toMatchObject({
      code: "PreconditionFailed",
    });
    expect(await (await call("GetObject", { method: "GET", key: "dst-exists" })).text()).toBe("old");
  });
});
