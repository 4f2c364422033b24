/**
 * The per-peer message rate limit: a token bucket. Its state is two numbers
 * that live on the connection (no object per peer), and time comes in as an
 * argument.
 *
 * @module
 */

/** A bucket's state: tokens left and when they were last counted. */
export interface BucketState {
  /** Tokens left. */
  tokens: number;
  /** When `tokens` was last updated, in milliseconds. */
  last: number;
}

/**
 * A token bucket: `rate` tokens per second refill it, up to `burst`; each
 * message takes one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TokenBucket } from "./bucket.ts";
 * const bucket = new TokenBucket(1, 2); // 1 per second, bursts of 2
 * const state = { tokens: bucket.burst, last: 0 }; // a full bucket
 * assert.equal(bucket.take(state, 0), true);
 * assert.equal(bucket.take(state, 0), true);
 * assert.equal(bucket.take(state, 0), false);
 * assert.equal(bucket.take(state, 1000), true);
 * ```
 */
export class TokenBucket {
  /** Tokens added per millisecond. */
  readonly perMs: number;
  /** Most tokens the bucket holds. */
  readonly burst: number;

  /**
   * Creates the limit.
   *
   * @param rate Tokens per second (0: no limit).
   * @param burst Most tokens held at once (at least 1).
   */
  constructor(rate: number, burst: number) {
    this.perMs = rate / 1000;
    this.burst = Math.max(1, burst);
  }

  /**
   * Refills the bucket for the time gone by and takes one token.
   *
   * @param state The bucket's state, updated in place.
   * @param now The time, in milliseconds.
   * @returns Whether a token was there to take.
   */
  take(state: BucketState, now: number): boolean {
    if (this.perMs === 0) return true;
    // Time never runs backwards for a bucket: a state stamped by another
    // clock reading than `now` must not lose tokens.
    const tokens = Math.min(
      this.burst,
      state.tokens + Math.max(0, now - state.last) * this.perMs,
    );
    state.last = now;
    if (tokens < 1) {
      state.tokens = tokens;
      return false;
    }
    state.tokens = tokens - 1;
    return true;
  }
}
