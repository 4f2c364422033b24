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
import NETFLUX from "npm:netflux@4.3.1/dist/netflux.browser.es5.umd.js" with {
  type: "text",
};
import type { Page } from "npm:playwright-core@1.65.1";
import { startCluster } from "../../dev/cluster.ts";
import { launchChromium, TIMEOUT, watch } from "./_browser.ts";

// The page and the join are those of netflux.e2e.ts (a test module, which
// cannot be imported without running its tests).
const PAGE = `<!doctype html><meta charset="utf-8"><title>netflux</title>
<script src="/netflux.js"></script><body>netflux</body>`;

/** Serves the page and Netflux's browser build on a free loopback port. */
function servePage(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (r) =>
      new URL(r.url).pathname === "/netflux.js"
        ? new Response(NETFLUX, {
          headers: { "content-type": "text/javascript" },
        })
        : new Response(PAGE, { headers: { "content-type": "text/html" } }),
  );
}

/** Opens a page and makes it join `key` with a Netflux WebGroup. */
async function join(page: Page, base: string, signaling: string, key: string) {
  await page.goto(base);
  await page.evaluate(([url, key]) => {
    // deno-lint-ignore no-explicit-any
    const g = globalThis as any;
    g.received = [];
    g.wg = new g.netflux.WebGroup({
      signalingServer: url,
      rtcConfiguration: { iceServers: [] },
    });
    g.wg.onMessage = (_id: number, data: string) => g.received.push(data);
    g.wg.join(key);
  }, [signaling, key]);
}

/** The page's WebGroup: state (1 = joined), members. */
function group(page: Page): Promise<{ state: number; members: number[] }> {
  return page.evaluate(() => {
    // deno-lint-ignore no-explicit-any
    const wg = (globalThis as any).wg;
    return { state: wg.state, members: wg.members };
  });
}

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
  await using web = servePage();
  const base = `http://127.0.0.1:${web.addr.port}/`;
  const browser = await launchChromium();
  const errors: string[] = [];
  try {
    const key = `netflux-cluster-${crypto.randomUUID().slice(0, 8)}`;
    const pages: Page[] = [];
    for (let i = 0; i < 3; i++) {
      const page = await browser.newPage();
      watch(page, `page ${i}`, errors);
      await join(page, base, signaling, key);
      await page.waitForFunction(
        (n) => {
          // deno-lint-ignore no-explicit-any
          const wg = (globalThis as any).wg;
          return wg.state === 1 && wg.members.length === n;
        },
        i + 1,
        { timeout: TIMEOUT },
      );
      pages.push(page);
    }
    const ids = (await Promise.all(pages.map(group))).map((g) => g.members);
    for (const members of ids) {
      assert.deepEqual([...members].sort(), [...ids[0]].sort());
    }
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

    for (const [i, page] of pages.entries()) {
      await page.evaluate((i) => {
        // deno-lint-ignore no-explicit-any
        (globalThis as any).wg.send(`hello from ${i}`);
      }, i);
    }
    for (const [i, page] of pages.entries()) {
      await page.waitForFunction(
        // deno-lint-ignore no-explicit-any
        () => (globalThis as any).received.length === 2,
        undefined,
        { timeout: TIMEOUT },
      );
      const received: string[] = await page.evaluate(() =>
        // deno-lint-ignore no-explicit-any
        (globalThis as any).received
      );
      const others = [0, 1, 2].filter((j) => j !== i);
      assert.deepEqual(received.sort(), others.map((j) => `hello from ${j}`));
    }

    // Past three heartbeat periods (15 s): had the owner missed Netflux's
    // heartbeats through the pipes, it would have closed pages with 4742.
    await new Promise((resolve) => setTimeout(resolve, 16_000));
    for (const page of pages) {
      const g = await group(page);
      assert.equal(g.state, 1);
      assert.equal(g.members.length, 3);
    }
    for (const node of cluster.nodes) {
      const metrics = await node.metrics();
      assert.doesNotMatch(metrics, /sigver_closes_total\{code="474\d"/);
      assert.doesNotMatch(metrics, /sigver_closes_total\{code="1012"/);
    }
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
