/**
 * The authentication handshake that opens every connection of a cluster with a secret
 * (docs/PROTOCOL.md §6.2): a pure state machine, bytes in and bytes out, no sockets, no clock, the
 * nonces given by the caller (so tests are deterministic).
 *
 *   dialer → acceptor   HELLO      48 bytes: who I claim to be, which cluster, nonce_d
 *   acceptor → dialer   CHALLENGE  72 bytes: acceptor's index, nonce_a, mac_a (proves the acceptor
 *                                  holds the key of the role the dialer claims)
 *   dialer → acceptor   PROOF      40 bytes: mac_d (proves the dialer holds it)
 *
 * Both MACs cover both fresh nonces (mac_a covers HELLO with nonce_d; mac_d covers CHALLENGE with
 * nonce_a), so neither can be replayed; they are domain-separated ("accept", "dial"), so one side's
 * MAC can never be reflected back as the other's. The session keys, one per direction, are MACs of
 * the same transcript. The dialer may send frames right after PROOF; the acceptor hands back
 * whatever followed PROOF in the same chunk as `rest`.
 */
import { timingSafeEqual } from "node:crypto";
import { assert } from "../../util/assert.ts";
import { readU32, readU64Big, writeU32, writeU64Big } from "../../util/bytes.ts";
import { replicas_max, sender_client, wire_magic } from "../../constants.ts";
import { Offset } from "../codec.ts";
import { hmacSha256, type AuthKeys } from "./secret.ts";

/** "TFSH", "TFSR" as little-endian u32, like wire_magic ("TFS1"). */
export const handshake_magic = 0x48534654;
export const refusal_magic = 0x52534654;
/** Version 1: frame tags are HMAC-SHA256 (the C client's). Version 2: AES-256-GCM tags (GMAC,
 * frame_tag.ts), about 8 times cheaper per byte here; the TypeScript transport dials with it. The
 * dialer picks in its HELLO, the acceptor answers in kind; the version byte is inside every MAC
 * and session key, so it cannot be downgraded in flight. */
export const handshake_version = 1;
export const handshake_version_gmac = 2;
export type HandshakeVersion = typeof handshake_version | typeof handshake_version_gmac;
function isVersion(byte: number | undefined): byte is HandshakeVersion {
  return byte === handshake_version || byte === handshake_version_gmac;
}
export const nonce_size = 32;
export const mac_size = 32;
export const hello_size = 48;
export const challenge_size = 72;
export const proof_size = 40;
export const refusal_size = 8;
/** Where a plain frame ("TFS1") has its magic: a header starts with its checksum. */
const plain_magic_offset = Offset.magic;

export enum MessageType {
  hello = 1,
  challenge = 2,
  proof = 3,
}

export enum AuthRole {
  client = 0,
  replica = 1,
}

/** Why an acceptor refused (byte 5 of a refusal), so the dialer can say what to fix. */
export enum RefusalCode {
  /** The acceptor has a secret and the dialer sent a plain frame. */
  secret_required = 1,
  /** The acceptor has no secret and the dialer sent a HELLO. */
  no_secret = 2,
  wrong_cluster = 3,
  /** The claimed replica index is out of range or the acceptor's own, or a client claimed one. */
  bad_sender = 4,
  version = 5,
  /** The dialer's PROOF did not verify. */
  bad_proof = 6,
  /** A malformed HELLO or PROOF. */
  malformed = 7,
  /** Mutual TLS (§6.8): the dialer's certificate was missing or not issued by the cluster's CA.
   * Sent inside TLS, once the dialer has verified the replica. */
  tls_certificate = 8,
}

/** Reasons a handshake failed, as counted in auth_failures. */
export type AuthFailure =
  | "plain_frame" // expected a handshake, got a plain "TFS1" frame
  | "refused" // the other side sent a refusal
  | "malformed" // wrong magic, type, reserved bytes
  | "version"
  | "wrong_cluster"
  | "bad_sender" // an index out of range, our own, or not the replica we dialed
  | "bad_mac";

export type HandshakeStep =
  | { readonly status: "pending"; readonly output: Uint8Array | null }
  | {
      readonly status: "done";
      readonly output: Uint8Array | null;
      readonly keys: SessionKeys;
      /** The peer: a client (index sender_client) or replica `index`. */
      readonly peer_role: AuthRole;
      readonly peer_index: number;
      /** Bytes that followed the handshake in the last chunk: the first frames. */
      readonly rest: Uint8Array;
    }
  | {
      readonly status: "failed";
      /** A refusal to send before closing, if the other side deserves to learn why. */
      readonly output: Uint8Array | null;
      readonly reason: AuthFailure;
      /** One line for the log or the user. */
      readonly detail: string;
      readonly refusal: RefusalCode | null;
    };

