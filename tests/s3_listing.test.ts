/**
 * ListObjectsV2, ListObjects and DeleteObjects through the S3 handlers against a real 3-replica
 * cluster: ~2,500 keys in nested prefixes listed with delimiters and pagination and compared with
 * a model computed here, odd keys with and without encoding-type=url, and DeleteObjects quiet and
 * verbose with missing keys.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { delete_objects_handlers } from "../lib/s3/delete_objects.ts";
import { listing_handlers } from "../lib/s3/listing.ts";
import { byteOrder } from "../lib/s3/multipart_lists.ts";
import { objectKey } from "../lib/s3/names.ts";
import type { S3Context } from "../lib/s3/request.ts";
import type { XmlElement } from "../lib/s3/xml.ts";
import { TestCluster } from "./support/cluster.ts";
import { call, child, childrenNamed, errorCode, gatewayContext, makeBucket, ok, textOf, xmlOf } from "./support/s3_handler_calls.ts";

let cluster: TestCluster;
let gateways: S3Context[];
const bucket = "listed";

const v2 = listing_handlers.get("ListObjectsV2");
const v1 = listing_handlers.get("ListObjects");
const deleteObjects = delete_objects_handlers.get("DeleteObjects");

const nested: string[] = [];
for (let a = 0; a < 10; a++) for (let b = 0; b < 10; b++) for (let c = 0; c < 25; c++) nested.push(`d${a}/s${b}/f${c}`);
const odd = ["odd/a b", "odd/x&y<z>'\"", "odd/ü/é", "odd/plus+key", "odd/pct%20", "odd/q?=&", "odd/tab\tkey", "odd/xx--yy--zz"];
const control = ["ctl/\u0001one", "ctl/two\u001f"];
const keys = [...nested, ...odd, ...control, "top", "d1", "d1-x", "d1.x"].sort(byteOrder);

beforeAll(async () => {
  cluster = await TestCluster.start(3);
  gateways = [0, 1, 2, 3].map(() => gatewayContext(cluster));
  await makeBucket(gateways[0]!, bucket);
  // Four writers at once, as four gateways would.
  await Promise.all(
    gateways.map(async (g, i) => {
      for (let k = i; k < keys.length; k += gateways.length)
        await g.client.put(objectKey(bucket, keys[k]!), new TextEncoder().encode(keys[k]!));
    }),
  );
  // A native key under the bucket that is not UTF-8 (the native CLI can write one): never listed.
  await gateways[0]!.client.put(new Uint8Array([...new TextEncoder().encode(`${bucket}/d1/`), 0xff, 0x41]), new Uint8Array(1));
}, 120_000);

afterAll(async () => {
  for (const g of gateways ?? []) await g.client.close();
  await cluster?.destroy();
});

/** What S3 lists: keys under prefix after start, those containing the delimiter after the prefix
 * folded into their common prefix. */
function model(prefix: string, delimiter = "", start: string | null = null): string[] {
  const out: string[] = [];
  for (const k of keys) {
    if (!k.startsWith(prefix) || (start !== null && byteOrder(k, start) <= 0)) continue;
    const at = delimiter === "" ? -1 : k.indexOf(delimiter, prefix.length);
    const item = at < 0 ? k : k.slice(0, at + delimiter.length);
    if (out[out.length - 1] !== item) out.push(item);
  }
  return out;
}

/** A page's keys and common prefixes in the order S3 lists them (byte order, interleaved). */
function items(doc: XmlElement, decode: (s: string) => string = (s) => s): string[] {
  const contents = childrenNamed(doc, "Contents").map((c) => decode(textOf(c, "Key")!));
  const prefixes = childrenNamed(doc, "CommonPrefixes").map((c) => decode(textOf(c, "Prefix")!));
  return [...contents, ...prefixes].sort(byteOrder);
}

