// Unit tests of ice.ts: the /ice-servers endpoint answers Requests directly,
// no socket involved. Expected credentials and tokens are built with
// node:crypto (`_reference.ts`), independently of the code under test.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  IceServersEndpoint,
  type IceServersEndpointOptions,
  TURN_USERNAME_WINDOW,
} from "../../deno/ice.ts";
import type { Refusal } from "../../lib/admission.ts";
import { TokenAuthority } from "../../lib/token.ts";
import { refCredential, refToken } from "../_reference.ts";

const TURN_SECRET = "coturn-static-auth-secret";
const AUTH_SECRET = "sigver-auth-secret-for-tests";
/** 2023-11-14T22:13:20.250Z, in unix milliseconds. */
const NOW = 1_700_000_000_250;
const NOW_S = 1_700_000_000;
/** NOW_S + 600 rounded up to a minute. */
const EXPIRY = 1_700_000_640;
const URL = "http://sigver.test/ice-servers";
const TURN = {
  secret: TURN_SECRET,
  urls: ["turn:turn.example:3478?transport=udp", "turns:turn.example:5349"],
  stunUrls: ["stun:stun.example:3478"],
  /** Ten minutes, in milliseconds; the body says 600 (seconds). */
  ttl: 600_000,
  /** No tokens in most of these tests: an open relay, on purpose. */
  public: true,
};

/**
 * The id of a username as documented: 16 hex digits of
 * HMAC-SHA256(TURN secret, "sigver turn username|<token|address>|<value>").
 */
function refId(
  kind: "token" | "address",
  value: string,
  secret = TURN_SECRET,
): string {
  return createHmac("sha256", secret)
    .update(`sigver turn username|${kind}|${value}`)
    .digest("hex")
    .slice(0, 16);
}

function endpoint(
  options: IceServersEndpointOptions = {},
): IceServersEndpoint {
  return new IceServersEndpoint({
    turn: TURN,
    now: () => NOW,
    ...options,
  });
}

/** The TURN username of a 200 answer. */
async function username(response: Response): Promise<string> {
  assert.equal(response.status, 200);
  return (await response.json()).iceServers[0].username;
}

function request(
  init: RequestInit & { url?: string } = {},
): Request {
  return new Request(init.url ?? URL, init);
}

Deno.test("ice-servers answers the exact body with coturn's credentials", async () => {
  const response = await endpoint().handle(request(), undefined, "192.0.2.1");
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "application/json");
  const username = `${EXPIRY}:${refId("address", "192.0.2.1")}`;
  assert.equal(
    await response.text(),
    `{"iceServers":[{"urls":["turn:turn.example:3478?transport=udp",` +
      `"turns:turn.example:5349"],"username":"${username}",` +
      `"credential":"${refCredential(TURN_SECRET, username)}"},` +
      `{"urls":["stun:stun.example:3478"]}],"ttl":600}`,
  );
});

Deno.test("ice-servers counts an hour by default, rounded up to a minute", async () => {
  const ice = new IceServersEndpoint({
    turn: { secret: TURN_SECRET, urls: ["turn:t.example"], public: true },
    now: () => NOW,
  });
  const body = await (await ice.handle(request(), undefined, "192.0.2.1"))
    .json();
  assert.equal(body.ttl, 3600);
  assert.equal(body.iceServers.length, 1);
  const { username, credential } = body.iceServers[0];
  // NOW_S + 3600 = 1_700_003_600, rounded up to 1_700_003_640.
  assert.equal(username, `1700003640:${refId("address", "192.0.2.1")}`);
  assert.equal(credential, refCredential(TURN_SECRET, username));
});