/** Per-direction frame keys (frame_tag.ts): `send` tags what this side writes, `receive` checks
 * what it reads. */
export interface SessionKeys {
  readonly send: Uint8Array;
  readonly receive: Uint8Array;
  /** How frames are tagged: the handshake version both sides spoke. */
  readonly version: HandshakeVersion;
}

const encoder = new TextEncoder();
const label_accept = encoder.encode("accept");
const label_dial = encoder.encode("dial");
const label_d2a = encoder.encode("d2a");
const label_a2d = encoder.encode("a2d");

export function refusal(code: RefusalCode): Uint8Array {
  const bytes = new Uint8Array(refusal_size);
  writeU32(bytes, 0, refusal_magic);
  bytes[4] = handshake_version;
  bytes[5] = code;
  return bytes;
}

/** What a dialer tells its user when the acceptor refused it. */
export function refusalMessage(code: number): string {
  switch (code) {
    case RefusalCode.secret_required:
      return "the replica requires a secret (--secret-file or TOASTYFS_SECRET_FILE)";
    case RefusalCode.no_secret:
      return "the replica has no secret configured (start it with --secret-file, or connect without one)";
    case RefusalCode.wrong_cluster:
      return "the replica belongs to another cluster (its address list differs from ours)";
    case RefusalCode.bad_sender:
      return "the replica refused the role or replica index we claimed";
    case RefusalCode.version:
      return "the replica speaks another handshake version";
    case RefusalCode.bad_proof:
      return "the replica rejected our proof: wrong secret";
    case RefusalCode.malformed:
      return "the replica found our handshake malformed";
    case RefusalCode.tls_certificate:
      return "TLS: the replica refused our certificate (none given, or not issued by the cluster's CA: check --tls-cert, --tls-key and --tls-ca)";
    default:
      return `the replica refused the connection (code ${code})`;
  }
}

/** The u32 at the start of a stream: which of plain frame / handshake / refusal it is. */
export function streamMagic(bytes: Uint8Array): number | null {
  return bytes.length >= 4 ? readU32(bytes, 0) : null;
}

function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function sessionKey(key: Uint8Array, label: Uint8Array, hello: Uint8Array, challenge: Uint8Array): Uint8Array {
  return hmacSha256(key, label, hello, challenge);
}

function keyFor(keys: AuthKeys, role: AuthRole): Uint8Array | null {
  return role === AuthRole.replica ? keys.replica : keys.client;
}

/** Accumulates a stream's first bytes up to a fixed-size message, or a plain frame's magic. */
class Accumulator {
  private readonly bytes = new Uint8Array(plain_magic_offset + 4);
  private length = 0;

  /** Takes from chunk[offset..] until `size` bytes are held; returns the bytes of chunk consumed. */
  fill(chunk: Uint8Array, offset: number, size: number): number {
    assert(size <= this.bytes.length, "Accumulator: message larger than its buffer");
    const take = Math.max(0, Math.min(size - this.length, chunk.length - offset));
    this.bytes.set(chunk.subarray(offset, offset + take), this.length);
    this.length += take;
    return take;
  }

  get size(): number {
    return this.length;
  }

  /** The held message (a copy), and the accumulator emptied for the next. */
  take(size: number): Uint8Array {
    assert(this.length === size, "Accumulator.take: size mismatch");
    this.length = 0;
    return this.bytes.slice(0, size);
  }

  peekMagic(offset = 0): number | null {
    return this.length >= offset + 4 ? readU32(this.bytes, offset) : null;
  }
}

export interface DialerOptions {
  keys: AuthKeys;
  role: AuthRole;
  /** This dialer's replica index, or sender_client for a client. */
  index: number;
  cluster: bigint;
  replica_count: number;
  /** The replica this connection was dialed to, if the dialer knows it; any index otherwise. */
  expected_acceptor: number | null;
  /** 32 fresh random bytes. */
  nonce: Uint8Array;
  /** The handshake version to speak, which sets the frame tags (default 1, HMAC-SHA256). */
  version?: HandshakeVersion;
}

export class Dialer {
  private readonly version: HandshakeVersion;
  private readonly key: Uint8Array;
  private readonly hello: Uint8Array;
  private readonly pending = new Accumulator();
  private state: "start" | "challenge" | "over" = "start";

  constructor(private readonly options: DialerOptions) {
    assert(options.nonce.length === nonce_size, "Dialer: nonce must be 32 bytes");
    assert(options.replica_count > 0 && options.replica_count <= replicas_max, "Dialer: bad replica_count");
    assert(
      options.role === AuthRole.client ? options.index === sender_client : options.index < options.replica_count,
      "Dialer: index does not match the role",
    );
    const key = keyFor(options.keys, options.role);
    assert(key !== null, "Dialer: a client-only key cannot dial as a replica");
    this.key = key;
    this.version = options.version ?? handshake_version;
    const hello = new Uint8Array(hello_size);
    writeU32(hello, 0, handshake_magic);
    hello[4] = this.version;
    hello[5] = MessageType.hello;
    hello[6] = options.role;
    hello[7] = options.index;
    writeU64Big(hello, 8, options.cluster);
    hello.set(options.nonce, 16);
    this.hello = hello;
  }

