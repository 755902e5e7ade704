/**
 * Where the CLI's streamed puts read from and its gets write to (docs/LARGE_OBJECTS.md §11.2): an
 * input file opened once and read with pread against the size fstat gave (never whole), stdout
 * with back-pressure, and an output file written as FILE.toastyfs-<pid>.tmp, fsynced and renamed
 * over FILE only when every byte arrived and checked, so FILE is never a partial or mixed object.
 */
import * as fs from "node:fs";
import { ClientError, FileSource } from "../lib/client/client.ts";
import { escapeBytes } from "../lib/util/escape.ts";
import { OperationError, UsageError } from "./cli_util.ts";

/** A file name as given: text, or the exact bytes of the argument. */
export type FileName = string | Uint8Array;

export function displayName(name: FileName): string {
  return typeof name === "string" ? name : escapeBytes(name);
}

function fsName(name: FileName): string | Buffer {
  return typeof name === "string" ? name : Buffer.from(name);
}

/** Opens an input file for a streamed put (a usage error if it cannot be read). The caller closes
 * source.fd. */
export function openInputFile(name: FileName): { fd: number; source: FileSource } {
  const shown = displayName(name);
  if (name.length === 0) throw new UsageError("the file name is empty");
  let fd: number;
  try {
    fd = fs.openSync(fsName(name), "r");
  } catch (error) {
    throw new UsageError(`cannot read ${shown}: ${fileErrorText(error)}`);
  }
  if (fs.fstatSync(fd).isDirectory()) {
    fs.closeSync(fd);
    throw new UsageError(`cannot read ${shown}: it is a directory`);
  }
  return { fd, source: new FileSource(fd, shown) };
}

/** Reads the stream to its end, calling `write` for each chunk; `cancel` (Ctrl-C) stops it with
 * an aborted error. */
async function drain(body: ReadableStream<Uint8Array>, write: (chunk: Uint8Array) => Promise<boolean>, cancel: AbortSignal): Promise<void> {
  const reader = body.getReader();
  const onAbort = (): void => void reader.cancel().catch(() => undefined);
  cancel.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      const r = await reader.read();
      if (cancel.aborted) throw new ClientError("aborted", "cancelled");
      if (r.done) return;
      if (!(await write(r.value))) {
        await reader.cancel();
        return;
      }
    }
  } finally {
    cancel.removeEventListener("abort", onAbort);
  }
}

/** Streams to stdout, waiting for the pipe to drain; a closed pipe (`| head`) ends it quietly. */
export async function streamToStdout(body: ReadableStream<Uint8Array>, cancel: AbortSignal): Promise<void> {
  let closed = false;
  const onError = (): void => {
    closed = true;
  };
  process.stdout.on("error", onError);
  try {
    await drain(
      body,
      (chunk) =>
        new Promise<boolean>((resolve) => {
          if (closed) return resolve(false);
          // The callback runs once the chunk is handed to the OS (or the write failed): one chunk
          // in memory at a time.
          process.stdout.write(chunk, (error) => resolve(error == null && !closed));
        }),
      cancel,
    );
  } finally {
    process.stdout.off("error", onError);
  }
}

/**
 * Streams to FILE through FILE.toastyfs-<pid>.tmp: written, fsynced, then renamed over FILE. On any
 * error the temporary file is removed and FILE is untouched; the error says nothing was written.
 */
export async function streamToFile(body: ReadableStream<Uint8Array>, name: FileName, cancel: AbortSignal): Promise<void> {
  const shown = displayName(name);
  const suffix = `.toastyfs-${process.pid}.tmp`;
  const temp = typeof name === "string" ? name + suffix : Buffer.concat([Buffer.from(name), Buffer.from(suffix)]);
  let fd: number;
  try {
    fd = fs.openSync(temp, "w");
  } catch (error) {
    throw new OperationError(`cannot write ${shown}: ${fileErrorText(error)}`);
  }
  let open = true;
  try {
    await drain(
      body,
      (chunk) => {
        let offset = 0;
        while (offset < chunk.length) offset += fs.writeSync(fd, chunk, offset, chunk.length - offset);
        return Promise.resolve(true);
      },
      cancel,
    );
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    open = false;
    fs.renameSync(temp, fsName(name));
  } catch (error) {
    if (open) fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    if (error instanceof ClientError) throw new ClientError(error.code, `${error.message}; nothing written to ${shown}`, error.detail);
    throw new OperationError(`cannot write ${shown}: ${fileErrorText(error)}`);
  }
}

export function fileErrorText(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file or directory";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "it is a directory";
  if (code === "ENOSPC") return "no space left on the device";
  return (error as Error).message;
}
