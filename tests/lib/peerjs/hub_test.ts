import assert from "node:assert/strict";
import { CloseError, type PeerTransport } from "../../../lib/protocol.ts";
import {
  MSG_KEY,
  MSG_LIMIT,
  MSG_MISSING,
  MSG_TAKEN,
  MSG_TOKEN,
  PeerjsHub,
  type PeerjsHubOptions,
} from "../../../lib/peerjs/hub.ts";

/** A transport that records what it was sent and how it was closed. */
class FakeTransport implements PeerTransport {
  readonly sent: unknown[] = [];
  closed: { code: number; reason: string } | undefined;
  /** Throw this on the next send. */
  fail: CloseError | undefined;

  send(frame: Uint8Array | string): void {
    if (this.fail) throw this.fail;
    this.sent.push(JSON.parse(frame as string));
  }

  close(code: number, reason: string): void {
    this.closed ??= { code, reason };
  }

  /** Takes what was sent so far. */
  take(): unknown[] {
    return this.sent.splice(0);
  }
}

function connect(
  hub: PeerjsHub,
  id: string,
  token = `t-${id}`,
  extra: { key?: string; scope?: string } = {},
) {
  const transport = new FakeTransport();
  const client = hub.connect(transport, {
    key: extra.key ?? "peerjs",
    id,
    token,
    scope: extra.scope,
  });
  return { transport, client };
}

function hub(options: PeerjsHubOptions = {}): PeerjsHub {
  return new PeerjsHub(options);
}

const OFFER = (dst: string, sdp = "v=0") =>
  JSON.stringify({
    type: "OFFER",
    dst,
    src: "forged",
    payload: { sdp: { type: "offer", sdp }, connectionId: "dc_1" },
  });

Deno.test("PeerjsHub refuses a socket with ERROR then a close when the query lacks id, token or key", async (t) => {
  for (
    const [name, request] of [
      ["no id", { key: "peerjs", id: null, token: "t" }],
      ["no token", { key: "peerjs", id: "a", token: "" }],
      ["no key", { key: undefined, id: "a", token: "t" }],
    ] as const
  ) {
    await t.step(name, () => {
      const transport = new FakeTransport();
      assert.equal(hub().connect(transport, request), undefined);
      assert.deepEqual(transport.sent, [{
        type: "ERROR",
        payload: { msg: MSG_MISSING },
      }]);
      assert.equal(transport.closed?.code, 1008);
    });
  }
});

Deno.test("PeerjsHub answers a wrong key with ERROR 'Invalid key provided'", () => {
  const { transport, client } = connect(hub(), "a", "t", { key: "other" });
  assert.equal(client, undefined);
  assert.deepEqual(transport.sent, [{
    type: "ERROR",
    payload: { msg: MSG_KEY },
  }]);
  assert.equal(transport.closed?.code, 1008);
});

Deno.test("PeerjsHub refuses ids and tokens out of bounds with a clear ERROR", async (t) => {
  for (
    const [name, id, token, msg] of [
      ["an id too long", "a".repeat(129), "t", /longer than 128/],
      ["an id with &", "a&b", "t", /letters, digits/],
      ["an id with a leading space", " a", "t", /letters, digits/],
      ["a token with a space", "a", "t t", new RegExp(MSG_TOKEN)],
    ] as const
  ) {
    await t.step(name, () => {
      const { transport, client } = connect(hub(), id, token);
      assert.equal(client, undefined);
      const [error] = transport.sent as {
        type: string;
        payload: { msg: string };
      }[];
      assert.equal(error.type, "ERROR");
      assert.match(error.payload.msg, msg);
      assert.equal(transport.closed?.code, 1008);
    });
  }
});

Deno.test("PeerjsHub sends OPEN to a client that takes a free id, and counts it", () => {
  const h = hub();
  const { transport, client } = connect(h, "alice");
  assert.ok(client?.live);
  assert.deepEqual(transport.sent, [{ type: "OPEN" }]);
  assert.equal(transport.closed, undefined);
  assert.equal(h.size, 1);
  assert.ok(h.holds("peerjs", "alice"));
  // Logs see a hash, never the id.
  assert.match(client.id, /^[0-9a-f]{8}$/);
});

Deno.test("PeerjsHub answers ID-TAKEN and closes a socket that asks for a held id with another token", () => {
  const h = hub();
  const first = connect(h, "alice", "one");
  const second = connect(h, "alice", "two");
  assert.equal(second.client, undefined);
  assert.deepEqual(second.transport.sent, [{
    type: "ID-TAKEN",
    payload: { msg: MSG_TAKEN },
  }]);
  assert.equal(second.transport.closed?.code, 1008);
  assert.equal(first.transport.closed, undefined);
  assert.equal(h.size, 1);
});

