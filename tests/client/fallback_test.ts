// Tests of client_sse.ts's SseSocket against a hand-made fallback server
// (Deno.serve on 127.0.0.1), which answers each request as the test needs:
// streams that drop, resumes refused with 409 while the old stream is held,
// POSTs refused. What a real sigver answers is tests/client_test.ts's.

import assert from "node:assert/strict";
import { SseSocket } from "../../client/fallback.ts";
import { deadline } from "../../lib/deadline.ts";
import { WAIT_TIMEOUT } from "../_helpers.ts";

const SESSION = "AAAAAAAAAAAAAAAAAAAAAA";

/** A stream: its events, then it ends (a drop) unless `hold`. */
function stream(events: string, hold = false): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(events));
      if (!hold) controller.close();
    },
  });
  return new Response(body, {
    headers: { "content-type": "text/event-stream" },
  });
}

const SESSION_EVENT = `event: session\nid: ${SESSION}\ndata: ${SESSION}\n\n`;

/**
 * A fallback server whose GETs are answered in turn by `gets`, and whose
 * POSTs and DELETEs by `post` (204 by default); it records every request.
 */
function fakeServer(
  gets: (() => Response)[],
  post: (request: Request) => Response = () =>
    new Response(null, { status: 204 }),
) {
  const requests: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => {
      const url = new URL(request.url);
      requests.push(`${request.method} ${url.pathname}${url.search}`);
      if (request.method !== "GET") return post(request);
      const answer = gets.shift();
      return answer?.() ?? new Response("gone", { status: 404 });
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/room`,
    requests,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** Opens a socket and resolves with its close event. */
function closedOf(socket: SseSocket): Promise<CloseEvent> {
  return deadline(
    new Promise<CloseEvent>((resolve) => socket.onclose = resolve),
    WAIT_TIMEOUT,
    "the socket's close",
  );
}

const conflict = () => new Response("held", { status: 409 });

Deno.test("SseSocket resumes a dropped stream, retries 409 while the old one is held, and counts again once a stream opens", async () => {
  // Two drops, each followed by four 409s before a stream opens: eight
  // resumes in all, more than the five a row allows, so the count must
  // start again when the first resumed stream opens.
  const close = `event: close\ndata: {"code":4000,"reason":"done"}\n\n`;
  await using server = fakeServer([
    () => stream(SESSION_EVENT),
    conflict,
    conflict,
    conflict,
    conflict,
    () => stream(SESSION_EVENT),
    conflict,
    conflict,
    conflict,
    conflict,
    () => stream(SESSION_EVENT + close, true),
  ]);
  const socket = new SseSocket(server.url, { resumeWait: 1 });
  let opens = 0;
  socket.onopen = () => opens++;
  const event = await closedOf(socket);
  assert.equal(event.code, 4000);
  assert.equal(event.reason, "done");
  assert.equal(event.wasClean, true);
  assert.equal(opens, 1, "one open: resumes are not opens");
  assert.deepEqual(server.requests, [
    "GET /room",
    ...Array(10).fill(`GET /room?session=${SESSION}`),
  ]);
});

Deno.test("SseSocket gives up after five resumes in a row and closes with 1006", async () => {
  await using server = fakeServer([
    () => stream(SESSION_EVENT),
    ...Array(5).fill(conflict),
  ]);
  const socket = new SseSocket(server.url, { resumeWait: 1 });
  const event = await closedOf(socket);
  assert.equal(event.code, 1006);
  assert.equal(event.reason, "The event stream dropped");
  assert.equal(server.requests.length, 6);
});

Deno.test("SseSocket closes with 1006 and ends the session when the server refuses a frame", async () => {
  await using server = fakeServer(
    [() => stream(SESSION_EVENT, true)],
    (request) =>
      request.method === "POST"
        ? new Response("Content Too Large: a frame is at most 1 bytes", {
          status: 413,
        })
        : new Response(null, { status: 204 }),
  );
  const socket = new SseSocket(server.url, { resumeWait: 1 });
  await deadline(
    new Promise((resolve) => socket.onopen = resolve),
    WAIT_TIMEOUT,
    "the open",
  );
  const closed = closedOf(socket);
  socket.send(new Uint8Array([8, 1]));
  const event = await closed;
  assert.equal(event.code, 1006);
  assert.equal(
    event.reason,
    "Cannot send: HTTP 413: Content Too Large: a frame is at most 1 bytes",
  );
  // The DELETE goes out without being waited for: wait for it here.
  await deadline(
    (async () => {
      while (!server.requests.includes(`DELETE /room?session=${SESSION}`)) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })(),
    WAIT_TIMEOUT,
    "the DELETE",
  );
});

Deno.test("SseSocket closed while it waits to resume reports the caller's code, not 1006", async () => {
  await using server = fakeServer([() => stream(SESSION_EVENT)]);
  const socket = new SseSocket(server.url, { resumeWait: 60_000 });
  await deadline(
    new Promise((resolve) => socket.onopen = resolve),
    WAIT_TIMEOUT,
    "the open",
  );
  // The stream has ended: the socket waits a minute before resuming.
  const closed = closedOf(socket);
  socket.close(1000, "bye");
  const event = await closed;
  assert.equal(event.code, 1000);
  assert.equal(event.reason, "bye");
  // No timer outlives the close (the test's sanitizer would say so).
});
