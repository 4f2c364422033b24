/**
 * End-to-end tests of the wire contract (`PROTOCOL.md`) over real sockets
 * against a real server: one test per rule.
 *
 * Signaling ids are random, so tests learn a joiner's id from what its
 * member receives. "Nothing arrives" is never checked by waiting: the test
 * waits until the server has counted the message as dropped, then sends a
 * marker on the same path and checks that the marker is the next message.
 *
 * The server runs on a `ManualClock`: a close it starts goes out on a
 * scheduler tick, so tests drive the clock until the socket closed
 * (`closedBy`), and heartbeat tests advance it by whole periods.
 */

import assert from "node:assert/strict";
import {
  closedBy,
  driven,
  httpUrl,
  parseClose,
  peersOpen,
  peerUrl,
  RawSocket,
  settled,
  startServer,
  TestPeer,
  waitFor,
} from "./_helpers.ts";
import type { SigverServer } from "../serve.ts";

const ERR_KEY = 4741;
const ERR_HEARTBEAT = 4742;
const ERR_MESSAGE = 4743;
const ERR_BLOCKING_MEMBER = 4744;
const ERR_URL = 4745;

/** The default heartbeat period (ms): a silent peer is closed after three. */
const BEAT = 5000;

/** Opens a peer on `path` of `server`. */
function open(
  server: SigverServer,
  path = "/room",
  keepHeartbeats = false,
): Promise<TestPeer> {
  return TestPeer.open(peerUrl(server, path), { keepHeartbeats });
}

/** Waits until the server has dropped `n` more content messages. */
async function droppedMore(
  server: SigverServer,
  before: number,
  n: number,
): Promise<void> {
  await waitFor(
    () => server.handler.hub.counters.dropped >= before + n,
    `${n} dropped content message(s)`,
  );
  assert.equal(server.handler.hub.counters.dropped, before + n);
}

/**
 * Binds a fresh joiner to the only member of `path` and returns the
 * joiner's signaling id as the member sees it.
 */
async function bindTo(
  joiner: TestPeer,
  member: TestPeer,
  id: number,
  hello = "offer",
): Promise<number> {
  assert.equal(await joiner.join(id), false);
  joiner.sendContent({ data: hello });
  const got = await member.nextContent();
  assert.equal(got.data, hello);
  return got.senderId;
}

/** Asserts every number of the server's state is 0 and no socket is held. */
function assertEmpty(server: SigverServer): void {
  for (const [name, value] of Object.entries(server.handler.stats())) {
    assert.equal(value, 0, `stats().${name}`);
  }
  assert.equal(server.handler.connections, 0, "connections");
}

// Close codes

Deno.test("server closes with 4741 after the socket opened when the key is empty", async (t) => {
  await using server = startServer();
  for (const path of ["/", "/?favored", "/?a=1"]) {
    await t.step(path, async () => {
      const peer = new TestPeer(peerUrl(server, path));
      await peer.opened; // an HTTP error would reject: the socket opened
      const { code } = await closedBy(server, peer);
      assert.equal(code, ERR_KEY);
    });
  }
  await settled(server);
  assertEmpty(server);
});

Deno.test("server closes with 4741 after the socket opened when the key is longer than 512 characters", async (t) => {
  await using server = startServer();
  await t.step("513 characters", async () => {
    const peer = new TestPeer(peerUrl(server, "/" + "k".repeat(513)));
    await peer.opened;
    assert.equal((await closedBy(server, peer)).code, ERR_KEY);
  });
  await t.step(
    "171 percent-encoded bytes, measured as they arrive",
    async () => {
      const peer = new TestPeer(peerUrl(server, "/" + "%41".repeat(171)));
      await peer.opened;
      assert.equal((await closedBy(server, peer)).code, ERR_KEY);
    },
  );
  await t.step("512 characters is accepted", async () => {
    await using peer = await open(server, "/" + "k".repeat(512));
    assert.equal(await peer.join(1), true);
  });
  await settled(server);
  assertEmpty(server);
});

Deno.test("server closes with 4743 when a peer sends a text frame", async () => {
  await using server = startServer();
  await using peer = await open(server);
  assert.equal(await peer.join(1), true);
  peer.sendRaw("hello");
  const { code } = await closedBy(server, peer);
  assert.equal(code, ERR_MESSAGE);
  await settled(server);
  assertEmpty(server);
});

