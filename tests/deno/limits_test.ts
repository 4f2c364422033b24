/**
 * Every limit of `handler.ts` over real sockets: the clear answer (close code
 * and reason, or HTTP status and text), the metric that counts it, and a
 * well-behaved peer of the same server that does not notice. Servers run on
 * a `ManualClock`: tests drive it until the server's close went out.
 */

import { hubOf } from "../../deno/handler.ts";
import assert from "node:assert/strict";
import { createHandler } from "../../deno/handler.ts";
import { ManualClock } from "../../lib/clock.ts";
import type { SigverServer } from "../../deno/serve.ts";
import { encodeMessage } from "../../lib/netflux/wire.ts";
import {
  closedBy,
  driven,
  EMPTY_STATS,
  httpUrl,
  parseClose,
  peersOpen,
  peerUrl,
  RawSocket,
  refusedUpgrade,
  settled,
  startServer,
  TestPeer,
  turn,
  waitFor,
} from "../_helpers.ts";

/** The samples of the server's /metrics, by series (`name{labels}`). */
async function scrape(server: SigverServer): Promise<Map<string, number>> {
  const response = await fetch(httpUrl(server, "/metrics"));
  assert.equal(response.status, 200);
  return parseMetrics(await response.text());
}

function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** A member and a joiner bound to it, in group `key`. */
async function pair(
  server: SigverServer,
  key: string,
  headers?: Record<string, string>,
): Promise<{ member: TestPeer; joiner: TestPeer; sid: number }> {
  const member = await TestPeer.open(peerUrl(server, `/${key}`), { headers });
  const joiner = await TestPeer.open(peerUrl(server, `/${key}`), { headers });
  assert.equal(await member.join(1), true);
  assert.equal(await joiner.join(2), false);
  joiner.sendContent({ data: "offer" });
  const got = await member.nextContent();
  assert.equal(got.data, "offer");
  return { member, joiner, sid: got.senderId };
}

/** Asserts that a bound member and joiner still relay both ways. */
async function assertRelays(
  p: { member: TestPeer; joiner: TestPeer; sid: number },
): Promise<void> {
  p.joiner.sendContent({ data: "ping" });
  assert.deepEqual(await p.member.nextContent(), {
    senderId: p.sid,
    recipientId: 0,
    lastData: false,
    data: "ping",
  });
  p.member.sendContent({ recipientId: p.sid, data: "pong" });
  assert.deepEqual(await p.joiner.nextContent(), {
    senderId: 0,
    recipientId: p.sid,
    lastData: false,
    data: "pong",
  });
}

async function closeAll(...peers: TestPeer[]): Promise<void> {
  await Promise.all(peers.map((p) => p.close()));
}

Deno.test("maxMessageSize closes a peer with 1009 when a frame is larger", async () => {
  await using server = startServer({ maxMessageSize: 1024 });
  const good = await pair(server, "good");
  await using big = await TestPeer.open(peerUrl(server, "/big"));
  assert.equal(await big.join(1), true);
  big.sendRaw(new Uint8Array(1025));
  const closed = await closedBy(server, big);
  assert.equal(closed.code, 1009);
  assert.equal(
    closed.reason,
    "Cannot handle message: 1025 bytes is over the 1024 byte limit",
  );
  await assertRelays(good);
  const m = await scrape(server);
  assert.equal(m.get('sigver_rejections_total{reason="message_size"}'), 1);
  assert.equal(m.get('sigver_closes_total{code="1009",by="server"}'), 1);
  await closeAll(good.member, good.joiner);
});

Deno.test("maxMessageSize relays a frame of exactly the limit", async () => {
  await using server = startServer({ maxMessageSize: 1024 });
  const p = await pair(server, "room");
  const frame = encodeMessage({
    type: "content",
    content: {
      senderId: 0,
      recipientId: 0,
      lastData: false,
      data: new Uint8Array(1024 - 6),
    },
  });
  assert.equal(frame.length, 1024);
  p.joiner.sendRaw(frame);
  const got = await p.member.next();
  assert.equal(got.type, "content");
  assert.equal(got.type === "content" && got.content.data.length, 1018);
  await closeAll(p.member, p.joiner);
});

