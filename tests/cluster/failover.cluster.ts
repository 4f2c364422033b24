/**
 * A cluster that loses a part: an owner node killed with SIGKILL while its
 * group spans nodes, and Redis killed and restarted while peers relay.
 *
 * Run with `deno task test:cluster` (real redis-server and processes).
 */

import assert from "node:assert/strict";
import { type LocalCluster, startCluster } from "../../dev/cluster.ts";
import { bindTo, fromJoiner, TestPeer, toJoiner } from "../_helpers.ts";
import {
  answerHeartbeats,
  closing,
  clusterSettled,
  leases,
  newKeyServed,
  since,
  uniqueKey,
  views,
  waitFor,
} from "./_support.ts";

const SERVICE_RESTART = 1012;

/** Waits until every running node says Redis is `state`. */
async function _redisIs(
  cluster: LocalCluster,
  state: "up" | "down",
): Promise<void> {
  await waitFor(async () => {
    const all = await Promise.all(
      cluster.nodes.filter((n) => n.running).map((n) => n.view()),
    );
    return all.every((view) => view.redis === state);
  }, `every node to see Redis ${state}`);
}

Deno.test("owner killed with SIGKILL: its piped peers get 1012, new peers are served within 2 s and the group forms again on one node", async () => {
  await using cluster = await startCluster({ nodes: 3, balancer: "none" });
  const [n0, n1, n2] = cluster.nodes;
  const key = uniqueKey("owner-killed");
  const a = await TestPeer.open(`${n0.url}/${key}`);
  const b = await TestPeer.open(`${n1.url}/${key}`);
  const c = await TestPeer.open(`${n2.url}/${key}`);
  const j = await TestPeer.open(`${n1.url}/${key}`);
  const peers = [a, b, c, j];
  await using _peers = closing(peers);
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2, [1]), true);
  assert.equal(await c.join(3, [2]), true);
  await bindTo(j, a, 4);
  const id0 = (await n0.view()).node;
  assert.equal((await leases(cluster.redisUrl)).get(key), id0);

  await cluster.killNode(0);
  const killed = performance.now();
  // Peers of the group come back at once, two on each live node, all at
  // the same time: the lease still names the dead owner, whose liveness
  // key has not expired, and both nodes race to take it over.
  const arrivals = Promise.all([n1, n1, n2, n2].map(async (node) => {
    const peer = await TestPeer.open(`${node.url}/${key}`);
    peers.push(peer);
    return { peer, at: since(killed) };
  }));
  const closes = await Promise.all(
    [b, c, j].map(async (peer) => ({
      ...await peer.waitClosed(),
      at: since(killed),
    })),
  );
  for (const close of closes) {
    assert.equal(close.code, SERVICE_RESTART, JSON.stringify(close));
    assert.match(close.reason, /reconnect/);
  }
  // A's own connection went with the process (Deno reports code 0 or 1006).
  const dropped = await a.waitClosed();
  assert.equal(dropped.wasClean, false, JSON.stringify(dropped));

  const back = await arrivals;
  for (const { at } of back) {
    assert.ok(at < 2000, `served ${at} ms after the kill`);
  }
  // One node took the lease over; the other pipes its peers there.
  const [v1, v2] = await views(cluster);
  const [owner, edge] = v1.owned === 1 ? [v1, v2] : [v2, v1];
  assert.deepEqual(
    [owner.owned, owner.pipedIn, edge.owned, edge.pipedOut],
    [1, 2, 0, 2],
    "one owner for the peers that came back to both nodes",
  );
  assert.equal((await leases(cluster.redisUrl)).get(key), owner.id);
  const takeovers = await Promise.all(
    [n1, n2].map((node) => node.metric("sigver_cluster_takeovers_total")),
  );
  assert.ok(takeovers[0] + takeovers[1] >= 1, `takeovers: ${takeovers}`);

  // The group forms again, across the two nodes.
  const [p1, p2, p3, p4] = back.map(({ peer }) => peer);
  assert.equal(await p1.join(2), true);
  assert.equal(await p3.join(3, [2]), true);
  assert.equal(await p2.join(4, [3]), true);
  const s = await bindTo(p4, p1, 5);
  p1.sendContent({ recipientId: s, data: "answer" });
  assert.deepEqual(await p4.nextContent(), toJoiner(s, "answer"));
  console.log(
    `closes after ${closes.map((c) => c.at)} ms; peers back after ${
      back.map((b) => b.at)
    } ms`,
  );
});

/**
 * Relays between a member and its joiners in rounds until `signal`: every
 * joiner sends one offer, the member answers each. Fails on any loss.
 * `count.rounds` grows with every round.
 */
