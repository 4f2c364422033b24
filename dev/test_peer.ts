/**
 * A small protocol client over a real `WebSocket`, for tests and the
 * fuzzer's health check: {@linkcode TestPeer} sends sigver messages and
 * reads the server's, decoded, with a timeout on every wait.
 *
 * ```ts ignore
 * await using peer = await TestPeer.open("ws://127.0.0.1:8000/room");
 * if (!await peer.join(1)) throw new Error("not a member");
 * ```
 *
 * The timeouts are generous because tests share a small, busy machine, and
 * no test asserts how long something took.
 *
 * @module
 */

import {
  type Content,
  decodeMessage,
  encodeMessage,
} from "../lib/netflux/wire.ts";
import type { Message } from "../lib/netflux/wire.ts";
import { deadline } from "../lib/deadline.ts";

/** Milliseconds a wait may take before the test fails. */
export const WAIT_TIMEOUT = 10_000;

/** How a socket closed, as its `close` event told. */
export interface CloseInfo {
  /** The close code (1006 when the connection dropped or never opened). */
  code: number;
  /** The close reason. */
  reason: string;
  /** Whether the closing handshake completed. */
  wasClean: boolean;
}

/** Options of {@linkcode TestPeer}. */
export interface TestPeerOptions {
  /**
   * Let {@linkcode TestPeer.next} return heartbeats too. Otherwise they are
   * only counted in {@linkcode TestPeer.heartbeats}, so that tests that are
   * not about heartbeats never see one.
   * @default {false}
   */
  keepHeartbeats?: boolean;
  /**
   * Milliseconds {@linkcode TestPeer.next} and {@linkcode TestPeer.open}
   * wait by default.
   * @default {WAIT_TIMEOUT}
   */
  timeout?: number;
  /** Handshake headers (for example `Origin`). */
  headers?: HeadersInit;
  /** HTTP client for the handshake (for example one trusting a test CA). */
  client?: Deno.HttpClient;
}

/** A `content` message to send; absent fields are zero. */
export type ContentInit = Partial<Omit<Content, "data">> & {
  /** The payload; a string is sent as UTF-8. */
  data?: Uint8Array | string;
};

/**
 * A protocol client over a real WebSocket (binary frames as `ArrayBuffer`).
 * It decodes every frame the server sends into a queue read by
 * {@linkcode TestPeer.next}; a frame that does not decode fails the next
 * read.
 */
export class TestPeer implements AsyncDisposable {
  /** The underlying socket. */
  readonly socket: WebSocket;
  /** Resolves when the socket opens; rejects if it closes first. */
  readonly opened: Promise<void>;
  /** Resolves with the `close` event, whoever closed the socket. */
  readonly closed: Promise<CloseInfo>;
  /** Heartbeats received so far (kept or not). */
  heartbeats = 0;
  /** Whether the `close` event has fired. */
  isClosed = false;

  #keepHeartbeats: boolean;
  #timeout: number;
  #queue: (Message | Error)[] = [];
  /** Who waits for the queue or the close to change. */
  #waiters: (() => void)[] = [];
  #closeInfo: CloseInfo | undefined;

  /**
   * Opens a socket without waiting; see {@linkcode TestPeer.open}.
   *
   * @param url The `ws[s]://` URL.
   * @param options Heartbeat handling, timeout and handshake options.
   */
  constructor(url: string, options: TestPeerOptions = {}) {
    this.#keepHeartbeats = options.keepHeartbeats ?? false;
    this.#timeout = options.timeout ?? WAIT_TIMEOUT;
    this.socket = new WebSocket(url, {
      headers: options.headers,
      client: options.client,
    });
    this.socket.binaryType = "arraybuffer";
    const opened = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<CloseInfo>();
    this.opened = opened.promise;
    this.closed = closed.promise;
    // A socket that never opens is reported by `open()` and by `closed`.
    this.opened.catch(() => {});
    this.socket.onopen = () => opened.resolve();
    this.socket.onerror = () => {};
    this.socket.onmessage = (event) => this.#onMessage(event);
    this.socket.onclose = (event) => {
      this.isClosed = true;
      this.#closeInfo = {
        code: event.code,
        reason: event.reason,
        wasClean: event.wasClean,
      };
      opened.reject(
        new Error(`Socket closed before it opened (code ${event.code})`),
      );
      closed.resolve(this.#closeInfo);
      this.#wake();
    };
  }

