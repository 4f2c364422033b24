/**
 * A small proto3 codec for the three messages of `proto/sigver.proto`.
 *
 * The decoder is tolerant exactly as the protocol asks (fields in any order,
 * unknown fields skipped by wire type, packed and unpacked `members`, last
 * scalar wins, last `oneof` member decides the type) and strict everywhere
 * else: a truncated field, a varint longer than 10 bytes, a wire type that
 * does not match a known field or a field that overruns its enclosing message
 * throws a `SyntaxError`. It never allocates more than its input.
 *
 * @module
 */

/** A piece of signaling data relayed between a joining peer and a member. */
export interface Content {
  /** Signaling id of the sender (0: the member side). */
  senderId: number;
  /** Signaling id of the recipient (0: the member side). */
  recipientId: number;
  /** The last message of this direction: forward it, then stop. */
  lastData: boolean;
  /** Opaque payload (an offer, an answer, an ICE candidate...). */
  data: Uint8Array;
}

/** What a peer says about itself when it asks to be a member. */
export interface GroupData {
  /** The peer's id inside its group. */
  id: number;
  /** Ids of the group members the peer is connected to. */
  members: number[];
}

/** One protocol message: exactly one of the `oneof type` members. */
export type Message =
  | { type: "heartbeat"; heartbeat: boolean }
  | { type: "content"; content: Content }
  | { type: "connect"; connect: GroupData }
  | { type: "connected"; connected: boolean };

/** Type tags of a decoded frame, see {@linkcode FrameReader.type}. */
export const TYPE_NONE = 0;
/** `heartbeat` (field 1). */
export const TYPE_HEARTBEAT = 1;
/** `content` (field 2). */
export const TYPE_CONTENT = 2;
/** `connect` (field 3). */
export const TYPE_CONNECT = 3;
/** `connected` (field 4). */
export const TYPE_CONNECTED = 4;

const EMPTY = new Uint8Array(0);
// Protobuf-es bounds nested group skipping at 100 levels of messages and
// groups; the same bound keeps our skip loop's stack small.
const MAX_DEPTH = 100;

function _fail(what: string): never {
  throw new SyntaxError(`Cannot decode message: ${what}`);
}

/**
 * A reusable, allocation-free decoder of one `Message` frame.
 *
 * The server decodes every incoming frame into one instance; `content.data`
 * is kept as a range of the input (`dataStart`, `dataEnd`) instead of a copy.
 *
 * @example Read a heartbeat
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameReader, TYPE_HEARTBEAT } from "./wire.ts";
 * const reader = new FrameReader();
 * reader.read(new Uint8Array([0x08, 0x01]));
 * assert.equal(reader.type, TYPE_HEARTBEAT);
 * assert.equal(reader.flag, true);
 * ```
 */
export class FrameReader {
  /** The last frame read. */
  buf: Uint8Array = EMPTY;
  /** One of the `TYPE_*` tags; `TYPE_NONE` when no oneof member was seen. */
  type = TYPE_NONE;
  /** Value of `heartbeat` or `connected`. */
  flag = false;
  /** `content.senderId`. */
  senderId = 0;
  /** `content.recipientId`. */
  recipientId = 0;
  /** `content.lastData`. */
  lastData = false;
  /** Start of `content.data` in {@linkcode FrameReader.buf}. */
  dataStart = 0;
  /** End of `content.data` in {@linkcode FrameReader.buf}. */
  dataEnd = 0;
  /** `connect.id`. */
  id = 0;
  /** `connect.members`: a new array for every `connect` read. */
  members: number[] = [];

  #pos = 0;
  #hi = 0;

