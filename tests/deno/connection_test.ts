/**
 * Unit tests of deno/connection.ts: one {@linkcode Conn} between a fake
 * host (the handler), a fake transport ({@linkcode PeerSocket}), a fake
 * protocol and, for an edge, a fake {@linkcode Remote}. Events are driven
 * by calling the connection's `SocketEvents` and `RemoteEvents` methods;
 * the tests read what reached each fake.
 */

import assert from "node:assert/strict";
import { TokenBucket } from "../../lib/bucket.ts";
import { Tally } from "../../lib/metrics.ts";
import {
  CloseError,
  type PeerRequest,
  type PeerTransport,
  type Protocol,
  type ProtocolPeer,
} from "../../lib/protocol.ts";
import { Conn, type ConnFacts, type ConnHost } from "../../deno/connection.ts";
import type { PeerSocket } from "../../deno/socket.ts";
import type { Remote, RemoteEvents } from "../../deno/placement.ts";

interface CloseCall {
  code: number;
  reason: string;
}

/** A handler that records what the connection asks of it. */
class FakeHost implements ConnHost {
  readonly bucket: TokenBucket;
  readonly messageRate: number;
  readonly maxMessageSize: number;
  now = 0;
  readonly rejections = new Tally(["reason"]);
  invalidFrames = 0;
  /** The closes asked for; the first one counts. */
  readonly closeConns: (CloseCall & { immediately: boolean })[] = [];
  readonly closeds: CloseCall[] = [];
  opens = 0;
  /** Opens the conn's peer in this protocol on `opened`, as the handler does. */
  protocol: FakeProtocol | undefined;

  constructor(rate = 0, burst = 1, maxMessageSize = 16) {
    this.bucket = new TokenBucket(rate, burst);
    this.messageRate = rate;
    this.maxMessageSize = maxMessageSize;
  }

  invalidFrame(): void {
    this.invalidFrames++;
  }
  closeConn(
    _conn: Conn,
    code: number,
    reason: string,
    immediately: boolean,
  ): boolean {
    this.closeConns.push({ code, reason, immediately });
    return this.closeConns.length === 1;
  }
  opened(conn: Conn): void {
    this.opens++;
    conn.peer = this.protocol?.open(conn, {
      key: conn.key,
      favored: conn.favored,
    });
  }
  closed(_conn: Conn, code: number, reason: string): void {
    this.closeds.push({ code, reason });
  }

  /** The rejection counts by reason. */
  rejected(): Record<string, number> {
    return Object.fromEntries(
      this.rejections.samples().map(([labels, n]) => [labels.reason, n]),
    );
  }
}

/** A transport that keeps what it is sent; it refuses sends when slow. */
class FakeSocket implements PeerSocket {
  slow = false;
  readonly sent: Uint8Array[] = [];
  readonly closes: CloseCall[] = [];
  trySend(frame: Uint8Array): boolean {
    if (this.slow) return false;
    this.sent.push(frame.slice());
    return true;
  }
  requestClose(code: number, reason: string): boolean {
    this.closes.push({ code, reason });
    return true;
  }
  readonly closing = false;
  flush(): boolean {
    return false;
  }
}

class FakePeer implements ProtocolPeer {
  readonly id = 1;
  live = true;
  constructor(readonly transport: PeerTransport) {}
}

/** A protocol that records its calls; `close` closes the transport. */
class FakeProtocol implements Protocol<FakePeer> {
  readonly name = "fake";
  size = 0;
  readonly received: (Uint8Array | string)[] = [];
  readonly closes: (CloseCall & { peer: FakePeer })[] = [];
  readonly requests: PeerRequest[] = [];
  constructor(readonly text: boolean) {}
  open(transport: PeerTransport, request: PeerRequest): FakePeer {
    this.requests.push(request);
    this.size++;
    return new FakePeer(transport);
  }
  receive(_peer: FakePeer, frame: Uint8Array | string): void {
    this.received.push(typeof frame === "string" ? frame : frame.slice());
  }
  close(peer: FakePeer, code: number, reason: string): void {
    this.closes.push({ peer, code, reason });
    peer.live = false;
    this.size--;
    peer.transport.close(code, reason);
  }
  forget(peer: FakePeer): void {
    peer.live = false;
  }
  tick(): void {}
}

