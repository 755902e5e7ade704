/**
 * Test certificates made at test time with the openssl CLI: a CA, and certificates it signs for
 * replicas and clients (one kind serves both ends, as a replica's does: it listens and dials).
 * Nothing is checked in: keys are generated fresh into a temporary directory.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const openssl = "/usr/bin/openssl";

export interface CertFiles {
  cert: string;
  key: string;
  ca: string;
}

function run(args: string[], cwd: string): void {
  const result = Bun.spawnSync([openssl, ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${result.stderr.toString()}`);
}

export class TestCa {
  readonly ca: string;
  private readonly ca_key: string;

  private constructor(
    readonly dir: string,
    readonly name: string,
  ) {
    this.ca = path.join(dir, `${name}.crt`);
    this.ca_key = path.join(dir, `${name}.key`);
  }

  /** A new CA in `dir` (a fresh temporary directory if not given). */
  static create(name = "ca", dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-tls-"))): TestCa {
    const ca = new TestCa(dir, name);
    run(
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"].concat([
        "-subj",
        `/CN=ToastyFS test ${name}`,
        "-keyout",
        ca.ca_key,
        "-out",
        ca.ca,
      ]),
      dir,
    );
    return ca;
  }

  /** A certificate for 127.0.0.1 and localhost, usable to listen and to dial; signed by this CA. */
  issue(name: string, options: { days?: number; san?: string } = {}): CertFiles {
    const key = path.join(this.dir, `${name}.key`);
    const csr = path.join(this.dir, `${name}.csr`);
    const cert = path.join(this.dir, `${name}.crt`);
    const ext = path.join(this.dir, `${name}.ext`);
    fs.writeFileSync(
      ext,
      `subjectAltName=${options.san ?? "IP:127.0.0.1,DNS:localhost"}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`,
    );
    run(
      ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${name}`, "-keyout", key, "-out", csr],
      this.dir,
    );
    run(
      ["x509", "-req", "-in", csr, "-CA", this.ca, "-CAkey", this.ca_key, "-CAcreateserial", "-days", String(options.days ?? 2)].concat([
        "-extfile",
        ext,
        "-out",
        cert,
      ]),
      this.dir,
    );
    fs.chmodSync(key, 0o600);
    return { cert, key, ca: this.ca };
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The command-line options for a set of files. */
export function tlsArgs(files: CertFiles): string[] {
  return ["--tls-cert", files.cert, "--tls-key", files.key, "--tls-ca", files.ca];
}
