import { describe, expect, test } from "bun:test";
import { type ChecksumAlgorithm, checksum_algorithms, checksumAlgorithmOfHeader, crc32c, crc64nvme, newChecksum } from "./checksums.ts";

const encoder = new TextEncoder();
const check_input = encoder.encode("123456789");

/**
 * A CRC computed one bit at a time straight from its parameter definition (width, polynomial as
 * written MSB first, initial value, reflected input/output, final xor), with BigInt: slow, but with
 * nothing in common with the table-driven code it checks.
 */
function referenceCrc(
  p: { width: number; poly: bigint; init: bigint; refin: boolean; refout: boolean; xorout: bigint },
  bytes: Uint8Array,
): bigint {
  const top = 1n << BigInt(p.width - 1);
  const mask = (1n << BigInt(p.width)) - 1n;
  const reflect = (v: bigint, bits: number): bigint => {
    let r = 0n;
    for (let i = 0; i < bits; i++) if (v & (1n << BigInt(i))) r |= 1n << BigInt(bits - 1 - i);
    return r;
  };
  let crc = p.init;
  for (const byte of bytes) {
    const b = p.refin ? reflect(BigInt(byte), 8) : BigInt(byte);
    crc ^= b << BigInt(p.width - 8);
    for (let bit = 0; bit < 8; bit++) crc = crc & top ? ((crc << 1n) ^ p.poly) & mask : (crc << 1n) & mask;
  }
  if (p.refout) crc = reflect(crc, p.width);
  return crc ^ p.xorout;
}

const ones32 = 0xffffffffn;
const ones64 = 0xffffffffffffffffn;
const crc32_params = { width: 32, poly: 0x04c11db7n, init: ones32, refin: true, refout: true, xorout: ones32 };
const crc32c_params = { width: 32, poly: 0x1edc6f41n, init: ones32, refin: true, refout: true, xorout: ones32 };
const crc64nvme_params = { width: 64, poly: 0xad93d23594c93659n, init: ones64, refin: true, refout: true, xorout: ones64 };

function hexOfBase64(b64: string): string {
  return Buffer.from(b64, "base64").toString("hex");
}

function digest(algorithm: ChecksumAlgorithm, pieces: Uint8Array[]): string {
  const c = newChecksum(algorithm);
  for (const p of pieces) c.update(p);
  return c.digestBase64();
}

function randomBytes(n: number, seed: number): Uint8Array {
  // xorshift32: reproducible data without a 64 KiB getRandomValues limit.
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

describe("check values of '123456789'", () => {
  test("the bitwise definitions give the published check values", () => {
    expect(referenceCrc(crc32_params, check_input).toString(16)).toBe("cbf43926");
    expect(referenceCrc(crc32c_params, check_input).toString(16)).toBe("e3069283");
    expect(referenceCrc(crc64nvme_params, check_input).toString(16)).toBe("ae8b14860a799888");
  });

  test("every algorithm's digest, big-endian in base64 as S3 carries it", () => {
    expect(hexOfBase64(digest("crc32", [check_input]))).toBe("cbf43926");
    expect(hexOfBase64(digest("crc32c", [check_input]))).toBe("e3069283");
    expect(hexOfBase64(digest("crc64nvme", [check_input]))).toBe("ae8b14860a799888");
    expect(hexOfBase64(digest("sha1", [check_input]))).toBe("f7c3bc1d808e04732adf679965ccc34ca7ae3441");
    expect(hexOfBase64(digest("sha256", [check_input]))).toBe("15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225");
  });

  test("Bun.hash.crc32 is the IEEE CRC32 and continues from a previous value", () => {
    expect(Bun.hash.crc32(check_input)).toBe(0xcbf43926);
    expect(Bun.hash.crc32(check_input.subarray(4), Bun.hash.crc32(check_input.subarray(0, 4)))).toBe(0xcbf43926);
  });
});

test("the empty body", () => {
  expect(digest("crc32", [])).toBe("AAAAAA==");
  expect(digest("crc32c", [])).toBe("AAAAAA==");
  expect(digest("crc64nvme", [])).toBe("AAAAAAAAAAA=");
  expect(digest("sha1", [])).toBe("2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
  expect(digest("sha256", [])).toBe("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
  expect(digest("crc32c", [new Uint8Array(0), new Uint8Array(0)])).toBe("AAAAAA==");
});

test("the table-driven CRCs equal the bitwise definitions on every length 0..64 and odd offsets", () => {
  const data = randomBytes(200, 7);
  for (let length = 0; length <= 64; length++)
    for (const offset of [0, 1, 3, 7]) {
      const bytes = data.subarray(offset, offset + length);
      expect(crc32c(bytes)).toBe(Number(referenceCrc(crc32c_params, bytes)));
      const [hi, lo] = crc64nvme(bytes);
      expect((BigInt(hi) << 32n) | BigInt(lo)).toBe(referenceCrc(crc64nvme_params, bytes));
    }
});

test("a large random input split at every kind of boundary digests the same as in one piece", () => {
  const data = randomBytes(1 << 20, 99);
  const pieces_of = (sizes: number[]): Uint8Array[] => {
    const out: Uint8Array[] = [];
    for (let at = 0, i = 0; at < data.length; i++) {
      const n = Math.min(sizes[i % sizes.length], data.length - at);
      out.push(data.subarray(at, at + n));
      at += n;
    }
    return out;
  };
  const splits = [[1 << 20], [65536], [1, 7, 8, 9, 15, 16, 17, 4093], [3], [8191, 1]];
  for (const algorithm of checksum_algorithms) {
    const whole = digest(algorithm, [data]);
    for (const sizes of splits) expect(digest(algorithm, pieces_of(sizes))).toBe(whole);
  }
  // One-byte pieces over a shorter prefix (a million awaits would only slow the test).
  const prefix = data.subarray(0, 5000);
  const one_bytes = Array.from({ length: prefix.length }, (_, i) => prefix.subarray(i, i + 1));
  for (const algorithm of checksum_algorithms) expect(digest(algorithm, one_bytes)).toBe(digest(algorithm, [prefix]));
  expect(Number(referenceCrc(crc32_params, prefix))).toBe(Bun.hash.crc32(prefix));
});

test("header names map to algorithms; other x-amz-checksum-* headers are not digests", () => {
  expect(checksumAlgorithmOfHeader("x-amz-checksum-crc32")).toBe("crc32");
  expect(checksumAlgorithmOfHeader("X-Amz-Checksum-CRC64NVME")).toBe("crc64nvme");
  expect(checksumAlgorithmOfHeader("x-amz-checksum-crc32c")).toBe("crc32c");
  expect(checksumAlgorithmOfHeader("x-amz-checksum-sha1")).toBe("sha1");
  expect(checksumAlgorithmOfHeader("x-amz-checksum-sha256")).toBe("sha256");
  for (const other of [
    "x-amz-checksum-type",
    "x-amz-checksum-algorithm",
    "x-amz-checksum-mode",
    "x-amz-checksum-md5",
    "content-md5",
    "x-amz-sdk-checksum-algorithm",
  ])
    expect(checksumAlgorithmOfHeader(other)).toBeNull();
});
