import { describe, expect, test } from "bun:test";
import {
  ChunkSigner,
  collect,
  randomBytes,
  s3Failure,
  encodeAwsChunked,
  piecesOf,
  realChunkCheck,
  sha256Hex,
  splitBytes,
} from "../../tests/support/aws_chunked.ts";
import type { ChunkSignatureCheck } from "./auth_result.ts";
import {
  type AwsChunkedOptions,
  aws_chunked_chunk_size_max_bytes,
  aws_chunked_header_line_max_bytes,
  aws_chunked_trailers_max_bytes,
  decodeAwsChunked,
} from "./aws_chunked.ts";

const encoder = new TextEncoder();
const text = (s: string): Uint8Array => encoder.encode(s);

async function decode(
  body: Uint8Array | Uint8Array[],
  o: AwsChunkedOptions,
): Promise<{ data: Uint8Array; trailers: ReadonlyMap<string, string> }> {
  const decoded = decodeAwsChunked(piecesOf(Array.isArray(body) ? body : [body]), o);
  const data = await collect(decoded.data);
  return { data, trailers: decoded.trailers };
}

const unsigned = (decoded_length: number, trailer = false): AwsChunkedOptions => ({ decoded_length, signatures: null, trailer });

/** Accepts every signature and records what it was asked, for tests about framing only. */
function acceptingCheck(): ChunkSignatureCheck & { seen: string[] } {
  const seen: string[] = [];
  return { seen, chunk: (_s, sha) => (seen.push(sha), true), trailer: (_s, lines) => (seen.push(lines), true) };
}

