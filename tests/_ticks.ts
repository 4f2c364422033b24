/**
 * Driving a server's clock from a test: {@linkcode drive} advances a
 * {@linkcode ManualClock} one scheduler tick at a time, letting socket I/O
 * run in between, until a condition holds. Server-side timeouts (heartbeats,
 * closes that wait for a quiet socket, upgrade timeouts) then take a few
 * milliseconds of real time instead of seconds.
 *
 * @module
 */

import type { ManualClock } from "../clock.ts";
import { DeadlineError } from "../deadline.ts";

/** Milliseconds of real time a drive may take before the test fails. */
const DRIVE_TIMEOUT = 10_000;

/**
 * Advances `clock` by `step` ms at a time, yielding to the event loop after
 * each step, until `condition` holds.
 *
 * @param clock The server's clock.
 * @param condition What to wait for.
 * @param what Said in the error when it times out.
 * @param step Milliseconds per step (the server's tick is 100 ms by default).
 * @returns The clock time gone by.
 * @throws {DeadlineError} When the condition does not hold within 10 s of
 * real time.
 */
export async function drive(
  clock: ManualClock,
  condition: () => boolean,
  what = "a condition",
  step = 100,
): Promise<number> {
  const start = clock.now();
  const end = performance.now() + DRIVE_TIMEOUT;
  while (!condition()) {
    if (performance.now() > end) throw new DeadlineError(DRIVE_TIMEOUT, what);
    clock.advance(step);
    // A macrotask, not a microtask: socket events must get their turn.
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return clock.now() - start;
}
