/**
 * A minimal WebSocket client for load generation: RFC 6455 over a raw TCP
 * socket, so that it can pick its source address (`node:net` with
 * `localAddress`; Deno's `WebSocket` and `Deno.connect` cannot), parse many
 * frames out of one read, and send prebuilt frames without copying.
 *
 * Client frames are masked with the all-zero key: legal (the key is only
 * meant to be unpredictable to proxies), and it spares the load generator an
 * XOR pass per frame. Servers unmask the same way whatever the key.
 *
 * @module
 */

import net from "node:net";

/** Opcodes of RFC 6455. */
export const OP_CONT = 0x0;
/** Text frame. */
export const OP_TEXT = 0x1;
/** Binary frame. */
export const OP_BINARY = 0x2;
/** Close frame. */
export const OP_CLOSE = 0x8;
/** Ping frame. */
export const OP_PING = 0x9;
/** Pong frame. */
export const OP_PONG = 0xa;

/**
 * Builds one client frame (FIN set, masked with the zero key).
 *
 * @param opcode The frame's opcode.
 * @param payload The payload, copied into the frame.
 * @returns The frame's bytes.
 */
export function clientFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(head + 4 + n);
  out[0] = 0x80 | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out[2] = n >>> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 0x80 | 127;
    // Frames over 4 GiB never happen here: the high word stays 0.
    out[6] = n >>> 24;
    out[7] = (n >>> 16) & 0xff;
    out[8] = (n >>> 8) & 0xff;
    out[9] = n & 0xff;
  }
  // Mask key: 4 zero bytes at out[head..head+4), already zero.
  out.set(payload, head + 4);
  return out;
}

/**
 * The payload of a close frame: a 2-byte code and a UTF-8 reason.
 *
 * @param code The close code.
 * @param reason The reason.
 * @returns The payload.
 */
export function closePayload(code: number, reason = ""): Uint8Array {
  const r = new TextEncoder().encode(reason);
  const out = new Uint8Array(2 + r.length);
  out[0] = code >>> 8;
  out[1] = code & 0xff;
  out.set(r, 2);
  return out;
}

/** Receives the frames a {@linkcode FrameParser} finds. */
export interface FrameSink {
  /**
   * One complete frame. `payload` is a view that is only valid during the
   * call: copy it to keep it.
   */
  frame(opcode: number, payload: Uint8Array): void;
  /** The stream broke the framing rules; no more frames will come. */
  error(message: string): void;
}

/**
 * Splits a server-to-client byte stream into frames. Frames wholly inside one
 * chunk are passed on as views of it; only a frame cut by a chunk boundary is
 * copied. Fragmented messages are reassembled.
 */
export class FrameParser {
  #sink: FrameSink;
  #pending: Uint8Array = new Uint8Array(0);
  #pendingLen = 0;
  #fragments: Uint8Array[] | undefined;
  #fragmentOp = 0;
  #maxFrame: number;
  #failed = false;

  /**
   * @param sink Where frames go.
   * @param maxFrame The largest frame accepted, in bytes.
   */
  constructor(sink: FrameSink, maxFrame = 1 << 24) {
    this.#sink = sink;
    this.#maxFrame = maxFrame;
  }

