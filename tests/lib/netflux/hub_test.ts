// Unit tests of lib/hub.ts: membership, binding and relaying, heartbeats and
// bookkeeping, driven through fake transports that record what the hub sends.

import assert from "node:assert/strict";
import {
  CloseError,
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
  ERR_MESSAGE,
  ERR_URL,
  Hub,
  type HubOptions,
  type HubStats,
  type Peer,
  type PeerTransport,
} from "../../../lib/netflux/hub.ts";
import {
  decodeMessage,
  encodeMessage,
  type Message,
} from "../../../lib/netflux/wire.ts";
import { EMPTY_STATS } from "../../_helpers.ts";
import { seeded } from "../../../dev/rng.ts";

/** A message as a peer sees it, `data` as a plain array. */
type Seen =
  | { heartbeat: boolean }
  | { connected: boolean }
  | { senderId: number; recipientId: number; lastData: boolean; data: number[] }
  | { connect: { id: number; members: number[] } };

function seen(m: Message): Seen {
  switch (m.type) {
    case "heartbeat":
      return { heartbeat: m.heartbeat };
    case "connected":
      return { connected: m.connected };
    case "content":
      return { ...m.content, data: [...m.content.data] };
    case "connect":
      return { connect: m.connect };
  }
}

/** What a relayed content looks like on the wire to its recipient. */
function relayed(
  senderId: number,
  recipientId: number,
  data: number[] = [],
): Seen {
  return { senderId, recipientId, lastData: false, data };
}

/** A transport that records frames and closes; it can be told to fail. */
class FakeSocket implements PeerTransport {
  readonly inbox: Seen[] = [];
  readonly closes: { code: number; reason: string }[] = [];
  /** Thrown by the next sends, when set. */
  failWith: unknown = undefined;

  send(frame: Uint8Array): void {
    if (this.failWith !== undefined) throw this.failWith;
    // The hub must never write to a socket it closed.
    assert.equal(this.closes.length, 0, "frame sent after close");
    const m = decodeMessage(frame);
    assert.ok(m, "frame without a type");
    this.inbox.push(seen(m));
  }

  close(code: number, reason: string): void {
    this.closes.push({ code, reason });
  }
}

/** One peer of a test: its hub handle and its fake socket. */
class TestPeer {
  readonly hub: Hub;
  readonly peer: Peer;
  readonly socket: FakeSocket = new FakeSocket();

  constructor(hub: Hub, key: string, favored: boolean) {
    this.hub = hub;
    this.peer = hub.open(this.socket, key, favored);
  }

  /** The current signaling id. */
  get id(): number {
    return this.peer.id;
  }

  /** Messages received since the last call. */
  take(): Seen[] {
    return this.socket.inbox.splice(0);
  }

  receive(m: Message): void {
    this.hub.receive(this.peer, encodeMessage(m));
  }

  /**
   * Sends `connect` and returns the reply, asserting that exactly one
   * `connected` came back. Other messages stay in the inbox.
   */
  connect(id: number, members: number[] = []): boolean {
    const before = this.socket.inbox.length;
    this.receive({ type: "connect", connect: { id, members } });
    const replies = this.socket.inbox
      .slice(before)
      .filter((m): m is { connected: boolean } => "connected" in m);
    assert.equal(replies.length, 1, "exactly one connected reply");
    this.socket.inbox.splice(this.socket.inbox.indexOf(replies[0]), 1);
    return replies[0].connected;
  }

  content(
    data: number[],
    options: { senderId?: number; recipientId?: number; lastData?: boolean } =
      {},
  ): void {
    this.receive({
      type: "content",
      content: {
        senderId: options.senderId ?? 0,
        recipientId: options.recipientId ?? 0,
        lastData: options.lastData ?? false,
        data: new Uint8Array(data),
      },
    });
  }

  heartbeat(flag = true): void {
    this.receive({ type: "heartbeat", heartbeat: flag });
  }

  close(): void {
    this.hub.forget(this.peer);
  }
}

function hub(options: HubOptions = {}): Hub {
  return new Hub({ random: seeded(1), ...options });
}

function open(h: Hub, key = "room", favored = false): TestPeer {
  return new TestPeer(h, key, favored);
}

