/**
 * A one-line progress display on stderr, for large values on a terminal only (never in a pipe or
 * a log file). It appears only after show_after_ms, so quick operations print nothing extra.
 *
 * The protocol moves one value in one message (at most 16 MiB), so there is no per-chunk transfer
 * to report: the phases are "reading the file" (with a bar), "waiting for the cluster" (a spinner
 * with the elapsed time: a put is answered once a majority of replicas has it on disk) and
 * "writing the file" (with a bar).
 */
import { formatBytes } from "./format.ts";

const show_after_ms = 300;
const frame_ms = 100;
const spinner = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const bar_width = 24;

/** Values at least this large get a progress display. */
export const progress_size_min = 1024 * 1024;

export class Progress {
  private readonly started_ms = performance.now();
  private last_render_ms = 0;
  private text = "";
  private done_bytes = 0;
  private total_bytes = 0;
  private frame = 0;
  private visible = false;
  private timer: ReturnType<typeof setInterval> | null = null;

  private constructor(private readonly enabled: boolean) {
    if (!enabled) return;
    this.timer = setInterval(() => this.render(true), frame_ms);
    this.timer.unref?.();
  }

  /** Shown only if stderr is a terminal and the value is large. */
  static forSize(size_bytes: number): Progress {
    return new Progress(process.stderr.isTTY === true && size_bytes >= progress_size_min);
  }

  /** A phase with a byte count (a bar), or without one (a spinner with the elapsed time). */
  phase(text: string, total_bytes = 0): void {
    this.text = text;
    this.total_bytes = total_bytes;
    this.done_bytes = 0;
    this.render(false);
  }

  advance(done_bytes: number): void {
    this.done_bytes = done_bytes;
    this.render(false);
  }

  /** Clears the line (the result is printed by the caller). */
  finish(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.visible) process.stderr.write("\r\x1b[2K");
    this.visible = false;
  }

  private render(tick: boolean): void {
    if (!this.enabled || this.timer === null) return;
    const now = performance.now();
    const elapsed_ms = now - this.started_ms;
    if (elapsed_ms < show_after_ms) return;
    if (!tick && now - this.last_render_ms < frame_ms) return;
    this.last_render_ms = now;
    this.frame = (this.frame + 1) % spinner.length;
    let line = `${spinner[this.frame]} ${this.text}`;
    if (this.total_bytes > 0) {
      const fraction = Math.min(1, this.done_bytes / this.total_bytes);
      const filled = Math.round(fraction * bar_width);
      line += ` [${"#".repeat(filled)}${"-".repeat(bar_width - filled)}] ${formatBytes(this.done_bytes)} / ${formatBytes(this.total_bytes)}`;
    }
    line += ` ${(elapsed_ms / 1000).toFixed(1)} s`;
    const columns = process.stderr.columns ?? 80;
    if (line.length > columns - 1) line = line.slice(0, columns - 1);
    process.stderr.write(`\r\x1b[2K${line}`);
    this.visible = true;
  }
}
