/**
 * Tests of deno/accept.ts: the connection an admitted arrival gets. A fake
 * host (the handler) and a fake protocol; a fake lease and a fake
 * {@linkcode Remote} record what is given up. A fallback (SSE) arrival and
 * a failed upgrade need no socket; a WebSocket arrival is accepted inside a
 * real `Deno.serve` on loopback, with a Deno `WebSocket` as the client.
 */

import assert from "node:assert/strict";
import { TokenBucket } from "../../lib/bucket.ts";
import { deadline } from "../../lib/deadline.ts";
import { Tally } from "../../lib/metrics.ts";
import type {
  PeerRequest,
  PeerTransport,
  Protocol,
  ProtocolPeer,
} from "../../lib/protocol.ts";
import { sessionEvent, sessionHome } from "../../lib/sse.ts";
import {
  accept,
  type AcceptHost,
  type Admitted,
  giveUp,
} from "../../deno/accept.ts";
import type { Conn } from "../../deno/connection.ts";
import { SseSession } from "../../deno/fallback.ts";
import type { Lease, Remote, RemoteEvents } from "../../deno/placement.ts";
import { DenoSocket } from "../../deno/socket.ts";
import { WAIT_TIMEOUT } from "../_helpers.ts";

const NODE_ID = "0123456789abcdef";
const FROM = { address: "203.0.113.5", counted: true };

class FakeLease implements Lease {
  released = 0;
  movedAway = 0;
  release(): void {
    this.released++;
  }
  moved(): void {
    this.movedAway++;
  }
}

/** A link to an owner node that records, in order, what is done to it. */
class FakeRemote implements Remote {
  readonly calls: string[] = [];
  attached: RemoteEvents | undefined;
  attach(events: RemoteEvents): void {
    this.calls.push("attach");
    this.attached = events;
  }
  send(): boolean {
    return true;
  }
  close(code: number, reason: string): void {
    this.calls.push(`close ${code} ${reason}`);
  }
  release(): void {
    this.calls.push("release");
  }
}

class FakePeer implements ProtocolPeer {
  readonly id = 1;
  live = true;
}

/** A binary protocol that keeps the frames it receives. */
class FakeProtocol implements Protocol<FakePeer> {
  readonly name = "fake";
  readonly text = false;
  size = 0;
  readonly received: Uint8Array[] = [];
  #received: (() => void) | undefined;
  open(_transport: PeerTransport, _request: PeerRequest): FakePeer {
    this.size++;
    return new FakePeer();
  }
  receive(_peer: FakePeer, frame: Uint8Array | string): void {
    if (typeof frame !== "string") this.received.push(frame.slice());
    this.#received?.();
  }
  close(peer: FakePeer): void {
    peer.live = false;
  }
  forget(peer: FakePeer): void {
    peer.live = false;
  }
  tick(): void {}
  /** Resolves once a frame arrived. */
  frame(): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#received = resolve;
    return deadline(promise, WAIT_TIMEOUT, "a frame at the protocol");
  }
}

