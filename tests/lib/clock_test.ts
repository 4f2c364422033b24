// Unit tests of lib/clock.ts: ManualClock moves only when told and runs the
// ticks that fall due on the way, in time order; systemClock's tick is a
// real interval that its handle stops (the test's sanitizers check that no
// interval is left behind).

import assert from "node:assert/strict";
import { type Clock, ManualClock, systemClock } from "../../lib/clock.ts";
import { deadline } from "../../lib/deadline.ts";

// Deno 2.8 turned the op and resource sanitizers off by default: on here.
Deno.test.sanitizer({ ops: true, resources: true });

/** Registers a tick that records `name@time` into `log` on each call. */
function recorder(clock: ManualClock, log: string[], name: string, ms: number) {
  return clock.every(ms, () => log.push(`${name}@${clock.now()}`));
}

Deno.test("ManualClock starts at 0, or at the time it is given", () => {
  assert.equal(new ManualClock().now(), 0);
  assert.equal(new ManualClock(1_700_000).now(), 1_700_000);
});

Deno.test("ManualClock.now moves only by advance, by exactly the amount", () => {
  const clock = new ManualClock(10);
  assert.equal(clock.now(), 10);
  assert.equal(clock.now(), 10);
  clock.advance(0);
  assert.equal(clock.now(), 10);
  clock.advance(5);
  assert.equal(clock.now(), 15);
  clock.advance(0.5);
  assert.equal(clock.now(), 15.5);
});

Deno.test("ManualClock.every calls first one period after it was registered, then every period", () => {
  const clock = new ManualClock(1000);
  const log: string[] = [];
  using _tick = recorder(clock, log, "a", 100);
  clock.advance(99);
  assert.deepEqual(log, []);
  clock.advance(1);
  assert.deepEqual(log, ["a@1100"]);
  clock.advance(250);
  assert.deepEqual(log, ["a@1100", "a@1200", "a@1300"]);
  // Time ends where advance said, not at the last tick.
  assert.equal(clock.now(), 1350);
});

Deno.test("ManualClock.advance runs the ticks of several timers in time order, each at its own time", () => {
  const clock = new ManualClock();
  const log: string[] = [];
  using _a = recorder(clock, log, "a", 30);
  using _b = recorder(clock, log, "b", 50);
  clock.advance(100);
  assert.deepEqual(log, ["a@30", "b@50", "a@60", "a@90", "b@100"]);
});

Deno.test("ManualClock counts the same ticks whether advanced at once or in steps", async (t) => {
  for (
    const steps of [[1000], [1, 999], [333, 333, 334], Array(100).fill(10)]
  ) {
    await t.step(`steps ${steps.length}`, () => {
      const clock = new ManualClock();
      let calls = 0;
      using _tick = clock.every(70, () => calls++);
      for (const ms of steps) clock.advance(ms);
      assert.equal(calls, 14);
      assert.equal(clock.now(), 1000);
    });
  }
});

Deno.test("ManualClock stops calling a tick once its handle is disposed, and a second dispose is harmless", () => {
  const clock = new ManualClock();
  let calls = 0;
  const tick = clock.every(10, () => calls++);
  clock.advance(25);
  assert.equal(calls, 2);
  tick[Symbol.dispose]();
  clock.advance(100);
  assert.equal(calls, 2);
  tick[Symbol.dispose]();
  assert.equal(clock.ticking, false);
});

Deno.test("ManualClock.ticking says whether any tick is registered", () => {
  const clock = new ManualClock();
  assert.equal(clock.ticking, false);
  const a = clock.every(10, () => {});
  const b = clock.every(20, () => {});
  assert.equal(clock.ticking, true);
  a[Symbol.dispose]();
  assert.equal(clock.ticking, true);
  b[Symbol.dispose]();
  assert.equal(clock.ticking, false);
});

Deno.test("ManualClock: a tick registered by a tick takes effect at once, from the time of the tick", () => {
  const clock = new ManualClock();
  const log: string[] = [];
  let inner: Disposable | undefined;
  using _outer = clock.every(100, () => {
    log.push(`outer@${clock.now()}`);
    inner ??= recorder(clock, log, "inner", 30);
  });
  clock.advance(200);
  assert.deepEqual(log, [
    "outer@100",
    "inner@130",
    "inner@160",
    "inner@190",
    "outer@200",
  ]);
  inner?.[Symbol.dispose]();
});

Deno.test("ManualClock: a tick stopped by another tick in the same advance does not run, though due within it", () => {
  const clock = new ManualClock();
  const log: string[] = [];
  const victim = recorder(clock, log, "victim", 50);
  using _killer = clock.every(40, () => {
    log.push(`killer@${clock.now()}`);
    victim[Symbol.dispose]();
  });
  clock.advance(200);
  assert.deepEqual(log, [
    "killer@40",
    "killer@80",
    "killer@120",
    "killer@160",
    "killer@200",
  ]);
});

Deno.test("ManualClock.every refuses a period that is not positive", async (t) => {
  const clock = new ManualClock();
  for (const ms of [0, -1, NaN]) {
    await t.step(`period ${ms}`, () => {
      assert.throws(() => clock.every(ms, () => {}), {
        name: "RangeError",
        message: `Cannot tick: the period must be positive, got ${ms}`,
      });
    });
  }
  assert.equal(clock.ticking, false);
});

Deno.test("systemClock.now follows performance.now", () => {
  const before = performance.now();
  const now = systemClock.now();
  const after = performance.now();
  assert.ok(before <= now && now <= after, `${before} <= ${now} <= ${after}`);
});

Deno.test("systemClock.every calls repeatedly on a real interval until disposed", async () => {
  const clock: Clock = systemClock;
  let calls = 0;
  const third = Promise.withResolvers<void>();
  const tick = clock.every(1, () => {
    if (++calls === 3) third.resolve();
  });
  try {
    await deadline(third.promise, 5_000, "three ticks of a 1 ms interval");
  } finally {
    // Left running, the interval would fail this test's sanitizer.
    tick[Symbol.dispose]();
  }
  assert.ok(calls >= 3);
});
