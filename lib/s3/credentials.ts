/**
 * The gateway's access keys (docs/S3.md §5): access key id -> secret. The root key comes from the
 * environment (TOASTYFS_S3_ACCESS_KEY and TOASTYFS_S3_SECRET_KEY); more keys from a credentials
 * file given with --credentials. Anything wrong is an Error with a message a person can act on,
 * thrown at startup, so a gateway never runs with half of its keys.
 *
 * File format: one key per line, `ACCESS_KEY_ID SECRET` separated by spaces or tabs; blank lines
 * and lines whose first non-blank character is `#` are ignored. There are no end-of-line comments
 * because a secret may contain `#`.
 */
import * as fs from "node:fs";

export const access_key_size_min = 3;
export const access_key_size_max = 128;
export const secret_size_min = 8;
export const secret_size_max = 128;
/** A credentials file is read whole at startup; this keeps a wrong path (a disk image, /dev/zero) from eating memory. */
export const credentials_file_size_max_bytes = 1024 * 1024;

const access_key_pattern = /^[A-Za-z0-9_.-]+$/;
/** Printable ASCII without the space: what survives a shell, a config file and a header. */
const secret_pattern = /^[\x21-\x7e]+$/;

/** Why `access_key` cannot be an access key id, or null when it can. */
export function accessKeyProblem(access_key: string): string | null {
  if (access_key.length < access_key_size_min || access_key.length > access_key_size_max)
    return `access key id has ${access_key.length} characters: access key ids have ${access_key_size_min} to ${access_key_size_max}`;
  if (!access_key_pattern.test(access_key)) return "access key id may hold only letters, digits, '_', '.' and '-'";
  return null;
}

/** Why `secret` cannot be a secret key, or null when it can. The secret itself never appears in the text. */
export function secretProblem(secret: string): string | null {
  if (secret.length < secret_size_min || secret.length > secret_size_max)
    return `secret key has ${secret.length} characters: secret keys have ${secret_size_min} to ${secret_size_max}`;
  if (!secret_pattern.test(secret)) return "secret key may hold only printable ASCII characters other than the space";
  return null;
}

export class Credentials {
  readonly #keys: Map<string, string>;

  constructor(keys: Map<string, string>) {
    for (const [access_key, secret] of keys) {
      const problem = accessKeyProblem(access_key) ?? secretProblem(secret);
      if (problem !== null) throw new Error(`credentials: ${JSON.stringify(access_key)}: ${problem}`);
    }
    this.#keys = new Map(keys);
  }

  /** Root key from TOASTYFS_S3_ACCESS_KEY / TOASTYFS_S3_SECRET_KEY (both or neither), more from a file. */
  static load(env: Record<string, string | undefined>, file: string | null): Credentials {
    const keys = new Map<string, string>();
    /** Where each key was defined, for the message about a duplicate. */
    const defined_by = new Map<string, string>();
    const access_key = env.TOASTYFS_S3_ACCESS_KEY;
    const secret = env.TOASTYFS_S3_SECRET_KEY;
    if ((access_key === undefined) !== (secret === undefined)) {
      const missing = access_key === undefined ? "TOASTYFS_S3_ACCESS_KEY" : "TOASTYFS_S3_SECRET_KEY";
      throw new Error(`${missing} is not set: set both TOASTYFS_S3_ACCESS_KEY and TOASTYFS_S3_SECRET_KEY, or neither`);
    }
    if (access_key !== undefined && secret !== undefined) {
      const problem = accessKeyProblem(access_key) ?? secretProblem(secret);
      if (problem !== null) throw new Error(`TOASTYFS_S3_ACCESS_KEY / TOASTYFS_S3_SECRET_KEY: ${problem}`);
      keys.set(access_key, secret);
      defined_by.set(access_key, "TOASTYFS_S3_ACCESS_KEY");
    }
    if (file !== null) {
      for (const [line, key_id, key_secret] of parseCredentialsFile(file, readCredentialsFile(file))) {
        const earlier = defined_by.get(key_id);
        if (earlier !== undefined)
          throw new Error(`credentials file ${file} line ${line}: access key id ${key_id} is already defined (${earlier}): each id once`);
        keys.set(key_id, key_secret);
        defined_by.set(key_id, `line ${line}`);
      }
    }
    return new Credentials(keys);
  }

  secret(access_key: string): string | null {
    return this.#keys.get(access_key) ?? null;
  }

  get size(): number {
    return this.#keys.size;
  }
}

function readCredentialsFile(file: string): string {
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch (e) {
    throw new Error(`credentials file ${file}: cannot read it: ${(e as Error).message}`);
  }
  if (size > credentials_file_size_max_bytes)
    throw new Error(`credentials file ${file}: ${size} bytes: a credentials file has at most ${credentials_file_size_max_bytes} bytes`);
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`credentials file ${file}: cannot read it: ${(e as Error).message}`);
  }
  // Checked again after reading: the size may have grown in between (or it is a device whose stat says 0).
  if (bytes.length > credentials_file_size_max_bytes)
    throw new Error(`credentials file ${file}: more than ${credentials_file_size_max_bytes} bytes: a credentials file has at most that`);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`credentials file ${file}: not UTF-8 text`);
  }
}

/** The keys of a credentials file's text as [line number, access key id, secret], in file order. */
export function parseCredentialsFile(file: string, text: string): Array<[number, string, string]> {
  const out: Array<[number, string, string]> = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line_number = i + 1;
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    const fail = (why: string): never => {
      throw new Error(`credentials file ${file} line ${line_number}: ${why}`);
    };
    const fields = line.split(/[ \t]+/);
    if (fields.length !== 2)
      fail(
        `expected "ACCESS_KEY_ID SECRET" (two fields separated by spaces), found ${fields.length} field${fields.length === 1 ? "" : "s"}`,
      );
    const [access_key, secret] = fields;
    const problem = accessKeyProblem(access_key) ?? secretProblem(secret);
    if (problem !== null) fail(problem);
    out.push([line_number, access_key, secret]);
  }
  return out;
}