/** A member with group id `id` (the first peer of the key, or listing `via`). */
function member(
  h: Hub,
  id: number,
  options: { via?: number; favored?: boolean } = {},
) {
  const p = open(h, "room", options.favored ?? false);
  assert.equal(
    p.connect(id, options.via === undefined ? [] : [options.via]),
    true,
  );
  assert.ok(p.peer.member);
  return p;
}

/** A joining peer bound to a member (its connect got `false`). */
function joiner(h: Hub, id: number): TestPeer {
  const j = open(h);
  assert.equal(j.connect(id), false);
  return j;
}

/** Which of `candidates` receives what `j` sends now (as a joiner). */
function boundTo(j: TestPeer, candidates: TestPeer[]): TestPeer | undefined {
  for (const c of candidates) c.take();
  j.content([0xb0]);
  const hit = candidates.filter((c) => c.take().length > 0);
  assert.ok(hit.length <= 1, "content delivered to one member at most");
  return hit[0];
}

/** The stats named in `expected` (the hub may measure more). */
function stats(h: Hub, expected: Partial<HubStats>): void {
  const actual = h.stats();
  const picked = Object.fromEntries(
    Object.keys(expected).map((k) => [k, actual[k as keyof HubStats]]),
  );
  assert.deepStrictEqual(picked, expected);
}

function zeroStats(h: Hub): void {
  const actual = h.stats();
  stats(h, EMPTY_STATS);
  for (const [name, value] of Object.entries(actual)) {
    assert.equal(value, 0, name);
  }
  assert.equal(h.size, 0);
  assert.deepStrictEqual([...h.peers()], []);
}

// ---------------------------------------------------------------------------
// Membership

Deno.test("connect creates a group with the peer as only member when the key has none", () => {
  const h = hub();
  const a = member(h, 1);
  const other = open(h, "other");
  assert.equal(other.connect(1), true, "another key is another group");
  stats(h, {
    peers: 2,
    groups: 2,
    members: 2,
    ids: 2,
    bindings: 0,
    scheduled: 2,
  });
  assert.ok(a.peer.member && other.peer.member);
  assert.deepStrictEqual(a.take(), []);
});

Deno.test("connect replies true and changes nothing when the only member connects again", () => {
  const h = hub();
  const a = member(h, 1);
  const before = h.stats();
  assert.equal(a.connect(1), true);
  assert.equal(a.connect(9, [4, 5]), true);
  assert.ok(a.peer.member);
  assert.deepStrictEqual(h.stats(), before);
  assert.deepStrictEqual(a.socket.closes, []);
});

Deno.test("connect adds the peer when it lists the only member's group id", () => {
  const h = hub();
  const a = member(h, 1);
  const b = open(h);
  assert.equal(b.connect(2, [7, 1]), true);
  assert.ok(b.peer.member);
  assert.equal(h.stats().members, 2);
  assert.equal(h.stats().bindings, 0);
  assert.deepStrictEqual([a.take(), b.take()], [[], []]);
});

Deno.test("connect binds the peer and replies false when it lists no member", () => {
  const h = hub();
  const a = member(h, 1);
  const b = open(h);
  assert.equal(b.connect(2, [3]), false);
  assert.equal(b.peer.member, false);
  assert.equal(boundTo(b, [a]), a);
  assert.deepStrictEqual(a.socket.closes, [], "not tried yet: not replaced");
  assert.deepStrictEqual(h.stats().bindings, 1);
});

Deno.test("connect replaces the only member and closes it with 4744 when the joiner tried it", () => {
  const h = hub();
  const a = member(h, 1);
  const b = joiner(h, 2);
  const s = b.id;
  assert.equal(b.connect(2), true);
  assert.ok(b.peer.member);
  assert.equal(a.peer.live, false);
  assert.deepStrictEqual(a.socket.closes.map((c) => c.code), [
    ERR_BLOCKING_MEMBER,
  ]);
  // B was still listening to A: it learns that A is gone.
  assert.deepStrictEqual(b.take(), [relayed(0, s)]);
  stats(h, {
    peers: 1,
    groups: 1,
    members: 1,
    ids: 1,
    bindings: 0,
    scheduled: 1,
  });
  // B is now the group: a newcomer listing B's group id joins it.
  assert.equal(open(h).connect(3, [2]), true);
});

