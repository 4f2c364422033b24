/**
 * The WebSocket codec of `lib/ws_frame.ts` (RFC 6455), with what only the
 * tests, the fuzzer and the load generator need on top: frames with a false
 * length, and a handshake request with header lines written as they are
 * (malformed or repeated). Everything else is re-exported from the lib, so
 * that the codec lives in one place.
 *
 * Pure: no I/O, no `Deno.*`. The transports are elsewhere: `raw_socket.ts`
 * over `Deno.connect`, `bench/ws_client.ts` over `node:net`.
 *
 * ```ts
 * import { encodeFrame, FrameParser, OP_BINARY } from "./bad_frames.ts";
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

import {
  applyMask,
  encodeFrame as encodeLibFrame,
  encodeFrameHead,
  type EncodeFrameOptions as LibEncodeFrameOptions,
} from "../lib/ws_frame.ts";
import {
  handshakeRequest as libHandshakeRequest,
  randomKey,
} from "../lib/ws_handshake.ts";

export {
  applyMask,
  type CloseFields,
  closePayload,
  encodeFrameHead,
  type FrameHead,
  OP_BINARY,
  OP_CLOSE,
  OP_CONT,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  parseClose,
} from "../lib/ws_frame.ts";
export {
  headEnd,
  parseResponseHead,
  randomKey,
  type ResponseHead,
  upgradeError,
  websocketAccept,
} from "../lib/ws_handshake.ts";
export { FrameParser, type FrameSink, MAX_FRAME } from "../lib/ws_parser.ts";

/** How to write one frame; the defaults make a valid, final client frame. */
export interface EncodeFrameOptions extends LibEncodeFrameOptions {
  /**
   * The payload length to declare, when it must not match the payload (a
   * false length). It also picks the 7, 16 or 64-bit length form.
   * @default {payload.length}
   */
  length?: number;
}

/**
 * Encodes one client frame: masked, any opcode, with the shortest length
 * form; or, through `options`, a broken one (reserved bits, unmasked, a
 * false length).
 *
 * @example Encode a frame that declares more than it carries
 * ```ts
 * import { encodeFrame, OP_BINARY } from "./bad_frames.ts";
 *
 * const frame = encodeFrame(OP_BINARY, new Uint8Array([1, 2, 3]), {
 *   mask: false,
 *   length: 300,
 * });
 * if (frame.join() !== "130,126,1,44,1,2,3") throw new Error("wrong");
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
  if (options.length === undefined) {
    return encodeLibFrame(opcode, payload, options);
  }
  const mask = options.mask ?? crypto.getRandomValues(new Uint8Array(4));
  const head = encodeFrameHead({
    fin: options.fin ?? true,
    rsv: options.rsv ?? 0,
    opcode,
    mask,
    length: options.length,
  });
  const out = new Uint8Array(head.length + payload.length);
  out.set(head);
  out.set(payload, head.length);
  if (mask !== false) applyMask(out.subarray(head.length), mask);
  return out;
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
 * string, so that odd targets can be sent) and header lines as they are.
 *
 * @example
 * ```ts
 * import { handshakeRequest } from "./bad_frames.ts";
 *
 * const request = handshakeRequest("/room", {
 *   host: "127.0.0.1:8000",
 *   headers: ["X-Odd:no space"],
 * });
 * if (!request.startsWith("GET /room HTTP/1.1\r\n")) throw new Error("wrong");
 * if (!request.endsWith("X-Odd:no space\r\n\r\n")) throw new Error("wrong");
 * ```
 *
 * @param target The request target (`/room?favored`, `http://host?x`...).
 * @param options The host, more header lines, the key.
 * @returns The request's text, up to and with the blank line.
 */
export function handshakeRequest(
  target: string,
  options: HandshakeOptions,
): string {
  const request = libHandshakeRequest(target, {
    host: options.host,
    key: options.key ?? randomKey(),
  });
  // The lib's request ends with its blank line: the raw lines go before it.
  const lines = (options.headers ?? []).map((line) => `${line}\r\n`).join("");
  return request.slice(0, -2) + lines + "\r\n";
}
