// Unit tests of lib/turn.ts. The expected credentials are computed here with
// node:crypto, as coturn's use-auth-secret computes them, independently of
// the code under test.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  checkIceUrls,
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
  const cases: [string, string, string, number][] = [
    ["ascii", SECRET, "peer1", 600],
    ["a one-second ttl", SECRET, "x", 1],
    ["a UTF-8 secret and id", "sécret-🔑", "pair-é", 3600],
    ["a random-looking id", "k", "3f9a0c7e1b2d4f60", 86_400],
  ];
  for (const [name, secret, id, ttl] of cases) {
    await t.step(name, async () => {
      const got = await turnCredentials(secret, { id, ttl, now: NOW });
      const username = `${NOW_S + ttl}:${id}`;
      assert.deepEqual(got, {
        username,
        credential: refCredential(secret, username),
      });
      assert.match(got.credential, /^[A-Za-z0-9+/]{27}=$/);
    });
  }
});

Deno.test("turnCredentials counts an hour from now in seconds by default", async () => {
  const at = await turnCredentials(SECRET, { id: "p", now: NOW });
  assert.equal(DEFAULT_TURN_TTL, 3600);
  assert.equal(at.username, `${NOW_S + 3600}:p`);
  // Milliseconds are dropped, not rounded: .999 s still counts as .000.
  const late = await turnCredentials(SECRET, { id: "p", ttl: 10, now: 1999 });
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
    ttl: 600,
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
      const username = `${NOW_S + DEFAULT_TURN_TTL}:abc`;
      assert.equal(
        body,
        `{"iceServers":[{"urls":["turn:t.example:3478"],"username":"${username}",` +
          `"credential":"${refCredential(SECRET, username)}"}],"ttl":3600}`,
      );
    });
  }
});

Deno.test("iceServersBody expiry is now + ttl for every ttl", async (t) => {
  for (const ttl of [1, 59, 3600, 86_400, 7 * 86_400]) {
    await t.step(`ttl ${ttl}`, async () => {
      const body = JSON.parse(
        await iceServersBody(SECRET, {
          turnUrls: ["turn:t.example"],
          id: "i",
          ttl,
          now: NOW,
        }),
      );
      assert.equal(body.ttl, ttl);
      assert.equal(body.iceServers[0].username, `${NOW_S + ttl}:i`);
      assert.equal(
        body.iceServers[0].credential,
        refCredential(SECRET, `${NOW_S + ttl}:i`),
      );
    });
  }
});

Deno.test("turnCredentials throws when the secret, id, ttl or time is unusable", async (t) => {
  const cases: [string, string, TurnCredentialsOptions, string][] = [
    ["empty secret", "", { id: "p", now: NOW }, "TypeError"],
    ["empty id", SECRET, { id: "", now: NOW }, "TypeError"],
    ["id with :", SECRET, { id: "a:b", now: NOW }, "TypeError"],
    ["id too long", SECRET, { id: "x".repeat(257), now: NOW }, "TypeError"],
    ["ttl 0", SECRET, { id: "p", ttl: 0, now: NOW }, "RangeError"],
    ["ttl -5", SECRET, { id: "p", ttl: -5, now: NOW }, "RangeError"],
    ["ttl 1.5", SECRET, { id: "p", ttl: 1.5, now: NOW }, "RangeError"],
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
  assert.equal(ok.username, `${NOW_S + DEFAULT_TURN_TTL}:${"x".repeat(256)}`);
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
