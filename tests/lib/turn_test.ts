// Unit tests of lib/turn.ts. The expected credentials are computed here with
// node:crypto, as coturn's use-auth-secret computes them, independently of
// the code under test.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  checkIceUrls,
  checkTurnTtl,
  DEFAULT_TURN_TTL,
  iceServersBody,
  type IceServersOptions,
  turnCredentials,
  type TurnCredentialsOptions,
} from "../../lib/turn.ts";

const SECRET = "coturn-static-auth-secret";
/** 2023-11-14T22:13:20.500Z, in unix milliseconds. */
const NOW = 1_700_000_000_500;
const NOW_S = 1_700_000_000;

/** base64(HMAC-SHA1(secret, username)), with node:crypto. */
function refCredential(secret: string, username: string): string {
  return createHmac("sha1", secret).update(username).digest("base64");
}

Deno.test("turnCredentials signs <expiry>:<id> with HMAC-SHA1 as coturn does", async (t) => {
  // The ttl in seconds; the API takes it in milliseconds.
  const cases: [string, string, string, number][] = [
    ["ascii", SECRET, "peer1", 600],
    ["a one-second ttl", SECRET, "x", 1],
    ["a UTF-8 secret and id", "sécret-🔑-for-coturn", "pair-é", 3600],
    ["a random-looking id", "k".repeat(16), "3f9a0c7e1b2d4f60", 86_400],
  ];
  for (const [name, secret, id, seconds] of cases) {
    await t.step(name, async () => {
      const got = await turnCredentials(secret, {
        id,
        ttl: seconds * 1000,
        now: NOW,
      });
      const username = `${NOW_S + seconds}:${id}`;
      assert.deepEqual(got, {
        username,
        credential: refCredential(secret, username),
      });
      assert.match(got.credential, /^[A-Za-z0-9+/]{27}=$/);
    });
  }
});

Deno.test("turnCredentials counts the ttl in milliseconds from now, an hour by default", async () => {
  const at = await turnCredentials(SECRET, { id: "p", now: NOW });
  assert.equal(DEFAULT_TURN_TTL, 3_600_000);
  assert.equal(at.username, `${NOW_S + 3600}:p`);
  // Milliseconds are dropped, not rounded: .999 s still counts as .000.
  const late = await turnCredentials(SECRET, {
    id: "p",
    ttl: 10_000,
    now: 1999,
  });
  assert.equal(late.username, "11:p");
  const before = Math.floor(Date.now() / 1000);
  const live = await turnCredentials(SECRET, { id: "p" });
  const after = Math.floor(Date.now() / 1000);
  const expiry = Number(live.username.split(":")[0]);
  assert.ok(
    before + 3600 <= expiry && expiry <= after + 3600,
    live.username,
  );
  assert.equal(live.credential, refCredential(SECRET, live.username));
});

Deno.test("iceServersBody writes the TURN entry, the STUN entry and the ttl exactly", async () => {
  const body = await iceServersBody(SECRET, {
    turnUrls: [
      "turn:turn.example.com:3478?transport=udp",
      "turns:turn.example.com:5349?transport=tcp",
    ],
    stunUrls: ["stun:stun.example.com:3478"],
    id: "abc",
    ttl: 600_000,
    now: NOW,
  });
  const username = `${NOW_S + 600}:abc`;
  const credential = refCredential(SECRET, username);
  assert.equal(
    body,
    `{"iceServers":[{"urls":["turn:turn.example.com:3478?transport=udp",` +
      `"turns:turn.example.com:5349?transport=tcp"],` +
      `"username":"${username}","credential":"${credential}"},` +
      `{"urls":["stun:stun.example.com:3478"]}],"ttl":600}`,
  );
});

Deno.test("iceServersBody leaves the STUN entry out when there is no STUN URL", async (t) => {
  const cases: [string, string[] | undefined][] = [
    ["stunUrls absent", undefined],
    ["stunUrls empty", []],
  ];
  for (const [name, stunUrls] of cases) {
    await t.step(name, async () => {
      const body = await iceServersBody(SECRET, {
        turnUrls: ["turn:t.example:3478"],
        stunUrls,
        id: "abc",
        now: NOW,
      });
      const username = `${NOW_S + 3600}:abc`;
      assert.equal(
        body,
        `{"iceServers":[{"urls":["turn:t.example:3478"],"username":"${username}",` +
          `"credential":"${refCredential(SECRET, username)}"}],"ttl":3600}`,
      );
    });
  }
});