Deno.test("maxPeers answers 503 before the upgrade when the server is full", async () => {
  await using server = startServer({ maxPeers: 2 });
  const p = await pair(server, "room");
  const answer = await refusedUpgrade(server, "/room");
  assert.deepEqual(answer, {
    status: 503,
    body: "Service Unavailable: the server is full\n",
  });
  assert.equal(server.handler.connections, 2);
  await assertRelays(p);
  const m = await scrape(server);
  assert.equal(m.get('sigver_rejections_total{reason="capacity"}'), 1);
  assert.equal(m.get("sigver_connections_total"), 2);
  await p.joiner.close();
  await waitFor(() => server.handler.connections === 1, "a free slot");
  await using again = await TestPeer.open(peerUrl(server, "/room"));
  assert.equal(await again.join(3), false);
  await p.member.close();
});

Deno.test("maxPeersPerAddress answers 429 when the last X-Forwarded-For address has too many peers", async () => {
  await using server = startServer({ maxPeersPerAddress: 2, trustProxy: true });
  const xff = (chain: string) => ({ "x-forwarded-for": chain });
  const p = await pair(server, "room", xff("10.0.0.1, 203.0.113.7"));
  // Only the last entry (the one the trusted proxy saw) counts.
  const answer = await refusedUpgrade(
    server,
    "/room",
    xff("10.9.9.9, 203.0.113.7"),
  );
  assert.deepEqual(answer, {
    status: 429,
    body: "Too Many Requests: too many peers from this address\n",
  });
  await using other = await TestPeer.open(peerUrl(server, "/room"), {
    headers: xff("203.0.113.7, 198.51.100.1"),
  });
  await assertRelays(p);
  const m = await scrape(server);
  assert.equal(m.get('sigver_rejections_total{reason="address"}'), 1);
  await p.joiner.close();
  await waitFor(() => server.handler.connections === 2, "a free slot");
  await using again = await TestPeer.open(peerUrl(server, "/room"), {
    headers: xff("203.0.113.7"),
  });
  await closeAll(p.member, other, again);
});

Deno.test("maxPeersPerAddress counts the Forwarded address without its port", async () => {
  await using server = startServer({ maxPeersPerAddress: 1, trustProxy: true });
  const fwd = (value: string) => ({ forwarded: value });
  await using a = await TestPeer.open(peerUrl(server, "/room"), {
    headers: fwd('for="[2001:db8::1]:4711";proto=https'),
  });
  const answer = await refusedUpgrade(
    server,
    "/room",
    fwd('for=192.0.2.1, for="[2001:db8::1]:4712"'),
  );
  assert.equal(answer.status, 429);
  await using b = await TestPeer.open(peerUrl(server, "/room"), {
    headers: fwd("for=192.0.2.43:4711"),
  });
  assert.equal(
    (await refusedUpgrade(server, "/room", fwd("for=192.0.2.43:4712"))).status,
    429,
  );
  await closeAll(a, b);
});

Deno.test("maxPeersPerAddress ignores X-Forwarded-For and loopback without trustProxy", async () => {
  await using server = startServer({ maxPeersPerAddress: 1 });
  const headers = { "x-forwarded-for": "203.0.113.7" };
  const p = await pair(server, "room", headers);
  await using third = await TestPeer.open(peerUrl(server, "/room"), {
    headers,
  });
  await assertRelays(p);
  const m = await scrape(server);
  assert.equal(m.get('sigver_rejections_total{reason="address"}'), undefined);
  await closeAll(p.member, p.joiner, third);
});

Deno.test("messageRate closes a flooding peer with 1008 while a normal peer keeps relaying", async () => {
  await using server = startServer({ messageRate: 10, messageBurst: 20 });
  const good = await pair(server, "good");
  await using flood = await TestPeer.open(peerUrl(server, "/flood"));
  // 200 messages at once: far over a burst of 20, whatever the timing.
  for (let i = 0; i < 200 && !flood.isClosed; i++) flood.sendHeartbeat();
  const closed = await closedBy(server, flood);
  assert.equal(closed.code, 1008);
  assert.equal(closed.reason, "Cannot relay: over 10 messages per second");
  await assertRelays(good);
  const m = await scrape(server);
  assert.equal(m.get('sigver_rejections_total{reason="message_rate"}'), 1);
  assert.equal(m.get('sigver_closes_total{code="1008",by="server"}'), 1);
  await closeAll(good.member, good.joiner);
});

