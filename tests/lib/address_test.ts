// Unit tests of lib/address.ts: which address a request is counted by, with
// and without a trusted reverse proxy, and which sockets are local.

import assert from "node:assert/strict";
import { type ClientAddress, clientAddress } from "../../lib/address.ts";

function headers(init: Record<string, string> = {}): Headers {
  return new Headers(init);
}

/** The address a trusted proxy's headers give, over a loopback socket. */
function proxied(init: Record<string, string>): string {
  return clientAddress("127.0.0.1", headers(init), true).address;
}

Deno.test("clientAddress without trustProxy is the socket's address, whatever the headers say", async (t) => {
  const forged = headers({
    "x-forwarded-for": "203.0.113.9",
    forwarded: "for=198.51.100.7",
  });
  const cases: [string, string, ClientAddress][] = [
    ["a public IPv4", "192.0.2.1", { address: "192.0.2.1", local: false }],
    ["a public IPv6", "2001:db8::1", { address: "2001:db8::1", local: false }],
    ["IPv4 loopback", "127.0.0.1", { address: "127.0.0.1", local: true }],
    ["IPv6 loopback", "::1", { address: "::1", local: true }],
  ];
  for (const [name, remote, expected] of cases) {
    await t.step(name, () => {
      assert.deepEqual(clientAddress(remote, forged, false), expected);
      assert.deepEqual(clientAddress(remote, headers(), false), expected);
    });
  }
});

Deno.test("clientAddress: a socket is local for 127.0.0.0/8, ::1 and IPv4-mapped loopback only", async (t) => {
  const cases: [string, boolean][] = [
    ["127.0.0.1", true],
    ["127.0.0.2", true],
    ["127.255.255.254", true],
    ["127.1.2.3", true],
    ["::1", true],
    ["::ffff:127.0.0.1", true],
    ["::ffff:127.8.9.10", true],
    ["128.0.0.1", false],
    ["126.255.255.255", false],
    ["12.7.0.1", false],
    ["1.127.0.0", false],
    ["10.0.0.1", false],
    ["192.168.1.1", false],
    ["0.0.0.0", false],
    ["::", false],
    ["::2", false],
    ["::10", false],
    ["fe80::1", false],
    ["2001:db8::127", false],
    ["::ffff:10.0.0.1", false],
    ["::ffff:192.0.2.127", false],
  ];
  for (const [remote, local] of cases) {
    await t.step(`${remote} is ${local ? "" : "not "}local`, () => {
      assert.deepEqual(clientAddress(remote, headers(), false), {
        address: remote,
        local,
      });
    });
  }
});

Deno.test("clientAddress without a remote address is 'unknown' and local (a Unix socket)", () => {
  assert.deepEqual(clientAddress(undefined, headers(), false), {
    address: "unknown",
    local: true,
  });
  // Forwarding headers are not believed without trustProxy, even then.
  assert.deepEqual(
    clientAddress(
      undefined,
      headers({ "x-forwarded-for": "203.0.113.9" }),
      false,
    ),
    { address: "unknown", local: true },
  );
});

Deno.test("clientAddress with trustProxy is never local, even over loopback", () => {
  const forwarded = headers({ "x-forwarded-for": "127.0.0.1" });
  assert.deepEqual(clientAddress("127.0.0.1", forwarded, true), {
    address: "127.0.0.1",
    local: false,
  });
  assert.deepEqual(clientAddress("::1", headers(), true), {
    address: "::1",
    local: false,
  });
  assert.deepEqual(clientAddress("10.1.2.3", headers(), true), {
    address: "10.1.2.3",
    local: false,
  });
});

Deno.test("clientAddress with trustProxy falls back to the socket, then to 'unknown'", () => {
  assert.deepEqual(clientAddress("10.0.0.5", headers(), true), {
    address: "10.0.0.5",
    local: false,
  });
  assert.deepEqual(clientAddress(undefined, headers(), true), {
    address: "unknown",
    local: false,
  });
  assert.deepEqual(
    clientAddress(undefined, headers({ forwarded: "for=192.0.2.60" }), true),
    { address: "192.0.2.60", local: false },
  );
});

Deno.test("X-Forwarded-For: the last hop, trimmed, is the client", async (t) => {
  const cases: [string, string, string][] = [
    ["one address", "203.0.113.9", "203.0.113.9"],
    ["the last of a chain", "198.51.100.1, 203.0.113.9", "203.0.113.9"],
    ["the last of a long chain", "1.1.1.1,2.2.2.2, 3.3.3.3", "3.3.3.3"],
    ["without spaces", "198.51.100.1,203.0.113.9", "203.0.113.9"],
    ["spaces around the last", "198.51.100.1 ,   203.0.113.9  ", "203.0.113.9"],
    ["an IPv6 address", "2001:db8::1", "2001:db8::1"],
    ["IPv6 after IPv4", "192.0.2.1, 2001:db8::2", "2001:db8::2"],
    // X-Forwarded-For is not parsed further: a port or brackets stay.
    ["an IPv4 with a port, kept", "203.0.113.9:4711", "203.0.113.9:4711"],
    ["a bracketed IPv6, kept", "[2001:db8::1]:443", "[2001:db8::1]:443"],
    ["a word, kept", "unknown", "unknown"],
  ];
  for (const [name, xff, expected] of cases) {
    await t.step(name, () => {
      assert.equal(proxied({ "x-forwarded-for": xff }), expected);
    });
  }
});

