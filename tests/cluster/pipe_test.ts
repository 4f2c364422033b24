// Tests of cluster/pipe.ts, the edge-to-owner WebSocket spoken by hand
// over `Deno.connect`: against a real sigver server in this process, then
// against a hand-made owner on a raw TCP socket, which answers the upgrade
// as each test needs and reads and writes frames byte by byte.

import assert from "node:assert/strict";
import {
  Pipe,
  type PipeEnd,
  type PipeEvents,
  type PipeOptions,
} from "../../cluster/pipe.ts";
import { PipeWatch } from "../../cluster/pipe_watch.ts";
import { ManualClock } from "../../lib/clock.ts";
import { deadline } from "../../lib/deadline.ts";
import {
  applyMask,
  closePayload,
  encodeFrame,
  OP_BINARY,
  OP_CLOSE,
  OP_CONT,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  parseClose,
} from "../../lib/ws_frame.ts";
import {
  headEnd,
  parseResponseHead,
  websocketAccept,
} from "../../lib/ws_handshake.ts";
import {
  decodeMessage,
  encodeMessage,
  type Message,
} from "../../lib/netflux/wire.ts";
import {
  bindTo,
  driven,
  peerUrl,
  settled,
  startServer,
  TestPeer,
  WAIT_TIMEOUT,
  waitFor,
} from "../_helpers.ts";

const OPTIONS = {
  connectTimeout: WAIT_TIMEOUT,
  maxBufferedAmount: 1 << 20,
  maxQueued: 16,
};

/** `n` bytes that differ from their neighbours, so that a shift shows. */
function pattern(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + 3) & 0xff;
  return out;
}

/** The bytes of a frame the pipe received, or a text. */
function bytesOf(frame: ArrayBuffer | string): Uint8Array {
  assert.ok(frame instanceof ArrayBuffer, "a binary frame");
  return new Uint8Array(frame);
}

/**
 * A pipe and what it reported, with waits that fail the test after
 * `WAIT_TIMEOUT`.
 */
class PipeProbe implements PipeEvents, AsyncDisposable {
  readonly pipe: Pipe;
  readonly frames: (ArrayBuffer | string)[] = [];
  opens = 0;
  ends: PipeEnd[] = [];
  readonly #opened = Promise.withResolvers<void>();
  readonly #ended = Promise.withResolvers<PipeEnd>();
  #wake: (() => void) | undefined;

  constructor(
    url: string,
    headers: Record<string, string> = {},
    options: Partial<PipeOptions> = {},
  ) {
    this.pipe = new Pipe(url, headers, this, { ...OPTIONS, ...options });
  }

  onPipeOpen(): void {
    this.opens++;
    this.#opened.resolve();
  }

  onPipeFrame(data: Uint8Array | string): void {
    // The pipe lends a view of its read buffer: keep a copy.
    this.frames.push(typeof data === "string" ? data : data.slice().buffer);
    this.#wake?.();
  }

  onPipeEnd(end: PipeEnd): void {
    this.ends.push(end);
    this.#ended.resolve(end);
    this.#wake?.();
  }

