/**
 * Unit tests of deno/connections.ts: one {@linkcode Connections} on a real
 * configuration (`resolveHandlerOptions` with a {@linkcode ManualClock}), a
 * real {@linkcode Observer} whose log goes to an array, and fakes for what
 * it drives: the transports ({@linkcode PeerSocket}), the protocol and the
 * cluster's leases. Connections are real {@linkcode Conn}s; a transport's
 * events are driven by calling the connection's `SocketEvents` methods, as
 * a socket would.
 */

import assert from "node:assert/strict";
import { ManualClock } from "../../lib/clock.ts";
import { keyHash, Logger } from "../../lib/log.ts";
import type {
  PeerRequest,
  PeerTransport,
  Protocol,
  ProtocolPeer,
} from "../../lib/protocol.ts";
import { Conn, type ConnFacts } from "../../deno/connection.ts";
import { Connections } from "../../deno/connections.ts";
import { Sessions } from "../../deno/fallback.ts";
import { Observer, type PeerEvent } from "../../deno/observe.ts";
import { resolveHandlerOptions } from "../../deno/options.ts";
import type { Lease } from "../../deno/placement.ts";
import type { PeerSocket } from "../../deno/socket.ts";

// Deno 2.8 turned the op and resource sanitizers off by default: on here.
Deno.test.sanitizer({ ops: true, resources: true });

/** The upgrade timeout of these tests, in milliseconds. */
const UPGRADE_TIMEOUT = 1000;
const MOVED_REASON =
  "Cannot relay: this group moved to another server node; reconnect";

interface CloseCall {
  code: number;
  reason: string;
  immediately: boolean;
}

/**
 * A transport that records the closes asked of it. A close that is not
 * immediate waits for `quietAfter` flushes; with `echo`, the close event
 * follows a close that went out, on a later microtask, as a socket's does.
 */
class FakeSocket implements PeerSocket {
  readonly requests: CloseCall[] = [];
  flushes = 0;
  #waiting: CloseCall | undefined;
  #done = false;
  conn!: Conn;

  constructor(readonly echo = false, readonly quietAfter = 0) {}

  trySend(): boolean {
    return true;
  }
  requestClose(code: number, reason: string, immediately = false): boolean {
    if (this.#waiting !== undefined || this.#done) return false;
    const close = { code, reason, immediately };
    this.requests.push(close);
    if (immediately || this.quietAfter === 0) this.#send(close);
    else this.#waiting = close;
    return true;
  }
  get closing(): boolean {
    return this.#waiting !== undefined && !this.#done;
  }
  flush(now = false): boolean {
    const close = this.#waiting;
    if (close === undefined || this.#done) return false;
    this.flushes++;
    if (!now && this.flushes < this.quietAfter) return true;
    this.#send(close);
    return false;
  }
  /** The close event of the transport, whoever closed it. */
  closedBy(code: number, reason: string): void {
    this.#done = true;
    this.conn.onClose(code, reason);
  }
  #send(close: CloseCall): void {
    this.#done = true;
    this.#waiting = undefined;
    if (this.echo) {
      queueMicrotask(() => this.conn.onClose(close.code, close.reason));
    }
  }
}

class FakePeer implements ProtocolPeer {
  live = true;
  constructor(readonly id: number, readonly transport: PeerTransport) {}
}

/** A protocol that records its calls; `close` closes the transport. */
class FakeProtocol implements Protocol<FakePeer> {
  readonly name = "fake";
  readonly text = false;
  size = 0;
  ticks = 0;
  /** Keys it refuses, as a protocol refuses a bad key. */
  readonly refuse = new Set<string>();
  readonly opens: { transport: PeerTransport; request: PeerRequest }[] = [];
  readonly forgotten: FakePeer[] = [];
  readonly closes: { peer: FakePeer; code: number; reason: string }[] = [];
  #ids = 0;

