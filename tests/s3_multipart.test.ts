/**
 * Multipart uploads through the S3 handlers against a real 3-replica cluster: three Clients stand
 * for three gateway processes (create on one, parts on another, complete on a third), parts in
 * random order and re-uploaded, Complete's refusals, concurrent conditional Completes, a retried
 * Complete, abort, empty parts, and the two listings.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { etagOf, multipartMd5 } from "../lib/s3/etag.ts";
import { multipart_handlers, part_size_min_bytes } from "../lib/s3/multipart.ts";
import { objectKey, partRecordsPrefix, uploadRecordKey } from "../lib/s3/names.ts";
import type { S3Context } from "../lib/s3/request.ts";
import { TestCluster } from "./support/cluster.ts";
import { S3Error } from "../lib/s3/s3_error.ts";
import {
  call,
  chunked,
  s3Request,
  childrenNamed,
  errorCode,
  gatewayContext,
  makeBucket,
  md5Hex,
  ok,
  randomBytes,
  textOf,
  xmlOf,
} from "./support/s3_handler_calls.ts";

let cluster: TestCluster;
let gateways: S3Context[];
const bucket = "multi";

const create = multipart_handlers.get("CreateMultipartUpload");
const uploadPart = multipart_handlers.get("UploadPart");
const complete = multipart_handlers.get("CompleteMultipartUpload");
const abort = multipart_handlers.get("AbortMultipartUpload");
const listParts = multipart_handlers.get("ListParts");
const listUploads = multipart_handlers.get("ListMultipartUploads");

beforeAll(async () => {
  cluster = await TestCluster.start(3);
  gateways = [gatewayContext(cluster), gatewayContext(cluster), gatewayContext(cluster)];
  await makeBucket(gateways[0]!, bucket);
}, 60_000);

afterAll(async () => {
  for (const g of gateways ?? []) await g.client.close();
  await cluster?.destroy();
});

async function createUpload(g: S3Context, key: string, headers: Record<string, string> = {}): Promise<string> {
  const response = await ok(call(create, g, { method: "POST", bucket, key, query: { uploads: "" }, headers }));
  const doc = await xmlOf(response);
  expect(doc.name).toBe("InitiateMultipartUploadResult");
  expect(textOf(doc, "Key")).toBe(key);
  return textOf(doc, "UploadId")!;
}

async function sendPart(g: S3Context, key: string, upload_id: string, n: number, body: Uint8Array): Promise<string> {
  const response = await ok(
    call(uploadPart, g, { method: "PUT", bucket, key, query: { uploadId: upload_id, partNumber: String(n) }, body }),
  );
  return response.headers.get("etag")!;
}

function completeBody(parts: [number, string][]): string {
  return `<CompleteMultipartUpload>${parts.map(([n, e]) => `<Part><PartNumber>${n}</PartNumber><ETag>${e}</ETag></Part>`).join("")}</CompleteMultipartUpload>`;
}

function completeCall(g: S3Context, key: string, upload_id: string, parts: [number, string][], headers: Record<string, string> = {}) {
  return call(complete, g, { method: "POST", bucket, key, query: { uploadId: upload_id }, body: completeBody(parts), headers });
}

async function readObject(g: S3Context, key: string): Promise<Uint8Array> {
  const got = await g.client.getStream(objectKey(bucket, key));
  return new Uint8Array(await new Response(got.body).arrayBuffer());
}

function concat(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function expectedEtag(parts: Uint8Array[]): string {
  const md5s = parts.map((p) => new Uint8Array(Buffer.from(md5Hex(p), "hex")));
  return `"${Buffer.from(multipartMd5(md5s)).toString("hex")}-${parts.length}"`;
}

async function recordsLeft(g: S3Context, upload_id: string): Promise<number> {
  let n = 0;
  for await (const _ of g.client.listAll(partRecordsPrefix(upload_id))) n++;
  const upload = await g.client.stat(uploadRecordKey(bucket, upload_id)).then(
    () => 1,
    () => 0,
  );
  return n + upload;
}

describe("multipart upload across gateways", () => {
  test("create on one, parts in random order on another (one re-uploaded: the last wins), complete on a third", async () => {
    const [a, b, c] = gateways as [S3Context, S3Context, S3Context];
    const key = "dir/big object.bin";
    const upload_id = await createUpload(a, key, { "content-type": "application/x-test", "x-amz-meta-colour": "blue" });
    const parts = [randomBytes(part_size_min_bytes), randomBytes(part_size_min_bytes + 17), randomBytes(1234)];
    const etags = new Map<number, string>();
    await Promise.all(
      [3, 1, 2].map(async (n) => {
        // Part 2 first goes with other bytes; the second upload of it replaces them.
        if (n === 2) await sendPart(b, key, upload_id, 2, randomBytes(part_size_min_bytes));
        etags.set(n, await sendPart(b, key, upload_id, n, parts[n - 1]!));
      }),
    );
    for (const [n, etag] of etags) expect(etag).toBe(`"${md5Hex(parts[n - 1]!)}"`);
    const response = await ok(
      completeCall(
        c,
        key,
        upload_id,
        [1, 2, 3].map((n) => [n, etags.get(n)!]),
      ),
    );
    const doc = await xmlOf(response);
    expect(doc.name).toBe("CompleteMultipartUploadResult");
    expect(textOf(doc, "ETag")).toBe(expectedEtag(parts));
    expect(textOf(doc, "Key")).toBe(key);
    expect(await readObject(a, key)).toEqual(concat(parts));
    const header = await a.client.head(objectKey(bucket, key));
    expect(etagOf(header)).toBe(expectedEtag(parts));
    expect(header.metadata?.content_type).toBe("application/x-test");
    expect(await recordsLeft(a, upload_id)).toBe(0);

    // The reply was lost: the client sends the same Complete again and gets the same answer.
    const again = await xmlOf(
      await ok(
        completeCall(
          b,
          key,
          upload_id,
          [1, 2, 3].map((n) => [n, etags.get(n)!]),
        ),
      ),
    );
    expect(textOf(again, "ETag")).toBe(expectedEtag(parts));
    // Other parts than those completed: the upload is gone.
    expect(await errorCode(completeCall(b, key, upload_id, [[1, etags.get(2)!]]))).toBe("NoSuchUpload");
  }, 60_000);

  test("the same upload completed on two gateways at once: both succeed with one ETag", async () => {
    const [a, b, c] = gateways as [S3Context, S3Context, S3Context];
    const key = "twice";
    const upload_id = await createUpload(a, key);
    const body = randomBytes(2000);
    const etag = await sendPart(a, key, upload_id, 1, body);
    const results = await Promise.all([b, c].map((g) => ok(completeCall(g, key, upload_id, [[1, etag]]))));
    const etags = await Promise.all(results.map(async (r) => textOf(await xmlOf(r), "ETag")));
    expect(etags).toEqual([expectedEtag([body]), expectedEtag([body])]);
    expect(await recordsLeft(a, upload_id)).toBe(0);
  });

  test("a gateway that stopped after the native complete left the upload record: Complete again succeeds and removes it", async () => {
    const [a, b] = gateways as [S3Context, S3Context];
    const key = "half-cleaned";
    const upload_id = await createUpload(a, key);
    const saved = (await a.client.get(uploadRecordKey(bucket, upload_id))).value;
    const body = randomBytes(3000);
    const etag = await sendPart(a, key, upload_id, 1, body);
    await ok(completeCall(a, key, upload_id, [[1, etag]]));
    // As if the cleanup had stopped after the part records.
    await a.client.put(uploadRecordKey(bucket, upload_id), saved);
    const listed = await xmlOf(await ok(call(listUploads, a, { bucket, query: { prefix: key } })));
    expect(childrenNamed(listed, "Upload").map((u) => textOf(u, "UploadId"))).toEqual([upload_id]);
    const again = await xmlOf(await ok(completeCall(b, key, upload_id, [[1, etag]])));
    expect(textOf(again, "ETag")).toBe(expectedEtag([body]));
    expect(await recordsLeft(a, upload_id)).toBe(0);
    // Abort removes such a leftover too (its native upload is gone).
    await a.client.put(uploadRecordKey(bucket, upload_id), saved);
    expect((await ok(call(abort, b, { method: "DELETE", bucket, key, query: { uploadId: upload_id } }))).status).toBe(204);
    expect(await recordsLeft(a, upload_id)).toBe(0);
    expect(await readObject(a, key)).toEqual(body);
  });

  test("an upload whose only part is empty completes to an empty object", async () => {
    const [a] = gateways as [S3Context];
    const upload_id = await createUpload(a, "empty");
    const etag = await sendPart(a, "empty", upload_id, 1, new Uint8Array(0));
    expect(etag).toBe(`"${md5Hex(new Uint8Array(0))}"`);
    const doc = await xmlOf(await ok(completeCall(a, "empty", upload_id, [[1, etag]])));
    expect(textOf(doc, "ETag")).toBe(expectedEtag([new Uint8Array(0)]));
    expect((await a.client.head(objectKey(bucket, "empty"))).size).toBe(0);
  });

  test("an empty last part after a full one adds nothing to the bytes but counts in the ETag", async () => {
    const [a] = gateways as [S3Context];
    const upload_id = await createUpload(a, "empty-last");
    const full = randomBytes(part_size_min_bytes);
    const e1 = await sendPart(a, "empty-last", upload_id, 1, full);
    const e2 = await sendPart(a, "empty-last", upload_id, 2, new Uint8Array(0));
    const doc = await xmlOf(
      await ok(
        completeCall(a, "empty-last", upload_id, [
          [1, e1],
          [2, e2],
        ]),
      ),
    );
    expect(textOf(doc, "ETag")).toBe(expectedEtag([full, new Uint8Array(0)]));
    expect(await readObject(a, "empty-last")).toEqual(full);
  });

  test("Content-MD5 is checked: a wrong one is BadDigest and leaves no part", async () => {
    const [a] = gateways as [S3Context];
    const upload_id = await createUpload(a, "digest");
    const body = randomBytes(1000);
    const query = { uploadId: upload_id, partNumber: "1" };
    const wrong = Buffer.from(new Uint8Array(16)).toString("base64");
    const bad = await call(uploadPart, a, { method: "PUT", bucket, key: "digest", query, body, headers: { "content-md5": wrong } });
    expect(await errorCode(bad)).toBe("BadDigest");
    expect(await recordsLeft(a, upload_id)).toBe(1); // the upload record only
    const garbled = await call(uploadPart, a, { method: "PUT", bucket, key: "digest", query, body, headers: { "content-md5": "abc" } });
    expect(await errorCode(garbled)).toBe("InvalidDigest");
    const right = Buffer.from(md5Hex(body), "hex").toString("base64");
    await ok(call(uploadPart, a, { method: "PUT", bucket, key: "digest", query, body, headers: { "content-md5": right } }));
    await ok(call(abort, a, { method: "DELETE", bucket, key: "digest", query: { uploadId: upload_id } }));
  });
});

describe("UploadPart writes no part unless the whole body arrived verified", () => {
  test("a body whose check fails at its end, or shorter than its size: the error, and no part record", async () => {
    const [a] = gateways as [S3Context];
    const upload_id = await createUpload(a, "unverified");
    const query = { uploadId: upload_id, partNumber: "1" };
    async function* failsAtEnd(): AsyncGenerator<Uint8Array> {
      yield randomBytes(part_size_min_bytes);
      throw new S3Error("BadDigest", "the trailer's checksum does not match");
    }
    const request = s3Request({ method: "PUT", bucket, key: "unverified", query });
    const failed = await uploadPart!({ ...request, body: failsAtEnd(), size: part_size_min_bytes }, a).catch((e: unknown) => e);
    expect((failed as S3Error).code).toBe("BadDigest");
    const short = await uploadPart!({ ...request, body: chunked(randomBytes(10)), size: 11 }, a).catch((e: unknown) => e);
    expect((short as S3Error).code).toBe("IncompleteBody");
    expect(await recordsLeft(a, upload_id)).toBe(1); // the upload record only
    await ok(call(abort, a, { method: "DELETE", bucket, key: "unverified", query: { uploadId: upload_id } }));
  });
});

describe("Complete refuses", () => {
  test("a wrong ETag, a missing part, an unordered list, a small middle part, no parts; the upload stays usable", async () => {
    const [a, b] = gateways as [S3Context, S3Context];
    const key = "refused";
    const upload_id = await createUpload(a, key);
    const small = randomBytes(1000);
    const e1 = await sendPart(b, key, upload_id, 1, small);
    const e2 = await sendPart(b, key, upload_id, 2, small);
    const list = (...numbers: number[]): [number, string][] => numbers.map((n) => [n, n === 1 ? e1 : e2]);
    const refusals: [[number, string][], string][] = [
      [[[1, `"${"0".repeat(32)}"`]], "InvalidPart"],
      [list(1, 3), "InvalidPart"],
      [list(2, 1), "InvalidPartOrder"],
      [list(1, 2), "EntityTooSmall"],
      [[], "MalformedXML"],
    ];
    for (const [parts, code] of refusals) expect(await errorCode(completeCall(a, key, upload_id, parts))).toBe(code);
    // A small part is fine as the last one.
    await ok(completeCall(a, key, upload_id, [[2, e2]]));
    expect(await readObject(a, key)).toEqual(small);
  });

  test("bad input: part number out of range, malformed or foreign upload ids, reserved metadata", async () => {
    const [a] = gateways as [S3Context];
    const upload_id = await createUpload(a, "k");
    for (const partNumber of ["0", "10001", "x"]) {
      const r = await call(uploadPart, a, { method: "PUT", bucket, key: "k", query: { uploadId: upload_id, partNumber }, body: "x" });
      expect(await errorCode(r)).toBe("InvalidArgument");
    }
    for (const id of ["nope", "1.00", `${upload_id.split(".")[0]}.${"0".repeat(16)}`]) {
      const r = await call(uploadPart, a, { method: "PUT", bucket, key: "k", query: { uploadId: id, partNumber: "1" }, body: "x" });
      expect(await errorCode(r)).toBe("NoSuchUpload");
    }
    // The right id with another key.
    const r = await call(uploadPart, a, {
      method: "PUT",
      bucket,
      key: "other",
      query: { uploadId: upload_id, partNumber: "1" },
      body: "x",
    });
    expect(await errorCode(r)).toBe("NoSuchUpload");
    const reserved = await call(create, a, { method: "POST", bucket, key: "k", headers: { "x-amz-meta-toastyfs-s3-parts": "3" } });
    expect(await errorCode(reserved)).toBe("InvalidArgument");
    const large = await call(create, a, { method: "POST", bucket, key: "k", headers: { "x-amz-meta-big": "x".repeat(2100) } });
    expect(await errorCode(large)).toBe("MetadataTooLarge");
    const no_bucket = await call(create, a, { method: "POST", bucket: "nobucket", key: "k" });
    expect(await errorCode(no_bucket)).toBe("NoSuchBucket");
    await ok(call(abort, a, { method: "DELETE", bucket, key: "k", query: { uploadId: upload_id } }));
  });
});

describe("conditions and abort", () => {
  test("two uploads of one key completed at once with If-None-Match: * — exactly one wins", async () => {
    const [a, b, c] = gateways as [S3Context, S3Context, S3Context];
    const key = "race";
    const bodies = [randomBytes(3000), randomBytes(4000)];
    const ids = [await createUpload(a, key), await createUpload(a, key)];
    const etags = [await sendPart(b, key, ids[0]!, 1, bodies[0]!), await sendPart(c, key, ids[1]!, 1, bodies[1]!)];
    const results = await Promise.all(
      [b, c].map((g, i) =>
        call(complete, g, {
          method: "POST",
          bucket,
          key,
          query: { uploadId: ids[i]! },
          body: completeBody([[1, etags[i]!]]),
          headers: { "if-none-match": "*" },
        }),
      ),
    );
    const won = results.filter((r) => r instanceof Response);
    expect(won.length).toBe(1);
    expect(await errorCode(results.find((r) => !(r instanceof Response))!)).toBe("PreconditionFailed");
    const winner = results.indexOf(won[0]!);
    expect(await readObject(a, key)).toEqual(bodies[winner]!);
    // The loser's upload stays open (S3 too): it may be aborted.
    await ok(call(abort, a, { method: "DELETE", bucket, key, query: { uploadId: ids[1 - winner]! } }));
  });

  test("abort, then complete, part, abort or list parts: NoSuchUpload; its records are gone", async () => {
    const [a, b] = gateways as [S3Context, S3Context];
    const key = "aborted";
    const upload_id = await createUpload(a, key);
    const etag = await sendPart(b, key, upload_id, 1, randomBytes(100));
    const aborted = await ok(call(abort, b, { method: "DELETE", bucket, key, query: { uploadId: upload_id } }));
    expect(aborted.status).toBe(204);
    expect(await recordsLeft(a, upload_id)).toBe(0);
    expect(await errorCode(completeCall(a, key, upload_id, [[1, etag]]))).toBe("NoSuchUpload");
    expect(await errorCode(call(abort, a, { method: "DELETE", bucket, key, query: { uploadId: upload_id } }))).toBe("NoSuchUpload");
    expect(await errorCode(call(listParts, a, { bucket, key, query: { uploadId: upload_id } }))).toBe("NoSuchUpload");
    const part = await call(uploadPart, a, { method: "PUT", bucket, key, query: { uploadId: upload_id, partNumber: "2" }, body: "x" });
    expect(await errorCode(part)).toBe("NoSuchUpload");
  });
});

describe("listings", () => {
  test("ListParts pages by part-number-marker", async () => {
    const [a] = gateways as [S3Context];
    const key = "parts";
    const upload_id = await createUpload(a, key);
    const etags: string[] = [];
    for (const n of [1, 2, 3, 5, 8]) etags.push(await sendPart(a, key, upload_id, n, new TextEncoder().encode(`part ${n}`)));
    const seen: number[] = [];
    let marker = "0";
    for (;;) {
      const doc = await xmlOf(
        await ok(call(listParts, a, { bucket, key, query: { uploadId: upload_id, "max-parts": "2", "part-number-marker": marker } })),
      );
      expect(textOf(doc, "StorageClass")).toBe("STANDARD");
      for (const p of childrenNamed(doc, "Part")) {
        seen.push(Number(textOf(p, "PartNumber")));
        expect(textOf(p, "Size")).toBe(String(`part ${textOf(p, "PartNumber")}`.length));
      }
      if (textOf(doc, "IsTruncated") !== "true") break;
      marker = textOf(doc, "NextPartNumberMarker")!;
    }
    expect(seen).toEqual([1, 2, 3, 5, 8]);
    const first = await xmlOf(await ok(call(listParts, a, { bucket, key, query: { uploadId: upload_id } })));
    expect(childrenNamed(first, "Part").map((p) => textOf(p, "ETag"))).toEqual(etags);
    await ok(call(abort, a, { method: "DELETE", bucket, key, query: { uploadId: upload_id } }));
  });

  test("ListMultipartUploads: by key then initiation, prefix and delimiter, markers", async () => {
    const [a] = gateways as [S3Context];
    const b2 = "uploads";
    await makeBucket(a, b2);
    const made: [string, string][] = [];
    for (const key of ["b/2", "a", "b/1", "c", "a"]) {
      const response = await ok(call(create, a, { method: "POST", bucket: b2, key, query: { uploads: "" } }));
      made.push([key, textOf(await xmlOf(response), "UploadId")!]);
    }
    const expected = [made[1]!, made[4]!, made[2]!, made[0]!, made[3]!];
    const all = await xmlOf(await ok(call(listUploads, a, { bucket: b2, query: { uploads: "" } })));
    expect(childrenNamed(all, "Upload").map((u) => [textOf(u, "Key"), textOf(u, "UploadId")])).toEqual(expected);
    // Pages of two.
    const paged: [string, string][] = [];
    let query: Record<string, string> = { "max-uploads": "2" };
    for (;;) {
      const doc = await xmlOf(await ok(call(listUploads, a, { bucket: b2, query })));
      for (const u of childrenNamed(doc, "Upload")) paged.push([textOf(u, "Key")!, textOf(u, "UploadId")!]);
      if (textOf(doc, "IsTruncated") !== "true") break;
      query = { "max-uploads": "2", "key-marker": textOf(doc, "NextKeyMarker")!, "upload-id-marker": textOf(doc, "NextUploadIdMarker")! };
    }
    expect(paged).toEqual(expected);
    const grouped = await xmlOf(await ok(call(listUploads, a, { bucket: b2, query: { delimiter: "/" } })));
    expect(childrenNamed(grouped, "Upload").map((u) => textOf(u, "Key"))).toEqual(["a", "a", "c"]);
    expect(childrenNamed(grouped, "CommonPrefixes").map((p) => textOf(p, "Prefix"))).toEqual(["b/"]);
    // One at a time with the delimiter: the common prefix once, then on past it.
    const seen: string[] = [];
    let markers: Record<string, string> = {};
    for (;;) {
      const doc = await xmlOf(await ok(call(listUploads, a, { bucket: b2, query: { delimiter: "/", "max-uploads": "1", ...markers } })));
      seen.push(...childrenNamed(doc, "Upload").map((u) => textOf(u, "Key")!));
      seen.push(...childrenNamed(doc, "CommonPrefixes").map((p) => textOf(p, "Prefix")!));
      if (textOf(doc, "IsTruncated") !== "true") break;
      markers = { "key-marker": textOf(doc, "NextKeyMarker")!, "upload-id-marker": textOf(doc, "NextUploadIdMarker")! };
    }
    expect(seen).toEqual(["a", "a", "b/", "c"]);
    const prefixed = await xmlOf(await ok(call(listUploads, a, { bucket: b2, query: { prefix: "b/" } })));
    expect(childrenNamed(prefixed, "Upload").map((u) => textOf(u, "Key"))).toEqual(["b/1", "b/2"]);
  });
});
