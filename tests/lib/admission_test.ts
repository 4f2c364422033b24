// Unit tests of lib/admission.ts: each refusal with its exact status, reason
// and message, the order the checks run in, and what turns a check off.

import assert from "node:assert/strict";
import {
  type AdmissionFacts,
  type AdmissionPolicy,
  admit,
  type Refusal,
} from "../../lib/admission.ts";

const DRAINING: Refusal = {
  status: 503,
  reason: "draining",
  message: "Service Unavailable: the server is shutting down",
};
const CAPACITY: Refusal = {
  status: 503,
  reason: "capacity",
  message: "Service Unavailable: the server is full",
};
const ADDRESS: Refusal = {
  status: 429,
  reason: "address",
  message: "Too Many Requests: too many peers from this address",
};

function origin(value: string | null): Refusal {
  return {
    status: 403,
    reason: "origin",
    message: `Forbidden: origin ${value ?? "(none)"} is not allowed`,
  };
}

const APP = "https://app.example";
const EVIL = "https://evil.example";

/** A policy with every check on: one allowed origin, 10 peers, 2 per address. */
function policy(overrides: Partial<AdmissionPolicy> = {}): AdmissionPolicy {
  return {
    allowOrigins: new Set([APP]),
    requireOrigin: true,
    maxPeers: 10,
    maxPeersPerAddress: 2,
    ...overrides,
  };
}

/** A request that passes {@linkcode policy}. */
function facts(overrides: Partial<AdmissionFacts> = {}): AdmissionFacts {
  return {
    draining: false,
    origin: APP,
    counted: true,
    peers: 0,
    fromAddress: 0,
    ...overrides,
  };
}

Deno.test("admit lets a request through when every check passes", () => {
  assert.equal(admit(facts(), policy()), undefined);
  assert.equal(admit(facts({ peers: 9, fromAddress: 1 }), policy()), undefined);
});

Deno.test("admit refuses every request with 503 draining while the server drains", () => {
  assert.deepEqual(admit(facts({ draining: true }), policy()), DRAINING);
  const open: AdmissionPolicy = {
    allowOrigins: new Set(),
    requireOrigin: false,
    maxPeers: 0,
    maxPeersPerAddress: 0,
  };
  assert.deepEqual(
    admit(facts({ draining: true, origin: null, counted: false }), open),
    DRAINING,
  );
});

Deno.test("admit checks draining, then origin, then capacity, then the address", async (t) => {
  const all = { origin: EVIL, peers: 10, fromAddress: 2 };
  const cases: [string, Partial<AdmissionFacts>, Refusal | undefined][] = [
    ["all four fail: draining", { draining: true, ...all }, DRAINING],
    ["origin, capacity and address fail: origin", all, origin(EVIL)],
    [
      "capacity and address fail: capacity",
      { peers: 10, fromAddress: 2 },
      CAPACITY,
    ],
    ["only the address fails: address", { fromAddress: 2 }, ADDRESS],
    [
      "a missing origin comes before capacity",
      { origin: null, peers: 10 },
      origin(null),
    ],
    [
      "draining comes before a missing origin",
      { draining: true, origin: null },
      DRAINING,
    ],
    ["nothing fails", {}, undefined],
  ];
  for (const [name, overrides, expected] of cases) {
    await t.step(name, () => {
      assert.deepEqual(admit(facts(overrides), policy()), expected);
    });
  }
});

Deno.test("admit: an origin outside a listed set is refused with 403, named in the message", async (t) => {
  const allow = new Set([APP, "http://localhost:8000"]);
  const cases: [string, string, Refusal | undefined][] = [
    ["a listed origin", APP, undefined],
    ["another listed origin", "http://localhost:8000", undefined],
    ["an unlisted origin", EVIL, origin(EVIL)],
    // Origins are compared as they come: no case folding, no default port.
    ["another scheme", "http://app.example", origin("http://app.example")],
    ["upper case", "https://APP.example", origin("https://APP.example")],
    [
      "an explicit default port",
      "https://app.example:443",
      origin("https://app.example:443"),
    ],
    [
      "a trailing slash",
      "https://app.example/",
      origin("https://app.example/"),
    ],
    ["the opaque origin", "null", origin("null")],
    ["an empty header", "", origin("")],
  ];
  for (const [name, value, expected] of cases) {
    await t.step(name, () => {
      for (const requireOrigin of [false, true]) {
        assert.deepEqual(
          admit(
            facts({ origin: value }),
            policy({ allowOrigins: allow, requireOrigin }),
          ),
          expected,
          `requireOrigin: ${requireOrigin}`,
        );
      }
    });
  }
  await t.step("the message of an unlisted origin", () => {
    assert.equal(
      admit(facts({ origin: EVIL }), policy())?.message,
      "Forbidden: origin https://evil.example is not allowed",
    );
  });
});