Deno.test("ice-servers gives one address one username for a minute, whatever it fetches", async () => {
  assert.equal(TURN_USERNAME_WINDOW, 60_000);
  let now = NOW;
  const ice = endpoint({ now: () => now });
  const fetchAt = async (at: number, address: string) => {
    now = at;
    return await username(await ice.handle(request(), undefined, address));
  };
  const first = await fetchAt(NOW, "192.0.2.1");
  assert.equal(first, `${EXPIRY}:${refId("address", "192.0.2.1")}`);
  // Every fetch within the window: the same username, so coturn counts
  // every allocation of this client against one user-quota.
  for (const later of [0, 1000, 20_000, 39_000]) {
    assert.equal(await fetchAt(NOW + later, "192.0.2.1"), first);
  }
  // The next window: the same id, a later expiry.
  assert.equal(
    await fetchAt(NOW + 41_000, "192.0.2.1"),
    `${EXPIRY + 60}:${refId("address", "192.0.2.1")}`,
  );
  // Another address: another id. An IPv6 address's ":" never shows.
  const other = await fetchAt(NOW + 41_000, "2001:db8::7");
  assert.equal(other, `${EXPIRY + 60}:${refId("address", "2001:db8::7")}`);
  assert.equal(other.split(":").length, 2);
});

Deno.test("ice-servers with tokens gives one token one username from any address, another token another", async () => {
  const tokens = new TokenAuthority([AUTH_SECRET]);
  const ice = endpoint({ tokens });
  const a = refToken(AUTH_SECRET, NOW_S + 600, "room/");
  const b = refToken(AUTH_SECRET, NOW_S + 601, "room/");
  const get = async (token: string, address: string) =>
    await username(
      await ice.handle(
        request({ headers: { authorization: `Bearer ${token}` } }),
        undefined,
        address,
      ),
    );
  const fromA = await get(a, "192.0.2.1");
  assert.equal(fromA, `${EXPIRY}:${refId("token", a)}`);
  // The same token from elsewhere, or in the query: the same username.
  assert.equal(await get(a, "198.51.100.2"), fromA);
  assert.equal(
    await username(
      await ice.handle(request({ url: `${URL}?token=${a}` }), undefined, "x"),
    ),
    fromA,
  );
  // Another token, from the same address: another username.
  const fromB = await get(b, "192.0.2.1");
  assert.equal(fromB, `${EXPIRY}:${refId("token", b)}`);
  assert.notEqual(fromB, fromA);
  // The id never carries the token or a piece of its signature.
  const id = fromA.split(":")[1];
  assert.ok(!a.includes(id));
  assert.notEqual(id, refId("token", a, AUTH_SECRET));
});

Deno.test("ice-servers names the client by the forwarding headers only with trustProxy", async (t) => {
  const forwarded = {
    headers: { "x-forwarded-for": "203.0.113.9, 198.51.100.20" },
  };
  await t.step("trusted: the proxy's last hop", async () => {
    const ice = endpoint({ trustProxy: true });
    assert.equal(
      await username(await ice.handle(request(forwarded), undefined, "::1")),
      `${EXPIRY}:${refId("address", "198.51.100.20")}`,
    );
  });
  await t.step("not trusted: the socket's address", async () => {
    const ice = endpoint();
    assert.equal(
      await username(await ice.handle(request(forwarded), undefined, "::1")),
      `${EXPIRY}:${refId("address", "::1")}`,
    );
  });
});

Deno.test("ice-servers refuses to hand out credentials without tokens unless turn.public says so", async (t) => {
  const { public: _, ...closed } = TURN;
  await t.step("no tokens, no public: TypeError", () => {
    for (const turn of [closed, { ...closed, public: false }]) {
      assert.throws(() => new IceServersEndpoint({ turn }), {
        name: "TypeError",
        message:
          "Cannot create handler: TURN credentials without access tokens go to anyone who asks; set authSecrets, or turn.public: true to run an open relay",
      });
    }
  });
  await t.step("tokens: no public needed, a token needed", async () => {
    const ice = new IceServersEndpoint({
      turn: closed,
      tokens: new TokenAuthority([AUTH_SECRET]),
    });
    const response = await ice.handle(request());
    await response.body?.cancel();
    assert.equal(response.status, 401);
  });
  await t.step("public: served without a token", async () => {
    const response = await new IceServersEndpoint({
      turn: { ...closed, public: true },
    }).handle(request());
    await response.body?.cancel();
    assert.equal(response.status, 200);
  });
  await t.step("no TURN: nothing to guard", () => {
    assert.equal(new IceServersEndpoint().enabled, false);
  });
});

