// Unit tests of deno/options.ts: resolveHandlerOptions fills in defaults and
// refuses values out of range, called directly, no handler or socket.

import assert from "node:assert/strict";
import {
  checkNumber,
  type HandlerOptions,
  MIN_HEARTBEAT_INTERVAL,
  resolveHandlerOptions,
} from "../../deno/options.ts";
import { ManualClock, systemClock } from "../../lib/clock.ts";

Deno.test("resolveHandlerOptions fills in every default", () => {
  const config = resolveHandlerOptions({ maxPeers: 10 });
  assert.equal(config.slots, 50);
  assert.equal(config.tickMs, 100);
  assert.equal(config.maxMessageSize, 65536);
  assert.equal(config.messageRate, 2000);
  assert.equal(config.messageBurst, 4000);
  assert.equal(config.maxBufferedAmount, 1 << 20);
  assert.equal(config.upgradeTimeout, 10_000);
  assert.equal(config.trustProxy, false);
  assert.equal(config.demo, true);
  assert.equal(config.clock, systemClock);
  assert.deepEqual(config.admission, {
    allowOrigins: new Set(),
    requireOrigin: false,
    maxPeers: 10,
    maxPeersPerAddress: 256,
  });
  assert.deepEqual(config.paths, {
    health: "/healthz",
    ready: "/readyz",
    metrics: "/metrics",
    cluster: "/cluster",
    ice: "/ice-servers",
  });
});

Deno.test("resolveHandlerOptions keeps the values given", () => {
  const clock = new ManualClock();
  const config = resolveHandlerOptions({
    maxMessageSize: 1024,
    maxPeers: 5,
    maxPeersPerAddress: 2,
    trustProxy: true,
    messageRate: 10,
    messageBurst: 20,
    maxBufferedAmount: 4096,
    upgradeTimeout: 2500,
    allowOrigins: ["https://a.example"],
    requireOrigin: true,
    healthPath: "/h",
    readyPath: false,
    metricsPath: "/m",
    clusterPath: false,
    iceServersPath: "/ice",
    demo: false,
    clock,
  });
  assert.equal(config.maxMessageSize, 1024);
  assert.equal(config.trustProxy, true);
  assert.equal(config.messageRate, 10);
  assert.equal(config.messageBurst, 20);
  assert.equal(config.maxBufferedAmount, 4096);
  assert.equal(config.upgradeTimeout, 2500);
  assert.equal(config.demo, false);
  assert.equal(config.clock, clock);
  assert.deepEqual(config.admission, {
    allowOrigins: new Set(["https://a.example"]),
    requireOrigin: true,
    maxPeers: 5,
    maxPeersPerAddress: 2,
  });
  assert.deepEqual(config.paths, {
    health: "/h",
    ready: false,
    metrics: "/m",
    cluster: false,
    ice: "/ice",
  });
});

Deno.test("resolveHandlerOptions takes the heartbeat in milliseconds and ticks every 100 ms at most", async (t) => {
  const cases: [number, number, number][] = [
    // [heartbeatInterval, slots, tickMs]
    [100, 1, 100],
    [150, 2, 75],
    [1000, 10, 100],
    [5000, 50, 100],
    [60_000, 50, 1200],
  ];
  for (const [heartbeatInterval, slots, tickMs] of cases) {
    await t.step(`${heartbeatInterval} ms`, () => {
      const config = resolveHandlerOptions({ heartbeatInterval, maxPeers: 0 });
      assert.equal(config.slots, slots);
      assert.equal(config.tickMs, tickMs);
      assert.equal(config.slots * config.tickMs, heartbeatInterval);
    });
  }
});

Deno.test("resolveHandlerOptions refuses a heartbeat under 100 ms with a RangeError that says so", async (t) => {
  assert.equal(MIN_HEARTBEAT_INTERVAL, 100);
  const cases: [string, number, string][] = [
    ["seconds by mistake", 5, "5 ms is under 100 ms"],
    ["just under", 99.9, "99.9 ms is under 100 ms"],
    ["zero: heartbeats cannot be turned off", 0, "0 ms is under 100 ms"],
    ["negative", -5000, "-5000 is not a non-negative number"],
    ["NaN", NaN, "NaN is not a non-negative number"],
    ["Infinity", Infinity, "Infinity is not a non-negative number"],
  ];
  for (const [name, heartbeatInterval, state] of cases) {
    await t.step(name, () => {
      assert.throws(
        () => resolveHandlerOptions({ heartbeatInterval, maxPeers: 0 }),
        {
          name: "RangeError",
          message: `Cannot use heartbeatInterval: ${state}`,
        },
      );
    });
  }
});

Deno.test("resolveHandlerOptions reads 0 as no limit wherever the CLI does", async (t) => {
  const config = resolveHandlerOptions({
    maxMessageSize: 0,
    maxPeers: 0,
    maxPeersPerAddress: 0,
    messageRate: 0,
    maxBufferedAmount: 0,
    upgradeTimeout: 0,
  });
  await t.step("maxMessageSize: the largest safe integer", () => {
    assert.equal(config.maxMessageSize, Number.MAX_SAFE_INTEGER);
  });
  await t.step("upgradeTimeout: never", () => {
    assert.equal(config.upgradeTimeout, Infinity);
  });
  await t.step("the others: 0, which their readers take as off", () => {
    assert.equal(config.admission.maxPeers, 0);
    assert.equal(config.admission.maxPeersPerAddress, 0);
    assert.equal(config.messageRate, 0);
    assert.equal(config.maxBufferedAmount, 0);
  });
});

Deno.test("resolveHandlerOptions refuses a negative or non-finite number for every numeric option", async (t) => {
  const names = [
    "maxMessageSize",
    "maxPeers",
    "maxPeersPerAddress",
    "messageRate",
    "messageBurst",
    "maxBufferedAmount",
    "upgradeTimeout",
  ] as const;
  for (const name of names) {
    for (const value of [-1, NaN, Infinity, -Infinity]) {
      await t.step(`${name} ${value}`, () => {
        const options: HandlerOptions = { maxPeers: 0, [name]: value };
        assert.throws(() => resolveHandlerOptions(options), {
          name: "RangeError",
          message: `Cannot use ${name}: ${value} is not a non-negative number`,
        });
      });
    }
  }
});

Deno.test("checkNumber refuses a value that is not a number", () => {
  assert.throws(
    () => checkNumber("drainTimeout", "5" as unknown as number, 10_000),
    {
      name: "RangeError",
      message: "Cannot use drainTimeout: 5 is not a non-negative number",
    },
  );
  assert.equal(checkNumber("drainTimeout", 0, 10_000), 0);
  assert.equal(checkNumber("drainTimeout", undefined, 10_000), 10_000);
});
