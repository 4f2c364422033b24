/**
 * The WebSocket protocol (RFC 6455) as a client speaks it by hand: frames
 * (masked for a client, unmasked from a server), the opening handshake's
 * request and the check of its response, an incremental parser of a
 * server's byte stream, and close payloads. The cluster's pipes speak it
 * over `Deno.connect` (`cluster/pipe.ts`), so that their socket has
 * `TCP_NODELAY` on and a frame goes out in one write; the tests, the
 * fuzzer and the load generator build on it (`dev/ws_frame.ts`).
 *
 * Pure: bytes in, bytes out. The only outside things it uses are Web
 * Crypto's random bytes (masks, keys) and SHA-1 (the accept check).
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

/** The largest frame or message a {@linkcode FrameParser} takes by default. */
export const MAX_FRAME = 1 << 24;

/** The GUID that a server appends to the key it hashes (RFC 6455 1.3). */
const _GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** The head of one frame, as {@linkcode encodeFrameHead} writes it. */
export interface FrameHead {
  /** Whether this is the last fragment of its message. */
  fin: boolean;
  /** The RSV1-3 bits, 0..7 (0 without an extension). */
  rsv: number;
  /** The opcode (its low 4 bits are used). */
  opcode: number;
  /** The 4-byte masking key, or `false` for an unmasked (server) frame. */
  mask: Uint8Array | false;
  /** The payload length to declare; it picks the 7, 16 or 64-bit form. */
  length: number;
}

/** How to write one frame; the defaults make a final, masked client frame. */
export interface EncodeFrameOptions {
  /**
   * Whether this is the last fragment of its message.
   * @default {true}
   */
  fin?: boolean;
  /**
   * The RSV1-3 bits, 0..7: anything but 0 needs an extension.
   * @default {0}
   */
  rsv?: number;
  /**
   * The 4-byte masking key, or `false` for an unmasked frame (a server's).
   * An all-zero key is legal and skips the XOR pass.
   * @default {a fresh random key, as RFC 6455 asks of a client}
   */
  mask?: Uint8Array | false;
}

/**
 * Encodes the head of a frame: the two first bytes, the extended length
 * and the masking key. A declared length that does not match the payload
 * that follows makes a broken frame, which a test may want.
 *
 * @example
 * ```ts
 * import { encodeFrameHead, OP_BINARY } from "./ws_frame.ts";
 *
 * const head = encodeFrameHead({
 *   fin: true, rsv: 0, opcode: OP_BINARY, mask: false, length: 300,
 * });
 * if (head.join() !== "130,126,1,44") throw new Error("wrong");
 * ```
 *
 * @param head The fields.
 * @returns The head's bytes.
 * @throws {RangeError} When the masking key is not 4 bytes or the length is
 * not a safe non-negative integer.
 */
export function encodeFrameHead(head: FrameHead): Uint8Array {
  _checkHead(head.mask, head.length);
  const out = new Uint8Array(_headSize(head.length, head.mask !== false));
  _writeHead(out, head.fin, head.rsv, head.opcode, head.mask, head.length);
  return out;
}

/**
 * Encodes one frame, head and payload in one buffer (so that it can go out
 * in one write): by default a final client frame, masked with a fresh
 * random key.
 *
 * When it masks, the frame is a view that starts 0 to 3 bytes into its
 * buffer, so that the payload is 4-byte aligned and masked a word at a
 * time: use its `byteOffset` to look at its buffer.
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
 * @param options Fin, reserved bits, masking key.
 * @returns The frame's bytes.
 * @throws {RangeError} When the masking key is not 4 bytes.
 */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array,
  options: EncodeFrameOptions = {},
): Uint8Array {
  const { fin = true, rsv = 0, mask } = options;
  const len = payload.length;
  _checkHead(mask ?? false, len);
  const masked = mask !== false;
  const start = _headSize(len, masked);
  const key = mask === undefined ? _randomMask() : mask;
  const xor = key !== false && (key[0] | key[1] | key[2] | key[3]) !== 0;
  // Align the payload for the word-wise XOR.
  const pad = xor ? (4 - (start & 3)) & 3 : 0;
  const out = pad === 0
    ? new Uint8Array(start + len)
    : new Uint8Array(new ArrayBuffer(pad + start + len), pad);
  _writeHead(out, fin, rsv, opcode, key, len);
  out.set(payload, start);
  if (xor) _xor(out, start, key);
  return out;
}

/**
 * Random masking keys, drawn from `crypto.getRandomValues` 256 at a time:
 * one call per 256 frames instead of one per frame.
 */
const _maskPool = new Uint8Array(1024);
let _maskNext = _maskPool.length;

/** A fresh random masking key (a view of the pool: use it at once). */
function _randomMask(): Uint8Array {
  if (_maskNext === _maskPool.length) {
    crypto.getRandomValues(_maskPool);
    _maskNext = 0;
  }
  _maskNext += 4;
  return _maskPool.subarray(_maskNext - 4, _maskNext);
}