  /**
   * Opens a socket and waits until it is open.
   *
   * @param url The `ws[s]://` URL.
   * @param options Heartbeat handling, timeout and handshake options.
   * @returns The open peer.
   * @throws {Error} When the socket closes before it opens, or times out.
   */
  static async open(
    url: string,
    options: TestPeerOptions = {},
  ): Promise<TestPeer> {
    const peer = new TestPeer(url, options);
    try {
      await deadline(peer.opened, peer.#timeout, "the socket to open");
    } catch (error) {
      await peer.close();
      throw error;
    }
    return peer;
  }

  /**
   * Sends one protocol message as one binary frame.
   *
   * @param message The message.
   */
  send(message: Message): void {
    this.socket.send(encodeMessage(message));
  }

  /**
   * Sends a frame as it is: bytes as a binary frame, a string as a text one.
   *
   * @param frame The frame.
   */
  sendRaw(frame: Uint8Array | string): void {
    this.socket.send(frame);
  }

  /**
   * Sends a `content` message.
   *
   * @param content Its fields; absent ones are zero.
   */
  sendContent(content: ContentInit = {}): void {
    const data = typeof content.data === "string"
      ? new TextEncoder().encode(content.data)
      : content.data ?? new Uint8Array(0);
    this.send({
      type: "content",
      content: {
        senderId: content.senderId ?? 0,
        recipientId: content.recipientId ?? 0,
        lastData: content.lastData ?? false,
        data,
      },
    });
  }

  /**
   * Sends a heartbeat.
   *
   * @param value The heartbeat's value (the server accepts both).
   */
  sendHeartbeat(value = true): void {
    this.send({ type: "heartbeat", heartbeat: value });
  }

  /**
   * Asks to be a member (`connect`) and returns the `connected` reply.
   *
   * @param id The peer's group id.
   * @param members Group ids of the members it is connected to.
   * @returns The server's `connected` value.
   * @throws {Error} When the next message is not `connected`.
   */
  async join(id: number, members: number[] = []): Promise<boolean> {
    this.send({ type: "connect", connect: { id, members } });
    const reply = await this.next();
    if (reply.type !== "connected") {
      throw new Error(
        `Expected a connected reply, got ${JSON.stringify(reply)}`,
      );
    }
    return reply.connected;
  }

  /**
   * The next message from the server (heartbeats skipped unless kept). One
   * reader at a time: two concurrent calls may both see the same message
   * arrive.
   *
   * @param timeout Milliseconds to wait.
   * @returns The message.
   * @throws {Error} On timeout, on an undecodable frame, or when the socket
   * closes first.
   */
  async next(timeout: number = this.#timeout): Promise<Message> {
    if (this.#queue.length === 0) {
      await deadline(this.#arrival(), timeout, "a message");
    }
    const item = this.#queue.shift()!;
    if (item instanceof Error) throw item;
    return item;
  }

  /**
   * Resolves once the queue holds something; rejects once the socket closed
   * with the queue empty. It takes nothing from the queue, so one left
   * behind by a timed-out {@linkcode TestPeer.next} steals no message.
   */
  async #arrival(): Promise<void> {
    while (this.#queue.length === 0) {
      if (this.#closeInfo !== undefined) {
        const { code, reason } = this.#closeInfo;
        throw new Error(
          `Expected a message, but the socket closed (${code} ${reason})`,
        );
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /**
   * The next message, which must be a `content`.
   *
   * @param timeout Milliseconds to wait.
   * @returns Its content, `data` as a string for easy comparison.
   */
  async nextContent(
    timeout?: number,
  ): Promise<Omit<Content, "data"> & { data: string }> {
    const message = await this.next(timeout);
    if (message.type !== "content") {
      throw new Error(`Expected content, got ${JSON.stringify(message)}`);
    }
    return { ...message.content, data: _text(message.content.data) };
  }

  /**
   * Waits until the server (or anyone) closes the socket.
   *
   * @param timeout Milliseconds to wait.
   * @returns How it closed.
   */
  waitClosed(timeout: number = this.#timeout): Promise<CloseInfo> {
    return deadline(this.closed, timeout, "the socket to close");
  }

  /** Messages received and not read yet. */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * Closes the socket (if still open) and waits for its `close` event.
   *
   * @param code The close code.
   * @param reason The close reason.
   * @returns How it closed.
   */
  close(code = 1000, reason = ""): Promise<CloseInfo> {
    if (!this.isClosed) {
      try {
        this.socket.close(code, reason);
      } catch {
        // Already closing.
      }
    }
    return deadline(this.closed, WAIT_TIMEOUT, "the socket to close");
  }

  /** Closes the socket and waits for its `close` event. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #onMessage(event: MessageEvent): void {
    if (typeof event.data === "string") {
      this.#queue.push(new Error(`Received a text frame: ${event.data}`));
    } else {
      try {
        const message = decodeMessage(new Uint8Array(event.data));
        if (message === undefined) {
          this.#queue.push(new Error("Received a message with no type"));
        } else {
          if (message.type === "heartbeat") this.heartbeats++;
          if (message.type !== "heartbeat" || this.#keepHeartbeats) {
            this.#queue.push(message);
          }
        }
      } catch (error) {
        this.#queue.push(error as Error);
      }
    }
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

function _text(data: Uint8Array): string {
  return new TextDecoder().decode(data);
}