  /**
   * Decodes `buf` into this reader's fields.
   *
   * @param buf One binary WebSocket frame.
   * @throws {SyntaxError} When the frame is not a valid `Message`.
   */
  read(buf: Uint8Array): void {
    this.buf = buf;
    this.type = TYPE_NONE;
    this.#pos = 0;
    const end = buf.length;
    while (this.#pos < end) {
      const tag = this.#tag(end);
      const field = tag >>> 3;
      const wire = tag & 7;
      switch (field) {
        case 1:
        case 4:
          if (wire !== 0) {
            _fail(`wire type ${wire} does not match field ${field}`);
          }
          this.flag = this.#bool(end);
          this.type = field === 1 ? TYPE_HEARTBEAT : TYPE_CONNECTED;
          break;
        case 2:
        case 3: {
          if (wire !== 2) {
            _fail(`wire type ${wire} does not match field ${field}`);
          }
          const stop = this.#length(end);
          if (field === 2) {
            if (this.type !== TYPE_CONTENT) {
              this.type = TYPE_CONTENT;
              this.senderId =
                this.recipientId =
                this.dataStart =
                this.dataEnd =
                  0;
              this.lastData = false;
            }
            this.#content(stop);
          } else {
            if (this.type !== TYPE_CONNECT) {
              this.type = TYPE_CONNECT;
              this.id = 0;
              this.members = [];
            }
            this.#groupData(stop);
          }
          break;
        }
        default:
          this.#skip(wire, field, end, MAX_DEPTH - 1);
      }
    }
  }

  /** `content.data` as a view of the frame (no copy). */
  get data(): Uint8Array {
    return this.buf.subarray(this.dataStart, this.dataEnd);
  }

  #content(end: number): void {
    while (this.#pos < end) {
      const tag = this.#tag(end);
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field >= 1 && field <= 4) {
        const expected = field === 4 ? 2 : 0;
        if (wire !== expected) {
          _fail(`wire type ${wire} does not match field ${field}`);
        }
      }
      switch (field) {
        case 1:
          this.senderId = this.#varint(end);
          break;
        case 2:
          this.recipientId = this.#varint(end);
          break;
        case 3:
          this.lastData = this.#bool(end);
          break;
        case 4:
          this.dataEnd = this.#length(end);
          this.dataStart = this.#pos;
          this.#pos = this.dataEnd;
          break;
        default:
          this.#skip(wire, field, end, MAX_DEPTH - 2);
      }
    }
    if (this.#pos !== end) _fail("field overruns its message");
  }

  #groupData(end: number): void {
    while (this.#pos < end) {
      const tag = this.#tag(end);
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 1) {
        if (wire !== 0) _fail(`wire type ${wire} does not match field 1`);
        this.id = this.#varint(end);
      } else if (field === 2 && wire === 0) {
        this.members.push(this.#varint(end));
      } else if (field === 2 && wire === 2) {
        const stop = this.#length(end);
        while (this.#pos < stop) this.members.push(this.#varint(stop));
      } else if (field === 2) {
        _fail(`wire type ${wire} does not match field 2`);
      } else {
        this.#skip(wire, field, end, MAX_DEPTH - 2);
      }
    }
    if (this.#pos !== end) _fail("field overruns its message");
  }

  /** Reads a varint; returns its low 32 bits and keeps bits 32-63 in #hi. */
  #varint(end: number): number {
    const buf = this.buf;
    let pos = this.#pos;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) _fail("truncated varint");
      const b = buf[pos++];
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi = (b & 0x70) >> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) {
        this.#pos = pos;
        this.#hi = hi;
        return lo >>> 0;
      }
    }
    return _fail("varint longer than 10 bytes");
  }

  #bool(end: number): boolean {
    return this.#varint(end) !== 0 || this.#hi !== 0;
  }

  /** Reads a length prefix and returns where the delimited bytes end. */
  #length(end: number): number {
    const len = this.#varint(end);
    const stop = this.#pos + len;
    if (stop > end) _fail("truncated length-delimited field");
    return stop;
  }

  #tag(end: number): number {
    const start = this.#pos;
    const tag = this.#varint(end);
    const size = this.#pos - start;
    if (size > 5 || (size === 5 && this.buf[this.#pos - 1] > 0x0f)) {
      _fail("tag overflows uint32");
    }
    if (tag >>> 3 === 0 || (tag & 7) > 5) {
      _fail(`illegal tag: field ${tag >>> 3}, wire type ${tag & 7}`);
    }
    return tag;
  }

  #skip(wire: number, field: number, end: number, depth: number): void {
    switch (wire) {
      case 0:
        this.#varint(end);
        return;
      case 1:
      case 5: {
        const stop = this.#pos + (wire === 1 ? 8 : 4);
        if (stop > end) _fail("truncated fixed-width field");
        this.#pos = stop;
        return;
      }
      case 2:
        this.#pos = this.#length(end);
        return;
      case 3: {
        // Groups nest: keep the open field numbers on a small stack.
        const open = [field];
        while (open.length > 0) {
          if (open.length > depth) _fail("groups nested too deep");
          if (this.#pos >= end) _fail("truncated group");
          const tag = this.#tag(end);
          const f = tag >>> 3;
          const w = tag & 7;
          if (w === 4) {
            if (open.pop() !== f) _fail("invalid end group tag");
          } else if (w === 3) open.push(f);
          else this.#skip(w, f, end, depth);
        }
        return;
      }
      default:
        _fail(`unexpected end group tag for field ${field}`);
    }
  }
}

