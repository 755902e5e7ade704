import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { TestCa } from "../../tests/support/tls_certs.ts";
import { TlsConfigError, isTlsAlert, isTlsHandshake, readTlsFiles, tlsHandshakeFailure, tlsMismatch } from "./tls.ts";

const ca = TestCa.create();
const other = TestCa.create("other", ca.dir);
const good = ca.issue("replica");
const foreign = other.issue("intruder");
afterAll(() => ca.remove());

function error(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TlsConfigError);
    return (e as Error).message;
  }
  throw new Error("expected a TlsConfigError");
}

describe("readTlsFiles", () => {
  test("reads a matching certificate, key and CA", () => {
    const files = readTlsFiles(good.cert, good.key, good.ca);
    expect(files.cert).toContain("BEGIN CERTIFICATE");
    expect(files.key).toContain("PRIVATE KEY");
    expect(files.ca_file).toBe(good.ca);
  });

  test("a missing file is named, with why", () => {
    const missing = path.join(ca.dir, "nope.key");
    expect(error(() => readTlsFiles(good.cert, missing, good.ca))).toBe(`cannot read the TLS key ${missing}: no such file`);
  });

  test("an unreadable key file is named", () => {
    if (process.getuid?.() === 0) return; // root reads mode 000 files
    const locked = path.join(ca.dir, "locked.key");
    fs.copyFileSync(good.key, locked);
    fs.chmodSync(locked, 0);
    expect(error(() => readTlsFiles(good.cert, locked, good.ca))).toBe(`cannot read the TLS key ${locked}: permission denied`);
  });

  test("a key of another certificate is refused", () => {
    expect(error(() => readTlsFiles(good.cert, foreign.key, good.ca))).toContain(
      `${foreign.key} is not the private key of the certificate ${good.cert}`,
    );
  });

  test("a certificate from another CA is refused at start", () => {
    expect(error(() => readTlsFiles(foreign.cert, foreign.key, good.ca))).toContain(
      `${foreign.cert} was not issued by the CA in ${good.ca}`,
    );
  });

  test("files that are not PEM say which and what", () => {
    const junk = path.join(ca.dir, "junk.pem");
    fs.writeFileSync(junk, "hello\n");
    expect(error(() => readTlsFiles(junk, good.key, good.ca))).toContain(`${junk}: the TLS certificate holds no PEM certificate`);
    expect(error(() => readTlsFiles(good.cert, good.key, junk))).toContain(`${junk}: the TLS CA holds no PEM certificate`);
    expect(error(() => readTlsFiles(good.cert, junk, good.ca))).toContain(`${junk}: the TLS key is not a PEM private key`);
  });

  test("an expired certificate is refused with its date", () => {
    const later = Date.now() + 10 * 24 * 3600 * 1000;
    expect(error(() => readTlsFiles(good.cert, good.key, good.ca, later))).toContain(`${good.cert}: the certificate expired on`);
  });
});

describe("first bytes", () => {
  test("a TLS alert and a ClientHello are recognized; a frame's first bytes are not", () => {
    expect(isTlsAlert(new Uint8Array([21, 3, 1, 0, 2, 2, 70]))).toBe(true);
    expect(isTlsAlert(new Uint8Array([21, 3, 1, 0, 3]))).toBe(false);
    expect(isTlsHandshake(new Uint8Array([22, 3, 1, 1, 0]))).toBe(true);
    expect(isTlsHandshake(new Uint8Array([0x54, 0x46, 0x53, 0x31]))).toBe(false);
  });
});

describe("failures", () => {
  test("a replica refuses (and tells) a dialer that completed the handshake with a bad certificate, not a plain one", () => {
    expect(tlsHandshakeFailure("incoming", true, "unable to get issuer certificate", "ca.crt", "10.0.0.9")).toEqual({
      detail: "presented no TLS certificate, or one the cluster's CA did not issue (unable to get issuer certificate)",
      refuse: true,
    });
    expect(tlsHandshakeFailure("incoming", false, "WRONG_VERSION_NUMBER", "ca.crt", "10.0.0.9").refuse).toBe(false);
  });

  test("a dialer says which CA file and which name the replica's certificate must match", () => {
    const failure = tlsHandshakeFailure("outgoing", false, "self signed certificate in certificate chain", "/etc/ca.crt", "10.0.0.1");
    expect(failure.detail).toMatch(/^TLS: .*issued by the CA in \/etc\/ca.crt and name 10.0.0.1/);
    expect(failure.refuse).toBe(false);
  });

  test("without TLS: an alert to a dialer and a ClientHello to a replica are TLS mismatches; frames are not", () => {
    expect(tlsMismatch("outgoing", new Uint8Array([21, 3, 3, 0, 2, 2, 40]))).toMatch(/requires TLS/);
    expect(tlsMismatch("incoming", new Uint8Array([22, 3, 1, 2, 0]))).toMatch(/no TLS configured/);
    expect(tlsMismatch("incoming", new Uint8Array([21, 3, 3, 0, 2]))).toBeNull();
    expect(tlsMismatch("outgoing", new Uint8Array(128).fill(7))).toBeNull();
  });
});
