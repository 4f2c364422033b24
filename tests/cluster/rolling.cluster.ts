/**
 * A rolling restart behind the round-robin balancer of `docs/scaling.md`:
 * 20 groups of 3 peers that reconnect whenever they lose their socket stay
 * on while every node in turn is stopped with SIGTERM (it drains) and
 * started again on its port, as a process manager does. nginx must never
 * run out of live upstreams: with `max_fails=0` on every server it does not
 * mark a node down for one refused connection in its restart gap, so every
 * peer is back, and every key is one group again, within seconds of the last
 * restart.
 *
 * Run with `deno task test:cluster` (real redis-server, nginx and
 * processes).
 */

import assert from "node:assert/strict";
import { startCluster } from "../../dev/cluster.ts";
import { ReconnectingPeer } from "../../dev/reconnecting_peer.ts";
import { TestPeer } from "../_helpers.ts";
import { since, uniqueKey, waitFor } from "./_support.ts";

/** Groups that stay on through the restart. */
const GROUPS = 20;
/** Members of each group, with the group ids 1..MEMBERS. */
const MEMBERS = 3;
/** Milliseconds after the last restart by which every peer must be back. */
const BACK_WITHIN = 5_000;

/**
 * The members a newcomer of `url` meets: it joins with no member of its own,
 * is bound to a member, asks it who it is, and joins again, once per member
 * (the server binds it to each member in turn, as a Netflux joiner that
 * gives up on one).
 *
 * @param url The group's URL.
 * @returns The group ids that answered, in order.
 */
async function _membersMet(url: string): Promise<number[]> {
  await using probe = await TestPeer.open(url);
  const met: number[] = [];
  for (let i = 0; i < MEMBERS; i++) {
    assert.equal(await probe.join(100), false, `${url}: a group to join`);
    probe.sendContent({ data: "who are you?" });
    const { data } = await probe.nextContent();
    met.push(Number(/^member (\d+)$/.exec(data)?.[1]));
  }
  return met;
}

/** Every peer connected, with how many are not. */
function _down(peers: readonly ReconnectingPeer[]): number {
  return peers.filter((peer) => !peer.connected).length;
}

Deno.test("a rolling SIGTERM restart behind the round-robin balancer: every peer is back in one group per key within seconds", async () => {
  await using cluster = await startCluster({
    nodes: 3,
    balancer: "round-robin",
  });
  const balancer = cluster.balancer!;
  const urls = Array.from(
    { length: GROUPS },
    (_, i) => `${balancer.url}/${uniqueKey(`rolling${i}`)}`,
  );
  const ids = Array.from({ length: MEMBERS }, (_, i) => i + 1);
  const peers = urls.flatMap((url) =>
    ids.map((id) =>
      new ReconnectingPeer(url, {
        id,
        members: ids.filter((other) => other !== id),
      })
    )
  );
  await using _peers = {
    async [Symbol.asyncDispose]() {
      await Promise.all(peers.map((peer) => peer[Symbol.asyncDispose]()));
    },
  };
  for (const peer of peers) peer.start();
  await waitFor(() => _down(peers) === 0, "every peer to join");
  for (const url of urls) {
    assert.deepEqual((await _membersMet(url)).sort(), ids, url);
  }

  const rolled: string[] = [];
  for (const node of [...cluster.nodes]) {
    const start = performance.now();
    const end = await node.process.stop();
    assert.equal(end.code, 0, `node ${node.index} drains and exits 0`);
    const restarted = await cluster.restartNode(node.index);
    assert.equal(restarted.port, node.port);
    rolled.push(
      `node ${node.index}: ${since(start)} ms from SIGTERM to listening again`,
    );
  }
  const last = performance.now();
  try {
    await waitFor(
      () => _down(peers) === 0,
      "every peer to be back",
      BACK_WITHIN,
    );
  } catch (error) {
    throw new Error(
      `${_down(peers)} of ${peers.length} peers not back ${since(last)} ms ` +
        `after the last restart: ${(error as Error).message}\n` +
        (await Deno.readTextFile(`${balancer.dir}/access.log`).catch(() => ""))
          .split("\n").filter((l) => / 502$/.test(l)).length +
        " upgrades answered 502 by nginx",
    );
  }
  const back = since(last);
  // One group per key: a newcomer meets all three members.
  for (const url of urls) {
    assert.deepEqual((await _membersMet(url)).sort(), ids, url);
  }
  const stats = peers.map((peer) => peer.stats);
  const longest = Math.max(...stats.map((s) => s.longestGap));
  const refused = stats.reduce((n, s) => n + s.refused, 0);
  const drops = stats.reduce((n, s) => n + s.drops, 0);
  assert.ok(drops >= peers.length, `every peer was dropped (${drops})`);
  console.log(
    `${rolled.join("; ")}; every peer back ${back} ms after the last ` +
      `restart; ${drops} drops, ${refused} refused attempts, longest gap ` +
      `${Math.round(longest)} ms`,
  );
});
