/**
 * A one-line progress display on stderr, for large values on a terminal only (never in a pipe or
 * a log file). It appears only after show_after_ms, so quick operations print nothing extra.
 *
 * A streamed put or get reports bytes as the cluster acknowledges or delivers them: a bar with
 * bytes, rate and time left when the size is known, bytes and rate when it is not (stdin). A phase
 * without a byte count is a spinner with the elapsed time (waiting for the cluster).
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
  /** 0: no byte count (a spinner); null: bytes counted, total unknown. */
  private total_bytes: number | null = 0;
  private phase_started_ms = performance.now();
  private frame = 0;
  private visible = false;
  private timer: ReturnType<typeof setInterval> | null = null;

  private constructor(private readonly enabled: boolean) {
    if (!enabled) return;
    this.timer = setInterval(() => this.render(true), frame_ms);
    this.timer.unref?.();
  }

  /** Shown only if stderr is a terminal and the value is large (or of unknown size: null). */
  static forSize(size_bytes: number | null): Progress {
    return new Progress(process.stderr.isTTY === true && (size_bytes === null || size_bytes >= progress_size_min));
  }

  /** A phase with a byte count (a bar; null: bytes of an unknown total), or without one (0: a
   * spinner with the elapsed time). */
  phase(text: string, total_bytes: number | null = 0): void {
    this.text = text;
    this.total_bytes = total_bytes;
    this.done_bytes = 0;
    this.phase_started_ms = performance.now();
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
    const total = this.total_bytes;
    const phase_s = (now - this.phase_started_ms) / 1000;
    const rate = phase_s > 0 ? this.done_bytes / phase_s : 0;
    if (total === null) {
      line += ` ${formatBytes(this.done_bytes)} ${formatRate(rate)}`;
    } else if (total > 0) {
      const fraction = Math.min(1, this.done_bytes / total);
      const filled = Math.round(fraction * bar_width);
      line += ` [${"#".repeat(filled)}${"-".repeat(bar_width - filled)}] ${formatBytes(this.done_bytes)} / ${formatBytes(total)}`;
      line += ` ${formatRate(rate)}`;
      if (rate > 0 && this.done_bytes < total) line += ` ${formatEta((total - this.done_bytes) / rate)} left`;
    }
    line += ` ${(elapsed_ms / 1000).toFixed(1)} s`;
    const columns = process.stderr.columns ?? 80;
    if (line.length > columns - 1) line = line.slice(0, columns - 1);
    process.stderr.write(`\r\x1b[2K${line}`);
    this.visible = true;
  }
}

function formatRate(bytes_per_s: number): string {
  return `${formatBytes(Math.round(bytes_per_s))}/s`;
}

/** "42 s", "3 min 5 s", "2 h 7 min". */
export function formatEta(seconds: number): string {
  const s = Math.ceil(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
