/**
 * Summarizes a Chrome-format .cpuprofile (bun --cpu-prof): samples per function, top N. Bun takes
 * a sample every interval while the JS thread runs (blocking system calls included) and none while
 * the event loop is idle, so shares are of busy time and samples x interval is busy time.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const idle = new Set(["(idle)", "(program)", "(root)"]);

export function summarizeProfile(profile: CpuProfile, top: number): string {
  const by_id = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let busy = 0;
  let all = 0;
  const label = (n: ProfileNode): string => {
    const name = n.callFrame.functionName || "(anonymous)";
    const url = n.callFrame.url.replace(/^.*\/(cmd|lib|node_modules)\//, "$1/");
    return url ? `${name} ${url}:${n.callFrame.lineNumber + 1}` : name;
  };
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = 1; // one sample (time deltas also span idle gaps, which are not sampled)
    const node = by_id.get(profile.samples[i]!);
    if (node === undefined) continue;
    all += dt;
    const name = label(node);
    if (idle.has(node.callFrame.functionName)) continue;
    busy += dt;
    self.set(name, (self.get(name) ?? 0) + dt);
    // Inclusive time: every distinct frame on the stack.
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const n = by_id.get(id)!;
      if (idle.has(n.callFrame.functionName)) continue;
      const l = label(n);
      if (seen.has(l)) continue;
      seen.add(l);
      total.set(l, (total.get(l) ?? 0) + dt);
    }
  }
  const pct = (us: number) => `${((100 * us) / Math.max(busy, 1)).toFixed(1).padStart(5)}%`;
  const wall_ms = (profile.endTime - profile.startTime) / 1000;
  const lines = [
    `  ${busy} busy samples (${all} in all) over ${(wall_ms / 1000).toFixed(1)} s of wall time; self samples, as a share of busy ones:`,
  ];
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(us)}  ${name}`);
  lines.push(`  inclusive samples, project code (cmd/, lib/):`);
  for (const [name, us] of [...total]
    .filter(([n]) => / (cmd|lib)\//.test(n))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top))
    lines.push(`  ${pct(us)}  ${name}`);
  return lines.join("\n");
}
