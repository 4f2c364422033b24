/**
 * Tests of cluster/link.ts: a pipe as a peer's `Remote`. {@linkcode PipeLink}
 * is driven through its `PipeEvents` methods (what its pipe would report)
 * and read through a recording `RemoteEvents` (the peer's connection);
 * {@linkcode openLink} opens a real pipe to a `Deno.serve` "owner" on
 * loopback that upgrades with `Deno.upgradeWebSocket`.
 */

import assert from "node:assert/strict";
import { openLink, PipeLink } from "../../cluster/link.ts";
import type { PipeEnd } from "../../cluster/pipe.ts";
import { deadline } from "../../lib/deadline.ts";
import type { RemoteEvents } from "../../deno/placement.ts";
import { freePort } from "../../dev/process.ts";
import { WAIT_TIMEOUT } from "../_helpers.ts";

const GONE = "Cannot relay: the server node of this group went away; reconnect";

const OPTIONS = {
  connectTimeout: WAIT_TIMEOUT,
  maxBufferedAmount: 0,
  maxQueued: 16,
};

/** A peer's connection: keeps what its link reports, in order. */
class Target implements RemoteEvents {
  readonly events: (
    | { frame: Uint8Array | string }
    | { end: number; reason: string }
  )[] = [];
  #next: (() => void) | undefined;
  onRemoteFrame(frame: Uint8Array | string): void {
    this.events.push({ frame });
    this.#next?.();
  }
  onRemoteEnd(code: number, reason: string): void {
    this.events.push({ end: code, reason });
    this.#next?.();
  }
  /** Resolves once `n` events came in all. */
  async count(n: number): Promise<void> {
    while (this.events.length < n) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#next = resolve;
      await deadline(promise, WAIT_TIMEOUT, `event ${n} at the edge`);
    }
  }
}

function counter(): { released: () => void; readonly count: number } {
  let count = 0;
  return {
    released: () => count++,
    get count() {
      return count;
    },
  };
}

// PipeLink, driven by hand

Deno.test("PipeLink replays the frames that came before attach, as copies", () => {
  const link = new PipeLink(() => {});
  // The pipe's read buffer: its views are valid during the call only.
  const buffer = new Uint8Array([1, 2, 3, 4]);
  link.onPipeFrame(buffer.subarray(0, 2));
  link.onPipeFrame("text");
  buffer.fill(0);
  const target = new Target();
  link.attach(target);
  assert.deepEqual(target.events, [
    { frame: new Uint8Array([1, 2]) },
    { frame: "text" },
  ]);
});

Deno.test("PipeLink passes frames after attach on at once", () => {
  const link = new PipeLink(() => {});
  const target = new Target();
  link.attach(target);
  const view = new Uint8Array([5, 6]);
  link.onPipeFrame(view);
  assert.equal(target.events.length, 1);
  assert.deepEqual(target.events[0], { frame: new Uint8Array([5, 6]) });
});

Deno.test("PipeLink replays an end that came before attach, after the frames", () => {
  const link = new PipeLink(() => {});
  link.onPipeFrame(new Uint8Array([1]));
  link.onPipeEnd({ kind: "closed", code: 4742, reason: "heartbeat" });
  const target = new Target();
  link.attach(target);
  assert.deepEqual(target.events, [
    { frame: new Uint8Array([1]) },
    { end: 4742, reason: "heartbeat" },
  ]);
});

Deno.test("PipeLink mirrors a close code a server may send, and closes with 1012 otherwise", async (t) => {
  const cases: [string, PipeEnd, number, string][] = [
    ["1000", { kind: "closed", code: 1000, reason: "done" }, 1000, "done"],
    ["1003", { kind: "closed", code: 1003, reason: "r" }, 1003, "r"],
    ["1007", { kind: "closed", code: 1007, reason: "r" }, 1007, "r"],
    ["1012", { kind: "closed", code: 1012, reason: "r" }, 1012, "r"],
    ["1014", { kind: "closed", code: 1014, reason: "r" }, 1014, "r"],
    ["3000", { kind: "closed", code: 3000, reason: "r" }, 3000, "r"],
    ["4999", { kind: "closed", code: 4999, reason: "r" }, 4999, "r"],
    ["999", { kind: "closed", code: 999, reason: "r" }, 1012, GONE],
    ["1004", { kind: "closed", code: 1004, reason: "r" }, 1012, GONE],
    ["1005", { kind: "closed", code: 1005, reason: "" }, 1012, GONE],
    ["1006 (a drop)", { kind: "closed", code: 1006, reason: "" }, 1012, GONE],
    ["1015", { kind: "closed", code: 1015, reason: "r" }, 1012, GONE],
    ["2999", { kind: "closed", code: 2999, reason: "r" }, 1012, GONE],
    ["5000", { kind: "closed", code: 5000, reason: "r" }, 1012, GONE],
    ["refused", { kind: "refused", status: 409 }, 1012, GONE],
    ["unreachable", { kind: "unreachable", error: "ECONNREFUSED" }, 1012, GONE],
  ];
  for (const [name, end, code, reason] of cases) {
    await t.step(name, () => {
      // Attached first, and attached after: the same mapping.
      const before = new PipeLink(() => {});
      const early = new Target();
      before.attach(early);
      before.onPipeEnd(end);
      const after = new PipeLink(() => {});
      after.onPipeEnd(end);
      const late = new Target();
      after.attach(late);
      assert.deepEqual(early.events, [{ end: code, reason }]);
      assert.deepEqual(late.events, [{ end: code, reason }]);
    });
  }
});

