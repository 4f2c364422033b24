/**
 * Tests of the client (`client/client.ts`, imported through `client/mod.ts`)
 * against a real server in Deno: membership, content both ways, lastData,
 * gone notices, heartbeats, close codes as typed events and errors, and the
 * abort signal. The server runs
 * on a `ManualClock`: tests drive it for heartbeats and for the closes it
 * starts. The same API over the WebSocket-free fallback (`transport:
 * "sse"`), and `"auto"` choosing it behind a proxy that refuses upgrades.
 */

import { hubOf } from "../../deno/handler.ts";
import assert from "node:assert/strict";
import {
  closedBy,
  httpUrl,
  peersOpen,
  startServer,
  type TestServer,
  upgradeStripper,
  WAIT_TIMEOUT,
  waitFor,
} from "../_helpers.ts";
import type { SigverServer } from "../../deno/serve.ts";
import { deadline } from "../../lib/deadline.ts";
import {
  CLOSE_CODES,
  ContentEvent,
  describeCloseCode,
  ERR_BLOCKING_MEMBER,
  ERR_KEY,
  GoneEvent,
  SigverClient,
  type SigverClientOptions,
  SigverCloseError,
  SigverCloseEvent,
} from "../../client/mod.ts";
import { mintToken } from "../../lib/token.ts";

function base(server: SigverServer): string {
  return `ws://127.0.0.1:${server.addr.port}`;
}

/** The next event of `type`, with a timeout that fails the test. */
function next<K extends "content" | "gone" | "close">(
  client: SigverClient,
  type: K,
): Promise<
  K extends "content" ? ContentEvent : K extends "gone" ? GoneEvent
  : SigverCloseEvent
> {
  const event = new Promise<Event>((resolve) =>
    client.addEventListener(type, resolve, { once: true })
  );
  return deadline(event, WAIT_TIMEOUT, `a ${type} event`) as Promise<never>;
}

/**
 * A member (group id 1) and a joiner (group id 2) bound to it, both on the
 * transport `options` choose.
 */
async function pair(
  server: SigverServer,
  key = "room",
  options: SigverClientOptions = {},
) {
  const member = await SigverClient.open(base(server), key, options);
  assert.equal(await member.connect(1, []), true);
  const joiner = await SigverClient.open(base(server), key, options);
  assert.equal(await joiner.connect(2, []), false);
  return { member, joiner };
}

/** The joiner sends "offer": the content event its member gets. */
async function offer(
  member: SigverClient,
  joiner: SigverClient,
): Promise<ContentEvent> {
  const got = next(member, "content");
  joiner.send(0, "offer");
  return await got;
}

/**
 * The joiner offers, the member answers with bytes: each side sees the ids
 * and data the relay gives it.
 *
 * @returns The joiner's signaling id.
 */
async function offerAndAnswer(
  member: SigverClient,
  joiner: SigverClient,
): Promise<number> {
  const atMember = await offer(member, joiner);
  assert.ok(atMember instanceof ContentEvent);
  assert.notEqual(atMember.senderId, 0);
  assert.equal(atMember.recipientId, 0);
  assert.equal(atMember.lastData, false);
  assert.equal(atMember.text(), "offer");
  const signalingId = atMember.senderId;

  const answer = next(joiner, "content");
  member.send(signalingId, new Uint8Array([1, 2, 3]));
  const atJoiner = await answer;
  assert.equal(atJoiner.senderId, 0);
  assert.equal(atJoiner.recipientId, signalingId);
  assert.deepEqual([...atJoiner.data], [1, 2, 3]);
  return signalingId;
}

/**
 * Six heartbeat periods, twice what closes a silent peer: the client
 * answers every heartbeat and stays open.
 */
async function assertAnswersHeartbeats(
  server: TestServer,
  client: SigverClient,
): Promise<void> {
  let closed = false;
  client.addEventListener("close", () => closed = true);
  await peersOpen(server, 1);
  const counters = hubOf(server.handler).counters;
  for (let i = 1; i <= 6; i++) {
    server.clock.advance(5000);
    assert.equal(counters.outHeartbeat, i);
    await waitFor(
      () => counters.inHeartbeat === i,
      `the client's heartbeat reply ${i}`,
    );
  }
  assert.equal(server.handler.stats().peers, 1);
  assert.equal(closed, false);
  assert.equal(client.open, true);
  assert.equal(await client.connect(1), true);
}

Deno.test("client relays content both ways between a joiner and its member", async () => {
  await using server = startServer();
  const { member, joiner } = await pair(server);
  await using _m = member;
  await using _j = joiner;
  await offerAndAnswer(member, joiner);
  // Once connected to the member, the joiner is a member too.
  assert.equal(await joiner.connect(2, [1]), true);
});

