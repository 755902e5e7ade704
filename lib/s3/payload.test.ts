import { afterAll, describe, expect, test } from "bun:test";
import {
  ChunkSigner,
  collect,
  randomBytes,
  s3Failure,
  encodeAwsChunked,
  failingStreamOf,
  realChunkCheck,
  sha256Hex,
  splitBytes,
  streamOf,
} from "../../tests/support/aws_chunked.ts";
import type { PayloadMode } from "./auth_result.ts";
import { type ChecksumAlgorithm, checksum_algorithms, newChecksum } from "./checksums.ts";
import { storedContentEncoding, verifiedBody } from "./payload.ts";
import { S3Error } from "./s3_error.ts";

const encoder = new TextEncoder();
const text = (s: string): Uint8Array => encoder.encode(s);
const unsigned: PayloadMode = { kind: "unsigned" };
const unsigned_trailer: PayloadMode = { kind: "streaming_unsigned_trailer" };

function checksumOf(algorithm: ChecksumAlgorithm, data: Uint8Array): string {
  const c = newChecksum(algorithm);
  c.update(data);
  return c.digestBase64();
}

function md5Base64(data: Uint8Array): string {
  return new Bun.CryptoHasher("md5").update(data).digest("base64");
}

/** Reads the verified body in the given pieces of the raw body; resolves to its bytes. */
function read(raw: Uint8Array, headers: Record<string, string>, mode: PayloadMode, pieces = [65536]): Promise<Uint8Array> {
  return collect(verifiedBody(streamOf(splitBytes(raw, pieces)), new Headers(headers), mode).body);
}

/** The iterator yields every byte it was given and still throws instead of reporting its end. */
async function failsAtEnd(raw: Uint8Array, headers: Record<string, string>, mode: PayloadMode): Promise<S3Error> {
  const iterator = verifiedBody(streamOf([raw]), new Headers(headers), mode).body[Symbol.asyncIterator]();
  return s3Failure(async () => {
    for (;;) if ((await iterator.next()).done) return;
  });
}

describe("plain bodies", () => {
  const data = randomBytes(100_000);

  test("a signed payload hash is checked; the size is Content-Length", async () => {
    const headers = { "content-length": String(data.length) };
    const verified = verifiedBody(streamOf([data]), new Headers(headers), { kind: "sha256", hex: sha256Hex(data) });
    expect(verified.size).toBe(data.length);
    expect(await collect(verified.body)).toEqual(data);
    const wrong = data.slice();
    wrong[50_000] ^= 1;
    const e = await failsAtEnd(wrong, headers, { kind: "sha256", hex: sha256Hex(data) });
    expect([e.code, e.message]).toEqual(["XAmzContentSHA256Mismatch", expect.stringContaining(sha256Hex(wrong))]);
  });

  test("no body at all (GET, DELETE) is empty, and no Content-Length is an unknown size", async () => {
    const none = verifiedBody(null, new Headers(), unsigned);
    expect(none.size).toBeNull();
    expect((await collect(none.body)).length).toBe(0);
    const chunked_http = verifiedBody(streamOf([data]), new Headers(), unsigned);
    expect(chunked_http.size).toBeNull();
    expect(await collect(chunked_http.body)).toEqual(data);
  });

  test("fewer bytes than Content-Length, and a connection that fails, name received vs expected", async () => {
    let e = await failsAtEnd(data.subarray(0, 600), { "content-length": "1000" }, unsigned);
    expect([e.code, e.message]).toEqual(["IncompleteBody", expect.stringContaining("600 of its Content-Length of 1000")]);
    const broken = verifiedBody(
      failingStreamOf([data.subarray(0, 300)], new Error("socket closed")),
      new Headers({ "content-length": "1000" }),
      unsigned,
    );
    e = await s3Failure(() => collect(broken.body));
    expect([e.code, e.message]).toEqual([
      "IncompleteBody",
      expect.stringMatching(/300 of its Content-Length of 1000 bytes.*socket closed/),
    ]);
    const unknown = verifiedBody(failingStreamOf([data.subarray(0, 300)], new Error("reset")), new Headers(), unsigned);
    e = await s3Failure(() => collect(unknown.body));
    expect([e.code, e.message]).toEqual(["IncompleteBody", expect.stringContaining("after 300 bytes")]);
  });

  test("more bytes than Content-Length are refused before they are passed on", async () => {
    const verified = verifiedBody(
      streamOf([data.subarray(0, 500), data.subarray(500, 1001)]),
      new Headers({ "content-length": "1000" }),
      unsigned,
    );
    let passed = 0;
    const e = await s3Failure(async () => {
      for await (const p of verified.body) passed += p.length;
    });
    expect([e.code, passed]).toEqual(["InvalidRequest", 500]);
  });

  test("Content-Length that is not a byte count", async () => {
    for (const bad of ["-1", "1e3", "5x", "99999999999999999999"]) {
      const e = await s3Failure(() => verifiedBody(null, new Headers({ "content-length": bad }), unsigned));
      expect(e.code).toBe("InvalidArgument");
    }
  });
});

