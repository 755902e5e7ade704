/**
 * Mutual TLS files (docs/PROTOCOL.md §6.8): a certificate, its private key and the cluster's CA.
 *
 * They are read and checked once, at start, so that a wrong file is an error naming the file and
 * what is wrong with it rather than every connection failing later with an OpenSSL code: the
 * certificate and the key parse and belong together, the CA parses, the CA (or the chain in the
 * certificate file) issued the certificate, and the certificate is within its validity dates.
 *
 * Every connection then verifies its peer against the CA: a replica asks every dialer for a
 * certificate and checks it in Bun's handshake callback; a dialer checks the replica's
 * certificate and that it names the address dialed (its IP or DNS subjectAltName).
 */
import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import type { TLSOptions } from "bun";
import type { Direction } from "./connection.ts";

/** The PEM texts Bun's TLS options take, with the files they came from (for messages). */
export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  readonly cert_file: string;
  readonly key_file: string;
  readonly ca_file: string;
}

export class TlsConfigError extends Error {
  override name = "TlsConfigError";
}

const pem_certificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (error as Error).message;
    throw new TlsConfigError(`cannot read the TLS ${what} ${file}: ${why}`);
  }
}

/** Every certificate of a PEM file, in order; an error naming the file if it holds none. */
function certificates(text: string, file: string, what: string): X509Certificate[] {
  const blocks = text.match(pem_certificate) ?? [];
  if (blocks.length === 0) throw new TlsConfigError(`${file}: the TLS ${what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw new TlsConfigError(`${file}: certificate ${i + 1} of the TLS ${what} does not parse: ${(error as Error).message}`);
    }
  });
}

function privateKey(text: string, file: string): KeyObject {
  if (/ENCRYPTED/.test(text)) {
    throw new TlsConfigError(`${file}: the TLS key is encrypted with a passphrase; give ToastyFS an unencrypted key (kept mode 0600)`);
  }
  try {
    return createPrivateKey(text);
  } catch (error) {
    throw new TlsConfigError(`${file}: the TLS key is not a PEM private key: ${(error as Error).message}`);
  }
}

/** Reads and checks the three files; `now_ms` is injectable for tests of the validity dates. */
export function readTlsFiles(cert_file: string, key_file: string, ca_file: string, now_ms = Date.now()): TlsFiles {
  const cert = readText(cert_file, "certificate");
  const key = readText(key_file, "key");
  const ca = readText(ca_file, "CA");
  const chain = certificates(cert, cert_file, "certificate");
  const authorities = certificates(ca, ca_file, "CA");
  const leaf = chain[0]!;
  if (!leaf.checkPrivateKey(privateKey(key, key_file))) {
    throw new TlsConfigError(`${key_file} is not the private key of the certificate ${cert_file} (${leaf.subject.replace(/\n/g, ", ")})`);
  }
  if (Date.parse(leaf.validFrom) > now_ms) throw new TlsConfigError(`${cert_file}: the certificate is not valid before ${leaf.validFrom}`);
  if (Date.parse(leaf.validTo) < now_ms) throw new TlsConfigError(`${cert_file}: the certificate expired on ${leaf.validTo}`);
  const issuers = [...chain.slice(1), ...authorities];
  if (!issuers.some((issuer) => leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey))) {
    throw new TlsConfigError(
      `${cert_file} was not issued by the CA in ${ca_file} (certificate issuer: ${leaf.issuer.replace(/\n/g, ", ")}): peers would refuse it; every replica and client needs a certificate from the cluster's CA`,
    );
  }
  return { cert, key, ca, cert_file, key_file, ca_file };
}

/** Bun's `tls` option for a listener (a replica) or a dialer. A listener asks for a certificate but
 * lets the handshake finish even without a valid one (rejectUnauthorized false), because the
 * transport decides in the handshake callback and tells a refused dialer why; a dialer lets Bun
 * refuse a replica whose certificate the CA did not issue or that does not name the address
 * dialed. An empty cert and key present no certificate (tests of a dialer without one). */
export function tlsSocketOptions(files: TlsFiles, side: "listen" | "dial"): TLSOptions {
  const own = files.cert === "" && files.key === "" ? {} : { cert: files.cert, key: files.key };
  return side === "listen"
    ? { ...own, ca: files.ca, requestCert: true, rejectUnauthorized: false }
    : { ...own, ca: files.ca, rejectUnauthorized: true };
}

/** Why a TLS handshake failed, for the log (incoming: what "the peer" did) or for the dialer's
 * owner; refuse: the replica tells the dialer (a refusal inside TLS). A plain dialer never
 * completes the handshake; one whose certificate the CA did not issue (or that sent none) does,
 * and can read the refusal before the close. */
export function tlsHandshakeFailure(
  direction: Direction,
  completed: boolean,
  why: string,
  ca_file: string,
  host: string,
): { detail: string; refuse: boolean } {
  if (direction === "outgoing") {
    return {
      detail: `TLS: the replica's certificate was not accepted (${why}): it must be issued by the CA in ${ca_file} and name ${host} (subjectAltName)`,
      refuse: false,
    };
  }
  return completed
    ? { detail: `presented no TLS certificate, or one the cluster's CA did not issue (${why})`, refuse: true }
    : { detail: `failed the TLS handshake (${why}): a client or replica without --tls-cert/--tls-key/--tls-ca?`, refuse: false };
}

/** Without TLS, what a stream's first bytes say: a TLS alert from a replica that requires TLS, or
 * a ClientHello from a dialer that expects TLS here (the failure's detail); null: neither. */
export function tlsMismatch(direction: Direction, first: Uint8Array): string | null {
  if (direction === "outgoing" && isTlsAlert(first))
    return "TLS: the replica requires TLS and answered our plain connection with a TLS alert (give --tls-cert, --tls-key and --tls-ca)";
  if (direction === "incoming" && isTlsHandshake(first))
    return "started a TLS handshake, but this replica has no TLS configured (--tls-cert, --tls-key, --tls-ca)";
  return null;
}

/** Whether a stream's first bytes are a TLS alert record (content type 21, version 3.x, length 2):
 * what a replica that requires TLS answers a plain connection with. A ToastyFS frame starts with
 * its checksum, so a false match is a 2^-40 chance on the first frame of a connection only. */
export function isTlsAlert(bytes: Uint8Array): boolean {
  return bytes.length >= 5 && bytes[0] === 21 && bytes[1] === 3 && bytes[2]! <= 4 && bytes[3] === 0 && bytes[4] === 2;
}

/** Whether a stream's first bytes are a TLS handshake record (a ClientHello): a TLS dialer
 * reaching a replica that has no TLS. */
export function isTlsHandshake(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 22 && bytes[1] === 3 && bytes[2]! <= 4;
}
