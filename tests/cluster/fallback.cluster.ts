/**
 * The WebSocket-free fallback on a cluster: a fallback peer that arrives at
 * a node that does not own its group is piped to the owner like a
 * WebSocket peer, and relays with the owner's own peers both ways; the
 * owner's closes come down its stream as close events.
 *
 * The fallback is spoken by hand (`tests/_sse_peer.ts`), as in
 * `tests/fallback_test.ts`, its heartbeats answered as they come. Run with
 * `deno task test:cluster` (real redis-server and processes).
 */

import assert from "node:assert/strict";
import { startCluster } from "../../dev/cluster.ts";
import { encodeMessage } from "../../lib/netflux/wire.ts";
import { bindTo, fromJoiner, TestPeer, toJoiner } from "../_helpers.ts";
import { SsePeer } from "../_sse_peer.ts";
import {
  answerHeartbeats,
  clusterSettled,
  uniqueKey,
  views,
} from "./_support.ts";

/** A fallback peer on `base` (a node, a balancer) that answers heartbeats. */
function openFallback(base: string, path: string): Promise<SsePeer> {
  return SsePeer.open(base, path, { answerHeartbeats: true });
}

Deno.test("a fallback peer on an edge node is piped to the owner and relays with its WebSocket peer", async (t) => {
  await using cluster = await startCluster({ nodes: 2, balancer: "none" });
  const [owner, edge] = cluster.nodes;
  const key = uniqueKey("sse");
  // The first peer makes its node the owner of the key.
  await using member = await TestPeer.open(`${owner.url}/${key}`);
  using _answer = answerHeartbeats(member);
  assert.equal(await member.join(1), true);

  await t.step("join, bind, relay both ways, gone", async () => {
    const joiner = await openFallback(edge.http, `/${key}`);
    const [ownerView, edgeView] = await views(cluster);
    assert.equal(edgeView.pipedOut, 1, "the edge pipes the session");
    assert.equal(ownerView.pipedIn, 1, "the owner holds it");
    const s = await bindTo(joiner, member, 2, "offer");
    member.sendContent({ recipientId: s, data: "answer" });
    assert.deepEqual(await joiner.nextContent(), toJoiner(s, "answer"));
    assert.equal(await joiner.join(2, [1]), true);
    await joiner[Symbol.asyncDispose]();
    assert.deepEqual(await member.nextContent(), fromJoiner(s, ""));
  });

  await t.step("the owner's close comes down the edge's stream", async () => {
    await using peer = await openFallback(edge.http, `/${key}`);
    const { status, text } = await peer.post(new Uint8Array([0xff, 0xff]));
    assert.equal(status, 204, text);
    const close = await peer.stream.closeAtEnd();
    assert.equal(close?.code, 4743);
  });

  await member.close();
  await clusterSettled(cluster);
});

Deno.test("a fallback session's POSTs and DELETE reach it from any node", async (t) => {
  await using cluster = await startCluster({ nodes: 3, balancer: "none" });
  const [home, second, third] = cluster.nodes;
  const key = uniqueKey("sse");
  await using member = await TestPeer.open(`${home.url}/${key}`);
  using _answer = answerHeartbeats(member);
  assert.equal(await member.join(1), true);
  const peer = await openFallback(home.http, `/${key}`);

  await t.step("frames POSTed to other nodes reach the session", async () => {
    // As a round-robin balancer would spread them: the connect through one
    // node, the content (below) through another.
    const connect = await peer.post(
      encodeMessage({ type: "connect", connect: { id: 2, members: [] } }),
      peer.sessionUrl(`${second.http}/${key}`),
    );
    assert.equal(connect.status, 204, connect.text);
    assert.deepEqual(await peer.next(), {
      type: "connected",
      connected: false,
    });
    const content = await peer.post(
      encodeMessage({
        type: "content",
        content: {
          senderId: 0,
          recipientId: 0,
          lastData: false,
          data: new TextEncoder().encode("offer"),
        },
      }),
      peer.sessionUrl(`${third.http}/${key}`),
    );
    assert.equal(content.status, 204);
    assert.equal((await member.nextContent()).data, "offer");
  });

  await t.step(
    "another node answers 403 and 404 as the session's own would",
    async () => {
      const frame = new Uint8Array([0x08, 0x01]);
      const other = await peer.post(
        frame,
        peer.sessionUrl(`${second.http}/other`),
      );
      assert.equal(other.status, 403, other.text);
      const forged = peer.id.slice(0, 16) + "AAAAAAAAAAAAAAAA";
      const unknown = await peer.post(
        frame,
        `${second.http}/${key}?session=${forged}`,
      );
      assert.equal(unknown.status, 404, unknown.text);
    },
  );

  await t.step("a DELETE through another node ends it", async () => {
    const deleted = await peer.delete(peer.sessionUrl(`${second.http}/${key}`));
    assert.equal(deleted, 204);
    assert.equal(
      await peer.stream.closeAtEnd(),
      undefined,
      "no close event on DELETE",
    );
    const gone = await member.nextContent();
    assert.equal(gone.data, "", "the member hears the joiner is gone");
  });
  await peer[Symbol.asyncDispose]();
  await member.close();
  await clusterSettled(cluster);
});

Deno.test("a fallback session works through a round-robin balancer", async () => {
  await using cluster = await startCluster({
    nodes: 3,
    balancer: "round-robin",
  });
  const balancer = cluster.balancer!;
  const key = uniqueKey("sse");
  await using member = await TestPeer.open(`${balancer.url}/${key}`);
  using _answer = answerHeartbeats(member);
  assert.equal(await member.join(1), true);
  await using joiner = await openFallback(balancer.http, `/${key}`);
  // Every request goes to the next node: the session's own on one in three.
  assert.equal(await joiner.join(2), false);
  for (let i = 0; i < 6; i++) {
    await joiner.sendContent({ data: `offer ${i}` });
    assert.equal((await member.nextContent()).data, `offer ${i}`);
  }
  assert.equal(await joiner.join(2, [1]), true);
  await joiner[Symbol.asyncDispose]();
  await member.close();
  await clusterSettled(cluster);
});
