/**
 * Unit tests of deno/route.ts: where an arriving peer goes. No socket is
 * involved: `arrive` gets a `Request`, the parsed URL and a fake
 * {@linkcode Gates} (with a real `TokenAuthority` when tokens are on and a
 * fake {@linkcode Placement} on a "cluster"), and the tests read the
 * {@linkcode Arrival} it returns.
 */

import assert from "node:assert/strict";
import type { AdmissionPolicy, Refusal } from "../../lib/admission.ts";
import { TokenAuthority } from "../../lib/token.ts";
import type { PeerUrl } from "../../lib/url.ts";
import type {
  Inbound,
  Lease,
  Placed,
  Placement,
  PlaceRequest,
  Remote,
} from "../../deno/placement.ts";
import { type Arrival, arrive, type Gates, readmit } from "../../deno/route.ts";

/** Token secrets, of the 16 bytes and more a secret must have. */
const SECRET = "a token secret of 32 bytes......";
const OTHER_SECRET = "another secret of 32 bytes......";

/** A routable, counted client address (TEST-NET-3). */
const CLIENT = "203.0.113.5";

const OPEN_POLICY: AdmissionPolicy = {
  allowOrigins: new Set(),
  requireOrigin: false,
  maxPeers: 0,
  maxPeersPerAddress: 0,
};

/** A fake server's gates: open, empty, no tokens, no placement. */
function gates(over: Partial<Gates> = {}): Gates {
  return {
    admission: OPEN_POLICY,
    trustProxy: false,
    tokens: undefined,
    placement: undefined,
    maxBufferedAmount: 4096,
    draining: false,
    connections: 0,
    fromAddress: () => 0,
    ...over,
  };
}

function request(path = "/room", headers: HeadersInit = {}): Request {
  return new Request(`http://127.0.0.1${path}`, { headers });
}

function url(key: string, favored = false): PeerUrl {
  return { key, favored };
}

/** A lease that counts its calls. */
class FakeLease implements Lease {
  released = 0;
  movedAway = 0;
  release(): void {
    this.released++;
  }
  moved(): void {
    this.movedAway++;
  }
}

/** A remote that does nothing: `arrive` only hands it on. */
const REMOTE: Remote = {
  attach: () => {},
  send: () => true,
  close: () => {},
  release: () => {},
};

/** A placement whose answers a test sets, and that records what it is asked. */
class FakePlacement implements Placement {
  readonly id = "0123456789abcdef";
  inboundAnswer: Inbound = { kind: "client" };
  placed: Placed = { kind: "local", lease: new FakeLease() };
  acceptLease: Lease | undefined = new FakeLease();
  readonly inbounds: Headers[] = [];
  readonly places: PlaceRequest[] = [];
  readonly accepts: string[] = [];