describe("Content-MD5", () => {
  const data = text("the quick brown fox");

  test("verified when right, BadDigest when wrong", async () => {
    expect(await read(data, { "content-md5": md5Base64(data) }, unsigned)).toEqual(data);
    const e = await failsAtEnd(data, { "content-md5": md5Base64(text("other")) }, unsigned);
    expect([e.code, e.message]).toEqual(["BadDigest", expect.stringContaining(md5Base64(data))]);
  });

  test("InvalidDigest at once when it is not the base64 of 16 bytes", async () => {
    for (const bad of ["", "abc", md5Base64(data).slice(0, 20), "!!!!!!!!!!!!!!!!!!!!!!==", Buffer.alloc(20).toString("base64")]) {
      const e = await s3Failure(() => verifiedBody(null, new Headers({ "content-md5": bad }), unsigned));
      expect(e.code).toBe("InvalidDigest");
    }
  });

  test("left to the handler when it checks Content-MD5 itself: the body is not hashed, the header's form still is checked", async () => {
    const wrong = { "content-md5": md5Base64(text("other")) };
    const passed = verifiedBody(streamOf([data]), new Headers(wrong), unsigned, { content_md5: false });
    expect(await collect(passed.body)).toEqual(data);
    const e = await s3Failure(() => verifiedBody(null, new Headers({ "content-md5": "abc" }), unsigned, { content_md5: false }));
    expect(e.code).toBe("InvalidDigest");
  });
});

describe("x-amz-checksum-* headers", () => {
  const data = randomBytes(70_000);

  for (const algorithm of checksum_algorithms) {
    test(`${algorithm}: verified when right; BadDigest naming the algorithm, expected and computed when wrong`, async () => {
      const header = `x-amz-checksum-${algorithm}`;
      expect(await read(data, { [header]: checksumOf(algorithm, data) }, unsigned, [1, 4095, 7])).toEqual(data);
      const claimed = checksumOf(algorithm, text("something else"));
      const e = await failsAtEnd(data, { [header]: claimed }, unsigned);
      expect(e.code).toBe("BadDigest");
      expect(e.message).toContain(algorithm.toUpperCase());
      expect(e.message).toContain(claimed);
      expect(e.message).toContain(checksumOf(algorithm, data));
    });
  }

  test("how @aws-sdk/client-s3 sends a Uint8Array or string Body: a CRC32 header and a payload hash", async () => {
    // Captured from @aws-sdk/client-s3 3.1177 on Bun (PutObject, Body "hello world").
    const headers = {
      "content-length": "11",
      "x-amz-checksum-crc32": "DUoRhQ==",
      "x-amz-content-sha256": "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
      "x-amz-sdk-checksum-algorithm": "CRC32",
    };
    const mode: PayloadMode = { kind: "sha256", hex: headers["x-amz-content-sha256"] };
    expect(new TextDecoder().decode(await read(text("hello world"), headers, mode))).toBe("hello world");
  });

  test("two algorithms, or a value of the wrong size, are InvalidRequest at once", async () => {
    let e = await s3Failure(() =>
      verifiedBody(null, new Headers({ "x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha1": checksumOf("sha1", data) }), unsigned),
    );
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("more than one checksum")]);
    e = await s3Failure(() => verifiedBody(null, new Headers({ "x-amz-checksum-crc64nvme": "AAAAAA==" }), unsigned));
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("8 bytes")]);
  });

  test("x-amz-sdk-checksum-algorithm alone is only a hint: nothing to verify", async () => {
    expect(await read(data, { "x-amz-sdk-checksum-algorithm": "CRC32C" }, unsigned)).toEqual(data);
  });
});

