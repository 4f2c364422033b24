/**
 * End to end with the real client on a cluster: y-webrtc 10.3.0 and yjs
 * (npm), unmodified, in headless Chromium pages, each in a browser context
 * of its own, behind nginx with the round-robin upstream of
 * `docs/scaling.md`, in front of three sigver nodes on a real Redis
 * (`dev/cluster.ts`). Each page's signaling socket lands on a node of its
 * own, so every signaling message between two pages crosses Redis
 * (`cluster/topic_bus.ts`); the pages still meet, open RTCPeerConnections
 * on 127.0.0.1 and edit one Y.Doc, with and without a token URL.
 *
 * Run with `deno task test:e2e`.
 */

import assert from "node:assert/strict";
import type { Page } from "npm:playwright-core@1.65.1";
import { startCluster } from "../../dev/cluster.ts";
import type { LocalCluster } from "../../dev/cluster/local_cluster.ts";
import { mintToken } from "../../lib/token.ts";
import {
  assertEditTogether,
  assertLoopback,
  uniqueRoom,
  YPages,
} from "./_ywebrtc.ts";

// Playwright keeps its own pipes and timers to the browser process.
const E2E = { sanitizeOps: false, sanitizeResources: false };

const LABEL = 'protocol="y-webrtc"';

/**
 * Each page's signaling socket is on a node of its own (nginx has one
 * worker, so round robin hands consecutive sockets to consecutive nodes),
 * and every node that serves a page delivered publishes of other nodes'
 * pages: the signaling between the pages went through Redis.
 */
async function assertSpreadOverNodes(
  cluster: LocalCluster,
  pages: Page[],
): Promise<void> {
  const peers = await Promise.all(
    cluster.nodes.map((node) => node.metric("sigver_ywebrtc_peers", LABEL)),
  );
  console.log(`y-webrtc peers by node: ${peers}`);
  assert.equal(peers.reduce((a, b) => a + b), pages.length, `${peers}`);
  assert.ok(peers.every((n) => n <= 1), `one page a node: ${peers}`);
  for (const [i, node] of cluster.nodes.entries()) {
    if (peers[i] === 0) continue;
    const fromBus = await node.metric(
      "sigver_ywebrtc_bus_deliveries_total",
      LABEL,
    );
    assert.ok(fromBus > 0, `node ${i} got no publish from the bus`);
    assert.equal(await node.metric("sigver_ywebrtc_topics", LABEL), 1);
    assert.doesNotMatch(
      await node.metrics(),
      /^sigver_ywebrtc_(refusals_total|bus_rejected_total)\{.*\} [1-9]/m,
    );
  }
}

/** Opens `count` pages, one after another, on one room. */
async function openPages(
  browser: YPages,
  signaling: string,
  count: number,
): Promise<Page[]> {
  const init = { signaling, room: uniqueRoom() };
  const pages: Page[] = [];
  for (let i = 0; i < count; i++) {
    pages.push(await browser.open(`page ${i}`, init));
  }
  return pages;
}

for (const count of [2, 3]) {
  Deno.test({
    name:
      `y-webrtc ${count} pages edit one Y.Doc through a round-robin balancer in front of three nodes`,
    ...E2E,
  }, async () => {
    await using cluster = await startCluster({
      nodes: 3,
      balancer: "round-robin",
    });
    await using browser = await YPages.launch();
    const signaling = `${cluster.balancer!.url}/y-webrtc`;
    const pages = await openPages(browser, signaling, count);
    await assertEditTogether(pages);
    await assertLoopback(pages);
    await assertSpreadOverNodes(cluster, pages);
    assert.deepEqual(browser.errors, []);
  });
}

Deno.test({
  name:
    "y-webrtc pages edit one Y.Doc through a token URL and a round-robin balancer in front of three nodes",
  ...E2E,
}, async () => {
  const secret = "y-webrtc cluster e2e auth secret";
  await using cluster = await startCluster({
    nodes: 3,
    balancer: "round-robin",
    nodeArgs: ["--auth-secret", secret],
  });
  await using browser = await YPages.launch();
  const token = await mintToken(secret, { prefix: "yjs-", ttl: 600_000 });
  const signaling = `${cluster.balancer!.url}/t/${token}/y-webrtc`;
  const pages = await openPages(browser, signaling, 2);
  await assertEditTogether(pages);
  await assertLoopback(pages);
  await assertSpreadOverNodes(cluster, pages);
  assert.deepEqual(browser.errors, []);
});