Deno.test("connect clears the joiner's tried list when it replaces the only member", () => {
  const h = hub();
  member(h, 1);
  const b = joiner(h, 2);
  assert.equal(b.connect(2), true, "B replaced A (group id 1)");
  const e = member(h, 1, { via: 2 });
  const f = member(h, 5, { via: 2 });
  // B leaves; had it kept group id 1 as tried, it would be bound to F.
  assert.equal(b.connect(2), false);
  assert.equal(boundTo(b, [e, f]), e);
});

Deno.test("connect clears the tried list when a joiner becomes a member", () => {
  const h = hub();
  const a = member(h, 1);
  const j = joiner(h, 2); // tried A (group id 1)
  const c = member(h, 3, { via: 1 });
  assert.equal(j.connect(2, [3]), true, "rule 3");
  assert.equal(j.connect(2), false, "rule 4: leaves and is bound again");
  assert.equal(boundTo(j, [a, c]), a);
});

Deno.test("connect adds or keeps a member when it lists any member's group id", () => {
  const h = hub();
  const a = member(h, 1);
  const b = member(h, 2, { via: 1 });
  const c = open(h);
  assert.equal(c.connect(3, [9, 2]), true, "lists the second member");
  assert.equal(h.stats().members, 3);
  // B stays a member, with its new group id, and keeps its place.
  assert.equal(b.connect(7, [3]), true);
  assert.equal(h.stats().members, 3);
  assert.equal(open(h).connect(8, [7]), true, "B's new group id counts");
  const j = joiner(h, 20);
  assert.equal(boundTo(j, [a, b, c]), a);
  assert.equal(j.connect(20), false);
  assert.equal(boundTo(j, [a, b, c]), b, "join order kept");
});

Deno.test("connect takes a member out of its group and binds it when it lists no member", () => {
  const h = hub();
  const a = member(h, 1);
  const b = member(h, 2, { via: 1 });
  assert.equal(b.connect(2, [5]), false);
  assert.equal(b.peer.member, false);
  assert.equal(h.stats().members, 1);
  assert.equal(boundTo(b, [a]), a);
});

Deno.test("a group disappears when its last member leaves", () => {
  const h = hub();
  const a = member(h, 1);
  a.close();
  assert.equal(h.stats().groups, 0);
  assert.equal(open(h).connect(2, [1]), true, "a new group, whatever it lists");
  assert.equal(h.stats().groups, 1);
});

Deno.test("connect binds to favored members first, in join order, then starts over", () => {
  const h = hub();
  const a = member(h, 1);
  const b = member(h, 2, { via: 1, favored: true });
  const c = member(h, 3, { via: 1 });
  const d = member(h, 4, { via: 1, favored: true });
  const all = [a, b, c, d];
  const j = joiner(h, 10);
  const order = [boundTo(j, all)];
  for (let i = 0; i < 5; i++) {
    assert.equal(j.connect(10), false);
    order.push(boundTo(j, all));
  }
  // All four tried: the list is forgotten and the choice starts over.
  assert.deepStrictEqual(order, [b, d, a, c, b, d]);
});

Deno.test("connect gets exactly one connected reply whichever rule applies", async (t) => {
  // TestPeer.connect asserts the single reply; each step walks one rule.
  const h = hub();
  let a: TestPeer;
  let j: TestPeer;
  await t.step("rule 1", () => void (a = member(h, 1)));
  await t.step("rule 2a", () => assert.equal(a.connect(1), true));
  await t.step("rule 4", () => void (j = joiner(h, 2)));
  await t.step("rule 2c", () => assert.equal(j.connect(2), true));
  await t.step("rule 2b", () => assert.equal(open(h).connect(3, [2]), true));
  await t.step("rule 3", () => assert.equal(open(h).connect(4, [3]), true));
  await t.step("rule 4 for a member", () => assert.equal(j.connect(2), false));
  assert.equal(h.counters.outConnected, 7);
});

// ---------------------------------------------------------------------------
// Binding and relaying

Deno.test("relay delivers joiner content to its member as senderId s, recipientId 0", () => {
  const h = hub();
  const m = member(h, 1);
  const j = joiner(h, 2);
  j.content([1, 2, 3], { senderId: 77, recipientId: 12345 });
  j.content([4], { recipientId: m.id });
  assert.deepStrictEqual(m.take(), [
    relayed(j.id, 0, [1, 2, 3]),
    relayed(j.id, 0, [4]),
  ]);
  assert.deepStrictEqual(j.take(), []);
  assert.equal(h.counters.bytesRelayed, 4);
});