/** Whether this machine stores a word's low byte first. */
const _LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * XORs bytes with a masking key in place (RFC 6455 5.3): masks a client's
 * payload, or unmasks it. A word at a time when the bytes are 4-byte
 * aligned.
 *
 * @example
 * ```ts
 * import { applyMask } from "./ws_frame.ts";
 *
 * const bytes = new Uint8Array([1, 2, 3, 4, 5]);
 * applyMask(bytes, new Uint8Array([1, 1, 1, 1]));
 * if (bytes.join() !== "0,3,2,5,4") throw new Error("wrong");
 * ```
 *
 * @param bytes The bytes, changed in place.
 * @param key The 4-byte masking key, applied from `bytes[0]`.
 */
export function applyMask(bytes: Uint8Array, key: Uint8Array): void {
  _xor(bytes, 0, key);
}

/** XORs `bytes` from `start` to its end with `key`, from `bytes[start]`. */
function _xor(bytes: Uint8Array, start: number, key: Uint8Array): void {
  const k0 = key[0], k1 = key[1], k2 = key[2], k3 = key[3];
  const n = bytes.length;
  let i = start;
  if (((bytes.byteOffset + start) & 3) === 0 && n - start >= 16) {
    const words = new Uint32Array(
      bytes.buffer,
      bytes.byteOffset + start,
      (n - start) >>> 2,
    );
    // The key as a word in this machine's byte order: each of its bytes
    // lands on the byte it masks.
    const k = _LITTLE_ENDIAN
      ? (k0 | (k1 << 8) | (k2 << 16) | (k3 << 24))
      : ((k0 << 24) | (k1 << 16) | (k2 << 8) | k3);
    for (let w = 0; w < words.length; w++) words[w] ^= k;
    i += words.length << 2;
  }
  for (; i < n; i++) bytes[i] ^= key[(i - start) & 3];
}

function _checkHead(mask: Uint8Array | false, length: number): void {
  if (mask !== false && mask.length !== 4) {
    throw new RangeError(
      `Cannot encode a frame: the masking key has ${mask.length} bytes, not 4`,
    );
  }
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`Cannot encode a frame: bad length ${length}`);
  }
}

function _headSize(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 0x10000 ? 4 : 10) + (masked ? 4 : 0);
}

/** Writes a head at the start of `out`, sized by {@linkcode _headSize}. */
function _writeHead(
  out: Uint8Array,
  fin: boolean,
  rsv: number,
  opcode: number,
  mask: Uint8Array | false,
  len: number,
): void {
  out[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0xf);
  out[1] = (mask === false ? 0 : 0x80) |
    (len < 126 ? len : len < 0x10000 ? 126 : 127);
  // Bytes by hand, not a DataView: a frame is encoded per message.
  let at = 2;
  if (len >= 126 && len < 0x10000) {
    out[2] = len >>> 8;
    out[3] = len & 0xff;
    at = 4;
  } else if (len >= 0x10000) {
    const high = Math.floor(len / 0x100000000);
    out[2] = high >>> 24;
    out[3] = (high >>> 16) & 0xff;
    out[4] = (high >>> 8) & 0xff;
    out[5] = high & 0xff;
    out[6] = len >>> 24;
    out[7] = (len >>> 16) & 0xff;
    out[8] = (len >>> 8) & 0xff;
    out[9] = len & 0xff;
    at = 10;
  }
  if (mask !== false) out.set(mask, at);
}

/**
 * The payload of a close frame: a 2-byte code and a UTF-8 reason, as they
 * are (the reason is not cut to the 123 bytes a control frame holds).
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
   * More headers, by name. Names are written in lower case; none may be
   * one of the handshake's own (`Host`, `Upgrade`, `Sec-WebSocket-*`...).
   * @default {{}}
   */
  headers?: Readonly<Record<string, string>>;
  /**
   * The `Sec-WebSocket-Key`, base64 of 16 bytes: keep it to check the
   * answer with {@linkcode websocketAccept}.
   * @default {a random key}
   */
  key?: string;
}

