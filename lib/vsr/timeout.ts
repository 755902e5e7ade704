/** A tick-driven timer. The replica never reads a clock: the driver calls tick() every tick_ms. */
export class Timeout {
  private ticks = 0;
  running = false;

  constructor(
    readonly name: string,
    public after_ticks: number,
  ) {}

  start(): void {
    this.ticks = 0;
    this.running = true;
  }

  stop(): void {
    this.ticks = 0;
    this.running = false;
  }

  /** Restarts the countdown if running. */
  reset(): void {
    this.ticks = 0;
  }

  /** Advances one tick; true once when the timeout fires (it then restarts). */
  tick(): boolean {
    if (!this.running) return false;
    this.ticks += 1;
    if (this.ticks >= this.after_ticks) {
      this.ticks = 0;
      return true;
    }
    return false;
  }
}
