/**
 * One peer's WebSocket, as `Deno.upgradeWebSocket` gives it, behind a small
 * interface: {@linkcode AdaptedSocket.trySend},
 * {@linkcode AdaptedSocket.requestClose} and three events. It holds Deno's
 * quirks and nothing else:
 *
 * - a send is refused when too many bytes already wait in the socket's
 *   buffer (`bufferedAmount`): the peer reads too slowly;
 * - Deno drops a server socket without its close frame when a data frame
 *   arrives after `close()` (the client sees 1006, not the code and reason).
 *   So a socket that had a frame in the current or the previous scheduler
 *   tick closes once a whole tick went by without one, or after
 *   `closeWaitTicks` at the latest; a socket that just opened counts a frame
 *   as due for `openGraceTicks` (clients send at once on open);
 * - Deno ignores `close()` before the socket opens: the close is kept and
 *   done once it opens.
 *
 * Time comes in ticks: the owner counts them in a shared
 * {@linkcode SocketContext} and calls {@linkcode AdaptedSocket.flush} on every
 * tick while {@linkcode AdaptedSocket.closing} holds.
 *
 * A server holds tens of thousands of sockets, so each one costs as little
 * as it can: {@linkcode AdaptedSocket} is a base class that the owner's
 * connection object extends (one object per socket, not two), it listens
 * for three event types (each listener costs Deno a few hundred bytes; the
 * `error` event needs none, the `close` event follows it), and it keeps a
 * close's details only while a close waits. {@linkcode DenoSocket} is the
 * same socket for an owner that holds one and hears its events.
 *
 * @module
 */

/** What a socket reports to its owner. */
export interface SocketEvents {
  /** The socket opened (not reported when it was closed before). */
  onOpen(): void;
  /**
   * A frame arrived.
   *
   * @param data A binary frame's bytes, or a text frame's text.
   */
  onFrame(data: ArrayBuffer | string): void;
  /**
   * The socket closed, whoever closed it.
   *
   * @param code The close code; 1006 when the connection dropped.
   * @param reason The close reason.
   */
  onClose(code: number, reason: string): void;
}

/** Settings and the tick count, shared by every socket of one server. */
export interface SocketContext {
  /** The scheduler's tick count; the owner increments it. */
  tick: number;
  /** Bytes that may wait in a socket's send buffer (0: no limit). */
  readonly maxBufferedAmount: number;
  /** Ticks a close may wait for the socket to go quiet. */
  readonly closeWaitTicks: number;
  /** Ticks after the open during which a frame counts as due. */
  readonly openGraceTicks: number;
}

/**
 * A peer's end of a transport, as the server drives it: a WebSocket
 * ({@linkcode AdaptedSocket}) or a fallback session (`sse.ts`).
 */
export interface PeerSocket {
  /**
   * Sends one frame (copied at once): bytes as a binary frame, a string as
   * a text frame.
   *
   * @param frame The frame.
   * @returns False when it was not sent because the peer reads too slowly.
   */
  trySend(frame: Uint8Array | string): boolean;
  /**
   * Closes with a code and reason, now or once the transport allows.
   *
   * @param code The close code.
   * @param reason The close reason (at most 123 bytes of UTF-8).
   * @param immediately Do not wait for the transport to be quiet.
   * @returns False when it was already closing or closed.
   */
  requestClose(code: number, reason: string, immediately?: boolean): boolean;
  /** Whether a close waits: call {@linkcode PeerSocket.flush} every tick. */
  readonly closing: boolean;
  /**
   * Sends a waiting close when it may go.
   *
   * @param now Send it now, whatever the transport's state.
   * @returns Whether the close still waits.
   */
  flush(now?: boolean): boolean;
}

const _OPEN = 1;
const _CONNECTING = 0;

/** A close that was asked for and has not gone out yet. */
interface _Close {
  readonly code: number;
  readonly reason: string;
  /** The tick it was asked for. */
  readonly since: number;
  /** Whether it must not wait for quiet. */
  immediately: boolean;
}

/**
 * A Deno server-side WebSocket adapted for the server: subclass it and
 * implement the three events of {@linkcode SocketEvents}.
 *
 * @example
 * ```ts ignore
 * class Peer extends AdaptedSocket {
 *   onOpen() {}
 *   onFrame(data: ArrayBuffer | string) {}
 *   onClose(code: number, reason: string) {}
 * }
 * const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
 * const peer = new Peer(socket, context);
 * ```
 */
export abstract class AdaptedSocket implements SocketEvents, PeerSocket {
  /**
   * The Deno socket. Frames sent on it directly escape the slow-reader
   * check of {@linkcode AdaptedSocket.trySend} until it next asks Deno.
   */
  readonly raw: WebSocket;
  /**
   * The tick of the last frame (or the end of the open grace). It starts
   * two ticks before the first one: quiet. A small integer, never a float:
   * V8 would box the field of every socket.
   */
  seen = -2;
  readonly #context: SocketContext;
  /** The requested close, until it goes out. */
  #close: _Close | undefined = undefined;
  /** Whether the close went out, or the socket closed. */
  #done = false;
  /**
   * At least the bytes waiting in the send buffer: what `bufferedAmount`
   * said when last asked plus what was sent since, so that most sends need
   * not ask (an op call).
   */
  #queued = 0;