/**
 * Decodes one protocol frame.
 *
 * @param bytes One binary WebSocket frame.
 * @returns The message, or `undefined` when no `oneof` member is set.
 * @throws {SyntaxError} When the bytes are not a valid `Message`.
 *
 * @example Decode a connect request
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMessage, encodeMessage } from "./wire.ts";
 * const bytes = encodeMessage({ type: "connect", connect: { id: 7, members: [3] } });
 * const message = decodeMessage(bytes);
 * assert.deepEqual(message, { type: "connect", connect: { id: 7, members: [3] } });
 * ```
 */
export function decodeMessage(bytes: Uint8Array): Message | undefined {
  const r = new FrameReader();
  r.read(bytes);
  switch (r.type) {
    case TYPE_HEARTBEAT:
      return { type: "heartbeat", heartbeat: r.flag };
    case TYPE_CONNECTED:
      return { type: "connected", connected: r.flag };
    case TYPE_CONTENT:
      return {
        type: "content",
        content: {
          senderId: r.senderId,
          recipientId: r.recipientId,
          lastData: r.lastData,
          data: r.data,
        },
      };
    case TYPE_CONNECT:
      return { type: "connect", connect: { id: r.id, members: r.members } };
    default:
      return undefined;
  }
}

function _varintSize(v: number): number {
  return v < 0x80
    ? 1
    : v < 0x4000
    ? 2
    : v < 0x200000
    ? 3
    : v < 0x10000000
    ? 4
    : 5;
}

