/**
 * The client side of the WebSocket-free fallback: {@linkcode SseSocket}
 * speaks the sigver protocol over plain HTTP (Server-Sent Events down, one
 * POST per frame up) behind the part of the `WebSocket` interface that
 * `SigverClient` uses, so that the client works the same over either.
 *
 * - It opens with `GET <group URL>` and `Accept: text/event-stream`; the
 *   first event names the session. An HTTP refusal closes it before it
 *   opens (code 1006, the status and text in the reason).
 * - Frames go up one POST at a time, in order, to `<group URL>?session=<id>`.
 * - A stream that drops is resumed (`?session=<id>`), a few times in a row
 *   (the server may hold the old stream for a few seconds: 409 is retried),
 *   before the socket closes with 1006.
 * - A frame the server did not take (a POST that failed or was refused)
 *   closes the socket with 1006, as a WebSocket that cannot send closes.
 * - `close()` ends the session with `DELETE <group URL>?session=<id>`.
 *
 * @module
 */

import { type SseEvent, SseParser, unbase64 } from "../lib/sse.ts";
import { pause } from "../lib/deadline.ts";

const _CONNECTING = 0;
const _OPEN = 1;
const _CLOSING = 2;
const _CLOSED = 3;

/**
 * Attempts in a row to resume a dropped stream before giving up; the n-th
 * waits n times {@linkcode SseSocketOptions.resumeWait} first (7.5 s in all
 * by default, past the server's next heartbeat write, which shows it that
 * the old stream is gone).
 */
const RESUMES = 5;

/** Options of {@linkcode SseSocket}. */
export interface SseSocketOptions {
  /**
   * Milliseconds: the n-th resume in a row waits n times this first
   * (default 500).
   */
  resumeWait?: number;
}

/** How a {@linkcode SseSocket} closed, as a WebSocket's close event says. */
export interface SseCloseInit {
  /** The close code. */
  code: number;
  /** The close reason. */
  reason: string;
  /** Whether the server closed it with a close event. */
  wasClean: boolean;
}

/**
 * A sigver session over Server-Sent Events and POSTs, shaped like the
 * `WebSocket` that `SigverClient` drives.
 *
 * @example
 * ```ts ignore
 * const socket = new SseSocket("http://127.0.0.1:8000/room");
 * socket.onopen = () => socket.send(frame);
 * socket.onmessage = (event) => console.log(event.data);
 * ```
 */
export class SseSocket {
  /** The group URL (http or https). */
  readonly url: string;
  /** One of the `WebSocket` ready states (0 to 3). */
  readyState: number = _CONNECTING;
  /** Always `arraybuffer`: frames arrive as `ArrayBuffer`s. */
  binaryType: BinaryType = "arraybuffer";
  /** Called once the session is open. */
  onopen: ((event: Event) => unknown) | null = null;
  /** Called with each server frame (`data` is an `ArrayBuffer`). */
  onmessage: ((event: MessageEvent) => unknown) | null = null;
  /** Called once, when the session ends. */
  onclose: ((event: CloseEvent) => unknown) | null = null;
  /** Never called: failures come as a close (kept for the interface). */
  onerror: ((event: Event) => unknown) | null = null;
  #session: string | undefined;
  /** Resumes tried since a stream last opened. */
  #resumes = 0;
  #abort = new AbortController();
  #uploads: Uint8Array<ArrayBuffer>[] = [];
  #uploading = false;
  readonly #resumeWait: number;

  /**
   * Starts opening a session.
   *
   * @param url The group URL: `http(s)://host/<key>[?favored]` (a token
   * path included).
   * @param options How long resumes wait.
   */
  constructor(url: string, options: SseSocketOptions = {}) {
    this.url = url;
    this.#resumeWait = options.resumeWait ?? 500;
    void this.#run();
  }