Deno.test("server closes with 4743 when a frame does not decode", async (t) => {
  await using server = startServer();
  const frames: Record<string, number[]> = {
    "truncated content": [0x12, 0x05, 0x08],
    "varint longer than 10 bytes": [0x08, ...Array(10).fill(0xff), 0x01],
    "wire type not matching the field": [0x0a, 0x00],
    "truncated tag": [0x80],
    "field number 0": [0x00, 0x01],
  };
  for (const [name, bytes] of Object.entries(frames)) {
    await t.step(name, async () => {
      await using peer = await open(server);
      peer.sendRaw(new Uint8Array(bytes));
      assert.equal((await closedBy(server, peer)).code, ERR_MESSAGE);
    });
  }
  await settled(server);
  assertEmpty(server);
});

Deno.test("server closes with 4743 when a message has no type", async (t) => {
  await using server = startServer();
  const frames: Record<string, number[]> = {
    "empty frame": [],
    "unknown varint field only": [0x28, 0x01],
    "unknown length-delimited field only": [0x2a, 0x01, 0x00],
  };
  for (const [name, bytes] of Object.entries(frames)) {
    await t.step(name, async () => {
      await using peer = await open(server);
      peer.sendRaw(new Uint8Array(bytes));
      assert.equal((await closedBy(server, peer)).code, ERR_MESSAGE);
    });
  }
  await settled(server);
  assertEmpty(server);
});

Deno.test("server closes with 4745 after the socket opened when the request URL has no path", async () => {
  // Browsers always send a path; an absolute-form request target without
  // one (`GET http://host?x`) is the only unparseable URL that reaches the
  // handler. The other 4745 case, a send that throws, cannot be triggered
  // from outside: Deno's `WebSocket.send` does not throw on an open socket.
  await using server = startServer();
  using raw = await RawSocket.upgrade(
    server,
    `http://127.0.0.1:${server.addr.port}?favored`,
  );
  assert.equal(raw.status, 101);
  const frame = await driven(server, raw.readFrame(), "the close frame");
  assert.equal(frame?.opcode, 8);
  assert.equal(parseClose(frame!.payload).code, ERR_URL);
  await raw.sendFrame(8, frame!.payload.subarray(0, 2));
  await settled(server);
  assertEmpty(server);
});

Deno.test("server closes with 4744 the only member when a joiner that tried it connects again", async () => {
  await using server = startServer();
  await using m = await open(server);
  await using j = await open(server);
  assert.equal(await m.join(1), true);
  const s = await bindTo(j, m, 2);
  // J tried M and M still is the only member: J replaces it.
  assert.equal(await j.join(2), true);
  const { code } = await closedBy(server, m);
  assert.equal(code, ERR_BLOCKING_MEMBER);
  // J was still listening to M, so it hears that M is gone.
  assert.deepEqual(await j.nextContent(), {
    senderId: 0,
    recipientId: s,
    lastData: false,
    data: "",
  });
  // J is now the member, with its own group id.
  await using k = await open(server);
  assert.equal(await k.join(3, [2]), true);
  assert.equal(server.handler.stats().members, 2);
});

// Heartbeat

Deno.test("server sends exactly two heartbeats then closes with 4742 when a peer is silent", async () => {
  await using server = startServer();
  await using peer = await open(server, "/room", true);
  await peersOpen(server, 1);
  server.clock.advance(2 * BEAT);
  // Two periods missed: two heartbeats, and the peer is still in.
  assert.equal(server.handler.hub.counters.outHeartbeat, 2);
  assert.equal(server.handler.stats().peers, 1);
  assert.deepEqual(await peer.next(), { type: "heartbeat", heartbeat: true });
  assert.deepEqual(await peer.next(), { type: "heartbeat", heartbeat: true });
  // The third closes it instead of sending a third heartbeat; a silent
  // socket closes on that very tick, no more clock needed.
  server.clock.advance(BEAT);
  assert.equal(server.handler.stats().peers, 0, "closed on the third period");
  const { code } = await peer.waitClosed();
  assert.equal(code, ERR_HEARTBEAT);
  assert.equal(peer.heartbeats, 2);
  assert.equal(peer.pending, 0);
  assert.equal(server.handler.hub.counters.outHeartbeat, 2);
  await settled(server);
  assertEmpty(server);
});