Deno.test("relay delivers member content addressed to s to that joiner only", () => {
  const h = hub();
  const m = member(h, 1);
  const j1 = joiner(h, 2);
  const j2 = joiner(h, 3);
  assert.notEqual(j1.id, j2.id);
  m.content([1], { senderId: 5, recipientId: j2.id });
  m.content([2], { recipientId: j1.id });
  assert.deepStrictEqual(j1.take(), [relayed(0, j1.id, [2])]);
  assert.deepStrictEqual(j2.take(), [relayed(0, j2.id, [1])]);
  assert.deepStrictEqual(m.take(), []);
});

Deno.test("relay sends the same bytes with reuseFrames as without", () => {
  const run = (reuseFrames: boolean) => {
    const frames: number[][] = [];
    // Copies at once, as WebSocket.send does: a reused frame may change later.
    const transport = {
      send: (f: Uint8Array) => void frames.push([...f]),
      close() {},
    };
    const h = new Hub({ random: seeded(3), reuseFrames });
    const m = h.open(transport, "room", false);
    const j = h.open(transport, "room", false);
    const msg = (x: Message) => encodeMessage(x);
    h.receive(m, msg({ type: "connect", connect: { id: 1, members: [] } }));
    h.receive(j, msg({ type: "connect", connect: { id: 2, members: [] } }));
    for (const n of [1, 300, 5000, 0]) {
      const data = new Uint8Array(n).fill(n & 0xff);
      h.receive(
        j,
        msg({
          type: "content",
          content: { senderId: 0, recipientId: 0, lastData: false, data },
        }),
      );
      h.receive(
        m,
        msg({
          type: "content",
          content: { senderId: 0, recipientId: j.id, lastData: false, data },
        }),
      );
    }
    h.forget(j);
    return frames;
  };
  const plain = run(false);
  assert.equal(plain.length, 2 + 8 + 1);
  assert.deepStrictEqual(run(true), plain);
});

Deno.test("relay forwards lastData from a joiner without the flag, then stops that direction", () => {
  const h = hub();
  const m = member(h, 1);
  const j = joiner(h, 2);
  j.content([1], { lastData: true });
  assert.deepStrictEqual(m.take(), [relayed(j.id, 0, [1])]);
  const dropped = h.counters.dropped;
  j.content([2]);
  assert.deepStrictEqual(m.take(), []);
  assert.equal(h.counters.dropped, dropped + 1);
  // The other direction still works, and the member is not told J is gone.
  m.content([3], { recipientId: j.id });
  assert.deepStrictEqual(j.take(), [relayed(0, j.id, [3])]);
  j.close();
  assert.deepStrictEqual(m.take(), []);
});

Deno.test("relay forwards lastData from a member without the flag, then stops that direction", () => {
  const h = hub();
  const m = member(h, 1);
  const j = joiner(h, 2);
  m.content([1], { recipientId: j.id, lastData: true });
  assert.deepStrictEqual(j.take(), [relayed(0, j.id, [1])]);
  m.content([2], { recipientId: j.id });
  assert.deepStrictEqual(j.take(), []);
  j.content([3]);
  assert.deepStrictEqual(m.take(), [relayed(j.id, 0, [3])]);
  m.close();
  assert.deepStrictEqual(j.take(), [], "J is not told M is gone");
});

Deno.test("a binding ends when both directions sent lastData", () => {
  const h = hub();
  const m = member(h, 1);
  const j = joiner(h, 2);
  j.content([1], { lastData: true });
  assert.equal(h.stats().bindings, 1);
  m.content([2], { recipientId: j.id, lastData: true });
  assert.equal(h.stats().bindings, 0);
  assert.deepStrictEqual([m.take(), j.take()], [[relayed(j.id, 0, [1])], [
    relayed(0, j.id, [2]),
  ]]);
  m.close();
  assert.deepStrictEqual(j.take(), []);
});

Deno.test("close tells the member when a joiner it listens to is gone", () => {
  const h = hub();
  const m = member(h, 1);
  const j = joiner(h, 2);
  const s = j.id;
  j.close();
  assert.deepStrictEqual(m.take(), [relayed(s, 0)]);
  assert.equal(h.stats().bindings, 0);
});