Deno.test("messageRate lets the first frames through on a server that sat idle", async () => {
  // Refills are measured on the tick's clock, which stands still while no
  // peer is connected: a bucket stamped by another clock reading once lost
  // its tokens to the idle time and closed the first frame with 1008.
  await using server = startServer();
  server.clock.advance(60_000);
  const p = await pair(server, "room");
  await assertRelays(p);
  const m = await scrape(server);
  assert.equal(
    m.get('sigver_rejections_total{reason="message_rate"}'),
    undefined,
  );
  await closeAll(p.member, p.joiner);
});

Deno.test("maxBufferedAmount closes a member with 1008 when it stops reading", async () => {
  await using server = startServer({
    maxBufferedAmount: 64 * 1024,
    messageRate: 0,
  });
  const good = await pair(server, "good");
  // The member never reads until the end: a raw socket, not a WebSocket.
  using member = await RawSocket.upgrade(server, "/room");
  assert.equal(member.status, 101);
  await member.sendFrame(
    2,
    encodeMessage({ type: "connect", connect: { id: 1, members: [] } }),
  );
  await using joiner = await TestPeer.open(peerUrl(server, "/room"));
  assert.equal(await joiner.join(2), false);
  const chunk = new Uint8Array(16 * 1024);
  for (let i = 0; i < 4000 && joiner.pending === 0; i++) {
    joiner.sendContent({ data: chunk });
    if (i % 16 === 15) {
      await waitFor(() => joiner.socket.bufferedAmount < 1 << 20, "a send");
      await turn(); // the server reads, and finds the member's buffer full
    }
  }
  // The joiner hears that its member is gone, and goes on by itself.
  const gone = await joiner.nextContent();
  assert.equal(gone.senderId, 0);
  assert.equal(gone.data, "");
  assert.equal(await joiner.join(2), true);
  await assertRelays(good);
  // The close waits for a quiet socket behind everything buffered.
  const readClose = async () => {
    for (let frame; (frame = await member.readFrame()) !== null;) {
      if (frame.opcode === 8) {
        await member.sendFrame(8, frame.payload);
        return parseClose(frame.payload);
      }
    }
    return null;
  };
  const close = await driven(server, readClose(), "the member's close");
  assert.deepEqual(close, {
    code: 1008,
    reason: "Cannot send: the peer reads too slowly",
  });
  assert.equal(await member.readFrame(), null);
  const m = await scrape(server);
  assert.equal(m.get('sigver_rejections_total{reason="slow_reader"}'), 1);
  assert.equal(m.get('sigver_closes_total{code="1008",by="server"}'), 1);
  await closeAll(good.member, good.joiner);
});

Deno.test("maxBufferedAmount 0 lets output queue up for a member that does not read", async () => {
  await using server = startServer({ maxBufferedAmount: 0, messageRate: 0 });
  using member = await RawSocket.upgrade(server, "/room");
  await member.sendFrame(
    2,
    encodeMessage({ type: "connect", connect: { id: 1, members: [] } }),
  );
  await using joiner = await TestPeer.open(peerUrl(server, "/room"));
  assert.equal(await joiner.join(2), false);
  // 8 MiB: far past what a 64 KiB limit lets through (see the test above).
  const chunk = new Uint8Array(16 * 1024);
  for (let i = 0; i < 512; i++) {
    joiner.sendContent({ data: chunk });
    if (i % 16 === 15) {
      await waitFor(() => joiner.socket.bufferedAmount < 1 << 20, "a send");
    }
  }
  await waitFor(
    () => hubOf(server.handler).counters.inContent === 512,
    "every message to arrive",
  );
  assert.equal(server.handler.stats().peers, 2);
  assert.equal(joiner.pending, 0);
  assert.doesNotMatch(server.handler.metrics(), /slow_reader/);
});

Deno.test("upgradeTimeout closes an upgrade that had not opened in time with 1008", async () => {
  const clock = new ManualClock();
  const handler = createHandler({ upgradeTimeout: 1000, clock });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request, info) => {
      const response = handler.fetch(request, info);
      // Hold the response back while the clock passes the timeout.
      clock.advance(1100);
      await waitFor(
        () => handler.metrics().includes('reason="upgrade_timeout"} 1'),
        "the upgrade timeout",
      );
      return response;
    },
  );
  try {
    const peer = new TestPeer(`ws://127.0.0.1:${server.addr.port}/room`);
    const closed = await peer.waitClosed();
    assert.equal(closed.code, 1008);
    assert.equal(closed.reason, "Cannot open: the upgrade timed out");
    assert.equal(handler.stats().peers, 0);
    assert.equal(handler.connections, 0);
  } finally {
    await handler.close();
    await server.shutdown();
  }
});

