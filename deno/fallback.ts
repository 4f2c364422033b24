/**
 * One peer on the WebSocket-free fallback: a session whose frames go down a
 * Server-Sent Events stream and come up in POSTs (see `lib/sse.ts` for the
 * text). To the handler it is a `PeerSocket` (`socket.ts`): `trySend`,
 * `requestClose` and the same three events.
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

import { textResponse } from "./endpoints.ts";
import { cors, preflightHeaders } from "../lib/cors.ts";
import {
  closeEvent,
  frameEvent,
  isSessionId,
  KEEP_ALIVE,
  sessionEvent,
} from "../lib/sse.ts";
import type { PeerSocket, SocketEvents } from "./socket.ts";
import { readFrame } from "../lib/body.ts";
import { parsePeerUrl } from "../lib/url.ts";

/** Settings and the tick count, shared by every session of one server. */
export interface SseContext {
  /** The scheduler's tick count; the owner increments it. */
  readonly tick: number;
  /** Bytes that may wait for a session's reader (0: no limit). */
  readonly maxBufferedAmount: number;
  /** Ticks of silence after which a keep-alive comment goes out. */
  readonly keepAliveTicks: number;
  /**
   * Ticks a session may go with no stream open and no frame posted before
   * it is given up (its client went away without a word).
   */
  readonly orphanTicks: number;
}

const _encoder = new TextEncoder();

/**
 * The high-water mark of a stream's queue, in bytes: how much may wait for
 * the reader before the stream reports backpressure (a negative
 * `desiredSize`). The bytes waiting are read back as this mark minus
 * `desiredSize`, so the stream and that count must use the same value.
 */
const _STREAM_HIGH_WATER = 16384;

