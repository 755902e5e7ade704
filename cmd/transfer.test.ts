import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ClientError } from "../lib/client/errors.ts";
import { streamToFile } from "./transfer.ts";
import { OperationError } from "./cli_util.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "toastyfs-transfer-"));
afterAll(() => fs.rmSync(dir, { recursive: true }));

/** Chunks, then an error if given (as a get's stream fails when the object changes). */
function stream(chunks: string[], error: Error | null = null): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(new TextEncoder().encode(chunks[i++]!));
      else if (error !== null) controller.error(error);
      else controller.close();
    },
  });
}

const temps = (): string[] => fs.readdirSync(dir).filter((f) => f.includes(".toastyfs-"));
const never = new AbortController().signal;

describe("streamToFile", () => {
  test("writes every chunk, then renames the temporary file over the target", async () => {
    const target = path.join(dir, "ok");
    fs.writeFileSync(target, "old");
    await streamToFile(stream(["a", "bc", "def"]), target, never);
    expect(fs.readFileSync(target, "utf8")).toBe("abcdef");
    expect(temps()).toEqual([]);
  });

  test("a stream that fails midway leaves the target untouched, removes the temporary file and says nothing was written", async () => {
    const target = path.join(dir, "kept");
    fs.writeFileSync(target, "old");
    const changed = new ClientError("object_changed", "changed while it was read (version 3 replaced by version 4)", 4);
    const p = streamToFile(stream(["new", "bytes"], changed), target, never);
    await expect(p).rejects.toMatchObject({
      code: "object_changed",
      message: `changed while it was read (version 3 replaced by version 4); nothing written to ${target}`,
    });
    expect(fs.readFileSync(target, "utf8")).toBe("old");
    expect(temps()).toEqual([]);
  });

  test("cancelling (Ctrl-C) stops it the same way", async () => {
    const target = path.join(dir, "cancelled");
    const interrupt = new AbortController();
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (++i === 3) interrupt.abort();
        controller.enqueue(new Uint8Array(10));
      },
    });
    await expect(streamToFile(body, target, interrupt.signal)).rejects.toMatchObject({ code: "aborted" });
    expect(fs.existsSync(target)).toBe(false);
    expect(temps()).toEqual([]);
  });

  test("a target in a missing directory is an operation error naming it", async () => {
    const target = path.join(dir, "no/such/file");
    await expect(streamToFile(stream(["x"]), target, never)).rejects.toThrow(OperationError);
    await expect(streamToFile(stream(["x"]), target, never)).rejects.toThrow(/no such file or directory/);
  });
});
