/**
 * The cluster secret on the command line (docs/PROTOCOL.md §6): `toastyfs secret new FILE`,
 * `toastyfs secret client SECRET_FILE OUT`, and --secret-file / TOASTYFS_SECRET_FILE for every
 * command that connects to a cluster.
 */
import type { CAC } from "cac";
import { SecretError, newSecret, readSecretFile, writeClientKeyFile, writeSecretFile, type AuthKeys } from "../lib/net/auth/secret.ts";
import { OperationError, UsageError, optionString } from "./cli_util.ts";

/** The help line of --secret-file, the same for every command. */
export const secret_file_help = "The cluster's secret, or a client key file (default: $TOASTYFS_SECRET_FILE; none: no authentication)";

/** --secret-file, else $TOASTYFS_SECRET_FILE, else null (no authentication). */
export function secretFrom(option: unknown): AuthKeys | null {
  const given = optionString("--secret-file", option);
  const env = process.env.TOASTYFS_SECRET_FILE;
  const file = given ?? (env !== undefined && env.trim() !== "" ? env : undefined);
  if (file === undefined) return null;
  try {
    return readSecretFile(file);
  } catch (error) {
    if (error instanceof SecretError)
      throw new UsageError(`${given === undefined ? "TOASTYFS_SECRET_FILE: " : "--secret-file: "}${error.message}`);
    throw error;
  }
}

export function registerSecretCommands(cli: CAC): void {
  cli
    .command(
      "secret <action> <file> [out]",
      "new FILE: write a fresh cluster secret (mode 0600); client SECRET_FILE OUT: a client-only key",
    )
    .example("toastyfs secret new /etc/toastyfs/secret")
    .example("toastyfs secret client /etc/toastyfs/secret ./client.key")
    .action((action: string, file: string, out: string | undefined) => {
      try {
        if (action === "new") {
          if (out !== undefined) throw new UsageError("toastyfs secret new takes one file");
          writeSecretFile(file, newSecret());
          console.log(
            `wrote a new secret to ${file}: give it to every replica (--secret-file) and to clients, or give clients a client key (toastyfs secret client)`,
          );
          return;
        }
        if (action === "client") {
          if (out === undefined) throw new UsageError("toastyfs secret client SECRET_FILE OUT: name the file to write");
          const keys = readSecretFile(file);
          if (keys.replica === null)
            throw new UsageError(`${file} is already a client key file: a client key is made from the full secret`);
          writeClientKeyFile(out, keys);
          console.log(`wrote a client key to ${out}: it lets a client in, and cannot run or impersonate a replica`);
          return;
        }
        throw new UsageError(`toastyfs secret: unknown action "${action}" (new or client)`);
      } catch (error) {
        if (error instanceof SecretError) throw new OperationError(error.message);
        throw error;
      }
    });
}