Deno.test("client resolves each connect with its own reply, in order", async () => {
  await using server = startServer();
  await using a = await SigverClient.open(base(server), "room");
  await using b = await SigverClient.open(base(server), "room");
  assert.equal(await a.connect(1), true);
  const replies = await Promise.all([
    b.connect(2, []),
    b.connect(2, [1]),
    b.connect(2, [1]),
  ]);
  assert.deepEqual(replies, [false, true, true]);
});

Deno.test("client sends lastData and the server stops relaying that direction", async () => {
  await using server = startServer();
  const { member, joiner } = await pair(server);
  await using _m = member;
  await using _j = joiner;
  const last = next(member, "content");
  joiner.send(0, "last", { lastData: true });
  const event = await last;
  assert.equal(event.text(), "last");
  // The server does not forward the flag itself.
  assert.equal(event.lastData, false);

  const dropped = hubOf(server.handler).counters.dropped;
  joiner.send(0, "after");
  await waitFor(
    () => hubOf(server.handler).counters.dropped === dropped + 1,
    "the content after lastData to be dropped",
  );
  // The other direction still works, and nothing else reached the member.
  const reply = next(joiner, "content");
  const seen: string[] = [];
  member.addEventListener("content", (e) => seen.push(e.text()));
  member.send(event.senderId, "still here");
  assert.equal((await reply).text(), "still here");
  assert.deepEqual(seen, []);
});

Deno.test("client surfaces gone when the member closes", async () => {
  await using server = startServer();
  const { member, joiner } = await pair(server);
  await using _j = joiner;
  const signalingId = (await offer(member, joiner)).senderId;

  const gone = next(joiner, "gone");
  await member.close();
  const event = await gone;
  assert.ok(event instanceof GoneEvent);
  assert.equal(event.peer, "member");
  assert.equal(event.signalingId, signalingId);
  assert.equal(event.senderId, 0);
  assert.equal(event.recipientId, signalingId);
});

Deno.test("client surfaces gone when a joiner closes", async () => {
  await using server = startServer();
  const { member, joiner } = await pair(server);
  await using _m = member;
  const signalingId = (await offer(member, joiner)).senderId;

  const gone = next(member, "gone");
  await joiner.close();
  const event = await gone;
  assert.equal(event.peer, "joiner");
  assert.equal(event.signalingId, signalingId);
  assert.equal(event.senderId, signalingId);
  assert.equal(event.recipientId, 0);
});

Deno.test("client answers heartbeats so the server keeps it open", async () => {
  await using server = startServer();
  await using client = await SigverClient.open(base(server), "room");
  await assertAnswersHeartbeats(server, client);
});

Deno.test("client reports a refused key as ERR_KEY, as an event and as an error", async (t) => {
  await using server = startServer();
  for (const key of ["", "k".repeat(513)]) {
    await t.step(`key of ${key.length} characters`, async () => {
      const client = await SigverClient.open(base(server), key);
      const closeEvent = next(client, "close");
      const connecting = client.connect(1).then(
        () => assert.fail("connect resolved"),
        (e) => e,
      );
      await closedBy(server, client);
      const error = await connecting;
      assert.ok(error instanceof SigverCloseError);
      assert.equal(error.code, ERR_KEY);
      assert.equal(error.codeName, "ERR_KEY");
      assert.match(error.meaning, /empty or longer than 512/);
      assert.match(
        error.message,
        /^Cannot connect: the socket closed with 4741/,
      );
      const event = await closeEvent;
      assert.ok(event instanceof SigverCloseEvent);
      assert.equal(event.code, ERR_KEY);
      assert.equal(event.codeName, "ERR_KEY");
      assert.match(event.reason, /key/);
      assert.equal(await client.closed, event);
      assert.throws(() => client.send(0, "x"), SigverCloseError);
    });
  }
});

Deno.test("client reports ERR_BLOCKING_MEMBER when a joiner replaces it", async () => {
  await using server = startServer();
  const { member, joiner } = await pair(server);
  await using _j = joiner;
  // Bound to the only member already, the joiner asks again: it replaces it.
  assert.equal(await joiner.connect(2, []), true);
  const event = await closedBy(server, member);
  assert.equal(event.code, ERR_BLOCKING_MEMBER);
  assert.equal(event.codeName, "ERR_BLOCKING_MEMBER");
  await assert.rejects(
    member.connect(1),
    (e) => e instanceof SigverCloseError && e.code === ERR_BLOCKING_MEMBER,
  );
});

Deno.test("client reports GOING_AWAY and rejects a pending connect when the server shuts down", async () => {
  const server = startServer();
  const client = await SigverClient.open(base(server), "room");
  const pending = client.connect(1);
  const stopping = server.shutdown();
  // The reply may win the race; the close always comes.
  await pending.catch((e) => assert.ok(e instanceof SigverCloseError));
  const event = await client.closed;
  assert.equal(event.code, 1001);
  assert.equal(event.codeName, "GOING_AWAY");
  await stopping;
});

