/**
 * A small typed client of the sigver protocol, for browsers and Deno.
 *
 * It opens the signaling socket of one group, answers the server's
 * heartbeats by itself, asks for membership with
 * {@linkcode SigverClient.connect}, and sends and receives the `content`
 * messages that carry WebRTC offers, answers and ICE candidates between a
 * joining peer and a member. Close codes come out as a typed
 * {@linkcode SigverCloseEvent} and, for the calls they interrupt, as a
 * {@linkcode SigverCloseError}.
 *
 * It depends on nothing but the package's own protobuf codec. Browsers get it
 * as JavaScript from the server itself (`/demo/client.js`, unless the demo is
 * turned off).
 *
 * On a server that hands out TURN credentials, {@linkcode fetchIceServers}
 * gets them for the `RTCPeerConnection`s; on a server that needs access
 * tokens, pass the token to both.
 *
 * @example Join a group as a joining peer
 * ```ts ignore
 * import { SigverClient } from "@coast/sigver/client";
 *
 * await using client = await SigverClient.open("ws://127.0.0.1:8000", "room");
 * client.addEventListener("content", (event) => {
 *   console.log(`from ${event.senderId}: ${event.text()}`);
 * });
 * if (!(await client.connect(1234, []))) {
 *   // Bound to a member: everything sent now goes to it.
 *   client.send(0, JSON.stringify({ offer: "..." }));
 * }
 * ```
 *
 * @module
 */

import { decodeMessage, encodeMessage } from "../lib/netflux/wire.ts";
import { SseSocket } from "./fallback.ts";
import type { IceServer } from "../lib/turn.ts";

import {
  CLOSE_CODES,
  type CloseCodeInfo,
  describeCloseCode,
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
  ERR_KEY,
  ERR_MESSAGE,
  ERR_URL,
} from "../lib/codes.ts";

export type { IceServer };
export {
  CLOSE_CODES,
  type CloseCodeInfo,
  describeCloseCode,
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
  ERR_KEY,
  ERR_MESSAGE,
  ERR_URL,
};

/** How and why a signaling socket closed. */
export interface CloseInfo {
  /** The WebSocket close code. */
  readonly code: number;
  /** The close reason sent with it (may be empty). */
  readonly reason: string;
  /** The code's name, see {@linkcode CLOSE_CODES}. */
  readonly codeName: string;
  /** The code's meaning, see {@linkcode CLOSE_CODES}. */
  readonly meaning: string;
  /** Whether the closing handshake completed. */
  readonly wasClean: boolean;
}

function _closeInfo(
  code: number,
  reason: string,
  wasClean: boolean,
): CloseInfo {
  // Deno reports a failed handshake with code 0 where browsers say 1006.
  if (code === 0) code = 1006;
  const { name, meaning } = describeCloseCode(code);
  return { code, reason, codeName: name, meaning, wasClean };
}

/**
 * The error of a call that the closing of the signaling socket interrupted or
 * prevented: a pending {@linkcode SigverClient.connect}, a
 * {@linkcode SigverClient.send} on a closed client, or a
 * {@linkcode SigverClient.open} that could not open.
 *
 * @example Tell a refused key from other failures
 * ```ts ignore
 * import { ERR_KEY, SigverClient, SigverCloseError } from "@coast/sigver/client";
 * const client = await SigverClient.open("ws://127.0.0.1:8000", "");
 * try {
 *   await client.connect(1, []);
 * } catch (error) {
 *   if (error instanceof SigverCloseError && error.code === ERR_KEY) {
 *     console.log(error.meaning);
 *   }
 * }
 * ```
 */
export class SigverCloseError extends Error implements CloseInfo {
  /** The WebSocket close code. */
  readonly code: number;
  /** The close reason sent with it (may be empty). */
  readonly reason: string;
  /** The code's name, such as `ERR_KEY`. */
  readonly codeName: string;
  /** The code's meaning. */
  readonly meaning: string;
  /** Whether the closing handshake completed. */
  readonly wasClean: boolean;

  /**
   * Creates the error of a close.
   *
   * @param info How the socket closed.
   * @param action What could not be done, as in "Cannot <action>".
   */
  constructor(info: CloseInfo, action = "signal") {
    super(
      `Cannot ${action}: the socket closed with ${info.code} ${info.codeName}${
        info.reason ? ` (${info.reason})` : ""
      }`,
    );
    this.name = "SigverCloseError";
    this.code = info.code;
    this.reason = info.reason;
    this.codeName = info.codeName;
    this.meaning = info.meaning;
    this.wasClean = info.wasClean;
  }
}