Deno.test("handler.close closes a socket that was still opening with 1001", async () => {
  const handler = createHandler();
  let closing: Promise<void> | undefined;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) => {
      const response = handler.fetch(request, info);
      closing = handler.close();
      return response;
    },
  );
  try {
    const peer = new TestPeer(`ws://127.0.0.1:${server.addr.port}/room`);
    const closed = await peer.waitClosed();
    assert.equal(closed.code, 1001);
    assert.equal(closed.reason, "Server shutting down");
    await closing;
    assert.equal(handler.connections, 0);
    assert.equal(handler.stats().peers, 0);
  } finally {
    await server.shutdown();
  }
});

Deno.test("allowOrigins answers 403 when the Origin is not listed", async () => {
  await using server = startServer({ allowOrigins: ["https://app.example"] });
  const origin = { origin: "https://app.example" };
  const p = await pair(server, "room", origin);
  const answer = await refusedUpgrade(server, "/room", {
    origin: "https://evil.example",
  });
  assert.deepEqual(answer, {
    status: 403,
    body: "Forbidden: origin https://evil.example is not allowed\n",
  });
  await assertRelays(p);
  const m = await scrape(server);
  assert.equal(m.get('sigver_rejections_total{reason="origin"}'), 1);
  await closeAll(p.member, p.joiner);
});

Deno.test("allowOrigins lets an upgrade without Origin join", async () => {
  await using server = startServer({ allowOrigins: ["https://app.example"] });
  await using bot = await TestPeer.open(peerUrl(server, "/room?favored"));
  assert.equal(await bot.join(1), true);
});

Deno.test("requireOrigin answers 403 when an upgrade has no Origin", async () => {
  await using server = startServer({
    allowOrigins: ["https://app.example"],
    requireOrigin: true,
  });
  const answer = await refusedUpgrade(server, "/room");
  assert.deepEqual(answer, {
    status: 403,
    body: "Forbidden: origin (none) is not allowed\n",
  });
  await using peer = await TestPeer.open(peerUrl(server, "/room"), {
    headers: { origin: "https://app.example" },
  });
  assert.equal(await peer.join(1), true);
});

Deno.test("endpoints answer plain GETs on their default paths", async () => {
  await using server = startServer();
  const get = async (path: string) => {
    const response = await fetch(httpUrl(server, path));
    return [response.status, await response.text()];
  };
  assert.deepEqual(await get("/healthz"), [200, "ok\n"]);
  assert.deepEqual(await get("/readyz"), [200, "ready\n"]);
  const metrics = await fetch(httpUrl(server, "/metrics"));
  assert.equal(
    metrics.headers.get("content-type"),
    "text/plain; version=0.0.4; charset=utf-8",
  );
  const m = parseMetrics(await metrics.text());
  assert.equal(m.get("sigver_peers"), 0);
  assert.equal(m.get("sigver_draining"), 0);
});

Deno.test("endpoints move to the paths given", async () => {
  await using server = startServer({
    healthPath: "/ops/live",
    readyPath: "/ops/ready",
    metricsPath: "/ops/metrics",
  });
  const status = async (path: string) => {
    const response = await fetch(httpUrl(server, path));
    await response.body?.cancel();
    return response.status;
  };
  assert.equal(await status("/ops/live"), 200);
  assert.equal(await status("/ops/ready?probe=1"), 200);
  assert.equal(await status("/ops/metrics"), 200);
  assert.equal(await status("/healthz"), 426);
  assert.equal(await status("/metrics"), 426);
});

Deno.test("endpoints answer 426 like any other path when turned off", async () => {
  await using server = startServer({
    healthPath: false,
    readyPath: false,
    metricsPath: false,
  });
  for (const path of ["/healthz", "/readyz", "/metrics"]) {
    const response = await fetch(httpUrl(server, path));
    assert.equal(response.status, 426, path);
    assert.match(await response.text(), /^Upgrade Required/);
  }
});

