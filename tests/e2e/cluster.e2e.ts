/**
 * End to end with the real client on a cluster: Netflux 4.3.1 (npm) in
 * headless Chromium pages, behind nginx with the round-robin upstream of
 * `docs/scaling.md`, in front of three sigver nodes on Redis
 * (`dev/cluster.ts`). The pages' signaling sockets land on different nodes,
 * which pipe them to the owner of the group; the pages still form one
 * group, exchange messages over the WebRTC mesh, and stay in the group
 * across three heartbeat periods (Netflux's heartbeats reach the owner
 * through the pipes).
 *
 * Run with `deno task test:e2e`.
 */

import assert from "node:assert/strict";
import { startCluster } from "../../dev/cluster.ts";
import {
  assertHelloFromEach,
  assertSameMembers,
  assertStillJoined,
  NetfluxPages,
} from "./_netflux.ts";

Deno.test({
  name:
    "netflux 4 clients form a group through a round-robin balancer in front of three nodes",
  // Playwright keeps its own pipes and timers to the browser process.
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using cluster = await startCluster({
    nodes: 3,
    balancer: "round-robin",
  });
  const signaling = cluster.balancer!.url;
  await using netflux = await NetfluxPages.launch();
  const key = `netflux-cluster-${crypto.randomUUID().slice(0, 8)}`;
  const pages = await netflux.joinOneByOne(signaling, key, 3);
  await assertSameMembers(pages);
  // The pages' signaling sockets landed on more than one node.
  const served = await Promise.all(
    cluster.nodes.map((node) => node.metric("sigver_connections_total")),
  );
  assert.ok(
    served.filter((n) => n > 0).length >= 2,
    `connections by node: ${served}`,
  );
  console.log(`signaling connections by node: ${served}`);
  const views = await Promise.all(cluster.nodes.map((node) => node.view()));
  assert.ok(
    views.some((view) => view.pipedIn > 0),
    `some page is piped to the owner: ${JSON.stringify(views)}`,
  );

  await assertHelloFromEach(pages);
  // Had the owner missed Netflux's heartbeats through the pipes, it would
  // have closed pages with 4742.
  await assertStillJoined(pages);
  for (const node of cluster.nodes) {
    const metrics = await node.metrics();
    assert.doesNotMatch(metrics, /sigver_closes_total\{code="474\d"/);
    assert.doesNotMatch(metrics, /sigver_closes_total\{code="1012"/);
  }
  assert.deepEqual(netflux.errors, []);
});
