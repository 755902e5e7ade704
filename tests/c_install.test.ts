/**
 * Packaging of the C client as a C user expects it: `make` at the top of a fresh copy of the tree
 * builds libtoasty.a and libtoasty.so (versioned, with a soname), every build output is ignored by
 * git, `make install` honours PREFIX and DESTDIR and installs the header, both libraries with the
 * usual symlinks and toasty.pc, `make uninstall` and `make clean` undo it; and the README's
 * pkg-config block, run verbatim, compiles example_client.c against the installed library, shared
 * and static, and both programs store hello = world in a `toastyfs dev` cluster.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { repo } from "./support/cluster.ts";
import { copyCTree, listFiles, readmeBlock } from "./support/c_docs.ts";
import { runWithDevCluster } from "./support/dev_ports.ts";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function run(cmd: string[], options: { cwd: string; env?: Record<string, string>; timeout_ms?: number }): Promise<Run> {
  const proc = Bun.spawn(cmd, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeout_ms ?? 120_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function ok(r: Run, what: string): Run {
  expect(r.code, `${what}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`).toBe(0);
  return r;
}

/** The shared objects a program or library needs (DT_NEEDED) and its soname, from readelf. */
async function dynamic(file: string): Promise<{ needed: string[]; soname: string | null }> {
  const r = ok(await run(["readelf", "-d", file], { cwd: repo }), `readelf -d ${file}`);
  const needed = [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
  const soname = /\(SONAME\)\s+Library soname: \[([^\]]+)\]/.exec(r.stdout)?.[1] ?? null;
  return { needed, soname };
}

const version = (JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8")) as { version: string }).version;
const soversion = version.split(".")[0]!;

/** pkg-config on this machine, installed from Debian's packages if missing; null says why not. */
async function ensurePkgConfig(): Promise<string | null> {
  if (Bun.which("pkg-config") !== null) return null;
  if (Bun.which("apt-get") === null) return "pkg-config is not installed and there is no apt-get to install it";
  const installed = await run(["apt-get", "install", "-y", "--no-install-recommends", "pkg-config"], {
    cwd: repo,
    env: { DEBIAN_FRONTEND: "noninteractive" },
    timeout_ms: 300_000,
  });
  if (Bun.which("pkg-config") !== null) return null;
  return `pkg-config is not installed and \`apt-get install -y pkg-config\` failed (exit ${installed.code}): ${installed.stderr.trim().split("\n").pop()}`;
}

let tree: string;
let scratch: string;

beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-c-install-"));
  tree = path.join(scratch, "tree");
  copyCTree(tree);
});

afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

