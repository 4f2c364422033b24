/**
 * y-webrtc across a cluster (issue 18, item 4): raw y-webrtc clients
 * (`dev/ywebrtc_client.ts`) behind nginx's round-robin upstream in front of
 * three sigver nodes on one Redis (`dev/cluster.ts`). Subscribers of one
 * topic on the three nodes each get every publish, in the order each
 * publisher sent them; with Redis gone, a node's subscribers still get
 * their node's publishes, and once Redis is back the nodes subscribe again.
 *
 * Run with `deno task test:cluster` (real redis-server, nginx and
 * processes).
 */

import assert from "node:assert/strict";
import { RedisClient } from "../../cluster/redis.ts";
import { topicChannel } from "../../cluster/topic_bus.ts";
import { startCluster } from "../../dev/cluster.ts";
import type { LocalCluster } from "../../dev/cluster/local_cluster.ts";
import { YClient } from "../../dev/ywebrtc_client.ts";
import { PREFIX, uniqueKey, waitFor } from "./_support.ts";

interface _Publish {
  type: string;
  topic: string;
  data: { from: number; n: number };
  clients: number;
}

/** Closes clients at the end of a test. */
function closing(clients: YClient[]): AsyncDisposable {
  return {
    [Symbol.asyncDispose]: async () => {
      await Promise.all(clients.map((client) => client.close()));
    },
  };
}

/** y-webrtc clients connected to each node, read from their metrics. */
function peersByNode(cluster: LocalCluster): Promise<number[]> {
  return Promise.all(
    cluster.nodes.map((node) =>
      node.metric("sigver_ywebrtc_peers", 'protocol="y-webrtc"')
    ),
  );
}

/** Waits until `n` nodes listen to a topic's channel on Redis. */
async function nodesListening(
  url: string,
  topic: string,
  n: number,
): Promise<void> {
  await using redis = new RedisClient(url);
  const channel = topicChannel(PREFIX, topic);
  await waitFor(async () => {
    try {
      const reply = await redis.command("PUBSUB", "NUMSUB", channel);
      return (reply as [string, number])[1] === n;
    } catch {
      return false;
    }
  }, `${n} node(s) listening to ${channel}`);
}

/** Reads `count` publishes off a client. */
async function publishes(client: YClient, count: number): Promise<_Publish[]> {
  const got: _Publish[] = [];
  while (got.length < count) got.push(await client.next() as _Publish);
  return got;
}

Deno.test("y-webrtc subscribers on three nodes behind round robin each get every publish in order", async () => {
  await using cluster = await startCluster({
    nodes: 3,
    balancer: "round-robin",
  });
  const url = `${cluster.balancer!.url}/y-webrtc`;
  const topic = uniqueKey("yjs-room");
  const clients: YClient[] = [];
  await using _clients = closing(clients);
  for (let i = 0; i < 6; i++) clients.push(await YClient.open(url));
  for (const client of clients) {
    client.send({ type: "subscribe", topics: [topic] });
    await client.sync();
  }
  const spread = await peersByNode(cluster);
  assert.ok(spread.every((n) => n > 0), `clients by node: ${spread}`);
  await nodesListening(cluster.redisUrl, topic, 3);

  // Three publishers, interleaved, 100 publishes each.
  const publishers = clients.slice(0, 3);
  const each = 100;
  for (let n = 0; n < each; n++) {
    for (const [from, client] of publishers.entries()) {
      client.send({ type: "publish", topic, data: { from, n } });
    }
  }
  for (const [i, client] of clients.entries()) {
    const got = await publishes(client, each * publishers.length);
    for (const from of publishers.keys()) {
      assert.deepEqual(
        got.filter((p) => p.data.from === from).map((p) => p.data.n),
        Array.from({ length: each }, (_, n) => n),
        `client ${i}: publisher ${from}'s publishes in order`,
      );
    }
    for (const p of got) {
      assert.equal(p.type, "publish");
      assert.equal(p.topic, topic);
      // Each node counts its own subscribers of the topic.
      assert.ok(p.clients >= 1 && p.clients <= 6, `clients: ${p.clients}`);
    }
    assert.equal(client.pending, 0);
  }
  const delivered = await Promise.all(cluster.nodes.map((node) =>
    node.metric(
      "sigver_ywebrtc_bus_deliveries_total",
      'protocol="y-webrtc"',
    )
  ));
  assert.ok(delivered.every((n) => n > 0), `from the bus: ${delivered}`);
  for (const node of cluster.nodes) {
    const metrics = await node.metrics();
    assert.match(metrics, /sigver_ywebrtc_bus_up\{protocol="y-webrtc"\} 1/);
    assert.match(
      metrics,
      /sigver_ywebrtc_bus_rejected_total\{protocol="y-webrtc",reason="forged"\} 0/,
    );
  }
});

Deno.test("y-webrtc subscribers of one node keep getting its publishes with Redis down, and nodes meet again once it is back", async () => {
  await using cluster = await startCluster({
    nodes: 3,
    balancer: "round-robin",
  });
  const topic = uniqueKey("yjs-down");
  const clients: YClient[] = [];
  await using _clients = closing(clients);
  // One client on each node, straight to it.
  for (const node of cluster.nodes) {
    clients.push(await YClient.open(`${node.url}/y-webrtc`));
  }
  for (const client of clients) {
    client.send({ type: "subscribe", topics: [topic] });
    await client.sync();
  }
  await nodesListening(cluster.redisUrl, topic, 3);

  await cluster.killRedis();
  await waitFor(async () => {
    const up = await Promise.all(
      cluster.nodes.map((node) =>
        node.metric("sigver_ywebrtc_bus_up", 'protocol="y-webrtc"')
      ),
    );
    return up.every((n) => n === 0);
  }, "every node's bus down");
  // A second client on node 0, subscribed while Redis is down.
  const local = await YClient.open(`${cluster.nodes[0].url}/y-webrtc`);
  clients.push(local);
  local.send({ type: "subscribe", topics: [topic] });
  await local.sync();
  clients[0].send({ type: "publish", topic, data: { from: 0, n: 1 } });
  local.send({ type: "publish", topic, data: { from: 3, n: 2 } });
  for (const client of [clients[0], local]) {
    const got = await publishes(client, 2);
    assert.deepEqual(got.map((p) => p.data.n), [1, 2]);
    assert.deepEqual(got.map((p) => p.clients), [2, 2]);
  }
  // The other nodes' clients got none of them, and say so with a pong.
  for (const client of clients.slice(1, 3)) {
    await client.sync();
    assert.equal(client.pending, 0);
  }

  await cluster.restartRedis();
  await nodesListening(cluster.redisUrl, topic, 3);
  // Each node's publisher reconnects on its own backoff: publish until the
  // others hear it, then read what they got.
  let n = 100;
  await waitFor(async () => {
    clients[2].send({ type: "publish", topic, data: { from: 2, n: ++n } });
    await clients[2].next();
    return clients[0].pending > 0 && clients[1].pending > 0;
  }, "a publish on node 2 heard on nodes 0 and 1 after the restart");
  for (const client of [clients[0], clients[1]]) {
    const first = (await client.next()) as _Publish;
    assert.equal(first.data.from, 2);
  }
});