describe("aws-chunked bodies", () => {
  const data = randomBytes(1_000_003);
  const chunkedHeaders = (algorithm: ChecksumAlgorithm | null, length = data.length): Record<string, string> => ({
    "content-encoding": "aws-chunked",
    "x-amz-decoded-content-length": String(length),
    ...(algorithm !== null
      ? { "x-amz-trailer": `x-amz-checksum-${algorithm}`, "x-amz-sdk-checksum-algorithm": algorithm.toUpperCase() }
      : {}),
  });

  test("the exact body @aws-sdk/client-s3 sends for a stream Body (STREAMING-UNSIGNED-PAYLOAD-TRAILER)", async () => {
    // Captured from @aws-sdk/client-s3 3.1177 on Bun: PutObject with Body Readable.from(["hello ",
    // "world"]), ContentLength 11. One chunk per piece of the source stream, no Content-Length
    // (HTTP chunked transfer), the CRC32 in the trailer, the closing empty line present.
    const body = text("6\r\nhello \r\n5\r\nworld\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n");
    const headers = {
      "content-encoding": "aws-chunked",
      "transfer-encoding": "chunked",
      "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
      "x-amz-decoded-content-length": "11",
      "x-amz-sdk-checksum-algorithm": "CRC32",
      "x-amz-trailer": "x-amz-checksum-crc32",
    };
    const verified = verifiedBody(streamOf([body]), new Headers(headers), unsigned_trailer);
    expect(verified.size).toBe(11);
    expect(new TextDecoder().decode(await collect(verified.body))).toBe("hello world");
    for (let cut = 0; cut <= body.length; cut++)
      expect(new TextDecoder().decode(await read(body, headers, unsigned_trailer, [cut, body.length]))).toBe("hello world");
  });

  test("a large body framed as the SDK frames it, for every algorithm's trailer, in odd pieces", async () => {
    for (const algorithm of checksum_algorithms) {
      const body = encodeAwsChunked(data, {
        chunk_sizes: [70_000, 1, 65536],
        trailers: [[`x-amz-checksum-${algorithm}`, checksumOf(algorithm, data)]],
      });
      const out = await read(body, chunkedHeaders(algorithm), unsigned_trailer, [8191, 3, 65536]);
      expect(sha256Hex(out)).toBe(sha256Hex(data));
    }
  });

  test("the trailer's checksum is verified: BadDigest when wrong", async () => {
    const body = encodeAwsChunked(data, { chunk_sizes: [65536], trailers: [["x-amz-checksum-crc32", checksumOf("crc32", text("x"))]] });
    const e = await failsAtEnd(body, chunkedHeaders("crc32"), unsigned_trailer);
    expect([e.code, e.message]).toEqual(["BadDigest", expect.stringMatching(/CRC32 .*x-amz-checksum-crc32 \(trailer\)/)]);
  });

  test("the announced trailer missing, an unannounced one, or a malformed value", async () => {
    const without = encodeAwsChunked(data, { chunk_sizes: [65536], trailers: [] });
    let e = await failsAtEnd(without, chunkedHeaders("crc32c"), unsigned_trailer);
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("do not carry it")]);
    const other = encodeAwsChunked(data, { chunk_sizes: [65536], trailers: [["x-amz-checksum-sha1", checksumOf("sha1", data)]] });
    e = await failsAtEnd(other, chunkedHeaders("crc32c"), unsigned_trailer);
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("does not announce")]);
    e = await failsAtEnd(other, chunkedHeaders(null), unsigned_trailer);
    expect(e.code).toBe("InvalidRequest");
    const malformed = encodeAwsChunked(data, { chunk_sizes: [65536], trailers: [["x-amz-checksum-crc32", "not base64"]] });
    e = await failsAtEnd(malformed, chunkedHeaders("crc32"), unsigned_trailer);
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("trailer")]);
  });

  test("x-amz-trailer where no trailer can come, or beside a checksum header, or naming a non-checksum", async () => {
    let e = await s3Failure(() => verifiedBody(null, new Headers({ "x-amz-trailer": "x-amz-checksum-crc32" }), unsigned));
    expect(e.code).toBe("InvalidRequest");
    e = await s3Failure(() =>
      verifiedBody(null, new Headers({ ...chunkedHeaders("crc32"), "x-amz-checksum-crc32": "AAAAAA==" }), unsigned_trailer),
    );
    expect(e.code).toBe("InvalidRequest");
    e = await s3Failure(() =>
      verifiedBody(
        null,
        new Headers({ ...chunkedHeaders("crc32"), "x-amz-checksum-sha256": checksumOf("sha256", data) }),
        unsigned_trailer,
      ),
    );
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("more than one checksum")]);
    e = await s3Failure(() =>
      verifiedBody(null, new Headers({ ...chunkedHeaders(null), "x-amz-trailer": "x-amz-meta-a" }), unsigned_trailer),
    );
    expect(e.code).toBe("InvalidRequest");
  });

  test("a checksum header on an aws-chunked body without trailer", async () => {
    const seed = "5".repeat(64);
    const body = encodeAwsChunked(data, { chunk_sizes: [65536], signer: ChunkSigner.example(seed) });
    const headers = { ...chunkedHeaders(null), "x-amz-checksum-crc64nvme": checksumOf("crc64nvme", data) };
    const mode = (): PayloadMode => ({ kind: "streaming_signed", chunks: realChunkCheck(ChunkSigner.example(seed)), trailer: false });
    expect(sha256Hex(await read(body, headers, mode()))).toBe(sha256Hex(data));
    const e = await failsAtEnd(body, { ...headers, "x-amz-checksum-crc64nvme": checksumOf("crc64nvme", text("?")) }, mode());
    expect(e.code).toBe("BadDigest");
  });

  test("AWS's signed trailer example end to end: chunk signatures, trailer signature and its CRC32C", async () => {
    const example = text("a".repeat(66560));
    const seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
    const body = encodeAwsChunked(example, {
      chunk_sizes: [65536],
      signer: ChunkSigner.example(seed),
      trailers: [["x-amz-checksum-crc32c", "sOO8/Q=="]],
    });
    const check = realChunkCheck(ChunkSigner.example(seed));
    const out = await read(body, chunkedHeaders("crc32c", example.length), { kind: "streaming_signed", chunks: check, trailer: true }, [1]);
    expect(out).toEqual(example);
    expect([check.chunks, check.trailers]).toEqual([3, 1]);
  });

  test("the closing empty line missing", async () => {
    const body = encodeAwsChunked(data, {
      chunk_sizes: [65536],
      trailers: [["x-amz-checksum-crc32", checksumOf("crc32", data)]],
      final_crlf: false,
    });
    expect(sha256Hex(await read(body, chunkedHeaders("crc32"), unsigned_trailer))).toBe(sha256Hex(data));
  });

  test("x-amz-decoded-content-length missing, wrong, or longer than the data", async () => {
    const body = encodeAwsChunked(data, { chunk_sizes: [65536], trailers: [] });
    let e = await s3Failure(() => verifiedBody(streamOf([body]), new Headers({ "content-encoding": "aws-chunked" }), unsigned_trailer));
    expect(e.code).toBe("MissingContentLength");
    e = await failsAtEnd(body, chunkedHeaders(null, data.length + 1), unsigned_trailer);
    expect([e.code, e.message]).toEqual([
      "IncompleteBody",
      expect.stringContaining(`${data.length} of x-amz-decoded-content-length ${data.length + 1}`),
    ]);
    e = await failsAtEnd(body, chunkedHeaders(null, data.length - 1), unsigned_trailer);
    expect(e.code).toBe("InvalidRequest");
  });

  test("the connection failing mid-body", async () => {
    const body = encodeAwsChunked(data, { chunk_sizes: [65536], trailers: [] });
    const verified = verifiedBody(
      failingStreamOf([body.subarray(0, 200_000)], new Error("reset")),
      new Headers(chunkedHeaders(null)),
      unsigned_trailer,
    );
    const e = await s3Failure(() => collect(verified.body));
    expect([e.code, e.message]).toEqual(["IncompleteBody", expect.stringMatching(/received \d+ of 1000003 bytes.*reset/)]);
  });

  test("Content-Encoding aws-chunked on a body that is not STREAMING-* is refused; stored encodings drop it", async () => {
    let e = await s3Failure(() => verifiedBody(null, new Headers({ "content-encoding": "aws-chunked" }), unsigned));
    expect(e.code).toBe("InvalidRequest");
    e = await s3Failure(() => verifiedBody(null, new Headers({ "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER" }), unsigned));
    expect(e.code).toBe("InvalidRequest");
    expect(storedContentEncoding("aws-chunked")).toBeNull();
    expect(storedContentEncoding("aws-chunked, gzip")).toBe("gzip");
    expect(storedContentEncoding("gzip,AWS-CHUNKED , br")).toBe("gzip, br");
    expect(storedContentEncoding(null)).toBeNull();
    // Other encodings listed with aws-chunked do not stop the decoding.
    const body = encodeAwsChunked(data, { chunk_sizes: [65536], trailers: [] });
    expect((await read(body, { ...chunkedHeaders(null), "content-encoding": "aws-chunked,gzip" }, unsigned_trailer)).length).toBe(
      data.length,
    );
  });
});

