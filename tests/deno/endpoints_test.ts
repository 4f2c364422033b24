/**
 * Unit tests of deno/endpoints.ts: the answers to plain HTTP requests,
 * without sockets. `answerPlain` gets a `Request`, its target below the
 * base path and a fake {@linkcode EndpointSource}; the ICE servers
 * endpoint, where one is configured, is a real `IceServersEndpoint`.
 */

import assert from "node:assert/strict";
import type { Refusal } from "../../lib/admission.ts";
import {
  answerAdmin,
  answerPlain,
  type EndpointPaths,
  type EndpointSource,
  textResponse,
} from "../../deno/endpoints.ts";
import { IceServersEndpoint } from "../../deno/ice.ts";

const PATHS: EndpointPaths = {
  health: "/health",
  ready: "/ready",
  metrics: "/metrics",
  cluster: "/cluster",
  ice: "/ice-servers",
};

/** A TURN secret, of the 16 bytes and more a secret must have. */
const TURN_SECRET = "a coturn secret of 32 bytes.....";

const UPGRADE_TEXT =
  "Upgrade Required: this is a WebRTC signaling server (sigver). Open a WebSocket to ws[s]://HOST/<key>\n";

/** A server's state as the endpoints read it, with what they reported. */
class FakeSource implements EndpointSource {
  paths: EndpointPaths = PATHS;
  demo = false;
  publicMetrics = true;
  ice: IceServersEndpoint | undefined = undefined;
  why: string | undefined = undefined;
  view: unknown = undefined;
  readonly refusals: {
    refusal: Refusal;
    request: Request;
    remote: string | undefined;
  }[] = [];
  notReady(): string | undefined {
    return this.why;
  }
  metrics(): string {
    return "# TYPE sigver_peers gauge\nsigver_peers 3\n";
  }
  clusterView(): unknown {
    return this.view;
  }
  refusedIce(
    refusal: Refusal,
    request: Request,
    remote: string | undefined,
  ): void {
    this.refusals.push({ refusal, request, remote });
  }
}

function source(over: Partial<FakeSource> = {}): FakeSource {
  return Object.assign(new FakeSource(), over);
}

function request(
  target: string,
  method = "GET",
  headers: HeadersInit = {},
): Request {
  return new Request(`http://127.0.0.1${target}`, { method, headers });
}

/** Answers `target` (also the request's path) from `from`. */
function answer(
  from: EndpointSource,
  target: string,
  method = "GET",
  headers: HeadersInit = {},
): Promise<Response> {
  return Promise.resolve(
    answerPlain(request(target, method, headers), target, from, "192.0.2.1"),
  );
}

function assertPlainText(response: Response): void {
  assert.equal(
    response.headers.get("content-type"),
    "text/plain; charset=utf-8",
  );
  assert.equal(response.headers.get("cache-control"), "no-store");
}

// textResponse

Deno.test("textResponse answers a line of plain text, never cached", async () => {
  const response = textResponse(418, "I'm a teapot");
  assert.equal(response.status, 418);
  assertPlainText(response);
  assert.equal(await response.text(), "I'm a teapot\n");
});

Deno.test("textResponse keeps more headers, but not another type or caching", async () => {
  const response = textResponse(405, "no", {
    allow: "GET",
    "content-type": "text/html",
    "cache-control": "max-age=60",
  });
  assert.equal(response.headers.get("allow"), "GET");
  assertPlainText(response);
  await response.body?.cancel();
});

// answerPlain

Deno.test("answerPlain answers the health path with 200 ok", async () => {
  const response = await answer(source(), "/health");
  assert.equal(response.status, 200);
  assertPlainText(response);
  assert.equal(await response.text(), "ok\n");
});

Deno.test("answerPlain reads the path without its query", async () => {
  const response = await answer(source(), "/health?probe=1");
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "ok\n");
});

Deno.test("answerPlain answers HEAD like GET", async () => {
  const response = await answer(source(), "/health", "HEAD");
  assert.equal(response.status, 200);
  await response.body?.cancel();
});

Deno.test("answerPlain answers ready with 200, or 503 and the reason", async () => {
  const ready = await answer(source(), "/ready");
  assert.equal(ready.status, 200);
  assert.equal(await ready.text(), "ready\n");
  const draining = await answer(
    source({ why: "Not ready: the server is draining" }),
    "/ready",
  );
  assert.equal(draining.status, 503);
  assertPlainText(draining);
  assert.equal(await draining.text(), "Not ready: the server is draining\n");
});

Deno.test("answerPlain answers metrics in the Prometheus text format", async () => {
  const response = await answer(source(), "/metrics");
  assert.equal(response.status, 200);
  assert.equal(
    response.headers.get("content-type"),
    "text/plain; version=0.0.4; charset=utf-8",
  );
  assert.equal(response.headers.get("cache-control"), "no-store");
  assert.equal(
    await response.text(),
    "# TYPE sigver_peers gauge\nsigver_peers 3\n",
  );
});

Deno.test("answerPlain never serves the cluster view: it names the node's internal address", async () => {
  const view = { node: "0123456789abcdef", peers: 2 };
  for (const from of [source({ view }), source()]) {
    const response = await answer(from, "/cluster");
    assert.equal(response.status, 404);
    assert.equal(
      await response.text(),
      "Not Found: this is served on the admin listener (--admin-port)\n",
    );
  }
});

