/** Shared plumbing for the real-process fault tests: a cluster per test whose logs are printed and
 * whose directory is kept when the test fails, and a seed that is printed so a run's random
 * choices (timings, victims) can be replayed. */
import { Prng } from "../../lib/util/prng.ts";
import { TestCluster, describeStatuses } from "./cluster.ts";

/** The last `lines` lines of each replica's log. */
export function logTails(cluster: TestCluster, lines = 80): string {
  return cluster.replicas
    .map((r) => {
      const text = cluster.logs(r).trimEnd().split("\n");
      return `=== replica ${r.index} (${r.address}) log: ${r.log_path}, last ${Math.min(lines, text.length)} lines\n${text.slice(-lines).join("\n")}`;
    })
    .join("\n");
}

/** Runs fn against a fresh cluster; on failure prints the status and logs and keeps the data. */
export async function withCluster<T>(
  options: Parameters<typeof TestCluster.start>[1] & { count?: number },
  fn: (cluster: TestCluster) => Promise<T>,
): Promise<T> {
  const cluster = await TestCluster.start(options.count ?? 3, options);
  let ok = false;
  try {
    const result = await fn(cluster);
    ok = true;
    return result;
  } catch (error) {
    console.error(`test failed; cluster directory kept at ${cluster.dir}`);
    try {
      console.error(`status:\n${describeStatuses(await cluster.status())}`);
    } catch {
      // status is best effort here
    }
    console.error(logTails(cluster));
    throw error;
  } finally {
    await cluster.destroy(!ok);
  }
}

/** A PRNG seeded from TOASTYFS_TEST_SEED, or at random; the seed is printed. */
export function seededPrng(what: string): Prng {
  const env = process.env.TOASTYFS_TEST_SEED;
  const seed = env !== undefined && /^\d+$/.test(env) ? Number(env) : Math.floor(Math.random() * 2 ** 32);
  console.log(`${what}: seed ${seed} (TOASTYFS_TEST_SEED=${seed} replays its random choices)`);
  return new Prng(seed);
}