  /** The HELLO: send it as soon as the connection opens. */
  start(): Uint8Array {
    assert(this.state === "start", "Dialer.start called twice");
    this.state = "challenge";
    return this.hello;
  }

  receive(chunk: Uint8Array): HandshakeStep {
    assert(this.state === "challenge", () => `Dialer.receive in state ${this.state}`);
    let offset = this.pending.fill(chunk, 0, 4);
    const magic = this.pending.peekMagic();
    if (magic === null) return { status: "pending", output: null };
    if (magic === refusal_magic) {
      offset += this.pending.fill(chunk, offset, refusal_size);
      if (this.pending.size < refusal_size) return { status: "pending", output: null };
      const code = this.pending.take(refusal_size)[5]!;
      return this.fail("refused", `authentication failed: ${refusalMessage(code)}`);
    }
    if (magic !== handshake_magic)
      return this.fail("malformed", `authentication failed: the replica sent an unknown magic 0x${magic.toString(16)}`);
    offset += this.pending.fill(chunk, offset, challenge_size);
    if (this.pending.size < challenge_size) return { status: "pending", output: null };
    const challenge = this.pending.take(challenge_size);
    if (challenge[4] !== this.version)
      return this.fail("version", `authentication failed: the replica speaks handshake version ${challenge[4]}`);
    if (challenge[5] !== MessageType.challenge || challenge[7] !== 0)
      return this.fail("malformed", "authentication failed: malformed challenge");
    const acceptor = challenge[6]!;
    const { expected_acceptor, replica_count, index } = this.options;
    if (acceptor >= replica_count || acceptor === index || (expected_acceptor !== null && acceptor !== expected_acceptor)) {
      return this.fail(
        "bad_sender",
        `authentication failed: the acceptor says it is replica ${acceptor}, expected ${expected_acceptor ?? `an index below ${replica_count}`}`,
      );
    }
    const mac_a = hmacSha256(this.key, label_accept, this.hello, challenge.subarray(0, challenge_size - mac_size));
    if (!macEqual(mac_a, challenge.subarray(challenge_size - mac_size))) {
      return this.fail(
        "bad_mac",
        "authentication failed: the replica does not hold our secret (wrong secret, or not the replica we meant)",
      );
    }
    const proof = new Uint8Array(proof_size);
    writeU32(proof, 0, handshake_magic);
    proof[4] = this.version;
    proof[5] = MessageType.proof;
    proof.set(hmacSha256(this.key, label_dial, this.hello, challenge), 8);
    this.state = "over";
    return {
      status: "done",
      output: proof,
      keys: {
        send: sessionKey(this.key, label_d2a, this.hello, challenge),
        receive: sessionKey(this.key, label_a2d, this.hello, challenge),
        version: this.version,
      },
      peer_role: AuthRole.replica,
      peer_index: acceptor,
      rest: chunk.subarray(offset),
    };
  }

  private fail(reason: AuthFailure, detail: string): HandshakeStep {
    this.state = "over";
    return { status: "failed", output: null, reason, detail, refusal: null };
  }
}

export interface AcceptorOptions {
  keys: AuthKeys;
  /** This replica's index. */
  index: number;
  cluster: bigint;
  replica_count: number;
  nonce: Uint8Array;
}

export class Acceptor {
  private readonly pending = new Accumulator();
  private state: "hello" | "proof" | "over" = "hello";
  private hello: Uint8Array | null = null;
  private challenge: Uint8Array | null = null;
  private key: Uint8Array | null = null;
  private role = AuthRole.client;
  private peer_index = sender_client;
  private version: HandshakeVersion = handshake_version;

  constructor(private readonly options: AcceptorOptions) {
    assert(options.nonce.length === nonce_size, "Acceptor: nonce must be 32 bytes");
    assert(options.keys.replica !== null, "Acceptor: a replica needs the full secret, not a client key");
    assert(options.index < options.replica_count && options.replica_count <= replicas_max, "Acceptor: bad index");
  }