/** A link to an owner node that records its calls. */
class FakeRemote implements Remote {
  accepting = true;
  readonly sent: (ArrayBuffer | string)[] = [];
  readonly closes: CloseCall[] = [];
  attached: RemoteEvents | undefined;
  releases = 0;
  attach(events: RemoteEvents): void {
    this.attached = events;
  }
  send(frame: ArrayBuffer | string): boolean {
    if (!this.accepting) return false;
    this.sent.push(frame);
    return true;
  }
  close(code: number, reason: string): void {
    this.closes.push({ code, reason });
  }
  release(): void {
    this.releases++;
  }
}

const FACTS: ConnFacts = {
  address: "203.0.113.5",
  counted: true,
  key: "room",
  favored: true,
  transport: "websocket",
  now: 1234,
};

interface Setup {
  host: FakeHost;
  protocol: FakeProtocol;
  socket: FakeSocket;
  conn: Conn;
}

/** A connection served here, its transport made; opened unless told not. */
function local(
  options: { text?: boolean; host?: FakeHost; open?: boolean } = {},
): Setup {
  const host = options.host ?? new FakeHost();
  const protocol = new FakeProtocol(options.text ?? false);
  host.protocol = protocol;
  const conn = new Conn(host, protocol, FACTS);
  const socket = new FakeSocket();
  conn.socket = socket;
  if (options.open ?? true) conn.onOpen();
  return { host, protocol, socket, conn };
}

/** A connection whose group lives on another node. */
function edge(
  options: { text?: boolean; host?: FakeHost } = {},
): Setup & { remote: FakeRemote } {
  const host = options.host ?? new FakeHost();
  const protocol = new FakeProtocol(options.text ?? false);
  const remote = new FakeRemote();
  const conn = new Conn(host, protocol, FACTS, remote);
  const socket = new FakeSocket();
  conn.socket = socket;
  return { host, protocol, socket, conn, remote };
}

function bytes(n: number): ArrayBuffer {
  return new Uint8Array(n).fill(7).buffer;
}

// State

Deno.test("Conn keeps its facts and starts with a full bucket", () => {
  const host = new FakeHost(10, 5);
  host.now = 50;
  const { conn } = local({ host, open: false });
  assert.equal(conn.address, "203.0.113.5");
  assert.equal(conn.counted, true);
  assert.equal(conn.key, "room");
  assert.equal(conn.favored, true);
  assert.equal(conn.transport, "websocket");
  assert.equal(conn.since, 1234);
  assert.equal(conn.tokens, 5);
  assert.equal(conn.last, 50);
  assert.equal(conn.peer, undefined);
  assert.equal(conn.remote, undefined);
});

Deno.test("Conn reports its open to the host", () => {
  const { host, protocol, conn } = local();
  assert.equal(host.opens, 1);
  assert.deepEqual(protocol.requests, [{ key: "room", favored: true }]);
  assert.ok(conn.peer instanceof FakePeer);
});

// Frames from a local peer

Deno.test("Conn passes a binary frame within limits to its protocol as bytes", () => {
  const { host, protocol, conn } = local();
  conn.onFrame(new Uint8Array([1, 2, 3]).buffer);
  assert.deepEqual(protocol.received, [new Uint8Array([1, 2, 3])]);
  assert.deepEqual(host.closeConns, []);
  assert.deepEqual(host.rejected(), {});
});

Deno.test("Conn passes a text frame to a text protocol as text", () => {
  const { protocol, conn } = local({ text: true });
  conn.onFrame("hello");
  assert.deepEqual(protocol.received, ["hello"]);
});

