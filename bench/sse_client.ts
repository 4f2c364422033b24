/**
 * A client of the WebSocket-free fallback for load generation: raw HTTP/1.1
 * over two kept-alive TCP connections per peer, one for the event stream
 * (`GET /<key>` with `Accept: text/event-stream`) and one for the POSTs that
 * carry its frames up, one at a time as `docs/fallback.md` asks. Requests
 * are prebuilt bytes, so that a relayed message costs the load generator one
 * write and the parse of one short answer, not a `fetch` (its Request,
 * Response and streams objects would cost more than the server's work).
 *
 * The pure parts, {@linkcode ChunkedDecoder} and {@linkcode ResponseReader},
 * are tested in `tests/bench_test.ts`.
 *
 * @module
 */

import { SseParser, unbase64 } from "../lib/sse.ts";
import {
  type CloseInfo,
  DenoStream,
  headEnd,
  readLoop,
  type WsHandlers,
} from "./ws_client.ts";

const _CR = 13;
const _LF = 10;

/**
 * Reads the body of an HTTP/1.1 response sent with
 * `Transfer-Encoding: chunked`, fed in pieces cut anywhere.
 *
 * @example
 * ```ts
 * import { ChunkedDecoder } from "./sse_client.ts";
 * const d = new ChunkedDecoder();
 * const out = d.feed(new TextEncoder().encode("3\r\nabc\r\n0\r\n\r\n"));
 * console.assert(new TextDecoder().decode(out[0]) === "abc" && d.done);
 * ```
 */
export class ChunkedDecoder {
  /** Whether the last chunk (and its trailer) has been read. */
  done = false;
  /**
   * Bytes of the last `feed` that were the body's: all of them, unless the
   * body ended before them (what follows is the next response's).
   */
  used = 0;
  #state: "size" | "data" | "crlf" | "trailer" = "size";
  #line = "";
  #remaining = 0;

