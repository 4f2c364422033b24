/**
 * The cluster behind nginx, configured with the upstream blocks of
 * `docs/scaling.md` as they are written there (`dev/cluster.ts` reads them):
 * key affinity with `hash`, plain round robin, a node added with a reload,
 * and a node killed under the balancer.
 *
 * Run with `deno task test:cluster` (real redis-server, nginx and
 * processes).
 */

import assert from "node:assert/strict";
import { startCluster } from "../../dev/cluster.ts";
import { bindTo, TestPeer, toJoiner } from "../_helpers.ts";
import { relaySession } from "../dist/_session.ts";
import {
  answerHeartbeats,
  closing,
  clusterSettled,
  leases,
  since,
  uniqueKey,
  views,
} from "./_support.ts";

/** The HTTP status nginx answers a plain GET of `path` with. */
async function _status(base: string, path: string): Promise<number> {
  const response = await fetch(`${base}${path}`, {
    signal: AbortSignal.timeout(10_000),
  });
  await response.body?.cancel();
  return response.status;
}

Deno.test("hash balancer sends every peer of a key to one node, whatever its query or token", async () => {
  await using cluster = await startCluster({ nodes: 3, balancer: "hash" });
  const balancer = cluster.balancer!;
  const keys = Array.from({ length: 12 }, (_, i) => uniqueKey(`affinity${i}`));
  const nodes = new Set<number>();
  for (const key of keys) {
    const port = await balancer.upstreamOf(`/${key}`);
    nodes.add(port);
    for (
      const path of [
        `/${key}?favored`,
        `/t/v1.1.cm9vbQ.c2ln/${key}`,
        `/t/other-token/${key}?favored&x=1`,
      ]
    ) {
      assert.equal(await balancer.upstreamOf(path), port, path);
    }
  }
  assert.ok(nodes.size >= 2, `12 keys hash to ${nodes.size} node(s)`);

  // Peers of a group that come through the balancer all land on its owner:
  // no pipes.
  const peers: TestPeer[] = [];
  await using _peers = closing(peers);
  for (const key of keys.slice(0, 6)) {
    const url = `${balancer.url}/${key}`;
    const [m, j, f] = [
      await TestPeer.open(url),
      await TestPeer.open(url),
      await TestPeer.open(`${url}?favored`),
    ];
    peers.push(m, j, f);
    assert.equal(await m.join(1), true);
    assert.equal(await j.join(2, [1]), true);
    assert.equal(await f.join(3, [2]), true);
  }
  const all = await views(cluster);
  assert.deepEqual(all.map((v) => v.pipedOut), [0, 0, 0], "no pipes");
  assert.equal(all.reduce((n, v) => n + v.owned, 0), 6);
  assert.deepEqual(all.map((v) => v.pipedIn), [0, 0, 0]);

  await relaySession(`${balancer.url}/`);
  // Each node's view and metrics stay off the proxy.
  assert.equal(await _status(balancer.http, "/cluster"), 403);
  assert.equal(await _status(balancer.http, "/metrics"), 403);
  assert.equal(await _status(balancer.http, "/healthz"), 200);
});

Deno.test("round-robin balancer spreads a group's peers over the nodes and they still form one group", async () => {
  await using cluster = await startCluster({
    nodes: 3,
    balancer: "round-robin",
  });
  const balancer = cluster.balancer!;
  const key = uniqueKey("round-robin");
  const url = `${balancer.url}/${key}`;
  const peers: TestPeer[] = [];
  await using _peers = closing(peers);
  for (let i = 0; i < 6; i++) peers.push(await TestPeer.open(url));
  const [m, ...others] = peers;
  assert.equal(await m.join(1), true);
  for (const [i, peer] of others.slice(0, 4).entries()) {
    assert.equal(await peer.join(2 + i, [1]), true, `member ${2 + i}`);
  }
  const joiner = others[4];
  const s = await bindTo(joiner, m, 9);
  m.sendContent({ recipientId: s, data: "answer" });
  assert.equal((await joiner.nextContent()).data, "answer");

  // Six upgrades in turn over three nodes: one owns the group, the two
  // others pipe their peers to it.
  const all = await views(cluster);
  assert.deepEqual(
    all.map((v) => v.owned + v.pipedOut).sort(),
    [1, 2, 2],
    JSON.stringify(all.map(({ owned, pipedIn, pipedOut }) => ({
      owned,
      pipedIn,
      pipedOut,
    }))),
  );
  assert.equal(all.reduce((n, v) => n + v.pipedIn, 0), 4);
  await relaySession(`${balancer.url}/`);
  for (const peer of peers) await peer.close();
  await clusterSettled(cluster);
});

