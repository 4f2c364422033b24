/**
 * The text of the WebSocket-free fallback transport: Server-Sent Events down,
 * one POST per frame up. A peer on it is the same protocol peer as on a
 * WebSocket; only the framing differs:
 *
 * - the stream's first event is `event: session` whose data is the session
 *   id (and whose `id:` field carries it too, so that a browser's
 *   `EventSource` sends it back as `Last-Event-ID` when it reconnects);
 * - each server frame is a default event whose data is the base64 of the
 *   protobuf `Message` bytes a WebSocket peer would get;
 * - a close is `event: close` with `data: {"code":N,"reason":"..."}`, after
 *   which the stream ends;
 * - comment lines keep a silent stream alive through proxies.
 *
 * This module writes those events and reads them back (for clients), and
 * makes session ids. Pure: no I/O.
 *
 * @module
 */

/** Bytes of randomness in a session id: 128 bits. */
const SESSION_ID_BYTES = 16;

const _B64URL = /^[A-Za-z0-9_-]{22,64}$/;

/**
 * A new session id: 128 random bits in base64url (22 characters). On a
 * cluster node, the node's id (16 hex digits) goes in front of them (32
 * characters): another node that gets a request for the session knows
 * where it lives.
 *
 * @param home The id of the node that holds the session, on a cluster.
 * @returns The id.
 * @throws {RangeError} When `home` is not 16 hex digits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isSessionId, newSessionId, sessionHome } from "./sse.ts";
 * const id = newSessionId();
 * assert.equal(id.length, 22);
 * assert.ok(isSessionId(id));
 * assert.equal(sessionHome(newSessionId("0123456789abcdef")), "0123456789abcdef");
 * assert.equal(sessionHome(id), undefined);
 * ```
 */
export function newSessionId(home?: string): string {
  const random = crypto.getRandomValues(new Uint8Array(SESSION_ID_BYTES));
  if (home === undefined) return _base64url(random);
  if (!/^[0-9a-f]{16}$/.test(home)) {
    throw new RangeError(
      `Cannot make a session id: the node id ${home} is not 16 hex digits`,
    );
  }
  const bytes = new Uint8Array(8 + SESSION_ID_BYTES);
  for (let i = 0; i < 8; i++) {
    bytes[i] = parseInt(home.slice(2 * i, 2 * i + 2), 16);
  }
  bytes.set(random, 8);
  return _base64url(bytes);
}

/**
 * The node that holds a session, when its id names one.
 *
 * @param id A session id.
 * @returns The node's id (16 hex digits), or `undefined`.
 */
