// Unit tests of lib/netflux/protocol.ts: NetfluxProtocol refuses a peer
// whose URL or key is bad with its close code, joins the others to the hub,
// and hands every later call to the hub. What the hub did is read from its
// size and counters and from fake transports that record what they got.

import assert from "node:assert/strict";
import { Hub } from "../../../lib/netflux/hub.ts";
import { NetfluxProtocol } from "../../../lib/netflux/protocol.ts";
import { encodeMessage } from "../../../lib/netflux/wire.ts";
import type { PeerTransport } from "../../../lib/protocol.ts";
import { MAX_KEY_LENGTH } from "../../../lib/url.ts";

// Deno 2.8 turned the op and resource sanitizers off by default: on here.
Deno.test.sanitizer({ ops: true, resources: true });

/** A transport that records the frames and closes it gets. */
class FakeTransport implements PeerTransport {
  readonly sent: number[][] = [];
  readonly closes: { code: number; reason: string }[] = [];
  send(frame: Uint8Array | string): void {
    assert.ok(frame instanceof Uint8Array, "Netflux sends binary frames");
    this.sent.push([...frame]);
  }
  close(code: number, reason: string): void {
    this.closes.push({ code, reason });
  }
}

const HEARTBEAT = [...encodeMessage({ type: "heartbeat", heartbeat: true })];
const CONNECTED = [...encodeMessage({ type: "connected", connected: true })];

function netflux() {
  const hub = new Hub({ slots: 1 });
  return { hub, protocol: new NetfluxProtocol(hub) };
}

Deno.test("NetfluxProtocol is 'netflux', binary, and serves the hub it was given", () => {
  const { hub, protocol } = netflux();
  assert.equal(protocol.name, "netflux");
  assert.equal(protocol.text, false);
  assert.equal(protocol.hub, hub);
  assert.equal(protocol.size, 0);
});

Deno.test("NetfluxProtocol.open closes a request whose URL could not be parsed with 4745", () => {
  const { hub, protocol } = netflux();
  const transport = new FakeTransport();
  const peer = protocol.open(transport, { key: undefined, favored: false });
  assert.equal(peer, undefined);
  assert.deepEqual(transport.closes, [{
    code: 4745,
    reason: "Cannot join: the request URL cannot be parsed",
  }]);
  assert.equal(hub.size, 0);
  assert.deepEqual(transport.sent, []);
});

Deno.test("NetfluxProtocol.open closes an empty or too long key with 4741", async (t) => {
  const cases: [string, string][] = [
    ["", "Cannot join: the key is empty"],
    [
      "k".repeat(MAX_KEY_LENGTH + 1),
      `Cannot join: the key is longer than ${MAX_KEY_LENGTH} characters`,
    ],
  ];
  for (const [key, reason] of cases) {
    await t.step(`a key of ${key.length} characters`, () => {
      const { hub, protocol } = netflux();
      const transport = new FakeTransport();
      assert.equal(protocol.open(transport, { key, favored: true }), undefined);
      assert.deepEqual(transport.closes, [{ code: 4741, reason }]);
      assert.equal(hub.size, 0);
    });
  }
});

Deno.test("NetfluxProtocol.open joins a peer with a good key to the hub, favored as asked", async (t) => {
  for (const key of ["room", "k".repeat(MAX_KEY_LENGTH), "a%20b/c"]) {
    await t.step(`a key of ${key.length} characters`, () => {
      const { hub, protocol } = netflux();
      const transport = new FakeTransport();
      const peer = protocol.open(transport, { key, favored: true });
      assert.ok(peer !== undefined);
      assert.equal(peer.key, key);
      assert.equal(peer.favored, true);
      assert.equal(peer.live, true);
      assert.equal(peer.member, false);
      assert.equal(hub.size, 1);
      assert.equal(protocol.size, 1);
      assert.deepEqual(transport.closes, []);
      assert.deepEqual([...hub.peers()], [peer]);
    });
  }
});

Deno.test("NetfluxProtocol.open passes favored: false on", () => {
  const { protocol } = netflux();
  const peer = protocol.open(new FakeTransport(), {
    key: "room",
    favored: false,
  });
  assert.equal(peer?.favored, false);
});

Deno.test("NetfluxProtocol.receive hands frames to the hub", () => {
  const { hub, protocol } = netflux();
  const transport = new FakeTransport();
  const peer = protocol.open(transport, { key: "room", favored: false })!;
  protocol.receive(peer, encodeMessage({ type: "heartbeat", heartbeat: true }));
  assert.equal(hub.counters.inHeartbeat, 1);
  protocol.receive(
    peer,
    encodeMessage({ type: "connect", connect: { id: 1, members: [] } }),
  );
  assert.equal(hub.counters.inConnect, 1);
  assert.equal(peer.member, true);
  assert.deepEqual(transport.sent, [CONNECTED]);
});

Deno.test("NetfluxProtocol.receive of an undecodable frame closes the peer with 4743, through the hub", () => {
  const { hub, protocol } = netflux();
  const transport = new FakeTransport();
  const peer = protocol.open(transport, { key: "room", favored: false })!;
  protocol.receive(peer, new Uint8Array([0xff, 0xff, 0xff]));
  assert.equal(transport.closes.length, 1);
  assert.equal(transport.closes[0].code, 4743);
  assert.equal(peer.live, false);
  assert.equal(hub.size, 0);
});

Deno.test("NetfluxProtocol.close closes the peer's transport with the code and reason, and the hub forgets it", () => {
  const { hub, protocol } = netflux();
  const transport = new FakeTransport();
  const peer = protocol.open(transport, { key: "room", favored: false })!;
  protocol.close(peer, 1001, "Going away");
  assert.deepEqual(transport.closes, [{ code: 1001, reason: "Going away" }]);
  assert.equal(peer.live, false);
  assert.equal(protocol.size, 0);
  assert.deepEqual(hub.stats().peers, 0);
  // Once closed, a second close does nothing.
  protocol.close(peer, 1000, "again");
  assert.equal(transport.closes.length, 1);
});

Deno.test("NetfluxProtocol.forget drops the peer without closing its transport, once", () => {
  const { hub, protocol } = netflux();
  const transport = new FakeTransport();
  const other = protocol.open(new FakeTransport(), {
    key: "other",
    favored: false,
  })!;
  const peer = protocol.open(transport, { key: "room", favored: false })!;
  protocol.forget(peer);
  assert.equal(peer.live, false);
  assert.equal(protocol.size, 1);
  assert.deepEqual(transport.closes, []);
  protocol.forget(peer);
  assert.equal(protocol.size, 1);
  assert.deepEqual([...hub.peers()], [other]);
});

Deno.test("NetfluxProtocol.tick turns the hub's heartbeat wheel: heartbeats, then 4742 at the third missed", () => {
  const { hub, protocol } = netflux();
  const transport = new FakeTransport();
  const peer = protocol.open(transport, { key: "room", favored: false })!;
  protocol.tick();
  protocol.tick();
  assert.equal(hub.counters.outHeartbeat, 2);
  assert.deepEqual(transport.sent, [HEARTBEAT, HEARTBEAT]);
  protocol.tick();
  assert.deepEqual(transport.closes, [{
    code: 4742,
    reason: "Too many missed heartbeats",
  }]);
  assert.equal(peer.live, false);
  assert.equal(protocol.size, 0);
});
