// Unit tests of ice.ts: the /ice-servers endpoint answers Requests directly,
// no socket involved. Expected credentials and tokens are built with
// node:crypto (`_reference.ts`), independently of the code under test.

import assert from "node:assert/strict";
import {
  IceServersEndpoint,
  type IceServersEndpointOptions,
} from "../../deno/ice.ts";
import type { Refusal } from "../../lib/admission.ts";
import { TokenAuthority } from "../../lib/token.ts";
import { refCredential, refToken } from "../_reference.ts";

const TURN_SECRET = "coturn-static-auth-secret";
const AUTH_SECRET = "sigver-auth-secret";
/** 2023-11-14T22:13:20.250Z, in unix milliseconds. */
const NOW = 1_700_000_000_250;
const NOW_S = 1_700_000_000;
const URL = "http://sigver.test/ice-servers";
const TURN = {
  secret: TURN_SECRET,
  urls: ["turn:turn.example:3478?transport=udp", "turns:turn.example:5349"],
  stunUrls: ["stun:stun.example:3478"],
  /** Ten minutes, in milliseconds; the body says 600 (seconds). */
  ttl: 600_000,
};

function endpoint(
  options: IceServersEndpointOptions = {},
): IceServersEndpoint {
  return new IceServersEndpoint({
    turn: TURN,
    now: () => NOW,
    id: () => "fixed-id",
    ...options,
  });
}

function request(
  init: RequestInit & { url?: string } = {},
): Request {
  return new Request(init.url ?? URL, init);
}

Deno.test("ice-servers answers the exact body with coturn's credentials", async () => {
  const response = await endpoint().handle(request());
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "application/json");
  const username = `${NOW_S + 600}:fixed-id`;
  assert.equal(
    await response.text(),
    `{"iceServers":[{"urls":["turn:turn.example:3478?transport=udp",` +
      `"turns:turn.example:5349"],"username":"${username}",` +
      `"credential":"${refCredential(TURN_SECRET, username)}"},` +
      `{"urls":["stun:stun.example:3478"]}],"ttl":600}`,
  );
});

Deno.test("ice-servers counts an hour by default and a fresh id per answer", async () => {
  const ice = new IceServersEndpoint({
    turn: { secret: TURN_SECRET, urls: ["turn:t.example"] },
    now: () => NOW,
  });
  const bodies = [];
  for (let i = 0; i < 3; i++) {
    bodies.push(await (await ice.handle(request())).json());
  }
  const usernames = new Set<string>();
  for (const body of bodies) {
    assert.equal(body.ttl, 3600);
    assert.equal(body.iceServers.length, 1);
    const { username, credential } = body.iceServers[0];
    assert.match(username, new RegExp(`^${NOW_S + 3600}:[0-9a-f]{16}$`));
    assert.equal(credential, refCredential(TURN_SECRET, username));
    usernames.add(username);
  }
  assert.equal(usernames.size, 3);
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
  const tokens = new TokenAuthority(["new secret", AUTH_SECRET]);
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
      headers: { authorization: `Bearer ${refToken("new secret", NOW_S)}` },
    }],
  ];
  for (const [name, init] of cases) {
    await t.step(name, async () => {
      const response = await endpoint({ tokens }).handle(request(init));
      assert.equal(response.status, 200);
      const body = await response.json();
      assert.equal(body.iceServers[0].username, `${NOW_S + 600}:fixed-id`);
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
    ["an empty secret", { ...TURN, secret: "" }, "TypeError"],
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
