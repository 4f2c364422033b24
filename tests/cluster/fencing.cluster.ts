/**
 * A cluster that fences itself (issue 17), with real processes, a real
 * redis-server and a stallable proxy (dev/stall_proxy.ts) between one node
 * and Redis, or in front of one node's cluster URL: a cut-off owner closes
 * its group before another node can start one, a silent pipe closes its
 * peer with 1012 and frees the owner's side, and an established group keeps
 * its key across FLUSHALL.
 *
 * Run with `deno task test:cluster`.
 */

import assert from "node:assert/strict";
import { type SigverNode, startNode } from "../../dev/cluster/node.ts";
import { freePort } from "../../dev/process.ts";
import { startRedis } from "../../dev/redis_server.ts";
import { type StallProxy, startStallProxy } from "../../dev/stall_proxy.ts";
import { RedisClient } from "../../cluster/redis.ts";
import { bindTo, TestPeer } from "../_helpers.ts";
import {
  answerHeartbeats,
  closing,
  leases,
  since,
  uniqueKey,
  waitFor,
} from "./_support.ts";

const SERVICE_RESTART = 1012;
const SECRET = "a cluster secret of 32 bytes....";
/** The lease TTL of these tests, in seconds: the fence comes within it. */
const LEASE_TTL_S = 3;
/** The nodes' pipe timeout (the default). */
const PIPE_TIMEOUT = 5000;

/** Starts a node; `await using` stops it. */
async function node(
  index: number,
  redisUrl: string,
  args: string[] = [],
  port?: number,
): Promise<SigverNode & AsyncDisposable> {
  const started = await startNode(index, {
    redisUrl,
    secret: SECRET,
    awaitRedis: true,
    clusterArgs: ["--cluster-lease-ttl", String(LEASE_TTL_S)],
    args,
    port,
  });
  return Object.assign(started, {
    [Symbol.asyncDispose]: () => started.process.stop().then(() => {}),
  });
}