/**
 * A `content` message received from the server.
 *
 * A joining peer receives its member's messages with `senderId` 0 and its
 * own signaling id as `recipientId`; a member receives a joining peer's
 * messages with the joiner's signaling id as `senderId` and `recipientId` 0.
 *
 * @example Reply to a joining peer
 * ```ts ignore
 * import { SigverClient } from "@coast/sigver/client";
 * const client = await SigverClient.open("ws://127.0.0.1:8000", "room");
 * client.addEventListener("content", (event) => {
 *   const offer = JSON.parse(event.text());
 *   client.send(event.senderId, JSON.stringify({ answerTo: offer.id }));
 * });
 * ```
 */
export class ContentEvent extends Event {
  /** Signaling id of the sender (0: the member this peer joins). */
  readonly senderId: number;
  /** Signaling id of the recipient (0: this peer as a member). */
  readonly recipientId: number;
  /** `lastData` as received (the server does not forward it: false). */
  readonly lastData: boolean;
  /** The payload. */
  readonly data: Uint8Array;

  /**
   * Creates a `content` event.
   *
   * @param senderId Signaling id of the sender.
   * @param recipientId Signaling id of the recipient.
   * @param data The payload.
   * @param lastData The `lastData` flag received.
   */
  constructor(
    senderId: number,
    recipientId: number,
    data: Uint8Array,
    lastData = false,
  ) {
    super("content");
    this.senderId = senderId;
    this.recipientId = recipientId;
    this.data = data;
    this.lastData = lastData;
  }

  /**
   * The payload decoded as UTF-8.
   *
   * @returns The text.
   */
  text(): string {
    return new TextDecoder().decode(this.data);
  }
}

/**
 * The server's "gone" notice: the other end of a binding closed its socket.
 * On the wire it is a `content` message with no data.
 *
 * @example Tell which side is gone
 * ```ts
 * import assert from "node:assert/strict";
 * import { GoneEvent } from "./mod.ts";
 * const gone = new GoneEvent(0, 42); // as a joining peer receives it
 * assert.equal(gone.peer, "member");
 * assert.equal(gone.signalingId, 42);
 * ```
 */
export class GoneEvent extends Event {
  /** Who is gone: this peer's member, or one of its joining peers. */
  readonly peer: "member" | "joiner";
  /**
   * The signaling id of the binding: this peer's own id when its member is
   * gone, the joining peer's id when a joiner is gone.
   */
  readonly signalingId: number;
  /** `senderId` of the notice (0 when the member is gone). */
  readonly senderId: number;
  /** `recipientId` of the notice (0 when a joiner is gone). */
  readonly recipientId: number;

  /**
   * Creates a `gone` event.
   *
   * @param senderId `senderId` of the notice.
   * @param recipientId `recipientId` of the notice.
   */
  constructor(senderId: number, recipientId: number) {
    super("gone");
    this.senderId = senderId;
    this.recipientId = recipientId;
    this.peer = senderId === 0 ? "member" : "joiner";
    this.signalingId = senderId === 0 ? recipientId : senderId;
  }
}

/**
 * The signaling socket closed; dispatched once per client.
 *
 * @example Explain a close
 * ```ts ignore
 * import { SigverClient } from "@coast/sigver/client";
 * const client = await SigverClient.open("ws://127.0.0.1:8000", "room");
 * client.addEventListener("close", (event) => {
 *   console.log(`closed: ${event.code} ${event.codeName}: ${event.meaning}`);
 * });
 * ```
 */
export class SigverCloseEvent extends Event implements CloseInfo {
  /** The WebSocket close code. */
  readonly code: number;
  /** The close reason sent with it (may be empty). */
  readonly reason: string;
  /** The code's name, such as `ERR_KEY`. */
  readonly codeName: string;
  /** The code's meaning. */
  readonly meaning: string;
  /** Whether the closing handshake completed. */
  readonly wasClean: boolean;

  /**
   * Creates a `close` event.
   *
   * @param info How the socket closed.
   */
  constructor(info: CloseInfo) {
    super("close");
    this.code = info.code;
    this.reason = info.reason;
    this.codeName = info.codeName;
    this.meaning = info.meaning;
    this.wasClean = info.wasClean;
  }

