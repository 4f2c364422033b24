/**
 * A raw WebSocket codec (RFC 6455) for the tests, the fuzzer and the load
 * generator, which must speak the protocol by hand: client frames (valid or
 * deliberately broken), the opening handshake request, the response head,
 * server frames read incrementally, and close payloads.
 *
 * Pure: no I/O, no `Deno.*`. The transports are elsewhere: `raw_socket.ts`
 * over `Deno.connect`, `bench/ws_client.ts` over `node:net`.
 *
 * ```ts
 * import { encodeFrame, FrameParser, OP_BINARY } from "./ws_frame.ts";
 *
 * const frames: number[] = [];
 * const parser = new FrameParser({
 *   frame: (opcode) => frames.push(opcode),
 *   error: (message) => {
 *     throw new SyntaxError(message);
 *   },
 * });
 * parser.feed(encodeFrame(OP_BINARY, new Uint8Array([1, 2]), { mask: false }));
 * if (frames[0] !== OP_BINARY) throw new Error("not parsed");
 * ```
 *
 * @module
 */

/** Continuation frame. */
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

/** How to write one frame; the defaults make a valid, final client frame. */
export interface EncodeFrameOptions {
  /**
   * Whether this is the last fragment of its message.
   * @default {true}
   */
  fin?: boolean;
  /**
   * The RSV1-3 bits, 0..7: anything but 0 is a protocol error.
   * @default {0}
   */
  rsv?: number;
  /**
   * The 4-byte masking key, or `false` for an unmasked frame (a protocol
   * error from a client). An all-zero key is legal and skips the XOR pass.
   * @default {a random key}
   */
  mask?: Uint8Array | false;
  /**
   * The payload length to declare, when it must not match the payload (a
   * false length). It also picks the 7, 16 or 64-bit length form.
   * @default {payload.length}
   */
  length?: number;
}

/**
 * Encodes one client frame: masked, any opcode, with the shortest length
 * form; or, through `options`, a broken one.
 *
 * @example Encode a masked binary frame with a known key
 * ```ts
 * import { encodeFrame, OP_BINARY } from "./ws_frame.ts";
 *
 * const frame = encodeFrame(OP_BINARY, new Uint8Array([1, 2, 3]), {
 *   mask: new Uint8Array([0, 0, 0, 0]),
 * });
 * if (frame.join() !== "130,131,0,0,0,0,1,2,3") throw new Error("wrong");
 * ```
 *
 * @param opcode The opcode (its low 4 bits are used, so 0..15).
 * @param payload The payload, copied (and masked) into the frame.
 * @param options Fin, reserved bits, masking key, a false length.
 * @returns The frame's bytes.
 * @throws {RangeError} When the masking key is not 4 bytes or the length is
 * not a safe non-negative integer.
 */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array,
  options: EncodeFrameOptions = {},
): Uint8Array {
  const { fin = true, rsv = 0 } = options;
  const key = options.mask ?? crypto.getRandomValues(new Uint8Array(4));
  if (key !== false && key.length !== 4) {
    throw new RangeError(
      `Cannot encode a frame: the masking key has ${key.length} bytes, not 4`,
    );
  }
  const len = options.length ?? payload.length;
  if (!Number.isSafeInteger(len) || len < 0) {
    throw new RangeError(`Cannot encode a frame: bad length ${len}`);
  }
  const head = len < 126 ? 2 : len < 0x10000 ? 4 : 10;
  const start = head + (key === false ? 0 : 4);
  const out = new Uint8Array(start + payload.length);
  out[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0xf);
  out[1] = (key === false ? 0 : 0x80) |
    (len < 126 ? len : len < 0x10000 ? 126 : 127);
  // Bytes by hand, not a DataView: the load generator encodes per message.
  if (head === 4) {
    out[2] = len >>> 8;
    out[3] = len & 0xff;
  } else if (head === 10) {
    const high = Math.floor(len / 0x100000000);
    out[2] = high >>> 24;
    out[3] = (high >>> 16) & 0xff;
    out[4] = (high >>> 8) & 0xff;
    out[5] = high & 0xff;
    out[6] = len >>> 24;
    out[7] = (len >>> 16) & 0xff;
    out[8] = (len >>> 8) & 0xff;
    out[9] = len & 0xff;
  }
  if (key === false || (key[0] | key[1] | key[2] | key[3]) === 0) {
    // Unmasked, or XOR with zero: a plain copy (the zero key is already
    // there, a new array being zero-filled).
    out.set(payload, start);
    return out;
  }
  out[head] = key[0];
  out[head + 1] = key[1];
  out[head + 2] = key[2];
  out[head + 3] = key[3];
  for (let i = 0; i < payload.length; i++) {
    out[start + i] = payload[i] ^ key[i & 3];
  }
  return out;
}