Deno.test("X-Forwarded-For wins over Forwarded when it names an address", () => {
  assert.equal(
    proxied({
      "x-forwarded-for": "203.0.113.9",
      forwarded: "for=198.51.100.7",
    }),
    "203.0.113.9",
  );
});

Deno.test("X-Forwarded-For with an empty last hop gives way to Forwarded, then the socket", async (t) => {
  const cases: [string, string, string][] = [
    ["a trailing comma", "203.0.113.9,", "198.51.100.7"],
    ["a trailing comma and space", "203.0.113.9, ", "198.51.100.7"],
    ["a lone comma", ",", "198.51.100.7"],
  ];
  for (const [name, xff, expected] of cases) {
    await t.step(name, () => {
      assert.equal(
        proxied({ "x-forwarded-for": xff, forwarded: "for=198.51.100.7" }),
        expected,
      );
      assert.equal(proxied({ "x-forwarded-for": xff }), "127.0.0.1");
    });
  }
  await t.step("an empty header", () => {
    assert.equal(proxied({ "x-forwarded-for": "" }), "127.0.0.1");
    assert.equal(
      proxied({ "x-forwarded-for": "", forwarded: "for=198.51.100.7" }),
      "198.51.100.7",
    );
  });
});

Deno.test("Forwarded: the last for= is the client, without quotes, brackets or port", async (t) => {
  const cases: [string, string, string][] = [
    ["a bare IPv4", "for=192.0.2.60", "192.0.2.60"],
    ["a quoted IPv4", 'for="192.0.2.60"', "192.0.2.60"],
    ["an IPv4 with a port", 'for="192.0.2.43:47011"', "192.0.2.43"],
    ["an unquoted IPv4 with a port", "for=192.0.2.43:47011", "192.0.2.43"],
    ["a bracketed IPv6", 'for="[2001:db8:cafe::17]"', "2001:db8:cafe::17"],
    [
      "a bracketed IPv6 with a port",
      'for="[2001:db8:cafe::17]:4711"',
      "2001:db8:cafe::17",
    ],
    ["bracketed ::1 with a port", 'for="[::1]:80"', "::1"],
    // RFC 7239 requires brackets; without them the colons are not a port.
    ["an unbracketed IPv6, kept whole", 'for="2001:db8::1"', "2001:db8::1"],
    ["unbracketed ::1, kept whole", 'for="::1"', "::1"],
    [
      "unbracketed IPv4-mapped, kept whole",
      'for="::ffff:192.0.2.1"',
      "::ffff:192.0.2.1",
    ],
    ["an obfuscated node", "for=_hidden", "_hidden"],
    ["an obfuscated node with a port", 'for="_gazonk:8080"', "_gazonk"],
    ["an obfuscated port", 'for="192.0.2.43:_abc"', "192.0.2.43"],
    [
      "an IPv6 with an obfuscated port",
      'for="[2001:db8::1]:_p"',
      "2001:db8::1",
    ],
    ["unknown", "for=unknown", "unknown"],
    ["a capitalised parameter name", "For=192.0.2.60", "192.0.2.60"],
    ["an upper-case parameter name", "FOR=192.0.2.60", "192.0.2.60"],
    [
      "with other parameters",
      "for=192.0.2.60;proto=http;by=203.0.113.43",
      "192.0.2.60",
    ],
    [
      "after other parameters",
      "proto=https;by=203.0.113.43;for=192.0.2.60;host=example.com",
      "192.0.2.60",
    ],
    [
      "the last of a list",
      "for=192.0.2.43, for=198.51.100.17",
      "198.51.100.17",
    ],
    [
      "the last of a list, mixed forms",
      'for=192.0.2.43;proto=http, for="[2001:db8::9]:80";by=_x',
      "2001:db8::9",
    ],
    [
      "the last for= of one element",
      "for=192.0.2.1;for=192.0.2.2",
      "192.0.2.2",
    ],
    ["an unclosed bracket", 'for="[2001:db8::5"', "2001:db8::5"],
  ];
  for (const [name, forwarded, expected] of cases) {
    await t.step(name, () => {
      assert.equal(proxied({ forwarded }), expected);
    });
  }
});

Deno.test("Forwarded without an address in its last for= gives way to the socket", async (t) => {
  const cases: [string, string][] = [
    ["no for= at all", "proto=https;by=203.0.113.43"],
    ["an empty quoted for=", 'for=""'],
    ["an empty for=", "for=;proto=http"],
    ["empty brackets", 'for="[]:80"'],
    ["a last for= that is empty", 'for=192.0.2.1, for=""'],
  ];
  for (const [name, forwarded] of cases) {
    await t.step(name, () => {
      assert.deepEqual(
        clientAddress("10.9.8.7", headers({ forwarded }), true),
        {
          address: "10.9.8.7",
          local: false,
        },
      );
      assert.deepEqual(clientAddress(undefined, headers({ forwarded }), true), {
        address: "unknown",
        local: false,
      });
    });
  }
});