Deno.test("Conn closes a peer with 4743 for a frame of the wrong kind", async (t) => {
  const cases = [
    {
      text: false,
      frame: "text" as string | ArrayBuffer,
      reason: "Cannot handle a text frame: frames must be binary",
    },
    {
      text: true,
      frame: bytes(4),
      reason: "Cannot handle a binary frame: frames must be text",
    },
  ];
  for (const c of cases) {
    await t.step(c.text ? "text protocol" : "binary protocol", () => {
      const { host, protocol, socket, conn } = local({ text: c.text });
      conn.onFrame(c.frame);
      assert.deepEqual(protocol.received, []);
      assert.equal(host.invalidFrames, 1);
      // Through the protocol (its group is told), then the transport.
      assert.deepEqual(
        protocol.closes.map(({ code, reason }) => ({ code, reason })),
        [{ code: 4743, reason: c.reason }],
      );
      assert.deepEqual(host.closeConns, [{
        code: 4743,
        reason: c.reason,
        immediately: false,
      }]);
      assert.equal(conn.closeCounted, true);
      assert.deepEqual(host.rejected(), {});
      assert.deepEqual(socket.sent, []);
    });
  }
});

Deno.test("Conn closes a peer with 1009 for a frame over the size limit", () => {
  const { host, protocol, conn } = local({ host: new FakeHost(0, 1, 16) });
  conn.onFrame(bytes(16));
  assert.equal(protocol.received.length, 1, "a frame of the limit passes");
  conn.onFrame(bytes(17));
  assert.equal(protocol.received.length, 1);
  assert.equal(host.invalidFrames, 1);
  assert.deepEqual(host.rejected(), { message_size: 1 });
  assert.deepEqual(host.closeConns, [{
    code: 1009,
    reason: "Cannot handle message: 17 bytes is over the 16 byte limit",
    immediately: false,
  }]);
});

Deno.test("Conn measures a text frame's size in UTF-16 code units", () => {
  const { host, protocol, conn } = local({
    text: true,
    host: new FakeHost(0, 1, 4),
  });
  conn.onFrame("abcd");
  conn.onFrame("abcde");
  assert.deepEqual(protocol.received, ["abcd"]);
  assert.equal(
    host.closeConns[0]?.reason,
    "Cannot handle message: 5 bytes is over the 4 byte limit",
  );
});

Deno.test("Conn closes a peer with 1008 for frames over the rate limit", () => {
  const host = new FakeHost(1, 2);
  const { protocol, conn } = local({ host });
  conn.onFrame(bytes(1));
  conn.onFrame(bytes(1));
  assert.equal(protocol.received.length, 2, "the burst passes");
  conn.onFrame(bytes(1));
  assert.equal(protocol.received.length, 2);
  assert.deepEqual(host.rejected(), { message_rate: 1 });
  assert.equal(host.invalidFrames, 0, "a fast peer broke no protocol rule");
  assert.deepEqual(host.closeConns, [{
    code: 1008,
    reason: "Cannot relay: over 1 messages per second",
    immediately: false,
  }]);
});

Deno.test("Conn's rate limit refills on the host's clock", () => {
  const host = new FakeHost(1, 1);
  const { protocol, conn } = local({ host });
  conn.onFrame(bytes(1));
  host.now += 1000;
  conn.onFrame(bytes(1));
  assert.equal(protocol.received.length, 2);
  assert.deepEqual(host.closeConns, []);
});

Deno.test("Conn drops frames before its peer opened, unchecked", () => {
  const { host, protocol, conn } = local({ open: false });
  conn.onFrame(bytes(1000));
  conn.onFrame("wrong kind");
  assert.deepEqual(protocol.received, []);
  assert.deepEqual(host.closeConns, []);
  assert.equal(host.invalidFrames, 0);
  assert.deepEqual(host.rejected(), {});
});

Deno.test("Conn drops frames once its peer is closed", () => {
  const { host, protocol, conn } = local();
  conn.shut(1000, "bye");
  conn.onFrame(bytes(1));
  conn.onFrame(bytes(1000));
  assert.deepEqual(protocol.received, []);
  assert.equal(host.closeConns.length, 1);
  assert.equal(host.invalidFrames, 0);
});

// Closing