describe("C client packaging", () => {
  test("`make` at the top builds libtoasty.a and a versioned libtoasty.so; every output is git-ignored; `make clean` removes them all", async () => {
    const before = listFiles(tree);
    ok(await run(["make"], { cwd: tree }), "make");
    const c = path.join(tree, "clients/c");
    expect(fs.existsSync(path.join(c, "libtoasty.a"))).toBe(true);
    // The real file carries the full version; the soname and the link name point at it.
    expect(fs.lstatSync(path.join(c, `libtoasty.so.${version}`)).isFile()).toBe(true);
    expect(fs.readlinkSync(path.join(c, `libtoasty.so.${soversion}`))).toBe(`libtoasty.so.${version}`);
    expect(fs.readlinkSync(path.join(c, "libtoasty.so"))).toBe(`libtoasty.so.${soversion}`);
    expect((await dynamic(path.join(c, "libtoasty.so"))).soname).toBe(`libtoasty.so.${soversion}`);

    const outputs = listFiles(tree).filter((f) => !before.includes(f));
    expect(outputs.length).toBeGreaterThan(3);
    if (fs.existsSync(path.join(repo, ".git"))) {
      // Paths as they would be in the repository; --no-index: whether tracked or not.
      const check = Bun.spawnSync(["git", "check-ignore", "--no-index", "--verbose", "--non-matching", "--stdin"], {
        cwd: repo,
        stdin: new TextEncoder().encode(outputs.join("\n") + "\n"),
        stdout: "pipe",
      });
      const not_ignored = check.stdout
        .toString()
        .split("\n")
        .filter((l) => l.startsWith("::"))
        .map((l) => l.slice(2).trim());
      expect(not_ignored, "build outputs that .gitignore does not cover").toEqual([]);
    }

    ok(await run(["make", "clean"], { cwd: tree }), "make clean");
    expect(listFiles(tree)).toEqual(before);
  }, 120_000);

  test("`make install DESTDIR=D PREFIX=/usr` stages the header, both libraries with their symlinks and toasty.pc under D/usr; `make uninstall` with the same variables removes them", async () => {
    const dest = path.join(scratch, "destdir");
    ok(await run(["make", "install", `DESTDIR=${dest}`, "PREFIX=/usr"], { cwd: tree }), "make install DESTDIR PREFIX=/usr");
    const installed = listFiles(dest);
    expect(installed).toEqual(
      [
        "usr/include/toastyfs.h",
        "usr/lib/libtoasty.a",
        "usr/lib/libtoasty.so",
        `usr/lib/libtoasty.so.${soversion}`,
        `usr/lib/libtoasty.so.${version}`,
        "usr/lib/pkgconfig/toasty.pc",
      ].sort(),
    );
    const lib = path.join(dest, "usr/lib");
    expect(fs.readlinkSync(path.join(lib, "libtoasty.so"))).toBe(`libtoasty.so.${soversion}`);
    expect(fs.readlinkSync(path.join(lib, `libtoasty.so.${soversion}`))).toBe(`libtoasty.so.${version}`);
    expect(fs.readFileSync(path.join(dest, "usr/include/toastyfs.h"), "utf8")).toBe(
      fs.readFileSync(path.join(repo, "clients/c/toastyfs.h"), "utf8"),
    );

    // The .pc file names where the files will be at run time (PREFIX), never the staging DESTDIR.
    const pc = fs.readFileSync(path.join(lib, "pkgconfig/toasty.pc"), "utf8");
    expect(pc).toContain("prefix=/usr\n");
    expect(pc).toContain(`Version: ${version}\n`);
    expect(pc).not.toContain(dest);
    const why_not = await ensurePkgConfig();
    if (why_not !== null) {
      console.warn(`SKIPPED the pkg-config check of the staged toasty.pc: ${why_not}`);
    } else {
      // A staged tree is used as a sysroot (how a distribution or cross build links against it).
      const env = { PKG_CONFIG_LIBDIR: path.join(lib, "pkgconfig"), PKG_CONFIG_PATH: "", PKG_CONFIG_SYSROOT_DIR: dest };
      const flags = ok(await run(["pkg-config", "--cflags", "--libs", "toasty"], { cwd: tree, env }), "pkg-config toasty").stdout.trim();
      expect(flags).toContain(`-I${dest}/usr/include`);
      expect(flags).toContain("-ltoasty");
      expect(ok(await run(["pkg-config", "--modversion", "toasty"], { cwd: tree, env }), "pkg-config --modversion").stdout.trim()).toBe(
        version,
      );
      const program = path.join(scratch, "example_staged");
      ok(await run(["sh", "-c", `gcc clients/c/example_client.c ${flags} -o ${program}`], { cwd: tree }), "gcc against the staged library");
      expect((await dynamic(program)).needed).toContain(`libtoasty.so.${soversion}`);
    }

    ok(await run(["make", "uninstall", `DESTDIR=${dest}`, "PREFIX=/usr"], { cwd: tree }), "make uninstall");
    expect(listFiles(dest)).toEqual([]);
  }, 120_000);

  test("installed with PREFIX, the README's pkg-config block compiles example_client.c in clients/c, shared and static; both store hello = world", async () => {
    const why_not = await ensurePkgConfig();
    if (why_not !== null) {
      console.warn(`SKIPPED the installed-library example: ${why_not}`);
      return;
    }
    const prefix = path.join(scratch, "prefix");
    ok(await run(["make", "install", `PREFIX=${prefix}`], { cwd: tree }), "make install PREFIX");
    expect(fs.existsSync(path.join(prefix, "lib/pkgconfig/toasty.pc"))).toBe(true);
    // Only what is installed may be used: the build tree's libraries are gone.
    ok(await run(["make", "clean"], { cwd: tree }), "make clean");

    const block = readmeBlock("pkg-config", "example_client.c");
    // As the README says for a PREFIX outside the system's search paths.
    const env = { PKG_CONFIG_PATH: path.join(prefix, "lib/pkgconfig"), LD_LIBRARY_PATH: path.join(prefix, "lib") };
    const outcome = await runWithDevCluster({ scripts: [block], cwd: tree, env, read_key: "hello" });
    if ("skipped" in outcome) {
      console.warn(`SKIPPED the installed-library example: ${outcome.skipped}`);
      return;
    }
    const [documented] = outcome.runs;
    const context = `${block}\n--- stdout\n${documented?.stdout}\n--- stderr\n${documented?.stderr}\n--- toastyfs dev\n${outcome.dev_log}`;
    expect(documented?.code, context).toBe(0);
    // Every program the block built and ran printed Done.
    const programs = [...block.matchAll(/-o (\S+) && \.\/(\S+)/g)].map((m) => m[1]!);
    expect(programs.length, context).toBe(2);
    expect(documented!.stdout.match(/^Done\.$/gm)?.length, context).toBe(2);
    expect(outcome.value).toBe("world");

    const linked = await Promise.all(programs.map((p) => dynamic(path.join(tree, "clients/c", p))));
    const shared = linked.filter((d) => d.needed.includes(`libtoasty.so.${soversion}`));
    const static_ = linked.filter((d) => !d.needed.some((n) => n.startsWith("libtoasty")));
    expect(shared.length, `${programs.join(", ")}: ${JSON.stringify(linked)}`).toBe(1);
    expect(static_.length, `${programs.join(", ")}: ${JSON.stringify(linked)}`).toBe(1);
    console.log(
      `installed example (${outcome.isolated ? "own network namespace" : "host network"}): ${programs.map((p, i) => `${p} needs [${linked[i]!.needed.join(", ")}]`).join("; ")}`,
    );

    ok(await run(["make", "uninstall", `PREFIX=${prefix}`], { cwd: tree }), "make uninstall");
    expect(listFiles(prefix)).toEqual([]);
  }, 240_000);
});
