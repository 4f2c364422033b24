/**
 * The server's sense of time, injectable: every timeout the server keeps
 * (heartbeats, rate limits, upgrade timeouts, closes that wait for a quiet
 * socket) runs off one repeating tick of a {@linkcode Clock}. Production
 * uses {@linkcode systemClock}; tests pass a {@linkcode ManualClock} and drive
 * the ticks themselves instead of sleeping.
 *
 * @module
 */

/** A source of time and of one kind of timer: a repeating tick. */
export interface Clock {
  /**
   * The time in milliseconds, from any fixed origin.
   *
   * @returns The time.
   */
  now(): number;
  /**
   * Calls `fn` every `ms` milliseconds until the returned handle is disposed.
   *
   * @param ms The period, in milliseconds.
   * @param fn What to call.
   * @returns A handle whose disposal stops the calls.
   */
  every(ms: number, fn: () => void): Disposable;
}

/**
 * The real clock: `performance.now()` and `setInterval`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { systemClock } from "./clock.ts";
 * let calls = 0;
 * using _tick = systemClock.every(1000, () => calls++);
 * assert.equal(calls, 0);
 * ```
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  every(ms, fn) {
    const id = setInterval(fn, ms);
    return { [Symbol.dispose]: () => clearInterval(id) };
  },
};

interface _Timer {
  ms: number;
  fn: () => void;
  next: number;
}

/**
 * A clock that moves only when told to: {@linkcode ManualClock.advance}
 * moves its time forward and runs every tick that falls due on the way, in
 * time order. Nothing runs on its own.
 *
 * @example Drive a tick without waiting
 * ```ts
 * import assert from "node:assert/strict";
 * import { ManualClock } from "./clock.ts";
 * const clock = new ManualClock();
 * let calls = 0;
 * using _tick = clock.every(100, () => calls++);
 * clock.advance(250);
 * assert.equal(calls, 2);
 * assert.equal(clock.now(), 250);
 * ```
 */
export class ManualClock implements Clock {
  #now: number;
  #timers = new Set<_Timer>();

  /**
   * Creates a clock.
   *
   * @param start The time it starts at, in milliseconds.
   */
  constructor(start = 0) {
    this.#now = start;
  }

  /**
   * The time, moved only by {@linkcode ManualClock.advance}.
   *
   * @returns The time in milliseconds.
   */
  now(): number {
    return this.#now;
  }

  /**
   * Registers a repeating tick; the first falls due `ms` from now.
   *
   * @param ms The period, in milliseconds.
   * @param fn What to call.
   * @returns A handle whose disposal stops the calls.
   */
  every(ms: number, fn: () => void): Disposable {
    if (!(ms > 0)) {
      throw new RangeError(
        `Cannot tick: the period must be positive, got ${ms}`,
      );
    }
    const timer: _Timer = { ms, fn, next: this.#now + ms };
    this.#timers.add(timer);
    return {
      [Symbol.dispose]: () => {
        this.#timers.delete(timer);
      },
    };
  }

  /** Whether some tick is registered (the server is running its scheduler). */
  get ticking(): boolean {
    return this.#timers.size > 0;
  }

  /**
   * Moves time forward by `ms`, running every tick that falls due, in order.
   * A tick registered or stopped by another tick takes effect at once.
   *
   * @param ms Milliseconds to move forward.
   */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let due: _Timer | undefined;
      for (const t of this.#timers) {
        if (t.next <= end && (due === undefined || t.next < due.next)) due = t;
      }
      if (due === undefined) break;
      this.#now = due.next;
      due.next += due.ms;
      due.fn();
    }
    this.#now = end;
  }
}
