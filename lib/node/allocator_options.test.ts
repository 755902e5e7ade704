import { describe, expect, test } from "bun:test";
import { allocatorReexec, allocator_purge_delay_ms } from "./allocator_options.ts";

describe("allocatorReexec", () => {
  test("a compiled executable re-runs itself with its own arguments and the purge delay set", () => {
    const plan = allocatorReexec("/usr/bin/toastyfs", ["bun", "/$bunfs/root/toastyfs", "serve", "--addr", "h:1"], [], { HOME: "/root" });
    expect(plan).toEqual({
      args: ["/usr/bin/toastyfs", "serve", "--addr", "h:1"],
      env: { HOME: "/root", MIMALLOC_PURGE_DELAY: String(allocator_purge_delay_ms) },
    });
  });

  test("from source, bun re-runs the script with its own flags (a profiler's, say)", () => {
    const plan = allocatorReexec("/bin/bun", ["/bin/bun", "/repo/cmd/toastyfs.ts", "serve"], ["--cpu-prof", "--cpu-prof-dir=/p"], {});
    expect(plan?.args).toEqual(["/bin/bun", "--cpu-prof", "--cpu-prof-dir=/p", "/repo/cmd/toastyfs.ts", "serve"]);
  });

  test("an operator's setting (or the re-executed process's own) is kept: no second re-execution", () => {
    expect(allocatorReexec("/bin/toastyfs", ["bun", "/$bunfs/root/toastyfs", "serve"], [], { MIMALLOC_PURGE_DELAY: "100" })).toBeNull();
  });
});