Deno.test("close tells every joiner still listening when their member is gone", () => {
  const h = hub();
  const m = member(h, 1);
  const j1 = joiner(h, 2);
  const j2 = joiner(h, 3);
  const j3 = joiner(h, 4);
  m.content([], { recipientId: j3.id, lastData: true });
  j3.take();
  m.close();
  assert.deepStrictEqual(j1.take(), [relayed(0, j1.id)]);
  assert.deepStrictEqual(j2.take(), [relayed(0, j2.id)]);
  assert.deepStrictEqual(j3.take(), [], "J3 stopped listening");
  assert.equal(h.stats().bindings, 0);
  // The joiners are unbound: what they send now is dropped.
  j1.content([1]);
  assert.equal(h.counters.outContent, 3);
});

Deno.test("a binding survives the joiner becoming a member", () => {
  const h = hub();
  const m = member(h, 1);
  const j = joiner(h, 2);
  assert.equal(j.connect(2, [1]), true);
  j.content([1]);
  m.content([2], { recipientId: j.id });
  assert.deepStrictEqual(m.take(), [relayed(j.id, 0, [1])]);
  assert.deepStrictEqual(j.take(), [relayed(0, j.id, [2])]);
});

Deno.test("a member answering its own joiner reaches that joiner only, not its old member", () => {
  const h = hub();
  const m = member(h, 1);
  const j = open(h, "room", true);
  assert.equal(j.connect(2), false);
  assert.equal(
    j.connect(2, [1]),
    true,
    "J is a favored member, still bound to M",
  );
  const k = joiner(h, 3);
  assert.equal(boundTo(k, [m, j]), j, "K is bound to J (favored)");
  j.content([1], { recipientId: k.id });
  assert.deepStrictEqual(k.take(), [relayed(0, k.id, [1])]);
  assert.deepStrictEqual(m.take(), [], "not also sent to M");
  // Anything else J sends still goes to its old member M.
  j.content([2], { recipientId: 999 });
  assert.deepStrictEqual(m.take(), [relayed(j.id, 0, [2])]);
  assert.deepStrictEqual(k.take(), []);
});

Deno.test("content that matches no binding is dropped", () => {
  const h = hub();
  const m = member(h, 1);
  const j = joiner(h, 2);
  const loner = open(h, "elsewhere");
  loner.content([1]);
  m.content([2], { recipientId: j.id + 1 });
  m.content([3]);
  assert.deepStrictEqual([m.take(), j.take(), loner.take()], [[], [], []]);
  assert.equal(h.counters.dropped, 3);
  assert.equal(h.counters.outContent, 0);
});

Deno.test("binding again drops the old binding silently and changes the signaling id", () => {
  const h = hub();
  const a = member(h, 1);
  const b = member(h, 2, { via: 1 });
  const j = joiner(h, 3);
  const first = j.id;
  assert.equal(boundTo(j, [a, b]), a);
  assert.equal(j.connect(3), false);
  assert.notEqual(j.id, first);
  assert.deepStrictEqual([a.take(), j.take()], [[], []], "nobody is told");
  assert.equal(boundTo(j, [a, b]), b);
  a.content([1], { recipientId: first });
  b.content([2], { recipientId: first });
  assert.deepStrictEqual(j.take(), [], "the old id routes nowhere");
  b.content([3], { recipientId: j.id });
  assert.deepStrictEqual(j.take(), [relayed(0, j.id, [3])]);
  assert.equal(h.stats().ids, 3);
});

Deno.test("signaling ids stay unique and change on each bind when the random source collides", async (t) => {
  const sources: [string, () => number][] = [
    ["constant", () => 0.5],
    ["zero", () => 0],
    ["one", () => 1],
    ["negative", () => -0.25],
    ["NaN", () => NaN],
  ];
  for (const [name, random] of sources) {
    await t.step(name, () => {
      const h = new Hub({ random });
      const peers = [
        member(h, 1),
        member(h, 2, { via: 1 }),
        ...Array.from({ length: 30 }, (_, i) => joiner(h, i + 3)),
      ];
      const j = peers[2];
      for (let i = 0; i < 5; i++) {
        const before = j.id;
        assert.equal(j.connect(3), false);
        assert.notEqual(j.id, before, "a new id on each bind");
      }
      const ids = peers.map((p) => p.id);
      assert.equal(new Set(ids).size, ids.length);
      for (const id of ids) {
        assert.ok(Number.isInteger(id) && id >= 1 && id <= 2 ** 31 - 1);
      }
      assert.equal(h.stats().ids, ids.length);
    });
  }
});

