/**
 * Tests of cluster/forward.ts: a fallback session's request passed on to
 * the node that holds the session. The "node" is a `Deno.serve` on
 * loopback that records what it is sent and answers as each test needs;
 * `sessionForwarder` gets a fake cluster node (its id and `nodeUrl` only).
 */

import assert from "node:assert/strict";
import {
  FORWARDED_HEADER,
  forwardSession,
  sessionForwarder,
} from "../../cluster/forward.ts";
import type { ClusterNode } from "../../cluster/node.ts";
import { newSessionId } from "../../lib/sse.ts";
import { freePort } from "../../dev/process.ts";

const HOME = "0123456789abcdef";
const OTHER = "fedcba9876543210";

interface Received {
  method: string;
  url: URL;
  headers: Headers;
  body: Uint8Array;
}

/**
 * A node that records every request and answers with `answer` (by default
 * 404 with a header and a text body: a node's answer that has a body).
 */
function node(answer?: () => Response): {
  server: Deno.HttpServer<Deno.NetAddr>;
  url: string;
  received: Received[];
} {
  const received: Received[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      received.push({
        method: request.method,
        url: new URL(request.url),
        headers: request.headers,
        body: new Uint8Array(await request.arrayBuffer()),
      });
      return answer?.() ?? new Response("from the node\n", {
        status: 404,
        headers: { "x-node": "home", "content-type": "text/plain" },
      });
    },
  );
  return { server, url: `ws://127.0.0.1:${server.addr.port}`, received };
}

/** A request as the edge got it from the client. */
function clientRequest(
  method: string,
  target: string,
  headers: HeadersInit = {},
  body?: BodyInit,
): Request {
  return new Request(`http://edge.example${target}`, {
    method,
    headers,
    body,
  });
}

/** A cluster node as sessionForwarder reads it, with the lookups it got. */
function cluster(
  urls: Record<string, string>,
): { node: ClusterNode; asked: string[] } {
  const asked: string[] = [];
  const fake = {
    id: HOME,
    nodeUrl(id: string): Promise<string | undefined> {
      asked.push(id);
      return Promise.resolve(urls[id]);
    },
  };
  // sessionForwarder reads these two members only; ClusterNode is a class
  // with private state, so a fake must be cast.
  return { node: fake as unknown as ClusterNode, asked };
}

// forwardSession

Deno.test("forwardSession passes a POST on with its path, query, body and the headers the node reads", async () => {
  const home = node();
  await using _ = home.server;
  const request = clientRequest(
    "POST",
    "/base/sse/abc?x=1",
    {
      "content-type": "application/octet-stream",
      origin: "https://app.example",
      accept: "*/*",
      "last-event-id": "7",
      cookie: "secret=1",
      authorization: "Bearer t",
      "x-forwarded-for": "198.51.100.1",
    },
    new Uint8Array([1, 2, 3]),
  );
  const response = await forwardSession(request, home.url, 16);
  assert.equal(response.status, 404);
  assert.equal(response.headers.get("x-node"), "home");
  assert.equal(await response.text(), "from the node\n");
  assert.equal(home.received.length, 1);
  const [got] = home.received;
  assert.equal(got.method, "POST");
  assert.equal(got.url.pathname, "/base/sse/abc");
  assert.equal(got.url.search, "?x=1");
  assert.deepEqual(got.body, new Uint8Array([1, 2, 3]));
  assert.equal(got.headers.get(FORWARDED_HEADER), "1");
  assert.equal(got.headers.get("content-type"), "application/octet-stream");
  assert.equal(got.headers.get("origin"), "https://app.example");
  assert.equal(got.headers.get("accept"), "*/*");
  assert.equal(got.headers.get("last-event-id"), "7");
  assert.equal(got.headers.get("cookie"), null);
  assert.equal(got.headers.get("authorization"), null);
  assert.equal(got.headers.get("x-forwarded-for"), null);
});

Deno.test("forwardSession keeps the method of a DELETE and a GET", async (t) => {
  const answers: Record<string, () => Response> = {
    DELETE: () => new Response(null, { status: 204 }),
    GET: () =>
      new Response("", { headers: { "content-type": "text/event-stream" } }),
  };
  for (const [method, answer] of Object.entries(answers)) {
    await t.step(method, async () => {
      const home = node(answer);
      await using _ = home.server;
      const response = await forwardSession(
        clientRequest(method, "/sse/abc"),
        home.url,
        16,
      );
      assert.equal(response.status, method === "GET" ? 200 : 204);
      await response.body?.cancel();
      assert.deepEqual(home.received.map((r) => r.method), [method]);
      assert.deepEqual(home.received[0].body, new Uint8Array(0));
    });
  }
});