Deno.test("client open rejects with a SigverCloseError when the server refuses the upgrade", async () => {
  await using server = startServer({ requireOrigin: true });
  const error = await SigverClient.open(base(server), "room").then(
    () => assert.fail("open resolved"),
    (e) => e,
  );
  assert.ok(error instanceof SigverCloseError);
  assert.equal(error.code, 1006);
  assert.equal(error.codeName, "ABNORMAL");
  assert.match(error.message, /^Cannot open/);
});

Deno.test("client open rejects with the signal's reason when aborted", async (t) => {
  await using server = startServer();
  await t.step("before it starts", async () => {
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    await assert.rejects(
      SigverClient.open(base(server), "room", { signal: controller.signal }),
      /stop/,
    );
  });
  await t.step("while it opens", async () => {
    const controller = new AbortController();
    const opening = SigverClient.open(base(server), "room", {
      signal: controller.signal,
    });
    controller.abort(new Error("stop"));
    await assert.rejects(opening, /stop/);
    await waitFor(() => server.handler.connections === 0, "no connection");
  });
});

Deno.test("client closes and rejects pending connects when its signal aborts", async () => {
  await using server = startServer();
  const controller = new AbortController();
  const client = await SigverClient.open(base(server), "room", {
    signal: controller.signal,
  });
  const pending = client.connect(1);
  controller.abort(new Error("leaving"));
  await assert.rejects(pending, /leaving/);
  const event = await client.closed;
  assert.equal(event.code, 1000);
  await waitFor(() => server.handler.stats().peers === 0, "the peer gone");
});

Deno.test("client joins as favored with the favored option", async () => {
  await using server = startServer();
  await using client = await SigverClient.open(base(server), "room", {
    favored: true,
  });
  assert.match(client.url, /\/room\?favored$/);
  assert.equal(client.favored, true);
  assert.equal(await client.connect(1), true);
  const metrics = await (await fetch(httpUrl(server, "/metrics"))).text();
  assert.match(metrics, /sigver_members 1/);
});

Deno.test("client refuses empty data and ids that are not uint32", async () => {
  await using server = startServer();
  await using client = await SigverClient.open(base(server), "room");
  assert.throws(() => client.send(0, ""), TypeError);
  assert.throws(() => client.send(-1, "x"), RangeError);
  await assert.rejects(client.connect(2 ** 32), RangeError);
  assert.equal(await client.connect(1), true);
});

Deno.test("describeCloseCode names every protocol close code", () => {
  for (const code of [4741, 4742, 4743, 4744, 4745, 1001, 1006, 1008, 1009]) {
    const info = describeCloseCode(code);
    assert.equal(info, CLOSE_CODES[code]);
    assert.ok(info.meaning.length > 10, String(code));
  }
  assert.equal(describeCloseCode(4000).name, "UNKNOWN");
});

// Access tokens

Deno.test("client opens /t/<token>/<key> with the token option", async () => {
  await using server = startServer({
    authSecrets: ["a token secret of 16+ bytes"],
  });
  const token = await mintToken("a token secret of 16+ bytes", {
    prefix: "room",
  });
  await using member = await SigverClient.open(base(server), "room", {
    token,
    favored: true,
  });
  assert.equal(member.url, `${base(server)}/t/${token}/room?favored`);
  assert.equal(await member.connect(1), true);
  await assert.rejects(
    SigverClient.open(base(server), "room"),
    SigverCloseError,
  );
  await assert.rejects(
    SigverClient.open(base(server), "room", { token: "a/b" }),
    TypeError,
  );
});

// The WebSocket-free fallback

/** A server whose log lines are kept, debug ones included. */
function loggedServer(): ReturnType<typeof startServer> & { lines: string[] } {
  const lines: string[] = [];
  const server = startServer({
    log: (line) => lines.push(line),
    logLevel: "debug",
  });
  return Object.assign(server, { lines });
}

Deno.test("client over the fallback relays content both ways, with the same events", async () => {
  await using server = startServer();
  const { member, joiner } = await pair(server, "room", { transport: "sse" });
  await using _j = joiner;
  assert.match(member.url, /^http:\/\/127\.0\.0\.1:\d+\/room$/);
  assert.equal(member.open, true);
  const signalingId = await offerAndAnswer(member, joiner);
  assert.equal(await joiner.connect(2, [1]), true);

  // Frames keep their order: each POST waits for the one before.
  const texts: string[] = [];
  const all = new Promise<void>((resolve) =>
    member.addEventListener("content", (event) => {
      texts.push(event.text());
      if (texts.length === 20) resolve();
    })
  );
  for (let i = 0; i < 20; i++) joiner.send(0, `candidate ${i}`);
  await deadline(all, WAIT_TIMEOUT, "20 candidates");
  assert.deepEqual(
    texts,
    Array.from({ length: 20 }, (_, i) => `candidate ${i}`),
  );

  const gone = next(joiner, "gone");
  const closed = await member.close();
  assert.equal(closed.code, 1000);
  const event = await gone;
  assert.ok(event instanceof GoneEvent);
  assert.equal(event.peer, "member");
  assert.equal(event.signalingId, signalingId);
  assert.throws(() => member.send(0, "x"), SigverCloseError);
});