  receive(chunk: Uint8Array): HandshakeStep {
    let offset = 0;
    if (this.state === "hello") {
      offset += this.pending.fill(chunk, offset, 4);
      const magic = this.pending.peekMagic();
      if (magic === null) return { status: "pending", output: null };
      if (magic !== handshake_magic) {
        // A plain frame starts with its header checksum; its magic "TFS1" is at offset 88.
        offset += this.pending.fill(chunk, offset, plain_magic_offset + 4);
        if (this.pending.size < plain_magic_offset + 4) return { status: "pending", output: null };
        if (this.pending.peekMagic(plain_magic_offset) === wire_magic) {
          return this.fail("plain_frame", "sent a plain frame without authenticating (no --secret-file?)", RefusalCode.secret_required);
        }
        return this.fail("malformed", "sent neither a handshake nor a ToastyFS frame", RefusalCode.malformed);
      }
      offset += this.pending.fill(chunk, offset, hello_size);
      if (this.pending.size < hello_size) return { status: "pending", output: null };
      const step = this.onHello(this.pending.take(hello_size));
      if (step !== null) return step;
      if (offset === chunk.length) return { status: "pending", output: this.challenge };
      const next = this.receiveProof(chunk, offset);
      // The challenge has not been sent yet: it goes out before the dialer's answer is judged.
      return next.status === "pending" ? { status: "pending", output: this.challenge } : { ...next, output: this.challenge };
    }
    assert(this.state === "proof", () => `Acceptor.receive in state ${this.state}`);
    return this.receiveProof(chunk, offset);
  }

  /** Checks a HELLO and prepares the CHALLENGE; a failed step, or null to go on. */
  private onHello(hello: Uint8Array): HandshakeStep | null {
    const version = hello[4];
    if (!isVersion(version)) return this.fail("version", `speaks handshake version ${version}`, RefusalCode.version);
    if (hello[5] !== MessageType.hello) return this.fail("malformed", "sent a malformed hello", RefusalCode.malformed);
    const role = hello[6]!;
    const index = hello[7]!;
    const cluster = readU64Big(hello, 8);
    if (cluster !== this.options.cluster) {
      return this.fail("wrong_cluster", `is of cluster 0x${cluster.toString(16).padStart(16, "0")}`, RefusalCode.wrong_cluster);
    }
    if (role === AuthRole.client) {
      if (index !== sender_client)
        return this.fail("bad_sender", `claims to be a client with replica index ${index}`, RefusalCode.bad_sender);
    } else if (role === AuthRole.replica) {
      if (index >= this.options.replica_count || index === this.options.index) {
        return this.fail(
          "bad_sender",
          `claims to be replica ${index} (we are ${this.options.index} of ${this.options.replica_count})`,
          RefusalCode.bad_sender,
        );
      }
    } else {
      return this.fail("malformed", `claims an unknown role ${role}`, RefusalCode.malformed);
    }
    const key = role === AuthRole.replica ? this.options.keys.replica : this.options.keys.client;
    assert(key !== null, "Acceptor: no replica key");
    const challenge = new Uint8Array(challenge_size);
    writeU32(challenge, 0, handshake_magic);
    challenge[4] = version;
    challenge[5] = MessageType.challenge;
    challenge[6] = this.options.index;
    challenge.set(this.options.nonce, 8);
    challenge.set(hmacSha256(key, label_accept, hello, challenge.subarray(0, challenge_size - mac_size)), challenge_size - mac_size);
    this.hello = hello;
    this.challenge = challenge;
    this.key = key;
    this.role = role;
    this.peer_index = index;
    this.version = version;
    this.state = "proof";
    return null;
  }

  private receiveProof(chunk: Uint8Array, start: number): HandshakeStep {
    let offset = start;
    offset += this.pending.fill(chunk, offset, proof_size);
    if (this.pending.size < proof_size) return { status: "pending", output: null };
    const proof = this.pending.take(proof_size);
    const hello = this.hello;
    const challenge = this.challenge;
    const key = this.key;
    assert(hello !== null && challenge !== null && key !== null, "Acceptor: proof before hello");
    if (
      readU32(proof, 0) !== handshake_magic ||
      proof[4] !== this.version ||
      proof[5] !== MessageType.proof ||
      proof[6] !== 0 ||
      proof[7] !== 0
    ) {
      return this.fail("malformed", "sent a malformed proof", RefusalCode.malformed);
    }
    if (!macEqual(hmacSha256(key, label_dial, hello, challenge), proof.subarray(8))) {
      return this.fail(
        "bad_mac",
        `failed the proof as ${this.role === AuthRole.replica ? `replica ${this.peer_index}` : "a client"}: wrong secret`,
        RefusalCode.bad_proof,
      );
    }
    this.state = "over";
    return {
      status: "done",
      output: null,
      keys: {
        send: sessionKey(key, label_a2d, hello, challenge),
        receive: sessionKey(key, label_d2a, hello, challenge),
        version: this.version,
      },
      peer_role: this.role,
      peer_index: this.peer_index,
      rest: chunk.subarray(offset),
    };
  }

  private fail(reason: AuthFailure, detail: string, code: RefusalCode): HandshakeStep {
    this.state = "over";
    return { status: "failed", output: refusal(code), reason, detail, refusal: code };
  }
}
