/**
 * Tests of deno/socket.ts over real sockets: a `Deno.serve` on loopback
 * upgrades each request with `Deno.upgradeWebSocket` and adapts it as a
 * {@linkcode DenoSocket}, whose events a recorder keeps; a Deno
 * `WebSocket` (or a raw one that never reads) is the client. Ticks are the
 * shared {@linkcode SocketContext}'s count, which the tests set: a close
 * that waits for quiet goes out on the `flush` of a later tick.
 */

import assert from "node:assert/strict";
import { deadline } from "../../lib/deadline.ts";
import {
  DenoSocket,
  type SocketContext,
  type SocketEvents,
} from "../../deno/socket.ts";
import { RawSocket, WAIT_TIMEOUT, waitFor } from "../_helpers.ts";

interface CloseInfo {
  code: number;
  reason: string;
}

function within<T>(promise: Promise<T>, what: string): Promise<T> {
  return deadline(promise, WAIT_TIMEOUT, what);
}

/** Keeps what a socket reports; frames can be awaited one by one. */
class Recorder implements SocketEvents {
  readonly events: string[] = [];
  readonly frames: (ArrayBuffer | string)[] = [];
  readonly #opened = Promise.withResolvers<void>();
  readonly #closed = Promise.withResolvers<CloseInfo>();
  #waiting: (() => void) | undefined;

  onOpen(): void {
    this.events.push("open");
    this.#opened.resolve();
  }
  onFrame(data: ArrayBuffer | string): void {
    this.events.push("frame");
    this.frames.push(data);
    this.#waiting?.();
  }
  onClose(code: number, reason: string): void {
    this.events.push("close");
    this.#closed.resolve({ code, reason });
  }

  get opened(): Promise<void> {
    return within(this.#opened.promise, "the server socket to open");
  }
  get closed(): Promise<CloseInfo> {
    return within(this.#closed.promise, "the server socket to close");
  }
  /** Resolves once `n` frames arrived in all. */
  async frameCount(n: number): Promise<void> {
    while (this.frames.length < n) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#waiting = resolve;
      await within(promise, `frame ${n} at the server`);
    }
  }
}

interface Accepted {
  socket: DenoSocket;
  events: Recorder;
}

/**
 * A server that adapts every upgrade with `context`; `early` runs on the
 * new socket before its response goes out (before it can open).
 */
function upgrading(
  context: SocketContext,
  early?: (socket: DenoSocket) => void,
): { server: Deno.HttpServer<Deno.NetAddr>; accepted: Promise<Accepted> } {
  const { promise, resolve } = Promise.withResolvers<Accepted>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => {
      const { socket, response } = Deno.upgradeWebSocket(request, {
        idleTimeout: 0,
      });
      const events = new Recorder();
      const adapted = new DenoSocket(socket, events, context);
      early?.(adapted);
      resolve({ socket: adapted, events });
      return response;
    },
  );
  return {
    server,
    accepted: within(promise, "the upgrade"),
  };
}

/** A Deno WebSocket client that keeps what it receives. */
class Client {
  readonly ws: WebSocket;
  readonly messages: (ArrayBuffer | string)[] = [];
  readonly opened: Promise<void>;
  readonly #closed: Promise<CloseInfo>;

  constructor(server: Deno.HttpServer<Deno.NetAddr>) {
    this.ws = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
    this.ws.binaryType = "arraybuffer";
    const opened = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<CloseInfo>();
    this.ws.onopen = () => opened.resolve();
    this.ws.onmessage = (event) => this.messages.push(event.data);
    this.ws.onclose = (event) =>
      closed.resolve({ code: event.code, reason: event.reason });
    this.opened = within(opened.promise, "the client to open");
    this.#closed = closed.promise;
  }