Deno.test("ice-servers answers 429 once an address used its burst, then one a second", async () => {
  let now = NOW;
  const ice = endpoint({ now: () => now });
  const refusals: Refusal[] = [];
  const get = (address: string, init: RequestInit = {}) =>
    ice.handle(request(init), (r) => refusals.push(r), address);
  for (let i = 0; i < 10; i++) {
    const response = await get("192.0.2.1", i % 2 ? { method: "HEAD" } : {});
    await response.body?.cancel();
    assert.equal(response.status, 200, `request ${i + 1}`);
  }
  const refused = await get("192.0.2.1");
  assert.equal(refused.status, 429);
  assert.equal(refused.headers.get("retry-after"), "1");
  assert.equal(refused.headers.get("cache-control"), "no-store");
  // Readable from a page: CORS headers on the refusal too.
  assert.equal(refused.headers.get("access-control-allow-origin"), "*");
  assert.equal(
    await refused.text(),
    "Too Many Requests: this address asks for ICE servers too often; credentials stay valid, reuse them\n",
  );
  assert.deepEqual(refusals.map((r) => [r.status, r.reason]), [
    [429, "ice_rate"],
  ]);
  // Preflights are not counted, nor other addresses.
  const preflight = await get("192.0.2.1", { method: "OPTIONS" });
  assert.equal(preflight.status, 204);
  const other = await get("192.0.2.2");
  await other.body?.cancel();
  assert.equal(other.status, 200);
  // One more a second.
  now += 999;
  assert.equal((await get("192.0.2.1")).status, 429);
  now += 1;
  const again = await get("192.0.2.1");
  await again.body?.cancel();
  assert.equal(again.status, 200);
  assert.equal((await get("192.0.2.1")).status, 429);
});

Deno.test("ice-servers counts refused tokens against the address's requests too", async () => {
  const ice = endpoint({ tokens: new TokenAuthority([AUTH_SECRET]) });
  const bad = { headers: { authorization: "Bearer v1.1.x.nope" } };
  for (let i = 0; i < 10; i++) {
    const response = await ice.handle(request(bad), undefined, "192.0.2.1");
    await response.body?.cancel();
    assert.equal(response.status, 401);
  }
  // Guessing tokens is rationed as fetching credentials is.
  const response = await ice.handle(
    request({
      headers: {
        authorization: `Bearer ${refToken(AUTH_SECRET, NOW_S + 60)}`,
      },
    }),
    undefined,
    "192.0.2.1",
  );
  await response.body?.cancel();
  assert.equal(response.status, 429);
});

Deno.test("ice-servers takes its request rate and burst from the TURN options", async (t) => {
  const burst = async (turn: IceServersEndpointOptions["turn"]) => {
    const ice = endpoint({ turn });
    for (let i = 0; i < 100; i++) {
      const response = await ice.handle(request(), undefined, "192.0.2.1");
      await response.body?.cancel();
      if (response.status === 429) return i;
    }
    return Infinity;
  };
  await t.step("a burst of 3", async () => {
    assert.equal(await burst({ ...TURN, requestBurst: 3 }), 3);
  });
  await t.step("rate 0: no limit", async () => {
    assert.equal(await burst({ ...TURN, requestRate: 0 }), Infinity);
  });
  await t.step("a negative or non-number rate: RangeError", () => {
    for (
      const bad of [
        { requestRate: -1 },
        { requestBurst: NaN },
        { requestRate: Infinity },
      ]
    ) {
      assert.throws(() => endpoint({ turn: { ...TURN, ...bad } }), {
        name: "RangeError",
        message: /^Cannot create handler: turn\.request(Rate|Burst) /,
      });
    }
  });
});

Deno.test("ice-servers keeps a bounded number of addresses, forgetting the least recent", async () => {
  const ice = endpoint({ turn: { ...TURN, requestBurst: 1 } });
  const status = async (address: string) => {
    const response = await ice.handle(
      request({ method: "HEAD" }),
      undefined,
      address,
    );
    return response.status;
  };
  assert.equal(await status("192.0.2.1"), 200);
  assert.equal(await status("192.0.2.1"), 429);
  // 10 000 other addresses at the same instant push the first one out:
  // memory stays bounded, at the price of a fresh bucket for it.
  for (let i = 0; i < 10_000; i++) {
    assert.equal(await status(`10.${i >> 8}.${i & 255}.1`), 200);
  }
  assert.equal(await status("192.0.2.1"), 200);
  // The most recent are still counted.
  assert.equal(await status("10.39.15.1"), 429);
});

