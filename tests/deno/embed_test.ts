/**
 * The handler as an embedder mounts it: under a path prefix (`basePath`)
 * beside the app's own routes in one `Deno.serve`, with real clients (the
 * typed client, on a WebSocket and on the fallback) through it, and the
 * peer events (`onPeer`) an app observes instead of parsing logs.
 */

import assert from "node:assert/strict";
import { createHandler, type SigverHandler } from "../../deno/handler.ts";
import type { PeerEvent } from "../../deno/observe.ts";
import type { HandlerOptions } from "../../deno/options.ts";
import { ManualClock } from "../../lib/clock.ts";
import { deadline } from "../../lib/deadline.ts";
import { keyHash } from "../../lib/log.ts";
import {
  type ContentEvent,
  SigverClient,
  type SigverClientOptions,
} from "../../client/mod.ts";
import { drive, UPGRADE_HEADERS, WAIT_TIMEOUT, waitFor } from "../_helpers.ts";

/** An app with its own routes, and sigver mounted under `/signal`. */
function app(options: HandlerOptions = {}): {
  sigver: SigverHandler;
  clock: ManualClock;
  server: Deno.HttpServer<Deno.NetAddr>;
  base: string;
} & AsyncDisposable {
  const clock = new ManualClock();
  const sigver = createHandler({ basePath: "/signal", clock, ...options });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) => {
      const path = new URL(request.url).pathname;
      if (path === "/" || path === "/about") {
        return new Response(`my app: ${path}`);
      }
      return sigver.fetch(request, info);
    },
  );
  return {
    sigver,
    clock,
    server,
    base: `127.0.0.1:${server.addr.port}`,
    async [Symbol.asyncDispose]() {
      await sigver.close();
      await server.shutdown();
    },
  };
}

/** The next content event of a client, or a failed test. */
function content(client: SigverClient): Promise<ContentEvent> {
  const event = new Promise<Event>((resolve) =>
    client.addEventListener("content", resolve, { once: true })
  );
  return deadline(event, WAIT_TIMEOUT, "a content event") as Promise<
    ContentEvent
  >;
}

/** A member and a joiner of `key` exchange one message each way. */
async function exchange(
  url: string,
  key: string,
  options: SigverClientOptions = {},
): Promise<void> {
  await using member = await SigverClient.open(url, key, options);
  assert.equal(await member.connect(1, []), true);
  await using joiner = await SigverClient.open(url, key, options);
  assert.equal(await joiner.connect(2, []), false);
  const toMember = content(member);
  joiner.send(0, "offer");
  const offer = await toMember;
  assert.equal(new TextDecoder().decode(offer.data), "offer");
  const toJoiner = content(joiner);
  member.send(offer.senderId, "answer");
  assert.equal(new TextDecoder().decode((await toJoiner).data), "answer");
}

Deno.test("a handler mounted under basePath serves peers there beside the app's own routes", async () => {
  await using mounted = app();
  const url = `ws://${mounted.base}/signal`;
  await exchange(url, "room");
  assert.equal(
    await (await fetch(`http://${mounted.base}/about`)).text(),
    "my app: /about",
  );
  const health = await fetch(`http://${mounted.base}/signal/healthz`);
  assert.equal(await health.text(), "ok\n");
});

Deno.test("a handler mounted under basePath serves the fallback under it too", async () => {
  await using mounted = app();
  await exchange(`http://${mounted.base}/signal`, "room", {
    transport: "sse",
  });
});

Deno.test("a handler mounted under basePath answers 404 outside it, upgrades included", async (t) => {
  await using mounted = app();
  for (
    const path of ["/healthz", "/room", "/signalroom", "/other/signal/room"]
  ) {
    await t.step(`GET ${path}`, async () => {
      const response = await fetch(`http://${mounted.base}${path}`);
      assert.equal(response.status, 404);
      assert.match(await response.text(), /^Not Found: outside/);
    });
  }
  await t.step("an upgrade to /room", async () => {
    const response = await fetch(`http://${mounted.base}/room`, {
      headers: UPGRADE_HEADERS,
    });
    assert.equal(response.status, 404);
    assert.match(await response.text(), /^Not Found: outside/);
    assert.equal(mounted.sigver.connections, 0);
  });
});

Deno.test("basePath must be a path without a trailing slash", () => {
  for (const basePath of ["signal", "/signal/", "/a?b", "/a#b", "/a b"]) {
    assert.throws(() => createHandler({ basePath }), TypeError, basePath);
  }
  // "" and "/" mean no prefix.
  createHandler({ basePath: "/" });
  createHandler({ basePath: "" });
});

Deno.test("onPeer tells an app when peers join and leave, with the key's hash and never the key", async () => {
  const events: PeerEvent[] = [];
  await using mounted = app({ onPeer: (event) => events.push(event) });
  const url = `ws://${mounted.base}/signal`;
  const client = await SigverClient.open(url, "secret-room");
  await waitFor(() => events.length === 1, "the joined event");
  assert.deepEqual(events[0], {
    type: "joined",
    key: keyHash("secret-room"),
    protocol: "netflux",
    transport: "websocket",
    remote: false,
  });
  await client.close(4000, "bye");
  await waitFor(() => events.length === 2, "the left event");
  assert.deepEqual(events[1], {
    type: "left",
    key: keyHash("secret-room"),
    protocol: "netflux",
    transport: "websocket",
    remote: false,
    code: 4000,
    reason: "bye",
    by: "client",
  });
  assert.ok(!JSON.stringify(events).includes("secret-room"));
});

Deno.test("onPeer reports the server's close of a peer, and no event for a refused key", async () => {
  const events: PeerEvent[] = [];
  await using mounted = app({ onPeer: (event) => events.push(event) });
  const url = `ws://${mounted.base}/signal`;
  // An empty key is refused after the open (4741): it never joined.
  const refused = await SigverClient.open(url, "");
  // The server closes it once the socket is quiet: a few ticks.
  let code = 0;
  void refused.closed.then((close) => code = close.code);
  await drive(mounted.clock, () => code !== 0, "the refusal");
  assert.equal(code, 4741);
  await SigverClient.open(url, "room", { transport: "sse" });
  await waitFor(() => events.length === 1, "the joined event");
  assert.equal(events[0].transport, "sse");
  await mounted.sigver.close(1001, "Server shutting down");
  assert.deepEqual(events.map((e) => [e.type, e.code, e.by]), [
    ["joined", undefined, undefined],
    ["left", 1001, "server"],
  ]);
});
