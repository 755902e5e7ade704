import { describe, expect, test } from "bun:test";
import { S3Error } from "./s3_error.ts";
import { decodeToken, encodeToken, type Position } from "./listing.ts";

describe("continuation tokens", () => {
  test("a key or a common prefix round-trips, as URL-safe text", () => {
    for (const p of [
      { kind: "key", name: new TextEncoder().encode("a/b c/é+?") },
      { kind: "prefix", name: new TextEncoder().encode("photos/2026/") },
      { kind: "key", name: new Uint8Array(1024).fill(0x7a) },
    ] as Position[]) {
      const token = encodeToken(p);
      expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(decodeToken(token)).toEqual(p);
    }
  });

  test("anything else is InvalidArgument naming continuation-token", () => {
    const too_long = encodeToken({ kind: "key", name: new Uint8Array(2000) });
    for (const bad of ["", "!!", "AA", Buffer.from([2, 65]).toString("base64url"), too_long]) {
      expect(() => decodeToken(bad)).toThrow(new S3Error("InvalidArgument", "The continuation token provided is incorrect"));
    }
  });
});