  /**
   * Feeds bytes.
   *
   * @param bytes The next bytes of the body.
   * @returns The data they hold, as views into `bytes` (valid as long as
   * `bytes` is).
   * @throws {SyntaxError} When a chunk size is not hexadecimal.
   */
  feed(bytes: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let i = 0;
    while (i < bytes.length && !this.done) {
      switch (this.#state) {
        case "size":
        case "trailer": {
          const b = bytes[i++];
          if (b !== _LF) {
            if (b !== _CR) this.#line += String.fromCharCode(b);
            continue;
          }
          const line = this.#line;
          this.#line = "";
          if (this.#state === "trailer") {
            if (line === "") this.done = true;
            continue;
          }
          const hex = line.split(";")[0].trim();
          if (!/^[0-9a-fA-F]+$/.test(hex)) {
            throw new SyntaxError(
              `Cannot read a chunked body: chunk size '${hex}'`,
            );
          }
          this.#remaining = parseInt(hex, 16);
          this.#state = this.#remaining === 0 ? "trailer" : "data";
          continue;
        }
        case "data": {
          const n = Math.min(this.#remaining, bytes.length - i);
          out.push(bytes.subarray(i, i + n));
          i += n;
          this.#remaining -= n;
          if (this.#remaining === 0) {
            this.#state = "crlf";
            this.#remaining = 2;
          }
          continue;
        }
        case "crlf":
          i++;
          if (--this.#remaining === 0) this.#state = "size";
          continue;
      }
    }
    this.used = i;
    return out;
  }
}

/** One HTTP response read by a {@linkcode ResponseReader}. */
export interface HttpResponse {
  /** The status code; 0 when the status line is malformed. */
  status: number;
  /** The body as text (short answers: errors, or nothing). */
  body: string;
}

/**
 * Reads consecutive HTTP/1.1 responses from a kept-alive connection, fed in
 * pieces cut anywhere: the head, then a body of `Content-Length` bytes, or
 * chunked, or none (1xx, 204, 304, or neither header).
 *
 * @example
 * ```ts
 * import { ResponseReader } from "./sse_client.ts";
 * const r = new ResponseReader();
 * const got = r.feed(new TextEncoder().encode("HTTP/1.1 204 No Content\r\n\r\n"));
 * console.assert(got[0].status === 204);
 * ```
 */
export class ResponseReader {
  #head: Uint8Array = new Uint8Array(0);
  #status = 0;
  #length = -1;
  #chunked: ChunkedDecoder | undefined;
  #body = "";
  #inBody = false;
  #text = new TextDecoder();

  /**
   * Feeds bytes.
   *
   * @param bytes The next bytes of the connection.
   * @returns The responses they completed, in order.
   */
  feed(bytes: Uint8Array): HttpResponse[] {
    const out: HttpResponse[] = [];
    let rest: Uint8Array = bytes;
    while (rest.length > 0) {
      if (!this.#inBody) {
        let buf = rest;
        if (this.#head.length > 0) {
          buf = new Uint8Array(this.#head.length + rest.length);
          buf.set(this.#head);
          buf.set(rest, this.#head.length);
        }
        const at = headEnd(buf);
        if (at < 0) {
          this.#head = buf.slice();
          return out;
        }
        this.#head = new Uint8Array(0);
        const head = String.fromCharCode(...buf.subarray(0, at));
        rest = buf.subarray(at);
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
        this.#status = m ? Number(m[1]) : 0;
        const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
        const chunked = /\r\ntransfer-encoding:[^\r]*chunked/i.test(head);
        const bodyless = this.#status < 200 || this.#status === 204 ||
          this.#status === 304;
        this.#body = "";
        this.#chunked = undefined;
        this.#length = 0;
        if (!bodyless && chunked) this.#chunked = new ChunkedDecoder();
        else if (!bodyless && length) this.#length = Number(length[1]);
        this.#inBody = true;
      }
      if (this.#chunked !== undefined) {
        const d = this.#chunked;
        for (const part of d.feed(rest)) {
          this.#body += this.#text.decode(part, { stream: true });
        }
        rest = rest.subarray(d.used);
        if (!d.done) return out;
      } else {
        const n = Math.min(this.#length, rest.length);
        if (n > 0) {
          this.#body += this.#text.decode(rest.subarray(0, n), {
            stream: true,
          });
        }
        rest = rest.subarray(n);
        this.#length -= n;
        if (this.#length > 0) return out;
      }
      this.#inBody = false;
      out.push({ status: this.#status, body: this.#body });
    }
    return out;
  }
}

/** Options of {@linkcode connectSse}. */
export interface SseConnectOptions {
  /** Server address. */
  hostname: string;
  /** Server port. */
  port: number;
  /** The group's path, with its leading `/`. */
  path: string;
  /**
   * Milliseconds the opening (the stream's head and its session event) may
   * take.
   * @default {10000}
   */
  timeout?: number;
  /**
   * Read buffer size of each connection.
   * @default {16384}
   */
  readSize?: number;
}

const _encoder = new TextEncoder();

/**
 * One peer on the fallback. Create it with {@linkcode connectSse}. It has
 * the surface of a `WsClient` that the scenarios use: `handlers`, `closed`,
 * `prebuild`, `sendFrame`, `send`, `close`, `destroy`.
 */
export class SseClient {
  /** Handlers; set them right after `connectSse` resolves. */
  handlers: WsHandlers = {};
  /** Whether the session has ended. */
  closed = false;
  /** The session id, once the stream has said it. */
  session = "";
  readonly #host: string;
  readonly #path: string;
  readonly #stream: DenoStream;
  #poster: DenoStream | undefined;
  #responses = new ResponseReader();
  /** Requests waiting for the one in flight to be answered. */
  #waiting: Uint8Array[] = [];
  #busy = false;
  #requested = false;
  #gotClose = false;
  #closeCode = 1006;
  #closeReason = "";
  #timer: ReturnType<typeof setTimeout> | undefined;
  #finished: PromiseWithResolvers<CloseInfo> = Promise.withResolvers();

  /** @internal Use {@linkcode connectSse}. */
  constructor(host: string, path: string, stream: DenoStream) {
    this.#host = host;
    this.#path = path;
    this.#stream = stream;
  }

  /** Resolves when the session has ended. */
  get finished(): Promise<CloseInfo> {
    return this.#finished.promise;
  }

  /**
   * The bytes of a POST that sends one frame of this session, built once
   * for {@linkcode SseClient.sendFrame}.
   *
   * @param payload The protobuf `Message` bytes.
   * @returns The request's bytes.
   */
  prebuild(payload: Uint8Array): Uint8Array {
    const sep = this.#path.includes("?") ? "&" : "?";
    const head = _encoder.encode(
      `POST ${this.#path}${sep}session=${this.session} HTTP/1.1\r\n` +
        `Host: ${this.#host}\r\n` +
        "Content-Type: application/octet-stream\r\n" +
        `Content-Length: ${payload.length}\r\n\r\n`,
    );
    const out = new Uint8Array(head.length + payload.length);
    out.set(head);
    out.set(payload, head.length);
    return out;
  }

  /**
   * Sends one prebuilt request (see {@linkcode SseClient.prebuild}) once the
   * one in flight is answered.
   *
   * @param request The request's bytes; they must not change afterwards.
   */
  sendFrame(request: Uint8Array): void {
    if (this.closed || this.#requested) return;
    this.#post(request);
  }

  /**
   * Sends one frame.
   *
   * @param payload The protobuf `Message` bytes.
   */
  send(payload: Uint8Array): void {
    this.sendFrame(this.prebuild(payload));
  }

  /**
   * Ends the session with a DELETE and waits for the stream to end; both
   * connections are dropped after `timeout` ms if it does not.
   *
   * @param _code Unused: a client ends a session without a code.
   * @param timeout Milliseconds to wait.
   * @returns How the session ended.
   */
  close(_code = 1000, timeout = 3000): Promise<CloseInfo> {
    if (!this.closed && !this.#requested) {
      this.#requested = true;
      const sep = this.#path.includes("?") ? "&" : "?";
      this.#post(_encoder.encode(
        `DELETE ${this.#path}${sep}session=${this.session} HTTP/1.1\r\n` +
          `Host: ${this.#host}\r\nContent-Length: 0\r\n\r\n`,
      ));
      this.#timer = setTimeout(() => this.destroy(), timeout);
    }
    return this.finished;
  }

  /** Drops both connections without ending the session. */
  destroy(): void {
    this.#requested = true;
    this.#stream.destroy();
    this.#poster?.destroy();
  }

  #post(request: Uint8Array): void {
    if (this.#busy || this.#poster === undefined) {
      this.#waiting.push(request);
      return;
    }
    this.#busy = true;
    this.#poster.write(request);
  }

  /** @internal The poster connection is open. */
  posterOpen(poster: DenoStream): void {
    this.#poster = poster;
    const next = this.#waiting.shift();
    if (next !== undefined) this.#post(next);
  }

  /** @internal Bytes on the poster connection. */
  posterData(chunk: Uint8Array): void {
    for (const r of this.#responses.feed(chunk)) {
      if (r.status !== 204) {
        this.handlers.onError?.(`POST answered ${r.status} ${r.body}`.trim());
      }
      this.#busy = false;
      const next = this.#waiting.shift();
      if (next !== undefined) this.#post(next);
    }
  }

  /** @internal One event of the stream. */
  event(event: string, data: string): void {
    if (event === "message") {
      let bytes: Uint8Array;
      try {
        bytes = unbase64(data);
      } catch {
        this.handlers.onError?.("an event's data is not base64");
        return;
      }
      this.handlers.onBinary?.(bytes);
    } else if (event === "close") {
      try {
        const { code, reason } = JSON.parse(data);
        this.#closeCode = Number(code);
        this.#closeReason = String(reason);
      } catch {
        this.handlers.onError?.("a close event that is not JSON");
      }
      this.#gotClose = true;
    }
  }

  /** @internal The stream (or the poster connection) ended. */
  ended(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#stream.destroy();
    this.#poster?.destroy();
    const info = {
      code: this.#gotClose ? this.#closeCode : this.#requested ? 1000 : 1006,
      reason: this.#closeReason,
      requested: this.#requested,
    };
    this.handlers.onClose?.(info);
    this.#finished.resolve(info);
  }
}

/**
 * Opens a session on the fallback: the stream's GET, its session event,
 * then the connection for the POSTs. Rejects on a refused connection, a
 * status other than 200 (the error's message names it) or a timeout.
 *
 * @param options Address, path, timeout.
 * @returns The open session.
 */
export async function connectSse(
  options: SseConnectOptions,
): Promise<SseClient> {
  const { hostname, port, path } = options;
  const host = `${hostname}:${port}`;
  const size = options.readSize ?? 16384;
  const conn = await Deno.connect({ hostname, port });
  conn.setNoDelay(true);
  const stream = new DenoStream(conn);
  const client = new SseClient(host, path, stream);
  const opened = Promise.withResolvers<SseClient>();
  const timer = setTimeout(() => {
    opened.reject(new Error("the stream's opening timed out"));
    stream.destroy();
  }, options.timeout ?? 10000);
  let head: Uint8Array | undefined = new Uint8Array(0);
  let chunked: ChunkedDecoder | undefined;
  const text = new TextDecoder();
  const parser = new SseParser();
  const body = (bytes: Uint8Array) => {
    for (const e of parser.push(text.decode(bytes, { stream: true }))) {
      if (e.event === "session" && client.session === "") {
        client.session = e.data;
        _openPoster(client, hostname, port, size).then(
          () => {
            clearTimeout(timer);
            opened.resolve(client);
          },
          (error) => {
            clearTimeout(timer);
            opened.reject(error);
            client.destroy();
          },
        );
      } else client.event(e.event, e.data);
    }
  };
  readLoop(conn, size, (chunk) => {
    if (head !== undefined) {
      const joined: Uint8Array = new Uint8Array(head.length + chunk.length);
      joined.set(head);
      joined.set(chunk, head.length);
      const at = headEnd(joined);
      if (at < 0) {
        head = joined;
        return;
      }
      head = undefined;
      const h = String.fromCharCode(...joined.subarray(0, at));
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(h)?.[1] ?? 0);
      if (status !== 200) {
        clearTimeout(timer);
        opened.reject(new Error(`stream refused: HTTP ${status}`));
        stream.destroy();
        return;
      }
      if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(h)) {
        chunked = new ChunkedDecoder();
      }
      chunk = joined.subarray(at);
    }
    if (chunked === undefined) {
      body(chunk);
      return;
    }
    try {
      for (const part of chunked.feed(chunk)) body(part);
    } catch {
      client.handlers.onError?.("the stream's chunked body is malformed");
      stream.destroy();
    }
    if (chunked.done) stream.destroy();
  }).then(() => {
    stream.destroy();
    if (head !== undefined || client.session === "") {
      clearTimeout(timer);
      opened.reject(new Error("connection closed during the opening"));
    }
    client.ended();
  });
  stream.write(_encoder.encode(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n` +
      "Accept: text/event-stream\r\n\r\n",
  ));
  return await opened.promise;
}

async function _openPoster(
  client: SseClient,
  hostname: string,
  port: number,
  size: number,
): Promise<void> {
  const conn = await Deno.connect({ hostname, port });
  conn.setNoDelay(true);
  const poster = new DenoStream(conn);
  readLoop(conn, size, (chunk) => client.posterData(chunk)).then(() => {
    poster.destroy();
    client.ended();
  });
  client.posterOpen(poster);
}
