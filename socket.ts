/**
 * One peer's WebSocket, as `Deno.upgradeWebSocket` gives it, behind a small
 * interface: {@linkcode DenoSocket.send}, {@linkcode DenoSocket.close} and
 * three events. It holds Deno's quirks and nothing else:
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
 * {@linkcode SocketContext} and calls {@linkcode DenoSocket.flush} on every
 * tick while {@linkcode DenoSocket.closing} holds.
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

const _OPEN = 1;
const _CONNECTING = 0;

/**
 * A Deno server-side WebSocket adapted for the server.
 *
 * @example
 * ```ts ignore
 * const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
 * const peer = new DenoSocket(socket, events, context);
 * ```
 */
export class DenoSocket {
  /** The Deno socket. */
  readonly raw: WebSocket;
  /** The tick of the last frame (or the end of the open grace). */
  seen = -Infinity;
  #events: SocketEvents;
  #context: SocketContext;
  /** The requested close: code (0: none), reason, the tick it came. */
  #code = 0;
  #reason = "";
  #since = 0;
  /** Whether the close went out, or the socket closed. */
  #done = false;
  /** Whether the requested close must not wait for quiet. */
  #immediately = false;

  /**
   * Adapts `raw`, which must not have opened yet: its events go to `events`.
   *
   * @param raw The socket from `Deno.upgradeWebSocket`.
   * @param events Who hears the socket's events.
   * @param context The shared tick count and settings.
   */
  constructor(raw: WebSocket, events: SocketEvents, context: SocketContext) {
    this.raw = raw;
    this.#events = events;
    this.#context = context;
    raw.binaryType = "arraybuffer";
    // One listener object for every event: no closure per socket.
    raw.addEventListener("open", this);
    raw.addEventListener("message", this);
    raw.addEventListener("close", this);
    raw.addEventListener("error", this);
  }

  /**
   * Sends one binary frame (Deno copies it at once). Does nothing once the
   * socket is no longer open.
   *
   * @param frame The frame.
   * @returns False when the frame was not sent because the peer reads too
   * slowly; true otherwise.
   */
  send(frame: Uint8Array): boolean {
    const raw = this.raw;
    if (raw.readyState !== _OPEN) return true;
    const max = this.#context.maxBufferedAmount;
    if (max > 0 && raw.bufferedAmount > max) return false;
    raw.send(frame);
    return true;
  }

  /**
   * Closes the socket with a code and reason: at once when it is quiet (or
   * when told to), otherwise on a later {@linkcode DenoSocket.flush}. A
   * socket that has not opened yet closes when it opens.
   *
   * @param code The close code.
   * @param reason The close reason (at most 123 bytes of UTF-8).
   * @param immediately Do not wait for quiet: a shutdown under load, where
   * waiting would not find quiet, or a socket nobody waits for.
   * @returns False when the socket was already closing or closed (the call
   * did nothing).
   */
  close(code: number, reason: string, immediately = false): boolean {
    if (this.#code !== 0 || this.#done) return false;
    this.#code = code;
    this.#reason = reason;
    this.#since = this.#context.tick;
    this.#immediately = immediately;
    if (
      this.raw.readyState === _OPEN &&
      (immediately || this.seen < this.#context.tick - 1)
    ) {
      this.#closeNow();
    }
    return true;
  }

  /** Whether a close waits: call {@linkcode DenoSocket.flush} every tick. */
  get closing(): boolean {
    return this.#code !== 0 && !this.#done;
  }

  /**
   * Sends a waiting close once the socket is quiet or has waited long enough.
   *
   * @param now Send it now, quiet or not (a shutdown).
   * @returns Whether the close still waits.
   */
  flush(now = false): boolean {
    if (!this.closing) return false;
    const tick = this.#context.tick;
    const waited = now ||
      tick - this.#since >= this.#context.closeWaitTicks;
    // Not open yet: the open event closes it (at once, once it waited).
    if (this.raw.readyState === _CONNECTING) return !waited;
    if (!waited && this.seen >= tick - 1) return true;
    this.#closeNow();
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
        this.#events.onFrame((event as MessageEvent).data);
        return;
      case "open": {
        const context = this.#context;
        this.seen = context.tick + context.openGraceTicks;
        if (this.#code === 0) this.#events.onOpen();
        else if (
          this.#immediately ||
          context.tick - this.#since >= context.closeWaitTicks
        ) {
          this.#closeNow();
        }
        return;
      }
      case "close": {
        const { code, reason } = event as CloseEvent;
        this.#done = true;
        // Deno reports a connection dropped without a close frame as 0.
        this.#events.onClose(code || 1006, reason);
        return;
      }
    }
  }

  #closeNow(): void {
    this.#done = true;
    try {
      this.raw.close(this.#code, this.#reason);
    } catch {
      // Already closing: the close event follows.
    }
  }
}
