/**
 * A Redis connection in subscribe mode, {@linkcode RedisSubscriber}: it
 * holds the set of channels it should listen to, says SUBSCRIBE and
 * UNSUBSCRIBE as that set changes, and hands every pushed message to its
 * caller. RESP2 only: in subscribe mode a connection gets pushes that no
 * request asked for, which {@linkcode RedisClient} (`redis.ts`) refuses,
 * so this is a connection of its own.
 *
 * It keeps itself up like the client does: after any failure (a reset, a
 * reply that is not RESP, an error reply, a PING unanswered within the
 * timeout) it connects again with exponential backoff and subscribes to
 * every channel of its set again. Messages published meanwhile are lost:
 * Redis pub/sub keeps nothing for a subscriber that is away.
 *
 * @example
 * ```ts ignore
 * import { RedisSubscriber } from "./redis_subscriber.ts";
 * await using subscriber = new RedisSubscriber("redis://127.0.0.1:6379", {
 *   onMessage: (channel, payload) => console.log(channel, payload),
 * });
 * subscriber.subscribe("news");
 * ```
 *
 * @module
 */

import { deadline, pause } from "../lib/deadline.ts";
import {
  type CommandArg,
  encodeCommand,
  encodeCommands,
  type Reply,
  RespError,
  RespParser,
  type RespParserOptions,
} from "../lib/resp.ts";
import { RedisError, type RedisErrorCode } from "./redis_error.ts";
import { parseRedisUrl, type RedisAddress } from "./redis_url.ts";

/** Channels named in one SUBSCRIBE when a whole set is subscribed again. */
const _SUBSCRIBE_BATCH = 512;
const _READ_SIZE = 64 * 1024;

/** Options of a {@linkcode RedisSubscriber}. */
export interface RedisSubscriberOptions {
  /**
   * Gets every message of a channel in the set, in the order Redis pushed
   * them. An exception it throws is reported with `reportError`.
   */
  onMessage: (channel: string, payload: string) => void;
  /**
   * Called when the subscriptions are in place (`true`: connected, logged
   * in, every channel asked for) or lost (`false`, with why): once for the
   * first attempt, then on every change, never after close.
   */
  onState?: (up: boolean, error?: RedisError) => void;
  /**
   * Milliseconds to connect and log in; also how long a PING may wait for
   * its answer before the connection counts as dead.
   * @default {2000}
   */
  timeout?: number;
  /**
   * Milliseconds between PINGs on a connection that is up: a Redis that
   * stopped answering is found within this interval and the timeout.
   * @default {5000}
   */
  pingInterval?: number;
  /**
   * Least wait before connecting again, in milliseconds.
   * @default {100}
   */
  backoffMin?: number;
  /**
   * Longest wait before connecting again, in milliseconds.
   * @default {5000}
   */
  backoffMax?: number;
  /**
   * Bounds on what Redis may push; past them the connection is dropped.
   * @default {{ maxBulkLength: 8388608 }}
   */
  replyLimits?: RespParserOptions;
}

/** Counters of a {@linkcode RedisSubscriber}. */
export interface RedisSubscriberStats {
  /** Connections made and subscribed, the first one included. */
  connects: number;
  /** Connections lost and attempts failed. */
  errors: number;
  /** Messages received on a channel of the set. */
  messages: number;
}

function _positive(name: string, value: number | undefined, fallback: number) {
  if (value === undefined) return fallback;
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(
      `Cannot create Redis subscriber: ${name} ${value} is not a positive number of milliseconds`,
    );
  }
  return value;
}

/** Reads replies off a socket until it ends; throws on a reply not RESP. */
async function* _replies(
  conn: Deno.TcpConn,
  parser: RespParser,
): AsyncGenerator<Reply> {
  const buf = new Uint8Array(_READ_SIZE);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) return;
    parser.push(buf.subarray(0, n));
    for (let reply; (reply = parser.read()) !== undefined;) yield reply;
  }
}

/** One connection, as the run loop holds it while it is up. */
interface _Link {
  conn: Deno.TcpConn;
  out: Uint8Array[];
  flushing: Promise<void> | undefined;
  /** Whether a PING is waiting for its answer. */
  pinged: boolean;
  /** Why it was dropped on purpose. */
  lost: RedisError | undefined;
}