// ---------------------------------------------------------------------------
// Heartbeats

Deno.test("tick sends a silent peer two heartbeats and closes it with 4742 at the third", () => {
  const h = hub({ slots: 1 });
  const p = open(h);
  h.tick();
  assert.deepStrictEqual(p.take(), [{ heartbeat: true }]);
  h.tick();
  assert.deepStrictEqual(p.take(), [{ heartbeat: true }]);
  assert.ok(p.peer.live);
  h.tick();
  assert.deepStrictEqual(p.take(), []);
  assert.deepStrictEqual(p.socket.closes.map((c) => c.code), [ERR_HEARTBEAT]);
  assert.equal(p.peer.live, false);
  assert.equal(h.counters.outHeartbeat, 2);
  zeroStats(h);
});

Deno.test("a heartbeat from the peer resets its missed count", async (t) => {
  for (const flag of [true, false]) {
    await t.step(`heartbeat ${flag}`, () => {
      const h = hub({ slots: 1 });
      const p = open(h);
      h.tick();
      h.tick();
      p.heartbeat(flag);
      h.tick();
      h.tick();
      assert.ok(p.peer.live);
      assert.equal(p.take().length, 4);
      h.tick();
      assert.deepStrictEqual(p.socket.closes.map((c) => c.code), [
        ERR_HEARTBEAT,
      ]);
    });
  }
});

Deno.test("messages other than heartbeat do not reset the missed count", async (t) => {
  const others: [string, (p: TestPeer) => void][] = [
    ["content", (p) => p.content([1])],
    ["connect", (p) => void p.connect(1)],
    ["connected", (p) => p.receive({ type: "connected", connected: true })],
  ];
  for (const [name, send] of others) {
    await t.step(name, () => {
      const h = hub({ slots: 1 });
      const p = open(h);
      h.tick();
      h.tick();
      send(p);
      h.tick();
      assert.deepStrictEqual(p.socket.closes.map((c) => c.code), [
        ERR_HEARTBEAT,
      ]);
    });
  }
});

Deno.test("tick first visits a peer one period after it opened when the wheel has slots", () => {
  const h = hub({ slots: 4 });
  h.tick();
  const p = open(h);
  for (let i = 0; i < 3; i++) h.tick();
  assert.deepStrictEqual(p.take(), []);
  h.tick();
  assert.deepStrictEqual(p.take(), [{ heartbeat: true }]);
  for (let i = 0; i < 3; i++) h.tick();
  assert.deepStrictEqual(p.take(), []);
  h.tick();
  assert.deepStrictEqual(p.take(), [{ heartbeat: true }]);
  for (let i = 0; i < 4; i++) h.tick();
  assert.deepStrictEqual(p.socket.closes.map((c) => c.code), [ERR_HEARTBEAT]);
});

Deno.test("new Hub throws RangeError when slots is not a positive integer", () => {
  for (const slots of [0, -1, 1.5, NaN]) {
    assert.throws(() => new Hub({ slots }), RangeError);
  }
});

// ---------------------------------------------------------------------------
// Bad input, closing, failing sockets, leaks

Deno.test("receive closes the peer with 4743 when the frame does not decode or has no type", async (t) => {
  const frames: [string, number[]][] = [
    ["garbage", [0xff, 0xff]],
    ["truncated", [0x08]],
    ["wire type mismatch", [0x0a, 0x00]],
    ["empty frame: no type", []],
    ["unknown fields only: no type", [0x28, 0x01]],
  ];
  for (const [name, frame] of frames) {
    await t.step(name, () => {
      const h = hub();
      const m = member(h, 1);
      const j = joiner(h, 2);
      const s = j.id;
      h.receive(j.peer, new Uint8Array(frame));
      assert.deepStrictEqual(j.socket.closes.map((c) => c.code), [ERR_MESSAGE]);
      assert.ok(j.socket.closes[0].reason.length > 0);
      assert.equal(j.peer.live, false);
      assert.deepStrictEqual(
        m.take(),
        [relayed(s, 0)],
        "its member learns it is gone",
      );
      assert.ok(m.peer.live);
    });
  }
});