Deno.test("plain requests never create a group", async () => {
  await using server = startServer();
  for (const method of ["GET", "HEAD", "POST", "DELETE"]) {
    const response = await fetch(httpUrl(server, "/room"), { method });
    await response.body?.cancel();
    assert.equal(
      response.status,
      method === "GET" || method === "HEAD" ? 426 : 405,
    );
  }
  assert.deepEqual(server.handler.stats(), EMPTY_STATS);
  assert.equal(server.handler.connections, 0);
});

Deno.test("upgrades on endpoint paths are group keys", async () => {
  await using server = startServer();
  for (const key of ["healthz", "readyz", "metrics"]) {
    const p = await pair(server, key);
    await assertRelays(p);
    await closeAll(p.member, p.joiner);
  }
  await settled(server);
});

Deno.test("drain answers upgrades and readiness with 503 and keeps liveness 200", async () => {
  await using server = startServer();
  const p = await pair(server, "room");
  server.handler.drain();
  assert.deepEqual(await refusedUpgrade(server, "/room"), {
    status: 503,
    body: "Service Unavailable: the server is shutting down\n",
  });
  const ready = await fetch(httpUrl(server, "/readyz"));
  assert.deepEqual([ready.status, await ready.text()], [503, "draining\n"]);
  const live = await fetch(httpUrl(server, "/healthz"));
  assert.deepEqual([live.status, await live.text()], [200, "ok\n"]);
  // Peers already in keep their session until the shutdown.
  await assertRelays(p);
  const m = await scrape(server);
  assert.equal(m.get('sigver_rejections_total{reason="draining"}'), 1);
  assert.equal(m.get("sigver_draining"), 1);
  await closeAll(p.member, p.joiner);
});

Deno.test("shutdown closes every socket with 1001", async () => {
  const server = startServer();
  const p = await pair(server, "room");
  const idle = await TestPeer.open(peerUrl(server, "/other"));
  const bad = new TestPeer(peerUrl(server, "/")); // closed with 4741
  assert.equal((await closedBy(server, bad)).code, 4741);
  await server.shutdown();
  for (const peer of [p.member, p.joiner, idle]) {
    const closed = await peer.waitClosed();
    assert.equal(closed.code, 1001);
    assert.equal(closed.reason, "Server shutting down");
  }
  await server.finished;
  assert.equal(server.handler.connections, 0);
  const m = parseMetrics(server.handler.metrics());
  assert.equal(m.get('sigver_closes_total{code="1001",by="server"}'), 3);
  assert.equal(m.get("sigver_peers"), 0);
});

Deno.test("shutdown refuses upgrades with 503 while a socket is still closing", async () => {
  const server = startServer({ drainTimeout: 10_000 });
  using slow = await RawSocket.upgrade(server, "/room");
  assert.equal(slow.status, 101);
  await waitFor(() => server.handler.stats().peers === 1, "the raw peer");
  const stopped = server.shutdown();
  // The raw socket has not answered the close yet: still draining.
  assert.equal((await refusedUpgrade(server, "/room")).status, 503);
  const ready = await fetch(httpUrl(server, "/readyz"));
  assert.deepEqual([ready.status, await ready.text()], [503, "draining\n"]);
  const frame = await slow.readFrame();
  assert.equal(frame?.opcode, 8);
  assert.deepEqual(parseClose(frame!.payload), {
    code: 1001,
    reason: "Server shutting down",
  });
  await slow.sendFrame(8, frame!.payload);
  await stopped;
  assert.equal(server.handler.connections, 0);
});

Deno.test("log lines carry the peer id and key hash, never the key", async () => {
  const lines: string[] = [];
  const key = "secret-room-5f3a9c";
  {
    await using server = startServer({
      log: (line) => lines.push(line),
      logLevel: "debug",
      maxMessageSize: 64,
      requireOrigin: true,
    });
    const origin = { origin: "https://app.example" };
    const p = await pair(server, key, origin);
    assert.equal((await refusedUpgrade(server, `/${key}`)).status, 403);
    p.joiner.sendRaw(new Uint8Array(65));
    assert.equal((await closedBy(server, p.joiner)).code, 1009);
    await p.member.close(1000, "bye");
    await settled(server);
  }
  for (const line of lines) assert.ok(!line.includes(key), line);
  const opens = lines.filter((l) => / open /.test(l));
  const closes = lines.filter((l) => / close /.test(l));
  assert.equal(opens.length, 2);
  assert.equal(closes.length, 2);
  const hash = / key=([0-9a-f]{8}) /.exec(opens[0])![1];
  for (const line of [...opens, ...closes]) {
    assert.match(line, new RegExp(` peer=\\d+ key=${hash} `));
  }
  assert.match(
    closes.find((l) => l.includes("code=1009"))!,
    /INFO close peer=\d+ key=[0-9a-f]{8} code=1009 reason="Cannot handle message: 65 bytes is over the 64 byte limit" by=server$/,
  );
  assert.match(
    closes.find((l) => l.includes("code=1000"))!,
    /DEBUG close peer=\d+ key=[0-9a-f]{8} code=1000 reason=bye by=client$/,
  );
  assert.match(
    lines.find((l) => / reject /.test(l))!,
    /INFO reject reason=origin status=403 key=[0-9a-f]{8} addr=127\.0\.0\.1$/,
  );
});

