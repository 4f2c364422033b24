// Unit tests of lib/deadline.ts: deadline, settleWithin and pause take real
// timers (they are the waits of the server and the tests), so the waits
// here are a few milliseconds. That no timer outlives a wait is checked by
// the test sanitizers: a timer left behind fails the test that left it.

import assert from "node:assert/strict";
import {
  deadline,
  DeadlineError,
  pause,
  settleWithin,
} from "../../lib/deadline.ts";

// Deno 2.8 turned the op and resource sanitizers off by default: on here.
Deno.test.sanitizer({ ops: true, resources: true });

/** A promise that never settles. */
function never(): Promise<never> {
  return new Promise<never>(() => {});
}

Deno.test("DeadlineError carries its limit and says what was waited for", () => {
  const error = new DeadlineError(250, "the socket to close");
  assert.ok(error instanceof Error);
  assert.equal(error.name, "DeadlineError");
  assert.equal(error.ms, 250);
  assert.equal(
    error.message,
    "Timed out after 250 ms waiting for the socket to close",
  );
});

Deno.test("deadline settles with the promise's value, and clears its timer at once", async () => {
  // A 60 s timer left running would fail this test's sanitizer.
  assert.equal(await deadline(Promise.resolve(7), 60_000), 7);
  const late = Promise.withResolvers<string>();
  const waiting = deadline(late.promise, 60_000);
  late.resolve("later");
  assert.equal(await waiting, "later");
});

Deno.test("deadline rejects with the promise's own error, and clears its timer", async () => {
  const error = new TypeError("boom");
  await assert.rejects(deadline(Promise.reject(error), 60_000), (e) => {
    assert.equal(e, error);
    return true;
  });
});

Deno.test("deadline rejects with a DeadlineError once the limit has passed", async () => {
  const start = performance.now();
  await assert.rejects(deadline(never(), 5, "a reply"), (e) => {
    assert.ok(e instanceof DeadlineError);
    assert.equal(e.ms, 5);
    assert.equal(e.message, "Timed out after 5 ms waiting for a reply");
    return true;
  });
  // Not before the limit (a timer may fire a little late, never early).
  assert.ok(performance.now() - start >= 4, "rejected before its limit");
});

Deno.test("deadline names 'a promise' when not told what it waits for", async () => {
  await assert.rejects(deadline(never(), 1), {
    name: "DeadlineError",
    message: "Timed out after 1 ms waiting for a promise",
  });
});

Deno.test("deadline of Infinity sets no limit", async () => {
  assert.equal(await deadline(Promise.resolve("now"), Infinity), "now");
  // Still pending 5 ms later: only the outer limit rejects.
  await assert.rejects(deadline(deadline(never(), Infinity), 5), (e) => {
    assert.ok(e instanceof DeadlineError);
    assert.equal(e.ms, 5);
    return true;
  });
});

Deno.test("deadline accepts any thenable", async () => {
  const thenable: PromiseLike<number> = {
    then: (resolve) => Promise.resolve(resolve?.(3)),
  } as PromiseLike<number>;
  assert.equal(await deadline(thenable, 60_000), 3);
});

Deno.test("settleWithin says true for a promise that settles in time, false for one that does not", async () => {
  assert.equal(await settleWithin(Promise.resolve("value"), 60_000), true);
  assert.equal(await settleWithin(never(), 2), false);
});

Deno.test("settleWithin rethrows a rejection that is not its own limit", async () => {
  const error = new RangeError("refused");
  await assert.rejects(settleWithin(Promise.reject(error), 60_000), (e) => {
    assert.equal(e, error);
    return true;
  });
});

Deno.test("pause resolves once its time is up", async () => {
  const start = performance.now();
  const waiting = pause(5, new AbortController().signal);
  assert.equal(await waiting, undefined);
  assert.ok(performance.now() - start >= 4, "resolved before its time");
});

Deno.test("pause resolves at once when the signal aborted before, with no timer", async () => {
  const aborted = AbortSignal.abort();
  // A 60 s timer would fail this test's sanitizer.
  assert.equal(await pause(60_000, aborted), undefined);
});

Deno.test("pause ends early when the signal aborts, and leaves no timer", async () => {
  const closing = new AbortController();
  let done = false;
  const waiting = pause(60_000, closing.signal).then(() => done = true);
  await Promise.resolve();
  assert.equal(done, false);
  closing.abort();
  await waiting;
  assert.equal(done, true);
});

/** An AbortSignal that counts its listeners. */
function countingSignal() {
  const target = new EventTarget();
  const signal = Object.assign(target, {
    aborted: false,
    listeners: 0,
  });
  const add = target.addEventListener.bind(target);
  const remove = target.removeEventListener.bind(target);
  signal.addEventListener = (...args: Parameters<typeof add>) => {
    signal.listeners++;
    add(...args);
  };
  signal.removeEventListener = (...args: Parameters<typeof remove>) => {
    signal.listeners--;
    remove(...args);
  };
  return signal;
}

Deno.test("pause removes its abort listener when its time is up, so a long-lived signal does not gather them", async () => {
  const signal = countingSignal();
  for (let i = 0; i < 3; i++) {
    await pause(1, signal as unknown as AbortSignal);
  }
  assert.equal(signal.listeners, 0);
});

Deno.test("pause removes its abort listener when the signal aborts", async () => {
  const signal = countingSignal();
  const waiting = pause(60_000, signal as unknown as AbortSignal);
  assert.equal(signal.listeners, 1);
  signal.aborted = true;
  signal.dispatchEvent(new Event("abort"));
  await waiting;
  assert.equal(signal.listeners, 0);
});
