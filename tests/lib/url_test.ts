// Unit tests of lib/url.ts against the key rules of the wire contract: the
// key is the path without its leading `/`, taken as it arrives (no
// percent-decoding, slashes kept), the query is not part of it, `favored` is
// a query parameter of that exact name with any value, and a key is refused
// when empty or longer than 512 UTF-16 code units.

import assert from "node:assert/strict";
import {
  checkKey,
  MAX_KEY_LENGTH,
  parsePeerUrl,
  type PeerUrl,
} from "../../lib/url.ts";

const EMPTY = "Cannot join: the key is empty";
const TOO_LONG = "Cannot join: the key is longer than 512 characters";

Deno.test("parsePeerUrl reads the key from a bare request target and from an absolute URL alike", async (t) => {
  const cases: [string, PeerUrl][] = [
    ["/room", { key: "room", favored: false }],
    ["http://localhost:8000/room", { key: "room", favored: false }],
    ["https://sig.example/room", { key: "room", favored: false }],
    ["ws://127.0.0.1:8000/room?favored", { key: "room", favored: true }],
    ["wss://sig.example:443/a/b?favored", { key: "a/b", favored: true }],
    ["http://user:pw@host:1/k", { key: "k", favored: false }],
    ["http://[::1]:8000/k", { key: "k", favored: false }],
  ];
  for (const [url, expected] of cases) {
    await t.step(url, () => {
      assert.deepEqual(parsePeerUrl(url), expected);
    });
  }
});

Deno.test("parsePeerUrl keeps every slash after the first in the key", async (t) => {
  const cases: [string, string][] = [
    ["/a/b", "a/b"],
    ["/a/b/c", "a/b/c"],
    ["/a/", "a/"],
    ["//a", "/a"],
    ["/a//b", "a//b"],
    ["///", "//"],
    ["/t/token/room", "t/token/room"],
    // Dot segments are not resolved here (Request.url has done it already).
    ["/a/../b", "a/../b"],
    ["/./a", "./a"],
    ["http://host/demo/app.js", "demo/app.js"],
  ];
  for (const [url, key] of cases) {
    await t.step(url, () => {
      assert.deepEqual(parsePeerUrl(url), { key, favored: false });
    });
  }
});

Deno.test("parsePeerUrl keeps percent-encoding as it came", async (t) => {
  const cases: [string, string][] = [
    ["/a%20b", "a%20b"],
    ["/my%20room/a", "my%20room/a"],
    ["/a%2Fb", "a%2Fb"],
    ["/a%2fb", "a%2fb"],
    ["/%3Ffavored", "%3Ffavored"],
    ["/caf%C3%A9", "caf%C3%A9"],
    ["/100%", "100%"],
    ["/%zz", "%zz"],
    ["/a+b", "a+b"],
    // Unencoded characters in a bare target are kept too.
    ["/café", "café"],
    ["/a b", "a b"],
  ];
  for (const [url, key] of cases) {
    await t.step(url, () => {
      assert.deepEqual(parsePeerUrl(url), { key, favored: false });
    });
  }
  await t.step("a%20b and a b are two different keys", () => {
    assert.notEqual(parsePeerUrl("/a%20b")?.key, parsePeerUrl("/a b")?.key);
  });
});

Deno.test("parsePeerUrl: the query string and the fragment are not part of the key", async (t) => {
  const cases: [string, PeerUrl][] = [
    ["/room?", { key: "room", favored: false }],
    ["/room?x=1", { key: "room", favored: false }],
    ["/room#frag", { key: "room", favored: false }],
    ["/room?x=1#frag", { key: "room", favored: false }],
    ["/room#frag?favored", { key: "room", favored: false }],
    ["/room?favored#frag", { key: "room", favored: true }],
    ["/room?x#favored", { key: "room", favored: false }],
    ["/a/b?c/d", { key: "a/b", favored: false }],
    ["/?favored", { key: "", favored: true }],
    ["/", { key: "", favored: false }],
    ["/#", { key: "", favored: false }],
    ["http://host/?favored", { key: "", favored: true }],
    ["http://host/room?next=http://other/x", { key: "room", favored: false }],
    ["/room?next=http://other/x&favored", { key: "room", favored: true }],
  ];
  for (const [url, expected] of cases) {
    await t.step(url, () => {
      assert.deepEqual(parsePeerUrl(url), expected);
    });
  }
});