describe("through a real Bun.serve", () => {
  type Outcome = { bytes: number; sha256: string } | { error: string };
  const outcomes: Outcome[] = [];
  let arrived: (() => void) | null = null;
  const modeOf = (headers: Headers): PayloadMode => {
    const sha = headers.get("x-amz-content-sha256") ?? "UNSIGNED-PAYLOAD";
    if (sha === "STREAMING-UNSIGNED-PAYLOAD-TRAILER") return unsigned_trailer;
    return sha === "UNSIGNED-PAYLOAD" ? unsigned : { kind: "sha256", hex: sha };
  };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      let outcome: Outcome;
      try {
        const verified = verifiedBody(request.body, request.headers, modeOf(request.headers));
        const hasher = new Bun.CryptoHasher("sha256");
        let bytes = 0;
        for await (const piece of verified.body) {
          hasher.update(piece);
          bytes += piece.length;
        }
        outcome = { bytes, sha256: hasher.digest("hex") };
      } catch (e) {
        outcome = { error: e instanceof S3Error ? `${e.code}: ${e.message}` : String(e) };
      }
      outcomes.push(outcome);
      arrived?.();
      return new Response("", { status: "error" in outcome ? 400 : 200, headers: { etag: '"0"' } });
    },
  });
  afterAll(() => server.stop(true));
  const endpoint = `http://127.0.0.1:${server.port}`;

  test("a few MiB uploaded by Bun.S3Client arrive verified", async () => {
    outcomes.length = 0;
    const data = randomBytes(4 * 1024 * 1024 + 3);
    const client = new Bun.S3Client({ accessKeyId: "a", secretAccessKey: "s", endpoint, bucket: "b", region: "us-east-1" });
    await client.write("k", data);
    expect(outcomes).toEqual([{ bytes: data.length, sha256: sha256Hex(data) }]);
  });

  test("an aws-chunked stream sent with HTTP chunked transfer, as the SDK sends it", async () => {
    outcomes.length = 0;
    const data = randomBytes(3 * 1024 * 1024);
    const body = encodeAwsChunked(data, { chunk_sizes: [65536], trailers: [["x-amz-checksum-crc32", checksumOf("crc32", data)]] });
    const response = await fetch(`${endpoint}/b/k`, {
      method: "PUT",
      body: streamOf(splitBytes(body, [100_000])),
      headers: {
        "content-encoding": "aws-chunked",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "x-amz-decoded-content-length": String(data.length),
        "x-amz-trailer": "x-amz-checksum-crc32",
      },
    });
    expect(response.status).toBe(200);
    expect(outcomes).toEqual([{ bytes: data.length, sha256: sha256Hex(data) }]);
  });

  test("a client that disconnects mid-body gets IncompleteBody, not a stored short object", async () => {
    outcomes.length = 0;
    const done = new Promise<void>((resolve) => (arrived = resolve));
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port!,
      socket: { data() {}, open() {} },
    });
    socket.write(`PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n`);
    socket.write(new Uint8Array(40_000));
    socket.end();
    await done;
    arrived = null;
    expect(outcomes.length).toBe(1);
    expect(outcomes[0]).toEqual({
      error: expect.stringMatching(/^IncompleteBody: the body ended after \d+ of its Content-Length of 100000 bytes/),
    });
  });
});