  open(transport: PeerTransport, request: PeerRequest): FakePeer | undefined {
    this.opens.push({ transport, request });
    if (this.refuse.has(request.key ?? "")) {
      transport.close(4741, "refused");
      return undefined;
    }
    this.size++;
    return new FakePeer(++this.#ids, transport);
  }
  receive(): void {}
  close(peer: FakePeer, code: number, reason: string): void {
    this.closes.push({ peer, code, reason });
    this.#drop(peer);
    peer.transport.close(code, reason);
  }
  forget(peer: FakePeer): void {
    this.forgotten.push(peer);
    this.#drop(peer);
  }
  tick(): void {
    this.ticks++;
  }
  #drop(peer: FakePeer): void {
    if (!peer.live) return;
    peer.live = false;
    this.size--;
  }
}

/** A lease that records what was done with it. */
class FakeLease implements Lease {
  readonly calls: string[] = [];
  release(): void {
    this.calls.push("release");
  }
  moved(): void {
    this.calls.push("moved");
  }
}

/** A connection set on a ManualClock, with everything it did recorded. */
function setUp() {
  const clock = new ManualClock();
  const config = resolveHandlerOptions({
    clock,
    maxPeers: 100,
    heartbeatInterval: 5000,
    upgradeTimeout: UPGRADE_TIMEOUT,
  });
  const lines: string[] = [];
  const observer = new Observer(
    new Logger((line) => lines.push(line), "debug", "json"),
  );
  const protocol = new FakeProtocol();
  const events: PeerEvent[] = [];
  const sessions = new Sessions<Conn>({
    keyOf: () => undefined,
    refused: () => {},
    maxMessageSize: config.maxMessageSize,
    allowOrigins: new Set(),
    plain: () => false,
  });
  const conns = new Connections({
    config,
    observer,
    protocols: [protocol],
    sessions,
    nodeId: undefined,
    onPeer: (event) => events.push(event),
  });
  /** A held connection and its transport. */
  const hold = (
    facts: Partial<ConnFacts> = {},
    socket = new FakeSocket(),
  ): { conn: Conn; socket: FakeSocket } => {
    const conn = new Conn(conns, protocol, {
      address: "203.0.113.1",
      counted: true,
      key: "room",
      favored: false,
      transport: "websocket",
      now: clock.now(),
      ...facts,
    });
    conn.socket = socket;
    socket.conn = conn;
    conns.hold(conn);
    return { conn, socket };
  };
  /** A held connection whose transport opened. */
  const open = (facts: Partial<ConnFacts> = {}, socket = new FakeSocket()) => {
    const held = hold(facts, socket);
    held.conn.onOpen();
    return held;
  };
  /** The log records, parsed, without their time. */
  const records = () =>
    lines.map((line) => {
      const { time: _, ...record } = JSON.parse(line);
      return record;
    });
  return {
    clock,
    config,
    observer,
    protocol,
    events,
    conns,
    hold,
    open,
    records,
  };
}

Deno.test("Connections counts held connections by address, counted ones only, until each is released once", () => {
  const { conns, hold, observer } = setUp();
  const a1 = hold({ address: "10.0.0.1" });
  hold({ address: "10.0.0.1" });
  hold({ address: "10.0.0.2" });
  const local = hold({ address: "127.0.0.1", counted: false });
  assert.equal(conns.size, 4);
  assert.equal(observer.connectionsTotal, 4);
  assert.equal(conns.fromAddress("10.0.0.1"), 2);
  assert.equal(conns.fromAddress("10.0.0.2"), 1);
  assert.equal(conns.fromAddress("127.0.0.1"), 0);
  assert.equal(conns.fromAddress("10.0.0.9"), 0);

  a1.conn.onOpen();
  a1.socket.closedBy(1000, "bye");
  assert.equal(conns.fromAddress("10.0.0.1"), 1);
  assert.equal(conns.size, 3);
  assert.equal(a1.conn.released, true);
  // A second close event releases nothing more.
  a1.conn.onClose(1000, "bye");
  assert.equal(conns.fromAddress("10.0.0.1"), 1);
  assert.equal(conns.size, 3);

  local.socket.closedBy(1006, "");
  assert.equal(conns.size, 2);
  assert.equal(conns.fromAddress("127.0.0.1"), 0);
});

Deno.test("Connections ticks while it holds a connection, at the configuration's step, and stops when the last goes", () => {
  const { clock, config, conns, hold, protocol } = setUp();
  assert.equal(config.tickMs, 100);
  assert.equal(clock.ticking, false);
  const a = hold();
  const b = hold();
  assert.equal(clock.ticking, true);
  clock.advance(350);
  assert.equal(protocol.ticks, 3);
  a.conn.onOpen();
  b.conn.onOpen();
  a.socket.closedBy(1000, "");
  assert.equal(clock.ticking, true);
  b.socket.closedBy(1000, "");
  assert.equal(conns.size, 0);
  assert.equal(clock.ticking, false);
  clock.advance(1000);
  assert.equal(protocol.ticks, 3);
});

Deno.test("Connections: an opened transport opens a peer in its protocol, and onPeer hears it joined", () => {
  const { events, open, protocol, records } = setUp();
  const { conn } = open({
    key: "room",
    favored: true,
    scope: "ro",
    query: "favored",
    address: "203.0.113.9",
  });
  assert.equal(protocol.opens.length, 1);
  const { transport, request } = protocol.opens[0];
  assert.equal(transport, conn);
  assert.equal(request.key, "room");
  assert.equal(request.favored, true);
  assert.equal(request.scope, "ro");
  assert.equal(request.query, "favored");
  assert.ok(conn.peer !== undefined);
  assert.equal(conn.peer.id, 1);
  assert.deepEqual(events, [{
    type: "joined",
    key: keyHash("room"),
    protocol: "fake",
    transport: "websocket",
    remote: false,
  }]);
  assert.deepEqual(records(), [{
    level: "debug",
    event: "open",
    peer: 1,
    key: keyHash("room"),
    favored: true,
    addr: "203.0.113.9",
  }]);
});

Deno.test("Connections: a transport whose protocol refuses it gets no peer and no joined event", () => {
  const { events, open, protocol, observer } = setUp();
  protocol.refuse.add("bad");
  const { conn, socket } = open({ key: "bad" });
  assert.equal(conn.peer, undefined);
  assert.deepEqual(events, []);
  assert.deepEqual(socket.requests, [{
    code: 4741,
    reason: "refused",
    immediately: false,
  }]);
  assert.deepEqual(observer.closes.samples(), [[
    { code: "4741", by: "server" },
    1,
  ]]);
  // Its close event: released, and no left event for a peer that never was.
  socket.closedBy(4741, "refused");
  assert.equal(conn.released, true);
  assert.deepEqual(events, []);
  assert.deepEqual(protocol.forgotten, []);
});

Deno.test("Connections: a peer whose transport closed is forgotten by its protocol and leaves with the client's code", () => {
  const { conns, events, open, protocol, observer, records } = setUp();
  const { conn, socket } = open();
  const peer = conn.peer;
  socket.closedBy(4000, "page closed");
  assert.deepEqual(protocol.forgotten, [peer]);
  assert.equal(conns.size, 0);
  assert.deepEqual(events.map((e) => e.type), ["joined", "left"]);
  assert.deepEqual(events[1], {
    type: "left",
    key: keyHash("room"),
    protocol: "fake",
    transport: "websocket",
    remote: false,
    code: 4000,
    reason: "page closed",
    by: "client",
  });
  assert.deepEqual(observer.closes.samples(), [[
    { code: "other", by: "client" },
    1,
  ]]);
  assert.deepEqual(records().at(-1), {
    level: "debug",
    event: "close",
    peer: 1,
    key: keyHash("room"),
    code: 4000,
    reason: "page closed",
    by: "client",
  });
});

Deno.test("Connections counts a server's close once: when asked, not again at the close event or a second ask", () => {
  const { events, open, protocol, observer, records } = setUp();
  const { conn, socket } = open();
  conn.shut(4743, "Cannot handle message: bad frame");
  assert.equal(protocol.closes.length, 1);
  assert.deepEqual(socket.requests, [{
    code: 4743,
    reason: "Cannot handle message: bad frame",
    immediately: false,
  }]);
  // A second close: the transport is closing already, nothing is counted.
  conn.shut(1001, "Going away");
  assert.equal(socket.requests.length, 1);
  socket.closedBy(4743, "Cannot handle message: bad frame");
  assert.deepEqual(protocol.forgotten, []);
  assert.deepEqual(observer.closes.samples(), [[
    { code: "4743", by: "server" },
    1,
  ]]);
  const closes = records().filter((r) => r.event === "close");
  assert.deepEqual(closes, [{
    level: "info",
    event: "close",
    peer: 1,
    key: keyHash("room"),
    code: 4743,
    reason: "Cannot handle message: bad frame",
    by: "server",
  }]);
  assert.deepEqual(events.map((e) => [e.type, e.code, e.by]), [
    ["joined", undefined, undefined],
    ["left", 4743, "server"],
  ]);
});

Deno.test("Connections.closeConn says whether the close was the first, and the transport closes at once when told", () => {
  const { conns, hold } = setUp();
  const { conn, socket } = hold();
  assert.equal(conns.closeConn(conn, 1008, "limit", true), true);
  assert.equal(conns.closeConn(conn, 1008, "limit", true), false);
  assert.deepEqual(socket.requests, [{
    code: 1008,
    reason: "limit",
    immediately: true,
  }]);
});

Deno.test("Connections flushes a close that waits for quiet on every tick until it goes", () => {
  const { clock, conns, open } = setUp();
  const { conn, socket } = open({}, new FakeSocket(false, 3));
  conn.shut(1008, "Cannot relay: over 2000 messages per second");
  assert.equal(socket.closing, true);
  assert.equal(socket.flushes, 0);
  clock.advance(100);
  assert.equal(socket.flushes, 1);
  clock.advance(200);
  assert.equal(socket.flushes, 3);
  assert.equal(socket.closing, false);
  clock.advance(500);
  assert.equal(socket.flushes, 3, "flushed after the close went out");
  socket.closedBy(1008, "Cannot relay: over 2000 messages per second");
  assert.equal(conns.size, 0);
  assert.equal(clock.ticking, false);
});

Deno.test("Connections gives up an upgrade that has not opened after upgradeTimeout, on the clock", () => {
  const { clock, conns, hold, observer, records, events } = setUp();
  clock.advance(50);
  const stalled = hold({ address: "198.51.100.7", now: clock.now() });
  clock.advance(400);
  const late = hold({ address: "198.51.100.8", now: clock.now() });
  clock.advance(UPGRADE_TIMEOUT - 400 - 1);
  assert.deepEqual(stalled.socket.requests, []);
  assert.equal(conns.size, 2);
  // The first tick at or past since + upgradeTimeout.
  clock.advance(1);
  assert.deepEqual(stalled.socket.requests, [{
    code: 1008,
    reason: "Cannot open: the upgrade timed out",
    immediately: true,
  }]);
  assert.equal(stalled.conn.released, true);
  assert.equal(conns.size, 1);
  assert.equal(conns.fromAddress("198.51.100.7"), 0);
  assert.deepEqual(observer.rejections.samples(), [[
    { reason: "upgrade_timeout" },
    1,
  ]]);
  assert.deepEqual(
    records().filter((r) => r.event === "reject"),
    [{
      level: "info",
      event: "reject",
      reason: "upgrade_timeout",
      addr: "198.51.100.7",
    }],
  );
  assert.deepEqual(late.socket.requests, []);
  // The second opens in time: it is not given up.
  late.conn.onOpen();
  clock.advance(UPGRADE_TIMEOUT * 2);
  assert.deepEqual(late.socket.requests, []);
  assert.equal(conns.size, 1);
  assert.deepEqual(events.map((e) => e.type), ["joined"]);
});

Deno.test("Connections.moved closes the leased peers of the moved groups with 1012, after telling their leases", () => {
  const { conns, open } = setUp();
  const room = [open({ key: "room" }), open({ key: "room" })];
  const leases = room.map(({ conn }) => conn.lease = new FakeLease());
  const other = open({ key: "other" });
  const otherLease = other.conn.lease = new FakeLease();
  // A peer of the room without a lease (piped in, say): not this node's.
  const unleased = open({ key: "room" });

  conns.moved(new Set(["room", "elsewhere"]));
  for (const { socket } of room) {
    assert.deepEqual(socket.requests, [{
      code: 1012,
      reason: MOVED_REASON,
      immediately: false,
    }]);
  }
  assert.deepEqual(leases.map((l) => l.calls), [["moved"], ["moved"]]);
  assert.deepEqual(other.socket.requests, []);
  assert.deepEqual(otherLease.calls, []);
  assert.deepEqual(unleased.socket.requests, []);

  // Their close events release the connections (a moved lease frees nothing).
  for (const { socket } of room) socket.closedBy(1012, MOVED_REASON);
  assert.deepEqual(leases.map((l) => l.calls), [
    ["moved", "release"],
    ["moved", "release"],
  ]);
  assert.equal(conns.size, 2);
});

Deno.test("Connections.closeAll closes every connection at once with the code, and resolves once all closed", async () => {
  const { clock, conns, hold, open, events, observer } = setUp();
  const opened = [
    open({}, new FakeSocket(true, 5)),
    open({}, new FakeSocket(true, 5)),
  ];
  const pending = hold({}, new FakeSocket(true, 5));
  // A close already waiting for quiet goes out at once too.
  opened[0].conn.shut(1008, "limit");
  assert.equal(opened[0].socket.closing, true);

  await conns.closeAll(1001, "Going away", 60_000);
  assert.deepEqual(opened[1].socket.requests, [{
    code: 1001,
    reason: "Going away",
    immediately: true,
  }]);
  assert.deepEqual(pending.socket.requests, [{
    code: 1001,
    reason: "Going away",
    immediately: true,
  }]);
  assert.equal(opened[0].socket.requests.length, 1);
  assert.equal(opened[0].socket.closing, false);
  assert.equal(conns.size, 0);
  assert.equal(clock.ticking, false);
  assert.deepEqual(
    events.filter((e) => e.type === "left").map((e) => [e.code, e.by]),
    [[1008, "server"], [1001, "server"]],
  );
  assert.deepEqual(observer.closes.samples(), [
    [{ code: "1008", by: "server" }, 1],
    [{ code: "1001", by: "server" }, 2],
  ]);
});

Deno.test("Connections.closeAll forgets the connections whose close never came once its time is up", async () => {
  const { clock, conns, open, events } = setUp();
  const { conn, socket } = open({ address: "10.0.0.3" });
  // No close event will come: the fake socket does not echo.
  await conns.closeAll(1001, "Going away", 5);
  assert.deepEqual(socket.requests, [{
    code: 1001,
    reason: "Going away",
    immediately: true,
  }]);
  assert.equal(conn.released, true);
  assert.equal(conns.size, 0);
  assert.equal(conns.fromAddress("10.0.0.3"), 0);
  assert.equal(clock.ticking, false);
  // Its peer left when the server asked it to close; nothing more at release.
  assert.deepEqual(events.map((e) => [e.type, e.code]), [
    ["joined", undefined],
    ["left", 1001],
  ]);
});

Deno.test("Connections.closeAll resolves at once when nothing is held", async () => {
  const { clock, conns } = setUp();
  await conns.closeAll(1001, "Going away", 60_000);
  assert.equal(conns.size, 0);
  assert.equal(clock.ticking, false);
});
