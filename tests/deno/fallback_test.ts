/**
 * The WebSocket-free fallback over real HTTP, spoken by hand the way a
 * client written from the issue and `docs/fallback.md` speaks it
 * (`_sse_peer.ts`: `fetch`, `SseParser`, a strict base64 decoder, and
 * nothing of the package's own fallback client), so that these tests check
 * the wire.
 *
 * The server runs on a `ManualClock`: heartbeats, keep-alives and the
 * closes the server starts happen when a test moves the clock.
 */

import { hubOf } from "../../deno/handler.ts";
import assert from "node:assert/strict";
import {
  bindTo,
  closedBy,
  EMPTY_STATS,
  fromJoiner,
  httpUrl,
  peersOpen,
  peerUrl,
  settled,
  startServer,
  TestPeer,
  type TestServer,
  toJoiner,
  turn,
  WAIT_TIMEOUT,
  waitFor,
} from "../_helpers.ts";
import { fromBase64Url, SsePeer } from "../_sse_peer.ts";
import type { SigverServer } from "../../deno/serve.ts";
import {
  type Content,
  decodeMessage,
  encodeMessage,
  type Message,
} from "../../lib/netflux/wire.ts";
import { mintToken } from "../../lib/token.ts";
import { Rng } from "../../dev/rng.ts";

/** The default heartbeat period (ms): a silent peer is closed after three. */
const BEAT = 5000;

/**
 * A bound pair in the group `good`, a WebSocket member and a fallback
 * joiner: what no bad input on another session may disturb.
 */
async function bystanders(server: SigverServer) {
  const member = await TestPeer.open(peerUrl(server, "/good"));
  assert.equal(await member.join(1), true);
  const joiner = await SsePeer.open(server, "/good");
  const signalingId = await bindTo(joiner, member, 2);
  let round = 0;
  return {
    /** Both directions still relay, and nothing else arrived. */
    async relay(): Promise<void> {
      round++;
      await joiner.sendContent({ data: `ping ${round}` });
      assert.deepEqual(
        await member.nextContent(),
        fromJoiner(signalingId, `ping ${round}`),
      );
      member.sendContent({ recipientId: signalingId, data: `pong ${round}` });
      assert.deepEqual(
        await joiner.nextContent(),
        toJoiner(signalingId, `pong ${round}`),
      );
    },
    async [Symbol.asyncDispose](): Promise<void> {
      await joiner[Symbol.asyncDispose]();
      await member.close();
    },
  };
}

/** The server's metrics, by series. */
async function scrape(server: SigverServer): Promise<Map<string, number>> {
  const text = await (await fetch(httpUrl(server, "/metrics"))).text();
  const series = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    series.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return series;
}

/** A GET with `Accept: text/event-stream` expected to be refused. */
async function refusedStream(
  url: string,
  headers?: HeadersInit,
): Promise<{ status: number; text: string }> {
  const response = await fetch(url, {
    headers: { accept: "text/event-stream", ...headers },
  });
  const text = await response.text();
  assert.notEqual(response.status, 200, text);
  return { status: response.status, text };
}

/**
 * A session that ended is forgotten: a POST and a GET with its id get 404,
 * and its close was counted once, with `labels` (`code="1000",by="client"`).
 */
async function assertForgotten(
  server: SigverServer,
  peer: SsePeer,
  labels: string,
): Promise<void> {
  const heartbeat = encodeMessage({ type: "heartbeat", heartbeat: true });
  assert.equal((await peer.post(heartbeat)).status, 404);
  assert.equal((await refusedStream(peer.sessionUrl())).status, 404);
  const metrics = await scrape(server);
  assert.equal(metrics.get(`sigver_closes_total{${labels}}`), 1);
}

/**
 * Opens the session's stream by hand on a TCP socket, reads its session
 * event, then closes the socket and waits until the server has closed its
 * side: from then on the server holds no stream for the session and queues
 * its frames. Tries again while the server still holds an earlier stream
 * (409).
 */