Deno.test("Conn.shut closes through the protocol while the peer is live, else directly", () => {
  const live = local();
  live.conn.shut(1001, "going");
  assert.deepEqual(
    live.protocol.closes.map(({ code, reason }) => ({ code, reason })),
    [{ code: 1001, reason: "going" }],
  );
  assert.deepEqual(live.host.closeConns, [{
    code: 1001,
    reason: "going",
    immediately: false,
  }]);
  const unopened = local({ open: false });
  unopened.conn.shut(1001, "going");
  assert.deepEqual(unopened.protocol.closes, []);
  assert.deepEqual(unopened.host.closeConns, [{
    code: 1001,
    reason: "going",
    immediately: false,
  }]);
});

Deno.test("Conn.close counts only the close the host counted", () => {
  const { host, conn } = local();
  conn.close(1000, "first");
  assert.equal(conn.closeCounted, true);
  const second = local();
  // The host counted another close first.
  second.host.closeConns.push({ code: 1006, reason: "", immediately: true });
  second.conn.close(1000, "second");
  assert.equal(second.conn.closeCounted, false);
  assert.equal(host.closeConns.length, 1);
});

Deno.test("Conn reports its transport's close to the host", () => {
  const { host, conn } = local();
  conn.onClose(4000, "client went");
  assert.deepEqual(host.closeds, [{ code: 4000, reason: "client went" }]);
  assert.deepEqual(host.closeConns, []);
});

// Sending to the peer

Deno.test("Conn.send hands the frame to its transport", () => {
  const { socket, conn } = local();
  conn.send(new Uint8Array([9, 8]));
  assert.deepEqual(socket.sent, [new Uint8Array([9, 8])]);
});

Deno.test("Conn.send throws a CloseError 1008 when the peer reads too slowly", () => {
  const { host, socket, conn } = local();
  socket.slow = true;
  assert.throws(
    () => conn.send(new Uint8Array([1])),
    (error: unknown) => {
      assert.ok(error instanceof CloseError);
      assert.equal(error.code, 1008);
      assert.equal(error.message, "Cannot send: the peer reads too slowly");
      return true;
    },
  );
  assert.deepEqual(host.rejected(), { slow_reader: 1 });
  // The protocol closes the peer with the error's code, not the connection.
  assert.deepEqual(host.closeConns, []);
});

// An edge: the group lives on another node

Deno.test("Conn relays an edge peer's frames to the owner, not to a protocol", () => {
  const { host, protocol, conn, remote } = edge();
  const frame = bytes(3);
  conn.onFrame(frame);
  assert.deepEqual(remote.sent, [frame]);
  assert.equal(remote.sent[0], frame, "the frame goes as it is");
  assert.deepEqual(protocol.received, []);
  assert.deepEqual(host.closeConns, []);
});

Deno.test("Conn checks an edge peer's frames and closes the link with the peer", async (t) => {
  const cases = [
    {
      name: "kind",
      host: () => new FakeHost(),
      frames: ["text"] as (string | ArrayBuffer)[],
      code: 4743,
      reason: "Cannot handle a text frame: frames must be binary",
      rejected: {},
    },
    {
      name: "size",
      host: () => new FakeHost(0, 1, 16),
      frames: [bytes(17)],
      code: 1009,
      reason: "Cannot handle message: 17 bytes is over the 16 byte limit",
      rejected: { message_size: 1 },
    },
    {
      name: "rate",
      host: () => new FakeHost(2, 1),
      frames: [bytes(1), bytes(1)],
      code: 1008,
      reason: "Cannot relay: over 2 messages per second",
      rejected: { message_rate: 1 },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const { host, conn, remote } = edge({ host: c.host() });
      for (const frame of c.frames) conn.onFrame(frame);
      assert.equal(remote.sent.length, c.frames.length - 1);
      assert.deepEqual(remote.closes, [{
        code: 1000,
        reason: "The edge closed the peer",
      }]);
      assert.deepEqual(host.closeConns, [{
        code: c.code,
        reason: c.reason,
        immediately: false,
      }]);
      assert.deepEqual(host.rejected(), c.rejected);
      // Nothing more goes to the owner.
      conn.onFrame(bytes(1));
      assert.equal(remote.sent.length, c.frames.length - 1);
    });
  }
});

