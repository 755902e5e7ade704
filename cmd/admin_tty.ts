/**
 * The interactive admin shell (a terminal on stdin and stdout): a menu of @clack/prompts. Ctrl-C
 * in a prompt goes back to the menu; Ctrl-C in the menu (or "Quit") leaves. Keys and prefixes are
 * typed with escapes for bytes a terminal cannot type (\xff, \n, \\: lib/util/escape.ts) and
 * shown escaped the same way.
 */
import * as p from "@clack/prompts";
import { key_size_max } from "../lib/constants.ts";
import { EscapeError, unescapeBytes } from "../lib/util/escape.ts";
import { UsageError, OperationError, oneLine } from "./cli_util.ts";
import { AdminSession, FailureWithOutput, helpLines, type PutValue } from "./admin_commands.ts";
import { describeValue, formatBytes, formatStat, keyText, roleOf } from "./format.ts";

type Action = "status" | "browse" | "get" | "put" | "delete" | "replica" | "command" | "quit";

const page_size = 50;
const value_lines_max = 40;

export async function interactive(session: AdminSession): Promise<number> {
  p.intro(`toastyfs admin · ${session.replicaNames.join(", ")}`);
  for (;;) {
    const action = await p.select<Action>({
      message: "What now?",
      options: [
        { value: "status", label: "Status", hint: "every replica, refreshing every second" },
        { value: "browse", label: "Browse keys", hint: "list by prefix, pick one to see or delete it" },
        { value: "get", label: "Get an object" },
        { value: "put", label: "Put an object", hint: "typed text or a file" },
        { value: "delete", label: "Delete an object" },
        { value: "replica", label: "Replica details", hint: "counters, disk, problems" },
        { value: "command", label: "Type a command", hint: "as in the line mode; help lists them" },
        { value: "quit", label: "Quit" },
      ],
    });
    if (p.isCancel(action) || action === "quit") break;
    try {
      await perform(session, action);
    } catch (error) {
      if (error instanceof FailureWithOutput) p.log.message(error.lines.join("\n"));
      const message = error instanceof Error ? error.message : String(error);
      if (error instanceof UsageError || error instanceof OperationError) p.log.error(oneLine(message));
      else p.log.error(`unexpected: ${oneLine(message)}`);
    }
  }
  p.outro("bye");
  return 0;
}

async function perform(session: AdminSession, action: Exclude<Action, "quit">): Promise<void> {
  switch (action) {
    case "status":
      return liveStatus(session);
    case "browse":
      return browse(session);
    case "get": {
      const key = await askKey("Key to get?");
      if (key !== null) await showObject(session, key);
      return;
    }
    case "put":
      return put(session);
    case "delete": {
      const key = await askKey("Key to delete?");
      if (key !== null) await remove(session, key);
      return;
    }
    case "replica":
      return replica(session);
    case "command": {
      const line = await p.text({
        message: "Command?",
        placeholder: "help",
        validate: (v) => (v === undefined || v.trim() === "" ? "type a command, or Ctrl-C to go back" : undefined),
      });
      if (p.isCancel(line)) return;
      if (line.trim() === "help") return p.note(helpLines().join("\n"), "help");
      const lines = await session.run(line);
      p.log.message(lines.length > 0 ? lines.join("\n") : "done");
      return;
    }
  }
}

/** Typed text with escapes to bytes, or what is wrong with it. */
function typedBytes(value: string | undefined): Uint8Array | string {
  try {
    return unescapeBytes(value ?? "");
  } catch (error) {
    if (error instanceof EscapeError) return error.message;
    throw error;
  }
}

function keyProblem(value: string | undefined): string | undefined {
  const key = typedBytes(value);
  if (typeof key === "string") return key;
  if (key.length === 0) return "a key is required (Ctrl-C to go back)";
  if (key.length > key_size_max) return `the key is ${key.length} bytes: keys are 1 to ${key_size_max} bytes`;
  return undefined;
}

async function askKey(message: string): Promise<Uint8Array | null> {
  const key = await p.text({ message, placeholder: "hello (\\xff for a byte, \\n for a newline)", validate: keyProblem });
  if (p.isCancel(key)) return null;
  const bytes = typedBytes(key);
  return typeof bytes === "string" ? null : bytes;
}