  /**
   * The same close as an error, to throw or reject with.
   *
   * @returns A new {@linkcode SigverCloseError}.
   */
  toError(): SigverCloseError {
    return new SigverCloseError(this);
  }
}

/** The events of a {@linkcode SigverClient}, by type. */
export interface SigverClientEventMap {
  /** A `content` message with data. */
  content: ContentEvent;
  /** A "gone" notice (a `content` message with no data). */
  gone: GoneEvent;
  /** The socket closed. */
  close: SigverCloseEvent;
}

/** Options of {@linkcode SigverClient.open}. */
export interface SigverClientOptions {
  /**
   * Join as a favored (always-on) peer: joining peers are bound to favored
   * members first.
   * @default {false}
   */
  favored?: boolean;
  /**
   * Aborting it before the socket opens rejects `open()` with the signal's
   * reason; aborting it later closes the client (code 1000) and rejects
   * pending `connect()` calls with the reason.
   */
  signal?: AbortSignal;
  /**
   * An access token, for a server that needs one: the socket opens on
   * `/t/<token>/<key>` (see {@linkcode tokenUrl}).
   */
  token?: string;
  /**
   * How to reach the server: `websocket`, `sse` (the WebSocket-free
   * fallback: Server-Sent Events down, POSTs up, same protocol), or `auto`:
   * a WebSocket, and the fallback when a WebSocket can't open (blocked by a
   * proxy, refused, or not open within `fallbackAfter`).
   * @default {"auto"}
   */
  transport?: "auto" | "websocket" | "sse";
  /**
   * With `transport: "auto"`, milliseconds to wait for a WebSocket to open
   * before trying the fallback.
   * @default {5000}
   */
  fallbackAfter?: number;
}

/** What the client drives: a `WebSocket`, or the fallback's `SseSocket`. */
interface _Channel {
  readonly url: string;
  readonly readyState: number;
  binaryType: BinaryType;
  onopen: ((event: Event) => unknown) | null;
  onmessage: ((event: MessageEvent) => unknown) | null;
  onclose: ((event: CloseEvent) => unknown) | null;
  onerror: ((event: Event) => unknown) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** Options of {@linkcode SigverClient.send}. */
export interface SendOptions {
  /**
   * The last message of this direction: the server forwards it, then stops
   * relaying from this side of the binding.
   * @default {false}
   */
  lastData?: boolean;
  /**
   * `senderId` written on the wire. The server replaces it with the
   * binding's signaling id, so it only matters to other servers.
   * @default {0}
   */
  senderId?: number;
}

/**
 * Builds the socket URL of a group: `url` (http and https become ws and
 * wss) with the key appended to its path and `favored` added to its query.
 *
 * The key goes into the path as it is: characters that a URL path cannot
 * hold (space, `?`, `#`, non-ASCII...) are percent-encoded, and the server
 * takes the path as it arrives, so `a b` and `a%20b` name the same group,
 * while `a/b` stays `a/b`.
 *
 * @param url The server's address, such as `ws://host:8000` or `https://host/`.
 * @param key The group key.
 * @param favored Whether to join as a favored peer.
 * @returns The WebSocket URL.
 * @throws {TypeError} When `url` is not a ws, wss, http or https URL.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { groupUrl } from "./mod.ts";
 * assert.equal(
 *   groupUrl("https://example.org/", "my room", true),
 *   "wss://example.org/my%20room?favored",
 * );
 * ```
 */
export function groupUrl(
  url: string | URL,
  key: string,
  favored = false,
): string {
  const u = new URL(url);
  const scheme = { "http:": "ws:", "https:": "wss:" }[u.protocol] ?? u.protocol;
  if (scheme !== "ws:" && scheme !== "wss:") {
    throw new TypeError(
      `Cannot open: ${u.protocol} is not a ws, wss, http or https URL`,
    );
  }
  u.protocol = scheme;
  u.pathname = (u.pathname.endsWith("/") ? u.pathname : u.pathname + "/") +
    key;
  if (favored) u.search = u.search ? `${u.search}&favored` : "favored";
  u.hash = "";
  return u.href;
}

/**
 * The address of a server that needs access tokens, with the token in it:
 * `url` with `t/<token>/` appended to its path. Group URLs built on it
 * ({@linkcode groupUrl}, a Netflux `signalingServer`) come on
 * `/t/<token>/<key>`, as the server expects.
 *
 * @param url The server's address, such as `wss://host` or `https://host/`.
 * @param token The access token.
 * @returns The address with the token, without a trailing `/`.
 * @throws {TypeError} When the token has a character a path segment cannot
 * hold as it is (tokens are made of letters, digits, `.`, `-` and `_`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokenUrl } from "./mod.ts";
 * assert.equal(
 *   tokenUrl("wss://signal.example/", "v1.1700003600..c2ln"),
 *   "wss://signal.example/t/v1.1700003600..c2ln",
 * );
 * ```
 */
export function tokenUrl(url: string | URL, token: string): string {
  if (!/^[A-Za-z0-9._~-]+$/.test(token)) {
    throw new TypeError(
      "Cannot use the token: it holds a character a URL path cannot carry",
    );
  }
  const u = new URL(url);
  u.pathname = (u.pathname.endsWith("/") ? u.pathname : u.pathname + "/") +
    `t/${token}`;
  return u.href;
}

/** Options of {@linkcode fetchIceServers}. */
export interface FetchIceServersOptions {
  /**
   * An access token, for a server that needs one: sent as
   * `Authorization: Bearer <token>`.
   */
  token?: string;
  /**
   * The endpoint's path on the server (its `--ice-servers-path`), appended
   * to the path of `url`.
   * @default {"/ice-servers"}
   */
  path?: string;
  /** Aborts the request. */
  signal?: AbortSignal;
}

/**
 * The error of a {@linkcode fetchIceServers} that the server refused: 401
 * (no valid token), 403 (a token or an origin refused), or another status.
 *
 * @example Ask the backend for a new token when the old one expired
 * ```ts ignore
 * import { fetchIceServers, IceServersError } from "@coast/sigver/client";
 * try {
 *   await fetchIceServers("https://signal.example", { token: "v1...." });
 * } catch (error) {
 *   if (error instanceof IceServersError && error.status === 403) {
 *     // renew the token
 *   }
 * }
 * ```
 */
export class IceServersError extends Error {
  /** The HTTP status of the answer. */
  readonly status: number;