describe("AWS's published SigV4 streaming examples", () => {
  // 66,560 bytes of "a" in chunks of 64 KiB, 1 KiB and the final empty one, signed with the
  // example credentials at 20130524T000000Z in us-east-1 (docs.aws.amazon.com, sigv4-streaming).
  const data = text("a".repeat(66560));

  test("STREAMING-AWS4-HMAC-SHA256-PAYLOAD: the signatures we compute are AWS's, and the body decodes", async () => {
    const seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const body = encodeAwsChunked(data, { chunk_sizes: [65536], signer: ChunkSigner.example(seed) });
    const head = new TextDecoder().decode(body.subarray(0, 100));
    expect(head).toStartWith("10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
    const tail = new TextDecoder().decode(body.subarray(88 + 65536 + 2));
    expect(tail).toStartWith("400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
    expect(tail).toEndWith("0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
    const check = realChunkCheck(ChunkSigner.example(seed));
    const out = await decode(splitBytes(body, [1000, 1, 7]), { decoded_length: data.length, signatures: check, trailer: false });
    expect(out.data).toEqual(data);
    expect(check.chunks).toBe(3);
  });

  test("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: the chain and the trailer signature are AWS's", async () => {
    const seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
    const body = encodeAwsChunked(data, {
      chunk_sizes: [65536],
      signer: ChunkSigner.example(seed),
      trailers: [["x-amz-checksum-crc32c", "sOO8/Q=="]],
    });
    const tail = new TextDecoder().decode(body.subarray(body.length - 300));
    expect(tail).toEndWith(
      "0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n" +
        "x-amz-checksum-crc32c:sOO8/Q==\r\n" +
        "x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n",
    );
    const check = realChunkCheck(ChunkSigner.example(seed));
    const out = await decode(body, { decoded_length: data.length, signatures: check, trailer: true });
    expect(out.data).toEqual(data);
    expect(out.trailers).toEqual(new Map([["x-amz-checksum-crc32c", "sOO8/Q=="]]));
    expect(check.trailers).toBe(1);
  });
});

describe("framing split at every boundary", () => {
  const seed = "0".repeat(64);
  const small = randomBytes(300);
  const variants: [string, (data: Uint8Array) => { body: Uint8Array; o: AwsChunkedOptions }][] = [
    [
      "unsigned trailer",
      (d) => ({
        body: encodeAwsChunked(d, { chunk_sizes: [100, 37], trailers: [["x-amz-checksum-crc32", "AAAAAA=="]] }),
        o: unsigned(d.length, true),
      }),
    ],
    [
      "signed",
      (d) => ({
        body: encodeAwsChunked(d, { chunk_sizes: [128], signer: ChunkSigner.example(seed) }),
        o: { decoded_length: d.length, signatures: realChunkCheck(ChunkSigner.example(seed)), trailer: false },
      }),
    ],
    [
      "signed trailer",
      (d) => ({
        body: encodeAwsChunked(d, {
          chunk_sizes: [64, 200],
          signer: ChunkSigner.example(seed),
          trailers: [["x-amz-checksum-sha256", "x".repeat(44)]],
        }),
        o: { decoded_length: d.length, signatures: realChunkCheck(ChunkSigner.example(seed)), trailer: true },
      }),
    ],
  ];

  for (const [name, make] of variants) {
    test(`${name}: two pieces split at every byte position, and one-byte pieces`, async () => {
      const { body } = make(small);
      for (let cut = 0; cut <= body.length; cut++) {
        const { o } = make(small); // a fresh signature chain for each decode
        const out = await decode([body.subarray(0, cut), body.subarray(cut)], o);
        expect(out.data).toEqual(small);
      }
      const out = await decode(splitBytes(body, [1]), make(small).o);
      expect(out.data).toEqual(small);
    });
  }

  test("a large random body in the chunk sizes clients use, in odd pieces", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 5);
    for (const chunk_sizes of [[65536], [8 * 1024 * 1024], [8192, 1, 65535]]) {
      const body = encodeAwsChunked(data, {
        chunk_sizes,
        signer: ChunkSigner.example(seed),
        trailers: [["x-amz-checksum-crc64nvme", "AAAAAAAAAAA="]],
      });
      for (const pieces of [[65536], [4093], [1 << 20, 1, 2, 3]]) {
        const check = realChunkCheck(ChunkSigner.example(seed));
        const out = await decode(splitBytes(body, pieces), { decoded_length: data.length, signatures: check, trailer: true });
        expect(out.data.length).toBe(data.length);
        expect(sha256Hex(out.data)).toBe(sha256Hex(data));
      }
    }
  });

  test("an empty body is just the final chunk", async () => {
    const out = await decode(text("0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"), unsigned(0, true));
    expect(out.data.length).toBe(0);
    expect(out.trailers.get("x-amz-checksum-crc32")).toBe("AAAAAA==");
    expect((await decode(text("0\r\n\r\n"), unsigned(0))).data.length).toBe(0);
  });
});

describe("what clients send that the strict grammar would refuse", () => {
  test("the closing empty line missing after the final chunk or after the last trailer", async () => {
    const data = randomBytes(1000);
    const signed = encodeAwsChunked(data, { chunk_sizes: [300], signer: ChunkSigner.example("1".repeat(64)), final_crlf: false });
    expect(new TextDecoder().decode(signed.subarray(signed.length - 5))).not.toContain("\r\n\r\n");
    const check = realChunkCheck(ChunkSigner.example("1".repeat(64)));
    expect((await decode(signed, { decoded_length: 1000, signatures: check, trailer: false })).data).toEqual(data);
    const trailer = encodeAwsChunked(data, { chunk_sizes: [512], trailers: [["x-amz-checksum-crc32", "AAAAAA=="]], final_crlf: false });
    const out = await decode(splitBytes(trailer, [1]), unsigned(1000, true));
    expect(out.data).toEqual(data);
    expect(out.trailers.get("x-amz-checksum-crc32")).toBe("AAAAAA==");
  });

  test("upper-case hex sizes, leading zeros and space around a trailer value", async () => {
    const out = await decode(text("00A\r\n0123456789\r\n0\r\nx-amz-checksum-crc32: AAAAAA== \r\n\r\n"), unsigned(10, true));
    expect(new TextDecoder().decode(out.data)).toBe("0123456789");
    expect(out.trailers.get("x-amz-checksum-crc32")).toBe("AAAAAA==");
  });

  test("an unsigned trailer needs no signature, and one sent anyway is not taken for a trailer", async () => {
    const body = text(`3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\nx-amz-trailer-signature:${"a".repeat(64)}\r\n\r\n`);
    const out = await decode(body, unsigned(3, true));
    expect([...out.trailers.keys()]).toEqual(["x-amz-checksum-crc32"]);
  });
});

test("data streams through before its chunk ends: a 1 MiB chunk is not held whole", async () => {
  const data = randomBytes(1 << 20);
  const body = encodeAwsChunked(data, { chunk_sizes: [1 << 20], trailers: [] });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let delivered = 0;
  async function* raw(): AsyncGenerator<Uint8Array, void, undefined> {
    delivered = 1000;
    yield body.subarray(0, 1000); // header and the first bytes of the chunk
    delivered = body.length;
    await gate;
    yield body.subarray(1000);
  }
  const iterator = decodeAwsChunked(raw(), unsigned(data.length, true)).data[Symbol.asyncIterator]();
  const first = await iterator.next();
  expect(first.done).toBe(false);
  expect(delivered).toBe(1000);
  expect(first.value).toEqual(data.subarray(0, 1000 - "100000\r\n".length));
  release();
  let rest = 0;
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) rest += next.value.length;
  expect(first.value!.length + rest).toBe(data.length);
});