Deno.test("server keeps a peer open when it answers every heartbeat", async (t) => {
  for (const value of [true, false]) {
    await t.step(`answering ${value}`, async () => {
      await using server = startServer();
      await using peer = await open(server, "/room", true);
      await peersOpen(server, 1);
      const counters = server.handler.hub.counters;
      // Five periods: more than the three that close a silent peer, so
      // each answer reset the count.
      for (let i = 1; i <= 5; i++) {
        server.clock.advance(BEAT);
        assert.deepEqual(await peer.next(), {
          type: "heartbeat",
          heartbeat: true,
        });
        peer.sendHeartbeat(value);
        await waitFor(
          () => counters.inHeartbeat === i,
          `the server to count answer ${i}`,
        );
      }
      assert.equal(peer.heartbeats, 5);
      assert.equal(server.handler.stats().peers, 1);
      assert.equal(peer.isClosed, false);
    });
  }
});

Deno.test("server resets the missed count when a heartbeat arrives at the last moment", async () => {
  await using server = startServer();
  await using peer = await open(server, "/room", true);
  await peersOpen(server, 1);
  // Two periods missed, and the third ends on the next tick.
  server.clock.advance(3 * BEAT - 100);
  await peer.next();
  await peer.next();
  // This answer resets the count to 0 just in time.
  peer.sendHeartbeat();
  await waitFor(
    () => server.handler.hub.counters.inHeartbeat === 1,
    "the server to count the answer",
  );
  // The third period now counts one missed: a heartbeat, not a close.
  server.clock.advance(100);
  assert.equal(server.handler.stats().peers, 1);
  assert.equal(server.handler.hub.counters.outHeartbeat, 3);
  assert.deepEqual(await peer.next(), { type: "heartbeat", heartbeat: true });
  // Silent again: closed two periods later, after one more heartbeat.
  server.clock.advance(2 * BEAT);
  assert.equal(server.handler.stats().peers, 0, "closed on the third period");
  const { code } = await peer.waitClosed();
  assert.equal(code, ERR_HEARTBEAT);
  assert.equal(peer.heartbeats, 4);
});

Deno.test("server does not reset the missed count when a peer sends other messages", async () => {
  await using server = startServer();
  await using peer = await open(server, "/room", true);
  await peersOpen(server, 1);
  const counters = server.handler.hub.counters;
  // Every message but a heartbeat, twice per period, for three periods.
  for (let i = 1; i <= 6; i++) {
    peer.send({ type: "connect", connect: { id: 1, members: [] } });
    peer.sendContent({ data: "x" });
    peer.send({ type: "connected", connected: true });
    await waitFor(
      () => counters.inConnected === i,
      `the server to read chatter ${i}`,
    );
    server.clock.advance(BEAT / 2);
  }
  assert.equal(server.handler.stats().peers, 0, "closed on the third period");
  const { code } = await peer.waitClosed();
  assert.equal(code, ERR_HEARTBEAT);
  assert.equal(peer.heartbeats, 2);
  assert.equal(counters.inConnect, 6, "it did chatter");
  assert.equal(counters.inHeartbeat, 0);
});

// Membership

Deno.test("connect creates the group and replies true when the key has no group", async () => {
  await using server = startServer();
  await using a = await open(server);
  assert.equal(await a.join(7), true);
  const { groups, members } = server.handler.stats();
  assert.deepEqual({ groups, members }, { groups: 1, members: 1 });
});

Deno.test("connect replies true when the only member asks again", async () => {
  await using server = startServer();
  await using a = await open(server);
  assert.equal(await a.join(1), true);
  assert.equal(await a.join(1, [42]), true);
  assert.equal(await a.join(1), true);
  assert.equal(server.handler.stats().members, 1);
});

Deno.test("connect adds the peer when it lists the only member", async () => {
  await using server = startServer();
  await using a = await open(server);
  await using b = await open(server);
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2, [9, 1]), true);
  assert.equal(server.handler.stats().members, 2);
  assert.equal(server.handler.stats().bindings, 0);
});

