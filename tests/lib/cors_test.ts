/**
 * CORS for the answers pages on other origins read (`lib/cors.ts`), and the
 * fallback's answers over real HTTP: a page on an allowed origin reads them,
 * its preflight is answered, another origin is refused.
 */

import { hubOf } from "../../deno/handler.ts";
import assert from "node:assert/strict";
import { answerHeaders, cors, preflightHeaders } from "../../lib/cors.ts";
import { type SseEvent, SseParser } from "../../lib/sse.ts";
import { encodeMessage } from "../../lib/netflux/wire.ts";
import { httpUrl, startServer } from "../_helpers.ts";

Deno.test("cors lets any origin read without an allow-list", () => {
  for (const origin of [null, "https://a.example"]) {
    assert.deepEqual(cors(origin, new Set()), {
      allowed: true,
      headers: { "access-control-allow-origin": "*" },
    });
  }
});

Deno.test("cors names a listed origin back, refuses another, serves none", () => {
  const list = new Set(["https://app.example"]);
  assert.deepEqual(cors("https://app.example", list), {
    allowed: true,
    headers: {
      vary: "Origin",
      "access-control-allow-origin": "https://app.example",
    },
  });
  assert.deepEqual(cors("https://evil.example", list), {
    allowed: false,
    headers: { vary: "Origin" },
  });
  assert.deepEqual(cors(null, list), {
    allowed: true,
    headers: { vary: "Origin" },
  });
});

Deno.test("preflightHeaders allows the methods and headers given, for ten minutes", () => {
  assert.deepEqual(preflightHeaders("GET, POST", "Content-Type"), {
    "access-control-allow-methods": "GET, POST",
    "access-control-allow-headers": "Content-Type",
    "access-control-max-age": "600",
  });
});

Deno.test("the fallback answers a preflight and lets an allowed page read its answers", async () => {
  await using server = startServer({
    allowOrigins: ["https://app.example"],
  });
  const origin = "https://app.example";
  const preflight = await fetch(httpUrl(server, "/room?session=x"), {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type",
    },
  });
  assert.equal(preflight.status, 204);
  assert.equal(
    preflight.headers.get("access-control-allow-origin"),
    origin,
  );
  assert.match(
    preflight.headers.get("access-control-allow-methods") ?? "",
    /POST/,
  );
  assert.match(
    preflight.headers.get("access-control-allow-headers") ?? "",
    /Content-Type/i,
  );
  // A POST for an unknown session: the page can read the 404.
  const unknown = await fetch(
    httpUrl(server, "/room?session=AAAAAAAAAAAAAAAAAAAAAA"),
    { method: "POST", headers: { origin }, body: new Uint8Array([8, 1]) },
  );
  assert.equal(unknown.status, 404);
  assert.equal(unknown.headers.get("access-control-allow-origin"), origin);
  await unknown.body?.cancel();
  // The opening GET: readable by the allowed page.
  const abort = new AbortController();
  const stream = await fetch(httpUrl(server, "/room"), {
    headers: { origin, accept: "text/event-stream" },
    signal: abort.signal,
  });
  assert.equal(stream.status, 200);
  assert.equal(stream.headers.get("access-control-allow-origin"), origin);
  abort.abort();
  await stream.body?.cancel().catch(() => {});
});

Deno.test("the fallback refuses a page on another origin", async () => {
  await using server = startServer({
    allowOrigins: ["https://app.example"],
  });
  const origin = "https://evil.example";
  const opened = await fetch(httpUrl(server, "/room"), {
    headers: { origin, accept: "text/event-stream" },
  });
  assert.equal(opened.status, 403);
  assert.equal(opened.headers.get("access-control-allow-origin"), null);
  await opened.body?.cancel();
  const posted = await fetch(
    httpUrl(server, "/room?session=AAAAAAAAAAAAAAAAAAAAAA"),
    { method: "POST", headers: { origin }, body: new Uint8Array([8, 1]) },
  );
  assert.equal(posted.status, 403);
  await posted.body?.cancel();
});

Deno.test("a POST or a resuming GET from a refused origin never reaches the session", async () => {
  await using server = startServer({
    allowOrigins: ["https://app.example"],
  });
  const abort = new AbortController();
  const stream = await fetch(httpUrl(server, "/room"), {
    headers: { origin: "https://app.example", accept: "text/event-stream" },
    signal: abort.signal,
  });
  const reader = stream.body!.pipeThrough(new TextDecoderStream())
    .getReader();
  const parser = new SseParser();
  const events: SseEvent[] = [];
  const next = async () => {
    while (events.length === 0) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended");
      events.push(...parser.push(value));
    }
    return events.shift()!;
  };
  const session = (await next()).data;
  const connect = encodeMessage({
    type: "connect",
    connect: { id: 1, members: [] },
  });
  const refused = await fetch(httpUrl(server, `/room?session=${session}`), {
    method: "POST",
    headers: { origin: "https://evil.example" },
    body: connect.slice(),
  });
  assert.equal(refused.status, 403);
  await refused.body?.cancel();
  // Nor may it take the session's stream: 403, not the stream, nor 409.
  const resumed = await fetch(httpUrl(server, `/room?session=${session}`), {
    headers: { origin: "https://evil.example", accept: "text/event-stream" },
  });
  assert.equal(resumed.status, 403);
  await resumed.body?.cancel();
  // Then the same frame from no origin: its reply must be the first event.
  const allowed = await fetch(httpUrl(server, `/room?session=${session}`), {
    method: "POST",
    body: connect.slice(),
  });
  assert.equal(allowed.status, 204);
  await allowed.body?.cancel();
  assert.equal((await next()).data, "IAE=", "connected: true, once");
  assert.equal(hubOf(server.handler).counters.inConnect, 1);
  abort.abort();
  await reader.cancel().catch(() => {});
});

Deno.test("answerHeaders: never cached, never sniffed, and the verdict's headers", () => {
  const from = (origin?: string) =>
    new Request("http://localhost/x", {
      headers: origin === undefined ? {} : { origin },
    });
  const open = answerHeaders(from("https://a.example"), new Set());
  assert.equal(open.allowed, true);
  assert.equal(open.headers.get("cache-control"), "no-store");
  assert.equal(open.headers.get("x-content-type-options"), "nosniff");
  assert.equal(open.headers.get("access-control-allow-origin"), "*");
  const listed = new Set(["https://a.example"]);
  const refused = answerHeaders(from("https://b.example"), listed);
  assert.equal(refused.allowed, false);
  assert.equal(refused.headers.get("access-control-allow-origin"), null);
  assert.equal(refused.headers.get("cache-control"), "no-store");
  const mine = answerHeaders(from("https://a.example"), listed);
  assert.equal(
    mine.headers.get("access-control-allow-origin"),
    "https://a.example",
  );
  assert.equal(answerHeaders(from(), listed).allowed, true);
});
