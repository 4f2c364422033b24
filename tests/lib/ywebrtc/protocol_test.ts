import assert from "node:assert/strict";
import { CloseError, type PeerTransport } from "../../../lib/protocol.ts";
import type { TopicBus } from "../../../lib/ywebrtc/bus.ts";
import {
  type YWebrtcOptions,
  type YWebrtcPeer,
  YWebrtcProtocol,
} from "../../../lib/ywebrtc/protocol.ts";

/** A transport that records what it is sent and how it is closed. */
class FakeTransport implements PeerTransport {
  readonly sent: unknown[] = [];
  closed: { code: number; reason: string } | undefined;
  slow = false;
  send(frame: Uint8Array | string): void {
    if (this.slow) throw new CloseError(1008, "Cannot send: slow");
    this.sent.push(JSON.parse(frame as string));
  }
  close(code: number, reason: string): void {
    this.closed = { code, reason };
  }
  take(): unknown[] {
    return this.sent.splice(0);
  }
}

function setup(options?: YWebrtcOptions, scope?: string) {
  const protocol = new YWebrtcProtocol(options);
  const open = () => {
    const transport = new FakeTransport();
    const peer = protocol.open(transport, { key: "", favored: false, scope });
    return { peer, transport };
  };
  const send = (peer: YWebrtcPeer, message: unknown) =>
    protocol.receive(peer, JSON.stringify(message));
  return { protocol, open, send };
}

function metric(protocol: YWebrtcProtocol, name: string): number {
  const family = protocol.metrics().find((f) => f.name === name)!;
  return family.samples[0][1];
}

Deno.test("publish reaches every subscriber, its sender included, with clients", () => {
  const { protocol, open, send } = setup();
  const a = open(), b = open(), c = open();
  send(a.peer, { type: "subscribe", topics: ["room"] });
  send(b.peer, { type: "subscribe", topics: ["room", "other"] });
  send(c.peer, { type: "subscribe", topics: ["other"] });
  const data = { type: "announce", from: "a" };
  send(a.peer, { type: "publish", topic: "room", data });
  const expected = { type: "publish", topic: "room", data, clients: 2 };
  assert.deepEqual(a.transport.take(), [expected]);
  assert.deepEqual(b.transport.take(), [expected]);
  assert.deepEqual(c.transport.take(), []);
  assert.equal(metric(protocol, "sigver_ywebrtc_publishes_total"), 1);
  assert.equal(metric(protocol, "sigver_ywebrtc_deliveries_total"), 2);
});

Deno.test("publish from a client that did not subscribe reaches nobody", () => {
  const { protocol, open, send } = setup();
  const a = open(), b = open();
  send(b.peer, { type: "subscribe", topics: ["room"] });
  send(a.peer, { type: "publish", topic: "room", data: {} });
  send(a.peer, { type: "publish", topic: "nowhere", data: {} });
  assert.deepEqual(b.transport.take(), []);
  assert.equal(a.transport.closed, undefined);
  assert.equal(metric(protocol, "sigver_ywebrtc_publishes_dropped_total"), 2);
});

Deno.test("unsubscribe leaves the topic, and the last one out frees it", () => {
  const { protocol, open, send } = setup();
  const a = open(), b = open();
  send(a.peer, { type: "subscribe", topics: ["room", "x"] });
  send(b.peer, { type: "subscribe", topics: ["room"] });
  assert.equal(protocol.topics, 2);
  send(a.peer, { type: "unsubscribe", topics: ["room", "never"] });
  send(b.peer, { type: "publish", topic: "room", data: 1 });
  assert.deepEqual(a.transport.take(), []);
  assert.deepEqual(b.transport.take(), [
    { type: "publish", topic: "room", data: 1, clients: 1 },
  ]);
  // a may not publish to a topic it left.
  send(a.peer, { type: "publish", topic: "room", data: 2 });
  assert.deepEqual(b.transport.take(), []);
  send(b.peer, { type: "unsubscribe", topics: ["room"] });
  assert.equal(protocol.topics, 1);
  assert.equal(metric(protocol, "sigver_ywebrtc_subscriptions"), 1);
});

