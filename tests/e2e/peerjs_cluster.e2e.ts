/**
 * End to end with the real client on a cluster: peerjs 1.5.5 (npm),
 * unmodified, in headless Chromium pages (a browser context each), behind
 * nginx with the round-robin upstream of `docs/scaling.md`, in front of
 * three sigver nodes on a real Redis (`dev/cluster.ts`). The client's `path`
 * carries the nginx path; its `/id` request and its WebSocket both go
 * through nginx, and consecutive sockets land on consecutive nodes, so
 * every page's signaling crosses Redis (`cluster/peerjs_bus.ts`): a
 * DataConnection with JSON and binary both ways over loopback, ID-TAKEN for
 * an id held on another node, and an offer sent before its target connects
 * on another node.
 *
 * Run with `deno task test:e2e`.
 */

import assert from "node:assert/strict";
import type { Page } from "npm:playwright-core@1.65.1";
import { startCluster } from "../../dev/cluster.ts";
import type { LocalCluster } from "../../dev/cluster/local_cluster.ts";
import {
  assertLoopbackPairs,
  dial,
  inbox,
  PeerjsPages,
  send,
  serverOf,
  start,
} from "./_peerjs.ts";

const LABEL = 'protocol="peerjs"';

/** One sample of each node's metric; 0 where a node reports none yet. */
function byNode(cluster: LocalCluster, series: string): Promise<number[]> {
  return Promise.all(cluster.nodes.map(async (node) => {
    const text = await node.metrics();
    const line = text.split("\n").find((l) => l.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  }));
}

/**
 * Runs `act` and returns the one node whose `series` grew by one over it:
 * where the socket `act` opened (or was refused) landed.
 */
async function nodeOf(
  cluster: LocalCluster,
  series: string,
  act: () => Promise<void>,
): Promise<number> {
  const before = await byNode(cluster, series);
  await act();
  const after = await byNode(cluster, series);
  const grown = after.flatMap((n, i) => n === before[i] + 1 ? [i] : []);
  assert.equal(grown.length, 1, `${series}: ${before} then ${after}`);
  return grown[0];
}

/** The index of the page's last DataConnection. */
function lastConnection(page: Page): Promise<number> {
  // deno-lint-ignore no-explicit-any
  return page.evaluate(() => (globalThis as any).conns.length - 1);
}

Deno.test({
  name:
    "peerjs 1.5.5 pages on different nodes behind round robin connect: JSON and binary both ways, ID-TAKEN across nodes, a late target on another node",
  // Playwright keeps its own pipes and timers to the browser process.
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await using cluster = await startCluster({
    nodes: 3,
    balancer: "round-robin",
  });
  const options = serverOf(cluster.balancer!.url, "/peerjs");
  await using pages = await PeerjsPages.launch();
  const suffix = crypto.randomUUID().slice(0, 8);
  const ids = `sigver_peerjs_ids{${LABEL}}`;
  const a = await pages.page("a");
  const b = await pages.page("b");
  let aId = "";
  const bId = `bob-${suffix}`;
  let aNode = -1;
  let bNode = -1;

  await t.step("the pages' sockets are on different nodes", async () => {
    aNode = await nodeOf(cluster, ids, async () => {
      const given = await start(a, options);
      assert.ok("id" in given, JSON.stringify(given));
      aId = given.id;
    });
    bNode = await nodeOf(cluster, ids, async () => {
      assert.deepEqual(await start(b, options, bId), { id: bId });
    });
    console.log(`peerjs pages on nodes ${aNode} and ${bNode}`);
    assert.notEqual(aNode, bNode);
  });

  await t.step("JSON and binary both ways over loopback", async () => {
    await dial(b, aId, "json");
    await dial(b, aId, "binary");
    await send(b, 0, { hello: "json", n: 1 });
    await send(b, 1, null, [1, 2, 3, 250]);
    assert.deepEqual(
      (await inbox(a, 2)).map((m) => [m.peer, m.label, m.data]).sort(),
      [
        [bId, "binary", { bytes: [1, 2, 3, 250] }],
        [bId, "json", { hello: "json", n: 1 }],
      ],
    );
    assert.deepEqual(
      (await inbox(b, 2)).map((m) => [m.peer, m.label, m.data]).sort(),
      [
        [aId, "binary", { bytes: [250, 3, 2, 1] }],
        [aId, "json", { echo: { hello: "json", n: 1 } }],
      ],
    );
    for (const page of [a, b]) await assertLoopbackPairs(page, 2);
    // The offers, answers and candidates crossed Redis both ways.
    const sent = await byNode(
      cluster,
      `sigver_peerjs_bus_messages_total{${LABEL},direction="sent"}`,
    );
    const received = await byNode(
      cluster,
      `sigver_peerjs_bus_messages_total{${LABEL},direction="received"}`,
    );
    for (const node of [aNode, bNode]) {
      assert.ok(sent[node] > 0 && received[node] > 0, `${sent} ${received}`);
    }
  });

  await t.step("an id held on another node is ID-TAKEN", async () => {
    const thief = await pages.page("thief");
    const refusedAt = await nodeOf(
      cluster,
      `sigver_peerjs_refused_total{${LABEL},reason="id_taken"}`,
      async () => {
        assert.deepEqual(await start(thief, options, bId), {
          error: "unavailable-id",
        });
      },
    );
    assert.notEqual(refusedAt, bNode);
    await thief.context().close();
  });

  await t.step(
    "an offer sent before its target connects reaches it on another node",
    async () => {
      const lateId = `late-${suffix}`;
      const opened = b.evaluate((id) =>
        // deno-lint-ignore no-explicit-any
        (globalThis as any).dial(id, "json"), lateId);
      // The offer waits for the target's socket.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const queued = await byNode(
        cluster,
        `sigver_peerjs_queue_events_total{${LABEL},event="queued"}`,
      );
      assert.ok(queued[bNode] > 0, `queued by node: ${queued}`);
      const late = await pages.page("late");
      const lateNode = await nodeOf(cluster, ids, async () => {
        assert.deepEqual(await start(late, options, lateId), { id: lateId });
      });
      assert.notEqual(lateNode, bNode);
      await opened;
      await send(b, await lastConnection(b), { to: "late" });
      assert.deepEqual(await inbox(late, 1), [{
        peer: bId,
        label: "json",
        data: { to: "late" },
      }]);
      await assertLoopbackPairs(late, 1);
      const delivered = await byNode(
        cluster,
        `sigver_peerjs_queue_events_total{${LABEL},event="delivered"}`,
      );
      assert.ok(delivered[bNode] > 0, `delivered by node: ${delivered}`);
    },
  );

  const held = await byNode(cluster, ids);
  assert.equal(held.reduce((x, y) => x + y), 3, `${held}`);
  assert.equal(held[bNode], 1, `${held}`);
  assert.deepEqual(
    pages.errors.filter((e) => !/unavailable-id|is taken/i.test(e)),
    [],
  );
});
