/**
 * A PeerJS client's socket spoken by hand, as `peerjs` 1.5.5 speaks it:
 * `<path>/peerjs?key=&id=&token=&version=`, JSON frames, for tests that
 * need many clients and exact frames (the real client runs in Chromium in
 * `tests/e2e/peerjs.e2e.ts`).
 *
 * ```ts ignore
 * await using alice = await PeerjsClient.open("ws://127.0.0.1:8080/peerjs", "alice");
 * assert.deepEqual(await alice.next(), { type: "OPEN" });
 * ```
 *
 * @module
 */

import { deadline } from "../lib/deadline.ts";

/** How long {@linkcode PeerjsClient.next} waits for a message. */
export const MESSAGE_TIMEOUT = 15_000;

/** A PeerJS message from the server. */
export interface PeerjsMessage {
  type: string;
  src?: string;
  dst?: string;
  payload?: unknown;
}

/** A raw PeerJS client socket. */
export class PeerjsClient implements AsyncDisposable {
  readonly socket: WebSocket;
  readonly #messages: PeerjsMessage[] = [];
  #wake: (() => void) | undefined;
  /** Resolves with the close's code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(url: string) {
    const socket = this.socket = new WebSocket(url);
    this.closed = new Promise((resolve) => {
      socket.onclose = (e) => {
        resolve({ code: e.code, reason: e.reason });
        this.#wake?.();
      };
    });
    socket.onmessage = (e) => {
      this.#messages.push(JSON.parse(e.data));
      this.#wake?.();
    };
  }

  /**
   * Opens a client's socket.
   *
   * @param base The mount's URL (`ws://host:port/peerjs`).
   * @param id The id it takes.
   * @param token Its client token.
   * @returns The client, its socket open.
   */
  static async open(
    base: string,
    id: string,
    token = `tok-${id}`,
  ): Promise<PeerjsClient> {
    const query = new URLSearchParams({
      key: "peerjs",
      id,
      token,
      version: "1.5.5",
    });
    const client = new PeerjsClient(`${base}/peerjs?${query}`);
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    client.socket.onopen = () => resolve();
    client.socket.onerror = () => reject(new Error(`Cannot open ${base}`));
    await deadline(promise, MESSAGE_TIMEOUT);
    return client;
  }

  /**
   * Sends a message.
   *
   * @param message The message.
   */
  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }

  /**
   * The next message from the server.
   *
   * @returns The message.
   * @throws {Error} When none comes within {@linkcode MESSAGE_TIMEOUT}.
   */
  async next(): Promise<PeerjsMessage> {
    const end = performance.now() + MESSAGE_TIMEOUT;
    while (this.#messages.length === 0) {
      if (performance.now() > end) throw new Error("No PeerJS message came");
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#wake = resolve;
      await deadline(promise, 100).catch(() => {});
    }
    return this.#messages.shift()!;
  }

  /** Messages received and not read yet. */
  get pending(): number {
    return this.#messages.length;
  }

  /** Closes the socket and waits for its close. */
  async close(): Promise<void> {
    if (this.socket.readyState < WebSocket.CLOSING) this.socket.close();
    await this.closed;
  }

  /**
   * Same as {@linkcode PeerjsClient.close}.
   *
   * @returns The promise of `close()`.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
