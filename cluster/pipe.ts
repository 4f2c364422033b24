/**
 * A pipe: the WebSocket an edge node opens to the node that owns a peer's
 * group, on the peer's own path. The edge relays the peer's frames into it
 * verbatim and the owner's frames back, so that the owner alone keeps the
 * protocol's rules (membership, ids, heartbeats).
 *
 * A pipe queues what the peer sends while it connects, is watched once
 * open (`pipe_watch.ts`: pinged when silent, dead when silent too long, as
 * in a partition that drops packets), and tells its owner how it ended: closed by the far side (with the code and reason to mirror),
 * refused (the owner answered the upgrade with an HTTP status: it is alive)
 * or unreachable (no connection: the owner is gone, and its lease may be
 * taken over).
 *
 * The pipe speaks WebSocket itself (`lib/ws_frame.ts`) over `Deno.connect`,
 * not through Deno's `WebSocket` client: that client turns `TCP_NODELAY`
 * off and writes a frame's head and payload in two writes, so that Nagle's
 * algorithm and delayed ACKs held every frame of 2 KiB or more for about
 * 40 ms (BENCHMARKS.md, "Cluster"). Here the socket has `TCP_NODELAY` on
 * and each frame goes out in one write.
 *
 * @module
 */

import {
  closePayload,
  encodeFrame,
  OP_BINARY,
  OP_CLOSE,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  parseClose,
} from "../lib/ws_frame.ts";
import {
  handshakeRequest,
  headEnd,
  parseResponseHead,
  randomKey,
  upgradeError,
  websocketAccept,
} from "../lib/ws_handshake.ts";
import { FrameParser, MAX_FRAME } from "../lib/ws_parser.ts";
import type { PipeWatch, Watched } from "./pipe_watch.ts";

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
   * @param data The frame: a binary frame's bytes, a view into the pipe's
   * read buffer that is valid during the call only (copy what is kept), or
   * a text frame's text.
   */
  onPipeFrame(data: Uint8Array | string): void;
  /**
   * The pipe ended; reported once.
   *
   * @param end How.
   */
  onPipeEnd(end: PipeEnd): void;
}

/** Options of {@linkcode Pipe}. */
export interface PipeOptions {
  /**
   * Milliseconds the pipe may take to open before it counts as unreachable;
   * also how long a closing pipe waits for the owner's close frame.
   */
  connectTimeout: number;
  /** Bytes that may wait to be written to the owner (0: no limit). */
  maxBufferedAmount: number;
  /** Frames that may wait while the pipe connects. */
  maxQueued: number;
  /** Watches the pipe once open; without it, a silent owner is waited for. */
  watch?: PipeWatch;
}

/** Bytes read at a time: an SDP offer or answer (2-6 KB) in one read. */
const _READ_SIZE = 8192;
/** The largest response head to a handshake. */
const _MAX_HEAD = 16384;
/** The longest close reason a close frame holds (125 bytes, less the code). */
const _MAX_REASON = 123;

const _encoder = new TextEncoder();
const _utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Where a pipe is: connecting (frames queue), open, closing (a close frame
 * went or came: waiting for the other, or for the writes to finish), done
 * (the connection is released).
 */
