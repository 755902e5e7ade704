import { describe, expect, test } from "bun:test";
import { sender_client } from "../../constants.ts";
import { writeU32 } from "../../util/bytes.ts";
import { Command, Header, encode, finalize } from "../codec.ts";
import {
  Acceptor,
  AuthRole,
  Dialer,
  RefusalCode,
  challenge_size,
  handshake_version_gmac,
  hello_size,
  proof_size,
  refusal,
  refusal_size,
  type AuthFailure,
  type DialerOptions,
  type HandshakeStep,
} from "./handshake.ts";
import { clientOnly, deriveKeys, toHex, type AuthKeys } from "./secret.ts";
import { FrameSealer } from "./frame_tag.ts";

const keys = deriveKeys(Uint8Array.from({ length: 32 }, (_, i) => i));
const other_keys = deriveKeys(Uint8Array.from({ length: 32 }, (_, i) => 255 - i));
const cluster = 0x1234_5678_9abc_def0n;
const nonce_d = new Uint8Array(32).fill(0xd0);
const nonce_a = new Uint8Array(32).fill(0xa0);

function dialer(overrides: Partial<DialerOptions> = {}): Dialer {
  return new Dialer({
    keys,
    role: AuthRole.client,
    index: sender_client,
    cluster,
    replica_count: 3,
    expected_acceptor: 1,
    nonce: nonce_d,
    ...overrides,
  });
}

function acceptor(acceptor_keys: AuthKeys = keys, index = 1): Acceptor {
  return new Acceptor({ keys: acceptor_keys, index, cluster, replica_count: 3, nonce: nonce_a });
}

function plainFrame(replica: number): Uint8Array {
  const header = new Header();
  header.command = Command.ping;
  header.cluster = cluster;
  header.replica = replica;
  return encode(finalize(header));
}

function failed(step: HandshakeStep): Extract<HandshakeStep, { status: "failed" }> {
  if (step.status !== "failed") throw new Error(`expected failure, got ${step.status}`);
  return step;
}

function done(step: HandshakeStep): Extract<HandshakeStep, { status: "done" }> {
  if (step.status !== "done") throw new Error(`expected done, got ${step.status}: ${step.status === "failed" ? step.detail : ""}`);
  return step;
}

/** Runs a whole handshake, each message in one chunk. */
function run(d: Dialer, a: Acceptor): { dial: HandshakeStep; accept: HandshakeStep | null } {
  const hello = d.start();
  expect(hello.length).toBe(hello_size);
  const first = a.receive(hello);
  if (first.status !== "pending") return { dial: { status: "pending", output: null }, accept: first };
  expect(first.output!.length).toBe(challenge_size);
  const dial = d.receive(first.output!);
  if (dial.status !== "done") return { dial, accept: null };
  expect(dial.output!.length).toBe(proof_size);
  return { dial, accept: a.receive(dial.output!) };
}

