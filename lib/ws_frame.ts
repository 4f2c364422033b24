/**
 * The WebSocket protocol (RFC 6455) as a client speaks it by hand: this
 * file holds the frames (masked for a client, unmasked from a server) and
 * close payloads; `ws_handshake.ts` the opening handshake's request and the
 * check of its response; `ws_parser.ts` an incremental parser of a server's
 * byte stream. The cluster's pipes speak it over `Deno.connect`
 * (`cluster/pipe.ts`), so that their socket has `TCP_NODELAY` on and a
 * frame goes out in one write; the tests, the fuzzer and the load generator
 * build on it (`dev/bad_frames.ts`).
 *
 * Pure: bytes in, bytes out. The only outside thing it uses is Web Crypto's
 * random bytes (masks).
 *
 * ```ts
 * import { closePayload, encodeFrame, OP_CLOSE } from "./ws_frame.ts";
 *
 * const frame = encodeFrame(OP_CLOSE, closePayload(1000), { mask: false });
 * if (frame.join() !== "136,2,3,232") throw new Error("wrong");
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
