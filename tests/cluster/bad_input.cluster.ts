/**
 * A cluster node faced with bad input: forged node-to-node pipes, clients
 * that send the pipes' internal headers, and a Redis that answers garbage
 * or stalls.
 *
 * Run with `deno task test:cluster` (real redis-server and processes).
 */

import assert from "node:assert/strict";
import { type SigverNode, startCluster } from "../../dev/cluster.ts";
import { PIPE_HEADERS, PipeAuthority } from "../../lib/pipe_auth.ts";
import { decodeMessage, encodeMessage } from "../../lib/netflux/wire.ts";
import { bindTo, fromJoiner, RawSocket, TestPeer } from "../_helpers.ts";
import {
  answerHeartbeats,
  closing,
  fakeRedis,
  leases,
  newKeyServed,
  uniqueKey,
  views,
  waitFor,
} from "./_support.ts";

const OP_BINARY = 2;

/** Headers as `RawSocket` takes them. */
function _lines(headers: Record<string, string>): string[] {
  return Object.entries(headers).map(([name, value]) => `${name}: ${value}`);
}

/** An upgrade spoken by hand to a node: its status and the open socket. */
function _upgrade(
  node: SigverNode,
  path: string,
  headers: Record<string, string>,
): Promise<RawSocket> {
  return RawSocket.upgrade(
    { addr: { port: node.port } },
    path,
    _lines(headers),
  );
}

/** A member and a bound joiner on two nodes, relaying once. */
async function _relayOnce(
  member: TestPeer,
  joiner: TestPeer,
  s: number,
  round: string,
): Promise<void> {
  joiner.sendContent({ data: `up ${round}` });
  assert.deepEqual(await member.nextContent(), fromJoiner(s, `up ${round}`));
  member.sendContent({ recipientId: s, data: `down ${round}` });
  assert.equal((await joiner.nextContent()).data, `down ${round}`);
}

/** A group across two nodes: the member on `owner`, a joiner piped in. */
async function _spanningGroup(
  owner: SigverNode,
  edge: SigverNode,
  peers: TestPeer[],
): Promise<{ key: string; member: TestPeer; joiner: TestPeer; s: number }> {
  const key = uniqueKey("span");
  const member = await TestPeer.open(`${owner.url}/${key}`);
  const joiner = await TestPeer.open(`${edge.url}/${key}`);
  peers.push(member, joiner);
  assert.equal(await member.join(1), true);
  const s = await bindTo(joiner, member, 2, "hello");
  return { key, member, joiner, s };
}

Deno.test("a node-to-node upgrade with a missing or wrong signature gets 403; a signed one opens", async (t) => {
  await using cluster = await startCluster({ nodes: 1, balancer: "none" });
  const [node] = cluster.nodes;
  const key = uniqueKey("pipe");
  const path = `/${key}?favored`;
  const claims = {
    node: "forger",
    key,
    favored: true,
    client: "203.0.113.7",
    origin: null,
    owner: node.url,
  };
  const good = new PipeAuthority(cluster.secret);
  const signed = await good.sign(claims, Date.now());
  const forged: Record<string, Record<string, string>> = {
    "only x-sigver-node": { [PIPE_HEADERS.node]: "forger" },
    "no signature": { ...signed, [PIPE_HEADERS.signature]: "" },
    "a signature that is not base64url": {
      ...signed,
      [PIPE_HEADERS.signature]: "not base64!",
    },
    "signed with another secret": await new PipeAuthority("not the secret")
      .sign(claims, Date.now()),
    "a key changed after signing": {
      ...signed,
      [PIPE_HEADERS.key]: (await good.sign(
        { ...claims, key: `${key}-other` },
        Date.now(),
      ))[PIPE_HEADERS.key],
    },
    "favored changed after signing": {
      ...signed,
      [PIPE_HEADERS.favored]: "0",
    },
    "a client address changed after signing": {
      ...signed,
      [PIPE_HEADERS.client]: "198.51.100.1",
    },
    "an origin added after signing": {
      ...signed,
      [PIPE_HEADERS.origin]: "https://evil.example",
    },
    "signed a minute ago": await good.sign(claims, Date.now() - 60_000),
    "a signature for another node (a replay)": await good.sign(
      { ...claims, owner: "ws://127.0.0.1:1" },
      Date.now(),
    ),
  };
  for (const [name, headers] of Object.entries(forged)) {
    await t.step(`403 when the pipe has ${name}`, async () => {
      using raw = await _upgrade(node, path, headers);
      assert.equal(raw.status, 403, raw.head);
    });
  }
  await t.step("101 when the pipe is signed with the secret", async () => {
    using raw = await _upgrade(node, path, signed);
    assert.equal(raw.status, 101, raw.head);
    await raw.sendFrame(
      OP_BINARY,
      encodeMessage({ type: "connect", connect: { id: 1, members: [] } }),
    );
    const frame = await raw.readFrame();
    assert.equal(frame?.opcode, OP_BINARY);
    assert.deepEqual(decodeMessage(frame!.payload), {
      type: "connected",
      connected: true,
    });
    // The owner counts it as a pipe from another node.
    await waitFor(async () => (await node.view()).pipedIn === 1, "pipedIn 1");
  });
  const refusals = node.process.output.match(
    /reject reason=pipe_signature status=403/g,
  );
  assert.equal(refusals?.length, Object.keys(forged).length);
});