Deno.test("forwardSession answers 413 for a POST over the limit, unread and not passed on", async () => {
  const home = node();
  await using _ = home.server;
  const response = await forwardSession(
    clientRequest("POST", "/sse/abc", {}, new Uint8Array(17)),
    home.url,
    16,
  );
  assert.equal(response.status, 413);
  assert.equal(
    response.headers.get("content-type"),
    "text/plain; charset=utf-8",
  );
  assert.equal(
    await response.text(),
    "Content Too Large: a frame is at most 16 bytes\n",
  );
  assert.deepEqual(home.received, []);
});

Deno.test("forwardSession passes a POST of exactly the limit on", async () => {
  const home = node();
  await using _ = home.server;
  const response = await forwardSession(
    clientRequest("POST", "/sse/abc", {}, new Uint8Array(16)),
    home.url,
    16,
  );
  assert.equal(response.status, 404);
  await response.body?.cancel();
  assert.equal(home.received[0].body.length, 16);
});

Deno.test("forwardSession answers 503 when the node cannot be reached", async () => {
  const response = await forwardSession(
    clientRequest("GET", "/sse/abc"),
    `ws://127.0.0.1:${freePort()}`,
    16,
  );
  assert.equal(response.status, 503);
  assert.equal(
    response.headers.get("content-type"),
    "text/plain; charset=utf-8",
  );
  assert.equal(
    await response.text(),
    "Service Unavailable: the session's node cannot be reached\n",
  );
});

Deno.test("forwardSession streams the node's answer back as it comes", async () => {
  let stream!: ReadableStreamDefaultController<Uint8Array>;
  const home = node(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        start: (controller) => {
          stream = controller;
          controller.enqueue(new TextEncoder().encode("event: one\n\n"));
        },
      }),
      { headers: { "content-type": "text/event-stream" } },
    )
  );
  await using _ = home.server;
  const response = await forwardSession(
    clientRequest("GET", "/sse/abc", { accept: "text/event-stream" }),
    home.url,
    16,
  );
  assert.equal(response.headers.get("content-type"), "text/event-stream");
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  // The first event arrives while the node's stream is still open.
  assert.equal(decoder.decode((await reader.read()).value), "event: one\n\n");
  stream.enqueue(new TextEncoder().encode("event: two\n\n"));
  stream.close();
  let rest = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    rest += decoder.decode(value);
  }
  assert.equal(rest, "event: two\n\n");
});

// sessionForwarder

Deno.test("sessionForwarder leaves a session that would live here to this node", async (t) => {
  const { node: self, asked } = cluster({ [OTHER]: "ws://127.0.0.1:1" });
  const forward = sessionForwarder(self);
  await t.step("an id that names no node", () => {
    assert.equal(
      forward(clientRequest("GET", "/s"), newSessionId(), 16),
      undefined,
    );
  });
  await t.step("an id that names this node", () => {
    assert.equal(
      forward(clientRequest("GET", "/s"), newSessionId(HOME), 16),
      undefined,
    );
  });
  await t.step("a request passed on already", () => {
    const request = clientRequest("GET", "/s", { [FORWARDED_HEADER]: "1" });
    assert.equal(forward(request, newSessionId(OTHER), 16), undefined);
  });
  assert.deepEqual(asked, []);
});

Deno.test("sessionForwarder answers 404 for a session of a node that is not alive", async () => {
  const { node: self, asked } = cluster({});
  const response = await sessionForwarder(self)(
    clientRequest("GET", "/s"),
    newSessionId(OTHER),
    16,
  );
  assert.ok(response !== undefined);
  assert.equal(response.status, 404);
  assert.equal(await response.text(), "Not Found: no such session\n");
  assert.deepEqual(asked, [OTHER]);
});

Deno.test("sessionForwarder passes a request for another node's session on to it", async () => {
  const home = node();
  await using _ = home.server;
  const { node: self } = cluster({ [OTHER]: home.url });
  const id = newSessionId(OTHER);
  const response = await sessionForwarder(self)(
    clientRequest("POST", `/sse/${id}`, {}, "frame"),
    id,
    16,
  );
  assert.ok(response !== undefined);
  assert.equal(response.status, 404);
  await response.body?.cancel();
  assert.equal(home.received.length, 1);
  assert.equal(home.received[0].url.pathname, `/sse/${id}`);
  assert.equal(new TextDecoder().decode(home.received[0].body), "frame");
});
