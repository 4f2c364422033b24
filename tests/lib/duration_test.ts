import assert from "node:assert/strict";
import { checkSeconds } from "../../lib/duration.ts";

Deno.test("checkSeconds takes whole seconds in milliseconds, from one second", () => {
  checkSeconds("mint a token", 1000);
  checkSeconds("mint a token", 3_600_000);
});

Deno.test("checkSeconds refuses what is not whole seconds, or under one, naming the option", async (t) => {
  const cases: [number, string][] = [
    [600, "ttl 600 ms is under 1000 ms"],
    [0, "ttl 0 ms is under 1000 ms"],
    [-1000, "ttl -1000 ms is under 1000 ms"],
    [1500, "ttl 1500 ms is not a whole number of seconds"],
    [1000.5, "ttl 1000.5 is not a whole number of milliseconds"],
    [NaN, "ttl NaN is not a whole number of milliseconds"],
    [Infinity, "ttl Infinity is not a whole number of milliseconds"],
  ];
  for (const [ms, message] of cases) {
    await t.step(String(ms), () => {
      assert.throws(() => checkSeconds("mint a token", ms), {
        name: "RangeError",
        message: `Cannot mint a token: ${message}`,
      });
    });
  }
  assert.throws(() => checkSeconds("make TURN credentials", 10, "window"), {
    message: "Cannot make TURN credentials: window 10 ms is under 1000 ms",
  });
});
