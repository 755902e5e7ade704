import { assert } from "../util/assert.ts";

/** A tick-driven timer. The replica never reads a clock: the driver calls tick() every tick_ms. */
export class Timeout {
  private ticks = 0;
  running = false;

  constructor(
    readonly name: string,
    public after_ticks: number,
  ) {
    // A zero or fractional period would fire on every tick (or never line up with one).
    assert(Number.isSafeInteger(after_ticks) && after_ticks >= 1, () => `timeout ${name}: after_ticks ${after_ticks}`);
  }

  start(): void {
    // after_ticks is public (backoff rescales it): recheck the period every time the timer is armed.
    assert(
      Number.isSafeInteger(this.after_ticks) && this.after_ticks >= 1,
      () => `timeout ${this.name}: started with after_ticks ${this.after_ticks}`,
    );
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
    if (!this.running) {
      assert(this.ticks === 0, () => `timeout ${this.name}: stopped with ${this.ticks} ticks counted`);
      return false;
    }
    this.ticks += 1;
    if (this.ticks >= this.after_ticks) {
      this.ticks = 0;
      return true;
    }
    return false;
  }
}