Deno.test("PeerjsHub lets the same token replace a live socket, closes the old one and sends OPEN", () => {
  const h = hub();
  const old = connect(h, "alice", "same");
  old.transport.take();
  const fresh = connect(h, "alice", "same");
  assert.ok(fresh.client?.live);
  assert.deepEqual(fresh.transport.sent, [{ type: "OPEN" }]);
  assert.equal(old.transport.closed?.code, 1000);
  assert.equal(old.client?.live, false);
  assert.equal(h.size, 1);
  assert.equal(h.counters.replaced, 1);
  // The old socket's close event does not release the id.
  h.forget(old.client!);
  assert.ok(h.holds("peerjs", "alice"));
  const bob = connect(h, "bob");
  h.receive(bob.client!, OFFER("alice"));
  assert.equal(fresh.transport.take().length, 2);
  assert.equal(old.transport.sent.length, 0);
});

Deno.test("PeerjsHub answers ERROR past its id limit, and a replacing reconnect still gets in", () => {
  const h = hub({ maxIds: 1 });
  connect(h, "alice", "same");
  const bob = connect(h, "bob");
  assert.equal(bob.client, undefined);
  assert.deepEqual(bob.transport.sent, [{
    type: "ERROR",
    payload: { msg: MSG_LIMIT },
  }]);
  assert.ok(connect(h, "alice", "same").client?.live);
});

Deno.test("PeerjsHub keeps ids apart by key", () => {
  const h = hub({ keys: ["one", "two"] });
  const a1 = connect(h, "alice", "x", { key: "one" });
  const a2 = connect(h, "alice", "y", { key: "two" });
  assert.ok(a1.client?.live && a2.client?.live);
  const bob = connect(h, "bob", "z", { key: "one" });
  h.receive(bob.client!, OFFER("alice"));
  assert.equal(a1.transport.sent.length, 2);
  assert.equal(a2.transport.sent.length, 1);
  assert.deepEqual(h.ids("one"), ["alice", "bob"]);
});

Deno.test("PeerjsHub relays OFFER, ANSWER, CANDIDATE and LEAVE with the sender's id as src", () => {
  const h = hub();
  const alice = connect(h, "alice");
  const bob = connect(h, "bob");
  alice.transport.take();
  bob.transport.take();
  h.receive(alice.client!, OFFER("bob"));
  for (const type of ["ANSWER", "CANDIDATE", "LEAVE"]) {
    h.receive(
      bob.client!,
      JSON.stringify({
        type,
        dst: "alice",
        src: "mallory",
        payload: { n: 1 },
        extra: 1,
      }),
    );
  }
  assert.deepEqual(bob.transport.take(), [{
    type: "OFFER",
    src: "alice",
    dst: "bob",
    payload: { sdp: { type: "offer", sdp: "v=0" }, connectionId: "dc_1" },
  }]);
  assert.deepEqual(
    alice.transport.take(),
    ["ANSWER", "CANDIDATE", "LEAVE"].map((type) => ({
      type,
      src: "bob",
      dst: "alice",
      payload: { n: 1 },
    })),
  );
});

Deno.test("PeerjsHub drops unknown types, bad destinations and destinations outside the token's scope", () => {
  const h = hub();
  const alice = connect(h, "room/alice", "t", { scope: "room/" });
  const other = connect(h, "other");
  const room = connect(h, "room/bob");
  for (
    const frame of [
      { type: "WHATEVER", dst: "room/bob" },
      { type: "OFFER", dst: 12 },
      { type: "OFFER", dst: "a&b" },
      { type: "OFFER", dst: "other" },
      { type: "EXPIRE", dst: "room/bob" },
    ]
  ) h.receive(alice.client!, JSON.stringify(frame));
  assert.equal(h.counters.dropped, 5);
  assert.equal(other.transport.sent.length, 1);
  assert.equal(room.transport.sent.length, 1);
  assert.equal(h.queued, 0);
  assert.equal(alice.transport.closed, undefined);
});

Deno.test("PeerjsHub refuses an id outside the token's scope", () => {
  const { transport, client } = connect(hub(), "bob", "t", { scope: "room/" });
  assert.equal(client, undefined);
  assert.match(
    (transport.sent[0] as { payload: { msg: string } }).payload.msg,
    /prefix/,
  );
});

Deno.test("PeerjsHub closes a client that sends something other than a JSON object with a type", async (t) => {
  for (const frame of ["not json", "[1]", '{"dst":"b"}', "null"]) {
    await t.step(frame, () => {
      const h = hub();
      const { transport, client } = connect(h, "alice");
      h.receive(client!, frame);
      assert.equal(transport.closed?.code, 4743);
      assert.equal(h.size, 0);
    });
  }
});

Deno.test("PeerjsHub queues messages for an absent id and delivers them, in order, after OPEN", () => {
  const h = hub();
  const alice = connect(h, "alice");
  h.receive(alice.client!, OFFER("bob", "1"));
  h.receive(
    alice.client!,
    JSON.stringify({ type: "CANDIDATE", dst: "bob", payload: { c: 2 } }),
  );
  h.receive(alice.client!, JSON.stringify({ type: "LEAVE", dst: "bob" }));
  assert.equal(h.queued, 2);
  h.tick();
  const bob = connect(h, "bob");
  assert.deepEqual(
    (bob.transport.sent as { type: string }[]).map((m) => m.type),
    ["OPEN", "OFFER", "CANDIDATE"],
  );
  assert.equal(h.queued, 0);
  assert.equal(h.queuedBytes, 0);
  for (let i = 0; i < 60; i++) h.tick();
  assert.deepEqual(alice.transport.sent, [{ type: "OPEN" }]);
});