Deno.test("ice-servers marks every answer no-store", async (t) => {
  const tokens = new TokenAuthority([AUTH_SECRET]);
  const cases: [string, IceServersEndpointOptions, RequestInit, number][] = [
    ["200", {}, {}, 200],
    ["HEAD 200", {}, { method: "HEAD" }, 200],
    ["204 preflight", {}, { method: "OPTIONS" }, 204],
    ["401", { tokens }, {}, 401],
    [
      "403 origin",
      {
        allowOrigins: ["https://app.example"],
      },
      { headers: { origin: "https://evil.example" } },
      403,
    ],
    ["404", { turn: undefined }, {}, 404],
    ["405", {}, { method: "POST" }, 405],
  ];
  for (const [name, options, init, status] of cases) {
    await t.step(name, async () => {
      const response = await endpoint(options).handle(request(init));
      await response.body?.cancel();
      assert.equal(response.status, status);
      assert.equal(response.headers.get("cache-control"), "no-store");
    });
  }
});

Deno.test("ice-servers answers HEAD with GET's headers and no body", async () => {
  const response = await endpoint().handle(request({ method: "HEAD" }));
  assert.equal(response.status, 200);
  assert.equal(response.body, null);
  assert.equal(response.headers.get("content-type"), "application/json");
});

Deno.test("ice-servers answers 404 when no TURN server is configured", async () => {
  const ice = new IceServersEndpoint();
  assert.equal(ice.enabled, false);
  const response = await ice.handle(
    request({ headers: { origin: "https://app.example" } }),
  );
  assert.equal(response.status, 404);
  assert.equal(
    await response.text(),
    "Not Found: this server hands out no ICE servers\n",
  );
  // Readable from another origin: a page can tell "none" from a failure.
  assert.equal(response.headers.get("access-control-allow-origin"), "*");
});

Deno.test("ice-servers answers 405 to other methods, with Allow", async (t) => {
  for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
    await t.step(method, async () => {
      const response = await endpoint().handle(request({ method }));
      assert.equal(response.status, 405);
      assert.equal(response.headers.get("allow"), "GET, HEAD, OPTIONS");
      assert.match(await response.text(), /^Method Not Allowed/);
    });
  }
});

Deno.test("ice-servers CORS: any origin may read when none is listed", async (t) => {
  const cases: [string, Record<string, string>][] = [
    ["a cross-origin GET", { origin: "https://app.example" }],
    ["a request without Origin", {}],
  ];
  for (const [name, headers] of cases) {
    await t.step(name, async () => {
      const response = await endpoint().handle(request({ headers }));
      await response.body?.cancel();
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("access-control-allow-origin"), "*");
      // The answer does not depend on Origin: nothing to vary on.
      assert.equal(response.headers.get("vary"), null);
      // No cookies with "*": browsers refuse credentialed reads of it.
      assert.equal(
        response.headers.get("access-control-allow-credentials"),
        null,
      );
    });
  }
});

Deno.test("ice-servers CORS: only listed origins may read, the answer varies on Origin", async (t) => {
  const ice = endpoint({
    allowOrigins: ["https://app.example", "https://other.example"],
  });
  await t.step("a listed origin gets its own name back", async () => {
    const response = await ice.handle(
      request({ headers: { origin: "https://other.example" } }),
    );
    await response.body?.cancel();
    assert.equal(response.status, 200);
    assert.equal(
      response.headers.get("access-control-allow-origin"),
      "https://other.example",
    );
    assert.equal(response.headers.get("vary"), "Origin");
  });
  await t.step("another origin gets 403 and no CORS header", async () => {
    const refusals: Refusal[] = [];
    const response = await ice.handle(
      request({ headers: { origin: "https://evil.example" } }),
      (refusal) => refusals.push(refusal),
    );
    assert.equal(response.status, 403);
    assert.equal(
      await response.text(),
      "Forbidden: origin https://evil.example is not allowed\n",
    );
    assert.equal(response.headers.get("access-control-allow-origin"), null);
    assert.equal(response.headers.get("vary"), "Origin");
    assert.deepEqual(refusals.map((r) => [r.status, r.reason]), [
      [403, "origin"],
    ]);
  });
  await t.step("no Origin (same-origin GET, a program) is served", async () => {
    const response = await ice.handle(request());
    await response.body?.cancel();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("access-control-allow-origin"), null);
    assert.equal(response.headers.get("vary"), "Origin");
  });
});

