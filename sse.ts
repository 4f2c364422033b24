/**
 * One peer on the WebSocket-free fallback: a session whose frames go down a
 * Server-Sent Events stream and come up in POSTs (see `lib/sse.ts` for the
 * text). To the handler it looks like a socket (`socket.ts`): `send`,
 * `close` and the same three events.
 *
 * - The stream is the response to the GET that opened the session. Only one
 *   stream is open at a time; a stream that drops (the client's connection
 *   went) leaves the session alive, its frames queued, until the client
 *   resumes it with a new GET or the heartbeat rule closes it.
 * - A send is refused when more than `maxBufferedAmount` bytes wait, in the
 *   stream or in the queue: the peer reads too slowly.
 * - A close writes the close event, ends the stream and reports the close
 *   at once: there is no closing handshake to wait for.
 * - Keep-alive comments go out on a stream that has been silent for
 *   `keepAliveTicks` scheduler ticks.
 *
 * @module
 */

import { closeEvent, frameEvent, KEEP_ALIVE, sessionEvent } from "./lib/sse.ts";
import type { SocketEvents } from "./socket.ts";

/** Settings and the tick count, shared by every session of one server. */
export interface SseContext {
  /** The scheduler's tick count; the owner increments it. */
  readonly tick: number;
  /** Bytes that may wait for a session's reader (0: no limit). */
  readonly maxBufferedAmount: number;
  /** Ticks of silence after which a keep-alive comment goes out. */
  readonly keepAliveTicks: number;
}

const _encoder = new TextEncoder();

/** The headers of a stream's response. */
const _STREAM_HEADERS: HeadersInit = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-store",
  // nginx buffers responses unless told not to: events must go out at once.
  "x-accel-buffering": "no",
};

/**
 * A fallback peer's session.
 *
 * @example
 * ```ts ignore
 * const session = new SseSession(newSessionId(), events, context);
 * return session.open(); // the GET's response: the stream
 * ```
 */
export class SseSession {
  /** The session id: the peer's credential for its POSTs. */
  readonly id: string;
  #events: SocketEvents;
  #context: SseContext;
  /** The open stream's controller, if a stream is open. */
  #stream: ReadableStreamDefaultController<Uint8Array> | undefined;
  /** Events waiting for a stream (none open), and their size. */
  #queue: Uint8Array[] = [];
  #queued = 0;
  /** The tick of the last write, for keep-alives. */
  #written = 0;
  #opened = false;
  #closed = false;

  /**
   * Creates a session; {@linkcode SseSession.open} starts its stream.
   *
   * @param id A new session id.
   * @param events Who hears the session's events.
   * @param context The shared tick count and settings.
   */
  constructor(id: string, events: SocketEvents, context: SseContext) {
    this.id = id;
    this.#events = events;
    this.#context = context;
  }

  /** Whether the session is over. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Whether a stream is open now. */
  get streaming(): boolean {
    return this.#stream !== undefined;
  }

  /**
   * Opens a stream: the first one sends the session event and reports the
   * open; a later one (the client reconnected) resumes the session and
   * sends what was queued meanwhile.
   *
   * @returns The response carrying the stream, or `undefined` when a stream
   * is open already or the session is over.
   */
  open(): Response | undefined {
    if (this.#stream !== undefined || this.#closed) return undefined;
    const first = !this.#opened;
    this.#opened = true;
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        controller = c;
      },
      cancel: () => {
        // The client went away: keep the session, queue its frames.
        if (this.#stream === controller) this.#stream = undefined;
      },
    }, new ByteLengthQueuingStrategy({ highWaterMark: 16384 }));
    this.#stream = controller;
    this.#write(sessionEvent(this.id));
    for (const chunk of this.#queue) controller.enqueue(chunk);
    this.#queue = [];
    this.#queued = 0;
    if (first) queueMicrotask(() => this.#events.onOpen());
    return new Response(body, { headers: _STREAM_HEADERS });
  }

  /**
   * Sends one server frame as an event (queued while no stream is open).
   *
   * @param frame The frame; copied at once.
   * @returns False when the frame was not sent because the peer reads too
   * slowly; true otherwise.
   */
  send(frame: Uint8Array): boolean {
    if (this.#closed) return true;
    const max = this.#context.maxBufferedAmount;
    if (max > 0 && this.#waiting() > max) return false;
    this.#write(frameEvent(frame));
    return true;
  }

  /**
   * Sends the close event, ends the stream and reports the close. Later
   * calls do nothing.
   *
   * @param code The close code.
   * @param reason The close reason.
   * @returns False when the session was already closed.
   */
  close(code: number, reason: string): boolean {
    if (this.#closed) return false;
    this.#closed = true;
    const stream = this.#stream;
    this.#stream = undefined;
    this.#queue = [];
    if (stream !== undefined) {
      try {
        stream.enqueue(_encoder.encode(closeEvent(code, reason)));
        stream.close();
      } catch {
        // The client cancelled the stream meanwhile.
      }
    }
    queueMicrotask(() => this.#events.onClose(code, reason));
    return true;
  }

  /** Never waits: a session closes at once. */
  get closing(): boolean {
    return false;
  }

  /**
   * Nothing waits (see {@linkcode SseSession.closing}).
   *
   * @returns False.
   */
  flush(): boolean {
    return false;
  }

  /**
   * Hands a frame that came up in a POST to the owner.
   *
   * @param frame The frame's bytes.
   */
  deliver(frame: ArrayBuffer): void {
    if (!this.#closed) this.#events.onFrame(frame);
  }

  /** Sends a keep-alive comment when the stream has been silent too long. */
  keepAlive(): void {
    if (
      this.#stream !== undefined &&
      this.#context.tick - this.#written >= this.#context.keepAliveTicks
    ) {
      this.#write(KEEP_ALIVE);
    }
  }

  /** Bytes waiting for the reader, in the stream or in the queue. */
  #waiting(): number {
    const stream = this.#stream;
    if (stream === undefined) return this.#queued;
    return Math.max(0, 16384 - (stream.desiredSize ?? 0));
  }

  #write(text: string): void {
    const chunk = _encoder.encode(text);
    this.#written = this.#context.tick;
    const stream = this.#stream;
    if (stream !== undefined) {
      try {
        stream.enqueue(chunk);
        return;
      } catch {
        // Cancelled meanwhile: queue it for a resumed stream.
        this.#stream = undefined;
      }
    }
    this.#queue.push(chunk);
    this.#queued += chunk.length;
  }
}