  get closed(): Promise<CloseInfo> {
    return within(this.#closed, "the client to close");
  }
}

function context(over: Partial<SocketContext> = {}): SocketContext {
  return {
    tick: 0,
    maxBufferedAmount: 0,
    closeWaitTicks: 3,
    openGraceTicks: 0,
    ...over,
  };
}

Deno.test("DenoSocket reports the open, binary frames as ArrayBuffers, text as text, and the client's close", async () => {
  const { server, accepted } = upgrading(context());
  await using _ = server;
  const client = new Client(server);
  await client.opened;
  const { events } = await accepted;
  await events.opened;
  client.ws.send(new Uint8Array([1, 2, 3]));
  client.ws.send("hello");
  await events.frameCount(2);
  assert.ok(events.frames[0] instanceof ArrayBuffer);
  assert.deepEqual(new Uint8Array(events.frames[0]), new Uint8Array([1, 2, 3]));
  assert.equal(events.frames[1], "hello");
  client.ws.close(4000, "bye");
  assert.deepEqual(await events.closed, { code: 4000, reason: "bye" });
  assert.deepEqual(await client.closed, { code: 4000, reason: "bye" });
  assert.deepEqual(events.events, ["open", "frame", "frame", "close"]);
});

Deno.test("DenoSocket.trySend sends a binary frame to the client", async () => {
  const { server, accepted } = upgrading(context());
  await using _ = server;
  const client = new Client(server);
  await client.opened;
  const { socket, events } = await accepted;
  await events.opened;
  assert.equal(socket.trySend(new Uint8Array([7, 8])), true);
  await waitFor(() => client.messages.length > 0, "the frame at the client");
  assert.deepEqual(
    client.messages.map((m) => new Uint8Array(m as ArrayBuffer)),
    [
      new Uint8Array([7, 8]),
    ],
  );
  client.ws.close();
  await events.closed;
  await client.closed;
});

Deno.test("DenoSocket.requestClose closes a quiet socket at once", async () => {
  const ctx = context({ tick: 10 });
  const { server, accepted } = upgrading(ctx);
  await using _ = server;
  const client = new Client(server);
  await client.opened;
  const { socket, events } = await accepted;
  await events.opened;
  // Opened at tick 10; two ticks later it has been quiet for a whole tick.
  ctx.tick = 12;
  assert.equal(socket.requestClose(4001, "now"), true);
  assert.equal(socket.closing, false, "the close went out");
  assert.deepEqual(await client.closed, { code: 4001, reason: "now" });
  assert.deepEqual(await events.closed, { code: 4001, reason: "now" });
  assert.equal(socket.requestClose(4002, "again"), false);
});

Deno.test("DenoSocket.requestClose waits for a tick without frames", async () => {
  const ctx = context({ closeWaitTicks: 100 });
  const { server, accepted } = upgrading(ctx);
  await using _ = server;
  const client = new Client(server);
  await client.opened;
  const { socket, events } = await accepted;
  await events.opened;
  ctx.tick = 5;
  client.ws.send("busy");
  await events.frameCount(1);
  assert.equal(socket.seen, 5);
  assert.equal(socket.requestClose(4003, "quiet now"), true);
  assert.equal(socket.closing, true);
  assert.equal(socket.flush(), true, "a frame came this tick");
  ctx.tick = 6;
  assert.equal(socket.flush(), true, "a frame came in the previous tick");
  // Still open: the client's frames still arrive.
  client.ws.send("still open");
  await events.frameCount(2);
  assert.equal(client.ws.readyState, WebSocket.OPEN);
  ctx.tick = 8;
  assert.equal(socket.flush(), false, "a whole tick went by without a frame");
  assert.equal(socket.closing, false);
  assert.deepEqual(await client.closed, { code: 4003, reason: "quiet now" });
  assert.deepEqual(await events.closed, { code: 4003, reason: "quiet now" });
  assert.equal(socket.flush(), false);
});

Deno.test("DenoSocket closes after closeWaitTicks even while frames keep coming", async () => {
  const ctx = context({ closeWaitTicks: 3 });
  const { server, accepted } = upgrading(ctx);
  await using _ = server;
  const client = new Client(server);
  await client.opened;
  const { socket, events } = await accepted;
  await events.opened;
  ctx.tick = 5;
  client.ws.send("1");
  await events.frameCount(1);
  socket.requestClose(4004, "waited long enough");
  for (let tick = 6; tick <= 7; tick++) {
    ctx.tick = tick;
    client.ws.send(String(tick));
    await events.frameCount(tick - 4);
    assert.equal(socket.flush(), true, `tick ${tick}: still busy`);
  }
  ctx.tick = 8;
  client.ws.send("8");
  await events.frameCount(4);
  assert.equal(socket.flush(), false);
  assert.deepEqual(await client.closed, {
    code: 4004,
    reason: "waited long enough",
  });
  await events.closed;
});

Deno.test("DenoSocket.requestClose closes at once when told to, frames or not", async () => {
  const ctx = context();
  const { server, accepted } = upgrading(ctx);
  await using _ = server;
  const client = new Client(server);
  await client.opened;
  const { socket, events } = await accepted;
  await events.opened;
  client.ws.send("busy");
  await events.frameCount(1);
  assert.equal(socket.requestClose(1001, "shutdown", true), true);
  assert.equal(socket.closing, false);
  assert.deepEqual(await client.closed, { code: 1001, reason: "shutdown" });
  await events.closed;
});

Deno.test("DenoSocket.flush(true) sends a waiting close now", async () => {
  const ctx = context({ closeWaitTicks: 100 });
  const { server, accepted } = upgrading(ctx);
  await using _ = server;
  const client = new Client(server);
  await client.opened;
  const { socket, events } = await accepted;
  await events.opened;
  client.ws.send("busy");
  await events.frameCount(1);
  socket.requestClose(1001, "drain");
  assert.equal(socket.flush(), true);
  assert.equal(socket.flush(true), false);
  assert.deepEqual(await client.closed, { code: 1001, reason: "drain" });
  await events.closed;
});

Deno.test("DenoSocket closed before it opened closes on open, and reports no open", async () => {
  const ctx = context();
  let before: { requested: boolean; closing: boolean } | undefined;
  const { server, accepted } = upgrading(ctx, (socket) => {
    before = {
      requested: socket.requestClose(4005, "too early", true),
      closing: socket.closing,
    };
  });
  await using _ = server;
  const client = new Client(server);
  const { events } = await accepted;
  assert.deepEqual(before, { requested: true, closing: true });
  assert.deepEqual(await client.closed, { code: 4005, reason: "too early" });
  assert.deepEqual(await events.closed, { code: 4005, reason: "too early" });
  assert.deepEqual(events.events, ["close"]);
});

Deno.test("DenoSocket closed before it opened, without hurry, closes on a later flush", async () => {
  const ctx = context({ closeWaitTicks: 2 });
  const { server, accepted } = upgrading(ctx, (socket) => {
    socket.requestClose(4006, "later");
  });
  await using _ = server;
  const client = new Client(server);
  await client.opened;
  const { socket, events } = await accepted;
  // The open came (it marks the socket seen) and went without closing it:
  // the close had not waited enough.
  await waitFor(() => socket.seen === 0, "the server socket to open");
  assert.equal(socket.raw.readyState, WebSocket.OPEN);
  assert.equal(socket.closing, true);
  assert.equal(socket.flush(), true);
  ctx.tick = 2;
  assert.equal(socket.flush(), false);
  assert.deepEqual(await client.closed, { code: 4006, reason: "later" });
  await events.closed;
  assert.deepEqual(events.events, ["close"]);
});

Deno.test("DenoSocket reports a dropped connection as 1006", async () => {
  const { server, accepted } = upgrading(context());
  await using _ = server;
  const raw = await RawSocket.upgrade(server, "/");
  assert.equal(raw.status, 101);
  const { socket, events } = await accepted;
  await events.opened;
  raw[Symbol.dispose]();
  assert.deepEqual(await events.closed, { code: 1006, reason: "" });
  // A closed socket takes sends and sends nothing.
  assert.equal(socket.trySend(new Uint8Array(1)), true);
  assert.equal(socket.requestClose(1000, ""), false);
});

Deno.test("DenoSocket.trySend refuses once more than maxBufferedAmount bytes wait unwritten", async () => {
  const max = 64 * 1024;
  const { server, accepted } = upgrading(context({ maxBufferedAmount: max }));
  await using _ = server;
  const client = new Client(server);
  await client.opened;
  const { socket, events } = await accepted;
  await events.opened;
  // Within one turn of the event loop nothing is written yet: every frame
  // sent waits in Deno's buffer, however fast the client reads.
  const frame = new Uint8Array(16 * 1024);
  let sent = 0;
  while (sent <= 16 * max && socket.trySend(frame)) sent += frame.length;
  assert.ok(sent > max, `refused after ${sent} bytes`);
  assert.ok(sent <= max + 2 * frame.length, `refused after ${sent} bytes`);
  client.ws.close();
  await events.closed;
  await client.closed;
});

Deno.test("DenoSocket.trySend refuses once a client that never reads lets the buffer fill", async () => {
  const max = 64 * 1024;
  const { server, accepted } = upgrading(context({ maxBufferedAmount: max }));
  await using _ = server;
  const raw = await RawSocket.upgrade(server, "/");
  const { socket, events } = await accepted;
  await events.opened;
  // One frame per turn, so that each is written before the next: only the
  // client's not reading can fill the buffer (after the kernel's, some MB).
  const frame = new Uint8Array(16 * 1024);
  let sent = 0;
  let refused = false;
  while (!refused && sent < 256 * 1024 * 1024) {
    if (socket.trySend(frame)) sent += frame.length;
    else refused = true;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  assert.ok(refused, `never refused after ${sent} bytes`);
  assert.ok(sent > 1024 * 1024, `refused after only ${sent} bytes`);
  assert.ok(socket.raw.bufferedAmount > max, "the buffer is over the limit");
  assert.equal(socket.trySend(frame), false, "still refused");
  raw[Symbol.dispose]();
  assert.equal((await events.closed).code, 1006);
});
