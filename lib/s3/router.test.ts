import { describe, expect, test } from "bun:test";
import { Prng } from "../util/prng.ts";
import { S3Error, type S3ErrorCode } from "./s3_error.ts";
import { route, unsupported_subresources, type Route, type S3Operation } from "./router.ts";

function fails(f: () => unknown, code: S3ErrorCode, message: RegExp): S3Error {
  let error: unknown = null;
  try {
    f();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(S3Error);
  const err = error as S3Error;
  expect(err.code).toBe(code);
  expect(err.message).toMatch(message);
  return err;
}

/** Path-style routing of method, path?query. */
function at(method: string, target: string, headers: Headers | null = null): Route {
  const q = target.indexOf("?");
  return route(method, q === -1 ? target : target.slice(0, q), q === -1 ? "" : target.slice(q + 1), "localhost:9000", null, headers);
}

const copy = new Headers({ "x-amz-copy-source": "/src/k" });

describe("the routing table", () => {
  const rows: [string, string, S3Operation, string | null, string | null, Headers | null][] = [
    ["GET", "/", "ListBuckets", null, null, null],
    ["GET", "/?x-id=ListBuckets&max-buckets=5", "ListBuckets", null, null, null],
    ["PUT", "/bk1", "CreateBucket", "bk1", null, null],
    ["HEAD", "/bk1", "HeadBucket", "bk1", null, null],
    ["DELETE", "/bk1", "DeleteBucket", "bk1", null, null],
    ["GET", "/bk1?location", "GetBucketLocation", "bk1", null, null],
    ["GET", "/bk1?list-type=2&prefix=a&delimiter=%2F", "ListObjectsV2", "bk1", null, null],
    ["GET", "/bk1", "ListObjects", "bk1", null, null],
    ["GET", "/bk1?marker=x&encoding-type=url", "ListObjects", "bk1", null, null],
    ["GET", "/bk1?uploads", "ListMultipartUploads", "bk1", null, null],
    ["GET", "/bk1?uploads=", "ListMultipartUploads", "bk1", null, null],
    ["POST", "/bk1?delete", "DeleteObjects", "bk1", null, null],
    ["PUT", "/bk1/k", "PutObject", "bk1", "k", null],
    ["PUT", "/bk1/k?x-id=PutObject", "PutObject", "bk1", "k", null],
    ["PUT", "/bk1/k", "CopyObject", "bk1", "k", copy],
    ["PUT", "/bk1/k", "PutObject", "bk1", "k", new Headers({ "content-type": "text/plain" })],
    ["GET", "/bk1/k", "GetObject", "bk1", "k", null],
    ["GET", "/bk1/k?versionId=null&response-content-type=x", "GetObject", "bk1", "k", null],
    ["HEAD", "/bk1/k", "HeadObject", "bk1", "k", null],
    ["DELETE", "/bk1/k", "DeleteObject", "bk1", "k", null],
    ["POST", "/bk1/k?uploads", "CreateMultipartUpload", "bk1", "k", null],
    ["PUT", "/bk1/k?partNumber=3&uploadId=7.00ff", "UploadPart", "bk1", "k", null],
    ["POST", "/bk1/k?uploadId=7.00ff", "CompleteMultipartUpload", "bk1", "k", null],
    ["DELETE", "/bk1/k?uploadId=7.00ff", "AbortMultipartUpload", "bk1", "k", null],
    ["GET", "/bk1/k?uploadId=7.00ff&max-parts=10", "ListParts", "bk1", "k", null],
  ];
  for (const [method, target, operation, bucket, key, headers] of rows) {
    test(`${method} ${target}${headers?.has("x-amz-copy-source") ? " (x-amz-copy-source)" : ""} → ${operation}`, () => {
      expect(at(method, target, headers)).toEqual({ operation, bucket, key });
    });
  }

  test("without headers a copy cannot be told from a put", () => {
    expect(route("PUT", "/bk1/k", "", null, null).operation).toBe("PutObject");
  });
});

describe("unsupported operations are NotImplemented, named", () => {
  const named: [string, string, string][] = [
    ["GET", "/bk1?acl", "GetBucketAcl"],
    ["PUT", "/bk1?acl", "PutBucketAcl"],
    ["GET", "/bk1/k?acl", "GetObjectAcl"],
    ["PUT", "/bk1/k?acl", "PutObjectAcl"],
    ["GET", "/bk1?policy", "GetBucketPolicy"],
    ["PUT", "/bk1?policy", "PutBucketPolicy"],
    ["DELETE", "/bk1?policy", "DeleteBucketPolicy"],
    ["GET", "/bk1?policyStatus", "GetBucketPolicyStatus"],
    ["GET", "/bk1?cors", "GetBucketCors"],
    ["PUT", "/bk1?cors", "PutBucketCors"],
    ["DELETE", "/bk1?cors", "DeleteBucketCors"],
    ["GET", "/bk1?lifecycle", "GetBucketLifecycleConfiguration"],
    ["PUT", "/bk1?lifecycle", "PutBucketLifecycleConfiguration"],
    ["DELETE", "/bk1?lifecycle", "DeleteBucketLifecycle"],
    ["GET", "/bk1?tagging", "GetBucketTagging"],
    ["PUT", "/bk1?tagging", "PutBucketTagging"],
    ["DELETE", "/bk1?tagging", "DeleteBucketTagging"],
    ["GET", "/bk1/k?tagging", "GetObjectTagging"],
    ["PUT", "/bk1/k?tagging", "PutObjectTagging"],
    ["DELETE", "/bk1/k?tagging", "DeleteObjectTagging"],
    ["GET", "/bk1?versioning", "GetBucketVersioning"],
    ["PUT", "/bk1?versioning", "PutBucketVersioning"],
    ["GET", "/bk1?versions", "ListObjectVersions"],
    ["GET", "/bk1?website", "GetBucketWebsite"],
    ["PUT", "/bk1?website", "PutBucketWebsite"],
    ["DELETE", "/bk1?website", "DeleteBucketWebsite"],
    ["GET", "/bk1?logging", "GetBucketLogging"],
    ["PUT", "/bk1?logging", "PutBucketLogging"],
    ["GET", "/bk1?notification", "GetBucketNotificationConfiguration"],
    ["PUT", "/bk1?notification", "PutBucketNotificationConfiguration"],
    ["GET", "/bk1?replication", "GetBucketReplication"],
    ["PUT", "/bk1?replication", "PutBucketReplication"],
    ["DELETE", "/bk1?replication", "DeleteBucketReplication"],
    ["GET", "/bk1?encryption", "GetBucketEncryption"],
    ["PUT", "/bk1?encryption", "PutBucketEncryption"],
    ["DELETE", "/bk1?encryption", "DeleteBucketEncryption"],
    ["GET", "/bk1?object-lock", "GetObjectLockConfiguration"],
    ["PUT", "/bk1?object-lock", "PutObjectLockConfiguration"],
    ["GET", "/bk1/k?retention", "GetObjectRetention"],
    ["PUT", "/bk1/k?retention", "PutObjectRetention"],
    ["GET", "/bk1/k?legal-hold", "GetObjectLegalHold"],
    ["PUT", "/bk1/k?legal-hold", "PutObjectLegalHold"],
    ["POST", "/bk1/k?restore", "RestoreObject"],
    ["POST", "/bk1/k?select&select-type=2", "SelectObjectContent"],
    ["GET", "/bk1/k?torrent", "GetObjectTorrent"],
    ["GET", "/bk1/k?attributes", "GetObjectAttributes"],
    ["GET", "/bk1?accelerate", "GetBucketAccelerateConfiguration"],
    ["PUT", "/bk1?accelerate", "PutBucketAccelerateConfiguration"],
    ["GET", "/bk1?requestPayment", "GetBucketRequestPayment"],
    ["PUT", "/bk1?requestPayment", "PutBucketRequestPayment"],
    ["GET", "/bk1?ownershipControls", "GetBucketOwnershipControls"],
    ["PUT", "/bk1?ownershipControls", "PutBucketOwnershipControls"],
    ["DELETE", "/bk1?ownershipControls", "DeleteBucketOwnershipControls"],
    ["GET", "/bk1?publicAccessBlock", "GetPublicAccessBlock"],
    ["PUT", "/bk1?publicAccessBlock", "PutPublicAccessBlock"],
    ["DELETE", "/bk1?publicAccessBlock", "DeletePublicAccessBlock"],
    ["GET", "/bk1?analytics", "ListBucketAnalyticsConfigurations"],
    ["GET", "/bk1?analytics&id=a", "GetBucketAnalyticsConfiguration"],
    ["PUT", "/bk1?analytics&id=a", "PutBucketAnalyticsConfiguration"],
    ["DELETE", "/bk1?analytics&id=a", "DeleteBucketAnalyticsConfiguration"],
    ["GET", "/bk1?inventory", "ListBucketInventoryConfigurations"],
    ["GET", "/bk1?inventory&id=a", "GetBucketInventoryConfiguration"],
    ["PUT", "/bk1?inventory&id=a", "PutBucketInventoryConfiguration"],
    ["DELETE", "/bk1?inventory&id=a", "DeleteBucketInventoryConfiguration"],
    ["GET", "/bk1?metrics", "ListBucketMetricsConfigurations"],
    ["GET", "/bk1?metrics&id=a", "GetBucketMetricsConfiguration"],
    ["PUT", "/bk1?metrics&id=a", "PutBucketMetricsConfiguration"],
    ["DELETE", "/bk1?metrics&id=a", "DeleteBucketMetricsConfiguration"],
    ["GET", "/bk1?intelligent-tiering", "ListBucketIntelligentTieringConfigurations"],
    ["GET", "/bk1?intelligent-tiering&id=a", "GetBucketIntelligentTieringConfiguration"],
    ["PUT", "/bk1?intelligent-tiering&id=a", "PutBucketIntelligentTieringConfiguration"],
    ["DELETE", "/bk1?intelligent-tiering&id=a", "DeleteBucketIntelligentTieringConfiguration"],
    ["POST", "/bk1", "PostObject"],
    ["GET", "/bk1/k?partNumber=1", "GetObject of one part"],
    ["HEAD", "/bk1/k?partNumber=1", "HeadObject of one part"],
    ["GET", "/bk1/k?versionId=3HL4kqtJlcpXroDTDmJ", "GET of an object version"],
    ["DELETE", "/bk1/k?versionId=3HL4kqtJlcpXroDTDmJ", "DELETE of an object version"],
  ];
  for (const [method, target, operation] of named) {
    test(`${method} ${target} → ${operation}`, () => {
      const err = fails(() => at(method, target), "NotImplemented", new RegExp(`^${operation} .*is not implemented`));
      expect(err.status).toBe(501);
    });
  }

  test("UploadPartCopy", () => {
    fails(() => at("PUT", "/bk1/k?partNumber=1&uploadId=7.00", copy), "NotImplemented", /^UploadPartCopy is not implemented/);
  });

  test("every unsupported subresource, with every method on a bucket and on an object", () => {
    const expected = [
      "acl",
      "policy",
      "policyStatus",
      "cors",
      "lifecycle",
      "tagging",
      "versioning",
      "versions",
      "website",
      "logging",
      "notification",
      "replication",
      "encryption",
      "object-lock",
      "accelerate",
      "requestPayment",
      "ownershipControls",
      "publicAccessBlock",
      "analytics",
      "inventory",
      "metrics",
      "intelligent-tiering",
      "retention",
      "legal-hold",
      "restore",
      "select",
      "torrent",
      "attributes",
    ];
    expect([...unsupported_subresources].sort()).toEqual([...expected].sort());
    for (const subresource of expected)
      for (const path of ["/bk1", "/bk1/k"])
        for (const method of ["GET", "HEAD", "PUT", "POST", "DELETE"])
          fails(() => at(method, `${path}?${subresource}`), "NotImplemented", /is not implemented/);
  });
});

describe("bad requests", () => {
  test("unknown methods are MethodNotAllowed, naming the method", () => {
    for (const method of ["PATCH", "OPTIONS", "TRACE", "CONNECT", "get", "PROPFIND"])
      for (const path of ["/", "/bk1", "/bk1/k"]) {
        const err = fails(() => at(method, path), "MethodNotAllowed", new RegExp(`^${method} is not allowed`));
        expect(err.fields.get("Method")).toBe(method);
      }
  });

  test("the service answers only GET", () => {
    for (const method of ["PUT", "POST", "DELETE", "HEAD"]) fails(() => at(method, "/"), "MethodNotAllowed", /only GET \(ListBuckets\)/);
  });

  test("POST on an object without ?uploads or ?uploadId", () => {
    const err = fails(() => at("POST", "/bk1/k"), "MethodNotAllowed", /needs \?uploads or \?uploadId/);
    expect(err.fields.get("ResourceType")).toBe("OBJECT");
  });

  test("a part upload needs both uploadId and partNumber", () => {
    fails(() => at("PUT", "/bk1/k?uploadId=7.00"), "InvalidArgument", /needs both uploadId and partNumber; the request has only uploadId/);
    fails(() => at("PUT", "/bk1/k?partNumber=1"), "InvalidArgument", /has only partNumber/);
  });

  test("multipart parameters without a key never become the bucket operation", () => {
    fails(() => at("DELETE", "/bk1/?uploadId=7.00"), "InvalidRequest", /\?uploadId names a multipart upload of an object/);
    fails(() => at("PUT", "/bk1?partNumber=1&uploadId=7.00"), "InvalidRequest", /no object key/);
    fails(() => at("GET", "/bk1?uploadId=7.00"), "InvalidRequest", /no object key/);
    fails(() => at("POST", "/bk1/?uploads"), "InvalidRequest", /CreateMultipartUpload\) needs an object key/);
  });

  test("list-type other than 2", () => {
    const err = fails(() => at("GET", "/bk1?list-type=1"), "InvalidArgument", /list-type "1"/);
    expect(err.fields.get("ArgumentName")).toBe("list-type");
  });

  test("a path that does not start with '/'", () => {
    fails(() => route("GET", "*", "", null, null), "InvalidRequest", /does not start with '\/'/);
    fails(() => route("GET", "", "", null, null), "InvalidRequest", /does not start/);
  });
});