/** The status table, redrawn every second until a key is pressed. */
async function liveStatus(session: AdminSession): Promise<void> {
  const stdin = process.stdin;
  const out = process.stdout;
  let pressed = false;
  let wake: () => void = () => {};
  const onData = (data: Buffer) => {
    pressed = true;
    wake();
    // Ctrl-C here also just goes back to the menu.
    void data;
  };
  stdin.setRawMode(true);
  stdin.resume();
  stdin.on("data", onData);
  out.write("\x1b[?25l"); // hide the cursor while redrawing
  let drawn = 0;
  try {
    while (!pressed) {
      const report = await session.statusReport();
      const columns = Math.max(20, (out.columns ?? 100) - 1);
      const lines = [
        `◇  Status at ${new Date().toLocaleTimeString()}, refreshing every second; press any key to go back`,
        ...report.lines.map((l) => `│  ${l}`),
        `│  ${report.verdict}`,
      ].map((l) => (l.length > columns ? l.slice(0, columns) : l));
      if (drawn > 0) out.write(`\x1b[${drawn}A\x1b[J`);
      out.write(lines.join("\n") + "\n");
      drawn = lines.length;
      if (pressed) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    stdin.off("data", onData);
    stdin.setRawMode(false);
    stdin.pause();
    out.write("\x1b[?25h");
  }
}

async function showObject(session: AdminSession, key: Uint8Array): Promise<void> {
  const shown = keyText(key);
  const result = await session.op(`get ${shown}`, (client) => client.get(key));
  let lines = describeValue(result.value);
  if (lines.length > value_lines_max)
    lines = [
      ...lines.slice(0, value_lines_max),
      `... (${lines.length - value_lines_max} more lines; use toastyfs get --escaped '${shown}' -o FILE)`,
    ];
  p.note(
    lines.join("\n") || "(empty)",
    `${shown} · version ${result.version} · ${formatBytes(result.value.length)} · ${new Date(result.timestamp).toISOString()}`,
  );
}

async function put(session: AdminSession): Promise<void> {
  const key = await askKey("Key to put?");
  if (key === null) return;
  const source = await p.select({
    message: "Value from",
    options: [
      { value: "text", label: "Typed text" },
      { value: "file", label: "A file" },
    ],
  });
  if (p.isCancel(source)) return;
  let value: PutValue;
  if (source === "text") {
    const text = await p.text({ message: "Value?", placeholder: "hello, world" });
    if (p.isCancel(text)) return;
    value = { bytes: new TextEncoder().encode(text ?? "") };
  } else {
    const file = await p.text({
      message: "File?",
      placeholder: "./photo.jpg",
      validate: (v) => (v === undefined || v === "" ? "a file name is required" : undefined),
    });
    if (p.isCancel(file)) return;
    value = { file };
  }
  const condition = await p.select({
    message: "Condition",
    options: [
      { value: "none", label: "None", hint: "overwrite whatever is there" },
      { value: "absent", label: "Only if the key does not exist" },
    ],
  });
  if (p.isCancel(condition)) return;
  const shown = keyText(key);
  const spin = p.spinner();
  spin.start("bytes" in value ? `put ${shown} (${formatBytes(value.bytes.length)})` : `put ${shown} from ${value.file}`);
  try {
    const { version, size } = await session.put(key, value, condition === "absent" ? { if_absent: true } : {});
    spin.stop(`${shown}: version ${version} (${formatBytes(size)})`);
  } catch (error) {
    spin.stop(`put ${shown} failed`);
    throw error;
  }
}

async function remove(session: AdminSession, key: Uint8Array): Promise<boolean> {
  const shown = keyText(key);
  const sure = await p.confirm({ message: `Delete ${shown}?`, initialValue: false });
  if (p.isCancel(sure) || !sure) return false;
  await session.op(`delete ${shown}`, (client) => client.delete(key));
  p.log.success(`${shown}: deleted`);
  return true;
}

async function browse(session: AdminSession): Promise<void> {
  const typed = await p.text({
    message: "Prefix? (empty for every key)",
    placeholder: "photos/",
    defaultValue: "",
    validate: (v) => {
      const bytes = typedBytes(v);
      if (typeof bytes === "string") return bytes;
      return bytes.length > key_size_max ? `the prefix is ${bytes.length} bytes: keys are at most ${key_size_max} bytes` : undefined;
    },
  });
  if (p.isCancel(typed)) return;
  const prefix = typedBytes(typed);
  if (typeof prefix === "string") return;
  const shown_prefix = keyText(prefix);
  let after: Uint8Array = new Uint8Array(0);
  const stack: Uint8Array[] = [];
  for (;;) {
    const page = await session.op(`ls ${shown_prefix}`, (client) => client.list(prefix, { after, limit: page_size }));
    if (page.entries.length === 0 && stack.length === 0) {
      p.log.info(prefix.length === 0 ? "no keys yet: put one first" : `no keys start with "${shown_prefix}"`);
      return;
    }
    // Options are named by position: a key's bytes need not be a string a select can hold.
    const options: { value: string; label: string; hint?: string }[] = page.entries.map((entry, i) => ({
      value: `k:${i}`,
      label: keyText(entry.key),
      hint: `${formatBytes(entry.size)} · v${entry.version}`,
    }));
    if (page.truncated) options.push({ value: "next", label: "→ next page" });
    if (stack.length > 0) options.push({ value: "previous", label: "← previous page" });
    options.push({ value: "back", label: "↩ back to the menu" });
    const choice = await p.select({
      message: `Keys${prefix.length > 0 ? ` starting with "${shown_prefix}"` : ""} (page ${stack.length + 1})`,
      options,
      maxItems: 15,
    });
    if (p.isCancel(choice) || choice === "back") return;
    if (choice === "next") {
      stack.push(after);
      after = page.entries[page.entries.length - 1]!.key;
      continue;
    }
    if (choice === "previous") {
      after = stack.pop() ?? new Uint8Array(0);
      continue;
    }
    const key = page.entries[Number(choice.slice(2))]!.key;
    const shown = keyText(key);
    const info = await session.op(`stat ${shown}`, (client) => client.stat(key));
    p.note(formatStat(key, info).join("\n"), shown);
    const next = await p.select({
      message: shown,
      options: [
        { value: "show", label: "Show the value" },
        { value: "delete", label: "Delete it" },
        { value: "list", label: "Back to the list" },
      ],
    });
    if (p.isCancel(next)) continue;
    if (next === "show") await showObject(session, key);
    if (next === "delete") await remove(session, key);
  }
}

async function replica(session: AdminSession): Promise<void> {
  const statuses = await session.statuses();
  const names = session.replicaNames;
  const choice = await p.select({
    message: "Which replica?",
    options: names.map((name, i) => ({ value: String(i), label: name, hint: roleOf(statuses[i] ?? null) })),
  });
  if (p.isCancel(choice)) return;
  p.note((await session.replicaDetails(choice)).join("\n"), names[Number(choice)]);
}