async function listAllV2(query: Record<string, string>, decode?: (s: string) => string): Promise<{ items: string[]; pages: number }> {
  const out: string[] = [];
  let token: string | null = null;
  for (let pages = 1; ; pages++) {
    const q: Record<string, string> = token === null ? query : { ...query, "continuation-token": token };
    const doc = await xmlOf(await ok(call(v2, gateways[pages % 3]!, { bucket, query: { "list-type": "2", ...q } })));
    const page = items(doc, decode);
    expect(Number(textOf(doc, "KeyCount"))).toBe(page.length);
    expect(page.length).toBeLessThanOrEqual(Number(query["max-keys"] ?? 1000));
    out.push(...page);
    if (textOf(doc, "IsTruncated") !== "true") {
      expect(child(doc, "NextContinuationToken")).toBeUndefined();
      return { items: out, pages };
    }
    token = textOf(doc, "NextContinuationToken")!;
  }
}

describe("ListObjectsV2", () => {
  test("every key in pages of 1000, in byte order; the 1000-key page's time is logged", async () => {
    const started = performance.now();
    const first = await xmlOf(await ok(call(v2, gateways[0]!, { bucket, query: { "list-type": "2", "encoding-type": "url" } })));
    const ms = performance.now() - started;
    console.log(`ListObjectsV2 of 1000 keys (a head each for the ETag): ${ms.toFixed(0)} ms`);
    const contents = childrenNamed(first, "Contents");
    expect(contents.length).toBe(1000);
    const c = contents[0]!;
    expect(textOf(c, "ETag")).toMatch(/^"[0-9a-f]{16,32}(-1)?"$/);
    expect(textOf(c, "Size")).toBe(String(new TextEncoder().encode(decodeURIComponent(textOf(c, "Key")!)).length));
    expect(textOf(c, "LastModified")).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(textOf(c, "StorageClass")).toBe("STANDARD");
    expect(child(c, "Owner")).toBeUndefined();
    const all = await listAllV2({ "encoding-type": "url" }, decodeURIComponent);
    expect(all.items).toEqual(model("", ""));
    expect(all.pages).toBe(3);
  }, 60_000);

  test("delimiters and prefixes, paged by odd page sizes, match the model", async () => {
    for (const [prefix, delimiter, max] of [
      ["", "/", "7"],
      ["d3/", "/", "4"],
      ["d3/s", "/", "3"],
      ["d", "s", "5"],
      ["", "--", "2"],
      ["d9/s9/", "", "11"],
      ["nothing", "/", "5"],
      ["top", "", "1"],
      ["d1", "/", "2"],
      ["x".repeat(1030), "/", "5"],
    ] as const) {
      const listed = await listAllV2({ prefix, delimiter, "max-keys": max, "encoding-type": "url" }, decodeURIComponent);
      expect(listed.items).toEqual(model(prefix, delimiter));
    }
  }, 60_000);

  test("start-after, fetch-owner, max-keys=0, and a bad continuation token", async () => {
    const listed = await listAllV2({ "start-after": "d8/s7/f3", delimiter: "/", prefix: "d8/s7/", "max-keys": "5" });
    expect(listed.items).toEqual(model("d8/s7/", "/", "d8/s7/f3"));
    const owned = await xmlOf(await ok(call(v2, gateways[0]!, { bucket, query: { prefix: "top", "fetch-owner": "true" } })));
    expect(textOf(child(childrenNamed(owned, "Contents")[0]!, "Owner")!, "ID")).toBe("test-key");
    const none = await xmlOf(await ok(call(v2, gateways[0]!, { bucket, query: { "max-keys": "0" } })));
    expect(textOf(none, "IsTruncated")).toBe("false");
    expect(textOf(none, "KeyCount")).toBe("0");
    expect(await errorCode(call(v2, gateways[0]!, { bucket, query: { "continuation-token": "!!" } }))).toBe("InvalidArgument");
    expect(await errorCode(call(v2, gateways[0]!, { bucket, query: { "max-keys": "-1" } }))).toBe("InvalidArgument");
    expect(await errorCode(call(v2, gateways[0]!, { bucket: "nobucket", query: {} }))).toBe("NoSuchBucket");
  });

  test("odd keys come back exactly, escaped in XML; with encoding-type=url percent-encoded, control characters too", async () => {
    expect((await listAllV2({ prefix: "odd/" })).items).toEqual(model("odd/", ""));
    // A key XML 1.0 cannot carry, without encoding-type=url: an error that says so, never a
    // document the client's parser rejects (xml.ts).
    const refused = await call(v2, gateways[0]!, { bucket, query: { prefix: "ctl/" } });
    expect(await errorCode(refused)).toBe("InvalidArgument");
    const encoded = await xmlOf(await ok(call(v2, gateways[0]!, { bucket, query: { prefix: "ctl/", "encoding-type": "url" } })));
    const raw = childrenNamed(encoded, "Contents").map((c) => textOf(c, "Key")!);
    expect(raw.every((k) => /^[A-Za-z0-9%/._~!*'()-]+$/.test(k))).toBe(true);
    expect(textOf(encoded, "EncodingType")).toBe("url");
    const all = await listAllV2({ "encoding-type": "url", delimiter: "/", "max-keys": "3" }, decodeURIComponent);
    expect(all.items).toEqual(model("", "/"));
    expect(await errorCode(call(v2, gateways[0]!, { bucket, query: { "encoding-type": "base64" } }))).toBe("InvalidArgument");
  });
});

describe("ListObjects (v1)", () => {
  test("NextMarker with a delimiter; the last key as marker without one", async () => {
    for (const [prefix, delimiter] of [
      ["", "/"],
      ["d2/", "/"],
      ["d4/s4/", ""],
    ] as const) {
      const out: string[] = [];
      let marker = "";
      for (;;) {
        const doc = await xmlOf(await ok(call(v1, gateways[1]!, { bucket, query: { prefix, delimiter, marker, "max-keys": "6" } })));
        const page = items(doc);
        out.push(...page);
        if (textOf(doc, "IsTruncated") !== "true") break;
        if (delimiter === "") {
          expect(child(doc, "NextMarker")).toBeUndefined();
          marker = page[page.length - 1]!;
        } else marker = textOf(doc, "NextMarker")!;
        // v1 always names the owner.
        for (const c of childrenNamed(doc, "Contents")) expect(child(c, "Owner")).toBeDefined();
      }
      expect(out).toEqual(model(prefix, delimiter));
    }
  }, 60_000);
});

describe("DeleteObjects", () => {
  function body(keys: string[], quiet = false): string {
    const objects = keys.map((k) => `<Object><Key>${k.replace(/&/g, "&amp;").replace(/</g, "&lt;")}</Key></Object>`).join("");
    return `<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${quiet ? "<Quiet>true</Quiet>" : ""}${objects}</Delete>`;
  }

  test("verbose: every key Deleted, missing ones too; quiet: only errors; the keys are gone", async () => {
    const g = gateways[2]!;
    const verbose = await xmlOf(
      await ok(
        call(deleteObjects, g, { method: "POST", bucket, query: { delete: "" }, body: body(["d0/s0/f0", "odd/x&y<z>'\"", "missing"]) }),
      ),
    );
    expect(childrenNamed(verbose, "Deleted").map((d) => textOf(d, "Key"))).toEqual(["d0/s0/f0", "odd/x&y<z>'\"", "missing"]);
    const too_long = "k".repeat(1025);
    const quiet = await xmlOf(
      await ok(
        call(deleteObjects, g, { method: "POST", bucket, query: { delete: "" }, body: body(["d0/s0/f1", too_long, "missing"], true) }),
      ),
    );
    expect(childrenNamed(quiet, "Deleted")).toEqual([]);
    const errors = childrenNamed(quiet, "Error");
    expect(errors.map((e) => [textOf(e, "Key"), textOf(e, "Code")])).toEqual([[too_long, "KeyTooLongError"]]);
    const left = await listAllV2({ prefix: "d0/s0/f" });
    expect(left.items).toEqual(model("d0/s0/f").filter((k) => k !== "d0/s0/f0" && k !== "d0/s0/f1"));
    await expect(g.client.stat(objectKey(bucket, "odd/x&y<z>'\""))).rejects.toMatchObject({ code: "not_found" });
  });

  test("more than 1000 keys, none, or not a Delete document: MalformedXML", async () => {
    const g = gateways[2]!;
    const many = Array.from({ length: 1001 }, (_, i) => `k${i}`);
    for (const b of [body(many), body([]), "<Other/>", "<Delete><Object>"])
      expect(await errorCode(call(deleteObjects, g, { method: "POST", bucket, query: { delete: "" }, body: b }))).toBe("MalformedXML");
  });
});