type _Phase = "connecting" | "open" | "closing" | "done";

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
export class Pipe implements Watched {
  readonly #events: PipeEvents;
  readonly #options: PipeOptions;
  /** Settles once the connection and every op on it are released. */
  readonly finished: Promise<void>;
  #phase: _Phase = "connecting";
  /** Nothing more is reported: the end was, or the edge closed the pipe. */
  #ended = false;
  #queue: (ArrayBuffer | string)[] | undefined = [];
  readonly #connecting = new AbortController();
  #conn: Deno.Conn | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Frames to write, in order; the first may be partly written. */
  #writes: Uint8Array[] = [];
  #buffered = 0;
  #writing: Promise<void> | undefined;
  #closeSent = false;
  #closeReceived = false;
  /** When the owner was last heard from, and last pinged (watch clock). */
  #heard = 0;
  #pinged = 0;

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
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#end({ kind: "unreachable", error: "connect timeout" });
      this.#release();
    }, options.connectTimeout);
    this.finished = this.#run(url, headers);
  }

  /** Whether the connection was given up (the phase changes under awaits). */
  get #released(): boolean {
    return this.#phase === "done";
  }

  /** Whether the pipe is open. */
  get open(): boolean {
    return !this.#ended && this.#phase === "open";
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
    if (max > 0 && this.#buffered > max) return false;
    this.#sendFrame(frame);
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
    this.#queue = undefined;
    if (this.#phase === "connecting") this.#release();
    else if (this.#phase === "open") {
      const sendable = code === 1000 || (code >= 3000 && code <= 4999);
      this.#sendClose(
        closePayload(sendable ? code : 1000, _cut(reason, _MAX_REASON)),
      );
    }
  }

  /** Connects, upgrades, then reads until the connection is released. */
  async #run(url: string, headers: Record<string, string>): Promise<void> {
    try {
      const target = new URL(url);
      const tls = target.protocol === "wss:" || target.protocol === "https:";
      const key = randomKey();
      const request = _encoder.encode(
        handshakeRequest(target.pathname + target.search, {
          host: target.host,
          headers,
          key,
        }),
      );
      const accept = websocketAccept(key);
      const conn = await this.#connect(target, tls);
      if (conn === undefined) return;
      await _writeAll(conn, request);
      const buf = new Uint8Array(_READ_SIZE);
      const head = await _readHead(conn, buf, await accept);
      if ("end" in head) {
        this.#end(head.end);
        return;
      }
      // The deadline may have passed as the answer came.
      if (this.#released) return;
      const rest = head.rest;
      this.#opened();
      await this.#read(conn, buf, rest);
    } catch (error) {
      this.#end({ kind: "unreachable", error: _message(error) });
    } finally {
      this.#release();
      // A write that was under way fails once the connection is closed.
      await this.#writing;
    }
  }

  /** Opens the TCP (and TLS) connection with `TCP_NODELAY` on. */
  async #connect(url: URL, tls: boolean): Promise<Deno.Conn | undefined> {
    const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const tcp = await Deno.connect({
      hostname,
      port: Number(url.port || (tls ? 443 : 80)),
      signal: this.#connecting.signal,
    });
    tcp.setNoDelay(true);
    if (this.#released) {
      tcp.close();
      return undefined;
    }
    // The option lives on the socket: it stays on under TLS.
    const conn = tls ? await Deno.startTls(tcp, { hostname }) : tcp;
    if (this.#released) {
      conn.close();
      return undefined;
    }
    this.#conn = conn;
    return conn;
  }

  /** The upgrade was accepted: sends what queued and reports it. */
  #opened(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const queue = this.#queue ?? [];
    this.#queue = undefined;
    this.#phase = "open";
    const watch = this.#options.watch;
    if (watch !== undefined) {
      this.#heard = this.#pinged = watch.now();
      watch.add(this);
    }
    for (const frame of queue) this.#sendFrame(frame);
    this.#events.onPipeOpen();
  }

  /**
   * Reads frames until the connection ends: the owner closes it after the
   * close handshake (RFC 6455 7.1.1: the server closes first, so that the
   * TIME_WAIT is not the edge's), or drops it, or this pipe releases it.
   */
  async #read(
    conn: Deno.Conn,
    buf: Uint8Array,
    rest: Uint8Array,
  ): Promise<void> {
    let broken: string | undefined;
    const parser = new FrameParser({
      frame: (opcode, payload) => this.#frame(opcode, payload),
      error: (message) => broken = message,
    }, MAX_FRAME);
    let chunk = rest;
    for (;;) {
      if (chunk.length > 0) parser.feed(chunk);
      if (broken !== undefined) {
        this.#end({
          kind: "unreachable",
          error: `Cannot read the owner's frames: ${broken}`,
        });
        return;
      }
      if (this.#phase === "done") return;
      const n = await conn.read(buf);
      if (this.#options.watch !== undefined) {
        this.#heard = this.#options.watch.now();
      }
      if (n === null) {
        // After the close handshake this is the expected end, and the
        // pipe has already reported (or was closed by the edge).
        this.#end({ kind: "unreachable", error: "the connection dropped" });
        return;
      }
      chunk = buf.subarray(0, n);
    }
  }

  /** One frame (or whole message) from the owner. */
  #frame(opcode: number, payload: Uint8Array): void {
    if (this.#closeReceived) return;
    switch (opcode) {
      case OP_BINARY:
        // A view: the peer's socket copies it as it sends.
        if (!this.#ended) this.#events.onPipeFrame(payload);
        return;
      case OP_TEXT: {
        let text: string;
        try {
          text = _utf8.decode(payload);
        } catch {
          this.#end({ kind: "unreachable", error: "invalid UTF-8 in a text" });
          this.#release();
          return;
        }
        if (!this.#ended) this.#events.onPipeFrame(text);
        return;
      }
      case OP_PING:
        if (!this.#closeSent) this.#write(encodeFrame(OP_PONG, payload));
        return;
      case OP_PONG:
        return;
      case OP_CLOSE: {
        this.#closeReceived = true;
        if (payload.length === 1) {
          this.#end({ kind: "unreachable", error: "a close frame of 1 byte" });
          this.#release();
          return;
        }
        const { code, reason } = parseClose(payload);
        // Echo it (RFC 6455 5.5.1), with the code it came with.
        if (!this.#closeSent) this.#sendClose(payload.subarray(0, 2));
        this.#end({ kind: "closed", code, reason });
        return;
      }
      default:
        this.#end({
          kind: "unreachable",
          error: `Cannot read the owner's frames: opcode ${opcode}`,
        });
        this.#release();
    }
  }

  /**
   * Pings the owner when it has been silent for the watch's interval, and
   * ends the pipe when it has been silent for the whole timeout.
   *
   * @param now The watch's clock.
   * @param watch The watch.
   */
  probe(now: number, watch: PipeWatch): void {
    if (this.#phase !== "open" || this.#ended) return;
    if (now - this.#heard >= watch.timeout) {
      this.#end({
        kind: "unreachable",
        error: `the owner sent nothing for ${watch.timeout} ms`,
      });
      this.#release();
    } else if (
      now - this.#heard >= watch.interval &&
      now - this.#pinged >= watch.interval
    ) {
      this.#pinged = now;
      this.#write(encodeFrame(OP_PING, new Uint8Array(0)));
    }
  }

  #sendFrame(frame: ArrayBuffer | string): void {
    const text = typeof frame === "string";
    this.#write(
      encodeFrame(
        text ? OP_TEXT : OP_BINARY,
        text ? _encoder.encode(frame) : new Uint8Array(frame),
      ),
    );
  }

  /** Sends a close frame, and bounds the wait for the owner's. */
  #sendClose(payload: Uint8Array): void {
    this.#closeSent = true;
    this.#phase = "closing";
    this.#write(encodeFrame(OP_CLOSE, payload));
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#release();
    }, this.#options.connectTimeout);
  }

  /** Queues a frame; it is written whole, after those before it. */
  #write(frame: Uint8Array): void {
    const conn = this.#conn;
    if (conn === undefined || this.#phase === "done") return;
    this.#writes.push(frame);
    this.#buffered += frame.length;
    this.#writing ??= this.#flush(conn);
  }

  /** Writes queued frames in order, one write per frame. */
  async #flush(conn: Deno.Conn): Promise<void> {
    try {
      while (this.#writes.length > 0 && this.#phase !== "done") {
        const frame = this.#writes[0];
        const n = await conn.write(frame);
        this.#buffered -= n;
        if (n < frame.length) this.#writes[0] = frame.subarray(n);
        else this.#writes.shift();
      }
    } catch (error) {
      if (this.#phase !== "done") {
        this.#end({ kind: "unreachable", error: _message(error) });
        this.#release();
      }
    } finally {
      this.#writing = undefined;
    }
  }

  #end(end: PipeEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#queue = undefined;
    this.#events.onPipeEnd(end);
  }

  /**
   * Gives up the connection: aborts a connect under way, or closes the
   * socket (which fails the read and write under way). Once.
   */
  #release(): void {
    if (this.#phase === "done") return;
    this.#phase = "done";
    this.#options.watch?.delete(this);
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue = undefined;
    this.#writes = [];
    this.#buffered = 0;
    this.#connecting.abort();
    try {
      this.#conn?.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * Reads the answer to the upgrade.
 *
 * @returns The bytes read past the head (frames), or how the pipe ended
 * (refused, or a bad answer).
 */
async function _readHead(
  conn: Deno.Conn,
  buf: Uint8Array,
  accept: string,
): Promise<{ rest: Uint8Array } | { end: PipeEnd }> {
  const unreachable = (error: string) => ({
    end: { kind: "unreachable", error } as const,
  });
  let got = new Uint8Array(0);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) {
      return unreachable(
        "the connection closed before the upgrade was answered",
      );
    }
    const joined = new Uint8Array(got.length + n);
    joined.set(got);
    joined.set(buf.subarray(0, n), got.length);
    got = joined;
    const end = headEnd(got);
    if (end === -1) {
      if (got.length > _MAX_HEAD) return unreachable("response head too large");
      continue;
    }
    const head = parseResponseHead(
      new TextDecoder().decode(got.subarray(0, end)),
    );
    if (head.status === 0) return unreachable("malformed response");
    if (head.status !== 101) {
      return { end: { kind: "refused", status: head.status } };
    }
    const error = upgradeError(head, accept);
    if (error !== undefined) return unreachable(`Cannot open: ${error}`);
    return { rest: got.subarray(end) };
  }
}

/** Writes all of `bytes` (a write may take part of them). */
async function _writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    at += await conn.write(bytes.subarray(at));
  }
}

/** `text` cut to at most `max` bytes of UTF-8, on a character boundary. */
function _cut(text: string, max: number): string {
  const bytes = _encoder.encode(text);
  if (bytes.length <= max) return text;
  let end = max;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return new TextDecoder().decode(bytes.subarray(0, end));
}

function _message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