/** A handler that opens peers in its protocol and records opens and closes. */
class FakeHost implements AcceptHost {
  readonly bucket = new TokenBucket(0, 1);
  readonly messageRate = 0;
  readonly maxMessageSize = 1024;
  readonly now = 0;
  readonly rejections = new Tally(["reason"]);
  readonly socketContext = {
    tick: 0,
    maxBufferedAmount: 0,
    closeWaitTicks: 3,
    openGraceTicks: 0,
  };
  readonly sseContext = {
    tick: 0,
    maxBufferedAmount: 0,
    keepAliveTicks: 10,
    orphanTicks: 80,
  };
  readonly opens: Conn[] = [];
  readonly closes: { code: number; reason: string }[] = [];
  readonly #closed = Promise.withResolvers<void>();
  constructor(
    readonly protocol: FakeProtocol,
    readonly nodeId: string | undefined = undefined,
  ) {}
  invalidFrame(): void {}
  closeConn(): boolean {
    return true;
  }
  opened(conn: Conn): void {
    this.opens.push(conn);
    conn.peer = this.protocol.open(conn, { key: conn.key, favored: false });
  }
  closed(_conn: Conn, code: number, reason: string): void {
    this.closes.push({ code, reason });
    this.#closed.resolve();
  }
  /** Resolves once a transport closed. */
  get closedOnce(): Promise<void> {
    return deadline(this.#closed.promise, WAIT_TIMEOUT, "the close");
  }
}

function local(lease?: Lease): Admitted {
  return {
    kind: "local",
    from: FROM,
    peer: { key: "room", favored: true },
    lease,
    piped: false,
  };
}

function edge(remote: Remote): Admitted {
  return { kind: "edge", from: FROM, key: "room", remote };
}

/** A request that is no WebSocket upgrade. */
function plainGet(): Request {
  return new Request("http://127.0.0.1/room");
}

/** Reads the first chunk of a response's body as text, then cancels it. */
async function firstChunk(response: Response): Promise<string> {
  const reader = response.body!.getReader();
  const { value } = await reader.read();
  await reader.cancel();
  return new TextDecoder().decode(value);
}

// giveUp

Deno.test("giveUp releases the lease taken for a local arrival", () => {
  const lease = new FakeLease();
  giveUp(local(lease));
  assert.equal(lease.released, 1);
  assert.equal(lease.movedAway, 0);
});

Deno.test("giveUp does nothing for a local arrival without a lease", () => {
  giveUp(local());
});

Deno.test("giveUp closes, then releases, an edge's link to the owner", () => {
  const remote = new FakeRemote();
  giveUp(edge(remote));
  assert.deepEqual(remote.calls, [
    "close 1000 The peer was not taken",
    "release",
  ]);
});

// The fallback transport

Deno.test("accept gives an SSE arrival a Conn whose respond() is its session's stream", async () => {
  const protocol = new FakeProtocol();
  const host = new FakeHost(protocol, NODE_ID);
  const lease = new FakeLease();
  const arrival: Admitted = {
    kind: "local",
    from: FROM,
    peer: { key: "room", favored: true },
    lease,
    piped: true,
  };
  const accepted = accept(host, protocol, plainGet(), arrival, "sse", 4321);
  assert.ok("conn" in accepted, JSON.stringify(accepted));
  const { conn, respond } = accepted;
  assert.equal(conn.transport, "sse");
  assert.equal(conn.address, FROM.address);
  assert.equal(conn.counted, true);
  assert.equal(conn.key, "room");
  assert.equal(conn.favored, true);
  assert.equal(conn.since, 4321);
  assert.equal(conn.lease, lease);
  assert.equal(conn.piped, true);
  assert.equal(conn.remote, undefined);
  const session = conn.socket;
  assert.ok(session instanceof SseSession);
  assert.equal(sessionHome(session.id), NODE_ID, "the id names this node");
  assert.equal(host.opens.length, 0, "not open before the response");
  const response = respond();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/event-stream");
  assert.equal(await firstChunk(response), sessionEvent(session.id));
  assert.deepEqual(host.opens, [conn]);
  assert.equal(lease.released, 0);
});

Deno.test("accept names no node in an SSE session id off a cluster", () => {
  const protocol = new FakeProtocol();
  const accepted = accept(
    new FakeHost(protocol),
    protocol,
    plainGet(),
    local(),
    "sse",
    0,
  );
  assert.ok("conn" in accepted);
  const session = accepted.conn.socket as SseSession;
  assert.equal(sessionHome(session.id), undefined);
  session.requestClose(1000, "");
});

Deno.test("accept links an SSE edge arrival's Conn to the owner once it has its session", () => {
  const protocol = new FakeProtocol();
  const remote = new FakeRemote();
  const accepted = accept(
    new FakeHost(protocol),
    protocol,
    plainGet(),
    edge(remote),
    "sse",
    0,
  );
  assert.ok("conn" in accepted);
  const { conn } = accepted;
  assert.equal(conn.remote, remote);
  assert.equal(remote.attached, conn);
  assert.ok(conn.socket instanceof SseSession, "the transport came first");
  assert.equal(conn.key, "room");
  assert.equal(conn.favored, false);
  assert.deepEqual(remote.calls, ["attach"]);
  (conn.socket as SseSession).requestClose(1000, "");
});

// A failed upgrade

Deno.test("accept refuses a failed upgrade with 400 and releases its lease", () => {
  const protocol = new FakeProtocol();
  const lease = new FakeLease();
  const accepted = accept(
    new FakeHost(protocol),
    protocol,
    plainGet(),
    local(lease),
    "websocket",
    0,
  );
  assert.deepEqual(accepted, {
    refusal: {
      status: 400,
      reason: "handshake",
      message:
        "Bad Request: Invalid Header: 'upgrade' header must contain 'websocket'",
    },
    key: "room",
  });
  assert.equal(lease.released, 1);
});

Deno.test("accept refuses a failed upgrade of an edge and closes and releases its link", () => {
  const protocol = new FakeProtocol();
  const remote = new FakeRemote();
  const accepted = accept(
    new FakeHost(protocol),
    protocol,
    plainGet(),
    edge(remote),
    "websocket",
    0,
  );
  assert.ok("refusal" in accepted);
  assert.equal(accepted.refusal.status, 400);
  assert.equal(accepted.key, "room");
  assert.deepEqual(remote.calls, [
    "close 1000 The peer was not taken",
    "release",
  ]);
});

// A WebSocket upgrade

Deno.test("accept upgrades a WebSocket arrival: its Conn opens and gets the client's frames", async () => {
  const protocol = new FakeProtocol();
  const host = new FakeHost(protocol);
  const conns: Conn[] = [];
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => {
      const accepted = accept(
        host,
        protocol,
        request,
        local(),
        "websocket",
        99,
      );
      if (!("conn" in accepted)) return new Response(null, { status: 500 });
      conns.push(accepted.conn);
      return accepted.respond();
    },
  );
  const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/room`);
  const opened = Promise.withResolvers<void>();
  const closed = Promise.withResolvers<number>();
  client.onopen = () => opened.resolve();
  client.onclose = (event) => closed.resolve(event.code);
  await deadline(opened.promise, WAIT_TIMEOUT, "the client to open");
  const frame = protocol.frame();
  client.send(new Uint8Array([1, 2, 3]));
  await frame;
  assert.equal(conns.length, 1);
  const [conn] = conns;
  assert.ok(conn.socket instanceof DenoSocket);
  assert.equal(conn.transport, "websocket");
  assert.equal(conn.since, 99);
  assert.deepEqual(host.opens, [conn]);
  assert.deepEqual(protocol.received, [new Uint8Array([1, 2, 3])]);
  client.close(4000, "bye");
  assert.equal(
    await deadline(closed.promise, WAIT_TIMEOUT, "the client to close"),
    4000,
  );
  await host.closedOnce;
  assert.deepEqual(host.closes, [{ code: 4000, reason: "bye" }]);
});