Deno.test("subscribing twice to a topic delivers once", () => {
  const { open, send } = setup();
  const a = open();
  send(a.peer, { type: "subscribe", topics: ["room", "room"] });
  send(a.peer, { type: "subscribe", topics: ["room"] });
  send(a.peer, { type: "publish", topic: "room", data: 0 });
  assert.deepEqual(a.transport.take(), [
    { type: "publish", topic: "room", data: 0, clients: 1 },
  ]);
});

Deno.test("a closed or forgotten client leaves all its topics", () => {
  const { protocol, open, send } = setup();
  const a = open(), b = open();
  send(a.peer, { type: "subscribe", topics: ["r1", "r2"] });
  send(b.peer, { type: "subscribe", topics: ["r1"] });
  protocol.forget(a.peer);
  protocol.forget(a.peer);
  assert.equal(a.peer.live, false);
  assert.equal(protocol.size, 1);
  assert.equal(protocol.topics, 1);
  protocol.close(b.peer, 1001, "bye");
  assert.deepEqual(b.transport.closed, { code: 1001, reason: "bye" });
  assert.equal(protocol.size, 0);
  assert.equal(protocol.topics, 0);
});

Deno.test("ping is answered with pong", () => {
  const { open, send } = setup();
  const a = open();
  send(a.peer, { type: "ping" });
  assert.deepEqual(a.transport.take(), [{ type: "pong" }]);
});

Deno.test("a malformed frame closes its sender with 4743, others unaffected", () => {
  const { protocol, open, send } = setup();
  const a = open(), b = open();
  send(a.peer, { type: "subscribe", topics: ["room"] });
  send(b.peer, { type: "subscribe", topics: ["room"] });
  protocol.receive(a.peer, "{not json");
  assert.deepEqual(a.transport.closed, {
    code: 4743,
    reason: "Cannot handle message: not JSON",
  });
  assert.equal(a.peer.live, false);
  send(b.peer, { type: "publish", topic: "room", data: 0 });
  assert.deepEqual(b.transport.take(), [
    { type: "publish", topic: "room", data: 0, clients: 1 },
  ]);
  const refusals = protocol.metrics().find((f) =>
    f.name === "sigver_ywebrtc_refusals_total"
  )!;
  assert.deepEqual(refusals.samples, [[
    { protocol: "y-webrtc", reason: "malformed" },
    1,
  ]]);
});

Deno.test("limits close the client with a code and a reason", async (t) => {
  await t.step("topic length", () => {
    const { open, send } = setup({ maxTopicLength: 4 });
    const a = open(), b = open();
    send(a.peer, { type: "subscribe", topics: ["abcd"] });
    assert.equal(a.transport.closed, undefined);
    send(a.peer, { type: "subscribe", topics: ["abcde"] });
    assert.deepEqual(a.transport.closed, {
      code: 4750,
      reason: "Cannot subscribe: a topic is empty or over 4 characters",
    });
    send(b.peer, { type: "subscribe", topics: [""] });
    assert.equal(b.transport.closed?.code, 4750);
  });
  await t.step("topics per connection", () => {
    const { open, send } = setup({ maxTopicsPerPeer: 2 });
    const a = open();
    send(a.peer, { type: "subscribe", topics: ["1", "2"] });
    send(a.peer, { type: "subscribe", topics: ["2", "1"] });
    assert.equal(a.transport.closed, undefined);
    send(a.peer, { type: "unsubscribe", topics: ["1"] });
    send(a.peer, { type: "subscribe", topics: ["3"] });
    assert.equal(a.transport.closed, undefined);
    send(a.peer, { type: "subscribe", topics: ["4"] });
    assert.deepEqual(a.transport.closed, {
      code: 4751,
      reason: "Cannot subscribe: over 2 topics on one connection",
    });
  });
  await t.step("subscribers per topic", () => {
    const { protocol, open, send } = setup({ maxSubscribersPerTopic: 2 });
    const [a, b, c] = [open(), open(), open()];
    send(a.peer, { type: "subscribe", topics: ["room"] });
    send(b.peer, { type: "subscribe", topics: ["room"] });
    send(c.peer, { type: "subscribe", topics: ["free", "room"] });
    assert.deepEqual(c.transport.closed, {
      code: 4752,
      reason: "Cannot subscribe: a topic has 2 subscribers already",
    });
    // Refused whole: it joined neither topic.
    assert.equal(protocol.topics, 1);
  });
  await t.step("0 turns a limit off", () => {
    const { open, send } = setup({ maxTopicsPerPeer: 0 });
    const a = open();
    const topics = Array.from({ length: 100 }, (_, i) => `t${i}`);
    send(a.peer, { type: "subscribe", topics });
    assert.equal(a.transport.closed, undefined);
  });
  await t.step("limits must be non-negative integers", () => {
    assert.throws(() => new YWebrtcProtocol({ maxTopicsPerPeer: -1 }), {
      name: "RangeError",
      message: "Cannot use maxTopicsPerPeer: -1 is not a non-negative integer",
    });
  });
});