  /**
   * Adapts `raw`, which must not have opened yet.
   *
   * @param raw The socket from `Deno.upgradeWebSocket`.
   * @param context The shared tick count and settings.
   */
  constructor(raw: WebSocket, context: SocketContext) {
    this.raw = raw;
    this.#context = context;
    raw.binaryType = "arraybuffer";
    // This object is the listener of every event: no closure per socket.
    raw.addEventListener("open", this);
    raw.addEventListener("message", this);
    raw.addEventListener("close", this);
  }

  /** The socket opened (not reported when it was closed before). */
  abstract onOpen(): void;

  /**
   * A frame arrived.
   *
   * @param data A binary frame's bytes, or a text frame's text.
   */
  abstract onFrame(data: ArrayBuffer | string): void;

  /**
   * The socket closed, whoever closed it.
   *
   * @param code The close code; 1006 when the connection dropped.
   * @param reason The close reason.
   */
  abstract onClose(code: number, reason: string): void;

  /**
   * Sends one binary frame (Deno copies it at once). Does nothing once the
   * socket is no longer open.
   *
   * @param frame The frame.
   * @returns False when the frame was not sent because the peer reads too
   * slowly; true otherwise.
   */
  trySend(frame: Uint8Array | string): boolean {
    const raw = this.raw;
    if (raw.readyState !== _OPEN) return true;
    const max = this.#context.maxBufferedAmount;
    if (max > 0) {
      if (this.#queued > max) {
        // Deno counts the payload bytes of the frames it has not written.
        this.#queued = raw.bufferedAmount;
        if (this.#queued > max) return false;
      }
      this.#queued += frame.length;
    }
    raw.send(frame);
    return true;
  }

  /**
   * Closes the socket with a code and reason: at once when it is quiet (or
   * when told to), otherwise on a later {@linkcode AdaptedSocket.flush}. A
   * socket that has not opened yet closes when it opens.
   *
   * @param code The close code.
   * @param reason The close reason (at most 123 bytes of UTF-8).
   * @param immediately Do not wait for quiet: a shutdown under load, where
   * waiting would not find quiet, or a socket nobody waits for.
   * @returns False when the socket was already closing or closed (the call
   * did nothing).
   */
  requestClose(code: number, reason: string, immediately = false): boolean {
    if (this.#close !== undefined || this.#done) return false;
    const tick = this.#context.tick;
    const close = this.#close = { code, reason, since: tick, immediately };
    if (
      this.raw.readyState === _OPEN && (immediately || this.seen < tick - 1)
    ) {
      this.#closeNow(close);
    }
    return true;
  }

  /**
   * Whether a close waits: call {@linkcode AdaptedSocket.flush} every tick.
   */
  get closing(): boolean {
    return this.#close !== undefined && !this.#done;
  }

  /**
   * Sends a waiting close once the socket is quiet or has waited long enough.
   *
   * @param now Send it now, quiet or not (a shutdown).
   * @returns Whether the close still waits.
   */
  flush(now = false): boolean {
    const close = this.#close;
    if (close === undefined || this.#done) return false;
    const tick = this.#context.tick;
    if (now) close.immediately = true;
    const waited = close.immediately ||
      tick - close.since >= this.#context.closeWaitTicks;
    // Not open yet: the open event closes it (at once, once it waited).
    if (this.raw.readyState === _CONNECTING) return !waited;
    if (!waited && this.seen >= tick - 1) return true;
    this.#closeNow(close);
    return false;
  }

  /**
   * Routes the socket's events (the `EventListener` object protocol).
   *
   * @param event An event of the socket.
   */
  handleEvent(event: Event): void {
    switch (event.type) {
      case "message":
        this.seen = this.#context.tick;
        this.onFrame((event as MessageEvent).data);
        return;
      case "open": {
        const context = this.#context;
        this.seen = context.tick + context.openGraceTicks;
        const close = this.#close;
        if (close === undefined) this.onOpen();
        else if (
          close.immediately ||
          context.tick - close.since >= context.closeWaitTicks
        ) {
          this.#closeNow(close);
        }
        return;
      }
      case "close": {
        const { code, reason } = event as CloseEvent;
        this.#done = true;
        // Deno reports a connection dropped without a close frame as 0.
        this.onClose(code || 1006, reason);
        return;
      }
    }
  }

  #closeNow(close: _Close): void {
    this.#done = true;
    try {
      this.raw.close(close.code, close.reason);
    } catch {
      // Already closing: the close event follows.
    }
  }
}

/**
 * An {@linkcode AdaptedSocket} for an owner that holds it (the cluster's
 * edge relay) rather than extends it: its events go to the owner.
 *
 * @example
 * ```ts ignore
 * const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
 * const peer = new DenoSocket(socket, events, context);
 * ```
 */
export class DenoSocket extends AdaptedSocket {
  readonly #events: SocketEvents;

  /**
   * Adapts `raw`, which must not have opened yet: its events go to `events`.
   *
   * @param raw The socket from `Deno.upgradeWebSocket`.
   * @param events Who hears the socket's events.
   * @param context The shared tick count and settings.
   */
  constructor(raw: WebSocket, events: SocketEvents, context: SocketContext) {
    super(raw, context);
    this.#events = events;
  }

  /** Reports the open to the owner. */
  onOpen(): void {
    this.#events.onOpen();
  }

  /**
   * Reports a frame to the owner.
   *
   * @param data A binary frame's bytes, or a text frame's text.
   */
  onFrame(data: ArrayBuffer | string): void {
    this.#events.onFrame(data);
  }

  /**
   * Reports the close to the owner.
   *
   * @param code The close code.
   * @param reason The close reason.
   */
  onClose(code: number, reason: string): void {
    this.#events.onClose(code, reason);
  }
}