Deno.test("log lines parse as JSON when the format is json", async () => {
  const lines: string[] = [];
  const key = "another-secret-key";
  {
    await using server = startServer({
      log: (line) => lines.push(line),
      logFormat: "json",
      logLevel: "debug",
    });
    await using peer = await TestPeer.open(peerUrl(server, `/${key}`));
    peer.sendRaw("text");
    assert.equal((await closedBy(server, peer)).code, 4743);
    await settled(server);
  }
  const records = lines.map((line) => JSON.parse(line));
  for (const r of records) {
    assert.equal(typeof r.time, "string");
    assert.equal(typeof r.level, "string");
    assert.equal(typeof r.event, "string");
  }
  const open = records.find((r) => r.event === "open");
  const close = records.find((r) => r.event === "close");
  assert.equal(typeof open.peer, "number");
  assert.match(open.key, /^[0-9a-f]{8}$/);
  assert.deepEqual(close, {
    time: close.time,
    level: "info",
    event: "close",
    peer: open.peer,
    key: open.key,
    code: 4743,
    reason: "Cannot handle a text frame: frames must be binary",
    by: "server",
  });
  assert.ok(!lines.join("\n").includes(key));
});

Deno.test("log level info leaves out opens, client closes and heartbeat closes", async () => {
  const lines: string[] = [];
  {
    await using server = startServer({ log: (line) => lines.push(line) });
    await using silent = await TestPeer.open(peerUrl(server, "/quiet"));
    await peersOpen(server, 1);
    server.clock.advance(15_000); // three heartbeat periods
    assert.equal((await silent.waitClosed()).code, 4742);
    await using a = await TestPeer.open(peerUrl(server, "/room"));
    await using b = await TestPeer.open(peerUrl(server, "/room"));
    await a.close();
    b.sendRaw("text");
    assert.equal((await closedBy(server, b)).code, 4743);
    await settled(server);
  }
  const peerLines = lines.filter((l) => / (open|close) /.test(l));
  assert.equal(peerLines.length, 1, lines.join("\n"));
  assert.match(peerLines[0], / INFO close .*code=4743/);
});

Deno.test("metrics count peers, groups, bound joiners and messages", async () => {
  await using server = startServer();
  const p = await pair(server, "room");
  await using lone = await TestPeer.open(peerUrl(server, "/lone"));
  const m = await scrape(server);
  assert.equal(m.get("sigver_peers"), 3);
  assert.equal(m.get("sigver_groups"), 1);
  assert.equal(m.get("sigver_members"), 1);
  assert.equal(m.get("sigver_bound_joiners"), 1);
  assert.equal(m.get("sigver_connections_total"), 3);
  assert.equal(m.get('sigver_messages_received_total{type="connect"}'), 2);
  assert.equal(m.get('sigver_messages_received_total{type="content"}'), 1);
  assert.equal(m.get('sigver_messages_sent_total{type="connected"}'), 2);
  assert.equal(m.get('sigver_messages_sent_total{type="content"}'), 1);
  assert.equal(m.get("sigver_relayed_bytes_total"), 5);
  await closeAll(p.member, p.joiner, lone);
  await settled(server);
  const after = await scrape(server);
  assert.equal(after.get("sigver_peers"), 0);
  assert.equal(after.get("sigver_groups"), 0);
  assert.equal(after.get("sigver_bound_joiners"), 0);
  assert.equal(after.get('sigver_closes_total{code="1000",by="client"}'), 3);
});
