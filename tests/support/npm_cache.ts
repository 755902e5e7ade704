/**
 * npm packages a test needs but the project does not depend on (the AWS SDK for the S3 gateway
 * tests): installed once into a cache directory outside the repo, keyed by the exact list, so the
 * repo's package.json and node_modules stay as they are. Parallel test files share one install: a
 * lock directory (mkdir is atomic) lets one of them run npm while the others wait for its marker.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** How long a test waits for another process's install before it gives up (npm on a cold cache). */
const install_wait_ms = 5 * 60_000;
/** A lock older than this is left over from a killed install and is taken over. */
const stale_lock_ms = 10 * 60_000;
const poll_ms = 200;

/** The cache root: $TOASTYFS_TEST_CACHE, else ~/.cache/toastyfs-tests. */
export function testCacheRoot(): string {
  return process.env.TOASTYFS_TEST_CACHE ?? path.join(os.homedir(), ".cache", "toastyfs-tests");
}

/**
 * Installs `specs` (each "name@exact.version") unless already installed and returns the directory
 * whose node_modules holds them: import from path.join(dir, "node_modules", name). Throws with npm's
 * output when the install fails, so the test that needed them fails saying why.
 */
export async function npmPackages(specs: string[]): Promise<string> {
  for (const spec of specs) {
    // An exact version makes the cache key mean one set of files, and a test run repeatable.
    if (!/^(@[^/@]+\/)?[^/@]+@\d+\.\d+\.\d+$/.test(spec)) throw new Error(`npmPackages: ${spec} is not name@exact.version`);
  }
  const sorted = [...specs].sort();
  const hash = crypto.createHash("sha256").update(sorted.join("\n")).digest("hex").slice(0, 16);
  const dir = path.join(testCacheRoot(), `npm-${hash}`);
  const done = path.join(dir, ".installed");
  if (fs.existsSync(done)) return dir;
  fs.mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, ".lock");
  const deadline = Date.now() + install_wait_ms;
  for (;;) {
    if (fs.existsSync(done)) return dir;
    if (takeLock(lock)) break;
    if (Date.now() > deadline) throw new Error(`npmPackages: waited ${install_wait_ms} ms for the install holding ${lock}`);
    await Bun.sleep(poll_ms);
  }
  try {
    if (fs.existsSync(done)) return dir;
    fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "toastyfs-test-deps", private: true }, null, 2));
    const npm = Bun.spawn(["npm", "install", "--no-audit", "--no-fund", "--save-exact", "--no-package-lock", ...sorted], {
      cwd: dir,
      stdout: "pipe",
      stderr: "pipe",
      stdin: "ignore",
    });
    const [out, err] = await Promise.all([new Response(npm.stdout).text(), new Response(npm.stderr).text()]);
    const code = await npm.exited;
    if (code !== 0) throw new Error(`npm install ${sorted.join(" ")} failed (exit ${code}) in ${dir}:\n${err}\n${out}`);
    fs.writeFileSync(done, `${sorted.join("\n")}\n`);
    return dir;
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

/** mkdir is atomic: whoever creates the lock directory installs. A stale lock is removed first. */
function takeLock(lock: string): boolean {
  try {
    const age = Date.now() - fs.statSync(lock).mtimeMs;
    if (age > stale_lock_ms) fs.rmSync(lock, { recursive: true, force: true });
  } catch {
    // No lock: nothing stale to remove.
  }
  try {
    fs.mkdirSync(lock);
    return true;
  } catch {
    return false;
  }
}

/** The AWS SDK packages the S3 tests use, at one pinned version. */
export const aws_sdk_specs = ["@aws-sdk/client-s3@3.1178.0", "@aws-sdk/lib-storage@3.1178.0", "@aws-sdk/s3-request-presigner@3.1178.0"];