function _close(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/**
 * A subscriber connection that keeps itself up and its channels
 * subscribed. It starts connecting when it is created; close it
 * (`await using`) to stop it.
 */
export class RedisSubscriber implements AsyncDisposable {
  readonly #address: RedisAddress;
  readonly #onMessage: (channel: string, payload: string) => void;
  readonly #onState: ((up: boolean, error?: RedisError) => void) | undefined;
  readonly #timeout: number;
  readonly #pingInterval: number;
  readonly #backoffMin: number;
  readonly #backoffMax: number;
  readonly #limits: RespParserOptions;
  readonly #channels = new Set<string>();
  readonly #stats: RedisSubscriberStats = {
    connects: 0,
    errors: 0,
    messages: 0,
  };
  readonly #closer = new AbortController();
  #link: _Link | undefined;
  #reported: boolean | undefined;
  readonly #loop: Promise<void>;
  #closing: Promise<void> | undefined;

  /**
   * Creates the subscriber and starts connecting.
   *
   * @param url `redis://[[user]:password@]host[:port][/db]` (pub/sub
   * ignores the db).
   * @param options Where messages go, timeouts and backoff.
   * @throws {TypeError} When the URL is not a Redis URL.
   * @throws {RangeError} When a timeout or a backoff is not positive.
   */
  constructor(url: string | URL, options: RedisSubscriberOptions) {
    this.#address = parseRedisUrl(url);
    this.#onMessage = options.onMessage;
    this.#onState = options.onState;
    this.#timeout = _positive("timeout", options.timeout, 2000);
    this.#pingInterval = _positive(
      "pingInterval",
      options.pingInterval,
      5000,
    );
    this.#backoffMin = _positive("backoffMin", options.backoffMin, 100);
    this.#backoffMax = _positive("backoffMax", options.backoffMax, 5000);
    if (this.#backoffMax < this.#backoffMin) {
      throw new RangeError(
        `Cannot create Redis subscriber: backoffMax ${this.#backoffMax} is less than backoffMin ${this.#backoffMin}`,
      );
    }
    this.#limits = options.replyLimits ?? { maxBulkLength: 8 * 1024 * 1024 };
    new RespParser(this.#limits);
    this.#loop = this.#run();
  }

  /** Whether a connection is up with every channel of the set asked for. */
  get connected(): boolean {
    return this.#link !== undefined;
  }

  /** The channels of the set. */
  get channels(): ReadonlySet<string> {
    return this.#channels;
  }

  /**
   * Adds a channel to the set: subscribed now if connected, else on
   * connect.
   *
   * @param channel The channel.
   */
  subscribe(channel: string): void {
    if (this.#closer.signal.aborted || this.#channels.has(channel)) return;
    this.#channels.add(channel);
    this.#write(encodeCommand(["SUBSCRIBE", channel]));
  }

  /**
   * Removes a channel from the set; its messages are dropped from now on,
   * even those Redis pushed before it heard the UNSUBSCRIBE.
   *
   * @param channel The channel.
   */
  unsubscribe(channel: string): void {
    if (!this.#channels.delete(channel)) return;
    this.#write(encodeCommand(["UNSUBSCRIBE", channel]));
  }

  /**
   * The counters, a snapshot.
   *
   * @returns A copy of the counters.
   */
  stats(): RedisSubscriberStats {
    return { ...this.#stats };
  }

  /**
   * Closes the connection and stops reconnecting. Idempotent.
   *
   * @returns A promise that resolves once no socket or timer remains.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closer.abort();
      await this.#loop;
    })();
    return this.#closing;
  }

  /**
   * Same as {@linkcode RedisSubscriber.close}.
   *
   * @returns The promise of `close()`.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #write(bytes: Uint8Array): void {
    const link = this.#link;
    if (link === undefined) return;
    link.out.push(bytes);
    link.flushing ??= this.#flush(link);
  }

  async #flush(link: _Link): Promise<void> {
    await Promise.resolve();
    try {
      while (link.out.length > 0) {
        const parts = link.out;
        link.out = [];
        const bytes = new Uint8Array(
          parts.reduce((n, part) => n + part.length, 0),
        );
        let at = 0;
        for (const part of parts) {
          bytes.set(part, at);
          at += part.length;
        }
        for (let pos = 0; pos < bytes.length;) {
          pos += await link.conn.write(bytes.subarray(pos));
        }
      }
    } catch {
      // The read side sees the socket end and reconnects.
      _close(link.conn);
    } finally {
      link.flushing = undefined;
    }
  }

  #report(up: boolean, error?: RedisError): void {
    if (this.#reported === up || this.#closer.signal.aborted) return;
    this.#reported = up;
    try {
      this.#onState?.(up, error);
    } catch (thrown) {
      reportError(thrown);
    }
  }

  /** Connects, listens, reconnects: until close(). Never rejects. */
  async #run(): Promise<void> {
    let failures = 0;
    const closed = this.#closer.signal;
    while (!closed.aborted) {
      const { up, why } = await this.#session();
      if (closed.aborted) break;
      this.#stats.errors++;
      this.#report(false, why);
      // A peer that never got as far as subscribing may not be a Redis at
      // all: keep backing off from it.
      if (up) failures = 0;
      const min = this.#backoffMin;
      const cap = Math.min(this.#backoffMax, min * 2 ** Math.min(failures, 30));
      failures++;
      await pause(min + Math.random() * (cap - min), closed);
    }
  }

  /**
   * One connection, from connect to its end: whether it was ever up (then
   * the backoff starts over), and why it ended. Never rejects.
   */
  async #session(): Promise<{ up: boolean; why: RedisError }> {
    const { hostname, port, username, password } = this.#address;
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({
        hostname,
        port,
        signal: AbortSignal.any([
          this.#closer.signal,
          AbortSignal.timeout(this.#timeout),
        ]),
      });
    } catch (error) {
      return {
        up: false,
        why: this.#error("disconnected", "cannot connect", error),
      };
    }
    const link: _Link = {
      conn,
      out: [],
      flushing: undefined,
      pinged: false,
      lost: undefined,
    };
    const drop = () => _close(conn);
    this.#closer.signal.addEventListener("abort", drop, { once: true });
    let up = false;
    let pinger: ReturnType<typeof setInterval> | undefined;
    let why: RedisError;
    try {
      const replies = _replies(conn, new RespParser(this.#limits));
      const handshake: CommandArg[][] = [];
      if (password !== undefined) {
        handshake.push(
          username === undefined
            ? ["AUTH", password]
            : ["AUTH", username, password],
        );
      }
      // A PING proves a Redis answers before the connection counts as up.
      handshake.push(["PING"]);
      const answered = (async () => {
        await conn.write(encodeCommands(handshake));
        for (const [name] of handshake) {
          const { value, done } = await replies.next();
          if (done) throw this.#error("disconnected", "Redis closed it");
          if (value instanceof RespError) {
            throw this.#error("reply", `${name} failed: ${value.message}`);
          }
        }
      })();
      await deadline(answered, this.#timeout, "Redis to answer").catch(
        async (error) => {
          drop();
          await answered.catch(() => {});
          throw error;
        },
      );
      // Up: every channel of the set is asked for in the same turn as later
      // subscribe() calls start writing to this link, so none is missed.
      this.#link = link;
      up = true;
      const channels = [...this.#channels];
      for (let i = 0; i < channels.length; i += _SUBSCRIBE_BATCH) {
        this.#write(
          encodeCommand([
            "SUBSCRIBE",
            ...channels.slice(i, i + _SUBSCRIBE_BATCH),
          ]),
        );
      }
      this.#stats.connects++;
      this.#report(true);
      pinger = setInterval(() => {
        if (link.pinged) {
          this.#drop(
            link,
            "timeout",
            `a PING got no answer within ${this.#pingInterval} ms`,
          );
          return;
        }
        link.pinged = true;
        this.#write(encodeCommand(["PING"]));
      }, this.#pingInterval);
      for await (const reply of replies) this.#dispatch(link, reply);
      why = link.lost ??
        this.#error("disconnected", "Redis closed the connection");
    } catch (error) {
      why = link.lost ?? (error instanceof RedisError ? error : this.#error(
        error instanceof SyntaxError ? "protocol" : "disconnected",
        error instanceof SyntaxError
          ? "Redis sent a reply that is not RESP"
          : "the connection failed",
        error,
      ));
    }
    if (this.#link === link) this.#link = undefined;
    clearInterval(pinger);
    this.#closer.signal.removeEventListener("abort", drop);
    drop();
    await link.flushing;
    return { up, why };
  }

  /** Drops a connection on purpose, saying why. */
  #drop(link: _Link, code: RedisErrorCode, state: string): void {
    link.lost ??= this.#error(code, state);
    _close(link.conn);
  }

  #error(code: RedisErrorCode, state: string, cause?: unknown): RedisError {
    return new RedisError(
      code,
      `Cannot keep the Redis subscription: ${state}`,
      { cause },
    );
  }

  #dispatch(link: _Link, reply: Reply): void {
    if (reply instanceof RespError) {
      this.#drop(link, "reply", `Redis answered ${reply.message}`);
      return;
    }
    // Outside subscribe mode (no channel yet) PING answers +PONG.
    if (reply === "PONG") {
      link.pinged = false;
      return;
    }
    if (!Array.isArray(reply) || typeof reply[0] !== "string") {
      this.#drop(link, "protocol", "Redis pushed an unknown reply");
      return;
    }
    switch (reply[0]) {
      case "message": {
        const [, channel, payload] = reply;
        if (typeof channel !== "string" || typeof payload !== "string") break;
        if (!this.#channels.has(channel)) return;
        this.#stats.messages++;
        try {
          this.#onMessage(channel, payload);
        } catch (thrown) {
          reportError(thrown);
        }
        return;
      }
      case "pong":
        link.pinged = false;
        return;
      case "subscribe":
      case "unsubscribe":
        return;
    }
    this.#drop(link, "protocol", "Redis pushed an unknown reply");
  }
}