/** The headers of a stream's response. */
const _STREAM_HEADERS: HeadersInit = {
  // SSE is UTF-8 by definition: no charset parameter, for clients that
  // compare the type as it is.
  "content-type": "text/event-stream",
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
export class SseSession implements PeerSocket {
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
  /** The tick since which no stream is open and nothing was posted. */
  #alone = 0;
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
        // The client went away: keep the session for a while, queue its
        // frames.
        if (this.#stream === controller) this.#orphan();
      },
    }, new ByteLengthQueuingStrategy({ highWaterMark: _STREAM_HIGH_WATER }));
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
  trySend(frame: Uint8Array | string): boolean {
    if (this.#closed) return true;
    const max = this.#context.maxBufferedAmount;
    if (max > 0 && this.#waiting() > max) return false;
    // The fallback carries binary protocols only: a text frame goes as its
    // UTF-8 bytes.
    this.#write(
      frameEvent(typeof frame === "string" ? _encoder.encode(frame) : frame),
    );
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
  requestClose(code: number, reason: string): boolean {
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

  /**
   * Ends the session as its client asked (a DELETE): the stream ends, and
   * the close is reported as the client's.
   */
  end(): void {
    if (this.#closed) return;
    this.#closed = true;
    const stream = this.#stream;
    this.#stream = undefined;
    this.#queue = [];
    try {
      stream?.close();
    } catch {
      // Cancelled meanwhile.
    }
    queueMicrotask(() => this.#events.onClose(1000, "Closed by the client"));
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
  flush(_now?: boolean): boolean {
    return false;
  }

  /**
   * Hands a frame that came up in a POST to the owner.
   *
   * @param frame The frame's bytes.
   */
  deliver(frame: ArrayBuffer): void {
    if (this.#closed) return;
    this.#alone = this.#context.tick;
    this.#events.onFrame(frame);
  }

  /**
   * One scheduler tick: a keep-alive comment on a stream silent too long.
   *
   * @returns Whether the session has had no stream and no frame for
   * `orphanTicks`: its client is gone, and it must be closed.
   */
  tick(): boolean {
    const context = this.#context;
    if (this.#stream === undefined) {
      return !this.#closed &&
        context.tick - this.#alone >= context.orphanTicks;
    }
    if (context.tick - this.#written >= context.keepAliveTicks) {
      this.#write(KEEP_ALIVE);
    }
    return false;
  }

  /** The stream went: the session waits for a resume, for a while. */
  #orphan(): void {
    this.#stream = undefined;
    this.#alone = this.#context.tick;
  }

  /** Bytes waiting for the reader, in the stream or in the queue. */
  #waiting(): number {
    const stream = this.#stream;
    if (stream === undefined) return this.#queued;
    return Math.max(0, _STREAM_HIGH_WATER - (stream.desiredSize ?? 0));
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
        this.#orphan();
      }
    }
    this.#queue.push(chunk);
    this.#queued += chunk.length;
  }
}

/** Options of {@linkcode Sessions}. */
export interface SessionsOptions {
  /**
   * The group key a request's path names (the token path stripped).
   *
   * @param target The request's path and query below the base path.
   * @returns The key, or `undefined` for a URL without a path.
   */
  keyOf(target: string): string | undefined;
  /**
   * Counts a refusal for metrics.
   *
   * @param reason Its label.
   */
  refused(reason: string): void;
  /** Most bytes a POSTed frame may have. */
  maxMessageSize: number;
  /**
   * Answers a request for a session that does not live here, when another
   * node holds it (on a cluster).
   *
   * @param request The request.
   * @param id The session id.
   * @returns The other node's answer, or `undefined` (then 404).
   */
  elsewhere?: (request: Request, id: string) => Promise<Response> | undefined;
  /** Origins allowed (empty: any), for the answers' CORS headers. */
  allowOrigins: ReadonlySet<string>;
  /**
   * Whether a path (as a key) belongs to a plain endpoint that answers its
   * own CORS preflights (the ICE servers).
   *
   * @param key The path without its leading `/`.
   * @returns True for such a path.
   */
  plain(key: string | undefined): boolean;
}

/**
 * Whether a request opens (or resumes) a fallback stream: a GET whose
 * Accept lists `text/event-stream` (media types ignore case).
 */
function _wantsStream(request: Request): boolean {
  return request.method === "GET" &&
    /text\/event-stream/i.test(request.headers.get("accept") ?? "");
}

/** The session a fallback request names, if any. */
function _sessionOf(request: Request): string | null {
  const query = request.url.indexOf("?");
  const id = query === -1
    ? null
    : new URLSearchParams(request.url.slice(query)).get("session");
  return id ?? request.headers.get("last-event-id");
}

/**
 * The fallback sessions of one server, by id, and the requests that follow
 * a session's opening GET: a GET that resumes a dropped stream, a POST that
 * sends a frame up, a DELETE that ends the session.
 *
 * - an unknown session: 404; a session used on another key: 403;
 * - a second stream while one is open: 409;
 * - a POSTed body over the maximum message size: 413, unread;
 * - a frame: 204 (what the frame does to the session comes down its stream).
 */
export class Sessions<C extends { readonly key: string | undefined }> {
  readonly #entries = new Map<string, { session: SseSession; conn: C }>();
  readonly #options: SessionsOptions;

  /**
   * Creates an empty registry.
   *
   * @param options How to read a request's key, count refusals, and the
   * frame size limit.
   */
  constructor(options: SessionsOptions) {
    this.#options = options;
  }

  /**
   * Registers a new session.
   *
   * @param session The session.
   * @param conn The connection it carries.
   */
  add(session: SseSession, conn: C): void {
    this.#entries.set(session.id, { session, conn });
  }

  /**
   * Forgets a session that ended.
   *
   * @param session The session.
   */
  delete(session: SseSession): void {
    this.#entries.delete(session.id);
  }

  /**
   * Every live session, with the connection it carries.
   *
   * @returns An iterator over them.
   */
  held(): IterableIterator<{ session: SseSession; conn: C }> {
    return this.#entries.values();
  }

  /**
   * Answers a request of the fallback transport: a GET that accepts
   * `text/event-stream` (a new session, opened by `open`, or the resumption
   * of one), a POST or DELETE that names a session, or a CORS preflight.
   * Answers carry the CORS headers; a page on a refused origin gets 403
   * before anything is done (a new session's GET gets it from admission).
   *
   * @param request The request.
   * @param target Its path and query below the base path.
   * @param open Opens a new session: the gates, then the stream.
   * @returns The answer, or `undefined` when the request is not the
   * fallback's.
   */
  answer(
    request: Request,
    target: string,
    open: () => Response | Promise<Response>,
  ): Response | Promise<Response> | undefined {
    const session = _sessionOf(request);
    const method = request.method;
    let answer: () => Response | Promise<Response>;
    if (_wantsStream(request)) {
      answer = session === null
        ? open
        : () => this.#resume(request, target, session);
    } else if (
      session !== null && (method === "POST" || method === "DELETE")
    ) {
      answer = () => this.#post(request, target, session);
    } else if (
      method === "OPTIONS" &&
      request.headers.has("access-control-request-method") &&
      !this.#options.plain(parsePeerUrl(target)?.key)
    ) {
      answer = () =>
        new Response(null, {
          status: 204,
          headers: preflightHeaders(
            "GET, POST, DELETE",
            "Content-Type, Last-Event-ID",
          ),
        });
    } else return undefined;
    // A new session's GET meets the origin rule in admission, with the
    // WebSocket's other gates; every other request meets it here.
    return this.#withCors(
      request,
      answer,
      method === "GET" && session === null,
    );
  }

  async #withCors(
    request: Request,
    answer: () => Response | Promise<Response>,
    admitted: boolean,
  ): Promise<Response> {
    const verdict = cors(
      request.headers.get("origin"),
      this.#options.allowOrigins,
    );
    let response: Response;
    if (verdict.allowed || admitted) response = await answer();
    else {
      this.#options.refused("origin");
      await request.body?.cancel();
      response = textResponse(403, "Forbidden: origin not allowed");
    }
    for (const [name, value] of Object.entries(verdict.headers)) {
      response.headers.set(name, value);
    }
    return response;
  }

  /**
   * Answers a GET that resumes a session: its stream, or a refusal.
   *
   * @param request The GET.
   * @param target Its path and query below the base path.
   * @param id The session id it names.
   * @returns The response.
   */
  #resume(
    request: Request,
    target: string,
    id: string,
  ): Response | Promise<Response> {
    const entry = this.#find(request, target, id);
    if (!("session" in entry)) return entry;
    return entry.session.open() ??
      textResponse(409, "Conflict: the session's stream is open already");
  }

  /**
   * Answers a POST (one frame up) or a DELETE (the end of the session).
   *
   * @param request The POST or DELETE.
   * @param target Its path and query below the base path.
   * @param id The session id it names.
   * @returns The response.
   */
  async #post(
    request: Request,
    target: string,
    id: string,
  ): Promise<Response> {
    const entry = this.#find(request, target, id);
    if (!("session" in entry)) {
      if (entry instanceof Response) await request.body?.cancel();
      return entry;
    }
    if (request.method === "DELETE") {
      entry.session.end();
      return new Response(null, { status: 204 });
    }
    const max = this.#options.maxMessageSize;
    const posted = await readFrame(request, max);
    if (!posted.ok) {
      this.#options.refused("message_size");
      return textResponse(
        413,
        `Content Too Large: a frame is at most ${max} bytes`,
      );
    }
    entry.session.deliver(posted.frame);
    return new Response(null, { status: 204 });
  }

  #find(
    request: Request,
    target: string,
    id: string,
  ): { session: SseSession; conn: C } | Response | Promise<Response> {
    const entry = isSessionId(id) ? this.#entries.get(id) : undefined;
    if (entry === undefined) {
      return (isSessionId(id) && this.#options.elsewhere?.(request, id)) ||
        textResponse(404, "Not Found: no such session");
    }
    if (this.#options.keyOf(target) !== entry.conn.key) {
      this.#options.refused("session_key");
      return textResponse(403, "Forbidden: the session belongs to another key");
    }
    return entry;
  }
}