Deno.test("answerPlain keeps the metrics to the admin listener when they are not public", async () => {
  const response = await answer(source({ publicMetrics: false }), "/metrics");
  assert.equal(response.status, 404);
  await response.body?.cancel();
});

Deno.test("answerAdmin serves health, readiness, metrics and the cluster view, and 404 for the rest", async () => {
  const view = { node: "0123456789abcdef", peers: 2 };
  const admin = (path: string, method = "GET") =>
    answerAdmin(
      new Request(`http://127.0.0.1:9000${path}`, { method }),
      source({ view, publicMetrics: false }),
    );
  assert.equal(await admin("/health").text(), "ok\n");
  assert.equal(await admin("/ready").text(), "ready\n");
  assert.match(await admin("/metrics").text(), /sigver_peers 3/);
  assert.deepEqual(await admin("/cluster").json(), view);
  for (const path of ["/", "/room", "/ice-servers"]) {
    const response = admin(path);
    assert.equal(response.status, 404, path);
    await response.body?.cancel();
  }
  const post = admin("/metrics", "POST");
  assert.equal(post.status, 405);
  await post.body?.cancel();
});

Deno.test("answerPlain refuses other methods with 405 and Allow", async (t) => {
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
    await t.step(method, async () => {
      const response = await answer(source(), "/health", method);
      assert.equal(response.status, 405);
      assert.equal(response.headers.get("allow"), "GET, HEAD");
      assertPlainText(response);
      assert.equal(
        await response.text(),
        "Method Not Allowed: this is a WebRTC signaling server\n",
      );
    });
  }
});

Deno.test("answerPlain answers any other path with 426 and an Upgrade header", async (t) => {
  const targets = ["/room", "/", "*", "/health/more"];
  for (const target of targets) {
    await t.step(target, async () => {
      const response = await Promise.resolve(
        answerPlain(request("/x"), target, source(), undefined),
      );
      assert.equal(response.status, 426);
      assert.equal(response.headers.get("upgrade"), "websocket");
      assert.equal(response.headers.get("connection"), "Upgrade");
      assertPlainText(response);
      assert.equal(await response.text(), UPGRADE_TEXT);
    });
  }
});

Deno.test("answerPlain answers 426 on a path that is off", async () => {
  const response = await answer(
    source({ paths: { ...PATHS, health: false, metrics: false } }),
    "/health",
  );
  assert.equal(response.status, 426);
  await response.body?.cancel();
});

Deno.test("answerPlain serves the demo page only when the demo is on", async () => {
  const on = await answer(source({ demo: true }), "/");
  assert.equal(on.status, 200);
  assert.equal(on.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(
    await on.text(),
    /<meta name="sigver-ice-servers" content="">/,
  );
  const off = await answer(source(), "/");
  assert.equal(off.status, 426);
  await off.body?.cancel();
});

Deno.test("answerPlain points the demo page at the ICE servers path when TURN is on", async () => {
  const ice = new IceServersEndpoint({
    turn: {
      secret: TURN_SECRET,
      urls: ["turn:127.0.0.1:3478"],
      public: true,
    },
  });
  const response = await answer(source({ demo: true, ice }), "/");
  assert.match(
    await response.text(),
    /<meta name="sigver-ice-servers" content="\/ice-servers">/,
  );
});

Deno.test("answerPlain hands the ICE servers path to its endpoint, every method", async () => {
  const ice = new IceServersEndpoint({
    turn: {
      secret: TURN_SECRET,
      urls: ["turn:127.0.0.1:3478"],
      public: true,
    },
    now: () => 1_700_000_000_000,
  });
  const from = source({ ice });
  const get = await answer(from, "/ice-servers");
  assert.equal(get.status, 200);
  const body = await get.json();
  assert.match(body.iceServers[0].username, /^1700003640:[0-9a-f]{16}$/);
  // A preflight is the endpoint's, not a 405.
  const options = await answer(from, "/ice-servers", "OPTIONS");
  assert.equal(options.status, 204);
  assert.equal(options.headers.get("allow"), "GET, HEAD, OPTIONS");
});

Deno.test("answerPlain reports the ICE servers endpoint's refusals to the source", async () => {
  const ice = new IceServersEndpoint({
    turn: {
      secret: TURN_SECRET,
      urls: ["turn:127.0.0.1:3478"],
      public: true,
    },
    allowOrigins: ["https://app.example"],
  });
  const from = source({ ice });
  const response = await answer(from, "/ice-servers", "GET", {
    origin: "https://evil.example",
  });
  assert.equal(response.status, 403);
  await response.body?.cancel();
  assert.equal(from.refusals.length, 1);
  assert.deepEqual(from.refusals[0].refusal, {
    status: 403,
    reason: "origin",
    message: "Forbidden: origin https://evil.example is not allowed",
  });
  assert.equal(from.refusals[0].remote, "192.0.2.1");
  assert.equal(
    from.refusals[0].request.headers.get("origin"),
    "https://evil.example",
  );
});

Deno.test("answerPlain answers the ICE servers path like any other without an endpoint", async () => {
  const response = await answer(source(), "/ice-servers");
  assert.equal(response.status, 426);
  await response.body?.cancel();
});