function _writeVarint(out: Uint8Array, pos: number, v: number): number {
  while (v > 0x7f) {
    out[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[pos++] = v;
  return pos;
}

function _checkUint32(v: number, name: string): number {
  if (v >>> 0 !== v) {
    throw new RangeError(`Cannot encode ${name}: ${v} is not a uint32`);
  }
  return v;
}

/**
 * Encodes a `content` message: the server's relay path, with no other
 * allocation than the frame itself.
 *
 * @param senderId Signaling id of the sender, 0 for the member side.
 * @param recipientId Signaling id of the recipient, 0 for the member side.
 * @param data The payload, copied into the frame.
 * @param lastData Whether this is the last message of its direction.
 * @returns One binary frame.
 *
 * @example Tell a joiner that its member is gone
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeContent } from "./wire.ts";
 * const frame = encodeContent(0, 42);
 * assert.deepEqual(frame, new Uint8Array([0x12, 0x02, 0x10, 42]));
 * ```
 */
export function encodeContent(
  senderId: number,
  recipientId: number,
  data: Uint8Array = EMPTY,
  lastData = false,
): Uint8Array {
  const inner = _contentSize(senderId, recipientId, data.length, lastData);
  const out = new Uint8Array(1 + _varintSize(inner) + inner);
  _writeContent(out, inner, senderId, recipientId, data, lastData);
  return out;
}

/** Size of a `Content` message's fields (the embedded message's length). */
function _contentSize(
  senderId: number,
  recipientId: number,
  dl: number,
  lastData: boolean,
): number {
  return (senderId === 0 ? 0 : 1 + _varintSize(senderId)) +
    (recipientId === 0 ? 0 : 1 + _varintSize(recipientId)) +
    (lastData ? 2 : 0) + (dl === 0 ? 0 : 1 + _varintSize(dl) + dl);
}

/**
 * Writes the header of `Message{content}` (everything before the payload's
 * bytes) into `out` at `pos`; returns where the payload goes.
 */
function _writeHeader(
  out: Uint8Array,
  pos: number,
  inner: number,
  senderId: number,
  recipientId: number,
  dl: number,
  lastData: boolean,
): number {
  out[pos++] = 0x12;
  pos = _writeVarint(out, pos, inner);
  if (senderId !== 0) {
    out[pos++] = 0x08;
    pos = _writeVarint(out, pos, senderId);
  }
  if (recipientId !== 0) {
    out[pos++] = 0x10;
    pos = _writeVarint(out, pos, recipientId);
  }
  if (lastData) {
    out[pos++] = 0x18;
    out[pos++] = 1;
  }
  if (dl !== 0) {
    out[pos++] = 0x22;
    pos = _writeVarint(out, pos, dl);
  }
  return pos;
}

/** Writes `Message{content}` at the start of `out`, big enough for it. */
function _writeContent(
  out: Uint8Array,
  inner: number,
  senderId: number,
  recipientId: number,
  data: Uint8Array,
  lastData: boolean,
): void {
  const pos = _writeHeader(
    out,
    0,
    inner,
    senderId,
    recipientId,
    data.length,
    lastData,
  );
  if (data.length !== 0) out.set(data, pos);
}

/**
 * Encodes `content` messages into one buffer that it reuses, for a relay
 * that sends each frame before it encodes the next. A new `Uint8Array` per
 * relayed frame costs more than everything else the relay does in
 * JavaScript (an off-heap allocation, zeroed, then garbage). A relay that
 * owns the frame it received can do without the copy of the payload too:
 * see {@linkcode ContentEncoder.encodeInPlace}.
 *
 * @example Relay two frames without allocating either
 * ```ts
 * import assert from "node:assert/strict";
 * import { ContentEncoder, encodeContent } from "./wire.ts";
 * const encoder = new ContentEncoder();
 * const data = new Uint8Array([1, 2, 3]);
 * assert.deepEqual(encoder.encode(7, 0, data), encodeContent(7, 0, data));
 * // The next frame reuses the buffer: the first one is overwritten.
 * assert.deepEqual(encoder.encode(0, 9, data), encodeContent(0, 9, data));
 * ```
 */
export class ContentEncoder {
  #buf = new Uint8Array(1024);

  /**
   * Encodes one frame, the same bytes as {@linkcode encodeContent}.
   *
   * @param senderId Signaling id of the sender, 0 for the member side.
   * @param recipientId Signaling id of the recipient, 0 for the member side.
   * @param data The payload, copied into the frame.
   * @returns The frame: a view of the encoder's buffer, valid until the next
   * call. Send or copy it at once.
   */
  encode(senderId: number, recipientId: number, data: Uint8Array): Uint8Array {
    const inner = _contentSize(senderId, recipientId, data.length, false);
    const size = 1 + _varintSize(inner) + inner;
    let out = this.#buf;
    if (out.length < size) {
      out = this.#buf = new Uint8Array(Math.max(size, out.length * 2));
    }
    _writeContent(out, inner, senderId, recipientId, data, false);
    return out.subarray(0, size);
  }

  /**
   * Encodes one frame whose payload is `buf[start, end)`: the same bytes as
   * {@linkcode encodeContent} of that payload. When the new header fits in
   * front of the payload, it is written there, over `buf[0, start)`, and the
   * frame is a view of `buf`: the payload is not copied. A received frame
   * leaves that room when its own header is at least as long (a member's
   * answer to its joiner carries the joiner's id both ways; a joiner's
   * message to its member gains the sender's id and does not fit). Otherwise
   * it is {@linkcode ContentEncoder.encode}.
   *
   * @param senderId Signaling id of the sender, 0 for the member side.
   * @param recipientId Signaling id of the recipient, 0 for the member side.
   * @param buf The bytes around the payload; `buf[0, start)` may be
   * overwritten.
   * @param start Where the payload starts in `buf`.
   * @param end Where the payload ends in `buf`.
   * @returns The frame: `buf` itself, a view of it or of the encoder's
   * buffer, valid until `buf` changes or the next call. Send or copy it at
   * once.
   *
   * @example Relay a received frame without copying its payload
   * ```ts
   * import assert from "node:assert/strict";
   * import { ContentEncoder, encodeContent, FrameReader } from "./wire.ts";
   * const data = new Uint8Array([1, 2, 3]);
   * const received = encodeContent(0, 42, data);
   * const reader = new FrameReader();
   * reader.read(received);
   * const frame = new ContentEncoder().encodeInPlace(
   *   0, 42, reader.buf, reader.dataStart, reader.dataEnd);
   * assert.deepEqual(frame, encodeContent(0, 42, data));
   * assert.equal(frame.buffer, received.buffer);
   * ```
   */
  encodeInPlace(
    senderId: number,
    recipientId: number,
    buf: Uint8Array,
    start: number,
    end: number,
  ): Uint8Array {
    const dl = end - start;
    const inner = _contentSize(senderId, recipientId, dl, false);
    const header = 1 + _varintSize(inner) + inner - dl;
    if (header > start) {
      return this.encode(senderId, recipientId, buf.subarray(start, end));
    }
    const at = start - header;
    _writeHeader(buf, at, inner, senderId, recipientId, dl, false);
    // The whole of `buf` (a frame with the same header): no new view.
    return at === 0 && end === buf.length ? buf : buf.subarray(at, end);
  }
}

/**
 * Encodes one protocol message the way protobuf-es does: fields in number
 * order, zero values left out except the `oneof` member, `members` packed.
 *
 * @param message The message to encode.
 * @returns One binary frame.
 * @throws {RangeError} When an id is not a uint32.
 *
 * @example Encode a heartbeat
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeMessage } from "./wire.ts";
 * const frame = encodeMessage({ type: "heartbeat", heartbeat: true });
 * assert.deepEqual(frame, new Uint8Array([0x08, 0x01]));
 * ```
 */
export function encodeMessage(message: Message): Uint8Array {
  switch (message.type) {
    case "heartbeat":
      return new Uint8Array([0x08, message.heartbeat ? 1 : 0]);
    case "connected":
      return new Uint8Array([0x20, message.connected ? 1 : 0]);
    case "content": {
      const c = message.content;
      return encodeContent(
        _checkUint32(c.senderId, "senderId"),
        _checkUint32(c.recipientId, "recipientId"),
        c.data,
        c.lastData,
      );
    }
    case "connect": {
      const { id, members } = message.connect;
      _checkUint32(id, "id");
      let packed = 0;
      for (const m of members) packed += _varintSize(_checkUint32(m, "member"));
      const inner = (id === 0 ? 0 : 1 + _varintSize(id)) +
        (members.length === 0 ? 0 : 1 + _varintSize(packed) + packed);
      const out = new Uint8Array(1 + _varintSize(inner) + inner);
      out[0] = 0x1a;
      let pos = _writeVarint(out, 1, inner);
      if (id !== 0) {
        out[pos++] = 0x08;
        pos = _writeVarint(out, pos, id);
      }
      if (members.length !== 0) {
        out[pos++] = 0x12;
        pos = _writeVarint(out, pos, packed);
        for (const m of members) pos = _writeVarint(out, pos, m);
      }
      return out;
    }
    default:
      throw new TypeError(
        `Cannot encode message: unknown type ${
          (message as { type: unknown }).type
        }`,
      );
  }
}
