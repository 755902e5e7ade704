export {};
// Compiles the three standalone executables at the repo root. Called by ./build.sh.
// Host target only: another target makes Bun download a runtime, and builds must work offline.
const executables: [entry: string, outfile: string][] = [
  ["cmd/toastyfs.ts", "toastyfs"],
  ["cmd/random_client.ts", "toastyfs_random_client"],
  ["cmd/simulation.ts", "toastyfs_simulation"],
];

const only = process.argv.slice(2);
for (const [entry, outfile] of executables) {
  if (only.length > 0 && !only.includes(outfile)) continue;
  const result = await Bun.build({
    entrypoints: [entry],
    compile: { outfile },
    minify: true,
    bytecode: true, // halves startup time
    format: "esm", // bytecode defaults to cjs, which rejects top-level await
    sourcemap: "linked", // embedded: stack traces name cmd/ and lib/ files
    // The same pure-JS cbor-x on every machine, whether or not the build tree is present.
    define: { "process.env.CBOR_NATIVE_ACCELERATION_DISABLED": '"true"' },
  });
  if (!result.success) {
    for (const log of result.logs) console.error(log);
    console.error(`error: building ${outfile} from ${entry} failed`);
    process.exit(1);
  }
}