/**
 * The payload of a close frame: a 2-byte code and a UTF-8 reason.
 *
 * @example
 * ```ts
 * import { closePayload } from "./ws_frame.ts";
 *
 * if (closePayload(1000, "ok").join() !== "3,232,111,107") {
 *   throw new Error("wrong");
 * }
 * ```
 *
 * @param code The close code.
 * @param reason The reason.
 * @returns The payload.
 */
export function closePayload(code: number, reason = ""): Uint8Array {
  const r = new TextEncoder().encode(reason);
  const out = new Uint8Array(2 + r.length);
  out[0] = (code >>> 8) & 0xff;
  out[1] = code & 0xff;
  out.set(r, 2);
  return out;
}

/** The code and reason of a close frame. */
export interface CloseFields {
  /** The close code; 1005 (no status) when the payload has none. */
  code: number;
  /** The close reason (invalid UTF-8 replaced, not refused). */
  reason: string;
}

/**
 * The close code and reason of a close frame's payload.
 *
 * @example
 * ```ts
 * import { parseClose } from "./ws_frame.ts";
 *
 * const { code, reason } = parseClose(new Uint8Array([0x03, 0xe8, 0x6f]));
 * if (code !== 1000 || reason !== "o") throw new Error("wrong");
 * if (parseClose(new Uint8Array(0)).code !== 1005) throw new Error("wrong");
 * ```
 *
 * @param payload The payload of a frame with opcode 8.
 * @returns Its code (1005 when absent) and reason.
 */
export function parseClose(payload: Uint8Array): CloseFields {
  if (payload.length < 2) return { code: 1005, reason: "" };
  return {
    code: (payload[0] << 8) | payload[1],
    reason: new TextDecoder().decode(payload.subarray(2)),
  };
}

/** Options of {@linkcode handshakeRequest}. */
export interface HandshakeOptions {
  /** The `Host` header (`127.0.0.1:8000`). */
  host: string;
  /**
   * More request lines, one `name: value` per entry, written as they are
   * (so they may be malformed or repeat a header).
   * @default {[]}
   */
  headers?: readonly string[];
  /**
   * The `Sec-WebSocket-Key`, base64 of 16 bytes.
   * @default {a random key}
   */
  key?: string;
}

/**
 * The opening handshake request, with the request target as it is (any
 * string, so that odd targets can be sent).
 *
 * @example
 * ```ts
 * import { handshakeRequest } from "./ws_frame.ts";
 *
 * const request = handshakeRequest("/room", { host: "127.0.0.1:8000" });
 * if (!request.startsWith("GET /room HTTP/1.1\r\n")) throw new Error("wrong");
 * if (!request.endsWith("\r\n\r\n")) throw new Error("wrong");
 * ```
 *
 * @param target The request target (`/room?favored`, `http://host?x`...).
 * @param options The host, more headers, the key.
 * @returns The request's text, up to and with the blank line.
 */
export function handshakeRequest(
  target: string,
  options: HandshakeOptions,
): string {
  const lines = [
    `GET ${target} HTTP/1.1`,
    `Host: ${options.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${options.key ?? randomKey()}`,
    "Sec-WebSocket-Version: 13",
    ...options.headers ?? [],
  ];
  return lines.join("\r\n") + "\r\n\r\n";
}