Deno.test("iceServersBody expiry is now + ttl, and its ttl is in seconds, for every ttl", async (t) => {
  for (const seconds of [1, 59, 3600, 86_400, 7 * 86_400]) {
    await t.step(`ttl ${seconds} s`, async () => {
      const body = JSON.parse(
        await iceServersBody(SECRET, {
          turnUrls: ["turn:t.example"],
          id: "i",
          ttl: seconds * 1000,
          now: NOW,
        }),
      );
      assert.equal(body.ttl, seconds);
      assert.equal(body.iceServers[0].username, `${NOW_S + seconds}:i`);
      assert.equal(
        body.iceServers[0].credential,
        refCredential(SECRET, `${NOW_S + seconds}:i`),
      );
    });
  }
});

Deno.test("turnCredentials rounds the expiry up to the window, one username for the window", async (t) => {
  // NOW_S + 600 = 1_700_000_600, a multiple of 60 plus 20.
  const cases: [string, number, number, string][] = [
    ["a minute, from NOW", 60_000, NOW, "1700000640"],
    ["a minute, 39 s later", 60_000, NOW + 39_000, "1700000640"],
    [
      "a minute, 40 s later: on the boundary",
      60_000,
      NOW + 40_000,
      "1700000640",
    ],
    [
      "a minute, 41 s later: the next window",
      60_000,
      NOW + 41_000,
      "1700000700",
    ],
    ["one second: no rounding", 1000, NOW, "1700000600"],
    ["ten seconds", 10_000, NOW, "1700000600"],
    ["an hour", 3_600_000, NOW, "1700002800"],
  ];
  for (const [name, window, now, expiry] of cases) {
    await t.step(name, async () => {
      const got = await turnCredentials(SECRET, {
        id: "p",
        ttl: 600_000,
        window,
        now,
      });
      assert.equal(got.username, `${expiry}:p`);
      assert.equal(got.credential, refCredential(SECRET, got.username));
      // Never shorter than asked for, never longer than ttl + window.
      const left = Number(expiry) * 1000 - now;
      assert.ok(left >= 600_000 - 999 && left <= 600_000 + window, name);
    });
  }
  const body = JSON.parse(
    await iceServersBody(SECRET, {
      turnUrls: ["turn:t.example"],
      id: "p",
      ttl: 600_000,
      window: 60_000,
      now: NOW,
    }),
  );
  assert.equal(body.iceServers[0].username, "1700000640:p");
  // The body's ttl stays the one asked for: a lower bound of what is left.
  assert.equal(body.ttl, 600);
});

Deno.test("turnCredentials refuses a window that is not whole seconds of 1000 or more", async (t) => {
  const cases: [string, number, string][] = [
    ["zero", 0, "window 0 ms is under 1000 ms"],
    ["seconds by mistake", 60, "window 60 ms is under 1000 ms"],
    [
      "a second and a half",
      1500,
      "window 1500 ms is not a whole number of seconds",
    ],
    ["NaN", NaN, "window NaN is not a whole number of milliseconds"],
  ];
  for (const [name, window, state] of cases) {
    await t.step(name, async () => {
      await assert.rejects(
        turnCredentials(SECRET, { id: "p", window, now: NOW }),
        {
          name: "RangeError",
          message: `Cannot make TURN credentials: ${state}`,
        },
      );
    });
  }
});

Deno.test("turnCredentials refuses a secret under 16 bytes with RangeError", async (t) => {
  const cases: [string, string, number][] = [
    ["empty", "", 0],
    ["abc", "abc", 3],
    ["15 bytes", "x".repeat(15), 15],
    // Counted in UTF-8 bytes: 5 characters of 3 bytes are 15 bytes.
    ["15 bytes in 5 characters", "€€€€€", 15],
  ];
  for (const [name, secret, bytes] of cases) {
    await t.step(name, async () => {
      await assert.rejects(turnCredentials(secret, { id: "p", now: NOW }), {
        name: "RangeError",
        message:
          `Cannot make TURN credentials: the secret is ${bytes} bytes, under 16 (use 32 random bytes, e.g. from sigver secret)`,
      });
      await assert.rejects(
        iceServersBody(secret, { turnUrls: ["turn:a"], id: "p", now: NOW }),
        RangeError,
      );
    });
  }
  await t.step("not a string: TypeError", async () => {
    await assert.rejects(
      turnCredentials(undefined as unknown as string, { id: "p", now: NOW }),
      TypeError,
    );
  });
  await t.step("16 bytes are enough", async () => {
    for (const secret of ["x".repeat(16), "€€€€€x", "🔑🔑🔑🔑"]) {
      const got = await turnCredentials(secret, { id: "p", now: NOW });
      assert.equal(got.credential, refCredential(secret, got.username));
    }
  });
});