export function sessionHome(id: string): string | undefined {
  if (id.length !== 32 || !isSessionId(id)) return undefined;
  const bytes = unbase64(id.replace(/-/g, "+").replace(/_/g, "/"));
  return Array.from(
    bytes.subarray(0, 8),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

function _base64url(bytes: Uint8Array): string {
  return base64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

/**
 * Whether a string has the shape of a session id (base64url, 22 to 64
 * characters), before looking it up.
 *
 * @param text The string.
 * @returns True when it may be a session id.
 */
export function isSessionId(text: string): boolean {
  return _B64URL.test(text);
}

/**
 * Standard base64 (with padding) of bytes.
 *
 * @param bytes The bytes.
 * @returns The base64 text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { base64 } from "./sse.ts";
 * assert.equal(base64(new Uint8Array([0x08, 0x01])), "CAE=");
 * ```
 */
export function base64(bytes: Uint8Array): string {
  return _NATIVE ? (bytes as _Base64Bytes).toBase64() : portableBase64(bytes);
}

/** The base64 methods of `Uint8Array` (ES2026; Deno 2.9, recent browsers). */
type _FromBase64 = typeof Uint8Array & {
  fromBase64?: (text: string) => Uint8Array<ArrayBuffer>;
};
type _Base64Bytes = Uint8Array & { toBase64(): string };
const _NATIVE =
  typeof (Uint8Array.prototype as Partial<_Base64Bytes>).toBase64 ===
    "function";
const _ALPHABET =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/**
 * Standard base64 (with padding) without `Uint8Array.prototype.toBase64`,
 * for runtimes that lack it: three bytes to four characters.
 *
 * @param bytes The bytes.
 * @returns The base64 text, as {@linkcode base64} gives it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { portableBase64 } from "./sse.ts";
 * assert.equal(portableBase64(new Uint8Array([0x08, 0x01])), "CAE=");
 * ```
 */
export function portableBase64(bytes: Uint8Array): string {
  const a = _ALPHABET;
  const n = bytes.length;
  let s = "";
  let i = 0;
  for (; i + 2 < n; i += 3) {
    const v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    s += a[v >> 18] + a[(v >> 12) & 63] + a[(v >> 6) & 63] + a[v & 63];
  }
  if (i + 1 === n) {
    const v = bytes[i] << 16;
    s += a[v >> 18] + a[(v >> 12) & 63] + "==";
  } else if (i + 2 === n) {
    const v = (bytes[i] << 16) | (bytes[i + 1] << 8);
    s += a[v >> 18] + a[(v >> 12) & 63] + a[(v >> 6) & 63] + "=";
  }
  return s;
}

/**
 * Bytes of standard base64.
 *
 * @param text The base64 text.
 * @returns The bytes.
 * @throws {SyntaxError} When the text is not base64.
 */
export function unbase64(text: string): Uint8Array<ArrayBuffer> {
  const from = (Uint8Array as _FromBase64).fromBase64;
  let s: string;
  try {
    if (from !== undefined) return from(text);
    s = atob(text);
  } catch {
    throw new SyntaxError("Cannot decode the event: its data is not base64");
  }
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * The session event that opens a stream.
 *
 * @param id The session id.
 * @returns The event's text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sessionEvent } from "./sse.ts";
 * assert.equal(sessionEvent("abc"), "event: session\nid: abc\ndata: abc\n\n");
 * ```
 */
export function sessionEvent(id: string): string {
  return `event: session\nid: ${id}\ndata: ${id}\n\n`;
}

/**
 * The event that carries one server frame.
 *
 * @param frame The protobuf `Message` bytes.
 * @returns The event's text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { frameEvent } from "./sse.ts";
 * assert.equal(frameEvent(new Uint8Array([0x08, 0x01])), "data: CAE=\n\n");
 * ```
 */
export function frameEvent(frame: Uint8Array): string {
  return `data: ${base64(frame)}\n\n`;
}

/**
 * The event that closes a stream.
 *
 * @param code The close code (the WebSocket peer's would be the same).
 * @param reason The close reason.
 * @returns The event's text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeEvent } from "./sse.ts";
 * assert.equal(
 *   closeEvent(4742, "Too many missed heartbeats"),
 *   'event: close\ndata: {"code":4742,"reason":"Too many missed heartbeats"}\n\n',
 * );
 * ```
 */
export function closeEvent(code: number, reason: string): string {
  // JSON escapes line breaks: the data stays on one line.
  return `event: close\ndata: ${JSON.stringify({ code, reason })}\n\n`;
}

/** A comment that keeps a silent stream alive through proxies. */
export const KEEP_ALIVE = ": keep-alive\n\n";

/** One event read from a stream. */
export interface SseEvent {
  /** The event's type: `message` when the stream named none. */
  event: string;
  /** Its data lines, joined with line feeds. */
  data: string;
  /** Its `id:` field, when it had one. */
  id: string | undefined;
}

/**
 * Reads events out of a stream's text, fed in chunks cut anywhere, as the
 * HTML standard's event-stream interpretation does (comments skipped, `data`
 * lines joined, CR, LF and CRLF line ends).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SseParser } from "./sse.ts";
 * const parser = new SseParser();
 * assert.deepEqual(parser.push("event: session\ndata: ab"), []);
 * assert.deepEqual(parser.push("c\n\n: keep-alive\n\ndata: CAE=\n\n"), [
 *   { event: "session", data: "abc", id: undefined },
 *   { event: "message", data: "CAE=", id: undefined },
 * ]);
 * ```
 */
export class SseParser {
  #buffer = "";
  #event = "";
  #data: string[] = [];
  #id: string | undefined = undefined;
  #afterCr = false;

  /**
   * Feeds text and returns the events it completed.
   *
   * @param text The next chunk of the stream.
   * @returns The events completed by it, in order.
   */
  push(text: string): SseEvent[] {
    const events: SseEvent[] = [];
    let buffer = this.#buffer + text;
    // A CR ended the last line: an LF right after it belongs to it.
    if (this.#afterCr && buffer.startsWith("\n")) buffer = buffer.slice(1);
    this.#afterCr = false;
    for (;;) {
      const end = buffer.search(/[\r\n]/);
      if (end === -1) break;
      this.#line(buffer.slice(0, end), events);
      if (buffer[end] === "\r") {
        if (end + 1 === buffer.length) {
          this.#afterCr = true;
          buffer = "";
          break;
        }
        buffer = buffer.slice(end + (buffer[end + 1] === "\n" ? 2 : 1));
      } else buffer = buffer.slice(end + 1);
    }
    this.#buffer = buffer;
    return events;
  }

  #line(line: string, events: SseEvent[]): void {
    if (line === "") {
      if (this.#data.length > 0) {
        events.push({
          event: this.#event || "message",
          data: this.#data.join("\n"),
          id: this.#id,
        });
      }
      this.#event = "";
      this.#data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.#event = value;
    else if (field === "data") this.#data.push(value);
    else if (field === "id" && !value.includes("\0")) this.#id = value;
  }
}
