/**
 * Seeded input generators for the fuzzer: random protocol messages, random
 * protobuf-shaped bytes, mutations of valid frames, and WebSocket frames
 * with any opcode, flag, mask and (false) length.
 *
 * @module
 */

import {
  encodeFrame,
  OP_BINARY,
  OP_CLOSE,
  OP_CONT,
  OP_PING,
  OP_PONG,
  OP_TEXT,
} from "../dev/bad_frames.ts";
import type { Rng } from "../dev/rng.ts";
import { encodeMessage, type Message } from "../lib/netflux/wire.ts";

const EDGE_U32 = [0, 1, 2, 127, 128, 16383, 16384, 0x7fffffff, 0x80000000];

/** A uint32 id: small ones (so that groups meet), edges, or any. */
export function randomId(rng: Rng, small = 16): number {
  const r = rng.float();
  if (r < 0.7) return rng.int(small);
  if (r < 0.85) return rng.pick(EDGE_U32);
  return rng.next();
}

/**
 * A random, valid protocol message.
 *
 * @param rng The random source.
 * @param recipients Signaling ids worth addressing (seen in content).
 * @returns The message.
 */
export function randomMessage(
  rng: Rng,
  recipients: readonly number[] = [],
): Message {
  switch (rng.int(10)) {
    case 0:
    case 1:
      return { type: "heartbeat", heartbeat: rng.chance(0.8) };
    case 2:
      return { type: "connected", connected: rng.chance(0.5) };
    case 3:
    case 4:
    case 5: {
      const members: number[] = [];
      const n = rng.chance(0.05) ? rng.int(300) : rng.int(5);
      for (let i = 0; i < n; i++) members.push(randomId(rng));
      return { type: "connect", connect: { id: randomId(rng), members } };
    }
    default:
      return {
        type: "content",
        content: {
          senderId: rng.chance(0.7) ? 0 : randomId(rng),
          recipientId: recipients.length > 0 && rng.chance(0.6)
            ? rng.pick(recipients)
            : rng.chance(0.5)
            ? 0
            : randomId(rng),
          lastData: rng.chance(0.1),
          data: rng.bytes(rng.size(600)),
        },
      };
  }
}

function _varint(out: number[], v: number): void {
  // Up to 2^53: enough for any length or field the fuzzer writes.
  while (v > 0x7f) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

function _fields(rng: Rng, out: number[], depth: number): void {
  const n = rng.int(5);
  for (let i = 0; i < n; i++) {
    const field = rng.chance(0.8) ? 1 + rng.int(5) : 1 + rng.int(1000);
    const wire = rng.pick([0, 0, 0, 2, 2, 2, 1, 5, 3]);
    _varint(out, field * 8 + wire);
    switch (wire) {
      case 0:
        if (rng.chance(0.1)) {
          for (let k = 0; k < 9; k++) out.push(0xff);
          out.push(1);
        } else _varint(out, randomId(rng, 4));
        break;
      case 1:
      case 5:
        for (let k = 0; k < (wire === 1 ? 8 : 4); k++) out.push(rng.int(256));
        break;
      case 2: {
        const inner: number[] = [];
        if (depth > 0 && rng.chance(0.6)) _fields(rng, inner, depth - 1);
        else for (const b of rng.bytes(rng.size(40))) inner.push(b);
        _varint(out, inner.length);
        for (const b of inner) out.push(b);
        break;
      }
      case 3:
        if (depth > 0) _fields(rng, out, depth - 1);
        _varint(out, field * 8 + 4);
    }
  }
}

/**
 * Well-formed protobuf with random fields and wire types: valid messages in
 * unusual encodings (unpacked, reordered, repeated, unknown fields) and
 * schema errors (a known field with the wrong wire type).
 *
 * @param rng The random source.
 * @returns The bytes.
 */
export function randomProto(rng: Rng): Uint8Array {
  const out: number[] = [];
  _fields(rng, out, 3);
  return new Uint8Array(out);
}

/**
 * Random bytes, mostly short.
 *
 * @param rng The random source.
 * @returns The bytes.
 */
export function randomBytes(rng: Rng): Uint8Array {
  return rng.bytes(rng.size(1024));
}

const INTERESTING = [0x00, 0x01, 0x08, 0x12, 0x1a, 0x20, 0x7f, 0x80, 0xff];

/**
 * Applies 1 to 4 random mutations: bit flips, interesting bytes, inserted,
 * deleted or duplicated ranges, truncation, over-long varints, huge lengths,
 * and splices with `other`.
 *
 * @param rng The random source.
 * @param input The bytes to mutate (not changed).
 * @param other Another input to splice in.
 * @returns The mutated bytes.
 */
export function mutate(
  rng: Rng,
  input: Uint8Array,
  other?: Uint8Array,
): Uint8Array {
  let b = Array.from(input);
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(b.length + 1);
    switch (rng.int(9)) {
      case 0:
        if (b.length > 0) b[at % b.length] ^= 1 << rng.int(8);
        break;
      case 1:
        if (b.length > 0) b[at % b.length] = rng.pick(INTERESTING);
        break;
      case 2:
        b.splice(at, 0, ...rng.bytes(1 + rng.int(8)));
        break;
      case 3:
        b.splice(at, 1 + rng.int(8));
        break;
      case 4:
        b = b.slice(0, at);
        break;
      case 5: {
        const len = 1 + rng.int(16);
        b.splice(at, 0, ...b.slice(at, at + len));
        break;
      }
      case 6: // a varint of 10 or 11 bytes
        b.splice(at, 0, ...new Array(9 + rng.int(2)).fill(0xff), 0x01);
        break;
      case 7: { // a length prefix far past the end
        const out: number[] = [];
        _varint(out, rng.chance(0.5) ? 0xffffffff : b.length + 1 + rng.int(64));
        b.splice(at, 0, ...out);
        break;
      }
      case 8:
        if (other !== undefined) {
          b = [...b.slice(0, at), ...other.subarray(rng.int(other.length + 1))];
        }
    }
  }
  return new Uint8Array(b);
}

