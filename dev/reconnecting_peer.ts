/**
 * A peer that stays on, as a Netflux member does: {@linkcode ReconnectingPeer}
 * holds one raw `WebSocket` to a group, answers heartbeats, and when its
 * socket closes (a node drains, a balancer refuses) it opens another after a
 * short backoff and joins again with the members it knows. It answers every
 * joiner bound to it with its own group id, so that a test can tell which
 * members one group holds. For fault tests of a cluster: a rolling restart,
 * a node killed under its peers.
 *
 * ```ts ignore
 * await using peer = new ReconnectingPeer("ws://127.0.0.1:8000/room", {
 *   id: 1,
 *   members: [2, 3],
 * });
 * peer.start();
 * ```
 *
 * @module
 */

import { deadline } from "../lib/deadline.ts";
import {
  decodeMessage,
  encodeMessage,
  type Message,
} from "../lib/netflux/wire.ts";

/** Milliseconds a disposed peer waits for its socket's close event. */
const CLOSE_TIMEOUT = 5_000;

/** Options of {@linkcode ReconnectingPeer}. */
export interface ReconnectingPeerOptions {
  /** The peer's group id. */
  id: number;
  /** The group ids of the other members, sent with every `connect`. */
  members: readonly number[];
  /**
   * Milliseconds before the first attempt after a close; each attempt in a
   * row that fails doubles it, up to `maxBackoff`, and a join resets it.
   * Every wait is jittered by ±50 %, so that peers dropped together do not
   * come back together.
   * @default {50}
   */
  backoff?: number;
  /**
   * The longest wait between two attempts, in milliseconds.
   * @default {1000}
   */
  maxBackoff?: number;
}

/** What became of a peer's attempts, for a test to report. */
export interface ReconnectStats {
  /** Sockets opened, the first one included. */
  attempts: number;
  /** Attempts whose socket never opened (refused, 502, 503...). */
  refused: number;
  /** Times the peer, once a member, lost its socket. */
  drops: number;
  /** The longest time it spent between losing its socket and joining again. */
  longestGap: number;
}

/** One member of a group that reconnects whenever its socket closes. */
export class ReconnectingPeer implements AsyncDisposable {
  /** The `ws://` URL of its group. */
  readonly url: string;
  /** Its group id. */
  readonly id: number;
  readonly #members: number[];
  readonly #backoff: number;
  readonly #maxBackoff: number;
  readonly #stats: ReconnectStats = {
    attempts: 0,
    refused: 0,
    drops: 0,
    longestGap: 0,
  };
  #socket: WebSocket | undefined;
  #closed: Promise<void> = Promise.resolve();
  #member = false;
  #streak = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #downSince: number | undefined;
  #stopped = false;

  /**
   * Prepares a peer; {@linkcode ReconnectingPeer.start} connects it.
   *
   * @param url The group's `ws[s]://` URL.
   * @param options Its id, the members it knows, its backoff.
   */
  constructor(url: string, options: ReconnectingPeerOptions) {
    this.url = url;
    this.id = options.id;
    this.#members = [...options.members];
    this.#backoff = options.backoff ?? 50;
    this.#maxBackoff = options.maxBackoff ?? 1000;
  }

  /** Whether its socket is open and the server said it is a member. */
  get connected(): boolean {
    return this.#member && this.#socket?.readyState === WebSocket.OPEN;
  }

  /** Its attempts so far (a copy). */
  get stats(): ReconnectStats {
    return { ...this.#stats };
  }

  /** Opens its first socket. */
  start(): void {
    if (this.#socket === undefined && !this.#stopped) this.#open();
  }

  /** Stops reconnecting, closes its socket and waits for the close event. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    try {
      this.#socket?.close(1000);
    } catch {
      // Closing already.
    }
    await deadline(this.#closed, CLOSE_TIMEOUT, "the peer's socket to close");
  }

  #open(): void {
    this.#stats.attempts++;
    const socket = new WebSocket(this.url);
    socket.binaryType = "arraybuffer";
    this.#socket = socket;
    const closed = Promise.withResolvers<void>();
    this.#closed = closed.promise;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.#join();
    };
    socket.onerror = () => {};
    socket.onmessage = (event) => {
      if (!(event.data instanceof ArrayBuffer)) return;
      const message = decodeMessage(new Uint8Array(event.data));
      if (message !== undefined) this.#receive(message);
    };
    socket.onclose = () => {
      if (this.#member) {
        this.#stats.drops++;
        this.#downSince = performance.now();
      }
      this.#member = false;
      if (!opened) this.#stats.refused++;
      closed.resolve();
      this.#later(() => this.#open());
    };
  }

  /** Runs `step` after the backoff, unless stopped. */
  #later(step: () => void): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    const wait = Math.min(this.#maxBackoff, this.#backoff * 2 ** this.#streak);
    this.#streak++;
    this.#timer = setTimeout(step, wait * (0.5 + Math.random()));
  }

  #send(message: Message): void {
    if (this.#socket?.readyState === WebSocket.OPEN) {
      this.#socket.send(encodeMessage(message));
    }
  }

  #join(): void {
    this.#send({
      type: "connect",
      connect: { id: this.id, members: this.#members },
    });
  }

  #receive(message: Message): void {
    switch (message.type) {
      case "heartbeat":
        this.#send({ type: "heartbeat", heartbeat: true });
        return;
      case "connected":
        if (!message.connected) {
          // Bound to a group that holds none of its members: ask again.
          this.#later(() => this.#join());
          return;
        }
        this.#member = true;
        this.#streak = 0;
        if (this.#downSince !== undefined) {
          const gap = performance.now() - this.#downSince;
          this.#stats.longestGap = Math.max(this.#stats.longestGap, gap);
          this.#downSince = undefined;
        }
        return;
      case "content": {
        // A joiner bound to this member: tell it who answers. An empty
        // content is the server's "gone" notice, which wants no answer.
        const { senderId, data } = message.content;
        if (senderId === 0 || data.length === 0) return;
        this.#send({
          type: "content",
          content: {
            senderId: 0,
            recipientId: senderId,
            lastData: false,
            data: new TextEncoder().encode(`member ${this.id}`),
          },
        });
        return;
      }
      default:
        return;
    }
  }
}