  /**
   * Creates the error of a refused request.
   *
   * @param status The HTTP status.
   * @param text The answer's text (the server's short explanation).
   */
  constructor(status: number, text: string) {
    super(
      `Cannot get the ICE servers: the server answered ${status}${
        text ? ` (${text})` : ""
      }`,
    );
    this.name = "IceServersError";
    this.status = status;
  }
}

function _iceServer(entry: unknown): IceServer {
  const e = entry as Record<string, unknown> | null;
  const urls = typeof e?.urls === "string" ? [e.urls] : e?.urls;
  if (
    !Array.isArray(urls) || !urls.every((u) => typeof u === "string") ||
    (e!.username !== undefined && typeof e!.username !== "string") ||
    (e!.credential !== undefined && typeof e!.credential !== "string")
  ) {
    throw new SyntaxError(
      "Cannot read the ICE servers: an entry is not {urls, username?, credential?}",
    );
  }
  const server: IceServer = { urls };
  if (e!.username !== undefined) server.username = e!.username as string;
  if (e!.credential !== undefined) server.credential = e!.credential as string;
  return server;
}

/**
 * Gets ICE servers with short-lived TURN credentials from a sigver server's
 * `/ice-servers` endpoint, for `new RTCPeerConnection({ iceServers })`.
 * Credentials expire (one hour by default): get fresh ones for each new
 * peer connection, or at least every few minutes.
 *
 * @param url The server's address: `https://host`, `wss://host` (ws and wss
 * become http and https), with the path it is mounted on if any.
 * @param options The token, the endpoint's path and an `AbortSignal`.
 * @returns The ICE servers, or `undefined` when the server hands out none
 * (404: no TURN server configured; 426: no such endpoint).
 * @throws {IceServersError} When the server refuses (401, 403...).
 * @throws {SyntaxError} When the answer is not the expected JSON.
 * @throws {TypeError} When `url` is not a ws, wss, http or https URL, or the
 * network fails (a cross-origin answer without CORS headers fails so too).
 *
 * @example Relay through TURN only, with a token
 * ```ts ignore
 * import { fetchIceServers } from "@coast/sigver/client";
 * const iceServers = await fetchIceServers("https://signal.example", {
 *   token: "v1....",
 * });
 * const pc = new RTCPeerConnection({
 *   iceServers: iceServers ?? [],
 *   iceTransportPolicy: "relay",
 * });
 * ```
 */
export async function fetchIceServers(
  url: string | URL,
  options: FetchIceServersOptions = {},
): Promise<IceServer[] | undefined> {
  const { token, path = "/ice-servers", signal } = options;
  const u = new URL(url);
  const scheme = { "ws:": "http:", "wss:": "https:" }[u.protocol] ??
    u.protocol;
  if (scheme !== "http:" && scheme !== "https:") {
    throw new TypeError(
      `Cannot get the ICE servers: ${u.protocol} is not a ws, wss, http or https URL`,
    );
  }
  const endpoint = new URL(
    u.pathname.replace(/\/$/, "") + (path.startsWith("/") ? path : `/${path}`),
    `${scheme}//${u.host}`,
  );
  const headers: Record<string, string> = { accept: "application/json" };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const response = await fetch(endpoint, { headers, signal });
  if (response.status === 404 || response.status === 426) {
    await response.body?.cancel();
    return undefined;
  }
  if (!response.ok) {
    const text = (await response.text()).trim().slice(0, 200);
    throw new IceServersError(response.status, text);
  }
  const body = await response.json();
  if (!Array.isArray(body?.iceServers)) {
    throw new SyntaxError(
      "Cannot read the ICE servers: the answer has no iceServers list",
    );
  }
  return body.iceServers.map(_iceServer);
}

const _HEARTBEAT = encodeMessage({ type: "heartbeat", heartbeat: true });
/** `WebSocket.OPEN`, which a page without WebSockets does not define. */
const _OPEN = 1;
const _ENCODER = new TextEncoder();

/**
 * One peer's signaling socket to a sigver server.
 *
 * Create it with {@linkcode SigverClient.open}. Listen for `content`,
 * `gone` and `close` events (see {@linkcode SigverClientEventMap}); the
 * client answers heartbeats by itself. Closing it, aborting its signal or
 * disposing of it closes the socket.
 *
 * @example A member answers its joining peers
 * ```ts ignore
 * import { SigverClient } from "@coast/sigver/client";
 *
 * const client = await SigverClient.open("ws://127.0.0.1:8000", "room");
 * console.assert(await client.connect(1, [])); // the first peer is a member
 * client.addEventListener("content", (event) => {
 *   // event.senderId is the joiner's signaling id: reply to it.
 *   client.send(event.senderId, "answer");
 * });
 * client.addEventListener("close", (event) => {
 *   console.log(`closed: ${event.code} ${event.codeName}: ${event.meaning}`);
 * });
 * ```
 */
export class SigverClient extends EventTarget {
  /** The socket's URL. */
  readonly url: string;
  /** The group key. */
  readonly key: string;
  /** Whether the client joined as a favored peer. */
  readonly favored: boolean;
  /** Resolves once the socket has closed, with how it closed. */
  readonly closed: Promise<SigverCloseEvent>;