/**
 * A decoder input: random bytes, random protobuf, a valid message, or a
 * mutation of one (`kind` says which).
 *
 * @param rng The random source.
 * @returns The input and its kind.
 */
export function decoderInput(
  rng: Rng,
): { kind: "random" | "proto" | "valid" | "mutated"; bytes: Uint8Array } {
  const r = rng.float();
  if (r < 0.15) return { kind: "random", bytes: randomBytes(rng) };
  if (r < 0.4) return { kind: "proto", bytes: randomProto(rng) };
  const valid = encodeMessage(randomMessage(rng));
  if (r < 0.55) return { kind: "valid", bytes: valid };
  const other = rng.chance(0.3)
    ? encodeMessage(randomMessage(rng))
    : randomProto(rng);
  return { kind: "mutated", bytes: mutate(rng, valid, other) };
}

/**
 * Bytes to write after a successful handshake: valid frames in odd shapes
 * (fragments, pings) and broken ones (reserved opcodes and bits, unmasked,
 * control frames too long, bad close codes, false lengths, garbage).
 *
 * @param rng The random source.
 * @returns The bytes.
 */
export function rawFrames(rng: Rng): Uint8Array {
  const message = () => encodeMessage(randomMessage(rng));
  switch (rng.int(12)) {
    case 0: // fragmented binary message
    {
      const m = message();
      const cut = rng.int(m.length + 1);
      return _concat(
        encodeFrame(OP_BINARY, m.subarray(0, cut), { fin: false }),
        rng.chance(0.3)
          ? encodeFrame(OP_PING, rng.bytes(rng.int(10)))
          : new Uint8Array(),
        encodeFrame(OP_CONT, m.subarray(cut)),
      );
    }
    case 1: // continuation without a start, or a start never finished
      return encodeFrame(rng.chance(0.5) ? OP_CONT : OP_BINARY, message(), {
        fin: rng.chance(0.5),
      });
    case 2: // reserved opcodes
      return encodeFrame(
        rng.pick([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]),
        message(),
      );
    case 3: // reserved bits
      return encodeFrame(OP_BINARY, message(), { rsv: 1 + rng.int(7) });
    case 4: // unmasked
      return encodeFrame(OP_BINARY, message(), { mask: false });
    case 5: // ping, pong, possibly too long for a control frame
      return encodeFrame(
        rng.chance(0.5) ? OP_PING : OP_PONG,
        rng.bytes(rng.chance(0.8) ? rng.int(126) : 126 + rng.int(200)),
      );
    case 6: { // close with any code and reason, or a 1-byte payload
      const code = rng.pick([
        0,
        999,
        1000,
        1004,
        1005,
        1006,
        1015,
        2999,
        3000,
        4743,
        5000,
        65535,
      ]);
      const reason = rng.bytes(rng.int(rng.chance(0.9) ? 40 : 200));
      const payload = rng.chance(0.1)
        ? new Uint8Array([code >> 8])
        : _concat(new Uint8Array([code >> 8, code & 0xff]), reason);
      return encodeFrame(OP_CLOSE, payload);
    }
    case 7: // text with invalid UTF-8
      return encodeFrame(OP_TEXT, new Uint8Array([0xc3, 0x28, 0xff, 0xfe]));
    case 8: // declared length longer than what follows
      return encodeFrame(OP_BINARY, message(), {
        length: rng.chance(0.5) ? 0x7fffffff : 1 << 16,
      });
    case 9: // garbage
      return rng.bytes(1 + rng.int(64));
    default: // a few valid frames in a row
    {
      const parts: Uint8Array[] = [];
      for (let i = 1 + rng.int(4); i > 0; i--) {
        parts.push(encodeFrame(OP_BINARY, message()));
      }
      return _concat(...parts);
    }
  }
}

function _concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

const KEY_CHARS =
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/%";

/**
 * A request target: mostly a few shared keys (so that groups form), else a
 * random key (empty, over 512 characters, percent-encoded, odd characters),
 * with a random query string.
 *
 * @param rng The random source.
 * @returns The target, starting with `/`.
 */
export function randomTarget(rng: Rng): string {
  let key: string;
  const r = rng.float();
  if (r < 0.75) key = `room${rng.int(8)}`;
  else if (r < 0.8) key = "";
  else if (r < 0.85) key = "k".repeat(500 + rng.int(30));
  else if (r < 0.9) {
    key = rng.pick(["healthz", "readyz", "metrics", "a/b", "%2F%00", "a%20b"]);
  } else {
    key = "";
    for (let n = 1 + rng.size(40); n > 0; n--) key += rng.pick([...KEY_CHARS]);
    key = key.replace(/%(?![0-9A-Fa-f]{2})/g, "%25");
  }
  const q = rng.float();
  const query = q < 0.7
    ? ""
    : q < 0.8
    ? "?favored"
    : q < 0.85
    ? "?favored=false&x=1"
    : q < 0.9
    ? "?"
    : `?${
      rng.pick(["a=%ZZ", "favored&favored", "=&&=", "x=" + "y".repeat(300)])
    }`;
  return `/${key}${query}`;
}
