/**
 * y-webrtc clients over real sockets against a real server: the mount at
 * `/y-webrtc` beside Netflux groups, subscribe, publish, unsubscribe and
 * ping, malformed frames, the limits, tokens scoping topics, drain, the idle
 * timeout, the metrics, and the path flags. The client is spoken by hand
 * (`dev/ywebrtc_client.ts`); the real one runs in `tests/e2e/ywebrtc.e2e.ts`.
 */

import assert from "node:assert/strict";
import type { ServeOptions } from "../../deno/serve.ts";
import { ManualClock } from "../../lib/clock.ts";
import { YClient } from "../../dev/ywebrtc_client.ts";
import {
  closedBy,
  httpUrl,
  peerUrl,
  refusedUpgrade,
  startServer,
  TestPeer,
  type TestServer,
  waitFor,
} from "../_helpers.ts";
import { refToken } from "../_reference.ts";
import { Cli, cliArgs } from "../_cli.ts";

const SECRET = "ywebrtc-auth-secret-for-tests";

function server(options: Omit<ServeOptions, "clock"> = {}): TestServer {
  return startServer({ ...options, clock: new ManualClock() });
}

async function metricsText(s: TestServer): Promise<string> {
  return await (await fetch(httpUrl(s, "/metrics"))).text();
}

Deno.test("GET /y-webrtc answers okay, as y-webrtc's own server does", async () => {
  await using s = server();
  const answer = await fetch(httpUrl(s, "/y-webrtc"));
  assert.equal(answer.status, 200);
  assert.equal(await answer.text(), "okay");
});

Deno.test("y-webrtc publishes reach every subscriber, sender included, beside a Netflux group", async () => {
  await using s = server();
  await using netflux = await TestPeer.open(peerUrl(s, "/room"));
  await using a = await YClient.open(peerUrl(s, "/y-webrtc"));
  await using b = await YClient.open(peerUrl(s, "/y-webrtc"));
  await using c = await YClient.open(peerUrl(s, "/y-webrtc"));
  a.send({ type: "subscribe", topics: ["room"] });
  b.send({ type: "subscribe", topics: ["room", "other"] });
  c.send({ type: "subscribe", topics: ["other"] });
  await Promise.all([a.sync(), b.sync(), c.sync()]);
  const data = { type: "announce", from: "peer-a" };
  a.send({ type: "publish", topic: "room", data });
  const expected = { type: "publish", topic: "room", data, clients: 2 };
  assert.deepEqual(await a.next(), expected);
  assert.deepEqual(await b.next(), expected);
  await c.sync();
  assert.equal(c.pending, 0);
  // The Netflux peer on /room is in a group of its own: it joins alone.
  assert.equal(await netflux.join(1), true);
});

Deno.test("y-webrtc unsubscribe leaves the topic, and only subscribers publish", async () => {
  await using s = server();
  await using a = await YClient.open(peerUrl(s, "/y-webrtc"));
  await using b = await YClient.open(peerUrl(s, "/y-webrtc"));
  a.send({ type: "subscribe", topics: ["room"] });
  b.send({ type: "subscribe", topics: ["room"] });
  await Promise.all([a.sync(), b.sync()]);
  a.send({ type: "unsubscribe", topics: ["room"] });
  await a.sync();
  b.send({ type: "publish", topic: "room", data: 1 });
  assert.deepEqual(await b.next(), {
    type: "publish",
    topic: "room",
    data: 1,
    clients: 1,
  });
  a.send({ type: "publish", topic: "room", data: 2 });
  await a.sync();
  assert.equal(a.pending, 0);
  await b.sync();
  assert.equal(b.pending, 0);
  const text = await metricsText(s);
  assert.match(text, /^sigver_ywebrtc_topics\{protocol="y-webrtc"\} 1$/m);
  assert.match(
    text,
    /^sigver_ywebrtc_publishes_dropped_total\{protocol="y-webrtc"\} 1$/m,
  );
});

Deno.test("a malformed y-webrtc frame closes only its sender with 4743", async (t) => {
  await using s = server();
  await using other = await YClient.open(peerUrl(s, "/y-webrtc"));
  const cases: [string | Uint8Array, string][] = [
    ["{nope", "Cannot handle message: not JSON"],
    ['{"type":"subscribe","topics":[1]}', "a subscribe needs topics"],
    ['{"type":"what"}', "Cannot handle message: unknown type"],
    [new Uint8Array([1, 2]), "Cannot handle a binary frame"],
  ];
  for (const [frame, reason] of cases) {
    await t.step(typeof frame === "string" ? frame : "binary", async () => {
      await using bad = await YClient.open(peerUrl(s, "/y-webrtc"));
      bad.sendRaw(frame);
      const closed = await closedBy(s, bad);
      assert.equal(closed.code, 4743);
      assert.ok(closed.reason.includes(reason), closed.reason);
    });
  }
  await other.sync();
});

