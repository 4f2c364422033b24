// Tests of cluster/node.ts in this process, against a real redis-server.
// The cluster as processes behind nginx is tests/cluster/'s.

import assert from "node:assert/strict";
import { ClusterNode } from "../../cluster/node.ts";
import { RedisClient } from "../../cluster/redis.ts";
import { startRedis } from "../../dev/redis_server.ts";

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
    secret: "cluster-secret",
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