describe("failures, each an S3Error thrown before the data ends", () => {
  const seed = "2".repeat(64);
  const data = randomBytes(500);
  const signedOptions = (): AwsChunkedOptions => ({
    decoded_length: data.length,
    signatures: realChunkCheck(ChunkSigner.example(seed)),
    trailer: false,
  });

  test("a changed data byte breaks its chunk's signature", async () => {
    const body = encodeAwsChunked(data, { chunk_sizes: [200], signer: ChunkSigner.example(seed) });
    const offset = body.indexOf(13) + 2 + 250 + 86; // inside the second chunk's data
    body[offset] ^= 1;
    const e = await s3Failure(() => decode(body, signedOptions()));
    expect(e.code).toBe("SignatureDoesNotMatch");
    expect(e.message).toContain("chunk 1");
  });

  test("chunks swapped in order, or signed with another chain, do not verify", async () => {
    const body = encodeAwsChunked(data, { chunk_sizes: [250], signer: ChunkSigner.example("3".repeat(64)) });
    expect((await s3Failure(() => decode(body, signedOptions()))).code).toBe("SignatureDoesNotMatch");
  });

  test("a signed body whose chunk lacks its signature; an unsigned body whose chunk has one", async () => {
    const plain = encodeAwsChunked(data, { chunk_sizes: [250] });
    const e = await s3Failure(() => decode(plain, signedOptions()));
    expect(e.code).toBe("SignatureDoesNotMatch");
    expect(e.message).toContain("no chunk-signature");
    const signed = encodeAwsChunked(data, { chunk_sizes: [250], signer: ChunkSigner.example(seed) });
    expect((await s3Failure(() => decode(signed, unsigned(data.length)))).code).toBe("InvalidRequest");
    const short_sig = text("3;chunk-signature=abc\r\nabc\r\n0;chunk-signature=abc\r\n\r\n");
    expect((await s3Failure(() => decode(short_sig, { decoded_length: 3, signatures: acceptingCheck(), trailer: false }))).code).toBe(
      "SignatureDoesNotMatch",
    );
  });

  test("a signed trailer with a wrong or missing signature", async () => {
    const trailers: [string, string][] = [["x-amz-checksum-crc32", "AAAAAA=="]];
    const good = encodeAwsChunked(data, { chunk_sizes: [250], signer: ChunkSigner.example(seed), trailers });
    const o = (): AwsChunkedOptions => ({ ...signedOptions(), trailer: true });
    const tampered = Buffer.from(good).toString("latin1").replace("AAAAAA==", "AAAAAB==");
    const wrong = await s3Failure(() => decode(Buffer.from(tampered, "latin1"), o()));
    expect([wrong.code, wrong.message]).toEqual(["SignatureDoesNotMatch", "the signature of the trailers does not match"]);
    const cut = Buffer.from(good)
      .toString("latin1")
      .replace(/x-amz-trailer-signature:[0-9a-f]+\r\n/, "");
    const e = await s3Failure(() => decode(Buffer.from(cut, "latin1"), o()));
    expect(e.code).toBe("SignatureDoesNotMatch");
    expect(e.message).toContain("x-amz-trailer-signature");
  });

  test("limits: header line, trailers, chunk size, each named in the message", async () => {
    const long_header = text(`3;chunk-signature=${"a".repeat(aws_chunked_header_line_max_bytes)}\r\nabc\r\n0\r\n\r\n`);
    let e = await s3Failure(() => decode(long_header, { decoded_length: 3, signatures: acceptingCheck(), trailer: false }));
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining(`${aws_chunked_header_line_max_bytes} bytes`)]);
    const many_trailers = Array.from({ length: 600 }, (_, i) => `x-amz-meta-${i}:${"v".repeat(20)}\r\n`).join("");
    e = await s3Failure(() => decode(text(`0\r\n${many_trailers}\r\n`), unsigned(0, true)));
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining(`${aws_chunked_trailers_max_bytes} bytes`)]);
    const huge = (aws_chunked_chunk_size_max_bytes + 1).toString(16);
    e = await s3Failure(() => decode(text(`${huge}\r\nabc`), unsigned(1 << 30)));
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("16 MiB")]);
    e = await s3Failure(() => decode(text(`${"f".repeat(40)}\r\nabc`), unsigned(1 << 30)));
    expect(e.code).toBe("InvalidRequest");
    // Exactly 16 MiB is allowed.
    const max = encodeAwsChunked(new Uint8Array(aws_chunked_chunk_size_max_bytes), { chunk_sizes: [aws_chunked_chunk_size_max_bytes] });
    expect((await decode(max, unsigned(aws_chunked_chunk_size_max_bytes))).data.length).toBe(aws_chunked_chunk_size_max_bytes);
  });

  test("sizes with leading junk, and lines that are not the grammar", async () => {
    for (const bad of [
      " 3\r\nabc\r\n0\r\n\r\n",
      "+3\r\nabc\r\n0\r\n\r\n",
      "0x3\r\nabc\r\n0\r\n\r\n",
      "\r\nabc\r\n0\r\n\r\n",
      "3 \r\nabc\r\n0\r\n\r\n",
      "3;foo=bar\r\nabc\r\n0\r\n\r\n",
      "3\nabc\r\n0\r\n\r\n",
    ]) {
      const e = await s3Failure(() => decode(text(bad), unsigned(3)));
      expect(e.code).toBe("InvalidRequest");
    }
  });

  test("a chunk longer than it announced", async () => {
    const e = await s3Failure(() => decode(text("3\r\nabcd\r\n0\r\n\r\n"), unsigned(4)));
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("longer than its announced 3 bytes")]);
  });

  test("more data than x-amz-decoded-content-length: refused before it is passed on", async () => {
    const body = encodeAwsChunked(data, { chunk_sizes: [300] });
    const decoded = decodeAwsChunked(piecesOf([body]), unsigned(400));
    let passed = 0;
    const e = await s3Failure(() =>
      (async () => {
        for await (const p of decoded.data) passed += p.length;
      })(),
    );
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("x-amz-decoded-content-length 400")]);
    expect(passed).toBe(300);
  });

  test("less data than x-amz-decoded-content-length", async () => {
    const e = await s3Failure(() => decode(encodeAwsChunked(data, { chunk_sizes: [300] }), unsigned(600)));
    expect([e.code, e.message]).toEqual(["IncompleteBody", expect.stringContaining("500 of x-amz-decoded-content-length 600")]);
  });

  test("the body ending early: inside a chunk, between chunks, inside the trailers", async () => {
    const body = encodeAwsChunked(data, { chunk_sizes: [300], trailers: [["x-amz-checksum-crc32", "AAAAAA=="]] });
    let e = await s3Failure(() => decode(body.subarray(0, 100), unsigned(500, true)));
    expect([e.code, e.message]).toEqual(["IncompleteBody", expect.stringContaining("received 95 of 500 bytes")]);
    e = await s3Failure(() => decode(body.subarray(0, 5 + 300 + 2), unsigned(500, true)));
    expect([e.code, e.message]).toEqual(["IncompleteBody", expect.stringContaining("received 300 of 500 bytes")]);
    e = await s3Failure(() => decode(body.subarray(0, 5 + 300 + 1), unsigned(500, true)));
    expect(e.code).toBe("IncompleteBody");
    e = await s3Failure(() => decode(body.subarray(0, body.length - 8), unsigned(500, true)));
    expect([e.code, e.message]).toEqual(["IncompleteBody", expect.stringContaining("trailers")]);
    // Right after all the data but before the final chunk.
    const all_data = body.subarray(0, Buffer.from(body).indexOf("0\r\nx-amz"));
    e = await s3Failure(() => decode(all_data, unsigned(500, true)));
    expect([e.code, e.message]).toEqual(["IncompleteBody", expect.stringContaining("before its final chunk")]);
  });

  test("trailers where none may be, undeclared forms, and bytes after the end", async () => {
    let e = await s3Failure(() => decode(text("3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"), unsigned(3, false)));
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("announces none")]);
    e = await s3Failure(() => decode(text("0\r\nno colon here\r\n\r\n"), unsigned(0, true)));
    expect(e.code).toBe("InvalidRequest");
    e = await s3Failure(() => decode(text("0\r\na:1\r\na:2\r\n\r\n"), unsigned(0, true)));
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("twice")]);
    const after_signature = `0;chunk-signature=${"a".repeat(64)}\r\nx-amz-trailer-signature:${"b".repeat(64)}\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n`;
    e = await s3Failure(() => decode(text(after_signature), { decoded_length: 0, signatures: acceptingCheck(), trailer: true }));
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("must come last")]);
    e = await s3Failure(() => decode(text("3\r\nabc\r\n0\r\n\r\nextra"), unsigned(3)));
    expect([e.code, e.message]).toEqual(["InvalidRequest", expect.stringContaining("follow the end")]);
  });
});