Deno.test("y-webrtc limits close the client with a code and a reason", async (t) => {
  await using s = server({
    yWebrtcMaxTopics: 2,
    yWebrtcMaxSubscribers: 1,
    yWebrtcMaxTopicLength: 8,
    maxMessageSize: 200,
  });
  const cases: [unknown[], number, RegExp][] = [
    [[{ type: "subscribe", topics: ["123456789"] }], 4750, /over 8 char/],
    [[{ type: "subscribe", topics: ["a", "b", "c"] }], 4751, /over 2 topics/],
    [[{ type: "subscribe", topics: ["full"] }], 4752, /1 subscribers/],
    [[{ type: "publish", topic: "x", data: "y".repeat(300) }], 1009, /200/],
  ];
  await using holder = await YClient.open(peerUrl(s, "/y-webrtc"));
  holder.send({ type: "subscribe", topics: ["full"] });
  await holder.sync();
  for (const [messages, code, reason] of cases) {
    await t.step(String(code), async () => {
      await using client = await YClient.open(peerUrl(s, "/y-webrtc"));
      for (const message of messages) client.send(message);
      const closed = await closedBy(s, client);
      assert.equal(closed.code, code);
      assert.match(closed.reason, reason);
    });
  }
  await holder.sync();
  const text = await metricsText(s);
  assert.match(
    text,
    /^sigver_ywebrtc_refusals_total\{protocol="y-webrtc",reason="topics_per_peer"\} 1$/m,
  );
});

Deno.test("with tokens, y-webrtc clients connect at /t/<token>/y-webrtc and the prefix scopes topics", async () => {
  const lines: string[] = [];
  await using s = server({
    authSecrets: [SECRET],
    log: (line) => lines.push(line),
    logLevel: "debug",
  });
  const expiry = Math.floor(Date.now() / 1000) + 600;
  const token = refToken(SECRET, expiry, "team-a/");
  assert.equal((await refusedUpgrade(s, "/y-webrtc")).status, 401);
  assert.equal(
    (await refusedUpgrade(s, `/t/${refToken("x".repeat(32), expiry)}/y-webrtc`))
      .status,
    403,
  );
  const plain = await fetch(httpUrl(s, `/t/${token}/y-webrtc`));
  assert.equal(await plain.text(), "okay");
  await using a = await YClient.open(peerUrl(s, `/t/${token}/y-webrtc`));
  a.send({ type: "subscribe", topics: ["team-a/doc"] });
  a.send({ type: "publish", topic: "team-a/doc", data: 1 });
  assert.deepEqual(await a.next(), {
    type: "publish",
    topic: "team-a/doc",
    data: 1,
    clients: 1,
  });
  a.send({ type: "subscribe", topics: ["team-b/doc"] });
  const closed = await closedBy(s, a);
  assert.equal(closed.code, 4753);
  assert.match(closed.reason, /outside the access token's prefix/);
  // Topics are never logged in clear.
  assert.ok(lines.some((line) => line.includes("code=4753")), lines.join("\n"));
  assert.ok(!lines.some((line) => line.includes("team-")), lines.join("\n"));
});

Deno.test("a drain closes y-webrtc clients with 1001", async () => {
  const s = server();
  const a = await YClient.open(peerUrl(s, "/y-webrtc"));
  a.send({ type: "subscribe", topics: ["room"] });
  await a.sync();
  const done = s.shutdown();
  const closed = await a.waitClosed();
  await done;
  assert.equal(closed.code, 1001);
});

Deno.test("a y-webrtc client silent for the idle timeout is closed with 4742", async () => {
  await using s = server({ yWebrtcIdleTimeout: 20_000 });
  await using quiet = await YClient.open(peerUrl(s, "/y-webrtc"));
  await using talker = await YClient.open(peerUrl(s, "/y-webrtc"));
  await waitFor(
    async () => /^sigver_ywebrtc_peers\{[^}]*\} 2$/m.test(await metricsText(s)),
    "both clients",
  );
  for (let i = 0; i < 3; i++) {
    s.clock.advance(10_000);
    await talker.sync();
  }
  const closed = await closedBy(s, quiet);
  assert.equal(closed.code, 4742);
  assert.equal(talker.isClosed, false);
});

Deno.test("yWebrtcPath moves y-webrtc, and false gives its path back to Netflux", async () => {
  {
    await using s = server({ yWebrtcPath: "/signal/yjs" });
    await using a = await YClient.open(peerUrl(s, "/signal/yjs"));
    await a.sync();
    await using netflux = await TestPeer.open(peerUrl(s, "/y-webrtc"));
    assert.equal(await netflux.join(1), true);
  }
  {
    await using s = server({ yWebrtcPath: false });
    await using netflux = await TestPeer.open(peerUrl(s, "/y-webrtc"));
    assert.equal(await netflux.join(1), true);
  }
  assert.throws(() => server({ yWebrtcPath: "y-webrtc/" }), TypeError);
});

Deno.test("the CLI takes the y-webrtc flags, and refuses bad values with exit 2", async () => {
  {
    await using cli = new Cli(
      cliArgs("--y-webrtc-path", "/yjs", "--y-webrtc-max-topics", "1"),
    );
    const port = await cli.port();
    await using a = await YClient.open(`ws://127.0.0.1:${port}/yjs`);
    a.send({ type: "subscribe", topics: ["a", "b"] });
    assert.equal((await a.waitClosed()).code, 4751);
  }
  for (const flag of ["--y-webrtc-max-topics", "--y-webrtc-idle-timeout"]) {
    await using cli = new Cli(cliArgs(flag, "-1"));
    assert.equal(await cli.exit(), 2);
    assert.match(cli.stderr, new RegExp(`^error: .*${flag}`, "m"));
  }
});
