// Tests of cluster/node.ts in this process, against a real redis-server.
// The cluster as processes behind nginx is tests/cluster/'s.

import assert from "node:assert/strict";
import { ClusterNode } from "../../cluster/node.ts";
import { RedisClient } from "../../cluster/redis.ts";
import { startRedis } from "../../dev/redis_server.ts";
import { ManualClock } from "../../lib/clock.ts";
import { fenceMargin } from "../../cluster/owned.ts";
import { startStallProxy } from "../../dev/stall_proxy.ts";
import { waitFor } from "../_helpers.ts";

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

const SECRET = "a cluster secret of 32 bytes....";

/** Metric `name` of a node, without labels. */
function metric(node: ClusterNode, name: string): number {
  const family = node.metrics().find((f) => f.name === name);
  assert.ok(family !== undefined, name);
  return Number(family.samples[0][1]);
}

Deno.test("ClusterNode fences a group whose lease it cannot renew before the lease can expire, and refuses its newcomers while Redis cannot say where it is", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  await using proxy = startStallProxy(redis.port);
  const clock = new ManualClock();
  const leaseTtl = 3000;
  const node = new ClusterNode({
    redis: proxy.url("redis"),
    url: "ws://127.0.0.1:1",
    secret: SECRET,
    leaseTtl,
    redisTimeout: 200,
    clock,
  });
  const fenced: string[] = [];
  node.onLost = (keys) => fenced.push(...keys);
  try {
    await node.start();
    assert.deepEqual(await node.route("room"), { local: true });
    assert.equal(await client.command("GET", "sigver:lease:room"), node.id);
    proxy.stall();
    // The renewal at a third of the TTL gets no answer: Redis is down.
    clock.advance(1000);
    await waitFor(() => node.view().redis === "down", "Redis to be down");
    // Claimed at 0: served until the TTL less the margin, not after.
    const bound = leaseTtl - fenceMargin(leaseTtl);
    clock.advance(bound - 1 - clock.now());
    assert.deepEqual(fenced, []);
    assert.deepEqual(await node.route("room"), { local: true });
    node.release("room");
    clock.advance(1 + fenceMargin(leaseTtl) / 2);
    assert.deepEqual(fenced, ["room"], "fenced before the lease's TTL");
    assert.ok(clock.now() < leaseTtl);
    assert.equal(node.view().ownedGroups, 0);
    assert.equal(metric(node, "sigver_cluster_fenced_groups_total"), 1);
    // Its newcomers are refused; a key never seen is served here meanwhile.
    const refused = await node.route("room");
    assert.equal(refused.local, false);
    assert.equal(refused.local === false && refused.node, undefined);
    assert.deepEqual(await node.route("other"), { local: true });
    node.release("other");
    // Redis back: it says where the group is (free now: here).
    proxy.resume();
    await waitFor(() => node.view().redis === "up", "Redis to be up");
    assert.deepEqual(await node.route("room"), { local: true });
    node.release("room");
  } finally {
    proxy.resume();
    await node.close();
  }
});

Deno.test("ClusterNode woken from a freeze longer than the bound fences at its first lookup, before the newcomer is served", async () => {
  await using redis = await startRedis();
  // A frozen process: time jumps and no loop ran meanwhile.
  const ticks = new ManualClock();
  let now = 0;
  const clock = { now: () => now, every: ticks.every.bind(ticks) };
  const node = new ClusterNode({
    redis: redis.url,
    url: "ws://127.0.0.1:1",
    secret: SECRET,
    leaseTtl: 3000,
    clock,
  });
  const events: string[] = [];
  node.onLost = (keys) => events.push(`fenced ${[...keys]}`);
  try {
    await node.start();
    assert.deepEqual(await node.route("room"), { local: true });
    now = 8000;
    const route = await node.route("room").then((route) => {
      events.push("served");
      return route;
    });
    // Fenced first: the newcomer starts a group under a new lease.
    assert.deepEqual(events, ["fenced room", "served"]);
    assert.deepEqual(route, { local: true });
    node.release("room");
  } finally {
    await node.close();
  }
});

Deno.test("ClusterNode asks Redis, not its memory, where a piped key goes while Redis answers", async () => {
  await using redis = await startRedis();
  const options = { redis: redis.url, secret: SECRET };
  const a = new ClusterNode({ ...options, url: "ws://127.0.0.1:1" });
  const b = new ClusterNode({ ...options, url: "ws://127.0.0.1:2" });
  try {
    await a.start();
    await b.start();
    assert.deepEqual(await a.route("room"), { local: true });
    const piped = await b.route("room");
    assert.deepEqual(piped, { local: false, node: a.id, url: a.url });
    b.pipeOpened("room", { node: a.id, url: a.url });
    // A gives the group up (it fenced it, or it emptied): Redis says the
    // key is free, and B's next peer starts the group on B, pipe or not.
    a.release("room");
    // The release may load its script first: wait until Redis has it.
    await using client = new RedisClient(redis.url);
    await waitFor(
      async () => await client.command("GET", "sigver:lease:room") === null,
      "A's release in Redis",
    );
    assert.deepEqual(await b.route("room"), { local: true });
    b.release("room");
    b.pipeClosed("room", a.id);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("ClusterNode keeps an established group's lease after FLUSHALL: a newcomer at another node waits out the grace and is sent to it", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const clockA = new ManualClock();
  const clockB = new ManualClock();
  const options = { redis: redis.url, secret: SECRET, leaseTtl: 30_000 };
  const a = new ClusterNode({
    ...options,
    url: "ws://127.0.0.1:1",
    clock: clockA,
  });
  const b = new ClusterNode({
    ...options,
    url: "ws://127.0.0.1:2",
    clock: clockB,
  });
  const lost: string[] = [];
  a.onLost = (keys) => lost.push(...keys);
  try {
    await a.start();
    await b.start();
    assert.deepEqual(await a.route("room"), { local: true });
    await client.command("FLUSHALL");
    // B finds its own liveness key gone: it claims nothing for a grace.
    const newcomer = b.route("room");
    await waitFor(
      () => metric(b, "sigver_cluster_state_lost_total") === 1,
      "B to notice",
    );
    // A notices at its next announcement and re-asserts its lease.
    clockA.advance(5000 / 3);
    await waitFor(
      async () => await client.command("GET", "sigver:lease:room") === a.id,
      "A's lease back",
    );
    let settled = false;
    void newcomer.then(() => settled = true);
    for (let i = 0; i < 100 && !settled; i++) {
      clockB.advance(100);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.deepEqual(await newcomer, { local: false, node: a.id, url: a.url });
    assert.deepEqual(lost, [], "no 1012 for the established group");
    assert.equal(metric(a, "sigver_cluster_state_lost_total"), 1);
    a.release("room");
  } finally {
    await a.close();
    await b.close();
  }
});
