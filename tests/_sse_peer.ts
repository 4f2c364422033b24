/**
 * The WebSocket-free fallback spoken by hand, the way a client written from
 * the issue and `docs/fallback.md` speaks it: `fetch` for the stream, the
 * POSTs and the DELETE, `SseParser` for the event text, an independent
 * strict base64 decoder, and nothing of the package's own fallback client
 * (`client_sse.ts`), so that tests that use it check the wire.
 * {@linkcode SsePeer} is one fallback peer, on a server in this process
 * (`tests/fallback_test.ts`) or on a cluster's node
 * (`tests/cluster/fallback.cluster.ts`).
 *
 * ```ts ignore
 * await using peer = await SsePeer.open(server, "/room");
 * assert.equal(await peer.join(1), true);
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { deadline } from "../lib/deadline.ts";
import { type SseEvent, SseParser } from "../lib/sse.ts";
import {
  type Content,
  decodeMessage,
  encodeMessage,
} from "../lib/netflux/wire.ts";
import type { Message } from "../lib/netflux/wire.ts";
import type { SigverServer } from "../deno/serve.ts";
import { httpUrl, WAIT_TIMEOUT } from "./_helpers.ts";

const _STANDARD_BASE64 =
  /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Bytes of standard base64 (padding included), checked strictly. */