  attach(): void {}
  start(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  inbound(headers: Headers): Promise<Inbound> {
    this.inbounds.push(headers);
    return Promise.resolve(this.inboundAnswer);
  }
  place(request: PlaceRequest): Promise<Placed> {
    this.places.push(request);
    return Promise.resolve(this.placed);
  }
  accept(key: string): Promise<Lease | undefined> {
    this.accepts.push(key);
    return Promise.resolve(this.acceptLease);
  }
  forward(): Promise<Response> | undefined {
    return undefined;
  }
  metrics(): [] {
    return [];
  }
  view(): unknown {
    return undefined;
  }
}

/** The refusal of an arrival; fails the test for any other kind. */
function refusalOf(arrival: Arrival): Refusal {
  assert.equal(arrival.kind, "refused", JSON.stringify(arrival));
  return (arrival as Extract<Arrival, { kind: "refused" }>).refusal;
}

// Without tokens and a placement: nothing is awaited

Deno.test("arrive answers at once, local and unleased, without tokens and a placement", () => {
  const arrival = arrive(
    request("/room?favored"),
    url("room", true),
    CLIENT,
    gates(),
  );
  assert.ok(!(arrival instanceof Promise), "arrive returned a promise");
  assert.deepEqual(arrival, {
    kind: "local",
    from: { address: CLIENT, counted: false },
    peer: { key: "room", favored: true },
    lease: undefined,
    piped: false,
  });
});

Deno.test("arrive keeps an unparsable URL as no peer", () => {
  const arrival = arrive(request(), undefined, CLIENT, gates());
  assert.ok(!(arrival instanceof Promise));
  assert.equal(arrival.kind, "local");
  assert.equal(arrival.kind === "local" && arrival.peer, undefined);
});

Deno.test("arrive refuses in admission's order: draining, origin, capacity, address", async (t) => {
  const strict: AdmissionPolicy = {
    allowOrigins: new Set(["https://app.example"]),
    requireOrigin: false,
    maxPeers: 2,
    maxPeersPerAddress: 1,
  };
  // Each case breaks its own gate and every later one.
  const cases: {
    name: string;
    draining: boolean;
    origin: string;
    connections: number;
    expected: Refusal;
  }[] = [
    {
      name: "draining",
      draining: true,
      origin: "https://evil.example",
      connections: 2,
      expected: {
        status: 503,
        reason: "draining",
        message: "Service Unavailable: the server is shutting down",
      },
    },
    {
      name: "origin",
      draining: false,
      origin: "https://evil.example",
      connections: 2,
      expected: {
        status: 403,
        reason: "origin",
        message: "Forbidden: origin https://evil.example is not allowed",
      },
    },
    {
      name: "capacity",
      draining: false,
      origin: "https://app.example",
      connections: 2,
      expected: {
        status: 503,
        reason: "capacity",
        message: "Service Unavailable: the server is full",
      },
    },
    {
      name: "address",
      draining: false,
      origin: "https://app.example",
      connections: 1,
      expected: {
        status: 429,
        reason: "address",
        message: "Too Many Requests: too many peers from this address",
      },
    },
  ];
  for (const c of cases) {
    await t.step(`${c.name}: ${c.expected.status}`, () => {
      const asked: string[] = [];
      const arrival = arrive(
        request("/room", { origin: c.origin }),
        url("room"),
        CLIENT,
        gates({
          admission: strict,
          draining: c.draining,
          connections: c.connections,
          fromAddress: (address) => {
            asked.push(address);
            return 1;
          },
        }),
      ) as Arrival;
      assert.deepEqual(arrival, {
        kind: "refused",
        refusal: c.expected,
        from: { address: CLIENT, counted: true },
        key: "room",
      });
      assert.deepEqual(asked, [CLIENT]);
    });
  }
  await t.step("all gates passed: local", () => {
    const arrival = arrive(
      request("/room", { origin: "https://app.example" }),
      url("room"),
      CLIENT,
      gates({ admission: strict, connections: 1 }),
    ) as Arrival;
    assert.equal(arrival.kind, "local");
  });
});

Deno.test("arrive counts a loopback client against no per-address limit", () => {
  let asked = 0;
  const arrival = arrive(
    request(),
    url("room"),
    "127.0.0.1",
    gates({
      admission: { ...OPEN_POLICY, maxPeersPerAddress: 1 },
      fromAddress: () => ++asked,
    }),
  ) as Arrival;
  assert.equal(arrival.kind, "local");
  assert.deepEqual(arrival.from, { address: "127.0.0.1", counted: false });
  assert.equal(asked, 0);
});

Deno.test("arrive reads the client address from X-Forwarded-For when the proxy is trusted", () => {
  const headers = { "x-forwarded-for": "198.51.100.7" };
  const policy = { ...OPEN_POLICY, maxPeersPerAddress: 3 };
  const trusted = arrive(
    request("/room", headers),
    url("room"),
    "127.0.0.1",
    gates({ admission: policy, trustProxy: true }),
  ) as Arrival;
  assert.deepEqual(trusted.from, { address: "198.51.100.7", counted: true });
  const untrusted = arrive(
    request("/room", headers),
    url("room"),
    "127.0.0.1",
    gates({ admission: policy }),
  ) as Arrival;
  assert.deepEqual(untrusted.from, { address: "127.0.0.1", counted: false });
});

// Tokens

Deno.test("arrive with tokens refuses a missing, malformed, forged, expired or out-of-scope token", async (t) => {
  const tokens = new TokenAuthority([SECRET]);
  const forger = new TokenAuthority([OTHER_SECRET]);
  const now = Date.now();
  const cases: { name: string; path: () => Promise<string>; status: number }[] =
    [
      {
        name: "token_missing",
        path: () => Promise.resolve("room"),
        status: 401,
      },
      {
        name: "token_malformed",
        path: () => Promise.resolve("t/v1.garbage/room"),
        status: 401,
      },
      {
        name: "token_signature",
        path: async () => `t/${await forger.mint({ now })}/room`,
        status: 403,
      },
      {
        name: "token_expired",
        path: async () => `t/${await tokens.mint({ ttl: 1000, now: 0 })}/room`,
        status: 403,
      },
      {
        name: "token_scope",
        path: async () =>
          `t/${await tokens.mint({ prefix: "other/", now })}/room`,
        status: 403,
      },
    ];
  for (const c of cases) {
    await t.step(`${c.name}: ${c.status}`, async () => {
      const path = await c.path();
      const arrival = await arrive(
        request(`/${path}`),
        url(path),
        CLIENT,
        gates({ tokens }),
      );
      assert.equal(arrival.kind, "refused");
      const refusal = refusalOf(arrival);
      assert.equal(refusal.status, c.status);
      assert.equal(refusal.reason, c.name);
      // A path with a token is never logged as a key.
      assert.equal(arrival.kind === "refused" && arrival.key, undefined);
    });
  }
});

Deno.test("arrive with a valid token gives the key without the token, favored kept", async () => {
  const tokens = new TokenAuthority([SECRET]);
  const token = await tokens.mint({ prefix: "room/" });
  const path = `t/${token}/room/a`;
  const arrival = await arrive(
    request(`/${path}?favored`),
    url(path, true),
    CLIENT,
    gates({ tokens }),
  );
  assert.deepEqual(arrival, {
    kind: "local",
    from: { address: CLIENT, counted: false },
    peer: { key: "room/a", favored: true },
    lease: undefined,
    piped: false,
  });
});

Deno.test("arrive with tokens refuses on admission before it reads the token", async () => {
  const arrival = await arrive(
    request("/room"),
    url("room"),
    CLIENT,
    gates({ tokens: new TokenAuthority([SECRET]), draining: true }),
  );
  assert.equal(refusalOf(arrival).reason, "draining");
  assert.equal(refusalOf(arrival).status, 503);
});

Deno.test("arrive with tokens refuses a URL it cannot parse with 401: no token can be read from it", async () => {
  // A Host such as `x?y` made Deno's URL lose its path: with tokens on, that
  // once opened a socket with no token checked.
  const arrival = await arrive(
    request(),
    undefined,
    CLIENT,
    gates({ tokens: new TokenAuthority([SECRET]) }),
  );
  assert.deepEqual(refusalOf(arrival), {
    status: 401,
    reason: "token_missing",
    message: "Unauthorized: the request URL cannot be parsed",
  });
});

// Placement

Deno.test("arrive refuses what the placement refuses inbound, before admission", async () => {
  const placement = new FakePlacement();
  const refusal = {
    status: 403,
    reason: "pipe_auth",
    message: "Forbidden: bad pipe signature",
  };
  placement.inboundAnswer = { kind: "refused", refusal };
  const arrival = await arrive(
    request("/room"),
    url("room"),
    CLIENT,
    gates({ placement, draining: true }),
  );
  assert.deepEqual(arrival, {
    kind: "refused",
    refusal,
    from: { address: CLIENT, counted: false },
    key: undefined,
  });
  assert.equal(placement.places.length + placement.accepts.length, 0);
});

Deno.test("arrive names an inbound refusal without a remote address unknown", async () => {
  const placement = new FakePlacement();
  placement.inboundAnswer = {
    kind: "refused",
    refusal: { status: 403, reason: "pipe_auth", message: "Forbidden" },
  };
  const arrival = await arrive(
    request(),
    url("room"),
    undefined,
    gates({ placement }),
  );
  assert.deepEqual(arrival.from, { address: "unknown", counted: false });
});

Deno.test("arrive places a client's peer: local with the placement's lease", async () => {
  const placement = new FakePlacement();
  const lease = new FakeLease();
  placement.placed = { kind: "local", lease };
  const arrival = await arrive(
    request("/room?favored", { origin: "https://app.example" }),
    url("room", true),
    CLIENT,
    gates({ placement, maxBufferedAmount: 777 }),
  );
  assert.deepEqual(arrival, {
    kind: "local",
    from: { address: CLIENT, counted: false },
    peer: { key: "room", favored: true },
    lease,
    piped: false,
  });
  assert.deepEqual(placement.places, [{
    key: "room",
    favored: true,
    client: CLIENT,
    origin: "https://app.example",
    maxBufferedAmount: 777,
  }]);
  assert.deepEqual(placement.accepts, []);
});

Deno.test("arrive places a client's peer on another node: an edge with the link", async () => {
  const placement = new FakePlacement();
  placement.placed = { kind: "remote", remote: REMOTE };
  const arrival = await arrive(
    request("/room"),
    url("room"),
    CLIENT,
    gates({ placement }),
  );
  assert.equal(arrival.kind, "edge");
  assert.equal(arrival.kind === "edge" && arrival.remote, REMOTE);
  assert.equal(arrival.kind === "edge" && arrival.key, "room");
});

Deno.test("arrive refuses what the placement refuses, with the key", async () => {
  const placement = new FakePlacement();
  const refusal = {
    status: 503,
    reason: "redis",
    message: "Service Unavailable: no store",
  };
  placement.placed = { kind: "refused", refusal };
  const arrival = await arrive(
    request("/room"),
    url("room"),
    CLIENT,
    gates({ placement }),
  );
  assert.deepEqual(arrival, {
    kind: "refused",
    refusal,
    from: { address: CLIENT, counted: false },
    key: "room",
  });
});

Deno.test("arrive places the key a token granted, not the token path", async () => {
  const placement = new FakePlacement();
  const tokens = new TokenAuthority([SECRET]);
  const path = `t/${await tokens.mint()}/room`;
  await arrive(
    request(`/${path}`),
    url(path),
    CLIENT,
    gates({ placement, tokens }),
  );
  assert.deepEqual(placement.places.map((p) => p.key), ["room"]);
});

Deno.test("arrive places no peer whose key is bad or missing", async (t) => {
  for (
    const [name, peer] of [["empty key", url("")], [
      "no URL",
      undefined,
    ]] as const
  ) {
    await t.step(name, async () => {
      const placement = new FakePlacement();
      const arrival = await arrive(
        request("/"),
        peer,
        CLIENT,
        gates({ placement }),
      );
      assert.deepEqual(arrival, {
        kind: "local",
        from: { address: CLIENT, counted: false },
        peer,
        lease: undefined,
        piped: false,
      });
      assert.deepEqual(placement.places, []);
    });
  }
});

Deno.test("arrive takes a pipe's lease and its signed key, client and origin", async () => {
  const placement = new FakePlacement();
  const lease = new FakeLease();
  placement.acceptLease = lease;
  placement.inboundAnswer = {
    kind: "pipe",
    peer: {
      key: "room%20a",
      favored: true,
      client: "198.51.100.9",
      origin: "https://app.example",
    },
  };
  // The pipe's own request comes from a node, with another path and Origin;
  // tokens are on, but the edge checked them.
  const arrival = await arrive(
    request("/normalized", { origin: "https://evil.example" }),
    url("normalized"),
    "10.0.0.2",
    gates({
      placement,
      tokens: new TokenAuthority([SECRET]),
      admission: {
        ...OPEN_POLICY,
        allowOrigins: new Set(["https://app.example"]),
        maxPeersPerAddress: 5,
      },
    }),
  );
  assert.deepEqual(arrival, {
    kind: "local",
    from: { address: "198.51.100.9", counted: true },
    peer: { key: "room%20a", favored: true },
    lease,
    piped: true,
  });
  assert.deepEqual(placement.accepts, ["room%20a"]);
  assert.deepEqual(placement.places, []);
});

Deno.test("arrive refuses a pipe by its client's origin and address", async (t) => {
  const pipe = (origin: string | null): FakePlacement => {
    const placement = new FakePlacement();
    placement.inboundAnswer = {
      kind: "pipe",
      peer: { key: "room", favored: false, client: CLIENT, origin },
    };
    return placement;
  };
  const admission = {
    ...OPEN_POLICY,
    allowOrigins: new Set(["https://app.example"]),
    maxPeersPerAddress: 1,
  };
  await t.step("origin: 403", async () => {
    const placement = pipe("https://evil.example");
    const arrival = await arrive(
      request("/room", { origin: "https://app.example" }),
      url("room"),
      "10.0.0.2",
      gates({ placement, admission }),
    );
    assert.equal(refusalOf(arrival).status, 403);
    assert.deepEqual(placement.accepts, []);
  });
  await t.step("address: 429", async () => {
    const placement = pipe("https://app.example");
    const arrival = await arrive(
      request("/room"),
      url("room"),
      "10.0.0.2",
      gates({
        placement,
        admission,
        fromAddress: (a) => a === CLIENT ? 1 : 0,
      }),
    );
    assert.equal(refusalOf(arrival).status, 429);
    assert.deepEqual(placement.accepts, []);
  });
});

Deno.test("arrive refuses a pipe with 409 when this node does not own the group", async () => {
  const placement = new FakePlacement();
  placement.acceptLease = undefined;
  placement.inboundAnswer = {
    kind: "pipe",
    peer: { key: "room", favored: false, client: CLIENT, origin: null },
  };
  const arrival = await arrive(
    request("/room"),
    url("room"),
    "10.0.0.2",
    gates({ placement }),
  );
  assert.deepEqual(arrival, {
    kind: "refused",
    refusal: {
      status: 409,
      reason: "pipe_owner",
      message: "Conflict: this node does not own the group",
    },
    from: { address: CLIENT, counted: false },
    key: "room",
  });
});

// readmit

Deno.test("readmit refuses a draining, full or over-limit server, in that order", async (t) => {
  const admission = { ...OPEN_POLICY, maxPeers: 2, maxPeersPerAddress: 1 };
  const from = { address: CLIENT, counted: true };
  const full = { admission, connections: 2, fromAddress: () => 1 };
  await t.step("draining: 503", () => {
    assert.equal(
      readmit(from, gates({ ...full, draining: true }))?.reason,
      "draining",
    );
  });
  await t.step("capacity: 503", () => {
    const refusal = readmit(from, gates(full));
    assert.equal(refusal?.status, 503);
    assert.equal(refusal?.reason, "capacity");
  });
  await t.step("address: 429", () => {
    const refusal = readmit(from, gates({ ...full, connections: 1 }));
    assert.equal(refusal?.status, 429);
    assert.equal(refusal?.reason, "address");
  });
  await t.step("an uncounted address is not limited", () => {
    assert.equal(
      readmit({ ...from, counted: false }, gates({ ...full, connections: 1 })),
      undefined,
    );
  });
});

Deno.test("readmit does not check the origin again", () => {
  const admission = {
    ...OPEN_POLICY,
    requireOrigin: true,
    allowOrigins: new Set(["https://app.example"]),
  };
  assert.equal(
    readmit({ address: CLIENT, counted: false }, gates({ admission })),
    undefined,
  );
});
