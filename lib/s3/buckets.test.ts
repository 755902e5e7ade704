import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { decode } from "cbor-x";
import { handlerWorld, s3Request, type HandlerWorld } from "../../tests/support/s3_handlers.ts";
import { bucket_handlers, requireBucket } from "./buckets.ts";
import { bucketRecordKey, uploadRecordKey } from "./names.ts";
import type { S3Operation } from "./router.ts";
import type { RequestParts } from "../../tests/support/s3_handlers.ts";

let world: HandlerWorld;

beforeAll(async () => {
  world = await handlerWorld();
}, 60_000);

afterAll(async () => {
  await world?.close();
});

function call(operation: S3Operation, parts: RequestParts): Promise<Response> {
  return bucket_handlers.get(operation)!(s3Request(parts), world.context);
}

describe("buckets", () => {
  test("CreateBucket writes the record once; a second create is BucketAlreadyOwnedByYou", async () => {
    const created = await call("CreateBucket", { method: "PUT", bucket: "photos" });
    expect(created.status).toBe(200);
    expect(created.headers.get("location")).toBe("/photos");
    const record = decode((await world.client.get(bucketRecordKey("photos"))).value) as { created_ms: number; region: string };
    expect(record.region).toBe("us-east-1");
    expect(Math.abs(record.created_ms - Date.now())).toBeLessThan(60_000);
    await expect(call("CreateBucket", { method: "PUT", bucket: "photos" })).rejects.toMatchObject({
      code: "BucketAlreadyOwnedByYou",
      status: 409,
    });
  });

  test("CreateBucket: a LocationConstraint must be the gateway's region; a body that is not XML is MalformedXML", async () => {
    const body = (region: string) =>
      `<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>${region}</LocationConstraint></CreateBucketConfiguration>`;
    expect((await call("CreateBucket", { method: "PUT", bucket: "here", body: body("us-east-1") })).status).toBe(200);
    await expect(call("CreateBucket", { method: "PUT", bucket: "there", body: body("eu-west-3") })).rejects.toMatchObject({
      code: "InvalidArgument",
    });
    await expect(call("CreateBucket", { method: "PUT", bucket: "broken", body: "<CreateBucketConfiguration><Loc" })).rejects.toMatchObject({
      code: "MalformedXML",
    });
    // Neither refused bucket exists.
    await expect(requireBucket(world.context, "there")).rejects.toMatchObject({ code: "NoSuchBucket" });
    await expect(requireBucket(world.context, "broken")).rejects.toMatchObject({ code: "NoSuchBucket" });
  });

  test("bad bucket names are InvalidBucketName", async () => {
    for (const name of ["ab", "Upper", "-dash", "a..b", "192.168.1.1", ".s3"])
      await expect(call("CreateBucket", { method: "PUT", bucket: name })).rejects.toMatchObject({ code: "InvalidBucketName" });
  });

  test("HeadBucket: 200 with the region, or NoSuchBucket", async () => {
    await call("CreateBucket", { method: "PUT", bucket: "headed" });
    const head = await call("HeadBucket", { method: "HEAD", bucket: "headed" });
    expect(head.status).toBe(200);
    expect(head.headers.get("x-amz-bucket-region")).toBe("us-east-1");
    await expect(call("HeadBucket", { method: "HEAD", bucket: "nowhere" })).rejects.toMatchObject({ code: "NoSuchBucket", status: 404 });
  });

  test("ListBuckets lists every bucket with its creation date and the caller as owner", async () => {
    await call("CreateBucket", { method: "PUT", bucket: "listed-1" });
    await call("CreateBucket", { method: "PUT", bucket: "listed-2" });
    const xml = await (await call("ListBuckets", { method: "GET" })).text();
    expect(xml).toContain("<ListAllMyBucketsResult");
    expect(xml).toContain("<Owner><ID>AKTEST</ID>");
    expect(xml).toMatch(/<Bucket><Name>listed-1<\/Name><CreationDate>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z<\/CreationDate><\/Bucket>/);
    expect(xml.indexOf("listed-1")).toBeLessThan(xml.indexOf("listed-2"));
  });

  test("GetBucketLocation: empty for us-east-1, as S3; NoSuchBucket for a missing bucket", async () => {
    await call("CreateBucket", { method: "PUT", bucket: "located" });
    const xml = await (await call("GetBucketLocation", { method: "GET", bucket: "located", query: "location" })).text();
    expect(xml).toContain("<LocationConstraint></LocationConstraint>");
    await expect(call("GetBucketLocation", { method: "GET", bucket: "unlocated", query: "location" })).rejects.toMatchObject({
      code: "NoSuchBucket",
    });
  });

  test("DeleteBucket refuses while an object or an upload record exists, then deletes", async () => {
    await call("CreateBucket", { method: "PUT", bucket: "full" });
    await world.client.put("full/a", new Uint8Array([1]));
    await expect(call("DeleteBucket", { method: "DELETE", bucket: "full" })).rejects.toMatchObject({ code: "BucketNotEmpty", status: 409 });
    await world.client.delete("full/a");
    await world.client.put(uploadRecordKey("full", "1.abc"), new Uint8Array([1]));
    await expect(call("DeleteBucket", { method: "DELETE", bucket: "full" })).rejects.toMatchObject({ code: "BucketNotEmpty" });
    await world.client.delete(uploadRecordKey("full", "1.abc"));
    // A bucket whose name extends this one's ("full-2/...") does not count.
    await world.client.put("full-2/x", new Uint8Array([1]));
    expect((await call("DeleteBucket", { method: "DELETE", bucket: "full" })).status).toBe(204);
    await expect(requireBucket(world.context, "full")).rejects.toMatchObject({ code: "NoSuchBucket" });
    await expect(call("DeleteBucket", { method: "DELETE", bucket: "full" })).rejects.toMatchObject({ code: "NoSuchBucket" });
    // It can be created again.
    expect((await call("CreateBucket", { method: "PUT", bucket: "full" })).status).toBe(200);
  });

  test("requireBucket answers from its cache for a moment, then asks the cluster again", async () => {
    await call("CreateBucket", { method: "PUT", bucket: "cached" });
    await requireBucket(world.context, "cached");
    // Deleted behind the gateway's back (another gateway): still believed for up to a second.
    await world.client.delete(bucketRecordKey("cached"));
    await requireBucket(world.context, "cached");
    await Bun.sleep(1100);
    await expect(requireBucket(world.context, "cached")).rejects.toMatchObject({ code: "NoSuchBucket" });
  });
});