  /**
   * Feeds bytes as they arrive. `chunk` may be reused by the caller after the
   * call returns.
   *
   * @param chunk The bytes read.
   */
  feed(chunk: Uint8Array): void {
    if (this.#failed) return;
    let buf = chunk;
    const fromPending = this.#pendingLen > 0;
    if (fromPending) {
      const need = this.#pendingLen + chunk.length;
      if (this.#pending.length < need) {
        const grown = new Uint8Array(Math.max(need, this.#pending.length * 2));
        grown.set(this.#pending.subarray(0, this.#pendingLen));
        this.#pending = grown;
      }
      this.#pending.set(chunk, this.#pendingLen);
      this.#pendingLen = need;
      buf = this.#pending.subarray(0, need);
    }
    let pos = 0;
    const end = buf.length;
    while (end - pos >= 2) {
      const b0 = buf[pos];
      const b1 = buf[pos + 1];
      if ((b0 & 0x70) !== 0) return this.#fail("reserved bits set");
      if ((b1 & 0x80) !== 0) return this.#fail("server frame is masked");
      let len = b1 & 0x7f;
      let head = 2;
      if (len === 126) {
        if (end - pos < 4) break;
        len = (buf[pos + 2] << 8) | buf[pos + 3];
        head = 4;
      } else if (len === 127) {
        if (end - pos < 10) break;
        if (buf[pos + 2] | buf[pos + 3] | buf[pos + 4] | buf[pos + 5]) {
          return this.#fail("frame over 4 GiB");
        }
        len = ((buf[pos + 6] << 24) >>> 0) + (buf[pos + 7] << 16) +
          (buf[pos + 8] << 8) + buf[pos + 9];
        head = 10;
      }
      if (len > this.#maxFrame) return this.#fail(`frame of ${len} bytes`);
      if (end - pos < head + len) break;
      const payload = buf.subarray(pos + head, pos + head + len);
      pos += head + len;
      if (!this.#deliver(b0 & 0x80, b0 & 0x0f, payload)) return;
    }
    const left = end - pos;
    if (left === 0) this.#pendingLen = 0;
    else if (fromPending) {
      this.#pending.copyWithin(0, pos, end);
      this.#pendingLen = left;
    } else {
      if (this.#pending.length < left) {
        this.#pending = new Uint8Array(Math.max(left, 1024));
      }
      this.#pending.set(buf.subarray(pos, end));
      this.#pendingLen = left;
    }
  }

  #deliver(fin: number, opcode: number, payload: Uint8Array): boolean {
    if (opcode >= 0x8) {
      if (!fin || payload.length > 125) {
        this.#fail("bad control frame");
        return false;
      }
      this.#sink.frame(opcode, payload);
      return !this.#failed;
    }
    if (opcode === OP_CONT) {
      if (this.#fragments === undefined) {
        this.#fail("continuation without a start");
        return false;
      }
      this.#fragments.push(payload.slice());
      if (!fin) return true;
      const parts = this.#fragments;
      this.#fragments = undefined;
      let n = 0;
      for (const p of parts) n += p.length;
      const whole = new Uint8Array(n);
      n = 0;
      for (const p of parts) {
        whole.set(p, n);
        n += p.length;
      }
      this.#sink.frame(this.#fragmentOp, whole);
      return !this.#failed;
    }
    if (this.#fragments !== undefined) {
      this.#fail("new message inside a fragmented one");
      return false;
    }
    if (!fin) {
      this.#fragments = [payload.slice()];
      this.#fragmentOp = opcode;
      return true;
    }
    this.#sink.frame(opcode, payload);
    return !this.#failed;
  }

  #fail(message: string): void {
    this.#failed = true;
    this.#sink.error(message);
  }
}

/**
 * The opening handshake request.
 *
 * @param host The `Host` header.
 * @param path The request path, with its leading `/`.
 * @param key The `Sec-WebSocket-Key` (base64 of 16 bytes).
 * @returns The request's bytes.
 */
export function handshakeRequest(
  host: string,
  path: string,
  key: string,
): Uint8Array {
  return new TextEncoder().encode(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\n` +
      `Sec-WebSocket-Version: 13\r\n\r\n`,
  );
}

/**
 * Finds the end of an HTTP response head.
 *
 * @param buf Bytes received so far.
 * @returns The offset just past `\r\n\r\n`, or -1 when not there yet.
 */
export function headEnd(buf: Uint8Array): number {
  for (let i = 3; i < buf.length; i++) {
    if (
      buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 &&
      buf[i - 3] === 13
    ) {
      return i + 1;
    }
  }
  return -1;
}

/**
 * The status code of an HTTP response head.
 *
 * @param head The response head, as text.
 * @returns The status code, or 0 when the status line is malformed.
 */
export function statusOf(head: string): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  return m ? Number(m[1]) : 0;
}

/** How a connection ended. */
export interface CloseInfo {
  /** The close code received, 1005 when none, 1006 for no close frame. */
  code: number;
  /** The close reason received. */
  reason: string;
  /** Whether this side started the close. */
  requested: boolean;
}

/** Options of {@linkcode connect}. */
export interface ConnectOptions {
  /** Server address. */
  hostname: string;
  /** Server port. */
  port: number;
  /** Request path, with its leading `/`. */
  path: string;
  /**
   * Source address to bind (`127.0.0.x`): uses `node:net`, as `Deno.connect`
   * cannot bind one.
   */
  localAddress?: string;
  /**
   * Read buffer size for `Deno.connect` sockets.
   * @default {16384}
   */
  readSize?: number;
  /**
   * Milliseconds the handshake may take.
   * @default {10000}
   */
  timeout?: number;
}

/** Byte stream under a {@linkcode WsClient}. */
interface _Stream {
  write(bytes: Uint8Array): void;
  end(): void;
  destroy(): void;
}

function _key(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b));
}

/** Handlers of one client connection. */
export interface WsHandlers {
  /** A binary message; `payload` is valid during the call only. */
  onBinary?: (payload: Uint8Array) => void;
  /** A text message (a protocol error for sigver). */
  onText?: (payload: Uint8Array) => void;
  /** The stream broke the framing rules. */
  onError?: (message: string) => void;
  /** The connection ended. Called once. */
  onClose?: (info: CloseInfo) => void;
}

const _PONG_EMPTY = clientFrame(OP_PONG, new Uint8Array(0));

/**
 * One open client WebSocket. Create it with {@linkcode connect}.
 */
export class WsClient implements FrameSink {
  /** Handlers; set them right after `connect` resolves. */
  handlers: WsHandlers = {};
  /** Whether the connection has ended. */
  closed = false;
  #stream: _Stream;
  #parser: FrameParser;
  #requested = false;
  #closeCode = 1006;
  #closeReason = "";
  #gotClose = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #finished: PromiseWithResolvers<CloseInfo> = Promise.withResolvers();

  constructor(stream: _Stream) {
    this.#stream = stream;
    this.#parser = new FrameParser(this);
  }

  /** Resolves when the connection has ended. */
  get finished(): Promise<CloseInfo> {
    return this.#finished.promise;
  }

  /**
   * Sends one prebuilt frame (see {@linkcode clientFrame}); the bytes must
   * not change afterwards.
   *
   * @param frame The frame.
   */
  sendFrame(frame: Uint8Array): void {
    if (!this.closed && !this.#requested) this.#stream.write(frame);
  }

  /**
   * Sends one binary message.
   *
   * @param payload The message.
   */
  send(payload: Uint8Array): void {
    this.sendFrame(clientFrame(OP_BINARY, payload));
  }

  /**
   * Starts the closing handshake and waits for the server to finish it; the
   * socket is dropped after `timeout` ms if it does not.
   *
   * @param code The close code.
   * @param timeout Milliseconds to wait for the server.
   * @returns How the connection ended.
   */
  close(code = 1000, timeout = 3000): Promise<CloseInfo> {
    if (!this.closed && !this.#requested) {
      this.#stream.write(clientFrame(OP_CLOSE, closePayload(code)));
      this.#requested = true;
      this.#timer = setTimeout(() => this.#stream.destroy(), timeout);
    }
    return this.finished;
  }

  /** Drops the socket without a closing handshake. */
  destroy(): void {
    if (!this.closed) {
      this.#requested = true;
      this.#stream.destroy();
    }
  }

  /** @internal Bytes from the stream. */
  data(chunk: Uint8Array): void {
    this.#parser.feed(chunk);
  }

  /** @internal The stream ended. */
  ended(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const info = {
      code: this.#gotClose ? this.#closeCode : 1006,
      reason: this.#closeReason,
      requested: this.#requested,
    };
    this.handlers.onClose?.(info);
    this.#finished.resolve(info);
  }

  /** @internal See {@linkcode FrameSink.frame}. */
  frame(opcode: number, payload: Uint8Array): void {
    switch (opcode) {
      case OP_BINARY:
        this.handlers.onBinary?.(payload);
        return;
      case OP_TEXT:
        this.handlers.onText?.(payload);
        return;
      case OP_PING:
        this.#stream.write(
          payload.length === 0 ? _PONG_EMPTY : clientFrame(OP_PONG, payload),
        );
        return;
      case OP_PONG:
        return;
      case OP_CLOSE: {
        this.#gotClose = true;
        this.#closeCode = payload.length >= 2
          ? (payload[0] << 8) | payload[1]
          : 1005;
        this.#closeReason = new TextDecoder().decode(payload.subarray(2));
        if (!this.#requested) {
          // Echo the close; the server then drops the TCP connection.
          this.#stream.write(clientFrame(OP_CLOSE, payload.subarray(0, 2)));
          this.#timer = setTimeout(() => this.#stream.destroy(), 3000);
        }
        this.#stream.end();
        return;
      }
      default:
        this.error(`unknown opcode ${opcode}`);
    }
  }

  /** @internal See {@linkcode FrameSink.error}. */
  error(message: string): void {
    this.handlers.onError?.(message);
    this.#stream.destroy();
  }
}

/** A `Deno.Conn` with a write queue: one write op at a time, in order. */
class _DenoStream implements _Stream {
  #conn: Deno.TcpConn;
  #queue: Uint8Array[] = [];
  #writing = false;
  #ending = false;
  #dead = false;

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  write(bytes: Uint8Array): void {
    if (this.#dead || this.#ending) return;
    if (this.#writing) {
      this.#queue.push(bytes);
      return;
    }
    this.#pump(bytes);
  }

  async #pump(first: Uint8Array): Promise<void> {
    this.#writing = true;
    let bytes: Uint8Array | undefined = first;
    try {
      while (bytes !== undefined && !this.#dead) {
        let off = 0;
        while (off < bytes.length) {
          off += await this.#conn.write(
            off === 0 ? bytes : bytes.subarray(off),
          );
        }
        const q = this.#queue;
        if (q.length === 0) bytes = undefined;
        else if (q.length === 1) bytes = q.pop();
        else {
          let n = 0;
          for (const b of q) n += b.length;
          bytes = new Uint8Array(n);
          n = 0;
          for (const b of q) {
            bytes.set(b, n);
            n += b.length;
          }
          q.length = 0;
        }
      }
    } catch {
      this.destroy();
    } finally {
      this.#writing = false;
    }
    if (this.#ending && !this.#dead) this.#shutdown();
  }

  #shutdown(): void {
    this.#conn.closeWrite().catch(() => this.destroy());
  }

  end(): void {
    if (this.#ending || this.#dead) return;
    this.#ending = true;
    if (!this.#writing) this.#shutdown();
  }

  destroy(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#queue.length = 0;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

async function _readLoop(
  conn: Deno.TcpConn,
  size: number,
  onData: (chunk: Uint8Array) => void,
): Promise<void> {
  const buf = new Uint8Array(size);
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buf);
    } catch {
      n = null;
    }
    if (n === null) return;
    onData(buf.subarray(0, n));
  }
}

/**
 * Opens a client WebSocket: a TCP connection, the opening handshake, then
 * frames. Rejects on a refused connection, a non-101 answer (the error's
 * message names the status) or a timeout.
 *
 * @param options Address, path, source address, buffer size, timeout.
 * @returns The open connection.
 */
export async function connect(options: ConnectOptions): Promise<WsClient> {
  const { hostname, port, path } = options;
  const timeout = options.timeout ?? 10000;
  const request = handshakeRequest(`${hostname}:${port}`, path, _key());
  if (options.localAddress !== undefined) {
    return await _connectNode(options, request, timeout);
  }
  const conn = await Deno.connect({ hostname, port });
  conn.setNoDelay(true);
  const stream = new _DenoStream(conn);
  const opening = _opening(new WsClient(stream), stream, timeout);
  _readLoop(conn, options.readSize ?? 16384, opening.data).then(() => {
    stream.destroy();
    opening.end();
  });
  stream.write(request);
  return await opening.promise;
}

/**
 * The client side of the opening handshake over any byte stream: `data`
 * takes what arrives (the 101 answer, then frames for the client), `end`
 * and `fail` report the stream's end; `promise` settles once.
 */
function _opening(client: WsClient, stream: _Stream, timeout: number): {
  promise: Promise<WsClient>;
  data: (chunk: Uint8Array) => void;
  end: () => void;
  fail: (error: Error) => void;
} {
  const opened = Promise.withResolvers<WsClient>();
  let head: Uint8Array | undefined = new Uint8Array(0);
  const timer = setTimeout(() => {
    opened.reject(new Error("handshake timed out"));
    stream.destroy();
  }, timeout);
  return {
    promise: opened.promise,
    data: (chunk) => {
      if (head === undefined) {
        client.data(chunk);
        return;
      }
      const joined: Uint8Array = new Uint8Array(head.length + chunk.length);
      joined.set(head);
      joined.set(chunk, head.length);
      const at = headEnd(joined);
      if (at < 0) {
        head = joined;
        return;
      }
      head = undefined;
      clearTimeout(timer);
      const status = statusOf(new TextDecoder().decode(joined.subarray(0, at)));
      if (status !== 101) {
        opened.reject(new Error(`handshake refused: HTTP ${status}`));
        stream.destroy();
        return;
      }
      opened.resolve(client);
      if (at < joined.length) client.data(joined.subarray(at));
    },
    end: () => {
      clearTimeout(timer);
      if (head !== undefined) {
        opened.reject(new Error("connection closed during the handshake"));
      }
      client.ended();
    },
    fail: (error) => {
      if (head === undefined) return;
      clearTimeout(timer);
      opened.reject(error);
    },
  };
}

function _connectNode(
  options: ConnectOptions,
  request: Uint8Array,
  timeout: number,
): Promise<WsClient> {
  const socket = net.connect({
    host: options.hostname,
    port: options.port,
    localAddress: options.localAddress,
  });
  socket.setNoDelay(true);
  const stream: _Stream = {
    write: (bytes) => {
      if (!socket.destroyed) socket.write(bytes);
    },
    end: () => socket.end(),
    destroy: () => socket.destroy(),
  };
  const opening = _opening(new WsClient(stream), stream, timeout);
  socket.on("connect", () => socket.write(request));
  socket.on("data", opening.data);
  socket.on("error", opening.fail);
  socket.on("close", opening.end);
  return opening.promise;
}