export function fromBase64(text: string): Uint8Array {
  assert.match(text, _STANDARD_BASE64, `not standard base64: ${text}`);
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** Bytes of base64url without padding, checked strictly. */
export function fromBase64Url(text: string): Uint8Array {
  assert.match(text, /^[A-Za-z0-9_-]+$/, `not base64url: ${text}`);
  const standard = text.replaceAll("-", "+").replaceAll("_", "/");
  return fromBase64(standard + "=".repeat((4 - standard.length % 4) % 4));
}

/** The data of a close event. */
export interface CloseData {
  code: number;
  reason: string;
}

/** One response of the fallback's stream, read in the background. */
export class EventStream {
  readonly response: Response;
  /** Every character read so far, comments included. */
  text = "";
  /** Whether the stream has ended (or was cancelled). */
  ended = false;
  /** Resolves with the close event's data, if one comes. */
  readonly closed: Promise<CloseData>;
  /** Resolves once the stream has ended. */
  readonly done: Promise<void>;
  #events: SseEvent[] = [];
  #waiters: (() => void)[] = [];
  #abort: AbortController;
  #close = Promise.withResolvers<CloseData>();
  #closeData: CloseData | undefined;
  #onEvent: ((event: SseEvent) => void) | undefined;

  constructor(
    response: Response,
    abort: AbortController,
    onEvent?: (event: SseEvent) => void,
  ) {
    this.response = response;
    this.#abort = abort;
    this.#onEvent = onEvent;
    this.closed = this.#close.promise;
    this.done = this.#read();
  }

  /**
   * GETs `url` with `Accept: text/event-stream` (and `headers`); `onEvent`
   * sees every event as it arrives, before it is queued.
   */
  static async open(
    url: string,
    headers?: HeadersInit,
    onEvent?: (event: SseEvent) => void,
  ): Promise<EventStream> {
    const abort = new AbortController();
    const response = await fetch(url, {
      headers: { accept: "text/event-stream", ...headers },
      signal: abort.signal,
    });
    return new EventStream(response, abort, onEvent);
  }

  async #read(): Promise<void> {
    const parser = new SseParser();
    try {
      const body = this.response.body;
      if (body === null) return;
      for await (const chunk of body.pipeThrough(new TextDecoderStream())) {
        this.text += chunk;
        for (const event of parser.push(chunk)) {
          this.#onEvent?.(event);
          this.#events.push(event);
          if (event.event === "close") {
            this.#closeData = JSON.parse(event.data);
            this.#close.resolve(this.#closeData!);
          }
        }
        this.#wake();
      }
    } catch {
      // Cancelled by the test.
    } finally {
      this.ended = true;
      this.#wake();
    }
  }

  /** The next event; throws once the stream ended with none left. */
  async next(timeout: number = WAIT_TIMEOUT): Promise<SseEvent> {
    await deadline(this.#arrival(), timeout, "an event");
    const event = this.#events.shift();
    if (event === undefined) {
      throw new Error("Expected an event, but the stream ended");
    }
    return event;
  }

  /**
   * Waits until the stream has ended, and checks that nothing is left to
   * read but, at most, its close event.
   */
  async end(): Promise<void> {
    await deadline(this.done, WAIT_TIMEOUT, "the stream to end");
    const left = this.#events.filter((e) => e.event !== "close");
    assert.deepEqual(left, [], "events before the end, not read");
    assert.ok(this.#events.length <= 1, "more than one close event");
  }

  /**
   * Waits until the stream has ended, and returns its close event's data:
   * `undefined` when it ended without one.
   */
  async closeAtEnd(): Promise<CloseData | undefined> {
    await deadline(this.done, WAIT_TIMEOUT, "the stream to end");
    return this.#closeData;
  }

  /** The comment lines read so far. */
  comments(): string[] {
    return this.text.split(/\r\n|\r|\n/).filter((l) => l.startsWith(":"));
  }

  /** Drops the connection, as a client that went away. */
  async cancel(): Promise<void> {
    this.#abort.abort();
    await this.done;
  }

  async #arrival(): Promise<void> {
    while (this.#events.length === 0 && !this.ended) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

/** A `content` to send; absent fields are zero. */
export type ContentInit = Partial<Omit<Content, "data">> & { data?: string };

/** A frame as it came down the stream. */
export interface Frame {
  bytes: Uint8Array;
  message: Message;
}

export interface SsePeerOptions {
  /** Headers of the opening GET (an Origin...). */
  headers?: HeadersInit;
  /** Let `next()` return heartbeats too (otherwise only counted). */
  keepHeartbeats?: boolean;
  /**
   * POST an answer to every heartbeat as it arrives, read or not, as a
   * client must where the server's clock runs by itself (a cluster).
   */
  answerHeartbeats?: boolean;
}

/** Answers every heartbeat that comes down a session's streams. */
class _HeartbeatAnswers {
  readonly #url: string;
  #id: string | undefined;
  readonly #sent = new Set<Promise<unknown>>();

  constructor(url: string) {
    this.#url = url;
  }

  /** For {@linkcode EventStream.open}: sees each event as it arrives. */
  readonly onEvent = (event: SseEvent): void => {
    if (event.event === "session") this.#id = event.data;
    if (event.event !== "message" || this.#id === undefined) return;
    // A frame that does not decode is the reader's to report, not ours.
    let type: string | undefined;
    try {
      const bytes = Uint8Array.from(atob(event.data), (c) => c.charCodeAt(0));
      type = decodeMessage(bytes)?.type;
    } catch {
      return;
    }
    if (type !== "heartbeat") return;
    const url = this.#url;
    const answer = fetch(
      `${url}${url.includes("?") ? "&" : "?"}session=${this.#id}`,
      {
        method: "POST",
        body: encodeMessage({ type: "heartbeat", heartbeat: true }).slice(),
      },
    ).then((response) => response.body?.cancel());
    this.#sent.add(answer);
  };

  /** Waits until every answer sent so far has its response. */
  async settled(): Promise<void> {
    await Promise.all(this.#sent);
  }
}

/** A fallback peer: its session, its stream, its POSTs. */
export class SsePeer implements AsyncDisposable {
  /** The URL the session was opened on. */
  readonly url: string;
  /** The session id. */
  readonly id: string;
  /** The stream being read. */
  stream: EventStream;
  /** Heartbeats received so far. */
  heartbeats = 0;
  /** The bytes of every frame read so far. */
  readonly received: Uint8Array[] = [];
  readonly #keepHeartbeats: boolean;
  readonly #answers: _HeartbeatAnswers | undefined;

  private constructor(
    url: string,
    id: string,
    stream: EventStream,
    options: SsePeerOptions,
    answers: _HeartbeatAnswers | undefined,
  ) {
    this.url = url;
    this.id = id;
    this.stream = stream;
    this.#keepHeartbeats = options.keepHeartbeats ?? false;
    this.#answers = answers;
  }

  /**
   * Opens a session on `path` and reads its session event.
   *
   * @param at A server in this process, or the `http://` base URL of one
   * elsewhere (a node, a balancer).
   * @param path The request target: `/room`, `/t/<token>/room?favored`.
   * @param options Headers, and what to do with heartbeats.
   */
  static async open(
    at: SigverServer | string,
    path: string,
    options: SsePeerOptions = {},
  ): Promise<SsePeer> {
    const url = typeof at === "string" ? `${at}${path}` : httpUrl(at, path);
    const answers = options.answerHeartbeats
      ? new _HeartbeatAnswers(url)
      : undefined;
    const stream = await EventStream.open(
      url,
      options.headers,
      answers?.onEvent,
    );
    if (stream.response.status !== 200) {
      await stream.done;
      throw new Error(
        `Expected 200, got ${stream.response.status}: ${stream.text}`,
      );
    }
    const first = await stream.next();
    assert.equal(first.event, "session");
    return new SsePeer(url, first.data, stream, options, answers);
  }

  /** Resolves with the data of the current stream's close event. */
  get closed(): Promise<CloseData> {
    return this.stream.closed;
  }

  /** The URL of the session's requests: the opening URL with `session`. */
  sessionUrl(url: string = this.url): string {
    return `${url}${url.includes("?") ? "&" : "?"}session=${this.id}`;
  }

  /** POSTs a body to the session; the answer's status and text. */
  async post(
    body: Uint8Array | BodyInit | null,
    url: string = this.sessionUrl(),
    init: RequestInit = {},
  ): Promise<{ status: number; text: string }> {
    const response = await fetch(url, {
      method: "POST",
      body: body instanceof Uint8Array ? new Uint8Array(body) : body,
      ...init,
    });
    return { status: response.status, text: await response.text() };
  }

  /** Sends one message up; the POST must get 204 with no body. */
  async send(message: Message): Promise<void> {
    const { status, text } = await this.post(encodeMessage(message));
    assert.equal(status, 204, text);
    assert.equal(text, "");
  }

  async sendContent(content: ContentInit = {}): Promise<void> {
    await this.send({
      type: "content",
      content: {
        senderId: content.senderId ?? 0,
        recipientId: content.recipientId ?? 0,
        lastData: content.lastData ?? false,
        data: new TextEncoder().encode(content.data ?? ""),
      },
    });
  }

  async sendHeartbeat(): Promise<void> {
    await this.send({ type: "heartbeat", heartbeat: true });
  }

  /** The next frame, heartbeats included, as bytes and decoded. */
  async nextFrame(): Promise<Frame> {
    const event = await this.stream.next();
    assert.equal(
      event.event,
      "message",
      `expected a frame, got ${event.event}: ${event.data}`,
    );
    const bytes = fromBase64(event.data);
    this.received.push(bytes);
    const message = decodeMessage(bytes);
    assert.ok(message !== undefined, "a frame with no type");
    return { bytes, message };
  }

  /** The next message (heartbeats only counted, unless kept). */
  async next(): Promise<Message> {
    for (;;) {
      const { message } = await this.nextFrame();
      if (message.type !== "heartbeat") return message;
      this.heartbeats++;
      if (this.#keepHeartbeats) return message;
    }
  }

  async join(id: number, members: number[] = []): Promise<boolean> {
    await this.send({ type: "connect", connect: { id, members } });
    const reply = await this.next();
    assert.equal(reply.type, "connected", JSON.stringify(reply));
    return (reply as { connected: boolean }).connected;
  }

  async nextContent(): Promise<Omit<Content, "data"> & { data: string }> {
    const message = await this.next();
    if (message.type !== "content") {
      throw new Error(`Expected content, got ${JSON.stringify(message)}`);
    }
    return {
      ...message.content,
      data: new TextDecoder().decode(message.content.data),
    };
  }

  /** Resumes the session with a new GET; it must answer 200. */
  async resume(headers?: HeadersInit, url = this.sessionUrl()): Promise<void> {
    const stream = await EventStream.open(url, headers, this.#answers?.onEvent);
    assert.equal(stream.response.status, 200, stream.text);
    this.stream = stream;
    const first = await stream.next();
    assert.deepEqual([first.event, first.data], ["session", this.id]);
  }

  /** Ends the session (through `url`'s server): the DELETE's status. */
  async delete(url: string = this.sessionUrl()): Promise<number> {
    const response = await fetch(url, { method: "DELETE" });
    await response.body?.cancel();
    return response.status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#answers?.settled();
    if (!this.stream.ended) await this.delete();
    await this.stream.cancel();
  }
}
