/**
 * Log lines a person can act on: one line per event with time, replica, level and message, as
 * text or JSON (for log shippers). Debug lines are dropped unless asked for.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";

const rank: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export function isLogLevel(s: string): s is LogLevel {
  return s === "debug" || s === "info" || s === "warn" || s === "error";
}

export class Logger {
  constructor(
    readonly level: LogLevel = "info",
    readonly format: LogFormat = "text",
    private readonly context: string = "",
    private readonly write: (line: string) => void = (line) => process.stderr.write(line + "\n"),
  ) {}

  enabled(level: LogLevel): boolean {
    return rank[level] >= rank[this.level];
  }

  log(level: LogLevel, message: string): void {
    if (!this.enabled(level)) return;
    const time = new Date().toISOString();
    if (this.format === "json") {
      this.write(JSON.stringify({ time, level, ...(this.context ? { source: this.context } : {}), message }));
    } else {
      this.write(`${time} ${this.context ? this.context + " " : ""}${level.padEnd(5)} ${message}`);
    }
  }

  child(context: string): Logger {
    return new Logger(this.level, this.format, this.context ? `${this.context} ${context}` : context, this.write);
  }
}