describe("handshake", () => {
  test("a client and a replica agree on session keys, crossed per direction", () => {
    const { dial, accept } = run(dialer(), acceptor());
    const d = done(dial);
    const a = done(accept!);
    expect(d.keys.send).toEqual(a.keys.receive);
    expect(d.keys.receive).toEqual(a.keys.send);
    expect(d.keys.send).not.toEqual(d.keys.receive);
    expect([a.peer_role, a.peer_index]).toEqual([AuthRole.client, sender_client]);
    expect([d.peer_role, d.peer_index]).toEqual([AuthRole.replica, 1]);
  });

  test("deterministic with the same nonces; other nonces give other session keys", () => {
    const one = done(run(dialer(), acceptor()).dial).keys.send;
    expect(done(run(dialer(), acceptor()).dial).keys.send).toEqual(one);
    const fresh = done(run(dialer({ nonce: new Uint8Array(32).fill(1) }), acceptor()).dial).keys.send;
    expect(fresh).not.toEqual(one);
  });

  test("replica to replica", () => {
    const { accept } = run(dialer({ role: AuthRole.replica, index: 0 }), acceptor());
    expect([done(accept!).peer_role, done(accept!).peer_index]).toEqual([AuthRole.replica, 0]);
  });

  test("byte by byte, and frames right after the proof are handed back", () => {
    const d = dialer();
    const a = acceptor();
    const hello = d.start();
    let step: HandshakeStep = { status: "pending", output: null };
    for (let i = 0; i < hello.length; i++) {
      step = a.receive(hello.subarray(i, i + 1));
      if (i < hello.length - 1) expect(step).toEqual({ status: "pending", output: null });
    }
    const challenge = step.output!;
    for (let i = 0; i < challenge.length; i++) step = d.receive(challenge.subarray(i, i + 1));
    const proof = done(step).output!;
    const frame = new Uint8Array([9, 8, 7]);
    const accepted = done(a.receive(new Uint8Array([...proof, ...frame])));
    expect([...accepted.rest]).toEqual([9, 8, 7]);
  });

  test("wrong secret: the dialer finds the challenge MAC bad and sends nothing more", () => {
    const { dial } = run(dialer({ keys: other_keys }), acceptor());
    const f = failed(dial);
    expect(f.reason).toBe("bad_mac");
    expect(f.detail).toContain("wrong secret");
  });

  test("a client-only key authenticates as a client, and cannot even start as a replica", () => {
    done(run(dialer({ keys: clientOnly(keys) }), acceptor()).accept!);
    expect(() => dialer({ keys: clientOnly(keys), role: AuthRole.replica, index: 0 })).toThrow(
      "a client-only key cannot dial as a replica",
    );
  });

  test("claiming the replica role with the client key fails the proof", () => {
    // A forger who holds K_client only and puts it in the replica slot.
    const forged: AuthKeys = { replica: keys.client, client: keys.client };
    const { dial, accept } = run(dialer({ keys: forged, role: AuthRole.replica, index: 0 }), acceptor());
    expect(failed(dial).reason).toBe("bad_mac"); // the acceptor answered with K_replica
    expect(accept).toBeNull();
    // And a PROOF made anyway is refused.
    const a = acceptor();
    const d = dialer({ keys: forged, role: AuthRole.replica, index: 0 });
    a.receive(d.start());
    const proof = new Uint8Array(proof_size);
    writeU32(proof, 0, 0x48534654);
    proof[4] = 1;
    proof[5] = 3;
    const f = failed(a.receive(proof));
    expect([f.reason, f.refusal]).toEqual(["bad_mac", RefusalCode.bad_proof]);
    expect(f.output).toEqual(refusal(RefusalCode.bad_proof));
  });

  test("a tampered proof, challenge or hello fails", () => {
    const d1 = dialer();
    const a1 = acceptor();
    const challenge = a1.receive(d1.start()).output!;
    const proof = done(d1.receive(challenge)).output!.slice();
    proof[20]! ^= 1;
    expect(failed(a1.receive(proof)).reason).toBe("bad_mac");

    const d2 = dialer();
    const tampered = acceptor().receive(d2.start()).output!.slice();
    tampered[10]! ^= 1; // nonce_a
    expect(failed(d2.receive(tampered)).reason).toBe("bad_mac");

    // A hello altered in flight (the nonce): the challenge's MAC covers the hello the acceptor saw.
    const d3 = dialer();
    const hello = d3.start().slice();
    hello[30]! ^= 1;
    expect(failed(d3.receive(acceptor().receive(hello).output!)).reason).toBe("bad_mac");
  });

  test("a recorded handshake cannot be replayed against a fresh nonce", () => {
    const d = dialer();
    const a = acceptor();
    const hello = d.start();
    const proof = done(d.receive(a.receive(hello).output!)).output!;
    const fresh = new Acceptor({ keys, index: 1, cluster, replica_count: 3, nonce: new Uint8Array(32).fill(0x55) });
    fresh.receive(hello);
    expect(failed(fresh.receive(proof)).reason).toBe("bad_mac");
  });

  test("the acceptor's MAC cannot be reflected as a proof", () => {
    const d = dialer();
    const a = acceptor();
    const challenge = a.receive(d.start()).output!;
    const reflected = new Uint8Array(proof_size);
    reflected.set(challenge.subarray(0, 8));
    reflected[5] = 3;
    reflected[6] = 0;
    reflected.set(challenge.subarray(40), 8);
    expect(failed(a.receive(reflected)).reason).toBe("bad_mac");
  });

  test("wrong cluster, bad indexes and roles are refused with a code", () => {
    const cases: [Partial<DialerOptions>, AuthFailure, RefusalCode][] = [
      [{ cluster: cluster + 1n }, "wrong_cluster", RefusalCode.wrong_cluster],
      [{ role: AuthRole.replica, index: 1 }, "bad_sender", RefusalCode.bad_sender], // the acceptor's own index
    ];
    for (const [options, reason, code] of cases) {
      const f = failed(acceptor().receive(dialer(options).start()));
      expect([f.reason, f.refusal]).toEqual([reason, code]);
      expect(f.output).toEqual(refusal(code));
    }
    const hello = dialer({ role: AuthRole.replica, index: 2 }).start().slice();
    hello[7] = 5; // beyond replica_count
    expect(failed(acceptor().receive(hello)).reason).toBe("bad_sender");
    const client_with_index = dialer().start().slice();
    client_with_index[7] = 0;
    expect(failed(acceptor().receive(client_with_index)).reason).toBe("bad_sender");
    const unknown_role = dialer().start().slice();
    unknown_role[6] = 7;
    expect(failed(acceptor().receive(unknown_role)).reason).toBe("malformed");
    const version = dialer().start().slice();
    version[4] = 3;
    expect(failed(acceptor().receive(version)).refusal).toBe(RefusalCode.version);
  });

  test("the dialer refuses an acceptor that is not the replica it dialed", () => {
    const d = dialer({ expected_acceptor: 2 });
    const f = failed(d.receive(acceptor().receive(d.start()).output!));
    expect(f.reason).toBe("bad_sender");
  });

  test("a plain frame to an acceptor with a secret: refusal secret_required", () => {
    const frame = plainFrame(0);
    const f = failed(acceptor().receive(frame));
    expect([f.reason, f.refusal]).toEqual(["plain_frame", RefusalCode.secret_required]);
    expect(f.output!.length).toBe(refusal_size);
  });

  test("a dialer that gets a refusal says why", () => {
    const d = dialer();
    d.start();
    const no_secret = refusal(RefusalCode.no_secret);
    expect(d.receive(no_secret.subarray(0, 5)).status).toBe("pending");
    const f = failed(d.receive(no_secret.subarray(5)));
    expect(f.reason).toBe("refused");
    expect(f.detail).toBe(
      "authentication failed: the replica has no secret configured (start it with --secret-file, or connect without one)",
    );
  });

  test("a dialer that gets anything but a challenge or a refusal fails", () => {
    const d = dialer();
    d.start();
    expect(failed(d.receive(plainFrame(1))).reason).toBe("malformed");
  });

  test("an acceptor that gets neither a hello nor a plain frame refuses it as malformed", () => {
    const f = failed(acceptor().receive(new Uint8Array(128).fill(7)));
    expect([f.reason, f.refusal]).toEqual(["malformed", RefusalCode.malformed]);
  });

  test("version 2: both sides speak it, the keys say so, and the version byte is inside every MAC", () => {
    const { dial, accept } = run(dialer({ version: handshake_version_gmac }), acceptor());
    const d = done(dial);
    const a = done(accept!);
    expect([d.keys.version, a.keys.version]).toEqual([2, 2]);
    expect(a.keys.receive).toEqual(d.keys.send);
    // Another version gives other keys: a HELLO altered in flight from 2 to 1 fails mac_a.
    const v1 = done(run(dialer(), acceptor()).dial);
    expect(v1.keys.version).toBe(1);
    expect(v1.keys.send).not.toEqual(d.keys.send);
    const downgraded = dialer({ version: handshake_version_gmac });
    const hello = downgraded.start().slice();
    hello[4] = 1;
    expect(failed(downgraded.receive(acceptor().receive(hello).output!)).reason).toBe("version");
  });

  test("the test vectors of docs/PROTOCOL.md §6.7", () => {
    const vector_keys = deriveKeys(Uint8Array.from({ length: 32 }, (_, i) => i));
    const options = { keys: vector_keys, cluster: 0x0123456789abcdefn, replica_count: 3 };
    const client = { role: AuthRole.client, index: sender_client, expected_acceptor: 1, nonce: new Uint8Array(32).fill(0xd0) };
    const replica = { ...options, index: 1, nonce: new Uint8Array(32).fill(0xa0) };
    const d = new Dialer({ ...options, ...client });
    const a = new Acceptor(replica);
    const hello = d.start();
    const challenge = a.receive(hello).output!;
    const dial = done(d.receive(challenge));
    done(a.receive(dial.output!));
    expect(toHex(vector_keys.replica!)).toBe("cd462b49c101b37f38569e1e4ae4d7a4bd729a2a47e8547b97fc935b1ec14c41");
    expect(toHex(vector_keys.client)).toBe("2a7488228b5e81beeb88c9991214290a73b2acf29af7ff580f82ac368cdd0cb7");
    expect(toHex(hello)).toBe(`54465348010100ffefcdab8967452301${"d0".repeat(32)}`);
    expect(toHex(challenge)).toBe(`5446534801020100${"a0".repeat(32)}932d83ea9f64c33db587b0a423f6bbf890fc0d9a320d6297387e1c8234009d6d`);
    expect(toHex(dial.output!)).toBe("54465348010300008464515691f8e39ed2213563d024ad8cb2bf371642d7243db137379b332fb80f");
    expect(toHex(dial.keys.send)).toBe("80a3a417eb181260004c3a48b00be0eac23a950b789798b9ec9ee663490ffcaa");
    expect(toHex(dial.keys.receive)).toBe("3d7639271cc65e80e0f582352555d98d474994cdcf47b9c3865bce4cea7cf805");
    const sealer = new FrameSealer(dial.keys.send);
    const abc = new TextEncoder().encode("abc");
    expect(toHex(sealer.seal(abc))).toBe("33eb7c1c730ab7c2075b207a12b6c65b");
    expect(toHex(sealer.seal(abc))).toBe("c80c5276a1900bedc91f0d185d01b2cd");
    // Version 2: the same exchange with 02 in byte 4 of each message, and AES-256-GCM tags.
    const d2 = new Dialer({ ...options, ...client, version: 2 });
    const a2 = new Acceptor(replica);
    const dial2 = done(d2.receive(a2.receive(d2.start()).output!));
    done(a2.receive(dial2.output!));
    expect(toHex(dial2.keys.send)).toBe("9961c4545909cc8383739f6596a670b0c45995ac88c183ba6bea1cf48894f65a");
    const sealer2 = new FrameSealer(dial2.keys.send, 2);
    expect(toHex(sealer2.seal(abc))).toBe("d81bb9d4a1c6ab4bdc350bcd0788a466");
    expect(toHex(sealer2.seal(abc))).toBe("9b718ebfbd84cb76bfd0d0e904cf58a6");
  });
});