  /**
   * Sends one frame (queued behind the frames before it).
   *
   * @param frame The frame's bytes.
   * @throws {DOMException} When the session is not open (as a WebSocket).
   */
  send(frame: Uint8Array): void {
    if (this.readyState !== _OPEN) {
      throw new DOMException("The session is not open", "InvalidStateError");
    }
    this.#uploads.push(frame.slice());
    if (!this.#uploading) void this.#upload();
  }

  /**
   * Ends the session (the server forgets it at once).
   *
   * @param code The close code reported locally.
   * @param reason The close reason reported locally.
   */
  close(code = 1000, reason = ""): void {
    if (this.readyState >= _CLOSING) return;
    const session = this.#session;
    if (session !== undefined) {
      this.readyState = _CLOSING;
      fetch(this.#sessionUrl(session), { method: "DELETE" })
        .then((response) => response.body?.cancel())
        .catch(() => {})
        .finally(() => this.#closed({ code, reason, wasClean: true }));
    } else this.#closed({ code, reason, wasClean: false });
  }

  #sessionUrl(session: string): string {
    const url = new URL(this.url);
    url.searchParams.set("session", session);
    return url.href;
  }

  async #run(): Promise<void> {
    while (this.readyState < _CLOSING) {
      const url = this.#session === undefined
        ? this.url
        : this.#sessionUrl(this.#session);
      let response: Response;
      try {
        response = await fetch(url, {
          headers: { accept: "text/event-stream" },
          signal: this.#abort.signal,
          cache: "no-store",
        });
      } catch (error) {
        if (this.#session === undefined || !(await this.#backOff())) {
          this.#closed({
            code: 1006,
            reason: `Cannot reach the server: ${_why(error)}`,
            wasClean: false,
          });
          return;
        }
        continue;
      }
      if (response.status === 409 && this.#session !== undefined) {
        // The server still holds the stream that dropped: try again.
        await response.body?.cancel();
        if (await this.#backOff()) continue;
        break;
      }
      if (response.status !== 200 || response.body === null) {
        const text = (await response.text().catch(() => "")).trim();
        this.#closed({
          code: 1006,
          reason: `HTTP ${response.status}: ${text}`.slice(0, 123),
          wasClean: false,
        });
        return;
      }
      if (await this.#read(response.body)) return;
      // The stream ended without a close event: resume the session.
      if (!(await this.#backOff())) break;
    }
    // close() may have been called meanwhile: it reports its own code.
    if (this.readyState >= _CLOSING) return;
    this.#closed({
      code: 1006,
      reason: "The event stream dropped",
      wasClean: false,
    });
  }

  /** Waits before the next resume; false when there are none left. */
  async #backOff(): Promise<boolean> {
    if (++this.#resumes > RESUMES) return false;
    await pause(this.#resumeWait * this.#resumes, this.#abort.signal);
    return this.readyState < _CLOSING;
  }

  /** Reads a stream; true when the session ended in it. */
  async #read(body: ReadableStream<Uint8Array>): Promise<boolean> {
    const parser = new SseParser();
    try {
      for await (const chunk of body.pipeThrough(new TextDecoderStream())) {
        for (const event of parser.push(chunk)) {
          if (this.#event(event)) return true;
        }
      }
    } catch {
      // A dropped connection, or our own abort: the caller decides.
    }
    return this.readyState >= _CLOSING;
  }

  /** Handles one event; true when it ended the session. */
  #event(event: SseEvent): boolean {
    switch (event.event) {
      case "session":
        // A stream that opens (or resumes) starts the count again.
        this.#resumes = 0;
        if (this.#session === undefined) {
          this.#session = event.data;
          this.readyState = _OPEN;
          this.onopen?.(new Event("open"));
        }
        return false;
      case "close": {
        let close = { code: 1006, reason: "" };
        try {
          close = JSON.parse(event.data);
        } catch {
          // Keep 1006: the event did not say.
        }
        this.#closed({
          code: close.code,
          reason: close.reason,
          wasClean: true,
        });
        return true;
      }
      case "message":
        if (this.readyState === _OPEN) {
          try {
            const data = unbase64(event.data).buffer;
            this.onmessage?.(new MessageEvent("message", { data }));
          } catch {
            // A frame that is not base64 is not ours to deliver.
          }
        }
        return false;
      default:
        return false;
    }
  }

  async #upload(): Promise<void> {
    this.#uploading = true;
    try {
      while (this.#uploads.length > 0 && this.readyState === _OPEN) {
        const frame = this.#uploads.shift()!;
        let response: Response;
        try {
          response = await fetch(this.#sessionUrl(this.#session!), {
            method: "POST",
            headers: { "content-type": "application/octet-stream" },
            body: frame,
          });
        } catch (error) {
          this.#fail(`Cannot send: ${_why(error)}`);
          return;
        }
        if (response.ok) {
          await response.body?.cancel();
          continue;
        }
        const text = (await response.text().catch(() => "")).trim();
        if (response.status === 404) {
          // Nothing to DELETE: the session is gone.
          this.#closed({
            code: 1006,
            reason: "The server no longer knows the session",
            wasClean: false,
          });
        } else this.#fail(`Cannot send: HTTP ${response.status}: ${text}`);
        return;
      }
    } finally {
      this.#uploading = false;
    }
  }

  /**
   * A frame was lost: ends the session (a DELETE, not waited for) and closes
   * with 1006, as a WebSocket that cannot send does.
   */
  #fail(reason: string): void {
    if (this.readyState >= _CLOSING) return;
    const session = this.#session;
    if (session !== undefined) {
      fetch(this.#sessionUrl(session), { method: "DELETE" })
        .then((response) => response.body?.cancel())
        .catch(() => {});
    }
    this.#closed({ code: 1006, reason: reason.slice(0, 123), wasClean: false });
  }

  #closed(init: SseCloseInit): void {
    if (this.readyState === _CLOSED) return;
    this.readyState = _CLOSED;
    this.#uploads = [];
    this.#abort.abort();
    this.onclose?.(new CloseEvent("close", init));
  }
}

function _why(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