Deno.test("a node added behind the hash balancer does not split a live group: a joiner that lands on it joins the group", async () => {
  await using cluster = await startCluster({ nodes: 3, balancer: "hash" });
  const balancer = cluster.balancer!;
  // Adding a fourth node moves about a quarter of the keys to it; with 48
  // live groups, some move (all stay put with odds of about 1 in 10^6).
  const keys = Array.from({ length: 48 }, (_, i) => uniqueKey(`grow${i}`));
  const members = new Map<string, TestPeer>();
  const peers: TestPeer[] = [];
  await using _peers = closing(peers);
  for (const key of keys) {
    const member = await TestPeer.open(`${balancer.url}/${key}`);
    members.set(key, member);
    peers.push(member);
    assert.equal(await member.join(1), true);
  }
  using _answer = answerHeartbeats(...members.values());
  const before = await views(cluster);
  assert.deepEqual(before.map((v) => v.pipedOut), [0, 0, 0]);
  assert.equal(before.reduce((n, v) => n + v.owned, 0), keys.length);

  const added = await cluster.addNode();
  const moved: string[] = [];
  for (const key of keys) {
    if (await balancer.upstreamOf(`/${key}`) === added.port) moved.push(key);
  }
  assert.ok(moved.length > 0, "no key hashes to the new node");

  for (const key of moved) {
    const joiner = await TestPeer.open(`${balancer.url}/${key}`);
    peers.push(joiner);
    // A split group would make the joiner a member of a new group (true).
    assert.equal(await joiner.join(2), false, `${key}: bound to the member`);
    joiner.sendContent({ data: "offer" });
    const member = members.get(key)!;
    const offer = await member.nextContent();
    assert.equal(offer.data, "offer");
    member.sendContent({ recipientId: offer.senderId, data: "answer" });
    assert.deepEqual(
      await joiner.nextContent(),
      toJoiner(offer.senderId, "answer"),
    );
    assert.equal(await joiner.join(2, [1]), true, `${key}: joins the group`);
  }
  const view = await added.view();
  assert.equal(view.pipedOut, moved.length, "the new node pipes each joiner");
  assert.equal(view.ownedGroups, 0, "and owns no group");
  const after = await views(cluster);
  assert.equal(after.reduce((n, v) => n + v.owned, 0), keys.length);
  const owners = await leases(cluster.redisUrl);
  assert.equal(owners.size, keys.length);
  assert.ok(![...owners.values()].includes(view.node));
  console.log(`${moved.length} of ${keys.length} keys moved to the new node`);
  for (const peer of peers) await peer.close();
  await clusterSettled(cluster);
});

Deno.test("a node killed behind the hash balancer: its keys are served at once by the next node", async () => {
  await using cluster = await startCluster({ nodes: 3, balancer: "hash" });
  const balancer = cluster.balancer!;
  const key = uniqueKey("balanced-kill");
  const port = await balancer.upstreamOf(`/${key}`);
  const index = cluster.nodes.findIndex((node) => node.port === port);
  const peers: TestPeer[] = [];
  await using _peers = closing(peers);
  const m = await TestPeer.open(`${balancer.url}/${key}`);
  peers.push(m);
  assert.equal(await m.join(1), true);

  await cluster.killNode(index);
  const killed = performance.now();
  const dropped = await m.waitClosed();
  assert.equal(dropped.wasClean, false, JSON.stringify(dropped));
  const back = await TestPeer.open(`${balancer.url}/${key}`);
  peers.push(back);
  assert.equal(await back.join(1), true);
  const at = since(killed);
  assert.ok(at < 2000, `served ${at} ms after the kill`);
  const other = await TestPeer.open(`${balancer.url}/${key}`);
  peers.push(other);
  assert.equal(await other.join(2, [1]), true, "the group forms again");
  const all = await views(cluster);
  assert.deepEqual(all.map((v) => v.pipedOut), [0, 0], "one node took it");
  const owner = await cluster.nodeWithId(
    (await leases(cluster.redisUrl)).get(key)!,
  );
  assert.notEqual(owner.port, port);
});