  #socket: _Channel;
  #pending: {
    resolve: (connected: boolean) => void;
    reject: (error: unknown) => void;
  }[] = [];
  #close: SigverCloseEvent | undefined = undefined;
  #signal: AbortSignal | undefined;
  #onAbort = (): void => this.#abort();

  private constructor(
    socket: _Channel,
    key: string,
    favored: boolean,
    signal: AbortSignal | undefined,
  ) {
    super();
    this.#socket = socket;
    this.url = socket.url;
    this.key = key;
    this.favored = favored;
    this.#signal = signal;
    let resolveClosed!: (event: SigverCloseEvent) => void;
    this.closed = new Promise((resolve) => resolveClosed = resolve);
    socket.onmessage = (event) => this.#onMessage(event);
    socket.onclose = (event) => {
      signal?.removeEventListener("abort", this.#onAbort);
      const close = new SigverCloseEvent(
        _closeInfo(event.code, event.reason, event.wasClean),
      );
      this.#close = close;
      for (const { reject } of this.#pending.splice(0)) {
        reject(new SigverCloseError(close, "connect"));
      }
      this.dispatchEvent(close);
      resolveClosed(close);
    };
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /**
   * Opens the signaling socket of group `key` on the server at `url`.
   *
   * A refused key is reported after the socket opens, as the protocol says:
   * `open()` resolves, then the client closes with {@linkcode ERR_KEY}.
   *
   * @param url The server's address: `ws://host:port`, `wss://...`, or the
   * http(s) address of the same server.
   * @param key The group key (see {@linkcode groupUrl} for its encoding).
   * @param options `favored`, an `AbortSignal` and an access token.
   * @returns The open client.
   * @throws {SigverCloseError} When the socket closes before it opens (an
   * HTTP refusal or an unreachable server: code 1006).
   * @throws {TypeError} When `url` is not a WebSocket or http(s) URL, or the
   * token has a character a URL path cannot carry.
   *
   * @example
   * ```ts ignore
   * import { SigverClient } from "@coast/sigver/client";
   * const client = await SigverClient.open("ws://127.0.0.1:8000", "room", {
   *   favored: true,
   *   signal: AbortSignal.timeout(60_000),
   * });
   * console.log(client.url); // ws://127.0.0.1:8000/room?favored
   * ```
   */
  static async open(
    url: string | URL,
    key: string,
    options: SigverClientOptions = {},
  ): Promise<SigverClient> {
    const { favored = false, signal, token, transport = "auto" } = options;
    if (signal?.aborted) throw signal.reason;
    const base = token === undefined ? url : tokenUrl(url, token);
    const target = groupUrl(base, key, favored);
    if (transport !== "sse") {
      try {
        return await SigverClient.#open(
          () => new WebSocket(target),
          key,
          favored,
          signal,
          transport === "auto" ? options.fallbackAfter ?? 5000 : Infinity,
        );
      } catch (error) {
        // Any WebSocket failure before the open falls back, unless asked
        // not to or aborted.
        if (transport === "websocket" || signal?.aborted) throw error;
      }
    }
    return SigverClient.#open(
      () => new SseSocket(target.replace(/^ws/, "http")),
      key,
      favored,
      signal,
      Infinity,
    );
  }