Deno.test("Conn closes an edge peer with 1012 when the owner does not keep up", () => {
  const { host, conn, remote } = edge();
  remote.accepting = false;
  conn.onFrame(bytes(1));
  assert.deepEqual(host.rejected(), { slow_owner: 1 });
  assert.deepEqual(host.closeConns, [{
    code: 1012,
    reason:
      "Cannot relay: the server node of this group does not keep up; reconnect",
    immediately: false,
  }]);
  assert.deepEqual(remote.closes, [{
    code: 1000,
    reason: "The edge closed the peer",
  }]);
  remote.accepting = true;
  conn.onFrame(bytes(1));
  assert.deepEqual(remote.sent, []);
});

Deno.test("Conn passes the owner's binary frames to the peer and drops text", () => {
  const { socket, conn } = edge();
  conn.onRemoteFrame(new Uint8Array([4, 5]));
  conn.onRemoteFrame("text from the owner");
  assert.deepEqual(socket.sent, [new Uint8Array([4, 5])]);
});

Deno.test("Conn closes an edge peer with 1008 when it reads the owner's frames too slowly", () => {
  const { host, socket, conn, remote } = edge();
  socket.slow = true;
  conn.onRemoteFrame(new Uint8Array([1]));
  assert.deepEqual(host.rejected(), { slow_reader: 1 });
  assert.deepEqual(host.closeConns, [{
    code: 1008,
    reason: "Cannot send: the peer reads too slowly",
    immediately: false,
  }]);
  assert.deepEqual(remote.closes, [{
    code: 1000,
    reason: "The edge closed the peer",
  }]);
});

Deno.test("Conn closes an edge peer with the owner's code, once, and then relays nothing", () => {
  const { host, socket, conn, remote } = edge();
  conn.onRemoteEnd(4742, "heartbeat");
  conn.onRemoteEnd(1012, "again");
  assert.deepEqual(host.closeConns, [{
    code: 4742,
    reason: "heartbeat",
    immediately: false,
  }]);
  assert.equal(conn.closeCounted, true);
  // The owner ended the link: it is not closed again from here.
  assert.deepEqual(remote.closes, []);
  conn.onRemoteFrame(new Uint8Array([1]));
  conn.onFrame(bytes(1));
  assert.deepEqual(socket.sent, []);
  assert.deepEqual(remote.sent, []);
});

Deno.test("Conn passes an edge peer's close on to the owner when a client may send its code", async (t) => {
  const cases: [number, string, CloseCall][] = [
    [1000, "done", { code: 1000, reason: "done" }],
    [3000, "app", { code: 3000, reason: "app" }],
    [4999, "app", { code: 4999, reason: "app" }],
    [1001, "going", { code: 1000, reason: "" }],
    [1006, "", { code: 1000, reason: "" }],
    [5000, "odd", { code: 1000, reason: "" }],
  ];
  for (const [code, reason, expected] of cases) {
    await t.step(`${code}`, () => {
      const { host, conn, remote } = edge();
      conn.onClose(code, reason);
      assert.deepEqual(remote.closes, [expected]);
      assert.deepEqual(host.closeds, [{ code, reason }]);
      conn.onFrame(bytes(1));
      assert.deepEqual(remote.sent, []);
    });
  }
});

Deno.test("Conn.close of an edge peer closes its link and its transport", () => {
  const { host, conn, remote } = edge();
  conn.close(1001, "shutdown");
  assert.deepEqual(remote.closes, [{
    code: 1000,
    reason: "The edge closed the peer",
  }]);
  assert.deepEqual(host.closeConns, [{
    code: 1001,
    reason: "shutdown",
    immediately: false,
  }]);
  // An edge never has a protocol peer: shut closes directly too.
  const other = edge();
  other.conn.shut(1001, "shutdown");
  assert.deepEqual(other.protocol.closes, []);
  assert.equal(other.host.closeConns.length, 1);
});