Deno.test("connect adds the peer when it lists any member of a larger group", async () => {
  await using server = startServer();
  await using a = await open(server);
  await using b = await open(server);
  await using c = await open(server);
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2, [1]), true);
  // Lists only the second member.
  assert.equal(await c.join(3, [2]), true);
  assert.equal(server.handler.stats().members, 3);
  // A member asking again with a member in common stays.
  assert.equal(await b.join(2, [3]), true);
  assert.equal(server.handler.stats().members, 3);
});

Deno.test("connect replies false and binds the peer to a member when it lists none", async () => {
  await using server = startServer();
  await using a = await open(server);
  await using b = await open(server);
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2, [5, 6]), false);
  assert.equal(server.handler.stats().members, 1);
  assert.equal(server.handler.stats().bindings, 1);
  b.sendContent({ data: "offer" });
  const got = await a.nextContent();
  assert.equal(got.data, "offer");
  assert.ok(got.senderId >= 1 && got.senderId <= 0x7fffffff);
});

Deno.test("connect removes a member from its group when it lists no member", async () => {
  await using server = startServer();
  await using a = await open(server);
  await using b = await open(server);
  await using c = await open(server);
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2, [1]), true);
  assert.equal(await b.join(2, [77]), false);
  assert.equal(server.handler.stats().members, 1);
  // B is no member any more: listing it does not let C in.
  assert.equal(await c.join(3, [2]), false);
  // B was bound to A, the only member left.
  b.sendContent({ data: "again" });
  assert.equal((await a.nextContent()).data, "again");
});

Deno.test("connect steers a joiner to favored members first, in join order, then starts over", async () => {
  await using server = startServer();
  await using p1 = await open(server, "/room");
  await using f1 = await open(server, "/room?favored");
  await using f2 = await open(server, "/room?x=1&favored=0");
  await using j = await open(server, "/room");
  assert.equal(await p1.join(1), true);
  assert.equal(await f1.join(2, [1]), true);
  assert.equal(await f2.join(3, [1]), true);
  const ids: number[] = [];
  for (const [round, member] of [f1, f2, p1, f1].entries()) {
    assert.equal(await j.join(9), false);
    j.sendContent({ data: `round ${round}` });
    const got = await member.nextContent();
    assert.equal(got.data, `round ${round}`);
    ids.push(got.senderId);
  }
  // Every binding gave the joiner a fresh signaling id.
  assert.equal(new Set(ids).size, ids.length);
});

Deno.test("connect clears the tried list when a peer becomes a member", async () => {
  await using server = startServer();
  await using m1 = await open(server);
  await using m2 = await open(server);
  await using j = await open(server);
  assert.equal(await m1.join(1), true);
  await bindTo(j, m1, 2); // J tried M1
  assert.equal(await j.join(2, [1]), true);
  assert.equal(await m2.join(3, [1]), true);
  // J leaves; with a cleared tried list it goes to M1 first again.
  assert.equal(await j.join(2), false);
  j.sendContent({ data: "back" });
  assert.equal((await m1.nextContent()).data, "back");
});

// Binding and relaying

Deno.test("relay rewrites ids both ways between a joiner and its member", async () => {
  await using server = startServer();
  await using m = await open(server);
  await using j = await open(server);
  assert.equal(await m.join(1), true);
  assert.equal(await j.join(2), false);
  j.sendContent({ senderId: 999, recipientId: 777, data: "offer" });
  const got = await m.nextContent();
  assert.equal(got.recipientId, 0);
  assert.equal(got.data, "offer");
  assert.equal(got.lastData, false);
  const s = got.senderId;
  assert.notEqual(s, 999);
  assert.ok(s >= 1 && s <= 0x7fffffff);
  m.sendContent({ senderId: 5, recipientId: s, data: "answer" });
  assert.deepEqual(await j.nextContent(), {
    senderId: 0,
    recipientId: s,
    lastData: false,
    data: "answer",
  });
  // Payload bytes go through untouched, whatever they are.
  const bytes = crypto.getRandomValues(new Uint8Array(1000));
  j.sendContent({ data: bytes });
  const raw = await m.next();
  assert.equal(raw.type, "content");
  assert.deepEqual(
    raw.type === "content" ? new Uint8Array(raw.content.data) : undefined,
    bytes,
  );
});

