/**
 * Durations the API takes in milliseconds but the wire carries in seconds
 * (a token's expiry, a TURN username's): checked once, here.
 *
 * @module
 */

/**
 * Checks a duration in milliseconds that must be a whole number of seconds,
 * at least one. A multiple of 1000 also catches a duration written in
 * seconds by mistake (`3600`).
 *
 * @param action What the duration is for, for the error (`mint a token`).
 * @param ms The duration.
 * @param name The option's name, for the error.
 * @throws {RangeError} When it is not a whole number of seconds, or under
 * one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkSeconds } from "./duration.ts";
 * checkSeconds("mint a token", 600_000);
 * assert.throws(() => checkSeconds("mint a token", 600), {
 *   message: "Cannot mint a token: ttl 600 ms is under 1000 ms",
 * });
 * ```
 */
export function checkSeconds(action: string, ms: number, name = "ttl"): void {
  if (typeof ms !== "number" || !Number.isSafeInteger(ms)) {
    throw new RangeError(
      `Cannot ${action}: ${name} ${ms} is not a whole number of milliseconds`,
    );
  }
  if (ms < 1000) {
    throw new RangeError(`Cannot ${action}: ${name} ${ms} ms is under 1000 ms`);
  }
  if (ms % 1000 !== 0) {
    throw new RangeError(
      `Cannot ${action}: ${name} ${ms} ms is not a whole number of seconds`,
    );
  }
}