Deno.test("PeerjsHub sends one EXPIRE per sender and absent id once the queue waited its expiry", () => {
  const h = hub({ expireTicks: 50 });
  const alice = connect(h, "alice");
  const carol = connect(h, "carol");
  alice.transport.take();
  carol.transport.take();
  h.receive(alice.client!, OFFER("bob"));
  for (let i = 0; i < 3; i++) {
    h.receive(
      alice.client!,
      JSON.stringify({ type: "CANDIDATE", dst: "bob", payload: { i } }),
    );
  }
  h.receive(carol.client!, OFFER("bob"));
  h.receive(alice.client!, OFFER("dave"));
  for (let i = 0; i < 49; i++) h.tick();
  assert.deepEqual(alice.transport.sent, []);
  h.tick();
  assert.deepEqual(alice.transport.take(), [
    { type: "EXPIRE", src: "bob", dst: "alice" },
    { type: "EXPIRE", src: "dave", dst: "alice" },
  ]);
  assert.deepEqual(carol.transport.take(), [
    { type: "EXPIRE", src: "bob", dst: "carol" },
  ]);
  assert.equal(h.queued, 0);
  for (let i = 0; i < 100; i++) h.tick();
  assert.deepEqual(alice.transport.sent, []);
  // Bob comes too late: nothing waits for him.
  assert.deepEqual(connect(h, "bob").transport.sent, [{ type: "OPEN" }]);
});

Deno.test("PeerjsHub answers ERROR when a queue is full, per id and in all", async (t) => {
  await t.step("per id", () => {
    const h = hub({ maxQueuedPerId: 2 });
    const alice = connect(h, "alice");
    alice.transport.take();
    for (let i = 0; i < 3; i++) h.receive(alice.client!, OFFER("bob"));
    assert.equal(h.queued, 2);
    const [error] = alice.transport.take() as {
      type: string;
      payload: { msg: string };
    }[];
    assert.equal(error.type, "ERROR");
    assert.match(error.payload.msg, /^Cannot queue/);
    // Another id still has room.
    h.receive(alice.client!, OFFER("carol"));
    assert.equal(h.queued, 3);
  });
  await t.step("in all", () => {
    const frame = OFFER("bob");
    const h = hub({ maxQueuedBytes: Math.floor(1.5 * frame.length) });
    const alice = connect(h, "alice");
    alice.transport.take();
    h.receive(alice.client!, OFFER("bob"));
    h.receive(alice.client!, OFFER("carol"));
    h.receive(alice.client!, OFFER("dave"));
    assert.equal(h.queued, 1);
    assert.equal(alice.transport.take().length, 2);
    assert.deepEqual(h.counters.refused.samples(), [[{
      reason: "queue_all_full",
    }, 2]]);
  });
});

Deno.test("PeerjsHub closes clients silent past the alive timeout, and heartbeats keep them", () => {
  const h = hub({ aliveTicks: 30 });
  const quiet = connect(h, "quiet");
  const beating = connect(h, "beating");
  for (let i = 1; i <= 40; i++) {
    if (i % 5 === 0) {
      h.receive(beating.client!, JSON.stringify({ type: "HEARTBEAT" }));
    }
    h.tick();
  }
  assert.equal(quiet.transport.closed?.code, 4742);
  assert.equal(beating.transport.closed, undefined);
  assert.deepEqual(beating.transport.sent, [{ type: "OPEN" }]);
  assert.deepEqual(h.ids("peerjs"), ["beating"]);
});

Deno.test("PeerjsHub closes a destination that reads too slowly and keeps the sender", () => {
  const h = hub();
  const alice = connect(h, "alice");
  const bob = connect(h, "bob");
  bob.transport.fail = new CloseError(
    1008,
    "Cannot send: the peer reads too slowly",
  );
  h.receive(alice.client!, OFFER("bob"));
  assert.deepEqual(bob.transport.closed, {
    code: 1008,
    reason: "Cannot send: the peer reads too slowly",
  });
  assert.equal(alice.transport.closed, undefined);
  assert.deepEqual(h.ids("peerjs"), ["alice"]);
});

Deno.test("PeerjsHub frees an id when its socket closes, and drops queues once nobody is connected", () => {
  const h = hub();
  const alice = connect(h, "alice");
  h.receive(alice.client!, OFFER("bob"));
  h.forget(alice.client!);
  h.forget(alice.client!);
  assert.equal(h.size, 0);
  assert.equal(h.queued, 0);
  assert.ok(connect(h, "alice", "another").client?.live);
});