describe("path tricks", () => {
  /** Each path routes to an object with that key. */
  function keysAre(pairs: [string, string][]): void {
    for (const [path, key] of pairs) expect(at("GET", path)).toEqual({ operation: "GetObject", bucket: "bk1", key });
  }

  test("'..' and '.' segments are kept: keys are names, not paths", () => {
    keysAre([
      ["/bk1/a/../c", "a/../c"],
      ["/bk1/..", ".."],
      ["/bk1/.", "."],
      ["/bk1/%2E%2E/%2e", "../."],
      ["/bk1/../bk2/k", "../bk2/k"],
    ]);
  });

  test("%2F is a '/' inside the key, '+' is a plus, escapes are decoded once", () => {
    keysAre([
      ["/bk1/a%2Fb", "a/b"],
      ["/bk1/a+b%2B", "a+b+"],
      ["/bk1/%2541", "%41"],
      ["/bk1/%C3%A9%20x%F0%9F%98%80", "é x😀"],
      ["/bk1/é", "é"],
    ]);
  });

  test("the key keeps every slash after the bucket's", () => {
    keysAre([
      ["/bk1//", "/"],
      ["/bk1/a//b/", "a//b/"],
      ["/bk1///k", "//k"],
    ]);
  });

  test("a trailing slash on the bucket is the bucket; an empty key is the bucket operation", () => {
    expect(at("GET", "/bk1/")).toEqual({ operation: "ListObjects", bucket: "bk1", key: null });
    expect(at("PUT", "/bk1/")).toEqual({ operation: "CreateBucket", bucket: "bk1", key: null });
    expect(at("DELETE", "/bk1/")).toEqual({ operation: "DeleteBucket", bucket: "bk1", key: null });
    expect(at("HEAD", "/bk1/").operation).toBe("HeadBucket");
  });

  test("invalid percent-escapes and invalid UTF-8 are InvalidArgument", () => {
    for (const path of [
      "/bk1/a%",
      "/bk1/a%4",
      "/bk1/%G0",
      "/bk1/%%41",
      "/bk1/%FF",
      "/bk1/%C3",
      "/bk1/%C0%AF",
      "/bk1/%ED%A0%80",
      "/bk1/\uD800",
    ])
      fails(() => at("GET", path), "InvalidArgument", /invalid percent-escape or is not UTF-8/);
  });

  test("NUL in a key is InvalidArgument; other control characters are keys S3 allows", () => {
    fails(() => at("PUT", "/bk1/a%00b"), "InvalidArgument", /NUL character \(at character 1\)/);
    fails(() => at("PUT", "/bk1/\u0000"), "InvalidArgument", /NUL/);
    expect(at("PUT", "/bk1/a%01%09%0A%0D%1Fb").key).toBe("a\u0001\t\n\r\u001fb");
  });

  test("a key over 1,024 bytes is KeyTooLongError", () => {
    expect(at("PUT", `/bk1/${"é".repeat(512)}`).key).toBe("é".repeat(512));
    fails(() => at("PUT", `/bk1/${"%C3%A9".repeat(512)}x`), "KeyTooLongError", /1025 bytes/);
  });

  test("bucket names: escapes decoding outside the bucket alphabet, and S3's rules", () => {
    expect(at("GET", "/%62%6B%31").bucket).toBe("bk1");
    for (const path of ["/b%2Fc/k", "/BK1", "/%2E%2E/k", "/.s3/bucket", "/%2Es3", "/b%00c", "/ab", "/a_b", "/-ab", "/192.168.1.1", "/a..b"])
      fails(() => at("GET", path), "InvalidBucketName", /bucket name/);
    fails(() => at("GET", "/b%ZZ1/k"), "InvalidBucketName", /invalid percent-escape/);
    const err = fails(() => at("GET", "//k"), "InvalidBucketName", /has 0 characters/);
    expect(err.fields.get("BucketName")).toBe("");
  });
});

