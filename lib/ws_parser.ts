/**
 * An incremental parser of a WebSocket server's byte stream (RFC 6455 5),
 * {@linkcode FrameParser}: frames as they arrive, however the stream is
 * cut, and what a client must refuse.
 *
 * Pure: bytes in, frames out.
 *
 * ```ts
 * import { encodeFrame, OP_BINARY } from "./ws_frame.ts";
 * import { FrameParser } from "./ws_parser.ts";
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

import { OP_CONT } from "./ws_frame.ts";

/** The largest frame or message a {@linkcode FrameParser} takes by default. */
export const MAX_FRAME = 1 << 24;

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
 * import { OP_TEXT } from "./ws_frame.ts";
 * import { FrameParser } from "./ws_parser.ts";
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
