/**
 * Abuse over real sockets: stalled handshakes, connection churn and floods
 * must not touch well-behaved peers nor leave state behind. Servers run on
 * a `ManualClock`: tests drive it until the server's closes went out.
 */

import assert from "node:assert/strict";
import { encodeMessage } from "../../lib/netflux/wire.ts";
import { systemClock } from "../../lib/clock.ts";
import { deadline } from "../../lib/deadline.ts";
import {
  closedBy,
  EMPTY_STATS,
  httpUrl,
  peerUrl,
  RawSocket,
  settled,
  startServer,
  TestPeer,
  WAIT_TIMEOUT,
} from "../_helpers.ts";

Deno.test("half handshakes that stall do not stop other peers from being served", async () => {
  await using server = startServer();
  const port = server.addr.port;
  const starts = [
    "", // connected, sent nothing
    "GET /room HTT",
    "GET /room HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n",
  ];
  const stalled: Deno.TcpConn[] = [];
  try {
    for (const start of starts) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      stalled.push(conn);
      if (start !== "") await conn.write(new TextEncoder().encode(start));
    }
    await using a = await TestPeer.open(peerUrl(server, "/room"));
    await using b = await TestPeer.open(peerUrl(server, "/room"));
    assert.equal(await a.join(1), true);
    assert.equal(await b.join(2), false);
    b.sendContent({ data: "offer" });
    const offer = await a.nextContent();
    assert.equal(offer.data, "offer");
    a.sendContent({ recipientId: offer.senderId, data: "answer" });
    assert.equal((await b.nextContent()).data, "answer");
    const health = await fetch(httpUrl(server, "/healthz"));
    assert.equal(health.status, 200);
    await health.body?.cancel();
    // Stalled requests never reached the handler: they hold no peer slot.
    assert.equal(server.handler.connections, 2);
  } finally {
    for (const conn of stalled) conn.close();
  }
});

Deno.test("1000 connects and disconnects leave no state behind", async () => {
  await using server = startServer();
  const total = 1000;
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < total; i = next++) {
      const key = `/k${i % 13}${i % 7 === 0 ? "?favored" : ""}`;
      if (i % 10 === 9) {
        // Gone without a closing handshake.
        using raw = await RawSocket.upgrade(server, key);
        assert.equal(raw.status, 101);
        continue;
      }
      const peer = await TestPeer.open(peerUrl(server, key));
      switch (i % 4) {
        case 0:
          break;
        case 1:
          await peer.join(i, [i + 1, i + 2]);
          break;
        case 2:
          await peer.join(i);
          peer.sendContent({ recipientId: i + 1, data: "x" });
          break;
        case 3:
          peer.sendRaw("not binary");
          assert.equal((await closedBy(server, peer)).code, 4743);
      }
      await peer.close();
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  await settled(server);
  assert.deepEqual(server.handler.stats(), EMPTY_STATS);
  assert.match(server.handler.metrics(), /^sigver_connections_total 1000$/m);
});

Deno.test("a peer flooding its member is closed with 1008 and the member keeps its session", async () => {
  await using server = startServer({ messageRate: 50, messageBurst: 100 });
  await using member = await TestPeer.open(peerUrl(server, "/room"));
  await using flooder = await TestPeer.open(peerUrl(server, "/room"));
  assert.equal(await member.join(1), true);
  assert.equal(await flooder.join(2), false);
  for (let i = 0; i < 1000 && !flooder.isClosed; i++) {
    flooder.sendContent({ data: `flood ${i}` });
  }
  const closed = await closedBy(server, flooder);
  assert.equal(closed.code, 1008);
  assert.equal(closed.reason, "Cannot relay: over 50 messages per second");
  // The member got part of the flood, then word that the joiner is gone.
  let received = 0;
  let sid = 0;
  for (;;) {
    const c = await member.nextContent();
    sid ||= c.senderId;
    assert.equal(c.senderId, sid);
    if (c.data === "") break;
    assert.equal(c.data, `flood ${received++}`);
  }
  assert.ok(received < 1000, `${received} flood messages relayed`);
  // ...and goes on serving joiners.
  await using joiner = await TestPeer.open(peerUrl(server, "/room"));
  assert.equal(await joiner.join(3), false);
  joiner.sendContent({ data: "offer" });
  const offer = await member.nextContent();
  assert.equal(offer.data, "offer");
  member.sendContent({ recipientId: offer.senderId, data: "answer" });
  assert.equal((await joiner.nextContent()).data, "answer");
  assert.match(
    server.handler.metrics(),
    /^sigver_rejections_total\{reason="message_rate"\} 1$/m,
  );
});

Deno.test("peers that send at once on open see 4741 for a bad key", async () => {
  // The real clock: the server's open grace (500 ms) races the client's
  // first frame, one round trip away. Driven time runs about a hundred times
  // faster than real time and would let the grace pass before it arrives.
  await using server = startServer({ clock: systemClock });
  const connect = encodeMessage({
    type: "connect",
    connect: { id: 1, members: [] },
  });
  const peers = Array.from(
    { length: 200 },
    (_, i) =>
      new TestPeer(peerUrl(server, i % 2 ? "/" : `/${"k".repeat(513)}`)),
  );
  for (const peer of peers) {
    // As Netflux does: connect as soon as the socket opens.
    peer.socket.addEventListener("open", () => peer.sendRaw(connect));
  }
  const closes = await deadline(
    Promise.all(peers.map((peer) => peer.closed)),
    WAIT_TIMEOUT,
    "every socket to close",
  );
  for (const { code } of closes) assert.equal(code, 4741);
  await settled(server);
});

/** Sends one raw HTTP/1.1 request and reads the status line and body. */
async function rawRequest(
  port: number,
  head: string,
): Promise<{ status: number; text: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(head + "\r\n"));
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(4096);
    for (;;) {
      const n = await deadline(conn.read(buffer), WAIT_TIMEOUT, "an answer");
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
      const text = new TextDecoder().decode(
        new Uint8Array(chunks.flatMap((c) => [...c])),
      );
      const end = text.indexOf("\r\n\r\n");
      const length = /content-length: (\d+)/i.exec(text)?.[1];
      if (end !== -1 && length !== undefined) {
        if (text.length >= end + 4 + Number(length)) {
          return {
            status: Number(text.slice(9, 12)),
            text: text.slice(end + 4),
          };
        }
      } else if (end !== -1 && /^HTTP\/1.1 101/.test(text)) {
        return { status: 101, text: "" };
      }
    }
    throw new Error("Cannot read the answer: the connection closed");
  } finally {
    conn.close();
  }
}

Deno.test("a Host header holding a path, query, fragment, userinfo or space gets 400 before any routing", async (t) => {
  await using server = startServer({
    authSecrets: ["a-secret-of-32-bytes-for-tests!!"],
  });
  const port = server.addr.port;
  for (const host of ["x/metrics?", "x?y", "x#y", "user@x", "x y", "x\\y"]) {
    await t.step(JSON.stringify(host), async () => {
      const plain = await rawRequest(
        port,
        `GET /anything HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n`,
      );
      assert.equal(plain.status, 400);
      assert.equal(plain.text, "Bad Request: the Host header is not a host\n");
      const upgrade = await rawRequest(
        port,
        `GET /room HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\n` +
          "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
      );
      assert.equal(upgrade.status, 400);
    });
  }
  await t.step("a plain host and port still serve", async () => {
    const ok = await rawRequest(
      port,
      `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n`,
    );
    assert.equal(ok.status, 200);
  });
  assert.equal(server.handler.connections, 0);
});