/**
 * A random `Sec-WebSocket-Key`: base64 of 16 random bytes.
 *
 * @example
 * ```ts
 * import { randomKey } from "./ws_frame.ts";
 *
 * if (atob(randomKey()).length !== 16) throw new Error("wrong");
 * ```
 *
 * @returns The key.
 */
export function randomKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes));
}

/**
 * Finds the end of an HTTP response head.
 *
 * @example
 * ```ts
 * import { headEnd } from "./ws_frame.ts";
 *
 * const bytes = new TextEncoder().encode("HTTP/1.1 101 OK\r\n\r\nx");
 * if (headEnd(bytes) !== bytes.length - 1) throw new Error("wrong");
 * ```
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

/** An HTTP response head, as {@linkcode parseResponseHead} reads it. */
export interface ResponseHead {
  /** The status code; 0 when the status line is malformed. */
  status: number;
  /** The reason phrase. */
  statusText: string;
  /** The headers; lines that are not valid headers are skipped. */
  headers: Headers;
}

/**
 * Parses an HTTP/1.x response head: the status line and the headers.
 *
 * @example
 * ```ts
 * import { parseResponseHead } from "./ws_frame.ts";
 *
 * const head = parseResponseHead(
 *   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
 * );
 * if (head.status !== 101) throw new Error("wrong");
 * if (head.headers.get("upgrade") !== "websocket") throw new Error("wrong");
 * ```
 *
 * @param head The head as text, with or without its final blank line.
 * @returns The status, the reason phrase and the headers.
 */
export function parseResponseHead(head: string): ResponseHead {
  const lines = head.split(/\r?\n/);
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]);
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    try {
      headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
    } catch {
      // Not a valid header name or value: skipped, as documented.
    }
  }
  return {
    status: m ? Number(m[1]) : 0,
    statusText: m?.[2] ?? "",
    headers,
  };
}

/** Receives what a {@linkcode FrameParser} finds. */
export interface FrameSink {
  /**
   * One control frame or one whole message (fragments joined, with the
   * opcode of the first). `payload` is a view that is only valid during the
   * call: copy it to keep it.
   */
  frame(opcode: number, payload: Uint8Array): void;
  /** The stream broke the framing rules; no more frames will come. */
  error(message: string): void;
}

/**
 * Splits a server-to-client byte stream into frames, however it is cut:
 * unmasked frames, 7, 16 and 64-bit lengths (up to 4 GiB), fragmented
 * messages joined. Frames wholly inside one chunk are passed on as views of
 * it; only a frame cut by a chunk boundary is copied, so a load generator
 * can feed it a reused read buffer without allocating per frame.
 *
 * It reports, once, what a client must refuse: reserved bits, a masked
 * frame, a control frame that is fragmented or over 125 bytes, a stray
 * continuation, a new message inside a fragmented one, a frame over
 * `maxFrame`.
 *
 * @example
 * ```ts
 * import { FrameParser, OP_TEXT } from "./ws_frame.ts";
 *
 * const texts: string[] = [];
 * const parser = new FrameParser({
 *   frame: (_opcode, payload) => texts.push(new TextDecoder().decode(payload)),
 *   error: (message) => {
 *     throw new SyntaxError(message);
 *   },
 * });
 * for (const byte of [0x81, 0x02, 0x68, 0x69]) {
 *   parser.feed(new Uint8Array([byte]));
 * }
 * if (texts[0] !== "hi" || OP_TEXT !== 1) throw new Error("wrong");
 * ```
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
   * Makes a parser.
   *
   * @param sink Where frames and the error go.
   * @param maxFrame The largest frame accepted, in bytes.
   */
  constructor(sink: FrameSink, maxFrame = 1 << 24) {
    this.#sink = sink;
    this.#maxFrame = maxFrame;
  }

  /** Whether the stream broke the framing rules (and was reported). */
  get failed(): boolean {
    return this.#failed;
  }

  /**
   * Feeds bytes as they arrive; the sink hears of every frame they
   * complete. `chunk` may be reused by the caller after the call returns.
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
