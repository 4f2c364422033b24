// Tests of cluster/node.ts in this process, against a real redis-server.
// The cluster as processes behind nginx is tests/cluster/'s.

import assert from "node:assert/strict";
import { ClusterNode } from "../../cluster/node.ts";
import { RedisClient } from "../../cluster/redis.ts";
import { startRedis } from "../../dev/redis_server.ts";
import { ManualClock } from "../../lib/clock.ts";

/** Scripts Redis has run (EVALSHA and EVAL calls), from INFO commandstats. */
async function scripts(client: RedisClient): Promise<number> {
  const info = String(await client.command("INFO", "commandstats"));
  let calls = 0;
  for (const match of info.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)) {
    calls += Number(match[1]);
  }
  return calls;
}

Deno.test("ClusterNode: peers of one new key that arrive together share one owner lookup, and hold the lease until the last leaves", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const node = new ClusterNode({
    redis: redis.url,
    url: "ws://127.0.0.1:1",
    secret: "a cluster secret of 16+ bytes",
  });
  try {
    await node.start();
    // Redis learns each script on its first use (a failed EVALSHA, an
    // EVAL): use them first. The release goes out at once, before the next
    // lookup on the same connection.
    await node.route("warm-up");
    node.release("warm-up");
    await node.route("warm-up");
    const before = await scripts(client);
    const routes = await Promise.all(
      Array.from({ length: 5 }, () => node.route("room")),
    );
    assert.ok(routes.every((route) => route.local), JSON.stringify(routes));
    assert.equal(await scripts(client) - before, 1, "one lookup for five");
    const lease = await client.command("GET", "sigver:lease:room");
    assert.equal(lease, node.id);
    // The first four leave: the lease stays; the last: it goes.
    for (let i = 0; i < 4; i++) node.release("room");
    assert.equal(await client.command("GET", "sigver:lease:room"), node.id);
    node.release("room");
    // The release is sent at once, on the same connection as what follows.
    await node.route("other");
    assert.equal(await client.command("GET", "sigver:lease:room"), null);
  } finally {
    await node.close();
  }
});

/** Commands Redis has processed, INFO included, from INFO stats. */
async function commands(client: RedisClient): Promise<number> {
  const info = String(await client.command("INFO", "stats"));
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1]);
}

Deno.test("ClusterNode.nodeUrl asks Redis about an unknown node once a second, however often it is named", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const clock = new ManualClock();
  const node = new ClusterNode({
    redis: redis.url,
    url: "ws://127.0.0.1:1",
    secret: "a cluster secret of 32 bytes....",
    clock,
  });
  try {
    await node.start();
    // What reading the count costs: the INFO itself.
    const first = await commands(client);
    const idle = await commands(client) - first;
    const before = await commands(client);
    for (let i = 0; i < 50; i++) {
      assert.equal(await node.nodeUrl("0123456789abcdef"), undefined);
    }
    // Named together, asked once.
    await Promise.all(
      Array.from({ length: 50 }, () => node.nodeUrl("fedcba9876543210")),
    );
    assert.equal(await commands(client) - before - idle, 2, "two GETs");
    // A second later, it is asked about again.
    clock.advance(1000);
    const later = await commands(client);
    assert.equal(await node.nodeUrl("0123456789abcdef"), undefined);
    assert.equal(await commands(client) - later - idle, 1, "one more GET");
  } finally {
    await node.close();
  }
});

Deno.test("ClusterNode.nodeUrl gives the URL of a node that announced itself, and nothing for a forged record", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const options = {
    redis: redis.url,
    secret: "a cluster secret of 32 bytes....",
  };
  const a = new ClusterNode({ ...options, url: "ws://127.0.0.1:1" });
  const b = new ClusterNode({ ...options, url: "ws://127.0.0.1:2" });
  try {
    await a.start();
    await b.start();
    assert.equal(await a.nodeUrl(b.id), "ws://127.0.0.1:2");
    assert.equal(await a.nodeUrl(a.id), "ws://127.0.0.1:1");
    // B's record, moved to another id, or with another URL, is no record.
    const record = String(await client.command("GET", `sigver:node:${b.id}`));
    assert.match(record, /^ws:\/\/127\.0\.0\.1:2\|[A-Za-z0-9_-]{43}$/);
    await client.command("SET", "sigver:node:0123456789abcdef", record);
    assert.equal(await a.nodeUrl("0123456789abcdef"), undefined);
    await client.command(
      "SET",
      "sigver:node:fedcba9876543210",
      record.replace(":2|", ":3|"),
    );
    assert.equal(await a.nodeUrl("fedcba9876543210"), undefined);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("ClusterNode refuses a URL that is not ws[s]://host:port, and writes a valid one as the URL standard does", async () => {
  const options = { redis: "redis://127.0.0.1:1", secret: "s" };
  for (
    const url of [
      "http://10.0.0.1:8000",
      "ws://10.0.0.1:8000/",
      "ws://10.0.0.1:8000?x",
      "ws://user:pw@10.0.0.1:8000",
    ]
  ) {
    assert.throws(() => new ClusterNode({ ...options, url }), TypeError, url);
  }
  const node = new ClusterNode({ ...options, url: "WS://Node-1:80" });
  try {
    assert.equal(node.url, "ws://node-1");
  } finally {
    await node.close();
  }
});
