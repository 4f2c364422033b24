import assert from "node:assert/strict";
import { isNodeUrl, parseNodeUrl } from "../../lib/node_url.ts";

Deno.test("parseNodeUrl takes ws[s]://host:port and writes it as the URL standard does", async (t) => {
  const good: [string, string][] = [
    ["ws://10.0.0.1:8000", "ws://10.0.0.1:8000"],
    ["wss://node-1.internal:8443", "wss://node-1.internal:8443"],
    ["ws://[::1]:8000", "ws://[::1]:8000"],
    ["WS://Node-1.Internal:8000", "ws://node-1.internal:8000"],
    ["ws://10.0.0.1", "ws://10.0.0.1"],
    ["ws://10.0.0.1:80", "ws://10.0.0.1"],
    ["wss://10.0.0.1:443", "wss://10.0.0.1"],
  ];
  for (const [text, url] of good) {
    await t.step(text, () => assert.equal(parseNodeUrl(text), url));
  }
});

Deno.test("parseNodeUrl refuses another scheme, a path, a query, a fragment or credentials", async (t) => {
  const bad: [string, RegExp][] = [
    ["http://10.0.0.1:8000", /must start with ws:\/\/ or wss:\/\//],
    ["http://127.0.0.1:9/latest/meta-data?", /must start with ws/],
    ["10.0.0.1:8000", /must start with ws/],
    ["ws://10.0.0.1:8000/", /no path, query, fragment or credentials/],
    ["ws://10.0.0.1:8000/x", /no path/],
    ["ws://10.0.0.1:8000?", /no path/],
    ["ws://10.0.0.1:8000?x=1", /no path/],
    ["ws://10.0.0.1:8000#", /no path/],
    ["ws://user@10.0.0.1:8000", /credentials/],
    ["ws://user:pw@10.0.0.1:8000", /credentials/],
    ["ws://10.0.0.1:8000\\x", /no path/],
    ["ws://10.0.0.1 :8000", /no path/],
    ["ws://10.0.0.1:8000\n", /no path/],
    ["ws://10.0.0.1:99999", /it is no URL/],
    ["ws://a|b:8000", /it is no URL/],
    ["ws://", /it is no URL/],
    ["ws://:8000", /it is no URL/],
  ];
  for (const [text, message] of bad) {
    await t.step(JSON.stringify(text), () => {
      assert.throws(() => parseNodeUrl(text), (error: unknown) => {
        assert.ok(error instanceof TypeError);
        assert.match(error.message, /^Cannot use '.*' as a node URL: /s);
        assert.match(error.message, message);
        return true;
      });
    });
  }
});

Deno.test("isNodeUrl is true for a node URL as nodes write it only", () => {
  assert.equal(isNodeUrl("ws://10.0.0.1:8000"), true);
  assert.equal(isNodeUrl("wss://[::1]:8443"), true);
  // Valid, but not as parseNodeUrl writes it: a node never stored it so.
  assert.equal(isNodeUrl("ws://Node:8000"), false);
  assert.equal(isNodeUrl("ws://10.0.0.1:80"), false);
  assert.equal(isNodeUrl("ws://127.0.0.1:1/"), false);
  assert.equal(isNodeUrl("http://127.0.0.1:9/latest/meta-data?"), false);
  assert.equal(isNodeUrl(""), false);
});
