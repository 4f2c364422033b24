/**
 * A WebSocket spoken by hand over a `Deno.connect` TCP socket, for what a
 * `WebSocket` cannot send: odd request targets, missing or repeated headers,
 * malformed frames, a client that never reads. The bytes come from
 * `ws_frame.ts`; this file only moves them.
 *
 * ```ts ignore
 * using raw = await RawSocket.upgrade(server, "/room");
 * await raw.sendFrame(OP_BINARY, bytes, { rsv: 4 });
 * const frame = await raw.readFrame();
 * ```
 *
 * @module
 */

import {
  encodeFrame,
  type EncodeFrameOptions,
  FrameParser,
  handshakeRequest,
  headEnd,
  parseResponseHead,
} from "./bad_frames.ts";

/** One frame (or whole message) as {@linkcode RawSocket.readFrame} reads it. */
export interface RawFrame {
  /** The opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong). */
  opcode: number;
  /** The payload (server frames are unmasked). */
  payload: Uint8Array;
}

/** Anything with the loopback port of a server, such as `SigverServer`. */
export interface RawSocketTarget {
  /** The server's address. */
  readonly addr: { readonly port: number };
}

const _READ_SIZE = 16384;

/**
 * A client WebSocket over raw TCP to `127.0.0.1`. Open it with
 * {@linkcode RawSocket.upgrade}; dispose of it to drop the connection.
 */
export class RawSocket implements Disposable {
  /** The HTTP status of the handshake response (101: open). */
  readonly status: number;
  /** The response head (status line and headers, no final blank line). */
  readonly head: string;
  /** The response headers. */
  readonly headers: Headers;
  readonly #conn: Deno.TcpConn;
  readonly #chunk: Uint8Array;
  readonly #parser: FrameParser;
  readonly #frames: RawFrame[] = [];
  #error: string | undefined;

  private constructor(
    conn: Deno.TcpConn,
    chunk: Uint8Array,
    head: string,
    rest: Uint8Array,
  ) {
    this.#conn = conn;
    this.#chunk = chunk;
    this.head = head;
    const parsed = parseResponseHead(head);
    this.status = parsed.status;
    this.headers = parsed.headers;
    this.#parser = new FrameParser({
      frame: (opcode, payload) =>
        this.#frames.push({ opcode, payload: payload.slice() }),
      error: (message) => this.#error = message,
    });
    // After any other status the rest is an HTTP body, not frames.
    if (this.status === 101) this.#parser.feed(rest);
  }

  /**
   * Connects to `127.0.0.1`, sends a WebSocket handshake with the request
   * target as it is, and reads the response head.
   *
   * @param server The server (anything with its `addr.port`).
   * @param target The request target (`/room`, `http://host?x`...).
   * @param headers More request headers, one `name: value` per entry,
   * written as they are.
   * @returns The socket; check {@linkcode RawSocket.status} (101: open).
   * @throws {Error} When the connection ends before the response head.
   */
  static async upgrade(
    server: RawSocketTarget,
    target: string,
    headers: readonly string[] = [],
  ): Promise<RawSocket> {
    const { port } = server.addr;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const request = handshakeRequest(target, {
        host: `127.0.0.1:${port}`,
        headers,
      });
      await _writeAll(conn, new TextEncoder().encode(request));
      const chunk = new Uint8Array(_READ_SIZE);
      let buf = new Uint8Array(0);
      for (;;) {
        const end = headEnd(buf);
        if (end !== -1) {
          const head = new TextDecoder().decode(buf.subarray(0, end - 4));
          return new RawSocket(conn, chunk, head, buf.subarray(end));
        }
        const n = await _read(conn, chunk);
        if (n === null) {
          throw new Error("Cannot upgrade: the connection closed first");
        }
        const joined = new Uint8Array(buf.length + n);
        joined.set(buf);
        joined.set(chunk.subarray(0, n), buf.length);
        buf = joined;
      }
    } catch (error) {
      conn.close();
      throw error;
    }
  }

  /**
   * Reads the next control frame or message from the server (fragments
   * joined; sigver's server never fragments).
   *
   * @returns The frame, or `null` when the connection ended.
   * @throws {SyntaxError} When the server broke the framing rules.
   * @throws {TypeError} When the handshake did not answer 101.
   */
  async readFrame(): Promise<RawFrame | null> {
    if (this.status !== 101) {
      throw new TypeError(
        `Cannot read a frame: the handshake answered ${this.status}`,
      );
    }
    for (;;) {
      const frame = this.#frames.shift();
      if (frame !== undefined) return frame;
      if (this.#error !== undefined) {
        throw new SyntaxError(`Cannot read a frame: ${this.#error}`);
      }
      const n = await _read(this.#conn, this.#chunk);
      if (n === null) return null;
      this.#parser.feed(this.#chunk.subarray(0, n));
    }
  }

  /**
   * Sends one frame, masked as a client must unless `options` say
   * otherwise.
   *
   * @param opcode The opcode.
   * @param payload The payload.
   * @param options Fin, reserved bits, masking key, a false length.
   */
  async sendFrame(
    opcode: number,
    payload: Uint8Array = new Uint8Array(0),
    options: EncodeFrameOptions = {},
  ): Promise<void> {
    await _writeAll(this.#conn, encodeFrame(opcode, payload, options));
  }

  /**
   * Sends bytes as they are: several frames at once, garbage, half a frame.
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
}

async function _writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) {
    off += await conn.write(bytes.subarray(off));
  }
}

/** Reads into `chunk`; `null` at the end, a reset included. */
async function _read(
  conn: Deno.Conn,
  chunk: Uint8Array,
): Promise<number | null> {
  try {
    return await conn.read(chunk);
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionReset) return null;
    throw error;
  }
}
