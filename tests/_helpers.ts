/**
 * Shared helpers for tests that talk to a real sigver server over real
 * sockets: {@linkcode startServer} runs one on a free loopback port,
 * {@linkcode TestPeer} is a small protocol client around a Deno `WebSocket`
 * and {@linkcode waitFor} polls a condition (for server-side state that no
 * message reports).
 *
 * ```ts ignore
 * await using server = startServer({ heartbeatInterval: 300 });
 * await using peer = await TestPeer.open(peerUrl(server, "/room"));
 * assert.equal(await peer.join(1), true);
 * ```
 *
 * Every wait has a timeout that fails the test with a clear message; the
 * timeouts are generous because tests share a small, busy machine, and no
 * test asserts how long something took.
 *
 * @module
 */

import { serve, type ServeOptions, type SigverServer } from "../handler.ts";
import type { HubStats } from "../lib/hub.ts";
import { type Content, decodeMessage, encodeMessage } from "../lib/wire.ts";
import type { Message } from "../lib/wire.ts";

/** The stats of a hub that holds nothing: what every leak check expects. */
export const EMPTY_STATS: HubStats = {
  peers: 0,
  groups: 0,
  members: 0,
  ids: 0,
  bindings: 0,
  scheduled: 0,
};

/** Milliseconds a wait may take before the test fails. */
export const WAIT_TIMEOUT = 10_000;

/** How a socket closed, as its `close` event told. */
export interface CloseInfo {
  /** The close code (1006 when the connection dropped or never opened). */
  code: number;
  /** The close reason. */
  reason: string;
  /** Whether the closing handshake completed. */
  wasClean: boolean;
}

/**
 * Runs a sigver server on `127.0.0.1` and a free port. Use it with
 * `await using`, so that it shuts down (closing every socket) at the end of
 * the test.
 *
 * @param options Server options; `hostname` and `port` default to loopback
 * and 0.
 * @returns The running server.
 */
export function startServer(options: ServeOptions = {}): SigverServer {
  return serve({ hostname: "127.0.0.1", port: 0, ...options });
}

/**
 * The `ws://` URL of a path (with its query) on a test server.
 *
 * @param server The server.
 * @param path The request target, starting with `/` (`/room?favored`).
 * @returns The URL.
 */
export function peerUrl(server: SigverServer, path: string): string {
  return `ws://127.0.0.1:${server.addr.port}${path}`;
}

/**
 * The `http://` URL of a path on a test server.
 *
 * @param server The server.
 * @param path The request target, starting with `/`.
 * @returns The URL.
 */
export function httpUrl(server: SigverServer, path: string): string {
  return `http://127.0.0.1:${server.addr.port}${path}`;
}

/**
 * Polls `condition` every 10 ms until it holds.
 *
 * @param condition What to wait for.
 * @param what Said in the error when it times out.
 * @param timeout Milliseconds before giving up.
 * @throws {Error} When the condition does not hold in time.
 */
