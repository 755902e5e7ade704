import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Credentials, credentials_file_size_max_bytes } from "./credentials.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-credentials-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let files = 0;
function file(text: string | Uint8Array): string {
  const p = path.join(dir, `credentials-${files++}`);
  fs.writeFileSync(p, text);
  return p;
}

const root = { TOASTYFS_S3_ACCESS_KEY: "root-key", TOASTYFS_S3_SECRET_KEY: "root-secret-1" };

describe("Credentials.load", () => {
  test("the root key from the environment and more keys from the file, comments and blank lines ignored", () => {
    const f = file("# team keys\n\nalice.ci  s3cr3t/with#hash+=\n\t# indented comment\nbob_2\tanother-secret \r\n");
    const c = Credentials.load(root, f);
    expect(c.size).toBe(3);
    expect(c.secret("root-key")).toBe("root-secret-1");
    expect(c.secret("alice.ci")).toBe("s3cr3t/with#hash+=");
    expect(c.secret("bob_2")).toBe("another-secret");
    expect(c.secret("carol")).toBeNull();
  });

  test("neither variable and no file is an empty set (the caller decides whether that may run)", () => {
    expect(Credentials.load({}, null).size).toBe(0);
    expect(Credentials.load({}, file("# nothing\n")).size).toBe(0);
  });

  test("one variable without the other is an error naming the missing one", () => {
    expect(() => Credentials.load({ TOASTYFS_S3_ACCESS_KEY: "root-key" }, null)).toThrow(/TOASTYFS_S3_SECRET_KEY is not set/);
    expect(() => Credentials.load({ TOASTYFS_S3_SECRET_KEY: "root-secret-1" }, null)).toThrow(/TOASTYFS_S3_ACCESS_KEY is not set/);
  });

  test("a bad root key says which limit it breaks and never shows the secret", () => {
    expect(() => Credentials.load({ ...root, TOASTYFS_S3_ACCESS_KEY: "ab" }, null)).toThrow(
      /has 2 characters: access key ids have 3 to 128/,
    );
    let message = "";
    try {
      Credentials.load({ ...root, TOASTYFS_S3_SECRET_KEY: "short" }, null);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/secret key has 5 characters: secret keys have 8 to 128/);
    expect(message).not.toContain("short");
  });

  test("each problem in a file names the line and what is wrong", () => {
    const cases: Array<[string, RegExp]> = [
      ["ok-key goodsecret\nlonely\n", /line 2: expected "ACCESS_KEY_ID SECRET".*found 1 field$/],
      ["a b c d\n", /line 1: .*found 4 fields/],
      ["\n\nkey! goodsecret\n", /line 3: access key id may hold only letters, digits, '_', '.' and '-'/],
      ["ab goodsecret\n", /line 1: access key id has 2 characters: access key ids have 3 to 128/],
      [`${"k".repeat(129)} goodsecret\n`, /line 1: access key id has 129 characters/],
      ["key-1 1234567\n", /line 1: secret key has 7 characters: secret keys have 8 to 128/],
      [`key-1 ${"s".repeat(129)}\n`, /line 1: secret key has 129 characters/],
      ["key-1 sécret-secret\n", /line 1: secret key may hold only printable ASCII characters other than the space/],
      ["key-1 goodsecret\n# x\nkey-1 othersecret\n", /line 3: access key id key-1 is already defined \(line 1\)/],
      ["root-key goodsecret\n", /line 1: access key id root-key is already defined \(TOASTYFS_S3_ACCESS_KEY\)/],
    ];
    for (const [text, expected] of cases) {
      const f = file(text);
      let message = "";
      try {
        Credentials.load(root, f);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).toStartWith(`credentials file ${f} line `);
      expect(message).toMatch(expected);
    }
  });

  test("the largest allowed key and secret are accepted", () => {
    const c = Credentials.load({}, file(`${"k".repeat(128)} ${"~".repeat(128)}\nabc 12345678\n`));
    expect(c.secret("k".repeat(128))).toBe("~".repeat(128));
    expect(c.secret("abc")).toBe("12345678");
  });

  test("a missing, oversized or binary file is a clear error", () => {
    expect(() => Credentials.load({}, path.join(dir, "absent"))).toThrow(/credentials file .*absent: cannot read it/);
    const big = file(new Uint8Array(credentials_file_size_max_bytes + 1).fill(0x23));
    expect(() => Credentials.load({}, big)).toThrow(/a credentials file has at most 1048576 bytes/);
    expect(() => Credentials.load({}, file(new Uint8Array([0x61, 0xff, 0x0a])))).toThrow(/not UTF-8 text/);
    expect(() => Credentials.load({}, dir)).toThrow(/cannot read it/);
  });
});

test("the constructor refuses keys that break the same rules", () => {
  expect(() => new Credentials(new Map([["a/b", "goodsecret"]]))).toThrow(/access key id may hold only/);
  expect(() => new Credentials(new Map([["good-key", "has space"]]))).toThrow(/printable ASCII/);
  expect(new Credentials(new Map([["good-key", "goodsecret"]])).secret("good-key")).toBe("goodsecret");
});
