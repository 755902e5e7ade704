/**
 * The cluster secret and the role keys derived from it (docs/PROTOCOL.md §6.1).
 *
 * A secret is 32 random bytes, kept in a file as 64 lowercase hex digits and a newline. Replicas
 * need it whole; a client may instead hold only its role key (a "client-only" file, written by
 * `toastyfs secret client`), which lets it authenticate as a client and never as a replica. Both
 * keys are HMACs of the secret with a fixed label, so neither reveals the secret or the other key.
 *
 * Files readable by group or others are refused, as ssh refuses such private keys: a secret that
 * any local user can read authenticates nothing.
 */
import { createHmac, randomBytes } from "node:crypto";
import { closeSync, fstatSync, openSync, readFileSync, statSync, writeSync } from "node:fs";
import { assert } from "../../util/assert.ts";

/** Bytes of a cluster secret, and of each role key (HMAC-SHA256 output). */
export const secret_size_bytes = 32;
/** Labels of the role keys. Versioned, so a future scheme derives unrelated keys. */
export const replica_key_label = "toastyfs replica v1";
export const client_key_label = "toastyfs client v1";
/** First word of a client-only key file: what tells it apart from a full secret. */
export const client_file_prefix = "client ";

/** What a process can authenticate as. replica is null in a client-only process. */
export interface AuthKeys {
  readonly replica: Uint8Array | null;
  readonly client: Uint8Array;
}

export class SecretError extends Error {
  override name = "SecretError";
}

export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const hmac = createHmac("sha256", key);
  for (const part of parts) hmac.update(part);
  return new Uint8Array(hmac.digest());
}

/** K_replica and K_client of a full secret. */
export function deriveKeys(secret: Uint8Array): AuthKeys {
  assert(secret.length === secret_size_bytes, () => `a secret is ${secret_size_bytes} bytes, got ${secret.length}`);
  const encoder = new TextEncoder();
  return {
    replica: hmacSha256(secret, encoder.encode(replica_key_label)),
    client: hmacSha256(secret, encoder.encode(client_key_label)),
  };
}

/** Keys that authenticate as a client only. */
export function clientOnly(keys: AuthKeys): AuthKeys {
  return { replica: null, client: keys.client };
}

export function newSecret(): Uint8Array {
  return new Uint8Array(randomBytes(secret_size_bytes));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** Parses the text of a secret file (or a client-only file). `file` names it in errors. */
export function parseSecretText(text: string, file: string): AuthKeys {
  const trimmed = text.trim();
  const client_only = trimmed.startsWith(client_file_prefix);
  const hex = client_only ? trimmed.slice(client_file_prefix.length).trim() : trimmed;
  const what = client_only ? "a client key file" : "a secret file";
  if (hex.length !== 2 * secret_size_bytes) {
    throw new SecretError(
      `${file}: ${what} holds exactly ${2 * secret_size_bytes} hex digits, this one has ${hex.length} characters (create one with \`toastyfs secret new FILE\`)`,
    );
  }
  const bad = hex.search(/[^0-9a-fA-F]/);
  if (bad >= 0) {
    throw new SecretError(`${file}: character ${bad + 1} of the key, ${JSON.stringify(hex[bad])}, is not a hex digit`);
  }
  const bytes = new Uint8Array(Buffer.from(hex, "hex"));
  assert(bytes.length === secret_size_bytes, "parseSecretText: hex decoded to a wrong length");
  return client_only ? { replica: null, client: bytes } : deriveKeys(bytes);
}

/** Reads a secret or client-only key file, refusing one that group or others may read. */
export function readSecretFile(file: string): AuthKeys {
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new SecretError(`cannot read the secret file ${file}: ${(error as Error).message}`);
  }
  if ((mode & 0o077) !== 0) {
    throw new SecretError(
      `${file} is readable or writable by group or others (mode ${(mode & 0o777).toString(8).padStart(4, "0")}): run \`chmod 600 ${file}\``,
    );
  }
  return parseSecretText(text, file);
}

/** Writes text to a new file with mode 0600; refuses to replace an existing file (a lost secret
 * locks every client and replica out of the cluster). */
function writeNewPrivateFile(file: string, text: string): void {
  let fd: number;
  try {
    fd = openSync(file, "wx", 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new SecretError(`${file} already exists: refusing to overwrite a secret (remove it first if you mean to)`);
    throw new SecretError(`cannot create ${file}: ${(error as Error).message}`);
  }
  try {
    writeSync(fd, text);
    // openSync's mode is filtered by the umask, which may only remove bits: check nothing was added.
    assert((fstatSync(fd).mode & 0o077) === 0, `${file} was created readable by others`);
  } finally {
    closeSync(fd);
  }
}

export function writeSecretFile(file: string, secret: Uint8Array): void {
  assert(secret.length === secret_size_bytes, "writeSecretFile: wrong secret size");
  writeNewPrivateFile(file, `${toHex(secret)}\n`);
}

export function writeClientKeyFile(file: string, keys: AuthKeys): void {
  writeNewPrivateFile(file, `${client_file_prefix}${toHex(keys.client)}\n`);
}