Deno.test("relay stops the joiner-to-member direction after lastData", async () => {
  await using server = startServer();
  await using m = await open(server);
  await using j = await open(server);
  await using j2 = await open(server);
  assert.equal(await m.join(1), true);
  assert.equal(await j.join(2), false);
  j.sendContent({ data: "last", lastData: true });
  const got = await m.nextContent();
  assert.equal(got.data, "last");
  assert.equal(got.lastData, false, "lastData is not forwarded");
  const before = server.handler.hub.counters.dropped;
  j.sendContent({ data: "too late" });
  await droppedMore(server, before, 1);
  // The other direction still works.
  m.sendContent({ recipientId: got.senderId, data: "answer" });
  assert.equal((await j.nextContent()).data, "answer");
  // Marker: the next thing M receives is another joiner's offer.
  assert.equal(await j2.join(3), false);
  j2.sendContent({ data: "marker" });
  assert.equal((await m.nextContent()).data, "marker");
});

Deno.test("relay stops the member-to-joiner direction after lastData", async () => {
  await using server = startServer();
  await using m = await open(server);
  await using j = await open(server);
  assert.equal(await m.join(1), true);
  const s = await bindTo(j, m, 2);
  m.sendContent({ recipientId: s, data: "last", lastData: true });
  const got = await j.nextContent();
  assert.deepEqual(got, {
    senderId: 0,
    recipientId: s,
    lastData: false,
    data: "last",
  });
  const before = server.handler.hub.counters.dropped;
  m.sendContent({ recipientId: s, data: "too late" });
  await droppedMore(server, before, 1);
  // The other direction still works.
  j.sendContent({ data: "candidate" });
  assert.equal((await m.nextContent()).data, "candidate");
  // Marker: J's next message is the reply to its own connect.
  assert.equal(await j.join(2, [1]), true);
});

Deno.test("relay ends a binding when both sides sent lastData", async () => {
  await using server = startServer();
  await using m = await open(server);
  await using j = await open(server);
  assert.equal(await m.join(1), true);
  const s = await bindTo(j, m, 2);
  assert.equal(server.handler.stats().bindings, 1);
  j.sendContent({ data: "bye", lastData: true });
  await m.nextContent();
  m.sendContent({ recipientId: s, data: "bye", lastData: true });
  await j.nextContent();
  assert.equal(server.handler.stats().bindings, 0);
  // Neither close is reported to the other side any more.
  await j.close();
  await waitFor(() => server.handler.stats().peers === 1, "J to leave");
  await using k = await open(server);
  assert.equal(await k.join(3), false);
  k.sendContent({ data: "marker" });
  assert.equal((await m.nextContent()).data, "marker");
});

Deno.test("relay tells the joiner its member is gone when the member closes", async () => {
  await using server = startServer();
  await using m = await open(server);
  await using j = await open(server);
  assert.equal(await m.join(1), true);
  const s = await bindTo(j, m, 2);
  await m.close();
  assert.deepEqual(await j.nextContent(), {
    senderId: 0,
    recipientId: s,
    lastData: false,
    data: "",
  });
  // The group is gone with its last member.
  await waitFor(() => server.handler.stats().groups === 0, "the group to go");
  assert.equal(server.handler.stats().bindings, 0);
});

Deno.test("relay tells the member a joiner is gone when the joiner closes", async () => {
  await using server = startServer();
  await using m = await open(server);
  await using j = await open(server);
  assert.equal(await m.join(1), true);
  const s = await bindTo(j, m, 2);
  await j.close();
  assert.deepEqual(await m.nextContent(), {
    senderId: s,
    recipientId: 0,
    lastData: false,
    data: "",
  });
});