async function _traffic(
  member: TestPeer,
  joiners: { peer: TestPeer; s: number }[],
  signal: AbortSignal,
  count: { rounds: number },
): Promise<void> {
  while (!signal.aborted) {
    const round = count.rounds;
    for (const { peer, s } of joiners) {
      peer.sendContent({ data: `up ${round} ${s}` });
    }
    const got: string[] = [];
    for (let i = 0; i < joiners.length; i++) {
      const content = await member.nextContent();
      got.push(`${content.senderId}:${content.data}`);
    }
    assert.deepEqual(
      got.sort(),
      joiners.map(({ s }) => `${s}:up ${round} ${s}`).sort(),
    );
    for (const { s } of joiners) {
      member.sendContent({ recipientId: s, data: `down ${round}` });
    }
    for (const { peer, s } of joiners) {
      assert.deepEqual(await peer.nextContent(), toJoiner(s, `down ${round}`));
    }
    count.rounds++;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("Redis killed and restarted during traffic: no peer dropped, new keys served, leases back", async () => {
  await using cluster = await startCluster({ nodes: 3, balancer: "none" });
  const [n0, n1, n2] = cluster.nodes;
  const key = uniqueKey("redis-down");
  const m = await TestPeer.open(`${n0.url}/${key}`);
  const b = await TestPeer.open(`${n1.url}/${key}`);
  const j1 = await TestPeer.open(`${n1.url}/${key}`);
  const j2 = await TestPeer.open(`${n2.url}/${key}`);
  const established = [m, b, j1, j2];
  const later: TestPeer[] = [];
  await using _peers = closing(established);
  await using _later = closing(later);
  using _answer = answerHeartbeats(...established);
  assert.equal(await m.join(1), true);
  assert.equal(await b.join(2, [1]), true);
  // Two joiners piped from two nodes, bound to the member on the owner.
  const joiners = [
    { peer: j1, s: await bindTo(j1, m, 3) },
    { peer: j2, s: await bindTo(j2, m, 4) },
  ];
  const id0 = (await n0.view()).node;
  const id2 = (await n2.view()).node;

  const count = { rounds: 0 };
  /** Starts relaying; the returned function stops it (and fails with it). */
  const relay = () => {
    const stop = new AbortController();
    const running = _traffic(m, joiners, stop.signal, count);
    return async () => {
      stop.abort();
      await running;
    };
  };
  /** Waits for `n` more rounds. */
  const rounds = (n: number, what: string) => {
    const target = count.rounds + n;
    return waitFor(() => count.rounds >= target, what);
  };

  let stopTraffic = relay();
  await rounds(5, "traffic before the kill");
  await cluster.killRedis();
  const killed = performance.now();
  await _redisIs(cluster, "down");
  await rounds(20, "relay across nodes without Redis");
  // Down for longer than a renewal period (a third of the 10 s lease), so
  // that the owners try to renew while Redis is gone.
  await waitFor(() => since(killed) > 3_500, "a renewal period without Redis");
  await rounds(5, "relay across nodes after a failed renewal");
  await stopTraffic();

  // A new key is served, by the node it arrives at.
  const { key: lone } = await newKeyServed(n2, later);
  // A new peer of the spanning group, on a node that pipes the group,
  // still reaches the owner.
  const j3 = await TestPeer.open(`${n1.url}/${key}`);
  later.push(j3);
  const s3 = await bindTo(j3, m, 5);
  await j3.close();
  assert.deepEqual(
    await m.nextContent(),
    fromJoiner(s3, ""),
    "M hears that J3 left",
  );
  assert.ok(await n2.metric("sigver_cluster_local_while_down_total") >= 1);
  assert.equal(await n0.metric("sigver_cluster_redis_up"), 0);

  stopTraffic = relay();
  await cluster.restartRedis();
  await _redisIs(cluster, "up");
  // The restarted Redis is empty: the nodes assert their leases again.
  let owners = new Map<string, string>();
  await waitFor(async () => {
    owners = await leases(cluster.redisUrl);
    return owners.get(key) === id0 && owners.get(lone) === id2;
  }, "the leases to come back").catch((error) => {
    throw new Error(`${error.message}: ${JSON.stringify([...owners])}`);
  });
  await rounds(5, "relay after Redis is back");
  await stopTraffic();
  for (const peer of established) {
    assert.equal(peer.isClosed, false, "no established peer was dropped");
  }
  assert.equal(await n0.metric("sigver_cluster_redis_up"), 1);

  // With Redis back, a new key's peers on two nodes meet in one group.
  const fresh = uniqueKey("after");
  const p = await TestPeer.open(`${n1.url}/${fresh}`);
  const q = await TestPeer.open(`${n2.url}/${fresh}`);
  later.push(p, q);
  assert.equal(await p.join(1), true);
  assert.equal(await q.join(2, [1]), true);
  assert.equal(
    (await leases(cluster.redisUrl)).get(fresh),
    (await n1.view()).node,
  );
  console.log(`relayed ${count.rounds} rounds across the Redis outage`);
  for (const peer of [...established, ...later]) await peer.close();
  await clusterSettled(cluster);
});

Deno.test("an edge node killed with SIGKILL: the owner keeps the group and tells the members its peers are gone", async () => {
  await using cluster = await startCluster({ nodes: 3, balancer: "none" });
  const [n0, n1, n2] = cluster.nodes;
  const key = uniqueKey("edge-killed");
  const a = await TestPeer.open(`${n0.url}/${key}`);
  const b = await TestPeer.open(`${n1.url}/${key}`);
  const j = await TestPeer.open(`${n1.url}/${key}`);
  const peers = [a, b, j];
  await using _peers = closing(peers);
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2, [1]), true);
  const s = await bindTo(j, a, 3);

  await cluster.killNode(1);
  assert.deepEqual(
    await a.nextContent(),
    fromJoiner(s, ""),
    "A hears that its joiner is gone",
  );
  for (const peer of [b, j]) {
    assert.equal((await peer.waitClosed()).wasClean, false);
  }
  // B left the group: listing it alone lets no one in; listing A does.
  const c = await TestPeer.open(`${n2.url}/${key}`);
  const d = await TestPeer.open(`${n2.url}/${key}`);
  peers.push(c, d);
  assert.equal(await c.join(4, [2]), false, "B is no member any more");
  assert.equal(await d.join(5, [1]), true, "A's group lives on");
  await waitFor(
    async () => (await n0.view()).pipedIn === 2,
    "the owner to count only node 2's pipes",
  );
  assert.equal(
    (await leases(cluster.redisUrl)).get(key),
    (await n0.view()).node,
  );
});