Deno.test("a token's scope limits the topics a client may subscribe to", () => {
  const { protocol, open, send } = setup({}, "team-a/");
  const a = open();
  send(a.peer, { type: "subscribe", topics: ["team-a/doc"] });
  assert.equal(a.transport.closed, undefined);
  send(a.peer, { type: "subscribe", topics: ["team-b/doc"] });
  assert.deepEqual(a.transport.closed, {
    code: 4753,
    reason: "Cannot subscribe: a topic is outside the access token's prefix",
  });
  assert.equal(protocol.topics, 0);
});

Deno.test("a slow subscriber is closed with its code, others still get the publish", () => {
  const { protocol, open, send } = setup();
  const a = open(), b = open(), c = open();
  for (const p of [a, b, c]) send(p.peer, { type: "subscribe", topics: ["r"] });
  b.transport.slow = true;
  send(a.peer, { type: "publish", topic: "r", data: 1 });
  assert.deepEqual(b.transport.closed, {
    code: 1008,
    reason: "Cannot send: slow",
  });
  assert.equal(a.transport.take().length, 1);
  assert.equal(c.transport.take().length, 1);
  assert.equal(protocol.size, 2);
});

Deno.test("a client silent for the idle timeout is closed with 4742", () => {
  const { protocol, open, send } = setup({ idleTicks: 30 });
  const quiet = open(), talker = open();
  for (let i = 0; i < 30; i++) protocol.tick();
  send(talker.peer, { type: "ping" });
  for (let i = 0; i < 10; i++) protocol.tick();
  assert.deepEqual(quiet.transport.closed, {
    code: 4742,
    reason: "Cannot keep: nothing received for the idle timeout",
  });
  assert.equal(talker.transport.closed, undefined);
  for (let i = 0; i < 30; i++) protocol.tick();
  assert.equal(
    (talker.transport.closed as { code: number } | undefined)?.code,
    4742,
  );
});

Deno.test("a bus hears first and last subscribers, local publishes, and delivers remote ones", () => {
  const calls: string[] = [];
  let deliver!: (topic: string, frame: string) => void;
  const { protocol, open, send } = setup({
    bus: (d) => {
      deliver = d;
      const bus: TopicBus = {
        subscribe: (t) => calls.push(`sub ${t}`),
        unsubscribe: (t) => calls.push(`unsub ${t}`),
        publish: (t, f) => calls.push(`pub ${t} ${f}`),
        close: () => calls.push("close"),
      };
      return bus;
    },
  });
  const a = open(), b = open();
  send(a.peer, { type: "subscribe", topics: ["r"] });
  send(b.peer, { type: "subscribe", topics: ["r"] });
  send(a.peer, { type: "publish", topic: "r", data: 1 });
  deliver("r", '{"type":"publish","topic":"r","data":2}');
  deliver("gone", '{"type":"publish","topic":"gone","data":3}');
  protocol.forget(a.peer);
  send(b.peer, { type: "unsubscribe", topics: ["r"] });
  assert.deepEqual(calls, [
    "sub r",
    'pub r {"type":"publish","topic":"r","data":1}',
    "unsub r",
  ]);
  assert.deepEqual(b.transport.take(), [
    { type: "publish", topic: "r", data: 1, clients: 2 },
    { type: "publish", topic: "r", data: 2, clients: 2 },
  ]);
});