  /** Waits until the pipe opened; fails if it ended first. */
  async opened(): Promise<void> {
    const first = await deadline(
      Promise.race([this.#opened.promise, this.#ended.promise]),
      WAIT_TIMEOUT,
      "the pipe to open",
    );
    assert.equal(first, undefined, `the pipe ended: ${JSON.stringify(first)}`);
  }

  /** Waits until the pipe reported its end. */
  ended(): Promise<PipeEnd> {
    return deadline(this.#ended.promise, WAIT_TIMEOUT, "the pipe to end");
  }

  /** Waits for the next frame from the owner. */
  async next(): Promise<ArrayBuffer | string> {
    while (this.frames.length === 0) {
      if (this.ends.length > 0) {
        throw new Error(`The pipe ended: ${JSON.stringify(this.ends[0])}`);
      }
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#wake = resolve;
      await deadline(promise, WAIT_TIMEOUT, "a frame from the owner");
    }
    return this.frames.shift()!;
  }

  /** Waits until the pipe released its connection and every op on it. */
  finished(): Promise<void> {
    return deadline(this.pipe.finished, WAIT_TIMEOUT, "the pipe to finish");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.pipe.close(1000, "");
    await this.finished();
  }
}

/** A pipe that speaks sigver's protocol, as an edge's peer would. */
class PipePeer extends PipeProbe {
  send(message: Message): void {
    assert.ok(this.pipe.send(encodeMessage(message).slice().buffer));
  }

  async join(id: number, members: number[] = []): Promise<boolean> {
    this.send({ type: "connect", connect: { id, members } });
    const reply = await this.message();
    assert.equal(reply.type, "connected");
    return reply.type === "connected" && reply.connected;
  }

  sendContent(content: { data: string; recipientId?: number }): void {
    this.send({
      type: "content",
      content: {
        senderId: 0,
        recipientId: content.recipientId ?? 0,
        lastData: false,
        data: new TextEncoder().encode(content.data),
      },
    });
  }

  async nextContent(): Promise<
    { senderId: number; recipientId: number; data: string }
  > {
    const message = await this.message();
    assert.equal(message.type, "content");
    if (message.type !== "content") throw new Error("not reached");
    const { senderId, recipientId, data } = message.content;
    return { senderId, recipientId, data: new TextDecoder().decode(data) };
  }

  /** The next message that is not a heartbeat. */
  async message(): Promise<Message> {
    for (;;) {
      const message = decodeMessage(bytesOf(await this.next()));
      assert.ok(message !== undefined);
      if (message.type !== "heartbeat") return message;
    }
  }
}

// Against a real sigver server

Deno.test("a pipe relays a joiner's offer to a member and the answer back through a sigver server, 6 KB each way", async () => {
  await using server = startServer();
  await using member = await TestPeer.open(peerUrl(server, "/pipe-relay"));
  assert.equal(await member.join(1), true);
  await using joiner = new PipePeer(peerUrl(server, "/pipe-relay"));
  await joiner.opened();
  const offer = "o".repeat(6000);
  const s = await bindTo(joiner, member, 2, offer);
  const answer = "a".repeat(6000);
  member.sendContent({ recipientId: s, data: answer });
  assert.deepEqual(await joiner.nextContent(), {
    senderId: 0,
    recipientId: s,
    data: answer,
  });
});

Deno.test("a pipe reports a sigver server's close as closed with its code and reason", async () => {
  await using server = startServer();
  await using probe = new PipeProbe(peerUrl(server, "/pipe-text"));
  await probe.opened();
  // A text frame is a protocol error: the server closes with 4743.
  assert.equal(probe.pipe.send("not binary"), true);
  const end = await driven(server, probe.ended(), "the server's close");
  assert.equal(end.kind, "closed");
  assert.equal(end.kind === "closed" && end.code, 4743);
  assert.ok(end.kind === "closed" && end.reason.length > 0);
  await probe.finished();
  await settled(server);
});

Deno.test("a pipe closed by the edge closes its socket on a sigver server, and its member hears the joiner left", async () => {
  await using server = startServer();
  await using member = await TestPeer.open(peerUrl(server, "/pipe-leave"));
  assert.equal(await member.join(1), true);
  const joiner = new PipePeer(peerUrl(server, "/pipe-leave"));
  await joiner.opened();
  const s = await bindTo(joiner, member, 2);
  joiner.pipe.close(4000, "the peer left");
  await joiner.finished();
  assert.deepEqual(joiner.ends, [], "nothing is reported after close");
  const gone = await member.nextContent();
  assert.deepEqual([gone.senderId, gone.data], [s, ""]);
  await waitFor(() => server.handler.connections === 1, "the pipe's socket");
});

Deno.test("a pipe refused by a sigver server ends as refused with the status", async (t) => {
  await t.step("an origin that is not allowed: 403", async () => {
    await using server = startServer({ allowOrigins: ["https://a.example"] });
    const probe = new PipeProbe(peerUrl(server, "/pipe-origin"), {
      origin: "https://b.example",
    });
    assert.deepEqual(await probe.ended(), { kind: "refused", status: 403 });
    await probe.finished();
    assert.equal(probe.opens, 0);
  });
  await t.step("a full server: 503", async () => {
    await using server = startServer({ maxPeers: 1 });
    await using _peer = await TestPeer.open(peerUrl(server, "/pipe-full"));
    const probe = new PipeProbe(peerUrl(server, "/pipe-full"));
    assert.deepEqual(await probe.ended(), { kind: "refused", status: 503 });
    await probe.finished();
  });
});

// Against a hand-made owner

/** A frame as the hand-made owner reads it. */
interface ClientFrame {
  fin: boolean;
  opcode: number;
  mask: Uint8Array | undefined;
  payload: Uint8Array;
}

/** One connection to the hand-made owner. */
class OwnerConn {
  readonly conn: Deno.TcpConn;
  #buf = new Uint8Array(0);
  #closed = false;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    // Its small writes must not wait for the pipe's delayed ACKs either.
    conn.setNoDelay(true);
  }

  /** Reads until `n` bytes are buffered; false at the end of the stream. */
  async #fill(n: number): Promise<boolean> {
    const chunk = new Uint8Array(65536);
    while (this.#buf.length < n) {
      const got = await this.conn.read(chunk);
      if (got === null) return false;
      const joined = new Uint8Array(this.#buf.length + got);
      joined.set(this.#buf);
      joined.set(chunk.subarray(0, got), this.#buf.length);
      this.#buf = joined;
    }
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  /** Reads the upgrade request. */
  async request(): Promise<{ line: string; headers: Headers }> {
    for (let n = 1;; n = this.#buf.length + 1) {
      assert.ok(await this.#fill(n), "the request");
      const end = headEnd(this.#buf);
      if (end === -1) continue;
      const text = new TextDecoder().decode(this.#take(end));
      const [line, ...rest] = text.split("\r\n");
      // The response parser reads header lines the same way.
      const headers = parseResponseHead(`HTTP/1.1 200\r\n${rest.join("\r\n")}`)
        .headers;
      return { line, headers };
    }
  }

  /** Reads the request and answers 101 with the right accept, or `head`. */
  async upgrade(head?: string): Promise<Headers> {
    const { headers } = await this.request();
    const accept = await websocketAccept(headers.get("sec-websocket-key")!);
    await this.write(
      head ??
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
          `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    return headers;
  }

  /** Reads one frame from the pipe; `undefined` at the end of the stream. */
  async frame(): Promise<ClientFrame | undefined> {
    if (!await this.#fill(2)) return undefined;
    const b1 = this.#buf[1];
    let len = b1 & 0x7f;
    let head = 2;
    if (len === 126) {
      assert.ok(await this.#fill(4));
      len = (this.#buf[2] << 8) | this.#buf[3];
      head = 4;
    } else if (len === 127) {
      assert.ok(await this.#fill(10));
      len = Number(new DataView(this.#buf.buffer, this.#buf.byteOffset)
        .getBigUint64(2));
      head = 10;
    }
    const masked = (b1 & 0x80) !== 0;
    const size = head + (masked ? 4 : 0) + len;
    assert.ok(await this.#fill(size), "a whole frame");
    const bytes = this.#take(size);
    const mask = masked ? bytes.slice(head, head + 4) : undefined;
    const payload = bytes.slice(size - len);
    if (mask !== undefined) applyMask(payload, mask);
    return {
      fin: (bytes[0] & 0x80) !== 0,
      opcode: bytes[0] & 0xf,
      mask,
      payload,
    };
  }

  /** Writes bytes (text as UTF-8). */
  async write(data: Uint8Array | string): Promise<void> {
    let bytes = typeof data === "string"
      ? new TextEncoder().encode(data)
      : data;
    while (bytes.length > 0) {
      bytes = bytes.subarray(await this.conn.write(bytes));
    }
  }

  /** Writes a server frame: unmasked. */
  send(opcode: number, payload: Uint8Array, fin = true): Promise<void> {
    return this.write(encodeFrame(opcode, payload, { mask: false, fin }));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
  }
}

/** A TCP server on a free loopback port that plays the owner by hand. */
class HandOwner implements AsyncDisposable {
  readonly #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #conns: OwnerConn[] = [];

  /** The `ws://` URL of `path` on it. */
  url(path: string): string {
    return `ws://127.0.0.1:${this.#listener.addr.port}${path}`;
  }

  /** The next connection. */
  async accept(): Promise<OwnerConn> {
    const conn = new OwnerConn(
      await deadline(this.#listener.accept(), WAIT_TIMEOUT, "a connection"),
    );
    this.#conns.push(conn);
    return conn;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const conn of this.#conns) conn.close();
    this.#listener.close();
    await Promise.resolve();
  }
}

/** A pipe opened to a hand-made owner that answered 101. */
async function opened(
  owner: HandOwner,
  options: Partial<PipeOptions> = {},
): Promise<{ probe: PipeProbe; conn: OwnerConn }> {
  const probe = new PipeProbe(owner.url("/room"), {}, options);
  const conn = await owner.accept();
  await conn.upgrade();
  await probe.opened();
  return { probe, conn };
}

Deno.test("a pipe sends the upgrade with the peer's path, its headers and a fresh key, then the frames queued meanwhile, in order", async () => {
  await using owner = new HandOwner();
  const probe = new PipeProbe(owner.url("/a%20b?favored"), {
    "x-sigver-node": "edge-1",
    "x-sigver-key": "a2V5",
  });
  assert.equal(probe.pipe.send(new Uint8Array([1]).buffer), true);
  assert.equal(probe.pipe.send("two"), true);
  assert.equal(probe.pipe.send(pattern(70000).buffer), true);
  assert.equal(probe.pipe.open, false);
  const conn = await owner.accept();
  const { line, headers } = await conn.request();
  assert.equal(line, "GET /a%20b?favored HTTP/1.1");
  assert.equal(headers.get("host"), owner.url("").slice("ws://".length));
  assert.equal(headers.get("upgrade"), "websocket");
  assert.equal(headers.get("sec-websocket-version"), "13");
  assert.equal(headers.get("x-sigver-node"), "edge-1");
  assert.equal(headers.get("x-sigver-key"), "a2V5");
  const key = headers.get("sec-websocket-key")!;
  assert.equal(atob(key).length, 16);
  await conn.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
      `Connection: Upgrade\r\nSec-WebSocket-Accept: ${await websocketAccept(
        key,
      )}\r\n\r\n`,
  );
  await probe.opened();
  assert.equal(probe.pipe.open, true);
  const frames = [await conn.frame(), await conn.frame(), await conn.frame()];
  assert.deepEqual(frames.map((f) => [f?.fin, f?.opcode]), [
    [true, OP_BINARY],
    [true, OP_TEXT],
    [true, OP_BINARY],
  ]);
  assert.deepEqual(frames[0]!.payload, new Uint8Array([1]));
  assert.equal(new TextDecoder().decode(frames[1]!.payload), "two");
  assert.deepEqual(frames[2]!.payload, pattern(70000));
  // Every client frame is masked, each with a key of its own.
  const keys = frames.map((f) => f!.mask!.join());
  assert.equal(new Set(keys).size, 3);
  assert.equal(probe.opens, 1);
  probe.pipe.close(1000, "");
  const close = await conn.frame();
  assert.equal(close?.opcode, OP_CLOSE);
  conn.close();
  await probe.finished();
});

Deno.test("a pipe answered with an HTTP status instead of 101 ends as refused with that status", async (t) => {
  for (const status of [403, 409, 503, 200]) {
    await t.step(`${status}`, async () => {
      await using owner = new HandOwner();
      const probe = new PipeProbe(owner.url("/room"));
      const conn = await owner.accept();
      await conn.upgrade(`HTTP/1.1 ${status} No\r\nContent-Length: 0\r\n\r\n`);
      assert.deepEqual(await probe.ended(), { kind: "refused", status });
      await probe.finished();
      assert.equal(probe.opens, 0);
    });
  }
});

Deno.test("a pipe whose 101 is not a valid WebSocket answer ends as unreachable", async (t) => {
  const cases = [
    [
      "a wrong accept",
      "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
    ],
    ["no Upgrade header", "Connection: Upgrade\r\n"],
    ["a malformed status line", undefined],
  ] as const;
  for (const [name, headers] of cases) {
    await t.step(name, async () => {
      await using owner = new HandOwner();
      const probe = new PipeProbe(owner.url("/room"));
      const conn = await owner.accept();
      await conn.upgrade(
        headers === undefined
          ? "HTTP/1.1 1O1 Hi\r\n\r\n"
          : `HTTP/1.1 101 Switching Protocols\r\n${headers}\r\n`,
      );
      assert.equal((await probe.ended()).kind, "unreachable");
      await probe.finished();
      assert.equal(probe.opens, 0);
    });
  }
});

Deno.test("a pipe ends as unreachable when nothing listens, or the owner drops the connection before or after the upgrade", async (t) => {
  await t.step("nothing listens", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    const probe = new PipeProbe(`ws://127.0.0.1:${port}/room`);
    assert.equal((await probe.ended()).kind, "unreachable");
    await probe.finished();
  });
  await t.step("dropped before the answer", async () => {
    await using owner = new HandOwner();
    const probe = new PipeProbe(owner.url("/room"));
    const conn = await owner.accept();
    await conn.request();
    conn.close();
    assert.equal((await probe.ended()).kind, "unreachable");
    await probe.finished();
  });
  await t.step("dropped once open", async () => {
    await using owner = new HandOwner();
    const { probe, conn } = await opened(owner);
    await conn.send(OP_BINARY, new Uint8Array([5]));
    assert.deepEqual(bytesOf(await probe.next()), new Uint8Array([5]));
    conn.close();
    assert.deepEqual(await probe.ended(), {
      kind: "unreachable",
      error: "the connection dropped",
    });
    await probe.finished();
    assert.equal(probe.pipe.open, false);
    assert.equal(probe.pipe.send(new Uint8Array([1]).buffer), true);
  });
});

Deno.test("a pipe that does not open within the connect timeout ends as unreachable and lets the connection go", async () => {
  await using owner = new HandOwner();
  const probe = new PipeProbe(owner.url("/room"), {}, { connectTimeout: 50 });
  const conn = await owner.accept();
  await conn.request();
  // The owner never answers.
  assert.deepEqual(await probe.ended(), {
    kind: "unreachable",
    error: "connect timeout",
  });
  await probe.finished();
  assert.equal(await conn.frame(), undefined, "the pipe closed its socket");
});

Deno.test("a pipe closed while it connects reports nothing and lets the connection go", async () => {
  await using owner = new HandOwner();
  const probe = new PipeProbe(owner.url("/room"));
  assert.equal(probe.pipe.send(new Uint8Array([1]).buffer), true);
  const conn = await owner.accept();
  await conn.request();
  probe.pipe.close(1000, "");
  await probe.finished();
  assert.deepEqual(probe.ends, []);
  assert.equal(probe.opens, 0);
  assert.equal(await conn.frame(), undefined, "the pipe closed its socket");
});

Deno.test("a pipe answers a ping with a pong of the same payload", async () => {
  await using owner = new HandOwner();
  const { probe, conn } = await opened(owner);
  await using _ = probe;
  await conn.send(OP_PING, new Uint8Array([1, 2, 3]));
  const pong = await conn.frame();
  assert.equal(pong?.opcode, OP_PONG);
  assert.ok(pong?.mask !== undefined);
  assert.deepEqual(pong?.payload, new Uint8Array([1, 2, 3]));
  // A pong from the owner is nothing to report.
  await conn.send(OP_PONG, new Uint8Array([9]));
  await conn.send(OP_BINARY, new Uint8Array([4]));
  assert.deepEqual(bytesOf(await probe.next()), new Uint8Array([4]));
  assert.deepEqual(probe.frames, []);
  probe.pipe.close(1000, "");
  assert.equal((await conn.frame())?.opcode, OP_CLOSE);
  conn.close();
});

Deno.test("a pipe mirrors the owner's close: it reports the code and reason, echoes the code, and waits for the owner to close the connection", async () => {
  await using owner = new HandOwner();
  const { probe, conn } = await opened(owner);
  await conn.send(OP_CLOSE, closePayload(4001, "Bye ü"));
  assert.deepEqual(await probe.ended(), {
    kind: "closed",
    code: 4001,
    reason: "Bye ü",
  });
  const echo = await conn.frame();
  assert.equal(echo?.opcode, OP_CLOSE);
  assert.ok(echo?.mask !== undefined);
  assert.deepEqual(parseClose(echo!.payload), { code: 4001, reason: "" });
  // Nothing goes to the owner after the close frame.
  assert.equal(probe.pipe.send(new Uint8Array([1]).buffer), true);
  conn.close();
  await probe.finished();
  assert.equal(probe.ends.length, 1);
});

Deno.test("a pipe closed by the edge sends its code and a reason cut to fit, and finishes when the owner answers and closes", async () => {
  await using owner = new HandOwner();
  const { probe, conn } = await opened(owner);
  probe.pipe.close(4000, "é".repeat(100));
  const close = await conn.frame();
  assert.equal(close?.opcode, OP_CLOSE);
  const { code, reason } = parseClose(close!.payload);
  assert.equal(code, 4000);
  assert.equal(reason, "é".repeat(61), "123 bytes at most, whole characters");
  // Frames that still come are not reported.
  await conn.send(OP_BINARY, new Uint8Array([1]));
  await conn.send(OP_CLOSE, closePayload(4000));
  conn.close();
  await probe.finished();
  assert.deepEqual(probe.frames, []);
  assert.deepEqual(probe.ends, []);
});

Deno.test("a pipe joins a fragmented message around control frames, and delivers messages in order however the bytes are cut", async () => {
  await using owner = new HandOwner();
  const { probe, conn } = await opened(owner);
  await using _ = probe;
  const big = pattern(100_000);
  const stream = new Uint8Array([
    ...encodeFrame(OP_BINARY, new Uint8Array([1]), { mask: false }),
    ...encodeFrame(OP_BINARY, big.subarray(0, 40_000), {
      mask: false,
      fin: false,
    }),
    ...encodeFrame(OP_PING, new Uint8Array([7]), { mask: false }),
    ...encodeFrame(OP_CONT, big.subarray(40_000, 40_001), {
      mask: false,
      fin: false,
    }),
    ...encodeFrame(OP_CONT, big.subarray(40_001), { mask: false }),
    ...encodeFrame(OP_TEXT, new TextEncoder().encode("ü"), { mask: false }),
    ...encodeFrame(OP_BINARY, new Uint8Array([3]), { mask: false }),
  ]);
  // Cut in odd places: mid-head, mid-payload.
  for (const [from, to] of [[0, 1], [1, 4], [4, 9000], [9000, stream.length]]) {
    await conn.write(stream.slice(from, to));
  }
  assert.deepEqual(bytesOf(await probe.next()), new Uint8Array([1]));
  assert.deepEqual(bytesOf(await probe.next()), big);
  assert.equal(await probe.next(), "ü");
  assert.deepEqual(bytesOf(await probe.next()), new Uint8Array([3]));
  const pong = await conn.frame();
  assert.deepEqual([pong?.opcode, pong?.payload], [
    OP_PONG,
    new Uint8Array([7]),
  ]);
  probe.pipe.close(1000, "");
  assert.equal((await conn.frame())?.opcode, OP_CLOSE);
  conn.close();
});

Deno.test("a pipe ends as unreachable when the owner breaks the framing rules", async (t) => {
  const cases: [string, Uint8Array][] = [
    // Only the head: a 64-bit length of 16 MiB + 1.
    [
      "a frame over 16 MiB",
      new Uint8Array([0x82, 127, 0, 0, 0, 0, 1, 0, 0, 1]),
    ],
    ["a masked frame", encodeFrame(OP_BINARY, new Uint8Array([1]))],
    [
      "reserved bits",
      encodeFrame(OP_BINARY, new Uint8Array([1]), { mask: false, rsv: 4 }),
    ],
    ["an unknown opcode", encodeFrame(3, new Uint8Array([1]), { mask: false })],
    [
      "a text that is not UTF-8",
      encodeFrame(OP_TEXT, new Uint8Array([0xc3, 0x28]), { mask: false }),
    ],
    [
      "a close frame of 1 byte",
      encodeFrame(OP_CLOSE, new Uint8Array([3]), { mask: false }),
    ],
  ];
  for (const [name, bytes] of cases) {
    await t.step(name, async () => {
      await using owner = new HandOwner();
      const { probe, conn } = await opened(owner);
      await conn.write(bytes);
      assert.equal((await probe.ended()).kind, "unreachable");
      await probe.finished();
      assert.deepEqual(probe.frames, []);
      // The pipe dropped the connection.
      for (
        let f = await conn.frame();
        f !== undefined;
        f = await conn.frame()
      ) {
        assert.notEqual(f.opcode, OP_BINARY);
      }
    });
  }
});

Deno.test("a pipe's send returns false once more than maxBufferedAmount bytes wait for an owner that does not read, and true again once it reads", async () => {
  await using owner = new HandOwner();
  const { probe, conn } = await opened(owner, { maxBufferedAmount: 1 << 18 });
  const frame = pattern(1 << 16).buffer;
  let sent = 0;
  // The kernel's buffers take some MiB before a write waits; let each
  // write run before the next send.
  while (probe.pipe.send(frame)) {
    sent++;
    assert.ok(sent < 4096, "the owner's backlog is never seen");
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  assert.ok(sent >= 1);
  // The owner reads: what waited is written, and sends go through again.
  let read = 0;
  const reading = (async () => {
    for (let f = await conn.frame(); f !== undefined; f = await conn.frame()) {
      if (f.opcode === OP_BINARY) read++;
      if (f.opcode === OP_CLOSE) return;
    }
  })();
  await waitFor(() => read === sent, "the owner to read what was sent");
  assert.equal(probe.pipe.send(frame), true);
  probe.pipe.close(1000, "");
  await reading;
  assert.equal(read, sent + 1);
  conn.close();
  await probe.finished();
  assert.deepEqual(probe.ends, []);
});

Deno.test("a watched pipe pings an owner silent for a quarter of the timeout, lives on while it answers, and ends as unreachable once silent for the whole timeout", async () => {
  await using owner = new HandOwner();
  const clock = new ManualClock();
  const watch = new PipeWatch(clock, 4000);
  const { probe, conn } = await opened(owner, { watch });
  clock.advance(1000);
  const ping = await conn.frame();
  assert.equal(ping?.opcode, OP_PING);
  // The owner answers, then sends a frame: once the frame is read, so is
  // the pong.
  await conn.send(OP_PONG, ping!.payload);
  await conn.send(OP_BINARY, new Uint8Array([1]));
  assert.deepEqual(bytesOf(await probe.next()), new Uint8Array([1]));
  // Heard at 1000: silent but alive until 5000, pinged meanwhile.
  clock.advance(3999);
  assert.deepEqual(probe.ends, []);
  for (let i = 0; i < 3; i++) {
    assert.equal((await conn.frame())?.opcode, OP_PING);
  }
  clock.advance(1);
  assert.deepEqual(await probe.ended(), {
    kind: "unreachable",
    error: "the owner sent nothing for 4000 ms",
  });
  await probe.finished();
  // The connection is let go and the watch stops ticking.
  assert.equal(await conn.frame(), undefined);
  assert.equal(clock.ticking, false);
  conn.close();
});