describe("virtual-hosted style", () => {
  test("a host under the domain names the bucket, with or without a port", () => {
    for (const host of ["bk1.s3.example.com", "bk1.s3.example.com:9000", "BK1.S3.Example.COM:443", "bk1.s3.example.com."]) {
      expect(route("GET", "/k/x", "", host, "s3.example.com")).toEqual({ operation: "GetObject", bucket: "bk1", key: "k/x" });
      expect(route("GET", "/", "list-type=2", host, "s3.example.com")).toEqual({ operation: "ListObjectsV2", bucket: "bk1", key: null });
      expect(route("PUT", "/", "", host, "s3.example.com").operation).toBe("CreateBucket");
    }
    expect(route("GET", "//k", "", "bk1.s3.example.com", "s3.example.com").key).toBe("/k");
    expect(route("GET", "/k", "", "my.dotted.bucket.s3.example.com", "S3.example.com").bucket).toBe("my.dotted.bucket");
  });

  test("the domain itself, another host, or no --domain: path style", () => {
    expect(route("GET", "/", "", "s3.example.com:9000", "s3.example.com").operation).toBe("ListBuckets");
    expect(route("GET", "/bk1/k", "", "s3.example.com", "s3.example.com")).toEqual({ operation: "GetObject", bucket: "bk1", key: "k" });
    expect(route("GET", "/bk1/k", "", "127.0.0.1:9000", "s3.example.com").bucket).toBe("bk1");
    expect(route("GET", "/bk1/k", "", "[::1]:9000", "s3.example.com").bucket).toBe("bk1");
    expect(route("GET", "/bk1/k", "", "xs3.example.com", "s3.example.com").bucket).toBe("bk1");
    expect(route("GET", "/bk1/k", "", "bk2.s3.example.com", null).bucket).toBe("bk1");
    expect(route("GET", "/bk1/k", "", null, "s3.example.com").bucket).toBe("bk1");
  });

  test("a host naming an invalid bucket is InvalidBucketName", () => {
    fails(() => route("GET", "/k", "", "Bad_Bucket.s3.example.com", "s3.example.com"), "InvalidBucketName", /bucket name "bad_bucket"/);
    fails(() => route("GET", "/k", "", "ab.s3.example.com", "s3.example.com"), "InvalidBucketName", /has 2 characters/);
  });
});

test("random targets route or fail with an S3Error, never another error", () => {
  const pieces = [
    "/",
    "%",
    "%2F",
    "%2",
    "%ZZ",
    "%00",
    "%C3",
    "%A9",
    "bk1",
    "k",
    ".",
    "..",
    "+",
    "?",
    "&",
    "=",
    "uploadId",
    "uploads",
    "partNumber",
    "acl",
    "é",
  ];
  const prng = new Prng(15);
  for (let round = 0; round < 20_000; round++) {
    let path = "";
    for (let n = prng.range(0, 8); n > 0; n--) path += pieces[prng.int(pieces.length)]!;
    let query = "";
    for (let n = prng.range(0, 3); n > 0; n--) query += pieces[prng.int(pieces.length)]!;
    const method = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"][prng.int(6)]!;
    try {
      const r = route(method, path, query, prng.int(2) === 0 ? "bk1.s3.test:1" : null, "s3.test");
      if (r.key !== null) expect(r.key.includes("\u0000")).toBe(false);
    } catch (e) {
      if (!(e instanceof S3Error)) throw e;
    }
  }
});