Deno.test("owner stopped with SIGTERM: its piped peers are closed, and a new peer is served at once by another node", async () => {
  await using cluster = await startCluster({ nodes: 2, balancer: "none" });
  const [n0, n1] = cluster.nodes;
  const key = uniqueKey("owner-stopped");
  const a = await TestPeer.open(`${n0.url}/${key}`);
  const b = await TestPeer.open(`${n1.url}/${key}`);
  const peers = [a, b];
  await using _peers = closing(peers);
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2, [1]), true);

  n0.process.signal("SIGTERM");
  const stopped = performance.now();
  assert.equal((await a.waitClosed()).code, 1001, "the owner's own peer");
  const closed = await b.waitClosed();
  // The edge mirrors the owner's 1001, or says 1012 if the pipe dropped.
  assert.ok(
    closed.code === 1001 || closed.code === 1012,
    `piped peer closed with ${closed.code} ${closed.reason}`,
  );
  const back = await TestPeer.open(`${n1.url}/${key}`);
  peers.push(back);
  assert.equal(await back.join(2), true);
  const at = since(stopped);
  assert.ok(at < 2000, `served ${at} ms after the SIGTERM`);
  const status = await n0.process.exited;
  assert.equal(status.code, 0, n0.process.output);
  assert.equal(
    (await leases(cluster.redisUrl)).get(key),
    (await n1.view()).node,
  );
});

Deno.test("while Redis is down, a node that piped a group's peer to its owner sends the group's next peer there too", async () => {
  await using cluster = await startCluster({ nodes: 2, balancer: "none" });
  const [n0, n1] = cluster.nodes;
  const key = uniqueKey("known-owner");
  const a = await TestPeer.open(`${n0.url}/${key}`);
  const b = await TestPeer.open(`${n1.url}/${key}`);
  const peers = [a, b];
  await using _peers = closing(peers);
  using _answer = answerHeartbeats(a);
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2, [1]), true, "B is piped into A's group");
  await cluster.killRedis();
  await _redisIs(cluster, "down");
  // B leaves: node 1 has no pipe to the owner left, but remembers it.
  await b.close();
  await waitFor(async () => (await n1.view()).pipedOut === 0, "B's pipe");
  const c = await TestPeer.open(`${n1.url}/${key}`);
  peers.push(c);
  // A joiner of A's group is bound (false); a second group would take it
  // as its first member (true).
  assert.equal(await c.join(3), false, "C meets A's group, no split");
  assert.equal((await n1.view()).pipedOut, 1);
});