Deno.test("ice-servers answers a CORS preflight with the methods and Authorization", async (t) => {
  const preflight = {
    method: "OPTIONS",
    headers: {
      origin: "https://app.example",
      "access-control-request-method": "GET",
      "access-control-request-headers": "authorization",
    },
  };
  // A preflight carries no token: it must pass even when tokens are on.
  const tokens = new TokenAuthority([AUTH_SECRET]);
  const cases: [string, IceServersEndpointOptions, string][] = [
    ["no origin listed", { tokens }, "*"],
    ["the origin listed", {
      tokens,
      allowOrigins: ["https://app.example"],
    }, "https://app.example"],
  ];
  for (const [name, options, allowOrigin] of cases) {
    await t.step(name, async () => {
      const response = await endpoint(options).handle(request(preflight));
      assert.equal(response.status, 204);
      assert.equal(response.body, null);
      const h = response.headers;
      assert.equal(h.get("access-control-allow-origin"), allowOrigin);
      assert.equal(h.get("access-control-allow-methods"), "GET, HEAD, OPTIONS");
      assert.match(
        h.get("access-control-allow-headers") ?? "",
        /authorization/i,
      );
      assert.equal(h.get("access-control-max-age"), "600");
    });
  }
  await t.step("an origin not listed gets 403", async () => {
    const response = await endpoint({
      allowOrigins: ["https://app.example"],
    }).handle(request({
      ...preflight,
      headers: { ...preflight.headers, origin: "https://evil.example" },
    }));
    await response.body?.cancel();
    assert.equal(response.status, 403);
    assert.equal(response.headers.get("access-control-allow-origin"), null);
  });
  await t.step("a plain OPTIONS gets Allow", async () => {
    const response = await endpoint().handle(request({ method: "OPTIONS" }));
    assert.equal(response.status, 204);
    assert.equal(response.headers.get("allow"), "GET, HEAD, OPTIONS");
    assert.equal(response.headers.get("access-control-allow-methods"), null);
  });
});

Deno.test("ice-servers with tokens on refuses as upgrades do, 401 or 403", async (t) => {
  const tokens = new TokenAuthority([AUTH_SECRET]);
  const good = refToken(AUTH_SECRET, NOW_S + 60);
  const cases: [string, RequestInit & { url?: string }, number, string][] = [
    ["no token", {}, 401, "token_missing"],
    ["an empty ?token=", { url: `${URL}?token=` }, 401, "token_missing"],
    [
      "another scheme",
      {
        headers: { authorization: `Basic ${btoa("a:b")}` },
      },
      401,
      "token_missing",
    ],
    [
      "a malformed token",
      {
        headers: { authorization: "Bearer v1.nope" },
      },
      401,
      "token_malformed",
    ],
    [
      "a forged signature",
      {
        headers: {
          authorization: `Bearer ${refToken("another secret", NOW_S + 60)}`,
        },
      },
      403,
      "token_signature",
    ],
    [
      "a tampered expiry",
      {
        headers: {
          authorization: `Bearer ${
            good.replace(`.${NOW_S + 60}.`, ".9999999999.")
          }`,
        },
      },
      403,
      "token_signature",
    ],
    [
      "expired 31 s ago",
      {
        headers: {
          authorization: `Bearer ${refToken(AUTH_SECRET, NOW_S - 31)}`,
        },
      },
      403,
      "token_expired",
    ],
  ];
  for (const [name, init, status, reason] of cases) {
    await t.step(name, async () => {
      const refusals: Refusal[] = [];
      const response = await endpoint({ tokens }).handle(
        request(init),
        (refusal) => refusals.push(refusal),
      );
      const text = await response.text();
      assert.equal(response.status, status);
      assert.deepEqual(refusals.map((r) => [r.status, r.reason]), [
        [status, reason],
      ]);
      assert.equal(refusals[0].message + "\n", text);
      assert.doesNotMatch(text, /v1\.\d/);
      // CORS headers on refusals too: a page can read why.
      assert.equal(response.headers.get("access-control-allow-origin"), "*");
      const challenge = response.headers.get("www-authenticate");
      if (status === 401) {
        assert.match(challenge ?? "", /^Bearer realm="sigver"/);
        assert.equal(
          /error="invalid_token"/.test(challenge!),
          reason === "token_malformed",
        );
      } else assert.equal(challenge, null);
    });
  }
  await t.step("no token: the text says where to put one", async () => {
    const response = await endpoint({ tokens }).handle(request());
    assert.equal(
      await response.text(),
      "Unauthorized: a valid access token is required, in Authorization: Bearer <token> or ?token=<token>\n",
    );
  });
});