Deno.test("close closes the peer with the code given and forgets it", () => {
  const h = hub();
  const m = member(h, 1);
  const j = joiner(h, 2);
  const s = j.id;
  h.close(j.peer, ERR_MESSAGE, "Cannot handle text frames");
  assert.deepStrictEqual(j.socket.closes, [{
    code: ERR_MESSAGE,
    reason: "Cannot handle text frames",
  }]);
  assert.deepStrictEqual(m.take(), [relayed(s, 0)]);
  assert.equal(h.size, 1);
});

Deno.test("receive, close, forget and tick ignore a peer that is gone", () => {
  const h = hub({ slots: 1 });
  const m = member(h, 1);
  const j = joiner(h, 2);
  j.close();
  m.take();
  const counters = { ...h.counters };
  j.close();
  h.close(j.peer, ERR_MESSAGE, "again");
  j.content([1]);
  j.receive({ type: "connect", connect: { id: 1, members: [1] } });
  h.tick();
  assert.deepStrictEqual(
    j.socket.closes,
    [],
    "a closed socket is not closed by the hub",
  );
  assert.deepStrictEqual(j.take(), []);
  assert.deepStrictEqual(m.take(), [{ heartbeat: true }]);
  assert.deepStrictEqual(h.counters, { ...counters, outHeartbeat: 1 });
  assert.equal(h.stats().members, 1);
});

Deno.test("a failing send closes only that peer, with 4745 or the CloseError code", async (t) => {
  const failures: [string, unknown, number][] = [
    ["Error", new Error("broken pipe"), ERR_URL],
    ["not an Error", "boom", ERR_URL],
    ["CloseError", new CloseError(1008, "Cannot send: too slow"), 1008],
  ];
  for (const [name, failure, code] of failures) {
    await t.step(name, () => {
      const h = hub({ slots: 1 });
      const m = member(h, 1);
      const j1 = joiner(h, 2);
      const j2 = joiner(h, 3);
      const s1 = j1.id;
      j1.socket.failWith = failure;
      m.content([1], { recipientId: j1.id });
      assert.deepStrictEqual(j1.socket.closes.map((c) => c.code), [code]);
      assert.equal(j1.peer.live, false);
      assert.deepStrictEqual(m.take(), [relayed(s1, 0)]);
      m.content([2], { recipientId: j2.id });
      assert.deepStrictEqual(j2.take(), [relayed(0, j2.id, [2])]);
      // A heartbeat that fails closes the peer the same way.
      j2.socket.failWith = failure;
      h.tick();
      assert.deepStrictEqual(j2.socket.closes.map((c) => c.code), [code]);
      assert.ok(m.peer.live);
      assert.equal(h.size, 1);
    });
  }
});

Deno.test("a connected message from a peer is counted and ignored", () => {
  const h = hub();
  const a = member(h, 1);
  a.receive({ type: "connected", connected: true });
  assert.deepStrictEqual(a.take(), []);
  assert.equal(h.counters.inConnected, 1);
  assert.ok(a.peer.live && a.peer.member);
});

Deno.test("stats is all zeros after many peers came and went", () => {
  const random = seeded(7);
  const h = hub({ slots: 3 });
  const live: TestPeer[] = [];
  for (let step = 0; step < 3000; step++) {
    const x = random();
    const p = live[Math.floor(random() * live.length)];
    if (x < 0.25 || p === undefined) {
      live.push(open(h, `k${Math.floor(random() * 3)}`, random() < 0.3));
    } else if (x < 0.5) {
      const ids = Array.from(
        { length: Math.floor(random() * 3) },
        () => Math.floor(random() * 6),
      );
      p.connect(Math.floor(random() * 6), ids);
    } else if (x < 0.65) {
      p.content([1], {
        recipientId: live[Math.floor(random() * live.length)].id,
        lastData: random() < 0.2,
      });
    } else if (x < 0.7) {
      p.content([2], { lastData: random() < 0.2 });
    } else if (x < 0.8) {
      p.close();
    } else if (x < 0.83) {
      h.close(p.peer, ERR_MESSAGE, "test");
    } else if (x < 0.9) {
      h.tick();
    } else {
      p.heartbeat();
    }
    for (let i = live.length - 1; i >= 0; i--) {
      if (!live[i].peer.live) live.splice(i, 1);
    }
    assert.equal(h.size, live.length);
  }
  assert.ok(
    h.counters.outContent > 100 && h.counters.outConnected > 100,
    "the scenario did something",
  );
  for (const p of live) p.close();
  zeroStats(h);
});