Deno.test("PipeLink settles with itself on open, or with how the pipe ended", async () => {
  const opened = new PipeLink(() => {});
  opened.onPipeOpen();
  assert.deepEqual(await opened.settled, { link: opened });
  const failed = new PipeLink(() => {});
  failed.onPipeEnd({ kind: "refused", status: 403 });
  assert.deepEqual(await failed.settled, {
    end: { kind: "refused", status: 403 },
  });
});

Deno.test("PipeLink calls released once, however often it is released", () => {
  const released = counter();
  const link = new PipeLink(released.released);
  assert.equal(released.count, 0);
  link.release();
  link.release();
  link.release();
  assert.equal(released.count, 1);
});

Deno.test("PipeLink.close without a pipe does nothing", () => {
  new PipeLink(() => {}).close(1000, "");
});

// openLink, over a real pipe

/** A loopback "owner" that upgrades every request and keeps its sockets. */
function owner(): {
  server: Deno.HttpServer<Deno.NetAddr>;
  socket: Promise<WebSocket>;
  frames: (ArrayBuffer | string)[];
  closed: Promise<{ code: number; reason: string }>;
} {
  const socket = Promise.withResolvers<WebSocket>();
  const closed = Promise.withResolvers<{ code: number; reason: string }>();
  const frames: (ArrayBuffer | string)[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => {
      if (request.headers.get("x-test") !== "signed") {
        return new Response("Forbidden\n", { status: 403 });
      }
      const upgraded = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
      const ws = upgraded.socket;
      ws.binaryType = "arraybuffer";
      ws.onopen = () => socket.resolve(ws);
      ws.onmessage = (event) => frames.push(event.data);
      ws.onclose = (event) =>
        closed.resolve({ code: event.code, reason: event.reason });
      return upgraded.response;
    },
  );
  // Getters: a deadline starts when a test waits, not for every owner (a
  // refusing owner never opens a socket, and its timers would outlive it).
  return {
    server,
    get socket() {
      return deadline(socket.promise, WAIT_TIMEOUT, "the owner's socket");
    },
    frames,
    get closed() {
      return deadline(closed.promise, WAIT_TIMEOUT, "the owner's close");
    },
  };
}

Deno.test("openLink relays both ways and passes the owner's close code on", async () => {
  const node = owner();
  await using _ = node.server;
  const released = counter();
  const opened = await deadline(
    openLink(
      `ws://127.0.0.1:${node.server.addr.port}/room`,
      { "x-test": "signed" },
      OPTIONS,
      released.released,
    ),
    WAIT_TIMEOUT,
    "the link to open",
  );
  assert.ok("link" in opened, JSON.stringify(opened));
  const { link } = opened;
  const ws = await node.socket;
  const target = new Target();
  link.attach(target);
  assert.equal(link.send(new Uint8Array([1, 2]).buffer), true);
  ws.send(new Uint8Array([3, 4]));
  await target.count(1);
  assert.deepEqual(target.events, [{ frame: new Uint8Array([3, 4]) }]);
  ws.close(4742, "heartbeat");
  await target.count(2);
  assert.deepEqual(target.events[1], { end: 4742, reason: "heartbeat" });
  // The pipe echoes the code of the owner's close, without its reason.
  assert.deepEqual(await node.closed, { code: 4742, reason: "" });
  assert.deepEqual(node.frames.map((f) => new Uint8Array(f as ArrayBuffer)), [
    new Uint8Array([1, 2]),
  ]);
  link.release();
  assert.equal(released.count, 1);
  await link.pipe!.finished;
});

Deno.test("openLink closes the owner's socket with the peer's code when the link is closed", async () => {
  const node = owner();
  await using _ = node.server;
  const opened = await deadline(
    openLink(
      `ws://127.0.0.1:${node.server.addr.port}/room`,
      { "x-test": "signed" },
      OPTIONS,
      () => {},
    ),
    WAIT_TIMEOUT,
    "the link to open",
  );
  assert.ok("link" in opened);
  await node.socket;
  const target = new Target();
  opened.link.attach(target);
  opened.link.close(4000, "the peer left");
  assert.deepEqual(await node.closed, { code: 4000, reason: "the peer left" });
  await opened.link.pipe!.finished;
  // The edge closed it: nothing is reported back.
  assert.deepEqual(target.events, []);
});

Deno.test("openLink reports an owner that refuses the upgrade", async () => {
  const node = owner();
  await using _ = node.server;
  const released = counter();
  const opened = await deadline(
    openLink(
      `ws://127.0.0.1:${node.server.addr.port}/room`,
      {},
      OPTIONS,
      released.released,
    ),
    WAIT_TIMEOUT,
    "the link to fail",
  );
  assert.deepEqual(opened, { end: { kind: "refused", status: 403 } });
  assert.equal(released.count, 0, "release is the caller's call");
});

Deno.test("openLink reports an owner that cannot be reached", async () => {
  const opened = await deadline(
    openLink(`ws://127.0.0.1:${freePort()}/room`, {}, OPTIONS, () => {}),
    WAIT_TIMEOUT,
    "the link to fail",
  );
  assert.ok("end" in opened);
  assert.equal(opened.end.kind, "unreachable");
});