Deno.test("a client that sends the pipes' internal headers gets them ignored: limits count its real address and Origin", async () => {
  // Behind a proxy (--trust-proxy), the address is the last X-Forwarded-For.
  await using cluster = await startCluster({
    nodes: 2,
    balancer: "none",
    nodeArgs: [
      "--trust-proxy",
      "--max-peers-per-address",
      "1",
      "--allow-origin",
      "https://good.example",
      "--log-level",
      "debug",
    ],
  });
  const [owner, edge] = cluster.nodes;
  const key = uniqueKey("headers");
  const path = `/${key}`;
  const client = (address: string, more: Record<string, string> = {}) => ({
    "x-forwarded-for": address,
    origin: "https://good.example",
    ...more,
  });
  // Every internal header but x-sigver-node, claiming another address and
  // Origin: a client's, to be ignored.
  const internal = (address: string, origin: string) => ({
    [PIPE_HEADERS.client]: address,
    [PIPE_HEADERS.origin]: origin,
    [PIPE_HEADERS.time]: String(Date.now()),
    [PIPE_HEADERS.signature]: "AAAA",
  });

  using first = await _upgrade(
    owner,
    path,
    client("203.0.113.7", internal("198.51.100.1", "https://good.example")),
  );
  assert.equal(first.status, 101, first.head);
  // The same address, whatever the internal headers claim.
  using second = await _upgrade(
    owner,
    path,
    client("203.0.113.7", internal("198.51.100.2", "https://good.example")),
  );
  assert.equal(second.status, 429, second.head);
  // Through a pipe: the edge signs the address it saw, the owner counts it.
  using piped = await _upgrade(
    edge,
    path,
    client("203.0.113.7", internal("198.51.100.3", "https://good.example")),
  );
  assert.equal(piped.status, 429, piped.head);
  // Another address that claims the first one's is let in, as itself.
  using other = await _upgrade(
    edge,
    path,
    client("203.0.113.8", internal("203.0.113.7", "https://good.example")),
  );
  assert.equal(other.status, 101, other.head);
  // The Origin checked is the client's own, not the one it claims.
  using evil = await _upgrade(
    owner,
    path,
    client("203.0.113.9", {
      origin: "https://evil.example",
      ...internal("203.0.113.9", "https://good.example"),
    }),
  );
  assert.equal(evil.status, 403, evil.head);
  using evilPiped = await _upgrade(
    edge,
    path,
    client("203.0.113.10", {
      origin: "https://evil.example",
      ...internal("203.0.113.10", "https://good.example"),
    }),
  );
  assert.equal(evilPiped.status, 403, evilPiped.head);

  const [o, e] = await views(cluster);
  assert.deepEqual([o.owned, o.pipedIn, e.pipedOut], [1, 1, 1]);
  // The owner opened the piped peer under its own address; the logs have
  // caught up with the last refusals.
  await owner.process.waitFor(
    /DEBUG open .*addr=203\.0\.113\.8\n[^]*reject reason=origin .*addr=203\.0\.113\.9\n/,
    { what: "the piped peer's open, then the refusal of the wrong Origin" },
  );
  await edge.process.waitFor(
    /reject reason=origin .*addr=203\.0\.113\.10\n/,
    { what: "the edge's refusal of the wrong Origin" },
  );
  for (const node of cluster.nodes) {
    assert.doesNotMatch(node.process.output, /198\.51\.100\./);
    assert.doesNotMatch(node.process.output, /reason=pipe_signature/);
  }
  assert.match(
    owner.process.output,
    /reject reason=address status=429 .*addr=203\.0\.113\.7[^]*reject reason=address status=429 .*addr=203\.0\.113\.7/,
  );
});

Deno.test("a Redis that answers garbage from the start does not stop a node: it serves peers", async () => {
  await using fake = fakeRedis("garbage");
  await using cluster = await startCluster({
    nodes: 1,
    balancer: "none",
    redisUrl: fake.url,
  });
  const [node] = cluster.nodes;
  const peers: TestPeer[] = [];
  await using _peers = closing(peers);
  await newKeyServed(node, peers);
  await newKeyServed(node, peers);
  assert.ok(fake.connections > 0, "the node did talk to the fake");
  assert.equal((await node.view()).redis, "down");
  assert.equal(await node.metric("sigver_cluster_redis_up"), 0);
  assert.ok(await node.metric("sigver_cluster_redis_errors_total") > 0);
  assert.ok(await node.metric("sigver_cluster_local_while_down_total") >= 2);
  assert.ok(node.running);
});

