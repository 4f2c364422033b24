/**
 * A y-webrtc signaling client spoken by hand, over a real WebSocket: JSON
 * text frames in a queue read by {@linkcode YClient.next}. For tests, the
 * benchmark and the cluster tests; the real client runs in Chromium
 * (`tests/e2e/ywebrtc.e2e.ts`).
 *
 * ```ts ignore
 * await using client = await YClient.open("ws://127.0.0.1:8000/y-webrtc");
 * client.send({ type: "subscribe", topics: ["room"] });
 * client.send({ type: "ping" });
 * assert.deepEqual(await client.next(), { type: "pong" });
 * ```
 *
 * @module
 */

import { deadline } from "../lib/deadline.ts";
import { type CloseInfo, WAIT_TIMEOUT } from "./test_peer.ts";

/** A y-webrtc client over a real WebSocket. */
export class YClient implements AsyncDisposable {
  /** The underlying socket. */
  readonly socket: WebSocket;
  /** Resolves when the socket opens; rejects if it closes first. */
  readonly opened: Promise<void>;
  /** Resolves with the `close` event, whoever closed the socket. */
  readonly closed: Promise<CloseInfo>;
  /** Whether the `close` event has fired. */
  isClosed = false;
  readonly #queue: unknown[] = [];
  #wake: (() => void) | undefined;

  /**
   * Opens a socket without waiting.
   *
   * @param url The `ws[s]://` URL.
   * @param headers Handshake headers (`Origin`).
   */
  constructor(url: string, headers?: Record<string, string>) {
    this.socket = new WebSocket(url, headers ? { headers } : undefined);
    const opened = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<CloseInfo>();
    this.opened = opened.promise;
    this.closed = closed.promise;
    this.opened.catch(() => {});
    this.socket.onopen = () => opened.resolve();
    this.socket.onerror = () => {};
    this.socket.onmessage = (event) => {
      this.#queue.push(
        typeof event.data === "string"
          ? JSON.parse(event.data)
          : new Error("Received a binary frame"),
      );
      this.#wake?.();
    };
    this.socket.onclose = (event) => {
      this.isClosed = true;
      opened.reject(new Error(`Closed before it opened (${event.code})`));
      closed.resolve({
        code: event.code,
        reason: event.reason,
        wasClean: event.wasClean,
      });
      this.#wake?.();
    };
  }

  /**
   * Opens a socket and waits until it is open.
   *
   * @param url The `ws[s]://` URL.
   * @param headers Handshake headers.
   * @returns The open client.
   */
  static async open(
    url: string,
    headers?: Record<string, string>,
  ): Promise<YClient> {
    const client = new YClient(url, headers);
    try {
      await deadline(client.opened, WAIT_TIMEOUT, "the socket to open");
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /**
   * Sends one message as JSON.
   *
   * @param message The message.
   */
  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }

  /**
   * Sends a frame as it is.
   *
   * @param frame Text, or bytes (a binary frame).
   */
  sendRaw(frame: string | Uint8Array): void {
    this.socket.send(frame);
  }

  /** Messages received and not read yet. */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * The next message.
   *
   * @param timeout Milliseconds to wait.
   * @returns The message, parsed.
   * @throws {Error} When the socket closes first, or on a binary frame.
   */
  async next(timeout = WAIT_TIMEOUT): Promise<unknown> {
    const end = performance.now() + timeout;
    while (this.#queue.length === 0) {
      if (this.isClosed) throw new Error("Closed while waiting for a message");
      const left = end - performance.now();
      if (left <= 0) throw new Error("Timed out waiting for a message");
      const woken = Promise.withResolvers<void>();
      this.#wake = woken.resolve;
      await deadline(woken.promise, left, "a message").catch(() => {});
      this.#wake = undefined;
    }
    const message = this.#queue.shift();
    if (message instanceof Error) throw message;
    return message;
  }

  /**
   * Sends a ping and waits for its pong: the server handled every frame
   * this client sent before.
   */
  async sync(): Promise<void> {
    this.send({ type: "ping" });
    const pong = await this.next();
    if ((pong as { type?: string }).type !== "pong") {
      throw new Error(`Expected a pong, got ${JSON.stringify(pong)}`);
    }
  }

  /**
   * Waits for the close event.
   *
   * @param timeout Milliseconds to wait.
   * @returns How it closed.
   */
  waitClosed(timeout = WAIT_TIMEOUT): Promise<CloseInfo> {
    return deadline(this.closed, timeout, "the socket to close");
  }

  /**
   * Closes the socket (if still open) and waits for its close event.
   *
   * @returns How it closed.
   */
  close(): Promise<CloseInfo> {
    if (!this.isClosed) {
      try {
        this.socket.close();
      } catch {
        // Already closing.
      }
    }
    return this.waitClosed();
  }

  /** Closes the socket and waits for its close event. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
