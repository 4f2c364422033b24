/**
 * PeerJS across a cluster (issue 19, item 4): raw PeerJS clients
 * (`dev/peerjs_client.ts`) behind nginx's round-robin upstream in front of
 * three sigver nodes on one Redis (`dev/cluster.ts`). An id is held on one
 * node at a time, a message reaches an id on another node with `src` set,
 * a message queued before its id connects reaches it on any node, EXPIRE
 * comes when it connects nowhere, and with Redis gone a node still serves
 * its own ids.
 *
 * Run with `deno task test:cluster` (real redis-server, nginx and
 * processes).
 */

import assert from "node:assert/strict";
import { startCluster } from "../../dev/cluster.ts";
import type { LocalCluster } from "../../dev/cluster/local_cluster.ts";
import { PeerjsClient } from "../../dev/peerjs_client.ts";
import { uniqueKey, waitFor } from "./_support.ts";

/** Closes clients at the end of a test. */
function closing(clients: PeerjsClient[]): AsyncDisposable {
  return {
    [Symbol.asyncDispose]: async () => {
      await Promise.all(clients.map((client) => client.close()));
    },
  };
}

/** PeerJS ids held on each node, read from their metrics. */
function idsByNode(cluster: LocalCluster): Promise<number[]> {
  return Promise.all(
    cluster.nodes.map((node) =>
      node.metric("sigver_peerjs_ids", 'protocol="peerjs"')
    ),
  );
}

const offer = (dst: string, n: number) => ({
  type: "OFFER",
  dst,
  src: "forged",
  payload: { sdp: { type: "offer", sdp: `v=${n}` }, connectionId: `dc_${n}` },
});

Deno.test("PeerJS ids on three nodes behind round robin: ID-TAKEN, relay, queues and EXPIRE across nodes", async () => {
  await using cluster = await startCluster({
    nodes: 3,
    balancer: "round-robin",
    nodeArgs: ["--peerjs-expire-timeout", "2"],
  });
  const base = `${cluster.balancer!.url}/peerjs`;
  const clients: PeerjsClient[] = [];
  await using _clients = closing(clients);
  const ids = [0, 1, 2].map((i) => uniqueKey(`pj${i}`));
  for (const id of ids) {
    const client = await PeerjsClient.open(base, id);
    clients.push(client);
    assert.deepEqual(await client.next(), { type: "OPEN" });
  }
  // Round robin: one client a node.
  assert.deepEqual(await idsByNode(cluster), [1, 1, 1]);

  // Another token for a held id: ID-TAKEN on every node.
  for (let i = 0; i < 3; i++) {
    const intruder = await PeerjsClient.open(base, ids[0], "another-token");
    assert.deepEqual(await intruder.next(), {
      type: "ID-TAKEN",
      payload: { msg: "ID is taken" },
    });
    assert.equal((await intruder.closed).code, 1008);
  }

  // Each sends an offer to each other: every one arrives, src set.
  for (const [i, client] of clients.entries()) {
    for (const [j, id] of ids.entries()) if (j !== i) client.send(offer(id, i));
  }
  for (const [j, client] of clients.entries()) {
    const got = [await client.next(), await client.next()];
    assert.deepEqual(
      got.map((m) => m.src).sort(),
      ids.filter((_, i) => i !== j).sort(),
    );
    for (const m of got) {
      assert.equal(m.type, "OFFER");
      assert.equal(m.dst, ids[j]);
      assert.deepEqual(m.payload, offer(ids[j], ids.indexOf(m.src!)).payload);
    }
  }

  // Offers to ids not connected yet, which then connect on three nodes.
  const late = [0, 1, 2].map((i) => uniqueKey(`late${i}`));
  for (const [n, id] of late.entries()) clients[0].send(offer(id, n));
  await waitFor(
    async () =>
      await cluster.nodes[0].metric(
            "sigver_peerjs_queued_messages",
            'protocol="peerjs"',
          ) +
          await cluster.nodes[1].metric(
            "sigver_peerjs_queued_messages",
            'protocol="peerjs"',
          ) +
          await cluster.nodes[2].metric(
            "sigver_peerjs_queued_messages",
            'protocol="peerjs"',
          ) === 3,
    "three offers queued",
  );
  for (const [n, id] of late.entries()) {
    const client = await PeerjsClient.open(base, id);
    clients.push(client);
    assert.deepEqual(await client.next(), { type: "OPEN" });
    const m = await client.next();
    assert.deepEqual(
      { type: m.type, src: m.src, dst: m.dst },
      { type: "OFFER", src: ids[0], dst: id },
    );
    assert.deepEqual(m.payload, offer(id, n).payload);
  }
  assert.deepEqual(await idsByNode(cluster), [2, 2, 2]);

  // An id that never connects: one EXPIRE for its sender.
  const ghost = uniqueKey("ghost");
  clients[1].send(offer(ghost, 9));
  clients[1].send(offer(ghost, 10));
  assert.deepEqual(await clients[1].next(), {
    type: "EXPIRE",
    src: ghost,
    dst: ids[1],
  });

  // Leaving frees the id for another token, on any node.
  await clients[2].close();
  await waitFor(async () => {
    const again = await PeerjsClient.open(base, ids[2], "new-token");
    const m = await again.next();
    if (m.type === "OPEN") {
      clients.push(again);
      return true;
    }
    await again.close();
    return false;
  }, "the id free again");
  assert.equal(clients[1].pending, 0);
});

Deno.test("PeerJS clients of one node still meet with Redis gone", async () => {
  await using cluster = await startCluster({ nodes: 3, balancer: "none" });
  const clients: PeerjsClient[] = [];
  await using _clients = closing(clients);
  await cluster.killRedis();
  const base = `${cluster.nodes[1].url}/peerjs`;
  const [a, b] = [uniqueKey("alone-a"), uniqueKey("alone-b")];
  for (const id of [a, b]) {
    const client = await PeerjsClient.open(base, id);
    clients.push(client);
    assert.deepEqual(await client.next(), { type: "OPEN" });
  }
  clients[0].send(offer(b, 1));
  const m = await clients[1].next();
  assert.deepEqual({ type: m.type, src: m.src }, { type: "OFFER", src: a });
  clients[1].send({ type: "ANSWER", dst: a, payload: { sdp: "answer" } });
  assert.equal((await clients[0].next()).type, "ANSWER");
  assert.ok(
    await cluster.nodes[1].metric(
      "sigver_peerjs_bus_claims_total",
      'protocol="peerjs",outcome="local"',
    ) >= 2,
  );
});