Deno.test("a Redis replaced by one that answers garbage does not stop the nodes: existing and new peers are served", async () => {
  await using cluster = await startCluster({ nodes: 2, balancer: "none" });
  const [n0, n1] = cluster.nodes;
  const peers: TestPeer[] = [];
  await using _peers = closing(peers);
  const group = await _spanningGroup(n0, n1, peers);
  using _answer = answerHeartbeats(group.member, group.joiner);

  const port = cluster.redis!.port;
  await cluster.killRedis();
  await using fake = fakeRedis("garbage", port);
  await waitFor(() => fake.connections >= 2, "the nodes to reach the fake");
  await _relayOnce(group.member, group.joiner, group.s, "garbage");
  const { took } = await newKeyServed(n1, peers);
  // The spanning group still takes new peers through its pipe.
  const late = await TestPeer.open(`${n1.url}/${group.key}`);
  peers.push(late);
  assert.equal(await late.join(3, [1]), true);
  assert.ok(n0.running && n1.running);
  for (const node of [n0, n1]) {
    assert.equal((await node.view()).redis, "down");
  }
  await _relayOnce(group.member, group.joiner, group.s, "still");
  console.log(`a new key was served in ${took} ms with a garbage Redis`);
});

Deno.test("a stalled Redis (SIGSTOP) does not stop the nodes: existing and new peers are served, and it recovers", async () => {
  await using cluster = await startCluster({ nodes: 2, balancer: "none" });
  const [n0, n1] = cluster.nodes;
  const redis = cluster.redis!;
  const peers: TestPeer[] = [];
  await using _peers = closing(peers);
  const group = await _spanningGroup(n0, n1, peers);
  using _answer = answerHeartbeats(group.member, group.joiner);
  const before = await leases(cluster.redisUrl);
  assert.equal(before.size, 1);

  redis.pause();
  try {
    await _relayOnce(group.member, group.joiner, group.s, "stalled");
    // The first new key waits for the node's Redis timeout (1 s), then is
    // served here.
    const { took } = await newKeyServed(n1, peers);
    assert.ok(took < 3000, `a new key took ${took} ms`);
    await waitFor(async () => {
      const all = await Promise.all([n0.view(), n1.view()]);
      return all.every((view) => view.redis === "down");
    }, "the nodes to give up on Redis");
    const { took: next } = await newKeyServed(n0, peers);
    assert.ok(next < 1000, `a new key took ${next} ms once Redis is down`);
    await _relayOnce(group.member, group.joiner, group.s, "still");
    console.log(`new keys served in ${took} and ${next} ms with Redis stalled`);
  } finally {
    redis.resume();
  }
  await waitFor(async () => {
    const all = await Promise.all([n0.view(), n1.view()]);
    return all.every((view) => view.redis === "up");
  }, "the nodes to see Redis again");
  // The leases of the spanning group and of the keys served meanwhile.
  await waitFor(async () => {
    const owners = await leases(cluster.redisUrl);
    return owners.get(group.key) === before.get(group.key) && owners.size === 3;
  }, "the leases of every live group");
  await _relayOnce(group.member, group.joiner, group.s, "after");
});

Deno.test("a piped peer over the size limit is closed with 1009 at the edge, and its member hears it is gone", async () => {
  await using cluster = await startCluster({
    nodes: 2,
    balancer: "none",
    nodeArgs: ["--max-message-size", "1000"],
  });
  const [n0, n1] = cluster.nodes;
  const peers: TestPeer[] = [];
  await using _peers = closing(peers);
  const group = await _spanningGroup(n0, n1, peers);
  group.joiner.sendContent({ data: "x".repeat(900) });
  assert.equal((await group.member.nextContent()).data.length, 900);
  group.joiner.sendContent({ data: "x".repeat(2000) });
  const info = await group.joiner.waitClosed();
  assert.equal(info.code, 1009, info.reason);
  assert.deepEqual(await group.member.nextContent(), fromJoiner(group.s, ""));
  assert.match(n1.process.output, /reason=message_size|1009/);
  // The edge counts its close once, as the server's: not again when the
  // socket's close event comes back.
  assert.equal(
    await n1.metric("sigver_closes_total", 'code="1009",by="server"'),
    1,
  );
  assert.doesNotMatch(
    await n1.metrics(),
    /sigver_closes_total\{[^}]*by="client"/,
  );
});