Deno.test("ice-servers with tokens on serves a valid token in the header or the query", async (t) => {
  const tokens = new TokenAuthority(["the new auth secret", AUTH_SECRET]);
  // The prefix is not checked: /ice-servers is about no group.
  const token = refToken(AUTH_SECRET, NOW_S + 60, "room/");
  const cases: [string, RequestInit & { url?: string }][] = [
    ["Authorization: Bearer", {
      headers: { authorization: `Bearer ${token}` },
    }],
    ["lowercase bearer", { headers: { authorization: `bearer ${token}` } }],
    ["?token=", { url: `${URL}?token=${token}` }],
    ["?token= beside other parameters", {
      url: `${URL}?x=1&token=${encodeURIComponent(token)}&y`,
    }],
    ["expired 29 s ago, within the clock skew", {
      headers: {
        authorization: `Bearer ${refToken(AUTH_SECRET, NOW_S - 29)}`,
      },
    }],
    ["signed by the first secret", {
      headers: {
        authorization: `Bearer ${refToken("the new auth secret", NOW_S)}`,
      },
    }],
  ];
  for (const [name, init] of cases) {
    await t.step(name, async () => {
      const response = await endpoint({ tokens }).handle(request(init));
      assert.equal(response.status, 200);
      const body = await response.json();
      assert.match(body.iceServers[0].username, new RegExp(`^${EXPIRY}:`));
    });
  }
  await t.step("the header wins over the query", async () => {
    const response = await endpoint({ tokens }).handle(request({
      url: `${URL}?token=${token}`,
      headers: { authorization: "Bearer v1.bad" },
    }));
    await response.body?.cancel();
    assert.equal(response.status, 401);
  });
});

Deno.test("IceServersEndpoint throws when the TURN options are unusable", async (t) => {
  const cases: [string, IceServersEndpointOptions["turn"], string][] = [
    ["an empty secret", { ...TURN, secret: "" }, "RangeError"],
    ["a 15-byte secret", { ...TURN, secret: "x".repeat(15) }, "RangeError"],
    ["a secret that is no string", {
      ...TURN,
      secret: undefined as unknown as string,
    }, "TypeError"],
    ["no TURN URL", { ...TURN, urls: [] }, "TypeError"],
    ["a STUN URL as TURN", { ...TURN, urls: ["stun:x"] }, "TypeError"],
    ["a TURN URL as STUN", { ...TURN, stunUrls: ["turn:x"] }, "TypeError"],
    ["ttl 0", { ...TURN, ttl: 0 }, "RangeError"],
    ["ttl 1.5", { ...TURN, ttl: 1.5 }, "RangeError"],
    ["ttl in seconds by mistake", { ...TURN, ttl: 600 }, "RangeError"],
    ["ttl not whole seconds", { ...TURN, ttl: 1500 }, "RangeError"],
  ];
  for (const [name, turn, error] of cases) {
    await t.step(name, () => {
      assert.throws(() => new IceServersEndpoint({ turn }), { name: error });
    });
  }
  assert.throws(() => new IceServersEndpoint({ turn: { ...TURN, ttl: 600 } }), {
    message: "Cannot build the ICE servers: ttl 600 ms is under 1000 ms",
  });
});