Deno.test("turnCredentials throws when the id, ttl or time is unusable", async (t) => {
  const cases: [string, string, TurnCredentialsOptions, string][] = [
    ["empty id", SECRET, { id: "", now: NOW }, "TypeError"],
    ["id with :", SECRET, { id: "a:b", now: NOW }, "TypeError"],
    ["id too long", SECRET, { id: "x".repeat(257), now: NOW }, "TypeError"],
    ["ttl 0", SECRET, { id: "p", ttl: 0, now: NOW }, "RangeError"],
    ["now NaN", SECRET, { id: "p", now: NaN }, "RangeError"],
    ["now negative", SECRET, { id: "p", now: -1000 }, "RangeError"],
  ];
  for (const [name, secret, options, error] of cases) {
    await t.step(name, async () => {
      await assert.rejects(turnCredentials(secret, options), {
        name: error,
        message: /^Cannot make TURN credentials: /,
      });
    });
  }
  const ok = await turnCredentials(SECRET, { id: "x".repeat(256), now: NOW });
  assert.equal(ok.username, `${NOW_S + 3600}:${"x".repeat(256)}`);
});

Deno.test("a TURN ttl that is not whole seconds in milliseconds is refused, saying why", async (t) => {
  const cases: [string, number, string][] = [
    ["seconds by mistake (600)", 600, "ttl 600 ms is under 1000 ms"],
    [
      "seconds by mistake (3600)",
      3600,
      "ttl 3600 ms is not a whole number of seconds",
    ],
    ["zero", 0, "ttl 0 ms is under 1000 ms"],
    ["a negative", -5000, "ttl -5000 ms is under 1000 ms"],
    [
      "a second and a half",
      1500,
      "ttl 1500 ms is not a whole number of seconds",
    ],
    [
      "a fraction of a millisecond",
      1000.5,
      "ttl 1000.5 is not a whole number of milliseconds",
    ],
    ["NaN", NaN, "ttl NaN is not a whole number of milliseconds"],
    [
      "Infinity",
      Infinity,
      "ttl Infinity is not a whole number of milliseconds",
    ],
  ];
  for (const [name, ttl, state] of cases) {
    await t.step(name, async () => {
      await assert.rejects(
        turnCredentials(SECRET, { id: "p", ttl, now: NOW }),
        {
          name: "RangeError",
          message: `Cannot make TURN credentials: ${state}`,
        },
      );
      await assert.rejects(
        iceServersBody(SECRET, {
          turnUrls: ["turn:a"],
          id: "p",
          ttl,
          now: NOW,
        }),
        {
          name: "RangeError",
          message: `Cannot make TURN credentials: ${state}`,
        },
      );
      // The same check, ahead of time: a server refuses it when it starts.
      assert.throws(() => checkTurnTtl(ttl), {
        name: "RangeError",
        message: `Cannot build the ICE servers: ${state}`,
      });
    });
  }
  checkTurnTtl(1000);
  checkTurnTtl(DEFAULT_TURN_TTL);
});

Deno.test("iceServersBody throws TypeError when the URLs are wrong", async (t) => {
  const base = { id: "p", now: NOW };
  const cases: [string, IceServersOptions][] = [
    ["no TURN URL", { ...base, turnUrls: [] }],
    ["a STUN URL among TURN URLs", {
      ...base,
      turnUrls: ["turn:a", "stun:b"],
    }],
    ["a TURN URL among STUN URLs", {
      ...base,
      turnUrls: ["turn:a"],
      stunUrls: ["turn:b"],
    }],
    ["an https URL", { ...base, turnUrls: ["https://turn.example"] }],
  ];
  for (const [name, options] of cases) {
    await t.step(name, async () => {
      await assert.rejects(iceServersBody(SECRET, options), {
        name: "TypeError",
        message: /^Cannot build the ICE servers: /,
      });
      // The same check, ahead of time: a server refuses it when it starts.
      assert.throws(() => checkIceUrls(options.turnUrls, options.stunUrls), {
        name: "TypeError",
        message: /^Cannot build the ICE servers: /,
      });
    });
  }
  checkIceUrls(["TURNS:a"], ["STUN:b"]);
  const upper = JSON.parse(
    await iceServersBody(SECRET, {
      ...base,
      turnUrls: ["TURNS:a"],
      stunUrls: ["STUN:b"],
    }),
  );
  assert.deepEqual(upper.iceServers[0].urls, ["TURNS:a"]);
  assert.deepEqual(upper.iceServers[1], { urls: ["STUN:b"] });
});