/**
 * The opening handshake request (RFC 6455 4.1), with the request target as
 * it is.
 *
 * @example
 * ```ts
 * import { handshakeRequest } from "./ws_frame.ts";
 *
 * const request = handshakeRequest("/room", {
 *   host: "127.0.0.1:8000",
 *   headers: { "x-node": "a" },
 * });
 * if (!request.startsWith("GET /room HTTP/1.1\r\n")) throw new Error("wrong");
 * if (!request.endsWith("x-node: a\r\n\r\n")) throw new Error("wrong");
 * ```
 *
 * @param target The request target (`/room?favored`).
 * @param options The host, more headers, the key.
 * @returns The request's text, up to and with the blank line.
 * @throws {TypeError} When a header's name or value is not valid HTTP (a
 * line break in a value, say).
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
  ];
  // `Headers` refuses names and values that could break the request.
  for (const [name, value] of new Headers(options.headers ?? {})) {
    lines.push(`${name}: ${value}`);
  }
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
 * The `Sec-WebSocket-Accept` a server must answer to a key: base64 of the
 * SHA-1 of the key and the protocol's GUID (RFC 6455 4.2.2).
 *
 * @example The RFC's own example
 * ```ts
 * import { websocketAccept } from "./ws_frame.ts";
 *
 * const accept = await websocketAccept("dGhlIHNhbXBsZSBub25jZQ==");
 * if (accept !== "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") throw new Error("wrong");
 * ```
 *
 * @param key The `Sec-WebSocket-Key` sent.
 * @returns The accept value to expect.
 */
export async function websocketAccept(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    new TextEncoder().encode(key + _GUID),
  );
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
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

/**
 * What is wrong with a `101` answer to a handshake that asked for no
 * subprotocol and no extension (RFC 6455 4.1, the client's checks).
 *
 * @example
 * ```ts
 * import { parseResponseHead, upgradeError } from "./ws_frame.ts";
 *
 * const head = parseResponseHead(
 *   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
 *     "Connection: Upgrade\r\nSec-WebSocket-Accept: x=\r\n",
 * );
 * if (upgradeError(head, "x=") !== undefined) throw new Error("wrong");
 * if (upgradeError(head, "y=") === undefined) throw new Error("wrong");
 * ```
 *
 * @param head The response head, status 101.
 * @param accept The accept value expected, from {@linkcode websocketAccept}.
 * @returns Why the connection must not be used, or `undefined` when it may.
 */
export function upgradeError(
  head: ResponseHead,
  accept: string,
): string | undefined {
  const { headers } = head;
  if (head.status !== 101) return `status ${head.status}, not 101`;
  if (headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return "no Upgrade: websocket";
  }
  const connection = (headers.get("connection") ?? "").toLowerCase();
  if (!connection.split(",").some((token) => token.trim() === "upgrade")) {
    return "no Connection: Upgrade";
  }
  if (headers.get("sec-websocket-accept") !== accept) {
    return "wrong Sec-WebSocket-Accept";
  }
  if (headers.has("sec-websocket-extensions")) {
    return "an extension that was not asked for";
  }
  if (headers.has("sec-websocket-protocol")) {
    return "a subprotocol that was not asked for";
  }
  return undefined;
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

/** A pending buffer larger than this is dropped once it is empty. */
const _KEEP_PENDING = 1 << 16;

/**
 * Splits a server-to-client byte stream into frames, however it is cut:
 * unmasked frames, 7, 16 and 64-bit lengths, fragmented messages joined,
 * control frames between their fragments. Frames wholly inside one chunk
 * are passed on as views of it; only a frame cut by a chunk boundary is
 * copied, so that a reader can feed it a reused read buffer without
 * allocating per frame. What it holds is bounded by `maxFrame`.
 *
 * It reports, once, what a client must refuse: reserved bits, a masked
 * frame, a control frame that is fragmented or over 125 bytes, a stray
 * continuation, a new message inside a fragmented one, a frame or a
 * fragmented message over `maxFrame`.
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
  #fragmentsLen = 0;
  #fragmentOp = 0;
  #maxFrame: number;
  #failed = false;

  /**
   * Makes a parser.
   *
   * @param sink Where frames and the error go.
   * @param maxFrame The largest frame, and fragmented message, accepted, in
   * bytes ({@linkcode MAX_FRAME} by default).
   */
  constructor(sink: FrameSink, maxFrame: number = MAX_FRAME) {
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
    if (left === 0) {
      this.#pendingLen = 0;
      // One large frame must not keep its buffer for the stream's life.
      if (this.#pending.length > _KEEP_PENDING) {
        this.#pending = new Uint8Array(0);
      }
    } else if (fromPending) {
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
      this.#fragmentsLen += payload.length;
      if (this.#fragmentsLen > this.#maxFrame) {
        this.#fail(`message of over ${this.#maxFrame} bytes`);
        return false;
      }
      this.#fragments.push(payload.slice());
      if (!fin) return true;
      const parts = this.#fragments;
      this.#fragments = undefined;
      const whole = new Uint8Array(this.#fragmentsLen);
      let n = 0;
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
      this.#fragmentsLen = payload.length;
      this.#fragmentOp = opcode;
      return true;
    }
    this.#sink.frame(opcode, payload);
    return !this.#failed;
  }

  #fail(message: string): void {
    this.#failed = true;
    this.#fragments = undefined;
    this.#pending = new Uint8Array(0);
    this.#pendingLen = 0;
    this.#sink.error(message);
  }
}