/** Opens a peer of `key` at `at` until it is let in (a 503 is retried). */
async function admitted(at: SigverNode, key: string): Promise<TestPeer> {
  for (let attempt = 1;; attempt++) {
    try {
      return await TestPeer.open(`${at.url}/${key}`, { timeout: 2000 });
    } catch (error) {
      if (attempt === 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

Deno.test("an owner cut off from Redis closes its group with 1012 within the lease TTL, before a newcomer elsewhere can start one", async () => {
  await using redis = await startRedis();
  await using proxy: StallProxy = startStallProxy(redis.port);
  await using n0 = await node(0, proxy.url("redis"));
  await using n1 = await node(1, redis.url);
  const key = uniqueKey("cut-off");
  const a = await TestPeer.open(`${n0.url}/${key}`);
  const b = await TestPeer.open(`${n1.url}/${key}`);
  const peers = [a, b];
  await using _peers = closing(peers);
  using _answer = answerHeartbeats(a, b);
  assert.equal(await a.join(1), true);
  await bindTo(b, a, 2);
  assert.equal((await leases(redis.url)).get(key), (await n0.view()).node);

  proxy.stall();
  const stalled = performance.now();
  const closes = await Promise.all([a, b].map(async (peer) => ({
    ...await peer.waitClosed(LEASE_TTL_S * 1000 + 2000),
    at: since(stalled),
  })));
  for (const close of closes) {
    assert.equal(close.code, SERVICE_RESTART, JSON.stringify(close));
    assert.ok(close.at < LEASE_TTL_S * 1000, `closed after ${close.at} ms`);
  }
  const fenced = Math.max(...closes.map((c) => c.at));
  // A newcomer at the node that reaches Redis starts the group again once
  // the lease expired: never before the old group closed.
  const c = await admitted(n1, key);
  peers.push(c);
  assert.equal(await c.join(1), true);
  const formed = since(stalled);
  assert.ok(formed >= fenced, `new group at ${formed}, old closed ${fenced}`);
  assert.equal((await leases(redis.url)).get(key), (await n1.view()).node);
  console.log(
    `fenced after ${closes.map((c) => c.at)} ms; new group after ${formed} ms`,
  );
  proxy.resume();
});

Deno.test("a pipe stalled between two nodes closes its edge peer with 1012 within the pipe timeout, and the owner's piped-in count returns to 0", async () => {
  await using redis = await startRedis();
  const port = freePort();
  await using proxy: StallProxy = startStallProxy(port);
  // Other nodes reach node 0 through the proxy.
  await using n0 = await node(
    0,
    redis.url,
    ["--cluster-url", proxy.url("ws")],
    port,
  );
  await using n1 = await node(1, redis.url);
  const key = uniqueKey("pipe-stall");
  const a = await TestPeer.open(`${n0.url}/${key}`);
  const b = await TestPeer.open(`${n1.url}/${key}`);
  await using _peers = closing([a, b]);
  using _answer = answerHeartbeats(a, b);
  assert.equal(await a.join(1), true);
  await bindTo(b, a, 2);
  assert.equal((await n0.view()).pipedIn, 1);
  assert.equal(proxy.accepted, 1, "the pipe went through the proxy");

  proxy.stall();
  const stalled = performance.now();
  // Each side notices on its own: the edge by its pings, the owner by its.
  const [{ closed, at }, freed] = await Promise.all([
    b.waitClosed(PIPE_TIMEOUT * 2).then((closed) => ({
      closed,
      at: since(stalled),
    })),
    waitFor(
      async () => (await n0.view()).pipedIn === 0,
      "the owner to drop its side",
      PIPE_TIMEOUT * 2,
    ).then(() => since(stalled)),
  ]);
  assert.equal(closed.code, SERVICE_RESTART, JSON.stringify(closed));
  assert.ok(at <= PIPE_TIMEOUT * 1.25 + 500, `closed after ${at} ms`);
  assert.ok(freed <= PIPE_TIMEOUT + 500, `freed after ${freed} ms`);
  assert.equal(
    await n0.metric("sigver_cluster_piped_peers", 'direction="in"'),
    0,
  );
  assert.equal(a.isClosed, false, "the owner's own peer stays");
  console.log(`edge peer closed after ${at} ms; owner freed after ${freed} ms`);
  proxy.resume();
});

Deno.test("after FLUSHALL an established group keeps its key: a newcomer at another node joins it, and no member gets 1012", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  await using n0 = await node(0, redis.url);
  await using n1 = await node(1, redis.url);
  const key = uniqueKey("flushed");
  const a = await TestPeer.open(`${n0.url}/${key}`);
  const b = await TestPeer.open(`${n1.url}/${key}`);
  const peers = [a, b];
  await using _peers = closing(peers);
  using _answer = answerHeartbeats(a, b);
  assert.equal(await a.join(1), true);
  await bindTo(b, a, 2);
  const owner = (await n0.view()).node;

  await client.command("FLUSHALL");
  const flushed = performance.now();
  // At once, at the other node: it waits out the grace, then is piped.
  const c = await TestPeer.open(`${n1.url}/${key}`);
  peers.push(c);
  using _answerC = answerHeartbeats(c);
  await bindTo(c, a, 3);
  const joined = since(flushed);
  assert.equal((await leases(redis.url)).get(key), owner);
  // Renewals after the re-assertion find the lease the owner's: the group
  // is whole.
  const renewals = await n0.metric("sigver_cluster_lease_renewals_total");
  await waitFor(
    async () =>
      await n0.metric("sigver_cluster_lease_renewals_total") >= renewals + 2,
    "two more renewals",
  );
  for (const peer of [a, b, c]) {
    assert.equal(peer.isClosed, false, "no member was closed");
  }
  assert.equal((await leases(redis.url)).get(key), owner);
  console.log(
    `the newcomer joined the established group ${joined} ms after FLUSHALL`,
  );
});
