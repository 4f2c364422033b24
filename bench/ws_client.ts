/**
 * A minimal WebSocket client for load generation: RFC 6455 over a raw TCP
 * socket, so that it can pick its source address (`node:net` with
 * `localAddress`; Deno's `WebSocket` and `Deno.connect` cannot), parse many
 * frames out of one read, and send prebuilt frames without copying.
 *
 * The bytes come from the shared dev codec, `dev/ws_frame.ts`; this file is
 * the transport. Client frames are masked with the all-zero key: legal (the
 * key is only meant to be unpredictable to proxies), and it spares the load
 * generator an XOR pass per frame. Servers unmask the same way whatever the
 * key.
 *
 * @module
 */

import net from "node:net";
import {
  closePayload,
  encodeFrame,
  type EncodeFrameOptions,
  FrameParser,
  type FrameSink,
  handshakeRequest as requestText,
  headEnd,
  OP_BINARY,
  OP_CLOSE,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  parseClose,
  parseResponseHead,
  randomKey,
} from "../dev/bad_frames.ts";

export {
  closePayload,
  FrameParser,
  type FrameSink,
  headEnd,
  OP_BINARY,
  OP_CLOSE,
  OP_CONT,
  OP_PING,
  OP_PONG,
  OP_TEXT,
} from "../dev/bad_frames.ts";

/** One options object for every frame: no allocation per frame for it. */
const _ZERO_MASK: EncodeFrameOptions = { mask: new Uint8Array(4) };

/**
 * Builds one client frame (FIN set, masked with the zero key).
 *
 * @param opcode The frame's opcode.
 * @param payload The payload, copied into the frame.
 * @returns The frame's bytes.
 */
export function clientFrame(opcode: number, payload: Uint8Array): Uint8Array {
  return encodeFrame(opcode, payload, _ZERO_MASK);
}

/**
 * The opening handshake request, with a given key.
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
  return new TextEncoder().encode(requestText(path, { host, key }));
}

/**
 * The status code of an HTTP response head.
 *
 * @param head The response head, as text.
 * @returns The status code, or 0 when the status line is malformed.
 */
export function statusOf(head: string): number {
  return parseResponseHead(head).status;
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
   * The bytes that send one binary message on this connection, built once
   * for {@linkcode WsClient.sendFrame}: a client frame.
   *
   * @param payload The message.
   * @returns The frame.
   */
  prebuild(payload: Uint8Array): Uint8Array {
    return clientFrame(OP_BINARY, payload);
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
        ({ code: this.#closeCode, reason: this.#closeReason } = parseClose(
          payload,
        ));
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
export class DenoStream {
  #conn: Deno.TcpConn;
  #queue: Uint8Array[] = [];
  #writing = false;
  #ending = false;
  #dead = false;

  /**
   * Wraps a connection.
   *
   * @param conn The connection.
   */
  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  /**
   * Queues bytes; they must not change afterwards.
   *
   * @param bytes The bytes.
   */
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

  /** Shuts the write side down once the queue is written. */
  end(): void {
    if (this.#ending || this.#dead) return;
    this.#ending = true;
    if (!this.#writing) this.#shutdown();
  }

  /** Closes the connection now; queued bytes are dropped. */
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

/**
 * Reads a connection until it ends, handing each read to `onData` (the
 * chunk is valid during the call only: the buffer is reused).
 *
 * @param conn The connection.
 * @param size The read buffer's size.
 * @param onData Takes each chunk.
 * @returns Resolves when the connection has ended or failed.
 */
export async function readLoop(
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
  const request = handshakeRequest(`${hostname}:${port}`, path, randomKey());
  if (options.localAddress !== undefined) {
    return await _connectNode(options, request, timeout);
  }
  const conn = await Deno.connect({ hostname, port });
  conn.setNoDelay(true);
  const stream = new DenoStream(conn);
  const opening = _opening(new WsClient(stream), stream, timeout);
  readLoop(conn, options.readSize ?? 16384, opening.data).then(() => {
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
