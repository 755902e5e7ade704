/**
 * Fingerprints what the simulator does on a range of seeds: a SHA-256 over every message every
 * replica sends (sender, destination, header checksum, body checksum) and each seed's result. A
 * restructuring that promises "no change of behaviour" must print the same fingerprint before and
 * after; the sweep then checks the new code on fresh seeds.
 *
 *   bun scripts/trace_fingerprint.ts [--from S] [--seeds N] [--replicas 3,5]
 */
import { parseArgs } from "node:util";
import { createHash } from "node:crypto";
import { simulate } from "../sim/simulator.ts";

const { values } = parseArgs({
  options: {
    from: { type: "string", default: "1" },
    seeds: { type: "string", default: "40" },
    replicas: { type: "string", default: "3,5" },
  },
});
const from = Number(values.from);
const seeds = Number(values.seeds);
const replica_counts = values.replicas.split(",").map(Number);
if (!Number.isSafeInteger(from) || !Number.isSafeInteger(seeds) || seeds < 1 || replica_counts.some((n) => !Number.isInteger(n) || n < 1)) {
  console.error("usage: bun scripts/trace_fingerprint.ts [--from S] [--seeds N] [--replicas 3,5]");
  process.exit(2);
}

const total = createHash("sha256");
for (const replicas of replica_counts) {
  for (let seed = from; seed < from + seeds; seed++) {
    const hash = createHash("sha256");
    let messages = 0;
    const result = simulate({
      seed,
      replicas,
      clients: 4,
      ticks: 3000,
      trace: (sender, to, message) => {
        messages += 1;
        hash.update(`${sender}>${to}:${message.header.command}:${message.header.checksum}:${message.header.checksum_body}\n`);
      },
    });
    const line = `replicas=${replicas} seed=${seed} ok=${result.ok} steps=${result.step} messages=${messages} ${hash.digest("hex").slice(0, 16)}`;
    console.log(line);
    total.update(line + "\n");
  }
}
console.log(`fingerprint ${total.digest("hex")}`);
