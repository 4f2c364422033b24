/**
 * The wire contract (`PROTOCOL.md`) over real sockets against a real server
 * in this process: the shared case table (`_protocol_cases.ts`), one test
 * per case on a fresh server, which must hold nothing once the case's
 * peers closed; then what only an in-process server can show (heartbeat
 * timing, the state a binding leaves) and its plain HTTP answers.
 *
 * Signaling ids are random, so tests learn a joiner's id from what its
 * member receives. The server runs on a `ManualClock`: a close it starts
 * goes out on a scheduler tick, so tests drive the clock until the socket
 * closed (`closedBy`), and heartbeat tests advance it by whole periods.
 */

import { hubOf } from "../../deno/handler.ts";
import assert from "node:assert/strict";
import {
  bindTo,
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
} from "../_helpers.ts";
import { PROTOCOL_CASES } from "../_protocol_cases.ts";
import type { SigverServer } from "../../deno/serve.ts";

const ERR_HEARTBEAT = 4742;
const ERR_MESSAGE = 4743;
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

/** Asserts every number of the server's state is 0 and no socket is held. */
function assertEmpty(server: SigverServer): void {
  for (const [name, value] of Object.entries(server.handler.stats())) {
    assert.equal(value, 0, `stats().${name}`);
  }
  assert.equal(server.handler.connections, 0, "connections");
}

// The protocol case table

for (const { name, run } of PROTOCOL_CASES) {
  Deno.test(name, async () => {
    await using server = startServer();
    await run({ url: (path) => peerUrl(server, path), server });
    await settled(server);
    assertEmpty(server);
  });
}

// Close codes

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

// Heartbeat

Deno.test("server sends exactly two heartbeats then closes with 4742 when a peer is silent", async () => {
  await using server = startServer();
  await using peer = await open(server, "/room", true);
  await peersOpen(server, 1);
  server.clock.advance(2 * BEAT);
  // Two periods missed: two heartbeats, and the peer is still in.
  assert.equal(hubOf(server.handler).counters.outHeartbeat, 2);
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
  assert.equal(hubOf(server.handler).counters.outHeartbeat, 2);
  await settled(server);
  assertEmpty(server);
});

Deno.test("server keeps a peer open when it answers every heartbeat", async (t) => {
  for (const value of [true, false]) {
    await t.step(`answering ${value}`, async () => {
      await using server = startServer();
      await using peer = await open(server, "/room", true);
      await peersOpen(server, 1);
      const counters = hubOf(server.handler).counters;
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
    () => hubOf(server.handler).counters.inHeartbeat === 1,
    "the server to count the answer",
  );
  // The third period now counts one missed: a heartbeat, not a close.
  server.clock.advance(100);
  assert.equal(server.handler.stats().peers, 1);
  assert.equal(hubOf(server.handler).counters.outHeartbeat, 3);
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
  const counters = hubOf(server.handler).counters;
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

// Binding and relaying

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
  assert.equal(hubOf(server.handler).size, 0);
});