Deno.test("parsePeerUrl: favored is a query parameter named exactly favored, with any value", async (t) => {
  const cases: [string, boolean][] = [
    ["favored", true],
    ["favored=", true],
    ["favored=1", true],
    ["favored=0", true],
    ["favored=false", true],
    ["favored=a=b", true],
    ["x=1&favored", true],
    ["favored&x=1", true],
    ["x=1&favored=0&y", true],
    ["&&favored&&", true],
    ["favored&favored", true],
    ["x=favored", false],
    ["a=b=favored", false],
    ["favoredx", false],
    ["xfavored", false],
    ["favore", false],
    ["Favored", false],
    ["FAVORED", false],
    [" favored", false],
    ["favored;x", false],
    ["=favored", false],
    ["b?favored", false],
    ["", false],
  ];
  for (const [query, favored] of cases) {
    await t.step(`?${query}`, () => {
      assert.deepEqual(parsePeerUrl(`/room?${query}`), {
        key: "room",
        favored,
      });
      assert.deepEqual(parsePeerUrl(`http://h:1/room?${query}`), {
        key: "room",
        favored,
      });
    });
  }
});

Deno.test("parsePeerUrl has no key for a URL without a path", async (t) => {
  const cases = [
    "",
    "room",
    "*",
    "?favored",
    "#x",
    "http://host",
    "http://host:8000",
    "http://host?favored",
    "http://host#frag",
    "example.com:443",
  ];
  for (const url of cases) {
    await t.step(JSON.stringify(url), () => {
      assert.equal(parsePeerUrl(url), undefined);
    });
  }
});

Deno.test({
  name:
    "parsePeerUrl: an absolute URL without a path has no key, even with a slash in its query or fragment",
  fn: () => {
    assert.equal(parsePeerUrl("http://host?next=/x"), undefined);
    assert.equal(parsePeerUrl("http://host#/frag"), undefined);
    assert.equal(parsePeerUrl("http://host:8000?a=b/c&favored"), undefined);
  },
});

Deno.test("parsePeerUrl reads Request.url the way a browser's URL reaches the server", () => {
  assert.deepEqual(
    parsePeerUrl(new Request("http://localhost:8000/my room/a?favored").url),
    { key: "my%20room/a", favored: true },
  );
  assert.deepEqual(parsePeerUrl(new Request("http://localhost:8000").url), {
    key: "",
    favored: false,
  });
  assert.deepEqual(
    parsePeerUrl(new Request("http://h/café?x=1&favored=yes#f").url),
    { key: "caf%C3%A9", favored: true },
  );
});

Deno.test("checkKey accepts keys of 1 to 512 UTF-16 code units", async (t) => {
  assert.equal(MAX_KEY_LENGTH, 512);
  const cases: [string, string][] = [
    ["one character", "a"],
    ["a slash", "/"],
    ["a space", " "],
    ["keys with slashes", "team-42/room/a"],
    ["percent-encoding", "my%20room"],
    ["exactly 512 characters", "k".repeat(512)],
    ["256 astral characters (512 code units)", "🔑".repeat(256)],
    ["512 accented characters", "é".repeat(512)],
  ];
  for (const [name, key] of cases) {
    await t.step(name, () => {
      assert.equal(checkKey(key), undefined);
    });
  }
});

Deno.test("checkKey refuses an empty key", () => {
  assert.equal(checkKey(""), EMPTY);
  // As the server sees it: `/` and `/?favored` name the empty key.
  assert.equal(checkKey(parsePeerUrl("/")!.key), EMPTY);
  assert.equal(checkKey(parsePeerUrl("http://h/?favored")!.key), EMPTY);
});

Deno.test("checkKey refuses a key longer than 512 UTF-16 code units", async (t) => {
  const cases: [string, string][] = [
    ["513 characters", "k".repeat(513)],
    ["far longer", "k".repeat(100_000)],
    ["257 astral characters (514 code units)", "🔑".repeat(257)],
    [
      "511 characters and an astral one (513 code units)",
      "k".repeat(511) + "🔑",
    ],
    // The length is counted as the key arrived: %20 is three characters.
    ["171 encoded spaces (513 characters)", "%20".repeat(171)],
  ];
  for (const [name, key] of cases) {
    await t.step(name, () => {
      assert.equal(checkKey(key), TOO_LONG);
    });
  }
  await t.step("a 512-character path with a query is still fine", () => {
    const peer = parsePeerUrl(`/${"k".repeat(512)}?favored=${"x".repeat(100)}`);
    assert.equal(peer?.key.length, 512);
    assert.equal(checkKey(peer!.key), undefined);
  });
});