Deno.test("relay keeps several joiners of one member apart by their signaling ids", async () => {
  await using server = startServer();
  await using m = await open(server);
  const joiners = await Promise.all([1, 2, 3].map(() => open(server)));
  await using _close = {
    [Symbol.asyncDispose]: () =>
      Promise.all(joiners.map((j) => j.close())).then(() => {}),
  };
  assert.equal(await m.join(1), true);
  const ids: number[] = [];
  for (const [i, j] of joiners.entries()) {
    ids.push(await bindTo(j, m, 10 + i, `offer ${i}`));
  }
  assert.equal(new Set(ids).size, 3);
  // Answer in reverse order: each joiner gets its own answer only.
  for (const i of [2, 1, 0]) {
    m.sendContent({ recipientId: ids[i], data: `answer ${i}` });
  }
  for (const [i, j] of joiners.entries()) {
    assert.deepEqual(await j.nextContent(), {
      senderId: 0,
      recipientId: ids[i],
      lastData: false,
      data: `answer ${i}`,
    });
  }
  // A gone joiner is reported with its own id.
  await joiners[1].close();
  assert.equal((await m.nextContent()).senderId, ids[1]);
});

Deno.test("relay keeps a binding when the joiner becomes a member", async () => {
  await using server = startServer();
  await using m = await open(server);
  await using j = await open(server);
  assert.equal(await m.join(1), true);
  const s = await bindTo(j, m, 2);
  assert.equal(await j.join(2, [1]), true);
  j.sendContent({ data: "candidate" });
  assert.deepEqual(await m.nextContent(), {
    senderId: s,
    recipientId: 0,
    lastData: false,
    data: "candidate",
  });
  m.sendContent({ recipientId: s, data: "candidate back" });
  assert.equal((await j.nextContent()).data, "candidate back");
});

Deno.test("relay sends a member's answer to its own joiner only, not to its old member", async () => {
  await using server = startServer();
  await using m = await open(server, "/room");
  await using j = await open(server, "/room?favored");
  await using k = await open(server, "/room");
  assert.equal(await m.join(1), true);
  const sj = await bindTo(j, m, 2);
  assert.equal(await j.join(2, [1]), true); // J is a member, still bound to M
  // K is steered to J, the favored member.
  const sk = await bindTo(k, j, 3);
  j.sendContent({ recipientId: sk, data: "answer for K" });
  assert.deepEqual(await k.nextContent(), {
    senderId: 0,
    recipientId: sk,
    lastData: false,
    data: "answer for K",
  });
  // J's own binding to M still works; M's next message is this, not K's
  // answer.
  j.sendContent({ data: "for M" });
  assert.deepEqual(await m.nextContent(), {
    senderId: sj,
    recipientId: 0,
    lastData: false,
    data: "for M",
  });
});

Deno.test("relay drops content that matches no binding", async () => {
  await using server = startServer();
  await using a = await open(server);
  await using b = await open(server);
  await using j = await open(server);
  await using stranger = await open(server, "/elsewhere");
  assert.equal(await a.join(1), true);
  const s = await bindTo(j, a, 3);
  assert.equal(await b.join(2, [1]), true);
  const before = server.handler.hub.counters.dropped;
  // B is bound to nobody and J is A's joiner, not B's.
  b.sendContent({ data: "to nobody" });
  b.sendContent({ recipientId: s, data: "not my joiner" });
  // A peer that never sent connect.
  stranger.sendContent({ recipientId: s, data: "stranger" });
  await droppedMore(server, before, 3);
  a.sendContent({ recipientId: s, data: "marker for J" });
  assert.equal((await j.nextContent()).data, "marker for J");
  j.sendContent({ data: "marker for A" });
  assert.equal((await a.nextContent()).data, "marker for A");
  assert.equal(b.pending + stranger.pending, 0);
});

// Keys

Deno.test("key keeps percent-encoding as it arrives", async () => {
  await using server = startServer();
  await using a = await open(server, "/a%20b");
  await using b = await open(server, "/a%20b");
  await using c = await open(server, "/a%2Fb");
  await using d = await open(server, "/a/b");
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2), false, "same key, same group");
  // Decoded, `a%2Fb` would be `a/b`: they must stay two groups.
  assert.equal(await c.join(3), true);
  assert.equal(await d.join(4), true);
  const keys = [...server.handler.hub.peers()].map((p) => p.key).sort();
  assert.deepEqual(keys, ["a%20b", "a%20b", "a%2Fb", "a/b"]);
});

