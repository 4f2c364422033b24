/**
 * The client itself: {@linkcode SigverClient}, one peer's signaling socket
 * to a sigver server, and its options.
 *
 * @module
 */

import { decodeMessage, encodeMessage } from "../lib/netflux/wire.ts";
import { ERR_MESSAGE } from "../lib/codes.ts";
import { type Channel, openChannel } from "./channel.ts";
import { closeInfo, SigverCloseError } from "./close.ts";
import {
  ContentEvent,
  GoneEvent,
  type SigverClientEventMap,
  SigverCloseEvent,
} from "./events.ts";
import { SseSocket } from "./fallback.ts";
import { groupUrl, tokenUrl } from "./url.ts";

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

  #socket: Channel;
  #pending: {
    resolve: (connected: boolean) => void;
    reject: (error: unknown) => void;
  }[] = [];
  #close: SigverCloseEvent | undefined = undefined;
  #signal: AbortSignal | undefined;
  #onAbort = (): void => this.#abort();

  private constructor(
    socket: Channel,
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
        closeInfo(event.code, event.reason, event.wasClean),
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
    create: () => Channel,
    key: string,
    favored: boolean,
    signal: AbortSignal | undefined,
    timeout: number,
  ): Promise<SigverClient> {
    return openChannel(create, {
      signal,
      timeout,
      onOpen: (socket) => new SigverClient(socket, key, favored, signal),
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
        this.#close ?? closeInfo(1006, "the socket is closing", false),
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