Deno.test("client over the fallback answers heartbeats so the server keeps it open", async () => {
  await using server = startServer();
  await using client = await SigverClient.open(base(server), "room", {
    transport: "sse",
  });
  await assertAnswersHeartbeats(server, client);
});

Deno.test("client over the fallback reports the server's close codes", async (t) => {
  await using server = startServer();
  await t.step("ERR_KEY, as an event and as an error", async () => {
    const client = await SigverClient.open(base(server), "k".repeat(513), {
      transport: "sse",
    });
    const error = await client.connect(1).then(
      () => assert.fail("connect resolved"),
      (e) => e,
    );
    assert.ok(error instanceof SigverCloseError);
    assert.equal(error.code, ERR_KEY);
    const event = await client.closed;
    assert.equal(event.code, ERR_KEY);
    assert.equal(event.codeName, "ERR_KEY");
    assert.equal(event.wasClean, true);
  });
  await t.step("ERR_BLOCKING_MEMBER when a joiner replaces it", async () => {
    const { member, joiner } = await pair(server, "blocking", {
      transport: "sse",
    });
    await using _j = joiner;
    assert.equal(await joiner.connect(2, []), true);
    const event = await closedBy(server, member);
    assert.equal(event.code, ERR_BLOCKING_MEMBER);
    await assert.rejects(
      member.connect(1),
      (e) => e instanceof SigverCloseError && e.code === ERR_BLOCKING_MEMBER,
    );
  });
  await t.step("GOING_AWAY when the server shuts down", async () => {
    const client = await SigverClient.open(base(server), "room", {
      transport: "sse",
    });
    await server.shutdown();
    const event = await client.closed;
    assert.equal(event.code, 1001);
    assert.equal(event.codeName, "GOING_AWAY");
  });
});

Deno.test("client open over the fallback rejects with the HTTP status the server answered", async () => {
  await using server = startServer();
  server.handler.drain();
  const error = await SigverClient.open(base(server), "room", {
    transport: "sse",
  }).then(() => assert.fail("open resolved"), (e) => e);
  assert.ok(error instanceof SigverCloseError);
  assert.equal(error.code, 1006);
  assert.match(error.reason, /^HTTP 503: Service Unavailable/);
});

Deno.test("client transport auto falls back when the WebSocket upgrade is refused", async () => {
  await using server = loggedServer();
  await using proxy = upgradeStripper(httpUrl(server, ""));
  // A WebSocket member straight to the server, a joiner behind the proxy.
  await using member = await SigverClient.open(base(server), "room");
  assert.equal(await member.connect(1), true);
  await using joiner = await SigverClient.open(proxy.ws, "room");
  assert.equal(joiner.url, `http://127.0.0.1:${proxy.port}/room`);
  assert.equal(await joiner.connect(2), false);
  const signalingId = (await offer(member, joiner)).senderId;
  const answer = next(joiner, "content");
  member.send(signalingId, "answer");
  assert.equal((await answer).text(), "answer");
  const opens = server.lines.filter((line) => / open /.test(line));
  assert.equal(opens.length, 2);
  assert.doesNotMatch(opens[0], /transport=/);
  assert.match(opens[1], /transport=sse/);
});

Deno.test("client transport auto falls back when the WebSocket is not open within fallbackAfter", async () => {
  await using server = loggedServer();
  await using proxy = upgradeStripper(httpUrl(server, ""), { hold: true });
  await using client = await SigverClient.open(proxy.ws, "room", {
    fallbackAfter: 200,
  });
  assert.match(client.url, /^http:/);
  assert.equal(await client.connect(1), true);
  assert.match(
    server.lines.find((l) => / open /.test(l)) ?? "",
    /transport=sse/,
  );
});

Deno.test("client transport auto uses a WebSocket when it can", async () => {
  await using server = loggedServer();
  await using client = await SigverClient.open(base(server), "room");
  assert.match(client.url, /^ws:/);
  assert.equal(await client.connect(1), true);
  const opens = server.lines.filter((line) => / open /.test(line));
  assert.equal(opens.length, 1);
  assert.doesNotMatch(opens[0], /transport=/);
});