export async function waitFor(
  condition: () => boolean,
  what = "a condition",
  timeout: number = WAIT_TIMEOUT,
): Promise<void> {
  const deadline = performance.now() + timeout;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${timeout} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Waits until the server holds no socket: every server-side `close` event
 * has fired. Await it before reading state that closes change.
 *
 * @param server The server.
 */
export function settled(server: SigverServer): Promise<void> {
  return waitFor(
    () => server.handler.connections === 0,
    "the server to release every socket",
  );
}

/** Options of {@linkcode TestPeer}. */
export interface TestPeerOptions {
  /**
   * Let {@linkcode TestPeer.next} return heartbeats too. Otherwise they are
   * only counted in {@linkcode TestPeer.heartbeats}, so that tests that are
   * not about heartbeats never see one.
   * @default {false}
   */
  keepHeartbeats?: boolean;
  /**
   * Milliseconds {@linkcode TestPeer.next} and {@linkcode TestPeer.open}
   * wait by default.
   * @default {WAIT_TIMEOUT}
   */
  timeout?: number;
  /** Handshake headers (for example `Origin`). */
  headers?: HeadersInit;
  /** HTTP client for the handshake (for example one trusting a test CA). */
  client?: Deno.HttpClient;
}

/** A `content` message to send; absent fields are zero. */
export type ContentInit = Partial<Omit<Content, "data">> & {
  /** The payload; a string is sent as UTF-8. */
  data?: Uint8Array | string;
};

/**
 * A protocol client over a real WebSocket (binary frames as `ArrayBuffer`).
 * It decodes every frame the server sends into a queue read by
 * {@linkcode TestPeer.next}; a frame that does not decode fails the next
 * read.
 */
export class TestPeer implements AsyncDisposable {
  /** The underlying socket. */
  readonly socket: WebSocket;
  /** Resolves when the socket opens; rejects if it closes first. */
  readonly opened: Promise<void>;
  /** Resolves with the `close` event, whoever closed the socket. */
  readonly closed: Promise<CloseInfo>;
  /** Heartbeats received so far (kept or not). */
  heartbeats = 0;
  /** Whether the `close` event has fired. */
  isClosed = false;

  #keepHeartbeats: boolean;
  #timeout: number;
  #queue: (Message | Error)[] = [];
  #waiter: (() => void) | undefined;
  #closeInfo: CloseInfo | undefined;

  /**
   * Opens a socket without waiting; see {@linkcode TestPeer.open}.
   *
   * @param url The `ws[s]://` URL.
   * @param options Heartbeat handling, timeout and handshake options.
   */
  constructor(url: string, options: TestPeerOptions = {}) {
    this.#keepHeartbeats = options.keepHeartbeats ?? false;
    this.#timeout = options.timeout ?? WAIT_TIMEOUT;
    this.socket = new WebSocket(url, {
      headers: options.headers,
      client: options.client,
    });
    this.socket.binaryType = "arraybuffer";
    const opened = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<CloseInfo>();
    this.opened = opened.promise;
    this.closed = closed.promise;
    // A socket that never opens is reported by `open()` and by `closed`.
    this.opened.catch(() => {});
    this.socket.onopen = () => opened.resolve();
    this.socket.onerror = () => {};
    this.socket.onmessage = (event) => this.#onMessage(event);
    this.socket.onclose = (event) => {
      this.isClosed = true;
      this.#closeInfo = {
        code: event.code,
        reason: event.reason,
        wasClean: event.wasClean,
      };
      opened.reject(
        new Error(`Socket closed before it opened (code ${event.code})`),
      );
      closed.resolve(this.#closeInfo);
      this.#wake();
    };
  }

  /**
   * Opens a socket and waits until it is open.
   *
   * @param url The `ws[s]://` URL.
   * @param options Heartbeat handling, timeout and handshake options.
   * @returns The open peer.
   * @throws {Error} When the socket closes before it opens, or times out.
   */
  static async open(
    url: string,
    options: TestPeerOptions = {},
  ): Promise<TestPeer> {
    const peer = new TestPeer(url, options);
    try {
      await _within(peer.opened, peer.#timeout, "the socket to open");
    } catch (error) {
      await peer.close();
      throw error;
    }
    return peer;
  }

  /**
   * Sends one protocol message as one binary frame.
   *
   * @param message The message.
   */
  send(message: Message): void {
    this.socket.send(encodeMessage(message));
  }

  /**
   * Sends a frame as it is: bytes as a binary frame, a string as a text one.
   *
   * @param frame The frame.
   */
  sendRaw(frame: Uint8Array | string): void {
    this.socket.send(frame);
  }

  /**
   * Sends a `content` message.
   *
   * @param content Its fields; absent ones are zero.
   */
  sendContent(content: ContentInit = {}): void {
    const data = typeof content.data === "string"
      ? new TextEncoder().encode(content.data)
      : content.data ?? new Uint8Array(0);
    this.send({
      type: "content",
      content: {
        senderId: content.senderId ?? 0,
        recipientId: content.recipientId ?? 0,
        lastData: content.lastData ?? false,
        data,
      },
    });
  }

  /**
   * Sends a heartbeat.
   *
   * @param value The heartbeat's value (the server accepts both).
   */
  sendHeartbeat(value = true): void {
    this.send({ type: "heartbeat", heartbeat: value });
  }

  /**
   * Asks to be a member (`connect`) and returns the `connected` reply.
   *
   * @param id The peer's group id.
   * @param members Group ids of the members it is connected to.
   * @returns The server's `connected` value.
   * @throws {Error} When the next message is not `connected`.
   */
  async join(id: number, members: number[] = []): Promise<boolean> {
    this.send({ type: "connect", connect: { id, members } });
    const reply = await this.next();
    if (reply.type !== "connected") {
      throw new Error(
        `Expected a connected reply, got ${JSON.stringify(reply)}`,
      );
    }
    return reply.connected;
  }

  /**
   * The next message from the server (heartbeats skipped unless kept).
   *
   * @param timeout Milliseconds to wait.
   * @returns The message.
   * @throws {Error} On timeout, on an undecodable frame, or when the socket
   * closes first.
   */
  async next(timeout: number = this.#timeout): Promise<Message> {
    const deadline = performance.now() + timeout;
    while (this.#queue.length === 0) {
      if (this.#closeInfo !== undefined) {
        const { code, reason } = this.#closeInfo;
        throw new Error(
          `Expected a message, but the socket closed (${code} ${reason})`,
        );
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(`Timed out after ${timeout} ms waiting for a message`);
      }
      const woken = new Promise<void>((resolve) => this.#waiter = resolve);
      await _within(woken, left, "a message").catch(() => {});
    }
    const item = this.#queue.shift()!;
    if (item instanceof Error) throw item;
    return item;
  }

  /**
   * The next message, which must be a `content`.
   *
   * @param timeout Milliseconds to wait.
   * @returns Its content, `data` as a string for easy comparison.
   */
  async nextContent(
    timeout?: number,
  ): Promise<Omit<Content, "data"> & { data: string }> {
    const message = await this.next(timeout);
    if (message.type !== "content") {
      throw new Error(`Expected content, got ${JSON.stringify(message)}`);
    }
    return { ...message.content, data: _text(message.content.data) };
  }

  /**
   * Waits until the server (or anyone) closes the socket.
   *
   * @param timeout Milliseconds to wait.
   * @returns How it closed.
   */
  waitClosed(timeout: number = this.#timeout): Promise<CloseInfo> {
    return _within(this.closed, timeout, "the socket to close");
  }

  /** Messages received and not read yet. */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * Closes the socket (if still open) and waits for its `close` event.
   *
   * @param code The close code.
   * @param reason The close reason.
   * @returns How it closed.
   */
  close(code = 1000, reason = ""): Promise<CloseInfo> {
    if (!this.isClosed) {
      try {
        this.socket.close(code, reason);
      } catch {
        // Already closing.
      }
    }
    return _within(this.closed, WAIT_TIMEOUT, "the socket to close");
  }

  /** Closes the socket and waits for its `close` event. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #onMessage(event: MessageEvent): void {
    if (typeof event.data === "string") {
      this.#queue.push(new Error(`Received a text frame: ${event.data}`));
    } else {
      try {
        const message = decodeMessage(new Uint8Array(event.data));
        if (message === undefined) {
          this.#queue.push(new Error("Received a message with no type"));
        } else {
          if (message.type === "heartbeat") this.heartbeats++;
          if (message.type !== "heartbeat" || this.#keepHeartbeats) {
            this.#queue.push(message);
          }
        }
      } catch (error) {
        this.#queue.push(error as Error);
      }
    }
    this.#wake();
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }
}

function _text(data: Uint8Array): string {
  return new TextDecoder().decode(data);
}

/** `promise`, or a rejection after `ms` milliseconds; leaves no timer. */
async function _within<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** One WebSocket frame as {@linkcode RawSocket} reads it. */
export interface RawFrame {
  /** The opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong). */
  opcode: number;
  /** The unmasked payload. */
  payload: Uint8Array;
}

/**
 * A WebSocket spoken by hand over TCP, for what a `WebSocket` cannot send:
 * odd request targets, missing headers, malformed frames. Open it with
 * {@linkcode RawSocket.upgrade}.
 */
export class RawSocket implements Disposable {
  /** The HTTP status of the handshake response. */
  readonly status: number;
  /** The response head (status line and headers). */
  readonly head: string;
  readonly #conn: Deno.TcpConn;
  #buf: Uint8Array;

  private constructor(
    conn: Deno.TcpConn,
    status: number,
    head: string,
    rest: Uint8Array,
  ) {
    this.#conn = conn;
    this.status = status;
    this.head = head;
    this.#buf = rest;
  }

  /**
   * Sends a WebSocket handshake with a request target as it is and reads
   * the response head.
   *
   * @param server The server (or anything with its `addr.port`).
   * @param target The request target (`/room`, `http://host?x`...).
   * @param headers More request headers, one `name: value` per entry.
   * @returns The socket; check {@linkcode RawSocket.status} (101: open).
   */
  static async upgrade(
    server: { readonly addr: { readonly port: number } },
    target: string,
    headers: string[] = [],
  ): Promise<RawSocket> {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    try {
      const request = [
        `GET ${target} HTTP/1.1`,
        `Host: 127.0.0.1:${server.addr.port}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        ...headers,
        "",
        "",
      ].join("\r\n");
      await _writeAll(conn, new TextEncoder().encode(request));
      let buf: Uint8Array = new Uint8Array(0);
      for (;;) {
        const end = _indexOfHeadEnd(buf);
        if (end !== -1) {
          const head = new TextDecoder().decode(buf.subarray(0, end));
          const status = Number(head.split(" ", 2)[1]);
          return new RawSocket(conn, status, head, buf.slice(end + 4));
        }
        const more = await _readSome(conn);
        if (more === null) throw new Error("Connection closed in handshake");
        buf = _concat(buf, more);
      }
    } catch (error) {
      conn.close();
      throw error;
    }
  }

  /**
   * Reads the next frame from the server (unmasked, as servers send).
   *
   * @returns The frame, or `null` when the connection ended.
   */
  async readFrame(): Promise<RawFrame | null> {
    for (;;) {
      const frame = this.#parse();
      if (frame !== undefined) return frame;
      const more = await _readSome(this.#conn);
      if (more === null) return null;
      this.#buf = _concat(this.#buf, more);
    }
  }

  /**
   * Sends one masked frame, as a client must.
   *
   * @param opcode The opcode.
   * @param payload The payload.
   * @param fin Whether this is the last fragment.
   */
  async sendFrame(
    opcode: number,
    payload: Uint8Array = new Uint8Array(0),
    fin = true,
  ): Promise<void> {
    const n = payload.length;
    const size = n < 126 ? 0 : n < 65536 ? 2 : 8;
    const out = new Uint8Array(2 + size + 4 + n);
    out[0] = (fin ? 0x80 : 0) | opcode;
    out[1] = 0x80 | (size === 0 ? n : size === 2 ? 126 : 127);
    const view = new DataView(out.buffer);
    if (size === 2) view.setUint16(2, n);
    if (size === 8) view.setBigUint64(2, BigInt(n));
    const mask = crypto.getRandomValues(new Uint8Array(4));
    out.set(mask, 2 + size);
    for (let i = 0; i < n; i++) {
      out[2 + size + 4 + i] = payload[i] ^ mask[i & 3];
    }
    await _writeAll(this.#conn, out);
  }

  /**
   * Sends bytes as they are: unmasked frames, reserved bits, false lengths.
   *
   * @param bytes The bytes.
   */
  async sendBytes(bytes: Uint8Array): Promise<void> {
    await _writeAll(this.#conn, bytes);
  }

  /** Closes the TCP connection (no closing handshake). */
  [Symbol.dispose](): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  #parse(): RawFrame | undefined {
    const b = this.#buf;
    if (b.length < 2) return undefined;
    let len = b[1] & 0x7f;
    let pos = 2;
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (len === 126) {
      if (b.length < 4) return undefined;
      len = view.getUint16(2);
      pos = 4;
    } else if (len === 127) {
      if (b.length < 10) return undefined;
      len = Number(view.getBigUint64(2));
      pos = 10;
    }
    if (b.length < pos + len) return undefined;
    this.#buf = b.slice(pos + len);
    return { opcode: b[0] & 0x0f, payload: b.slice(pos, pos + len) };
  }
}

/**
 * The close code and reason of a close frame's payload.
 *
 * @param payload The payload of a frame with opcode 8.
 * @returns Its code (1005 when absent) and reason.
 */
export function parseClose(payload: Uint8Array): {
  code: number;
  reason: string;
} {
  if (payload.length < 2) return { code: 1005, reason: "" };
  return {
    code: (payload[0] << 8) | payload[1],
    reason: new TextDecoder().decode(payload.subarray(2)),
  };
}

async function _writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) {
    off += await conn.write(bytes.subarray(off));
  }
}

async function _readSome(conn: Deno.Conn): Promise<Uint8Array | null> {
  const chunk = new Uint8Array(16384);
  let n: number | null;
  try {
    n = await conn.read(chunk);
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionReset) return null;
    throw error;
  }
  return n === null ? null : chunk.subarray(0, n);
}

function _concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function _indexOfHeadEnd(buf: Uint8Array): number {
  for (let i = 0; i + 3 < buf.length; i++) {
    if (
      buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 &&
      buf[i + 3] === 10
    ) {
      return i;
    }
  }
  return -1;
}
