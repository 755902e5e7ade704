/**
 * Preloaded into a replica started from source by tests/support/cluster.ts when the replica must
 * listen on a port other than its --addr (a proxy sits on the listed address: tests/support/proxy.ts)
 * and `toastyfs serve` has no option for that. TOASTYFS_TEST_LISTEN_REDIRECT="LISTED:REAL" makes a
 * Bun.listen on port LISTED listen on port REAL instead; nothing else changes.
 *
 * Test-only. The proper way is a `--listen host:port` option on `toastyfs serve` (ReplicaNode would
 * pass it to TcpTransport's `listen` instead of `self`); cluster.ts uses that option as soon as
 * `toastyfs --help` lists it.
 */
const spec = process.env.TOASTYFS_TEST_LISTEN_REDIRECT;
if (spec !== undefined && spec !== "") {
  const match = /^(\d+):(\d+)$/.exec(spec);
  if (match === null) throw new Error(`TOASTYFS_TEST_LISTEN_REDIRECT must be LISTED:REAL, got "${spec}"`);
  const listed = Number(match[1]);
  const real = Number(match[2]);
  type Listen = (options: Record<string, unknown>) => unknown;
  const bun = Bun as unknown as { listen: Listen };
  const listen = bun.listen.bind(Bun);
  bun.listen = (options) => listen(options.port === listed ? { ...options, port: real } : options);
}
export {};