Deno.test("admit: an empty allowOrigins lets every origin in", () => {
  const any = policy({ allowOrigins: new Set() });
  for (const value of [APP, EVIL, "null", "", "http://127.0.0.1:9"]) {
    assert.equal(admit(facts({ origin: value }), any), undefined, value);
  }
});

Deno.test("admit: a request without Origin is refused only with requireOrigin, as '(none)'", async (t) => {
  const cases: [string, AdmissionPolicy, Refusal | undefined][] = [
    ["requireOrigin, origins listed", policy(), origin(null)],
    [
      "requireOrigin, any origin",
      policy({ allowOrigins: new Set() }),
      origin(null),
    ],
    [
      "no requireOrigin, origins listed",
      policy({ requireOrigin: false }),
      undefined,
    ],
    [
      "no requireOrigin, any origin",
      policy({ requireOrigin: false, allowOrigins: new Set() }),
      undefined,
    ],
  ];
  for (const [name, p, expected] of cases) {
    await t.step(name, () => {
      assert.deepEqual(admit(facts({ origin: null }), p), expected);
    });
  }
  await t.step("the message", () => {
    assert.equal(
      admit(facts({ origin: null }), policy())?.message,
      "Forbidden: origin (none) is not allowed",
    );
  });
});

Deno.test("admit refuses with 503 capacity from maxPeers sockets on, and 0 is no limit", async (t) => {
  const cases: [number, number, Refusal | undefined][] = [
    [10, 0, undefined],
    [10, 9, undefined],
    [10, 10, CAPACITY],
    [10, 11, CAPACITY],
    [1, 0, undefined],
    [1, 1, CAPACITY],
    [0, 0, undefined],
    [0, 1_000_000, undefined],
  ];
  for (const [maxPeers, peers, expected] of cases) {
    await t.step(`maxPeers ${maxPeers}, ${peers} peers`, () => {
      assert.deepEqual(
        admit(facts({ peers }), policy({ maxPeers, maxPeersPerAddress: 0 })),
        expected,
      );
    });
  }
});

Deno.test("admit refuses with 429 address from maxPeersPerAddress sockets on, and 0 is no limit", async (t) => {
  const cases: [number, number, Refusal | undefined][] = [
    [2, 0, undefined],
    [2, 1, undefined],
    [2, 2, ADDRESS],
    [2, 3, ADDRESS],
    [1, 1, ADDRESS],
    [0, 0, undefined],
    [0, 1_000_000, undefined],
  ];
  for (const [maxPeersPerAddress, fromAddress, expected] of cases) {
    await t.step(
      `${maxPeersPerAddress} per address, ${fromAddress} there`,
      () => {
        assert.deepEqual(
          admit(
            facts({ fromAddress }),
            policy({ maxPeers: 0, maxPeersPerAddress }),
          ),
          expected,
        );
      },
    );
  }
});

Deno.test("admit: an address that is not counted skips the per-address limit only", () => {
  assert.equal(
    admit(facts({ counted: false, fromAddress: 50 }), policy()),
    undefined,
  );
  // The other checks still apply to it.
  assert.deepEqual(
    admit(facts({ counted: false, fromAddress: 50, peers: 10 }), policy()),
    CAPACITY,
  );
  assert.deepEqual(
    admit(facts({ counted: false, origin: EVIL }), policy()),
    origin(EVIL),
  );
  assert.deepEqual(
    admit(facts({ counted: false, draining: true }), policy()),
    DRAINING,
  );
});

Deno.test("admit with every limit off and no origin rule admits anything but a drain", () => {
  const open: AdmissionPolicy = {
    allowOrigins: new Set(),
    requireOrigin: false,
    maxPeers: 0,
    maxPeersPerAddress: 0,
  };
  assert.equal(
    admit(facts({ origin: null, peers: 1e9, fromAddress: 1e9 }), open),
    undefined,
  );
  assert.equal(admit(facts({ origin: EVIL }), open), undefined);
});
