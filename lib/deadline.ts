/**
 * One way to bound a wait: {@linkcode deadline} settles a promise within a
 * time limit, or rejects with a {@linkcode DeadlineError}, and never leaves a
 * timer behind. The server's shutdown, the CLI's last log write, the cluster's
 * Redis round trips and the tests all wait through it. {@linkcode pause} is
 * the backoff that a close cuts short (Redis reconnects, fallback resumes).
 *
 * @module
 */

/**
 * The error of a wait that passed its deadline.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DeadlineError } from "./deadline.ts";
 * const error = new DeadlineError(5, "the socket to close");
 * assert.equal(error.message, "Timed out after 5 ms waiting for the socket to close");
 * ```
 */
export class DeadlineError extends Error {
  /** The limit that passed, in milliseconds. */
  readonly ms: number;
  /**
   * Creates the error.
   *
   * @param ms The limit, in milliseconds.
   * @param what What was waited for, for the message.
   */
  constructor(ms: number, what: string) {
    super(`Timed out after ${ms} ms waiting for ${what}`);
    this.name = "DeadlineError";
    this.ms = ms;
  }
}

/**
 * Settles like `promise`, or rejects with a {@linkcode DeadlineError} once
 * `ms` milliseconds have passed. The timer is cleared as soon as either side
 * settles, so no timer outlives the wait (test sanitizers stay quiet).
 *
 * @param promise What to wait for.
 * @param ms The limit, in milliseconds (`Infinity`: no limit).
 * @param what What is waited for, said in the error.
 * @returns The promise's value.
 * @throws {DeadlineError} When the limit passes first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deadline, DeadlineError } from "./deadline.ts";
 * assert.equal(await deadline(Promise.resolve(1), 100), 1);
 * await assert.rejects(deadline(new Promise(() => {}), 1), DeadlineError);
 * ```
 */
export function deadline<T>(
  promise: PromiseLike<T>,
  ms: number,
  what = "a promise",
): Promise<T> {
  if (ms === Infinity) return Promise.resolve(promise);
  const { promise: late, reject } = Promise.withResolvers<never>();
  const timer = setTimeout(() => reject(new DeadlineError(ms, what)), ms);
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * Waits for `promise` at most `ms` milliseconds, for waits whose limit is
 * not an error (a drain that gives up on stragglers). A rejection of
 * `promise` still rejects.
 *
 * @param promise What to wait for.
 * @param ms The limit, in milliseconds.
 * @returns Whether `promise` settled in time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { settleWithin } from "./deadline.ts";
 * assert.equal(await settleWithin(Promise.resolve(), 100), true);
 * assert.equal(await settleWithin(new Promise(() => {}), 1), false);
 * ```
 */
export async function settleWithin(
  promise: PromiseLike<unknown>,
  ms: number,
): Promise<boolean> {
  try {
    await deadline(promise, ms);
    return true;
  } catch (error) {
    if (error instanceof DeadlineError) return false;
    throw error;
  }
}

/**
 * Waits `ms`, or less when `signal` aborts: a backoff that a close cuts
 * short, with no timer left behind either way.
 *
 * @param ms Milliseconds to wait.
 * @param signal Ends the wait early when it aborts.
 * @returns Resolves when the time is up or the signal aborted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pause } from "./deadline.ts";
 * const closing = new AbortController();
 * const waiting = pause(60_000, closing.signal);
 * closing.abort();
 * assert.equal(await waiting, undefined);
 * ```
 */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