async function holdThenDrop(
  server: SigverServer,
  peer: SsePeer,
): Promise<void> {
  const target = new URL(peer.sessionUrl());
  const request = `GET ${target.pathname}${target.search} HTTP/1.1\r\n` +
    `Host: ${target.host}\r\nAccept: text/event-stream\r\n\r\n`;
  const end = performance.now() + WAIT_TIMEOUT;
  while (performance.now() < end) {
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    await conn.write(new TextEncoder().encode(request));
    const buffer = new Uint8Array(4096);
    let text = "";
    for (;;) {
      // A 200 and the session event, or a refusal's head.
      if (text.includes(`data: ${peer.id}\n\n`)) break;
      if (text.includes("\r\n\r\n") && !text.startsWith("HTTP/1.1 200")) {
        break;
      }
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    if (text.startsWith("HTTP/1.1 409")) {
      await turn();
      continue;
    }
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.ok(text.includes(`data: ${peer.id}\n\n`), text);
    await conn.closeWrite();
    while (await conn.read(buffer) !== null) {
      // The server closes its side once it has seen ours go.
    }
    return;
  }
  throw new Error("The server kept the earlier stream open");
}

// The stream

Deno.test("a GET that accepts text/event-stream opens a session: 200, its headers, a session event", async () => {
  await using server = startServer();
  await using peer = await SsePeer.open(server, "/room");
  const { response } = peer.stream;
  assert.equal(response.status, 200);
  // The type alone: a client that compares it as it is must find it.
  assert.equal(response.headers.get("content-type"), "text/event-stream");
  assert.equal(response.headers.get("cache-control"), "no-store");
  assert.equal(response.headers.get("x-accel-buffering"), "no");
  // The first bytes are the session event; its id carries the session id
  // too, so that EventSource sends it back as Last-Event-ID.
  assert.ok(
    peer.stream.text.startsWith(
      `event: session\nid: ${peer.id}\ndata: ${peer.id}\n\n`,
    ),
    peer.stream.text,
  );
  assert.ok(fromBase64Url(peer.id).length >= 16, "at least 128 bits");
  await using other = await SsePeer.open(server, "/room");
  assert.notEqual(other.id, peer.id);
  await peersOpen(server, 2);

  // A POST sends one frame up and gets 204 with no body; the reply comes
  // down the stream as the base64 of the protobuf bytes.
  const { status, text } = await peer.post(
    encodeMessage({ type: "connect", connect: { id: 1, members: [] } }),
  );
  assert.equal(status, 204);
  assert.equal(text, "");
  const event = await peer.stream.next();
  assert.deepEqual(event, { event: "message", data: "IAE=", id: peer.id });
  assert.ok(peer.stream.text.endsWith("\ndata: IAE=\n\n"));
});

Deno.test("frames are the base64 of the very bytes a WebSocket peer gets", async () => {
  // The same scenario on two servers with the same random source: once
  // between two WebSocket peers, once between two fallback peers.
  /** What each side of the scenario needs of its transport. */
  interface Side {
    send(message: Message): Promise<void>;
    next(): Promise<Message>;
    close(): Promise<void>;
    received: Uint8Array[];
  }
  const big = Array.from({ length: 40_000 }, (_, i) => "abc"[i % 3]).join("");
  const scenario = async (
    server: TestServer,
    open: (path: string) => Promise<Side>,
  ) => {
    const member = await open("/room");
    await peersOpen(server, 1);
    const joiner = await open("/room");
    await peersOpen(server, 2);
    const content = (recipientId: number, data: string, senderId = 0) => ({
      type: "content" as const,
      content: {
        senderId,
        recipientId,
        lastData: false,
        data: new TextEncoder().encode(data),
      },
    });
    await member.send({ type: "connect", connect: { id: 1, members: [] } });
    assert.equal((await member.next()).type, "connected");
    await joiner.send({ type: "connect", connect: { id: 2, members: [] } });
    assert.equal((await joiner.next()).type, "connected");
    await joiner.send(content(77, "offer", 5));
    const offer = await member.next();
    assert.equal(offer.type, "content");
    const s = (offer as { content: Content }).content.senderId;
    await member.send(content(s, "answer"));
    assert.equal((await joiner.next()).type, "content");
    await joiner.send(content(0, big));
    assert.equal((await member.next()).type, "content");
    await joiner.send({ type: "connect", connect: { id: 2, members: [1] } });
    assert.equal((await joiner.next()).type, "connected");
    server.clock.advance(BEAT);
    assert.equal((await member.next()).type, "heartbeat");
    assert.equal((await joiner.next()).type, "heartbeat");
    await member.close();
    assert.equal((await joiner.next()).type, "content"); // gone
    await joiner.close();
    return { member: member.received, joiner: joiner.received };
  };
  const random = () => {
    const rng = new Rng(2026);
    return () => rng.float();
  };

  await using wsServer = startServer({ random: random() });
  const ws = await scenario(wsServer, async (path) => {
    const peer = await TestPeer.open(peerUrl(wsServer, path), {
      keepHeartbeats: true,
    });
    const received: Uint8Array[] = [];
    peer.socket.addEventListener("message", (event) => {
      received.push(new Uint8Array(event.data));
    });
    return {
      send: (message) => Promise.resolve(peer.send(message)),
      next: () => peer.next(),
      close: async () => {
        await peer.close();
      },
      received,
    };
  });

  await using sseServer = startServer({ random: random() });
  const sse = await scenario(sseServer, async (path) => {
    const peer = await SsePeer.open(sseServer, path, { keepHeartbeats: true });
    return {
      send: (message) => peer.send(message),
      next: () => peer.next(),
      close: async () => {
        assert.equal(await peer.delete(), 204);
        await peer.stream.end();
      },
      received: peer.received,
    };
  });

  // The member: connected, offer, the big one, heartbeat; the joiner:
  // connected, answer, connected, heartbeat, gone.
  assert.equal(ws.member.length, 4);
  assert.equal(ws.joiner.length, 5);
  assert.deepEqual(sse, ws);
  // The gone notice: content{senderId: 0, recipientId: s}, no data.
  assert.deepEqual(decodeMessage(sse.joiner.at(-1)!), {
    type: "content",
    content: {
      senderId: 0,
      recipientId: (decodeMessage(sse.member[1]) as { content: Content })
        .content.senderId,
      lastData: false,
      data: new Uint8Array(),
    },
  });
});

// Signaling over the fallback

Deno.test("two fallback peers run a whole signaling session: join, bind, relay, gone", async () => {
  await using server = startServer();
  await using member = await SsePeer.open(server, "/room");
  assert.equal(await member.join(1), true);
  const joiner = await SsePeer.open(server, "/room");
  assert.equal(await joiner.join(2), false);

  // Joiner -> member: whatever ids the joiner wrote, the member sees the
  // joiner's signaling id as the sender.
  await joiner.sendContent({ senderId: 99, recipientId: 55, data: "offer" });
  const offer = await member.nextContent();
  assert.equal(offer.data, "offer");
  assert.equal(offer.recipientId, 0);
  assert.ok(offer.senderId > 0 && offer.senderId < 2 ** 31);
  const s = offer.senderId;

  // Member -> joiner, by the signaling id.
  await member.sendContent({ recipientId: s, data: "answer" });
  assert.deepEqual(await joiner.nextContent(), toJoiner(s, "answer"));
  await joiner.sendContent({ data: "candidate" });
  assert.deepEqual(await member.nextContent(), fromJoiner(s, "candidate"));

  // Content that matches no binding is dropped.
  const dropped = hubOf(server.handler).counters.dropped;
  await member.sendContent({ recipientId: s + 1, data: "nobody" });
  assert.equal(hubOf(server.handler).counters.dropped, dropped + 1);

  // Connected to the member, the joiner becomes a member too.
  assert.equal(await joiner.join(2, [1]), true);
  const metrics = await scrape(server);
  assert.equal(metrics.get("sigver_members"), 2);

  // The joiner leaves: its member hears it is gone.
  assert.equal(await joiner.delete(), 204);
  await joiner.stream.end();
  assert.deepEqual(await member.nextContent(), fromJoiner(s, ""));
});

Deno.test("a WebSocket peer and a fallback peer relay to each other in one group", async (t) => {
  await using server = startServer();
  await t.step("a WebSocket member, a fallback joiner", async () => {
    await using member = await TestPeer.open(peerUrl(server, "/mixed-a"));
    assert.equal(await member.join(1), true);
    const joiner = await SsePeer.open(server, "/mixed-a");
    const s = await bindTo(joiner, member, 2);
    member.sendContent({ recipientId: s, data: "answer" });
    assert.deepEqual(await joiner.nextContent(), toJoiner(s, "answer"));
    assert.equal(await joiner.join(2, [1]), true);
    assert.equal(await joiner.delete(), 204);
    await joiner.stream.end();
    assert.deepEqual(await member.nextContent(), fromJoiner(s, ""));
  });
  await t.step("a fallback member, a WebSocket joiner", async () => {
    await using member = await SsePeer.open(server, "/mixed-b");
    assert.equal(await member.join(1), true);
    const joiner = await TestPeer.open(peerUrl(server, "/mixed-b"));
    const s = await bindTo(joiner, member, 2);
    await member.sendContent({ recipientId: s, data: "answer" });
    assert.deepEqual(await joiner.nextContent(), toJoiner(s, "answer"));
    await joiner.close();
    assert.deepEqual(await member.nextContent(), fromJoiner(s, ""));
  });
  await settled(server);
  assert.deepEqual(server.handler.stats(), EMPTY_STATS);
});

// Bad input: each answered on its own session, nobody else affected

Deno.test("a request for an unknown session gets 404", async (t) => {
  await using server = startServer();
  await using good = await bystanders(server);
  const unknown = "AAAAAAAAAAAAAAAAAAAAAA";
  for (const session of [unknown, "not-an-id", ""]) {
    await t.step(`session=${JSON.stringify(session)}`, async () => {
      const url = httpUrl(server, `/good?session=${session}`);
      const post = await fetch(url, {
        method: "POST",
        body: encodeMessage({ type: "heartbeat", heartbeat: true }).slice(),
      });
      assert.equal(post.status, 404);
      assert.match(await post.text(), /^Not Found/);
      const resume = await refusedStream(url);
      assert.equal(resume.status, 404);
      const end = await fetch(url, { method: "DELETE" });
      assert.equal(end.status, 404);
      await end.body?.cancel();
    });
  }
  await good.relay();
  assert.equal(hubOf(server.handler).size, 2);
});

Deno.test("a session used on another key gets 403, and lives on", async () => {
  await using server = startServer();
  await using good = await bystanders(server);
  await using peer = await SsePeer.open(server, "/room");
  for (const path of ["/other", "/room/x", "/t/x/room"]) {
    const url = peer.sessionUrl(httpUrl(server, path));
    const post = await peer.post(
      encodeMessage({ type: "connect", connect: { id: 1, members: [] } }),
      url,
    );
    assert.equal(post.status, 403, path);
    assert.match(post.text, /^Forbidden: the session belongs to another key/);
    assert.equal((await refusedStream(url)).status, 403);
    const end = await fetch(url, { method: "DELETE" });
    assert.equal(end.status, 403);
    await end.body?.cancel();
  }
  // Nothing reached the session, and it still works on its own key.
  assert.equal(await peer.join(1), true);
  await good.relay();
  const metrics = await scrape(server);
  assert.equal(metrics.get('sigver_rejections_total{reason="session_key"}'), 9);
});

Deno.test("a POSTed body over --max-message-size gets 413, and the session lives on", async (t) => {
  await using server = startServer({ maxMessageSize: 64 });
  await using good = await bystanders(server);
  await using peer = await SsePeer.open(server, "/room");
  assert.equal(await peer.join(1), true);
  await t.step("with a Content-Length", async () => {
    const { status, text } = await peer.post(new Uint8Array(65));
    assert.equal(status, 413);
    assert.equal(text, "Content Too Large: a frame is at most 64 bytes\n");
  });
  await t.step("much larger, refused unread", async () => {
    const { status } = await peer.post(new Uint8Array(8 << 20));
    assert.equal(status, 413);
  });
  await t.step("chunked, without a length", async () => {
    const body = ReadableStream.from([new Uint8Array(40), new Uint8Array(40)]);
    const { status } = await peer.post(body);
    assert.equal(status, 413);
  });
  await t.step("a frame of exactly the limit is relayed", async () => {
    const joiner = await SsePeer.open(server, "/room");
    const s = await bindTo(joiner, peer, 2);
    const content = (data: string) =>
      encodeMessage({
        type: "content",
        content: {
          senderId: 0,
          recipientId: s,
          lastData: false,
          data: new TextEncoder().encode(data),
        },
      });
    let data = "x".repeat(64);
    while (content(data).length > 64) data = data.slice(1);
    const frame = content(data);
    assert.equal(frame.length, 64);
    assert.equal((await peer.post(frame)).status, 204);
    assert.equal((await joiner.nextContent()).data, data);
    await joiner[Symbol.asyncDispose]();
    assert.equal((await peer.nextContent()).data, ""); // gone
  });
  await good.relay();
  assert.equal(hubOf(server.handler).size, 3);
  const metrics = await scrape(server);
  assert.equal(
    metrics.get('sigver_rejections_total{reason="message_size"}'),
    3,
  );
});

Deno.test("an undecodable frame closes the session with a close event 4743, then the stream ends", async (t) => {
  await using server = startServer();
  await using good = await bystanders(server);
  const cases: [string, Uint8Array][] = [
    ["garbage", new Uint8Array([0xff, 0xff, 0xff])],
    ["a truncated field", new Uint8Array([0x12, 0x05, 0x08])],
    ["an empty body: no type", new Uint8Array()],
    ["only an unknown field: no type", new Uint8Array([0x28, 0x01])],
    ["base64 text instead of bytes", new TextEncoder().encode("IAE=")],
  ];
  for (const [name, body] of cases) {
    await t.step(name, async () => {
      const peer = await SsePeer.open(server, "/room");
      const { status } = await peer.post(body);
      assert.equal(status, 204);
      const event = await peer.stream.next();
      assert.equal(event.event, "close");
      const close = JSON.parse(event.data);
      assert.equal(close.code, 4743);
      assert.equal(typeof close.reason, "string");
      await peer.stream.end();
      // The session is gone with its stream.
      const after = await peer.post(
        encodeMessage({ type: "heartbeat", heartbeat: true }),
      );
      assert.equal(after.status, 404);
      assert.equal((await refusedStream(peer.sessionUrl())).status, 404);
    });
  }
  await good.relay();
  assert.equal(hubOf(server.handler).size, 2);
  const metrics = await scrape(server);
  assert.equal(
    metrics.get('sigver_closes_total{code="4743",by="server"}'),
    cases.length,
  );
});

Deno.test("a session over the message rate is closed with 1008", async () => {
  await using server = startServer({ messageRate: 10, messageBurst: 5 });
  await using good = await bystanders(server);
  const flood = await SsePeer.open(server, "/flood");
  let posted = 0;
  let status = 204;
  while (status === 204) {
    ({ status } = await flood.post(
      encodeMessage({ type: "heartbeat", heartbeat: true }),
    ));
    posted++;
    assert.ok(posted < 50, "still open after 50 frames");
  }
  // The frame over the burst gets 204 and closes the session; the next 404.
  assert.equal(status, 404);
  assert.equal(posted, 5 + 2);
  assert.deepEqual(await closedBy(server, flood), {
    code: 1008,
    reason: "Cannot relay: over 10 messages per second",
  });
  await flood.stream.end();
  await good.relay();
  const metrics = await scrape(server);
  assert.equal(
    metrics.get('sigver_rejections_total{reason="message_rate"}'),
    1,
  );
});

Deno.test("a session has one stream at a time: a second gets 409", async () => {
  await using server = startServer();
  await using good = await bystanders(server);
  await using peer = await SsePeer.open(server, "/room");
  const second = await refusedStream(peer.sessionUrl());
  assert.equal(second.status, 409);
  assert.match(second.text, /^Conflict/);
  const byHeader = await refusedStream(httpUrl(server, "/room"), {
    "last-event-id": peer.id,
  });
  assert.equal(byHeader.status, 409);
  // The first stream goes on.
  assert.equal(await peer.join(1), true);
  await good.relay();
});

Deno.test("a session whose stream dropped and that posts nothing is closed after 8 s, and its member hears it is gone", async () => {
  await using server = startServer();
  await using member = await SsePeer.open(server, "/room");
  assert.equal(await member.join(1), true);
  const joiner = await SsePeer.open(server, "/room");
  const s = await bindTo(joiner, member, 2);
  // The joiner's connection drops, and it never comes back (a resume
  // that drops too, once the server has seen it go).
  await joiner.stream.cancel();
  await holdThenDrop(server, joiner);
  server.clock.advance(7900);
  assert.equal(hubOf(server.handler).size, 2, "kept while it may resume");
  server.clock.advance(100);
  assert.deepEqual(await member.nextContent(), {
    senderId: s,
    recipientId: 0,
    lastData: false,
    data: "",
  });
  assert.equal(hubOf(server.handler).size, 1);
  await assertForgotten(server, joiner, 'code="1001",by="server"');
});

Deno.test("sessions whose clients went away give their --max-peers slots back within 8 s", async () => {
  await using server = startServer({ maxPeers: 3 });
  const gone: SsePeer[] = [];
  for (let i = 0; i < 3; i++) {
    const peer = await SsePeer.open(server, `/room-${i}`);
    await peer.stream.cancel();
    await holdThenDrop(server, peer);
    gone.push(peer);
  }
  assert.equal((await refusedStream(httpUrl(server, "/late"))).status, 503);
  server.clock.advance(8000);
  await waitFor(() => server.handler.connections === 0, "the slots freed");
  await using late = await SsePeer.open(server, "/late");
  assert.equal(await late.join(1), true);
});

// Resuming, ending

Deno.test("a resumed stream delivers what was queued while none was open", async (t) => {
  await using server = startServer();
  await using member = await TestPeer.open(peerUrl(server, "/room"));
  assert.equal(await member.join(1), true);
  await using joiner = await SsePeer.open(server, "/room", {
    keepHeartbeats: true,
  });
  const s = await bindTo(joiner, member, 2);
  await joiner.stream.cancel();

  await t.step("with ?session=<id>", async () => {
    await holdThenDrop(server, joiner);
    // While no stream is open: a content and a heartbeat.
    member.sendContent({ recipientId: s, data: "answer" });
    await waitFor(
      () => hubOf(server.handler).counters.outContent >= 2,
      "the answer relayed",
    );
    server.clock.advance(BEAT);
    await joiner.resume();
    assert.deepEqual(await joiner.nextContent(), toJoiner(s, "answer"));
    assert.deepEqual(await joiner.next(), {
      type: "heartbeat",
      heartbeat: true,
    });
    // Then frames flow down the resumed stream, and up as before.
    member.sendContent({ recipientId: s, data: "candidate" });
    assert.equal((await joiner.nextContent()).data, "candidate");
    await joiner.sendContent({ data: "up" });
    assert.equal((await member.nextContent()).data, "up");
  });

  await t.step("with Last-Event-ID, as EventSource does", async () => {
    await joiner.stream.cancel();
    await holdThenDrop(server, joiner);
    member.sendContent({ recipientId: s, data: "while away" });
    await waitFor(
      () => hubOf(server.handler).counters.outContent >= 5,
      "the content relayed",
    );
    await joiner.resume(
      { "last-event-id": joiner.id },
      httpUrl(server, "/room"),
    );
    assert.equal((await joiner.nextContent()).data, "while away");
  });
  assert.equal(hubOf(server.handler).size, 2);
});

Deno.test("DELETE ends the session: 204, the stream ends, the id is forgotten", async () => {
  await using server = startServer();
  await using member = await SsePeer.open(server, "/room");
  assert.equal(await member.join(1), true);
  const joiner = await SsePeer.open(server, "/room");
  const s = await bindTo(joiner, member, 2);
  assert.equal(await joiner.delete(), 204);
  // The stream ends without a close event: the client closed it.
  await joiner.stream.end();
  assert.equal(
    joiner.stream.text.includes("event: close"),
    false,
    joiner.stream.text,
  );
  assert.deepEqual(await member.nextContent(), fromJoiner(s, ""));
  assert.equal(await joiner.delete(), 404);
  await assertForgotten(server, joiner, 'code="1000",by="client"');

  // A session whose stream dropped ends the same way.
  assert.equal(await member.delete(), 204);
  await member.stream.end();
  await settled(server);
  assert.deepEqual(server.handler.stats(), EMPTY_STATS);
});

Deno.test("a server shutdown closes every session with a close event 1001", async () => {
  await using server = startServer();
  const peer = await SsePeer.open(server, "/room");
  assert.equal(await peer.join(1), true);
  server.handler.drain();
  const refused = await refusedStream(httpUrl(server, "/room"));
  assert.equal(refused.status, 503);
  await server.shutdown();
  assert.deepEqual(await peer.closed, {
    code: 1001,
    reason: "Server shutting down",
  });
  await peer.stream.end();
});

// The gates a WebSocket peer goes through

Deno.test("?favored makes a fallback peer favored: joiners are bound to it first", async () => {
  await using server = startServer();
  await using plain = await TestPeer.open(peerUrl(server, "/room"));
  assert.equal(await plain.join(1), true);
  await using favored = await SsePeer.open(server, "/room?favored");
  assert.equal(await favored.join(2, [1]), true);
  await using joiner = await TestPeer.open(peerUrl(server, "/room"));
  await bindTo(joiner, favored, 3);
  // Its POSTs need the session only: the flag went with the opening GET.
  assert.equal(favored.sessionUrl(), `${favored.url}&session=${favored.id}`);
});

Deno.test("access tokens: /t/<token>/<key> opens a session of <key>, no token 401", async () => {
  const secret = "fallback test secret";
  await using server = startServer({ authSecrets: [secret] });
  const token = await mintToken(secret, { prefix: "room", ttl: 600_000 });
  await using member = await TestPeer.open(peerUrl(server, `/t/${token}/room`));
  assert.equal(await member.join(1), true);
  // POSTs go to the path the session was opened on, token included.
  await using joiner = await SsePeer.open(server, `/t/${token}/room`);
  await bindTo(joiner, member, 2);

  const none = await refusedStream(httpUrl(server, "/room"));
  assert.equal(none.status, 401);
  const wrongKey = await refusedStream(httpUrl(server, `/t/${token}/other`));
  assert.equal(wrongKey.status, 403);
  const other = await mintToken("another token secret", { prefix: "room" });
  const forged = await refusedStream(httpUrl(server, `/t/${other}/room`));
  assert.equal(forged.status, 403);
  assert.equal(hubOf(server.handler).size, 2);
});

Deno.test("the origin allow-list refuses a fallback session from another origin with 403", async () => {
  await using server = startServer({ allowOrigins: ["https://app.example"] });
  const refused = await refusedStream(httpUrl(server, "/room"), {
    origin: "https://evil.example",
  });
  assert.equal(refused.status, 403);
  await using listed = await SsePeer.open(server, "/room", {
    headers: { origin: "https://app.example" },
  });
  assert.equal(await listed.join(1), true);
  // As for a WebSocket, no Origin at all is not a browser: let in.
  await using bot = await SsePeer.open(server, "/room");
  assert.equal(await bot.join(2), false);
  const metrics = await scrape(server);
  assert.equal(metrics.get('sigver_rejections_total{reason="origin"}'), 1);
});

Deno.test("only a GET that accepts text/event-stream is a group, and then on any path", async (t) => {
  await using server = startServer();
  await t.step("a plain GET stays 426, a session query or not", async () => {
    for (const path of ["/room", "/room?session=AAAAAAAAAAAAAAAAAAAAAA"]) {
      const response = await fetch(httpUrl(server, path));
      assert.equal(response.status, 426, path);
      await response.body?.cancel();
    }
    const health = await fetch(httpUrl(server, "/healthz"));
    assert.equal(await health.text(), "ok\n");
  });
  await t.step(
    "GET /healthz with the Accept is the group healthz",
    async () => {
      await using sse = await SsePeer.open(server, "/healthz");
      assert.equal(await sse.join(1), true);
      await using ws = await TestPeer.open(peerUrl(server, "/healthz"));
      await bindTo(ws, sse, 2);
    },
  );
  await t.step(
    "an Accept that lists text/event-stream among others",
    async () => {
      await using peer = await SsePeer.open(server, "/room", {
        headers: { accept: "text/html, text/event-stream;q=0.9" },
      });
      assert.equal(await peer.join(1), true);
    },
  );
  await t.step(
    "an Accept in capitals (media types ignore case)",
    async () => {
      await using peer = await SsePeer.open(server, "/room-caps", {
        headers: { accept: "Text/Event-Stream" },
      });
      assert.equal(await peer.join(1), true);
    },
  );
  await t.step("the empty key is closed with 4741 after the open", async () => {
    const peer = await SsePeer.open(server, "/");
    assert.equal((await closedBy(server, peer)).code, 4741);
    await peer.stream.end();
  });
  await t.step("a POST without a session is no frame: 405", async () => {
    const response = await fetch(httpUrl(server, "/room"), {
      method: "POST",
      body: new Uint8Array([8, 1]),
    });
    assert.equal(response.status, 405);
    await response.body?.cancel();
  });
  await settled(server);
  assert.deepEqual(server.handler.stats(), EMPTY_STATS);
});

Deno.test("a stream silent for 15 s gets a keep-alive comment", async () => {
  // Heartbeats every minute: they don't keep the stream busy.
  await using server = startServer({ heartbeatInterval: 60_000 });
  await using peer = await SsePeer.open(server, "/room");
  server.clock.advance(14_000);
  // A marker: the reply comes after 14 s of silence, and nothing before it.
  assert.equal(await peer.join(1), true);
  assert.deepEqual(peer.stream.comments(), []);
  server.clock.advance(16_000);
  await waitFor(() => peer.stream.comments().length === 1, "a keep-alive");
  server.clock.advance(16_000);
  await waitFor(() => peer.stream.comments().length === 2, "another one");
  assert.deepEqual(peer.stream.comments(), [": keep-alive", ": keep-alive"]);
  // The stream is still a stream of events.
  assert.equal(await peer.join(1), true);
});