Deno.test("key includes every path segment when the path is nested", async () => {
  await using server = startServer();
  await using ab = await open(server, "/a/b");
  await using a = await open(server, "/a");
  await using b = await open(server, "/b");
  await using ab2 = await open(server, "/a/b");
  assert.equal(await ab.join(1), true);
  assert.equal(await a.join(2), true);
  assert.equal(await b.join(3), true);
  assert.equal(await ab2.join(4), false, "same nested key, same group");
  assert.equal(server.handler.stats().groups, 3);
});

Deno.test("key leaves out the query string when the URL has one", async () => {
  await using server = startServer();
  await using a = await open(server, "/room?favored");
  await using b = await open(server, "/room");
  await using c = await open(server, "/room?x=1");
  assert.equal(await a.join(1), true);
  assert.equal(await b.join(2), false);
  assert.equal(await c.join(3), false);
  assert.equal(server.handler.stats().groups, 1);
  const keys = [...server.handler.hub.peers()].map((p) => p.key);
  assert.deepEqual(keys, ["room", "room", "room"]);
});

// Plain HTTP

Deno.test("server answers 426 with a short text when a key path is fetched without upgrade", async () => {
  await using server = startServer();
  // "/" is the demo page (tests/demo_test.ts covers it).
  for (const path of ["/room", "/a/b?favored"]) {
    const response = await fetch(httpUrl(server, path));
    const body = await response.text();
    assert.equal(response.status, 426, path);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
    assert.ok(body.length > 0 && body.length < 200, body);
  }
});

Deno.test("server answers 200 on /healthz", async () => {
  await using server = startServer();
  const response = await fetch(httpUrl(server, "/healthz"));
  assert.equal(response.status, 200);
  assert.equal((await response.text()).trim(), "ok");
});

Deno.test("server serves Prometheus text on /metrics", async () => {
  await using server = startServer();
  await using a = await open(server);
  assert.equal(await a.join(1), true);
  const response = await fetch(httpUrl(server, "/metrics"));
  const text = await response.text();
  assert.equal(response.status, 200);
  assert.match(
    response.headers.get("content-type") ?? "",
    /^text\/plain; version=0\.0\.4/,
  );
  assert.ok(text.endsWith("\n"));
  for (const line of text.trimEnd().split("\n")) {
    assert.match(
      line,
      /^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?\d+(\.\d+)?)$/,
    );
  }
  assert.match(text, /^# TYPE sigver_peers gauge$/m);
  assert.match(text, /^sigver_peers 1$/m);
  assert.match(text, /^sigver_groups 1$/m);
  assert.match(text, /^sigver_messages_received_total\{type="connect"\} 1$/m);
});

// State

Deno.test("server keeps no state when many peers have joined, relayed and closed", async () => {
  await using server = startServer();
  const ROOMS = 40; // five peers each: 200 sockets
  await Promise.all(Array.from({ length: ROOMS }, async (_, room) => {
    const path = `/leak-${room}`;
    const m = await open(server, path);
    const joiners = await Promise.all(
      [0, 1, 2, 3].map(() => open(server, path)),
    );
    assert.equal(await m.join(1), true);
    const ids: number[] = [];
    for (const [i, j] of joiners.entries()) {
      ids.push(await bindTo(j, m, 10 + i, `offer ${i}`));
    }
    for (const [i, j] of joiners.entries()) {
      m.sendContent({ recipientId: ids[i], data: `answer ${i}` });
      assert.equal((await j.nextContent()).data, `answer ${i}`);
    }
    assert.equal(await joiners[0].join(10, [1]), true); // a new member
    joiners[1].sendContent({ data: "last", lastData: true });
    assert.equal((await m.nextContent()).data, "last");
    joiners[2].sendRaw("text"); // closed by the server with 4743
    assert.equal((await closedBy(server, joiners[2])).code, ERR_MESSAGE);
    // Half the rooms lose their member first, half their joiners first.
    const order = room % 2 === 0 ? [m, ...joiners] : [...joiners, m];
    for (const p of order) await p.close();
  }));
  await settled(server);
  assertEmpty(server);
  assert.equal(server.handler.hub.size, 0);
});
