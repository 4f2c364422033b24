// Tests of client/url.ts: the socket URL of a group and a server address
// with an access token in it. No server: strings in, strings out.

import assert from "node:assert/strict";
import { groupUrl, tokenUrl } from "../../client/url.ts";

Deno.test("groupUrl builds the socket URL of a key", async (t) => {
  const cases: [string, string, boolean, string][] = [
    ["ws://h:1", "room", false, "ws://h:1/room"],
    ["http://h:1/", "room", true, "ws://h:1/room?favored"],
    ["https://h/sigver", "a b", false, "wss://h/sigver/a%20b"],
    ["wss://h/?token=x", "a/b", true, "wss://h/a/b?token=x&favored"],
    ["ws://h/", "a?b#c", false, "ws://h/a%3Fb%23c"],
    ["ws://h/#frag", "", false, "ws://h/"],
  ];
  for (const [url, key, favored, expected] of cases) {
    await t.step(`${url} + ${JSON.stringify(key)}`, () => {
      assert.equal(groupUrl(url, key, favored), expected);
    });
  }
  assert.throws(() => groupUrl("ftp://h/", "room"), TypeError);
});

Deno.test("tokenUrl appends t/<token> to the server's path", async (t) => {
  const cases: [string, string][] = [
    ["wss://h", "wss://h/t/v1.1.x.y"],
    ["https://h/sigver/", "https://h/sigver/t/v1.1.x.y"],
    ["ws://h:8000/sigver", "ws://h:8000/sigver/t/v1.1.x.y"],
  ];
  for (const [url, expected] of cases) {
    await t.step(url, () => assert.equal(tokenUrl(url, "v1.1.x.y"), expected));
  }
  // A Netflux signalingServer built on it joins /t/<token>/<key>.
  assert.equal(
    groupUrl(tokenUrl("wss://h", "v1.1.x.y"), "room"),
    "wss://h/t/v1.1.x.y/room",
  );
  for (const bad of ["", "a/b", "a?b", "a b", "a%2F"]) {
    assert.throws(() => tokenUrl("wss://h", bad), TypeError, bad);
  }
});
