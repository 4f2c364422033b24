// Unit tests of cluster/redis_url.ts: parseRedisUrl reads where Redis is
// and how to log in, and refuses what it cannot use with a TypeError whose
// message never quotes the URL (it may hold a password).

import assert from "node:assert/strict";
import { parseRedisUrl, type RedisAddress } from "../../cluster/redis_url.ts";

// Deno 2.8 turned the op and resource sanitizers off by default: on here.
Deno.test.sanitizer({ ops: true, resources: true });

/** An address with the defaults of a bare `redis://host`. */
function address(fields: Partial<RedisAddress>): RedisAddress {
  return {
    hostname: "redis.internal",
    port: 6379,
    username: undefined,
    password: undefined,
    db: undefined,
    ...fields,
  };
}

Deno.test("parseRedisUrl reads host, port, database and credentials", async (t) => {
  const cases: [string, RedisAddress][] = [
    ["redis://redis.internal", address({})],
    ["redis://redis.internal/", address({})],
    ["redis://redis.internal:6380", address({ port: 6380 })],
    ["redis://redis.internal:1", address({ port: 1 })],
    ["redis://redis.internal:65535", address({ port: 65535 })],
    ["redis://10.0.0.5/0", address({ hostname: "10.0.0.5", db: 0 })],
    [
      "redis://10.0.0.5:7000/15",
      address({
        hostname: "10.0.0.5",
        port: 7000,
        db: 15,
      }),
    ],
    ["redis://redis.internal/123456789", address({ db: 123456789 })],
    ["redis://[::1]:6380/3", address({ hostname: "::1", port: 6380, db: 3 })],
    ["redis://[2001:db8::7]", address({ hostname: "2001:db8::7" })],
    ["redis://:pw@redis.internal", address({ password: "pw" })],
    [
      "redis://:s%40cret%2F%3A@redis.internal",
      address({
        password: "s@cret/:",
      }),
    ],
    [
      "redis://alice:pw@redis.internal:6390/2",
      address({
        username: "alice",
        password: "pw",
        port: 6390,
        db: 2,
      }),
    ],
    [
      "redis://al%3Aice:p%20w@redis.internal",
      address({
        username: "al:ice",
        password: "p w",
      }),
    ],
    // An empty password is none.
    ["redis://:@redis.internal", address({})],
  ];
  for (const [url, expected] of cases) {
    await t.step(url, () => {
      assert.deepEqual(parseRedisUrl(url), expected);
    });
  }
});

Deno.test("parseRedisUrl takes a URL object as its text", () => {
  assert.deepEqual(
    parseRedisUrl(new URL("redis://:pw@10.0.0.5:7000/4")),
    address({ hostname: "10.0.0.5", port: 7000, password: "pw", db: 4 }),
  );
});

Deno.test("parseRedisUrl refuses what it cannot use, saying why", async (t) => {
  const cases: [string, string][] = [
    ["not a url", "not a URL"],
    ["redis://redis.internal:65536", "not a URL"],
    ["redis://redis.internal:port", "not a URL"],
    ["redis://redis.internal:-1", "not a URL"],
    ["rediss://redis.internal", "the scheme is not redis:"],
    ["http://redis.internal:6379", "the scheme is not redis:"],
    ["unix:///run/redis.sock", "the scheme is not redis:"],
    ["redis://", "no host"],
    ["redis:redis.internal", "no host"],
    ["redis://redis.internal:0", "port 0"],
    ["redis://redis.internal/db1", "the path is not a database number"],
    ["redis://redis.internal/-1", "the path is not a database number"],
    ["redis://redis.internal/1/2", "the path is not a database number"],
    ["redis://redis.internal/1234567890", "the path is not a database number"],
    [
      "redis://redis.internal/0?timeout=1",
      "a query or fragment is not supported",
    ],
    ["redis://redis.internal#main", "a query or fragment is not supported"],
    ["redis://alice@redis.internal", "a user name without a password"],
    ["redis://alice:@redis.internal", "a user name without a password"],
    ["redis://:p%ZZ@redis.internal", "bad percent-encoding in the credentials"],
    [
      "redis://%E0%A4%A:pw@redis.internal",
      "bad percent-encoding in the credentials",
    ],
  ];
  for (const [url, why] of cases) {
    await t.step(url, () => {
      assert.throws(() => parseRedisUrl(url), {
        name: "TypeError",
        message: `Cannot parse Redis URL: ${why}`,
      });
    });
  }
});

Deno.test("parseRedisUrl never quotes the URL, which may hold a password, in its error", async (t) => {
  for (
    const url of [
      "rediss://:hunter2-secret@redis.internal",
      "redis://:hunter2-secret@redis.internal/x",
      "redis://:hunter2-secret@redis.internal:0",
      "redis://:hunter2-secret@redis.internal?x",
      "redis://:hunter2-secret@redis.internal:99999",
    ]
  ) {
    await t.step(url, () => {
      assert.throws(() => parseRedisUrl(url), (error) => {
        assert.ok(error instanceof TypeError);
        assert.ok(!error.message.includes("hunter2"), error.message);
        assert.ok(!error.message.includes("redis.internal"), error.message);
        return true;
      });
    });
  }
});