  static #open(
    create: () => _Channel,
    key: string,
    favored: boolean,
    signal: AbortSignal | undefined,
    timeout: number,
  ): Promise<SigverClient> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    let socket: _Channel;
    try {
      socket = create();
    } catch (error) {
      return Promise.reject(error);
    }
    socket.binaryType = "arraybuffer";
    return new Promise<SigverClient>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const giveUp = (error: unknown) => {
        done();
        socket.onopen = socket.onclose = null;
        socket.close(1000, "Aborted");
        reject(error);
      };
      const onAbort = () => giveUp(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeout !== Infinity) {
        timer = setTimeout(() =>
          giveUp(
            new SigverCloseError(
              _closeInfo(1006, `Not open after ${timeout} ms`, false),
              "open",
            ),
          ), timeout);
      }
      socket.onerror = () => {};
      socket.onclose = (event) => {
        done();
        reject(
          new SigverCloseError(
            _closeInfo(event.code, event.reason, event.wasClean),
            "open",
          ),
        );
      };
      socket.onopen = () => {
        done();
        socket.onopen = null;
        resolve(new SigverClient(socket, key, favored, signal));
      };
    });
  }

  /** Whether the socket is open (not closing or closed). */
  get open(): boolean {
    return this.#socket.readyState === _OPEN;
  }

  /**
   * Asks to be a member of the group: sends `connect{id, members}` and waits
   * for the server's `connected` reply.
   *
   * `true`: this peer is a member (the first one, or connected to a member
   * listed in `members`). `false`: the server bound it to a member; from now
   * on every `send` goes to that member (whatever the recipient id) and the
   * member's replies arrive as `content` events with `senderId` 0.
   *
   * @param id This peer's id inside its group (a uint32, chosen by the peer).
   * @param members Ids of the group members this peer is connected to.
   * @returns Whether this peer is a member.
   * @throws {SigverCloseError} When the socket closes before the reply.
   * @throws {RangeError} When an id is not a uint32.
   *
   * @example
   * ```ts ignore
   * import { SigverClient } from "@coast/sigver/client";
   * const client = await SigverClient.open("ws://127.0.0.1:8000", "room");
   * const member = await client.connect(42, []);
   * ```
   */
  connect(id: number, members: readonly number[] = []): Promise<boolean> {
    let frame: Uint8Array;
    try {
      frame = encodeMessage({
        type: "connect",
        connect: { id, members: [...members] },
      });
      this.#send(frame, "connect");
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<boolean>((resolve, reject) => {
      this.#pending.push({ resolve, reject });
    });
  }

  /**
   * Sends a `content` message.
   *
   * As a joining peer, the message goes to the member this peer is bound to
   * whatever `recipientId` says (use 0). As a member, `recipientId` is the
   * signaling id of one of its joining peers (the `senderId` of their
   * messages).
   *
   * @param recipientId The recipient's signaling id, or 0 for the member.
   * @param data The payload; a string is sent as UTF-8. It must not be empty:
   * an empty payload is the "gone" notice.
   * @param options `lastData`, and the `senderId` to write.
   * @throws {SigverCloseError} When the socket is closed or closing.
   * @throws {TypeError} When `data` is empty.
   * @throws {RangeError} When an id is not a uint32.
   *
   * @example
   * ```ts ignore
   * import { SigverClient } from "@coast/sigver/client";
   * const client = await SigverClient.open("ws://127.0.0.1:8000", "room");
   * if (!(await client.connect(7, []))) {
   *   client.send(0, JSON.stringify({ type: "offer", sdp: "..." }));
   * }
   * ```
   */
  send(
    recipientId: number,
    data: Uint8Array | string,
    options: SendOptions = {},
  ): void {
    const bytes = typeof data === "string" ? _ENCODER.encode(data) : data;
    if (bytes.length === 0) {
      throw new TypeError(
        "Cannot send: the data is empty (an empty content is a gone notice)",
      );
    }
    this.#send(
      encodeMessage({
        type: "content",
        content: {
          senderId: options.senderId ?? 0,
          recipientId,
          lastData: options.lastData ?? false,
          data: bytes,
        },
      }),
      "send",
    );
  }

  /**
   * Closes the socket, rejecting pending `connect()` calls.
   *
   * @param code A close code: 1000 or 3000-4999.
   * @param reason The close reason (at most 123 bytes of UTF-8).
   * @returns Resolves once the socket has closed, as {@linkcode SigverClient.closed}.
   *
   * @example
   * ```ts ignore
   * import { SigverClient } from "@coast/sigver/client";
   * const client = await SigverClient.open("ws://127.0.0.1:8000", "room");
   * const { code } = await client.close();
   * console.assert(code === 1000);
   * ```
   */
  close(code = 1000, reason = ""): Promise<SigverCloseEvent> {
    if (this.#close === undefined) this.#socket.close(code, reason);
    return this.closed;
  }

  /**
   * Closes the socket and waits for it to close (`await using`).
   *
   * @returns Resolves once closed.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * Adds a typed listener for `content`, `gone` or `close`.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options `once`, `signal`...
   */
  override addEventListener<K extends keyof SigverClientEventMap>(
    type: K,
    listener: (this: SigverClient, event: SigverClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Adds a listener for any event type.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options `once`, `signal`...
   */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
  }

  /**
   * Removes a typed listener.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options `capture`.
   */
  override removeEventListener<K extends keyof SigverClientEventMap>(
    type: K,
    listener: (this: SigverClient, event: SigverClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Removes a listener.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options `capture`.
   */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener, options);
  }

  #send(frame: Uint8Array, action: string): void {
    if (this.#socket.readyState !== _OPEN) {
      throw new SigverCloseError(
        this.#close ?? _closeInfo(1006, "the socket is closing", false),
        action,
      );
    }
    this.#socket.send(frame);
  }

  #onMessage(event: MessageEvent): void {
    if (!(event.data instanceof ArrayBuffer)) {
      this.#socket.close(ERR_MESSAGE, "Cannot handle a text frame");
      return;
    }
    let message;
    try {
      message = decodeMessage(new Uint8Array(event.data));
    } catch {
      this.#socket.close(ERR_MESSAGE, "Cannot decode a frame");
      return;
    }
    switch (message?.type) {
      case "heartbeat":
        if (this.#socket.readyState === _OPEN) {
          this.#socket.send(_HEARTBEAT);
        }
        return;
      case "connected":
        this.#pending.shift()?.resolve(message.connected);
        return;
      case "content": {
        const { senderId, recipientId, lastData, data } = message.content;
        this.dispatchEvent(
          data.length === 0
            ? new GoneEvent(senderId, recipientId)
            : new ContentEvent(senderId, recipientId, data, lastData),
        );
        return;
      }
      default:
        // `connect` is peer -> server only, and no type is not ours to judge.
        return;
    }
  }

  #abort(): void {
    const reason = this.#signal?.reason;
    for (const { reject } of this.#pending.splice(0)) reject(reason);
    if (this.#close === undefined) this.#socket.close(1000, "Aborted");
  }
}
