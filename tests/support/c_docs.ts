/**
 * The C client as a user meets it: the shell blocks of clients/c/README.md (so tests run the
 * documented commands, not a copy of them) and a fresh copy of the files a clone has (the top
 * Makefile and clients/c, without build outputs), to run them in.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { repo } from "./cluster.ts";

export const c_readme = path.join(repo, "clients/c/README.md");

/** The bodies of the ```sh fenced blocks of a Markdown file, in order. */
export function shBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** The one sh block of clients/c/README.md that contains every needle. */
export function readmeBlock(...needles: string[]): string {
  const blocks = shBlocks(fs.readFileSync(c_readme, "utf8")).filter((b) => needles.every((n) => b.includes(n)));
  if (blocks.length !== 1)
    throw new Error(
      `clients/c/README.md has ${blocks.length} sh blocks containing ${needles.map((n) => JSON.stringify(n)).join(" and ")}; expected exactly one`,
    );
  return blocks[0]!;
}

/** What a clone of the repository holds of the C client: the files git tracks or would track
 * (ignored files, i.e. build outputs, left out), or without git, the tree minus known outputs. */
function cFiles(): string[] {
  const listed = Bun.spawnSync(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "Makefile", "clients/c"], {
    cwd: repo,
    stdout: "pipe",
    stderr: "pipe",
  });
  if (listed.exitCode === 0)
    return listed.stdout
      .toString()
      .split("\0")
      .filter((f) => f !== "" && fs.existsSync(path.join(repo, f)));
  const out: string[] = fs.existsSync(path.join(repo, "Makefile")) ? ["Makefile"] : [];
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(repo, rel), { withFileTypes: true })) {
      const child = path.join(rel, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== "build") walk(child);
      } else if (!/^libtoasty\.|\.o$|^example$/.test(entry.name)) out.push(child);
    }
  };
  walk("clients/c");
  return out;
}

/** Copies the C client's files into dest (a fresh tree, as cloned: nothing built). */
export function copyCTree(dest: string): void {
  for (const rel of cFiles()) {
    fs.mkdirSync(path.dirname(path.join(dest, rel)), { recursive: true });
    fs.copyFileSync(path.join(repo, rel), path.join(dest, rel));
  }
}

/** Every file under dir, relative to it. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const child = path.join(rel, entry.name);
      if (entry.isDirectory()) walk(child);
      else out.push(child);
    }
  };
  walk("");
  return out.sort();
}
