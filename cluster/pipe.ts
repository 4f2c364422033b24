/**
 * A pipe: the WebSocket an edge node opens to the node that owns a peer's
 * group, on the peer's own path. The edge relays the peer's frames into it
 * verbatim and the owner's frames back, so that the owner alone keeps the
 * protocol's rules (membership, ids, heartbeats).
 *
 * A pipe queues what the peer sends while it connects, and tells its owner
 * how it ended: closed by the far side (with the code and reason to mirror),
 * refused (the owner answered the upgrade with an HTTP status: it is alive)
 * or unreachable (no connection: the owner is gone, and its lease may be
 * taken over).
 *
 * @module
 */

/** How a pipe ended. */
export type PipeEnd =
  | { kind: "closed"; code: number; reason: string }
  | { kind: "refused"; status: number }
  | { kind: "unreachable"; error: string };

/** What a pipe reports to the connection it serves. */
export interface PipeEvents {
  /** The pipe opened (queued frames are sent). */
  onPipeOpen(): void;
  /**
   * A frame came from the owner.
   *
   * @param data The frame.
   */
  onPipeFrame(data: ArrayBuffer | string): void;
  /**
   * The pipe ended; reported once.
   *
   * @param end How.
   */
  onPipeEnd(end: PipeEnd): void;
}

/** Options of {@linkcode Pipe}. */
export interface PipeOptions {
  /** Milliseconds the pipe may take to open before it counts as unreachable. */
  connectTimeout: number;
  /** Bytes that may wait in the pipe's send buffer (0: no limit). */
  maxBufferedAmount: number;
  /** Frames that may wait while the pipe connects. */
  maxQueued: number;
}

const _OPEN = 1;
const _CONNECTING = 0;

/**
 * An edge-to-owner WebSocket for one peer.
 *
 * @example
 * ```ts ignore
 * const pipe = new Pipe("ws://10.0.0.2:8000/room", headers, events, {
 *   connectTimeout: 2000, maxBufferedAmount: 1 << 20, maxQueued: 256,
 * });
 * pipe.send(frame);
 * ```
 */
export class Pipe {
  readonly #socket: WebSocket;
  readonly #events: PipeEvents;
  readonly #options: PipeOptions;
  #queue: (ArrayBuffer | string)[] | undefined = [];
  #ended = false;
  #error = "";
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Opens the pipe.
   *
   * @param url The owner's URL for the peer's path (`ws://host:port/key`).
   * @param headers The signed pipe headers.
   * @param events Who hears how the pipe goes.
   * @param options Timeout and bounds.
   */
  constructor(
    url: string,
    headers: Record<string, string>,
    events: PipeEvents,
    options: PipeOptions,
  ) {
    this.#events = events;
    this.#options = options;
    this.#socket = new WebSocket(url, { headers });
    this.#socket.binaryType = "arraybuffer";
    this.#socket.addEventListener("open", this);
    this.#socket.addEventListener("message", this);
    this.#socket.addEventListener("error", this);
    this.#socket.addEventListener("close", this);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#end({ kind: "unreachable", error: "connect timeout" });
      this.#abort();
    }, options.connectTimeout);
  }

  /** Whether the pipe is open. */
  get open(): boolean {
    return !this.#ended && this.#socket.readyState === _OPEN;
  }

  /**
   * Sends a frame to the owner, or queues it while the pipe connects.
   *
   * @param frame The frame, as the peer sent it.
   * @returns False when the owner reads too slowly or the queue is full.
   */
  send(frame: ArrayBuffer | string): boolean {
    if (this.#ended) return true;
    const queue = this.#queue;
    if (queue !== undefined) {
      if (queue.length >= this.#options.maxQueued) return false;
      queue.push(frame);
      return true;
    }
    const max = this.#options.maxBufferedAmount;
    if (max > 0 && this.#socket.bufferedAmount > max) return false;
    this.#socket.send(frame);
    return true;
  }

  /**
   * Closes the pipe (the peer went away, or the edge closes it). Nothing is
   * reported after this.
   *
   * @param code A close code a client may send: 1000 or 3000-4999.
   * @param reason The reason.
   */
  close(code: number, reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    clearTimeout(this.#timer);
    this.#queue = undefined;
    if (this.#socket.readyState === _CONNECTING) this.#abort();
    else {
      try {
        this.#socket.close(code, reason);
      } catch {
        // Already closing.
      }
    }
  }

  /**
   * Routes the socket's events (the `EventListener` object protocol).
   *
   * @param event An event of the socket.
   */
  handleEvent(event: Event): void {
    switch (event.type) {
      case "message":
        if (!this.#ended) {
          this.#events.onPipeFrame((event as MessageEvent).data);
        }
        return;
      case "open": {
        clearTimeout(this.#timer);
        const queue = this.#queue ?? [];
        this.#queue = undefined;
        if (this.#ended) return;
        for (const frame of queue) this.#socket.send(frame);
        this.#events.onPipeOpen();
        return;
      }
      case "error":
        this.#error = (event as ErrorEvent).message ?? "";
        return;
      case "close": {
        clearTimeout(this.#timer);
        const { code, reason, wasClean } = event as CloseEvent;
        if (this.#queue !== undefined) {
          // It never opened: the owner refused, or could not be reached.
          const status = /Invalid status code: (\d{3})/.exec(this.#error);
          this.#end(
            status
              ? { kind: "refused", status: Number(status[1]) }
              : { kind: "unreachable", error: this.#error || "closed" },
          );
        } else if (wasClean && code !== 0 && code !== 1006) {
          this.#end({ kind: "closed", code, reason });
        } else {
          this.#end({ kind: "unreachable", error: "the connection dropped" });
        }
        return;
      }
    }
  }

  #end(end: PipeEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#queue = undefined;
    this.#events.onPipeEnd(end);
  }

  /** Gives up a socket that has not opened (Deno may ignore close then). */
  #abort(): void {
    try {
      this.#socket.close();
    } catch {
      // Not closable yet: the close event, if any, is ignored.
    }
  }
}
