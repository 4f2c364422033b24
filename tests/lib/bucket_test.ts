// Unit tests of lib/bucket.ts: a token bucket whose state is a plain
// { tokens, last } record and whose time is an argument. Rates here are
// chosen so that tokens per millisecond are exact binary fractions (500/s is
// 0.5/ms), so that states can be compared exactly.

import assert from "node:assert/strict";
import { type BucketState, TokenBucket } from "../../lib/bucket.ts";

/** Takes from `state` at each time, and says which takes succeeded. */
function takes(
  bucket: TokenBucket,
  state: BucketState,
  times: number[],
): boolean[] {
  return times.map((now) => bucket.take(state, now));
}

Deno.test("TokenBucket keeps its rate per millisecond and its burst", () => {
  const bucket = new TokenBucket(500, 4);
  assert.equal(bucket.perMs, 0.5);
  assert.equal(bucket.burst, 4);
  assert.equal(new TokenBucket(1, 2).perMs, 0.001);
  assert.equal(new TokenBucket(0, 2).perMs, 0);
});

Deno.test("TokenBucket holds at least one token of burst", async (t) => {
  const cases: [number, number][] = [
    [0, 1],
    [-3, 1],
    [0.5, 1],
    [1, 1],
    [2.5, 2.5],
    [100, 100],
  ];
  for (const [burst, expected] of cases) {
    await t.step(`burst ${burst} is ${expected}`, () => {
      assert.equal(new TokenBucket(10, burst).burst, expected);
    });
  }
  await t.step("a burst of 0 still lets one message through", () => {
    const bucket = new TokenBucket(1, 0);
    const state = { tokens: bucket.burst, last: 0 };
    assert.deepEqual(takes(bucket, state, [0, 0]), [true, false]);
  });
});

Deno.test("TokenBucket: a full bucket gives burst messages at once, then refuses", () => {
  const bucket = new TokenBucket(1, 3);
  const state = { tokens: bucket.burst, last: 1000 };
  assert.deepEqual(takes(bucket, state, [1000, 1000, 1000, 1000, 1000]), [
    true,
    true,
    true,
    false,
    false,
  ]);
  assert.deepEqual(state, { tokens: 0, last: 1000 });
});

Deno.test("TokenBucket refills rate tokens per second", () => {
  // 1 per second, bursts of 2, emptied at t = 0.
  const bucket = new TokenBucket(1, 2);
  const state = { tokens: 0, last: 0 };
  assert.equal(bucket.take(state, 999), false);
  assert.equal(bucket.take(state, 1000), true);
  assert.equal(bucket.take(state, 1000), false);
  assert.equal(bucket.take(state, 1999), false);
  assert.equal(bucket.take(state, 2000), true);
  // Three seconds later: two tokens (the burst), not three.
  assert.deepEqual(takes(bucket, state, [5000, 5000, 5000]), [
    true,
    true,
    false,
  ]);
});

Deno.test("TokenBucket: a refused take keeps the fraction of a token it refilled", () => {
  const bucket = new TokenBucket(500, 4); // half a token per millisecond
  const state = { tokens: 0, last: 0 };
  assert.equal(bucket.take(state, 1), false);
  assert.deepEqual(state, { tokens: 0.5, last: 1 });
  assert.equal(bucket.take(state, 2), true);
  assert.deepEqual(state, { tokens: 0, last: 2 });
});

Deno.test("TokenBucket: a granted take leaves the refilled tokens minus one", () => {
  const bucket = new TokenBucket(500, 4);
  const state = { tokens: 1, last: 10 };
  assert.equal(bucket.take(state, 13), true);
  assert.deepEqual(state, { tokens: 1.5, last: 13 });
});

Deno.test("TokenBucket never holds more than its burst", async (t) => {
  const bucket = new TokenBucket(500, 3);
  await t.step("after a long idle time", () => {
    const state = { tokens: 0, last: 0 };
    assert.equal(bucket.take(state, 1_000_000), true);
    assert.deepEqual(state, { tokens: 2, last: 1_000_000 });
  });
  await t.step("after exactly enough time to fill it", () => {
    const state = { tokens: 1, last: 0 };
    assert.equal(bucket.take(state, 4), true); // 1 + 2, at the burst
    assert.deepEqual(state, { tokens: 2, last: 4 });
  });
  await t.step("when the state held more than the burst", () => {
    const state = { tokens: 10, last: 0 };
    assert.equal(bucket.take(state, 0), true);
    assert.deepEqual(state, { tokens: 2, last: 0 });
  });
  await t.step("a full bucket's idle time is not saved up", () => {
    const state = { tokens: bucket.burst, last: 0 };
    assert.deepEqual(takes(bucket, state, [60_000, 60_000, 60_000, 60_000]), [
      true,
      true,
      true,
      false,
    ]);
  });
});

Deno.test("TokenBucket: a clock reading before the state's never loses tokens", async (t) => {
  const bucket = new TokenBucket(500, 4);
  await t.step("tokens are kept, and the time moves to now", () => {
    const state = { tokens: 2.5, last: 1000 };
    assert.equal(bucket.take(state, 400), true);
    assert.deepEqual(state, { tokens: 1.5, last: 400 });
  });
  await t.step("an empty bucket stays empty, but not below zero", () => {
    const state = { tokens: 0, last: 1000 };
    assert.equal(bucket.take(state, 0), false);
    assert.deepEqual(state, { tokens: 0, last: 0 });
    // Refilling counts from the earlier reading from then on.
    assert.equal(bucket.take(state, 2), true);
    assert.deepEqual(state, { tokens: 0, last: 2 });
  });
});

Deno.test("TokenBucket: take is false when empty and true again after a refill", () => {
  const bucket = new TokenBucket(10, 1); // one message per 100 ms
  const state = { tokens: bucket.burst, last: 0 };
  const got = takes(bucket, state, [0, 50, 99, 100, 150, 199, 200, 200]);
  assert.deepEqual(got, [true, false, false, true, false, false, true, false]);
});

Deno.test("TokenBucket with rate 0 has no limit and leaves the state alone", () => {
  const bucket = new TokenBucket(0, 1);
  const state = { tokens: 0, last: 5 };
  for (let i = 0; i < 100; i++) assert.equal(bucket.take(state, 5), true);
  assert.equal(bucket.take(state, 0), true);
  assert.equal(bucket.take(state, 1e12), true);
  assert.deepEqual(state, { tokens: 0, last: 5 });
});

Deno.test("TokenBucket: each state is its own bucket", () => {
  const bucket = new TokenBucket(1, 1);
  const a = { tokens: 1, last: 0 };
  const b = { tokens: 1, last: 0 };
  assert.equal(bucket.take(a, 0), true);
  assert.equal(bucket.take(a, 0), false);
  assert.equal(bucket.take(b, 0), true);
  assert.deepEqual(a, { tokens: 0, last: 0 });
  assert.deepEqual(b, { tokens: 0, last: 0 });
});

Deno.test("TokenBucket updates any object with tokens and last, in place", () => {
  const bucket = new TokenBucket(500, 2);
  const conn = { id: 7, tokens: 0, last: 0 };
  assert.equal(bucket.take(conn, 4), true);
  assert.deepEqual(conn, { id: 7, tokens: 1, last: 4 });
});
