/**
 * The WebSocket opening handshake (RFC 6455 4), as a client makes it by
 * hand: the request ({@linkcode handshakeRequest}), the end and the parse
 * of the response head, and the client's checks of a `101` answer
 * ({@linkcode upgradeError}).
 *
 * Pure: text and bytes in and out. The only outside things it uses are Web
 * Crypto's random bytes (keys) and SHA-1 (the accept check).
 *
 * @module
 */

/** The GUID that a server appends to the key it hashes (RFC 6455 1.3). */
const _GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

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
 * import { handshakeRequest } from "./ws_handshake.ts";
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
 * import { randomKey } from "./ws_handshake.ts";
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
 * import { websocketAccept } from "./ws_handshake.ts";
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
 * import { headEnd } from "./ws_handshake.ts";
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
 * import { parseResponseHead } from "./ws_handshake.ts";
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
 * import { parseResponseHead, upgradeError } from "./ws_handshake.ts";
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