Deno.test("a key split while Redis was down heals when it returns: the losing node's peers get 1012 and rejoin the group", async () => {
  await using cluster = await startCluster({ nodes: 2, balancer: "none" });
  const [n0, n1] = cluster.nodes;
  await cluster.killRedis();
  await _redisIs(cluster, "down");
  const key = uniqueKey("split");
  const a = await TestPeer.open(`${n0.url}/${key}`);
  const b = await TestPeer.open(`${n1.url}/${key}`);
  const peers = [a, b];
  await using _peers = closing(peers);
  using _answer = answerHeartbeats(a, b);
  // The documented risk: each node owns the key, two groups under one key.
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2), true, "B starts a second group on node 1");

  await cluster.restartRedis();
  const restarted = performance.now();
  // Both nodes assert their lease; the second finds the first's.
  const loser = await Promise.race([
    a.waitClosed(15_000).then((info) => ({ peer: a, node: n0, info })),
    b.waitClosed(15_000).then((info) => ({ peer: b, node: n1, info })),
  ]);
  assert.equal(loser.info.code, SERVICE_RESTART, JSON.stringify(loser.info));
  const winner = loser.peer === a
    ? { peer: b, node: n1, id: 2 }
    : { peer: a, node: n0, id: 1 };
  assert.equal(winner.peer.isClosed, false);
  assert.equal(await loser.node.metric("sigver_cluster_lost_leases_total"), 1);
  // The loser's peer comes back to its node, which now pipes it to the
  // winner: one group again.
  const again = await TestPeer.open(`${loser.node.url}/${key}`);
  peers.push(again);
  assert.equal(await again.join(7, [winner.id]), true);
  assert.equal((await loser.node.view()).pipedOut, 1);
  assert.equal(
    (await leases(cluster.redisUrl)).get(key),
    (await winner.node.view()).node,
  );
  console.log(`the split healed ${since(restarted)} ms after Redis returned`);
});

Deno.test("a frozen owner (SIGSTOP): a new peer is served by takeover within 2 s, and the stale group closes with 1012 once the owner wakes", async () => {
  await using cluster = await startCluster({ nodes: 2, balancer: "none" });
  const [n0, n1] = cluster.nodes;
  const key = uniqueKey("frozen");
  const a = await TestPeer.open(`${n0.url}/${key}`);
  const b = await TestPeer.open(`${n1.url}/${key}`);
  const peers = [a, b];
  await using _peers = closing(peers);
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2, [1]), true);

  n0.process.signal("SIGSTOP");
  try {
    // The frozen owner accepts TCP but answers nothing: the pipe times out.
    const frozen = performance.now();
    const c = await TestPeer.open(`${n1.url}/${key}`);
    peers.push(c);
    assert.equal(await c.join(3), true, "C starts the group on node 1");
    const at = since(frozen);
    assert.ok(at < 2000, `served ${at} ms after the owner froze`);
    assert.equal(
      (await leases(cluster.redisUrl)).get(key),
      (await n1.view()).node,
    );
  } finally {
    n0.process.signal("SIGCONT");
  }
  // Awake, the old owner finds its lease taken and closes its group.
  const woke = performance.now();
  for (const peer of [a, b]) {
    const info = await peer.waitClosed(15_000);
    assert.equal(info.code, SERVICE_RESTART, JSON.stringify(info));
  }
  console.log(`the stale group closed ${since(woke)} ms after the owner woke`);
  assert.equal(await n0.metric("sigver_cluster_lost_leases_total"), 1);
  // B's pipe into the old owner is gone, and its gauge says so.
  await waitFor(
    async () => (await n0.view()).pipedIn === 0,
    "no peer piped into the old owner",
  );
  const b2 = await TestPeer.open(`${n1.url}/${key}`);
  peers.push(b2);
  assert.equal(await b2.join(2, [3]), true, "B rejoins the group on node 1");
});

Deno.test("an owner restarted on its address after SIGKILL (as a process manager does): a peer of its old group is served within 2 s", async () => {
  await using cluster = await startCluster({ nodes: 2, balancer: "none" });
  const [, n1] = cluster.nodes;
  const key = uniqueKey("restarted");
  const a = await TestPeer.open(`${cluster.nodes[0].url}/${key}`);
  const peers = [a];
  await using _peers = closing(peers);
  assert.equal(await a.join(1), true);

  // The new process listens where the old one did, with a new node id; the
  // lease still names the old id, whose liveness key lives on for 5 s.
  const n0 = await cluster.restartNode(0);
  const restarted = performance.now();
  assert.equal((await a.waitClosed()).wasClean, false);
  const refusals: string[] = [];
  let served: { node: string; at: number } | undefined;
  for (let i = 0; i < 100 && served === undefined; i++) {
    for (const node of [n1, n0]) {
      const peer = new TestPeer(`${node.url}/${key}`);
      peers.push(peer);
      try {
        await peer.opened;
        assert.equal(await peer.join(1), true);
        served = { node: `node ${node.index}`, at: since(restarted) };
        break;
      } catch {
        refusals.push(`node ${node.index} at ${since(restarted)} ms`);
      }
    }
    if (served === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  assert.ok(served, `never served: refused by ${refusals.join(", ")}`);
  assert.ok(
    served.at < 2000,
    `first served by ${served.node} ${served.at} ms after the restart; refused before by ${
      refusals.slice(0, 4).join(", ")
    }... (${refusals.length} refusals)`,
  );
});
