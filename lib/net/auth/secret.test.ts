import { describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHmac } from "node:crypto";
import {
  SecretError,
  clientOnly,
  deriveKeys,
  newSecret,
  parseSecretText,
  readSecretFile,
  toHex,
  writeClientKeyFile,
  writeSecretFile,
} from "./secret.ts";

function withDir(run: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "toastyfs-secret-"));
  try {
    run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const secret = Uint8Array.from({ length: 32 }, (_, i) => i);

describe("secret", () => {
  test("role keys are HMAC-SHA256 of the secret with their labels, and differ", () => {
    const keys = deriveKeys(secret);
    expect(toHex(keys.client)).toBe(createHmac("sha256", secret).update("toastyfs client v1").digest("hex"));
    expect(toHex(keys.replica!)).toBe(createHmac("sha256", secret).update("toastyfs replica v1").digest("hex"));
    expect(toHex(keys.client)).not.toBe(toHex(keys.replica!));
  });

  test("new writes 64 hex digits and a newline with mode 0600, reads back, refuses to overwrite", () => {
    withDir((dir) => {
      const file = join(dir, "secret");
      const fresh = newSecret();
      writeSecretFile(file, fresh);
      expect(readFileSync(file, "utf8")).toMatch(/^[0-9a-f]{64}\n$/);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readSecretFile(file)).toEqual(deriveKeys(fresh));
      expect(() => writeSecretFile(file, newSecret())).toThrow(/already exists: refusing to overwrite/);
      expect(readSecretFile(file)).toEqual(deriveKeys(fresh));
    });
  });

  test("a client key file holds K_client only", () => {
    withDir((dir) => {
      const file = join(dir, "client");
      writeClientKeyFile(file, deriveKeys(secret));
      expect(readFileSync(file, "utf8")).toBe(`client ${toHex(deriveKeys(secret).client)}\n`);
      expect(readSecretFile(file)).toEqual(clientOnly(deriveKeys(secret)));
      expect(readSecretFile(file).replica).toBeNull();
    });
  });

  test("a file readable by group or others is refused with the chmod to run", () => {
    withDir((dir) => {
      const file = join(dir, "secret");
      writeFileSync(file, `${toHex(secret)}\n`);
      chmodSync(file, 0o644);
      expect(() => readSecretFile(file)).toThrow(`(mode 0644): run \`chmod 600 ${file}\``);
      chmodSync(file, 0o600);
      expect(readSecretFile(file)).toEqual(deriveKeys(secret));
    });
  });

  test("whitespace around the hex is accepted; anything else names the file and the fault", () => {
    expect(parseSecretText(`  ${toHex(secret).toUpperCase()}\r\n\n`, "F")).toEqual(deriveKeys(secret));
    expect(() => parseSecretText(toHex(secret).slice(2), "F")).toThrow(
      "F: a secret file holds exactly 64 hex digits, this one has 62 characters",
    );
    expect(() => parseSecretText(`${toHex(secret).slice(1)}g`, "F")).toThrow('F: character 64 of the key, "g", is not a hex digit');
    expect(() => parseSecretText("", "F")).toThrow(SecretError);
    expect(() => parseSecretText("client 1234", "F")).toThrow("F: a client key file holds exactly 64 hex digits");
  });

  test("a missing file is an error naming it", () => {
    expect(() => readSecretFile("/nonexistent/secret")).toThrow("cannot read the secret file /nonexistent/secret");
  });
});
