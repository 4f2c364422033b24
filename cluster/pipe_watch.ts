/**
 * Pipe liveness, seen from the edge: one tick for every open pipe of a
 * node. A pipe that heard nothing from its owner (no frame, no pong) for a
 * quarter of the timeout is pinged, and one silent for the whole timeout is
 * dead: it ends as unreachable and its peer is closed with 1012. The owner
 * watches its side itself: pipes arrive there as WebSockets whose server
 * pings them (Deno's `idleTimeout`, the same timeout) and drops those that
 * do not answer, so that a partition frees both sides.
 *
 * @module
 */

import type { Clock } from "../lib/clock.ts";

/** What the watch probes. */
export interface Watched {
  /**
   * Pings a silent pipe, or ends a dead one.
   *
   * @param now The clock's time.
   * @param watch The watch, for its interval and timeout.
   */
  probe(now: number, watch: PipeWatch): void;
}

/**
 * The open pipes of a node, ticked while there are some.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ManualClock } from "../lib/clock.ts";
 * import { PipeWatch } from "./pipe_watch.ts";
 * const clock = new ManualClock();
 * const watch = new PipeWatch(clock, 4000);
 * const probes: number[] = [];
 * const pipe = { probe: (now: number) => void probes.push(now) };
 * watch.add(pipe);
 * clock.advance(2000);
 * watch.delete(pipe);
 * assert.deepEqual(probes, [1000, 2000]);
 * assert.equal(clock.ticking, false);
 * ```
 */
export class PipeWatch {
  /** Milliseconds a pipe may be silent before it is dead. */
  readonly timeout: number;
  /** Milliseconds between probes, and of silence before a ping. */
  readonly interval: number;
  readonly #clock: Clock;
  readonly #pipes = new Set<Watched>();
  #tick: Disposable | undefined;

  /**
   * Creates the watch.
   *
   * @param clock The clock it ticks on.
   * @param timeout Milliseconds a pipe may be silent.
   * @throws {RangeError} When the timeout is not positive.
   */
  constructor(clock: Clock, timeout: number) {
    if (!(timeout > 0)) {
      throw new RangeError(
        `Cannot watch pipes: the timeout must be positive, got ${timeout}`,
      );
    }
    this.#clock = clock;
    this.timeout = timeout;
    this.interval = timeout / 4;
  }

  /** The clock's time. */
  now(): number {
    return this.#clock.now();
  }

  /**
   * Watches an open pipe.
   *
   * @param pipe The pipe.
   */
  add(pipe: Watched): void {
    this.#pipes.add(pipe);
    this.#tick ??= this.#clock.every(this.interval, () => {
      const now = this.#clock.now();
      for (const watched of [...this.#pipes]) watched.probe(now, this);
    });
  }

  /**
   * Stops watching a pipe; the tick stops with the last one.
   *
   * @param pipe The pipe.
   */
  delete(pipe: Watched): void {
    this.#pipes.delete(pipe);
    if (this.#pipes.size > 0) return;
    this.#tick?.[Symbol.dispose]();
    this.#tick = undefined;
  }
}
